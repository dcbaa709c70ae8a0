//! Compact, deterministic binary encoding of a [`PatientDoc`] for the
//! changelog topic, and the stable state hash built on it.
//!
//! The format (v1) is specified byte by byte in docs/crdt.md, "Binary state
//! format v1": that block is the one copy, and the test
//! `the_documented_format_is_this_codecs` holds it to this encoder's
//! magic, version, kind numbers and counter limit.
//!
//! Key decision: the encoding is canonical — every map and list in its one
//! sorted order, strings interned in a sorted table — so equal states give
//! equal bytes, and the decoder rejects anything non-canonical. That makes the
//! SHA-256 of the bytes a state hash that replicas and the offline fold can
//! compare.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::counter::EventCounter;
use super::coverage::{Clock, Coverage, WriteId};
use super::doc::{FieldState, PatientDoc};

mod read;

pub use read::DecodeError;

/// Leading bytes of every encoded document.
pub const MAGIC: &[u8; 4] = b"TMDC";
/// The format version this build writes.
pub const FORMAT_VERSION: u8 = 1;

const KIND_REGISTER: u8 = 0;
const KIND_SET: u8 = 1;
const KIND_LOG: u8 = 2;

impl PatientDoc {
    /// The canonical binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(self);
        w.doc(self);
        w.out
    }

    /// Decodes a document, rejecting garbage and non-canonical input.
    ///
    /// # Errors
    /// [`DecodeError`] with the byte offset and what was wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        read::decode(bytes)
    }

    /// SHA-256 of the canonical encoding, hex: equal iff the states are equal.
    pub fn state_hash(&self) -> String {
        hex::encode(Sha256::digest(self.encode()))
    }
}

struct Writer<'a> {
    out: Vec<u8>,
    strings: BTreeMap<&'a str, u64>,
}

impl<'a> Writer<'a> {
    fn new(doc: &'a PatientDoc) -> Self {
        let mut set: BTreeSet<&'a str> = BTreeSet::new();
        let vv = |v: &'a Clock, set: &mut BTreeSet<&'a str>| set.extend(v.iter().map(|(s, _)| &**s));
        vv(&doc.version, &mut set);
        for f in doc.fields.values() {
            match f {
                FieldState::Register(r) => {
                    vv(&r.cov.vv, &mut set);
                    set.extend(r.cov.floor.iter().map(|w| &*w.source));
                    for x in &r.live {
                        set.insert(&x.id.source);
                        set.insert(&x.author);
                    }
                }
                FieldState::Set(s) => {
                    for e in s.elems.values() {
                        let removed = e.removed.get();
                        vv(&removed.vv, &mut set);
                        set.extend(removed.floor.iter().map(|w| &*w.source));
                        set.extend(e.adds.iter().map(|w| &*w.source));
                    }
                }
                FieldState::Log(l) => {
                    for (id, e) in &l.entries {
                        set.insert(&id.source);
                        set.insert(&e.author);
                    }
                }
            }
        }
        let strings = set.into_iter().zip(0u64..).collect();
        Self { out: Vec::with_capacity(256), strings }
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn len(&mut self, n: usize) {
        self.varint(n as u64);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.out.extend_from_slice(b);
    }

    fn sref(&mut self, s: &str) {
        let i = *self.strings.get(s).expect("the string table holds every source and author");
        self.varint(i);
    }

    fn wid(&mut self, id: &WriteId) {
        self.varint(id.hlc.wall_ms);
        self.varint(u64::from(id.hlc.logical));
        self.sref(&id.source);
        self.out.extend_from_slice(id.event_id.as_bytes());
        self.varint(u64::from(id.op));
    }

    fn vv(&mut self, vv: &Clock) {
        self.len(vv.len());
        for (s, h) in vv {
            self.sref(s);
            self.varint(h.wall_ms);
            self.varint(u64::from(h.logical));
        }
    }

    fn coverage(&mut self, c: &Coverage) {
        self.vv(&c.vv);
        match &c.floor {
            None => self.out.push(0),
            Some(f) => {
                self.out.push(1);
                self.wid(f);
            }
        }
    }

    fn doc(&mut self, doc: &PatientDoc) {
        self.out.extend_from_slice(MAGIC);
        self.out.push(FORMAT_VERSION);
        let table: Vec<&str> = self.strings.keys().copied().collect();
        self.len(table.len());
        for s in table {
            self.bytes(s.as_bytes());
        }
        self.bytes(doc.patient_id.as_bytes());
        self.varint(doc.updated_ms);
        self.vv(&doc.version);
        match &doc.counter {
            EventCounter::Exact(hashes) => {
                self.out.push(0);
                self.len(hashes.len());
                for h in hashes {
                    self.out.extend_from_slice(&h.to_le_bytes());
                }
            }
            EventCounter::Sketch(regs) => {
                self.out.push(1);
                self.out.extend_from_slice(&regs[..]);
            }
        }
        self.len(doc.fields.len());
        for (path, f) in &doc.fields {
            self.bytes(path.as_bytes());
            self.field(f);
        }
    }

    fn field(&mut self, f: &FieldState) {
        match f {
            FieldState::Register(r) => {
                self.out.push(KIND_REGISTER);
                self.coverage(&r.cov);
                self.len(r.live.len());
                for x in &r.live {
                    self.wid(&x.id);
                    self.sref(&x.author);
                    self.bytes(x.value.to_string().as_bytes());
                }
            }
            FieldState::Set(s) => {
                self.out.push(KIND_SET);
                self.len(s.elems.len());
                for (value, e) in &s.elems {
                    self.bytes(value.as_bytes());
                    self.coverage(e.removed.get());
                    self.len(e.adds.len());
                    for a in &e.adds {
                        self.wid(a);
                    }
                }
            }
            FieldState::Log(l) => {
                self.out.push(KIND_LOG);
                self.len(l.entries.len());
                for (id, e) in &l.entries {
                    self.wid(id);
                    self.sref(&e.author);
                    self.bytes(e.text.as_bytes());
                    match &e.amends {
                        None => self.out.push(0),
                        Some(a) => {
                            self.out.push(1);
                            self.out.extend_from_slice(a.event_id.as_bytes());
                            self.varint(u64::from(a.op));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod doc_tests {
    use super::{FORMAT_VERSION, KIND_LOG, KIND_REGISTER, KIND_SET, MAGIC};
    use crate::counter::{EXACT_LIMIT, REGISTERS};

    /// The fenced block under docs/crdt.md's "Binary state format v1" heading.
    fn documented_format() -> Vec<&'static str> {
        let doc = include_str!("../../docs/crdt.md");
        let section = doc.split("## Binary state format v1").nth(1).expect("docs/crdt.md has the format section");
        let block = section.split("```text\n").nth(1).and_then(|b| b.split("```").next()).expect("a text block");
        block.lines().collect()
    }

    fn row<'a>(lines: &[&'a str], label: &str) -> &'a str {
        let found = lines.iter().find(|l| l.trim_start().starts_with(label));
        found.unwrap_or_else(|| panic!("docs/crdt.md's format has no `{label}` row: {lines:#?}"))
    }

    #[test]
    fn the_documented_format_is_this_codecs() {
        let lines = documented_format();
        let magic = std::str::from_utf8(MAGIC).expect("ASCII magic");
        assert_eq!(lines[0], format!("\"{magic}\" 0x{FORMAT_VERSION:02x}"), "magic and version");
        let labels: Vec<&str> = lines.iter().filter_map(|l| l.split_whitespace().next()).collect();
        assert_eq!(
            labels,
            [
                format!("\"{magic}\""),
                "strings".into(),
                "patient".into(),
                "updated".into(),
                "version".into(),
                "counter".into(),
                "fields".into(),
                format!("register({KIND_REGISTER}):"),
                format!("set({KIND_SET}):"),
                format!("log({KIND_LOG}):"),
                "coverage".into(),
                "vv".into(),
                "wid".into(),
            ],
            "the rows, in the order the encoder writes them, with its kind numbers"
        );
        let counter = row(&lines, "counter");
        assert!(counter.contains(&format!("n <= {EXACT_LIMIT}")), "the exact counter's limit: {counter}");
        assert!(counter.contains(&format!("0x01 {REGISTERS} x u8")), "the estimator's registers: {counter}");
    }
}
