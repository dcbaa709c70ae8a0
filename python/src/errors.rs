//! The package's exceptions, one base class so callers can catch everything
//! Tidemark refuses with one `except`. Messages name what was wrong and never
//! carry key material; an edit's refusal carries the pipeline's stable reason
//! code (`docs/events.md`) as `reason`.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use tidemark_crdt::fold::Rejection;

create_exception!(
    tidemark,
    TidemarkError,
    PyException,
    "The base of every error Tidemark raises for bad input or a failed check."
);
create_exception!(
    tidemark,
    EditRefused,
    TidemarkError,
    "An edit event or envelope the pipeline would refuse. `reason` is the stable \
     reason code ingest answers and the merger dead-letters with (e.g. \
     `bad_signature`, `unknown_path`); `index` is the input's position when \
     several were given, else None."
);
create_exception!(
    tidemark,
    ConfigError,
    TidemarkError,
    "A key file, key registry or catalog could not be read or is not valid \
     (missing, readable by others when it is a secret, malformed)."
);
create_exception!(
    tidemark,
    SnapshotError,
    TidemarkError,
    "A snapshot could not be found, verified or opened: a manifest that does \
     not verify, a part whose bytes are not the signed ones, a key it is not \
     encrypted to, a storage failure."
);
create_exception!(tidemark, DecodeError, TidemarkError, "Bytes that are not a document's canonical state encoding.");

/// An [`EditRefused`] for `rejection`, with `reason` and `index` set.
pub fn refused(py: Python<'_>, rejection: &Rejection, index: Option<usize>) -> PyErr {
    let message = match index {
        Some(i) => format!("input {i}: {}: {}", rejection.reason, rejection.detail),
        None => format!("{}: {}", rejection.reason, rejection.detail),
    };
    let err = EditRefused::new_err(message);
    let value = err.value(py);
    // Setting attributes on a fresh exception instance cannot fail short of
    // memory exhaustion; the message already says everything if it does.
    let _ = value.setattr("reason", rejection.reason.as_str());
    let _ = value.setattr("index", index);
    err
}
