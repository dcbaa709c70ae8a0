//! The pipeline's processes: `tidemark` subcommands started as children,
//! their addresses read from the line each prints once it listens.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use anyhow::Context as _;

/// A running `tidemark` service; killed when dropped.
pub struct Running {
    /// What it is, e.g. `merger-1`.
    pub name: String,
    child: Child,
    stdout: BufReader<ChildStdout>,
    /// `key=value` words of its listening line (`http=`, `metrics=`).
    line: String,
}

impl Running {
    /// Starts `tidemark ARGS`, logging stderr to `log_dir/NAME.log`, and waits
    /// for its first stdout line (`tidemark-... listening ...`).
    ///
    /// # Errors
    /// If it cannot start or exits before printing the line.
    pub fn start(tidemark: &Path, name: &str, args: &[String], log_dir: &Path) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let mut child = Command::new(tidemark)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(File::create(&log).with_context(|| format!("creating {}", log.display()))?)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        stdout.read_line(&mut line).with_context(|| format!("reading {name}'s listening line"))?;
        if !line.contains("listening") {
            let _ = child.kill();
            anyhow::bail!("{name} exited before listening; see {}", log.display());
        }
        Ok(Self { name: name.to_owned(), child, stdout, line })
    }

    /// The next line it prints; empty once it closed stdout.
    ///
    /// # Errors
    /// If stdout cannot be read.
    pub fn next_line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).with_context(|| format!("reading {}'s output", self.name))?;
        Ok(line)
    }

    /// Waits for it to exit.
    ///
    /// # Errors
    /// If it exits non-zero.
    pub fn wait(&mut self) -> anyhow::Result<()> {
        let status = self.child.wait().with_context(|| format!("waiting for {}", self.name))?;
        anyhow::ensure!(status.success(), "{} exited with {status}", self.name);
        Ok(())
    }

    /// The value of `key=` in the listening line.
    ///
    /// # Errors
    /// If the line has no such word.
    pub fn field(&self, key: &str) -> anyhow::Result<String> {
        self.line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
            .with_context(|| format!("{} printed no {key}= in `{}`", self.name, self.line.trim()))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// The keys of a run, as files under one directory.
pub struct Keys {
    /// The signing keys' directory (site-a, site-b, site-c) and registry.
    pub dir: PathBuf,
}

impl Keys {
    /// Generates three site signing keys, the archiver key and a recipient key with `tidemark keys generate`.
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
