//! DSSE v1 (Dead Simple Signing Envelope): the signed wrapper of every edit event.
//!
//! Wire shape: `{"payloadType": ..., "payload": base64, "signatures": [{"keyid": ..., "sig": base64}]}`,
//! standard padded base64. Signatures cover [`pae`]`(payloadType, payload)`, the
//! spec's pre-authentication encoding, over the payload's *exact bytes*: there is
//! no JSON canonicalisation, so what an integrator signed is what we verify and
//! what we store.
//!
//! Key decision: a decoded [`Envelope`] keeps the PAE message itself, with the
//! payload decoded straight into its tail. Verification needs the PAE bytes and
//! every consumer needs the payload; keeping both in one buffer costs one
//! allocation per envelope and no copy of the payload.
//!
//! The algorithm of a signature is never read from the envelope: the key
//! registry ([`crate::keys`]) says which algorithm a key id uses.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey};
use serde::ser::SerializeStruct as _;
use serde::{Deserialize, Serialize, Serializer};

use crate::text::{json_error, shorten};

/// The most signatures one envelope may carry. Hybrid signing needs two;
/// the bound keeps a hostile envelope from making us look up thousands.
pub const MAX_SIGNATURES: usize = 8;

/// The length in bytes of an Ed25519 signature.
pub const ED25519_SIGNATURE_LEN: usize = 64;

/// A DSSE envelope: a payload, its type and one or more signatures.
///
/// Invariant: `pae == pae(payload_type, payload)` and the payload is
/// `pae[payload_start..]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    payload_type: String,
    pae: Vec<u8>,
    payload_start: usize,
    signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// The signer's key id: looked up in the key registry, which says which
    /// key and algorithm to check the signature with.
    pub keyid: String,
    /// The raw signature bytes (base64 on the wire).
    pub sig: Vec<u8>,
}

/// Why bytes are not a usable DSSE envelope. The bytes cannot become valid by
/// retrying: reject them (or dead-letter them) and carry on.
#[derive(Debug, thiserror::Error)]
pub enum DsseError {
    /// Not JSON, or not the envelope's shape (missing or unknown fields, wrong types).
    /// Its message never quotes a value of the envelope (see `json_error`),
    /// and the serde error is not its `source`, so no chain printer does.
    #[error(
        "envelope is not JSON of the DSSE shape {{\"payloadType\", \"payload\", \"signatures\": [{{\"keyid\", \"sig\"}}]}}: {}",
        json_error(.0)
    )]
    Json(serde_json::Error),
    /// The payload type is not the one the caller accepts.
    #[error("envelope payloadType is `{found}`, expected `{expected}`")]
    WrongPayloadType {
        /// The accepted type.
        expected: String,
        /// The type found (shortened if long).
        found: String,
    },
    /// `payload` is not standard padded base64.
    #[error("envelope payload is not standard padded base64: {0}")]
    PayloadBase64(#[source] base64::DecodeError),
    /// `signatures` is empty.
    #[error("envelope has no signatures: sign the payload (e.g. `tidemark sign`) before sending it")]
    NoSignatures,
    /// More signatures than [`MAX_SIGNATURES`].
    #[error("envelope has {count} signatures, at most {max} are accepted")]
    TooManySignatures {
        /// How many there are.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A signature has an empty `keyid`.
    #[error("envelope signature {index} has an empty keyid: name the registered key that made it")]
    MissingKeyId {
        /// The signature's index in `signatures`.
        index: usize,
    },
    /// A signature's `sig` is not standard padded base64.
    #[error("envelope signature {index} (keyid `{keyid}`) is not standard padded base64: {source}")]
    SignatureBase64 {
        /// The signature's index in `signatures`.
        index: usize,
        /// Its key id (shortened if long).
        keyid: String,
        /// The decoder's complaint.
        source: base64::DecodeError,
    },
    /// A signature has the wrong length for its key's algorithm.
    #[error("envelope signature {index} (keyid `{keyid}`) is {len} bytes, an {algorithm} signature is {expected}")]
    SignatureLength {
        /// The signature's index in `signatures`.
        index: usize,
        /// Its key id (shortened if long).
        keyid: String,
        /// Its length.
        len: usize,
        /// The length the algorithm needs.
        expected: usize,
        /// The algorithm, from the key registry.
        algorithm: &'static str,
    },
}

/// The DSSE v1 pre-authentication encoding, the bytes a signature covers:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII
/// decimal without leading zeros.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pae_prefix_capacity(payload_type) + payload.len());
    push_pae_prefix(&mut out, payload_type, payload.len());
    out.extend_from_slice(payload);
    out
}

fn pae_prefix_capacity(payload_type: &str) -> usize {
    // "DSSEv1" + 3 spaces + two lengths of at most 20 digits + the type + 1 space.
    6 + 4 + 40 + payload_type.len()
}

fn push_pae_prefix(out: &mut Vec<u8>, payload_type: &str, payload_len: usize) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload_len);
}

/// Signs `payload` as a DSSE envelope of `payload_type` with one Ed25519
/// signature under `keyid`. Ed25519 is deterministic: the same inputs give
/// the same envelope, byte for byte.
pub fn sign(payload_type: &str, payload: &[u8], key: &SigningKey, keyid: &str) -> Envelope {
    let mut pae = Vec::with_capacity(pae_prefix_capacity(payload_type) + payload.len());
    push_pae_prefix(&mut pae, payload_type, payload.len());
    let payload_start = pae.len();
    pae.extend_from_slice(payload);
    let mut envelope = Envelope { payload_type: payload_type.to_owned(), pae, payload_start, signatures: Vec::new() };
    envelope.add_ed25519_signature(key, keyid);
    envelope
}

impl Envelope {
    /// Decodes an envelope of any payload type.
    ///
    /// # Errors
    /// [`DsseError`] naming the first problem: JSON shape, payload base64, no
    /// or too many signatures, an empty keyid, a signature's base64.
    pub fn decode(bytes: &[u8]) -> Result<Self, DsseError> {
        Self::decode_inner(bytes, None)
    }

    /// Decodes an envelope and requires its `payloadType` to be `payload_type`;
    /// the type is checked before the payload is decoded.
    ///
    /// # Errors
    /// As [`Envelope::decode`], plus [`DsseError::WrongPayloadType`].
    pub fn decode_as(bytes: &[u8], payload_type: &str) -> Result<Self, DsseError> {
        Self::decode_inner(bytes, Some(payload_type))
    }

    fn decode_inner(bytes: &[u8], expected_type: Option<&str>) -> Result<Self, DsseError> {
        let raw: RawEnvelope<'_> = serde_json::from_slice(bytes).map_err(DsseError::Json)?;
        if let Some(expected) = expected_type
            && raw.payload_type != expected
        {
            return Err(DsseError::WrongPayloadType {
                expected: expected.to_owned(),
                found: shorten(&raw.payload_type),
            });
        }
        if raw.signatures.is_empty() {
            return Err(DsseError::NoSignatures);
        }
        if raw.signatures.len() > MAX_SIGNATURES {
            return Err(DsseError::TooManySignatures { count: raw.signatures.len(), max: MAX_SIGNATURES });
        }
        let payload_len = decoded_len(&raw.payload);
        let mut pae = Vec::with_capacity(pae_prefix_capacity(&raw.payload_type) + payload_len);
        push_pae_prefix(&mut pae, &raw.payload_type, payload_len);
        let payload_start = pae.len();
        B64.decode_vec(raw.payload.as_bytes(), &mut pae).map_err(DsseError::PayloadBase64)?;
        if pae.len() - payload_start != payload_len {
            // Cannot happen for canonical padded base64, which the engine enforces;
            // refuse rather than sign-check a PAE with a wrong length.
            return Err(DsseError::PayloadBase64(base64::DecodeError::InvalidLength(raw.payload.len())));
        }
        let mut signatures = Vec::with_capacity(raw.signatures.len());
        for (index, s) in raw.signatures.iter().enumerate() {
            if s.keyid.is_empty() {
                return Err(DsseError::MissingKeyId { index });
            }
            let sig = B64.decode(s.sig.as_bytes()).map_err(|source| DsseError::SignatureBase64 {
                index,
                keyid: shorten(&s.keyid),
                source,
            })?;
            signatures.push(EnvelopeSignature { keyid: s.keyid.clone().into_owned(), sig });
        }
        Ok(Self { payload_type: raw.payload_type.into_owned(), pae, payload_start, signatures })
    }

    /// Adds an Ed25519 signature by `key` under `keyid` (for multi-signature
    /// envelopes; [`sign`] makes the first).
    pub fn add_ed25519_signature(&mut self, key: &SigningKey, keyid: &str) {
        let sig = key.sign(&self.pae);
        self.signatures.push(EnvelopeSignature { keyid: keyid.to_owned(), sig: sig.to_bytes().to_vec() });
    }

    /// The payload type.
    pub fn payload_type(&self) -> &str {
        &self.payload_type
    }

    /// The payload's exact bytes.
    pub fn payload(&self) -> &[u8] {
        &self.pae[self.payload_start..]
    }

    /// The PAE message the signatures cover.
    pub fn pae(&self) -> &[u8] {
        &self.pae
    }

    /// The signatures, in envelope order.
    pub fn signatures(&self) -> &[EnvelopeSignature] {
        &self.signatures
    }

    /// Mutable access to the signatures, for tests that tamper with them
    /// (this crate's and other crates'); not part of the contract.
    #[doc(hidden)]
    pub fn signatures_mut(&mut self) -> &mut Vec<EnvelopeSignature> {
        &mut self.signatures
    }

    /// Signature `index` as an Ed25519 signature.
    ///
    /// # Errors
    /// [`DsseError::SignatureLength`] if it is not 64 bytes.
    ///
    /// # Panics
    /// If `index` is out of range.
    pub fn ed25519_signature(&self, index: usize) -> Result<ed25519_dalek::Signature, DsseError> {
        let s = &self.signatures[index];
        let bytes: &[u8; ED25519_SIGNATURE_LEN] =
            s.sig.as_slice().try_into().map_err(|_| DsseError::SignatureLength {
                index,
                keyid: shorten(&s.keyid),
                len: s.sig.len(),
                expected: ED25519_SIGNATURE_LEN,
                algorithm: "Ed25519",
            })?;
        Ok(ed25519_dalek::Signature::from_bytes(bytes))
    }

    /// Gives up the PAE buffer and where the payload starts in it.
    pub(crate) fn into_signed_message(self) -> (Vec<u8>, usize) {
        (self.pae, self.payload_start)
    }

    /// The envelope as one line of JSON (no trailing newline), fields in the
    /// order payloadType, payload, signatures.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serializes: strings and bytes only")
    }
}

/// Never prints the payload: it is patient data.
impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("payload_type", &self.payload_type)
            .field("payload_len", &self.payload().len())
            .field("keyids", &self.signatures.iter().map(|s| s.keyid.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut st = serializer.serialize_struct("Envelope", 3)?;
        st.serialize_field("payloadType", &self.payload_type)?;
        st.serialize_field("payload", &Base64Field(self.payload()))?;
        st.serialize_field("signatures", &self.signatures)?;
        st.end()
    }
}

impl Serialize for EnvelopeSignature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut st = serializer.serialize_struct("Signature", 2)?;
        st.serialize_field("keyid", &self.keyid)?;
        st.serialize_field("sig", &Base64Field(&self.sig))?;
        st.end()
    }
}

/// Base64 written straight into the serializer, without an intermediate String.
struct Base64Field<'a>(&'a [u8]);

impl Serialize for Base64Field<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&Base64Display::new(self.0, &B64))
    }
}

/// The wire form, borrowing from the input where JSON escapes allow.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope<'a> {
    #[serde(rename = "payloadType", borrow)]
    payload_type: Cow<'a, str>,
    #[serde(borrow)]
    payload: Cow<'a, str>,
    #[serde(borrow)]
    signatures: Vec<RawSignature<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature<'a> {
    #[serde(borrow)]
    keyid: Cow<'a, str>,
    #[serde(borrow)]
    sig: Cow<'a, str>,
}

/// The exact decoded length of canonical padded base64 (what the engine
/// accepts); anything else fails to decode anyway.
fn decoded_len(b64: &str) -> usize {
    let bytes = b64.as_bytes();
    let pad = bytes.iter().rev().take(2).take_while(|&&b| b == b'=').count();
    (bytes.len() / 4 * 3).saturating_sub(pad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier as _;
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // protocol.md of secure-systems-lab/dsse.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn pae_counts_bytes_not_chars() {
        assert_eq!(pae("é", "ü!".as_bytes()), "DSSEv1 2 é 3 ü!".as_bytes());
    }

    #[test]
    fn serialization_is_deterministic_and_ordered() {
        let env = sign("t/x", b"{\"a\":1}", &key(1), "k1");
        let json = env.to_json();
        assert!(
            json.starts_with(
                "{\"payloadType\":\"t/x\",\"payload\":\"eyJhIjoxfQ==\",\"signatures\":[{\"keyid\":\"k1\",\"sig\":\""
            ),
            "{json}"
        );
        assert_eq!(json, sign("t/x", b"{\"a\":1}", &key(1), "k1").to_json());
        let back = Envelope::decode(json.as_bytes()).expect("round trip");
        assert_eq!(back, env);
        assert_eq!(back.payload(), b"{\"a\":1}");
        assert_eq!(back.pae(), pae("t/x", b"{\"a\":1}"));
    }

    #[test]
    fn decode_accepts_json_escapes() {
        let env = sign("a/b", b"x", &key(2), "k/1");
        let json = env.to_json().replace("a/b", "a\\/b").replace("k/1", "k\\u002f1");
        let back = Envelope::decode(json.as_bytes()).expect("escaped strings decode");
        assert_eq!(back.payload_type(), "a/b");
        assert_eq!(back.signatures()[0].keyid, "k/1");
    }

    #[test]
    fn decode_errors_are_precise() {
        let good = sign("t", b"payload", &key(3), "k1").to_json();
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "not JSON of the DSSE shape"),
            (good.replace("\"payloadType\"", "\"type\""), "unknown field `type`"),
            (good.replace("cGF5bG9hZA==", "cGF5bG9hZA"), "payload is not standard padded base64"),
            (good.replace("cGF5bG9hZA==", "cGF5b!9hZA=="), "payload is not standard padded base64"),
            (
                format!("{{\"payloadType\":\"t\",\"payload\":\"{}\",\"signatures\":[]}}", "cGF5bG9hZA=="),
                "no signatures",
            ),
            (good.replace("\"k1\"", "\"\""), "signature 0 has an empty keyid"),
        ];
        for (input, want) in cases {
            let err = Envelope::decode(input.as_bytes()).expect_err(&input).to_string();
            assert!(err.contains(want), "input {input}\n got {err}\nwant {want}");
        }
        let bad_sig = good.replacen("\"sig\":\"", "\"sig\":\"*", 1);
        let err = Envelope::decode(bad_sig.as_bytes()).expect_err("bad sig");
        assert!(matches!(err, DsseError::SignatureBase64 { index: 0, .. }), "{err}");
        assert!(err.to_string().contains("signature 0 (keyid `k1`)"), "{err}");
        let err = Envelope::decode_as(good.as_bytes(), "other").expect_err("wrong type");
        assert_eq!(err.to_string(), "envelope payloadType is `t`, expected `other`");
    }

    #[test]
    fn too_many_signatures_and_wrong_length() {
        let mut env = sign("t", b"p", &key(4), "k");
        for i in 0..MAX_SIGNATURES {
            env.add_ed25519_signature(&key(4), &format!("k{i}"));
        }
        let err = Envelope::decode(env.to_json().as_bytes()).expect_err("too many");
        assert!(matches!(err, DsseError::TooManySignatures { count: 9, max: 8 }), "{err}");
        let mut env = sign("t", b"p", &key(4), "k");
        env.signatures_mut()[0].sig.pop();
        let env = Envelope::decode(env.to_json().as_bytes()).expect("length is not a decode concern");
        let err = env.ed25519_signature(0).expect_err("63 bytes");
        assert_eq!(err.to_string(), "envelope signature 0 (keyid `k`) is 63 bytes, an Ed25519 signature is 64");
    }

    #[test]
    fn debug_does_not_print_the_payload() {
        let env = sign("t", b"SECRET-PATIENT-DATA", &key(5), "k");
        let dbg = format!("{env:?}");
        assert!(!dbg.contains("SECRET") && !dbg.contains(&B64.encode(b"SECRET-PATIENT-DATA")), "{dbg}");
    }

    #[test]
    fn long_outside_strings_are_shortened() {
        let long = "x".repeat(10_000);
        let env = sign(&long, b"p", &key(6), "k").to_json();
        let err = Envelope::decode_as(env.as_bytes(), "t").expect_err("wrong type").to_string();
        assert!(err.len() < 300, "{err}");
    }

    proptest! {
        #[test]
        fn sign_decode_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..512), ty in "[a-z/.+]{0,40}", seed in any::<u8>()) {
            let k = key(seed);
            let env = sign(&ty, &payload, &k, "kid");
            let back = Envelope::decode(env.to_json().as_bytes()).expect("decodes");
            prop_assert_eq!(back.payload(), payload.as_slice());
            let expected = pae(&ty, &payload);
            prop_assert_eq!(back.pae(), expected.as_slice());
            let sig = back.ed25519_signature(0).expect("64 bytes");
            prop_assert!(k.verifying_key().verify(back.pae(), &sig).is_ok());
        }

        #[test]
        fn decoded_len_is_exact(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(decoded_len(&B64.encode(&payload)), payload.len());
        }
    }
}
