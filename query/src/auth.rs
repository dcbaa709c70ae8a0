//! Who is asking: the request's RFC 9421 signature, checked against the key
//! registry (a key with the `read` scope), its nonce claimed once, and the
//! key's patient scope.

use axum::http::request::Parts;
use tidemark_schemas::httpsig::{self, HttpSigError, Request};
use tidemark_schemas::keys::{RegisteredKey, Scope};

use crate::replay::Refused;
use crate::state::AppState;

/// A verified reader.
#[derive(Clone, Debug)]
pub(crate) struct Reader {
    /// The key that signed.
    pub(crate) key_id: String,
    /// Its source (the reading site).
    pub(crate) source: String,
    prefixes: Option<Vec<String>>,
}

impl Reader {
    /// The id prefixes that are both under `wanted` and readable by the key:
    /// what a listing filtered by `wanted` may look at (none: nothing).
    pub(crate) fn prefixes_within(&self, wanted: &str) -> Vec<String> {
        let Some(own) = &self.prefixes else { return vec![wanted.to_owned()] };
        own.iter()
            .filter_map(|p| {
                if p.starts_with(wanted) {
                    Some(p.clone())
                } else if wanted.starts_with(p.as_str()) {
                    Some(wanted.to_owned())
                } else {
                    None
                }
            })
            .collect()
    }

    /// Whether the key may read `patient`.
    pub(crate) fn may_read(&self, patient: &str) -> bool {
        self.prefixes.as_ref().is_none_or(|ps| ps.iter().any(|p| patient.starts_with(p.as_str())))
    }
}

/// Why a request was not let in.
#[derive(Debug)]
pub(crate) enum Denied {
    /// 401: unsigned, badly signed, stale, or an unknown key.
    Signature(HttpSigError),
    /// 401: this nonce was used already.
    Replayed,
    /// 503: the nonce memory is full.
    Busy,
}

/// Checks the request's signature and claims its nonce.
pub(crate) fn authorize(state: &AppState, parts: &Parts, now_s: u64) -> Result<Reader, Denied> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let authority = parts.uri.authority().map(|a| a.as_str()).or_else(|| header("host"));
    let request =
        Request { method: parts.method.as_str(), path: parts.uri.path(), query: parts.uri.query(), authority };
    let verifier = state.verifier.get();
    let verified = httpsig::verify(
        &request,
        header("signature-input"),
        header("signature"),
        verifier.registry(),
        now_s,
        state.cfg.freshness,
    )
    .map_err(Denied::Signature)?;
    let key = verified.key;
    state.nonces.claim(key.id(), &verified.nonce, verified.expires_s, now_s).map_err(|e| match e {
        Refused::Replayed => Denied::Replayed,
        Refused::Full => Denied::Busy,
    })?;
    Ok(Reader::of(key))
}

impl Reader {
    fn of(key: &RegisteredKey) -> Self {
        Self {
            key_id: key.id().to_owned(),
            source: key.source().to_owned(),
            prefixes: key.patient_prefixes().map(<[String]>::to_vec),
        }
    }

    /// The reader as the registry says now: `None` when the key was removed,
    /// lost the `read` scope, or is revoked or expired (a long-lived feed
    /// stops there; a narrowed scope applies from the next change).
    pub(crate) fn current(&self, state: &AppState, now_s: u64) -> Option<Self> {
        let verifier = state.verifier.get();
        let key = verifier.registry().get_for(&self.key_id, Scope::Read)?;
        key.validity().check(now_s.saturating_mul(1000)).ok()?;
        Some(Self::of(key))
    }
}
