//! `tidemark demo` as a newcomer runs it, shortened: it must finish on its
//! own, its summary must tie out (accepted = folded into the state topic,
//! conflicts surfaced, a snapshot), and independent checks must agree with
//! it: `tidemark snapshot verify` accepts the snapshot it printed, and
//! `tidemark fold` of the envelopes it says were accepted equals, byte for
//! byte, the live views it read back from the state topic.

mod common;

use std::collections::BTreeMap;

use common::{s, tidemark};

/// The `key=value` fields of the summary's `demo result:` line.
fn result_line(stdout: &str) -> BTreeMap<String, String> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo result: "))
        .unwrap_or_else(|| panic!("no `demo result:` line in\n{stdout}"));
    line.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

#[test]
fn the_demo_runs_end_to_end_and_its_summary_checks_out() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    let run = tidemark(
        &["demo", "--dir", s(&dir), "--duration", "5", "--patients", "400", "--rate", "300", "--partitions", "8"],
        b"",
        &[],
    );
    run.code(0).stdout_has("== Tidemark demo summary ==").stdout_has("s] sent");
    let result = result_line(&run.stdout);
    let num = |k: &str| -> u64 { result[k].parse().unwrap_or_else(|_| panic!("{k} is a number: {result:?}")) };
    assert!(num("accepted") > 0, "{run:?}");
    assert_eq!(num("accepted"), num("folded"), "every accepted event is folded into the state topic\n{run:?}");
    assert!(num("conflicts_surfaced") >= 1, "the concurrent edits surface conflicts\n{run:?}");
    assert_eq!(num("dlq"), 0, "{run:?}");
    assert_eq!(num("rows"), num("patients"), "{run:?}");
    assert_eq!(
        (result["verified"].as_str(), result["matches_fold"].as_str(), result["status"].as_str()),
        ("yes", "yes", "ok"),
        "{run:?}"
    );

    // The snapshot it printed verifies with the CLI a data team uses.
    let keys = dir.join("keys");
    let verify = tidemark(
        &[
            "snapshot",
            "verify",
            "--archive",
            s(&dir.join("archive")),
            "--profile",
            "identified",
            &result["snapshot"],
            "--archiver-pub",
            s(&keys.join("archiver.pub")),
            "--key",
            s(&keys.join("analytics.key")),
        ],
        b"",
        &[],
    );
    verify.code(0).stdout_has(&format!("ok: snapshot {}", result["snapshot"]));
    assert!(run.stdout.contains(&format!("snapshot verify --archive {}", s(&dir.join("archive")))), "{run:?}");

    // The closing commands work as printed: verify, then read the snapshot in
    // place with DuckDB and pyarrow, and the reference fold; no plaintext
    // Parquet appears anywhere.
    let commands: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Next steps:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    assert!(commands.iter().any(|c| c.contains("snapshot keys") && c.contains("--format duckdb")), "{commands:?}");
    assert!(commands.iter().any(|c| c.contains("snapshot keys") && c.contains("--format pyarrow")), "{commands:?}");
    for command in &commands {
        let out = std::process::Command::new("bash").arg("-c").arg(command.trim()).output().expect("bash runs");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "the printed command failed: {command}\n{stdout}\n{stderr}");
        if command.contains("python3") {
            assert!(stdout.contains("pt-"), "it printed the patient: {command}\n{stdout}");
        }
    }
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("ls") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let head = std::fs::read(&path).expect("read").into_iter().take(4).collect::<Vec<_>>();
                assert_ne!(head, b"PAR1", "a plaintext Parquet file: {}", path.display());
            }
        }
    }

    // Live state equals the reference fold of exactly the accepted envelopes.
    let fold = tidemark(&["fold", "--keys", s(&dir.join("registry.toml")), s(&dir.join("envelopes.ndjson"))], b"", &[]);
    fold.code(0);
    let live = std::fs::read_to_string(dir.join("state.ndjson")).expect("the demo writes the live views");
    assert_eq!(live.lines().count() as u64, num("patients"));
    assert!(fold.stdout == live, "tidemark fold of the accepted envelopes differs from the live state views");
    let accepted_lines = std::fs::read_to_string(dir.join("envelopes.ndjson")).expect("envelopes").lines().count();
    assert_eq!(accepted_lines as u64, num("accepted"));
}

#[test]
fn the_demo_refuses_more_than_the_embedded_broker_keeps() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = tidemark(
        &["demo", "--dir", s(&tmp.path().join("d")), "--rate", "100000", "--duration", "60", "--partitions", "4"],
        b"",
        &[],
    );
    run.code(2).stderr_has("more than the embedded Kafka keeps").stderr_has("--brokers");
}
