//! The offline fold: envelopes in, one document per patient out. This is the
//! reference the live pipeline must equal, and the core the worker reuses.
//!
//! Key decision: the fold's decisions depend only on the envelope bytes, never
//! on when it runs. The catalog's future-skew bound is a receive-time check
//! (ingest enforces it against its clock); here it is not applied, so a replay
//! next year folds exactly what was folded today.

use std::collections::BTreeMap;

use tidemark_schemas::dsse::Envelope;
use tidemark_schemas::verify::{Verifier, VerifyError};
use tidemark_schemas::view::PatientView;
use tidemark_schemas::{Catalog, EDIT_EVENT_PAYLOAD_TYPE, EditEvent, Reason};

use crate::PatientDoc;

/// "Now" for catalog validation in a fold: far enough ahead that no HLC is in
/// the future, which turns the receive-time skew check off (see module docs).
pub const REPLAY_NOW_MS: u64 = u64::MAX;

/// Why one input line was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The 1-based line number.
    pub line: usize,
    /// Why (the verifier's reason, or [`Reason::Apply`]).
    pub reason: Reason,
    /// What was wrong.
    pub message: String,
}

/// Why an envelope was set aside; `reason` is its metric label and DLQ
/// header (the verifier's reasons, plus [`Reason::Apply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The reason.
    pub reason: Reason,
    /// What was wrong.
    pub detail: String,
}

/// Decodes, verifies (when `verifier` is given) and validates a batch of
/// envelopes; one result per input, in input order. Signatures of the batch are
/// checked together.
pub fn check_envelopes(
    catalog: &Catalog,
    verifier: Option<&Verifier>,
    inputs: &[&[u8]],
) -> Vec<Result<EditEvent, Rejection>> {
    match verifier {
        Some(v) => v
            .verify_batch_and_validate(inputs, catalog, REPLAY_NOW_MS)
            .into_iter()
            .map(|r| r.map(|ok| ok.into_event()).map_err(|e| Rejection { reason: e.reason(), detail: e.to_string() }))
            .collect(),
        None => inputs.iter().map(|b| decode_unverified(catalog, b)).collect(),
    }
}

fn decode_unverified(catalog: &Catalog, bytes: &[u8]) -> Result<EditEvent, Rejection> {
    let reject = |reason, detail| Rejection { reason, detail };
    let env = Envelope::decode_as(bytes, EDIT_EVENT_PAYLOAD_TYPE).map_err(|e| {
        let e = VerifyError::from(e);
        reject(e.reason(), e.to_string())
    })?;
    check_event(catalog, env.payload(), REPLAY_NOW_MS)
}

/// Decodes and validates an unsigned event's JSON as the fold does a
/// payload: the catalog's size limit, the event's shape, then the catalog's
/// rules at `now_ms` ([`REPLAY_NOW_MS`] leaves out the receive-time skew
/// check, as the fold does; the current time applies it, as ingest does).
///
/// # Errors
/// A [`Rejection`] with the reason the pipeline gives the same bytes.
pub fn check_event(catalog: &Catalog, payload: &[u8], now_ms: u64) -> Result<EditEvent, Rejection> {
    let reject = |reason, detail| Rejection { reason, detail };
    let max = catalog.limits().max_event_bytes;
    if payload.len() > max {
        return Err(reject(Reason::TooLarge, format!("payload is {} bytes, the limit is {max}", payload.len())));
    }
    let event = EditEvent::from_json(payload).map_err(|e| {
        let e = VerifyError::from_event_json(e);
        reject(e.reason(), e.to_string())
    })?;
    catalog.validate(&event, now_ms).map_err(|e| reject(e.reason(), e.to_string()))?;
    Ok(event)
}

/// Applies a checked event to its patient's document in `docs`, creating it on
/// first sight. Returns how many conflicts the event opened (negative when it
/// resolved more than it opened).
///
/// # Errors
/// A [`Rejection`] with [`Reason::Apply`] when the CRDT refuses the event.
pub fn apply_event(docs: &mut impl DocStore, event: &EditEvent) -> Result<i64, Rejection> {
    docs.doc_mut(&event.patient_id)
        .apply_counting(event)
        .map_err(|e| Rejection { reason: Reason::Apply, detail: e.to_string() })
}

/// Where documents live: a map keyed by patient id.
pub trait DocStore {
    /// The patient's document, created empty if absent.
    fn doc_mut(&mut self, patient_id: &str) -> &mut PatientDoc;
}

impl DocStore for BTreeMap<String, PatientDoc> {
    fn doc_mut(&mut self, patient_id: &str) -> &mut PatientDoc {
        if !self.contains_key(patient_id) {
            self.insert(patient_id.to_owned(), PatientDoc::new(patient_id));
        }
        self.get_mut(patient_id).expect("inserted above")
    }
}

impl<S: std::hash::BuildHasher> DocStore for std::collections::HashMap<String, PatientDoc, S> {
    fn doc_mut(&mut self, patient_id: &str) -> &mut PatientDoc {
        if !self.contains_key(patient_id) {
            self.insert(patient_id.to_owned(), PatientDoc::new(patient_id));
        }
        self.get_mut(patient_id).expect("inserted above")
    }
}

/// Folds envelopes into per-patient documents.
pub struct Fold<'a> {
    catalog: &'a Catalog,
    verifier: Option<&'a Verifier>,
    docs: BTreeMap<String, PatientDoc>,
    folded: u64,
}

impl<'a> Fold<'a> {
    /// A fold that validates against `catalog`, and verifies signatures when a
    /// `verifier` is given (without one, payloads are read unverified).
    pub fn new(catalog: &'a Catalog, verifier: Option<&'a Verifier>) -> Self {
        Self { catalog, verifier, docs: BTreeMap::new(), folded: 0 }
    }

    /// Folds a chunk of `(line number, envelope bytes)`; returns the lines
    /// skipped, in input order. Signatures of a chunk are checked as a batch.
    pub fn fold_lines(&mut self, lines: &[(usize, &[u8])]) -> Vec<LineError> {
        let inputs: Vec<&[u8]> = lines.iter().map(|(_, b)| *b).collect();
        let checked = check_envelopes(self.catalog, self.verifier, &inputs);
        let mut errors = Vec::new();
        for ((line, _), result) in lines.iter().zip(checked) {
            let applied = result.and_then(|event| apply_event(&mut self.docs, &event));
            match applied {
                Ok(_) => self.folded += 1,
                Err(r) => errors.push(LineError { line: *line, reason: r.reason, message: r.detail }),
            }
        }
        errors
    }

    /// Events folded so far (duplicates included).
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// The documents, by patient id.
    pub fn docs(&self) -> &BTreeMap<String, PatientDoc> {
        &self.docs
    }

    /// The views, sorted by patient id.
    pub fn views(&self) -> impl Iterator<Item = PatientView> + '_ {
        self.docs.values().map(PatientDoc::view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u8, op: &str, value: u32) -> EditEvent {
        let json = format!(
            r#"{{"event_id":"019a9f3e-8b1c-7cc2-9d4e-2f6a1b3c4d{id:02x}","patient_id":"pt-1","source":"s","author":"a","hlc":{{"wall_ms":{id},"logical":0}},"ops":[{{"op":"{op}","path":"allergies","value":"rxnorm:{value}"}}]}}"#
        );
        EditEvent::from_json(json.as_bytes()).expect("test event parses")
    }

    /// Ingest refuses a number that a float cannot hold exactly as
    /// `inexact_number`. The merger checks envelopes through
    /// `check_envelopes` with a verifier, `tidemark fold` may without one:
    /// both must set such an event aside for the same reason, and take the
    /// same event written exactly.
    #[test]
    fn an_inexact_number_is_refused_for_the_same_reason_verified_or_not() {
        use ed25519_dalek::SigningKey;
        use tidemark_schemas::dsse;
        use tidemark_schemas::keys::{KeyEntry, KeyRegistry};

        let key = SigningKey::from_bytes(&[7; 32]);
        let entry = KeyEntry::ed25519("k", "s", &key.verifying_key(), None);
        let verifier = Verifier::new(KeyRegistry::from_entries(vec![entry]).expect("a registry"));
        let payload = r#"{"event_id":"019a9f3e-8b1c-7cc2-9d4e-2f6a1b3c4d5e","patient_id":"pt-1","source":"s","author":"a","hlc":{"wall_ms":1,"logical":0},"ops":[{"op":"set","path":"vitals.temperature_c","value":36.6000000000000000001}]}"#;
        let exact = payload.replace("36.6000000000000000001", "36.60");
        let sign = |p: &str| dsse::sign(EDIT_EVENT_PAYLOAD_TYPE, p.as_bytes(), &key, "k").to_json();
        let (inexact, exact) = (sign(payload), sign(&exact));
        for v in [Some(&verifier), None] {
            let mut got = check_envelopes(Catalog::builtin(), v, &[inexact.as_bytes(), exact.as_bytes()]);
            let refused = got.remove(0).expect_err("more digits than a float holds");
            assert_eq!(refused.reason, Reason::InexactNumber, "{refused:?}");
            assert!(!refused.detail.contains("36.6"), "the detail quotes the number: {refused:?}");
            let taken = got.remove(0).expect("36.60 is exactly the float 36.6");
            assert_eq!(taken.ops[0].value(), Some(&serde_json::json!(36.6)));
        }
    }

    /// `apply` is produced when a path's kind changed under the document (the
    /// catalog is not checked here, as in a fold across a catalog change).
    #[test]
    fn an_event_the_document_refuses_is_rejected_as_apply() {
        let mut docs = BTreeMap::new();
        apply_event(&mut docs, &event(1, "add", 1)).expect("an add on a set applies");
        let refused = apply_event(&mut docs, &event(2, "set", 2)).expect_err("a set on a set is refused");
        assert_eq!(refused.reason, Reason::Apply, "{refused:?}");
    }
}
