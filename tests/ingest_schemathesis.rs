//! The ingest API checked against its OpenAPI spec by schemathesis (PyPI): it
//! generates requests from `schemas/openapi.v1.yaml`, valid and invalid, sends
//! them to a real `tidemark ingest` on Tansu, and checks every response: no
//! 5xx, and status, content type, headers and body as the spec says.
//!
//! schemathesis is installed by scripts/deps (pinned). Without it the test
//! says so and passes, unless `CI_REQUIRE_TOOLS` is set (CI sets it: it
//! means "the tools the tests lint and check with must be there").

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::process::Command;

use common::ingest::Ingest;
use tidemark_testkit::{TansuBroker, unique_topic};

/// Test cases per operation and phase: enough to cover every status the
/// spec lists, short enough for CI (about 20 s here).
const MAX_EXAMPLES: &str = "100";

/// The checks that define "conforms": no server error, and every response as
/// the spec declares it. Not `positive_data_acceptance`: a well-formed
/// envelope with a random signature is rightly refused.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_headers_conformance,response_schema_conformance";

/// schemathesis through the interpreter scripts/deps installs it for, so the
/// test does not depend on where pip put the `schemathesis` script.
fn schemathesis() -> Command {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "schemathesis.cli"]);
    cmd
}

fn schemathesis_installed() -> bool {
    schemathesis().arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn ingest_api_conforms_to_its_openapi_spec_under_schemathesis() {
    if !schemathesis_installed() {
        common::skip_without_tool("schemathesis", "it is not installed, so the OpenAPI conformance run cannot");
        return;
    }
    let broker = TansuBroker::start().expect("tansu starts");
    let prefix = format!("{}.", unique_topic("schemathesis"));
    let ingest = Ingest::spawn(broker.bootstrap(), &prefix, &[]);
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/openapi.v1.yaml");
    let reports = tempfile::tempdir().unwrap();
    let args = [
        "run",
        spec,
        "--url",
        &format!("http://{}", ingest.http),
        "--checks",
        CHECKS,
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        "20261122",
        "--workers",
        "2",
        "--phases",
        "examples,coverage,fuzzing",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--report-dir",
        common::s(reports.path()),
    ];
    let out = schemathesis()
        .args(args)
        // The NDJSON serializer schemathesis lacks (tests/data/schemathesis_hooks.py).
        .env("PYTHONPATH", common::data(""))
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis runs");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ran: python3 -m schemathesis.cli {}\nit found:\n{report}", args.join(" "));
    // A run that tested nothing would pass too: require every operation tested.
    assert!(report.contains("Tested: 3") && !report.contains(" 0 generated"), "{report}");
    eprintln!("{report}");
}
