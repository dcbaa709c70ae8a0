//! `tidemark fold`: the offline reference. Envelopes NDJSON in, one state view
//! per patient out (NDJSON sorted by patient id): exactly what the live
//! pipeline's state topic must hold for the same events.
//!
//! Skipped lines are reported on stderr as `line N: reason: message`; the views
//! of everything else are still printed, and the exit code is then 1.

use std::io::{self, BufWriter, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use tidemark_crdt::fold::Fold;
use tidemark_schemas::verify::Verifier;

use super::Outcome;
use super::config::CatalogChoice;
use super::lines::{self, Line};

/// Lines per chunk: signatures of a chunk are verified as one batch.
const CHUNK_LINES: usize = 256;

#[derive(Debug, Args)]
pub struct FoldArgs {
    /// Key registry file: verify every envelope and skip those that fail.
    /// Without it, payloads are read unverified (still checked against the catalog).
    #[arg(long, env = "TIDEMARK_KEYS", value_name = "REGISTRY")]
    keys: Option<PathBuf>,
    /// Record catalog file (TOML) [default: the built-in v1 catalog].
    #[arg(long, env = "TIDEMARK_CATALOG", value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Envelopes NDJSON, one DSSE envelope per line; `-` or absent: stdin.
    #[arg(value_name = "INPUT")]
    input: Option<PathBuf>,
}

pub fn run(args: FoldArgs) -> anyhow::Result<Outcome> {
    let catalog = CatalogChoice::load(args.catalog.as_deref())?;
    let verifier = args.keys.as_deref().map(crate::keyfiles::load_registry).transpose()?.map(Verifier::new);
    let mut fold = Fold::new(catalog.get(), verifier.as_ref());
    let mut input = lines::open(args.input.as_deref())?;
    let mut err = io::stderr().lock();
    let failed = input.for_each_chunk(CHUNK_LINES, |chunk| {
        fold_chunk(&mut fold, chunk, &mut err).context("reporting skipped lines")
    })?;
    let mut out = BufWriter::new(io::stdout().lock());
    for view in fold.views() {
        serde_json::to_writer(&mut out, &view).context("writing views")?;
        out.write_all(b"\n").context("writing views")?;
    }
    out.flush().context("writing views")?;
    Ok(Outcome::from_failures(failed))
}

/// Folds one chunk and reports its skipped lines; returns how many.
fn fold_chunk(fold: &mut Fold<'_>, chunk: &[Line], err: &mut impl io::Write) -> io::Result<usize> {
    let mut failed = 0;
    let mut inputs: Vec<(usize, &[u8])> = Vec::with_capacity(chunk.len());
    for line in chunk {
        match &line.content {
            Ok(bytes) => inputs.push((line.number, bytes)),
            Err(len) => {
                failed += 1;
                writeln!(
                    err,
                    "line {}: too_large: line is {len} bytes, the limit is {}",
                    line.number,
                    lines::MAX_LINE_BYTES
                )?;
            }
        }
    }
    for e in fold.fold_lines(&inputs) {
        failed += 1;
        writeln!(err, "line {}: {}: {}", e.line, e.reason, e.message)?;
    }
    Ok(failed)
}
