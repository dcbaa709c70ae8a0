//! Hostile input against a real `tidemark ingest` on Tansu: each attack a
//! named test with the exact status and reason it must get, and after each
//! one a valid event still gets 202 and the edit topic holds exactly the
//! events that were accepted, byte for byte.
//!
//! What each input gets, and why, is summarised in docs/security.md.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::ingest::{Ingest, PARTITIONS};
use common::pipeline::{read_all, sign_event, workload};
use common::{data, now_ms, s, tidemark};
use serde_json::{Value, json};
use tidemark_schemas::dsse;
use tidemark_schemas::keys::KeyEntry;
use tidemark_testkit::{TansuBroker, unique_topic};

/// The body limit of these tests' ingest (the default, 8 MiB).
const LIMIT: usize = 8 * 1024 * 1024;

/// A broker and an ingest on it, plus the envelopes it acknowledged.
struct Setup {
    broker: TansuBroker,
    ingest: Ingest,
    prefix: String,
    accepted: Vec<String>,
    seed: u64,
}

impl Setup {
    fn new(name: &str, extra: &[&str]) -> Self {
        let broker = TansuBroker::start().expect("tansu starts");
        let prefix = format!("{}.", unique_topic(name));
        let ingest = Ingest::spawn(broker.bootstrap(), &prefix, extra);
        Self { broker, ingest, prefix, accepted: Vec::new(), seed: 9_000 }
    }

    /// Posts one envelope and requires it refused with `status`, its one
    /// result naming `reason` and a message that contains `needle`.
    fn refused(&self, body: &[u8], status: u16, reason: &str, needle: &str) {
        let (got, answer) = self.post_json(body);
        assert_eq!(got, status, "{answer}");
        let (_, got_reason, message) = only_result(&answer);
        assert_eq!(got_reason, reason, "{answer}");
        assert!(message.contains(needle), "{message}");
    }

    /// POSTs one JSON envelope (`application/json`); the status and the answer.
    fn post_json(&self, body: &[u8]) -> (u16, Value) {
        let (status, _, body) = self.ingest.post("application/json", body);
        (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("a non-JSON answer ({e}): {body}")))
    }

    /// Sends a valid event and requires 202: the hostile input before it left
    /// the service able to accept.
    fn still_accepts(&mut self) {
        self.seed += 1;
        let good = workload(1, 1, self.seed)[0].envelope.clone();
        let (status, body) = self.post_json(good.as_bytes());
        assert_eq!(status, 202, "a valid event after the hostile input: {body}");
        self.accepted.push(good);
    }

    /// The edit topic holds exactly the envelopes acknowledged, byte for byte.
    fn topic_holds_only_the_accepted(&self) {
        let records = read_all(self.broker.bootstrap(), &format!("{}tidemark.edits.v1", self.prefix), PARTITIONS);
        let got: BTreeSet<&[u8]> = records.iter().map(|r| r.payload.as_slice()).collect();
        let want: BTreeSet<&[u8]> = self.accepted.iter().map(String::as_bytes).collect();
        assert_eq!(records.len(), self.accepted.len(), "records in the topic vs acknowledged");
        assert!(got == want, "the topic holds other bytes than the acknowledged envelopes");
    }
}

/// A valid event of the test key's source for `pt-hostile` at `wall_ms`.
fn event(id_low: u64, wall_ms: u64, ops: Value) -> Value {
    let id = uuid::Uuid::from_u64_pair((wall_ms << 16) | 0x7000, 0x8000_0000_0000_0000 | id_low);
    json!({"event_id": id, "patient_id": "pt-hostile", "source": "site-a-ehr", "author": "clin-1",
           "hlc": {"wall_ms": wall_ms, "logical": 0}, "ops": ops})
}

/// An envelope of the test key over exact `payload` bytes.
fn sign_bytes(payload: &[u8]) -> String {
    let key_text = std::fs::read_to_string(data("test-signing.key")).unwrap();
    let key = tidemark_schemas::keys::SigningKeyFile::from_toml_str(&key_text).unwrap();
    dsse::sign(tidemark_schemas::EDIT_EVENT_PAYLOAD_TYPE, payload, key.signing_key(), key.id()).to_json()
}

/// The single result of a one-envelope answer: (status, reason, message).
fn only_result(body: &Value) -> (u64, String, String) {
    let r = &body["results"][0];
    assert_eq!(body["results"].as_array().map(Vec::len), Some(1), "{body}");
    (r["status"].as_u64().unwrap(), r["reason"].as_str().unwrap().to_owned(), r["message"].as_str().unwrap().to_owned())
}

#[test]
fn deeply_nested_json_is_refused_before_it_recurses_far() {
    let mut t = Setup::new("hostile-nested", &[]);
    // 100,000 levels in the envelope itself: every envelope field is typed,
    // so the decoder refuses the first `[` where a string belongs and never
    // descends.
    let deep = format!("{{\"payloadType\":{}}}", "[".repeat(100_000));
    let (status, body) = t.post_json(deep.as_bytes());
    assert_eq!(status, 400, "{body}");
    let (line_status, reason, message) = only_result(&body);
    assert_eq!((line_status, reason.as_str()), (400, "malformed"), "{body}");
    assert!(message.contains("invalid type: sequence, expected a string at line 1 column 15"), "{message}");
    t.still_accepts();

    // The payload's values are untyped JSON, parsed recursively: serde_json
    // stops at 128 levels.

    // 30,000 levels inside a validly signed payload (under the 64 KiB limit).
    let mut payload = event(1, now_ms(), json!([{"op": "set", "path": "vitals.heart_rate_bpm", "value": 0}]))
        .to_string()
        .into_bytes();
    let at = payload.windows(9).position(|w| w == b"\"value\":0").unwrap() + 8;
    let value = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    payload.splice(at..at + 1, value.bytes());
    t.refused(sign_bytes(&payload).as_bytes(), 422, "malformed_event", "recursion limit exceeded");

    // Nesting the parser accepts (64 levels) is an invalid value: 422 naming the op.
    let shallow = json!([{"op": "set", "path": "vitals.heart_rate_bpm",
        "value": serde_json::from_str::<Value>(&format!("{}{}", "[".repeat(64), "]".repeat(64))).unwrap()}]);
    t.refused(
        sign_event(&event(2, now_ms(), shallow)).as_bytes(),
        422,
        "wrong_type",
        "op 0 (`vitals.heart_rate_bpm`): wrong value type: expected int",
    );
    t.still_accepts();
    t.topic_holds_only_the_accepted();
}

#[test]
fn huge_arrays_are_bounded_before_they_cost_anything() {
    let mut t = Setup::new("hostile-arrays", &[]);
    // 100,000 signatures (2.7 MB): the envelope allows 8.
    let sigs: Vec<Value> = (0..100_000).map(|i| json!({"keyid": format!("k{i}"), "sig": "AAAA"})).collect();
    let good: Value = serde_json::from_str(&workload(1, 1, 1)[0].envelope).unwrap();
    let many = json!({"payloadType": good["payloadType"], "payload": good["payload"], "signatures": sigs});
    t.refused(many.to_string().as_bytes(), 400, "malformed", "envelope has 100000 signatures, at most 8 are accepted");
    t.still_accepts();

    // 100,000 ops in a signed payload: over the 64 KiB payload limit, refused
    // before the signature is even checked.
    let ops: Vec<Value> = (0..100_000).map(|_| json!({"op": "clear", "path": "demographics.postal_code"})).collect();
    t.refused(sign_event(&event(3, now_ms(), Value::Array(ops))).as_bytes(), 413, "too_large", "the limit is 65536");

    // 65 ops fit the payload limit but not the catalog's 64.
    let ops: Vec<Value> =
        (0..65).map(|i| json!({"op": "add", "path": "allergies", "value": format!("rxnorm:{i}")})).collect();
    t.refused(
        sign_event(&event(4, now_ms(), Value::Array(ops))).as_bytes(),
        422,
        "too_many_ops",
        "65 ops, at most 64 allowed",
    );
    t.still_accepts();
    t.topic_holds_only_the_accepted();
}

#[test]
fn a_batch_of_many_tiny_lines_is_refused_before_its_answer_outgrows_the_body() {
    let mut t = Setup::new("hostile-lines", &[]);
    let (_, hwm_before) = t.ingest.memory_kib();
    // 2.8 million lines of `{}` in 8 MiB: one rejection each would answer
    // ~700 MB of JSON and hold far more while building it.
    let body = "{}\n".repeat(LIMIT / 3);
    let (status, _, answer) = t.ingest.post("application/x-ndjson", body.as_bytes());
    assert_eq!(status, 413, "{}", &answer[..answer.len().min(500)]);
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["error"]["reason"], "too_large", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("lines"), "{answer}");
    let (_, hwm_after) = t.ingest.memory_kib();
    eprintln!("ingest VmHWM {hwm_before} KiB -> {hwm_after} KiB for 2.8M-line batch");
    assert!(hwm_after < hwm_before + 64 * 1024, "peak RSS grew {} KiB", hwm_after - hwm_before);

    // A batch at the line bound still gets one result per line.
    let body = "{}\n".repeat(tidemark_ingest::MAX_BATCH_LINES);
    let (status, _, answer) = t.ingest.post("application/x-ndjson", body.as_bytes());
    assert_eq!(status, 400);
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["rejected"], tidemark_ingest::MAX_BATCH_LINES, "one result per line");
    t.still_accepts();
    t.topic_holds_only_the_accepted();
}

#[test]
fn invalid_utf8_is_malformed_wherever_it_is() {
    let mut t = Setup::new("hostile-utf8", &[]);
    // In the envelope: a lone 0xff inside a JSON string.
    t.refused(
        b"{\"payloadType\":\"\xff\",\"payload\":\"\",\"signatures\":[]}",
        400,
        "malformed",
        "invalid unicode code point",
    );

    // In a validly signed payload: an overlong encoding of '/' in the author.
    let mut bad = event(5, now_ms(), json!([{"op": "set", "path": "vitals.heart_rate_bpm", "value": 60}]))
        .to_string()
        .into_bytes();
    let at = bad.windows(6).position(|w| w == b"clin-1").unwrap() + 5;
    bad.splice(at..at + 1, [0xc0, 0xaf]);
    t.refused(sign_bytes(&bad).as_bytes(), 422, "malformed_event", "invalid unicode code point");

    // In one line of a batch: that line is rejected by number, the others land.
    let good = workload(1, 1, 77)[0].envelope.clone();
    let mut batch = format!("{good}\n").into_bytes();
    batch.extend_from_slice(b"{\"payloadType\":\"\xfe\xfe\"}\n");
    let (status, _, answer) = t.ingest.post("application/x-ndjson", &batch);
    assert_eq!(status, 207, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!((answer["accepted"].as_u64(), answer["rejected"].as_u64()), (Some(1), Some(1)), "{answer}");
    assert_eq!(answer["results"][1]["line"], 2);
    assert_eq!(answer["results"][1]["reason"], "malformed");
    t.accepted.push(good);
    t.still_accepts();
    t.topic_holds_only_the_accepted();
}

#[test]
fn duplicate_json_keys_are_refused_in_the_envelope_and_the_event() {
    let mut t = Setup::new("hostile-dupkeys", &[]);
    let good = workload(1, 1, 88)[0].envelope.clone();
    let envelope: Value = serde_json::from_str(&good).unwrap();

    // `payload` twice, the second one someone else's: never "last wins".
    let other: Value = serde_json::from_str(&workload(1, 1, 89)[0].envelope).unwrap();
    let twice = good.replacen("\"payload\":", &format!("\"payload\":{},\"payload\":", other["payload"]), 1);
    t.refused(twice.as_bytes(), 400, "malformed", "duplicate field `payload`");

    // `patient_id` twice inside a validly signed event.
    let payload = B64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let text = String::from_utf8(payload).unwrap();
    let dup = text.replacen("\"patient_id\":", "\"patient_id\":\"pt-other\",\"patient_id\":", 1);
    t.refused(sign_bytes(dup.as_bytes()).as_bytes(), 422, "malformed_event", "duplicate field `patient_id`");

    // Inside a value (a log entry's `text`) and inside `observed`: readers
    // that keep the first key would see another note than readers that keep
    // the last, so these are refused too.
    let wall = now_ms();
    let note = event(6, wall, json!([{"op": "append", "path": "notes", "value": {"text": "A"}}])).to_string();
    let note = note.replacen("{\"text\":\"A\"}", "{\"text\":\"A\",\"text\":\"B\"}", 1);
    t.refused(sign_bytes(note.as_bytes()).as_bytes(), 422, "malformed_event", "duplicate key `text`");

    let mut seen = event(7, wall, json!([{"op": "set", "path": "vitals.heart_rate_bpm", "value": 61}]));
    seen["observed"] = json!({"site-a-ehr": {"wall_ms": wall - 10, "logical": 0}});
    let seen = seen.to_string().replacen(
        "\"observed\":{",
        &format!("\"observed\":{{\"site-a-ehr\":{{\"wall_ms\":{},\"logical\":0}},", wall - 20),
        1,
    );
    t.refused(sign_bytes(seen.as_bytes()).as_bytes(), 422, "malformed_event", "duplicate key `site-a-ehr`");
    t.still_accepts();
    t.topic_holds_only_the_accepted();
}

/// Sends a request head declaring `content_length` (or chunked when `None`),
/// then streams up to `total` body bytes while a reader thread collects the
/// answer: the server may answer and close before the body is sent.
fn stream_body(addr: &str, content_length: Option<usize>, total: usize) -> (u16, String, usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let answer = std::thread::spawn(move || {
        let mut raw = Vec::new();
        let _ = reader.read_to_end(&mut raw);
        String::from_utf8_lossy(&raw).into_owned()
    });
    let framing = match content_length {
        Some(n) => format!("Content-Length: {n}"),
        None => "Transfer-Encoding: chunked".to_owned(),
    };
    write!(stream, "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\n{framing}\r\nConnection: close\r\n\r\n").unwrap();
    let chunk = vec![b' '; 1 << 20];
    let mut sent = 0;
    while sent < total {
        let ok = match content_length {
            Some(_) => stream.write_all(&chunk),
            None => write!(stream, "{:x}\r\n", chunk.len())
                .and_then(|()| stream.write_all(&chunk))
                .and_then(|()| stream.write_all(b"\r\n")),
        };
        if ok.is_err() {
            break; // the server closed the connection: it stopped reading
        }
        sent += chunk.len();
    }
    if content_length.is_none() && sent >= total {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    let raw = answer.join().unwrap();
    let status =
        raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no answer: {raw:?}"));
    (status, raw, sent)
}

#[test]
fn a_100_mb_body_is_refused_without_being_buffered() {
    let mut t = Setup::new("hostile-100mb", &[]);
    const HUNDRED_MB: usize = 100 * 1024 * 1024;
    t.still_accepts();
    let (rss_before, hwm_before) = t.ingest.memory_kib();

    // Declared: refused from Content-Length before a body byte is read. Only
    // the head is sent: bytes still in flight when the server closes would
    // make its kernel reset the connection, which may drop the answer.
    let (status, raw, _) = stream_body(&t.ingest.http, Some(HUNDRED_MB), 0);
    assert_eq!(status, 413, "{raw}");
    assert!(raw.contains("\"reason\":\"too_large\""), "{raw}");

    // Chunked, no length: read up to the limit, then cut off.
    let (status, raw, sent) = stream_body(&t.ingest.http, None, HUNDRED_MB);
    assert_eq!(status, 413, "{raw}");
    assert!(raw.contains("\"reason\":\"too_large\""), "{raw}");
    assert!(sent < HUNDRED_MB, "the server read all {sent} bytes instead of stopping at the limit");

    let (rss_after, hwm_after) = t.ingest.memory_kib();
    eprintln!(
        "ingest RSS {rss_before} -> {rss_after} KiB, peak {hwm_before} -> {hwm_after} KiB; chunked client sent {sent} bytes"
    );
    // At most the 8 MiB limit (and allocator slack) may be held, never 100 MB.
    assert!(hwm_after < hwm_before + 32 * 1024, "peak RSS grew {} KiB", hwm_after - hwm_before);
    t.still_accepts();
    t.topic_holds_only_the_accepted();
}

#[test]
fn a_valid_signature_by_another_sources_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("registry.toml");
    let site_b = ed25519_dalek::SigningKey::from_bytes(&[0xb2; 32]);
    let entry = KeyEntry::ed25519("test-site-b-ehr", "site-b-ehr", &site_b.verifying_key(), None);
    let registry = format!("{}\n{}", std::fs::read_to_string(data("test-registry.toml")).unwrap(), entry.to_toml());
    std::fs::write(&keys, registry).unwrap();
    let mut t = Setup::new("hostile-otherkey", &["--keys", s(&keys)]);
    let sign_b = |ev: &Value, keyid: &str| {
        let payload = serde_json::to_vec(ev).unwrap();
        dsse::sign(tidemark_schemas::EDIT_EVENT_PAYLOAD_TYPE, &payload, &site_b, keyid).to_json()
    };
    let wall = now_ms();
    let ops = json!([{"op": "set", "path": "vitals.heart_rate_bpm", "value": 70}]);

    // Site B's key, a correct signature, an event claiming site A's source.
    t.refused(
        sign_b(&event(8, wall, ops.clone()), "test-site-b-ehr").as_bytes(),
        422,
        "source_mismatch",
        "source is `site-a-ehr` but key `test-site-b-ehr` signs for source `site-b-ehr`",
    );

    // Site B's key under site A's key id: the signature does not verify.
    t.refused(sign_b(&event(9, wall, ops.clone()), "test-site-a-ehr").as_bytes(), 401, "bad_signature", "");

    // Site A's valid envelope with site B's signature added: every registered
    // signature must verify and agree on the source.
    let mut both = dsse::Envelope::decode(workload(1, 1, 99)[0].envelope.as_bytes()).unwrap();
    both.add_ed25519_signature(&site_b, "test-site-b-ehr");
    t.refused(both.to_json().as_bytes(), 422, "source_mismatch", "");

    // The control: site B's key for site B's own events is accepted.
    let mut own = event(10, wall, ops);
    own["source"] = "site-b-ehr".into();
    let envelope = sign_b(&own, "test-site-b-ehr");
    let (status, body) = t.post_json(envelope.as_bytes());
    assert_eq!(status, 202, "{body}");
    t.accepted.push(envelope);
    t.still_accepts();
    t.topic_holds_only_the_accepted();
}

#[test]
fn an_hlc_far_in_the_future_is_refused_and_the_skew_bound_is_exact() {
    let mut t = Setup::new("hostile-future", &[]);
    let ops = json!([{"op": "set", "path": "vitals.heart_rate_bpm", "value": 65}]);
    let ten_years = 10 * 365 * 24 * 3600 * 1000;
    for (low, wall) in [(11, now_ms() + ten_years), (12, u64::MAX >> 16)] {
        t.refused(
            sign_event(&event(low, wall, ops.clone())).as_bytes(),
            422,
            "hlc_in_future",
            "ms ahead of the receiver's clock, at most 300000 ms allowed",
        );
    }
    // wall_ms past u64: not an event at all.
    let past_u64 = event(13, now_ms(), ops.clone()).to_string().replacen("\"wall_ms\":", "\"wall_ms\":1", 1);
    let past_u64 = past_u64.replacen("\"wall_ms\":1", "\"wall_ms\":99999999999999999999", 1);
    t.refused(sign_bytes(past_u64.as_bytes()).as_bytes(), 422, "malformed_event", "");
    // Six minutes ahead is refused, four minutes ahead accepted.
    let (status, body) = t.post_json(sign_event(&event(14, now_ms() + 360_000, ops.clone())).as_bytes());
    assert_eq!(status, 422, "{body}");
    let envelope = sign_event(&event(15, now_ms() + 240_000, ops));
    let (status, body) = t.post_json(envelope.as_bytes());
    assert_eq!(status, 202, "{body}");
    t.accepted.push(envelope);
    t.still_accepts();
    t.topic_holds_only_the_accepted();
}

#[test]
fn an_event_id_reused_with_other_content_folds_the_same_in_either_order() {
    let mut t = Setup::new("hostile-reuse", &[]);
    let wall = now_ms() - 1_000;
    // Two events under one id, one hlc: every (event id, op) names two writes.
    let first = event(
        16,
        wall,
        json!([
        {"op": "set", "path": "vitals.heart_rate_bpm", "value": 72},
        {"op": "add", "path": "allergies", "value": "rxnorm:1"},
        {"op": "append", "path": "notes", "value": {"text": "first"}}]),
    );
    let mut second = event(
        16,
        wall,
        json!([
        {"op": "set", "path": "vitals.heart_rate_bpm", "value": 99},
        {"op": "add", "path": "allergies", "value": "rxnorm:2"},
        {"op": "append", "path": "notes", "value": {"text": "second"}}]),
    );
    second["author"] = "clin-2".into();
    // Ingest cannot know the id was used: both are accepted.
    for ev in [&first, &second] {
        let envelope = sign_event(ev);
        let (status, body) = t.post_json(envelope.as_bytes());
        assert_eq!(status, 202, "{body}");
        t.accepted.push(envelope);
    }
    t.topic_holds_only_the_accepted();

    let keys = data("test-registry.toml");
    let fold = |lines: &[&String]| {
        let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let run = tidemark(&["fold", "--keys", s(&keys)], input.as_bytes(), &[]);
        run.code(0);
        run.stdout
    };
    let (a, b) = (&t.accepted[0], &t.accepted[1]);
    let forwards = fold(&[a, b]);
    assert_eq!(forwards, fold(&[b, a]), "the fold depends on which copy arrives first");
    assert_eq!(forwards, fold(&[b, a, b, a]), "replaying the copies changed the fold");

    // The outcome, pinned: one event counted; per (event id, op) the write
    // with the greater (author, value) wins; set elements are distinct
    // writes, so both adds stay.
    let view: Value = serde_json::from_str(forwards.trim()).unwrap();
    assert_eq!(view["event_count"], 1, "{view}");
    assert_eq!(view["fields"]["vitals.heart_rate_bpm"]["value"], 99, "{view}");
    assert_eq!(view["fields"]["vitals.heart_rate_bpm"]["conflicts"], json!([]), "{view}");
    assert_eq!(view["fields"]["allergies"]["values"], json!(["rxnorm:1", "rxnorm:2"]), "{view}");
    let notes = view["fields"]["notes"]["entries"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{view}");
    assert_eq!(notes[0]["text"], "second", "{view}");
    t.still_accepts();
}
