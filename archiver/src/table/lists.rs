//! The list-of-struct columns: `conflicts`, `version` and log fields, their
//! Arrow types and their builders, kept side by side so the declared struct
//! fields and the arrays built for them cannot drift (Arrow checks they match
//! when the struct is assembled).
//!
//! Every HLC is either exact (`wall_time` Timestamp(ms, UTC) + `logical`) or,
//! de-identified, only its `year`: HLC wall clocks are the times a patient
//! was cared for, dates in the sense of HIPAA Safe Harbor.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    Int32Builder, NullBufferBuilder, OffsetBufferBuilder, StringBuilder, TimestampMillisecondBuilder, UInt32Builder,
};
use arrow_array::{ArrayRef, ListArray, StructArray};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Fields};
use tidemark_schemas::{ConflictView, Hlc, LogEntryView, OpId};
use uuid::Uuid;

use super::schema::timestamp_type;
use super::time;

/// The item field of every list column: named `item` like Arrow's default,
/// never null (a list holds values, absence is a null list).
fn item(data_type: DataType) -> FieldRef {
    Arc::new(Field::new("item", data_type, false))
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn clock_fields(deid: bool) -> Vec<Field> {
    if deid {
        vec![Field::new("year", DataType::Int32, false)]
    } else {
        vec![Field::new("wall_time", timestamp_type(), false), Field::new("logical", DataType::UInt32, false)]
    }
}

/// A set column: `List<Utf8>`.
pub(crate) fn string_list_type() -> DataType {
    DataType::List(item(DataType::Utf8))
}

fn conflict_fields(deid: bool) -> Fields {
    let mut f = vec![utf8("path"), utf8("value"), utf8("author"), utf8("source")];
    if !deid {
        f.push(utf8("event_id"));
    }
    f.extend(clock_fields(deid));
    f.into()
}

/// `conflicts`: `List<Struct{path, value (JSON text), author, source,
/// [event_id,] clock}>`.
pub(crate) fn conflicts_type(deid: bool) -> DataType {
    DataType::List(item(DataType::Struct(conflict_fields(deid))))
}

fn version_fields(deid: bool) -> Fields {
    let mut f = vec![utf8("source")];
    f.extend(clock_fields(deid));
    f.into()
}

/// `version`: `List<Struct{source, clock}>`, sources ascending.
pub(crate) fn version_type(deid: bool) -> DataType {
    DataType::List(item(DataType::Struct(version_fields(deid))))
}

fn log_fields(deid: bool) -> Fields {
    let mut f = Vec::new();
    if !deid {
        f.extend([utf8("event_id"), Field::new("op", DataType::UInt32, false)]);
    }
    f.extend([utf8("author"), utf8("source")]);
    f.extend(clock_fields(deid));
    f.push(utf8("text"));
    if deid {
        f.push(Field::new("amends_index", DataType::UInt32, true));
    } else {
        f.extend([
            Field::new("amends_event_id", DataType::Utf8, true),
            Field::new("amends_op", DataType::UInt32, true),
        ]);
    }
    f.into()
}

/// A log column: `List<Struct{entry}>`; see `log_fields`.
pub(crate) fn log_type(deid: bool) -> DataType {
    DataType::List(item(DataType::Struct(log_fields(deid))))
}

/// Offsets and validity of one list column.
struct ListShape {
    offsets: OffsetBufferBuilder<i32>,
    nulls: NullBufferBuilder,
}

impl ListShape {
    fn new(rows: usize) -> Self {
        Self { offsets: OffsetBufferBuilder::new(rows), nulls: NullBufferBuilder::new(rows) }
    }

    fn push(&mut self, len: usize) {
        self.offsets.push_length(len);
        self.nulls.append_non_null();
    }

    fn push_null(&mut self) {
        self.offsets.push_length(0);
        self.nulls.append_null();
    }

    fn finish(mut self, fields: Fields, children: Vec<ArrayRef>) -> Result<ArrayRef, ArrowError> {
        let values = StructArray::try_new(fields.clone(), children, None)?;
        let offsets = self
            .offsets
            .try_finish()
            .map_err(|_| ArrowError::ComputeError("more than 2^31 list items in one batch".into()))?;
        let field = item(DataType::Struct(fields));
        Ok(Arc::new(ListArray::try_new(field, offsets, Arc::new(values), self.nulls.finish())?))
    }
}

/// HLC columns: exact, or the year only.
enum ClockCols {
    Exact { wall: TimestampMillisecondBuilder, logical: UInt32Builder },
    Year(Int32Builder),
}

impl ClockCols {
    fn new(deid: bool) -> Self {
        if deid {
            ClockCols::Year(Int32Builder::new())
        } else {
            let wall = TimestampMillisecondBuilder::new().with_timezone("UTC");
            ClockCols::Exact { wall, logical: UInt32Builder::new() }
        }
    }

    /// Appends one reading; `Err` when the wall clock is beyond i64 ms.
    fn append(&mut self, hlc: Hlc) -> Result<(), ()> {
        let ms = i64::try_from(hlc.wall_ms).map_err(|_| ())?;
        match self {
            ClockCols::Exact { wall, logical } => {
                wall.append_value(ms);
                logical.append_value(hlc.logical);
            }
            ClockCols::Year(year) => year.append_value(time::year_of_ms(ms)),
        }
        Ok(())
    }

    fn finish_into(&mut self, out: &mut Vec<ArrayRef>) {
        match self {
            ClockCols::Exact { wall, logical } => {
                out.push(Arc::new(wall.finish()));
                out.push(Arc::new(logical.finish()));
            }
            ClockCols::Year(year) => out.push(Arc::new(year.finish())),
        }
    }
}

/// Canonical hyphenated lowercase UUID text, without a heap allocation.
fn append_uuid(b: &mut StringBuilder, id: &Uuid) {
    b.append_value(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
}

/// Builds the `conflicts` column.
pub(crate) struct ConflictsBuilder {
    deid: bool,
    shape: ListShape,
    row_len: usize,
    path: StringBuilder,
    value: StringBuilder,
    author: StringBuilder,
    source: StringBuilder,
    event_id: StringBuilder,
    clock: ClockCols,
}

impl ConflictsBuilder {
    pub(crate) fn new(deid: bool, rows: usize) -> Self {
        Self {
            deid,
            shape: ListShape::new(rows),
            row_len: 0,
            path: StringBuilder::new(),
            value: StringBuilder::new(),
            author: StringBuilder::new(),
            source: StringBuilder::new(),
            event_id: StringBuilder::new(),
            clock: ClockCols::new(deid),
        }
    }

    /// Adds one conflict to the current row; `value_json` is already
    /// generalised for the profile. `Err` when its clock is out of range.
    pub(crate) fn append(&mut self, path: &str, value_json: &str, c: &ConflictView) -> Result<(), ()> {
        self.clock.append(c.hlc)?;
        self.path.append_value(path);
        self.value.append_value(value_json);
        self.author.append_value(&c.author);
        self.source.append_value(&c.source);
        if !self.deid {
            append_uuid(&mut self.event_id, &c.event_id);
        }
        self.row_len += 1;
        Ok(())
    }

    /// Closes the current row's list (empty when nothing was appended).
    pub(crate) fn end_row(&mut self) {
        self.shape.push(std::mem::take(&mut self.row_len));
    }

    pub(crate) fn finish(mut self) -> Result<ArrayRef, ArrowError> {
        let mut out: Vec<ArrayRef> = vec![
            Arc::new(self.path.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.author.finish()),
            Arc::new(self.source.finish()),
        ];
        if !self.deid {
            out.push(Arc::new(self.event_id.finish()));
        }
        self.clock.finish_into(&mut out);
        self.shape.finish(conflict_fields(self.deid), out)
    }
}

/// Builds the `version` column.
pub(crate) struct VersionBuilder {
    deid: bool,
    shape: ListShape,
    source: StringBuilder,
    clock: ClockCols,
}

impl VersionBuilder {
    pub(crate) fn new(deid: bool, rows: usize) -> Self {
        Self { deid, shape: ListShape::new(rows), source: StringBuilder::new(), clock: ClockCols::new(deid) }
    }

    /// Appends one row's version vector; `Err` when a clock is out of range.
    pub(crate) fn append<'a>(&mut self, vv: impl ExactSizeIterator<Item = (&'a String, &'a Hlc)>) -> Result<(), ()> {
        let len = vv.len();
        for (source, hlc) in vv {
            self.clock.append(*hlc)?;
            self.source.append_value(source);
        }
        self.shape.push(len);
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<ArrayRef, ArrowError> {
        let mut out: Vec<ArrayRef> = vec![Arc::new(self.source.finish())];
        self.clock.finish_into(&mut out);
        self.shape.finish(version_fields(self.deid), out)
    }
}

/// Builds one log column.
pub(crate) struct LogBuilder {
    deid: bool,
    shape: ListShape,
    event_id: StringBuilder,
    op: UInt32Builder,
    author: StringBuilder,
    source: StringBuilder,
    clock: ClockCols,
    text: StringBuilder,
    amends_event_id: StringBuilder,
    amends_op: UInt32Builder,
    amends_index: UInt32Builder,
}

impl LogBuilder {
    pub(crate) fn new(deid: bool, rows: usize) -> Self {
        Self {
            deid,
            shape: ListShape::new(rows),
            event_id: StringBuilder::new(),
            op: UInt32Builder::new(),
            author: StringBuilder::new(),
            source: StringBuilder::new(),
            clock: ClockCols::new(deid),
            text: StringBuilder::new(),
            amends_event_id: StringBuilder::new(),
            amends_op: UInt32Builder::new(),
            amends_index: UInt32Builder::new(),
        }
    }

    pub(crate) fn append_null(&mut self) {
        self.shape.push_null();
    }

    /// Appends one row's entries; `Err` when a clock is out of range.
    pub(crate) fn append(&mut self, entries: &[LogEntryView]) -> Result<(), ()> {
        // De-identified entries lose their event ids (UUIDv7 ids embed the
        // millisecond they were made); an amendment points at its target's
        // position in the list instead.
        let positions: HashMap<OpId, u32> = if self.deid && entries.iter().any(|e| e.amends.is_some()) {
            entries.iter().zip(0..).map(|(e, i)| (e.id, i)).collect()
        } else {
            HashMap::new()
        };
        for e in entries {
            self.clock.append(e.hlc)?;
            self.author.append_value(&e.author);
            self.source.append_value(&e.source);
            self.text.append_value(&e.text);
            if self.deid {
                self.amends_index.append_option(e.amends.and_then(|a| positions.get(&a).copied()));
            } else {
                append_uuid(&mut self.event_id, &e.id.event_id);
                self.op.append_value(e.id.op);
                match &e.amends {
                    Some(a) => {
                        append_uuid(&mut self.amends_event_id, &a.event_id);
                        self.amends_op.append_value(a.op);
                    }
                    None => {
                        self.amends_event_id.append_null();
                        self.amends_op.append_null();
                    }
                }
            }
        }
        self.shape.push(entries.len());
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<ArrayRef, ArrowError> {
        let mut out: Vec<ArrayRef> = Vec::new();
        if !self.deid {
            out.push(Arc::new(self.event_id.finish()));
            out.push(Arc::new(self.op.finish()));
        }
        out.push(Arc::new(self.author.finish()));
        out.push(Arc::new(self.source.finish()));
        self.clock.finish_into(&mut out);
        out.push(Arc::new(self.text.finish()));
        if self.deid {
            out.push(Arc::new(self.amends_index.finish()));
        } else {
            out.push(Arc::new(self.amends_event_id.finish()));
            out.push(Arc::new(self.amends_op.finish()));
        }
        self.shape.finish(log_fields(self.deid), out)
    }
}
