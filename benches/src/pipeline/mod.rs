//! The end-to-end harness behind `scripts/bench-pipeline`: Tansu, ingest,
//! merger(s) and the archiver as release processes on this machine, a fixed
//! workload sent by `tidemark loadgen`, and beside it the broker's own bound
//! measured in the same run (raw librdkafka produce and consume of the same
//! bytes).
//!
//! Key decision: everything is a separate process started the way an operator
//! would, and measured from outside (`/proc`, `/metrics`, loadgen's report),
//! so the figures are those of the shipped binaries, not of a test build.

pub mod bound;
pub mod doc;
pub mod plot;
pub mod procs;
pub mod run;
pub mod sampler;
pub mod scrape;
pub mod services;
pub mod snapshot;
