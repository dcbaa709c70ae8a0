//! `tidemark snapshot list|verify|decrypt`: what a data team runs on an
//! archive. Verify and decrypt trust only the archiver public key given with
//! `--archiver-pub`; exit 1 when a snapshot fails verification (the reason is
//! printed), 2 for usage or configuration errors.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tidemark_archiver::manifest::{MANIFEST_NAME, Manifest};
use tidemark_archiver::reader::{self, ReadError};
use tidemark_archiver::storage::Archive;

use super::Outcome;
use super::archiver::ProfileArg;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List the snapshots of an archive, oldest first (manifests are read, not verified).
    List(ListArgs),
    /// Verify a snapshot: the manifest's signature, every part's size and SHA-256 and, with --key, every chunk.
    Verify(VerifyArgs),
    /// Verify and decrypt a snapshot into plain Parquet files (pyarrow, DuckDB, Spark read them).
    Decrypt(DecryptArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The archive: a directory, or s3://, gs://, az:// URL (the archiver's --out).
    #[arg(long, env = "TIDEMARK_ARCHIVE", value_name = "DIR|URL")]
    archive: String,
    /// Only this profile [default: both].
    #[arg(long, value_enum)]
    profile: Option<ProfileArg>,
}

#[derive(Debug, Args)]
pub struct Which {
    /// The archive: a directory, or s3://, gs://, az:// URL (the archiver's --out).
    #[arg(long, env = "TIDEMARK_ARCHIVE", value_name = "DIR|URL")]
    archive: String,
    /// The snapshot's profile.
    #[arg(long, value_enum, default_value_t = ProfileArg::Identified)]
    profile: ProfileArg,
    /// The snapshot id, or `latest` for the newest committed one.
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// The archiver's public key: the only key whose manifests are trusted.
    #[arg(long, env = "TIDEMARK_ARCHIVER_PUB", value_name = "FILE")]
    archiver_pub: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    which: Which,
    /// A recipient secret key: also decrypt and authenticate every chunk.
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
    /// Directory the Parquet files are written to (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

fn profile_name(p: ProfileArg) -> &'static str {
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
        }
    })
}

async fn list(args: ListArgs) -> anyhow::Result<Outcome> {
    let archive = Archive::open(&args.archive)?;
    let profiles = match args.profile {
        Some(p) => vec![p],
        None => vec![ProfileArg::Identified, ProfileArg::Deidentified],
    };
    for p in profiles {
        let profile = profile_name(p);
        for dir in archive.list_snapshots(profile).await? {
            if !dir.has_manifest {
                println!("{profile} {} incomplete (no manifest: not a snapshot; the archiver removes it)", dir.id);
                continue;
            }
            let bytes = archive.get(profile, &dir.id, MANIFEST_NAME).await?;
            match Manifest::decode_unverified(&bytes) {
                Ok(m) => println!(
                    "{profile} {} committed created_at={} rows={} parts={} recipients={} signed_by={}",
                    dir.id,
                    m.created_at,
                    m.rows,
                    m.parts.len(),
                    m.recipients.join(","),
                    m.archiver_key_id
                ),
                Err(e) => println!("{profile} {} unreadable manifest: {e}", dir.id),
            }
        }
    }
    Ok(Outcome::Ok)
}

async fn open(which: &Which) -> anyhow::Result<(Archive, String, tidemark_seal::ArchiverVerifyingKey)> {
    let archive = Archive::open(&which.archive)?;
    let archiver = tidemark_seal::load_archiver_public(&which.archiver_pub).context("loading --archiver-pub")?;
    let id = reader::resolve(&archive, profile_name(which.profile), &which.snapshot).await?;
    Ok((archive, id, archiver))
}

/// A verification failure is the snapshot's fault, not the command's: print it, exit 1.
fn failed(what: &str, id: &str, e: &ReadError) -> Outcome {
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
    let (archive, id, archiver) = open(&args.which).await?;
    let profile = profile_name(args.which.profile);
    match reader::verify(&archive, profile, &id, &archiver, key.as_ref()).await {
        Ok(v) => {
            let m = &v.manifest;
            let depth = if v.chunks_checked {
                "every hash and every chunk"
            } else {
                "every hash (no --key: chunks not decrypted)"
            };
            println!(
                "ok: snapshot {id} ({profile}): {} rows in {} parts; signature by {}; {depth} verified",
                m.rows,
                m.parts.len(),
                m.archiver_key_id
            );
            Ok(Outcome::Ok)
        }
        Err(e) => Ok(failed("verification", &id, &e)),
    }
}

async fn decrypt(args: DecryptArgs) -> anyhow::Result<Outcome> {
    let key = tidemark_seal::load_recipient_secret(&args.key).context("loading --key")?;
    let (archive, id, archiver) = open(&args.which).await?;
    let profile = profile_name(args.which.profile);
    match reader::decrypt(&archive, profile, &id, &archiver, &key, &args.out).await {
        Ok(files) => {
            for f in &files {
                println!("wrote {}", f.display());
            }
            println!("ok: snapshot {id} ({profile}) decrypted into {} ({} parts)", args.out.display(), files.len());
            Ok(Outcome::Ok)
        }
        Err(e) => Ok(failed("decryption", &id, &e)),
    }
}
