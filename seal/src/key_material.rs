//! A part's footer key metadata: the Parquet key tools' PKMT1 key material,
//! stored inside the file, single wrapping.
//!
//! Key decision: write exactly the JSON object pyarrow (Arrow C++) and
//! parquet-java write for a footer key, with every field present. parquet-java
//! casts the booleans without a null check, so a missing `doubleWrapping` or
//! `internalStorage` crashes its reader, and a footer key without the KMS
//! instance fields fails unless the reader configures them; with all of them,
//! any standard reader's key-list KMS client reaches `unwrap_key(wrappedDEK,
//! masterKeyID)`. Our own reader parses strictly and checks every field, so
//! altered key material is named as such rather than as a failing page.

use serde::Deserialize;

use super::snapshot_keys::{SnapshotKeyError, check_master_key_id};

/// The KMS instance id our key material names. Readers pass it to their KMS
/// client's `initialize`; ours ignore it.
pub const KMS_INSTANCE_ID: &str = "tidemark";
/// The KMS instance URL our key material names: where the master key comes
/// from (the signed manifest).
pub const KMS_INSTANCE_URL: &str = "tidemark-manifest";
/// Longest key metadata parsed: ours is 319 bytes.
const MAX_KEY_METADATA: usize = 4096;

/// Footer key material as a part carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FooterKeyMaterial {
    /// The snapshot's master key id (`tidemark.snap-…`).
    pub master_key_id: String,
    /// The data key wrapped under the master key (see
    /// [`super::snapshot_keys::wrap_data_key`]).
    pub wrapped_dek: String,
}

/// A character of standard base64 (the only ones a wrapped key holds, so
/// the JSON needs no escaping).
fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Pkmt1 {
    key_material_type: String,
    internal_storage: bool,
    is_footer_key: bool,
    #[serde(rename = "kmsInstanceID")]
    kms_instance_id: String,
    #[serde(rename = "kmsInstanceURL")]
    kms_instance_url: String,
    #[serde(rename = "masterKeyID")]
    master_key_id: String,
    #[serde(rename = "wrappedDEK")]
    wrapped_dek: String,
    double_wrapping: bool,
}

impl FooterKeyMaterial {
    /// The key metadata bytes: compact JSON in the field order pyarrow writes.
    ///
    /// # Errors
    /// [`SnapshotKeyError::BadMasterKeyId`]; a wrapped key that is not
    /// base64 is [`SnapshotKeyError::KeyMaterial`] (both would need escaping).
    pub fn to_bytes(&self) -> Result<Vec<u8>, SnapshotKeyError> {
        check_master_key_id(&self.master_key_id)?;
        if !self.wrapped_dek.bytes().all(is_base64) {
            return Err(SnapshotKeyError::KeyMaterial("the wrapped data key is not base64".into()));
        }
        Ok(format!(
            r#"{{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":true,"kmsInstanceID":"{KMS_INSTANCE_ID}","kmsInstanceURL":"{KMS_INSTANCE_URL}","masterKeyID":"{}","wrappedDEK":"{}","doubleWrapping":false}}"#,
            self.master_key_id, self.wrapped_dek
        )
        .into_bytes())
    }

    /// Parses footer key metadata strictly: a JSON object with exactly the
    /// PKMT1 fields, internal storage, a footer key, single wrapping, our
    /// KMS instance and a well-formed master key id.
    ///
    /// # Errors
    /// [`SnapshotKeyError::KeyMaterial`] naming the field that is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, SnapshotKeyError> {
        let bad = |why: String| Err(SnapshotKeyError::KeyMaterial(why));
        if bytes.len() > MAX_KEY_METADATA {
            return bad(format!("{} bytes, more than the {MAX_KEY_METADATA} accepted", bytes.len()));
        }
        let m: Pkmt1 = match serde_json::from_slice(bytes) {
            Ok(m) => m,
            // serde_json's messages can quote the input: say where, not what.
            Err(e) => {
                return bad(format!("not the PKMT1 JSON object (at line {} column {})", e.line(), e.column()));
            }
        };
        if m.key_material_type != "PKMT1" {
            return bad("keyMaterialType is not PKMT1".into());
        }
        if !m.internal_storage || !m.is_footer_key || m.double_wrapping {
            return bad("it must be internal storage, a footer key and single wrapping".into());
        }
        if m.kms_instance_id != KMS_INSTANCE_ID || m.kms_instance_url != KMS_INSTANCE_URL {
            return bad(format!("kmsInstanceID/kmsInstanceURL are not `{KMS_INSTANCE_ID}`/`{KMS_INSTANCE_URL}`"));
        }
        if m.wrapped_dek.is_empty() || !m.wrapped_dek.bytes().all(is_base64) {
            return bad("wrappedDEK is not base64".into());
        }
        check_master_key_id(&m.master_key_id).map_err(|_| {
            SnapshotKeyError::KeyMaterial("masterKeyID is not `tidemark.snap-` and a snapshot id".into())
        })?;
        Ok(Self { master_key_id: m.master_key_id, wrapped_dek: m.wrapped_dek })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> FooterKeyMaterial {
        FooterKeyMaterial {
            master_key_id: "tidemark.snap-019ae000-0000-7000-8000-000000000001".into(),
            wrapped_dek: "AAAA+/==".into(),
        }
    }

    #[test]
    fn written_material_is_what_pyarrow_writes_and_parses_back() {
        let bytes = sample().to_bytes().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for field in ["internalStorage", "isFooterKey", "doubleWrapping"] {
            assert!(v[field].is_boolean(), "{field} must be present and boolean: parquet-java casts it");
        }
        assert_eq!(v["keyMaterialType"], "PKMT1");
        assert_eq!(v["kmsInstanceID"], KMS_INSTANCE_ID);
        assert_eq!(FooterKeyMaterial::parse(&bytes).unwrap(), sample());
    }

    #[test]
    fn every_altered_field_is_named() {
        let good = String::from_utf8(sample().to_bytes().unwrap()).unwrap();
        for (from, to, says) in [
            ("PKMT1", "PKMT2", "PKMT1"),
            (r#""internalStorage":true"#, r#""internalStorage":false"#, "internal storage"),
            (r#""doubleWrapping":false"#, r#""doubleWrapping":true"#, "single wrapping"),
            (r#""isFooterKey":true,"#, "", "not the PKMT1 JSON object"),
            (r#""kmsInstanceID":"tidemark""#, r#""kmsInstanceID":"DEFAULT""#, "kmsInstanceID"),
            ("tidemark.snap-", "tidemark:snap-", "masterKeyID"),
            ("AAAA+/==", "AA\\nA", "wrappedDEK"),
            (r#""doubleWrapping":false"#, r#""doubleWrapping":false,"extra":1"#, "not the PKMT1 JSON object"),
        ] {
            let err = FooterKeyMaterial::parse(good.replace(from, to).as_bytes()).unwrap_err().to_string();
            assert!(err.contains(says), "{from} -> {to}: {err}");
        }
        assert!(FooterKeyMaterial::parse(&[b' '; 5000]).unwrap_err().to_string().contains("more than"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(0u8.., 0..400)) {
            let _ = FooterKeyMaterial::parse(&bytes);
        }
    }
}
