//! The chart rendered by Helm's own engine (helm-python-sdk: Helm's Go SDK as
//! a library, no helm binary) for the default values and each documented
//! option, and every rendered manifest validated, strictly, against
//! Kubernetes' schemas (kubernetes-validate). tests/helm_chart.rs checks the
//! templates statically; this checks what a cluster would receive.
//! scripts/deps installs both Python packages; CI requires them.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn the_chart_renders_with_helms_engine_into_valid_kubernetes_objects() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let probe = Command::new("python3").args(["-c", "import helm_python, kubernetes_validate, yaml"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        common::skip_without_tool("helm-python-sdk", "python3 cannot import helm_python and kubernetes_validate");
        return;
    }
    let out = Command::new("python3")
        .arg(root.join("tests/helm/render.py"))
        .arg(root.join("helm/tidemark"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "render.py failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("render.py prints JSON");
    let failures = report["failures"].as_array().expect("a failure list");
    assert!(failures.is_empty(), "{} manifests failed:\n{:#}", failures.len(), report["failures"]);
    // Every scenario rendered something, and the workloads of each kind were
    // among what was validated.
    assert!(report["scenarios"].as_u64() >= Some(14), "{report}");
    // Secure by default: Kafka over TLS, ingest and query serving TLS, and policies
    // that let in only the API and scrapes and let out only DNS, Kafka and
    // the archiver's object storage.
    let defaults = &report["defaults"];
    assert_eq!(defaults["kafka_tls"], true, "{defaults}");
    assert_eq!(defaults["ingest_tls"], true, "{defaults}");
    assert_eq!(defaults["query_tls"], true, "{defaults}");
    // Ingest's, the query service's and the workers'; the default archiver
    // writes to a volume: no egress to object storage.
    assert_eq!(defaults["network_policies"], 3, "{defaults}");
    // Egress follows the brokers named in kafka.brokers, extraEgress and an
    // object store's ports.
    let egress = &report["egress"];
    assert_eq!(egress["broker_ports"], true, "{egress}");
    assert_eq!(egress["extra"], true, "{egress}");
    assert_eq!(egress["object_store"], true, "{egress}");
    // The state key reaches the mergers and the archiver, privately, with
    // the previous key while rotating.
    let state = &report["state_key"];
    for check in ["secret_with_previous", "both_keys_to_merger_and_archiver", "trust_unsealed", "copied_private"] {
        assert_eq!(state[check], true, "{check}: {state}");
    }
    // Several regions: the merger reads its own edit topic first (prefixed),
    // then the mirrored one as given; one region alone passes no --edits-topic.
    assert_eq!(defaults["merger_edits_topics"], serde_json::json!([]), "{defaults}");
    let regions = &report["regions"];
    assert_eq!(
        regions["merger_edits_topics"],
        serde_json::json!(["prod.tidemark.edits.v1", "west.prod.tidemark.edits.v1"]),
        "{regions}"
    );
    for kind in ["Deployment", "CronJob", "Service", "NetworkPolicy", "Ingress", "HorizontalPodAutoscaler", "Secret"] {
        assert!(report["kinds"][kind].as_u64() > Some(0), "no {kind} was rendered: {report}");
    }
}
