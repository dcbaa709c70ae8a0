//! The decoder: strict, bounded, canonical-only.

use smallvec::SmallVec;
use tidemark_schemas::{Hlc, OpId};
use uuid::Uuid;

use super::{FORMAT_VERSION, KIND_LOG, KIND_REGISTER, KIND_SET, MAGIC};
use crate::counter::{EXACT_LIMIT, EventCounter, REGISTERS};
use crate::coverage::{Clock, Coverage, SparseCoverage, WriteId};
use crate::doc::{FieldState, PatientDoc};
use crate::log::{Log, LogEntry};
use crate::orset::{Element, OrSet};
use crate::register::{RegWrite, Register};
use crate::vecmap::{Key, VecMap};

/// Why bytes are not a document: the changelog record is corrupt or from an
/// unknown format version. Stop and investigate; do not overwrite it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("patient document is not decodable at byte {offset}: {what}")]
pub struct DecodeError {
    /// Where decoding stopped.
    pub offset: usize,
    /// What was wrong there.
    pub what: String,
}

type R<T> = Result<T, DecodeError>;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    strings: Vec<Key>,
}

impl<'a> Reader<'a> {
    fn err<T>(&self, what: impl Into<String>) -> R<T> {
        Err(DecodeError { offset: self.pos, what: what.into() })
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if self.buf.len() - self.pos < n {
            return self.err(format!("needs {n} more bytes, {} left", self.buf.len() - self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> R<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return self.err("varint overflows 64 bits");
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    return self.err("varint is not in its shortest form");
                }
                return Ok(v);
            }
        }
        self.err("varint longer than 10 bytes")
    }

    fn u32(&mut self) -> R<u32> {
        let v = self.varint()?;
        u32::try_from(v).or_else(|_| self.err(format!("{v} does not fit 32 bits")))
    }

    /// A count of items that each take at least one byte: bounded by what is left,
    /// so a forged count cannot make us allocate gigabytes.
    fn count(&mut self) -> R<usize> {
        let n = self.varint()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return self.err(format!("count {n} exceeds the {left} bytes left"));
        }
        Ok(n as usize)
    }

    fn str(&mut self) -> R<&'a str> {
        let n = self.count()?;
        let at = self.pos;
        let b = self.take(n)?;
        std::str::from_utf8(b).map_err(|e| DecodeError { offset: at, what: format!("string is not UTF-8: {e}") })
    }

    fn sref(&mut self) -> R<Key> {
        let i = self.varint()?;
        match self.strings.get(i as usize) {
            Some(s) => Ok(s.clone()),
            None => self.err(format!("string index {i} outside a table of {}", self.strings.len())),
        }
    }

    fn uuid(&mut self) -> R<Uuid> {
        let b: [u8; 16] = self.take(16)?.try_into().expect("take(16) returns 16 bytes");
        Ok(Uuid::from_bytes(b))
    }

    fn hlc(&mut self) -> R<Hlc> {
        Ok(Hlc::new(self.varint()?, self.u32()?))
    }

    fn wid(&mut self) -> R<WriteId> {
        let hlc = self.hlc()?;
        let source = self.sref()?;
        Ok(WriteId { hlc, source, event_id: self.uuid()?, op: self.u32()? })
    }

    fn vv(&mut self) -> R<Clock> {
        let n = self.count()?;
        let mut vv = Clock::default();
        for _ in 0..n {
            let s = self.sref()?;
            if !vv.push_ascending(s, self.hlc()?) {
                return self.err("version vector sources are not strictly ascending");
            }
        }
        Ok(vv)
    }

    fn coverage(&mut self) -> R<Coverage> {
        let vv = self.vv()?;
        let floor = match self.u8()? {
            0 => None,
            1 => Some(self.wid()?),
            t => return self.err(format!("coverage floor flag {t} is not 0 or 1")),
        };
        Ok(Coverage { vv, floor })
    }

    fn ascending<T: Ord>(&self, prev: Option<&T>, next: &T, what: &str) -> R<()> {
        match prev {
            Some(p) if p >= next => self.err(format!("{what} are not strictly ascending")),
            _ => Ok(()),
        }
    }

    fn register(&mut self) -> R<Register> {
        let cov = self.coverage()?;
        let n = self.count()?;
        let mut live: SmallVec<[RegWrite; 1]> = SmallVec::with_capacity(n);
        for _ in 0..n {
            let id = self.wid()?;
            self.ascending(live.last().map(|w| &w.id), &id, "register writes")?;
            if cov.covers(&id) {
                return self.err("a covered register write is stored as live");
            }
            let author = self.sref()?;
            let at = self.pos;
            let text = self.str()?;
            let value = serde_json::from_str(text)
                .map_err(|e| DecodeError { offset: at, what: format!("register value is not JSON: {e}") })?;
            live.push(RegWrite { id, author, value });
        }
        Ok(Register { live, cov })
    }

    fn set(&mut self) -> R<OrSet> {
        let n = self.count()?;
        let mut elems = VecMap::default();
        let mut last: Option<&str> = None;
        for _ in 0..n {
            let value = self.str()?;
            self.ascending(last.as_ref(), &value, "set elements")?;
            last = Some(value);
            let removed = SparseCoverage::from(self.coverage()?);
            let k = self.count()?;
            let mut adds: SmallVec<[WriteId; 1]> = SmallVec::with_capacity(k);
            for _ in 0..k {
                let id = self.wid()?;
                self.ascending(adds.last(), &id, "set adds")?;
                if removed.covers(&id) {
                    return self.err("a removed add is stored as live");
                }
                adds.push(id);
            }
            let ascending = elems.push_ascending(Key::from(value), Element { adds, removed });
            debug_assert!(ascending, "the element's order was checked when it was read");
        }
        Ok(OrSet { elems })
    }

    fn log(&mut self) -> R<Log> {
        let n = self.count()?;
        let mut entries = VecMap::default();
        for _ in 0..n {
            let id = self.wid()?;
            let author = self.sref()?;
            let text = self.str()?.to_owned();
            let amends = match self.u8()? {
                0 => None,
                1 => Some(OpId { event_id: self.uuid()?, op: self.u32()? }),
                t => return self.err(format!("amends flag {t} is not 0 or 1")),
            };
            if !entries.push_ascending(id, LogEntry { author, text, amends }) {
                return self.err("log entries are not strictly ascending");
            }
        }
        Ok(Log { entries })
    }

    fn counter(&mut self) -> R<EventCounter> {
        match self.u8()? {
            0 => {
                let n = self.count()?;
                if n > EXACT_LIMIT {
                    return self.err(format!("exact counter holds {n} ids, more than {EXACT_LIMIT}"));
                }
                let mut v: Vec<u64> = Vec::with_capacity(n);
                for _ in 0..n {
                    let h = u64::from_le_bytes(self.take(8)?.try_into().expect("take(8) returns 8 bytes"));
                    self.ascending(v.last(), &h, "counter hashes")?;
                    v.push(h);
                }
                Ok(EventCounter::Exact(v))
            }
            1 => {
                let regs: [u8; REGISTERS] = self.take(REGISTERS)?.try_into().expect("take returns REGISTERS bytes");
                Ok(EventCounter::Sketch(Box::new(regs)))
            }
            t => self.err(format!("counter tag {t} is not 0 or 1")),
        }
    }
}

pub(super) fn decode(buf: &[u8]) -> R<PatientDoc> {
    let mut r = Reader { buf, pos: 0, strings: Vec::new() };
    if r.take(4)? != MAGIC {
        return Err(DecodeError { offset: 0, what: "missing the TMDC magic: not a patient document".into() });
    }
    let version = r.u8()?;
    if version != FORMAT_VERSION {
        return r.err(format!("format version {version}, this build reads {FORMAT_VERSION}"));
    }
    let n = r.count()?;
    let mut strings: Vec<Key> = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Key::from(r.str()?);
        r.ascending(strings.last(), &s, "string table entries")?;
        strings.push(s);
    }
    r.strings = strings;
    let patient_id = r.str()?.to_owned();
    let updated_ms = r.varint()?;
    let version = r.vv()?;
    let counter = r.counter()?;
    let n = r.count()?;
    let mut fields = VecMap::default();
    let mut last: Option<&str> = None;
    for _ in 0..n {
        let path = r.str()?;
        r.ascending(last.as_ref(), &path, "field paths")?;
        last = Some(path);
        let f = match r.u8()? {
            KIND_REGISTER => FieldState::Register(Box::new(r.register()?)),
            KIND_SET => FieldState::Set(r.set()?),
            KIND_LOG => FieldState::Log(r.log()?),
            k => return r.err(format!("field kind {k} is unknown")),
        };
        let ascending = fields.push_ascending(Key::from(path), f);
        debug_assert!(ascending, "the path's order was checked when it was read");
    }
    if r.pos != buf.len() {
        return r.err(format!("{} trailing bytes after the document", buf.len() - r.pos));
    }
    let doc = PatientDoc { patient_id, fields, version, counter, updated_ms };
    // The table must hold exactly what the document uses, or two encodings of
    // one state could differ.
    if doc.encode() != buf {
        return Err(DecodeError { offset: 0, what: "encoding is not canonical".into() });
    }
    Ok(doc)
}
