//! The dataset key: the secret behind the de-identified profile's patient
//! pseudonyms, HMAC-SHA256(dataset key, patient id).
//!
//! Its id is derived from the key through a domain-separated hash, so an id
//! names the key (to tell which pseudonym space a snapshot is in) without
//! revealing anything that helps compute pseudonyms.

use ring::digest;
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

use super::keytext::{self, FINGERPRINT_LEN, KeyError, KeyKind};

const ID_PREFIX: &str = "tmd1-";
const ID_DOMAIN: &[u8] = b"tidemark dataset key id v1\0";

/// A 256-bit dataset key. Zeroized on drop; `Debug` shows only the id.
pub struct DatasetKey {
    key: Zeroizing<[u8; 32]>,
}

impl DatasetKey {
    /// A fresh key from the OS random source.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the random source fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut key = Zeroizing::new([0u8; 32]);
        SystemRandom::new().fill(key.as_mut()).map_err(|_| KeyError::Random)?;
        Ok(Self { key })
    }

    /// The key from its 32 bytes, as a de-identified profile holds it: lets
    /// the archiver name the key (its id) in the manifest it signs.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self { key: Zeroizing::new(*bytes) }
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The key id, `tmd1-` + 32 hex digits of a domain-separated hash of the key.
    pub fn key_id(&self) -> String {
        let mut input = Zeroizing::new(Vec::with_capacity(ID_DOMAIN.len() + 32));
        input.extend_from_slice(ID_DOMAIN);
        input.extend_from_slice(self.key.as_ref());
        let d = digest::digest(&digest::SHA256, &input);
        let mut fp = [0u8; FINGERPRINT_LEN];
        fp.copy_from_slice(&d.as_ref()[..FINGERPRINT_LEN]);
        keytext::key_id(ID_PREFIX, &fp)
    }

    /// The `.key` file text. Secret: write it only to a file created 0600.
    pub fn to_text(&self) -> Zeroizing<String> {
        keytext::encode(KeyKind::DatasetSecret, &self.key_id(), self.key.as_ref())
    }

    /// Parses a `.key` file, checking its id against the key.
    ///
    /// # Errors
    /// [`KeyError`].
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let (stated, bytes) = keytext::decode(text, KeyKind::DatasetSecret)?;
        let arr: [u8; 32] =
            bytes.as_slice().try_into().map_err(|_| KeyError::InvalidKey("a dataset key is 32 bytes"))?;
        let key = Self { key: Zeroizing::new(arr) };
        let derived = key.key_id();
        if stated != derived {
            return Err(KeyError::IdMismatch { stated, derived });
        }
        Ok(key)
    }
}

impl std::fmt::Debug for DatasetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatasetKey({})", self.key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_a_wrong_id() {
        let k = DatasetKey::generate().expect("rng");
        let text = k.to_text();
        assert_eq!(DatasetKey::from_text(&text).expect("parses").bytes(), k.bytes());
        let other = DatasetKey::generate().expect("rng");
        let forged = text.replace(&k.key_id(), &other.key_id());
        assert!(matches!(DatasetKey::from_text(&forged), Err(KeyError::IdMismatch { .. })));
        assert!(!format!("{k:?}").contains(&hex::encode(k.bytes())));
    }
}
