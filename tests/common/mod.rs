//! Shared helpers of the binary's end-to-end tests: run `tidemark` (once, or
//! as a service), wait for a condition, pick a port, and on a failed
//! assertion print what ran and what it saw.
#![allow(dead_code, unreachable_pub)]

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A file under `tests/data`.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// A loopback port that was free a moment ago, below the ephemeral range, so
/// that a service restarted on it finds it still free (see
/// [`tidemark_testkit::free_port`]).
pub fn free_port() -> u16 {
    tidemark_testkit::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// What one look at the world says: done (with a value), or not yet (with
/// what was seen, for the failure message).
pub trait Check {
    /// The value a wait returns once the check passes.
    type Output;
    /// `Ok` when done; `Err` with what was seen, if the check says.
    fn outcome(self) -> Result<Self::Output, Option<String>>;
}

impl Check for bool {
    type Output = ();
    fn outcome(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Check for Option<T> {
    type Output = T;
    fn outcome(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: fmt::Display> Check for Result<T, E> {
    type Output = T;
    fn outcome(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

/// Runs `check` until it passes or `limit` has passed; at least once, and
/// once more at the limit. Polls every 20 ms at first, backing off to every
/// 500 ms, so a quick condition is seen quickly and a slow one (a broker
/// read) does not load the machine. `Err` holds the last observation.
pub fn within<C: Check>(limit: Duration, check: impl FnMut() -> C) -> Result<C::Output, Option<String>> {
    poll(limit, None, check)
}

/// Waits (see [`within`]) for `check` to pass and returns its value; panics
/// after `limit` saying `what` was awaited and what was last seen. The
/// end-to-end tests wait for a condition through here, [`eventually_every`]
/// or [`within`], never with a loop of their own.
pub fn eventually<C: Check>(what: &str, limit: Duration, check: impl FnMut() -> C) -> C::Output {
    or_panic(what, limit, poll(limit, None, check))
}

/// [`eventually`], polling every `every` without backing off: for a moment
/// that must be caught soon after it comes (e.g. to kill a service mid-stream).
pub fn eventually_every<C: Check>(what: &str, limit: Duration, every: Duration, check: impl FnMut() -> C) -> C::Output {
    or_panic(what, limit, poll(limit, Some(every), check))
}

fn poll<C: Check>(
    limit: Duration,
    every: Option<Duration>,
    mut check: impl FnMut() -> C,
) -> Result<C::Output, Option<String>> {
    let deadline = Instant::now() + limit;
    let mut pause = every.unwrap_or(Duration::from_millis(20));
    loop {
        let last = match check().outcome() {
            Ok(done) => return Ok(done),
            Err(seen) => seen,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(last);
        }
        std::thread::sleep(pause.min(left));
        if every.is_none() {
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

fn or_panic<T>(what: &str, limit: Duration, outcome: Result<T, Option<String>>) -> T {
    match outcome {
        Ok(done) => done,
        Err(None) => panic!("{what}: not within {limit:?}"),
        Err(Some(seen)) => panic!("{what}: not within {limit:?}; last seen:\n{seen}"),
    }
}

/// For a test that needs an external tool (promtool, Prometheus,
/// schemathesis) which is not installed: says it skips, or panics when
/// `CI_REQUIRE_TOOLS` is set (CI sets it), so that CI never passes a test
/// it did not run. `why` says what could not run.
pub fn skip_without_tool(tool: &str, why: &str) {
    assert!(
        std::env::var_os("CI_REQUIRE_TOOLS").is_none(),
        "{tool} is required (CI_REQUIRE_TOOLS is set) but {why}; scripts/deps installs it"
    );
    eprintln!("{tool}: {why}; skipping. scripts/deps installs it.");
}

/// A copy of the test signing key in `dir`, mode 0600: a checkout leaves
/// tests/data/test-signing.key readable by all, which the CLI refuses.
pub fn private_test_key(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("test-signing.key");
    std::fs::copy(data("test-signing.key"), &path).expect("copy the test key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path
}

/// What a run of the binary did, printed whole when an assertion fails.
pub struct Run {
    /// The arguments it ran with.
    pub args: Vec<String>,
    /// Its exit code.
    pub code: Option<i32>,
    /// What it printed.
    pub stdout: String,
    /// What it reported.
    pub stderr: String,
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ran: tidemark {}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

impl Run {
    pub fn code(&self, want: i32) -> &Self {
        assert_eq!(self.code, Some(want), "{self:?}");
        self
    }

    pub fn stdout_has(&self, want: &str) -> &Self {
        assert!(self.stdout.contains(want), "stdout lacks {want:?}\n{self:?}");
        self
    }

    pub fn stderr_has(&self, want: &str) -> &Self {
        assert!(self.stderr.contains(want), "stderr lacks {want:?}\n{self:?}");
        self
    }
}

pub fn tidemark(args: &[&str], stdin: &[u8], envs: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("TIDEMARK_KEYS").env_remove("TIDEMARK_CATALOG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the binary starts");
    child.stdin.take().expect("piped stdin").write_all(stdin).expect("stdin accepts the input");
    let out = child.wait_with_output().expect("the binary finishes");
    Run {
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are utf-8")
}

pub mod ingest;
pub mod pipeline;
pub mod service;

/// A plain HTTP/1.1 GET on loopback; returns the body. Panics with what it saw.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("request");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not HTTP: {raw}"));
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// The value of one series (name with its exact label set) in exposition text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
    })
}

/// Checks exposition text with `promtool check metrics` when promtool is
/// installed (scripts/deps installs it; CI always has it).
pub fn promtool_check(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        skip_without_tool("promtool", "it is not installed, so the exposition lint cannot run");
        return;
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("promtool runs");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics failed:\n{report}\n--- exposition:\n{text}");
}
