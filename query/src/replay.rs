//! The nonces of requests seen while their signatures are fresh: a captured
//! request sent again is refused. Bounded: when full, new requests are
//! refused (503) rather than forgetting a nonce early, which would reopen
//! the window for a replay.
//!
//! Each replica remembers what it served. A replay sent to another replica
//! within the freshness window is not caught there; the window (60 s by
//! default) bounds it, and docs/query.md says so.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use sha2::{Digest as _, Sha256};

/// Why a nonce was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The key already used this nonce within the window.
    Replayed,
    /// The memory is full of nonces still fresh.
    Full,
}

/// The nonces seen, each until its signature stops being fresh.
pub struct Nonces {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    until: HashMap<u128, u64>,
    by_expiry: BTreeSet<(u64, u128)>,
}

impl Nonces {
    /// Remembers at most `capacity` nonces at once.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, inner: Mutex::new(Inner::default()) }
    }

    /// Takes `nonce` of `key_id`, remembered until `expires_s`; `now_s`
    /// forgets what has expired.
    ///
    /// # Errors
    /// [`Refused`].
    pub fn claim(&self, key_id: &str, nonce: &str, expires_s: u64, now_s: u64) -> Result<(), Refused> {
        let digest = Sha256::new().chain_update(key_id).chain_update([0]).chain_update(nonce).finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        let id = u128::from_be_bytes(id);
        // Updated whole under the lock: a poisoned lock still holds a
        // consistent table.
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(&(until, old)) = inner.by_expiry.first()
            && until <= now_s
        {
            inner.by_expiry.remove(&(until, old));
            inner.until.remove(&old);
        }
        if inner.until.contains_key(&id) {
            return Err(Refused::Replayed);
        }
        if inner.until.len() >= self.capacity {
            return Err(Refused::Full);
        }
        inner.until.insert(id, expires_s);
        inner.by_expiry.insert((expires_s, id));
        Ok(())
    }

    /// Nonces remembered now.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).until.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_taken_once_per_key_until_it_expires() {
        let n = Nonces::new(2);
        assert_eq!(n.claim("k", "a", 100, 10), Ok(()));
        assert_eq!(n.claim("k", "a", 100, 50), Err(Refused::Replayed));
        assert_eq!(n.claim("other", "a", 100, 50), Ok(()), "nonces are per key");
        assert_eq!(n.claim("k", "b", 100, 50), Err(Refused::Full), "full: refuse, never forget early");
        assert_eq!(n.claim("k", "b", 200, 100), Ok(()), "expired nonces make room");
        assert_eq!(n.len(), 1);
        assert_eq!(n.claim("k", "a", 300, 100), Ok(()), "an expired nonce is fresh again (its signature is not)");
    }
}
