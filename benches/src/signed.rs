//! The seeded workload signed as ingest receives it: one Ed25519 key per
//! source from a fixed seed, a key registry built from them, and every event
//! as DSSE envelope bytes.
//!
//! Key decision: the raw ed25519-dalek bound is fed exactly what the verifier
//! checks (the PAE bytes decoded from each envelope, its signature, the
//! registered key), so the ratio between the two is the cost of our decoding
//! and checks, not of different messages.

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use tidemark_schemas::dsse::{self, Envelope};
use tidemark_schemas::keys::{KeyEntry, KeyRegistry};
use tidemark_schemas::{EDIT_EVENT_PAYLOAD_TYPE, EditEvent};

/// Signed envelopes with everything the bounds need beside them.
pub struct Signed {
    /// The registry the verifier checks against: one key per source.
    pub registry: KeyRegistry,
    /// Each event's envelope, as the JSON bytes ingest receives.
    pub envelopes: Vec<Vec<u8>>,
    /// Each event's payload: the event's exact JSON bytes.
    pub payloads: Vec<Vec<u8>>,
    /// Each envelope's PAE message, the bytes its signature covers.
    pub pae: Vec<Vec<u8>>,
    /// Each envelope's signature.
    pub signatures: Vec<Signature>,
    /// The key each envelope was signed with (the registered public key).
    pub keys: Vec<VerifyingKey>,
}

impl Signed {
    /// Signs every event with its source's key. Sources get keys in sorted
    /// order from fixed seeds, so the same events give the same bytes.
    ///
    /// # Panics
    /// If a registry entry is refused (a source name that is not a valid key
    /// id): the workload's sources are fixed and valid.
    pub fn of(events: &[EditEvent]) -> Self {
        let mut sources: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
        sources.sort_unstable();
        sources.dedup();
        let signing: Vec<(String, &str, SigningKey)> = sources
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("{s}-bench-2026"), *s, SigningKey::from_bytes(&seed(i))))
            .collect();
        let entries = signing.iter().map(|(id, s, k)| KeyEntry::ed25519(id, s, &k.verifying_key(), None)).collect();
        let registry = KeyRegistry::from_entries(entries).expect("bench keys are valid registry entries");
        let mut out = Signed {
            registry,
            envelopes: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            pae: Vec::with_capacity(events.len()),
            signatures: Vec::with_capacity(events.len()),
            keys: Vec::with_capacity(events.len()),
        };
        for e in events {
            let (id, _, key) = signing.iter().find(|(_, s, _)| *s == e.source).expect("every source has a key");
            let payload = serde_json::to_vec(e).expect("an event always serialises");
            let envelope = dsse::sign(EDIT_EVENT_PAYLOAD_TYPE, &payload, key, id);
            out.signatures.push(envelope.ed25519_signature(0).expect("dsse::sign made a 64-byte signature"));
            out.pae.push(envelope.pae().to_vec());
            out.keys.push(key.verifying_key());
            out.envelopes.push(envelope.to_json().into_bytes());
            out.payloads.push(payload);
        }
        out
    }

    /// How many envelopes.
    pub fn len(&self) -> usize {
        self.envelopes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.envelopes.is_empty()
    }

    /// The envelopes as the slices `Verifier::verify_batch` takes.
    pub fn envelope_slices(&self) -> Vec<&[u8]> {
        self.envelopes.iter().map(Vec::as_slice).collect()
    }

    /// Mean bytes per envelope.
    pub fn mean_envelope_bytes(&self) -> f64 {
        self.envelopes.iter().map(Vec::len).sum::<usize>() as f64 / self.len().max(1) as f64
    }

    /// Checks that decoding an envelope gives back the PAE it was signed over.
    ///
    /// # Panics
    /// If it does not: the bound would be checking other bytes than ours.
    pub fn assert_pae_round_trips(&self) {
        for (bytes, pae) in self.envelopes.iter().zip(&self.pae) {
            let decoded = Envelope::decode(bytes).expect("own envelopes decode");
            assert_eq!(decoded.pae(), pae.as_slice(), "decoded PAE differs from the signed one");
        }
    }
}

/// The fixed seed of the `i`th source's key.
fn seed(i: usize) -> [u8; 32] {
    let mut s = [0u8; 32];
    for (j, b) in s.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(j as u8).wrapping_add(0x5a);
    }
    s
}
