//! The accept loop and one HTTP/1.1 connection: the connection caps, the
//! TLS handshake, the header-read deadline, and draining at shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::CauseLabels;
use crate::peers::{PeerSlot, Peers};
use crate::tls::Tls;

/// What every connection is served with.
#[derive(Clone)]
pub struct Front {
    /// The routes.
    pub app: Router,
    /// TLS, when configured; its configuration may be replaced at run time.
    pub tls: Option<Arc<Tls>>,
    /// Connections per peer address.
    pub peers: Arc<Peers>,
    /// Connections open at once, from all peers.
    pub max_connections: usize,
    /// Deadline of a TLS handshake and of each request head.
    pub header_read_timeout: Duration,
    /// Refused connections are counted here, by cause.
    pub refused: Family<CauseLabels, Counter>,
}

/// Accepts connections until `stop`, then closes the listener (new
/// connections are refused), lets each connection finish the request it is
/// in, and returns once every connection has closed. The caller bounds how
/// long that may take.
pub async fn serve(listener: TcpListener, front: Front, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            // Reaps finished connections, so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Count only connections still open: reap the finished first.
                    while connections.try_join_next().is_some() {}
                    if connections.len() >= front.max_connections {
                        front.refused.get_or_create(&CauseLabels::CONNECTION_LIMIT).inc();
                        continue; // dropping the stream closes it
                    }
                    let Some(slot) = front.peers.admit(peer.ip()) else {
                        front.refused.get_or_create(&CauseLabels::PEER_LIMIT).inc();
                        continue; // dropping the stream closes it
                    };
                    connections.spawn(connection(stream, slot, front.clone(), stop.clone()));
                }
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it
                    // was accepted: not fatal, but do not spin on it.
                    tracing::warn!(error = %e, "Accepting a connection failed; retrying shortly.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// One connection: the TLS handshake (within the header deadline) when TLS
/// is on, then HTTP/1.1 until the client or the deadline closes it.
async fn connection(stream: TcpStream, _slot: PeerSlot, front: Front, stop: CancellationToken) {
    // Answers are small and written at once: do not wait to coalesce them.
    let _ = stream.set_nodelay(true);
    let Some(tls) = &front.tls else {
        return http(TokioIo::new(stream), &front, &stop).await;
    };
    let handshake = tokio::time::timeout(front.header_read_timeout, tls.acceptor().accept(stream));
    let stream = tokio::select! {
        () = stop.cancelled() => return,
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            // A plaintext client, an unknown or missing client certificate,
            // or a handshake that did not finish in time.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "A TLS handshake failed; the connection is closed.");
                front.refused.get_or_create(&CauseLabels::TLS_HANDSHAKE).inc();
                return;
            }
            Err(_elapsed) => {
                front.refused.get_or_create(&CauseLabels::TLS_HANDSHAKE).inc();
                return;
            }
        },
    };
    http(TokioIo::new(stream), &front, &stop).await;
}

async fn http<I>(io: I, front: &Front, stop: &CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(front.app.clone());
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(front.header_read_timeout)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let served = tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            // Finish the request in flight, take no new one on this connection.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        // Clients that vanish or time out are routine; nothing to act on.
        tracing::debug!(error = %e, "A connection ended with an error.");
    }
}
