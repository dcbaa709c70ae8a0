//! Sending load to an ingest: the HTTP client, the open-loop driver, and what
//! was measured. Shared by `tidemark loadgen` and `tidemark demo`.

mod client;
mod drive;
mod stats;

pub use client::{EventsClient, LineOutcome};
pub use drive::{Load, OnAccepted, Shape, Source, Worker};
pub use stats::{Percentiles, Recorder, SecondSummary, Totals};
