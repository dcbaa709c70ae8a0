//! The snapshot phases: `tidemark archiver --once` on the run's state topic,
//! and on a state topic of `--snapshot-patients` patients, each verified and
//! timed beside a raw read of the same topic.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tidemark_testkit::{TansuBroker, TansuStorage};

use super::bound::{self, Record, Throughput};
use super::run::{Config, KeepLog, STATE, say};
use super::sampler::Sampler;
use super::services::{Keys, arg, args, run, start};

/// How long one `archiver --once` may take to commit (the 1M-patient
/// snapshot on the test broker takes about two minutes).
const SNAPSHOT_LIMIT: Duration = Duration::from_secs(1800);

/// The snapshot taken at the end.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    /// Archiver start to committed manifest, seconds.
    pub seconds: f64,
    /// Rows (patients).
    pub rows: u64,
    /// Encrypted parts.
    pub parts: u64,
    /// Bytes written (parts and manifest).
    pub bytes: u64,
    /// `tidemark snapshot verify --key` (signature, hashes, every page decrypted), seconds.
    pub verify_seconds: f64,
    /// The broker's bound: reading the whole state topic raw, as the archiver must.
    pub state_read_bound: Throughput,
    /// Distinct patients the state topic holds, read to its real end.
    pub patients_in_topic: u64,
    /// Partitions of the state topic.
    pub partitions: i32,
}

/// The state topic a snapshot reads.
pub struct StateTopic<'a> {
    /// Its broker.
    pub brokers: &'a str,
    /// Its partitions.
    pub partitions: i32,
    /// The distinct patients it holds.
    pub patients: u64,
    /// The records the bound reads (all of them when known; else until idle).
    pub expected: Option<u64>,
}

/// The snapshot target is for 1M patients, and Tansu does not compact: the
/// run's state topic holds a record per touched patient per merger batch, not
/// one per patient. So the latest view of each of the run's patients (what
/// compaction keeps) is copied under new patient ids (`c{copy}-{id}`, so a
/// copy's rows sort together, as distinct patients would) into the state
/// topic of a second Tansu, until it holds `snapshot_patients` patients, one
/// record each, and the archiver snapshots that.
///
/// The second Tansu stores in sqlite: its memory engine's stale watermarks
/// would end the archiver's consistent cut short of the topic's end (see
/// [`bound::consume`]); sqlite's are exact (1,000,000 records produced at
/// 52k/s, every partition's watermark right).
pub(super) fn scale_snapshot(
    cfg: &Config,
    keys: &Keys,
    sampler: &Sampler,
    logs: &Path,
    rt: &tokio::runtime::Runtime,
    views: Vec<Record>,
) -> anyhow::Result<Option<Snapshot>> {
    if cfg.snapshot_patients == 0 {
        return Ok(None);
    }
    anyhow::ensure!(!views.is_empty(), "the state topic is empty");
    say(&format!("snapshot at scale: {} patients on a second Tansu (sqlite)", cfg.snapshot_patients));
    let mut records: Vec<Record> = Vec::with_capacity(cfg.snapshot_patients);
    'copies: for copy in 0.. {
        for (patient, view) in &views {
            if records.len() == cfg.snapshot_patients {
                break 'copies;
            }
            let id = format!("c{copy}-{patient}");
            let mut v: serde_json::Value = serde_json::from_slice(view).context("a state record is JSON")?;
            v["patient_id"] = serde_json::Value::String(id.clone());
            records.push((id, serde_json::to_vec(&v).context("re-encoding a view")?));
        }
    }
    drop(views);
    let broker = TansuBroker::start_with(TansuStorage::Sqlite).context("starting the second Tansu")?;
    let _keep = KeepLog { from: broker.log_path().to_owned(), to: logs.join("tansu-sqlite.log") };
    if let Some(pid) = broker.pid() {
        sampler.watch("tansu-sqlite", pid);
    }
    let brokers = broker.bootstrap().to_owned();
    let partitions = cfg.snapshot_partitions;
    rt.block_on(broker.create_topic(STATE, partitions)).context("creating the scale state topic")?;
    let state_keys = tidemark_seal::load_state_keys(&[keys.file("state.key")]).context("loading the state key")?;
    let produced = bound::produce_sealed(&brokers, STATE, &records, Some(&state_keys))?;
    drop(records);
    let n = Some(produced.records);
    let state = StateTopic { brokers: &brokers, partitions, patients: produced.records, expected: n };
    let snap = snapshot(cfg, keys, sampler, logs, "archiver-scale", &state)?;
    anyhow::ensure!(
        snap.rows == produced.records,
        "the snapshot at scale has {} rows for {} patients",
        snap.rows,
        produced.records
    );
    Ok(Some(snap))
}

/// `tidemark archiver --once` on `state`, then `tidemark snapshot verify`
/// with the recipient key; the bound reads the topic raw.
pub(super) fn snapshot(
    cfg: &Config,
    keys: &Keys,
    sampler: &Sampler,
    logs: &Path,
    name: &str,
    state: &StateTopic<'_>,
) -> anyhow::Result<Snapshot> {
    let brokers = state.brokers;
    let out = cfg.work.join(name);
    let mut a =
        args(["archiver", "--once", "--brokers", brokers, "--out", &arg(&out), "--metrics-listen", "127.0.0.1:0"]);
    a.extend(args([
        "--recipient",
        &arg(&keys.file("analytics.pub")),
        "--archiver-key",
        &arg(&keys.file("archiver.key")),
        "--state-key",
        &arg(&keys.file("state.key")),
    ]));
    let started = Instant::now();
    let mut archiver = start(&cfg.tidemark, name, &a, logs);
    sampler.watch(name, archiver.id().context("the archiver is not running")?);
    let line = archiver.wait_line("snapshot committed", SNAPSHOT_LIMIT);
    let seconds = started.elapsed().as_secs_f64();
    let status = archiver.wait_exit(Duration::from_secs(60)).context("the archiver --once did not exit")?;
    anyhow::ensure!(status.success(), "the archiver exited with {status}");
    let field = |k: &str| -> anyhow::Result<u64> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {k}= in the archiver's line `{}`", line.trim()))
    };
    let (rows, parts, bytes) = (field("rows")?, field("parts")?, field("bytes")?);
    let start = Instant::now();
    let mut v =
        args(["snapshot", "verify", "--archive", &arg(&out), "--archiver-pub", &arg(&keys.file("archiver.pub"))]);
    v.extend(args(["--key", &arg(&keys.file("analytics.key")), "latest"]));
    run(&cfg.tidemark, &v)?;
    let verify_seconds = start.elapsed().as_secs_f64();
    let state_read_bound = bound::consume(brokers, STATE, state.partitions, cfg.fetch_wait_ms, state.expected)?;
    let (patients_in_topic, partitions) = (state.patients, state.partitions);
    Ok(Snapshot { seconds, rows, parts, bytes, verify_seconds, state_read_bound, patients_in_topic, partitions })
}
