//! Calls a reload function on SIGHUP and when a watched file changes.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the services look at their watched files' metadata.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Calls `reload(by_signal)` on SIGHUP and when the modification time or
/// length of any of `paths` changes (looked at every `interval`), until
/// `stop`. Metadata follows symbolic links, so a Kubernetes ConfigMap or
/// Secret volume, which swaps a link to a new directory, counts as a change.
///
/// Key decision: polling metadata rather than inotify. A ConfigMap update
/// replaces a symbolic link two levels above the file, which inotify on the
/// file never sees, and a poll every 2 s costs a few `stat` calls. A change
/// is acted on once the files look the same at two polls in a row: a file
/// written in place (an editor, `cp`) can be caught half-written, and a
/// truncated registry that still parses would drop keys.
pub async fn watch_files(
    paths: Vec<PathBuf>,
    interval: Duration,
    stop: CancellationToken,
    mut reload: impl FnMut(bool),
) {
    let stamp = || -> Vec<_> {
        paths.iter().map(|p| std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len()))).collect()
    };
    // What the last reload (or the start) saw, and what the last poll saw.
    let (mut loaded, mut seen) = (stamp(), stamp());
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let by_signal = tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let now = stamp();
        let settled = now == seen;
        seen.clone_from(&now);
        if !by_signal && (now == loaded || !settled) {
            continue;
        }
        loaded = now;
        reload(by_signal);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_changed_file_is_reloaded_once_and_an_unchanged_one_never() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, "one").expect("write");
        let calls = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let task = {
            let calls = Arc::clone(&calls);
            tokio::spawn(watch_files(vec![path.clone()], Duration::from_millis(20), stop.clone(), move |by_signal| {
                assert!(!by_signal);
                calls.fetch_add(1, Ordering::SeqCst);
            }))
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing changed");
        std::fs::write(&path, "three").expect("rewrite");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one change, one reload");
        stop.cancel();
        task.await.expect("the watcher stops");
    }

    #[tokio::test]
    async fn a_file_still_being_written_is_reloaded_once_it_settles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, "x").expect("write");
        let calls = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let task = {
            let calls = Arc::clone(&calls);
            tokio::spawn(watch_files(vec![path.clone()], Duration::from_millis(100), stop.clone(), move |_| {
                calls.fetch_add(1, Ordering::SeqCst);
            }))
        };
        // Growing by a byte every 5 ms: never the same at two polls.
        for n in 2..70 {
            std::fs::write(&path, "x".repeat(n)).expect("grow");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0, "no reload while the file changes at every poll");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one reload once it settled");
        stop.cancel();
        task.await.expect("the watcher stops");
    }
}
