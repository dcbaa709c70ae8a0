//! The seeded workload folded as the merger folds it, and the views it
//! publishes: the input of the state-codec and archive benches.
//!
//! Key decision: snapshots are built from views the CRDT really produced
//! (conflicts, removed codes, notes, version vectors of the workload's mix),
//! not from hand-made rows, so the Parquet and the encrypted bytes are those
//! the archiver would write for this workload.

use std::collections::HashMap;

use tidemark_crdt::PatientDoc;
use tidemark_crdt::fold::apply_event;
use tidemark_schemas::{EditEvent, PatientView};

/// Every patient's document after folding `events` with the merger's
/// `apply_event`, sorted by patient id.
///
/// # Panics
/// If an event does not apply: the workload's events all do.
pub fn docs(events: &[EditEvent]) -> Vec<PatientDoc> {
    let mut by_patient: HashMap<String, PatientDoc> = HashMap::new();
    for e in events {
        apply_event(&mut by_patient, e).expect("generated events apply");
    }
    let mut docs: Vec<PatientDoc> = by_patient.into_values().collect();
    docs.sort_by(|a, b| a.patient_id().cmp(b.patient_id()));
    docs
}

/// The public view of each document, in the same order.
pub fn views(docs: &[PatientDoc]) -> Vec<PatientView> {
    docs.iter().map(PatientDoc::view).collect()
}

/// Each view as the state topic carries it: its JSON bytes.
pub fn state_records(views: &[PatientView]) -> Vec<Vec<u8>> {
    views.iter().map(|v| serde_json::to_vec(v).expect("a view always serialises")).collect()
}

/// Total bytes of a list of records.
pub fn total_bytes(records: &[Vec<u8>]) -> usize {
    records.iter().map(Vec::len).sum()
}

/// Each record copied into a fresh vector: the least a codec that returns
/// one `Vec<u8>` per record can cost (an allocation and a memcpy).
pub fn copy_each(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
    records.iter().map(|r| r.to_vec()).collect()
}
