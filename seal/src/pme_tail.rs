//! Reading the plaintext crypto metadata at the end of a Parquet file with an
//! encrypted footer (Parquet Modular Encryption), without any key.
//!
//! Such a file ends with `FileCryptoMetaData` (Thrift compact: the algorithm
//! with its AAD prefix, file-unique AAD and whether readers supply the
//! prefix, and the footer key's metadata), the footer as one AES-GCM module
//! (`len || nonce || ciphertext || tag`), the u32 LE length of both, `PARE`.
//! The archiver reads `aad_file_unique` after writing a part (to sign it into
//! the manifest), and checks the algorithm and key metadata when verifying
//! one, both before it holds any key.
//!
//! Key decision: a hand-written parser of exactly this one structure, not
//! the `parquet` crate. The file is untrusted when it is verified, and this
//! crate stays free of Parquet so the fuzz targets link it alone. The parser
//! reads only from the slice it is given: every length is checked against
//! the bytes that remain before anything is copied, every loop consumes at
//! least one byte per step, and nesting is bounded by [`MAX_DEPTH`], so a
//! hostile file costs at most its own size in memory and time linear in it.
//! Unknown fields are skipped by type (as Thrift requires, for forward
//! compatibility); a known field of the wrong type or given twice, a union
//! with more than one member, and an encrypted footer module whose length
//! field disagrees with the footer length are rejected, each with a message
//! naming the field.

use std::fmt;

/// The magic at both ends of a Parquet file with an encrypted footer.
pub const ENCRYPTED_FOOTER_MAGIC: [u8; 4] = *b"PARE";
/// The magic of a plaintext Parquet file (or one with a plaintext footer).
pub const PLAINTEXT_MAGIC: [u8; 4] = *b"PAR1";
/// Bytes after the footer: its length (u32 little-endian) and the magic.
pub const TRAILER_LEN: usize = 8;
/// Deepest nesting of structs, lists, sets and maps accepted
/// (`FileCryptoMetaData` is depth 1, its union 2, `AesGcmV1` 3).
pub const MAX_DEPTH: usize = 16;
/// Smallest encrypted footer module: length field, 12-byte nonce, empty
/// ciphertext and 16-byte tag.
pub const MIN_FOOTER_MODULE_LEN: usize = 4 + NONCE_LEN + TAG_LEN;
/// Smallest footer length: the 5-byte `FileCryptoMetaData` naming an
/// algorithm and nothing else, then the smallest footer module.
pub const MIN_FOOTER_LEN: u32 = 5 + MIN_FOOTER_MODULE_LEN as u32;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const MAX_VARINT_LEN: usize = 10;

// Thrift compact protocol types.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
const UUID: u8 = 13;

/// The encryption algorithm a file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// `AES_GCM_V1`: every module AES-GCM (what arrow-rs writes).
    AesGcmV1,
    /// `AES_GCM_CTR_V1`: metadata AES-GCM, page data AES-CTR.
    AesGcmCtrV1,
}

/// The plaintext crypto metadata of a file with an encrypted footer.
/// Unauthenticated: anyone could have written it. A wrong `aad_file_unique`
/// or prefix only makes decryption fail, so it is safe to compare against a
/// signed record, not to trust on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CryptoTail {
    /// The algorithm (the member of the `EncryptionAlgorithm` union).
    pub algorithm: Algorithm,
    /// The AAD prefix, when the file stores it (field 1).
    pub aad_prefix: Option<Vec<u8>>,
    /// The file's unique AAD suffix (field 2); arrow-rs writes 8 random bytes.
    pub aad_file_unique: Option<Vec<u8>>,
    /// Whether readers must supply an AAD prefix the file does not store
    /// (field 3); `None` when the field is absent.
    pub supply_aad_prefix: Option<bool>,
    /// The footer key's metadata (field 2 of `FileCryptoMetaData`).
    pub key_metadata: Option<Vec<u8>>,
    /// The footer length from the trailer: `FileCryptoMetaData` plus the
    /// encrypted footer module.
    pub footer_len: u32,
    /// Bytes of the Thrift-encoded `FileCryptoMetaData`; the encrypted footer
    /// module is the `footer_len - crypto_metadata_len` bytes after it.
    pub crypto_metadata_len: usize,
}

impl CryptoTail {
    /// Whether the file's AAD includes a prefix, stored in the file or to be
    /// supplied by the reader.
    pub fn uses_aad_prefix(&self) -> bool {
        self.aad_prefix.is_some() || self.supply_aad_prefix == Some(true)
    }
}

/// Why a file's crypto tail could not be read. Messages name the field or
/// length that was wrong, never the file's bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TailError {
    /// The file ends with `PAR1`: its footer is plaintext (an unencrypted
    /// file, or one encrypted in plaintext-footer mode).
    #[error("the file ends with `PAR1`: its footer is not encrypted (a plaintext or plaintext-footer Parquet file)")]
    NotEncryptedFooter,
    /// The file ends with neither `PARE` nor `PAR1`: not a Parquet file, or
    /// its end is missing.
    #[error("the file does not end with `PARE`: not a Parquet file with an encrypted footer, or its end is missing")]
    BadMagic,
    /// Fewer bytes were given than the trailer or the footer length needs.
    #[error(
        "the Parquet tail needs {needed} bytes but {available} were given: the file is truncated or its footer length is corrupt"
    )]
    Truncated {
        /// Bytes needed: 8, or the footer length plus 8.
        needed: u64,
        /// Bytes given.
        available: usize,
    },
    /// The footer length is too small to hold crypto metadata and an
    /// encrypted footer.
    #[error(
        "footer length {footer_len} is below the {MIN_FOOTER_LEN}-byte minimum of crypto metadata and an encrypted footer"
    )]
    FooterTooShort {
        /// The footer length from the trailer.
        footer_len: u32,
    },
    /// `FileCryptoMetaData` names no algorithm: field 1 is absent, or the
    /// `EncryptionAlgorithm` union is empty.
    #[error("FileCryptoMetaData names no encryption algorithm (field 1 is absent or an empty union)")]
    MissingAlgorithm,
    /// The `EncryptionAlgorithm` union's member is neither `AES_GCM_V1` (1)
    /// nor `AES_GCM_CTR_V1` (2).
    #[error("EncryptionAlgorithm member {0} is neither AES_GCM_V1 (1) nor AES_GCM_CTR_V1 (2)")]
    UnknownAlgorithm(i16),
    /// The Thrift encoding or the footer module is malformed; the reason
    /// names the field.
    #[error("the Parquet crypto metadata is malformed: {0}")]
    Malformed(String),
}

/// A [`TailError::Malformed`] with a formatted reason.
macro_rules! malformed {
    ($($reason:tt)*) => { TailError::Malformed(format!($($reason)*)) };
}

/// The footer length from a file's last 8 bytes, for a caller that reads
/// only the tail: read the last [`TRAILER_LEN`] bytes, then the last
/// `footer_len + 8`, and pass those to [`read_crypto_tail`].
///
/// # Errors
/// [`TailError::NotEncryptedFooter`] or [`TailError::BadMagic`] for another
/// magic, [`TailError::FooterTooShort`] below [`MIN_FOOTER_LEN`].
pub fn tail_len(last8: &[u8; TRAILER_LEN]) -> Result<u32, TailError> {
    let [l0, l1, l2, l3, m0, m1, m2, m3] = *last8;
    match [m0, m1, m2, m3] {
        ENCRYPTED_FOOTER_MAGIC => {}
        PLAINTEXT_MAGIC => return Err(TailError::NotEncryptedFooter),
        _ => return Err(TailError::BadMagic),
    }
    let footer_len = u32::from_le_bytes([l0, l1, l2, l3]);
    if footer_len < MIN_FOOTER_LEN {
        return Err(TailError::FooterTooShort { footer_len });
    }
    Ok(footer_len)
}

/// Reads the crypto metadata at the end of `bytes`: the whole file, or any
/// suffix of it holding at least the last `footer_len + 8` bytes (leading
/// bytes before the footer are ignored; the caller holding the whole file
/// checks that it also starts with [`ENCRYPTED_FOOTER_MAGIC`]).
///
/// # Errors
/// A [`TailError`] naming what is wrong; never panics, whatever the bytes.
pub fn read_crypto_tail(bytes: &[u8]) -> Result<CryptoTail, TailError> {
    let available = bytes.len();
    let truncated = |needed: u32| TailError::Truncated { needed: u64::from(needed) + TRAILER_LEN as u64, available };
    let (before, last8) = bytes.split_last_chunk::<TRAILER_LEN>().ok_or(truncated(0))?;
    let footer_len = tail_len(last8)?;
    let footer_at = before.len().checked_sub(footer_len as usize).ok_or(truncated(footer_len))?;
    let footer = before.get(footer_at..).unwrap_or_default();

    let mut cur = Cursor { buf: footer, pos: 0 };
    let meta = cur.file_crypto_metadata()?;
    let crypto_metadata_len = cur.pos;
    check_footer_module(cur.rest())?;
    let (algorithm, params) = meta.algorithm.ok_or(TailError::MissingAlgorithm)?;
    Ok(CryptoTail {
        algorithm,
        aad_prefix: params.aad_prefix.map(<[u8]>::to_vec),
        aad_file_unique: params.aad_file_unique.map(<[u8]>::to_vec),
        supply_aad_prefix: params.supply_aad_prefix,
        key_metadata: meta.key_metadata.map(<[u8]>::to_vec),
        footer_len,
        crypto_metadata_len,
    })
}

/// The bytes after `FileCryptoMetaData` are one AES-GCM module whose
/// length field counts exactly the bytes after it.
fn check_footer_module(module: &[u8]) -> Result<(), TailError> {
    let n = module.len();
    if n < MIN_FOOTER_MODULE_LEN {
        return Err(malformed!(
            "the encrypted footer module of {n} bytes is under its {MIN_FOOTER_MODULE_LEN}-byte minimum"
        ));
    }
    let (declared, body) = (module.first_chunk::<4>().map_or(0, |len| u32::from_le_bytes(*len)), n - 4);
    if usize::try_from(declared).ok() != Some(body) {
        return Err(malformed!("the encrypted footer module's length field says {declared} bytes but {body} follow"));
    }
    Ok(())
}

/// Where a value is being read, for error messages: `field 7 of AesGcmV1`.
#[derive(Clone, Copy)]
struct At {
    field: i16,
    of: &'static str,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field {} of {}", self.field, self.of)
    }
}

/// A field header being read, for error messages.
#[derive(Clone, Copy)]
struct FieldHeader<D> {
    last_id: i16,
    of: D,
}

impl<D: fmt::Display> fmt::Display for FieldHeader<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last_id {
            0 => write!(f, "the first field header of {}", self.of),
            last => write!(f, "the field header after field {last} of {}", self.of),
        }
    }
}

#[derive(Default)]
struct AesParams<'a> {
    aad_prefix: Option<&'a [u8]>,
    aad_file_unique: Option<&'a [u8]>,
    supply_aad_prefix: Option<bool>,
}

struct FileCryptoMetaData<'a> {
    algorithm: Option<(Algorithm, AesParams<'a>)>,
    key_metadata: Option<&'a [u8]>,
}

/// A read position in the footer; `pos <= buf.len()` always.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn byte(&mut self, what: impl fmt::Display) -> Result<u8, TailError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| malformed!("the footer ends inside {what}"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize, what: impl fmt::Display) -> Result<&'a [u8], TailError> {
        let remaining = self.rest().len();
        let out = self.rest().get(..n).ok_or_else(|| malformed!("{what} needs {n} bytes but {remaining} remain"))?;
        self.pos += n;
        Ok(out)
    }

    fn varint(&mut self, what: impl fmt::Display + Copy) -> Result<u64, TailError> {
        let mut value = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let b = self.byte(what)?;
            let bits = u64::from(b & 0x7f);
            if i == MAX_VARINT_LEN - 1 && bits > 1 {
                return Err(malformed!("varint in {what} overflows 64 bits"));
            }
            value |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed!("varint in {what} is longer than {MAX_VARINT_LEN} bytes"))
    }

    fn binary(&mut self, what: impl fmt::Display + Copy) -> Result<&'a [u8], TailError> {
        let len = self.varint(what)?;
        let remaining = self.rest().len();
        match usize::try_from(len) {
            Ok(n) if n <= remaining => self.take(n, what),
            _ => Err(malformed!("binary length {len} of {what} exceeds the remaining {remaining} bytes")),
        }
    }

    /// The next field's id and type in struct `of`, or `None` at its STOP.
    fn field_header(&mut self, last_id: i16, of: impl fmt::Display + Copy) -> Result<Option<(i16, u8)>, TailError> {
        let here = FieldHeader { last_id, of };
        let b = self.byte(here)?;
        let ty = b & 0x0f;
        if ty == 0 {
            return Ok(None);
        }
        let delta = b >> 4;
        let id = if delta != 0 {
            last_id.checked_add(i16::from(delta)).ok_or_else(|| malformed!("the field id in {here} overflows"))?
        } else {
            let raw = self.varint(here)?;
            let id = (raw >> 1) as i64 ^ -((raw & 1) as i64);
            i16::try_from(id).map_err(|_| malformed!("the field id {id} in {here} is outside the i16 range"))?
        };
        Ok(Some((id, ty)))
    }

    fn file_crypto_metadata(&mut self) -> Result<FileCryptoMetaData<'a>, TailError> {
        const OF: &str = "FileCryptoMetaData";
        let mut meta = FileCryptoMetaData { algorithm: None, key_metadata: None };
        let mut last = 0;
        while let Some((id, ty)) = self.field_header(last, OF)? {
            last = id;
            let at = At { field: id, of: OF };
            match id {
                1 => {
                    expect_type(at, ty, STRUCT, "struct")?;
                    once(at, meta.algorithm.is_some())?;
                    meta.algorithm = Some(self.encryption_algorithm(2)?);
                }
                2 => {
                    expect_type(at, ty, BINARY, "binary")?;
                    once(at, meta.key_metadata.is_some())?;
                    meta.key_metadata = Some(self.binary(at)?);
                }
                _ => self.skip(ty, 2, at)?,
            }
        }
        Ok(meta)
    }

    /// The `EncryptionAlgorithm` union at `depth`: exactly one member.
    fn encryption_algorithm(&mut self, depth: usize) -> Result<(Algorithm, AesParams<'a>), TailError> {
        const OF: &str = "EncryptionAlgorithm";
        let (id, ty) = self.field_header(0, OF)?.ok_or(TailError::MissingAlgorithm)?;
        let (algorithm, name) = match id {
            1 => (Algorithm::AesGcmV1, "AesGcmV1"),
            2 => (Algorithm::AesGcmCtrV1, "AesGcmCtrV1"),
            other => return Err(TailError::UnknownAlgorithm(other)),
        };
        expect_type(At { field: id, of: OF }, ty, STRUCT, "struct")?;
        let params = self.aes_params(name, depth + 1)?;
        if self.field_header(id, OF)?.is_some() {
            return Err(malformed!("EncryptionAlgorithm sets more than one member"));
        }
        Ok((algorithm, params))
    }

    /// `AesGcmV1` or `AesGcmCtrV1` (the same three fields) at `depth`.
    fn aes_params(&mut self, of: &'static str, depth: usize) -> Result<AesParams<'a>, TailError> {
        let mut params = AesParams::default();
        let mut last = 0;
        while let Some((id, ty)) = self.field_header(last, of)? {
            last = id;
            let at = At { field: id, of };
            match id {
                1 => {
                    expect_type(at, ty, BINARY, "binary")?;
                    once(at, params.aad_prefix.is_some())?;
                    params.aad_prefix = Some(self.binary(at)?);
                }
                2 => {
                    expect_type(at, ty, BINARY, "binary")?;
                    once(at, params.aad_file_unique.is_some())?;
                    params.aad_file_unique = Some(self.binary(at)?);
                }
                3 => {
                    once(at, params.supply_aad_prefix.is_some())?;
                    params.supply_aad_prefix = Some(match ty {
                        BOOL_TRUE => true,
                        BOOL_FALSE => false,
                        _ => return Err(malformed!("{at} is not a bool (type {ty})")),
                    });
                }
                _ => self.skip(ty, depth + 1, at)?,
            }
        }
        Ok(params)
    }

    /// Skips a value of type `ty` at nesting `depth`, inside `at`. A bool
    /// struct field has no bytes (its value is the type); in a collection,
    /// see [`Cursor::skip_element`].
    fn skip(&mut self, ty: u8, depth: usize, at: At) -> Result<(), TailError> {
        match ty {
            BOOL_TRUE | BOOL_FALSE => Ok(()),
            BYTE => self.take(1, at).map(drop),
            I16 | I32 | I64 => self.varint(at).map(drop),
            DOUBLE => self.take(8, at).map(drop),
            BINARY => self.binary(at).map(drop),
            UUID => self.take(16, at).map(drop),
            LIST | SET => {
                nest(depth, at)?;
                let header = self.byte(at)?;
                if header == 0 {
                    // An empty list some writers emit with element type 0.
                    return Ok(());
                }
                let elem = element_type(header & 0x0f, at)?;
                let count = match header >> 4 {
                    15 => self.varint(at)?,
                    n => u64::from(n),
                };
                self.fits(count, 1, "list", at)?;
                for _ in 0..count {
                    self.skip_element(elem, depth + 1, at)?;
                }
                Ok(())
            }
            MAP => {
                nest(depth, at)?;
                let count = self.varint(at)?;
                if count == 0 {
                    return Ok(());
                }
                let kinds = self.byte(at)?;
                let (key, value) = (element_type(kinds >> 4, at)?, element_type(kinds & 0x0f, at)?);
                self.fits(count, 2, "map", at)?;
                for _ in 0..count {
                    self.skip_element(key, depth + 1, at)?;
                    self.skip_element(value, depth + 1, at)?;
                }
                Ok(())
            }
            STRUCT => {
                nest(depth, at)?;
                let mut last = 0;
                while let Some((id, ty)) = self.field_header(last, format_args!("a struct in {at}"))? {
                    last = id;
                    self.skip(ty, depth + 1, at)?;
                }
                Ok(())
            }
            _ => Err(malformed!("{at} has unknown type {ty}")),
        }
    }

    /// Skips one element of a list, set or map: a bool is one byte there.
    fn skip_element(&mut self, ty: u8, depth: usize, at: At) -> Result<(), TailError> {
        if ty == BOOL_TRUE || ty == BOOL_FALSE { self.take(1, at).map(drop) } else { self.skip(ty, depth, at) }
    }

    /// Rejects a collection of `count` entries of at least `min` bytes each
    /// that cannot fit in the bytes left, before looping over it.
    fn fits(&self, count: u64, min: u64, kind: &str, at: At) -> Result<(), TailError> {
        let remaining = self.rest().len();
        if count.saturating_mul(min) > remaining as u64 {
            return Err(malformed!("a {kind} of {count} entries in {at} exceeds the remaining {remaining} bytes"));
        }
        Ok(())
    }
}

fn expect_type(at: At, ty: u8, want: u8, name: &str) -> Result<(), TailError> {
    if ty == want { Ok(()) } else { Err(malformed!("{at} is not a {name} (type {ty})")) }
}

fn once(at: At, seen: bool) -> Result<(), TailError> {
    if seen { Err(malformed!("{at} appears twice")) } else { Ok(()) }
}

fn nest(depth: usize, at: At) -> Result<(), TailError> {
    if depth > MAX_DEPTH { Err(malformed!("nesting deeper than {MAX_DEPTH} in {at}")) } else { Ok(()) }
}

fn element_type(ty: u8, at: At) -> Result<u8, TailError> {
    if (BOOL_TRUE..=UUID).contains(&ty) {
        Ok(ty)
    } else {
        Err(malformed!("a collection in {at} has unknown element type {ty}"))
    }
}

#[cfg(test)]
#[path = "pme_tail_tests.rs"]
mod tests;
