//! The secret signing-key file `tidemark keys generate` writes: its
//! format, and the care taken that the seed is never printed or left behind.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Algorithm, ED25519, KeyEntry, is_valid_id};
use crate::dsse::{self, Envelope};
use crate::event::{EDIT_EVENT_PAYLOAD_TYPE, EditEvent};
use crate::reason::Reason;
use crate::text::{json_error, shorten};
use crate::verify::VerifyError;

/// A secret signing key with its id and source: the `NAME.key` file of
/// `tidemark keys generate`.
///
/// File format (TOML): `id`, `source`, `algorithm = "ed25519"`, `secret_key`
/// (standard base64 of the 32-byte Ed25519 seed). The seed is zeroized when
/// this value is dropped, and `Debug` never prints it.
pub struct SigningKeyFile {
    id: String,
    source: String,
    key: SigningKey,
}

/// Why [`SigningKeyFile::sign_event`] did not sign an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct SignRefused {
    /// The reason ingest would refuse the event with.
    pub reason: Reason,
    /// What was wrong (no value of the event).
    pub message: String,
}

/// Why a secret key file was refused. Messages never include key material.
#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    /// Not TOML of the key file's shape (the parser's message is left out: it may quote the secret).
    #[error("secret key file is not TOML of the shape id, source, algorithm, secret_key")]
    Toml,
    /// A bad id.
    #[error("secret key file: id must be 1-128 characters of [A-Za-z0-9._:-]")]
    BadId,
    /// An empty source.
    #[error("secret key file `{id}`: source is empty")]
    EmptySource {
        /// The key id.
        id: String,
    },
    /// An algorithm this version does not know.
    #[error("secret key file `{id}`: unknown algorithm `{algorithm}` (known: ed25519)")]
    UnknownAlgorithm {
        /// The key id.
        id: String,
        /// The algorithm named.
        algorithm: String,
    },
    /// `secret_key` is not base64 of 32 bytes.
    #[error("secret key file `{id}`: secret_key is not standard base64 of a 32-byte Ed25519 seed")]
    BadSecret {
        /// The key id.
        id: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretFile {
    id: String,
    source: String,
    algorithm: String,
    #[serde(deserialize_with = "zeroizing_string")]
    secret_key: Zeroizing<String>,
}

#[derive(Serialize)]
struct SecretFileOut<'a> {
    id: &'a str,
    source: &'a str,
    algorithm: &'a str,
    secret_key: &'a str,
}

fn zeroizing_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

impl SigningKeyFile {
    /// Wraps a signing key with its id and source.
    ///
    /// # Errors
    /// [`SecretKeyError::BadId`] or [`SecretKeyError::EmptySource`].
    pub fn new(id: &str, source: &str, key: SigningKey) -> Result<Self, SecretKeyError> {
        if !is_valid_id(id) {
            return Err(SecretKeyError::BadId);
        }
        if source.trim().is_empty() {
            return Err(SecretKeyError::EmptySource { id: id.to_owned() });
        }
        Ok(Self { id: id.to_owned(), source: source.to_owned(), key })
    }

    /// Parses a key file's text. The caller should hold `text` in a
    /// [`Zeroizing`] buffer; the decoded seed is wiped here.
    ///
    /// # Errors
    /// [`SecretKeyError`], never quoting the secret.
    pub fn from_toml_str(text: &str) -> Result<Self, SecretKeyError> {
        let raw: RawSecretFile = toml::from_str(text).map_err(|_| SecretKeyError::Toml)?;
        if !is_valid_id(&raw.id) {
            return Err(SecretKeyError::BadId);
        }
        if Algorithm::parse(&raw.algorithm).is_none() {
            return Err(SecretKeyError::UnknownAlgorithm { id: raw.id, algorithm: shorten(&raw.algorithm) });
        }
        let bad = || SecretKeyError::BadSecret { id: raw.id.clone() };
        let seed = Zeroizing::new(B64.decode(raw.secret_key.trim()).map_err(|_| bad())?);
        let seed: &[u8; 32] = seed.as_slice().try_into().map_err(|_| bad())?;
        Self::new(&raw.id, &raw.source, SigningKey::from_bytes(seed))
    }

    /// The file's text. Secret: write it only to a file created with mode 0600.
    pub fn to_toml(&self) -> Zeroizing<String> {
        let secret = Zeroizing::new(B64.encode(self.key.as_bytes()));
        let body = Zeroizing::new(
            toml::to_string(&SecretFileOut {
                id: &self.id,
                source: &self.source,
                algorithm: ED25519,
                secret_key: &secret,
            })
            .expect("a key file always serializes: four strings"),
        );
        Zeroizing::new(format!(
            "# Tidemark signing key `{}`. SECRET: keep it mode 0600, never commit or share it.\n{}",
            self.id, *body
        ))
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The source the key signs for.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs an edit event's exact JSON bytes (they become the envelope's
    /// payload unchanged) after checking that they decode as a v1 event and
    /// that its source is this key's: the two refusals a signer can catch
    /// before ingest does. Catalog rules are left to ingest, which applies
    /// the catalog it runs with. `tidemark sign` and the Python package's
    /// `sign` both come here.
    ///
    /// # Errors
    /// [`SignRefused`] with the reason ingest would give (`malformed_event`,
    /// `inexact_number`, `source_mismatch`); its message quotes no value of
    /// the event.
    pub fn sign_event(&self, payload: &[u8]) -> Result<Envelope, SignRefused> {
        let event = EditEvent::from_json(payload).map_err(|e| SignRefused {
            message: format!("not a v1 edit event: {}", json_error(&e)),
            reason: VerifyError::from_event_json(e).reason(),
        })?;
        if event.source != self.source {
            return Err(SignRefused {
                reason: Reason::SourceMismatch,
                message: format!(
                    "event {} has source `{}` but key `{}` signs for source `{}`",
                    event.event_id,
                    shorten(&event.source),
                    self.id,
                    self.source
                ),
            });
        }
        Ok(dsse::sign(EDIT_EVENT_PAYLOAD_TYPE, payload, &self.key, &self.id))
    }

    /// The registry entry for this key.
    pub fn registry_entry(&self, patient_prefixes: Option<Vec<String>>) -> KeyEntry {
        KeyEntry::ed25519(&self.id, &self.source, &self.key.verifying_key(), patient_prefixes)
    }
}

impl fmt::Debug for SigningKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyFile")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyRegistry;

    #[test]
    fn secret_key_file_round_trips_and_redacts() {
        let file = SigningKeyFile::new("k-1", "site-a", SigningKey::from_bytes(&[5; 32])).expect("valid");
        let text = file.to_toml();
        assert!(text.contains("algorithm = \"ed25519\"") && text.contains("SECRET"), "{}", *text);
        let back = SigningKeyFile::from_toml_str(&text).expect("parses");
        assert_eq!(back.id(), "k-1");
        assert_eq!(back.source(), "site-a");
        assert_eq!(back.signing_key().to_bytes(), [5; 32]);
        let secret = B64.encode([5u8; 32]);
        let dbg = format!("{back:?}");
        assert!(dbg.contains("<redacted>") && !dbg.contains(&secret), "{dbg}");
        let reg = KeyRegistry::from_entries(vec![back.registry_entry(None)]).expect("entry valid");
        assert_eq!(reg.get("k-1").expect("k-1").verifying_key(), &back.verifying_key());
    }

    #[test]
    fn secret_key_errors_never_quote_the_secret() {
        let secret = B64.encode([5u8; 31]);
        let text = format!("id = \"k\"\nsource = \"s\"\nalgorithm = \"ed25519\"\nsecret_key = \"{secret}\"\n");
        let got = SigningKeyFile::from_toml_str(&text).expect_err("31 bytes").to_string();
        assert_eq!(got, "secret key file `k`: secret_key is not standard base64 of a 32-byte Ed25519 seed");
        let broken = format!("id = \"k\"\nsecret_key = \"{secret}\" junk\n");
        let got = SigningKeyFile::from_toml_str(&broken).expect_err("not toml").to_string();
        assert!(!got.contains(&secret), "{got}");
        let unknown = text.replace("ed25519", "dsa");
        let got = SigningKeyFile::from_toml_str(&unknown).expect_err("dsa").to_string();
        assert!(got.contains("unknown algorithm `dsa`"), "{got}");
    }
}
