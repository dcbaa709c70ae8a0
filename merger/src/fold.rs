//! The offline fold: envelopes in, one document per patient out. This is the
//! reference the live pipeline must equal, and the core the worker reuses.
//!
//! Key decision: the fold's decisions depend only on the envelope bytes, never
//! on when it runs. The catalog's future-skew bound is a receive-time check
//! (ingest enforces it against its clock); here it is not applied, so a replay
//! next year folds exactly what was folded today.

use std::collections::BTreeMap;

use tidemark_schemas::dsse::Envelope;
use tidemark_schemas::verify::Verifier;
use tidemark_schemas::view::PatientView;
use tidemark_schemas::{Catalog, EDIT_EVENT_PAYLOAD_TYPE, EditEvent};

use crate::crdt::PatientDoc;

/// "Now" for catalog validation in a fold: far enough ahead that no HLC is in
/// the future, which turns the receive-time skew check off (see module docs).
pub const REPLAY_NOW_MS: u64 = u64::MAX;

/// Why one input line was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The 1-based line number.
    pub line: usize,
    /// A stable reason code (the verifier's, or `apply`).
    pub reason: &'static str,
    /// What was wrong.
    pub message: String,
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
        let mut errors = Vec::new();
        match self.verifier {
            Some(v) => {
                let inputs: Vec<&[u8]> = lines.iter().map(|(_, b)| *b).collect();
                let results = v.verify_batch_and_validate(&inputs, self.catalog, REPLAY_NOW_MS);
                for ((line, _), result) in lines.iter().zip(results) {
                    match result {
                        Ok(verified) => self.apply(*line, verified.event(), &mut errors),
                        Err(e) => errors.push(LineError { line: *line, reason: e.reason(), message: e.to_string() }),
                    }
                }
            }
            None => {
                for (line, bytes) in lines {
                    match self.decode_unverified(bytes) {
                        Ok(event) => self.apply(*line, &event, &mut errors),
                        Err((reason, message)) => errors.push(LineError { line: *line, reason, message }),
                    }
                }
            }
        }
        errors
    }

    fn decode_unverified(&self, bytes: &[u8]) -> Result<EditEvent, (&'static str, String)> {
        let env = Envelope::decode_as(bytes, EDIT_EVENT_PAYLOAD_TYPE).map_err(|e| ("malformed", e.to_string()))?;
        let max = self.catalog.limits().max_event_bytes;
        if env.payload().len() > max {
            return Err(("too_large", format!("payload is {} bytes, the limit is {max}", env.payload().len())));
        }
        let event: EditEvent = serde_json::from_slice(env.payload())
            .map_err(|e| ("malformed_event", format!("payload is not an edit event: {e}")))?;
        self.catalog.validate(&event, REPLAY_NOW_MS).map_err(|e| ("invalid_event", e.to_string()))?;
        Ok(event)
    }

    fn apply(&mut self, line: usize, event: &EditEvent, errors: &mut Vec<LineError>) {
        let doc = match self.docs.get_mut(&event.patient_id) {
            Some(d) => d,
            None => self.docs.entry(event.patient_id.clone()).or_insert_with(|| PatientDoc::new(&event.patient_id)),
        };
        match doc.apply(event) {
            Ok(()) => self.folded += 1,
            Err(e) => errors.push(LineError { line, reason: "apply", message: e.to_string() }),
        }
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
