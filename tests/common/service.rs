//! A `tidemark` service as a child process whose stdout and stderr, from
//! every start, go to one log file: restartable, killable, and readable
//! afterwards (the chaos and PHI-hygiene tests read every line it wrote).

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A service started with fixed arguments and environment.
pub struct Service {
    /// Its name in messages and the log file's name.
    pub name: &'static str,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// The log file.
    pub log: PathBuf,
    child: Option<Child>,
    /// Times it exited on its own and [`Service::supervise`] restarted it.
    pub self_exits: u32,
}

impl Service {
    /// A service that will run `tidemark ARGS` with `RUST_LOG=warn`, logging to `DIR/NAME.log`.
    pub fn new(name: &'static str, args: Vec<String>, dir: &Path) -> Self {
        Self {
            name,
            args,
            envs: vec![("RUST_LOG".into(), "warn".into())],
            log: dir.join(format!("{name}.log")),
            child: None,
            self_exits: 0,
        }
    }

    /// Sets an environment variable for the next starts.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.envs.retain(|(k, _)| k != key);
        self.envs.push((key.to_owned(), value.to_owned()));
    }

    /// Starts the process (appending to its log).
    pub fn start(&mut self) {
        let log = OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let err = log.try_clone().expect("log handle");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
        cmd.args(&self.args).env_remove("TIDEMARK_KEYS").stdin(Stdio::null()).stdout(log).stderr(err);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("{} starts: {e}", self.name)));
    }

    /// SIGKILL, as a crash would, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `grace` for it to exit; its exit code.
    pub fn terminate(&mut self, grace: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Restarts the service if it exited on its own; true if it had.
    pub fn supervise(&mut self) -> bool {
        let exited = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        if exited {
            self.self_exits += 1;
            self.child = None;
            self.start();
        }
        exited
    }

    /// Everything it logged.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 30 lines it logged.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits (up to `limit`) for a logged line that starts with `needle`
    /// (the services print their `tidemark-NAME listening ...` and `snapshot
    /// committed ...` lines at the start of a line); returns the value of
    /// `key=` on it (e.g. `metrics=`).
    pub fn wait_for(&self, needle: &str, key: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.log_text();
            if let Some(line) = text.lines().find(|l| l.starts_with(needle)) {
                return line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .unwrap_or_else(|| panic!("no {key} in `{line}`"))
                    .to_owned();
            }
            assert!(Instant::now() < deadline, "{} never logged `{needle}`:\n{}", self.name, self.log_tail());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}
