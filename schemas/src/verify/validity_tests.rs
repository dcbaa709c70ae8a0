//! Key validity in the verifier: each bound refuses with its own reason,
//! judged at the event's signed HLC wall time whatever the checker's clock,
//! alike in single and batch verification, for every registered signer.

use proptest::prelude::*;

use super::tests::{TIMED, WALL_MS, all_paths, good_event, key_a, patched, reason, signed, timed_key, verifier};
use super::*;
use crate::dsse;
use crate::keys::KeyEntry;

fn stamped(wall_ms: u64) -> String {
    patched(serde_json::json!({"hlc": {"wall_ms": wall_ms, "logical": 0}}))
}

#[test]
fn each_bound_refuses_with_its_reason_whatever_the_checkers_clock() {
    let v = verifier();
    let catalog = Catalog::builtin();
    let wants = [
        ("key_not_yet_valid", "key `early` is valid from 2025-11-22T07:00:00.124Z (not_before)"),
        ("key_expired", "key `late` expired at 2025-11-22T07:00:00.122Z (not_after)"),
        ("key_revoked", "key `revoked` was revoked at 2025-11-22T07:00:00.123Z (revoked_at)"),
    ];
    for ((id, seed), (code, text)) in TIMED.into_iter().zip(wants) {
        let input = signed(&good_event(), &timed_key(seed), id);
        for got in all_paths(&v, &[input.as_bytes()]).into_iter().flatten() {
            assert!(got.starts_with(code) && got.contains(text), "got {got}\nwant {code}: ...{text}");
            assert!(!got.contains(&WALL_MS.to_string()), "the event's own time is not echoed: {got}");
        }
        // The checker's clock plays no part: ingest's now, a replay a year
        // later, and the merger's replay clock give one verdict.
        for now_ms in [WALL_MS, WALL_MS + 365 * 86_400_000, u64::MAX] {
            let err = v.verify_and_validate(input.as_bytes(), catalog, now_ms).expect_err(code);
            assert_eq!(err.reason().as_str(), code, "now {now_ms}");
        }
    }
}

#[test]
fn events_stamped_inside_the_bounds_still_verify() {
    let v = verifier();
    // Stamped before the revocation: what was accepted before it stays
    // accepted when the merger reads it again.
    let cases = [(TIMED[0], WALL_MS + 1), (TIMED[1], WALL_MS - 1), (TIMED[2], WALL_MS - 1)];
    for ((id, seed), wall_ms) in cases {
        let input = signed(&stamped(wall_ms), &timed_key(seed), id);
        for got in all_paths(&v, &[input.as_bytes()]).into_iter().flatten() {
            assert!(got.starts_with("ok"), "key {id} at {wall_ms}: {got}");
        }
    }
}

#[test]
fn every_registered_signer_must_be_valid_at_the_events_time() {
    let v = verifier();
    let (id, seed) = TIMED[2];
    let mut env = dsse::sign(EDIT_EVENT_PAYLOAD_TYPE, good_event().as_bytes(), &key_a(), "a");
    env.add_ed25519_signature(&timed_key(seed), id);
    let got = reason(v.verify(env.to_json().as_bytes()));
    assert!(got.starts_with("key_revoked") && got.contains("key `revoked`"), "{got}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Through the whole verifier, signed envelopes included: an event is
    /// accepted exactly when its signed time lies in the key's bounds, with
    /// the same verdict in single, fast-batch and exact-batch verification.
    #[test]
    fn the_verdict_is_the_keys_bounds_at_the_signed_time(
        offset in 0u64..40,
        from in proptest::option::of(0u64..40),
        to in proptest::option::of(0u64..40),
        revoked in proptest::option::of(0u64..40),
    ) {
        prop_assume!(match (from, to) { (Some(f), Some(t)) => f < t, _ => true });
        let base = WALL_MS - 20;
        let time = |ms: Option<u64>| ms.map(|ms| crate::format_utc_ms(base + ms));
        let key = timed_key(0x77);
        let entry = KeyEntry {
            not_before: time(from),
            not_after: time(to),
            revoked_at: time(revoked),
            ..KeyEntry::ed25519("k", "site-a-ehr", &key.verifying_key(), None)
        };
        let v = Verifier::new(KeyRegistry::from_entries(vec![entry]).expect("a well-formed window"));
        let input = signed(&stamped(base + offset), &key, "k");
        let inside = from.is_none_or(|f| offset >= f) && to.is_none_or(|t| offset <= t)
            && revoked.is_none_or(|r| offset < r);
        let [single, fast, exact] = all_paths(&v, &[input.as_bytes()]);
        prop_assert_eq!(single[0].starts_with("ok"), inside, "{}", single[0]);
        prop_assert_eq!(&single, &fast);
        prop_assert_eq!(&single, &exact);
    }
}
