//! Plumbing every service shares: logs, the metrics endpoint, shutdown, and
//! the runner that puts them together for each service subcommand.
//!
//! Key decision: one root `CancellationToken` per process. SIGTERM and SIGINT
//! cancel it; services take it as an argument (so tests can stop them), finish
//! what is in flight and return; the metrics server stops with it.

pub mod metrics_server;
pub mod runner;
pub mod shutdown;
pub mod telemetry;
