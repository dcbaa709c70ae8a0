//! `tidemark keys generate`: new key pairs, written so the secret never
//! exists with loose permissions.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use tidemark_schemas::keys::{KeyEntry, KeyRegistry};

use super::Outcome;
use crate::keyfiles::{create_archiver_key, create_recipient_key, new_signing_key, write_new, write_signing_key};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a key pair: DIR/NAME.key (secret, mode 0600) and DIR/NAME.pub;
    /// for a signing key also DIR/NAME.registry.toml (a `[[key]]` entry to append
    /// to the key registry).
    Generate(GenerateArgs),
}

/// What a key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyKind {
    /// An Ed25519 key that signs edit events (an EHR integration's key).
    Signing,
    /// A hybrid X25519 + ML-KEM-768 key that snapshots are encrypted to (a
    /// data recipient's key; its id is derived from the public key).
    Recipient,
    /// The Ed25519 key the archiver signs snapshot manifests with.
    Archiver,
    /// A 256-bit secret keying the de-identified profile's patient pseudonyms
    /// (one file, NAME.key; no public half).
    Dataset,
    /// A 256-bit secret the mergers seal their state and changelog records
    /// with, and the archiver and `tidemark state` check them with (one
    /// file, NAME.key; no public half).
    State,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What the key is for.
    #[arg(long, value_enum)]
    kind: KeyKind,
    /// Directory to write the files to (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// File name stem, [A-Za-z0-9._-], up to 128 characters; for signing keys also the key id (the keyid in
    /// signatures). Recipient and archiver key ids are derived from the public key.
    #[arg(long)]
    name: String,
    /// Signing keys only: the source (EHR system) whose events the key signs [default: NAME].
    #[arg(long)]
    source: Option<String>,
    /// Signing keys only: restrict the key to patient ids with this prefix (repeatable; absent: any patient).
    #[arg(long = "patient-prefix", value_name = "PREFIX")]
    patient_prefixes: Vec<String>,
    /// Signing keys only: the first instant (RFC 3339 UTC, e.g. 2026-01-01T00:00:00Z) of the events the key may
    /// sign, by their hlc [default: no bound].
    #[arg(long, value_name = "TIME")]
    not_before: Option<String>,
    /// Signing keys only: the last instant of the events the key may sign [default: no bound].
    #[arg(long, value_name = "TIME")]
    not_after: Option<String>,
    /// Signing keys only: what the key may sign, `write` (edit events) and/or `read` (requests to the query
    /// service), repeatable [default: write].
    #[arg(long = "scope", value_name = "SCOPE", value_parser = ["write", "read"])]
    scopes: Vec<String>,
}

pub fn run(command: KeysCommand) -> anyhow::Result<Outcome> {
    match command {
        KeysCommand::Generate(args) => match args.kind {
            KeyKind::Signing => generate_signing(&args),
            KeyKind::Recipient | KeyKind::Archiver => generate_archive_key(&args),
            KeyKind::Dataset => generate_dataset_key(&args),
            KeyKind::State => generate_state_key(&args),
        },
    }
}

fn is_file_safe(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks the flags every kind shares and returns `DIR/NAME.EXT` for each of
/// `exts`, none of which may exist yet; creates DIR.
fn prepare<const N: usize>(args: &GenerateArgs, exts: [&str; N]) -> anyhow::Result<[PathBuf; N]> {
    let name = args.name.as_str();
    if !is_file_safe(name) {
        bail!("--name `{name}` must be 1-128 characters of [A-Za-z0-9._-], not starting with `.`");
    }
    let signing_only = args.source.is_some()
        || !args.patient_prefixes.is_empty()
        || args.not_before.is_some()
        || args.not_after.is_some()
        || !args.scopes.is_empty();
    if args.kind != KeyKind::Signing && signing_only {
        bail!("--source, --patient-prefix, --not-before, --not-after and --scope apply only to --kind signing");
    }
    let paths = exts.map(|ext| args.out.join(format!("{name}{ext}")));
    for path in &paths {
        if path.exists() {
            bail!("refusing to overwrite {}: remove it first or choose another --name", path.display());
        }
    }
    fs::create_dir_all(&args.out).with_context(|| format!("creating directory {}", args.out.display()))?;
    Ok(paths)
}

fn generate_signing(args: &GenerateArgs) -> anyhow::Result<Outcome> {
    let name = args.name.as_str();
    let paths = prepare(args, [".key", ".pub", ".registry.toml"])?;
    let source = args.source.as_deref().unwrap_or(name);

    let key_file = new_signing_key(name, source)?;
    let prefixes = (!args.patient_prefixes.is_empty()).then(|| args.patient_prefixes.clone());
    let entry = KeyEntry {
        not_before: args.not_before.clone(),
        not_after: args.not_after.clone(),
        scopes: (!args.scopes.is_empty()).then(|| args.scopes.clone()),
        ..key_file.registry_entry(prefixes)
    };
    // Refuse now what the registry would refuse later (e.g. an empty prefix,
    // a time that is not RFC 3339 UTC, an empty window).
    KeyRegistry::from_entries(vec![entry.clone()]).context("checking the registry entry")?;

    let [key_path, pub_path, registry_path] = &paths;
    write_signing_key(&key_file, key_path, pub_path)?;
    write_new(registry_path, entry.to_toml().as_bytes(), 0o644)?;
    println!("wrote {} (secret signing key, mode 0600: keep it private)", key_path.display());
    println!("wrote {} (public key)", pub_path.display());
    println!("wrote {} (append it to the key registry that ingest and merger read)", registry_path.display());
    Ok(Outcome::Ok)
}

/// Writes a recipient or archiver key pair with the archiver's key-file functions,
/// so the CLI and the archiver service read and write one format.
fn generate_archive_key(args: &GenerateArgs) -> anyhow::Result<Outcome> {
    let [key_path, pub_path] = prepare(args, [".key", ".pub"])?;
    let (id, secret_use, public_use) = if args.kind == KeyKind::Recipient {
        let key = create_recipient_key(&key_path, &pub_path)?;
        (
            key.key_id(),
            "secret recipient key: it decrypts every snapshot encrypted to it",
            "list it among the archiver's recipients",
        )
    } else {
        let key = create_archiver_key(&key_path, &pub_path)?;
        (
            key.key_id(),
            "secret archiver key: only the archiver service reads it",
            "snapshot readers verify manifests with it",
        )
    };
    println!("wrote {} ({secret_use}; mode 0600: keep it private)", key_path.display());
    println!("wrote {} (public key {id}: {public_use})", pub_path.display());
    Ok(Outcome::Ok)
}

fn generate_dataset_key(args: &GenerateArgs) -> anyhow::Result<Outcome> {
    let [key_path] = prepare(args, [".key"])?;
    let key = tidemark_seal::DatasetKey::generate().context("generating a dataset key")?;
    tidemark_seal::save_dataset_key(&key_path, &key)?;
    println!(
        "wrote {} (secret dataset key {}: it keys the de-identified pseudonyms; mode 0600: keep it private)",
        key_path.display(),
        key.key_id()
    );
    Ok(Outcome::Ok)
}

fn generate_state_key(args: &GenerateArgs) -> anyhow::Result<Outcome> {
    let [key_path] = prepare(args, [".key"])?;
    let key = tidemark_seal::StateKey::generate().context("generating a state key")?;
    tidemark_seal::save_state_key(&key_path, &key)?;
    println!(
        "wrote {} (secret state key {}: give it to the mergers, the archiver and `tidemark state`; mode 0600: keep \
         it private)",
        key_path.display(),
        key.key_id()
    );
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use tidemark_schemas::keys::Scope;

    #[test]
    fn names_are_file_safe() {
        for ok in ["site-a-ehr-2026", "a", "k_1.v2"] {
            assert!(is_file_safe(ok), "{ok}");
        }
        for bad in ["", ".hidden", "../x", "a/b", "a b", "ü"] {
            assert!(!is_file_safe(bad), "{bad}");
        }
    }

    fn args(kind: KeyKind, out: &Path, name: &str) -> GenerateArgs {
        GenerateArgs {
            kind,
            out: out.to_owned(),
            name: name.to_owned(),
            source: None,
            patient_prefixes: vec![],
            not_before: None,
            not_after: None,
            scopes: vec![],
        }
    }

    #[test]
    fn recipient_and_archiver_keys_load_back_and_are_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        generate_archive_key(&args(KeyKind::Recipient, dir.path(), "r")).expect("recipient");
        generate_archive_key(&args(KeyKind::Archiver, dir.path(), "a")).expect("archiver");
        let r = tidemark_seal::load_recipient_secret(&dir.path().join("r.key")).expect("recipient secret loads");
        assert_eq!(
            tidemark_seal::load_recipient_public(&dir.path().join("r.pub")).expect("public").key_id(),
            r.key_id()
        );
        let a = tidemark_seal::load_archiver_secret(&dir.path().join("a.key")).expect("archiver secret loads");
        let vk = tidemark_seal::load_archiver_public(&dir.path().join("a.pub")).expect("archiver public loads");
        vk.verify(b"m", &a.sign(b"m")).expect("the pair matches");
        let err = generate_archive_key(&args(KeyKind::Recipient, dir.path(), "r")).expect_err("exists");
        assert!(format!("{err:#}").contains("refusing to overwrite"), "{err:#}");
        let mut with_source = args(KeyKind::Archiver, dir.path(), "b");
        with_source.source = Some("x".into());
        assert!(generate_archive_key(&with_source).is_err());
    }

    #[test]
    fn a_signing_key_gets_the_scopes_asked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut reader = args(KeyKind::Signing, dir.path(), "reader");
        reader.scopes = vec!["read".into()];
        generate_signing(&reader).expect("a read-only signing key");
        generate_signing(&args(KeyKind::Signing, dir.path(), "writer")).expect("a default key");
        let text = |name: &str| fs::read_to_string(dir.path().join(format!("{name}.registry.toml"))).expect("entry");
        let registry = KeyRegistry::from_toml_str(&(text("reader") + &text("writer"))).expect("both load");
        let reader = registry.get("reader").expect("reader");
        assert!(reader.may(Scope::Read) && !reader.may(Scope::Write));
        let writer = registry.get("writer").expect("writer");
        assert!(writer.may(Scope::Write) && !writer.may(Scope::Read));
        assert!(!text("writer").contains("scopes"), "the default entry stays as before");
        let mut archiver = args(KeyKind::Archiver, dir.path(), "arch");
        archiver.scopes = vec!["read".into()];
        assert!(generate_archive_key(&archiver).is_err(), "--scope is for signing keys");
    }
}
