//! The de-identified profile's transforms: keyed pseudonyms for patient ids,
//! dates to years, geography to a prefix.
//!
//! Key decision: pseudonyms are HMAC-SHA256(dataset_key, patient_id), not a
//! plain hash: patient ids are short and guessable (`pt-000123`), so an
//! unkeyed hash is reversed by hashing every candidate id. With the key, the
//! pseudonym is stable across snapshots (longitudinal training sets work) and
//! unlinkable across keys.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::time;
use super::zip3::POPULATED_ZIP3;

/// Characters of a geographic value kept by the de-identified profile: the
/// 3-digit postal prefix of HIPAA Safe Harbor, §164.514(b)(2)(i)(B).
pub(crate) const GEO_PREFIX_CHARS: usize = 3;

/// Keyed patient-id pseudonyms. Holds the HMAC state after absorbing the key,
/// so each pseudonym costs two SHA-256 compressions, not a re-key.
#[derive(Clone)]
pub(crate) struct Pseudonymizer {
    keyed: Hmac<Sha256>,
}

impl Pseudonymizer {
    pub(crate) fn new(dataset_key: &[u8; 32]) -> Self {
        let keyed = Hmac::<Sha256>::new_from_slice(dataset_key).expect("HMAC accepts keys of any length");
        Self { keyed }
    }

    /// Lowercase hex of HMAC-SHA256(dataset_key, patient_id): 64 characters.
    pub(crate) fn pseudonym(&self, patient_id: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(patient_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// The first [`GEO_PREFIX_CHARS`] characters (not bytes: a cut inside a UTF-8
/// sequence would not be a string) of the code normalised (surrounding
/// whitespace trimmed, ASCII letters upper-cased, so ` 03601` and `sw1a`
/// generalise as `03601` and `SW1A` do); `000` for a US ZIP prefix (three
/// ASCII digits) that is not among the prefixes whose areas held more than
/// 20,000 people in the 2020 Census ([`POPULATED_ZIP3`]): where even three
/// digits narrow a patient down too far, or where no one lives (an unused or
/// military prefix), which is a typo or a probe, not a place.
pub(crate) fn geo_prefix(s: &str) -> String {
    let s = s.trim();
    let prefix = match s.char_indices().nth(GEO_PREFIX_CHARS) {
        Some((end, _)) => &s[..end],
        None => s,
    };
    let prefix = prefix.to_ascii_uppercase();
    // Fail closed: a prefix with anything but ASCII letters and digits or
    // other alphabets' letters (full-width digits, inner spaces, punctuation)
    // could hide a sparse prefix.
    let plain = prefix.chars().all(|c| c.is_ascii_alphanumeric() || (!c.is_ascii() && c.is_alphabetic()));
    let us_zip3 = prefix.len() == 3 && prefix.bytes().all(|b| b.is_ascii_digit());
    let sparse = us_zip3 && prefix.parse::<u16>().map_or(true, |n| POPULATED_ZIP3.binary_search(&n).is_err());
    if !plain || sparse { "000".to_owned() } else { prefix }
}

/// The year of a catalog `date` (`YYYY-MM-DD`) or `datetime` (RFC 3339 UTC).
pub(crate) fn year_of(s: &str, datetime: bool) -> Option<i32> {
    if datetime {
        time::instant_to_ms(s).map(time::year_of_ms)
    } else {
        time::parse_date(s).and_then(|(y, _, _)| i32::try_from(y).ok())
    }
}

/// A conflicting register value generalised like its column: a date to its
/// year (a JSON number), a geographic string to its prefix. `None` when the
/// value does not have the catalog's type. Null (a `clear`) stays null.
pub(crate) fn generalise_value(value: &Value, year: Option<bool>, prefix: bool) -> Option<Value> {
    match (value, year) {
        (Value::Null, _) => Some(Value::Null),
        (Value::String(s), Some(datetime)) => year_of(s, datetime).map(Value::from),
        (_, Some(_)) => None,
        (Value::String(s), None) if prefix => Some(Value::from(geo_prefix(s))),
        (_, None) if prefix => None,
        (other, None) => Some(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_zip_prefixes_become_000() {
        assert_eq!(geo_prefix("03601"), "000");
        assert_eq!(geo_prefix("89301-1234"), "000");
        assert_eq!(geo_prefix("94110"), "941");
        assert_eq!(geo_prefix("SW1A 1AA"), "SW1");
        assert_eq!(geo_prefix(" 03601"), "000", "whitespace does not hide a sparse prefix");
        assert_eq!(geo_prefix("\t94110 "), "941");
        assert_eq!(geo_prefix("sw1a 1aa"), "SW1");
        assert_eq!(geo_prefix("０３６01"), "000", "full-width digits fail closed");
        assert_eq!(geo_prefix("0 3601"), "000");
        assert_eq!(geo_prefix("94"), "94", "a short code is kept as it is");
    }

    /// Pinned from the 2020 Census (scripts/zip3-census): 063 held 263,260
    /// people (sparse in 2000, not now), 369 held 17,596 and 202 none (not
    /// sparse in 2000, sparse now: its ZCTAs are unpopulated), 090 is military
    /// mail (no ZCTA).
    #[test]
    fn the_2020_census_decides_which_prefixes_are_kept() {
        assert_eq!(geo_prefix("06320"), "063");
        assert_eq!(geo_prefix("36925"), "000");
        assert_eq!(geo_prefix("20201"), "000");
        assert_eq!(geo_prefix("09001"), "000");
        assert_eq!(geo_prefix("10001"), "100");
        assert_eq!(POPULATED_ZIP3.len(), 876);
        assert!(POPULATED_ZIP3.windows(2).all(|w| w[0] < w[1]), "sorted, for the binary search");
    }

    #[test]
    fn pseudonyms_are_keyed_stable_hex() {
        let a = Pseudonymizer::new(&[1; 32]);
        let b = Pseudonymizer::new(&[2; 32]);
        let p = a.pseudonym("pt-000123");
        assert_eq!(p.len(), 64);
        assert!(p.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)), "{p}");
        assert_eq!(p, a.clone().pseudonym("pt-000123"));
        assert_ne!(p, a.pseudonym("pt-000124"));
        assert_ne!(p, b.pseudonym("pt-000123"));
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2 uses the 4-byte key "Jefe"; check our wiring of
        // the same primitive with a known answer rather than only self-consistency.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("any key length");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn prefixes_and_years() {
        assert_eq!(geo_prefix("94110"), "941");
        assert_eq!(geo_prefix("SW1A 1AA"), "SW1");
        assert_eq!(geo_prefix("Zü"), "Zü");
        assert_eq!(geo_prefix("ÄÖÜß"), "ÄÖÜ");
        assert_eq!(year_of("1984-03-07", false), Some(1984));
        assert_eq!(year_of("2025-12-31T23:59:59.999Z", true), Some(2025));
        assert_eq!(year_of("1984-03-07", true), None);
        assert_eq!(generalise_value(&Value::from("1984-03-07"), Some(false), false), Some(Value::from(1984)));
        assert_eq!(generalise_value(&Value::from("94110"), None, true), Some(Value::from("941")));
        assert_eq!(generalise_value(&Value::Null, Some(true), false), Some(Value::Null));
        assert_eq!(generalise_value(&Value::from(7), Some(false), false), None);
        assert_eq!(generalise_value(&Value::from(72), None, false), Some(Value::from(72)));
    }
}
