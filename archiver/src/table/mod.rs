//! Patient views to Arrow record batches to Parquet parts, in the identified or
//! the de-identified profile. Pure: no Kafka, no async, only `std::io::Write`.
//!
//! Key decision: the table schema and the de-identification rules are derived
//! from the record catalog (each field's kind, value type and PHI class), never
//! kept by hand. A new catalog field gets its column and its PHI treatment
//! without a code change, and a field the catalog marks as PHI cannot reach the
//! de-identified profile by someone forgetting a list. The mapping is documented
//! in `docs/snapshot-schema.md`.
//!
//! Memory is bounded by the caller's slice plus one Parquet row group: views are
//! converted a chunk at a time ([`PartOptions::batch_rows`]) and the writer
//! flushes a row group once it reaches [`PartOptions::max_row_group_rows`] rows or
//! [`PartOptions::max_row_group_bytes`] encoded bytes.

mod build;
mod deid;
mod error;
mod lists;
mod schema;
mod time;
mod write;
mod zip3;

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_deid;

use std::fmt;

use zeroize::Zeroize;

pub use build::to_batch;
pub use error::{TableError, ViewProblem};
pub use schema::{TABLE_FORMAT_VERSION, TableLayout};
pub use write::{PartOptions, PartSummary, PartWriter, sort_views, writer_properties};

/// Which snapshot profile a table is built for (docs/design.md#deidentification).
///
/// The dataset key of the de-identified profile keys the HMAC that turns
/// patient ids into pseudonyms: the same key gives the same pseudonym in every
/// snapshot (so a training set can follow a patient across snapshots), another
/// key gives unlinkable pseudonyms (so two data recipients cannot join their
/// copies). It is a secret: `Debug` redacts it and it is wiped on drop.
#[derive(Clone)]
pub enum Profile {
    /// Every column, real patient ids.
    Identified,
    /// Direct identifiers and free text dropped, dates generalised to the
    /// year, geography to 3 characters, patient ids replaced by pseudonyms.
    Deidentified {
        /// Key of HMAC-SHA256(dataset_key, patient_id).
        dataset_key: [u8; 32],
    },
}

impl Profile {
    /// The profile's name as written in the schema metadata and the manifest.
    pub fn name(&self) -> &'static str {
        match self {
            Profile::Identified => "identified",
            Profile::Deidentified { .. } => "deidentified",
        }
    }
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Profile::Identified => f.write_str("Identified"),
            Profile::Deidentified { .. } => f.write_str("Deidentified { dataset_key: <redacted> }"),
        }
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        if let Profile::Deidentified { dataset_key } = self {
            dataset_key.zeroize();
        }
    }
}
