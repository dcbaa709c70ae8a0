//! The demo directory: keys for three EHR sites, the archiver and one data
//! recipient, and the key registry. Keys of an earlier run are reused, so the
//! paths the summary prints stay the same from run to run.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tidemark_schemas::keys::{KeyEntry, KeyRegistry, SigningKeyFile};
use tidemark_seal::{ArchiverSigningKey, RecipientSecretKey, StateKeys};

use crate::keyfiles::{
    create_archiver_key, create_recipient_key, load_signing_key, new_signing_key, write_signing_key,
};

/// The EHR sites whose clinicians edit, one signing key each.
pub const SITES: [&str; 3] = ["site-a", "site-b", "site-c"];

/// Paths of everything the demo writes.
#[derive(Clone, Debug)]
pub struct DemoDir {
    /// The directory itself.
    pub root: PathBuf,
}

impl DemoDir {
    /// Where keys live.
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// The key registry ingest and merger read.
    pub fn registry(&self) -> PathBuf {
        self.root.join("registry.toml")
    }
    /// Every envelope ingest accepted in this run (NDJSON), for `tidemark fold`.
    pub fn envelopes(&self) -> PathBuf {
        self.root.join("envelopes.ndjson")
    }
    /// The live state topic's views at the end of the run (NDJSON, sorted by patient).
    pub fn state(&self) -> PathBuf {
        self.root.join("state.ndjson")
    }
    /// The snapshot archive.
    pub fn archive(&self) -> PathBuf {
        self.root.join("archive")
    }
    /// `keys/NAME.EXT`.
    pub fn key(&self, name: &str, ext: &str) -> PathBuf {
        self.keys().join(format!("{name}.{ext}"))
    }
}

/// The keys a run uses.
pub struct DemoKeys {
    /// One per site, in [`SITES`] order.
    pub sites: Vec<SigningKeyFile>,
    /// Signs the snapshot manifests.
    pub archiver: ArchiverSigningKey,
    /// The data team's key the snapshot is encrypted to.
    pub recipient: RecipientSecretKey,
    /// Seals the mergers' state and changelog records.
    pub state: StateKeys,
}

/// Creates the directory, loads or generates the keys, writes the registry.
///
/// # Errors
/// If a file cannot be read or written, or an existing key file is invalid.
pub fn prepare(root: &Path) -> anyhow::Result<(DemoDir, DemoKeys)> {
    let dir = DemoDir { root: root.to_owned() };
    fs::create_dir_all(dir.keys()).with_context(|| format!("creating {}", dir.keys().display()))?;
    let sites = SITES.iter().map(|name| site_key(&dir, name)).collect::<anyhow::Result<Vec<_>>>()?;
    let entries: Vec<KeyEntry> = sites.iter().map(|k| k.registry_entry(None)).collect();
    KeyRegistry::from_entries(entries.clone()).context("building the demo key registry")?;
    let text = entries.iter().map(KeyEntry::to_toml).collect::<Vec<_>>().join("\n");
    fs::write(dir.registry(), text).with_context(|| format!("writing {}", dir.registry().display()))?;

    let (archiver_key, archiver_pub) = (dir.key("archiver", "key"), dir.key("archiver", "pub"));
    let archiver = if archiver_key.exists() {
        tidemark_seal::load_archiver_secret(&archiver_key).context("loading the demo's archiver key")?
    } else {
        create_archiver_key(&archiver_key, &archiver_pub)?
    };
    let (recipient_key, recipient_pub) = (dir.key("analytics", "key"), dir.key("analytics", "pub"));
    let recipient = if recipient_key.exists() {
        tidemark_seal::load_recipient_secret(&recipient_key).context("loading the demo's recipient key")?
    } else {
        create_recipient_key(&recipient_key, &recipient_pub)?
    };
    let state_key = dir.key("state", "key");
    let state = if state_key.exists() {
        tidemark_seal::load_state_keys(std::slice::from_ref(&state_key)).context("loading the demo's state key")?
    } else {
        let key = tidemark_seal::StateKey::generate().context("generating the demo's state key")?;
        tidemark_seal::save_state_key(&state_key, &key)?;
        StateKeys::new(&[key]).context("the demo's state key")?
    };
    Ok((dir, DemoKeys { sites, archiver, recipient, state }))
}

/// Loads `keys/NAME.key`, or generates it (source `NAME-ehr`) with its public half.
fn site_key(dir: &DemoDir, name: &str) -> anyhow::Result<SigningKeyFile> {
    let path = dir.key(name, "key");
    if path.exists() {
        return load_signing_key(&path);
    }
    let key = new_signing_key(name, &format!("{name}-ehr"))?;
    write_signing_key(&key, &path, &dir.key(name, "pub"))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_generated_once_then_reused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (dir, first) = prepare(&tmp.path().join("demo")).expect("first run");
        let (_, second) = prepare(&dir.root).expect("second run");
        for (a, b) in first.sites.iter().zip(&second.sites) {
            assert_eq!(a.verifying_key(), b.verifying_key());
        }
        assert_eq!(first.archiver.key_id(), second.archiver.key_id());
        assert_eq!(first.recipient.key_id(), second.recipient.key_id());
        let registry = fs::read_to_string(dir.registry()).expect("registry");
        let parsed = KeyRegistry::from_toml_str(&registry).expect("registry parses");
        assert_eq!(parsed.len(), SITES.len());
    }
}
