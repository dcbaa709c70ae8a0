//! The root cancellation token, cancelled by SIGTERM or SIGINT.

use tokio_util::sync::CancellationToken;

/// A token that is cancelled on the first SIGTERM or SIGINT. A second signal
/// is left to the default handler's successor: the service is already
/// draining, and the grace period bounds it.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = term => tracing::info!("SIGTERM received; draining"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; draining"),
        }
        cancel.cancel();
    });
    token
}
