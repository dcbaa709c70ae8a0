//! The real `tidemark query` beside ingest and a merger on Tansu: views read
//! back equal `tidemark fold` of the accepted envelopes (right after writing,
//! through `?after=`), signatures and scopes are enforced (401, 403), every
//! request leaves an audit record, the change feed lists every patient at
//! its version, and a killed service resumes from its stored offsets.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::ingest::Ingest;
use common::pipeline::{Signed, fold_reference, read_all, workload};
use common::service::{START_TIMEOUT, Service, tidemark_service};
use common::{data, eventually, s, tidemark};
use tidemark_schemas::httpsig::{self, Request};
use tidemark_schemas::keys::SigningKeyFile;
use tidemark_testkit::{TansuBroker, unique_group, unique_topic};

const PATIENTS: usize = 24;

/// Generates a read key `name` for `prefix` into `dir`; returns its key file
/// and registry entry.
fn read_key(dir: &Path, name: &str, prefix: &str) -> (PathBuf, String) {
    tidemark(
        &["keys", "generate", "--kind", "signing", "--scope", "read", "--name", name, "--source", "site-a-ehr"]
            .iter()
            .chain(&["--patient-prefix", prefix, "--out", s(dir)])
            .copied()
            .collect::<Vec<_>>(),
        b"",
        &[],
    )
    .code(0);
    let entry = fs::read_to_string(dir.join(format!("{name}.registry.toml"))).expect("entry");
    (dir.join(format!("{name}.key")), entry)
}

fn query(bootstrap: &str, prefix: &str, registry: &Path, store: &Path, dir: &Path) -> (Service, String) {
    let args = ["query", "--brokers", bootstrap, "--topic-prefix", prefix, "--keys", s(registry)]
        .iter()
        .chain(&["--data-dir", s(store), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .chain(&["--max-wait-ms", "20000", "--audit-partitions", "2"])
        .map(|a| (*a).to_owned())
        .collect();
    let mut q = tidemark_service("query", args, dir);
    q.set_env("RUST_LOG", "info");
    q.start();
    let http = q.wait_for("tidemark-query listening", "http=", START_TIMEOUT);
    (q, http)
}

/// A raw `GET` with these headers: (status, body).
fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The headers of `path` signed by `key` at `created`.
fn signed(key: &SigningKeyFile, path: &str, created: u64, nonce: &str) -> [(String, String); 2] {
    let (p, q) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
    let h = httpsig::sign(
        &Request { method: "GET", path: p, query: q, authority: None },
        key.signing_key(),
        key.id(),
        created,
        nonce,
    );
    [("signature-input".into(), h.signature_input), ("signature".into(), h.signature)]
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

fn signed_get(addr: &str, key: &SigningKeyFile, path: &str) -> (u16, String) {
    let h = signed(key, path, now_s(), &httpsig::new_nonce());
    get(addr, path, &[(&h[0].0, &h[0].1), (&h[1].0, &h[1].1)])
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_are_signed_scoped_audited_read_your_writes_and_resume() {
    let broker = TansuBroker::start().expect("tansu starts");
    let bootstrap = broker.bootstrap().to_owned();
    let prefix = format!("{}.", unique_topic("query"));
    let dir = tempfile::tempdir().expect("tempdir");
    let (reader_path, reader_entry) = read_key(dir.path(), "reader", "pt-");
    let (narrow_path, narrow_entry) = read_key(dir.path(), "narrow", "pt-000000");
    let registry = dir.path().join("registry.toml");
    let base = fs::read_to_string(data("test-registry.toml")).expect("registry");
    fs::write(&registry, format!("{base}\n{reader_entry}\n{narrow_entry}")).expect("write registry");
    let reader = SigningKeyFile::from_toml_str(&fs::read_to_string(&reader_path).expect("key")).expect("key");
    let narrow = SigningKeyFile::from_toml_str(&fs::read_to_string(&narrow_path).expect("key")).expect("key");
    let writer = common::pipeline::test_key();

    let ingest = Ingest::spawn(&bootstrap, &prefix, &[]);
    let group = unique_group("query");
    let merger_args = ["merger", "--brokers", &bootstrap, "--keys", s(&data("test-registry.toml"))]
        .iter()
        .chain(&["--topic-prefix", &prefix, "--group", &group, "--partitions", "4"])
        .chain(&["--metrics-listen", "127.0.0.1:0", "--max-batch-wait-ms", "20"])
        .chain(&["--kafka-option", "session.timeout.ms=6000", "--kafka-option", "heartbeat.interval.ms=500"])
        .map(|a| (*a).to_owned())
        .collect();
    let _merger = tidemark_service("merger", merger_args, dir.path()).started();
    let store = dir.path().join("store");
    let (mut q, http) = query(&bootstrap, &prefix, &registry, &store, dir.path());

    // Write, then read each write back at once: `?after=` waits for it.
    let items = workload(PATIENTS, 4, 71);
    let body: String = items.iter().map(|i| format!("{}\n", i.envelope)).collect();
    let (status, _, resp) = ingest.post("application/x-ndjson", body.as_bytes());
    assert_eq!(status, 202, "{resp}");
    let resp: serde_json::Value = serde_json::from_str(&resp).expect("json");
    let mut tokens: BTreeMap<String, String> = BTreeMap::new();
    for (item, line) in items.iter().zip(resp["results"].as_array().expect("results")) {
        tokens.insert(item.patient.clone(), line["consistency"].as_str().expect("a token").to_owned());
    }
    let want = fold_reference(&items, dir.path());
    let target = format!("http://{http}");
    for (patient, token) in tokens.iter().step_by(3) {
        let got =
            tidemark(&["get", "--target", &target, "--key", s(&reader_path), patient, "--after", token], b"", &[]);
        got.code(0);
        let view: serde_json::Value = serde_json::from_str(got.stdout.trim()).expect("a view");
        assert_eq!(&view, &want[patient], "read-your-writes: the view includes the write");
    }
    let mut requests = tokens.len().div_ceil(3);
    eventually("the query service is ready", Duration::from_secs(30), || get(&http, "/readyz", &[]).0 == 200);
    for (patient, view) in &want {
        let (status, body) = signed_get(&http, &reader, &format!("/v1/patients/{patient}"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(&serde_json::from_str::<serde_json::Value>(&body).expect("view"), view);
        requests += 1;
    }

    // A client written from docs/query.md in Python (its own signature
    // base, label `sig1`) reads the same view; its replay is refused.
    let client = |nonce: &str| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/query/client.py");
        let path = format!("/v1/patients/{}", want.keys().next().expect("a patient"));
        let out = Command::new("python3").arg(script).args([&target, s(&reader_path), &path, nonce]).output();
        let out = out.expect("python3 runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let first = client("python-nonce-1");
    let (status, body) = first.trim().split_once(' ').expect("STATUS BODY");
    assert_eq!(status, "200", "{first}");
    let view: serde_json::Value = serde_json::from_str(body).expect("a view");
    assert_eq!(&view, want.values().next().expect("a view"));
    assert!(client("python-nonce-1").starts_with("401 "), "the same nonce again is a replay");
    requests += 2;

    // Refusals: unsigned, a write-only key, a replay, a stale signature: 401.
    let patient = want.keys().next().expect("a patient").clone();
    let path = format!("/v1/patients/{patient}");
    let reason = |body: &str| serde_json::from_str::<serde_json::Value>(body).expect("json")["error"]["reason"].clone();
    let (status, body) = get(&http, &path, &[]);
    assert_eq!((status, reason(&body)), (401, "unsigned".into()));
    let (status, body) = signed_get(&http, &writer, &path);
    assert_eq!((status, reason(&body)), (401, "unknown_key".into()), "write scope only");
    let h = signed(&reader, &path, now_s(), "once");
    let headers = [(h[0].0.as_str(), h[0].1.as_str()), (h[1].0.as_str(), h[1].1.as_str())];
    assert_eq!(get(&http, &path, &headers).0, 200);
    let (status, body) = get(&http, &path, &headers);
    assert_eq!((status, reason(&body)), (401, "replayed".into()));
    let h = signed(&reader, &path, now_s() - 3_600, "stale");
    let (status, body) = get(&http, &path, &[(&h[0].0, &h[0].1), (&h[1].0, &h[1].1)]);
    assert_eq!((status, reason(&body)), (401, "signature_expired".into()));
    // Out of scope: 403 whether or not the patient exists; in scope and unknown: 404.
    let outside = want.keys().find(|p| !p.starts_with("pt-000000")).expect("a patient outside the narrow scope");
    assert_eq!(signed_get(&http, &narrow, &format!("/v1/patients/{outside}")).0, 403);
    assert_eq!(signed_get(&http, &narrow, "/v1/patients/pt-1nobody").0, 403);
    assert_eq!(signed_get(&http, &reader, "/v1/patients/pt-nobody").0, 404);
    let (status, body) = signed_get(&http, &reader, "/v1/patients/pt%20x");
    assert_eq!((status, reason(&body)), (400, "malformed_patient_id".into()));
    assert!(!body.contains("pt%20x") && !body.contains("pt x"), "never echoed: {body}");
    let (status, _) = signed_get(&http, &reader, &format!("/v1/patients/{patient}?after={}", "x".repeat(3000)));
    assert_eq!(status, 414);
    requests += 10;

    // The narrow key's listings hold only its own patients.
    let (status, body) = signed_get(&http, &narrow, "/v1/conflicts?limit=500");
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).expect("json");
    for p in page["patients"].as_array().expect("patients") {
        assert!(p["patient_id"].as_str().expect("id").starts_with("pt-000000"), "out of scope: {p}");
    }
    let feed = tidemark(&["changes", "--target", &target, "--key", s(&narrow_path), "--idle-ms", "1500"], b"", &[]);
    feed.code(0);
    let seen: BTreeSet<String> = feed
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a change line")["patient_id"].to_string())
        .collect();
    assert_eq!(seen.len(), 10, "pt-0000000 to pt-0000009 only: {seen:?}");
    let token = tokens.values().next().expect("a token");
    assert_eq!(signed_get(&http, &narrow, &format!("/v1/patients/{outside}?after={token}")).0, 403);
    requests += 3;

    // Conflicts: exactly the reference patients with open conflicts.
    let (status, body) = signed_get(&http, &reader, "/v1/conflicts?limit=500");
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).expect("json");
    let listed: BTreeSet<&str> =
        page["patients"].as_array().expect("patients").iter().map(|p| p["patient_id"].as_str().expect("id")).collect();
    let open: BTreeSet<&str> =
        want.iter().filter(|(_, v)| v["open_conflicts"].as_u64() > Some(0)).map(|(p, _)| p.as_str()).collect();
    assert_eq!(listed, open);
    requests += 1;

    // The change feed: every patient once, at its version.
    let feed = tidemark(&["changes", "--target", &target, "--key", s(&reader_path), "--idle-ms", "1500"], b"", &[]);
    feed.code(0);
    let versions: BTreeMap<String, serde_json::Value> = feed
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a change line"))
        .map(|c| (c["patient_id"].as_str().expect("id").to_owned(), c["version"].clone()))
        .collect();
    let want_versions: BTreeMap<String, serde_json::Value> =
        want.iter().map(|(p, v)| (p.clone(), v["version"].clone())).collect();
    assert_eq!(versions, want_versions);
    requests += 1;

    // loadgen's read mode: signed reads at a rate, every one answered 200.
    let load = tidemark(
        &["loadgen", "--read", "--target", &target, "--key", s(&reader_path), "--rate", "100", "--duration", "2"]
            .iter()
            .chain(&["--patients", "24", "--patient-prefix", "pt-0", "--concurrency", "4", "--json"])
            .copied()
            .collect::<Vec<_>>(),
        b"",
        &[],
    );
    load.code(0);
    let report: serde_json::Value = serde_json::from_str(load.stdout.trim()).expect("a JSON report");
    let sent = report["totals"]["sent"].as_u64().expect("sent");
    assert!(sent >= 150 && report["totals"]["accepted"] == sent, "{report}");
    requests += usize::try_from(sent).expect("small");

    // Every request left an audit record; none holds view content.
    let audit_topic = format!("{prefix}tidemark.access-audit.v1");
    let audits = eventually("every request is audited", Duration::from_secs(20), || {
        let records = read_all(&bootstrap, &audit_topic, 2);
        (records.len() >= requests).then_some(records)
    });
    assert_eq!(audits.len(), requests, "one record per request");
    let one: serde_json::Value = audits
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).expect("json"))
        .find(|a| a["status"] == 403)
        .expect("a 403 is audited");
    assert_eq!((one["key_id"].as_str(), one["route"].as_str()), (Some("narrow"), Some("/v1/patients/{id}")));
    assert!(audits.iter().all(|r| !String::from_utf8_lossy(&r.payload).contains("\"fields\"")), "no view content");
    let metrics = q.scrape();
    assert_eq!(common::metric(&metrics, "tidemark_query_reads_total{key_id=\"reader\"}").map(|v| v > 20.0), Some(true));
    common::promtool_check(&metrics);

    // Kill it mid-stream, write more, restart: it resumes from its offsets.
    let applied_before = common::metric(&metrics, "tidemark_query_records_read_total").expect("read");
    q.kill();
    let more = workload(4, 2, 72);
    let body: String = more.iter().map(|i| format!("{}\n", i.envelope)).collect();
    let (status, _, resp) = ingest.post("application/x-ndjson", body.as_bytes());
    assert_eq!(status, 202, "{resp}");
    let resp: serde_json::Value = serde_json::from_str(&resp).expect("json");
    let last_token = resp["results"].as_array().expect("results").last().expect("a line")["consistency"].clone();
    let (mut q, http) = query(&bootstrap, &prefix, &registry, &store, dir.path());
    let all: Vec<&Signed> = items.iter().chain(&more).collect();
    let want = fold_reference(all, dir.path());
    let last = &more.last().expect("an item").patient;
    let path = format!("/v1/patients/{last}?after={}", last_token.as_str().expect("token"));
    let (status, body) = signed_get(&http, &reader, &path);
    assert_eq!(status, 200, "{body}");
    assert_eq!(&serde_json::from_str::<serde_json::Value>(&body).expect("view"), &want[last]);
    let applied_after = common::metric(&q.scrape(), "tidemark_query_records_read_total").expect("read");
    assert!(applied_after < applied_before, "resumed, not re-read: {applied_after} vs {applied_before}");
    q.terminate(Duration::from_secs(20));
}
