//! The `age` command-line tool (X25519 + ChaCha20-Poly1305 in 64 KiB chunks)
//! encrypting and decrypting the same bytes as our sealed parts: the
//! everyday peer for "encrypt a file to a recipient's public key".
//!
//! Key decision: `age` runs as a subprocess on a file, as an operator would
//! run it, so its figure includes process start and reading the file (from
//! the page cache: the file was just written and read once). It is a peer,
//! not a bound: it does not hash, and its KEM is classical only.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use tempfile::TempDir;

/// How to get `age` when it is missing.
pub const INSTALL_HINT: &str = "`scripts/deps` installs it (Debian package `age`: apt-get install -y age)";

/// A temporary directory with an `age` identity, the plaintext file and its
/// encryption.
pub struct Age {
    dir: TempDir,
    recipient: String,
    identity: PathBuf,
    plain: PathBuf,
    sealed: PathBuf,
}

/// Why the `age` peer cannot run.
#[derive(Debug)]
pub enum AgeError {
    /// `age` or `age-keygen` is not on the PATH.
    NotInstalled,
    /// It is installed but failed: what we ran and what it said.
    Failed(String),
}

impl std::fmt::Display for AgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgeError::NotInstalled => write!(f, "`age` is not installed: {INSTALL_HINT}"),
            AgeError::Failed(why) => write!(f, "`age` failed: {why}"),
        }
    }
}

fn run(cmd: &mut Command) -> Result<Vec<u8>, AgeError> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AgeError::NotInstalled,
        _ => AgeError::Failed(format!("{cmd:?}: {e}")),
    })?;
    if !out.status.success() {
        return Err(AgeError::Failed(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(out.stdout)
}

impl Age {
    /// Makes a key with `age-keygen`, writes `bytes` to a file, encrypts it
    /// once (the input of [`Age::decrypt`]) and reads both files once, so
    /// that every timed run reads from the page cache.
    ///
    /// # Errors
    /// [`AgeError::NotInstalled`] when `age` or `age-keygen` is missing;
    /// [`AgeError::Failed`] when a command or a file operation fails.
    pub fn prepare(bytes: &[u8]) -> Result<Self, AgeError> {
        let failed = |what: &str, e: std::io::Error| AgeError::Failed(format!("{what}: {e}"));
        let dir = tempfile::tempdir().map_err(|e| failed("creating a temporary directory", e))?;
        let identity = dir.path().join("identity.txt");
        run(Command::new("age-keygen").arg("-o").arg(&identity))?;
        let recipient =
            String::from_utf8_lossy(&run(Command::new("age-keygen").arg("-y").arg(&identity))?).trim().to_owned();
        let plain = dir.path().join("part.parquet");
        fs::write(&plain, bytes).map_err(|e| failed("writing the plaintext file", e))?;
        let sealed = dir.path().join("part.parquet.age");
        run(Command::new("age").arg("-r").arg(&recipient).arg("-o").arg(&sealed).arg(&plain))?;
        for f in [&plain, &sealed] {
            fs::read(f).map_err(|e| failed("reading a file into the page cache", e))?;
        }
        Ok(Self { dir, recipient, identity, plain, sealed })
    }

    /// Seconds for `age -r RECIPIENT -o /dev/null FILE`, process start included.
    ///
    /// # Errors
    /// [`AgeError::Failed`] if `age` fails.
    pub fn encrypt(&self) -> Result<f64, AgeError> {
        time(Command::new("age").arg("-r").arg(&self.recipient).arg("-o").arg("/dev/null").arg(&self.plain))
    }

    /// Seconds for `age -d -i IDENTITY -o /dev/null FILE.age`, process start included.
    ///
    /// # Errors
    /// [`AgeError::Failed`] if `age` fails.
    pub fn decrypt(&self) -> Result<f64, AgeError> {
        time(Command::new("age").arg("-d").arg("-i").arg(&self.identity).arg("-o").arg("/dev/null").arg(&self.sealed))
    }

    /// Seconds for `age` to encrypt an empty file: its fixed cost (process
    /// start, key parsing, the X25519 exchange).
    ///
    /// # Errors
    /// [`AgeError::Failed`] if `age` fails or the file cannot be written.
    pub fn encrypt_empty(&self) -> Result<f64, AgeError> {
        let empty = self.dir.path().join("empty");
        fs::write(&empty, b"").map_err(|e| AgeError::Failed(format!("writing an empty file: {e}")))?;
        time(Command::new("age").arg("-r").arg(&self.recipient).arg("-o").arg("/dev/null").arg(&empty))
    }

    /// Where the files are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn time(cmd: &mut Command) -> Result<f64, AgeError> {
    let t = Instant::now();
    run(cmd)?;
    Ok(t.elapsed().as_secs_f64())
}
