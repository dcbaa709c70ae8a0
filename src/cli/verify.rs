//! `tidemark verify`: envelopes NDJSON -> one result line per envelope.
//!
//! Lines are verified in chunks through the batch verifier, then validated
//! against the catalog at the current time.

use std::io::{self, BufWriter, Write as _};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use tidemark_schemas::Catalog;
use tidemark_schemas::verify::Verifier;

use super::Outcome;
use super::config::CatalogChoice;
use super::lines::{self, Line};

/// Lines per batch verification: large enough for batching to pay off,
/// small enough to report results as input streams in.
const CHUNK_LINES: usize = 256;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Key registry file (TOML, `[[key]]` entries).
    #[arg(long, env = "TIDEMARK_KEYS", value_name = "REGISTRY")]
    keys: PathBuf,
    /// Record catalog file (TOML) [default: the built-in v1 catalog].
    #[arg(long, env = "TIDEMARK_CATALOG", value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Envelopes NDJSON, one DSSE envelope per line; `-` or absent: stdin.
    #[arg(value_name = "INPUT")]
    input: Option<PathBuf>,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<Outcome> {
    let registry = crate::keyfiles::load_registry(&args.keys)?;
    let catalog = CatalogChoice::load(args.catalog.as_deref())?;
    let catalog = catalog.get();
    let verifier = Verifier::new(registry);
    let mut input = lines::open(args.input.as_deref())?;
    let mut out = BufWriter::new(io::stdout().lock());
    let failed = input.for_each_chunk(CHUNK_LINES, |chunk| {
        verify_chunk(&verifier, catalog, chunk, &mut out).context("writing results")
    })?;
    out.flush().context("writing results")?;
    Ok(Outcome::from_failures(failed))
}

/// Verifies and reports one chunk; returns how many lines failed.
fn verify_chunk(verifier: &Verifier, catalog: &Catalog, chunk: &[Line], out: &mut impl io::Write) -> io::Result<usize> {
    let now_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let inputs: Vec<&[u8]> = chunk.iter().filter_map(|l| l.content.as_deref().ok()).collect();
    let mut results = verifier.verify_batch_and_validate(&inputs, catalog, now_ms).into_iter();
    let mut failed = 0;
    for line in chunk {
        let n = line.number;
        match &line.content {
            Err(len) => {
                failed += 1;
                writeln!(out, "line {n}: too_large: line is {len} bytes, the limit is {}", lines::MAX_LINE_BYTES)?;
            }
            Ok(_) => match results.next().expect("the verifier returns one result per input") {
                Ok(verified) => writeln!(out, "line {n}: ok {}", verified.event().event_id)?,
                Err(err) => {
                    failed += 1;
                    writeln!(out, "line {n}: {}: {err}", err.reason())?;
                }
            },
        }
    }
    Ok(failed)
}
