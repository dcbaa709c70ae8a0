#![allow(clippy::unwrap_used)]
use std::sync::LazyLock;

use proptest::prelude::*;

use super::*;

static KEYS: LazyLock<Vec<RecipientSecretKey>> =
    LazyLock::new(|| (0..3).map(|_| RecipientSecretKey::generate().unwrap()).collect());

const SNAP: &str = "tidemark.snap-019ae000-0000-7000-8000-000000000001";

fn wraps(master: &SnapshotKey, n: usize) -> Vec<MasterKeyWrap> {
    KEYS[..n].iter().map(|k| wrap_master_key(master, SNAP, k.public_key()).unwrap()).collect()
}

#[test]
fn every_recipient_recovers_the_committed_master_key_and_others_are_named() {
    let master = SnapshotKey::generate().unwrap();
    let c = commitment(&master, SNAP);
    let w = wraps(&master, 2);
    for k in &KEYS[..2] {
        assert_eq!(unwrap_master_key(&w, SNAP, &c, k).unwrap().bytes(), master.bytes());
    }
    let err = unwrap_master_key(&w, SNAP, &c, &KEYS[2]).unwrap_err();
    assert!(matches!(err, SnapshotKeyError::NotARecipient { .. }), "{err}");
    assert!(err.to_string().contains(&KEYS[0].key_id()), "names the recipients: {err}");
}

#[test]
fn a_wrap_moved_to_another_snapshot_or_recipient_fails() {
    let master = SnapshotKey::generate().unwrap();
    let other = "tidemark.snap-019ae000-0000-7000-8000-000000000002";
    let w = wraps(&master, 2);
    let err = unwrap_master_key(&w, other, &commitment(&master, other), &KEYS[0]).unwrap_err();
    assert!(matches!(err, SnapshotKeyError::UnwrapFailed { .. }), "{err}");
    // Recipient 1's wrap relabelled as recipient 0's.
    let mut swapped = w[1].clone();
    swapped.fingerprint = w[0].fingerprint;
    let err = unwrap_master_key(&[swapped], SNAP, &commitment(&master, SNAP), &KEYS[0]).unwrap_err();
    assert!(matches!(err, SnapshotKeyError::UnwrapFailed { .. }), "{err}");
}

#[test]
fn a_wrap_of_another_key_than_the_committed_one_is_refused() {
    let (master, other) = (SnapshotKey::generate().unwrap(), SnapshotKey::generate().unwrap());
    let w = wraps(&other, 1);
    let err = unwrap_master_key(&w, SNAP, &commitment(&master, SNAP), &KEYS[0]).unwrap_err();
    assert!(matches!(err, SnapshotKeyError::CommitmentMismatch { .. }), "{err}");
}

#[test]
fn master_key_ids_parquet_cannot_carry_are_refused() {
    assert!(master_key_id("019ae000-0000-7000-8000-000000000001").is_ok());
    for bad in ["", "a:b", "a,b", "a;b", "a b", "é", &"x".repeat(200)] {
        assert!(master_key_id(bad).is_err(), "{bad:?}");
    }
}

/// The local wrap as parquet-java's `KeyToolkit.encryptKeyLocally` lays it
/// out: checked here by opening it with ring directly, nonce first.
#[test]
fn the_data_key_wrap_is_nonce_ciphertext_tag_with_the_id_as_aad() {
    let (master, data) = (SnapshotKey::generate().unwrap(), SnapshotKey::generate().unwrap());
    let wrapped = wrap_data_key(&master, SNAP, &data).unwrap();
    assert_eq!(wrapped.len(), 80);
    let mut raw = B64.decode(&wrapped).unwrap();
    let (nonce, sealed) = raw.split_at_mut(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).unwrap();
    let plain = aead(master.bytes()).open_in_place(nonce, Aad::from(SNAP.as_bytes()), sealed).unwrap();
    assert_eq!(plain, data.bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any data key round-trips; any flipped bit of the wrap, another master
    /// key or another id fails with the master key id named.
    #[test]
    fn data_key_wrap_round_trips_and_any_change_fails(
        data in any::<[u8; 32]>(),
        flip in 0usize..WRAPPED_DATA_LEN * 8,
    ) {
        let master = SnapshotKey::generate().unwrap();
        let data = SnapshotKey::from_bytes(&data);
        let wrapped = wrap_data_key(&master, SNAP, &data).unwrap();
        let back = unwrap_data_key(&master, SNAP, &wrapped).unwrap();
        prop_assert_eq!(back.bytes(), data.bytes());
        let mut raw = B64.decode(&wrapped).unwrap();
        raw[flip / 8] ^= 1 << (flip % 8);
        let err = unwrap_data_key(&master, SNAP, &B64.encode(&raw)).unwrap_err();
        prop_assert!(err.to_string().contains(SNAP), "{}", err);
        prop_assert!(unwrap_data_key(&SnapshotKey::generate().unwrap(), SNAP, &wrapped).is_err());
        prop_assert!(unwrap_data_key(&master, "tidemark.snap-other", &wrapped).is_err());
    }

    /// Any flipped bit of a master key wrap (ciphertext or KEM ciphertext)
    /// fails to unwrap rather than yield another key.
    #[test]
    fn any_flip_in_a_master_key_wrap_fails(flip in 0usize..(CT_LEN + WRAPPED_MASTER_LEN) * 8) {
        let master = SnapshotKey::generate().unwrap();
        let mut w = wraps(&master, 1);
        let (byte, bit) = (flip / 8, 1 << (flip % 8));
        if byte < CT_LEN { w[0].kem_ciphertext[byte] ^= bit } else { w[0].wrapped_key[byte - CT_LEN] ^= bit }
        let err = unwrap_master_key(&w, SNAP, &commitment(&master, SNAP), &KEYS[0]).unwrap_err();
        prop_assert!(matches!(err, SnapshotKeyError::UnwrapFailed { .. }), "{}", err);
    }

    #[test]
    fn garbage_wrapped_data_keys_are_refused_not_panicked_on(s in "\\PC{0,120}") {
        let master = SnapshotKey::from_bytes(&[1; 32]);
        prop_assert!(unwrap_data_key(&master, SNAP, &s).is_err());
    }
}
