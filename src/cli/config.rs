//! Loading the files every command shares: the record catalog and the key
//! registry. Each error names the file and what was wrong with it.

use std::fs;
use std::path::Path;

use anyhow::Context as _;
use tidemark_schemas::Catalog;
use tidemark_schemas::keys::KeyRegistry;

/// A catalog: the built-in v1 one, or one loaded from a file.
pub enum CatalogChoice {
    /// The built-in v1 catalog.
    Builtin,
    /// A catalog loaded from a file.
    Loaded(Box<Catalog>),
}

impl CatalogChoice {
    /// Loads `path`, or picks the built-in catalog when it is `None`.
    ///
    /// # Errors
    /// If the file cannot be read or is not a valid catalog.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else { return Ok(CatalogChoice::Builtin) };
        let text = fs::read_to_string(path).with_context(|| format!("reading catalog {}", path.display()))?;
        let catalog = Catalog::from_toml(&text).with_context(|| format!("loading catalog {}", path.display()))?;
        Ok(CatalogChoice::Loaded(Box::new(catalog)))
    }

    /// The catalog.
    pub fn get(&self) -> &Catalog {
        match self {
            CatalogChoice::Builtin => Catalog::builtin(),
            CatalogChoice::Loaded(c) => c,
        }
    }
}

/// Reads and checks a key registry file.
///
/// # Errors
/// If the file cannot be read or an entry is refused.
pub fn load_registry(path: &Path) -> anyhow::Result<KeyRegistry> {
    let text = fs::read_to_string(path).with_context(|| format!("reading key registry {}", path.display()))?;
    KeyRegistry::from_toml_str(&text).with_context(|| format!("loading key registry {}", path.display()))
}
