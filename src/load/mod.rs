//! Sending load to an ingest: the HTTP client, the open-loop driver, and what
//! was measured; and the query service's signing client. Shared by `tidemark loadgen` and `tidemark demo`.

mod client;
mod drive;
mod read_client;
mod read_drive;
mod stats;

pub use client::{EventsClient, LineOutcome};
pub use drive::{Load, OnAccepted, Shape, Source, Worker};
pub use read_client::ReadClient;
pub use read_drive::ReadLoad;
pub use stats::{Percentiles, Recorder, SecondSummary, Totals};
