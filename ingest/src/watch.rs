//! Background watchers: broker reachability (for `/readyz`, fast 503s and
//! producer replacement), and the files ingest re-reads on change or SIGHUP:
//! the key registry and the TLS certificate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer as _};
use tidemark_reload::POLL_INTERVAL;
use tokio_util::sync::CancellationToken;

use crate::state::{AppState, now_ms, producer_config};
use crate::topics;
use tidemark_front::Tls;

/// Acknowledgements this recent count as a successful check.
const RECENT_ACK_MS: u64 = 5_000;

/// A cached broker check every 2 s, for `/readyz` and fast 503s. A check
/// succeeds when a metadata request is answered within 2 s or when Kafka
/// acknowledged a record in the last [`RECENT_ACK_MS`]: under heavy produce
/// load a broker may answer metadata behind the produce requests queued on
/// the same connection, and declaring it down then would turn load into
/// errors (measured on Tansu: 72% of a saturating benchmark's events got
/// 503s before this rule). The
/// producer is replaced by a fresh one when it reports a fatal error (an
/// idempotent producer whose sequence state the broker lost, after a broker
/// restart, can never produce again) or after three failed checks in a row (a
/// producer stuck on dead connections). Records of the old producer still in
/// flight finish or time out with it, so their requests get their answers.
pub(crate) async fn watch_broker(state: Arc<AppState>, stop: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let producer = state.producer();
        let probe_ok = topics::partitions(&producer, &state.topic, Duration::from_secs(2)).await.is_ok();
        let ok = reachable(probe_ok, now_ms(), state.last_ack_ms.load(Ordering::Relaxed));
        if ok != state.broker_ok.swap(ok, Ordering::Relaxed) {
            tracing::warn!(reachable = ok, "broker reachability changed");
        }
        failures = if ok { 0 } else { failures + 1 };
        if let Some((code, reason)) = producer.client().fatal_error() {
            tracing::warn!(?code, %reason, "the producer hit a fatal error; replacing it");
            replace_producer(&state);
        } else if failures >= 3 {
            failures = 0;
            tracing::warn!("broker unreachable for three checks; replacing the producer");
            replace_producer(&state);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Whether the broker counts as reachable: the probe answered, or a record
/// was acknowledged (at `last_ack_ms`; 0 for never) less than
/// [`RECENT_ACK_MS`] before `now_ms`.
fn reachable(probe_ok: bool, now_ms: u64, last_ack_ms: u64) -> bool {
    probe_ok || (last_ack_ms > 0 && now_ms.saturating_sub(last_ack_ms) < RECENT_ACK_MS)
}

fn replace_producer(state: &AppState) {
    match producer_config(&state.cfg).create::<FutureProducer>() {
        Ok(fresh) => {
            if let Ok(mut slot) = state.producer.write() {
                *slot = fresh;
            }
            state.metrics.producer_replaced.inc();
        }
        Err(e) => tracing::error!(error = %e, "cannot create a new producer"),
    }
}

/// Reloads the key registry on SIGHUP and when the file's mtime or length
/// changes, with the merger's code ([`tidemark_reload::watch_registry`]). A
/// bad registry is logged and counted (`registry_reloads_total{result="failed"}`);
/// the old one stays.
pub(crate) async fn watch_registry(state: Arc<AppState>, stop: CancellationToken) {
    let (path, verifier) = (state.cfg.keys.clone(), Arc::clone(&state.verifier));
    tidemark_reload::watch_registry(path, POLL_INTERVAL, verifier, state.metrics.registry_reloads.clone(), stop).await;
}

/// Reloads the TLS files as the key registry reloads (see
/// [`tidemark_front::watch_tls`]), counted in `tls_reloads_total`.
pub(crate) async fn watch_tls(state: Arc<AppState>, tls: Arc<Tls>, stop: CancellationToken) {
    tidemark_front::watch_tls(tls, state.metrics.tls_reloads.clone(), stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_acknowledgements_outvote_a_slow_probe_and_then_expire() {
        let now = 1_800_000_000_000;
        assert!(reachable(true, now, 0), "an answered probe is enough");
        assert!(!reachable(false, now, 0), "no probe and never an acknowledgement");
        assert!(reachable(false, now, now - 100), "acknowledged 100 ms ago");
        assert!(reachable(false, now, now - RECENT_ACK_MS + 1));
        assert!(!reachable(false, now, now - RECENT_ACK_MS), "too old to count");
        assert!(reachable(false, now, now + 50), "a clock step back does not flip it");
    }
}
