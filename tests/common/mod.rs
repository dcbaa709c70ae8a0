//! Shared helpers of the binary's end-to-end tests: run `tidemark`, and on a
//! failed assertion print what ran and what it saw.
#![allow(dead_code, unreachable_pub)]

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A file under `tests/data`.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
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

pub mod pipeline;
