//! The alert rules the chart ships (`helm/tidemark/files/alerts.yaml`, a plain
//! Prometheus rule file and the only copy of the rules) pass `promtool check
//! rules`, pass their unit tests (`tests/data/alerts.test.yaml`, `promtool test
//! rules`), and every alert has a case that fires, a case that must not, the
//! annotations on-call needs, and a section in docs/runbook.md.
//!
//! promtool comes with the Debian `prometheus` package (scripts/deps). Without
//! it these tests skip with a message, unless `CI_REQUIRE_TOOLS` is set (CI
//! sets it), where they fail.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rules_path() -> PathBuf {
    root().join("helm/tidemark/files/alerts.yaml")
}

fn unit_tests_path() -> PathBuf {
    root().join("tests/data/alerts.test.yaml")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Every rule of the rule file (alerting and recording), in file order.
fn rules() -> Vec<Value> {
    let file = yaml(&rules_path());
    let groups = file["groups"].as_sequence().expect("a rule file has `groups`");
    groups.iter().flat_map(|g| g["rules"].as_sequence().expect("a group has `rules`").iter().cloned()).collect()
}

fn alert_names() -> Vec<String> {
    rules().iter().filter_map(|r| r["alert"].as_str().map(str::to_owned)).collect()
}

/// Runs promtool with `args`; `None` (after saying why) when it is not
/// installed and CI does not require it.
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("promtool").args(args).current_dir(root()).output() {
        Ok(out) => Some(out),
        Err(e) => {
            common::skip_without_tool("promtool", &format!("it cannot run ({e})"));
            None
        }
    }
}

fn report(out: &std::process::Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn promtool_check_rules_accepts_the_rule_file() {
    let path = rules_path();
    let Some(out) = promtool(&["check", "rules", path.to_str().expect("utf-8 path")]) else { return };
    assert!(out.status.success(), "promtool check rules {} failed:\n{}", path.display(), report(&out));
    // promtool counts what it loaded: all of it, not a prefix.
    let want = format!("SUCCESS: {} rules found", rules().len());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&want), "expected `{want}`:\n{}", report(&out));
}

#[test]
fn promtool_unit_tests_pass() {
    let path = unit_tests_path();
    let Some(out) = promtool(&["test", "rules", path.to_str().expect("utf-8 path")]) else { return };
    assert!(out.status.success(), "promtool test rules {} failed:\n{}", path.display(), report(&out));
}

/// A unit test file that forgot an alert, or only ever expects silence, would
/// pass promtool while testing nothing: each alert needs both kinds of case.
#[test]
fn every_alert_has_a_firing_and_a_silent_unit_test() {
    let tests = yaml(&unit_tests_path());
    let rule_files: Vec<&str> =
        tests["rule_files"].as_sequence().expect("rule_files").iter().filter_map(Value::as_str).collect();
    let loaded: Vec<PathBuf> = rule_files.iter().map(|f| unit_tests_path().parent().expect("dir").join(f)).collect();
    assert!(
        loaded.iter().any(|p| p.canonicalize().ok() == rules_path().canonicalize().ok()),
        "the unit tests must load the chart's rule file, not a copy: {rule_files:?}"
    );
    let mut fires = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for case in tests["tests"].as_sequence().expect("tests").iter() {
        for check in case["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = check["alertname"].as_str().expect("alertname").to_owned();
            match check["exp_alerts"].as_sequence() {
                Some(alerts) if !alerts.is_empty() => fires.insert(name),
                _ => silent.insert(name),
            };
        }
    }
    for alert in alert_names() {
        assert!(fires.contains(&alert), "no unit test where {alert} fires");
        assert!(silent.contains(&alert), "no unit test where {alert} stays silent");
    }
    let known: BTreeSet<String> = alert_names().into_iter().collect();
    for tested in fires.union(&silent) {
        assert!(known.contains(tested), "unit test for {tested}, which the rule file does not define");
    }
}

/// What on-call reads when paged: a summary, a description, a severity that
/// routes, and a runbook link whose anchor exists in docs/runbook.md.
#[test]
fn every_alert_has_annotations_and_a_runbook_section() {
    let runbook = std::fs::read_to_string(root().join("docs/runbook.md")).expect("docs/runbook.md");
    let headings: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .map(|h| h.trim().to_owned())
        .collect();
    let names = alert_names();
    assert!(names.len() >= 5, "the chart ships at least five alerts (docs/operations.md): {names:?}");
    for rule in rules().iter().filter(|r| r["alert"].is_string()) {
        let name = rule["alert"].as_str().expect("alert name");
        for key in ["summary", "description", "runbook_url"] {
            let text = rule["annotations"][key].as_str().unwrap_or_default();
            assert!(text.len() > 10, "{name}: annotation `{key}` missing or empty");
        }
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(["warning", "critical"].contains(&severity), "{name}: severity `{severity}`");
        let url = rule["annotations"]["runbook_url"].as_str().expect("runbook_url");
        let anchor = format!("docs/runbook.md#{}", name.to_lowercase());
        assert!(url.ends_with(&anchor), "{name}: runbook_url {url} should end with {anchor}");
        assert!(headings.contains(name), "docs/runbook.md has no `## {name}` section");
    }
}
