//! The key registry's tests: parsing, scopes, validity times, and every
//! refusal with the entry and field it names.

use ed25519_dalek::SigningKey;

use super::*;

fn public_b64(seed: u8) -> String {
    B64.encode(SigningKey::from_bytes(&[seed; 32]).verifying_key().as_bytes())
}

fn entry(id: &str, public_key: &str) -> String {
    format!("[[key]]\nid = \"{id}\"\nsource = \"site-a\"\nalgorithm = \"ed25519\"\npublic_key = \"{public_key}\"\n")
}

fn err(text: &str) -> String {
    KeyRegistry::from_toml_str(text).expect_err(text).to_string()
}

#[test]
fn parses_a_registry() {
    let text =
        format!("{}patient_prefixes = [\"pt-\", \"px-\"]\n{}", entry("a", &public_b64(1)), entry("b", &public_b64(2)));
    let reg = KeyRegistry::from_toml_str(&text).expect("valid");
    assert_eq!(reg.len(), 2);
    let a = reg.get("a").expect("a");
    assert_eq!(a.source(), "site-a");
    assert_eq!(a.algorithm(), Algorithm::Ed25519);
    assert!(a.allows_patient("pt-1") && a.allows_patient("px-") && !a.allows_patient("zz-1"));
    assert!(reg.get("b").expect("b").allows_patient("anything"));
    assert!(reg.get("c").is_none());
}

#[test]
fn entry_round_trips_through_toml() {
    let key = SigningKey::from_bytes(&[9; 32]);
    let e = KeyEntry::ed25519("k-1", "site-a", &key.verifying_key(), Some(vec!["pt-".into()]));
    let text = e.to_toml();
    assert!(text.starts_with("[[key]]\n"), "{text}");
    assert!(!text.contains("not_before") && !text.contains("revoked_at"), "unbounded keys say nothing: {text}");
    let reg = KeyRegistry::from_toml_str(&text).expect("generated entry parses");
    assert_eq!(reg.get("k-1").expect("k-1").verifying_key(), &key.verifying_key());
    assert_eq!(reg.get("k-1").expect("k-1").validity(), &Validity::default());
}

#[test]
fn scopes_default_to_write_and_load_as_listed() {
    let key = SigningKey::from_bytes(&[9; 32]);
    let plain = KeyEntry::ed25519("w", "site-a", &key.verifying_key(), None);
    let reader = KeyEntry { id: "r".into(), scopes: Some(vec!["read".into()]), ..plain.clone() };
    let both = KeyEntry { id: "rw".into(), scopes: Some(vec!["read".into(), "write".into()]), ..plain.clone() };
    let text = format!("{}{}{}", plain.to_toml(), reader.to_toml(), both.to_toml());
    assert!(text.contains("scopes = [\"read\"]"), "{text}");
    let reg = KeyRegistry::from_toml_str(&text).expect("scopes parse");
    let held = |id: &str| {
        let k = reg.get(id).expect(id);
        (k.may(Scope::Write), k.may(Scope::Read))
    };
    assert_eq!(held("w"), (true, false), "an entry without scopes keeps write only");
    assert_eq!(held("r"), (false, true));
    assert_eq!(held("rw"), (true, true));
    assert!(reg.get_for("r", Scope::Write).is_none() && reg.get_for("r", Scope::Read).is_some());
    assert!(reg.get_for("w", Scope::Read).is_none() && reg.get_for("nobody", Scope::Read).is_none());
}

#[test]
fn validity_times_load_and_round_trip() {
    let key = SigningKey::from_bytes(&[9; 32]);
    let e = KeyEntry {
        not_before: Some("2026-01-01T00:00:00Z".into()),
        not_after: Some("2027-01-01T00:00:00Z".into()),
        revoked_at: Some("2026-06-01T12:00:00.250Z".into()),
        ..KeyEntry::ed25519("k-1", "site-a", &key.verifying_key(), None)
    };
    let text = e.to_toml();
    assert!(text.contains("revoked_at = \"2026-06-01T12:00:00.250Z\""), "{text}");
    let reg = KeyRegistry::from_toml_str(&text).expect("times parse");
    let want = Validity {
        not_before_ms: Some(1_767_225_600_000),
        not_after_ms: Some(1_798_761_600_000),
        revoked_at_ms: Some(1_780_315_200_250),
    };
    assert_eq!(reg.get("k-1").expect("k-1").validity(), &want);
}

#[test]
fn refuses_bad_registries_precisely() {
    let good = public_b64(1);
    let cases = [
        (String::new(), "no [[key]] entries"),
        ("[[key]]\nid = \"a\"\n".to_owned(), "not TOML of the shape"),
        (format!("{}{}", entry("a", &good), entry("a", &public_b64(2))), "lists key `a` twice (entries 0 and 1)"),
        (entry("a", &good).replace("ed25519", "rsa"), "key `a`: unknown algorithm `rsa`"),
        (entry("a", &good).replace("site-a", ""), "key `a`: source is empty"),
        (entry("a b", &good), "id `a b` must be"),
        (entry("a", "not base64!"), "key `a`: public_key is not standard padded base64"),
        (entry("a", &B64.encode([7u8; 31])), "key `a`: public_key is 31 bytes, an ed25519 public key is 32"),
        (format!("{}patient_prefixes = []\n", entry("a", &good)), "patient_prefixes must list non-empty"),
        (format!("{}patient_prefixes = [\"\"]\n", entry("a", &good)), "patient_prefixes must list non-empty"),
        (format!("{}extra = 1\n", entry("a", &good)), "unknown field `extra`"),
        (format!("{}scopes = []\n", entry("a", &good)), "key `a`: scopes must list"),
        (format!("{}scopes = [\"admin\"]\n", entry("a", &good)), "key `a`: scopes must list"),
        (format!("{}scopes = [\"read\", \"read\"]\n", entry("a", &good)), "key `a`: scopes must list"),
        (format!("{}not_before = 2026-01-01T00:00:00Z\n", entry("a", &good)), "times as quoted RFC 3339"),
        (format!("{}revoked_at = \"yesterday\"\n", entry("a", &good)), "key `a`: revoked_at `yesterday` is not"),
        (
            format!(
                "{}not_before = \"2027-01-01T00:00:00Z\"\nnot_after = \"2026-01-01T00:00:00Z\"\n",
                entry("a", &good)
            ),
            "key `a`: not_before 2027-01-01T00:00:00.000Z is not before not_after",
        ),
    ];
    for (text, want) in cases {
        let got = err(&text);
        assert!(got.contains(want), "input:\n{text}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn refuses_weak_and_torsion_keys() {
    for weak in crate::ed25519::SMALL_ORDER_ENCODINGS {
        let got = err(&entry("w", &B64.encode(weak)));
        assert!(got.contains("key `w`: public_key is a weak (small-order) Ed25519 key"), "{got}");
    }
    // A valid key plus a point of order 8: not weak, but not torsion-free.
    let torsion = curve25519_dalek::constants::EIGHT_TORSION[1];
    let mixed = SigningKey::from_bytes(&[3; 32]).verifying_key().to_edwards() + torsion;
    let got = err(&entry("m", &B64.encode(mixed.compress().as_bytes())));
    assert!(got.contains("key `m`: public_key has a small-order (torsion) component"), "{got}");
    // The identity's non-canonical encoding (y = p + 1).
    let mut noncanonical = [0xffu8; 32];
    noncanonical[0] = 0xee;
    noncanonical[31] = 0x7f;
    let got = err(&entry("n", &B64.encode(noncanonical)));
    assert!(got.contains("key `n`: public_key is not a canonically encoded Ed25519 point"), "{got}");
}
