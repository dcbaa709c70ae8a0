//! `tidemark ingest` as a child process, and the plain HTTP/1.1 its tests
//! speak to it (a raw socket, so a test can hold a request half sent).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::ExitStatus;
use std::time::Duration;

use super::service::{START_TIMEOUT, Service, tidemark_service};
use super::{data, s};

/// Partitions of the edit topic in the ingest tests.
pub const PARTITIONS: i32 = 4;

/// A running ingest service (a [`Service`] logging to its own temporary
/// directory); killed when dropped.
pub struct Ingest {
    service: Service,
    /// The HTTP API's address.
    pub http: String,
    /// The metrics endpoint's address.
    pub metrics: String,
    /// Holds the log; declared last, so it goes after the process.
    _dir: tempfile::TempDir,
}

impl Ingest {
    /// Starts `tidemark ingest` on `bootstrap` with the test registry (unless
    /// `extra` names `--keys`) and waits for its listening line.
    pub fn spawn(bootstrap: &str, prefix: &str, extra: &[&str]) -> Self {
        Self::spawn_with_env(bootstrap, prefix, extra, &[])
    }

    /// [`Ingest::spawn`] with environment variables set: how a test sets a
    /// setting that a binary without the flag would ignore rather than
    /// refuse, so that the test can run against the old binary and fail on
    /// its behaviour, not on its command line.
    pub fn spawn_with_env(bootstrap: &str, prefix: &str, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the ingest log");
        let default_keys = data("test-registry.toml");
        let keys: Vec<&str> = if extra.contains(&"--keys") { vec![] } else { vec!["--keys", s(&default_keys)] };
        let partitions = PARTITIONS.to_string();
        let args = ["ingest", "--brokers", bootstrap]
            .iter()
            .chain(&keys)
            .chain(&["--topic-prefix", prefix, "--partitions", &partitions])
            .chain(&["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .chain(extra)
            .map(|a| (*a).to_owned())
            .collect();
        let mut service = tidemark_service("ingest", args, dir.path());
        for (k, v) in envs {
            service.set_env(k, v);
        }
        service.start();
        let http = service.wait_for("tidemark-ingest listening", "http=", START_TIMEOUT);
        let metrics = service.metrics_addr();
        Self { service, http, metrics, _dir: dir }
    }

    /// POSTs `body` to `/v1/events`; returns (status, lowercased head, body).
    pub fn post(&self, content_type: &str, body: &[u8]) -> (u16, String, String) {
        post(&self.http, content_type, body)
    }

    /// Sends a signal (`-HUP`, `-TERM`) to the process.
    pub fn signal(&self, sig: &str) {
        self.service.signal(sig);
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.service.wait_exit(limit)
    }

    /// The last lines it logged.
    pub fn log_tail(&self) -> String {
        self.service.log_tail()
    }

    /// The `/metrics` text.
    pub fn scrape(&self) -> String {
        super::http_get(&self.metrics, "/metrics")
    }

    /// The value of one series (name with its exact label set), if exported.
    pub fn series(&self, series: &str) -> Option<f64> {
        super::metric(&self.scrape(), series)
    }

    /// The process's resident memory now and at its peak so far (`VmRSS`,
    /// `VmHWM`), in KiB, from /proc.
    pub fn memory_kib(&self) -> (u64, u64) {
        let pid = self.service.id().expect("ingest is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// The in-flight requests gauge.
    pub fn in_flight(&self) -> f64 {
        self.series("tidemark_ingest_in_flight_requests").expect("in-flight gauge")
    }

    /// Polls `/metrics` until the in-flight gauge reads `want` (10 s at most).
    pub fn wait_in_flight(&self, want: f64) {
        super::eventually(&format!("in-flight requests reach {want}"), Duration::from_secs(10), || {
            let now = self.in_flight();
            if now == want { Ok(()) } else { Err(now) }
        });
    }
}

fn head(addr: &str, content_type: &str, len: usize) -> String {
    format!(
        "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

/// A plain HTTP/1.1 POST; returns (status, lowercased head, body).
pub fn post(addr: &str, content_type: &str, body: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    stream.write_all(head(addr, content_type, body.len()).as_bytes()).expect("head");
    // A server may answer (413) before reading the whole body.
    let _ = stream.write_all(body);
    read_response(stream)
}

fn read_response(mut stream: TcpStream) -> (u16, String, String) {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not HTTP: {raw:?}"));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status");
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// A request whose head and the first part of whose body are sent, the rest
/// held back: the server holds it in flight until [`HalfSent::finish`].
pub struct HalfSent {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl HalfSent {
    /// Sends the head and all of `body` but its last `held` bytes.
    pub fn start(addr: &str, content_type: &str, body: &[u8], held: usize) -> Self {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let split = body.len() - held;
        stream.write_all(head(addr, content_type, body.len()).as_bytes()).expect("head");
        stream.write_all(&body[..split]).expect("first part");
        Self { stream, rest: body[split..].to_vec() }
    }

    /// Sends the rest and reads the response.
    pub fn finish(mut self) -> (u16, String, String) {
        self.stream.write_all(&self.rest).expect("rest of the body");
        read_response(self.stream)
    }
}
