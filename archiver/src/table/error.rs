//! Why a table could not be laid out, built or written.
//!
//! Messages name catalog paths, row positions and column names, never a
//! patient id or a value: these errors end up in logs, and logs must not carry
//! patient data (STYLE, Telemetry).

use arrow_schema::ArrowError;
use parquet::errors::ParquetError;

/// A table-layer failure. What to do depends on the variant:
/// [`TableError::BadView`] sets one view aside, [`TableError::Parquet`] retries
/// the part, the others stop (a catalog or programming error).
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Two catalog fields (or a field and a fixed column) map to the same
    /// column name. Stop: fix the catalog.
    #[error(
        "catalog field `{path}` maps to column `{column}`, which another column already uses; \
         rename one of the catalog fields"
    )]
    ColumnClash {
        /// The later of the two catalog paths.
        path: String,
        /// The column name both map to.
        column: String,
    },
    /// A PHI class the de-identified profile cannot apply to the field's
    /// kind and type (a year of a string, 3 characters of a number). Stop: mark
    /// the field `direct` or give it a type the class fits.
    #[error(
        "catalog field `{path}` is a {kind}<{value_type}> with phi = \"{phi}\", which the de-identified \
         profile cannot generalise; mark it \"direct\" or change its type"
    )]
    UnsupportedPhi {
        /// The catalog path.
        path: String,
        /// Its kind.
        kind: &'static str,
        /// Its value type.
        value_type: &'static str,
        /// Its PHI class.
        phi: &'static str,
    },
    /// One view does not fit the catalog. Set it aside (dead-letter it) and
    /// build the batch again without it; the other views are fine.
    #[error("view at row {row} of the batch does not fit the catalog: {problem}")]
    BadView {
        /// Its position in the slice given to the builder.
        row: usize,
        /// What does not fit.
        problem: ViewProblem,
    },
    /// Views pushed to a part are not in strictly ascending key order (the
    /// patient id, or its pseudonym when de-identified): a caller bug, or two
    /// views of the same patient in one snapshot. Stop.
    #[error(
        "views are not strictly ascending by {key} at row {row} of the push; sort with `sort_views` \
         and keep one view per patient"
    )]
    Unsorted {
        /// Position in the slice given to `push`.
        row: usize,
        /// `patient_id` or `pseudonym`.
        key: &'static str,
    },
    /// Part writer options out of range. Stop: fix the configuration.
    #[error("part writer option `{0}` must be positive")]
    BadOptions(&'static str),
    /// Arrow refused a batch: the builders and the schema disagree. Stop, a bug.
    #[error("assembling the Arrow batch failed, a bug in the table layer: {0}")]
    Arrow(#[from] ArrowError),
    /// The Parquet writer failed, usually the sink's I/O. Retry the part from
    /// the start with a fresh writer.
    #[error("writing the Parquet part failed: {0}")]
    Parquet(#[from] ParquetError),
}

impl TableError {
    /// The row to set aside when one view is at fault, `None` otherwise.
    pub fn bad_view_row(&self) -> Option<usize> {
        match self {
            TableError::BadView { row, .. } => Some(*row),
            _ => None,
        }
    }
}

/// What is wrong with one view. Names the field path, not the value.
#[derive(Debug, thiserror::Error)]
pub enum ViewProblem {
    /// The view has a field the catalog does not list: the merger runs another
    /// catalog version than the archiver.
    #[error("field `{path}` is not in the catalog")]
    UnknownField {
        /// The view's path.
        path: String,
    },
    /// The field's shape (register, set, log) differs from its catalog kind.
    #[error("field `{path}` is a {found} in the view but a {expected} in the catalog")]
    WrongKind {
        /// The catalog path.
        path: String,
        /// The view's shape.
        found: &'static str,
        /// The catalog's kind.
        expected: &'static str,
    },
    /// A value (displayed or in conflict) does not fit its column's type.
    #[error("field `{path}`: {found} where the catalog's type is {expected}")]
    WrongValue {
        /// The catalog path.
        path: String,
        /// What was found, described by its JSON kind, never its content.
        found: &'static str,
        /// The catalog value type.
        expected: &'static str,
    },
    /// An HLC wall clock beyond what a millisecond timestamp holds (year 292
    /// million): a corrupt view.
    #[error("a clock reading in {place} is out of range")]
    ClockOutOfRange {
        /// `version`, or the field path whose write carries it.
        place: String,
    },
    /// `updated_at` is not an RFC 3339 UTC instant.
    #[error("`updated_at` is not an RFC 3339 UTC instant")]
    BadUpdatedAt,
}
