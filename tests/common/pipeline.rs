//! A signed workload for pipeline tests and a reader of compacted topics.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tidemark_schemas::dsse;
use tidemark_schemas::keys::SigningKeyFile;
use tidemark_testkit::workload::{self, Shape, generate_shaped};

use super::data;

/// One signed envelope for a patient.
#[derive(Clone, Debug)]
pub struct Signed {
    /// The patient (the record key).
    pub patient: String,
    /// The envelope JSON bytes.
    pub envelope: String,
}

/// `events_per_patient` signed events for each of `patients` patients
/// (`pt-0000000` onwards), all from `site-a-ehr` (the test key's source): the
/// shared workload's uniform shape, with concurrent register writes, set
/// add/remove races and notes. Deterministic for a seed; distinct seeds give
/// distinct event ids.
pub fn workload(patients: usize, events_per_patient: usize, seed: u64) -> Vec<Signed> {
    let key = test_key();
    let shape = Shape { start_ms: recent_start_ms(), ..Shape::uniform(patients, events_per_patient) };
    generate_shaped(shape, seed)
        .iter()
        .map(|e| Signed { patient: e.patient_id.clone(), envelope: workload::sign(e, &key) })
        .collect()
}

/// Midnight UTC yesterday: within ingest's default age bound (7 days), in
/// the past for every round of a test workload (an hour each), and the same
/// all day, so a seed gives the same events within a test run.
pub fn recent_start_ms() -> u64 {
    const DAY_MS: u64 = 86_400_000;
    (super::now_ms() / DAY_MS - 1) * DAY_MS
}

/// The test signing key (tests/data/test-signing.key, keyid `test-site-a-ehr`).
pub fn test_key() -> SigningKeyFile {
    let key_text = std::fs::read_to_string(data("test-signing.key")).expect("test key");
    SigningKeyFile::from_toml_str(&key_text).expect("test key parses")
}

/// Any JSON as the payload of an envelope signed with the test key (source
/// `site-a-ehr`): validly signed, valid or not as an event.
pub fn sign_event(event: &serde_json::Value) -> String {
    let key = test_key();
    let payload = serde_json::to_vec(event).expect("event serialises");
    dsse::sign(tidemark_schemas::EDIT_EVENT_PAYLOAD_TYPE, &payload, key.signing_key(), key.id()).to_json()
}

/// A second signing key (not in tests/data/test-registry.toml) for the key
/// lifecycle tests: id `site-b-2026`, source `site-b-ehr`.
pub fn site_b_key() -> (ed25519_dalek::SigningKey, &'static str) {
    (ed25519_dalek::SigningKey::from_bytes(&[0x5b; 32]), "site-b-2026")
}

/// The registry entry of [`site_b_key`], with `extra` TOML lines (e.g. a
/// `revoked_at`) appended to it.
pub fn site_b_entry(extra: &str) -> String {
    let (key, id) = site_b_key();
    let entry = tidemark_schemas::keys::KeyEntry::ed25519(id, "site-b-ehr", &key.verifying_key(), None);
    format!("{}{extra}", entry.to_toml())
}

/// A valid heart-rate event for `patient` from `site-b-ehr`, stamped
/// `wall_ms`, signed by [`site_b_key`]; a fresh UUIDv7 as its id.
pub fn signed_by_site_b(patient: &str, wall_ms: u64) -> Signed {
    let (key, id) = site_b_key();
    let event = serde_json::json!({
        "event_id": uuid::Uuid::now_v7(),
        "patient_id": patient,
        "source": "site-b-ehr",
        "author": "clin-b",
        "hlc": {"wall_ms": wall_ms, "logical": 0},
        "ops": [{"op": "set", "path": "vitals.heart_rate_bpm", "value": 61}],
    });
    let payload = serde_json::to_vec(&event).expect("event serialises");
    let envelope = dsse::sign(tidemark_schemas::EDIT_EVENT_PAYLOAD_TYPE, &payload, &key, id).to_json();
    Signed { patient: patient.to_owned(), envelope }
}

/// Produces envelopes to `topic` keyed by patient, waiting for every ack.
pub async fn produce(bootstrap: &str, topic: &str, items: &[Signed]) {
    produce_sealed(bootstrap, topic, items, None).await;
}

/// Produces views to a state `topic` keyed by patient, each sealed with the
/// test state key as a merger seals it ([`super::state_keys`]).
pub async fn produce_views(bootstrap: &str, topic: &str, items: &[Signed]) {
    produce_sealed(bootstrap, topic, items, Some(&super::state_keys())).await;
}

/// Produces `items`, with the MAC headers of `keys` as state records when given.
pub async fn produce_sealed(bootstrap: &str, topic: &str, items: &[Signed], keys: Option<&tidemark_seal::StateKeys>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("test producer");
    let mut pending = Vec::new();
    for s in items {
        let mut record = FutureRecord::to(topic).key(&s.patient).payload(&s.envelope);
        if let Some(keys) = keys {
            let mac = keys.seal(tidemark_seal::RecordKind::State, s.patient.as_bytes(), Some(s.envelope.as_bytes()));
            record = record.headers(mac_headers(&mac));
        }
        pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
    }
    for f in pending {
        f.await.expect("delivery future").map_err(|(e, _)| e).expect("acknowledged");
    }
}

/// The MAC headers of `mac`, as a merger writes them on a sealed record.
pub fn mac_headers(mac: &tidemark_seal::RecordMac) -> rdkafka::message::OwnedHeaders {
    mac.headers().into_iter().fold(rdkafka::message::OwnedHeaders::new(), |h, (key, value)| {
        h.insert(rdkafka::message::Header { key, value: Some(value) })
    })
}

/// Produces one record of `key` to `topic` (`value` `None`: a tombstone),
/// with `mac`'s headers when given: a record as a forger, an older merger
/// or a restored backup would write it. Waits for the ack.
pub async fn produce_raw(
    bootstrap: &str,
    topic: &str,
    key: &str,
    value: Option<&[u8]>,
    mac: Option<&tidemark_seal::RecordMac>,
) {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("test producer");
    let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(key);
    if let Some(value) = value {
        record = record.payload(value);
    }
    if let Some(mac) = mac {
        record = record.headers(mac_headers(mac));
    }
    producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("acknowledged");
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

/// `tidemark fold` of `items`: patient id -> view (JSON line), the views the
/// merger would put on the state topic.
pub fn fold(items: &[Signed]) -> BTreeMap<String, String> {
    let input: String = items.iter().map(|i| format!("{}\n", i.envelope)).collect();
    let run = super::tidemark(&["fold"], input.as_bytes(), &[]);
    run.code(0);
    run.stdout
        .lines()
        .map(|l| {
            let view: serde_json::Value = serde_json::from_str(l).expect("fold prints JSON lines");
            (view["patient_id"].as_str().expect("a view names its patient").to_owned(), l.to_owned())
        })
        .collect()
}

/// `tidemark fold --keys` (the test registry) of the envelopes of `items`:
/// the reference views by patient, which the live pipeline must equal.
pub fn fold_reference<'a>(
    items: impl IntoIterator<Item = &'a Signed>,
    dir: &Path,
) -> BTreeMap<String, serde_json::Value> {
    let input = dir.join("envelopes.ndjson");
    let text: Vec<&str> = items.into_iter().map(|i| i.envelope.as_str()).collect();
    std::fs::write(&input, text.join("\n")).expect("write envelopes");
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["fold", "--keys", super::s(&data("test-registry.toml")), super::s(&input)])
        .env_remove("TIDEMARK_KEYS")
        .output()
        .expect("fold runs");
    String::from_utf8(out.stdout)
        .expect("utf-8 views")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("view JSON");
            (v["patient_id"].as_str().expect("patient_id").to_owned(), v)
        })
        .collect()
}
