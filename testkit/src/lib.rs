//! Test brokers for Tidemark's tests: a real Tansu broker process and
//! librdkafka's in-process mock cluster, plus names no two tests share.
//!
//! Key decision: every test starts its own broker on 127.0.0.1 and uses its
//! own topics and groups ([`unique_topic`], [`unique_group`]); nothing is
//! shared between tests, and nothing listens beyond loopback or on a fixed
//! port. That costs a broker start per test (milliseconds for the mock, well
//! under a second for Tansu) and buys tests that run in parallel, never see
//! each other's data, and can kill their broker.
//!
//! Which broker (docs/design.md#testing):
//! - [`MockBroker`]: instant, nothing to install, but no admin API, no topic
//!   configs, silently drops data beyond 100,000 messages or 5 MiB per
//!   partition. For fast tests of client logic.
//! - [`TansuBroker`]: a real Kafka-protocol broker process with sqlite storage
//!   that survives [`TansuBroker::restart`]. For end-to-end and fault tests.
//!   Build it once with `scripts/tansu install`.
//!
//! Tests must not depend on a quirk of either: production runs on any Kafka.
//! Tests use this crate, and so does the binary: `tidemark demo` runs the
//! whole pipeline on a [`MockBroker`], so the root package lists it under
//! `[dependencies]`, not `[dev-dependencies]`. The brokers panic nowhere and
//! return [`Error`]s that carry the broker's log tail.
//!
//! Also what every harness needs alike, one copy each: [`free_port`] (a
//! loopback port a restarted service can keep), [`SeededRng`] (the one
//! seeded generator), [`workload`] (the one edit workload of tests,
//! benchmarks and the demo), [`process::Service`] (the one child-process
//! wrapper of the end-to-end tests and the pipeline benchmark), [`wait`]
//! (the one way to wait for a condition) and [`http_get`]. The last three
//! panic with what they saw: they run under a test or a harness, where that
//! is the report.

mod admin;
mod error;
mod http;
mod mirror;
mod mock;
mod names;
mod ports;
pub mod process;
mod rng;
mod tansu;
pub mod wait;
pub mod workload;

pub use admin::{DEFAULT_TOPIC_TIMEOUT, create_topic};
pub use error::Error;
pub use http::http_get;
pub use mirror::Mirror;
pub use mock::{Cluster as MockCluster, MockBroker};
pub use names::{unique_group, unique_topic};
pub use ports::free_port;
pub use rng::SeededRng;
pub use tansu::{READY_TIMEOUT, Storage as TansuStorage, TANSU_VERSION, TansuBroker, tansu_binary};
