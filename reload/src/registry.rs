//! The key registry file: read and checked in one place for every service
//! and tool, and re-read by ingest and the merger while they run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tidemark_schemas::keys::{KeyRegistry, RegistryError};
use tidemark_schemas::verify::Verifier;
use tokio_util::sync::CancellationToken;

use crate::{ReloadLabels, Slot, watch_files};

/// Why a registry file could not be used. The message names the file and
/// what was wrong with which key id, never key material.
#[derive(Debug, thiserror::Error)]
pub enum RegistryLoadError {
    /// The file could not be read.
    #[error("reading key registry {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// The file was read and an entry was refused.
    #[error("loading key registry {}: {cause}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The first refused entry and why.
        cause: RegistryError,
    },
}

/// Reads and checks the key registry at `path`.
///
/// # Errors
/// [`RegistryLoadError`]: unreadable, or an entry refused.
pub fn load_registry(path: &Path) -> Result<KeyRegistry, RegistryLoadError> {
    let text =
        std::fs::read_to_string(path).map_err(|cause| RegistryLoadError::Read { path: path.to_owned(), cause })?;
    KeyRegistry::from_toml_str(&text).map_err(|cause| RegistryLoadError::Invalid { path: path.to_owned(), cause })
}

/// Re-reads the registry at `path` on SIGHUP and when the file changes
/// (every `interval`, see [`watch_files`]) until `stop`, and puts a
/// [`Verifier`] of the new keys, in the batch mode of the one it replaces, in
/// `verifier`. Each attempt is counted in `reloads` by result; a file that
/// does not load is logged (file, key id and why) and the previous registry
/// stays in use.
pub async fn watch_registry(
    path: PathBuf,
    interval: Duration,
    verifier: Arc<Slot<Verifier>>,
    reloads: Family<ReloadLabels, Counter>,
    stop: CancellationToken,
) {
    watch_files(vec![path.clone()], interval, stop, |by_signal| reload(&path, &verifier, &reloads, by_signal)).await;
}

fn reload(path: &Path, verifier: &Slot<Verifier>, reloads: &Family<ReloadLabels, Counter>, by_signal: bool) {
    match load_registry(path) {
        Ok(registry) => {
            let keys = registry.len();
            let mode = verifier.get().batch_mode();
            verifier.set(Arc::new(Verifier::new(registry).with_batch_mode(mode)));
            reloads.get_or_create(&ReloadLabels::OK).inc();
            tracing::info!(by_signal, keys, "key registry reloaded");
        }
        Err(e) => {
            reloads.get_or_create(&ReloadLabels::FAILED).inc();
            tracing::error!(error = %e, "key registry reload failed; keeping the previous one");
        }
    }
}

#[cfg(test)]
mod tests {
    use tidemark_schemas::verify::BatchMode;

    use super::*;

    /// A registry entry for a valid Ed25519 public key (the base point's
    /// encoding: any torsion-free point will do for loading).
    fn entry(id: &str) -> String {
        let key = tidemark_schemas::keys::KeyEntry {
            id: id.to_owned(),
            source: "site-a".to_owned(),
            algorithm: "ed25519".to_owned(),
            public_key: "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=".to_owned(),
            patient_prefixes: None,
            not_before: None,
            not_after: None,
            revoked_at: None,
            scopes: None,
        };
        key.to_toml()
    }

    #[test]
    fn a_good_file_replaces_the_verifier_and_a_bad_one_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("registry.toml");
        std::fs::write(&path, entry("a")).expect("write");
        let slot = Slot::new(Verifier::new(load_registry(&path).expect("loads")).with_batch_mode(BatchMode::Exact));
        let reloads = Family::<ReloadLabels, Counter>::default();
        std::fs::write(&path, format!("{}{}", entry("a"), entry("b"))).expect("rewrite");
        reload(&path, &slot, &reloads, false);
        let v = slot.get();
        assert!(v.registry().get("b").is_some(), "the new key is in use");
        assert_eq!(v.batch_mode(), BatchMode::Exact, "the batch mode is kept");
        std::fs::write(&path, format!("{}not_after = \"soon\"\n", entry("c"))).expect("break it");
        reload(&path, &slot, &reloads, true);
        assert!(slot.get().registry().get("b").is_some(), "the previous registry stays");
        assert_eq!(reloads.get_or_create(&ReloadLabels::OK).get(), 1);
        assert_eq!(reloads.get_or_create(&ReloadLabels::FAILED).get(), 1);
        let err = load_registry(&path).expect_err("bad time").to_string();
        assert!(err.contains("registry.toml: key `c`: not_after `soon`"), "{err}");
        let err = load_registry(&dir.path().join("missing.toml")).expect_err("missing").to_string();
        assert!(err.starts_with("reading key registry ") && err.contains("missing.toml"), "{err}");
    }
}
