//! The text format of archiver key files and key ids (docs/encryption.md).
//!
//! A plain line format rather than TOML: three significant lines are all a key
//! file holds, and a hand-written parser can promise never to quote the key line
//! in an error message, which a general parser cannot.
//!
//! ```text
//! # comment lines and blank lines are ignored
//! tidemark-key v1 recipient-secret
//! id: tmr1-0123456789abcdef0123456789abcdef
//! key: <standard base64 of the key bytes>
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::digest;
use zeroize::Zeroizing;

/// Bytes of SHA-256 kept in a key fingerprint: 128 bits, so ids of distinct keys
/// do not collide by accident (a key id is a name, not a security binding).
pub const FINGERPRINT_LEN: usize = 16;
/// Largest key file read: bounds memory spent on a hostile file.
pub const MAX_KEY_FILE_LEN: u64 = 16 << 10;
/// The first significant line of a key file, before the kind.
const FORMAT: &str = "tidemark-key";
/// The one format version this build writes and reads.
const VERSION: &str = "v1";

/// What a key file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// Hybrid X25519 + ML-KEM-768 secret key that decrypts snapshot parts.
    RecipientSecret,
    /// Hybrid public key that parts are encrypted to.
    RecipientPublic,
    /// Ed25519 key the archiver signs manifests with.
    ArchiverSecret,
    /// Ed25519 key that verifies manifests.
    ArchiverPublic,
    /// 256-bit secret keying the de-identified profile's patient pseudonyms.
    DatasetSecret,
    /// 256-bit secret the mergers authenticate state and changelog records with.
    StateSecret,
}

impl KeyKind {
    /// The kind's name on the format line.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::RecipientSecret => "recipient-secret",
            KeyKind::RecipientPublic => "recipient-public",
            KeyKind::ArchiverSecret => "archiver-secret",
            KeyKind::ArchiverPublic => "archiver-public",
            KeyKind::DatasetSecret => "dataset-secret",
            KeyKind::StateSecret => "state-secret",
        }
    }

    /// Whether files of this kind must stay private (mode 0600).
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            KeyKind::RecipientSecret | KeyKind::ArchiverSecret | KeyKind::DatasetSecret | KeyKind::StateSecret
        )
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a key or key file was refused. Messages never include key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the file failed; retry or fix the path.
    #[error("I/O error")]
    Io(#[source] std::io::Error),
    /// A secret key file that group or others may read: refuse to use it.
    #[error(
        "secret key file is readable by group or others (mode {mode:03o}); run `chmod 600` on it, and consider the key exposed if others could read it"
    )]
    TooOpen {
        /// The file's permission bits.
        mode: u32,
    },
    /// Saving would replace an existing file.
    #[error("file exists; refusing to overwrite it: remove it first or choose another name")]
    AlreadyExists,
    /// Not a key file of the documented shape.
    #[error("not a Tidemark key file: {0}")]
    Malformed(&'static str),
    /// A key file from a newer format version.
    #[error("key file format version `{0}` is not supported (this build reads v1); upgrade tidemark")]
    UnsupportedVersion(String),
    /// A key file of another kind (e.g. a public key where a secret one is needed).
    #[error("key file holds a {found} key, but a {expected} key is needed")]
    WrongKind {
        /// The kind needed.
        expected: KeyKind,
        /// The kind named in the file.
        found: String,
    },
    /// The id line does not match the key: the file was edited or corrupted.
    #[error("key file says id {stated} but its key has id {derived}; the file was edited or corrupted")]
    IdMismatch {
        /// The id written in the file.
        stated: String,
        /// The id derived from the key.
        derived: String,
    },
    /// The key bytes are not a valid key of this kind.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// The OS random source failed while generating a key; retry.
    #[error("system random source failed")]
    Random,
}

/// First [`FINGERPRINT_LEN`] bytes of SHA-256 of a public key's bytes.
pub fn fingerprint(public_key: &[u8]) -> [u8; FINGERPRINT_LEN] {
    let d = digest::digest(&digest::SHA256, public_key);
    let mut fp = [0u8; FINGERPRINT_LEN];
    fp.copy_from_slice(&d.as_ref()[..FINGERPRINT_LEN]);
    fp
}

/// A key id: `prefix` + lowercase hex of the fingerprint, e.g. `tmr1-…`.
pub fn key_id(prefix: &str, fingerprint: &[u8; FINGERPRINT_LEN]) -> String {
    format!("{prefix}{}", hex::encode(fingerprint))
}

/// Renders a key file. Secret: write the result only to a file created 0600.
pub fn encode(kind: KeyKind, id: &str, key: &[u8]) -> Zeroizing<String> {
    let warning = if kind.is_secret() {
        "SECRET: keep it mode 0600; never commit, share or log it."
    } else {
        "Public: safe to share."
    };
    let b64 = Zeroizing::new(B64.encode(key));
    Zeroizing::new(format!(
        "# Tidemark {kind} key {id}. {warning}\n{FORMAT} {VERSION} {kind}\nid: {id}\nkey: {}\n",
        *b64
    ))
}

/// Parses a key file of kind `expected`: returns the stated id and the key bytes.
///
/// # Errors
/// [`KeyError::Malformed`], [`KeyError::UnsupportedVersion`],
/// [`KeyError::WrongKind`]; never quoting the key line.
pub fn decode(text: &str, expected: KeyKind) -> Result<(String, Zeroizing<Vec<u8>>), KeyError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    let head = lines.next().ok_or(KeyError::Malformed("the file is empty"))?;
    let mut words = head.split_whitespace();
    if words.next() != Some(FORMAT) {
        return Err(KeyError::Malformed("the first line must be `tidemark-key v1 KIND`"));
    }
    let version = words.next().ok_or(KeyError::Malformed("the first line has no version"))?;
    if version != VERSION {
        return Err(KeyError::UnsupportedVersion(shorten(version)));
    }
    let kind = words.next().ok_or(KeyError::Malformed("the first line has no kind"))?;
    let rest: Vec<&str> = words.collect();
    if kind != expected.name() || !rest.is_empty() {
        return Err(KeyError::WrongKind { expected, found: shorten(&[&[kind][..], &rest].concat().join(" ")) });
    }
    let id = lines
        .next()
        .and_then(|l| l.strip_prefix("id:"))
        .ok_or(KeyError::Malformed("the second line must be `id: ID`"))?;
    let key = lines
        .next()
        .and_then(|l| l.strip_prefix("key:"))
        .ok_or(KeyError::Malformed("the third line must be `key: BASE64`"))?;
    if lines.next().is_some() {
        return Err(KeyError::Malformed("unexpected lines after `key:`"));
    }
    let bytes =
        Zeroizing::new(B64.decode(key.trim()).map_err(|_| KeyError::Malformed("`key:` is not standard base64"))?);
    Ok((shorten(id.trim()), bytes))
}

/// Caps text taken from a file before it goes into an error message.
fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let text = encode(KeyKind::RecipientPublic, "tmr1-00", b"key bytes");
        let (id, key) = decode(&text, KeyKind::RecipientPublic).expect("own output parses");
        assert_eq!((id.as_str(), key.as_slice()), ("tmr1-00", &b"key bytes"[..]));
        assert!(text.contains("Public"), "{}", *text);
        assert!(encode(KeyKind::ArchiverSecret, "x", b"k").contains("SECRET"));
    }

    #[test]
    fn refusals_are_precise_and_never_quote_the_key() {
        let secret = "c2VjcmV0IHNjYWxhcg=="; // base64 of "secret scalar"
        let cases = [
            ("", "empty"),
            ("hello\n", "first line"),
            ("tidemark-key v2 recipient-secret\n", "version `v2`"),
            ("tidemark-key v1 recipient-public\nid: a\nkey: AA==\n", "holds a recipient-public key"),
            ("tidemark-key v1 recipient-secret\nkey: AA==\n", "second line"),
            ("tidemark-key v1 recipient-secret\nid: a\n", "third line"),
            ("tidemark-key v1 recipient-secret\nid: a\nkey: AA==\nmore\n", "unexpected lines"),
        ];
        for (text, want) in cases {
            let err = decode(text, KeyKind::RecipientSecret).expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let text = format!("tidemark-key v1 recipient-secret\nid: a\nkey: {secret}!\n");
        let err = decode(&text, KeyKind::RecipientSecret).expect_err("bad base64").to_string();
        assert!(!err.contains(secret) && err.contains("base64"), "{err}");
    }

    #[test]
    fn ids_are_prefix_and_hex_of_sha256() {
        // SHA-256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 ...
        assert_eq!(key_id("tmr1-", &fingerprint(b"abc")), "tmr1-ba7816bf8f01cfea414140de5dae2223");
    }
}
