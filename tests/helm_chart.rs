//! Static checks of the Helm chart (`helm/tidemark`), since no `helm` binary
//! can run here: values are documented and used consistently, the YAML of
//! every template parses once its template directives are stripped, the
//! workloads carry the security settings and probes the README promises, and
//! the environment variables and flags the chart passes exist in the binary
//! it deploys (a misspelt `TIDEMARK_*` variable would be silently ignored).
//!
//! How templates are stripped ([`strip`]): every `{{ ... }}` action that is
//! alone on its line(s) (control flow, `include ... | nindent`, `toYaml`,
//! comments) is removed with its line; an action inside a line (`name: {{
//! include "tidemark.fullname" . }}-ingest`) becomes the plain scalar
//! `TEMPLATED`. What remains is the static YAML the chart author wrote, which
//! must parse; where `if`/`else` branches both hold YAML, both are kept and
//! must parse together. Helpers (`_*.tpl`) are checked per `define` block.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

const PLACEHOLDER: &str = "TEMPLATED";

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/tidemark")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn yaml(text: &str, what: &str) -> Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{what} does not parse as YAML: {e}\n---\n{text}"))
}

/// Every file under templates/, by file name.
fn templates() -> BTreeMap<String, String> {
    let dir = chart().join("templates");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("templates dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        out.insert(name, read(&path));
    }
    out
}

fn values() -> Value {
    yaml(&read(&chart().join("values.yaml")), "values.yaml")
}

/// The value at a dotted path.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.as_mapping()?.get(k))
}

fn int(v: &Value, path: &str) -> i64 {
    at(v, path).and_then(Value::as_i64).unwrap_or_else(|| panic!("values.yaml: {path} is not an integer"))
}

/// Every mapping key path of a parsed YAML value (not descending into lists).
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(map) = v.as_mapping() {
        for (k, child) in map {
            let key = k.as_str().expect("string keys");
            let path = if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") };
            out.insert(path.clone());
            key_paths(child, &path, out);
        }
    }
}

/// values.yaml read line by line: each key's dotted path and whether a
/// `# --` comment block sits directly above it. YAML parsers drop comments,
/// so this scanner reads them; [`values_scanner_sees_every_key`] checks that
/// it finds exactly the keys a real parser finds.
fn scan_values(text: &str) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut documented = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            documented = false;
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            documented |= comment.starts_with(" --");
            continue;
        }
        if trimmed.starts_with("- ") || trimmed == "-" {
            documented = false;
            continue;
        }
        let indent = line.len() - trimmed.len();
        let (key, rest) = trimmed.split_once(':').unwrap_or_else(|| panic!("values.yaml: not `key: value`: {line}"));
        assert!(
            !matches!(rest.trim(), "|" | ">" | "|-" | ">-"),
            "values.yaml: the scanner reads no block scalars: {line}"
        );
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key.trim().trim_matches('"').to_owned()));
        let path = stack.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>().join(".");
        out.insert(path, documented);
        documented = false;
    }
    out
}

/// Keys documented by their own `# --` comment: the chart's values as a user
/// sees them (helm-docs convention). A documented mapping counts as one value.
fn documented_values() -> BTreeSet<String> {
    scan_values(&read(&chart().join("values.yaml"))).into_iter().filter(|(_, d)| *d).map(|(k, _)| k).collect()
}

/// Every `.Values.a.b` path the templates use (absolute paths; paths inside
/// `with`/`range` that are relative to `.` are not seen).
fn value_refs() -> BTreeMap<String, BTreeSet<String>> {
    let mut refs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in templates() {
        for (i, _) in text.match_indices(".Values.") {
            let path: String = text[i + ".Values.".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            refs.entry(path.trim_end_matches('.').to_owned()).or_default().insert(file.clone());
        }
    }
    refs
}

/// One `{{ ... }}` action: byte range and the text inside (without `{{`/`}}`).
struct Action {
    start: usize,
    end: usize,
    inner: String,
}

fn actions(text: &str) -> Vec<Action> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find("{{").map(|i| i + from) {
        let close = text[open..].find("}}").map(|i| i + open + 2).unwrap_or_else(|| panic!("unclosed {{{{ at {open}"));
        out.push(Action { start: open, end: close, inner: text[open + 2..close - 2].to_owned() });
        from = close;
    }
    out
}

/// The action's words without trim markers, e.g. `if`, `end`, `define`.
fn keyword(a: &Action) -> &str {
    let inner = a.inner.trim().trim_start_matches('-').trim_end_matches('-').trim();
    inner.split_whitespace().next().unwrap_or("")
}

/// Strips template directives (see the module doc): standalone actions go with
/// their lines, inline ones become [`PLACEHOLDER`].
fn strip(text: &str) -> String {
    let mut out = String::new();
    let mut pos = 0;
    for a in actions(text) {
        if a.start < pos {
            continue; // inside a line already dropped with an earlier action
        }
        let line_start = text[..a.start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[a.end..].find('\n').map_or(text.len(), |i| a.end + i + 1);
        let alone = text[line_start..a.start].trim().is_empty() && text[a.end..line_end].trim().is_empty();
        if alone && line_start >= pos {
            out.push_str(&text[pos..line_start]);
            pos = line_end;
        } else {
            out.push_str(&text[pos..a.start]);
            out.push_str(PLACEHOLDER);
            pos = a.end;
        }
    }
    out.push_str(&text[pos.min(text.len())..]);
    out
}

/// The `define` blocks of a helpers file: name -> body (between the define
/// and its matching `end`).
fn defines(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut open: Option<(String, usize)> = None;
    let mut depth = 0;
    for a in actions(text) {
        match keyword(&a) {
            "define" if depth == 0 => {
                let name = a.inner.split('"').nth(1).expect("define \"name\"").to_owned();
                open = Some((name, a.end));
                depth = 1;
            }
            "if" | "with" | "range" | "define" | "block" => depth += 1,
            "end" => {
                depth -= 1;
                if depth == 0 {
                    let (name, body_start) = open.take().expect("end closes a define");
                    out.insert(name, text[body_start..a.start].to_owned());
                }
            }
            _ => {}
        }
    }
    assert_eq!(depth, 0, "unbalanced blocks in a helpers file");
    out
}

/// Every Kubernetes object of the stripped templates, by file.
fn objects() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (file, text) in templates().into_iter().filter(|(f, _)| f.ends_with(".yaml")) {
        let stripped = strip(&text);
        for doc in serde_norway::Deserializer::from_str(&stripped) {
            let v: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("templates/{file}, stripped, does not parse: {e}\n---\n{stripped}"));
            if !v.is_null() {
                out.push((file.clone(), v));
            }
        }
    }
    out
}

/// The parsed body of a `define` in a helpers file.
fn define_yaml(file: &str, name: &str) -> Value {
    let body = defines(&templates()[file]).remove(name).unwrap_or_else(|| panic!("{file} defines no {name}"));
    yaml(&strip(&body), &format!("define {name} in {file}, stripped"))
}

#[test]
fn chart_yaml_names_the_chart_and_the_binary_version() {
    let c = yaml(&read(&chart().join("Chart.yaml")), "Chart.yaml");
    assert_eq!(c["apiVersion"].as_str(), Some("v2"));
    assert_eq!(c["name"].as_str(), Some("tidemark"), "the chart's name is its directory's");
    let version = c["version"].as_str().expect("version");
    assert_eq!(version.split('.').filter(|p| p.parse::<u64>().is_ok()).count(), 3, "semver version: {version}");
    // The image tag defaults to appVersion: it must be the version being built.
    assert_eq!(c["appVersion"].as_str(), Some(env!("CARGO_PKG_VERSION")), "appVersion = the tidemark version");
    assert!(c["description"].as_str().is_some_and(|d| d.len() > 20));
}

#[test]
fn values_scanner_sees_every_key() {
    let mut parsed = BTreeSet::new();
    key_paths(&values(), "", &mut parsed);
    let scanned: BTreeSet<String> = scan_values(&read(&chart().join("values.yaml"))).into_keys().collect();
    assert_eq!(scanned, parsed, "the line scanner and the YAML parser disagree on values.yaml's keys");
}

/// Every value a user can set has a `# --` comment: a leaf is documented
/// itself or as part of a documented mapping (e.g. `podSecurityContext`).
#[test]
fn every_value_is_documented() {
    let scanned = scan_values(&read(&chart().join("values.yaml")));
    let documented = |path: &str| {
        let parts: Vec<&str> = path.split('.').collect();
        (1..=parts.len()).any(|n| scanned.get(&parts[..n].join(".")).copied().unwrap_or(false))
    };
    let v = values();
    let undocumented: Vec<&String> = scanned
        .keys()
        .filter(|p| {
            let is_leaf = at(&v, p).and_then(Value::as_mapping).is_none_or(|m| m.is_empty());
            is_leaf && !documented(p)
        })
        .collect();
    assert!(undocumented.is_empty(), "values without a `# --` comment above them: {undocumented:?}");
}

#[test]
fn every_value_the_templates_use_exists_and_is_documented() {
    let mut parsed = BTreeSet::new();
    key_paths(&values(), "", &mut parsed);
    let documented = documented_values();
    let refs = value_refs();
    assert!(refs.len() > 50, "the reference scan found too little: {refs:?}");
    for (path, files) in &refs {
        assert!(parsed.contains(path), ".Values.{path} (used in {files:?}) is not in values.yaml");
        let parts: Vec<&str> = path.split('.').collect();
        assert!(
            (1..=parts.len()).any(|n| documented.contains(&parts[..n].join("."))),
            ".Values.{path} (used in {files:?}) has no `# --` comment in values.yaml"
        );
    }
    // The other way round: a documented value that no template reads would
    // promise a setting that does nothing.
    for value in &documented {
        let used = refs.keys().any(|r| r == value || r.starts_with(&format!("{value}.")));
        assert!(used, "values.yaml documents `{value}` but no template uses it");
    }
}

#[test]
fn readme_lists_every_value() {
    let readme = read(&chart().join("README.md"));
    let missing: Vec<String> =
        documented_values().into_iter().filter(|v| !readme.contains(&format!("`{v}`"))).collect();
    assert!(missing.is_empty(), "helm/tidemark/README.md does not list: {missing:?}");
}

#[test]
fn stripping_keeps_static_yaml_and_drops_directives() {
    let t = "a: 1\n{{- if .Values.x }}\nb: {{ .Values.y | quote }}-z\n{{- end }}\nc:\n  {{- toYaml .Values.c | nindent 2 }}\n";
    assert_eq!(strip(t), "a: 1\nb: TEMPLATED-z\nc:\n");
    let multi = "{{/*\n a comment\n*/}}\nk: v\n";
    assert_eq!(strip(multi), "k: v\n");
}

#[test]
fn every_template_parses_as_yaml_once_stripped() {
    let objects = objects();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (file, o) in &objects {
        let kind = o["kind"].as_str().unwrap_or_else(|| panic!("templates/{file}: an object without kind: {o:?}"));
        assert!(o["apiVersion"].is_string(), "templates/{file}: {kind} without apiVersion");
        assert!(o["metadata"]["name"].is_string(), "templates/{file}: {kind} without metadata.name");
        *kinds.entry(kind.to_owned()).or_default() += 1;
    }
    for (kind, n) in [
        ("Deployment", 4),
        ("Service", 4),
        ("CronJob", 1),
        ("HorizontalPodAutoscaler", 1),
        ("Ingress", 1),
        ("PodDisruptionBudget", 3),
        ("ConfigMap", 4),
        ("Secret", 2),
        ("ServiceMonitor", 1),
        ("PrometheusRule", 1),
        ("NetworkPolicy", 4),
    ] {
        assert_eq!(kinds.get(kind).copied().unwrap_or(0), n, "{kind} objects in the chart: {kinds:?}");
    }
    for (file, text) in templates().iter().filter(|(f, _)| f.ends_with(".tpl")) {
        for (name, body) in defines(text) {
            yaml(&strip(&body), &format!("define {name} in {file}, stripped"));
        }
    }
}

#[test]
fn includes_and_files_exist() {
    let all = templates();
    let defined: BTreeSet<String> =
        all.iter().filter(|(f, _)| f.ends_with(".tpl")).flat_map(|(_, t)| defines(t).into_keys()).collect();
    for (file, text) in &all {
        for a in actions(text) {
            for (marker, is_file) in [("include \"", false), ("Files.Get \"", true)] {
                if let Some(rest) = a.inner.split(marker).nth(1) {
                    let name = rest.split('"').next().expect("quoted name");
                    if is_file {
                        assert!(chart().join(name).is_file(), "templates/{file}: .Files.Get of missing {name}");
                    } else {
                        assert!(defined.contains(name), "templates/{file}: include of undefined {name}");
                    }
                }
            }
        }
    }
}

/// The pod spec of a workload: for the archiver, the shared define.
fn pod_specs() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (file, o) in objects() {
        if o["kind"] == "Deployment" && o["spec"]["template"]["spec"].is_mapping() {
            out.push((file, o["spec"]["template"]["spec"].clone()));
        }
    }
    out.push(("_archiver.tpl".to_owned(), define_yaml("_archiver.tpl", "tidemark.archiver.podSpec")));
    out
}

#[test]
fn every_workload_is_locked_down() {
    let specs = pod_specs();
    assert_eq!(
        specs.len(),
        4,
        "ingest, merger, query, archiver pod specs: {:?}",
        specs.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    for (file, spec) in &specs {
        assert!(spec.as_mapping().expect("pod spec").contains_key("securityContext"), "{file}: no pod securityContext");
        let containers: Vec<&Value> =
            ["containers", "initContainers"].iter().filter_map(|k| spec[*k].as_sequence()).flatten().collect();
        assert!(!containers.is_empty(), "{file}: no containers");
        for c in containers {
            assert!(
                c.as_mapping().expect("container").contains_key("securityContext"),
                "{file}: {:?} lacks securityContext",
                c["name"]
            );
            assert!(
                c.as_mapping().expect("container").contains_key("resources"),
                "{file}: {:?} lacks resources",
                c["name"]
            );
        }
        assert!(spec["automountServiceAccountToken"] == Value::Bool(false), "{file}: the services never call the API");
    }
    // The stripped keys hold `toYaml` of these values: every securityContext
    // line of the templates must be followed by one of the two.
    for (file, text) in templates() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, _) in lines.iter().enumerate().filter(|(_, l)| l.trim() == "securityContext:") {
            let next = lines.get(i + 1).copied().unwrap_or("");
            assert!(
                next.contains("toYaml .Values.securityContext") || next.contains("toYaml .Values.podSecurityContext"),
                "templates/{file}:{}: securityContext not from values: {next}",
                i + 2
            );
        }
    }
    let v = values();
    let c = &v["securityContext"];
    assert_eq!(c["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(c["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(c["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(c["privileged"].as_bool(), Some(false));
    assert_eq!(c["capabilities"]["drop"], yaml("[ALL]", "drop"));
    let p = &v["podSecurityContext"];
    assert_eq!(p["runAsNonRoot"].as_bool(), Some(true));
    assert!(p["runAsUser"].as_i64().is_some_and(|u| u > 0), "pods run as a non-root uid");
    assert_eq!(p["seccompProfile"]["type"].as_str(), Some("RuntimeDefault"));
}

/// Kubernetes SIGKILLs a pod when its grace period ends: ingest must get its
/// preStop pause plus its whole drain (`--shutdown-grace-ms`) inside it.
#[test]
fn grace_periods_cover_the_drain() {
    let v = values();
    let grace_ms = int(&v, "ingest.terminationGracePeriodSeconds") * 1000;
    let drain_ms = int(&v, "ingest.shutdownGraceMs") + int(&v, "ingest.preStopSleepSeconds") * 1000;
    assert!(grace_ms > drain_ms, "ingest grace {grace_ms} ms <= preStop + drain {drain_ms} ms");
    let t = templates();
    let ingest = &t["ingest-deployment.yaml"];
    for wired in [
        "terminationGracePeriodSeconds: {{ .Values.ingest.terminationGracePeriodSeconds }}",
        "value: {{ .Values.ingest.shutdownGraceMs | quote }}",
        "command: [\"sleep\", \"{{ .Values.ingest.preStopSleepSeconds }}\"]",
        "{{- fail",
    ] {
        assert!(ingest.contains(wired), "ingest-deployment.yaml lacks `{wired}`");
    }
    let query_grace_ms = int(&v, "query.terminationGracePeriodSeconds") * 1000;
    let query_drain_ms = int(&v, "query.shutdownGraceMs") + int(&v, "query.preStopSleepSeconds") * 1000;
    assert!(query_grace_ms > query_drain_ms, "query grace {query_grace_ms} ms <= preStop + drain {query_drain_ms} ms");
    assert!(t["query-deployment.yaml"].contains("{{- fail"), "query-deployment.yaml refuses a short grace period");
    for (file, key) in [
        ("query-deployment.yaml", "query.terminationGracePeriodSeconds"),
        ("merger-deployment.yaml", "merger.terminationGracePeriodSeconds"),
        ("_archiver.tpl", "archiver.terminationGracePeriodSeconds"),
    ] {
        assert!(t[file].contains(&format!("terminationGracePeriodSeconds: {{{{ .Values.{key} }}}}")), "{file}");
        assert!(int(&v, key) > 0);
    }
}

#[test]
fn probes_use_endpoints_the_services_serve() {
    let specs = pod_specs();
    let container = |file: &str| specs.iter().find(|(f, _)| f == file).expect(file).1["containers"][0].clone();
    let path = |c: &Value, probe: &str| c[probe]["httpGet"]["path"].as_str().map(str::to_owned);
    let ingest = container("ingest-deployment.yaml");
    assert_eq!(path(&ingest, "readinessProbe").as_deref(), Some("/readyz"));
    assert_eq!(path(&ingest, "livenessProbe").as_deref(), Some("/healthz"));
    assert_eq!(path(&ingest, "startupProbe").as_deref(), Some("/healthz"));
    // The query service is ready once its store caught up (src/cli/query.rs).
    let query = container("query-deployment.yaml");
    assert_eq!(path(&query, "readinessProbe").as_deref(), Some("/readyz"));
    assert_eq!(path(&query, "livenessProbe").as_deref(), Some("/healthz"));
    // The merger and the archiver serve their worker's health beside
    // /metrics (src/cli/merger.rs, src/cli/archiver.rs).
    assert_eq!(path(&container("merger-deployment.yaml"), "livenessProbe").as_deref(), Some("/healthz"));
    assert_eq!(path(&container("_archiver.tpl"), "livenessProbe").as_deref(), Some("/healthz"));
}

/// Ingest and the merger re-read the key registry when its file changes, so
/// a registry change must not roll them (a merger roll restores every
/// partition), and the file must be mounted so that it changes: a `subPath`
/// mount never sees a ConfigMap update.
#[test]
fn the_key_registry_is_reloaded_not_rolled() {
    for (file, o) in objects() {
        if !["ingest-deployment.yaml", "merger-deployment.yaml"].contains(&file.as_str()) || o["kind"] != "Deployment" {
            continue;
        }
        let annotations = o["spec"]["template"]["metadata"]["annotations"].as_mapping().expect("pod annotations");
        let keys: Vec<&str> = annotations.keys().filter_map(Value::as_str).collect();
        assert!(keys.contains(&"checksum/catalog"), "{file}: the catalog is read at start only: {keys:?}");
        assert!(!keys.iter().any(|k| k.contains("registry")), "{file}: rolls on a registry change: {keys:?}");
    }
    let mounts = define_yaml("_helpers.tpl", "tidemark.registryMount");
    for mount in mounts.as_sequence().expect("a list of mounts") {
        assert!(mount.get("subPath").is_none(), "the registry is mounted with subPath: {mount:?}");
    }
}

/// `TIDEMARK_*` variables and `--flags` the chart passes, by subcommand,
/// checked against that subcommand's `--help` (clap lists `[env: NAME=]`).
#[test]
fn environment_and_flags_exist_in_the_binary() {
    let t = templates();
    let help = |sub: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args([sub, "--help"])
            .env_clear()
            .output()
            .expect("tidemark --help runs");
        assert!(out.status.success(), "tidemark {sub} --help failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for (sub, files) in [
        ("ingest", ["ingest-deployment.yaml", "_helpers.tpl"]),
        ("query", ["query-deployment.yaml", "_helpers.tpl"]),
        ("merger", ["merger-deployment.yaml", "_helpers.tpl"]),
        ("archiver", ["_archiver.tpl", "_helpers.tpl"]),
    ] {
        let help = help(sub);
        let mut seen = 0;
        for file in files {
            for line in t[file].lines().map(str::trim) {
                if let Some(var) = line.strip_prefix("- name: TIDEMARK_") {
                    let var = format!("TIDEMARK_{var}");
                    seen += 1;
                    // `[env: NAME=value]`, or `[env: NAME]` for a secret whose value help hides.
                    let listed = help.contains(&format!("[env: {var}=")) || help.contains(&format!("[env: {var}]"));
                    assert!(listed, "{file}: `tidemark {sub}` reads no {var}");
                }
                if let Some(flag) = line.strip_prefix("- --") {
                    assert!(help.contains(&format!("--{flag}")), "{file}: `tidemark {sub}` has no --{flag}");
                }
            }
        }
        assert!(seen >= 8, "{sub}: found only {seen} variables; the scan is broken");
    }
}

#[test]
fn replicas_and_modes_are_coherent() {
    let v = values();
    assert!(int(&v, "merger.replicaCount") <= int(&v, "kafka.partitions"), "merger replicas beyond partitions idle");
    let t = templates();
    assert!(t["merger-deployment.yaml"].contains("{{- fail"), "the chart refuses merger replicas > partitions");
    assert!(
        t["archiver-deployment.yaml"].contains("replicas: 1") && t["archiver-deployment.yaml"].contains("Recreate")
    );
    assert!(t["archiver-cronjob.yaml"].contains("concurrencyPolicy: Forbid"));
    assert!(t["_archiver.tpl"].contains("- --once"), "cronjob mode runs --once");
    assert!(["deployment", "cronjob"].contains(&at(&v, "archiver.mode").and_then(Value::as_str).unwrap_or("")));
}

/// The PrometheusRule substitutes two strings in files/alerts.yaml; if either
/// stopped matching, the chart would silently ship the defaults.
#[test]
fn prometheus_rule_substitutions_match_the_rule_file() {
    let v = values();
    let rules = read(&chart().join("files/alerts.yaml"));
    let template = &templates()["prometheusrule.yaml"];
    assert!(template.contains(".Files.Get \"files/alerts.yaml\""));
    assert_eq!(rules.matches("> 7200").count(), 1, "`> 7200` must occur exactly once in alerts.yaml");
    let parsed = yaml(&rules, "alerts.yaml");
    let stale = parsed["groups"][0]["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .find(|r| r["alert"] == "TidemarkSnapshotStale")
        .expect("TidemarkSnapshotStale");
    assert!(stale["expr"].as_str().expect("expr").contains("> 7200"), "the replaced number is the stale threshold");
    assert!(template.contains("replace \"> 7200\""));
    assert_eq!(
        int(&v, "prometheusRule.snapshotMaxAgeSeconds"),
        2 * int(&v, "archiver.intervalSeconds"),
        "the default stale threshold is twice the default interval"
    );
    let url = at(&v, "prometheusRule.runbookUrl").and_then(Value::as_str).expect("runbookUrl");
    assert!(template.contains(&format!("replace \"{url}\"")), "the template replaces the default runbook URL");
    let links = rules.matches("runbook_url:").count();
    assert_eq!(rules.matches(&format!("runbook_url: \"{url}#")).count(), links, "every runbook_url starts with {url}");

    // The rules as rendered with other values must still be valid.
    let rendered = rules.replace("> 7200", "> 1234").replace(url, "https://runbooks.example/tidemark.md");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("rendered.yaml");
    std::fs::write(&path, &rendered).expect("write");
    match Command::new("promtool").args(["check", "rules"]).arg(&path).output() {
        Ok(out) => {
            assert!(out.status.success(), "rendered rules fail promtool:\n{}", String::from_utf8_lossy(&out.stdout))
        }
        Err(e) => {
            common::skip_without_tool("promtool", &format!("it cannot run ({e}), so the rendered rules go unchecked"))
        }
    }
}

#[test]
fn dashboard_ships_with_the_sidecar_label() {
    let v = values();
    assert_eq!(at(&v, "dashboard.labels.grafana_dashboard").and_then(Value::as_str), Some("1"));
    assert!(templates()["dashboard-configmap.yaml"].contains(".Files.Get \"files/dashboard.json\""));
    let text = read(&chart().join("files/dashboard.json"));
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard.json is JSON");
    assert_eq!(dash["uid"].as_str(), Some("tidemark-overview"), "a stable uid keeps links working");
    let panels = dash["panels"].as_array().expect("panels");
    let graphs: Vec<&serde_json::Value> = panels.iter().filter(|p| p["type"] != "row").collect();
    assert!(graphs.len() >= 12, "panels: {}", graphs.len());
    for p in graphs {
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        assert!(targets.iter().all(|t| t["expr"].as_str().is_some_and(|e| e.contains("tidemark_"))), "{}", p["title"]);
    }
}

/// The image the chart runs: multi-stage, the uid the chart expects, the
/// binary as entrypoint (the templates pass only the subcommand as args).
#[test]
fn dockerfile_matches_the_chart() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docker = read(&root.join("Dockerfile"));
    let froms = docker.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage build: {froms} FROM lines");
    let uid = int(&values(), "podSecurityContext.runAsUser");
    assert!(docker.contains(&format!("USER {uid}")), "the image runs as uid {uid}");
    assert!(docker.contains("ENTRYPOINT [\"tidemark\"]"));
    assert!(read(&root.join(".dockerignore")).lines().any(|l| l.trim() == "target"), ".dockerignore skips target/");
}

/// docs/operations.md is the SRE's list of alerts and panels with their
/// PromQL; it must not drift from the files the chart ships.
#[test]
fn operations_doc_lists_every_alert_and_panel_with_its_query() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = read(&root.join("docs/operations.md"));
    let rules = yaml(&read(&chart().join("files/alerts.yaml")), "alerts.yaml");
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("alert");
            let expr = rule["expr"].as_str().expect("expr").trim();
            assert!(doc.contains(&format!("### {name}")), "docs/operations.md has no section for {name}");
            assert!(doc.contains(expr), "docs/operations.md lacks the current expression of {name}:\n{expr}");
        }
    }
    let dash: serde_json::Value =
        serde_json::from_str(&read(&chart().join("files/dashboard.json"))).expect("dashboard.json");
    for panel in dash["panels"].as_array().expect("panels").iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().expect("title");
        assert!(doc.contains(&format!("**{title}**")), "docs/operations.md does not list panel {title}");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            assert!(doc.contains(expr), "docs/operations.md lacks the query of panel {title}: {expr}");
        }
    }
}
