#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

fn key(byte: u8) -> StateKey {
    StateKey::from_bytes(&[byte; 32])
}

fn keys(bytes: &[u8]) -> StateKeys {
    StateKeys::new(&bytes.iter().map(|b| key(*b)).collect::<Vec<_>>()).expect("distinct keys")
}

fn check(ks: &StateKeys, kind: RecordKind, k: &[u8], v: Option<&[u8]>, mac: &RecordMac) -> Result<Sealed, MacFailure> {
    ks.check(kind, k, v, |h| headers(Some(mac.key_id.as_bytes()), Some(mac.tag.as_bytes()), h))
}

fn headers<'a>(id: Option<&'a [u8]>, tag: Option<&'a [u8]>, name: &str) -> Option<&'a [u8]> {
    match name {
        MAC_KEY_ID_HEADER => id,
        MAC_HEADER => tag,
        _ => None,
    }
}

/// The layout of docs/merger.md, computed by Python's `hmac` module from
/// the documented bytes, not by this code.
#[test]
fn the_documented_layout_is_what_is_sealed() {
    let mut bytes = [0u8; 32];
    bytes.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    let ks = StateKeys::new(&[StateKey::from_bytes(&bytes)]).unwrap();
    assert_eq!(ks.sealing_key_id(), "tms1-8408a5803530be2c19dc38704b8a3e2a");
    let state = ks.seal(RecordKind::State, b"pt-1", Some(br#"{"a":1}"#));
    assert_eq!(state.tag, "18142b72bd93ace393105501a2616df03e6315db931a36f143d74fd0efd10c54");
    let tombstone = ks.seal(RecordKind::Changelog, b"pt-1", None);
    assert_eq!(tombstone.tag, "bf3ef3015dbe36e5b4dc53bfc5c26a289af363d7621b37731071fddfde3090b3");
}

#[test]
fn missing_malformed_and_unknown_headers_are_told_apart() {
    let ks = keys(&[1]);
    let mac = ks.seal(RecordKind::State, b"k", Some(b"v"));
    let (id, tag) = (mac.key_id.as_bytes(), mac.tag.as_bytes());
    let at =
        |id: Option<&[u8]>, tag: Option<&[u8]>| ks.check(RecordKind::State, b"k", Some(b"v"), |h| headers(id, tag, h));
    assert_eq!(at(Some(id), Some(tag)), Ok(Sealed::Current));
    assert_eq!(at(None, None), Err(MacFailure::Missing));
    assert_eq!(at(Some(id), None), Err(MacFailure::Malformed));
    assert_eq!(at(None, Some(tag)), Err(MacFailure::Malformed));
    assert_eq!(at(Some(b"pt-123 Jane Doe"), Some(tag)), Err(MacFailure::Malformed), "not an id: never echoed");
    assert_eq!(at(Some(id), Some(b"zz")), Err(MacFailure::Malformed));
    assert_eq!(at(Some(id), Some(&tag[..62])), Err(MacFailure::Malformed), "64 hex digits, no fewer");
    let upper = mac.tag.to_uppercase();
    assert_eq!(at(Some(id), Some(upper.as_bytes())), Err(MacFailure::Malformed), "lowercase, as documented");
    let other = key(2).key_id();
    assert_eq!(at(Some(other.as_bytes()), Some(tag)), Err(MacFailure::UnknownKey(other)));
}

#[test]
fn rotation_accepts_older_keys_and_says_so() {
    let old = keys(&[1]);
    let mac = old.seal(RecordKind::Changelog, b"k", Some(b"v"));
    let rotated = keys(&[2, 1]);
    assert_eq!(check(&rotated, RecordKind::Changelog, b"k", Some(b"v"), &mac), Ok(Sealed::Older));
    assert_eq!(rotated.sealing_key_id(), key(2).key_id());
    assert!(StateKeys::new(&[]).is_err());
    assert!(StateKeys::new(&[key(3), key(3)]).is_err());
    assert!(!format!("{rotated:?}").contains(&hex::encode([2u8; 32])));
}

#[test]
fn a_key_file_round_trips_and_is_not_a_dataset_key() {
    let k = StateKey::generate().unwrap();
    let text = k.to_text();
    assert!(text.contains("state-secret"));
    assert_eq!(StateKey::from_text(&text).unwrap().key_id(), k.key_id());
    assert!(crate::DatasetKey::from_text(&text).is_err(), "kinds are not interchangeable");
}

proptest! {
    /// Sealed records check; any change to the kind, key, value (including
    /// value to tombstone) or tag is refused.
    #[test]
    fn any_alteration_is_refused(
        k in proptest::collection::vec(any::<u8>(), 0..40),
        v in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        flip in any::<usize>(),
        bit in 0u8..8,
    ) {
        let ks = keys(&[7]);
        let mac = ks.seal(RecordKind::State, &k, v.as_deref());
        prop_assert_eq!(check(&ks, RecordKind::State, &k, v.as_deref(), &mac), Ok(Sealed::Current));
        prop_assert_eq!(check(&ks, RecordKind::Changelog, &k, v.as_deref(), &mac), Err(MacFailure::Mismatch));
        if let Some(v) = &v {
            let mut changed = v.clone();
            if changed.is_empty() {
                prop_assert_eq!(check(&ks, RecordKind::State, &k, None, &mac), Err(MacFailure::Mismatch));
                changed.push(0);
            } else {
                let i = flip % changed.len();
                changed[i] ^= 1 << bit;
            }
            prop_assert_eq!(check(&ks, RecordKind::State, &k, Some(&changed), &mac), Err(MacFailure::Mismatch));
            // Bytes moved from the value into the key keep the concatenation but not the framing.
            if !v.is_empty() {
                let mut longer_key = k.clone();
                longer_key.push(v[0]);
                prop_assert_eq!(check(&ks, RecordKind::State, &longer_key, Some(&v[1..]), &mac), Err(MacFailure::Mismatch));
            }
        } else {
            prop_assert_eq!(check(&ks, RecordKind::State, &k, Some(b""), &mac), Err(MacFailure::Mismatch));
        }
        let mut other_key = k.clone();
        other_key.push(b'x');
        prop_assert_eq!(check(&ks, RecordKind::State, &other_key, v.as_deref(), &mac), Err(MacFailure::Mismatch));
        let mut tag = mac.tag.clone().into_bytes();
        let i = flip % tag.len();
        tag[i] = if tag[i] == b'0' { b'1' } else { b'0' };
        let forged = RecordMac { key_id: mac.key_id.clone(), tag: String::from_utf8(tag).unwrap() };
        prop_assert_eq!(check(&ks, RecordKind::State, &k, v.as_deref(), &forged), Err(MacFailure::Mismatch));
        prop_assert_eq!(check(&keys(&[8]), RecordKind::State, &k, v.as_deref(), &mac), Err(MacFailure::UnknownKey(mac.key_id.clone())));
    }
}

/// What sealing and checking cost per record, beside the bound of hashing
/// the same bytes once with SHA-256 (an HMAC hashes them once, plus two
/// blocks). Run by hand:
/// `cargo test --release -p tidemark-seal --lib record_mac -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement; run by hand"]
fn measure_seal_and_check_per_record() {
    let ks = keys(&[9]);
    for size in [256usize, 2048, 8192] {
        let value = vec![b'x'; size];
        let n = 200_000 / (1 + size / 1024);
        let time = |f: &mut dyn FnMut()| {
            let t = std::time::Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        };
        let mut sink = 0u8;
        let bound = time(&mut || sink ^= ring::digest::digest(&ring::digest::SHA256, &value).as_ref()[0]);
        let mut mac = ks.seal(RecordKind::State, b"pt-0000001", Some(&value));
        let seal = time(&mut || mac = ks.seal(RecordKind::State, b"pt-0000001", Some(&value)));
        let check = time(&mut || {
            assert!(check(&ks, RecordKind::State, b"pt-0000001", Some(&value), &mac).is_ok());
        });
        eprintln!(
            "record_mac {size:>5} B: seal {seal:.2} us, check {check:.2} us; bound (SHA-256 of the value) {bound:.2} us [{sink}]"
        );
    }
}
