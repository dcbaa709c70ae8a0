//! `tidemark snapshot list|verify|decrypt|keys|grant`: what a data team runs on an
//! archive. Verify and decrypt trust only the archiver public key given with
//! `--archiver-pub`; exit 1 when a snapshot fails verification (the reason is
//! printed), 2 for usage or configuration errors.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tidemark_archiver::chain::{self, Chain, printable};
use tidemark_archiver::manifest::Manifest;
use tidemark_archiver::pin::{self, PinError, PinOutcome};
use tidemark_archiver::reader::{self, ReadError};
use tidemark_archiver::revision;
use tidemark_archiver::storage::Archive;
use tidemark_seal::ArchiverVerifyingKey;

use super::Outcome;
use super::archiver::ProfileArg;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List the snapshots of an archive, oldest first; with --archiver-pub, each manifest is verified.
    List(ListArgs),
    /// Verify a snapshot: the manifest's signature, every part's size and SHA-256 and, with --key, every page.
    Verify(VerifyArgs),
    /// Verify and decrypt a snapshot into plain Parquet files. Prefer `keys`: readers decrypt in place.
    Decrypt(DecryptArgs),
    /// Verify a snapshot and print what pyarrow, DuckDB or Spark need to read it in place, encrypted.
    Keys(super::snapshot_keys::KeysArgs),
    /// Add or remove recipients of a snapshot: a new signed manifest revision, no data file rewritten.
    Grant(super::snapshot_grant::GrantArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The archive: a directory, or s3://, gs://, az:// URL (the archiver's --out).
    #[arg(long, env = "TIDEMARK_ARCHIVE", value_name = "DIR|URL")]
    archive: String,
    /// Only this profile [default: both].
    #[arg(long, value_enum)]
    profile: Option<ProfileArg>,
    /// The archiver's public key: verify each manifest and order by sequence. Without it, every entry is
    /// marked unverified.
    #[arg(long, env = "TIDEMARK_ARCHIVER_PUB", value_name = "FILE")]
    archiver_pub: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Which {
    /// The archive: a directory, or s3://, gs://, az:// URL (the archiver's --out).
    #[arg(long, env = "TIDEMARK_ARCHIVE", value_name = "DIR|URL")]
    pub(super) archive: String,
    /// The snapshot's profile.
    #[arg(long, value_enum, default_value_t = ProfileArg::Identified)]
    pub(super) profile: ProfileArg,
    /// The snapshot id, or `latest` for the newest committed one.
    #[arg(value_name = "SNAPSHOT")]
    pub(super) snapshot: String,
    /// The archiver's public key: the only key whose manifests are trusted.
    #[arg(long, env = "TIDEMARK_ARCHIVER_PUB", value_name = "FILE")]
    archiver_pub: PathBuf,
    /// Pin file (one per archive): refuse a `latest` older than one seen before, and record the newest
    /// seen. Created (mode 0600) on first use. Only with `latest`.
    #[arg(long, value_name = "FILE")]
    pin: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    which: Which,
    /// A recipient secret key: also decrypt and authenticate every page.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    #[command(flatten)]
    which: Which,
    /// The recipient secret key the snapshot was encrypted to.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Directory the Parquet files are written to: created mode 0700 if missing; an existing one must not be
    /// writable by group or others, and files already there are never overwritten.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub(super) fn profile_name(p: ProfileArg) -> &'static str {
    match p {
        ProfileArg::Identified => "identified",
        ProfileArg::Deidentified => "deidentified",
    }
}

pub fn run(command: SnapshotCommand) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        match command {
            SnapshotCommand::List(args) => list(args).await,
            SnapshotCommand::Verify(args) => verify(args).await,
            SnapshotCommand::Decrypt(args) => decrypt(args).await,
            SnapshotCommand::Keys(args) => super::snapshot_keys::keys(args).await,
            SnapshotCommand::Grant(args) => super::snapshot_grant::grant(args).await,
        }
    })
}

async fn list(args: ListArgs) -> anyhow::Result<Outcome> {
    let archive = Archive::open_existing(&args.archive)?;
    let archiver = args
        .archiver_pub
        .as_deref()
        .map(tidemark_seal::load_archiver_public)
        .transpose()
        .context("loading --archiver-pub")?;
    let profiles = match args.profile {
        Some(p) => vec![p],
        None => vec![ProfileArg::Identified, ProfileArg::Deidentified],
    };
    for p in profiles {
        let profile = profile_name(p);
        match &archiver {
            Some(key) => list_verified(&archive, profile, key).await?,
            None => list_unverified(&archive, profile).await?,
        }
    }
    Ok(Outcome::Ok)
}

/// Without the archiver key nothing can be trusted: every line says so, and
/// every value from a manifest is stripped of control characters (anyone who
/// can write to the archive chooses them).
async fn list_unverified(archive: &Archive, profile: &str) -> anyhow::Result<()> {
    for dir in archive.list_snapshots(profile).await? {
        let id = printable(&dir.id);
        if !dir.has_manifest {
            println!("{profile} {id} incomplete (no manifest: not a snapshot; the archiver removes it)");
            continue;
        }
        let Some(bytes) = chain::read_manifest(archive, profile, &dir.id).await? else {
            println!("{profile} {id} unreadable manifest: larger than {} bytes", chain::MAX_MANIFEST_BYTES);
            continue;
        };
        match Manifest::decode_unverified(&bytes) {
            Ok(m) => println!(
                "{profile} {id} unverified (no --archiver-pub) sequence={} created_at={} rows={} parts={} recipients={} signed_by={}",
                m.sequence,
                printable(&m.created_at),
                m.rows,
                m.parts.len(),
                printable(&recipient_ids(&m)),
                printable(&m.archiver_key_id)
            ),
            Err(e) => println!("{profile} {id} unreadable manifest: {}", printable(&e.to_string())),
        }
    }
    Ok(())
}

async fn list_verified(archive: &Archive, profile: &str, key: &ArchiverVerifyingKey) -> anyhow::Result<()> {
    let chain = chain::scan(archive, profile, key).await?;
    for link in &chain.links {
        let m = &link.manifest;
        // The recipients as readers see them: the newest revision's.
        let access = match revision::latest(archive, m.clone(), link.manifest_sha256.clone(), key).await {
            Ok((r, _)) => format!("revision={} recipients={}", r.revision, recipient_ids(&r)),
            Err(e) => format!("revisions INVALID ({})", printable(&e.to_string())),
        };
        println!(
            "{profile} {} verified sequence={} created_at={} rows={} parts={} {access} signed_by={}",
            link.id,
            m.chain_sequence(),
            m.created_at,
            m.rows,
            m.parts.len(),
            m.archiver_key_id
        );
    }
    for u in &chain.unverified {
        println!("{profile} {} UNVERIFIED (not a snapshot; ignored): {}", u.id, u.reason);
    }
    for id in &chain.incomplete {
        println!("{profile} {} incomplete (no manifest: not a snapshot; the archiver removes it)", printable(id));
    }
    for b in chain.breaks() {
        println!("{profile} chain broken: {b}");
    }
    Ok(())
}

/// The recipients' key ids, comma-separated.
fn recipient_ids(m: &Manifest) -> String {
    m.recipients.iter().map(|r| r.key_id.as_str()).collect::<Vec<_>>().join(",")
}

/// What `open` found: the archive, the snapshot to read, the trusted key.
pub(super) struct Opened {
    pub(super) archive: Archive,
    pub(super) id: String,
    pub(super) archiver: ArchiverVerifyingKey,
    pub(super) chain: Chain,
}

/// Opens the archive and resolves the snapshot; warns (stderr) about every
/// directory whose manifest does not verify, since `latest` skipped it.
pub(super) async fn open(which: &Which) -> anyhow::Result<Opened> {
    if which.pin.is_some() && which.snapshot != "latest" {
        anyhow::bail!("--pin applies only to `latest` (an older snapshot asked for by id is not a rollback)");
    }
    let archive = Archive::open_existing(&which.archive)?;
    let archiver = tidemark_seal::load_archiver_public(&which.archiver_pub).context("loading --archiver-pub")?;
    let profile = profile_name(which.profile);
    let (id, chain) = reader::resolve(&archive, profile, &which.snapshot, &archiver).await?;
    for u in &chain.unverified {
        eprintln!(
            "warning: ignoring {profile}/{}: its manifest does not verify ({}); it is not a snapshot",
            u.id, u.reason
        );
    }
    Ok(Opened { archive, id, archiver, chain })
}

/// With `--pin`: refuses a rolled-back `latest` (exit 1) and records a newer one.
pub(super) fn check_pin(what: &str, which: &Which, opened: &Opened) -> anyhow::Result<Option<Outcome>> {
    let (Some(path), Some(latest)) = (&which.pin, opened.chain.latest()) else { return Ok(None) };
    let profile = profile_name(which.profile);
    match pin::check(path, &which.archive, profile, latest) {
        Ok(PinOutcome::FirstUse) => {
            eprintln!(
                "pin: first use for {profile}: recorded sequence {} in {}",
                latest.manifest.chain_sequence(),
                path.display()
            );
        }
        Ok(PinOutcome::Advanced { from }) => {
            eprintln!("pin: {profile} moved from sequence {from} to {}", latest.manifest.chain_sequence());
        }
        Ok(PinOutcome::Unchanged) => {}
        Err(e @ (PinError::Rollback { .. } | PinError::Replaced { .. })) => {
            eprintln!("{what} FAILED for snapshot {}: {e}", opened.id);
            return Ok(Some(Outcome::SomeInputFailed));
        }
        Err(e) => return Err(e).context("checking --pin"),
    }
    Ok(None)
}

/// A verification failure is the snapshot's fault, not the command's: print it, exit 1.
pub(super) fn failed(what: &str, id: &str, e: &ReadError) -> Outcome {
    eprintln!("{what} FAILED for snapshot {id}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        eprintln!("  caused by: {s}");
        source = s.source();
    }
    Outcome::SomeInputFailed
}

async fn verify(args: VerifyArgs) -> anyhow::Result<Outcome> {
    // Keys first: a bad key file is a configuration error whatever the archive holds.
    let key = args.key.as_deref().map(tidemark_seal::load_recipient_secret).transpose().context("loading --key")?;
    let opened = open(&args.which).await?;
    if let Some(refused) = check_pin("verification", &args.which, &opened)? {
        return Ok(refused);
    }
    let Opened { archive, id, archiver, chain } = &opened;
    let profile = profile_name(args.which.profile);
    match reader::verify(archive, profile, id, archiver, key.as_ref()).await {
        Ok(_) if !chain.breaks().is_empty() => {
            for b in chain.breaks() {
                eprintln!("verification FAILED for snapshot {id}: the chain of {profile} is broken: {b}");
            }
            Ok(Outcome::SomeInputFailed)
        }
        Ok(v) => {
            let m = &v.manifest;
            let depth = if v.pages_checked {
                "every hash and every page"
            } else {
                "every hash (no --key: pages not decrypted)"
            };
            println!(
                "ok: snapshot {id} ({profile}): sequence {}, {} rows in {} parts; signature by {}; {depth} verified",
                m.chain_sequence(),
                m.rows,
                m.parts.len(),
                m.archiver_key_id
            );
            Ok(Outcome::Ok)
        }
        Err(e) => Ok(failed("verification", id, &e)),
    }
}

async fn decrypt(args: DecryptArgs) -> anyhow::Result<Outcome> {
    let key = tidemark_seal::load_recipient_secret(&args.key).context("loading --key")?;
    let opened = open(&args.which).await?;
    if let Some(refused) = check_pin("decryption", &args.which, &opened)? {
        return Ok(refused);
    }
    let Opened { archive, id, archiver, .. } = &opened;
    let profile = profile_name(args.which.profile);
    match reader::decrypt(archive, profile, id, archiver, &key, &args.out).await {
        Ok(files) => {
            for f in &files {
                println!("wrote {}", f.display());
            }
            println!("ok: snapshot {id} ({profile}) decrypted into {} ({} parts)", args.out.display(), files.len());
            Ok(Outcome::Ok)
        }
        // Not the snapshot's fault: the output is unsafe to write. Exit 2.
        Err(ReadError::UnsafeOutput(e)) => Err(e).context("refusing the --out directory; nothing was written"),
        Err(e) => Ok(failed("decryption", id, &e)),
    }
}
