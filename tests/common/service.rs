//! The tests' services: the shared process wrapper, running this package's
//! `tidemark` binary.

use std::path::Path;

pub use tidemark_testkit::process::{START_TIMEOUT, Service};

/// A service that will run `tidemark ARGS` (the binary under test), logging
/// to `DIR/NAME.log`.
pub fn tidemark_service(name: &str, args: Vec<String>, dir: &Path) -> Service {
    let mut service = Service::new(name, Path::new(env!("CARGO_BIN_EXE_tidemark")), args, dir);
    service.set_env("TIDEMARK_STATE_KEY", super::s(super::state_key()));
    service
}

/// Starts `tidemark merger` on `bootstrap` under `prefix` in `group`, with
/// the test registry, 4 partitions, short batches and a quick group session
/// (info logs, to `DIR/NAME.log`), and `extra` arguments; waits for it to
/// listen.
pub fn merger(bootstrap: &str, prefix: &str, group: &str, dir: &Path, name: &str, extra: &[&str]) -> Service {
    let registry = super::data("test-registry.toml");
    let args = ["merger", "--brokers", bootstrap, "--keys", super::s(&registry)]
        .iter()
        .chain(&["--topic-prefix", prefix, "--group", group, "--partitions", "4"])
        .chain(&["--metrics-listen", "127.0.0.1:0", "--max-batch-wait-ms", "20"])
        .chain(&["--kafka-option", "session.timeout.ms=6000", "--kafka-option", "heartbeat.interval.ms=500"])
        .chain(extra)
        .map(|a| (*a).to_owned())
        .collect();
    let mut m = tidemark_service(name, args, dir);
    m.set_env("RUST_LOG", "info");
    m.started()
}
