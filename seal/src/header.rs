//! The part header: layout, bounds and parsing (format v1, docs/encryption.md).
//!
//! Every stanza has a fixed size, so the only lengths read from a file are the
//! chunk size and the recipient count, and both are checked against small
//! bounds before anything is allocated: a hostile header costs at most
//! [`MAX_HEADER_LEN`] bytes and one chunk buffer of [`MAX_CHUNK_SIZE`].

use std::io::Read;

use super::error::PartError;
use super::kem::CT_LEN;
use super::keys::recipient_key_id;
use super::keytext::FINGERPRINT_LEN;
use super::stream::{KEY_LEN, MAX_CHUNK_SIZE, TAG_LEN, fill};

/// First bytes of every encrypted part.
pub const MAGIC: &[u8; 5] = b"TMENC";
/// The format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Most recipients a part may have.
pub const MAX_RECIPIENTS: usize = 64;
/// Length of the random part id.
pub const PART_ID_LEN: usize = 16;
/// Length of a wrapped data key: AES-256-GCM ciphertext and tag.
pub const WRAPPED_KEY_LEN: usize = KEY_LEN + TAG_LEN;
/// Length of one recipient stanza: fingerprint, KEM ciphertext, wrapped key.
pub const STANZA_LEN: usize = FINGERPRINT_LEN + CT_LEN + WRAPPED_KEY_LEN;
/// Length of the header MAC (HMAC-SHA256).
pub const MAC_LEN: usize = 32;
/// Length of the fields before the stanzas: magic, version, chunk size,
/// recipient count, part id.
pub const FIXED_LEN: usize = MAGIC.len() + 1 + 4 + 2 + PART_ID_LEN;
/// Largest possible header.
pub const MAX_HEADER_LEN: usize = header_len(MAX_RECIPIENTS);

/// Header length for `recipients` recipients.
pub const fn header_len(recipients: usize) -> usize {
    FIXED_LEN + recipients * STANZA_LEN + MAC_LEN
}

/// One recipient's copy of the data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stanza {
    /// Fingerprint of the recipient's public key (its key id without prefix).
    pub fingerprint: [u8; FINGERPRINT_LEN],
    /// Hybrid KEM ciphertext: ML-KEM-768 ciphertext || X25519 ephemeral key.
    pub kem_ct: [u8; CT_LEN],
    /// The data key sealed with AES-256-GCM under the KEK from the KEM secret.
    pub wrapped_key: [u8; WRAPPED_KEY_LEN],
}

impl Stanza {
    /// Associated data of the key wrap: the part id binds the stanza to its
    /// part (a stanza copied into another part fails to unwrap), the
    /// fingerprint and KEM ciphertext bind it to its recipient.
    pub(crate) fn wrap_aad(&self, part_id: &[u8; PART_ID_LEN]) -> Vec<u8> {
        [&part_id[..], &self.fingerprint, &self.kem_ct].concat()
    }
}

/// A parsed part header. Unauthenticated until a recipient's key checks its
/// MAC (which [`open_part`](super::part::open_part) does): without a key,
/// anyone could have written it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartHeader {
    chunk_size: usize,
    part_id: [u8; PART_ID_LEN],
    stanzas: Vec<Stanza>,
    bytes: Vec<u8>,
}

impl PartHeader {
    /// Lays out a header and appends the MAC that `mac` computes over the
    /// bytes before it. Inputs are checked by the caller.
    pub(crate) fn assemble(
        chunk_size: usize,
        part_id: [u8; PART_ID_LEN],
        stanzas: Vec<Stanza>,
        mac: impl FnOnce(&[u8]) -> [u8; MAC_LEN],
    ) -> Self {
        let mut bytes = Vec::with_capacity(header_len(stanzas.len()));
        bytes.extend_from_slice(MAGIC);
        bytes.push(VERSION);
        bytes.extend_from_slice(&u32::try_from(chunk_size).expect("chunk size <= 16 MiB").to_be_bytes());
        bytes.extend_from_slice(&u16::try_from(stanzas.len()).expect("<= 64 recipients").to_be_bytes());
        bytes.extend_from_slice(&part_id);
        for s in &stanzas {
            bytes.extend_from_slice(&s.fingerprint);
            bytes.extend_from_slice(&s.kem_ct);
            bytes.extend_from_slice(&s.wrapped_key);
        }
        let tag = mac(&bytes);
        bytes.extend_from_slice(&tag);
        Self { chunk_size, part_id, stanzas, bytes }
    }

    /// The format version.
    pub fn version(&self) -> u8 {
        VERSION
    }

    /// Plaintext bytes per chunk.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// The random id that makes this part's stanzas its own.
    pub fn part_id(&self) -> &[u8; PART_ID_LEN] {
        &self.part_id
    }

    /// The recipients' stanzas, in header order.
    pub fn stanzas(&self) -> &[Stanza] {
        &self.stanzas
    }

    /// The recipients' key ids (`tmr1-…`), in header order.
    pub fn recipient_key_ids(&self) -> Vec<String> {
        self.stanzas.iter().map(|s| recipient_key_id(&s.fingerprint)).collect()
    }

    /// The header's bytes as in the file, MAC included: the associated data of
    /// every payload chunk.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The header bytes the MAC covers, and the MAC.
    pub(crate) fn mac_parts(&self) -> (&[u8], &[u8]) {
        self.bytes.split_at(self.bytes.len() - MAC_LEN)
    }
}

fn take<const N: usize>(bytes: &[u8], at: &mut usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&bytes[*at..*at + N]);
    *at += N;
    a
}

/// Reads and parses a part header, leaving `r` at the first payload byte. Does
/// not authenticate it (that needs a recipient key): use it to list a part's
/// recipients and chunk size, or to pick the key to open it with.
///
/// # Errors
/// [`PartError::BadMagic`], [`PartError::UnsupportedVersion`],
/// [`PartError::HeaderMalformed`] (chunk size, recipient count, a recipient
/// listed twice), [`PartError::Truncated`], [`PartError::Io`].
pub fn read_header<R: Read>(mut r: R) -> Result<PartHeader, PartError> {
    let mut bytes = vec![0u8; FIXED_LEN];
    let n = fill(&mut r, &mut bytes[..MAGIC.len()]).map_err(PartError::Io)?;
    // A short file that is not a part is named as such, not as truncated.
    if bytes[..n] != MAGIC[..n] {
        return Err(PartError::BadMagic);
    }
    if n < MAGIC.len() {
        return Err(PartError::Truncated);
    }
    r.read_exact(&mut bytes[MAGIC.len()..])?;
    let mut at = MAGIC.len();
    let [version] = take(&bytes, &mut at);
    if version != VERSION {
        return Err(PartError::UnsupportedVersion(version));
    }
    let chunk_size = u32::from_be_bytes(take(&bytes, &mut at)) as usize;
    if !(1..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        return Err(PartError::HeaderMalformed("chunk size is 0 or above 16 MiB"));
    }
    let count = usize::from(u16::from_be_bytes(take(&bytes, &mut at)));
    if !(1..=MAX_RECIPIENTS).contains(&count) {
        return Err(PartError::HeaderMalformed("recipient count is 0 or above 64"));
    }
    let part_id = take(&bytes, &mut at);
    // Bounded: at most 64 stanzas.
    bytes.resize(header_len(count), 0);
    r.read_exact(&mut bytes[FIXED_LEN..])?;
    let stanzas: Vec<Stanza> = (0..count)
        .map(|_| Stanza {
            fingerprint: take(&bytes, &mut at),
            kem_ct: take(&bytes, &mut at),
            wrapped_key: take(&bytes, &mut at),
        })
        .collect();
    for (i, s) in stanzas.iter().enumerate() {
        if stanzas[..i].iter().any(|t| t.fingerprint == s.fingerprint) {
            return Err(PartError::HeaderMalformed("a recipient is listed twice"));
        }
    }
    Ok(PartHeader { chunk_size, part_id, stanzas, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(recipients: u8) -> PartHeader {
        let stanzas = (0..recipients)
            .map(|i| Stanza {
                fingerprint: [i; FINGERPRINT_LEN],
                kem_ct: [i; CT_LEN],
                wrapped_key: [i; WRAPPED_KEY_LEN],
            })
            .collect();
        PartHeader::assemble(1 << 20, [9; PART_ID_LEN], stanzas, |_| [7; MAC_LEN])
    }

    fn parse(bytes: &[u8]) -> Result<PartHeader, PartError> {
        read_header(bytes)
    }

    #[test]
    fn layout_round_trips() {
        let h = header(3);
        assert_eq!(h.as_bytes().len(), 28 + 3 * 1184 + 32);
        assert_eq!(&h.as_bytes()[..12], b"TMENC\x01\x00\x10\x00\x00\x00\x03");
        let mut input = h.as_bytes().to_vec();
        input.extend_from_slice(b"payload");
        let mut r = &input[..];
        assert_eq!(read_header(&mut r).expect("own header parses"), h);
        assert_eq!(r, b"payload", "the reader stops at the first payload byte");
        assert_eq!(h.recipient_key_ids()[1], format!("tmr1-{}", "01".repeat(16)));
    }

    #[test]
    fn bad_fields_have_their_own_errors() {
        let good = header(2).as_bytes().to_vec();
        let with = |at: usize, v: &[u8]| {
            let mut b = good.clone();
            b[at..at + v.len()].copy_from_slice(v);
            parse(&b)
        };
        assert!(matches!(with(0, b"X"), Err(PartError::BadMagic)));
        assert!(matches!(with(5, &[2]), Err(PartError::UnsupportedVersion(2))));
        for size in [0u32, 16 << 20 | 1, u32::MAX] {
            assert!(matches!(with(6, &size.to_be_bytes()), Err(PartError::HeaderMalformed(_))), "{size}");
        }
        for count in [0u16, 65, u16::MAX] {
            assert!(matches!(with(10, &count.to_be_bytes()), Err(PartError::HeaderMalformed(_))), "{count}");
        }
        assert!(matches!(with(10, &3u16.to_be_bytes()), Err(PartError::Truncated)));
        let dup = with(FIXED_LEN + STANZA_LEN, &[0; FINGERPRINT_LEN]);
        assert!(matches!(dup, Err(PartError::HeaderMalformed(_))), "{dup:?}");
        for cut in [0, 3, 5, 27, 28, good.len() - 1] {
            assert!(matches!(parse(&good[..cut]), Err(PartError::Truncated)), "cut at {cut}");
        }
        for other in [&b"PK\x03\x04 a zip file"[..], b"PAR1", b"\n"] {
            assert!(matches!(parse(other), Err(PartError::BadMagic)), "{other:?}");
        }
    }
}
