//! Where `snapshot decrypt` puts plaintext: patient records, so only their
//! owner may read them, and nobody else may steer where they are written.
//!
//! Key decision: the output directory is created 0700 (an existing one that
//! group or others can write is refused: they could plant symlinks or files
//! in it); every file is created new with mode 0600 from its first byte,
//! never through a symlink (`O_CREAT | O_EXCL | O_NOFOLLOW`), and put in
//! place with a hard link, which fails rather than replace anything already
//! at the final name. So the umask, a planted symlink or an existing file can
//! neither widen who reads the data nor redirect it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Why the output cannot be written safely.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The directory or a file is not safe to write to: choose another.
    #[error("output {path}: {why}")]
    Unsafe {
        /// The directory or file.
        path: String,
        /// What is wrong, and what to do.
        why: String,
    },
    /// Creating, writing or linking failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The directory or file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io { path: path.display().to_string(), source }
}

fn unsafe_at(path: &Path, why: impl Into<String>) -> OutputError {
    OutputError::Unsafe { path: path.display().to_string(), why: why.into() }
}

/// Creates `dir` (and missing parents) mode 0700, or checks an existing one:
/// a real directory (not a symlink) that group and others cannot write.
///
/// # Errors
/// [`OutputError::Unsafe`] for a symlink, a non-directory, or a directory
/// group or others can write; [`OutputError::Io`] if it cannot be created.
pub fn prepare_dir(dir: &Path) -> Result<(), OutputError> {
    if let Err(e) = std::fs::symlink_metadata(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(io(dir)(e));
        }
        DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
        // The umask only removes bits; set 0700 exactly in case the
        // directory appeared meanwhile with other bits (then this fails, or
        // the check below refuses it).
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    // Checked after creating too: someone may have put a symlink or their
    // own directory there between the two steps.
    match std::fs::symlink_metadata(dir).map_err(io(dir))? {
        m if m.file_type().is_symlink() => {
            Err(unsafe_at(dir, "is a symlink; refusing to follow it (pass the directory it points to, if it is yours)"))
        }
        m if !m.is_dir() => Err(unsafe_at(dir, "exists and is not a directory")),
        m if m.uid() != rustix::process::geteuid().as_raw() && m.uid() != 0 => Err(unsafe_at(
            dir,
            "belongs to another user, who could swap the files written in it: choose a directory of your own",
        )),
        m if m.mode() & 0o022 != 0 => Err(unsafe_at(
            dir,
            format!(
                "group or others can write this directory (mode {:o}), so they could plant files or symlinks in it: chmod 700 it or choose a private directory",
                m.mode() & 0o7777
            ),
        )),
        _ => Ok(()),
    }
}

/// Creates `path` new, mode 0600, refusing an existing file or symlink.
///
/// # Errors
/// [`OutputError::Unsafe`] if anything exists at `path`; [`OutputError::Io`].
pub fn create_private(path: &Path) -> Result<File, OutputError> {
    let opened = OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path);
    opened.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            unsafe_at(path, "already exists (a file or symlink); refusing to write through or over it")
        }
        _ => io(path)(e),
    })
}

/// Refuses a final name that is taken, before anything is decrypted.
///
/// # Errors
/// [`OutputError::Unsafe`] if anything exists at `path`.
pub fn check_free(path: &Path) -> Result<(), OutputError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
        Ok(_) => Err(unsafe_at(path, "already exists; refusing to overwrite it (choose an empty directory)")),
    }
}

/// Puts the finished `tmp` at `done` without replacing anything there: a
/// hard link fails if `done` exists, even as a dangling symlink.
///
/// # Errors
/// [`OutputError::Unsafe`] if `done` exists; [`OutputError::Io`].
pub fn publish(tmp: &Path, done: &Path) -> Result<(), OutputError> {
    std::fs::hard_link(tmp, done).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => unsafe_at(done, "appeared while decrypting; refusing to overwrite it"),
        _ => io(done)(e),
    })?;
    std::fs::remove_file(tmp).map_err(io(tmp))
}
