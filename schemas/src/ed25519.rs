//! Byte-level checks on Ed25519 point encodings, shared by the key registry
//! (which refuses weak keys) and batch verification (which refuses what
//! `verify_strict` would before batching).
//!
//! Key decision: compare bytes, never decompress. For a canonical encoding,
//! "decompresses to a point of small order" is exactly "is one of eight
//! encodings", so both checks cost a few comparisons per signature; why they
//! matter is in docs/security.md ("Batch verification").

use ed25519_dalek::Signature;

/// The canonical encodings of the eight points of order dividing 8
/// (curve25519-dalek's `EIGHT_TORSION`, compressed; a test checks them).
pub(crate) const SMALL_ORDER_ENCODINGS: [[u8; 32]; 8] = [
    [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20,
        0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
    ],
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf,
        0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5, 0xdf,
        0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x85,
    ],
    [0; 32],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20,
        0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0xfa,
    ],
];

/// Whether `R` could pass `verify_strict`: a canonical encoding (`y < p`, and
/// no sign bit on `x = 0`) of a point that is not of small order. For a
/// canonical encoding, "decompresses to a small-order point" is exactly "is
/// one of the eight small-order encodings", so this is byte compares only.
/// Whether `R` is a point at all is left to the batch (it fails otherwise).
pub(crate) fn r_passes_strict_prechecks(sig: &Signature) -> bool {
    let r = sig.r_bytes();
    is_canonical_point_encoding(r) && !SMALL_ORDER_ENCODINGS.contains(r)
}

/// `y < p = 2^255 - 19` and, if `x = 0` (`y = ±1`), a clear sign bit: the
/// encodings `compress(decompress(b)) == b` holds for (a test checks it).
pub(crate) fn is_canonical_point_encoding(b: &[u8; 32]) -> bool {
    let middle_all = |v: u8| b[1..31].iter().all(|&x| x == v);
    let high = b[31] & 0x7f;
    let sign = b[31] & 0x80 != 0;
    let y_ge_p = high == 0x7f && middle_all(0xff) && b[0] >= 0xed;
    let y_is_one = high == 0 && middle_all(0) && b[0] == 1;
    let y_is_minus_one = high == 0x7f && middle_all(0xff) && b[0] == 0xec;
    !y_ge_p && !(sign && (y_is_one || y_is_minus_one))
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use proptest::prelude::*;

    #[test]
    fn small_order_encodings_are_the_eight_torsion_points() {
        let mut from_dalek: Vec<[u8; 32]> = EIGHT_TORSION.iter().map(|p| p.compress().to_bytes()).collect();
        let mut ours = SMALL_ORDER_ENCODINGS.to_vec();
        from_dalek.sort();
        ours.sort();
        assert_eq!(from_dalek, ours);
    }

    fn decompresses_canonically(b: &[u8; 32]) -> Option<bool> {
        CompressedEdwardsY(*b).decompress().map(|p| p.compress().to_bytes() == *b)
    }

    #[test]
    fn canonical_check_matches_decompress_compress_on_edge_encodings() {
        let mut edges = Vec::new();
        for low in 0u8..=0xff {
            for sign in [0u8, 0x80] {
                let mut near_p = [0xffu8; 32];
                near_p[0] = low;
                near_p[31] = 0x7f | sign;
                edges.push(near_p);
                let mut small = [0u8; 32];
                small[0] = low;
                small[31] = sign;
                edges.push(small);
            }
        }
        let mut checked = 0;
        for b in edges {
            if let Some(canonical) = decompresses_canonically(&b) {
                assert_eq!(is_canonical_point_encoding(&b), canonical, "{b:02x?}");
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} edge encodings were points");
    }

    proptest! {
        #[test]
        fn canonical_check_matches_decompress_compress(b in any::<[u8; 32]>()) {
            if let Some(canonical) = decompresses_canonically(&b) {
                prop_assert_eq!(is_canonical_point_encoding(&b), canonical);
            }
        }
    }
}
