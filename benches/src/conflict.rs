//! One register, three writers: the cost of the apply that opens a conflict
//! and of the one that resolves it, for the patient CRDT and for Automerge.
//!
//! Site A writes a heart rate, then rewrites it having seen the first write;
//! site B writes concurrently with that rewrite (it saw only the first): its
//! apply opens the conflict. Site C then writes having seen both: its apply
//! resolves it.

use automerge::transaction::Transactable as _;
use automerge::{ActorId, Automerge, Change, ROOT};
use serde_json::json;
use tidemark_crdt::PatientDoc;
use tidemark_schemas::{EditEvent, Hlc, Op};
use uuid::Uuid;

const PATH: &str = "vitals.heart_rate_bpm";

/// A document before the conflicting apply, the conflicting edit, and the
/// resolving edit.
#[derive(Clone, Debug)]
pub struct Fixture<D, E> {
    /// Holds the first write and the rewrite.
    pub base: D,
    /// `base` after `conflicting`: in conflict.
    pub opened: D,
    /// Concurrent with the rewrite: opens the conflict.
    pub conflicting: E,
    /// Saw every write: resolves the conflict.
    pub resolving: E,
}

/// The patient CRDT's fixture.
pub fn tidemark() -> Fixture<PatientDoc, EditEvent> {
    let event = |n: u64, source: &str, wall: u64, observed: Option<&[(&str, u64)]>| EditEvent {
        event_id: Uuid::from_u64_pair((wall << 16) | 0x7000, 0x8000_0000_0000_0000 | n),
        patient_id: "pt-0000001".into(),
        source: source.into(),
        author: format!("clin-{n}"),
        hlc: Hlc::new(wall, 0),
        observed: observed.map(|o| o.iter().map(|(s, w)| ((*s).to_owned(), Hlc::new(*w, 0))).collect()),
        ops: vec![Op::Set { path: PATH.into(), value: json!(60 + n) }],
        audience: None,
    };
    let mut base = PatientDoc::new("pt-0000001");
    base.apply(&event(1, "site-a-ehr", 1_763_794_801_000, None)).expect("applies");
    let rewrite = event(2, "site-a-ehr", 1_763_794_802_000, Some(&[("site-a-ehr", 1_763_794_801_000)]));
    base.apply(&rewrite).expect("applies");
    let conflicting = event(3, "site-b-ehr", 1_763_794_802_500, Some(&[("site-a-ehr", 1_763_794_801_000)]));
    let seen_all = [("site-a-ehr", 1_763_794_802_000), ("site-b-ehr", 1_763_794_802_500)];
    let resolving = event(4, "site-c-lab", 1_763_794_803_000, Some(&seen_all));
    let mut opened = base.clone();
    opened.apply(&conflicting).expect("applies");
    Fixture { base, opened, conflicting, resolving }
}

/// Automerge's fixture: the same three writers as three actors.
pub fn automerge() -> Fixture<Automerge, Change> {
    let put = |doc: &mut Automerge, bpm: i64| {
        let mut tx = doc.transaction();
        tx.put(ROOT, PATH, bpm).expect("put");
        tx.commit();
        doc.get_last_local_change().expect("a change")
    };
    let mut a = Automerge::new().with_actor(ActorId::from(b"site-a-ehr".as_slice()));
    let first = put(&mut a, 61);
    let mut b = a.fork().with_actor(ActorId::from(b"site-b-ehr".as_slice()));
    let rewrite = put(&mut a, 62);
    let conflicting = put(&mut b, 63);
    let mut c = a.fork().with_actor(ActorId::from(b"site-c-lab".as_slice()));
    c.merge(&mut b).expect("merges");
    let resolving = put(&mut c, 64);
    let mut base = Automerge::new();
    base.apply_changes([first, rewrite]).expect("applies");
    let mut opened = base.clone();
    opened.apply_changes([conflicting.clone()]).expect("applies");
    Fixture { base, opened, conflicting, resolving }
}

/// Live values of the fixture's register in an Automerge document.
pub fn automerge_values(doc: &Automerge) -> usize {
    use automerge::ReadDoc as _;
    doc.get_all(ROOT, PATH).map_or(0, |v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_fixtures_open_then_resolve_a_conflict() {
        let t = tidemark();
        assert_eq!(t.base.open_conflicts(), 0);
        assert_eq!(t.opened.open_conflicts(), 1);
        let mut resolved = t.opened.clone();
        resolved.apply(&t.resolving).expect("applies");
        assert_eq!(resolved.open_conflicts(), 0);

        let a = automerge();
        assert_eq!(automerge_values(&a.base), 1);
        assert_eq!(automerge_values(&a.opened), 2);
        let mut resolved = a.opened.clone();
        resolved.apply_changes([a.resolving.clone()]).expect("applies");
        assert_eq!(automerge_values(&resolved), 1);
    }
}
