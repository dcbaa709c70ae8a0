//! Key files and registries, read through the same checked readers the CLI
//! and the services use: a secret key file readable by group or others is
//! refused, a registry is refused whole when any entry is.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use tidemark_schemas::keys::{KeyRegistry, SigningKeyFile};
use tidemark_schemas::verify::Verifier;

use crate::errors::ConfigError;

/// `err` and its causes, joined by ": ".
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// A key registry, loaded and checked once, for verifying envelopes: the
/// same TOML file (`[[key]]` entries) ingest and the merger trust.
///
/// Passing a `Registry` instead of a path to `verify`, `fold` or
/// `DocumentMerge` saves reading and checking the file on every call.
#[pyclass(module = "tidemark", frozen)]
pub struct Registry {
    pub(crate) verifier: Arc<Verifier>,
    path: PathBuf,
}

#[pymethods]
impl Registry {
    /// Loads the registry at `path`.
    ///
    /// Raises `ConfigError` when the file cannot be read or an entry is
    /// refused (a repeated id, a weak or malformed key, a bad time).
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::new_err(format!("reading key registry {}: {e}", path.display())))?;
        let registry = KeyRegistry::from_toml_str(&text)
            .map_err(|e| ConfigError::new_err(format!("key registry {}: {}", path.display(), chain(&e))))?;
        Ok(Self { verifier: Arc::new(Verifier::new(registry)), path })
    }

    /// The ids of the registered keys, sorted.
    #[getter]
    fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.verifier.registry().iter().map(|k| k.id().to_owned()).collect();
        ids.sort();
        ids
    }

    fn __repr__(&self) -> String {
        format!("Registry({:?}, {} keys)", self.path.display().to_string(), self.verifier.registry().iter().count())
    }
}

/// A registry given as a `Registry` or as a path to load.
pub fn registry_of(value: &Bound<'_, PyAny>) -> PyResult<Arc<Verifier>> {
    if let Ok(r) = value.cast::<Registry>() {
        return Ok(Arc::clone(&r.get().verifier));
    }
    let path: PathBuf = value
        .extract()
        .map_err(|_| PyTypeError::new_err("registry must be a tidemark.Registry or the path of a key registry file"))?;
    Ok(Registry::new(path)?.verifier)
}

/// A signing key file written by `tidemark keys generate`.
pub fn signing_key(path: &std::path::Path) -> PyResult<SigningKeyFile> {
    let text = tidemark_seal::keyfile::read_text(path, true).map_err(|e| ConfigError::new_err(chain(&e)))?;
    SigningKeyFile::from_toml_str(&text)
        .map_err(|e| ConfigError::new_err(format!("key file {}: {}", path.display(), chain(&e))))
}
