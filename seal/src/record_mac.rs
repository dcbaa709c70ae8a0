//! Authenticating the merger's state and changelog records: HMAC-SHA256
//! under a state key that the mergers, the archiver and `tidemark state`
//! share, carried in two record headers.
//!
//! Key decision: a MAC, not a signature. The mergers write two records per
//! patient touched per batch; an Ed25519 signature costs tens of
//! microseconds each, an HMAC of a few kilobytes a few. Every holder of the
//! key can also seal records, so the key is given only to the services that
//! write or check state (the Kafka ACLs still decide who may produce at
//! all); what the MAC adds is that a record some other producer wrote is
//! recognised as not the mergers' and never trusted.
//!
//! The MAC covers the record's kind (changelog or state, so a record cannot
//! be replayed from one topic onto the other), its key (the patient id, so a
//! view cannot be moved onto another patient) and its value, each
//! length-prefixed; a tombstone is distinguished from an empty value. It
//! does not cover the offset (unknown when a record is produced) or the
//! partition (a reader that does not compute partitions could not check
//! it): an old sealed record of the same patient produced again, to its own
//! partition or another, is authentic, so rolling one patient back to an
//! older view, or showing it twice, is still open to anyone allowed to
//! produce to the topic; the Kafka ACLs close that. The byte layout is in
//! docs/merger.md.
//!
//! Several keys may be given, for rotation: the first seals, every one is
//! accepted, and [`Sealed::Older`] tells a reader that a record was sealed
//! under a key other than the first (the merger re-seals those on restore).

use ring::hmac;

use super::keytext::{KeyError, KeyKind};
use super::secret::{SymmetricKey, SymmetricKind};

/// The header naming the key a record was sealed with.
pub const MAC_KEY_ID_HEADER: &str = "tidemark-mac-key";
/// The header holding the record's MAC: 64 lowercase hex digits.
pub const MAC_HEADER: &str = "tidemark-mac";

const DOMAIN: &[u8] = b"tidemark record mac v1\0";

/// Which topic a record belongs to; part of what the MAC covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// The merger's binary CRDT state (its restore source).
    Changelog,
    /// The JSON view (the public contract, the archiver's source).
    State,
}

impl RecordKind {
    fn label(self) -> &'static [u8] {
        match self {
            RecordKind::Changelog => b"changelog",
            RecordKind::State => b"state",
        }
    }
}

/// The state key's kind.
#[derive(Debug)]
pub enum State {}

impl SymmetricKind for State {
    const NAME: &'static str = "StateKey";
    const FILE_KIND: KeyKind = KeyKind::StateSecret;
    const ID_PREFIX: &'static str = "tms1-";
    const ID_DOMAIN: &'static [u8] = b"tidemark state key id v1\0";
    const WRONG_LENGTH: &'static str = "a state key is 32 bytes";
}

/// A 256-bit state key, its id `tms1-` + 32 hex digits.
pub type StateKey = SymmetricKey<State>;

/// The two header values that seal one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMac {
    /// For [`MAC_KEY_ID_HEADER`].
    pub key_id: String,
    /// For [`MAC_HEADER`].
    pub tag: String,
}

impl RecordMac {
    /// The record headers that carry the MAC, name and value, in the order
    /// a reader looks for them: every writer of a sealed record sets these.
    pub fn headers(&self) -> [(&'static str, &str); 2] {
        [(MAC_KEY_ID_HEADER, self.key_id.as_str()), (MAC_HEADER, self.tag.as_str())]
    }
}

/// How an authentic record was sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sealed {
    /// Under the first key, the one that seals today.
    Current,
    /// Under another of the keys given: authentic, due for re-sealing.
    Older,
}

/// Why a record is not authentic. Messages name no key material and no
/// record content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MacFailure {
    /// No MAC headers: written by something other than a merger, or before
    /// state records were authenticated.
    #[error("the record carries no MAC (no `tidemark-mac-key` and `tidemark-mac` headers)")]
    Missing,
    /// Sealed under a key id that is not among the keys given.
    #[error("the record was sealed with state key {0}, which is not among the state keys given")]
    UnknownKey(String),
    /// A header that is not a key id or a tag of the documented form.
    #[error("the record's MAC headers are malformed")]
    Malformed,
    /// The MAC does not match the record's kind, key and value.
    #[error("the record's MAC does not match its key and value: it was altered, moved or forged")]
    Mismatch,
}

/// The state keys a service holds: the first seals, all are accepted.
pub struct StateKeys {
    keys: Vec<(String, hmac::Key)>,
}

impl std::fmt::Debug for StateKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|(id, _)| id)).finish()
    }
}

impl StateKeys {
    /// The set of `keys`, the first sealing.
    ///
    /// # Errors
    /// [`KeyError::InvalidKey`] when `keys` is empty or names one key twice.
    pub fn new(keys: &[StateKey]) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::InvalidKey("at least one state key is needed"));
        }
        let mut out: Vec<(String, hmac::Key)> = Vec::with_capacity(keys.len());
        for k in keys {
            let id = k.key_id();
            if out.iter().any(|(seen, _)| *seen == id) {
                return Err(KeyError::InvalidKey("the same state key is given twice"));
            }
            out.push((id, hmac::Key::new(hmac::HMAC_SHA256, k.bytes())));
        }
        Ok(Self { keys: out })
    }

    /// The id of the key that seals.
    pub fn sealing_key_id(&self) -> &str {
        &self.keys[0].0
    }

    /// The MAC of a record under the sealing key. `value` is `None` for a
    /// tombstone.
    pub fn seal(&self, kind: RecordKind, key: &[u8], value: Option<&[u8]>) -> RecordMac {
        let (id, k) = &self.keys[0];
        let mut ctx = hmac::Context::with_key(k);
        frame(kind, key, value, |piece| ctx.update(piece));
        RecordMac { key_id: id.clone(), tag: hex::encode(ctx.sign().as_ref()) }
    }

    /// Checks a record's MAC; `header` gives the value of the record's
    /// header of that name (`None` when it is absent).
    ///
    /// # Errors
    /// [`MacFailure`]: the record is not to be trusted.
    pub fn check<'h>(
        &self,
        kind: RecordKind,
        key: &[u8],
        value: Option<&[u8]>,
        header: impl Fn(&str) -> Option<&'h [u8]>,
    ) -> Result<Sealed, MacFailure> {
        let (key_id, tag) = match (header(MAC_KEY_ID_HEADER), header(MAC_HEADER)) {
            (None, None) => return Err(MacFailure::Missing),
            (Some(id), Some(tag)) => (id, tag),
            _ => return Err(MacFailure::Malformed),
        };
        let key_id = std::str::from_utf8(key_id).ok().filter(|id| is_key_id(id)).ok_or(MacFailure::Malformed)?;
        let tag = std::str::from_utf8(tag)
            .ok()
            .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .and_then(|t| hex::decode(t).ok())
            .ok_or(MacFailure::Malformed)?;
        let Some(index) = self.keys.iter().position(|(id, _)| id == key_id) else {
            return Err(MacFailure::UnknownKey(key_id.to_owned()));
        };
        let mut message = Vec::with_capacity(DOMAIN.len() + 32 + key.len() + value.map_or(0, <[u8]>::len));
        frame(kind, key, value, |piece| message.extend_from_slice(piece));
        hmac::verify(&self.keys[index].1, &message, &tag).map_err(|_| MacFailure::Mismatch)?;
        Ok(if index == 0 { Sealed::Current } else { Sealed::Older })
    }
}

/// A state key id as [`StateKey::key_id`] writes them: anything else in the
/// header is malformed, and is never echoed.
fn is_key_id(id: &str) -> bool {
    id.strip_prefix(State::ID_PREFIX)
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// What the MAC covers, in order: the domain, the kind's label and a zero
/// byte, the key's length (u64 big-endian) and bytes, then `0x00` for a
/// tombstone or `0x01`, the value's length (u64 big-endian) and bytes.
fn frame(kind: RecordKind, key: &[u8], value: Option<&[u8]>, mut put: impl FnMut(&[u8])) {
    put(DOMAIN);
    put(kind.label());
    put(&[0]);
    put(&(key.len() as u64).to_be_bytes());
    put(key);
    match value {
        None => put(&[0]),
        Some(v) => {
            put(&[1]);
            put(&(v.len() as u64).to_be_bytes());
            put(v);
        }
    }
}

#[cfg(test)]
#[path = "record_mac_tests.rs"]
mod tests;
