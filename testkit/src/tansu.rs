//! A Tansu broker process per test, on 127.0.0.1 with sqlite in a temp dir.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tempfile::TempDir;

use crate::Error;
use crate::admin::{DEFAULT_TOPIC_TIMEOUT, create_topic};
use crate::ports::free_port;

/// The Tansu version `scripts/tansu install` builds and the cache path names.
pub const TANSU_VERSION: &str = "0.6.0";

/// How long [`TansuBroker::start`] and [`TansuBroker::restart`] wait for the
/// broker to answer a metadata request. Startup takes well under a second;
/// the margin is for a loaded CI machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How many ports [`TansuBroker::start`] tries when the broker loses the race
/// for the one picked (another process bound it between probe and start).
const START_ATTEMPTS: usize = 5;

/// Log lines carried in startup errors.
const LOG_TAIL_LINES: usize = 40;

/// A Tansu broker process, killed when dropped.
///
/// It listens and advertises on `127.0.0.1:PORT` only and stores its data in
/// sqlite inside a [`TempDir`] removed on drop. [`TansuBroker::kill`] and
/// [`TansuBroker::restart`] keep the port and the data directory, so clients
/// keep their bootstrap address and the data survives, as fault tests need.
///
/// Tansu is found through `TIDEMARK_TANSU`, else at
/// `${TIDEMARK_CACHE:-$HOME/.cache/tidemark}/tansu-0.6.0/bin/tansu`, where
/// `scripts/tansu install` puts it.
///
/// If the test process dies without unwinding (SIGKILL, `panic = "abort"`),
/// the broker is orphaned; a normal test failure unwinds and drops it.
#[derive(Debug)]
pub struct TansuBroker {
    binary: PathBuf,
    storage: Storage,
    port: u16,
    bootstrap: String,
    log_path: PathBuf,
    child: Option<Child>,
    // Removed after Drop has killed the process that writes into it.
    data_dir: TempDir,
}

/// Where Tansu keeps records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// sqlite in the broker's temp dir: survives [`TansuBroker::restart`];
    /// every produce is a database transaction.
    Sqlite,
    /// Tansu's in-memory object store: lost on restart, and no database
    /// transaction per request, closer to how Kafka appends to its log in the
    /// page cache. For benchmarks of what runs on top of the broker.
    Memory,
}

impl Storage {
    fn url(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite://tansu.db",
            Self::Memory => "memory://tansu/",
        }
    }
}

impl TansuBroker {
    /// Starts a broker on a free loopback port and waits (at most
    /// [`READY_TIMEOUT`]) until it answers a Kafka metadata request.
    ///
    /// Blocks the calling thread meanwhile (typically 50-200 ms), so it works
    /// in plain and async tests alike.
    ///
    /// # Errors
    ///
    /// [`Error::TansuNotInstalled`] if there is no binary; [`Error::Io`] if the
    /// temp dir or log file cannot be made; [`Error::Spawn`]; and, with the
    /// log tail, [`Error::Exited`] if the broker exits on every one of a few
    /// ports or [`Error::NotReady`] if it never answers.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(Storage::Sqlite)
    }

    /// Starts a broker as [`TansuBroker::start`] does, on `storage`.
    ///
    /// # Errors
    /// As [`TansuBroker::start`].
    pub fn start_with(storage: Storage) -> Result<Self, Error> {
        let binary = tansu_binary()?;
        let data_dir = tempfile::Builder::new()
            .prefix("tidemark-tansu-")
            .tempdir()
            .map_err(|source| Error::Io { what: "creating a temp dir for Tansu's data".to_owned(), source })?;
        let log_path = data_dir.path().join("tansu.log");
        let mut broker = Self { binary, storage, port: 0, bootstrap: String::new(), log_path, child: None, data_dir };
        let mut attempt = 1;
        loop {
            broker.port = free_port()?;
            broker.bootstrap = format!("127.0.0.1:{}", broker.port);
            match broker.spawn_and_wait() {
                Ok(()) => return Ok(broker),
                // Most likely lost the port to another process: try another one.
                Err(Error::Exited { .. }) if attempt < START_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The `bootstrap.servers` value for clients, `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The broker process's id while it runs (to sample its CPU and memory).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The directory holding the sqlite database and the log.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The broker's stdout and stderr, appended to across restarts.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the broker's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// Creates `topic` with `partitions` partitions through the admin API and
    /// waits until metadata shows it (at most [`DEFAULT_TOPIC_TIMEOUT`]).
    ///
    /// # Errors
    ///
    /// As [`create_topic`](crate::create_topic).
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        create_topic(&self.bootstrap, topic, partitions, DEFAULT_TOPIC_TIMEOUT).await
    }

    /// Kills the broker with SIGKILL, as a crash would, and waits for it to
    /// exit. The data directory and port are kept for [`TansuBroker::restart`].
    /// Does nothing if it is not running.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the process cannot be signalled or reaped.
    pub fn kill(&mut self) -> Result<(), Error> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id();
        // Fails only if it already exited, which wait() below reports.
        let _ = child.kill();
        child.wait().map_err(|source| Error::Io { what: format!("waiting for Tansu (pid {pid}) to exit"), source })?;
        Ok(())
    }

    /// Kills the broker if it runs, then starts it again on the same port and
    /// data directory and waits until it answers. Data acknowledged before the
    /// kill is still there.
    ///
    /// # Errors
    ///
    /// As [`TansuBroker::kill`], then as [`TansuBroker::start`] (no retry on
    /// another port: clients hold this one).
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill()?;
        self.spawn_and_wait()
    }

    fn spawn_and_wait(&mut self) -> Result<(), Error> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|source| Error::Io { what: format!("opening Tansu's log {}", self.log_path.display()), source })?;
        let log_err = log.try_clone().map_err(|source| Error::Io {
            what: format!("duplicating Tansu's log handle {}", self.log_path.display()),
            source,
        })?;
        let url = format!("tcp://{}", self.bootstrap);
        // The sqlite url is resolved against the working directory (an absolute
        // path gets doubled), so run in the data dir with a relative path. The
        // variables Tansu reads for the schema registry and telemetry are
        // cleared so the caller's environment cannot make it reach elsewhere.
        let child = Command::new(&self.binary)
            .current_dir(self.data_dir.path())
            .args(["broker", "--cluster-id", "tidemark-test"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", self.storage.url()])
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("DATA_LAKE")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| Error::Spawn { binary: self.binary.clone(), source })?;
        self.child = Some(child);
        let ready = self.wait_ready();
        if ready.is_err() {
            // Never leave a half-started broker behind; the error says why.
            let _ = self.kill();
        }
        ready
    }

    /// Waits until the port accepts connections, then until a metadata request
    /// names this broker at its advertised address.
    fn wait_ready(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let deadline = started + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut last_attempt = String::from("nothing yet");
        let mut client: Option<BaseConsumer> = None;
        while Instant::now() < deadline {
            self.check_alive()?;
            if client.is_none() {
                // Connecting first avoids librdkafka's reconnect backoff
                // slowing us down while the broker is still coming up.
                match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                    Ok(_) => client = Some(self.metadata_client()?),
                    Err(e) => last_attempt = format!("connect: {e}"),
                }
            }
            if let Some(client) = &client {
                let left = deadline.saturating_duration_since(Instant::now());
                match client.fetch_metadata(None, left.min(Duration::from_secs(2))) {
                    Ok(m) if m.brokers().iter().any(|b| b.port() == i32::from(self.port)) => {
                        return Ok(());
                    }
                    Ok(m) => {
                        last_attempt = format!(
                            "metadata named brokers {:?}",
                            m.brokers().iter().map(|b| format!("{}:{}", b.host(), b.port())).collect::<Vec<_>>()
                        );
                    }
                    Err(e) => last_attempt = format!("metadata: {e}"),
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Error::NotReady {
            bootstrap: self.bootstrap.clone(),
            waited: started.elapsed(),
            last_attempt,
            log_tail: self.log_tail(LOG_TAIL_LINES),
        })
    }

    fn check_alive(&mut self) -> Result<(), Error> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let status = child
            .try_wait()
            .map_err(|source| Error::Io { what: format!("checking on Tansu (pid {})", child.id()), source })?;
        match status {
            None => Ok(()),
            Some(status) => {
                self.child = None;
                Err(Error::Exited {
                    bootstrap: self.bootstrap.clone(),
                    status,
                    log_tail: self.log_tail(LOG_TAIL_LINES),
                })
            }
        }
    }

    fn metadata_client(&self) -> Result<BaseConsumer, Error> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("reconnect.backoff.max.ms", "200")
            .create()
            .map_err(|source| Error::Kafka {
                what: format!("building a metadata client for {}", self.bootstrap),
                source,
            })
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        // Nothing to report to: a test is over, or unwinding from a failure.
        let _ = self.kill();
    }
}

/// Where the Tansu binary is: `TIDEMARK_TANSU`, else the cache path that
/// `scripts/tansu install` fills.
///
/// # Errors
///
/// [`Error::TansuNotInstalled`] if there is no file there.
pub fn tansu_binary() -> Result<PathBuf, Error> {
    let path = match std::env::var_os("TIDEMARK_TANSU") {
        Some(path) => PathBuf::from(path),
        None => {
            let cache = match std::env::var_os("TIDEMARK_CACHE") {
                Some(cache) => PathBuf::from(cache),
                None => std::env::home_dir().unwrap_or_default().join(".cache/tidemark"),
            };
            cache.join(format!("tansu-{TANSU_VERSION}/bin/tansu"))
        }
    };
    if path.is_file() { Ok(path) } else { Err(Error::TansuNotInstalled { path }) }
}

/// The last `lines` lines of the file at `path` (reading at most its last
/// 64 KiB), or a note saying why there are none.
fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) if text.trim().is_empty() => format!("({} is empty)", path.display()),
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log");
        std::fs::write(&path, "a\nb\nc\nd\n").expect("write log");
        assert_eq!(log_tail(&path, 2), "c\nd");
        assert!(log_tail(&dir.path().join("missing"), 2).contains("could not read"));
    }

    #[test]
    fn missing_binary_says_how_to_install() {
        let err = Error::TansuNotInstalled { path: PathBuf::from("/nowhere/tansu") };
        assert!(err.to_string().contains("scripts/tansu install"), "{err}");
    }
}
