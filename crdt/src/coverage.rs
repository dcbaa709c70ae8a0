//! Write identities and coverage: the one idea registers and sets share.
//!
//! Every write has a total order key `(hlc, source, event_id, op)`. A write w
//! *covers* a set of older writes: with `observed` (even empty), the writes x
//! with `x.hlc <= observed[x.source]`; blind, every x ordered before w. The
//! union of many coverages is again one version vector (pointwise max) plus
//! one floor (the greatest blind write), so a field keeps O(sources) of
//! coverage however many writes it saw.

use tidemark_schemas::{Hlc, VersionVector};
use uuid::Uuid;

use super::vecmap::{Key, VecMap};

/// A version vector (the greatest HLC seen per source), ascending by source
/// like the schemas' `VersionVector`, with the names inline.
pub type Clock = VecMap<Key, Hlc>;

/// Raises `clock[source]` to `hlc`; `source` is only copied when new.
pub fn observe(clock: &mut Clock, source: &str, hlc: Hlc) -> bool {
    match clock.get_mut(source) {
        Some(seen) if *seen >= hlc => false,
        Some(seen) => {
            *seen = hlc;
            true
        }
        None => {
            clock.insert(Key::from(source), hlc);
            true
        }
    }
}

/// Pointwise maximum of two clocks, into `into`; whether it grew.
pub fn join(into: &mut Clock, other: &Clock) -> bool {
    let mut grew = false;
    for (source, hlc) in other {
        grew |= observe(into, source, *hlc);
    }
    grew
}

/// The clock as the schemas' version vector (for views and tests).
pub fn to_version_vector(clock: &Clock) -> VersionVector {
    clock.iter().map(|(s, h)| (s.to_string(), *h)).collect()
}

/// The identity and order key of one write: ordered by hlc, then source, then
/// event id, then op index. Total, and equal only for the same op of the same
/// event.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId {
    /// The event's HLC.
    pub hlc: Hlc,
    /// The event's source.
    pub source: Key,
    /// The event's id.
    pub event_id: Uuid,
    /// The op's index in the event.
    pub op: u32,
}

/// The union of the coverage of every write a field has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Pointwise max of the `observed` vectors of non-blind writes.
    pub vv: Clock,
    /// The greatest blind write: it covers everything ordered before it.
    pub floor: Option<WriteId>,
}

impl Coverage {
    /// Whether some write seen so far covers `id`.
    pub fn covers(&self, id: &WriteId) -> bool {
        self.floor.as_ref().is_some_and(|f| id < f) || self.vv.get(&*id.source).is_some_and(|seen| id.hlc <= *seen)
    }

    /// Adds the coverage of write `id` (blind when `observed` is `None`).
    /// Returns whether the coverage grew.
    pub fn absorb(&mut self, id: &WriteId, observed: Option<&VersionVector>) -> bool {
        match observed {
            Some(o) => {
                let mut grew = false;
                for (source, hlc) in o {
                    grew |= observe(&mut self.vv, source, *hlc);
                }
                grew
            }
            None => {
                if self.floor.as_ref().is_some_and(|f| f >= id) {
                    false
                } else {
                    self.floor = Some(id.clone());
                    true
                }
            }
        }
    }

    /// Joins another field's coverage into this one.
    pub fn join(&mut self, other: &Coverage) {
        join(&mut self.vv, &other.vv);
        if let Some(f) = &other.floor
            && self.floor.as_ref().is_none_or(|mine| mine < f)
        {
            self.floor = Some(f.clone());
        }
    }

    /// Whether nothing has been absorbed.
    pub fn is_empty(&self) -> bool {
        self.vv.is_empty() && self.floor.is_none()
    }
}

/// Coverage that is mostly empty, held out of line when it is not: a set
/// element's removes. Most elements are only ever added (13% of the
/// benchmark's set ops are removes), and an inline [`Coverage`] made every
/// element twice the size.
///
/// Invariant: `Some` only when non-empty, so that equal coverage compares
/// equal and encodes the same (the codec writes the empty one for `None`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SparseCoverage(Option<Box<Coverage>>);

/// What an absent [`SparseCoverage`] covers: nothing.
static NO_COVERAGE: Coverage = Coverage { vv: VecMap::new(), floor: None };

impl SparseCoverage {
    /// The coverage, empty when none was absorbed.
    pub fn get(&self) -> &Coverage {
        self.0.as_deref().unwrap_or(&NO_COVERAGE)
    }

    /// As [`Coverage::covers`].
    pub fn covers(&self, id: &WriteId) -> bool {
        self.0.as_ref().is_some_and(|c| c.covers(id))
    }

    /// As [`Coverage::absorb`]; allocates only when the coverage grows.
    pub fn absorb(&mut self, id: &WriteId, observed: Option<&VersionVector>) -> bool {
        match &mut self.0 {
            Some(c) => c.absorb(id, observed),
            None => {
                let mut c = Coverage::default();
                let grew = c.absorb(id, observed);
                if grew {
                    self.0 = Some(Box::new(c));
                }
                grew
            }
        }
    }

    /// As [`Coverage::join`].
    pub fn join(&mut self, other: &SparseCoverage) {
        match (&mut self.0, &other.0) {
            (_, None) => {}
            (Some(mine), Some(theirs)) => mine.join(theirs),
            (None, Some(theirs)) => self.0 = Some(theirs.clone()),
        }
    }
}

impl From<Coverage> for SparseCoverage {
    fn from(c: Coverage) -> Self {
        Self((!c.is_empty()).then(|| Box::new(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(wall: u64, source: &str, n: u8) -> WriteId {
        WriteId { hlc: Hlc::new(wall, 0), source: source.into(), event_id: Uuid::from_bytes([n; 16]), op: 0 }
    }

    #[test]
    fn sparse_coverage_is_none_until_it_grows() {
        let mut c = SparseCoverage::default();
        let empty = VersionVector::new();
        assert!(!c.absorb(&id(5, "a", 1), Some(&empty)));
        assert_eq!(c, SparseCoverage::default(), "nothing absorbed, nothing held");
        assert_eq!(SparseCoverage::from(Coverage::default()), SparseCoverage::default());
        assert!(c.absorb(&id(5, "a", 1), None));
        assert!(c.covers(&id(4, "a", 1)) && !c.covers(&id(6, "a", 1)));
        let mut d = SparseCoverage::default();
        d.join(&c);
        assert_eq!(d, c);
        assert_eq!(d.get(), c.get());
    }

    #[test]
    fn blind_covers_strictly_older() {
        let mut c = Coverage::default();
        assert!(c.absorb(&id(10, "a", 1), None));
        assert!(c.covers(&id(9, "z", 9)));
        assert!(c.covers(&id(10, "a", 0)));
        assert!(!c.covers(&id(10, "a", 1)), "a write never covers itself");
        assert!(!c.covers(&id(10, "b", 0)));
        assert!(!c.absorb(&id(5, "a", 1), None), "an older blind write adds nothing");
    }

    #[test]
    fn observed_covers_exactly_what_it_saw() {
        let mut c = Coverage::default();
        let seen: VersionVector = [("a".to_owned(), Hlc::new(10, 0))].into_iter().collect();
        assert!(c.absorb(&id(20, "b", 1), Some(&seen)));
        assert!(c.covers(&id(10, "a", 7)));
        assert!(!c.covers(&id(11, "a", 7)));
        assert!(!c.covers(&id(1, "c", 7)), "a source it never saw is not covered");
        let empty = VersionVector::new();
        assert!(!c.absorb(&id(30, "b", 2), Some(&empty)), "an empty observed covers nothing");
    }
}
