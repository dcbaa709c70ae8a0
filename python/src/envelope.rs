//! Signing, verifying and folding envelopes: `tidemark sign`, `verify` and
//! `fold` as functions, on the same code.

use std::path::PathBuf;

use std::ffi::CString;

use pyo3::exceptions::{PyRuntimeWarning, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use tidemark_crdt::fold::{Fold, Rejection};
use tidemark_schemas::Catalog;

use crate::catalog::CatalogRef;
use crate::document::now_ms;
use crate::errors::refused;
use crate::json::{bytes_of, items_of, loads};
use crate::keys::{registry_of, signing_key};

/// Signs an edit event with a key file written by `tidemark keys generate`,
/// as `tidemark sign` does: the event's JSON bytes become the envelope's
/// payload unchanged. Returns the DSSE envelope as a dict.
///
/// `event` is a dict (serialized by `json.dumps` with `separators=(",",
/// ":")` and `ensure_ascii=False`) or its JSON as str or bytes (signed
/// exactly as given, less one trailing line ending, as the CLI signs a
/// line). Raises `EditRefused` when the
/// event does not decode or its source is not the key's, `ConfigError`
/// when the key file is unreadable, malformed or readable by others.
#[pyfunction]
#[pyo3(signature = (event, *, key))]
pub fn sign<'py>(py: Python<'py>, event: &Bound<'py, PyAny>, key: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let json = sign_json(py, event, key)?;
    loads(py, &json)
}

/// As `sign`, returning the envelope's JSON text: byte for byte the line
/// `tidemark sign` writes for the same event and key.
#[pyfunction]
#[pyo3(signature = (event, *, key))]
pub fn sign_json(py: Python<'_>, event: &Bound<'_, PyAny>, key: PathBuf) -> PyResult<String> {
    let key = signing_key(&key)?;
    let payload = bytes_of("event", event)?;
    // A line read from an NDJSON file keeps its ending; the CLI signs lines
    // without it, and so does this.
    let payload = payload.strip_suffix(b"\n").unwrap_or(&payload);
    let payload = payload.strip_suffix(b"\r").unwrap_or(payload);
    key.sign_event(payload)
        .map(|envelope| envelope.to_json())
        .map_err(|r| refused(py, &Rejection { reason: r.reason, detail: r.message }, None))
}

/// Verifies a DSSE envelope against a key registry and validates its event
/// against the catalog at the current time, as `tidemark verify` does.
/// Returns the event as a dict.
///
/// `envelope` is a dict or its JSON as str or bytes; `registry` a
/// `Registry` or a registry file's path; `catalog` a catalog TOML file
/// (default: the built-in v1 catalog). Raises `EditRefused` with the
/// pipeline's reason (`bad_signature`, `unknown_key`, `unknown_path`, ...).
#[pyfunction]
#[pyo3(signature = (envelope, *, registry, catalog=None))]
pub fn verify<'py>(
    py: Python<'py>,
    envelope: &Bound<'py, PyAny>,
    registry: &Bound<'py, PyAny>,
    catalog: Option<PathBuf>,
) -> PyResult<Bound<'py, PyAny>> {
    let verifier = registry_of(registry)?;
    let catalog = CatalogRef::load(catalog)?;
    let bytes = bytes_of("envelope", envelope)?;
    match verifier.verify_and_validate(&bytes, &catalog, now_ms()) {
        Ok(verified) => {
            let text = std::str::from_utf8(verified.payload())
                .map_err(|_| PyValueError::new_err("the verified payload is not UTF-8"))?;
            loads(py, text)
        }
        Err(e) => Err(refused(py, &Rejection { reason: e.reason(), detail: e.to_string() }, None)),
    }
}

/// Folds envelopes into one view per patient, as `tidemark fold` does:
/// returns `{patient_id: view}`, each view exactly the JSON object `fold`
/// prints for that patient, in patient id order.
///
/// `envelopes` is an iterable of dicts, str or bytes (one envelope each).
/// With `registry` every signature is verified; without it payloads are read
/// unverified (still validated against the catalog). `errors="raise"`
/// (the default) raises `EditRefused` for the first refused envelope, with
/// its position as `index`; `errors="skip"` folds the others, as the CLI
/// does, and warns (`RuntimeWarning`) with the positions and reasons of
/// those it skipped. Blank items (an NDJSON file's empty lines) are skipped.
#[pyfunction]
#[pyo3(signature = (envelopes, *, registry=None, catalog=None, errors="raise"))]
pub fn fold<'py>(
    py: Python<'py>,
    envelopes: &Bound<'py, PyAny>,
    registry: Option<&Bound<'py, PyAny>>,
    catalog: Option<PathBuf>,
    errors: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let skip = match errors {
        "raise" => false,
        "skip" => true,
        other => return Err(PyValueError::new_err(format!("errors must be \"raise\" or \"skip\", not {other:?}"))),
    };
    let verifier = registry.map(registry_of).transpose()?;
    let catalog = CatalogRef::load(catalog)?;
    let inputs = items_of("envelopes", envelopes)?;
    let (views, refusals) = py.detach(|| fold_all(&catalog, verifier.as_deref(), &inputs));
    if let (false, Some(first)) = (skip, refusals.first()) {
        return Err(refused(py, &first.1, Some(first.0)));
    }
    if !refusals.is_empty() {
        let listed: Vec<String> = refusals.iter().take(10).map(|(i, r)| format!("{i}: {}", r.reason)).collect();
        let more = if refusals.len() > 10 { ", ..." } else { "" };
        let message = format!("fold skipped {} refused envelopes ({}{more})", refusals.len(), listed.join(", "));
        PyErr::warn(py, &py.get_type::<PyRuntimeWarning>(), &CString::new(message).unwrap_or_default(), 1)?;
    }
    let out = PyDict::new(py);
    for (patient, view) in views {
        out.set_item(PyString::new(py, &patient), loads(py, &view)?)?;
    }
    Ok(out.into_any())
}

/// Envelopes per batch, as `tidemark fold` chunks its input.
const FOLD_CHUNK: usize = 256;

/// The views (patient id, JSON) and the refused inputs (0-based index, why).
type Folded = (Vec<(String, String)>, Vec<(usize, Rejection)>);

fn fold_all(
    catalog: &Catalog,
    verifier: Option<&tidemark_schemas::verify::Verifier>,
    inputs: &[(usize, Vec<u8>)],
) -> Folded {
    let mut fold = Fold::new(catalog, verifier);
    let lines: Vec<(usize, &[u8])> = inputs.iter().map(|(i, b)| (*i, b.as_slice())).collect();
    // In chunks, as `tidemark fold` reads lines: each chunk's signatures are
    // one batch, and the decoded events of one chunk stay in cache (the
    // whole input at once ran at half the rate).
    let refusals = lines
        .chunks(FOLD_CHUNK)
        .flat_map(|chunk| fold.fold_lines(chunk))
        .map(|e| (e.line, Rejection { reason: e.reason, detail: e.message }))
        .collect();
    let views = fold
        .views()
        .map(|v| {
            let json = serde_json::to_string(&v).expect("a view always serializes");
            (v.patient_id, json)
        })
        .collect();
    (views, refusals)
}

/// Whether JSON bytes are a DSSE envelope rather than a bare event, by the
/// top-level object's first key: an envelope's keys (`payloadType`,
/// `payload`, `signatures`) and an event's are disjoint, and each decoder
/// refuses the other's keys, so the first key decides, at the cost of
/// reading one key. It runs before every edit; a parse of the whole text
/// cost 7% of `apply_edit` in a profile. A first key written with an escape
/// (`"\u0070ayload"`) is decided by a skim of the whole text instead.
pub fn is_envelope(bytes: &[u8]) -> bool {
    let mut rest = bytes.trim_ascii_start();
    let Some(inner) = rest.strip_prefix(b"{") else { return false };
    rest = inner.trim_ascii_start();
    let Some(key) = rest.strip_prefix(b"\"") else { return false };
    match key.iter().position(|&b| b == b'"' || b == b'\\') {
        Some(end) if key[end] == b'"' => matches!(&key[..end], b"payloadType" | b"payload" | b"signatures"),
        Some(_) => has_payload_type(bytes),
        None => false,
    }
}

/// Whether the top-level object has a `payloadType` key, escapes decoded:
/// serde skims the values without building them.
fn has_payload_type(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(rename = "payloadType")]
        payload_type: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Peek>(bytes).is_ok_and(|p| p.payload_type.is_some())
}
