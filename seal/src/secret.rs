//! 256-bit symmetric keys with a derived id: the dataset key (pseudonyms)
//! and the state key (record MACs) are one type, told apart by a kind.
//!
//! The id is a domain-separated hash of the key, so it names the key (which
//! pseudonym space a snapshot is in, which key sealed a record) without
//! revealing anything that helps compute with it; each kind has its own
//! domain, so one secret used as both kinds gets unrelated ids, and each
//! kind's key file names its kind, so one is never loaded as the other.

use std::marker::PhantomData;

use ring::digest;
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

use super::keytext::{self, FINGERPRINT_LEN, KeyError, KeyKind};

/// What distinguishes one kind of 256-bit key from another.
pub trait SymmetricKind {
    /// The type's name, for `Debug`.
    const NAME: &'static str;
    /// The kind named in its key file.
    const FILE_KIND: KeyKind;
    /// The id's prefix, e.g. `tmd1-`.
    const ID_PREFIX: &'static str;
    /// The hash domain of the id.
    const ID_DOMAIN: &'static [u8];
    /// For errors: "a dataset key is 32 bytes".
    const WRONG_LENGTH: &'static str;
}

/// A 256-bit key of kind `K`. Zeroized on drop; `Debug` shows only the id.
pub struct SymmetricKey<K> {
    key: Zeroizing<[u8; 32]>,
    kind: PhantomData<K>,
}

impl<K: SymmetricKind> SymmetricKey<K> {
    /// A fresh key from the OS random source.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the random source fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut key = Zeroizing::new([0u8; 32]);
        SystemRandom::new().fill(key.as_mut()).map_err(|_| KeyError::Random)?;
        Ok(Self { key, kind: PhantomData })
    }

    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self { key: Zeroizing::new(*bytes), kind: PhantomData }
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The key id: the kind's prefix + 32 hex digits of SHA-256(domain || key).
    pub fn key_id(&self) -> String {
        let mut input = Zeroizing::new(Vec::with_capacity(K::ID_DOMAIN.len() + 32));
        input.extend_from_slice(K::ID_DOMAIN);
        input.extend_from_slice(self.key.as_ref());
        let d = digest::digest(&digest::SHA256, &input);
        let mut fp = [0u8; FINGERPRINT_LEN];
        fp.copy_from_slice(&d.as_ref()[..FINGERPRINT_LEN]);
        keytext::key_id(K::ID_PREFIX, &fp)
    }

    /// The `.key` file text. Secret: write it only to a file created 0600.
    pub fn to_text(&self) -> Zeroizing<String> {
        keytext::encode(K::FILE_KIND, &self.key_id(), self.key.as_ref())
    }

    /// Parses a `.key` file of this kind, checking its id against the key.
    ///
    /// # Errors
    /// [`KeyError`].
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let (stated, bytes) = keytext::decode(text, K::FILE_KIND)?;
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::InvalidKey(K::WRONG_LENGTH))?;
        let key = Self::from_bytes(&arr);
        let derived = key.key_id();
        if stated != derived {
            return Err(KeyError::IdMismatch { stated, derived });
        }
        Ok(key)
    }
}

impl<K: SymmetricKind> std::fmt::Debug for SymmetricKey<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", K::NAME, self.key_id())
    }
}
