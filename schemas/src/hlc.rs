//! Hybrid logical clock timestamps and version vectors.
//!
//! An HLC pairs a wall-clock millisecond reading with a logical counter so
//! that causally later events compare greater even when clocks tie or drift.
//! Field order matters: the derived `Ord` compares `wall_ms`, then `logical`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A hybrid logical clock reading, totally ordered by `(wall_ms, logical)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch on the writer's clock.
    pub wall_ms: u64,
    /// Counter that orders events within the same millisecond.
    pub logical: u32,
}

impl Hlc {
    /// Builds a reading from its parts.
    pub const fn new(wall_ms: u64, logical: u32) -> Self {
        Self { wall_ms, logical }
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms, self.logical)
    }
}

/// A version vector: for each source, the greatest HLC seen from it.
///
/// A `BTreeMap` keeps iteration (and therefore encodings and hashes)
/// deterministic whatever the insertion order.
pub type VersionVector = BTreeMap<String, Hlc>;

/// Raises `into[source]` to at least `hlc` (pointwise maximum, the join of
/// version vectors).
pub fn vv_observe(into: &mut VersionVector, source: &str, hlc: Hlc) {
    match into.get_mut(source) {
        Some(seen) if *seen >= hlc => {}
        Some(seen) => *seen = hlc,
        None => {
            into.insert(source.to_owned(), hlc);
        }
    }
}

/// Pointwise maximum of two version vectors, written into `into`.
pub fn vv_join(into: &mut VersionVector, other: &VersionVector) {
    for (source, hlc) in other {
        vv_observe(into, source, *hlc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_wall_then_logical() {
        assert!(Hlc::new(1, 9) < Hlc::new(2, 0));
        assert!(Hlc::new(2, 0) < Hlc::new(2, 1));
    }

    #[test]
    fn join_is_pointwise_max() {
        let mut a = VersionVector::new();
        vv_observe(&mut a, "x", Hlc::new(5, 0));
        vv_observe(&mut a, "y", Hlc::new(1, 0));
        let mut b = VersionVector::new();
        vv_observe(&mut b, "x", Hlc::new(3, 0));
        vv_observe(&mut b, "z", Hlc::new(7, 1));
        vv_join(&mut a, &b);
        assert_eq!(a["x"], Hlc::new(5, 0));
        assert_eq!(a["y"], Hlc::new(1, 0));
        assert_eq!(a["z"], Hlc::new(7, 1));
    }
}
