//! The peer: Automerge 0.12 applying the same edits as remote changes.
//!
//! Mapping, one Automerge document per patient and one change per event:
//! registers are puts on the root map (ints as `Int`, decimals as `F64`,
//! strings as `Str`), sets are a map per set field holding `element -> true`
//! with a delete for a remove, and notes are string inserts at the end of a
//! list. The changes are made beforehand by one author document per patient,
//! then applied one by one to fresh documents: the "apply remote edits" work
//! a merger does. One author per patient gives Automerge a linear history,
//! which is its cheap case.

use std::collections::HashMap;

use automerge::transaction::{Transactable as _, Transaction};
use automerge::{ActorId, Automerge, Change, ObjId, ObjType, ROOT, ReadDoc as _, ScalarValue};
use serde_json::Value;
use tidemark_schemas::{EditEvent, Op};

/// The workload's events as Automerge changes, in stream order, each with
/// its patient.
pub fn author_changes(events: &[EditEvent]) -> Vec<(&str, Change)> {
    author_changes_keeping_authors(events).0
}

/// As [`author_changes`], also returning the author documents. A memory
/// measurement keeps them alive: freed just before a fold, their pages would
/// be reused by the fold's documents and the resident set would not grow.
pub fn author_changes_keeping_authors(events: &[EditEvent]) -> (Vec<(&str, Change)>, Vec<Automerge>) {
    struct Author {
        doc: Automerge,
        objects: HashMap<String, ObjId>,
    }
    let mut authors: HashMap<&str, Author> = HashMap::new();
    let mut stream = Vec::with_capacity(events.len());
    for e in events {
        let author = authors.entry(&e.patient_id).or_insert_with(|| Author {
            doc: Automerge::new().with_actor(ActorId::from(e.patient_id.as_bytes())),
            objects: HashMap::new(),
        });
        let mut tx = author.doc.transaction();
        for op in &e.ops {
            apply_op(&mut tx, &mut author.objects, op);
        }
        tx.commit();
        let change = author.doc.get_last_local_change().expect("the transaction made a change");
        stream.push((e.patient_id.as_str(), change));
    }
    (stream, authors.into_values().map(|a| a.doc).collect())
}

fn apply_op(tx: &mut Transaction<'_>, objects: &mut HashMap<String, ObjId>, op: &Op) {
    let mut object = |tx: &mut Transaction<'_>, kind: ObjType| -> ObjId {
        if let Some(o) = objects.get(op.path()) {
            return o.clone();
        }
        let o = tx.put_object(ROOT, op.path(), kind).expect("a new object at the root");
        objects.insert(op.path().to_owned(), o.clone());
        o
    };
    match op {
        Op::Set { path, value } => tx.put(ROOT, path.as_str(), scalar(value)).expect("put"),
        Op::Clear { path } => tx.put(ROOT, path.as_str(), ScalarValue::Null).expect("put"),
        Op::Add { value, .. } => {
            let o = object(tx, ObjType::Map);
            tx.put(&o, value.as_str().unwrap_or_default(), true).expect("put");
        }
        Op::Remove { value, .. } => {
            let o = object(tx, ObjType::Map);
            let key = value.as_str().unwrap_or_default();
            if tx.get(&o, key).ok().flatten().is_some() {
                tx.delete(&o, key).expect("delete");
            }
        }
        Op::Append { value, .. } => {
            let o = object(tx, ObjType::List);
            let len = tx.length(&o);
            tx.insert(&o, len, value["text"].as_str().unwrap_or_default()).expect("insert");
        }
    }
}

fn scalar(v: &Value) -> ScalarValue {
    match v {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::Number(n) => {
            n.as_i64().map_or_else(|| ScalarValue::F64(n.as_f64().unwrap_or_default()), ScalarValue::Int)
        }
        Value::String(s) => ScalarValue::from(s.as_str()),
        other => ScalarValue::from(other.to_string()),
    }
}

/// Documents by patient, in the map the merger keeps its own in.
pub type Replicas<'a> = HashMap<&'a str, Automerge, foldhash::quality::RandomState>;

/// Applies the changes one by one, as remote changes, to one fresh document
/// per patient.
pub fn apply_remote(stream: Vec<(&str, Change)>) -> Replicas<'_> {
    let mut docs = Replicas::default();
    for (patient, change) in stream {
        docs.entry(patient).or_default().apply_changes([change]).expect("a remote change applies");
    }
    docs
}

#[cfg(test)]
mod tests {
    use automerge::ObjType;

    use super::*;
    use tidemark_testkit::workload;

    #[test]
    fn one_change_per_event_and_replicas_hold_the_edits() {
        let events = workload::generate(50, 5);
        let stream = author_changes(&events);
        assert_eq!(stream.len(), events.len());
        let docs = apply_remote(stream);
        assert_eq!(docs.len(), 50);
        for (patient, doc) in &docs {
            let mine: Vec<&EditEvent> = events.iter().filter(|e| e.patient_id == *patient).collect();
            let notes = mine.iter().flat_map(|e| &e.ops).filter(|o| matches!(o, Op::Append { .. })).count();
            let list = doc.get(ROOT, "notes").expect("reads").map(|(_, id)| id);
            assert_eq!(list.as_ref().map_or(0, |l| doc.length(l)), notes, "{patient}");
            if let Some(l) = list {
                assert_eq!(doc.object_type(&l).expect("an object"), ObjType::List);
            }
        }
    }
}
