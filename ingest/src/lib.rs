//! Tidemark ingest: verifies DSSE-signed edit events received over HTTP and
//! produces them to Kafka keyed by patient.
//!
//! Key decision: a request is acknowledged only after Kafka acknowledged every
//! accepted record (acks=all, idempotent producer), so a 202 means durable.
//! The service itself lands with its own issue; this crate holds its place in
//! the dependency graph (binary -> services -> schemas).
