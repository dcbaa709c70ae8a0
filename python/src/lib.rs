//! `tidemark._native`: the Rust half of the `tidemark` Python package. It
//! wraps the pipeline's pure crates (the CRDT, the contract, the crypto and
//! the snapshot readers) so that Python gets the pipeline's exact semantics:
//! the same decoder, validation, merge, canonical encoding and signatures,
//! never a re-implementation.
//!
//! Key decision: values cross into Python as JSON. A view, an event or an
//! envelope is serialized by the same serde code `tidemark fold`, `sign` and
//! `verify` print with, then read by Python's `json` module, so a dict from
//! this package and a line from the CLI are the same object by construction.
//! The Python half (`tidemark/`) builds the pyarrow objects (a dataset, a KMS
//! client) that are easier to write in Python than through the C API.

mod catalog;
mod document;
mod envelope;
mod errors;
mod json;
mod keys;
mod snapshot;

use pyo3::prelude::*;

/// mimalloc for the Rust side's allocations, as the binary uses: a fold
/// allocates and frees many small values per event, and glibc's malloc cost
/// the fold about half its rate (docs/benchmarks.md). Python's own objects
/// keep Python's allocator; nothing allocated by one is freed by the other.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The extension module.
#[pymodule]
mod _native {
    #[pymodule_export]
    use crate::document::DocumentMerge;
    #[pymodule_export]
    use crate::envelope::{fold, sign, sign_json, verify};
    #[pymodule_export]
    use crate::errors::{ConfigError, DecodeError, EditRefused, SnapshotError, TidemarkError};
    #[pymodule_export]
    use crate::keys::Registry;
    #[pymodule_export]
    use crate::snapshot::{SnapshotKeys, snapshot_keys};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
