//! Values in and out as JSON text: what crosses between Python and the
//! pipeline's serde types (see the crate docs for why).

use std::borrow::Cow;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The JSON bytes of `value`: `str` and `bytes` as given (their exact bytes
/// are what gets verified or signed), a `dict`, `list` or `tuple` serialized compactly by
/// Python's `json` (no NaN or infinity, which are not JSON).
///
/// # Errors
/// `TypeError` for any other type; the `json` module's error for a dict that
/// does not serialize.
pub fn bytes_of<'a>(what: &str, value: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Cow::Borrowed(s.to_str()?.as_bytes()));
    }
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if value.cast::<PyDict>().is_ok() || value.cast::<PyList>().is_ok() || value.cast::<PyTuple>().is_ok() {
        let py = value.py();
        let dumps = DUMPS.import(py, "json", "dumps")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("separators", (",", ":"))?;
        kwargs.set_item("ensure_ascii", false)?;
        kwargs.set_item("allow_nan", false)?;
        let text = dumps.call((value,), Some(&kwargs))?;
        return Ok(Cow::Owned(text.cast::<PyString>()?.to_str()?.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be a dict or list, or its JSON as str or bytes, not {}",
        value.get_type().name()?
    )))
}

/// `text` read by Python's `json.loads`.
///
/// # Errors
/// Only if `json` fails on text serde wrote, which would be a bug.
pub fn loads<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    LOADS.import(py, "json", "loads")?.call1((text,))
}

/// `value` serialized by serde, then read by Python's `json.loads`.
///
/// # Errors
/// As [`loads`].
pub fn to_python<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("serializing: {e}")))?;
    loads(py, &text)
}

/// The items of an iterable of JSON values (envelopes or edits), as (position,
/// bytes): blank items (an NDJSON file's empty lines) are skipped, as the
/// CLI skips blank lines. One str, bytes or dict is refused rather than
/// iterated by character, byte or key.
///
/// # Errors
/// `TypeError` for a lone value or an item of the wrong type.
pub fn items_of(what: &str, items: &Bound<'_, PyAny>) -> PyResult<Vec<(usize, Vec<u8>)>> {
    if items.is_instance_of::<PyString>() || items.is_instance_of::<PyBytes>() || items.is_instance_of::<PyDict>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an iterable of them (e.g. a list, or an open NDJSON file), not one str, bytes or dict"
        )));
    }
    let mut out = Vec::new();
    for (i, item) in items.try_iter()?.enumerate() {
        let item = item?;
        let bytes = bytes_of(&format!("each of {what}"), &item)?;
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            out.push((i, bytes.into_owned()));
        }
    }
    Ok(out)
}
