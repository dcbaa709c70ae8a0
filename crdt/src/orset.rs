//! Add-wins observed-remove set.
//!
//! Per element: the live adds and the union of the coverage of its removes. A
//! remove takes away the adds it observed (blind: the older ones); an add it
//! did not see survives, so a concurrent add wins. The element is present
//! while an add of it is live. Removes' coverage is kept even when no add is
//! live, so that an old add arriving late stays removed.

use smallvec::SmallVec;
use tidemark_schemas::VersionVector;
use tidemark_schemas::view::FieldView;

use super::coverage::{SparseCoverage, WriteId};
use super::vecmap::{Key, VecMap};

/// One element's adds and removes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    /// Live adds, ascending, unique. Inline: an element is mostly added once.
    pub(crate) adds: SmallVec<[WriteId; 1]>,
    /// Union of the coverage of the removes of this element.
    pub(crate) removed: SparseCoverage,
}

impl Element {
    fn insert_add(&mut self, id: WriteId) {
        if !self.removed.covers(&id)
            && let Err(i) = self.adds.binary_search(&id)
        {
            self.adds.insert(i, id);
        }
    }

    fn prune(&mut self) {
        let removed = &self.removed;
        self.adds.retain(|a| !removed.covers(a));
    }
}

/// A set field's state, by element.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrSet {
    pub(crate) elems: VecMap<Key, Element>,
}

impl OrSet {
    /// Applies an add; idempotent.
    pub fn add(&mut self, element: &str, id: WriteId) {
        self.entry(element).insert_add(id);
    }

    /// Applies a remove (blind when `observed` is `None`); idempotent.
    pub fn remove(&mut self, element: &str, id: &WriteId, observed: Option<&VersionVector>) {
        let e = self.entry(element);
        if e.removed.absorb(id, observed) {
            e.prune();
        }
    }

    fn entry(&mut self, element: &str) -> &mut Element {
        // The element is only copied when new.
        self.elems.get_or_insert_with(element, || Key::from(element), Element::default)
    }

    /// Joins another replica's set into this one.
    pub fn merge(&mut self, other: &OrSet) {
        for (value, theirs) in &other.elems {
            let mine = self.entry(value);
            mine.removed.join(&theirs.removed);
            for a in &theirs.adds {
                mine.insert_add(a.clone());
            }
            mine.prune();
        }
    }

    /// Whether the element is present.
    pub fn contains(&self, element: &str) -> bool {
        self.elems.get(element).is_some_and(|e| !e.adds.is_empty())
    }

    /// The present elements, sorted.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.elems.iter().filter(|(_, e)| !e.adds.is_empty()).map(|(v, _)| &**v)
    }

    /// The view: present elements, sorted.
    pub fn view(&self) -> FieldView {
        FieldView::Set { values: self.values().map(str::to_owned).collect() }
    }
}
