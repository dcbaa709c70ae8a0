//! `tidemark snapshot list|verify|decrypt` against a hostile archive, no
//! broker: snapshots are written here directly (parts sealed with the real
//! format, manifests signed with the real archiver key), then the real binary
//! reads them. Issue 20 ("The edges"): a rolled-back `latest`, junk
//! directories, a broken chain, and decrypted files others could read.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::snapshots::{PROFILE, World};
use common::{Run, s, tidemark};
use tidemark_archiver::manifest::MANIFEST_NAME;

/// `tidemark ARGS` under `umask 022`, the common default that made
/// decrypted files readable by every local user.
fn tidemark_umask_022(args: &[&str]) -> Run {
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_tidemark"))
        .args(args)
        .output()
        .expect("sh runs");
    Run {
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).expect("stat").permissions().mode() & 0o7777
}

impl World {
    /// `snapshot decrypt latest --key reader.key --out OUT`, under umask 022.
    fn decrypt(&self, out: &Path) -> Run {
        let (archive, key, reader) = (self.archive(), self.path("archiver.pub"), self.path("reader.key"));
        tidemark_umask_022(&[
            "snapshot",
            "decrypt",
            "--archive",
            s(&archive),
            "--profile",
            PROFILE,
            "latest",
            "--archiver-pub",
            s(&key),
            "--key",
            s(&reader),
            "--out",
            s(out),
        ])
    }
}

#[test]
fn decrypted_files_are_0600_in_a_0700_directory_under_umask_022() {
    let mut w = World::new();
    // Two parts, the first over several row groups (64 rows each).
    w.commit(&[300, 1]);
    let out = w.path("nested/plain");
    w.decrypt(&out).code(0).stdout_has("(2 parts)");
    assert_eq!(mode(&out), 0o700, "the output directory is private");
    let mut files: Vec<PathBuf> = fs::read_dir(&out).expect("ls").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert_eq!(files.len(), 2, "only the parts, no leftovers: {files:?}");
    for (file, want) in files.iter().zip([300, 1]) {
        assert_eq!(mode(file), 0o600, "{} is private", file.display());
        let bytes = bytes::Bytes::from(fs::read(file).expect("read"));
        assert_eq!(&bytes[..4], b"PAR1", "{} is plain Parquet", file.display());
        let reader = parquet::file::reader::SerializedFileReader::new(bytes).expect("plain Parquet");
        let rows = parquet::file::reader::FileReader::metadata(&reader).file_metadata().num_rows();
        assert_eq!(rows, want, "{} holds its part's rows", file.display());
    }
}

#[test]
fn a_symlink_planted_at_the_temporary_or_final_path_is_refused_and_its_target_untouched() {
    let mut w = World::new();
    w.commit(&[3]);
    let victim = w.path("victim");
    fs::write(&victim, b"untouched").expect("victim");
    for planted in [".part-00000-000.parquet.partial", "part-00000-000.parquet"] {
        let out = w.path(&format!("out-{planted}"));
        fs::create_dir(&out).expect("mkdir");
        fs::set_permissions(&out, fs::Permissions::from_mode(0o700)).expect("chmod");
        std::os::unix::fs::symlink(&victim, out.join(planted)).expect("plant a symlink");
        let run = w.decrypt(&out);
        run.code(2).stderr_has("already exists");
        assert_eq!(
            fs::read(&victim).expect("victim"),
            b"untouched",
            "{planted}: the symlink's target was written\n{run:?}"
        );
        assert_eq!(mode(&victim) & 0o777, 0o644, "{planted}: the target's mode changed");
        let left: Vec<_> = fs::read_dir(&out).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(left.len(), 1, "{planted}: nothing but the planted symlink: {left:?}");
    }
}

#[test]
fn an_existing_output_file_or_a_directory_others_can_write_is_refused() {
    let mut w = World::new();
    w.commit(&[3]);
    let out = w.path("out");
    fs::create_dir(&out).expect("mkdir");
    fs::set_permissions(&out, fs::Permissions::from_mode(0o700)).expect("chmod");
    fs::write(out.join("part-00000-000.parquet"), b"earlier results").expect("existing file");
    w.decrypt(&out).code(2).stderr_has("already exists; refusing to overwrite");
    assert_eq!(fs::read(out.join("part-00000-000.parquet")).expect("read"), b"earlier results");
    let shared = w.path("shared");
    fs::create_dir(&shared).expect("mkdir");
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).expect("chmod");
    w.decrypt(&shared).code(2).stderr_has("group or others can write this directory");
    assert_eq!(fs::read_dir(&shared).expect("ls").count(), 0, "nothing written");
}

#[test]
fn verify_with_a_pin_refuses_latest_after_the_newest_snapshot_was_deleted() {
    let mut w = World::new();
    let ids: Vec<String> = (0..3).map(|_| w.commit(&[2])).collect();
    let pin = w.path("archive.pin");
    let run = w.snapshot("verify", "latest", &["--pin", s(&pin)]);
    run.code(0).stdout_has(&format!("ok: snapshot {}", ids[2])).stderr_has("pin: first use");
    fs::remove_dir_all(w.archive().join(PROFILE).join(&ids[2])).expect("delete the newest");
    let run = w.snapshot("verify", "latest", &["--pin", s(&pin)]);
    run.code(1).stderr_has("rollback: latest of profile identified is sequence 2");
    // Without the pin, the shorter chain is all a reader can see.
    w.snapshot("verify", "latest", &[]).code(0).stdout_has(&format!("ok: snapshot {}", ids[1]));
    // A pin is about `latest`: an id asked for by name is not a rollback.
    w.snapshot("verify", &ids[0], &["--pin", s(&pin)]).code(2).stderr_has("--pin applies only to `latest`");
}

#[test]
fn a_junk_directory_sorting_last_is_ignored_with_a_warning_and_listed_as_unverified() {
    let mut w = World::new();
    let newest = (0..2).map(|_| w.commit(&[2])).last().expect("two snapshots");
    let junk = w.archive().join(PROFILE).join("ffffffff-0000-7000-8000-000000000000");
    fs::create_dir_all(&junk).expect("mkdir");
    fs::write(junk.join(MANIFEST_NAME), b"{\"payloadType\":\"x\x1b[2J\"}").expect("junk");
    let run = w.snapshot("verify", "latest", &[]);
    run.code(0)
        .stdout_has(&format!("ok: snapshot {newest} (identified): sequence 2"))
        .stderr_has("warning: ignoring identified/ffffffff-0000-7000-8000-000000000000");
    assert!(!run.stderr.contains('\u{1b}'), "no terminal escapes from the archive reach the terminal\n{run:?}");
    let (archive, key) = (w.archive(), w.path("archiver.pub"));
    let listed = tidemark(&["snapshot", "list", "--archive", s(&archive), "--archiver-pub", s(&key)], b"", &[]);
    listed
        .code(0)
        .stdout_has(&format!("{newest} verified sequence=2"))
        .stdout_has("ffffffff-0000-7000-8000-000000000000 UNVERIFIED");
    let listed = tidemark(&["snapshot", "list", "--archive", s(&archive)], b"", &[]);
    listed.code(0).stdout_has(&format!("{newest} unverified (no --archiver-pub) sequence=2"));
}

#[test]
fn verify_reports_a_snapshot_missing_from_the_middle_of_the_chain() {
    let mut w = World::new();
    let ids: Vec<String> = (0..3).map(|_| w.commit(&[2])).collect();
    fs::remove_dir_all(w.archive().join(PROFILE).join(&ids[1])).expect("delete the middle one");
    let run = w.snapshot("verify", "latest", &[]);
    run.code(1).stderr_has("the chain of identified is broken: sequence 2 to 2 missing");
}
