//! Logging: `tracing` to stderr, JSON in the cluster, human-readable on a
//! terminal. Level from `RUST_LOG` (default `info`). Messages never carry
//! payloads, names or patient ids.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// The log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log shippers).
    Json,
    /// Human-readable lines.
    #[default]
    Text,
}

/// Installs the global subscriber. Calling it twice is harmless (the second
/// call keeps the first subscriber).
pub fn init(format: LogFormat) {
    init_with_default(format, "info");
}

/// [`init`] with another default level (the demo keeps its terminal for
/// progress and shows warnings only, unless `RUST_LOG` says otherwise).
pub fn init_with_default(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
