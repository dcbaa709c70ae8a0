//! The table layout: a snapshot's Arrow schema, derived from the catalog and
//! the profile, and how each catalog field fills its column.
//!
//! Column names are the catalog path with `.` replaced by `_`
//! (`demographics_given_name`): dotted names need quoting in every SQL engine
//! and Spark reads them as struct access. The catalog path stays on each
//! column as field metadata (`tidemark.path`), so the mapping is explicit.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tidemark_schemas::{Catalog, FieldKind, FieldSpec, PhiClass, ValueType};

use super::Profile;
use super::deid::Pseudonymizer;
use super::error::TableError;
use super::lists;

/// Version of the table mapping (this module and `docs/snapshot-schema.md`);
/// bumped when a column's name, type or meaning changes.
pub const TABLE_FORMAT_VERSION: u32 = 1;

/// How one kept catalog field fills its column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `int` register: Int64.
    Int,
    /// `decimal` register: Float64.
    Float,
    /// `bool` register: Boolean.
    Bool,
    /// `string`/`code` register: Utf8.
    Utf8,
    /// `date` register: Date32.
    Date,
    /// `datetime` register: Timestamp(ms, UTC).
    Timestamp,
    /// De-identified `phi = "date"` register: Int32 year of a date or datetime.
    Year {
        /// The catalog type is `datetime` (else `date`).
        datetime: bool,
    },
    /// De-identified `phi = "geo"` register: Utf8 cut to [`super::deid::GEO_PREFIX_CHARS`].
    Prefix,
    /// Set: `List<Utf8>`, elements cut to [`super::deid::GEO_PREFIX_CHARS`] if `prefix`.
    Set {
        /// De-identified `phi = "geo"`.
        prefix: bool,
    },
    /// Log: `List<Struct>` of entries.
    Log,
}

impl Encoding {
    /// The transform recorded in the column's `tidemark.transform` metadata.
    fn transform(self) -> &'static str {
        match self {
            Encoding::Year { .. } => "year",
            Encoding::Prefix | Encoding::Set { prefix: true } => "prefix3",
            _ => "none",
        }
    }
}

/// A catalog field that has a column.
#[derive(Clone, Debug)]
pub(crate) struct FieldColumn {
    pub(crate) path: String,
    pub(crate) kind: FieldKind,
    pub(crate) value_type: ValueType,
    pub(crate) encoding: Encoding,
    /// De-identified year columns: the earliest year written. Earlier years
    /// would tell an age over 89, which Safe Harbor aggregates: they become
    /// this year, read as "this year or earlier" (90 or older).
    pub(crate) year_floor: Option<i32>,
}

impl FieldColumn {
    /// `year`, raised to the column's floor if it has one.
    pub(crate) fn floor_year(&self, year: i32) -> i32 {
        self.year_floor.map_or(year, |floor| year.max(floor))
    }
}

/// Ages above this are aggregated in the de-identified profile (Safe Harbor,
/// §164.514(b)(2)(i)(C)).
pub(crate) const MAX_AGE_YEARS: i32 = 89;

/// Where a view's field goes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Slot {
    /// Index into [`TableLayout::columns`].
    Column(usize),
    /// A catalog field this profile drops.
    Dropped,
}

/// The schema of one profile's table and the recipe that fills it. Built
/// once per snapshot; cheap to share by reference across parts.
pub struct TableLayout {
    schema: SchemaRef,
    columns: Vec<FieldColumn>,
    /// Every catalog path and where it goes, sorted by path like a view's
    /// fields, so a row routes its fields with one merge walk, no hashing.
    routes: Vec<(String, Slot)>,
    pseudonyms: Option<Pseudonymizer>,
    profile_name: &'static str,
}

impl TableLayout {
    /// Derives the layout of `profile` from `catalog`, as of `now_ms` (the
    /// snapshot's time, milliseconds since the Unix epoch): the de-identified
    /// profile's birth-year floor for patients over 89 is counted back from
    /// that year, so the clock is the caller's, not read in here.
    ///
    /// # Errors
    /// [`TableError::ColumnClash`] when two fields map to one column name;
    /// [`TableError::UnsupportedPhi`] (de-identified only) when a PHI class
    /// does not fit its field's kind and type.
    pub fn new(catalog: &Catalog, profile: &Profile, now_ms: u64) -> Result<Self, TableError> {
        let deid = matches!(profile, Profile::Deidentified { .. });
        let this_year = super::time::year_of_ms(i64::try_from(now_ms).unwrap_or(i64::MAX));
        let mut names = NameSet::default();
        let mut fields = vec![Field::new("patient_id", DataType::Utf8, false)];
        names.claim("patient_id", "patient_id")?;
        let mut columns = Vec::new();
        let mut routes = Vec::new();
        for spec in catalog.fields() {
            let Some(encoding) = encoding_for(spec, deid)? else {
                routes.push((spec.path.clone(), Slot::Dropped));
                continue;
            };
            let name = column_name(&spec.path, encoding);
            names.claim(&name, &spec.path)?;
            fields.push(column_field(spec, encoding, name, deid));
            routes.push((spec.path.clone(), Slot::Column(columns.len())));
            let year_floor = matches!(encoding, Encoding::Year { .. }).then_some(this_year - MAX_AGE_YEARS - 1);
            columns.push(FieldColumn {
                path: spec.path.clone(),
                kind: spec.kind,
                value_type: spec.value_type,
                encoding,
                year_floor,
            });
        }
        for field in fixed_fields(deid) {
            names.claim(field.name(), field.name())?;
            fields.push(field);
        }
        let metadata = HashMap::from([
            ("tidemark.catalog.name".to_owned(), catalog.name().to_owned()),
            ("tidemark.catalog.version".to_owned(), catalog.version().to_string()),
            ("tidemark.profile".to_owned(), profile.name().to_owned()),
            ("tidemark.table.version".to_owned(), TABLE_FORMAT_VERSION.to_string()),
        ]);
        // Byte order of `String`, the order of a view's `BTreeMap` of fields.
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let pseudonyms = match profile {
            Profile::Identified => None,
            Profile::Deidentified { dataset_key } => Some(Pseudonymizer::new(dataset_key)),
        };
        Ok(Self {
            schema: Arc::new(Schema::new_with_metadata(fields, metadata)),
            columns,
            routes,
            pseudonyms,
            profile_name: profile.name(),
        })
    }

    /// The Arrow schema, with the catalog name and version, the profile and
    /// [`TABLE_FORMAT_VERSION`] in its metadata.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// `identified` or `deidentified`.
    pub fn profile_name(&self) -> &'static str {
        self.profile_name
    }

    /// Whether this is the de-identified profile.
    pub fn is_deidentified(&self) -> bool {
        self.pseudonyms.is_some()
    }

    /// What the `patient_id` column holds for this patient: the id itself, or
    /// its pseudonym (lowercase hex HMAC-SHA256) when de-identified. Parts are
    /// sorted by this key.
    pub fn patient_key<'a>(&self, patient_id: &'a str) -> Cow<'a, str> {
        match &self.pseudonyms {
            None => Cow::Borrowed(patient_id),
            Some(p) => Cow::Owned(p.pseudonym(patient_id)),
        }
    }

    pub(crate) fn columns(&self) -> &[FieldColumn] {
        &self.columns
    }

    /// Catalog paths and their slots, ascending by path.
    pub(crate) fn routes(&self) -> &[(String, Slot)] {
        &self.routes
    }
}

impl fmt::Debug for TableLayout {
    /// Shows the columns, never the pseudonym key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.schema.fields().iter().map(|c| c.name().as_str()).collect();
        f.debug_struct("TableLayout").field("profile", &self.profile_name).field("columns", &names).finish()
    }
}

/// The column a field gets in a profile, or `None` when the profile drops it.
fn encoding_for(spec: &FieldSpec, deid: bool) -> Result<Option<Encoding>, TableError> {
    let plain = match (spec.kind, spec.value_type) {
        (FieldKind::Set, _) => Encoding::Set { prefix: false },
        (FieldKind::Log, _) => Encoding::Log,
        (FieldKind::Register, ValueType::Int) => Encoding::Int,
        (FieldKind::Register, ValueType::Decimal) => Encoding::Float,
        (FieldKind::Register, ValueType::Bool) => Encoding::Bool,
        (FieldKind::Register, ValueType::Date) => Encoding::Date,
        (FieldKind::Register, ValueType::Datetime) => Encoding::Timestamp,
        (FieldKind::Register, ValueType::String | ValueType::Code | ValueType::Text) => Encoding::Utf8,
    };
    if !deid {
        return Ok(Some(plain));
    }
    let generalised = match (spec.phi, plain) {
        (PhiClass::None, _) => Some(plain),
        (PhiClass::Direct | PhiClass::FreeText, _) => None,
        (PhiClass::Date, Encoding::Date) => Some(Encoding::Year { datetime: false }),
        (PhiClass::Date, Encoding::Timestamp) => Some(Encoding::Year { datetime: true }),
        (PhiClass::Geo, Encoding::Utf8) if spec.value_type != ValueType::Text => Some(Encoding::Prefix),
        (PhiClass::Geo, Encoding::Set { .. }) => Some(Encoding::Set { prefix: true }),
        (PhiClass::Date | PhiClass::Geo, _) => {
            return Err(TableError::UnsupportedPhi {
                path: spec.path.clone(),
                kind: spec.kind.name(),
                value_type: spec.value_type.name(),
                phi: phi_name(spec.phi),
            });
        }
    };
    Ok(generalised)
}

/// `demographics.birth_date` -> `demographics_birth_date`, plus `_year` when
/// generalised to a year so that nobody reads a year as a full date.
fn column_name(path: &str, encoding: Encoding) -> String {
    let base = path.replace('.', "_");
    match encoding {
        Encoding::Year { .. } => format!("{base}_year"),
        _ => base,
    }
}

fn column_field(spec: &FieldSpec, encoding: Encoding, name: String, deid: bool) -> Field {
    let data_type = match encoding {
        Encoding::Int => DataType::Int64,
        Encoding::Float => DataType::Float64,
        Encoding::Bool => DataType::Boolean,
        Encoding::Utf8 | Encoding::Prefix => DataType::Utf8,
        Encoding::Date => DataType::Date32,
        Encoding::Timestamp => timestamp_type(),
        Encoding::Year { .. } => DataType::Int32,
        Encoding::Set { .. } => lists::string_list_type(),
        Encoding::Log => lists::log_type(deid),
    };
    let metadata = HashMap::from([
        ("tidemark.path".to_owned(), spec.path.clone()),
        ("tidemark.kind".to_owned(), spec.kind.name().to_owned()),
        ("tidemark.type".to_owned(), spec.value_type.name().to_owned()),
        ("tidemark.phi".to_owned(), phi_name(spec.phi).to_owned()),
        ("tidemark.transform".to_owned(), encoding.transform().to_owned()),
    ]);
    // Nullable: a field never written (or a cleared register) is null.
    Field::new(name, data_type, true).with_metadata(metadata)
}

/// The columns after the catalog fields, in order.
fn fixed_fields(deid: bool) -> Vec<Field> {
    let updated = if deid {
        Field::new("updated_year", DataType::Int32, false)
    } else {
        Field::new("updated_at", timestamp_type(), false)
    };
    vec![
        Field::new("conflicts", lists::conflicts_type(deid), false),
        Field::new("version", lists::version_type(deid), false),
        Field::new("event_count", DataType::UInt64, false),
        updated,
        Field::new("open_conflicts", DataType::UInt32, false),
    ]
}

/// Millisecond UTC timestamps: HLC wall clocks and `updated_at` are
/// milliseconds, and a timestamp type lets SQL engines show and filter them.
pub(crate) fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn phi_name(phi: PhiClass) -> &'static str {
    match phi {
        PhiClass::None => "none",
        PhiClass::Direct => "direct",
        PhiClass::Date => "date",
        PhiClass::Geo => "geo",
        PhiClass::FreeText => "free_text",
    }
}

/// Column names taken so far; a second claim is a catalog error.
#[derive(Default)]
struct NameSet(HashSet<String>);

impl NameSet {
    fn claim(&mut self, column: &str, path: &str) -> Result<(), TableError> {
        if self.0.insert(column.to_owned()) {
            Ok(())
        } else {
            Err(TableError::ColumnClash { path: path.to_owned(), column: column.to_owned() })
        }
    }
}
