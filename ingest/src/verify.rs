//! Signature checks: off the async workers, bounded, capped per request,
//! and exactly as strict as the merger's final word.
//!
//! Key decisions:
//! - Every line is checked on its own with strict Ed25519 (the verifier's
//!   exact path), never with the batch equation. The sender composes its
//!   own batch, so with the batch equation a key holder could grind for a
//!   batch that accepts an `R` with a small-order component: ingest would
//!   answer 202 ("durable") for an event the merger's strict check then
//!   dead-letters. Strict per line accepts exactly what the merger accepts.
//! - The checks run on Tokio's blocking pool, at most one request per core at
//!   a time (`verify_slots`): a request of thousands of lines costs CPU
//!   seconds, which on an async worker would stall every other connection
//!   and the probes served by that worker.
//! - A request may spend [`MAX_BAD_BEFORE_GOOD`] signature checks that prove
//!   nothing new (a bad signature, a good one by a key that was not valid at
//!   the event's time, or a good one over a payload already proven in the
//!   request), and as many again for each *distinct* payload of it whose
//!   signature verified by a key valid at its time; the lines after that are
//!   refused unchecked. Whoever has no usable key can only make bad
//!   signatures, sign with an expired or revoked key (a stolen key the
//!   operator revoked must buy nothing), and replay envelopes someone else
//!   signed: one captured envelope, sent again and again (however its JSON
//!   is spaced), buys 16 more checks, not the whole request, so what a
//!   request costs stays bounded by the distinct signed payloads its sender
//!   could produce or capture.
//! - Each line is cut down to what its answer needs as soon as it is
//!   checked, and that is charged to the request's in-flight budget before
//!   the next line is decoded ([`crate::outcome`]): a request whose lines
//!   would hold more than the bound allows stops there and is answered 503
//!   (413 when it alone needs more than the whole bound).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use tidemark_schemas::keys::Scope;
use tidemark_schemas::lines::split_lines;
use tidemark_schemas::verify::{VerifiedEvent, Verifier, VerifyError};
use tidemark_schemas::{Catalog, Reason};

use crate::budget::{Budget, Refused};
use crate::outcome::Checked;
use crate::replay::fingerprint;
use crate::state::AppState;

/// Bad signatures a request may cost before one of its signatures verified,
/// and again for each distinct payload whose signature verified.
pub(crate) const MAX_BAD_BEFORE_GOOD: usize = 16;

/// Why a line was not accepted.
pub(crate) enum LineError {
    /// The verifier refused it.
    Refused(VerifyError),
    /// Not checked: the request had [`MAX_BAD_BEFORE_GOOD`] bad signatures
    /// before any good one.
    NotChecked,
    /// The same bytes as the line at this index (0-based) of the request:
    /// it shares that line's outcome, and costs no check.
    Repeat(usize),
}

/// A request's lines once checked, and its budget with what they hold.
pub(crate) struct Verified {
    /// One outcome per line, or the in-flight bound the request ran into
    /// (then nothing of it was written).
    pub(crate) lines: Result<Vec<Checked>, Refused>,
    /// The request's permits: its body's, and what each outcome holds.
    pub(crate) budget: Budget,
}

/// Checks each line of `body` (framed as `split_lines(body, ndjson)`) on the
/// blocking pool once a verification slot is free, and charges `budget`
/// for what each outcome keeps (see [`crate::outcome`]) before the next line
/// is decoded, so that no more than one decoded line per core is ever
/// outside the bound.
///
/// # Errors
/// The verification task panicked (a bug); the request cannot be answered
/// line by line.
pub(crate) async fn verify_lines(
    state: &Arc<AppState>,
    body: Bytes,
    ndjson: bool,
    now_ms: u64,
    mut budget: Budget,
) -> Result<Verified, String> {
    // The semaphore is never closed, so acquiring only waits.
    let slot = state.verify_slots.clone().acquire_owned().await.map_err(|e| e.to_string())?;
    let verifier = state.verifier();
    let state = state.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let lines: Vec<&[u8]> = split_lines(&body, ndjson).into_iter().map(|(_, l)| l).collect();
        let mut allowance = Allowance::default();
        let mut out = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let outcome = allowance.check(&verifier, &state.cfg.catalog, i, line, now_ms);
            let checked = Checked::of(outcome, &state.cfg.replay, now_ms);
            if let Err(refused) = budget.charge(checked.held_bytes(line.len(), &out)) {
                return Verified { lines: Err(refused), budget };
            }
            out.push(checked);
        }
        Verified { lines: Ok(out), budget }
    });
    task.await.map_err(|e| e.to_string())
}

/// What one request's signature checks have spent; see the module docs for
/// the cap.
#[derive(Default)]
pub(crate) struct Allowance {
    /// Signature checks that proved nothing new: bad ones, and good ones of
    /// a payload already proven (a captured envelope sent again, however its
    /// JSON is spaced).
    spent: usize,
    /// Fingerprints of the signed payloads whose signature verified.
    proofs: HashSet<u128>,
    /// Lines seen in this request, by the fingerprint of their bytes.
    seen: HashMap<u128, usize>,
}

impl Allowance {
    /// Checks `line`, the request's line at index `i` (0-based), lines in order.
    pub(crate) fn check(
        &mut self,
        verifier: &Verifier,
        catalog: &Catalog,
        i: usize,
        line: &[u8],
        now_ms: u64,
    ) -> Result<VerifiedEvent, LineError> {
        let bytes = fingerprint(line);
        if let Some(&first) = self.seen.get(&bytes) {
            return Err(LineError::Repeat(first));
        }
        self.seen.insert(bytes, i);
        if self.spent >= MAX_BAD_BEFORE_GOOD * (1 + self.proofs.len()) {
            return Err(LineError::NotChecked);
        }
        let outcome = verifier.verify_and_validate(line, catalog, now_ms);
        let charged = match &outcome {
            Err(e) if e.reason() == Reason::BadSignature => true,
            // A key past its bounds signs as well as ever: it proves nothing.
            Err(VerifyError::KeyNotValid { .. }) => true,
            // Decoding the envelope again is cheap beside the signature.
            // A payload refused after its signature verified proves the
            // sender holds a key, unless the key is past its bounds today
            // (a revoked key signing payloads that do not decode must buy
            // nothing either).
            Err(e) if signature_verified(e) => {
                let env = tidemark_schemas::dsse::Envelope::decode(line).ok();
                let lapsed = env.as_ref().is_some_and(|env| {
                    let registry = verifier.registry();
                    env.signatures().iter().any(|s| {
                        let key = registry.get_for(&s.keyid, Scope::Write);
                        key.is_some_and(|k| k.validity().check(now_ms).is_err())
                    })
                });
                lapsed || !env.is_some_and(|env| self.proofs.insert(fingerprint(env.payload())))
            }
            // Refused before any signature was checked: it cost nothing.
            Err(_) => false,
            Ok(v) => !self.proofs.insert(fingerprint(v.payload())),
        };
        if charged {
            self.spent += 1;
        }
        outcome.map_err(LineError::Refused)
    }
}

/// Whether a refusal came after the line's signatures verified: the sender
/// holds a registered key.
fn signature_verified(e: &VerifyError) -> bool {
    matches!(
        e,
        VerifyError::MalformedEvent(_)
            | VerifyError::InexactNumber(_)
            | VerifyError::SourceMismatch { .. }
            | VerifyError::PatientOutOfScope { .. }
            | VerifyError::InvalidEvent(_)
    )
}

#[cfg(test)]
mod tests {
    use tidemark_schemas::dsse;
    use tidemark_schemas::keys::{KeyRegistry, SigningKeyFile};

    use super::*;

    fn key() -> SigningKeyFile {
        SigningKeyFile::from_toml_str(include_str!("../../tests/data/test-signing.key")).expect("the test key")
    }

    fn verifier() -> Verifier {
        let registry = include_str!("../../tests/data/test-registry.toml");
        Verifier::new(KeyRegistry::from_toml_str(registry).expect("the test registry"))
    }

    /// `payload` signed by the test key: a good signature over what may not be an event.
    fn signed(payload: &str) -> String {
        let k = key();
        dsse::sign(tidemark_schemas::EDIT_EVENT_PAYLOAD_TYPE, payload.as_bytes(), k.signing_key(), k.id()).to_json()
    }

    /// Under the registered key id, a signature made over other bytes.
    fn forged(n: usize) -> String {
        let mut envelope: serde_json::Value = serde_json::from_str(&signed(&format!("{{\"n\":{n}}}"))).expect("JSON");
        let other: serde_json::Value = serde_json::from_str(&signed("{}")).expect("JSON");
        envelope["signatures"][0]["sig"] = other["signatures"][0]["sig"].clone();
        envelope.to_string()
    }

    fn outcomes(lines: &[String]) -> Vec<&'static str> {
        outcomes_with(&verifier(), lines)
    }

    fn outcomes_with(verifier: &Verifier, lines: &[String]) -> Vec<&'static str> {
        let mut allowance = Allowance::default();
        lines
            .iter()
            .enumerate()
            .map(|(i, line)| allowance.check(verifier, Catalog::builtin(), i, line.as_bytes(), 0))
            .map(|r| match r {
                Ok(_) => "ok",
                Err(LineError::NotChecked) => "unchecked",
                Err(LineError::Repeat(_)) => "repeat",
                Err(LineError::Refused(e)) if e.reason() == Reason::BadSignature => "bad",
                Err(LineError::Refused(_)) => "refused",
            })
            .collect()
    }

    #[test]
    fn bad_signatures_stop_being_checked_until_a_key_is_proven() {
        let lines: Vec<String> = (0..20).map(forged).collect();
        let got = outcomes(&lines);
        assert_eq!(got.iter().filter(|o| **o == "bad").count(), MAX_BAD_BEFORE_GOOD, "{got:?}");
        assert!(got[MAX_BAD_BEFORE_GOOD..].iter().all(|o| *o == "unchecked"), "{got:?}");
    }

    /// The review's bypass: one captured envelope, repeated, must not lift
    /// the cap for thousands of forged lines, nor cost a check per copy.
    #[test]
    fn a_repeated_good_line_buys_one_more_allowance_not_the_request() {
        let good = signed("{}");
        let mut lines = Vec::new();
        for n in 0..100 {
            lines.push(good.clone());
            lines.push(forged(n));
        }
        let got = outcomes(&lines);
        let bad = got.iter().filter(|o| **o == "bad").count();
        // The first good line is a proof (allowance 32); its byte-identical
        // copies cost nothing, and 32 forged lines are checked.
        assert_eq!(bad, 2 * MAX_BAD_BEFORE_GOOD, "{got:?}");
        assert_eq!(got.iter().filter(|o| **o == "repeat").count(), 99, "{got:?}");
        assert_eq!(got.iter().filter(|o| **o == "unchecked").count(), 100 - 2 * MAX_BAD_BEFORE_GOOD, "{got:?}");
    }

    #[test]
    fn copies_of_one_good_line_are_checked_a_bounded_number_of_times() {
        // Byte-identical copies share the first line's outcome and cost nothing.
        let lines = vec![signed("{}"); 1_000];
        let got = outcomes(&lines);
        assert_eq!(got.iter().filter(|o| **o == "repeat").count(), 999, "{got:?}");
        // Copies spaced differently are new lines over a payload already
        // proven: the first proves it (allowance 32), 32 more are checked.
        let good: serde_json::Value = serde_json::from_str(&signed("{}")).expect("JSON");
        let spaced: Vec<String> = (0..1_000).map(|n| format!("{}{good}", " ".repeat(n))).collect();
        let got = outcomes(&spaced);
        let checked = got.iter().filter(|o| **o != "unchecked").count();
        assert_eq!(checked, 1 + 2 * MAX_BAD_BEFORE_GOOD, "{got:?}");
    }

    /// A revoked key still makes good signatures; each distinct event it
    /// signs must not buy another allowance of checks.
    #[test]
    fn a_revoked_keys_signatures_are_charged_like_bad_ones() {
        let registry =
            format!("{}revoked_at = \"1970-01-01T00:00:00Z\"\n", include_str!("../../tests/data/test-registry.toml"));
        let revoked = Verifier::new(KeyRegistry::from_toml_str(&registry).expect("the registry with a revocation"));
        let lines: Vec<String> = (0..40)
            .map(|n| {
                signed(&format!(
                    r#"{{"event_id":"019a9f3e-8b1c-7cc2-9d4e-2f6a1b3c4d5e","patient_id":"pt-1","source":"site-a-ehr","author":"a","hlc":{{"wall_ms":{},"logical":0}},"ops":[{{"op":"set","path":"vitals.heart_rate_bpm","value":72}}]}}"#,
                    1_000 + n
                ))
            })
            .collect();
        let got = outcomes_with(&revoked, &lines);
        assert_eq!(got.iter().filter(|o| **o == "refused").count(), MAX_BAD_BEFORE_GOOD, "{got:?}");
        assert!(got[MAX_BAD_BEFORE_GOOD..].iter().all(|o| *o == "unchecked"), "{got:?}");
        // The same lines under the registry without the revocation verify.
        assert!(outcomes(&lines).iter().all(|o| *o == "ok"), "{:?}", outcomes(&lines));
        // Nor do distinct payloads that verify and then fail to decode.
        let junk: Vec<String> = (0..40).map(|n| signed(&format!(r#"{{"n":{n}}}"#))).collect();
        let got = outcomes_with(&revoked, &junk);
        assert_eq!(got.iter().filter(|o| **o == "refused").count(), MAX_BAD_BEFORE_GOOD, "{got:?}");
        assert!(got[MAX_BAD_BEFORE_GOOD..].iter().all(|o| *o == "unchecked"), "{got:?}");
    }

    #[test]
    fn a_verified_signature_proves_the_key_even_on_a_refused_line() {
        // Not an event, but the signature verifies: the sender holds a key.
        let mut lines = vec![signed("{}")];
        lines.extend((0..20).map(forged));
        let got = outcomes(&lines);
        assert_eq!(got[0], "refused");
        assert!(got[1..].iter().all(|o| *o == "bad"), "{got:?}");
    }
}
