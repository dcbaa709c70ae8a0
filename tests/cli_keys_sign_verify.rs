//! The real `tidemark` binary end to end: `keys generate` -> `sign` ->
//! `verify`, and each way an envelope can be refused, asserted by its reason.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{Run, s, tidemark};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tidemark_schemas::keys::SigningKeyFile;
use tidemark_schemas::{EDIT_EVENT_PAYLOAD_TYPE, dsse};

const EVENT_ID: &str = "019aa6b0-5a00-7000-8000-0000000000a1";

fn event(id_suffix: u8, source: &str, patient: &str, path: &str) -> String {
    format!(
        r#"{{"event_id":"019aa6b0-5a00-7000-8000-0000000000{id_suffix:02x}","patient_id":"{patient}","source":"{source}","author":"clin-1","hlc":{{"wall_ms":1763794800000,"logical":0}},"ops":[{{"op":"set","path":"{path}","value":70}}]}}"#
    )
}

/// A directory with keys `site-a` (source site-a-ehr, patients pt-*) and
/// `site-b` (source site-b-ehr), and registries for each and for both.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("keys");
        tidemark(
            &[
                "keys",
                "generate",
                "--kind",
                "signing",
                "--out",
                s(&out),
                "--name",
                "site-a",
                "--source",
                "site-a-ehr",
                "--patient-prefix",
                "pt-",
            ],
            b"",
            &[],
        )
        .code(0)
        .stdout_has("site-a.key (secret signing key, mode 0600");
        tidemark(
            &["keys", "generate", "--kind", "signing", "--out", s(&out), "--name", "site-b", "--source", "site-b-ehr"],
            b"",
            &[],
        )
        .code(0);
        let a = fs::read_to_string(out.join("site-a.registry.toml")).expect("registry entry a");
        let b = fs::read_to_string(out.join("site-b.registry.toml")).expect("registry entry b");
        fs::write(dir.path().join("both.toml"), format!("{a}\n{b}")).expect("write registry");
        fs::write(dir.path().join("only-b.toml"), &b).expect("write registry");
        Keys { dir }
    }

    fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join("keys").join(format!("{name}.key"))
    }

    fn registry(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.toml"))
    }

    fn sign(&self, key: &str, events: &str) -> String {
        let run = tidemark(&["sign", "--key", s(&self.key(key))], events.as_bytes(), &[]);
        run.code(0);
        run.stdout
    }

    fn verify(&self, registry: &str, envelopes: &str) -> Run {
        tidemark(&["verify", "--keys", s(&self.registry(registry))], envelopes.as_bytes(), &[])
    }
}

/// Re-encodes an envelope line with one byte of its payload or signature flipped.
fn flip(envelope: &str, in_signature: bool, at: usize) -> String {
    let mut v: serde_json::Value = serde_json::from_str(envelope.trim()).expect("envelope json");
    let field = if in_signature { &mut v["signatures"][0]["sig"] } else { &mut v["payload"] };
    let mut bytes = B64.decode(field.as_str().expect("base64 string")).expect("base64");
    bytes[at] ^= 0x01;
    *field = B64.encode(bytes).into();
    v.to_string()
}

#[test]
fn generate_sign_verify_ok() {
    let keys = Keys::new();
    let key = keys.key("site-a");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(&key).expect("key file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the secret key file must be created 0600");
    }
    let public = fs::read_to_string(keys.dir.path().join("keys/site-a.pub")).expect("pub file");
    assert_eq!(B64.decode(public.trim()).expect("base64").len(), 32);
    let entry = fs::read_to_string(keys.dir.path().join("keys/site-a.registry.toml")).expect("entry");
    assert!(entry.contains("id = \"site-a\"") && entry.contains("patient_prefixes = [\"pt-\"]"), "{entry}");

    let events = format!(
        "{}\n\n{}\r\n",
        event(0xa1, "site-a-ehr", "pt-1", "vitals.heart_rate_bpm"),
        event(0xa2, "site-a-ehr", "pt-2", "vitals.heart_rate_bpm")
    );
    let envelopes = keys.sign("site-a", &events);
    assert_eq!(envelopes.lines().count(), 2, "{envelopes}");
    keys.verify("both", &envelopes)
        .code(0)
        .stdout_has(&format!("line 1: ok {EVENT_ID}\nline 2: ok 019aa6b0-5a00-7000-8000-0000000000a2\n"));
    // The registry from the environment, input from a file.
    let file = keys.dir.path().join("envelopes.ndjson");
    fs::write(&file, &envelopes).expect("write envelopes");
    tidemark(&["verify", s(&file)], b"", &[("TIDEMARK_KEYS", s(&keys.registry("both")))])
        .code(0)
        .stdout_has("line 2: ok");
}

#[test]
fn generate_refuses_to_overwrite() {
    let keys = Keys::new();
    let before = fs::read(keys.key("site-a")).expect("key");
    let out = keys.dir.path().join("keys");
    tidemark(&["keys", "generate", "--kind", "signing", "--out", s(&out), "--name", "site-a"], b"", &[])
        .code(2)
        .stderr_has("refusing to overwrite");
    assert_eq!(fs::read(keys.key("site-a")).expect("key"), before, "the old key is untouched");
    for kind in ["recipient", "archiver", "dataset", "state"] {
        let args = ["keys", "generate", "--kind", kind, "--out", s(&out), "--name", kind];
        tidemark(&args, b"", &[]).code(0);
        let key = fs::read(out.join(format!("{kind}.key"))).expect("key");
        tidemark(&args, b"", &[]).code(2).stderr_has("refusing to overwrite");
        assert_eq!(fs::read(out.join(format!("{kind}.key"))).expect("key"), key, "the old {kind} key is untouched");
    }
    tidemark(&["keys", "generate", "--kind", "bogus", "--out", s(&out), "--name", "x"], b"", &[]).code(2);
    tidemark(&["keys", "generate", "--kind", "signing", "--out", s(&out), "--name", "../x"], b"", &[])
        .code(2)
        .stderr_has("--name `../x` must be");
}

#[test]
fn flipped_payload_byte_is_a_bad_signature() {
    let keys = Keys::new();
    let envelope = keys.sign("site-a", &event(0xa1, "site-a-ehr", "pt-1", "vitals.heart_rate_bpm"));
    keys.verify("both", &flip(&envelope, false, 30))
        .code(1)
        .stdout_has("line 1: bad_signature: signature 0 by key `site-a` does not verify");
}

#[test]
fn flipped_signature_byte_is_a_bad_signature() {
    let keys = Keys::new();
    let envelope = keys.sign("site-a", &event(0xa1, "site-a-ehr", "pt-1", "vitals.heart_rate_bpm"));
    for at in [0, 31, 32, 63] {
        keys.verify("both", &flip(&envelope, true, at))
            .code(1)
            .stdout_has("line 1: bad_signature: signature 0 by key `site-a` does not verify");
    }
}

#[test]
fn unregistered_key_is_an_unknown_key() {
    let keys = Keys::new();
    let envelope = keys.sign("site-a", &event(0xa1, "site-a-ehr", "pt-1", "vitals.heart_rate_bpm"));
    keys.verify("only-b", &envelope)
        .code(1)
        .stdout_has("line 1: unknown_key: no signature is by a key registered to sign events (keyids: site-a)");
}

#[test]
fn key_of_another_source_is_a_source_mismatch() {
    let keys = Keys::new();
    let site_a_event = event(0xa1, "site-a-ehr", "pt-1", "vitals.heart_rate_bpm");
    // `sign` itself refuses...
    tidemark(&["sign", "--key", s(&keys.key("site-b"))], site_a_event.as_bytes(), &[])
        .code(1)
        .stderr_has("line 1: source_mismatch: event 019aa6b0-5a00-7000-8000-0000000000a1 has source `site-a-ehr` but key `site-b` signs for source `site-b-ehr`");
    // ...so sign as a misbehaving integrator would, with the library.
    let text = fs::read_to_string(keys.key("site-b")).expect("key file");
    let key = SigningKeyFile::from_toml_str(&text).expect("key file parses");
    let envelope = dsse::sign(EDIT_EVENT_PAYLOAD_TYPE, site_a_event.as_bytes(), key.signing_key(), key.id()).to_json();
    keys.verify("both", &envelope)
        .code(1)
        .stdout_has("line 1: source_mismatch: event 019aa6b0-5a00-7000-8000-0000000000a1: source is `site-a-ehr` but key `site-b` signs for source `site-b-ehr`");
}

#[test]
fn patient_outside_the_key_scope() {
    let keys = Keys::new();
    let envelope = keys.sign("site-a", &event(0xa1, "site-a-ehr", "zz-1", "vitals.heart_rate_bpm"));
    keys.verify("both", &envelope)
        .code(1)
        .stdout_has("line 1: patient_out_of_scope: event 019aa6b0-5a00-7000-8000-0000000000a1: patient id is outside key `site-a`'s scope (patient id prefixes pt-)");
}

/// `keys generate --not-before/--not-after` writes the window into the
/// registry entry, and `verify` judges events by their own hlc against it.
#[test]
fn generate_writes_a_validity_window_that_verify_enforces() {
    let keys = Keys::new();
    let out = keys.dir.path().join("keys");
    let generate = |name: &str, from: &str, to: &str| {
        let args =
            ["keys", "generate", "--kind", "signing", "--out", s(&out), "--name", name, "--source", "site-a-ehr"];
        let mut args = args.to_vec();
        args.extend(["--not-before", from, "--not-after", to]);
        tidemark(&args, b"", &[])
    };
    // The events are stamped 2025-11-22T07:00:00Z: site-c's window ends an hour before.
    generate("site-c", "2025-01-01T00:00:00Z", "2025-11-22T06:00:00Z").code(0);
    let entry = fs::read_to_string(out.join("site-c.registry.toml")).expect("entry");
    assert!(entry.contains("not_after = \"2025-11-22T06:00:00Z\""), "{entry}");
    fs::write(keys.registry("c"), &entry).expect("write registry");
    let envelope = keys.sign("site-c", &event(0xa1, "site-a-ehr", "pt-1", "vitals.heart_rate_bpm"));
    tidemark(&["verify", "--keys", s(&keys.registry("c"))], envelope.as_bytes(), &[])
        .code(1)
        .stdout_has("line 1: key_expired: event 019aa6b0-5a00-7000-8000-0000000000a1: key `site-c` expired at 2025-11-22T06:00:00.000Z (not_after)");
    // A window that could hold no event, or a time that is not RFC 3339 UTC,
    // is refused before any file is written.
    generate("site-d", "2026-01-01T00:00:00Z", "2025-01-01T00:00:00Z")
        .code(2)
        .stderr_has("key `site-d`: not_before 2026-01-01T00:00:00.000Z is not before not_after");
    generate("site-d", "2025-01-01", "2026-01-01T00:00:00Z")
        .code(2)
        .stderr_has("key `site-d`: not_before `2025-01-01`");
    assert!(!out.join("site-d.key").exists(), "nothing written for a refused entry");
}

#[test]
fn catalog_violation_is_reported_by_its_rule() {
    let keys = Keys::new();
    let envelope = keys.sign("site-a", &event(0xa1, "site-a-ehr", "pt-1", "vitals.mood"));
    let run = keys.verify("both", &envelope);
    run.code(1)
        .stdout_has("line 1: unknown_path: event 019aa6b0-5a00-7000-8000-0000000000a1 is invalid")
        .stdout_has("vitals.mood");
    // The same with an explicit catalog file, from the environment.
    let catalog = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/catalog.v1.toml");
    let registry = keys.registry("both");
    let envs = [("TIDEMARK_KEYS", s(&registry)), ("TIDEMARK_CATALOG", s(&catalog))];
    tidemark(&["verify", "-"], envelope.as_bytes(), &envs).code(1).stdout_has("line 1: unknown_path");
}

#[test]
fn every_line_is_reported_and_one_failure_fails_the_run() {
    let keys = Keys::new();
    let good = keys.sign("site-a", &event(0xa1, "site-a-ehr", "pt-1", "vitals.heart_rate_bpm"));
    let input = format!("{good}not json\n{}\n{good}", flip(&good, true, 5));
    keys.verify("both", &input)
        .code(1)
        .stdout_has(&format!("line 1: ok {EVENT_ID}\nline 2: malformed: envelope is not JSON"))
        .stdout_has("line 3: bad_signature")
        .stdout_has(&format!("line 4: ok {EVENT_ID}"));
}

#[test]
fn sign_reports_bad_lines_and_signs_the_rest() {
    let keys = Keys::new();
    let input = format!(
        "{}\n{{\"event_id\": 1}}\n{}\n",
        event(0xa1, "site-a-ehr", "pt-1", "allergies"),
        event(0xa2, "site-a-ehr", "pt-2", "allergies")
    );
    let run = tidemark(&["sign", "--key", s(&keys.key("site-a")), "-"], input.as_bytes(), &[]);
    run.code(1)
        .stderr_has("line 2: malformed_event: not a v1 edit event")
        .stderr_has("signed 2 events; 1 lines failed");
    assert_eq!(run.stdout.lines().count(), 2, "{run:?}");
}

#[test]
fn configuration_errors_exit_2() {
    let keys = Keys::new();
    tidemark(&["verify"], b"", &[]).code(2).stderr_has("--keys");
    let missing = keys.dir.path().join("missing.toml");
    tidemark(&["verify", "--keys", s(&missing)], b"", &[]).code(2).stderr_has("reading key registry");
    let bad = keys.dir.path().join("bad.toml");
    fs::write(&bad, "[[key]]\nid = \"x\"\nsource = \"s\"\nalgorithm = \"rsa\"\npublic_key = \"\"\n").expect("write");
    tidemark(&["verify", "--keys", s(&bad)], b"", &[]).code(2).stderr_has("key `x`: unknown algorithm `rsa`");
    tidemark(&["verify", "--keys", s(&keys.registry("both")), "--catalog", s(&missing)], b"", &[])
        .code(2)
        .stderr_has("reading catalog");
    // A key readable by others is refused before it is parsed; a private but
    // malformed one is refused for what it is.
    tidemark(&["sign", "--key", s(&bad)], b"", &[]).code(2).stderr_has("readable by group or others");
    fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod 600");
    tidemark(&["sign", "--key", s(&bad)], b"", &[]).code(2).stderr_has("loading key file");
}
