//! HTTP Message Signatures (RFC 9421) as the query service takes them: one
//! Ed25519 signature per request, by a registered key, over the method, the
//! path, the query and a `created` time, with a `nonce` the service
//! remembers so that a captured request cannot be sent again.
//!
//! Key decision: the profile is narrow and fixed. The signature must cover
//! `@method`, `@path` and `@query` (and may cover `@authority`); `created`,
//! `keyid` and `nonce` are required; `alg`, when given, must be `ed25519`.
//! The key's algorithm comes from the registry, never from the request. A
//! request carries exactly one signature: a field with several is refused
//! rather than guessing which one the service should trust.
//!
//! Wire form (what [`sign`] writes and [`verify`] reads):
//!
//! ```text
//! Signature-Input: tidemark=("@method" "@path" "@query");created=1767225600;keyid="site-a-reader";alg="ed25519";nonce="3q2-7w"
//! Signature: tidemark=:<base64 of the 64-byte Ed25519 signature>:
//! ```
//!
//! The signed bytes are RFC 9421's signature base: one line per covered
//! component, `"@method": GET`, `"@path": /v1/patients/pt-1`, `"@query": ?`
//! (a request without a query string covers `?`), then `"@signature-params":`
//! and the inner list exactly as serialized above, lines joined by `\n`.
//! Errors never quote a header's text: only the ids of registered keys.

mod sf;

use ed25519_dalek::{Signature, Signer as _, SigningKey};

use crate::keys::{KeyRegistry, RegisteredKey, Scope};
use sf::{Bare, Member, Params};

/// The label this crate's clients sign under (any label is accepted).
pub const LABEL: &str = "tidemark";
/// The components every signature must cover.
pub const REQUIRED: [&str; 3] = ["@method", "@path", "@query"];
/// The components a signature may cover.
const ALLOWED: [&str; 4] = ["@method", "@path", "@query", "@authority"];
/// The longest nonce taken: enough for any random token, small to remember.
pub const MAX_NONCE: usize = 128;
/// The longest `Signature-Input` or `Signature` field taken.
pub const MAX_FIELD: usize = 2048;

/// What a signature covers: the parts of the request the service checks.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The method, as sent (`GET`).
    pub method: &'a str,
    /// The path, as sent (percent-encoded, starting with `/`).
    pub path: &'a str,
    /// The query string without `?`, as sent; `None` when there is none.
    pub query: Option<&'a str>,
    /// The `Host` (or `:authority`), when the signature covers it.
    pub authority: Option<&'a str>,
}

/// The signature's timing rules, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Freshness {
    /// How old `created` may be.
    pub max_age_s: u64,
    /// How far `created` may be ahead of the service's clock (clock skew).
    pub max_skew_s: u64,
}

/// A request signature that verified.
#[derive(Debug)]
pub struct Verified<'r> {
    /// The key that made it (holds the `read` scope).
    pub key: &'r RegisteredKey,
    /// The nonce, to remember until [`Verified::expires_s`].
    pub nonce: String,
    /// When the signature stops being fresh (Unix seconds): remembering the
    /// nonce until then refuses every replay.
    pub expires_s: u64,
}

/// Why a request's signature was refused. Every variant is a 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpSigError {
    /// No `Signature-Input` or no `Signature` field.
    #[error("the request is not signed: send Signature-Input and Signature (RFC 9421)")]
    Missing,
    /// A field is not the structured dictionary RFC 9421 describes.
    #[error("the {field} field is malformed: {why}")]
    Malformed {
        /// Which field.
        field: &'static str,
        /// Where it broke (no field text).
        why: String,
    },
    /// The signature's parameters or components are not this profile's.
    #[error("the signature does not follow the profile: {0}")]
    Profile(String),
    /// The key is not registered, or not for reading. Its id is not quoted:
    /// it is the client's text until the registry knows it.
    #[error("the signing key is not registered to read")]
    UnknownKey,
    /// The key is registered to read but revoked, expired or not yet valid.
    #[error("key `{0}` may not sign now: {1}")]
    KeyNotValid(String, String),
    /// `created` is older than allowed, or `expires` has passed.
    #[error("the signature is expired: sign each request when it is sent")]
    Expired,
    /// `created` is ahead of the service's clock by more than the skew.
    #[error("the signature's created time is in the future: check the client's clock")]
    FromTheFuture,
    /// The signature does not verify under the key.
    #[error("the signature by key `{0}` does not verify over this request")]
    BadSignature(String),
}

impl HttpSigError {
    /// The stable code answered in a 401's body.
    pub fn code(&self) -> &'static str {
        match self {
            HttpSigError::Missing => "unsigned",
            HttpSigError::Malformed { .. } => "malformed_signature",
            HttpSigError::Profile(_) => "signature_profile",
            HttpSigError::UnknownKey => "unknown_key",
            HttpSigError::KeyNotValid(..) => "key_not_valid",
            HttpSigError::Expired => "signature_expired",
            HttpSigError::FromTheFuture => "signature_from_the_future",
            HttpSigError::BadSignature(_) => "bad_signature",
        }
    }
}

/// The two header values of a signed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// The `Signature-Input` field.
    pub signature_input: String,
    /// The `Signature` field.
    pub signature: String,
}

/// Signs `request` as `keyid` at `created` (Unix seconds) with `nonce`,
/// covering the required components.
///
/// # Panics
/// If `keyid` or `nonce` is not printable ASCII (key ids never are).
pub fn sign(request: &Request<'_>, key: &SigningKey, keyid: &str, created: u64, nonce: &str) -> SignatureHeaders {
    assert!(sf::is_sf_string(keyid) && sf::is_sf_string(nonce), "key ids and nonces are printable ASCII");
    let items: Vec<(Bare, Params)> = REQUIRED.iter().map(|c| (Bare::String((*c).to_owned()), Vec::new())).collect();
    let params: Params = vec![
        ("created".into(), Bare::Integer(i64::try_from(created).unwrap_or(i64::MAX))),
        ("keyid".into(), Bare::String(keyid.to_owned())),
        ("alg".into(), Bare::String("ed25519".into())),
        ("nonce".into(), Bare::String(nonce.to_owned())),
    ];
    let params_text = sf::serialize_inner_list(&items, &params);
    let covered: Vec<&str> = REQUIRED.to_vec();
    let base = signature_base(request, &covered, &params_text);
    let signature = key.sign(base.as_bytes());
    let mut sig_field = format!("{LABEL}=");
    sf::serialize_bare(&Bare::Bytes(signature.to_bytes().to_vec()), &mut sig_field);
    SignatureHeaders { signature_input: format!("{LABEL}={params_text}"), signature: sig_field }
}

/// A fresh nonce: a UUIDv7 (74 random bits and the time), unique enough
/// that two requests by one key never share one.
pub fn new_nonce() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Verifies a request's signature against `registry` at `now_s` (Unix
/// seconds). The caller must still refuse a nonce it has seen before (until
/// [`Verified::expires_s`]) and check the key's patient scope.
///
/// # Errors
/// [`HttpSigError`], each a 401.
pub fn verify<'r>(
    request: &Request<'_>,
    signature_input: Option<&str>,
    signature: Option<&str>,
    registry: &'r KeyRegistry,
    now_s: u64,
    freshness: Freshness,
) -> Result<Verified<'r>, HttpSigError> {
    let (Some(input), Some(sig)) = (signature_input, signature) else { return Err(HttpSigError::Missing) };
    let malformed = |field: &'static str| move |why: String| HttpSigError::Malformed { field, why };
    for (field, text) in [("Signature-Input", input), ("Signature", sig)] {
        if text.len() > MAX_FIELD {
            return Err(HttpSigError::Malformed { field, why: format!("longer than {MAX_FIELD} bytes") });
        }
    }
    let inputs = sf::parse_dictionary(input).map_err(malformed("Signature-Input"))?;
    let sigs = sf::parse_dictionary(sig).map_err(malformed("Signature"))?;
    let [(label, Member::InnerList(items, params))] = inputs.as_slice() else {
        return Err(HttpSigError::Profile("Signature-Input must hold exactly one signature, an inner list".into()));
    };
    let Some((_, Member::Item(Bare::Bytes(sig_bytes), _))) = sigs.iter().find(|(l, _)| l == label) else {
        return Err(HttpSigError::Profile("Signature has no byte sequence under the Signature-Input's label".into()));
    };
    let covered = covered_components(items)?;
    let p = SigParams::of(params)?;
    let Some(key) = registry.get_for(&p.keyid, Scope::Read) else { return Err(HttpSigError::UnknownKey) };
    check_times(&p, now_s, freshness)?;
    if let Err(why) = key.validity().check(now_s.saturating_mul(1000)) {
        return Err(HttpSigError::KeyNotValid(key.id().to_owned(), why.to_string()));
    }
    if covered.contains(&"@authority") && request.authority.is_none() {
        return Err(HttpSigError::Profile("the signature covers @authority and the request has no Host".into()));
    }
    let base = signature_base(request, &covered, &sf::serialize_inner_list(items, params));
    let bad = || HttpSigError::BadSignature(key.id().to_owned());
    let signature = Signature::from_slice(sig_bytes).map_err(|_| bad())?;
    key.verifying_key().verify_strict(base.as_bytes(), &signature).map_err(|_| bad())?;
    let expires_s = p.created.saturating_add(freshness.max_age_s).min(p.expires.unwrap_or(u64::MAX));
    Ok(Verified { key, nonce: p.nonce, expires_s })
}

/// The signature's parameters this profile reads.
struct SigParams {
    created: u64,
    expires: Option<u64>,
    keyid: String,
    nonce: String,
}

impl SigParams {
    fn of(params: &Params) -> Result<Self, HttpSigError> {
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let profile = |what: &str| HttpSigError::Profile(what.to_owned());
        let time = |name: &str| match get(name) {
            None => Ok(None),
            Some(Bare::Integer(t)) if *t >= 0 => Ok(Some(t.unsigned_abs())),
            Some(_) => Err(profile(&format!("`{name}` must be a non-negative integer (Unix seconds)"))),
        };
        let created = time("created")?.ok_or_else(|| profile("`created` is required"))?;
        let expires = time("expires")?;
        let Some(Bare::String(keyid)) = get("keyid") else { return Err(profile("`keyid` is required, a string")) };
        let Some(Bare::String(nonce)) = get("nonce") else {
            return Err(profile("`nonce` is required, a string unique to the request"));
        };
        if nonce.is_empty() || nonce.len() > MAX_NONCE {
            return Err(profile(&format!("`nonce` must be 1 to {MAX_NONCE} characters")));
        }
        match get("alg") {
            None => {}
            Some(Bare::String(alg)) if alg == "ed25519" => {}
            Some(_) => return Err(profile("`alg`, when given, must be \"ed25519\"")),
        }
        Ok(Self { created, expires, keyid: keyid.clone(), nonce: nonce.clone() })
    }
}

fn covered_components(items: &[(Bare, Params)]) -> Result<Vec<&str>, HttpSigError> {
    let mut covered = Vec::with_capacity(items.len());
    for (item, params) in items {
        let Bare::String(name) = item else {
            return Err(HttpSigError::Profile("covered components are strings".into()));
        };
        if !params.is_empty() || !ALLOWED.contains(&name.as_str()) {
            return Err(HttpSigError::Profile(format!(
                "covered components may be {} only, without parameters",
                ALLOWED.join(", ")
            )));
        }
        if covered.contains(&name.as_str()) {
            return Err(HttpSigError::Profile("a component is covered twice".into()));
        }
        covered.push(name.as_str());
    }
    if let Some(missing) = REQUIRED.iter().find(|c| !covered.contains(c)) {
        return Err(HttpSigError::Profile(format!("the signature must cover {missing}")));
    }
    Ok(covered)
}

fn check_times(p: &SigParams, now_s: u64, f: Freshness) -> Result<(), HttpSigError> {
    if p.created > now_s.saturating_add(f.max_skew_s) {
        return Err(HttpSigError::FromTheFuture);
    }
    // Fresh for [created, created + max_age): the nonce is remembered until
    // the end of that window, so no second of it is open to a replay.
    if now_s >= p.created.saturating_add(f.max_age_s) || p.expires.is_some_and(|e| now_s >= e) {
        return Err(HttpSigError::Expired);
    }
    Ok(())
}

/// RFC 9421's signature base for the covered components, in their order.
fn signature_base(request: &Request<'_>, covered: &[&str], params_text: &str) -> String {
    let mut base = String::new();
    for component in covered {
        let value = match *component {
            "@method" => request.method.to_owned(),
            "@path" if request.path.is_empty() => "/".to_owned(),
            "@path" => request.path.to_owned(),
            "@query" => format!("?{}", request.query.unwrap_or_default()),
            _ => request.authority.unwrap_or_default().to_ascii_lowercase(),
        };
        base.push_str(&format!("\"{component}\": {value}\n"));
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(params_text);
    base
}

#[cfg(test)]
mod tests;
