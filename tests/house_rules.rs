//! The layout rules the repository keeps, checked so they cannot erode:
//! the pure cores link neither rdkafka nor tokio, source files stay small,
//! the fuzz crate uses the cores as crates (no `#[path]` includes), and the
//! repository cites nothing outside itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The longest a file under a crate's `src/` may be.
const MAX_SOURCE_LINES: usize = 500;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` (recursively) whose name ends in one of `exts`,
/// skipping build output and VCS metadata.
fn files(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "corpus" | "artifacts" | "node_modules") {
                files(&path, exts, out);
            }
        } else if exts.iter().any(|e| name.ends_with(e)) {
            out.push(path);
        }
    }
}

#[test]
fn the_pure_cores_link_neither_rdkafka_nor_tokio() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for krate in ["tidemark-schemas", "tidemark-crdt", "tidemark-seal"] {
        let out = Command::new(&cargo)
            .current_dir(root())
            .args(["tree", "--offline", "--locked", "-p", krate, "--edges", "normal,build", "--prefix", "none"])
            .output()
            .expect("cargo tree runs");
        let tree = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "cargo tree -p {krate} failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(tree.lines().next().is_some_and(|l| l.starts_with(krate)), "cargo tree printed no tree:\n{tree}");
        for banned in ["rdkafka", "tokio ", "tokio-"] {
            let hit: Vec<&str> = tree.lines().filter(|l| l.starts_with(banned)).collect();
            assert!(hit.is_empty(), "{krate} depends on {banned}: {hit:?}");
        }
    }
}

#[test]
fn no_source_file_is_longer_than_the_limit() {
    let mut sources = Vec::new();
    for entry in fs::read_dir(root()).expect("the repository").flatten() {
        let src = entry.path().join("src");
        if src.is_dir() {
            files(&src, &[".rs"], &mut sources);
        }
    }
    assert!(sources.len() > 50, "found only {} source files: the walk is broken", sources.len());
    let long: Vec<String> = sources
        .iter()
        .filter_map(|p| {
            let lines = fs::read_to_string(p).ok()?.lines().count();
            (lines > MAX_SOURCE_LINES).then(|| format!("{} ({lines} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these by role (at most {MAX_SOURCE_LINES} lines): {long:#?}");
}

#[test]
fn the_fuzz_crate_uses_the_cores_as_crates() {
    let mut sources = Vec::new();
    files(&root().join("fuzz"), &[".rs"], &mut sources);
    assert!(!sources.is_empty(), "the fuzz crate has sources");
    for path in sources {
        let text = fs::read_to_string(&path).expect("readable");
        assert!(!text.contains("#[path"), "{} includes a service's source file by path", path.display());
    }
}

#[test]
fn the_repository_cites_nothing_outside_itself() {
    let mut texts = Vec::new();
    files(&root(), &[".rs", ".md", ".toml", ".yaml", ".yml", ".sh", ".py"], &mut texts);
    for script in fs::read_dir(root().join("scripts")).expect("scripts").flatten() {
        texts.push(script.path());
    }
    // Built from pieces so that this file does not cite it either.
    let design = ["DESIGN", ".md"].concat();
    let cited: Vec<String> = texts
        .iter()
        .filter(|p| fs::read_to_string(p).is_ok_and(|t| t.contains(&design)))
        .map(|p| p.display().to_string())
        .collect();
    assert!(cited.is_empty(), "these cite a design file that is not in the repository: {cited:#?}");
}
