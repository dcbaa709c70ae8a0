//! A service as a child process: `tidemark ingest`, `merger`, `archiver`
//! (or another program, such as Prometheus) whose stdout and stderr, from
//! every start, go to one log file. The one process wrapper of the
//! end-to-end tests and the pipeline benchmark. Restartable, killable, scraped through
//! the address it prints, and readable afterwards (the chaos and PHI-hygiene
//! tests read every line it wrote). Killed when dropped; a test that fails
//! while it runs prints the tail of its log.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// How long a service may take to print its `listening` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How often [`Service::wait_for`] reads the log: often enough that a
/// harness timing a run to a logged line is off by milliseconds only.
const POLL: Duration = Duration::from_millis(10);

/// A service started with fixed arguments and environment.
pub struct Service {
    /// Its name in messages and the log file's name.
    pub name: String,
    program: PathBuf,
    /// The working directory of a program other than `tidemark`.
    cwd: Option<PathBuf>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    /// The log file.
    pub log: PathBuf,
    /// Where in the log the current run's output starts.
    run_starts_at: u64,
    child: Option<Child>,
    /// Times it exited on its own and [`Service::supervise`] restarted it.
    pub self_exits: u32,
}

impl Service {
    /// A service that will run the `tidemark` binary at `tidemark` with
    /// `ARGS` and `RUST_LOG=warn`, logging to `DIR/NAME.log`.
    pub fn new(name: &str, tidemark: &Path, args: Vec<String>, dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            program: tidemark.to_owned(),
            cwd: None,
            args,
            envs: vec![("RUST_LOG".into(), "warn".into())],
            log: dir.join(format!("{name}.log")),
            run_starts_at: 0,
            child: None,
            self_exits: 0,
        }
    }

    /// A service that will run `PROGRAM ARGS` in `dir`, logging to `DIR/NAME.log`.
    pub fn program(name: &str, program: &Path, args: Vec<String>, dir: &Path) -> Self {
        let mut service = Self::new(name, program, args, dir);
        service.cwd = Some(dir.to_owned());
        service
    }

    /// Sets an environment variable for the next starts.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.envs.retain(|(k, _)| k != key);
        self.envs.push((key.to_owned(), value.to_owned()));
    }

    /// Starts the process (appending to its log).
    pub fn start(&mut self) {
        let log = OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        self.run_starts_at = log.metadata().expect("log file metadata").len();
        let err = log.try_clone().expect("log handle");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).env_remove("TIDEMARK_KEYS").stdin(Stdio::null()).stdout(log).stderr(err);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let started = cmd.spawn().unwrap_or_else(|e| panic!("{} ({}) starts: {e}", self.name, self.program.display()));
        self.child = Some(started);
    }

    /// [`Service::start`], for a service built and started in one expression.
    pub fn started(mut self) -> Self {
        self.start();
        self
    }

    /// Its process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash would, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (`-HUP`, `-TERM`) to the process.
    pub fn signal(&self, sig: &str) {
        let pid = self.id().unwrap_or_else(|| panic!("{} is not running", self.name));
        let ok = Command::new("kill").args([sig, &pid.to_string()]).status().expect("kill runs");
        assert!(ok.success(), "kill {sig} {} failed", self.name);
    }

    /// Waits up to `limit` for the process to exit; its status, or `None`
    /// if it still runs (or was not started).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = crate::wait::within(limit, || child.try_wait().expect("try_wait")).ok()?;
        self.child = None;
        Some(status)
    }

    /// SIGTERM, then waits up to `grace` for it to exit: its exit status, or
    /// `None` (after a SIGKILL) if it did not exit in time.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.child.as_ref()?;
        self.signal("-TERM");
        let status = self.wait_exit(grace);
        self.kill();
        status
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

    /// Everything it logged, over every start.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 30 lines it logged.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// What the current run logged.
    fn run_log(&self) -> String {
        let text = self.log_text();
        let from = usize::try_from(self.run_starts_at).unwrap_or(usize::MAX);
        text.get(from..).unwrap_or_default().to_owned()
    }

    /// Waits (up to `limit`) for a line of the current run that starts with
    /// `needle` (the services print their `tidemark-NAME listening ...` and
    /// `snapshot committed ...` lines at the start of a line); returns the
    /// value of `key=` on it (e.g. `metrics=`). Fails at once if the process
    /// exits meanwhile.
    pub fn wait_for(&mut self, needle: &str, key: &str, limit: Duration) -> String {
        let line = self.wait_line(needle, limit);
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in `{line}`"))
            .to_owned()
    }

    /// [`Service::wait_for`]'s line, whole.
    pub fn wait_line(&mut self, needle: &str, limit: Duration) -> String {
        let what = format!("{} logs `{needle}`", self.name);
        crate::wait::eventually_every(&what, limit, POLL, || {
            if let Some(line) = self.run_log().lines().find(|l| l.starts_with(needle)) {
                return Ok(line.to_owned());
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none(),
                "{} exited ({exited:?}) before logging `{needle}`:\n{}",
                self.name,
                self.log_tail()
            );
            Err(self.log_tail())
        })
    }

    /// The metrics address the current run printed on its `listening` line.
    pub fn metrics_addr(&mut self) -> String {
        self.wait_for("tidemark-", "metrics=", START_TIMEOUT)
    }

    /// The current run's `/metrics` text.
    pub fn scrape(&mut self) -> String {
        crate::http_get(&self.metrics_addr(), "/metrics")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} log, last 30 lines ({}):\n{}", self.name, self.log.display(), self.log_tail());
        }
    }
}
