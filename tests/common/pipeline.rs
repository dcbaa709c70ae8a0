//! A signed workload for pipeline tests and a reader of compacted topics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use tidemark_schemas::dsse;
use tidemark_schemas::keys::SigningKeyFile;
use tidemark_testkit::SeededRng;

use super::data;

/// One signed envelope for a patient.
#[derive(Clone, Debug)]
pub struct Signed {
    /// The patient (the record key).
    pub patient: String,
    /// The envelope JSON bytes.
    pub envelope: String,
}

/// Wall-clock time of every workload's first events: a fixed instant in the
/// past, so that ingest (which refuses only events from the future) accepts
/// them and the same seed gives the same bytes on every run.
const BASE_MS: u64 = 1_763_794_800_000;

/// `events_per_patient` signed events for each of `patients` patients, with
/// concurrent register writes (shared `observed`), allergy add/remove races
/// and notes; deterministic for a seed (ids and HLCs included). Distinct
/// seeds give distinct event ids.
pub fn workload(patients: usize, events_per_patient: usize, seed: u64) -> Vec<Signed> {
    let key = test_key();
    let mut rng = SeededRng::new(seed);
    let mut next = move || rng.next_u64();
    let mut out = Vec::new();
    for e in 0..events_per_patient {
        for p in 0..patients {
            let patient = format!("pt-{p:05}");
            let wall = BASE_MS + (e as u64) * 10;
            let observed = if next() % 3 == 0 {
                json!({"site-a-ehr": {"wall_ms": wall.saturating_sub(25), "logical": 0}})
            } else {
                serde_json::Value::Null
            };
            let r = next();
            let op = match r % 5 {
                0 | 1 => json!({"op": "set", "path": "vitals.heart_rate_bpm", "value": 50 + (r % 60)}),
                2 => json!({"op": "add", "path": "allergies", "value": format!("rxnorm:{}", r % 4)}),
                3 => json!({"op": "remove", "path": "allergies", "value": format!("rxnorm:{}", r % 4)}),
                _ => json!({"op": "append", "path": "notes", "value": {"text": format!("note {e}")}}),
            };
            // UUIDv7: 48-bit milliseconds, version 7, then unique bits per (seed, patient, event).
            let high = (wall << 16) | 0x7000 | (e as u64 & 0xfff);
            let low = 0x8000_0000_0000_0000 | (seed << 40) | ((p as u64) << 20) | e as u64;
            let id = uuid::Uuid::from_u64_pair(high, low);
            let mut event = json!({"event_id": id, "patient_id": patient, "source": "site-a-ehr",
                "author": format!("clin-{}", r % 7), "hlc": {"wall_ms": wall, "logical": p % 3}, "ops": [op]});
            if !observed.is_null() {
                event["observed"] = observed;
            }
            out.push(Signed { patient, envelope: sign_with(&key, &event) });
        }
    }
    out
}

/// The test signing key (tests/data/test-signing.key, keyid `test-site-a-ehr`).
pub fn test_key() -> SigningKeyFile {
    let key_text = std::fs::read_to_string(data("test-signing.key")).expect("test key");
    SigningKeyFile::from_toml_str(&key_text).expect("test key parses")
}

fn sign_with(key: &SigningKeyFile, event: &serde_json::Value) -> String {
    let payload = serde_json::to_vec(event).expect("event serialises");
    dsse::sign(tidemark_schemas::EDIT_EVENT_PAYLOAD_TYPE, &payload, key.signing_key(), key.id()).to_json()
}

/// Any JSON as the payload of an envelope signed with the test key (source
/// `site-a-ehr`): validly signed, valid or not as an event.
pub fn sign_event(event: &serde_json::Value) -> String {
    sign_with(&test_key(), event)
}

/// Produces envelopes to `topic` keyed by patient, waiting for every ack.
pub async fn produce(bootstrap: &str, topic: &str, items: &[Signed]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("test producer");
    let mut pending = Vec::new();
    for s in items {
        let record = FutureRecord::to(topic).key(&s.patient).payload(&s.envelope);
        pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
    }
    for f in pending {
        f.await.expect("delivery future").map_err(|(e, _)| e).expect("acknowledged");
    }
}

/// A record read back: key, payload, headers.
#[derive(Clone, Debug)]
pub struct Read {
    /// Partition.
    pub partition: i32,
    /// Key as UTF-8.
    pub key: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Headers as UTF-8 pairs.
    pub headers: BTreeMap<String, String>,
}

/// Reads every record of `topic` (all `partitions`) from the start to the
/// current end.
pub fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Read> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "tidemark-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("test reader");
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let (low, high) = reader.fetch_watermarks(topic, p, Duration::from_secs(5)).unwrap_or((0, 0));
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Beginning).expect("tpl");
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    reader.assign(&tpl).expect("assign");
    let mut done: BTreeMap<i32, bool> = ends.keys().map(|p| (*p, false)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while done.values().any(|d| !d) && Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_owned(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Read {
                partition: m.partition(),
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
            if m.offset() + 1 >= ends[&m.partition()] {
                done.insert(m.partition(), true);
            }
        }
    }
    out
}

/// The latest record per key, as JSON.
pub fn latest_views(records: &[Read]) -> BTreeMap<String, serde_json::Value> {
    records
        .iter()
        .map(|r| (r.key.clone(), serde_json::from_slice(&r.payload).expect("state records are JSON views")))
        .collect()
}
