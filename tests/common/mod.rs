//! Shared helpers of the binary's end-to-end tests: run `tidemark` (once, or
//! as a service), wait for a condition, pick a port, and on a failed
//! assertion print what ran and what it saw.
#![allow(dead_code, unreachable_pub)]

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    u64::try_from(since_epoch.as_millis()).expect("ms fit u64")
}

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

/// The state key every `tidemark` this test process runs is given through
/// `TIDEMARK_STATE_KEY` (unless a test passes `--state-key` or its own
/// environment): one key per test process, generated at first use, mode
/// 0600, so mergers, archivers and `tidemark state` of one test agree.
pub fn state_key() -> &'static Path {
    static KEY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let path = dir.join("state.key");
        let key = tidemark_seal::StateKey::generate().expect("a state key");
        tidemark_seal::save_state_key(&path, &key).expect("save the state key");
        path
    })
}

/// [`state_key`], loaded: to seal records a test writes itself.
pub fn state_keys() -> tidemark_seal::StateKeys {
    tidemark_seal::load_state_keys(&[state_key().to_owned()]).expect("the test state key loads")
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
    cmd.env("TIDEMARK_STATE_KEY", state_key());
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

pub mod broker;
pub mod ingest;
pub mod pipeline;
pub mod service;
pub mod snapshots;

pub use tidemark_testkit::http_get;
#[allow(unused_imports)] // each test binary uses its own subset
pub use tidemark_testkit::wait::{eventually, eventually_every, within};

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
