//! `tidemark archiver --profile deidentified` against Tansu: which part a
//! de-identified row lands in says nothing of its patient id (the security
//! review's finding 10). Parts used to be the state topic's partitions, so
//! a row's part gave crc32(patient id) mod partitions; they are now cut from
//! all partitions by pseudonym order and row count.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::pipeline::{Signed, fold, produce_views, read_all, workload};
use common::{s, tidemark};
use tidemark_archiver::table::{Profile, TableLayout};
use tidemark_schemas::Catalog;
use tidemark_testkit::{TansuBroker, unique_topic};

const PATIENTS: usize = 24;
const PARTITIONS: i32 = 4;
const ROWS_PER_PART: usize = 5;

/// Part file name -> its `patient_id` column, in file order.
const READ_PARTS: &str = r#"
import sys, json, glob, os, pyarrow.parquet as pq
d = sys.argv[1]
print(json.dumps({os.path.basename(f): pq.read_table(f).column("patient_id").to_pylist()
                  for f in sorted(glob.glob(d + "/*.parquet"))}))
"#;

fn read_parts(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let out = std::process::Command::new("python3").arg("-c").arg(READ_PARTS).arg(dir).output().unwrap();
    assert!(out.status.success(), "python3 with pyarrow (scripts/deps): {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_20_deidentified_parts_are_cut_by_pseudonym_not_by_partition() {
    let broker = TansuBroker::start().unwrap();
    let prefix = format!("{}.", unique_topic("deid-parts"));
    let topic = format!("{prefix}{}", tidemark_schemas::STATE_TOPIC);
    broker.create_topic(&topic, PARTITIONS).await.unwrap();
    let views = fold(&workload(PATIENTS, 2, 91));
    let records: Vec<Signed> = views.iter().map(|(p, v)| Signed { patient: p.clone(), envelope: v.clone() }).collect();
    produce_views(broker.bootstrap(), &topic, &records).await;
    // The partition each patient's record is in: crc32(id) mod 4, by the
    // producer's default partitioner.
    let partition_of: BTreeMap<String, i32> =
        read_all(broker.bootstrap(), &topic, PARTITIONS).into_iter().map(|r| (r.key, r.partition)).collect();
    assert_eq!(partition_of.len(), PATIENTS);
    assert!(partition_of.values().collect::<BTreeSet<_>>().len() >= 3, "patients in most partitions");

    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    for (kind, name) in [("recipient", "alice"), ("archiver", "arch"), ("dataset", "ds")] {
        tidemark(&["keys", "generate", "--kind", kind, "--out", s(&keys), "--name", name], b"", &[]).code(0);
    }
    let (archive, key) = (dir.path().join("archive"), |f: &str| s(&keys.join(f)).to_owned());
    let rows_per_part = ROWS_PER_PART.to_string();
    let run = tidemark(
        &[
            "archiver",
            "--once",
            "--brokers",
            broker.bootstrap(),
            "--topic-prefix",
            &prefix,
            "--out",
            s(&archive),
            "--profile",
            "deidentified",
            "--dataset-key",
            &key("ds.key"),
            "--archiver-key",
            &key("arch.key"),
            "--recipient",
            &key("alice.pub"),
            "--metrics-listen",
            "127.0.0.1:0",
            "--rows-per-part",
            &rows_per_part,
        ],
        b"",
        &[],
    );
    run.code(0).stdout_has(&format!("rows={PATIENTS}"));
    let id = run.stdout.split_whitespace().find_map(|w| w.strip_prefix("id=")).unwrap().to_owned();
    let snapshot = |sub: &str, extra: &[&str]| {
        let (archive, pubkey, alice) = (s(&archive).to_owned(), key("arch.pub"), key("alice.key"));
        let mut args = vec!["snapshot", sub, "--archive", &archive, "--profile", "deidentified", &id];
        args.extend(["--archiver-pub", &pubkey, "--key", &alice]);
        args.extend(extra);
        tidemark(&args, b"", &[])
    };
    snapshot("verify", &[]).code(0).stdout_has("every hash and every page verified");
    let plain = dir.path().join("plain");
    snapshot("decrypt", &["--out", s(&plain)]).code(0);
    let parts = read_parts(&plain);

    // Which patient each pseudonym is (the test holds the dataset key).
    let ds = tidemark_seal::load_dataset_key(&keys.join("ds.key")).unwrap();
    let layout = TableLayout::new(Catalog::builtin(), &Profile::Deidentified { dataset_key: *ds.bytes() }, 0).unwrap();
    let patient_of: BTreeMap<String, String> =
        partition_of.keys().map(|p| (layout.patient_key(p).into_owned(), p.clone())).collect();
    let partitions_in =
        |rows: &[String]| -> BTreeSet<i32> { rows.iter().map(|r| partition_of[&patient_of[r]]).collect() };

    // A part is not a partition: parts mix partitions, and a partition's
    // patients are spread over parts. Before, every part held exactly one
    // partition's patients.
    let mixed = parts.values().filter(|rows| partitions_in(rows).len() >= 2).count();
    assert!(mixed >= 1, "no part mixes partitions, so a part still names a partition: {parts:?}");
    // Parts are ranges of one pseudonym order, in part order.
    let joined: Vec<&String> = parts.values().flatten().collect();
    assert!(joined.windows(2).all(|w| w[0] < w[1]), "parts are consecutive pseudonym ranges: {parts:?}");
    let every: BTreeSet<&String> = patient_of.keys().collect();
    assert_eq!(joined.into_iter().collect::<BTreeSet<_>>(), every, "every patient once");
    // Cut by row count alone: 24 rows at most 5 a part is 5 parts of 4 or 5.
    let sizes: Vec<usize> = parts.values().map(Vec::len).collect();
    assert_eq!(sizes, [5, 5, 5, 5, 4], "{parts:?}");
    // Named by index only.
    let names: Vec<&str> = parts.keys().map(String::as_str).collect();
    assert_eq!(names, (0..5).map(|i| format!("part-{i:05}.parquet")).collect::<Vec<_>>());
}
