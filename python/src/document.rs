//! `DocumentMerge`: one patient's CRDT document, the merger's own
//! `PatientDoc`, driven from Python.
//!
//! Key decision: an edit goes through exactly the checks the pipeline
//! applies (envelope decode and, with a registry, signature verification;
//! the catalog's rules as the fold applies them), then through the same
//! `apply`, so a document fed any order of a patient's events equals the view
//! `tidemark fold` prints. Without a registry, envelopes are read unverified,
//! as `tidemark fold` without `--keys` does; with one, bare events are
//! refused, since a document that checks signatures must not take unsigned
//! edits beside them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};
use serde_json::value::RawValue;
use tidemark_crdt::PatientDoc;
use tidemark_crdt::fold::{self, Rejection};
use tidemark_schemas::verify::Verifier;
use tidemark_schemas::{Catalog, EditEvent, FieldView, Hlc, Reason};

use crate::catalog::CatalogRef;
use crate::envelope::is_envelope;
use crate::errors::{DecodeError, refused};
use crate::json::{bytes_of, items_of, loads, to_python};
use crate::keys::registry_of;

/// One patient's record as a CRDT: edits in any order, duplicated or
/// concurrent, converge to the same state, and concurrent writes to one
/// field are kept side by side as a conflict until an edit that observed
/// them resolves it.
///
/// `DocumentMerge(document_id, *, registry=None, catalog=None)`:
/// `document_id` is the patient id; `registry` (a `Registry` or a registry
/// file's path) makes `apply_edit` verify every envelope's signatures and
/// refuse bare events; `catalog` is a catalog TOML file (default: the
/// built-in v1 catalog).
#[pyclass(module = "tidemark")]
pub struct DocumentMerge {
    doc: PatientDoc,
    verifier: Option<Arc<Verifier>>,
    catalog: CatalogRef,
    /// The document's hybrid logical clock: the greatest HLC it has applied
    /// or issued. `edit` stamps new events past it.
    clock: Hlc,
}

#[pymethods]
impl DocumentMerge {
    #[new]
    #[pyo3(signature = (document_id, *, registry=None, catalog=None))]
    fn new(document_id: &str, registry: Option<&Bound<'_, PyAny>>, catalog: Option<PathBuf>) -> PyResult<Self> {
        let catalog = CatalogRef::load(catalog)?;
        catalog
            .check_identifier(document_id)
            .map_err(|why| PyValueError::new_err(format!("document_id is not a patient id: it {why}")))?;
        Ok(Self {
            doc: PatientDoc::new(document_id),
            verifier: registry.map(registry_of).transpose()?,
            catalog,
            clock: Hlc::default(),
        })
    }

    /// Applies one edit: an edit event (a dict as in docs/events.md, or its
    /// JSON as str or bytes) or a signed DSSE envelope holding one. Applying
    /// an edit twice changes nothing.
    ///
    /// Returns how many conflicts the edit opened (negative when it resolved
    /// more than it opened). Raises `EditRefused`, with the pipeline's reason
    /// code, for an edit the pipeline would refuse (nothing is applied).
    fn apply_edit(&mut self, py: Python<'_>, edit: &Bound<'_, PyAny>) -> PyResult<i64> {
        let bytes = bytes_of("edit", edit)?;
        let event = check_edit(&self.catalog, self.verifier.as_deref(), &bytes).map_err(|r| refused(py, &r, None))?;
        self.apply(&event).map_err(|r| refused(py, &r, None))
    }

    /// Applies several edits, as `apply_edit` each, verifying the envelopes'
    /// signatures as one batch. `edits` is an iterable (a list, an open
    /// NDJSON file: blank lines are skipped). Stops at the first refused
    /// edit and raises `EditRefused` with its position as `index`; the edits
    /// before it stay applied. Returns the net change of open conflicts.
    fn apply_edits(slf: &Bound<'_, Self>, edits: &Bound<'_, PyAny>) -> PyResult<i64> {
        let py = slf.py();
        let inputs = items_of("edits", edits)?;
        // The checks run without the GIL and without a borrow of the
        // document, so other threads may read it meanwhile.
        let (catalog, verifier) = {
            let this = slf.try_borrow()?;
            (this.catalog.clone(), this.verifier.clone())
        };
        let checked = py.detach(|| check_edits(&catalog, verifier.as_deref(), &inputs));
        let mut this = slf.try_borrow_mut()?;
        let mut opened = 0;
        for ((i, _), result) in inputs.iter().zip(checked) {
            let event = result.map_err(|r| refused(py, &r, Some(*i)))?;
            opened += this.apply(&event).map_err(|r| refused(py, &r, Some(*i)))?;
        }
        Ok(opened)
    }

    /// The document's view as a dict: exactly the JSON object `tidemark
    /// fold` prints for this patient (`patient_id`, `fields`, `version`,
    /// `event_count`, `updated_at`, `open_conflicts`).
    fn get_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.doc.view())
    }

    /// The view as JSON text, byte for byte the line `tidemark fold` prints.
    fn state_json(&self) -> String {
        serde_json::to_string(&self.doc.view()).expect("a view always serializes")
    }

    /// Merges another replica of the same patient's document into this one
    /// (the result is as if every edit of both had been applied here).
    /// Raises `ValueError` for another patient's document.
    fn merge(slf: &Bound<'_, Self>, other: &Bound<'_, DocumentMerge>) -> PyResult<()> {
        if slf.is(other) {
            return Ok(()); // merging a document with itself changes nothing
        }
        let mut this = slf.try_borrow_mut()?;
        this.merge_from(&*other.try_borrow()?)
    }

    /// The fields in conflict: for each register written concurrently by
    /// edits that did not see each other, its view (`value`, `author`,
    /// `source`, `hlc`, and the other live writes as `conflicts`) with its
    /// `path`. Empty when there is none.
    #[getter]
    fn conflicts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        /// A conflicted field's view with its path first.
        #[derive(serde::Serialize)]
        struct Conflicted<'a> {
            path: &'a str,
            #[serde(flatten)]
            field: &'a FieldView,
        }
        let view = self.doc.view();
        let open: Vec<Conflicted<'_>> = view
            .fields
            .iter()
            .filter(|(_, f)| matches!(f, FieldView::Register { conflicts, .. } if !conflicts.is_empty()))
            .map(|(path, field)| Conflicted { path, field })
            .collect();
        to_python(py, &open)
    }

    /// How many fields hold a conflict.
    #[getter]
    fn open_conflicts(&self) -> u32 {
        self.doc.open_conflicts()
    }

    /// The version vector (`{source: {"wall_ms": ..., "logical": ...}}`):
    /// send it as an edit's `observed` to supersede what this document shows.
    #[getter]
    fn version<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.doc.version())
    }

    /// The patient id.
    #[getter]
    fn document_id(&self) -> &str {
        self.doc.patient_id()
    }

    /// The canonical state hash, as the state topic and `tidemark state`
    /// show it: equal hashes mean equal documents.
    #[getter]
    fn state_hash(&self) -> String {
        self.doc.state_hash()
    }

    /// The canonical state encoding (the bytes the state hash covers).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.doc.encode())
    }

    /// A document from `to_bytes` output. Raises `DecodeError` for bytes
    /// that are not a canonical state encoding.
    #[classmethod]
    #[pyo3(signature = (data, *, registry=None, catalog=None))]
    fn from_bytes(
        _cls: &Bound<'_, PyType>,
        data: &[u8],
        registry: Option<&Bound<'_, PyAny>>,
        catalog: Option<PathBuf>,
    ) -> PyResult<Self> {
        let doc = PatientDoc::decode(data).map_err(|e| DecodeError::new_err(format!("not a document state: {e}")))?;
        let catalog = CatalogRef::load(catalog)?;
        catalog
            .check_identifier(doc.patient_id())
            .map_err(|why| DecodeError::new_err(format!("not a document state: its patient id {why}")))?;
        let clock = doc.version().values().copied().max().unwrap_or_default();
        Ok(Self { doc, verifier: registry.map(registry_of).transpose()?, catalog, clock })
    }

    /// A new edit event for this patient, stamped with a new UUIDv7 and the
    /// document's own clock (past every edit it has applied or issued), and
    /// checked against the catalog; returned as a dict, not applied. Sign it
    /// with `tidemark.sign` to send it to ingest, or apply it here.
    ///
    /// `ops` is a list of operations as in docs/events.md; `observed` the
    /// version the author saw (`document.version`), or None for a blind
    /// write that supersedes everything older. Raises `EditRefused` when the
    /// event breaks a catalog rule.
    #[pyo3(signature = (source, author, ops, observed=None, *, audience=None))]
    fn edit<'py>(
        &mut self,
        py: Python<'py>,
        source: &str,
        author: &str,
        ops: &Bound<'py, PyAny>,
        observed: Option<&Bound<'py, PyAny>>,
        audience: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ops = raw_json("ops", &bytes_of("ops", ops)?)?;
        let observed = observed.map(|o| bytes_of("observed", o).and_then(|b| raw_json("observed", &b))).transpose()?;
        let now = now_ms();
        let hlc = self.next_tick(now)?;
        let event = NewEvent {
            event_id: uuid::Uuid::now_v7(),
            patient_id: self.doc.patient_id(),
            source,
            author,
            hlc,
            observed: observed.as_deref(),
            ops: &ops,
            audience,
        };
        let text = serde_json::to_string(&event).expect("an event of checked JSON always serializes");
        // Checked as ingest will check it, at the current time: an edit
        // stamped past a source whose clock runs far ahead is refused here
        // (`hlc_in_future`) rather than by ingest.
        fold::check_event(&self.catalog, text.as_bytes(), now).map_err(|r| refused(py, &r, None))?;
        self.clock = hlc; // issued: later edits are stamped past it
        loads(py, &text)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        // `a == a` borrows the same object twice, immutably: allowed.
        other.cast::<DocumentMerge>().is_ok_and(|o| o.try_borrow().is_ok_and(|o| o.doc == self.doc))
    }

    fn __repr__(&self) -> String {
        let view = self.doc.view();
        format!(
            "DocumentMerge(fields={}, events={}, open_conflicts={})",
            view.fields.len(),
            view.event_count,
            view.open_conflicts
        )
    }
}

/// Milliseconds since the Unix epoch: the receive-time clock `edit` and
/// `verify` check events against, as ingest does.
pub(crate) fn now_ms() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    u64::try_from(now).unwrap_or(u64::MAX)
}

/// The fields of an event `edit` makes, in the order docs/events.md lists
/// them.
#[derive(serde::Serialize)]
struct NewEvent<'a> {
    event_id: uuid::Uuid,
    patient_id: &'a str,
    source: &'a str,
    author: &'a str,
    hlc: Hlc,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed: Option<&'a RawValue>,
    ops: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<&'a str>,
}

/// JSON text kept exactly as given (numbers are not re-rounded), once
/// checked to be JSON.
fn raw_json(what: &str, bytes: &[u8]) -> PyResult<Box<RawValue>> {
    let text = std::str::from_utf8(bytes).map_err(|_| PyValueError::new_err(format!("{what} is not UTF-8")))?;
    RawValue::from_string(text.to_owned()).map_err(|e| PyValueError::new_err(format!("{what} is not JSON: {e}")))
}

impl DocumentMerge {
    fn merge_from(&mut self, other: &DocumentMerge) -> PyResult<()> {
        if other.doc.patient_id() != self.doc.patient_id() {
            return Err(PyValueError::new_err("cannot merge the document of another patient"));
        }
        self.doc.merge(&other.doc).map_err(|e| PyValueError::new_err(format!("the documents disagree: {e}")))?;
        self.clock = self.clock.max(other.clock);
        Ok(())
    }

    fn apply(&mut self, event: &EditEvent) -> Result<i64, Rejection> {
        if event.patient_id != self.doc.patient_id() {
            // The pipeline's analogue: a record keyed by one patient holding
            // another's event.
            return Err(Rejection {
                reason: Reason::KeyMismatch,
                detail: format!("event {} is for another patient than this document", event.event_id),
            });
        }
        let opened =
            self.doc.apply_counting(event).map_err(|e| Rejection { reason: Reason::Apply, detail: e.to_string() })?;
        self.clock = self.clock.max(event.hlc);
        Ok(opened)
    }

    /// The next reading of the document's clock at wall time `now` (not yet
    /// taken): the wall clock when it is ahead, else one logical tick past
    /// the greatest HLC seen or issued.
    fn next_tick(&self, now: u64) -> PyResult<Hlc> {
        let next = if now > self.clock.wall_ms {
            Some(Hlc::new(now, 0))
        } else if let Some(logical) = self.clock.logical.checked_add(1) {
            Some(Hlc::new(self.clock.wall_ms, logical))
        } else {
            self.clock.wall_ms.checked_add(1).map(|wall| Hlc::new(wall, 0))
        };
        next.ok_or_else(|| {
            PyValueError::new_err(
                "the document has applied an edit stamped at the clock's maximum; no later time exists",
            )
        })
    }
}

/// The checks the pipeline applies to one edit's bytes: an envelope as the
/// fold checks it (verified when there is a registry), a bare event by the
/// catalog (refused when there is a registry).
fn check_edit(catalog: &Catalog, verifier: Option<&Verifier>, bytes: &[u8]) -> Result<EditEvent, Rejection> {
    if is_envelope(bytes) {
        let mut checked = fold::check_envelopes(catalog, verifier, &[bytes]);
        return checked.pop().expect("one result per input");
    }
    if verifier.is_some() {
        return Err(Rejection {
            reason: Reason::Malformed,
            detail: "this document verifies signatures (it was made with a registry): pass a signed DSSE envelope, \
                     not a bare event"
                .into(),
        });
    }
    fold::check_event(catalog, bytes, fold::REPLAY_NOW_MS)
}

/// [`check_edit`] of many, signatures verified as one batch.
fn check_edits(
    catalog: &Catalog,
    verifier: Option<&Verifier>,
    inputs: &[(usize, Vec<u8>)],
) -> Vec<Result<EditEvent, Rejection>> {
    let envelopes: Vec<&[u8]> = inputs.iter().map(|(_, b)| b.as_slice()).filter(|b| is_envelope(b)).collect();
    let mut verified = fold::check_envelopes(catalog, verifier, &envelopes).into_iter();
    inputs
        .iter()
        .map(|(_, b)| {
            if is_envelope(b) {
                verified.next().expect("one result per envelope")
            } else {
                check_edit(catalog, verifier, b)
            }
        })
        .collect()
}
