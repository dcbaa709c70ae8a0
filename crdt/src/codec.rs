//! Compact, deterministic binary encoding of a [`PatientDoc`] for the
//! changelog topic, and the stable state hash built on it.
//!
//! Format v1 (all integers LEB128 varints unless said otherwise):
//!
//! ```text
//! "TMDC" 0x01
//! strings   n, n x (len, utf8)    sorted, unique: every source and author
//! patient   len, utf8
//! updated   ms
//! version   vv
//! counter   0x00 n, n x u64 LE (sorted) | 0x01 256 x u8
//! fields    n, n x (path, kind u8, body)   paths sorted
//!   register(0): coverage, n, n x (wid, author#, json value text)
//!   set(1):      n, n x (element, coverage, n, n x wid)
//!   log(2):      n, n x (wid, author#, text, 0x00 | 0x01 uuid16 op)
//! coverage  vv, 0x00 | 0x01 wid
//! vv        n, n x (source#, wall, logical)
//! wid       wall, logical, source#, uuid16, op
//! ```
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
