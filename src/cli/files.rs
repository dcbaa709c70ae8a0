//! Files the CLI writes: created whole, with their final permissions from the
//! start, never overwriting.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::{Context as _, bail};

/// Writes `contents` to a new file `path` with permission `mode` (before the
/// umask). The data goes to a temporary file created with `mode`, is synced,
/// then hard-linked to `path`: a reader never sees a partial file, and an
/// existing `path` is never replaced.
///
/// # Errors
/// If `path` exists or any step fails.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).with_context(|| format!("creating temporary file {}", tmp.display()))?;
    let written = file.write_all(contents).and_then(|()| file.sync_all()).and_then(|()| fs::hard_link(&tmp, path));
    drop(file);
    // The temporary name goes whether or not the link was made.
    let _ = fs::remove_file(&tmp);
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            bail!("refusing to overwrite {}: remove it first or choose another --name", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("writing {}", path.display())),
    }
    // Make the new directory entry durable too.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
