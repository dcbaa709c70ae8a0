//! Verification of signed edit events: DSSE envelope -> [`VerifiedEvent`].
//!
//! Steps, in order, each failure a [`VerifyError`]: decode the envelope and
//! require the edit event payload type; pick the signatures whose keyid is
//! registered (at least one must be); every one of them must verify, Ed25519
//! *strict* over the PAE; decode the payload as an [`EditEvent`]; its signed
//! HLC wall time must lie in every signing key's validity
//! ([`crate::keys::validity`]), its source must be every signing key's source
//! and its patient id in every key's scope.
//! [`Verifier::verify_and_validate`] adds the catalog's rules ([`Catalog::validate`]).
//!
//! Key decision: a batch's signatures are checked as one equation
//! ([`crate::batch_ed25519`]), falling back to `verify_strict` per signature
//! only when it fails. [`BatchMode`] says how close that comes to strict
//! verification; docs/security.md ("Batch verification") has the analysis.

use std::fmt;
use std::sync::Arc;

use ed25519_dalek::Signature;

use crate::batch_ed25519;
use crate::catalog::Catalog;
use crate::dsse::{DsseError, Envelope};
use crate::ed25519::r_passes_strict_prechecks;
use crate::event::{EDIT_EVENT_PAYLOAD_TYPE, EditEvent};
use crate::keys::{Algorithm, KeyRegistry, NotValidAt, RegisteredKey, Scope};
use crate::reason::Reason;
use crate::text::{json_error, shorten};
use crate::validate::ValidationError;

/// How [`Verifier::verify_batch`] checks signatures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BatchMode {
    /// One batch equation ([`crate::batch_ed25519`]) after strictness pre-checks, with a
    /// per-item strict fallback when the batch fails. Agrees with
    /// [`Verifier::verify`] except for a mixed-order `R`, which only a key
    /// holder can make (docs/security.md, "Batch verification").
    #[default]
    Fast,
    /// Per-item `verify_strict`: exactly [`Verifier::verify`], about 2-3x slower.
    Exact,
}

/// Checks envelopes against a key registry.
#[derive(Clone, Debug)]
pub struct Verifier {
    registry: KeyRegistry,
    batch_mode: BatchMode,
}

/// An event whose signatures, source and patient scope checked out.
pub struct VerifiedEvent {
    event: EditEvent,
    key_id: Arc<str>,
    /// The PAE message; the payload is its tail from `payload_start`.
    signed: Vec<u8>,
    payload_start: usize,
}

/// Why an envelope was refused, with the details for a person; [`VerifyError::reason`]
/// is the stable code. Never worth retrying with the same bytes: reject it
/// (ingest: 4xx) or dead-letter it (merger) and carry on.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The envelope could not be decoded.
    #[error("{0}")]
    Malformed(#[source] DsseError),
    /// The envelope is not an edit event.
    #[error("payloadType is `{found}`, expected `{EDIT_EVENT_PAYLOAD_TYPE}`")]
    WrongPayloadType {
        /// The type found (shortened if long).
        found: String,
    },
    /// The payload is larger than the catalog allows.
    #[error("payload is {len} bytes, the limit is {max}: split the edit into smaller events")]
    TooLarge {
        /// The payload's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No signature names a registered key.
    #[error(
        "no signature is by a key registered to sign events (keyids: {}): register the key with the `write` \
         scope, or sign with a registered one",
        keyids.join(", ")
    )]
    UnknownKey {
        /// The keyids found (shortened if long).
        keyids: Vec<String>,
    },
    /// A registered key's signature does not verify.
    #[error(
        "signature {index} by key `{keyid}` does not verify: the payload or signature was altered, or another key made it"
    )]
    BadSignature {
        /// The signature's index in the envelope.
        index: usize,
        /// Its key id.
        keyid: String,
    },
    /// The signed payload is not a v1 edit event.
    ///
    /// The message names what was wrong and where, never a value of the
    /// payload; the serde error is not this error's `source`, so that no
    /// chain printer quotes it either.
    #[error("signed payload is not a v1 edit event: {}", json_error(.0))]
    MalformedEvent(serde_json::Error),
    /// The signing key was not valid at the event's own (signed HLC) time:
    /// not yet, expired, or revoked.
    #[error("event {event_id}: key `{keyid}` {why}")]
    KeyNotValid {
        /// The event.
        event_id: uuid::Uuid,
        /// The signing key.
        keyid: String,
        /// Which of the key's bounds the event's time is outside of.
        why: NotValidAt,
    },
    /// A number in an op's value is not exactly what a 64-bit float holds
    /// (`schemas/src/number.rs`): the event would be stored with another
    /// value than its author signed. The message says which number of
    /// which value, never the number.
    #[error("{}", json_error(.0))]
    InexactNumber(serde_json::Error),
    /// The event's source is not its signing key's source.
    #[error("event {event_id}: source is `{event_source}` but key `{keyid}` signs for source `{key_source}`")]
    SourceMismatch {
        /// The event.
        event_id: uuid::Uuid,
        /// The signing key.
        keyid: String,
        /// The key's registered source.
        key_source: String,
        /// The event's source (shortened if long).
        event_source: String,
    },
    /// The event's patient is outside the signing key's scope.
    #[error(
        "event {event_id}: patient id is outside key `{keyid}`'s scope (patient id prefixes {}): the key may not sign for this patient",
        prefixes.join(", ")
    )]
    PatientOutOfScope {
        /// The event.
        event_id: uuid::Uuid,
        /// The signing key.
        keyid: String,
        /// The key's allowed prefixes.
        prefixes: Vec<String>,
    },
    /// The event breaks the record catalog's rules.
    #[error("{0}")]
    InvalidEvent(#[from] ValidationError),
}

impl VerifyError {
    /// The error for signed bytes that [`EditEvent::from_json`] refused:
    /// [`VerifyError::InexactNumber`] for a number a float cannot hold
    /// exactly, [`VerifyError::MalformedEvent`] for anything else. Every
    /// decoder of signed payloads maps its error through here, so that they
    /// all give the same reason.
    pub fn from_event_json(err: serde_json::Error) -> Self {
        if crate::number::is_inexact(&err) { VerifyError::InexactNumber(err) } else { VerifyError::MalformedEvent(err) }
    }

    /// Why, as a stable code: for a catalog violation, the first
    /// violation's ([`ValidationError::reason`]).
    pub fn reason(&self) -> Reason {
        match self {
            VerifyError::Malformed(DsseError::SignatureLength { .. }) => Reason::BadSignature,
            VerifyError::Malformed(_) => Reason::Malformed,
            VerifyError::WrongPayloadType { .. } => Reason::WrongPayloadType,
            VerifyError::TooLarge { .. } => Reason::TooLarge,
            VerifyError::UnknownKey { .. } => Reason::UnknownKey,
            VerifyError::BadSignature { .. } => Reason::BadSignature,
            VerifyError::MalformedEvent(_) => Reason::MalformedEvent,
            VerifyError::KeyNotValid { why: NotValidAt::NotYet { .. }, .. } => Reason::KeyNotYetValid,
            VerifyError::KeyNotValid { why: NotValidAt::Expired { .. }, .. } => Reason::KeyExpired,
            VerifyError::KeyNotValid { why: NotValidAt::Revoked { .. }, .. } => Reason::KeyRevoked,
            VerifyError::InexactNumber(_) => Reason::InexactNumber,
            VerifyError::SourceMismatch { .. } => Reason::SourceMismatch,
            VerifyError::PatientOutOfScope { .. } => Reason::PatientOutOfScope,
            VerifyError::InvalidEvent(e) => e.reason(),
        }
    }
}

/// A payload type other than the edit event's is [`VerifyError::WrongPayloadType`];
/// every other envelope error is [`VerifyError::Malformed`].
impl From<DsseError> for VerifyError {
    fn from(err: DsseError) -> Self {
        match err {
            DsseError::WrongPayloadType { found, .. } => VerifyError::WrongPayloadType { found },
            other => VerifyError::Malformed(other),
        }
    }
}

/// An envelope with its registered signatures picked out, not yet checked.
struct Prepared<'v> {
    envelope: Envelope,
    signers: Vec<Signer<'v>>,
}

struct Signer<'v> {
    index: usize,
    key: &'v RegisteredKey,
    sig: Signature,
}

impl Signer<'_> {
    fn bad(&self) -> VerifyError {
        VerifyError::BadSignature { index: self.index, keyid: self.key.id().to_owned() }
    }
}

impl Verifier {
    /// A verifier for the keys of `registry`, in [`BatchMode::Fast`].
    pub fn new(registry: KeyRegistry) -> Self {
        Self { registry, batch_mode: BatchMode::default() }
    }

    /// The same verifier with another batch mode.
    pub fn with_batch_mode(mut self, mode: BatchMode) -> Self {
        self.batch_mode = mode;
        self
    }

    /// The batch mode.
    pub fn batch_mode(&self) -> BatchMode {
        self.batch_mode
    }

    /// The key registry.
    pub fn registry(&self) -> &KeyRegistry {
        &self.registry
    }

    /// Verifies one envelope (its JSON bytes).
    ///
    /// # Errors
    /// [`VerifyError`] for the first check that fails, in the order of the module docs.
    pub fn verify(&self, envelope_json: &[u8]) -> Result<VerifiedEvent, VerifyError> {
        self.verify_one(envelope_json, None)
    }

    /// Verifies many envelopes, one result per input in input order; see
    /// [`BatchMode`] for how signatures are checked.
    pub fn verify_batch(&self, envelopes: &[&[u8]]) -> Vec<Result<VerifiedEvent, VerifyError>> {
        self.verify_many(envelopes, None)
    }

    /// [`Verifier::verify`], then the catalog's size limit (before checking
    /// signatures) and [`Catalog::validate`] at `now_ms`.
    ///
    /// # Errors
    /// As [`Verifier::verify`], plus [`VerifyError::TooLarge`] and [`VerifyError::InvalidEvent`].
    pub fn verify_and_validate(
        &self,
        envelope_json: &[u8],
        catalog: &Catalog,
        now_ms: u64,
    ) -> Result<VerifiedEvent, VerifyError> {
        let verified = self.verify_one(envelope_json, Some(catalog.limits().max_event_bytes))?;
        catalog.validate(verified.event(), now_ms)?;
        Ok(verified)
    }

    /// [`Verifier::verify_batch`] with [`Verifier::verify_and_validate`]'s checks.
    pub fn verify_batch_and_validate(
        &self,
        envelopes: &[&[u8]],
        catalog: &Catalog,
        now_ms: u64,
    ) -> Vec<Result<VerifiedEvent, VerifyError>> {
        let mut results = self.verify_many(envelopes, Some(catalog.limits().max_event_bytes));
        for slot in &mut results {
            if let Ok(verified) = slot
                && let Err(invalid) = catalog.validate(verified.event(), now_ms)
            {
                *slot = Err(invalid.into());
            }
        }
        results
    }

    fn verify_one(&self, bytes: &[u8], max_payload: Option<usize>) -> Result<VerifiedEvent, VerifyError> {
        let prepared = self.prepare(bytes, max_payload)?;
        check_strict(&prepared)?;
        finish(prepared)
    }

    fn verify_many(&self, inputs: &[&[u8]], max_payload: Option<usize>) -> Vec<Result<VerifiedEvent, VerifyError>> {
        match self.batch_mode {
            BatchMode::Exact => inputs.iter().map(|bytes| self.verify_one(bytes, max_payload)).collect(),
            BatchMode::Fast => self.verify_many_fast(inputs, max_payload),
        }
    }

    fn verify_many_fast(
        &self,
        inputs: &[&[u8]],
        max_payload: Option<usize>,
    ) -> Vec<Result<VerifiedEvent, VerifyError>> {
        let mut prepared: Vec<Result<Prepared<'_>, VerifyError>> =
            inputs.iter().map(|bytes| self.prepare(bytes, max_payload)).collect();
        for slot in &mut prepared {
            if let Ok(p) = slot
                && let Some(err) = p.signers.iter().find(|s| !r_passes_strict_prechecks(&s.sig)).map(Signer::bad)
            {
                *slot = Err(err);
            }
        }
        let batch_ok = {
            let items: Vec<batch_ed25519::Item<'_>> = prepared
                .iter()
                .flatten()
                .flat_map(|p| {
                    p.signers.iter().map(|s| batch_ed25519::Item {
                        key: s.key.verifying_key(),
                        message: p.envelope.pae(),
                        signature: &s.sig,
                    })
                })
                .collect();
            batch_ed25519::verify(&items)
        };
        prepared
            .into_iter()
            .map(|slot| {
                let p = slot?;
                if !batch_ok {
                    check_strict(&p)?;
                }
                finish(p)
            })
            .collect()
    }

    fn prepare(&self, bytes: &[u8], max_payload: Option<usize>) -> Result<Prepared<'_>, VerifyError> {
        let envelope = Envelope::decode_as(bytes, EDIT_EVENT_PAYLOAD_TYPE)?;
        if let Some(max) = max_payload
            && envelope.payload().len() > max
        {
            return Err(VerifyError::TooLarge { len: envelope.payload().len(), max });
        }
        let mut signers = Vec::with_capacity(envelope.signatures().len());
        for (index, s) in envelope.signatures().iter().enumerate() {
            // A read-only key signs requests, never events: as if unregistered.
            let Some(key) = self.registry.get_for(&s.keyid, Scope::Write) else { continue };
            let sig = match key.algorithm() {
                Algorithm::Ed25519 => envelope.ed25519_signature(index).map_err(VerifyError::Malformed)?,
            };
            signers.push(Signer { index, key, sig });
        }
        if signers.is_empty() {
            let keyids = envelope.signatures().iter().map(|s| shorten(&s.keyid)).collect();
            return Err(VerifyError::UnknownKey { keyids });
        }
        Ok(Prepared { envelope, signers })
    }
}

fn check_strict(p: &Prepared<'_>) -> Result<(), VerifyError> {
    for s in &p.signers {
        s.key.verifying_key().verify_strict(p.envelope.pae(), &s.sig).map_err(|_| s.bad())?;
    }
    Ok(())
}

fn finish(p: Prepared<'_>) -> Result<VerifiedEvent, VerifyError> {
    let event = EditEvent::from_json(p.envelope.payload()).map_err(VerifyError::from_event_json)?;
    for s in &p.signers {
        let key = s.key;
        if let Err(why) = key.validity().check(event.hlc.wall_ms) {
            return Err(VerifyError::KeyNotValid { event_id: event.event_id, keyid: key.id().to_owned(), why });
        }
        if event.source != key.source() {
            return Err(VerifyError::SourceMismatch {
                event_id: event.event_id,
                keyid: key.id().to_owned(),
                key_source: key.source().to_owned(),
                event_source: shorten(&event.source),
            });
        }
        if !key.allows_patient(&event.patient_id) {
            return Err(VerifyError::PatientOutOfScope {
                event_id: event.event_id,
                keyid: key.id().to_owned(),
                prefixes: key.patient_prefixes().unwrap_or_default().to_vec(),
            });
        }
    }
    let key_id = p.signers[0].key.id_shared().clone();
    let (signed, payload_start) = p.envelope.into_signed_message();
    Ok(VerifiedEvent { event, key_id, signed, payload_start })
}

impl VerifiedEvent {
    /// The decoded event.
    pub fn event(&self) -> &EditEvent {
        &self.event
    }

    /// The decoded event, giving up the rest.
    pub fn into_event(self) -> EditEvent {
        self.event
    }

    /// The id of the (first) registered key whose signature verified.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The payload's exact signed bytes.
    pub fn payload(&self) -> &[u8] {
        &self.signed[self.payload_start..]
    }
}

/// Never prints the event's content: it is patient data.
impl fmt::Debug for VerifiedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedEvent")
            .field("event_id", &self.event.event_id)
            .field("key_id", &self.key_id)
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod validity_tests;
