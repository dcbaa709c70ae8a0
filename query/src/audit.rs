//! The access audit: one record per request on `tidemark.access-audit.v1`,
//! acknowledged by Kafka (`acks=all`) before the request is answered.
//!
//! A record says who asked (key id and source, when the signature
//! verified), what (the route, and the patient id for a patient read), the
//! answer's status, and when; never a view's content. The patient id is
//! what an audit of record access must name; the topic holds it and nothing
//! else does (logs and metrics never name a patient). Keyed by key id, so
//! one key's reads stay in order.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

/// One audited request.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// When it was answered, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The signing key, when the signature verified.
    pub key_id: Option<&'a str>,
    /// The key's source (the reading site), when the signature verified.
    pub source: Option<&'a str>,
    /// The route (its template, e.g. `/v1/patients/{id}`).
    pub route: &'static str,
    /// The patient read, for a patient route whose id was well formed.
    pub patient_id: Option<&'a str>,
    /// The status answered.
    pub status: u16,
}

/// Writes `record` and waits for Kafka's acknowledgement.
///
/// # Errors
/// The broker's error, when the record was not acknowledged within `timeout`.
pub async fn write(
    producer: &FutureProducer,
    topic: &str,
    record: &AuditRecord<'_>,
    timeout: Duration,
) -> Result<(), rdkafka::error::KafkaError> {
    let value = serde_json::to_vec(record).expect("an audit record always serializes");
    let key = record.key_id.unwrap_or("-");
    producer.send(FutureRecord::to(topic).key(key).payload(&value), timeout).await.map(drop).map_err(|(e, _)| e)
}
