//! The record catalog: which fields a patient record has, how each merges
//! (its CRDT kind), what values it takes, and how sensitive it is.
//!
//! Key decision: the catalog is data (`schemas/catalog.v1.toml`), loaded and
//! checked at start, so validation, the CRDT document, the Arrow schema of
//! snapshots and de-identification all derive from one list instead of four
//! hand-kept copies drifting apart.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The built-in catalog file, version 1.
pub const CATALOG_V1_TOML: &str = include_str!("../catalog.v1.toml");

/// How a field merges concurrent edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// Multi-value register with coverage: `set` and `clear`.
    Register,
    /// Add-wins observed-remove set: `add` and `remove`.
    Set,
    /// Grow-only ordered log: `append`.
    Log,
}

impl FieldKind {
    /// The kind's catalog name.
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Register => "register",
            FieldKind::Set => "set",
            FieldKind::Log => "log",
        }
    }

    /// The op names this kind accepts.
    pub fn allowed_ops(self) -> &'static [&'static str] {
        match self {
            FieldKind::Register => &["set", "clear"],
            FieldKind::Set => &["add", "remove"],
            FieldKind::Log => &["append"],
        }
    }
}

/// The type of a field's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// Short UTF-8 string (`max_string_bytes`).
    String,
    /// Free text (`max_text_bytes`); log entries are `{"text", "amends"?}` objects.
    Text,
    /// Signed 64-bit integer.
    Int,
    /// Finite JSON number.
    Decimal,
    /// `true` or `false`.
    Bool,
    /// Calendar date, `YYYY-MM-DD`.
    Date,
    /// UTC instant, RFC 3339 with `Z`, e.g. `2026-11-22T09:15:00Z`.
    Datetime,
    /// Coded concept `system:code`, e.g. `rxnorm:7980`, `snomed:300916003`.
    Code,
}

impl ValueType {
    /// The type's catalog name.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Text => "text",
            ValueType::Int => "int",
            ValueType::Decimal => "decimal",
            ValueType::Bool => "bool",
            ValueType::Date => "date",
            ValueType::Datetime => "datetime",
            ValueType::Code => "code",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How identifying a field is; drives the de-identified snapshot profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhiClass {
    /// Not identifying on its own.
    None,
    /// Direct identifier: dropped when de-identified.
    Direct,
    /// A date about the patient: generalised to the year.
    Date,
    /// Geographic detail: postal code generalised to its first 3 characters.
    Geo,
    /// Free text that may hold anything: dropped.
    FreeText,
}

/// One field of the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Dotted path, lowercase segments: `vitals.heart_rate_bpm`.
    pub path: String,
    /// How the field merges.
    pub kind: FieldKind,
    /// The type of its values (set elements, log entry text).
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// Its PHI class.
    pub phi: PhiClass,
}

/// Bounds on what one event may carry; they keep memory per request and per
/// document bounded whatever a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Payload bytes of one signed event.
    pub max_event_bytes: usize,
    /// Ops in one event.
    pub max_ops: usize,
    /// Bytes of `patient_id`, `source` and `author`.
    pub max_id_bytes: usize,
    /// Bytes of string and code values.
    pub max_string_bytes: usize,
    /// Bytes of text values.
    pub max_text_bytes: usize,
    /// Sources in `observed`.
    pub max_observed_entries: usize,
    /// How far an event's HLC may run ahead of the receiver's clock.
    pub max_future_skew_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    name: String,
    version: u32,
    limits: Limits,
    field: Vec<FieldSpec>,
}

/// A loaded, checked catalog. Field lookup by path is a map lookup.
#[derive(Clone, Debug)]
pub struct Catalog {
    name: String,
    version: u32,
    limits: Limits,
    fields: Vec<FieldSpec>,
    by_path: BTreeMap<String, usize>,
}

/// Why a catalog file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file is not valid TOML of the catalog's shape.
    #[error("catalog is not valid TOML of the expected shape: {0}")]
    Parse(#[from] toml::de::Error),
    /// Two fields share a path.
    #[error("catalog lists field `{0}` twice")]
    DuplicatePath(String),
    /// A path does not follow the `segment.segment` lowercase syntax.
    #[error("catalog field path `{0}` is not dotted lowercase segments of [a-z0-9_]")]
    BadPath(String),
    /// One path is a prefix segment of another (`a` and `a.b`).
    #[error("catalog field `{0}` is also a parent of field `{1}`")]
    NestedPath(String, String),
    /// The value type makes no sense for the kind.
    #[error("catalog field `{path}`: a {kind} cannot hold {value_type} values")]
    KindType {
        /// The field.
        path: String,
        /// Its kind.
        kind: &'static str,
        /// Its value type.
        value_type: &'static str,
    },
    /// A limit is zero or absurd.
    #[error("catalog limit `{0}` must be positive")]
    BadLimit(&'static str),
    /// No fields at all.
    #[error("catalog has no fields")]
    Empty,
}

impl Catalog {
    /// Parses and checks a catalog file.
    ///
    /// # Errors
    /// [`CatalogError`] naming the first problem found: shape, duplicate or
    /// malformed paths, kind/type mismatches, non-positive limits.
    pub fn from_toml(text: &str) -> Result<Self, CatalogError> {
        let file: CatalogFile = toml::from_str(text)?;
        if file.field.is_empty() {
            return Err(CatalogError::Empty);
        }
        check_limits(&file.limits)?;
        let mut by_path = BTreeMap::new();
        for (i, f) in file.field.iter().enumerate() {
            if !is_valid_path(&f.path) {
                return Err(CatalogError::BadPath(f.path.clone()));
            }
            check_kind_type(f)?;
            if by_path.insert(f.path.clone(), i).is_some() {
                return Err(CatalogError::DuplicatePath(f.path.clone()));
            }
        }
        // Sorted keys put a parent right before its children.
        let paths: Vec<&String> = by_path.keys().collect();
        for pair in paths.windows(2) {
            if pair[1].starts_with(pair[0].as_str()) && pair[1].as_bytes()[pair[0].len()] == b'.' {
                return Err(CatalogError::NestedPath(pair[0].clone(), pair[1].clone()));
            }
        }
        Ok(Self { name: file.name, version: file.version, limits: file.limits, fields: file.field, by_path })
    }

    /// The built-in catalog v1, parsed once.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| Catalog::from_toml(CATALOG_V1_TOML).expect("the built-in catalog is checked by tests"))
    }

    /// The catalog's name, e.g. `tidemark.patient`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The catalog's version; snapshots record it.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The per-event limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The fields in file order (the column order of snapshots).
    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    /// Looks a field up by path.
    pub fn field(&self, path: &str) -> Option<&FieldSpec> {
        self.by_path.get(path).map(|&i| &self.fields[i])
    }

    /// The index of a field in [`Catalog::fields`], a dense id for documents.
    pub fn field_index(&self, path: &str) -> Option<usize> {
        self.by_path.get(path).copied()
    }
}

fn check_limits(l: &Limits) -> Result<(), CatalogError> {
    let checks: [(&'static str, u64); 7] = [
        ("max_event_bytes", l.max_event_bytes as u64),
        ("max_ops", l.max_ops as u64),
        ("max_id_bytes", l.max_id_bytes as u64),
        ("max_string_bytes", l.max_string_bytes as u64),
        ("max_text_bytes", l.max_text_bytes as u64),
        ("max_observed_entries", l.max_observed_entries as u64),
        ("max_future_skew_ms", l.max_future_skew_ms),
    ];
    match checks.iter().find(|(_, v)| *v == 0) {
        Some((name, _)) => Err(CatalogError::BadLimit(name)),
        None => Ok(()),
    }
}

fn check_kind_type(f: &FieldSpec) -> Result<(), CatalogError> {
    let ok = match f.kind {
        FieldKind::Register => f.value_type != ValueType::Text,
        FieldKind::Set => matches!(f.value_type, ValueType::Code | ValueType::String),
        FieldKind::Log => f.value_type == ValueType::Text,
    };
    if ok {
        Ok(())
    } else {
        Err(CatalogError::KindType { path: f.path.clone(), kind: f.kind.name(), value_type: f.value_type.name() })
    }
}

fn is_valid_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 128
        && path.split('.').all(|seg| {
            !seg.is_empty()
                && seg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && seg.as_bytes()[0].is_ascii_lowercase()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_loads() {
        let c = Catalog::builtin();
        assert_eq!(c.version(), 1);
        assert_eq!(c.field("allergies").map(|f| f.kind), Some(FieldKind::Set));
        assert_eq!(c.field("notes").map(|f| f.phi), Some(PhiClass::FreeText));
        assert_eq!(c.field("demographics.birth_date").map(|f| f.value_type), Some(ValueType::Date));
        assert!(c.field("nope").is_none());
    }

    fn with_fields(fields: &str) -> String {
        let head = CATALOG_V1_TOML.split("[[field]]").next().expect("header");
        format!("{head}{fields}")
    }

    #[test]
    fn rejects_bad_catalogs() {
        let dup = with_fields(
            "[[field]]\npath = \"a\"\nkind = \"set\"\ntype = \"code\"\nphi = \"none\"\n\
             [[field]]\npath = \"a\"\nkind = \"set\"\ntype = \"code\"\nphi = \"none\"\n",
        );
        assert!(matches!(Catalog::from_toml(&dup), Err(CatalogError::DuplicatePath(p)) if p == "a"));
        let nested = with_fields(
            "[[field]]\npath = \"a\"\nkind = \"set\"\ntype = \"code\"\nphi = \"none\"\n\
             [[field]]\npath = \"a.b\"\nkind = \"set\"\ntype = \"code\"\nphi = \"none\"\n",
        );
        assert!(matches!(Catalog::from_toml(&nested), Err(CatalogError::NestedPath(..))));
        let bad_path = with_fields("[[field]]\npath = \"A.b\"\nkind = \"set\"\ntype = \"code\"\nphi = \"none\"\n");
        assert!(matches!(Catalog::from_toml(&bad_path), Err(CatalogError::BadPath(_))));
        let kind_type = with_fields("[[field]]\npath = \"n\"\nkind = \"log\"\ntype = \"int\"\nphi = \"none\"\n");
        assert!(matches!(Catalog::from_toml(&kind_type), Err(CatalogError::KindType { .. })));
        let unknown_kind = with_fields("[[field]]\npath = \"n\"\nkind = \"map\"\ntype = \"int\"\nphi = \"none\"\n");
        assert!(matches!(Catalog::from_toml(&unknown_kind), Err(CatalogError::Parse(_))));
        let zero = CATALOG_V1_TOML.replace("max_ops = 64", "max_ops = 0");
        assert!(matches!(Catalog::from_toml(&zero), Err(CatalogError::BadLimit("max_ops"))));
        assert!(matches!(Catalog::from_toml(&with_fields("")), Err(CatalogError::Parse(_) | CatalogError::Empty)));
    }
}
