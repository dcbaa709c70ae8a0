//! `tidemark sign`: events NDJSON -> DSSE envelopes NDJSON.
//!
//! Each line's exact bytes (without the line ending) are the signed payload:
//! the line is parsed only to report errors early and to check its source.

use std::io::{self, BufWriter, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use tidemark_schemas::keys::SigningKeyFile;

use super::Outcome;
use super::lines::{self, Line};
use crate::keyfiles::load_signing_key;

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Secret key file written by `tidemark keys generate`.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Events NDJSON, one edit event per line; `-` or absent: stdin.
    #[arg(value_name = "INPUT")]
    input: Option<PathBuf>,
}

pub fn run(args: SignArgs) -> anyhow::Result<Outcome> {
    let key = load_signing_key(&args.key)?;
    let mut input = lines::open(args.input.as_deref())?;
    let mut out = BufWriter::new(io::stdout().lock());
    let (mut signed, mut failed) = (0usize, 0usize);
    while let Some(line) = input.next_line().context("reading the events")? {
        if line.is_blank() {
            continue;
        }
        match sign_line(&key, &line) {
            Ok(envelope) => {
                out.write_all(envelope.as_bytes()).and_then(|()| out.write_all(b"\n")).context("writing envelopes")?;
                signed += 1;
            }
            Err(message) => {
                failed += 1;
                eprintln!("line {}: {message}", line.number);
            }
        }
    }
    out.flush().context("writing envelopes")?;
    if failed > 0 {
        eprintln!("signed {signed} events; {failed} lines failed and were not signed");
    }
    Ok(Outcome::from_failures(failed))
}

/// The envelope's JSON, or `reason: message`.
fn sign_line(key: &SigningKeyFile, line: &Line) -> Result<String, String> {
    let bytes = match &line.content {
        Ok(bytes) => bytes,
        Err(len) => return Err(format!("too_large: line is {len} bytes, the limit is {}", lines::MAX_LINE_BYTES)),
    };
    key.sign_event(bytes).map(|envelope| envelope.to_json()).map_err(|refused| refused.to_string())
}
