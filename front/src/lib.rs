//! The front door of every Tidemark service that faces clients (ingest, the
//! query service): TLS from PEM files that reload without a restart, a cap on
//! connections per peer and in all, a deadline on each TLS handshake and
//! request head, and draining at shutdown.
//!
//! Key decision: the services drive hyper themselves instead of
//! `axum::serve`, which runs hyper without a timer, so no header deadline
//! could be set there. A client that stops sending is closed, whatever it
//! declared; a service bounds request bodies itself, as the bytes arrive.
//!
//! Without TLS, a service binds only a loopback address unless the operator
//! says `--insecure-plaintext` ([`check_plaintext`]): patient data must not
//! cross a network in cleartext because a flag was forgotten, so the
//! plaintext case that is right (a proxy or mesh in front terminates TLS) has
//! to be named.

use std::net::SocketAddr;
use std::path::PathBuf;

use prometheus_client::encoding::EncodeLabelSet;

mod peers;
mod serve;
mod tls;
mod watch;

pub use peers::{PeerSlot, Peers};
pub use serve::{Front, serve};
pub use tls::{Tls, TlsError};
pub use watch::watch_tls;

/// The PEM files of a service's TLS identity, re-read when they change.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates a client certificate must chain to; `None` asks for no
    /// client certificate.
    pub client_ca: Option<PathBuf>,
}

/// Labels of `connections_refused_total`: why a connection was closed
/// before any request was read.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    /// `peer_limit` (the peer held `--max-connections-per-peer`),
    /// `connection_limit` (`--max-connections` were open) or `tls_handshake`
    /// (no TLS, a refused client certificate, or too slow).
    pub cause: &'static str,
}

impl CauseLabels {
    /// The peer already held its cap of connections.
    pub const PEER_LIMIT: Self = Self { cause: "peer_limit" };
    /// The TLS handshake failed or did not finish within the header deadline.
    pub const TLS_HANDSHAKE: Self = Self { cause: "tls_handshake" };
    /// `--max-connections` connections were open.
    pub const CONNECTION_LIMIT: Self = Self { cause: "connection_limit" };
    /// Every cause, for pre-registering the series.
    pub const ALL: [Self; 3] = [Self::PEER_LIMIT, Self::CONNECTION_LIMIT, Self::TLS_HANDSHAKE];
}

/// Refuses plaintext on a non-loopback address unless the operator named
/// it; the message names the flags to give. `service` names the service in
/// the message.
///
/// # Errors
/// The message, when `listen` is not loopback, there is no TLS and
/// `insecure_plaintext` is off.
pub fn check_plaintext(service: &str, listen: SocketAddr, tls: bool, insecure_plaintext: bool) -> Result<(), String> {
    if tls || insecure_plaintext || listen.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "--listen {listen} is not a loopback address and {service} has no TLS: give --tls-cert and --tls-key, or \
         --insecure-plaintext if a proxy or mesh in front of {service} terminates TLS"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_is_refused_only_off_loopback_and_unnamed() {
        let public: SocketAddr = "10.0.0.5:8080".parse().expect("an address");
        let loopback: SocketAddr = "127.0.0.1:8080".parse().expect("an address");
        let v6_loopback: SocketAddr = "[::1]:8080".parse().expect("an address");
        let refused = check_plaintext("query", public, false, false).expect_err("plaintext off loopback");
        assert!(refused.contains("--insecure-plaintext") && refused.contains("query"), "{refused}");
        assert!(check_plaintext("query", public, true, false).is_ok());
        assert!(check_plaintext("query", public, false, true).is_ok());
        assert!(check_plaintext("query", loopback, false, false).is_ok());
        assert!(check_plaintext("query", v6_loopback, false, false).is_ok());
    }
}
