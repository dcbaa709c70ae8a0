//! The HTTP side of a load: one `POST /v1/events` of an NDJSON batch, and
//! what the ingest API answered for each line.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Deserialize;

/// How one line of a batch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineOutcome {
    /// Kafka acknowledged it (the API said `accepted`).
    Accepted,
    /// Refused or not acknowledged, with the HTTP status the API gave the line
    /// (or the request); 0 when no response came (connection or timeout).
    Failed(u16),
}

/// A client of one ingest's events endpoint.
#[derive(Clone, Debug)]
pub struct EventsClient {
    http: reqwest::Client,
    url: String,
}

#[derive(Deserialize)]
struct Body {
    results: Vec<LineResult>,
}

#[derive(Deserialize)]
struct LineResult {
    result: String,
    line: usize,
    #[serde(default)]
    status: Option<u16>,
}

impl EventsClient {
    /// A client for `target`: an ingest base URL (`http://HOST:PORT` or
    /// `https://HOST:PORT`) or the events endpoint itself; requests time out
    /// after `timeout`. With `cacert`, an https server must present a
    /// certificate that chains to one in that PEM file (and only those);
    /// without it, to the system's roots.
    ///
    /// # Errors
    /// If `target` is not an http(s) URL, `cacert` cannot be read or holds
    /// no certificate, or the client cannot be built.
    pub fn new(target: &str, timeout: Duration, cacert: Option<&Path>) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(target).with_context(|| format!("--target `{target}` is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            anyhow::bail!("--target `{target}` must be an http:// or https:// URL");
        }
        let url = if parsed.path().trim_end_matches('/').ends_with("/v1/events") {
            parsed.to_string()
        } else {
            parsed.join("/v1/events").context("building the events URL")?.to_string()
        };
        let mut builder = reqwest::Client::builder().timeout(timeout).pool_max_idle_per_host(1024).tcp_nodelay(true);
        if let Some(path) = cacert {
            builder = builder.tls_backend_preconfigured(tls_trusting(path)?);
        }
        let http = builder.build().context("building the HTTP client")?;
        Ok(Self { http, url })
    }

    /// The events endpoint requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Posts `envelopes` as one NDJSON batch; one outcome per envelope, in order.
    pub async fn post(&self, envelopes: &[&str]) -> Vec<LineOutcome> {
        let mut body = String::with_capacity(envelopes.iter().map(|e| e.len() + 1).sum());
        for e in envelopes {
            body.push_str(e);
            body.push('\n');
        }
        let sent = self.http.post(&self.url).header("content-type", "application/x-ndjson").body(body).send().await;
        let response = match sent {
            Ok(r) => r,
            Err(_) => return vec![LineOutcome::Failed(0); envelopes.len()],
        };
        let status = response.status().as_u16();
        match response.bytes().await {
            Ok(bytes) => outcomes(status, &bytes, envelopes.len()),
            Err(_) => vec![LineOutcome::Failed(0); envelopes.len()],
        }
    }
}

/// A TLS client configuration (ring's primitives, as ingest's server) that
/// trusts exactly the CA certificates of the PEM file at `path`.
pub(crate) fn tls_trusting(path: &Path) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("reading --cacert {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("--cacert {} holds no certificate", path.display());
    }
    for cert in certs {
        roots.add(cert).with_context(|| format!("--cacert {}: a certificate is not a usable CA", path.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Maps a response to per-line outcomes. Per-line results win when the body
/// has them (202, 207 and refused batches); a whole-request error (a 413, 415
/// or 503 `{"error": ...}`) fails every line with the request's status. A
/// line the body does not mention counts as failed: nothing is assumed
/// accepted that the API did not say was.
fn outcomes(status: u16, body: &[u8], lines: usize) -> Vec<LineOutcome> {
    let fallback = LineOutcome::Failed(if status == 202 { 502 } else { status });
    let mut out = vec![fallback; lines];
    if let Ok(parsed) = serde_json::from_slice::<Body>(body) {
        for r in parsed.results {
            let Some(slot) = r.line.checked_sub(1).and_then(|i| out.get_mut(i)) else { continue };
            *slot = match r.result.as_str() {
                // A duplicate is in Kafka already (a retry of a line that
                // was written): durable, as the API says.
                "accepted" | "duplicate" => LineOutcome::Accepted,
                _ => LineOutcome::Failed(r.status.unwrap_or(status)),
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_per_line_results_and_missing_lines_fail() {
        let body = br#"{"accepted":1,"rejected":1,"results":[
            {"result":"accepted","line":1,"partition":0,"offset":3},
            {"result":"rejected","line":2,"status":422,"reason":"unknown_path","message":"x"}]}"#;
        assert_eq!(
            outcomes(207, body, 3),
            vec![LineOutcome::Accepted, LineOutcome::Failed(422), LineOutcome::Failed(207)]
        );
        let body = br#"{"accepted":0,"rejected":0,"duplicates":1,"results":[{"result":"duplicate","line":1}]}"#;
        assert_eq!(outcomes(202, body, 1), vec![LineOutcome::Accepted], "a duplicate is durable");
        let err = br#"{"error":{"status":503,"reason":"overloaded","message":"busy"}}"#;
        assert_eq!(outcomes(503, err, 2), vec![LineOutcome::Failed(503); 2]);
        // A 202 whose body cannot be read is not taken as accepted.
        assert_eq!(outcomes(202, b"garbage", 1), vec![LineOutcome::Failed(502)]);
    }

    #[test]
    fn targets_become_the_events_url() {
        let c = EventsClient::new("http://127.0.0.1:8080", Duration::from_secs(1), None).expect("client");
        assert_eq!(c.url(), "http://127.0.0.1:8080/v1/events");
        let c = EventsClient::new("https://h:1/v1/events", Duration::from_secs(1), None).expect("client");
        assert_eq!(c.url(), "https://h:1/v1/events");
        let err = EventsClient::new("ftp://h", Duration::from_secs(1), None).expect_err("scheme");
        assert!(err.to_string().contains("http://"), "{err}");
        assert!(EventsClient::new("not a url", Duration::from_secs(1), None).is_err());
        let missing = Path::new("/nonexistent/ca.pem");
        let err = EventsClient::new("https://h:1", Duration::from_secs(1), Some(missing)).expect_err("no CA file");
        assert!(format!("{err:#}").contains("--cacert /nonexistent/ca.pem"), "{err:#}");
    }
}
