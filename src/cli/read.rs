//! `tidemark get` and `tidemark changes`: the query service's clients, for
//! integrators and operators. Every request is signed (RFC 9421) with
//! `--key`, a signing key registered with the `read` scope.
//!
//! `get` prints the patient's view (the line `tidemark fold` prints) and
//! exits 0, or prints the service's error and exits 1. `changes` prints one
//! JSON line per changed patient (`cursor`, `patient_id`, and `version` or
//! `deleted`), then, when the feed has been idle for `--idle-ms`, the cursor
//! to resume from on stderr; `--follow` keeps reading instead.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::Outcome;
use crate::keyfiles::load_signing_key;
use crate::load::ReadClient;

/// Where the service is and who asks.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The query service's base URL (`https://HOST:PORT`).
    #[arg(long, env = "TIDEMARK_QUERY_URL")]
    target: String,
    /// The signing key file (`tidemark keys generate --kind signing --scope read`).
    #[arg(long, env = "TIDEMARK_KEY", value_name = "FILE")]
    key: PathBuf,
    /// CA certificates (PEM) the service's certificate must chain to [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// How long one request may take.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
}

impl TargetArgs {
    fn client(&self) -> anyhow::Result<ReadClient> {
        let key = load_signing_key(&self.key)?;
        ReadClient::new(&self.target, key, Duration::from_millis(self.timeout_ms), self.cacert.as_deref())
    }
}

#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The patient id.
    patient_id: String,
    /// A consistency token ingest answered: wait until the view includes that write.
    #[arg(long, value_name = "TOKEN")]
    after: Option<String>,
}

pub fn run_get(args: GetArgs) -> anyhow::Result<Outcome> {
    let client = args.target.client()?;
    // Identifier characters go as they are; anything else percent-encoded,
    // so a mistyped id reaches the service as typed and is refused there.
    let mut path = format!("/v1/patients/{}", escape(&args.patient_id));
    if let Some(token) = &args.after {
        path.push_str(&format!("?after={}", escape(token)));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")?;
    let reply = runtime.block_on(client.get(&path))?;
    let body = String::from_utf8_lossy(&reply.body);
    if reply.status == 200 {
        println!("{}", body.trim_end());
        Ok(Outcome::Ok)
    } else {
        eprintln!("the query service answered {}: {}", reply.status, body.trim_end());
        Ok(Outcome::SomeInputFailed)
    }
}

#[derive(Debug, Args)]
pub struct ChangesArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Resume after this cursor (a `cursor` printed before) [default: from the start].
    #[arg(long, value_name = "CURSOR")]
    since: Option<String>,
    /// Keep reading (reconnecting from the last cursor) instead of stopping when idle.
    #[arg(long)]
    follow: bool,
    /// Without --follow: stop once no change came for this long.
    #[arg(long, default_value_t = 2_000)]
    idle_ms: u64,
}

pub fn run_changes(args: ChangesArgs) -> anyhow::Result<Outcome> {
    let client = args.target.client()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")?;
    runtime.block_on(async {
        let mut cursor = args.since.clone();
        loop {
            // The cursor goes as Last-Event-ID (as EventSource sends it): a
            // header holds a cursor of many partitions that a query string
            // (2,048 bytes) would not.
            let mut headers = vec![("accept", "text/event-stream")];
            if let Some(c) = &cursor {
                headers.push(("last-event-id", c.as_str()));
            }
            let mut response = client.send("/v1/changes", &headers).await?;
            if response.status() != 200 {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                eprintln!("the query service answered {status}: {}", body.trim_end());
                return Ok(Outcome::SomeInputFailed);
            }
            let idle = Duration::from_millis(args.idle_ms);
            let mut pending = String::new();
            loop {
                let chunk = if args.follow {
                    response.chunk().await
                } else {
                    match tokio::time::timeout(idle, response.chunk()).await {
                        Ok(chunk) => chunk,
                        Err(_) => {
                            eprintln!("idle; resume with --since {}", cursor.as_deref().unwrap_or("c1."));
                            return Ok(Outcome::Ok);
                        }
                    }
                };
                let Some(bytes) = chunk.context("reading the feed")? else { break };
                pending.push_str(&String::from_utf8_lossy(&bytes));
                while let Some(end) = pending.find("\n\n") {
                    let event: String = pending.drain(..end + 2).collect();
                    print_event(&event, &mut cursor);
                }
            }
            // The service closed the feed (--max-feed-ms, or it is
            // restarting): resume from the last cursor, a moment later.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// `text` with every byte outside `[A-Za-z0-9._:@-]` percent-encoded.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Prints one SSE event as a JSON line with its cursor; moves `cursor`.
fn print_event(event: &str, cursor: &mut Option<String>) {
    let (mut id, mut kind, mut data) = (None, "message", String::new());
    for line in event.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim_start().to_owned());
        } else if let Some(v) = line.strip_prefix("event:") {
            kind = if v.trim_start() == "change" { "change" } else { "other" };
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    if id.is_some() {
        cursor.clone_from(&id);
    }
    if kind != "change" {
        return;
    }
    if let (Some(id), Ok(serde_json::Value::Object(mut fields))) = (id, serde_json::from_str(&data)) {
        fields.insert("cursor".into(), id.into());
        println!("{}", serde_json::Value::Object(fields));
    }
}
