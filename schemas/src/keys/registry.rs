//! The public key registry: which keys may sign events, for which source
//! and patients and when, each checked at load so verification never meets a
//! weak key or an empty validity window.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::validity::Validity;
use super::{Algorithm, ED25519, is_valid_id};
use crate::text::shorten;

/// One `[[key]]` entry as written in a registry file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The key id signatures name.
    pub id: String,
    /// The event source this key signs for.
    pub source: String,
    /// The algorithm name (`ed25519`).
    pub algorithm: String,
    /// The public key, standard base64.
    pub public_key: String,
    /// Patient-id prefixes the key may sign for; `None` = any patient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_prefixes: Option<Vec<String>>,
    /// The first instant (RFC 3339 UTC, e.g. `2026-01-01T00:00:00Z`) an
    /// event signed by the key may be stamped with; `None` = no bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// The last instant an event signed by the key may be stamped with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// Events stamped at or after this instant are refused: the key was
    /// revoked then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// What the key may do: `"write"` (sign edit events) and/or `"read"`
    /// (sign requests to the query service); `None` = write only, as every
    /// key could before reads existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

impl KeyEntry {
    /// The entry for an Ed25519 verifying key.
    pub fn ed25519(id: &str, source: &str, key: &VerifyingKey, patient_prefixes: Option<Vec<String>>) -> Self {
        Self {
            id: id.to_owned(),
            source: source.to_owned(),
            algorithm: ED25519.to_owned(),
            public_key: B64.encode(key.as_bytes()),
            patient_prefixes,
            not_before: None,
            not_after: None,
            revoked_at: None,
            scopes: None,
        }
    }

    /// The entry as a `[[key]]` TOML table, ready to append to a registry file.
    pub fn to_toml(&self) -> String {
        toml::to_string(&RegistryFile { key: vec![self.clone()] })
            .expect("a key entry always serializes: strings and string lists only")
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

/// A checked registry key.
#[derive(Clone, Debug)]
pub struct RegisteredKey {
    id: Arc<str>,
    source: String,
    algorithm: Algorithm,
    verifying_key: VerifyingKey,
    patient_prefixes: Option<Vec<String>>,
    validity: Validity,
    scopes: Scopes,
}

/// Something a registered key may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Signing edit events (ingest and the merger verify them).
    Write,
    /// Signing requests that read patients back (the query service).
    Read,
}

impl Scope {
    /// The name used in registry files.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Write => "write",
            Scope::Read => "read",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [Scope::Write, Scope::Read].into_iter().find(|s| s.name() == name)
    }
}

/// The scopes a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Scopes {
    write: bool,
    read: bool,
}

impl RegisteredKey {
    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key id, shared (cheap to hand to every verified event).
    pub fn id_shared(&self) -> &Arc<str> {
        &self.id
    }

    /// The source whose events this key signs.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The Ed25519 public key (never weak, torsion-free, canonically encoded).
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying_key
    }

    /// The patient-id prefixes the key is scoped to; `None` = any patient.
    pub fn patient_prefixes(&self) -> Option<&[String]> {
        self.patient_prefixes.as_deref()
    }

    /// When the key may sign: its window and revocation, if any.
    pub fn validity(&self) -> &Validity {
        &self.validity
    }

    /// Whether the key may be used for `scope`.
    pub fn may(&self, scope: Scope) -> bool {
        match scope {
            Scope::Write => self.scopes.write,
            Scope::Read => self.scopes.read,
        }
    }

    /// Whether the key may sign events of (or read) `patient_id`.
    pub fn allows_patient(&self, patient_id: &str) -> bool {
        self.patient_prefixes.as_ref().is_none_or(|ps| ps.iter().any(|p| patient_id.starts_with(p.as_str())))
    }
}

/// The keys allowed to sign events, by id.
#[derive(Clone, Debug, Default)]
pub struct KeyRegistry {
    keys: Vec<RegisteredKey>,
    by_id: HashMap<Arc<str>, usize>,
}

/// Why a registry file was refused. A configuration error: fix the file and
/// restart; retrying cannot help.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Not TOML of the registry's shape.
    #[error(
        "key registry is not TOML of the shape [[key]] id, source, algorithm, public_key[, patient_prefixes, scopes, \
         not_before, not_after, revoked_at] (times as quoted RFC 3339 UTC strings, e.g. \"2026-01-01T00:00:00Z\"): {0}"
    )]
    Toml(#[source] toml::de::Error),
    /// No `[[key]]` entries.
    #[error("key registry has no [[key]] entries: add the public keys allowed to sign events")]
    Empty,
    /// A key has an empty or badly formed id.
    #[error("key registry entry {index}: id `{id}` must be 1-128 characters of [A-Za-z0-9._:-]")]
    BadId {
        /// The entry's position (0-based).
        index: usize,
        /// The id.
        id: String,
    },
    /// Two entries share an id.
    #[error("key registry lists key `{id}` twice (entries {first} and {second}): key ids must be unique")]
    DuplicateId {
        /// The id.
        id: String,
        /// The first entry with it.
        first: usize,
        /// The second.
        second: usize,
    },
    /// A key has an empty source.
    #[error("key `{id}`: source is empty: name the source (EHR system) whose events it signs")]
    EmptySource {
        /// The key id.
        id: String,
    },
    /// An algorithm this version does not know.
    #[error("key `{id}`: unknown algorithm `{algorithm}` (known: ed25519)")]
    UnknownAlgorithm {
        /// The key id.
        id: String,
        /// The algorithm named.
        algorithm: String,
    },
    /// `public_key` is not standard base64.
    #[error("key `{id}`: public_key is not standard padded base64: {source}")]
    KeyEncoding {
        /// The key id.
        id: String,
        /// The decoder's complaint.
        source: base64::DecodeError,
    },
    /// `public_key` has the wrong length.
    #[error("key `{id}`: public_key is {len} bytes, an {algorithm} public key is {expected}")]
    KeyLength {
        /// The key id.
        id: String,
        /// Its length.
        len: usize,
        /// The length needed.
        expected: usize,
        /// The algorithm.
        algorithm: Algorithm,
    },
    /// The bytes are not a valid public key (not a curve point, or a
    /// non-canonical encoding of one).
    #[error("key `{id}`: public_key is not a canonically encoded Ed25519 point")]
    InvalidKey {
        /// The key id.
        id: String,
    },
    /// A small-order ("weak") key: a signature under it can verify for
    /// almost any message.
    #[error("key `{id}`: public_key is a weak (small-order) Ed25519 key; refusing it, generate a new key")]
    WeakKey {
        /// The key id.
        id: String,
    },
    /// A key with a torsion component: never produced by honest key
    /// generation, and it would let signatures verify differently in strict
    /// and batch verification.
    #[error("key `{id}`: public_key has a small-order (torsion) component; refusing it, generate a new key")]
    TorsionKey {
        /// The key id.
        id: String,
    },
    /// `scopes` is present but empty, or names a scope twice or one that does
    /// not exist.
    #[error("key `{id}`: scopes must list \"write\" and/or \"read\", each once; omit it for write only")]
    BadScopes {
        /// The key id.
        id: String,
    },
    /// `patient_prefixes` is present but empty, or lists an empty prefix.
    #[error("key `{id}`: patient_prefixes must list non-empty prefixes; omit it to allow any patient")]
    BadPatientPrefixes {
        /// The key id.
        id: String,
    },
    /// `not_before`, `not_after` or `revoked_at` is not an RFC 3339 UTC time
    /// at or after the Unix epoch.
    #[error(
        "key `{id}`: {field} `{value}` is not an RFC 3339 UTC time at or after 1970 (e.g. \"2026-01-01T00:00:00Z\")"
    )]
    BadTime {
        /// The key id.
        id: String,
        /// The field.
        field: &'static str,
        /// The text found (shortened if long).
        value: String,
    },
    /// `not_before` is not before `not_after`: no event could be signed.
    #[error("key `{id}`: not_before {not_before} is not before not_after {not_after}: the key could sign nothing")]
    EmptyWindow {
        /// The key id.
        id: String,
        /// `not_before`, normalised.
        not_before: String,
        /// `not_after`, normalised.
        not_after: String,
    },
}

impl KeyRegistry {
    /// Parses and checks a registry file's text.
    ///
    /// # Errors
    /// [`RegistryError`] naming the first bad entry and why.
    pub fn from_toml_str(text: &str) -> Result<Self, RegistryError> {
        let file: RegistryFile = toml::from_str(text).map_err(RegistryError::Toml)?;
        Self::from_entries(file.key)
    }

    /// Checks registry entries.
    ///
    /// # Errors
    /// As [`KeyRegistry::from_toml_str`], except [`RegistryError::Toml`].
    pub fn from_entries(entries: Vec<KeyEntry>) -> Result<Self, RegistryError> {
        if entries.is_empty() {
            return Err(RegistryError::Empty);
        }
        let mut registry = KeyRegistry { keys: Vec::with_capacity(entries.len()), by_id: HashMap::new() };
        for (index, entry) in entries.into_iter().enumerate() {
            let key = check_entry(index, entry)?;
            if let Some(&first) = registry.by_id.get(&key.id) {
                return Err(RegistryError::DuplicateId { id: key.id.to_string(), first, second: index });
            }
            registry.by_id.insert(key.id.clone(), registry.keys.len());
            registry.keys.push(key);
        }
        Ok(registry)
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&RegisteredKey> {
        self.by_id.get(id).map(|&i| &self.keys[i])
    }

    /// The key with this id, if it holds `scope`.
    pub fn get_for(&self, id: &str, scope: Scope) -> Option<&RegisteredKey> {
        self.get(id).filter(|key| key.may(scope))
    }

    /// The keys, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &RegisteredKey> {
        self.keys.iter()
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none (only for a default-constructed registry).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn check_entry(index: usize, entry: KeyEntry) -> Result<RegisteredKey, RegistryError> {
    let KeyEntry { id, source, algorithm, public_key, patient_prefixes, not_before, not_after, revoked_at, scopes } =
        entry;
    if !is_valid_id(&id) {
        return Err(RegistryError::BadId { index, id: shorten(&id) });
    }
    if source.trim().is_empty() {
        return Err(RegistryError::EmptySource { id });
    }
    let Some(algorithm) = Algorithm::parse(&algorithm) else {
        return Err(RegistryError::UnknownAlgorithm { id, algorithm: shorten(&algorithm) });
    };
    if let Some(prefixes) = &patient_prefixes
        && (prefixes.is_empty() || prefixes.iter().any(String::is_empty))
    {
        return Err(RegistryError::BadPatientPrefixes { id });
    }
    let scopes = check_scopes(&id, scopes.as_deref())?;
    let validity = Validity::parse(&id, not_before.as_deref(), not_after.as_deref(), revoked_at.as_deref())?;
    let bytes = match B64.decode(public_key.trim()) {
        Ok(bytes) => bytes,
        Err(source) => return Err(RegistryError::KeyEncoding { id, source }),
    };
    let verifying_key = ed25519_public_key(&id, &bytes)?;
    Ok(RegisteredKey { id: Arc::from(id), source, algorithm, verifying_key, patient_prefixes, validity, scopes })
}

/// The scopes an entry lists; absent means write only.
fn check_scopes(id: &str, names: Option<&[String]>) -> Result<Scopes, RegistryError> {
    let Some(names) = names else { return Ok(Scopes { write: true, read: false }) };
    let mut scopes = Scopes { write: false, read: false };
    let bad = || RegistryError::BadScopes { id: id.to_owned() };
    for name in names {
        let held = match Scope::parse(name).ok_or_else(bad)? {
            Scope::Write => &mut scopes.write,
            Scope::Read => &mut scopes.read,
        };
        if *held {
            return Err(bad());
        }
        *held = true;
    }
    if names.is_empty() {
        return Err(bad());
    }
    Ok(scopes)
}

fn ed25519_public_key(id: &str, bytes: &[u8]) -> Result<VerifyingKey, RegistryError> {
    let Ok(array) = <&[u8; 32]>::try_from(bytes) else {
        return Err(RegistryError::KeyLength {
            id: id.to_owned(),
            len: bytes.len(),
            expected: 32,
            algorithm: Algorithm::Ed25519,
        });
    };
    let key = VerifyingKey::from_bytes(array).map_err(|_| RegistryError::InvalidKey { id: id.to_owned() })?;
    let point = key.to_edwards();
    if point.compress().as_bytes() != array {
        return Err(RegistryError::InvalidKey { id: id.to_owned() });
    }
    if key.is_weak() {
        return Err(RegistryError::WeakKey { id: id.to_owned() });
    }
    if !point.is_torsion_free() {
        return Err(RegistryError::TorsionKey { id: id.to_owned() });
    }
    Ok(key)
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
