//! Golden fixtures: `tidemark sign` with the committed TEST key must reproduce
//! `tests/data/envelopes.golden.ndjson` byte for byte (Ed25519 is
//! deterministic), and those envelopes must keep verifying. If the envelope
//! format changes on purpose, regenerate the golden file with
//! `tidemark sign --key tests/data/test-signing.key tests/data/events.ndjson`
//! (with the key copied to a file of mode 0600 first)
//! and say so in the change: integrators' stored envelopes must still verify.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn run(args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark")).args(args).output().expect("the binary runs");
    (out.status.code(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn sign_reproduces_the_golden_envelopes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A checkout leaves the key readable by all, which `sign` refuses.
    let key = tmp.path().join("test-signing.key");
    std::fs::copy(data("test-signing.key"), &key).expect("copy the key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod 600");
    let events = data("events.ndjson");
    let args = ["sign", "--key", key.to_str().expect("utf-8 path"), events.to_str().expect("utf-8 path")];
    let (code, stdout, stderr) = run(&args);
    let golden = std::fs::read(data("envelopes.golden.ndjson")).expect("golden file");
    assert_eq!(code, Some(0), "ran tidemark {args:?}\nstderr: {stderr}");
    assert!(
        stdout == golden,
        "ran tidemark {args:?}\nsaw:\n{}\nwant (tests/data/envelopes.golden.ndjson):\n{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&golden)
    );
}

#[test]
fn golden_envelopes_keep_verifying() {
    let registry = data("test-registry.toml");
    let golden = data("envelopes.golden.ndjson");
    let args = ["verify", "--keys", registry.to_str().expect("utf-8 path"), golden.to_str().expect("utf-8 path")];
    let (code, stdout, stderr) = run(&args);
    let stdout = String::from_utf8_lossy(&stdout);
    assert_eq!(code, Some(0), "ran tidemark {args:?}\nstdout: {stdout}\nstderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, format!("line {}: ok 019aa6b0-5a00-7000-8000-00000000000{}", i + 1, i + 1));
    }
}

/// Checks the golden envelopes without the `dsse` module: PAE built by hand
/// from the DSSE spec, payload equal to the event line's exact bytes.
#[test]
fn golden_envelopes_match_the_spec_independently() {
    let registry: toml::Value =
        toml::from_str(&std::fs::read_to_string(data("test-registry.toml")).expect("registry")).expect("toml");
    let public = B64.decode(registry["key"][0]["public_key"].as_str().expect("public_key")).expect("base64");
    let key = VerifyingKey::from_bytes(&public.try_into().expect("32 bytes")).expect("a point");
    let events = std::fs::read(data("events.ndjson")).expect("events");
    let event_lines: Vec<&[u8]> =
        events.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).filter(|l| !l.is_empty()).collect();
    let golden = std::fs::read_to_string(data("envelopes.golden.ndjson")).expect("golden");
    assert_eq!(golden.lines().count(), event_lines.len());
    for (line, event) in golden.lines().zip(event_lines) {
        let envelope: serde_json::Value = serde_json::from_str(line).expect("json");
        let payload_type = envelope["payloadType"].as_str().expect("payloadType");
        let payload = B64.decode(envelope["payload"].as_str().expect("payload")).expect("base64");
        assert_eq!(payload, event, "the payload is the event line's exact bytes");
        let mut pae = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
        pae.extend_from_slice(&payload);
        let sig = &envelope["signatures"][0];
        assert_eq!(sig["keyid"], "test-site-a-ehr");
        let sig = B64.decode(sig["sig"].as_str().expect("sig")).expect("base64");
        let sig = Signature::from_slice(&sig).expect("64 bytes");
        key.verify_strict(&pae, &sig).expect("the golden signature verifies over the hand-built PAE");
    }
}
