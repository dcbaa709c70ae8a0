//! Patient views to one Arrow record batch, column by column.
//!
//! Each view's fields are routed once to their column slot (which is also
//! where unknown fields are caught), then every column appends exactly one
//! value per row, so the columns cannot go out of step.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMillisecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::Field;
use serde_json::Value;
use tidemark_schemas::{FieldView, PatientView};

use super::deid::{generalise_value, geo_prefix, year_of};
use super::error::{TableError, ViewProblem};
use super::lists::{ConflictsBuilder, LogBuilder, VersionBuilder};
use super::schema::{Encoding, FieldColumn, Slot, TableLayout};
use super::time;

/// Converts `views` to one record batch of `layout`'s schema, one row per
/// view in the order given. De-identified, each row's `patient_id` is the
/// patient's pseudonym and the profile's transforms are applied.
///
/// # Errors
/// [`TableError::BadView`] with the row of the first view that does not fit
/// the catalog (set it aside and call again without it);
/// [`TableError::Arrow`] if the batch cannot be assembled (a bug).
///
/// # Panics
/// If one string column of the batch exceeds 2 GiB (Arrow's i32 offsets);
/// [`super::PartWriter`] cuts its input into batches far below that.
pub fn to_batch(layout: &TableLayout, views: &[PatientView]) -> Result<RecordBatch, TableError> {
    let mut b = BatchBuilder::new(layout, views.len());
    let mut slots: Vec<Option<&FieldView>> = vec![None; layout.columns().len()];
    for (row, view) in views.iter().enumerate() {
        b.append(layout, view, &mut slots).map_err(|problem| TableError::BadView { row, problem })?;
    }
    b.finish(layout)
}

/// One builder per column of the schema.
struct BatchBuilder {
    patient_id: StringBuilder,
    fields: Vec<ColumnBuilder>,
    conflicts: ConflictsBuilder,
    version: VersionBuilder,
    event_count: UInt64Builder,
    updated_at: TimestampMillisecondBuilder,
    updated_year: Int32Builder,
    open_conflicts: UInt32Builder,
}

impl BatchBuilder {
    fn new(layout: &TableLayout, rows: usize) -> Self {
        let deid = layout.is_deidentified();
        Self {
            patient_id: StringBuilder::with_capacity(rows, rows * 64),
            fields: layout.columns().iter().map(|c| ColumnBuilder::new(c.encoding, deid, rows)).collect(),
            conflicts: ConflictsBuilder::new(deid, rows),
            version: VersionBuilder::new(deid, rows),
            event_count: UInt64Builder::with_capacity(rows),
            updated_at: TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"),
            updated_year: Int32Builder::with_capacity(rows),
            open_conflicts: UInt32Builder::with_capacity(rows),
        }
    }

    fn append<'v>(
        &mut self,
        layout: &TableLayout,
        view: &'v PatientView,
        slots: &mut [Option<&'v FieldView>],
    ) -> Result<(), ViewProblem> {
        route(layout, view, slots)?;
        self.patient_id.append_value(layout.patient_key(&view.patient_id));
        for ((builder, column), slot) in self.fields.iter_mut().zip(layout.columns()).zip(slots.iter()) {
            builder.append(column, *slot)?;
            if let Some(FieldView::Register { conflicts, .. }) = slot {
                for c in conflicts {
                    let json = conflict_json(column, &c.value)?;
                    self.conflicts.append(&column.path, &json, c).map_err(|()| out_of_range(&column.path))?;
                }
            }
        }
        self.conflicts.end_row();
        self.version.append(view.version.iter()).map_err(|()| out_of_range("version"))?;
        self.event_count.append_value(view.event_count);
        let updated_ms = time::instant_to_ms(&view.updated_at).ok_or(ViewProblem::BadUpdatedAt)?;
        if layout.is_deidentified() {
            self.updated_year.append_value(time::year_of_ms(updated_ms));
        } else {
            self.updated_at.append_value(updated_ms);
        }
        self.open_conflicts.append_value(view.open_conflicts);
        Ok(())
    }

    fn finish(mut self, layout: &TableLayout) -> Result<RecordBatch, TableError> {
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(self.patient_id.finish())];
        for builder in self.fields {
            arrays.push(builder.finish()?);
        }
        arrays.push(self.conflicts.finish()?);
        arrays.push(self.version.finish()?);
        arrays.push(Arc::new(self.event_count.finish()));
        if layout.is_deidentified() {
            arrays.push(Arc::new(self.updated_year.finish()));
        } else {
            arrays.push(Arc::new(self.updated_at.finish()));
        }
        arrays.push(Arc::new(self.open_conflicts.finish()));
        Ok(RecordBatch::try_new(layout.schema(), arrays)?)
    }
}

/// Puts each of the view's fields in its column's slot. Both the view's
/// fields and the layout's routes are sorted by path: one merge walk.
fn route<'v>(
    layout: &TableLayout,
    view: &'v PatientView,
    slots: &mut [Option<&'v FieldView>],
) -> Result<(), ViewProblem> {
    slots.fill(None);
    let mut routes = layout.routes().iter().peekable();
    for (path, field) in &view.fields {
        while routes.next_if(|(p, _)| p < path).is_some() {}
        match routes.next_if(|(p, _)| p == path) {
            Some((_, Slot::Column(i))) => slots[*i] = Some(field),
            Some((_, Slot::Dropped)) => {}
            None => return Err(ViewProblem::UnknownField { path: path.clone() }),
        }
    }
    Ok(())
}

/// A register value converted for its column: null (a `clear`) is `None`,
/// anything else must convert or the view does not fit the catalog.
fn cell<'v, T>(
    column: &FieldColumn,
    value: &'v Value,
    convert: impl FnOnce(&'v Value) -> Option<T>,
) -> Result<Option<T>, ViewProblem> {
    if value.is_null() {
        return Ok(None);
    }
    convert(value).map(Some).ok_or_else(|| wrong_value(column, value))
}

fn out_of_range(place: &str) -> ViewProblem {
    ViewProblem::ClockOutOfRange { place: place.to_owned() }
}

/// A conflicting value as JSON text, checked against the catalog type like
/// the displayed value and generalised like its column.
fn conflict_json(column: &FieldColumn, value: &Value) -> Result<String, ViewProblem> {
    let shown = match column.encoding {
        Encoding::Year { datetime } => generalise_value(value, Some(datetime), false)
            .map(|v| v.as_i64().and_then(|y| i32::try_from(y).ok()).map_or(v, |y| Value::from(column.floor_year(y))))
            .map(|v| v.to_string()),
        Encoding::Prefix => generalise_value(value, None, true).map(|v| v.to_string()),
        plain => fits(plain, value).then(|| value.to_string()),
    };
    shown.ok_or_else(|| wrong_value(column, value))
}

/// Whether a register value (null included) has the type of an
/// ungeneralised column.
fn fits(encoding: Encoding, value: &Value) -> bool {
    value.is_null()
        || match encoding {
            Encoding::Int => value.is_i64(),
            Encoding::Float => value.is_number(),
            Encoding::Bool => value.is_boolean(),
            Encoding::Utf8 => value.is_string(),
            Encoding::Date => value.as_str().and_then(time::date_to_days).is_some(),
            Encoding::Timestamp => value.as_str().and_then(time::instant_to_ms).is_some(),
            // Generalised columns check while generalising; sets and logs have no conflicts.
            Encoding::Year { .. } | Encoding::Prefix | Encoding::Set { .. } | Encoding::Log => true,
        }
}

fn wrong_value(column: &FieldColumn, value: &Value) -> ViewProblem {
    let found = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer that does not fit",
        Value::Number(_) => "a number",
        Value::String(_) => "a string that does not parse",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ViewProblem::WrongValue { path: column.path.clone(), found, expected: column.value_type.name() }
}

/// The builder of one catalog field's column.
enum ColumnBuilder {
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Utf8(StringBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMillisecondBuilder),
    Year(Int32Builder),
    Set(ListBuilder<StringBuilder>),
    // Boxed: a log builder holds a dozen child builders, ten times any other.
    Log(Box<LogBuilder>),
}

impl ColumnBuilder {
    fn new(encoding: Encoding, deid: bool, rows: usize) -> Self {
        match encoding {
            Encoding::Int => ColumnBuilder::Int(Int64Builder::with_capacity(rows)),
            Encoding::Float => ColumnBuilder::Float(Float64Builder::with_capacity(rows)),
            Encoding::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(rows)),
            Encoding::Utf8 | Encoding::Prefix => ColumnBuilder::Utf8(StringBuilder::new()),
            Encoding::Date => ColumnBuilder::Date(Date32Builder::with_capacity(rows)),
            Encoding::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"))
            }
            Encoding::Year { .. } => ColumnBuilder::Year(Int32Builder::with_capacity(rows)),
            Encoding::Set { .. } => {
                let item = Field::new("item", arrow_schema::DataType::Utf8, false);
                ColumnBuilder::Set(ListBuilder::with_capacity(StringBuilder::new(), rows).with_field(item))
            }
            Encoding::Log => ColumnBuilder::Log(Box::new(LogBuilder::new(deid, rows))),
        }
    }

    /// Appends one row: the field's value, or null when the view lacks it.
    fn append(&mut self, column: &FieldColumn, field: Option<&FieldView>) -> Result<(), ViewProblem> {
        match (self, field) {
            (b, None) => b.append_null(),
            (ColumnBuilder::Set(b), Some(FieldView::Set { values })) => {
                append_set(b, values, column.encoding == Encoding::Set { prefix: true });
            }
            (ColumnBuilder::Log(b), Some(FieldView::Log { entries })) => {
                b.append(entries).map_err(|()| out_of_range(&column.path))?;
            }
            (ColumnBuilder::Set(_) | ColumnBuilder::Log(_), Some(found))
            | (_, Some(found @ (FieldView::Set { .. } | FieldView::Log { .. }))) => {
                return Err(ViewProblem::WrongKind {
                    path: column.path.clone(),
                    found: shape_name(found),
                    expected: column.kind.name(),
                });
            }
            (register, Some(FieldView::Register { value, .. })) => register.append_register(column, value)?,
        }
        Ok(())
    }

    /// Appends a register's displayed value (a register column's builder);
    /// JSON null (a `clear`) is null.
    fn append_register(&mut self, column: &FieldColumn, value: &Value) -> Result<(), ViewProblem> {
        match self {
            ColumnBuilder::Int(b) => b.append_option(cell(column, value, Value::as_i64)?),
            ColumnBuilder::Float(b) => b.append_option(cell(column, value, Value::as_f64)?),
            ColumnBuilder::Bool(b) => b.append_option(cell(column, value, Value::as_bool)?),
            ColumnBuilder::Utf8(b) => {
                let prefix = column.encoding == Encoding::Prefix;
                b.append_option(cell(column, value, |v| {
                    v.as_str().map(|s| if prefix { std::borrow::Cow::Owned(geo_prefix(s)) } else { s.into() })
                })?);
            }
            ColumnBuilder::Date(b) => {
                b.append_option(cell(column, value, |v| v.as_str().and_then(time::date_to_days))?);
            }
            ColumnBuilder::Timestamp(b) => {
                b.append_option(cell(column, value, |v| v.as_str().and_then(time::instant_to_ms))?);
            }
            ColumnBuilder::Year(b) => {
                let datetime = column.encoding == Encoding::Year { datetime: true };
                let year = |v: &Value| v.as_str().and_then(|s| year_of(s, datetime)).map(|y| column.floor_year(y));
                b.append_option(cell(column, value, year)?);
            }
            // `append` sends register views to set and log builders only when
            // the view's shape disagrees with the catalog.
            ColumnBuilder::Set(_) | ColumnBuilder::Log(_) => {
                return Err(ViewProblem::WrongKind {
                    path: column.path.clone(),
                    found: "register",
                    expected: column.kind.name(),
                });
            }
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Int(b) => b.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Utf8(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Year(b) => b.append_null(),
            ColumnBuilder::Set(b) => b.append_null(),
            ColumnBuilder::Log(b) => b.append_null(),
        }
    }

    fn finish(self) -> Result<ArrayRef, TableError> {
        Ok(match self {
            ColumnBuilder::Int(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Float(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Utf8(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Date(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Year(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Set(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Log(b) => b.finish()?,
        })
    }
}

/// A set's elements, sorted and unique. Cut to the geo prefix they may
/// collide, and `000` (a suppressed sparse prefix) does not sort where the
/// original code did: where it landed among the kept prefixes would narrow
/// the suppressed one to a range. So the prefixes are sorted and
/// de-duplicated anew.
fn append_set(b: &mut ListBuilder<StringBuilder>, values: &[String], prefix: bool) {
    if prefix {
        let prefixes: std::collections::BTreeSet<String> = values.iter().map(|v| geo_prefix(v)).collect();
        for v in &prefixes {
            b.values().append_value(v);
        }
    } else {
        let mut last: Option<&str> = None;
        for v in values {
            if last != Some(v.as_str()) {
                b.values().append_value(v);
                last = Some(v.as_str());
            }
        }
    }
    b.append(true);
}

fn shape_name(field: &FieldView) -> &'static str {
    match field {
        FieldView::Register { .. } => "register",
        FieldView::Set { .. } => "set",
        FieldView::Log { .. } => "log",
    }
}

#[cfg(test)]
mod set_tests {
    use arrow_array::{Array as _, ListArray, StringArray};

    use super::*;

    fn generalised(values: &[&str]) -> Vec<String> {
        let mut b = ListBuilder::new(StringBuilder::new());
        append_set(&mut b, &values.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>(), true);
        let list: ListArray = b.finish();
        let items = list.value(0);
        let items = items.as_any().downcast_ref::<StringArray>().expect("strings");
        (0..items.len()).map(|i| items.value(i).to_owned()).collect()
    }

    /// The review's cases: a suppressed prefix (`000`) must neither repeat
    /// nor land where its original code sorted, which would narrow it down.
    #[test]
    fn generalised_geo_sets_are_sorted_and_unique() {
        assert_eq!(generalised(&["03601", "04101", "05901"]), ["000", "041"]);
        assert_eq!(generalised(&["10001", "10201"]), ["000", "100"]);
        assert_eq!(generalised(&[" 94110", "94103", "sw1a 1aa"]), ["941", "SW1"]);
    }
}
