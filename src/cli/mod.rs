//! Command-line definitions and dispatch. Each subcommand lives in its own
//! module with its `Args` and a `run` that returns an [`Outcome`].

use clap::{Parser, Subcommand};

pub use crate::outcome::{EXIT_USAGE, Outcome};

mod archiver;
pub(crate) mod config;
mod converge;
mod demo;
mod fold;
mod front;
mod ingest;
mod keys;
mod lines;
mod loadgen;
mod merger;
mod query;
mod read;
mod sign;
mod snapshot;
mod snapshot_grant;
mod snapshot_keys;
mod state;
mod verify;

/// Tidemark: signed patient-record edits, merged by CRDT, archived encrypted.
#[derive(Debug, Parser)]
#[command(name = "tidemark", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate keys.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Sign edit events (NDJSON, one event per line) into DSSE envelopes (NDJSON on stdout).
    Sign(sign::SignArgs),
    /// Verify DSSE envelopes (NDJSON) against a key registry and the record catalog.
    Verify(verify::VerifyArgs),
    /// Replay envelopes (NDJSON) offline into one state view per patient (NDJSON, sorted by patient id).
    Fold(fold::FoldArgs),
    /// Run a merger worker: fold the edit topic into patient state (one consumer group).
    Merger(merger::MergerArgs),
    /// Run the HTTP ingest service: verify signed edit events and produce them to Kafka.
    Ingest(ingest::IngestArgs),
    /// Run the query service: signed, audited reads of patient views, read-your-writes, a change feed.
    Query(query::QueryArgs),
    /// Run the archiver: consistent, encrypted Parquet snapshots of the state topic.
    Archiver(archiver::ArchiverArgs),
    /// Read snapshots: list, verify, decrypt.
    Snapshot {
        #[command(subcommand)]
        command: snapshot::SnapshotCommand,
    },
    /// Read one patient's view from a query service (signed with a read key), as `tidemark fold` prints it.
    Get(read::GetArgs),
    /// Print the patients that changed, from a query service's change feed (signed with a read key).
    Changes(read::ChangesArgs),
    /// Print one patient's latest view from the state topic, as `tidemark fold` prints it.
    State(state::StateArgs),
    /// Compare two regions' state topics: exit 0 when every patient's view is the same in both.
    Converge(converge::ConvergeArgs),
    /// Run the whole pipeline in one process on an embedded Kafka, driven by synthetic clinicians.
    Demo(demo::DemoArgs),
    /// Send signed synthetic edits at a target rate to a running ingest; report throughput and latency.
    Loadgen(loadgen::LoadgenArgs),
}

/// Runs the chosen subcommand.
///
/// # Errors
/// Configuration and I/O errors (exit code 2); failed input lines are an
/// [`Outcome`], not an error.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Keys { command } => keys::run(command),
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Fold(args) => fold::run(args),
        Command::Merger(args) => merger::run(args),
        Command::Ingest(args) => ingest::run(args),
        Command::Query(args) => query::run(args),
        Command::Archiver(args) => archiver::run(args),
        Command::Snapshot { command } => snapshot::run(command),
        Command::Get(args) => read::run_get(args),
        Command::Changes(args) => read::run_changes(args),
        Command::State(args) => state::run(args),
        Command::Converge(args) => converge::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Loadgen(args) => loadgen::run(args),
    }
}
