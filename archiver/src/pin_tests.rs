#![allow(clippy::unwrap_used)]
use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn link(id: &str, sequence: u64, sha: &str) -> Link {
    crate::chain::tests::link(id, sequence, None, sha)
}

#[test]
fn the_pin_moves_forward_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pin");
    assert_eq!(check(&path, "arch", "identified", &link("a", 2, "h2")).unwrap(), PinOutcome::FirstUse);
    assert_eq!(check(&path, "arch", "identified", &link("b", 5, "h5")).unwrap(), PinOutcome::Advanced { from: 2 });
    // Another profile has its own entry.
    assert_eq!(check(&path, "arch", "deidentified", &link("z", 1, "z1")).unwrap(), PinOutcome::FirstUse);
    let err = check(&path, "arch", "identified", &link("a", 2, "h2")).unwrap_err();
    assert!(matches!(err, PinError::Rollback { latest: 2, pinned: 5, .. }), "{err}");
    let err = check(&path, "arch", "identified", &link("c", 5, "other")).unwrap_err();
    assert!(matches!(err, PinError::Replaced { sequence: 5, .. }), "{err}");
    let err = check(&path, "elsewhere", "identified", &link("b", 5, "h5")).unwrap_err();
    assert!(matches!(err, PinError::OtherArchive { .. }), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_pin_file_others_can_write_or_a_symlink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pin");
    check(&path, "arch", "identified", &link("a", 1, "h1")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = check(&path, "arch", "identified", &link("a", 1, "h1")).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    let link_path = dir.path().join("via-symlink");
    std::os::unix::fs::symlink(&path, &link_path).unwrap();
    let err = check(&link_path, "arch", "identified", &link("a", 1, "h1")).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
}

/// The review's finding: a pin file another user owns can be lowered by
/// them. Root can hand a file to another user, so the test runs as root
/// (as CI does) and says it skips otherwise.
#[test]
fn a_pin_file_of_another_user_is_refused_and_so_is_their_output_directory() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("not root: cannot give a file to another user; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pin");
    check(&path, "arch", "identified", &link("a", 1, "h1")).unwrap();
    std::os::unix::fs::chown(&path, Some(4242), None).unwrap();
    let err = check(&path, "arch", "identified", &link("a", 1, "h1")).unwrap_err();
    assert!(err.to_string().contains("another user"), "{err}");
    let out = dir.path().join("plain");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&out, Some(4242), None).unwrap();
    let err = crate::output::prepare_dir(&out).unwrap_err();
    assert!(err.to_string().contains("another user"), "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    /// Whatever order `latest` is seen in, the pin accepts exactly the
    /// sequences at or above the highest seen so far (the same manifest at
    /// the same sequence), and the file always holds that highest one.
    #[test]
    fn the_pin_accepts_exactly_what_does_not_go_backwards(seen in proptest::collection::vec(1u64..20, 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        let mut highest = 0;
        for s in seen {
            let result = check(&path, "arch", "identified", &link(&format!("id-{s}"), s, &format!("h{s}")));
            proptest::prop_assert_eq!(result.is_ok(), s >= highest, "sequence {} after {}", s, highest);
            highest = highest.max(s);
            let pins = read(&path).unwrap().unwrap();
            proptest::prop_assert_eq!(pins.profiles["identified"].sequence, highest);
        }
    }
}
