//! `tidemark archiver` and `tidemark snapshot` against Tansu: views on the
//! state topic -> encrypted snapshot -> verify -> decrypt -> pyarrow and DuckDB
//! read the same rows; de-identification; tampering; a crash mid-snapshot.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::pipeline::{Signed, fold, produce_raw, produce_sealed, produce_views, sign_event, workload};
use common::{Run, s, snapshots, tidemark};
use serde_json::json;
use tidemark_testkit::workload::patient_id;
use tidemark_testkit::{TansuBroker, unique_topic};

const PATIENTS: usize = 12;

/// Distinctive identifiers: none may appear in a de-identified snapshot.
fn marker(kind: &str, p: usize) -> String {
    format!("Zq{kind}Marker{p:03}")
}

/// Demographics with marker values for every patient of `workload`.
fn demographics(seed: u64) -> Vec<Signed> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    (0..PATIENTS)
        .map(|p| {
            let patient = patient_id(p);
            let wall = now - 30_000;
            let id = uuid::Uuid::from_u64_pair((wall << 16) | 0x7000, 0x8000_0000_0000_0000 | (seed << 40) | p as u64);
            let event = json!({"event_id": id, "patient_id": patient, "source": "site-a-ehr", "author": "clin-1",
                "hlc": {"wall_ms": wall, "logical": 0}, "ops": [
                {"op": "set", "path": "demographics.given_name", "value": marker("Given", p)},
                {"op": "set", "path": "demographics.family_name", "value": marker("Family", p)},
                {"op": "set", "path": "demographics.phone", "value": format!("+1555{p:07}")},
                {"op": "set", "path": "demographics.birth_date", "value": format!("19{:02}-04-1{}", 40 + p, p % 10)},
                {"op": "set", "path": "demographics.postal_code", "value": format!("9{p:02}17")},
                {"op": "append", "path": "notes", "value": {"text": marker("Note", p)}}]});
            Signed { patient, envelope: sign_event(&event) }
        })
        .collect()
}

struct World {
    broker: TansuBroker,
    prefix: String,
    dir: tempfile::TempDir,
    /// The final view of every patient.
    views: BTreeMap<String, String>,
}

impl World {
    /// State topic with an older and a newer view per patient (compaction is lazy).
    async fn new(name: &str) -> Self {
        let broker = TansuBroker::start().unwrap();
        let prefix = format!("{}.", unique_topic(name));
        let topic = format!("{prefix}{}", tidemark_schemas::STATE_TOPIC);
        broker.create_topic(&topic, 4).await.unwrap();
        let mut events = workload(PATIENTS, 3, 77);
        let older = fold(&events);
        events.extend(demographics(78));
        let views = fold(&events);
        let as_records = |v: &BTreeMap<String, String>| -> Vec<Signed> {
            v.iter().map(|(p, view)| Signed { patient: p.clone(), envelope: view.clone() }).collect()
        };
        produce_views(broker.bootstrap(), &topic, &as_records(&older)).await;
        produce_views(broker.bootstrap(), &topic, &as_records(&views)).await;
        let dir = tempfile::tempdir().unwrap();
        let w = Self { broker, prefix, dir, views };
        for (kind, name) in [("recipient", "alice"), ("recipient", "bob"), ("archiver", "arch"), ("dataset", "ds")] {
            w.run(&["keys", "generate", "--kind", kind, "--out", s(&w.keys()), "--name", name]).code(0);
        }
        w
    }

    fn keys(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    fn key(&self, file: &str) -> String {
        s(&self.keys().join(file)).to_owned()
    }

    fn archive(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    fn run(&self, args: &[&str]) -> Run {
        tidemark(args, b"", &[])
    }

    /// `tidemark archiver --once` for `profile`; returns the snapshot id.
    fn snapshot(&self, profile: &str, extra: &[&str]) -> String {
        let (arch, alice, archive) = (self.key("arch.key"), self.key("alice.pub"), self.archive());
        let mut args = vec!["archiver", "--once", "--brokers", self.broker.bootstrap(), "--topic-prefix", &self.prefix];
        args.extend(["--out", s(&archive), "--profile", profile, "--archiver-key", &arch]);
        args.extend(["--recipient", &alice, "--metrics-listen", "127.0.0.1:0"]);
        let ds = self.key("ds.key");
        if profile == "deidentified" {
            args.extend(["--dataset-key", &ds]);
        }
        args.extend(extra);
        let run = self.run(&args);
        run.code(0).stdout_has("snapshot committed");
        run.stdout.split_whitespace().find_map(|w| w.strip_prefix("id=")).unwrap().to_owned()
    }

    /// `tidemark archiver --once` for `profile`, as it ran.
    fn snapshot_run(&self, profile: &str) -> Run {
        let (arch, alice, archive) = (self.key("arch.key"), self.key("alice.pub"), self.archive());
        let mut args = vec!["archiver", "--once", "--brokers", self.broker.bootstrap(), "--topic-prefix", &self.prefix];
        args.extend(["--out", s(&archive), "--profile", profile, "--archiver-key", &arch]);
        args.extend(["--recipient", &alice, "--metrics-listen", "127.0.0.1:0"]);
        self.run(&args)
    }

    /// The manifest of the snapshot `run` committed.
    fn manifest_of(&self, run: &Run) -> tidemark_archiver::manifest::Manifest {
        let id = run.stdout.split_whitespace().find_map(|w| w.strip_prefix("id=")).unwrap();
        let profile = run.stdout.split_whitespace().find_map(|w| w.strip_prefix("profile=")).unwrap();
        let manifest = fs::read(self.archive().join(profile).join(id).join("manifest.dsse.json")).unwrap();
        tidemark_archiver::manifest::Manifest::decode_unverified(&manifest).unwrap()
    }

    /// `tidemark snapshot SUB` of `profile/id` with the archiver's public key and `key`.
    fn snapshot_cmd(&self, sub: &str, profile: &str, id: &str, key: &str, extra: &[&str]) -> Run {
        let (archive, pubkey, key) = (s(&self.archive()).to_owned(), self.key("arch.pub"), self.key(key));
        let mut args = vec!["snapshot", sub, "--archive", &archive, "--profile", profile, id];
        args.extend(["--archiver-pub", &pubkey, "--key", &key]);
        args.extend(extra);
        self.run(&args)
    }

    fn verify(&self, profile: &str, id: &str, key: &str) -> Run {
        self.snapshot_cmd("verify", profile, id, key, &[])
    }

    fn decrypt(&self, profile: &str, id: &str, key: &str, out: &Path) -> Run {
        self.snapshot_cmd("decrypt", profile, id, key, &["--out", s(out)])
    }

    fn part_files(&self, profile: &str, id: &str) -> Vec<PathBuf> {
        let mut parts: Vec<PathBuf> = fs::read_dir(self.archive().join(profile).join(id))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        parts.sort();
        parts
    }
}

/// Runs Python with pyarrow and DuckDB on the decrypted directory; returns its stdout.
fn python(script: &str, dir: &Path) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .expect("python3 runs (scripts/deps installs it)");
    assert!(
        out.status.success(),
        "python failed (scripts/deps installs pyarrow and duckdb):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const READ_BOTH: &str = r#"
import sys, json, glob, pyarrow.parquet as pq, duckdb
d = sys.argv[1]
t = pq.read_table(glob.glob(d + "/*.parquet"))
rows = t.to_pylist()
n = duckdb.sql(f"select count(*) from read_parquet('{d}/*.parquet')").fetchall()[0][0]
hr = duckdb.sql(f"select patient_id, vitals_heart_rate_bpm, allergies from read_parquet('{d}/*.parquet') order by patient_id").fetchall()
print(json.dumps({"pyarrow_rows": len(rows), "duckdb_rows": n, "columns": t.column_names,
                  "duck": [[p, h, a] for p, h, a in hr], "all": json.dumps(rows, default=str)}))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_round_trips_through_pyarrow_and_duckdb_and_deidentifies() {
    let w = World::new("arch-rt").await;
    let id = w.snapshot("identified", &[]);
    w.verify("identified", &id, "alice.key").code(0).stdout_has("every hash and every page verified");
    let out = w.dir.path().join("plain");
    w.decrypt("identified", &id, "alice.key", &out).code(0);
    let got: serde_json::Value = serde_json::from_str(&python(READ_BOTH, &out)).unwrap();
    assert_eq!(got["pyarrow_rows"], PATIENTS);
    assert_eq!(got["duckdb_rows"], PATIENTS);
    let rows = got["duck"].as_array().unwrap();
    assert!(rows.iter().filter(|r| !r[1].is_null()).count() >= PATIENTS / 4, "heart rates were written: {rows:?}");
    assert!(rows.iter().any(|r| r[2].as_array().is_some_and(|a| !a.is_empty())), "allergies were written: {rows:?}");
    for row in rows {
        let view: serde_json::Value = serde_json::from_str(&w.views[row[0].as_str().unwrap()]).unwrap();
        let fields = &view["fields"];
        assert_eq!(row[1], fields["vitals.heart_rate_bpm"]["value"], "heart rate of a patient");
        let allergies = fields["allergies"]["values"].as_array().cloned().unwrap_or_default();
        assert_eq!(row[2].as_array().cloned().unwrap_or_default(), allergies, "allergies of a patient");
    }
    assert!(got["all"].as_str().unwrap().contains(&marker("Given", 3)), "identified keeps names");

    // In place, still encrypted: pyarrow (and DuckDB over its dataset),
    // DuckDB natively, Spark; each agrees with the views the pipeline wrote.
    let views: Vec<serde_json::Value> = w.views.values().map(|v| serde_json::from_str(v).unwrap()).collect();
    let sum: u64 = views.iter().filter_map(|v| v["fields"]["vitals.heart_rate_bpm"]["value"].as_u64()).sum();
    let allergies: usize =
        views.iter().map(|v| v["fields"]["allergies"]["values"].as_array().map_or(0, Vec::len)).sum();
    let patient = w.views.keys().next().unwrap().clone();
    let one = serde_json::from_str::<serde_json::Value>(&w.views[&patient]).unwrap()["fields"]["vitals.heart_rate_bpm"]
        ["value"]
        .clone();
    let in_place = |format: &str, name: &str| {
        let out = w.dir.path().join(name);
        w.snapshot_cmd("keys", "identified", &id, "alice.key", &["--format", format, "--out", s(&out)]).code(0);
        out
    };
    let got = snapshots::python(snapshots::PYARROW, &[s(&in_place("pyarrow", "read.py"))]).unwrap();
    assert_eq!((&got["rows"], &got["sum"]), (&PATIENTS.into(), &sum.into()), "pyarrow: {got}");
    assert_eq!((&got["dataset_rows"], &got["dataset_sum"]), (&PATIENTS.into(), &sum.into()), "DuckDB on pyarrow");
    assert_eq!(got["allergies"], allergies, "the nested allergies through pyarrow: {got}");
    let glob = w.archive().join("identified").join(&id).join("part-*.parquet");
    let sql = in_place("duckdb", "read.sql");
    let got = snapshots::python(snapshots::DUCKDB, &[s(&sql), s(&glob), &patient]).unwrap();
    assert_eq!((&got["rows"], &got["sum"], &got["one"]), (&PATIENTS.into(), &sum.into(), &one), "DuckDB: {got}");
    assert_eq!((&got["glob_rows"], &got["glob_sum"]), (&PATIENTS.into(), &sum.into()), "DuckDB glob: {got}");
    let with_rate = views.iter().filter(|v| v["fields"]["vitals.heart_rate_bpm"]["value"].as_u64().is_some()).count();
    assert_eq!(got["joined"], with_rate, "DuckDB: a join: {got}");
    let got = snapshots::spark(&in_place("spark", "spark.properties"), &w.part_files("identified", &id)).unwrap();
    assert_eq!((&got["rows"], &got["sum"]), (&PATIENTS.into(), &sum.into()), "Spark: {got}");

    // De-identified: no direct identifier, no free text, stable pseudonyms.
    let deid = w.snapshot("deidentified", &[]);
    let out_d = w.dir.path().join("deid");
    w.decrypt("deidentified", &deid, "alice.key", &out_d).code(0);
    let got: serde_json::Value = serde_json::from_str(&python(READ_BOTH, &out_d)).unwrap();
    let all = got["all"].as_str().unwrap();
    for p in 0..PATIENTS {
        for m in [marker("Given", p), marker("Family", p), marker("Note", p), format!("+1555{p:07}"), patient_id(p)] {
            assert!(!all.contains(&m), "de-identified snapshot holds `{m}`");
        }
    }
    let bytes: Vec<u8> = fs::read_dir(&out_d).unwrap().flat_map(|e| fs::read(e.unwrap().path()).unwrap()).collect();
    assert!(!String::from_utf8_lossy(&bytes).contains(&patient_id(3)), "no patient id in the raw bytes either");
    let deid2 = w.snapshot("deidentified", &[]);
    let out_d2 = w.dir.path().join("deid2");
    w.decrypt("deidentified", &deid2, "alice.key", &out_d2).code(0);
    let ids = |d: &Path| {
        python(
            "import sys,glob,pyarrow.parquet as pq; print(sorted(pq.read_table(glob.glob(sys.argv[1]+'/*.parquet')).column('patient_id').to_pylist()))",
            d,
        )
    };
    assert_eq!(ids(&out_d), ids(&out_d2), "pseudonyms are stable for one dataset key");
    // The manifest names the dataset key (the pseudonym space) it signs for.
    let manifest = fs::read(w.archive().join("deidentified").join(&deid2).join("manifest.dsse.json")).unwrap();
    let m = tidemark_archiver::manifest::Manifest::decode_unverified(&manifest).unwrap();
    let ds = tidemark_seal::load_dataset_key(Path::new(&w.key("ds.key"))).unwrap();
    assert_eq!((m.sequence, m.dataset_key_id), (2, Some(ds.key_id())), "the second de-identified snapshot");

    // Bob is not a recipient.
    let run = w.verify("identified", &id, "bob.key");
    run.code(1).stderr_has("not encrypted for key");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_snapshots_on_its_interval_exposes_metrics_and_stops_on_sigterm() {
    use std::io::BufRead as _;
    let w = World::new("arch-svc").await;
    let (arch, alice, archive) = (w.key("arch.key"), w.key("alice.pub"), w.archive());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["archiver", "--brokers", w.broker.bootstrap(), "--topic-prefix", &w.prefix, "--out", s(&archive)])
        .args(["--archiver-key", &arch, "--recipient", &alice, "--metrics-listen", "127.0.0.1:0"])
        .args(["--interval-s", "3600", "--state-key", s(common::state_key())])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let metrics = first.split_whitespace().find_map(|w| w.strip_prefix("metrics=")).unwrap().to_owned();
    let committed = lines.next().unwrap().unwrap();
    assert!(committed.starts_with("snapshot committed profile=identified"), "{committed}");
    let text = common::http_get(&metrics, "/metrics");
    let series = |name: &str| common::metric(&text, name);
    assert_eq!(series(r#"tidemark_archiver_snapshots_total{profile="identified",result="ok"}"#), Some(1.0), "{text}");
    assert_eq!(series(r#"tidemark_archiver_rows_total{profile="identified"}"#), Some(PATIENTS as f64), "{text}");
    assert!(series(r#"tidemark_archiver_written_bytes_total{profile="identified"}"#).unwrap_or(0.0) > 0.0, "{text}");
    let last = series(r#"tidemark_archiver_last_success_timestamp_seconds{profile="identified"}"#).unwrap_or(0.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - last).abs() < 120.0, "last success {last} is now {now}");
    assert_eq!(series("tidemark_archiver_snapshot_duration_seconds_count"), Some(1.0), "{text}");
    common::promtool_check(&text);
    for p in 0..PATIENTS {
        assert!(!text.contains(&patient_id(p)), "no patient id in metrics");
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM between snapshots exits 0: {status:?}");
}

fn flip(path: &Path, at: impl Fn(usize) -> usize) {
    let mut b = fs::read(path).unwrap();
    let i = at(b.len());
    b[i] ^= 0x01;
    fs::write(path, b).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tampering_is_detected_each_with_its_own_error_and_nothing_is_written() {
    let w = World::new("arch-tamper").await;
    let a = w.snapshot("identified", &[]);
    let b = w.snapshot("identified", &[]);
    let parts = w.part_files("identified", &a);
    assert!(parts.len() >= 2, "several partitions, several parts: {parts:?}");
    let part = parts[0].clone();
    let pristine = fs::read(&part).unwrap();
    let restore = || fs::write(&part, &pristine).unwrap();
    let expect = |what: &str, want: &str| {
        let run = w.verify("identified", &a, "alice.key");
        run.code(1);
        assert!(run.stderr.contains(want), "{what}: wanted `{want}`\n{run:?}");
        let out = w.dir.path().join(format!("out-{}", what.replace(' ', "-")));
        w.decrypt("identified", &a, "alice.key", &out).code(1);
        let written = fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
        assert_eq!(written, 0, "{what}: decrypt wrote files");
        restore();
    };
    flip(&part, |_| 1);
    expect("leading magic", "it is this part's file, altered");
    flip(&part, |n| n / 2);
    expect("page byte", "it is this part's file, altered");
    flip(&part, |n| n - 1);
    expect("trailing magic", "its encryption metadata cannot be read");
    fs::write(&part, &pristine[..pristine.len() - 100]).unwrap();
    expect("truncation", "its encryption metadata cannot be read");
    fs::copy(&parts[1], &part).unwrap();
    expect(
        "another part of the snapshot",
        &format!("it is part {}, swapped in", parts[1].file_name().unwrap().to_string_lossy()),
    );
    let other = w.part_files("identified", &b)[0].clone();
    fs::copy(&other, &part).unwrap();
    expect("part from another snapshot", "an encrypted Parquet file of another snapshot, swapped in");
    let manifest = w.archive().join("identified").join(&a).join("manifest.dsse.json");
    let text = fs::read_to_string(&manifest).unwrap();
    let edited = {
        let mut env: serde_json::Value = serde_json::from_str(&text).unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload = String::from_utf8(b64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
        env["payload"] = b64.encode(payload.replacen("\"rows\": ", "\"rows\": 1", 1)).into();
        env.to_string()
    };
    fs::write(&manifest, edited).unwrap();
    let run = w.verify("identified", &a, "alice.key");
    run.code(1).stderr_has("signature");
    fs::write(&manifest, &text).unwrap();
    w.verify("identified", &a, "alice.key").code(0);
}

/// Issue 20 ("The edges"): a state record that is not a valid view of its
/// key's patient used to fail every snapshot (the topic is compacted, so it
/// stays). Now it is set aside, counted in the signed manifest, logged
/// without the patient, and the snapshot goes on. These are sealed with the
/// state key, as a merger with a bug would write them.
#[tokio::test(flavor = "multi_thread")]
async fn bad_state_records_are_set_aside_and_the_snapshot_goes_on() {
    let w = World::new("arch-poison").await;
    let topic = format!("{}{}", w.prefix, tidemark_schemas::STATE_TOPIC);
    let (victim, view) = w.views.iter().next().map(|(p, v)| (p.clone(), v.clone())).unwrap();
    let mut unfit: serde_json::Value = serde_json::from_str(&view).unwrap();
    let any_field = unfit["fields"].as_object().unwrap().values().next().unwrap().clone();
    unfit["fields"]["no_such_field"] = any_field;
    let poison = [
        Signed { patient: "pt-poison-undecodable".into(), envelope: "{not a view".into() },
        Signed { patient: "pt-poison-imposter".into(), envelope: view.clone() },
        Signed { patient: victim.clone(), envelope: unfit.to_string() },
    ];
    produce_views(w.broker.bootstrap(), &topic, &poison).await;
    let run = w.snapshot_run("identified");
    run.code(0).stdout_has(&format!("rows={}", PATIENTS - 1));
    for leak in ["pt-poison", victim.as_str(), "not a view"] {
        assert!(!run.stdout.contains(leak) && !run.stderr.contains(leak), "`{leak}` in the output\n{run:?}");
    }
    assert!(run.stderr.contains("set aside") || run.stdout.contains("set aside"), "the set-aside is logged\n{run:?}");
    let m = w.manifest_of(&run);
    assert_eq!((m.rows, m.records_set_aside), (PATIENTS as u64 - 1, 3), "{run:?}");
}

/// Issue 20 finding 7: state records were an unauthenticated trust anchor:
/// anyone who could produce to the state topic got a view into snapshots the
/// archiver signs. Now a record without the mergers' MAC, sealed under
/// another key, or sealed for another patient is passed over: the patient's
/// authentic view stands, and the manifest counts what was set aside.
#[tokio::test(flavor = "multi_thread")]
async fn forged_state_records_are_set_aside_and_the_authentic_view_stands() {
    let w = World::new("arch-forged").await;
    let topic = format!("{}{}", w.prefix, tidemark_schemas::STATE_TOPIC);
    let mut patients = w.views.keys().cloned();
    let (victim, other) = (patients.next().unwrap(), patients.next().unwrap());
    let mut forged: serde_json::Value = serde_json::from_str(&w.views[&victim]).unwrap();
    let family = &mut forged["fields"]["demographics.family_name"]["value"];
    assert!(family.is_string(), "the victim's view has a family name");
    *family = json!("FORGED");
    let forged = Signed { patient: victim.clone(), envelope: forged.to_string() };
    let brand_new = Signed { patient: "pt-planted".into(), envelope: w.views[&victim].replace(&victim, "pt-planted") };
    // Unsealed, sealed under an attacker's own state key, and a genuine
    // record of `other` with its genuine MAC replayed under the victim's key.
    produce_sealed(w.broker.bootstrap(), &topic, &[forged.clone(), brand_new], None).await;
    let attacker = tidemark_seal::StateKeys::new(&[tidemark_seal::StateKey::generate().unwrap()]).unwrap();
    produce_sealed(w.broker.bootstrap(), &topic, std::slice::from_ref(&forged), Some(&attacker)).await;
    let genuine =
        common::state_keys().seal(tidemark_seal::RecordKind::State, other.as_bytes(), Some(w.views[&other].as_bytes()));
    produce_raw(w.broker.bootstrap(), &topic, &victim, Some(w.views[&other].as_bytes()), Some(&genuine)).await;
    // And an unsealed tombstone for `other`: it must not remove the view.
    produce_raw(w.broker.bootstrap(), &topic, &other, None, None).await;

    let run = w.snapshot_run("identified");
    run.code(0).stdout_has(&format!("rows={PATIENTS}"));
    assert!(run.stderr.contains("not sealed by a merger"), "they are logged\n{run:?}");
    assert!(!run.stderr.contains(&victim) && !run.stderr.contains("FORGED"), "never the patient or the content");
    // Set aside: the patients whose latest record is not a merger's (the
    // victim and `other`, whose authentic views stand, and the planted one).
    let m = w.manifest_of(&run);
    assert_eq!((m.rows, m.records_set_aside), (PATIENTS as u64, 3), "{run:?}");
    let out = w.dir.path().join("plain");
    w.decrypt("identified", &m.snapshot_id, "alice.key", &out).code(0);
    let got: serde_json::Value = serde_json::from_str(&python(READ_BOTH, &out)).unwrap();
    assert!(!got["all"].as_str().unwrap().contains("FORGED"), "the forged view is not in the snapshot");
    assert!(!got["all"].as_str().unwrap().contains("pt-planted"), "nor the planted patient");
    for row in got["duck"].as_array().unwrap() {
        let view: serde_json::Value = serde_json::from_str(&w.views[row[0].as_str().unwrap()]).unwrap();
        assert_eq!(row[1], view["fields"]["vitals.heart_rate_bpm"]["value"], "every row is its authentic view");
    }

    // `tidemark state` passes over the same records and prints the authentic view.
    let state = w.run(&["state", "--brokers", w.broker.bootstrap(), "--topic-prefix", &w.prefix, &victim]);
    state.code(0).stderr_has("passed over the record");
    let printed: serde_json::Value = serde_json::from_str(state.stdout.trim()).unwrap();
    assert_eq!(printed, serde_json::from_str::<serde_json::Value>(&w.views[&victim]).unwrap(), "{state:?}");
}

#[cfg_attr(not(feature = "fault-injection"), ignore = "needs the fault-injection feature: run scripts/test")]
#[tokio::test(flavor = "multi_thread")]
async fn archiver_killed_mid_snapshot_leaves_no_manifest_and_the_next_run_completes_and_cleans_up() {
    let w = World::new("arch-crash").await;
    let (arch, alice) = (w.key("arch.key"), w.key("alice.pub"));
    let run = w.run(&[
        "archiver",
        "--once",
        "--brokers",
        w.broker.bootstrap(),
        "--topic-prefix",
        &w.prefix,
        "--out",
        s(&w.archive()),
        "--archiver-key",
        &arch,
        "--recipient",
        &alice,
        "--metrics-listen",
        "127.0.0.1:0",
        "--rows-per-part",
        "2",
        "--fault-abort-after-parts",
        "2",
    ]);
    assert_ne!(run.code, Some(0), "{run:?}");
    let dirs: Vec<_> = fs::read_dir(w.archive().join("identified")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "one interrupted snapshot");
    assert!(!dirs[0].join("manifest.dsse.json").exists(), "no manifest after a crash");
    let list = w.run(&["snapshot", "list", "--archive", s(&w.archive())]);
    list.code(0).stdout_has("incomplete");

    let id = w.snapshot("identified", &["--rows-per-part", "2"]);
    w.verify("identified", &id, "alice.key").code(0);
    let left: Vec<_> = fs::read_dir(w.archive().join("identified")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from(&id)], "the interrupted snapshot was cleaned up");
    let parts = w.part_files("identified", &id).len();
    assert!(parts >= PATIENTS / 2, "rows-per-part 2 splits the partitions: {parts} parts");

    // Retention keeps the newest two committed snapshots.
    let newer: Vec<String> = (0..2).map(|_| w.snapshot("identified", &["--retain", "2"])).collect();
    let mut left: Vec<String> = fs::read_dir(w.archive().join("identified"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, newer, "retention removed the oldest");
    // Each run continued the chain from the one before: sequences 2 and 3
    // remain (1 was retained away), linked, and `latest` is the highest.
    let listed = w.run(&["snapshot", "list", "--archive", s(&w.archive()), "--archiver-pub", &w.key("arch.pub")]);
    listed.code(0).stdout_has(&format!("{} verified sequence=2", newer[0]));
    listed.stdout_has(&format!("{} verified sequence=3", newer[1]));
    assert!(!listed.stdout.contains("chain broken"), "{listed:?}");
    w.verify("identified", "latest", "alice.key").code(0).stdout_has(&format!("ok: snapshot {}", newer[1]));
}

/// One synthetic view (the shape `tidemark fold` prints) of a typical record:
/// demographics, vitals, sets, a note; about 1 KB of JSON.
fn synthetic_view(i: usize) -> String {
    let wall = 1_763_794_800_000u64 + i as u64;
    let w = |value: serde_json::Value, author: &str| {
        json!({"value": value, "author": author, "source": "site-a-ehr",
               "hlc": {"wall_ms": wall, "logical": 0}, "conflicts": []})
    };
    json!({"patient_id": format!("pt-{i:07}"), "fields": {
        "demographics.given_name": w(json!(format!("Given{i}")), "clin-1"),
        "demographics.family_name": w(json!(format!("Family{i}")), "clin-1"),
        "demographics.birth_date": w(json!(format!("19{:02}-0{}-1{}", 30 + i % 70, 1 + i % 9, i % 10)), "clin-1"),
        "demographics.postal_code": w(json!(format!("{:05}", i % 100_000)), "clin-1"),
        "vitals.heart_rate_bpm": w(json!(50 + i % 70), "nurse-2"),
        "vitals.temperature_c": w(json!(36.5 + (i % 20) as f64 / 10.0), "nurse-2"),
        "allergies": {"values": [format!("rxnorm:{}", i % 50), format!("rxnorm:{}", 100 + i % 7)]},
        "problems": {"values": [format!("snomed:{}", 38_341_003 + i % 13)]},
        "notes": {"entries": [{"id": {"event_id": "019aa6b0-5a00-7000-8000-000000000002", "op": 0},
            "author": "clin-7", "source": "site-a-ehr", "hlc": {"wall_ms": wall, "logical": 1},
            "text": "Seen in clinic; stable, follow up in three months."}]}},
        "version": {"site-a-ehr": {"wall_ms": wall, "logical": 1}}, "event_count": 7,
        "updated_at": "2025-11-22T07:00:01.000Z", "open_conflicts": 0})
    .to_string()
}

/// Counts every record of `topic` with a bare consumer, one partition after
/// the other as the archiver reads: the broker's read bound for that pattern.
fn bare_read(bootstrap: &str, topic: &str, partitions: i32) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::Message as _;
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "measure-bare")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "20")
        .set("fetch.max.bytes", "67108864")
        .set("max.partition.fetch.bytes", "16777216")
        .create()
        .unwrap();
    let mut n = 0;
    for p in 0..partitions {
        let (low, high) = c.fetch_watermarks(topic, p, std::time::Duration::from_secs(10)).unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(low)).unwrap();
        c.assign(&tpl).unwrap();
        let mut next = low;
        while next < high {
            let m = c.poll(std::time::Duration::from_secs(60)).expect("the bare reader stalled").unwrap();
            std::hint::black_box(m.payload());
            next = m.offset() + 1;
            n += 1;
        }
    }
    n
}

/// Measurement, not a check: `TIDEMARK_MEASURE_PATIENTS` (default 1,000,000)
/// synthetic views on a 12-partition state topic in Tansu, then one
/// `tidemark archiver --once` per profile timed from the outside (peak RSS
/// by GNU time, `/usr/bin/time`). Run with
/// `cargo test --release --test archiver_e2e snapshot_measure -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run by hand"]
async fn snapshot_measure_1m_patients() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let patients: usize =
        std::env::var("TIDEMARK_MEASURE_PATIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let broker = TansuBroker::start().unwrap();
    let prefix = format!("{}.", unique_topic("arch-measure"));
    let topic = format!("{prefix}{}", tidemark_schemas::STATE_TOPIC);
    broker.create_topic(&topic, 12).await.unwrap();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "zstd")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .unwrap();
    let t = std::time::Instant::now();
    let mut pending = std::collections::VecDeque::new();
    let mut bytes = 0usize;
    for i in 0..patients {
        let v = synthetic_view(i);
        bytes += v.len();
        let key = format!("pt-{i:07}");
        loop {
            match producer.send_result(FutureRecord::to(&topic).key(&key).payload(&v)) {
                Ok(f) => break pending.push_back(f),
                Err(_) => pending.pop_front().unwrap().await.unwrap().unwrap(),
            };
        }
        if pending.len() > 100_000 {
            pending.pop_front().unwrap().await.unwrap().unwrap();
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    eprintln!("measure: produced {patients} views ({bytes} bytes of JSON) in {:.1?}", t.elapsed());
    // The bound: the same records read by a bare consumer, no processing.
    let t = std::time::Instant::now();
    let read = bare_read(broker.bootstrap(), &topic, 12);
    let bound = t.elapsed();
    assert_eq!(read, patients, "the bare reader saw every record");
    eprintln!(
        "measure: bound, a bare rdkafka consumer reading the same topic: {bound:.1?} = {:.0} records/s",
        patients as f64 / bound.as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    for (kind, name) in [("recipient", "alice"), ("archiver", "arch"), ("dataset", "ds")] {
        tidemark(&["keys", "generate", "--kind", kind, "--out", s(&keys), "--name", name], b"", &[]).code(0);
    }
    let archive = dir.path().join("archive");
    let (arch, alice, ds) = (keys.join("arch.key"), keys.join("alice.pub"), keys.join("ds.key"));
    // Both profiles of the same topic, each timed from the outside, its peak
    // RSS read by /usr/bin/time. The de-identified profile also spills every
    // view to scratch and cuts its parts by pseudonym once the topic is read.
    for profile in ["identified", "deidentified"] {
        let mut args = vec!["archiver", "--once", "--brokers", broker.bootstrap(), "--topic-prefix", &prefix];
        args.extend(["--out", s(&archive), "--archiver-key", s(&arch), "--recipient", s(&alice)]);
        args.extend(["--metrics-listen", "127.0.0.1:0", "--profile", profile]);
        if profile == "deidentified" {
            args.extend(["--dataset-key", s(&ds)]);
        }
        let t = std::time::Instant::now();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "peak_rss_kib=%M", env!("CARGO_BIN_EXE_tidemark")])
            .args(&args)
            .env("RUST_LOG", "tidemark_archiver=debug")
            .env_remove("TIDEMARK_KEYS")
            .env_remove("TIDEMARK_CATALOG")
            .output()
            .expect("/usr/bin/time runs the binary");
        let took = t.elapsed();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        eprintln!("{stderr}");
        assert!(out.status.success(), "{stdout}");
        let rss = stderr.lines().find_map(|l| l.strip_prefix("peak_rss_kib=")).expect("GNU time's line");
        let sealed: u64 = fs::read_dir(archive.join(profile))
            .unwrap()
            .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
            .map(|f| f.unwrap().metadata().unwrap().len())
            .sum();
        eprintln!(
            "measure: {profile} snapshot of {patients} patients in {took:.1?} = {:.0} rows/s ({:.2}x the bare read); peak RSS {rss} KiB; {sealed} bytes encrypted ({:.1} B/row)\n{}",
            patients as f64 / took.as_secs_f64(),
            bound.as_secs_f64() / took.as_secs_f64(),
            sealed as f64 / patients as f64,
            stdout.trim()
        );
    }
}
