//! `tidemark`: the one binary of the Tidemark pipeline, a subcommand per task.
//!
//! Key decision: `main` only parses arguments, runs the subcommand and maps the
//! outcome to an exit code, so every command is a plain function that tests
//! can reason about. Exit codes: 0 everything ok, 1 some input failed
//! verification or validation (all input was still processed), 2 usage or
//! configuration error (nothing, or not everything, could be processed), 3 a
//! service stopped on a runtime failure (logged; a restart may help).

use std::process::ExitCode;

use clap::Parser as _;

mod cli;
mod demo;
mod keyfiles;
mod load;
mod lookup;
mod outcome;
mod service;
mod synth;

/// mimalloc instead of glibc's malloc: the services allocate and free many
/// small JSON values per event, and glibc's allocator took 10-12% of the
/// merger's and ingest's CPU in `perf` profiles under load (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(outcome) => outcome.exit_code(),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(cli::EXIT_USAGE)
        }
    }
}
