//! Files the CLI writes: created whole, with their final permissions from the
//! start, never overwriting.

use std::path::Path;

use anyhow::{Context as _, bail};
use tidemark_seal::KeyError;
use tidemark_seal::keyfile;

/// Writes `contents` to a new file `path` with permission `mode` (before the
/// umask), atomically and never replacing an existing file (see
/// [`keyfile::write_new`], which every key file goes through).
///
/// # Errors
/// If `path` exists or any step fails.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    match keyfile::write_new(path, contents, mode) {
        Ok(()) => Ok(()),
        Err(KeyError::AlreadyExists) => {
            bail!("refusing to overwrite {}: remove it first or choose another --name", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}
