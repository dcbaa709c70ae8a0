//! The front-door flags every service facing clients takes (ingest, query):
//! TLS, the plaintext override, the header deadline and connection caps.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tidemark_front::TlsFiles;

/// TLS and connection bounds, flattened into a service's flags.
#[derive(Debug, Args)]
pub struct FrontArgs {
    /// The API's TLS certificate chain (PEM, leaf first); reloaded on SIGHUP
    /// and when it changes.
    #[arg(long, env = "TIDEMARK_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TIDEMARK_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) a client certificate must chain to: clients
    /// without one are refused (mutual TLS).
    #[arg(long, env = "TIDEMARK_TLS_CLIENT_CA", value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve plaintext HTTP on a non-loopback `--listen`: only where a proxy
    /// or mesh in front of the service terminates TLS.
    #[arg(long, env = "TIDEMARK_INSECURE_PLAINTEXT", conflicts_with = "tls_cert")]
    pub insecure_plaintext: bool,
    /// How long a client may take to send a request head (and finish the TLS handshake).
    #[arg(long, env = "TIDEMARK_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Connections one client address may hold open; more are closed at once.
    #[arg(long, env = "TIDEMARK_MAX_CONNECTIONS_PER_PEER", default_value_t = 64)]
    pub max_connections_per_peer: usize,
    /// Connections held open at once from all clients; more are closed at once.
    #[arg(long, env = "TIDEMARK_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
}

impl FrontArgs {
    /// The TLS files, when `--tls-cert` and `--tls-key` are given.
    pub fn tls(&self) -> Option<TlsFiles> {
        let (cert, key) = (self.tls_cert.clone()?, self.tls_key.clone()?);
        Some(TlsFiles { cert, key, client_ca: self.tls_client_ca.clone() })
    }

    /// The header deadline.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
}
