//! `tidemark keys generate`: new key pairs, written so the secret never
//! exists with loose permissions.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use ed25519_dalek::SigningKey;
use rand::TryRng as _;
use tidemark_schemas::keys::{KeyRegistry, SigningKeyFile};
use zeroize::Zeroizing;

use super::Outcome;
use super::files::write_new;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a key pair: DIR/NAME.key (secret, mode 0600), DIR/NAME.pub and
    /// DIR/NAME.registry.toml (a [[key]] entry to append to the key registry).
    Generate(GenerateArgs),
}

/// What a key is for. Recipient and archiver keys will join this list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyKind {
    /// An Ed25519 key that signs edit events (an EHR integration's key).
    Signing,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What the key is for.
    #[arg(long, value_enum)]
    kind: KeyKind,
    /// Directory to write the files to (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Key id (the keyid in signatures) and file name stem: [A-Za-z0-9._-], up to 128 characters.
    #[arg(long)]
    name: String,
    /// The source (EHR system) whose events the key signs [default: NAME].
    #[arg(long)]
    source: Option<String>,
    /// Restrict the key to patient ids with this prefix (repeatable; absent: any patient).
    #[arg(long = "patient-prefix", value_name = "PREFIX")]
    patient_prefixes: Vec<String>,
}

pub fn run(command: KeysCommand) -> anyhow::Result<Outcome> {
    match command {
        KeysCommand::Generate(args) => match args.kind {
            KeyKind::Signing => generate_signing(&args),
        },
    }
}

fn is_file_safe(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn generate_signing(args: &GenerateArgs) -> anyhow::Result<Outcome> {
    let name = args.name.as_str();
    if !is_file_safe(name) {
        bail!("--name `{name}` must be 1-128 characters of [A-Za-z0-9._-], not starting with `.`");
    }
    let source = args.source.as_deref().unwrap_or(name);
    let paths = [".key", ".pub", ".registry.toml"].map(|ext| args.out.join(format!("{name}{ext}")));
    for path in &paths {
        if path.exists() {
            bail!("refusing to overwrite {}: remove it first or choose another --name", path.display());
        }
    }

    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::SysRng.try_fill_bytes(seed.as_mut()).context("reading randomness from the operating system")?;
    let key_file =
        SigningKeyFile::new(name, source, SigningKey::from_bytes(&seed)).context("checking the key's id and source")?;
    let prefixes = (!args.patient_prefixes.is_empty()).then(|| args.patient_prefixes.clone());
    let entry = key_file.registry_entry(prefixes);
    // Refuse now what the registry would refuse later (e.g. an empty prefix).
    KeyRegistry::from_entries(vec![entry.clone()]).context("checking the registry entry")?;

    fs::create_dir_all(&args.out).with_context(|| format!("creating directory {}", args.out.display()))?;
    let [key_path, pub_path, registry_path] = &paths;
    write_new(key_path, key_file.to_toml().as_bytes(), 0o600)?;
    write_new(pub_path, format!("{}\n", entry.public_key).as_bytes(), 0o644)?;
    write_new(registry_path, entry.to_toml().as_bytes(), 0o644)?;
    println!("wrote {} (secret signing key, mode 0600: keep it private)", key_path.display());
    println!("wrote {} (public key)", pub_path.display());
    println!("wrote {} (append it to the key registry that ingest and merger read)", registry_path.display());
    Ok(Outcome::Ok)
}

/// Reads a secret key file, warning if others may read it.
///
/// # Errors
/// If the file cannot be read or is not a valid key file.
pub fn load_signing_key(path: &Path) -> anyhow::Result<SigningKeyFile> {
    let text =
        Zeroizing::new(fs::read_to_string(path).with_context(|| format!("reading key file {}", path.display()))?);
    #[cfg(unix)]
    if let Ok(meta) = fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!("warning: {} is readable by others (mode {mode:o}); run `chmod 600` on it", path.display());
        }
    }
    SigningKeyFile::from_toml_str(&text).with_context(|| format!("loading key file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_safe() {
        for ok in ["site-a-ehr-2026", "a", "k_1.v2"] {
            assert!(is_file_safe(ok), "{ok}");
        }
        for bad in ["", ".hidden", "../x", "a/b", "a b", "ü"] {
            assert!(!is_file_safe(bad), "{bad}");
        }
    }
}
