//! The pipeline's processes: `tidemark` subcommands started as children
//! (the shared [`Service`] wrapper), their addresses read from the line
//! each prints once it listens.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use tidemark_testkit::process::{START_TIMEOUT, Service};

/// Starts `tidemark ARGS` as `name`, logging to `log_dir/NAME.log`, and
/// waits for the line it prints once it listens.
pub fn start(tidemark: &Path, name: &str, args: &[String], log_dir: &Path) -> Service {
    let mut service = Service::new(name, tidemark, args.to_vec(), log_dir).started();
    service.wait_line("tidemark-", START_TIMEOUT);
    service
}

/// The value of `key=` on the line `service` printed once it listened.
pub fn listening(service: &mut Service, key: &str) -> String {
    service.wait_for("tidemark-", &format!("{key}="), START_TIMEOUT)
}

/// `tidemark ARGS` to completion: its stdout, or an error with its stderr.
///
/// # Errors
/// If it cannot start or exits non-zero.
pub fn run(tidemark: &Path, args: &[String]) -> anyhow::Result<String> {
    let out = Command::new(tidemark).args(args).output().with_context(|| format!("running tidemark {}", args[0]))?;
    if !out.status.success() {
        anyhow::bail!(
            "tidemark {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).context("tidemark printed non-UTF-8")
}

/// `args` as owned strings.
pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> Vec<String> {
    items.into_iter().map(|s| s.as_ref().to_owned()).collect()
}

/// `path` as a `String` argument.
pub fn arg(path: &Path) -> String {
    path.display().to_string()
}

/// A run's scratch directory `work`, emptied, with its keys generated
/// under `work/keys` and services logging to `work/logs` (returned).
///
/// # Errors
/// If a directory cannot be made or a key generated.
pub fn fresh_work(tidemark: &Path, work: &Path) -> anyhow::Result<(Keys, PathBuf)> {
    let _ = std::fs::remove_dir_all(work);
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).context("creating the work directory")?;
    Ok((Keys::generate(tidemark, &work.join("keys"))?, logs))
}

/// The keys of a run, as files under one directory.
pub struct Keys {
    /// The signing keys' directory (site-a, site-b, site-c) and registry.
    pub dir: PathBuf,
}

impl Keys {
    /// Generates three site signing keys, the archiver key, a recipient key and
    /// the state key with `tidemark keys generate`.
    ///
    /// # Errors
    /// If a command fails or the registry cannot be written.
    pub fn generate(tidemark: &Path, dir: &Path) -> anyhow::Result<Self> {
        let out = arg(dir);
        for (kind, name) in [
            ("signing", "site-a"),
            ("signing", "site-b"),
            ("signing", "site-c"),
            ("archiver", "archiver"),
            ("recipient", "analytics"),
            ("state", "state"),
        ] {
            run(tidemark, &args(["keys", "generate", "--kind", kind, "--out", &out, "--name", name]))?;
        }
        let mut registry = String::new();
        for site in Self::SITES {
            let path = dir.join(format!("{site}.registry.toml"));
            registry += &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            registry.push('\n');
        }
        std::fs::write(dir.join("registry.toml"), registry).context("writing the key registry")?;
        Ok(Self { dir: dir.to_owned() })
    }

    const SITES: [&'static str; 3] = ["site-a", "site-b", "site-c"];

    /// `--key FILE` for every site.
    pub fn site_args(&self) -> Vec<String> {
        Self::SITES.iter().flat_map(|s| ["--key".to_owned(), arg(&self.dir.join(format!("{s}.key")))]).collect()
    }

    /// The key registry.
    pub fn registry(&self) -> PathBuf {
        self.dir.join("registry.toml")
    }

    /// `NAME.EXT` in the key directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}
