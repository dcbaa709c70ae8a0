//! Opening a snapshot for reading in place: verify it as `tidemark snapshot
//! verify` does, unwrap its master key with a recipient key, and hand pyarrow
//! a key holder its KMS client asks for each part's data key.
//!
//! Key decision: the master key stays in Rust memory (zeroized when the
//! `SnapshotKeys` object is freed) and never becomes a Python object; only
//! the 32-byte data key pyarrow asks for crosses, as pyarrow's own KMS API
//! requires. The recipient's long-term secret never leaves this module.

use std::path::PathBuf;

use pyo3::exceptions::{PyRuntimeWarning, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tidemark_archiver::manifest::Manifest;
use tidemark_archiver::pin::{self, PinError};
use tidemark_archiver::pme;
use tidemark_archiver::reader::{self, ReadError};
use tidemark_archiver::storage::Archive;
use tidemark_seal::SnapshotKey;
use tidemark_seal::snapshot_keys::unwrap_data_key;

use crate::errors::{ConfigError, SnapshotError};
use crate::keys::chain;

/// A verified snapshot and its master key, for pyarrow's KMS client
/// (`tidemark.KmsClient`). Made by `tidemark.snapshot_keys`; `open_snapshot`
/// uses one under the hood.
#[pyclass(module = "tidemark", frozen)]
pub struct SnapshotKeys {
    master: SnapshotKey,
    manifest: Manifest,
    parts: Vec<String>,
    pages_checked: bool,
}

#[pymethods]
impl SnapshotKeys {
    /// The snapshot id.
    #[getter]
    fn snapshot(&self) -> &str {
        &self.manifest.snapshot_id
    }

    /// The profile (`identified` or `deidentified`).
    #[getter]
    fn profile(&self) -> &str {
        &self.manifest.profile
    }

    /// The master key id every part's key material names.
    #[getter]
    fn master_key_id(&self) -> &str {
        &self.manifest.encryption.master_key_id
    }

    /// Each part's location (a local path, or the archive's URL joined with
    /// the part's name), in the manifest's order.
    #[getter]
    fn parts(&self) -> Vec<String> {
        self.parts.clone()
    }

    /// The rows of the snapshot, as the signed manifest counts them.
    #[getter]
    fn rows(&self) -> u64 {
        self.manifest.rows
    }

    /// When the archiver took the snapshot (RFC 3339 UTC).
    #[getter]
    fn created_at(&self) -> &str {
        &self.manifest.created_at
    }

    /// Whether every page of every part was decrypted and checked here
    /// (`verify="pages"`), besides each part's size, SHA-256 and tail.
    #[getter]
    fn pages_checked(&self) -> bool {
        self.pages_checked
    }

    /// The data key of a part, unwrapped from its footer's key material
    /// (`wrappedDEK`, parquet-java's local wrap) with the snapshot's master
    /// key: what pyarrow's `KmsClient.unwrap_key` returns. Raises
    /// `SnapshotError` for another master key id or a wrap that does not
    /// authenticate.
    fn unwrap_key<'py>(
        &self,
        py: Python<'py>,
        wrapped_key: &str,
        master_key_identifier: &str,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let ours = &self.manifest.encryption.master_key_id;
        if master_key_identifier != ours {
            return Err(SnapshotError::new_err(format!(
                "this snapshot's key holder has master key `{ours}`, not `{master_key_identifier}`: the file is \
                 from another snapshot"
            )));
        }
        let data = unwrap_data_key(&self.master, ours, wrapped_key)
            .map_err(|e| SnapshotError::new_err(format!("snapshot {}: {}", self.manifest.snapshot_id, chain(&e))))?;
        Ok(PyBytes::new(py, data.bytes()))
    }

    fn __repr__(&self) -> String {
        format!(
            "SnapshotKeys(snapshot={:?}, profile={:?}, parts={}, rows={})",
            self.manifest.snapshot_id,
            self.manifest.profile,
            self.parts.len(),
            self.manifest.rows
        )
    }
}

/// Verifies a snapshot and unwraps its master key with a recipient key.
///
/// `archive` is a directory or an `s3://`, `gs://`, `az://` URL, as the CLI
/// takes (credentials from the environment, as the CLI reads them); `key` a
/// recipient secret key file the snapshot is encrypted to; `archiver_pub`
/// the archiver's public key file. `snapshot="latest"` is the newest
/// snapshot whose manifest verifies (a directory whose manifest does not
/// verify is skipped with a `RuntimeWarning`). `verify="hash"` checks the
/// manifest's signature, placement, revisions and chain and every part's
/// size, SHA-256 and encryption metadata (each part is read once);
/// `verify="pages"` also decrypts every page here, as `tidemark snapshot
/// keys` does. `pin` is a pin file, as the CLI's `--pin`: a `latest` older
/// than one seen before is refused (a rollback).
///
/// Raises `SnapshotError` when anything does not verify or cannot be read,
/// `ConfigError` for an unreadable key or pin file.
#[pyfunction]
#[pyo3(signature = (archive, *, key, archiver_pub, profile="identified", snapshot="latest", verify="hash", pin=None))]
#[allow(clippy::too_many_arguments)]
pub fn snapshot_keys(
    py: Python<'_>,
    archive: PathBuf,
    key: PathBuf,
    archiver_pub: PathBuf,
    profile: &str,
    snapshot: &str,
    verify: &str,
    pin: Option<PathBuf>,
) -> PyResult<SnapshotKeys> {
    let pages = match verify {
        "hash" => false,
        "pages" => true,
        other => return Err(PyValueError::new_err(format!("verify must be \"hash\" or \"pages\", not {other:?}"))),
    };
    if !matches!(profile, "identified" | "deidentified") {
        return Err(PyValueError::new_err(format!(
            "profile must be \"identified\" or \"deidentified\", not {profile:?}"
        )));
    }
    if pin.is_some() && snapshot != "latest" {
        return Err(PyValueError::new_err("pin applies to snapshot=\"latest\" only"));
    }
    let key = tidemark_seal::load_recipient_secret(&key)
        .map_err(|e| ConfigError::new_err(format!("loading key: {}", chain(&e))))?;
    let archiver = tidemark_seal::load_archiver_public(&archiver_pub)
        .map_err(|e| ConfigError::new_err(format!("loading archiver_pub: {}", chain(&e))))?;
    // A path or a URL: PathBuf takes both, and `os.PathLike` objects too.
    let location = archive.to_string_lossy().into_owned();
    let archive = Archive::open_existing(&location).map_err(|e| SnapshotError::new_err(chain(&e)))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SnapshotError::new_err(format!("starting the I/O runtime: {e}")))?;
    let (opened, skipped) = py
        .detach(|| {
            runtime.block_on(async {
                let (id, chain_of) =
                    reader::resolve(&archive, profile, snapshot, &archiver).await.map_err(Failure::read)?;
                let skipped: Vec<String> =
                    chain_of.unverified.iter().map(|u| format!("{} ({})", u.id, u.reason)).collect();
                if let Some(b) = chain_of.breaks().first() {
                    return Err(Failure::Snapshot(format!("the chain of {profile} is broken: {b}")));
                }
                if let (Some(path), Some(latest)) = (&pin, chain_of.latest()) {
                    pin::check(path, &location, profile, latest).map_err(|e| match e {
                        PinError::Rollback { .. } | PinError::Replaced { .. } => Failure::Snapshot(e.to_string()),
                        other => Failure::Config(format!("pin {}: {}", path.display(), chain(&other))),
                    })?;
                }
                let verified = reader::verify(&archive, profile, &id, &archiver, pages.then_some(&key))
                    .await
                    .map_err(Failure::read)?;
                let master = match verified.keys {
                    Some(keys) => keys.master,
                    None => {
                        pme::read_keys(&verified.manifest, &key)
                            .map_err(|e| Failure::Snapshot(format!("snapshot {id}: {}", chain(&e))))?
                            .master
                    }
                };
                let parts =
                    verified.manifest.parts.iter().map(|p| archive.object_location(profile, &id, &p.name)).collect();
                Ok((SnapshotKeys { master, manifest: verified.manifest, parts, pages_checked: pages }, skipped))
            })
        })
        .map_err(Failure::into_py)?;
    for s in skipped {
        let message = format!("skipped {profile}/{s}: its manifest does not verify; it is not a snapshot");
        PyErr::warn(py, &py.get_type::<PyRuntimeWarning>(), &std::ffi::CString::new(message).unwrap_or_default(), 1)?;
    }
    Ok(opened)
}

/// An error made without the GIL, raised once it is held again.
enum Failure {
    Snapshot(String),
    Config(String),
}

impl Failure {
    fn read(e: ReadError) -> Self {
        Self::Snapshot(chain(&e))
    }

    fn into_py(self) -> PyErr {
        match self {
            Self::Snapshot(m) => SnapshotError::new_err(m),
            Self::Config(m) => ConfigError::new_err(m),
        }
    }
}
