//! Tidemark's Kafka plumbing, in one place for every service and tool.
//!
//! Key decision: what Kafka correctness rests on is decided here once, so no
//! service can drift from another. Every client is built from one
//! [`Connection`] (bootstrap servers and the operator's `--kafka-option`
//! pass-through for TLS, SASL and tuning); producers whose acknowledgement
//! means "durable" take [`Connection::durable_producer`], where acks,
//! idempotence and the delivery timeout are set after the operator's options
//! and so can never be weakened by them; topics are created and checked by
//! [`topics::ensure`]; and a partition is read up to a cut by one reader,
//! [`scan::scan_partition`], with one stop rule: the first record at or past
//! the cut (a partition end seen below the cut, as a new leader may briefly
//! report, does not end a read). A consumer group's lag is read as Kafka's
//! own tools read it, from the group's committed offsets on every partition
//! ([`group::group_lag`]), never from one member's view.

pub mod connection;
pub mod error;
pub mod group;
pub mod scan;
pub mod topics;

pub use connection::Connection;
pub use error::KafkaFailure;
pub use rdkafka;
