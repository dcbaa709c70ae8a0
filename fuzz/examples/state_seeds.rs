//! Writes the seeds of the `state_decode` target: the encoded state of each
//! patient of the golden envelopes (`tests/data/envelopes.golden.ndjson`),
//! folded as the merger does, plus one document with every golden event.
//! Regenerate after a change of the state format:
//!
//! ```text
//! cargo +nightly run --manifest-path fuzz/Cargo.toml --example state_seeds
//! ```

use std::path::Path;

use tidemark_crdt::PatientDoc;
use tidemark_crdt::fold::Fold;
use tidemark_schemas::{Catalog, EditEvent};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("seeds/state_decode");
    std::fs::create_dir_all(&out).expect("seed directory");
    let text = std::fs::read(root.join("../tests/data/envelopes.golden.ndjson")).expect("golden envelopes");
    let lines = tidemark_schemas::lines::split_lines(&text, true);
    let mut fold = Fold::new(Catalog::builtin(), None);
    assert!(fold.fold_lines(&lines).is_empty(), "every golden envelope folds");
    for (patient, doc) in fold.docs() {
        std::fs::write(out.join(format!("{patient}.tmdc")), doc.encode()).expect("seed written");
    }
    // Every event of tests/data/events.ndjson, re-addressed to one patient:
    // one document with registers, sets, logs and conflicts together.
    let events = std::fs::read_to_string(root.join("../tests/data/events.ndjson")).expect("events");
    let mut doc = PatientDoc::new("pt-seed");
    for line in events.lines().filter(|l| !l.trim().is_empty()) {
        let mut ev = EditEvent::from_json(line.as_bytes()).expect("a golden event");
        ev.patient_id = "pt-seed".into();
        doc.apply(&ev).expect("a golden event applies");
    }
    std::fs::write(out.join("pt-seed-all.tmdc"), doc.encode()).expect("seed written");
    println!("wrote {} seeds to {}", fold.docs().len() + 1, out.display());
}
