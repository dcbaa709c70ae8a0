//! `tidemark snapshot grant`: add or remove a snapshot's recipients by
//! writing the next signed revision of its manifest; no data file changes.
//!
//! Key decision: a grant needs both the archiver's signing key (only the
//! archiver's key makes a revision readers trust) and the key of a current
//! recipient (the master key is unwrapped, never stored), so neither an
//! archive operator nor a data recipient alone can widen who reads a
//! snapshot.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use tidemark_archiver::pme;
use tidemark_archiver::reader;
use tidemark_archiver::revision;
use tidemark_archiver::storage::Archive;

use super::Outcome;
use super::snapshot::{failed, profile_name};

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The archive, profile and snapshot (`latest` or an id).
    #[command(flatten)]
    which: GrantWhich,
    /// The archiver's secret key: it signs the new revision.
    #[arg(long, env = "TIDEMARK_ARCHIVER_KEY", value_name = "FILE")]
    archiver_key: PathBuf,
    /// A current recipient's secret key: it unwraps the master key to re-wrap it.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// A recipient public key to add (repeatable).
    #[arg(long, value_name = "PUB")]
    add: Vec<PathBuf>,
    /// A recipient key id (`tmr1-…`) to remove (repeatable). Not revocation: its wrap stays in revision 1,
    /// which never changes; only a new snapshot shuts a key out.
    #[arg(long, value_name = "KEY_ID")]
    remove: Vec<String>,
}

/// The readers' snapshot selector without `--archiver-pub` (the signing key
/// is given) or `--pin` (a grant is not a read of `latest`).
#[derive(Debug, Args)]
pub struct GrantWhich {
    /// The archive: a directory, or s3://, gs://, az:// URL (the archiver's --out).
    #[arg(long, env = "TIDEMARK_ARCHIVE", value_name = "DIR|URL")]
    archive: String,
    /// The snapshot's profile.
    #[arg(long, value_enum, default_value_t = super::archiver::ProfileArg::Identified)]
    profile: super::archiver::ProfileArg,
    /// The snapshot id, or `latest`.
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
}

pub async fn grant(args: GrantArgs) -> anyhow::Result<Outcome> {
    let signer = tidemark_seal::load_archiver_secret(&args.archiver_key).context("loading --archiver-key")?;
    let key = tidemark_seal::load_recipient_secret(&args.key).context("loading --key")?;
    let add = args
        .add
        .iter()
        .map(|p| tidemark_seal::load_recipient_public(p).with_context(|| format!("loading --add {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let archive = Archive::open_existing(&args.which.archive)?;
    let archiver = signer.verifying_key();
    let profile = profile_name(args.which.profile);
    let (id, _) = reader::resolve(&archive, profile, &args.which.snapshot, &archiver).await?;
    let (current, sha) = match reader::manifest_revision(&archive, profile, &id, &archiver).await {
        Ok(m) => m,
        Err(e) => return Ok(failed("grant", &id, &e)),
    };
    let keys = match pme::read_keys(&current, &key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("grant FAILED for snapshot {id}: {e}");
            return Ok(Outcome::SomeInputFailed);
        }
    };
    let next = revision::revise(&current, &sha, &keys.master, &add, &args.remove).context("refusing the grant")?;
    revision::store(&archive, &next, &signer).await.context("writing the new manifest revision")?;
    let ids: Vec<&str> = next.recipients.iter().map(|r| r.key_id.as_str()).collect();
    println!("ok: snapshot {id} ({profile}) revision {}: recipients {}", next.revision, ids.join(","));
    if !args.remove.is_empty() {
        eprintln!(
            "note: removal is not revocation: the removed keys' wraps stay in revision 1 (manifest.dsse.json, which \
             never changes), so they can still unwrap this snapshot's master key. To shut them out, take a new \
             snapshot without them and delete this one."
        );
    }
    Ok(Outcome::Ok)
}
