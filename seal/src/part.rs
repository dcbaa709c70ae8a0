//! Sealing and opening whole parts: header, key schedule and payload.
//!
//! Key schedule (docs/encryption.md), all HKDF-SHA256:
//! - per part, a random 32-byte data key and a random 16-byte part id;
//! - per recipient, KEK = HKDF(salt: none, IKM: hybrid KEM secret,
//!   info: `tidemark part v1 kek`); the data key is sealed with AES-256-GCM under
//!   the KEK (nonce zero: each KEK is used once), with part id || fingerprint ||
//!   KEM ciphertext as associated data;
//! - payload key and header MAC key = HKDF(salt: part id, IKM: data key,
//!   info: `tidemark part v1 payload` / `tidemark part v1 header mac`).
//!
//! The header MAC (HMAC-SHA256) is checked before any payload is read. Being a
//! MAC under a key derived from the data key, it also commits the part to one
//! data key, which AES-GCM alone does not: every recipient decrypts the same
//! plaintext, or a recipient's open fails.

use std::io::{self, Read, Write};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::{digest, hkdf, hmac};
use zeroize::Zeroizing;

use super::error::PartError;
use super::header::{MAC_LEN, MAX_RECIPIENTS, PART_ID_LEN, PartHeader, Stanza, WRAPPED_KEY_LEN, read_header};
use super::keys::{RecipientPublicKey, RecipientSecretKey};
use super::stream::{self, KEY_LEN, MAX_CHUNK_SIZE};

const INFO_KEK: &[u8] = b"tidemark part v1 kek";
const INFO_PAYLOAD: &[u8] = b"tidemark part v1 payload";
const INFO_MAC: &[u8] = b"tidemark part v1 header mac";

/// What [`seal_part`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealStats {
    /// Plaintext bytes read.
    pub plaintext_bytes: u64,
    /// Bytes written: header and payload.
    pub ciphertext_bytes: u64,
    /// SHA-256 of exactly the bytes written, for the manifest.
    pub ciphertext_sha256: [u8; 32],
}

/// What [`open_part`] read and wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenStats {
    /// Plaintext bytes written.
    pub plaintext_bytes: u64,
    /// Bytes of the part read.
    pub ciphertext_bytes: u64,
    /// SHA-256 of the part's bytes, to compare with the signed manifest.
    pub ciphertext_sha256: [u8; 32],
}

/// HKDF output length for ring's `expand`.
struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        KEY_LEN
    }
}

fn derive(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&[info], Len32)
        .and_then(|okm| okm.fill(out.as_mut()))
        .expect("HKDF-SHA256 can expand 32 bytes");
    out
}

fn aead(key: &[u8; KEY_LEN]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is valid for AES-256-GCM"))
}

fn header_mac_key(data_key: &[u8; KEY_LEN], part_id: &[u8; PART_ID_LEN]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, derive(part_id, data_key, INFO_MAC).as_ref())
}

fn random<const N: usize>() -> Result<Zeroizing<[u8; N]>, PartError> {
    let mut b = Zeroizing::new([0u8; N]);
    SystemRandom::new().fill(b.as_mut()).map_err(|_| PartError::Random)?;
    Ok(b)
}

fn check_recipients(recipients: &[RecipientPublicKey]) -> Result<(), PartError> {
    if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS {
        return Err(PartError::BadRecipients(format!("{} recipients; 1 to 64 are allowed", recipients.len())));
    }
    for (i, r) in recipients.iter().enumerate() {
        if recipients[..i].contains(r) {
            return Err(PartError::BadRecipients(format!("{} is listed twice", r.key_id())));
        }
    }
    Ok(())
}

/// Seals one stanza: a fresh KEM secret for `recipient` wraps the data key.
fn wrap_data_key(
    recipient: &RecipientPublicKey,
    part_id: &[u8; PART_ID_LEN],
    data_key: &[u8; KEY_LEN],
) -> Result<Stanza, PartError> {
    let (kem_ct, ss) = recipient.kem().encapsulate()?;
    let ss = Zeroizing::new(ss);
    let mut stanza = Stanza { fingerprint: *recipient.fingerprint(), kem_ct, wrapped_key: [0; WRAPPED_KEY_LEN] };
    let mut sealed = Zeroizing::new(*data_key);
    let kek = aead(&derive(&[], ss.as_ref(), INFO_KEK));
    let aad = stanza.wrap_aad(part_id);
    let tag = kek
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::from(&aad), sealed.as_mut())
        .expect("ring seals 32 bytes");
    stanza.wrapped_key[..KEY_LEN].copy_from_slice(sealed.as_ref());
    stanza.wrapped_key[KEY_LEN..].copy_from_slice(tag.as_ref());
    Ok(stanza)
}

/// Recovers the data key from `key`'s stanza, then checks the header MAC.
fn unwrap_data_key(header: &PartHeader, key: &RecipientSecretKey) -> Result<Zeroizing<[u8; KEY_LEN]>, PartError> {
    let stanza = header
        .stanzas()
        .iter()
        .find(|s| s.fingerprint == *key.public_key().fingerprint())
        .ok_or_else(|| PartError::NotARecipient { key_id: key.key_id(), recipients: header.recipient_key_ids() })?;
    let failed = || PartError::KeyUnwrapFailed { key_id: key.key_id() };
    // A low-order X25519 ephemeral can only come from an altered stanza.
    let ss = Zeroizing::new(key.kem().decapsulate(&stanza.kem_ct).map_err(|_| failed())?);
    let kek = aead(&derive(&[], ss.as_ref(), INFO_KEK));
    let mut wrapped = Zeroizing::new(stanza.wrapped_key);
    let aad = stanza.wrap_aad(header.part_id());
    let plain = kek
        .open_in_place(Nonce::assume_unique_for_key([0; 12]), Aad::from(&aad), wrapped.as_mut())
        .map_err(|_| failed())?;
    let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
    data_key.copy_from_slice(plain);
    let (covered, mac) = header.mac_parts();
    hmac::verify(&header_mac_key(&data_key, header.part_id()), covered, mac)
        .map_err(|_| PartError::HeaderAuthFailed)?;
    Ok(data_key)
}

/// Counts and hashes every byte that passes through a reader or writer, so
/// the stats describe exactly the bytes of the file.
struct Hashing<T> {
    inner: T,
    sha256: digest::Context,
    bytes: u64,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Self {
        Self { inner, sha256: digest::Context::new(&digest::SHA256), bytes: 0 }
    }

    fn record(&mut self, data: &[u8]) {
        self.sha256.update(data);
        self.bytes += data.len() as u64;
    }

    fn finish(self) -> (u64, [u8; 32]) {
        let mut h = [0u8; 32];
        h.copy_from_slice(self.sha256.finish().as_ref());
        (self.bytes, h)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.record(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.record(&buf[..n]);
        Ok(n)
    }
}

/// Encrypts `plain` to every recipient as one part written to `out`, in chunks
/// of `chunk_size` plaintext bytes ([`stream::DEFAULT_CHUNK_SIZE`] unless there
/// is a reason). Memory use is one chunk. `out` is flushed at the end.
///
/// # Errors
/// [`PartError::BadChunkSize`], [`PartError::BadRecipients`] (none, more than
/// 64, or one twice), [`PartError::Kem`] or [`PartError::Random`] if the OS
/// random source fails, [`PartError::Io`] if a stream fails. On error, `out`
/// holds a partial part: discard it.
pub fn seal_part<R: Read, W: Write>(
    plain: R,
    out: W,
    recipients: &[RecipientPublicKey],
    chunk_size: usize,
) -> Result<SealStats, PartError> {
    if !(1..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        return Err(PartError::BadChunkSize { chunk_size, max: MAX_CHUNK_SIZE });
    }
    check_recipients(recipients)?;
    let data_key = random::<KEY_LEN>()?;
    let part_id = *random::<PART_ID_LEN>()?;
    let stanzas = recipients.iter().map(|r| wrap_data_key(r, &part_id, &data_key)).collect::<Result<Vec<_>, _>>()?;
    let mac_key = header_mac_key(&data_key, &part_id);
    let header = PartHeader::assemble(chunk_size, part_id, stanzas, |covered| {
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(hmac::sign(&mac_key, covered).as_ref());
        mac
    });
    let mut out = Hashing::new(out);
    out.write_all(header.as_bytes()).map_err(PartError::Io)?;
    let payload_key = derive(&part_id, data_key.as_ref(), INFO_PAYLOAD);
    let plaintext_bytes = stream::seal(&payload_key, header.as_bytes(), chunk_size, plain, &mut out)?;
    out.flush().map_err(PartError::Io)?;
    let (ciphertext_bytes, ciphertext_sha256) = out.finish();
    Ok(SealStats { plaintext_bytes, ciphertext_bytes, ciphertext_sha256 })
}

/// Decrypts a part sealed by [`seal_part`] with one recipient's key, writing
/// each chunk to `out` only after it authenticated. Memory use is one chunk.
/// `out` is flushed at the end.
///
/// The part is authentic for its data key, but anyone holding a recipient's
/// *public* key can seal a part: compare `ciphertext_sha256` with the signed
/// manifest before trusting the plaintext. On any error, chunks before the
/// failing one were already written: write to a temporary file and delete it.
///
/// # Errors
/// [`PartError::NotARecipient`], [`PartError::KeyUnwrapFailed`],
/// [`PartError::HeaderAuthFailed`], [`PartError::ChunkAuthFailed`],
/// [`PartError::Truncated`], [`PartError::TrailingData`], the header errors of
/// [`read_header`], [`PartError::Io`].
pub fn open_part<R: Read, W: Write>(sealed: R, mut out: W, key: &RecipientSecretKey) -> Result<OpenStats, PartError> {
    let mut input = Hashing::new(sealed);
    let header = read_header(&mut input)?;
    let data_key = unwrap_data_key(&header, key)?;
    let payload_key = derive(header.part_id(), data_key.as_ref(), INFO_PAYLOAD);
    let plaintext_bytes = stream::open(&payload_key, header.as_bytes(), header.chunk_size(), &mut input, &mut out)?;
    out.flush().map_err(PartError::Io)?;
    let (ciphertext_bytes, ciphertext_sha256) = input.finish();
    Ok(OpenStats { plaintext_bytes, ciphertext_bytes, ciphertext_sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::header_len;

    fn keys(n: usize) -> Vec<RecipientSecretKey> {
        (0..n).map(|_| RecipientSecretKey::generate().expect("rng")).collect()
    }

    fn publics(keys: &[RecipientSecretKey]) -> Vec<RecipientPublicKey> {
        keys.iter().map(|k| k.public_key().clone()).collect()
    }

    #[test]
    fn every_recipient_opens_and_stats_describe_the_bytes() {
        let ks = keys(3);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut sealed = Vec::new();
        let stats = seal_part(&data[..], &mut sealed, &publics(&ks), 4096).expect("seal");
        assert_eq!(stats.plaintext_bytes, data.len() as u64);
        assert_eq!(stats.ciphertext_bytes, sealed.len() as u64);
        assert_eq!(sealed.len() as u64, header_len(3) as u64 + stream::sealed_len(data.len() as u64, 4096));
        assert_eq!(stats.ciphertext_sha256[..], digest::digest(&digest::SHA256, &sealed).as_ref()[..]);
        for k in &ks {
            let mut out = Vec::new();
            let o = open_part(&sealed[..], &mut out, k).expect("each recipient opens");
            assert_eq!(out, data);
            assert_eq!((o.ciphertext_bytes, o.ciphertext_sha256), (stats.ciphertext_bytes, stats.ciphertext_sha256));
        }
        let h = read_header(&sealed[..]).expect("header");
        assert_eq!(h.recipient_key_ids(), ks.iter().map(RecipientSecretKey::key_id).collect::<Vec<_>>());
        assert_eq!(h.chunk_size(), 4096);
    }

    #[test]
    fn wrong_recipient_is_named() {
        let ks = keys(2);
        let mut sealed = Vec::new();
        seal_part(&b"x"[..], &mut sealed, &publics(&ks[..1]), 16).expect("seal");
        match open_part(&sealed[..], Vec::new(), &ks[1]) {
            Err(PartError::NotARecipient { key_id, recipients }) => {
                assert_eq!((key_id, recipients), (ks[1].key_id(), vec![ks[0].key_id()]));
            }
            other => panic!("expected NotARecipient, got {other:?}"),
        }
    }

    #[test]
    fn bad_arguments_refused() {
        let ks = keys(1);
        let pk = publics(&ks);
        let twice = [pk[0].clone(), pk[0].clone()];
        for (recipients, cs) in [(&pk[..], 0), (&pk[..], MAX_CHUNK_SIZE + 1), (&[][..], 16), (&twice[..], 16)] {
            let r = seal_part(&b""[..], Vec::new(), recipients, cs);
            assert!(matches!(r, Err(PartError::BadChunkSize { .. } | PartError::BadRecipients(_))), "{r:?}");
        }
    }
}
