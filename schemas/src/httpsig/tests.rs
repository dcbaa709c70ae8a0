//! Request signatures: a round trip, every refusal, and properties (any
//! change to a covered part, or to the signature, is refused).

use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::*;
use crate::keys::KeyEntry;

const NOW: u64 = 1_767_225_600;
/// `Signature` as `http-message-signatures` 3.0.0 (PyPI) writes it for
/// [`reader`], `GET https://query.example/v1/patients/pt-1?after=v1.3.17`,
/// created [`NOW`], nonce `n-1`, label `tidemark`, covering `@method`,
/// `@path`, `@query` (its `Signature-Input` is the one asserted below).
const PYHMS_SIGNATURE: &str =
    "tidemark=:m99Acyz1fseAW/ewPnYlmdPCAl9mXq6QXnQNCwgTMc0Mg1dk7m1+OlkdEKQjlpOYpEKKHWJkNLGAv98Joe6kAw==:";
const FRESH: Freshness = Freshness { max_age_s: 60, max_skew_s: 5 };

fn reader() -> SigningKey {
    SigningKey::from_bytes(&[0x51; 32])
}

fn writer() -> SigningKey {
    SigningKey::from_bytes(&[0x52; 32])
}

/// `reader` may read patients `pt-*`; `writer` holds the default (write)
/// scope; `revoked` read until [`NOW`] + 30 s.
fn registry() -> KeyRegistry {
    let read = KeyEntry {
        scopes: Some(vec!["read".into()]),
        ..KeyEntry::ed25519("reader", "site-a", &reader().verifying_key(), Some(vec!["pt-".into()]))
    };
    let write = KeyEntry::ed25519("writer", "site-a", &writer().verifying_key(), None);
    let revoked =
        KeyEntry { id: "revoked".into(), revoked_at: Some(crate::format_utc_ms((NOW + 30) * 1000)), ..read.clone() };
    KeyRegistry::from_entries(vec![read, write, revoked]).expect("valid")
}

#[test]
fn a_revoked_read_key_signs_nothing_from_its_revocation_on() {
    let req = request("/v1/patients/pt-1", None);
    let before = sign(&req, &reader(), "revoked", NOW, "n");
    assert_eq!(check(&req, &before, NOW).as_deref(), Ok("revoked"));
    let after = sign(&req, &reader(), "revoked", NOW + 30, "n");
    let err = check(&req, &after, NOW + 30).expect_err("revoked");
    assert_eq!(err.code(), "key_not_valid");
}

fn request<'a>(path: &'a str, query: Option<&'a str>) -> Request<'a> {
    Request { method: "GET", path, query, authority: Some("query.example") }
}

fn check(req: &Request<'_>, h: &SignatureHeaders, now: u64) -> Result<String, HttpSigError> {
    let reg = registry();
    verify(req, Some(&h.signature_input), Some(&h.signature), &reg, now, FRESH).map(|v| v.key.id().to_owned())
}

#[test]
fn a_signed_request_verifies_and_names_its_key() {
    let req = request("/v1/patients/pt-1", Some("after=v1.3.17"));
    let h = sign(&req, &reader(), "reader", NOW, "n-1");
    assert_eq!(
        h.signature_input,
        r#"tidemark=("@method" "@path" "@query");created=1767225600;keyid="reader";alg="ed25519";nonce="n-1""#
    );
    // What the independent `http-message-signatures` (PyPI, 3.0.0) writes for
    // the same key, request, time and nonce: Ed25519 is deterministic, so the
    // bytes agree only if both built the same signature base.
    assert_eq!(h.signature, PYHMS_SIGNATURE);
    assert_eq!(check(&req, &h, NOW).as_deref(), Ok("reader"));
    let reg = registry();
    let v = verify(&req, Some(&h.signature_input), Some(&h.signature), &reg, NOW + 10, FRESH).expect("fresh");
    assert_eq!((v.nonce.as_str(), v.expires_s), ("n-1", NOW + 60));
}

#[test]
fn the_signature_base_is_rfc_9421s() {
    let req = request("/v1/conflicts", None);
    let params = r#"("@method" "@path" "@query");created=1;keyid="k""#;
    assert_eq!(
        signature_base(&req, &REQUIRED, params),
        "\"@method\": GET\n\"@path\": /v1/conflicts\n\"@query\": ?\n\"@signature-params\": (\"@method\" \"@path\" \"@query\");created=1;keyid=\"k\""
    );
    let with_host = signature_base(&Request { authority: Some("Query.Example:8443"), ..req }, &["@authority"], "()");
    assert_eq!(with_host, "\"@authority\": query.example:8443\n\"@signature-params\": ()");
}

#[test]
fn every_refusal_is_named() {
    let req = request("/v1/patients/pt-1", None);
    let good = sign(&req, &reader(), "reader", NOW, "n");
    let with_input =
        |input: &str| SignatureHeaders { signature_input: input.into(), signature: good.signature.clone() };
    let profile = |e: Result<String, HttpSigError>| e.expect_err("refused").code();
    assert_eq!(verify(&req, None, Some("x"), &registry(), NOW, FRESH).map(|_| ()), Err(HttpSigError::Missing));
    assert_eq!(profile(check(&req, &with_input("tidemark=(\"@method\""), NOW)), "malformed_signature");
    let dropped = good.signature_input.replace(r#" "@query""#, "");
    assert_eq!(profile(check(&req, &with_input(&dropped), NOW)), "signature_profile", "@query must be covered");
    let header = good.signature_input.replace(r#""@query""#, r#""@query" "date""#);
    assert_eq!(profile(check(&req, &with_input(&header), NOW)), "signature_profile", "no header fields");
    let no_nonce = good.signature_input.replace(r#";nonce="n""#, "");
    assert_eq!(profile(check(&req, &with_input(&no_nonce), NOW)), "signature_profile");
    let rsa = good.signature_input.replace(r#"alg="ed25519""#, r#"alg="rsa-pss-sha512""#);
    assert_eq!(profile(check(&req, &with_input(&rsa), NOW)), "signature_profile");
    let two = format!("{}, other=(\"@method\");created=1;keyid=\"x\";nonce=\"y\"", good.signature_input);
    assert_eq!(profile(check(&req, &with_input(&two), NOW)), "signature_profile", "one signature per request");
    let relabelled = SignatureHeaders { signature: good.signature.replacen("tidemark", "sig1", 1), ..good.clone() };
    assert_eq!(profile(check(&req, &relabelled, NOW)), "signature_profile");
    assert_eq!(
        check(&req, &good, NOW + 60),
        Err(HttpSigError::Expired),
        "the window ends where the nonce is forgotten"
    );
    assert_eq!(check(&req, &good, NOW + 59).as_deref(), Ok("reader"));
    assert_eq!(check(&req, &good, NOW - 6), Err(HttpSigError::FromTheFuture));
    assert_eq!(check(&req, &good, NOW - 5).as_deref(), Ok("reader"), "within the skew");
    let expiring = signed_with(
        &req,
        r#"("@method" "@path" "@query");created=1767225600;keyid="reader";nonce="e";expires=1767225610"#,
    );
    assert_eq!(check(&req, &expiring, NOW + 9).as_deref(), Ok("reader"));
    assert_eq!(check(&req, &expiring, NOW + 10), Err(HttpSigError::Expired), "expires ends it early");
    let hosted =
        signed_with(&req, r#"("@authority" "@method" "@path" "@query");created=1767225600;keyid="reader";nonce="h""#);
    assert_eq!(check(&req, &hosted, NOW).as_deref(), Ok("reader"), "@authority may be covered too");
    assert!(check(&Request { authority: Some("elsewhere.example"), ..req }, &hosted, NOW).is_err());
    let by_writer = sign(&req, &writer(), "writer", NOW, "n");
    assert_eq!(check(&req, &by_writer, NOW), Err(HttpSigError::UnknownKey), "write scope only");
    let unknown = sign(&req, &reader(), "nobody", NOW, "n");
    assert_eq!(check(&req, &unknown, NOW), Err(HttpSigError::UnknownKey));
    let odd = sign(&req, &reader(), "pt-1 Jane Doe", NOW, "n");
    let err = check(&req, &odd, NOW).expect_err("unknown").to_string();
    assert!(!err.contains("Jane") && !err.contains("pt-1"), "never echoed: {err}");
    let repeated = good.signature_input.replace(";alg", r#";nonce="m";alg"#);
    assert_eq!(profile(check(&req, &with_input(&repeated), NOW)), "malformed_signature");
    let forged = sign(&req, &writer(), "reader", NOW, "n");
    assert_eq!(check(&req, &forged, NOW), Err(HttpSigError::BadSignature("reader".into())));
    let long = format!("tidemark={}", "a".repeat(MAX_FIELD));
    assert_eq!(profile(check(&req, &with_input(&long), NOW)), "malformed_signature");
}

/// Signs `req` under any parameters, as another client might.
fn signed_with(req: &Request<'_>, params_text: &str) -> SignatureHeaders {
    let sf::Member::InnerList(items, _) = &sf::parse_dictionary(&format!("x={params_text}")).expect("valid")[0].1
    else {
        unreachable!("an inner list")
    };
    let covered: Vec<&str> =
        items.iter().map(|(b, _)| if let sf::Bare::String(s) = b { s.as_str() } else { "" }).collect();
    let signature = reader().sign(signature_base(req, &covered, params_text).as_bytes());
    let mut field = format!("{LABEL}=");
    sf::serialize_bare(&sf::Bare::Bytes(signature.to_bytes().to_vec()), &mut field);
    SignatureHeaders { signature_input: format!("{LABEL}={params_text}"), signature: field }
}

#[test]
fn errors_never_quote_the_request() {
    let req = request("/v1/patients/pt-secret-name", Some("after=zzz"));
    let h = sign(&req, &reader(), "reader", NOW, "n");
    let other = request("/v1/patients/pt-other", None);
    let err = check(&other, &h, NOW).expect_err("another path").to_string();
    assert!(!err.contains("pt-") && !err.contains("zzz"), "{err}");
    let garbled = SignatureHeaders { signature_input: "tidemark=(\"pt-secret-name".into(), ..h };
    let err = check(&req, &garbled, NOW).expect_err("malformed").to_string();
    assert!(!err.contains("secret"), "{err}");
}

proptest! {
    /// Any change to the method, path or query, or any flipped bit of the
    /// signature, is refused; the untouched request verifies.
    #[test]
    fn covered_parts_cannot_change(
        path in "/v1/patients/[a-z0-9%-]{1,20}",
        query in proptest::option::of("[a-z0-9=&.%-]{0,30}"),
        other_path in "/v1/[a-z0-9/%-]{1,30}",
        other_query in proptest::option::of("[a-z0-9=&.%-]{0,30}"),
        bit in 0usize..512,
    ) {
        let req = request(&path, query.as_deref());
        let h = sign(&req, &reader(), "reader", NOW, &new_nonce());
        prop_assert_eq!(check(&req, &h, NOW), Ok("reader".to_owned()));
        let moved = request(&other_path, query.as_deref());
        prop_assert_eq!(check(&moved, &h, NOW).is_ok(), other_path == path);
        let requery = request(&path, other_query.as_deref());
        let same_query = other_query.as_deref().unwrap_or_default() == query.as_deref().unwrap_or_default();
        prop_assert_eq!(check(&requery, &h, NOW).is_ok(), same_query);
        let head = Request { method: "HEAD", ..req };
        prop_assert!(check(&head, &h, NOW).is_err());
        let sf::Member::Item(sf::Bare::Bytes(mut sig), _) = sf::parse_dictionary(&h.signature).expect("ours")[0].1.clone()
        else { unreachable!("sign writes a byte sequence") };
        sig[bit / 8] ^= 1 << (bit % 8);
        let mut flipped = format!("{LABEL}=");
        sf::serialize_bare(&sf::Bare::Bytes(sig), &mut flipped);
        let tampered = SignatureHeaders { signature: flipped, ..h };
        prop_assert!(check(&req, &tampered, NOW).is_err());
    }

    /// Arbitrary header text is refused with an error, never a panic.
    #[test]
    fn arbitrary_fields_never_panic(input in ".{0,300}", sig in ".{0,300}") {
        let req = request("/v1/patients/pt-1", None);
        let _ = verify(&req, Some(&input), Some(&sig), &registry(), NOW, FRESH);
    }
}
