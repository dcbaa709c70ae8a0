//! One batch: check, fold, produce every output, wait for every ack.
//!
//! Offsets are returned, not committed: the caller commits only after this
//! returns `Ok`, i.e. after Kafka acknowledged every changelog, state and DLQ
//! record of the batch. A crash anywhere before the commit replays the batch,
//! which the idempotent fold turns into identical records.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tidemark_crdt::PatientDoc;
use tidemark_schemas::{EDITS_THROUGH_HEADER, EditEvent, Reason};
use tidemark_seal::RecordKind;

use super::config::MergerConfig;
use super::error::WorkerError;
use super::metrics::{MergerMetrics, OutputLabel, ReasonLabel};
use super::restore::Docs;
use tidemark_crdt::fold::{Rejection, apply_event, check_envelopes};

/// DLQ header names.
pub mod dlq_headers {
    /// The reason code (a metric label value too).
    pub const REASON: &str = "tidemark-dlq-reason";
    /// What was wrong, in words.
    pub const DETAIL: &str = "tidemark-dlq-detail";
    /// The topic the event was read from.
    pub const TOPIC: &str = "tidemark-original-topic";
    /// Its partition.
    pub const PARTITION: &str = "tidemark-original-partition";
    /// Its offset.
    pub const OFFSET: &str = "tidemark-original-offset";
}

/// What a processed batch leaves to commit.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Next offset to consume, per (edit topic's index in
    /// [`super::Topics::edits`], partition).
    pub offsets: BTreeMap<(usize, i32), i64>,
    /// Events folded.
    pub folded: u64,
    /// Events dead-lettered.
    pub dead_lettered: u64,
    /// Time spent verifying and validating.
    pub check_time: Duration,
    /// Time spent folding and enqueueing outputs.
    pub fold_time: Duration,
    /// Time spent waiting for acknowledgements.
    pub ack_time: Duration,
}

/// Folds `batch` into `parts` (every partition of the batch must be present)
/// and produces its outputs.
///
/// # Errors
/// [`WorkerError::Produce`] when an output record is not acknowledged.
#[tracing::instrument(name = "merger_batch", level = "debug", skip_all, fields(events = batch.len()))]
pub async fn process(
    cfg: &MergerConfig,
    metrics: &MergerMetrics,
    producer: &FutureProducer,
    parts: &mut HashMap<i32, Docs>,
    batch: &[OwnedMessage],
) -> Result<BatchOutcome, WorkerError> {
    let started = Instant::now();
    let inputs: Vec<&[u8]> = batch.iter().map(|m| m.payload().unwrap_or_default()).collect();
    // One verifier for the whole batch: a reload mid-batch applies to the next.
    let verifier = cfg.verifier.get();
    let checked = check_envelopes(&cfg.catalog, Some(&verifier), &inputs);
    let mut out = BatchOutcome { check_time: started.elapsed(), ..BatchOutcome::default() };
    let fold_started = Instant::now();
    let mut touched: BTreeSet<(i32, String)> = BTreeSet::new();
    let mut pending: Pending = Vec::new();
    for (msg, result) in batch.iter().zip(checked) {
        let topic =
            cfg.topics.edits_index(msg.topic()).expect("the consumer delivers only the topics it subscribed to");
        out.offsets.insert((topic, msg.partition()), msg.offset() + 1);
        let docs = parts.get_mut(&msg.partition()).expect("the loop restores a partition before folding it");
        let folded = result.and_then(|event| {
            check_key(msg.key(), &event)?;
            apply_event(docs, &event).map(|delta| (event.patient_id, delta))
        });
        match folded {
            Ok((patient, delta)) => {
                out.folded += 1;
                if delta > 0 {
                    metrics.conflicts_created.inc_by(delta.unsigned_abs());
                }
                touched.insert((msg.partition(), patient));
            }
            Err(rejection) => {
                out.dead_lettered += 1;
                metrics.events_dead_lettered.get_or_create(&ReasonLabel::of(rejection.reason)).inc();
                let future = send(producer, dead_letter(cfg, msg, &rejection)).await?;
                pending.push((OutputLabel::DLQ, cfg.topics.dlq.clone(), future));
            }
        }
    }
    for (partition, patient) in touched {
        // Read-your-writes tokens name the region's own edit topic (index
        // 0): a batch of mirrored edits alone claims no offset of it.
        let through = out.offsets.get(&(0, partition)).copied();
        emit(cfg, producer, partition, &parts[&partition][&patient], through, &mut pending).await?;
    }
    out.fold_time = fold_started.elapsed();
    let ack_started = Instant::now();
    acknowledged(metrics, pending).await?;
    out.ack_time = ack_started.elapsed();
    metrics.events_folded.inc_by(out.folded);
    Ok(out)
}

/// Writes the changelog and state records of `patients` again, sealed under
/// the current state key, and waits for every ack: what a restore from
/// records sealed otherwise leaves to do. Patients of partitions no longer
/// held are skipped (their next owner re-seals them on its restore).
///
/// # Errors
/// [`WorkerError::Produce`] when a record is not acknowledged.
pub async fn reseal(
    cfg: &MergerConfig,
    metrics: &MergerMetrics,
    producer: &FutureProducer,
    parts: &HashMap<i32, Docs>,
    patients: &BTreeSet<(i32, String)>,
) -> Result<(), WorkerError> {
    let mut pending = Vec::new();
    let mut resealed = 0;
    for (partition, patient) in patients {
        if let Some(doc) = parts.get(partition).and_then(|docs| docs.get(patient)) {
            // A reseal folds nothing new: it claims no edit offset.
            emit(cfg, producer, *partition, doc, None, &mut pending).await?;
            resealed += 1;
        }
    }
    acknowledged(metrics, pending).await?;
    metrics.patients_resealed.inc_by(resealed);
    Ok(())
}

type Pending = Vec<(OutputLabel, String, DeliveryFuture)>;

/// Enqueues a patient's changelog and state records, each sealed with the
/// state key's MAC over its kind, key and value. The state record carries
/// `through`, the edit offset the batch folded up to, for read-your-writes.
async fn emit(
    cfg: &MergerConfig,
    producer: &FutureProducer,
    partition: i32,
    doc: &PatientDoc,
    through: Option<i64>,
    pending: &mut Pending,
) -> Result<(), WorkerError> {
    let patient = doc.patient_id();
    let state = doc.encode();
    let view = serde_json::to_vec(&doc.view()).expect("a view always serialises");
    for (output, topic, kind, value) in [
        (OutputLabel::CHANGELOG, &cfg.topics.changelog, RecordKind::Changelog, &state),
        (OutputLabel::STATE, &cfg.topics.state, RecordKind::State, &view),
    ] {
        let mac = cfg.state_keys.seal(kind, patient.as_bytes(), Some(value));
        let mut headers = mac
            .headers()
            .into_iter()
            .fold(OwnedHeaders::new_with_capacity(3), |h, (key, value)| h.insert(Header { key, value: Some(value) }));
        if let (RecordKind::State, Some(through)) = (kind, through) {
            headers = headers.insert(Header { key: EDITS_THROUGH_HEADER, value: Some(&through.to_string()) });
        }
        let record = FutureRecord::to(topic).key(patient).payload(value).partition(partition).headers(headers);
        pending.push((output, topic.clone(), send(producer, record).await?));
    }
    Ok(())
}

/// Waits for every enqueued record's ack.
async fn acknowledged(metrics: &MergerMetrics, pending: Pending) -> Result<(), WorkerError> {
    for (output, topic, future) in pending {
        match future.await {
            Ok(Ok(_)) => {
                metrics.records_produced.get_or_create(&output).inc();
            }
            Ok(Err((source, _))) => return Err(WorkerError::Produce { topic, source }),
            Err(_) => return Err(WorkerError::Produce { topic, source: KafkaError::Canceled }),
        }
    }
    Ok(())
}

/// An event whose record key is not its patient id is [`Reason::KeyMismatch`]:
/// folding it would split the patient's state across partitions.
fn check_key(key: Option<&[u8]>, event: &EditEvent) -> Result<(), Rejection> {
    if key == Some(event.patient_id.as_bytes()) {
        return Ok(());
    }
    Err(Rejection { reason: Reason::KeyMismatch, detail: "the record key is not the event's patient id".into() })
}

fn dead_letter<'a>(cfg: &'a MergerConfig, msg: &'a OwnedMessage, r: &'a Rejection) -> FutureRecord<'a, [u8], [u8]> {
    let partition = msg.partition().to_string();
    let offset = msg.offset().to_string();
    let headers = OwnedHeaders::new()
        .insert(Header { key: dlq_headers::REASON, value: Some(r.reason.as_str()) })
        .insert(Header { key: dlq_headers::DETAIL, value: Some(r.detail.as_str()) })
        .insert(Header { key: dlq_headers::TOPIC, value: Some(msg.topic()) })
        .insert(Header { key: dlq_headers::PARTITION, value: Some(partition.as_str()) })
        .insert(Header { key: dlq_headers::OFFSET, value: Some(offset.as_str()) });
    let mut record = FutureRecord::to(&cfg.topics.dlq).headers(headers);
    if let Some(key) = msg.key() {
        record = record.key(key);
    }
    if let Some(payload) = msg.payload() {
        record = record.payload(payload);
    }
    record
}

/// Enqueues a record, waiting while the producer's queue is full (bounded
/// memory: the queue's size is the back-pressure).
async fn send<'a, K, P>(
    producer: &FutureProducer,
    mut record: FutureRecord<'a, K, P>,
) -> Result<DeliveryFuture, WorkerError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send_result(record) {
            Ok(future) => return Ok(future),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((source, back)) => return Err(WorkerError::Produce { topic: back.topic.to_owned(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keyed_by_anything_but_its_patient_is_a_key_mismatch() {
        let json = r#"{"event_id":"019a9f3e-8b1c-7cc2-9d4e-2f6a1b3c4d5e","patient_id":"pt-1","source":"s","author":"a","hlc":{"wall_ms":1,"logical":0},"ops":[{"op":"set","path":"vitals.heart_rate_bpm","value":72}]}"#;
        let event = EditEvent::from_json(json.as_bytes()).expect("test event parses");
        assert!(check_key(Some(b"pt-1"), &event).is_ok());
        for key in [Some(&b"pt-2"[..]), None] {
            let refused = check_key(key, &event).expect_err("another key");
            assert_eq!(refused.reason, Reason::KeyMismatch, "{key:?}");
        }
    }
}
