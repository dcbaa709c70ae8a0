//! `tidemark ingest` as a child process, and the plain HTTP/1.1 its tests
//! speak to it (a raw socket, so a test can hold a request half sent).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{data, s};

/// Partitions of the edit topic in the ingest tests.
pub const PARTITIONS: i32 = 4;

/// A running ingest service; killed when dropped.
pub struct Ingest {
    child: Child,
    /// The HTTP API's address.
    pub http: String,
    /// The metrics endpoint's address.
    pub metrics: String,
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Ingest {
    /// Starts `tidemark ingest` on `bootstrap` with the test registry (unless
    /// `extra` names `--keys`) and waits for its listening line.
    pub fn spawn(bootstrap: &str, prefix: &str, extra: &[&str]) -> Self {
        let default_keys = data("test-registry.toml");
        let keys: Vec<&str> = if extra.contains(&"--keys") { vec![] } else { vec!["--keys", s(&default_keys)] };
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["ingest", "--brokers", bootstrap])
            .args(&keys)
            .args(["--topic-prefix", prefix, "--partitions", &PARTITIONS.to_string()])
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("TIDEMARK_KEYS")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ingest starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in `{line}`"))
                .to_owned()
        };
        let (http, metrics) = (field("http="), field("metrics="));
        Self { child, http, metrics }
    }

    /// POSTs `body` to `/v1/events`; returns (status, lowercased head, body).
    pub fn post(&self, content_type: &str, body: &[u8]) -> (u16, String, String) {
        post(&self.http, content_type, body)
    }

    /// Sends a signal (`-HUP`, `-TERM`) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("kill runs");
        assert!(ok.success(), "kill {sig} failed");
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The in-flight requests gauge.
    pub fn in_flight(&self) -> f64 {
        let text = super::http_get(&self.metrics, "/metrics");
        super::metric(&text, "tidemark_ingest_in_flight_requests").expect("in-flight gauge")
    }

    /// Polls `/metrics` until the in-flight gauge reads `want` (10 s at most).
    pub fn wait_in_flight(&self, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.in_flight() != want {
            assert!(Instant::now() < deadline, "in-flight requests never reached {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
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
