//! The dataset key: the secret behind the de-identified profile's patient
//! pseudonyms, HMAC-SHA256(dataset key, patient id).
//!
//! Its id is derived from the key through a domain-separated hash, so an id
//! names the key (to tell which pseudonym space a snapshot is in) without
//! revealing anything that helps compute pseudonyms.

use super::keytext::KeyKind;
use super::secret::{SymmetricKey, SymmetricKind};

/// The dataset key's kind.
#[derive(Debug)]
pub enum Dataset {}

impl SymmetricKind for Dataset {
    const NAME: &'static str = "DatasetKey";
    const FILE_KIND: KeyKind = KeyKind::DatasetSecret;
    const ID_PREFIX: &'static str = "tmd1-";
    const ID_DOMAIN: &'static [u8] = b"tidemark dataset key id v1\0";
    const WRONG_LENGTH: &'static str = "a dataset key is 32 bytes";
}

/// A 256-bit dataset key, its id `tmd1-` + 32 hex digits.
pub type DatasetKey = SymmetricKey<Dataset>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keytext::KeyError;

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
