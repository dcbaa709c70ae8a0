//! A client of the query service: every request signed (RFC 9421) by a key
//! holding the `read` scope, with a fresh nonce and the current time.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tidemark_schemas::httpsig::{self, Request};
use tidemark_schemas::keys::SigningKeyFile;

/// What the service answered.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// A signing client of one query service.
pub struct ReadClient {
    http: reqwest::Client,
    base: reqwest::Url,
    key: SigningKeyFile,
}

impl ReadClient {
    /// A client of the service at `target` (`http(s)://HOST:PORT`), signing
    /// as `key`. With `cacert`, an https server must chain to it.
    ///
    /// # Errors
    /// If `target` is not an http(s) URL or the client cannot be built.
    pub fn new(target: &str, key: SigningKeyFile, timeout: Duration, cacert: Option<&Path>) -> anyhow::Result<Self> {
        let base = reqwest::Url::parse(target).with_context(|| format!("--target `{target}` is not a URL"))?;
        if !matches!(base.scheme(), "http" | "https") {
            anyhow::bail!("--target `{target}` must be an http:// or https:// URL");
        }
        let mut builder = reqwest::Client::builder().timeout(timeout).tcp_nodelay(true).pool_max_idle_per_host(1024);
        if let Some(path) = cacert {
            builder = builder.tls_backend_preconfigured(super::client::tls_trusting(path)?);
        }
        Ok(Self { http: builder.build().context("building the HTTP client")?, base, key })
    }

    /// A signed `GET` of `path_and_query` (e.g. `/v1/patients/pt-1?after=...`).
    ///
    /// # Errors
    /// If the request could not be sent or its answer read.
    pub async fn get(&self, path_and_query: &str) -> anyhow::Result<Reply> {
        let response = self.send(path_and_query, &[]).await?;
        let status = response.status().as_u16();
        let body = response.bytes().await.context("reading the answer")?.to_vec();
        Ok(Reply { status, body })
    }

    /// Sends a signed `GET` with extra headers and returns the response (for
    /// streams).
    ///
    /// # Errors
    /// If the request could not be sent.
    pub async fn send(&self, path_and_query: &str, headers: &[(&str, &str)]) -> anyhow::Result<reqwest::Response> {
        let url = self.base.join(path_and_query).context("building the URL")?;
        let request = Request { method: "GET", path: url.path(), query: url.query(), authority: None };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let signed = httpsig::sign(&request, self.key.signing_key(), self.key.id(), now, &httpsig::new_nonce());
        let mut builder = self
            .http
            .get(url.clone())
            .header("signature-input", signed.signature_input)
            .header("signature", signed.signature);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.send().await.with_context(|| format!("sending GET {}", url.path()))
    }
}
