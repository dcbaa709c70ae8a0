//! The record catalog a document or a fold validates against: the built-in
//! v1 catalog, or a TOML file as the services' `--catalog` takes.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use tidemark_schemas::Catalog;

use crate::errors::ConfigError;
use crate::keys::chain;

/// The built-in catalog or a loaded one.
#[derive(Clone)]
pub enum CatalogRef {
    /// `schemas/catalog.v1.toml`, compiled in.
    Builtin(&'static Catalog),
    /// A catalog file.
    Loaded(Arc<Catalog>),
}

impl CatalogRef {
    /// The catalog at `path`, or the built-in one.
    ///
    /// # Errors
    /// `ConfigError` (the package's error for configuration files) when the
    /// file cannot be read or is not a valid catalog.
    pub fn load(path: Option<PathBuf>) -> PyResult<Self> {
        let Some(path) = path else { return Ok(Self::Builtin(Catalog::builtin())) };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::new_err(format!("reading catalog {}: {e}", path.display())))?;
        Catalog::from_toml(&text)
            .map(|c| Self::Loaded(Arc::new(c)))
            .map_err(|e| ConfigError::new_err(format!("catalog {}: {}", path.display(), chain(&e))))
    }
}

impl Deref for CatalogRef {
    type Target = Catalog;

    fn deref(&self) -> &Catalog {
        match self {
            Self::Builtin(c) => c,
            Self::Loaded(c) => c,
        }
    }
}
