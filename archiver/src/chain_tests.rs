#![allow(clippy::unwrap_used)]
use super::*;

/// A link without a signature (breaks() and the pin look only at ids,
/// sequences and hashes); the pin tests use it too.
pub(crate) fn link(id: &str, sequence: u64, previous: Option<&str>, own: &str) -> Link {
    let manifest = Manifest {
        format: String::new(),
        snapshot_id: id.into(),
        profile: "identified".into(),
        created_at: String::new(),
        catalog_version: 1,
        topic: String::new(),
        cut: vec![],
        rows: 0,
        schema_sha256: String::new(),
        parts: vec![],
        encryption: crate::manifest::Encryption {
            algorithm: String::new(),
            master_key_id: String::new(),
            master_key_commitment: String::new(),
            wrapped_dek: String::new(),
        },
        recipients: vec![],
        archiver_key_id: String::new(),
        sequence,
        previous_manifest_sha256: previous.map(str::to_owned),
        dataset_key_id: None,
        records_set_aside: 0,
        revision: 1,
        previous_revision_sha256: None,
    };
    Link { id: id.into(), manifest, manifest_sha256: own.into() }
}

fn chain(links: Vec<Link>) -> Chain {
    Chain { links, ..Chain::default() }
}

#[test]
fn an_intact_chain_has_no_breaks() {
    let c = chain(vec![link("c", 1, None, "h1"), link("d", 2, Some("h1"), "h2"), link("e", 3, Some("h2"), "h3")]);
    assert!(c.breaks().is_empty(), "{:?}", c.breaks());
    assert_eq!(c.latest().unwrap().id, "e");
}

#[test]
fn the_oldest_link_may_have_lost_its_predecessor_to_retention() {
    let c = chain(vec![link("c", 5, Some("gone"), "h5"), link("d", 6, Some("h5"), "h6")]);
    assert!(c.breaks().is_empty(), "{:?}", c.breaks());
}

#[test]
fn gaps_forks_and_wrong_links_are_each_reported() {
    let c = chain(vec![
        link("a", 1, None, "h1"),
        link("b", 4, Some("h3"), "h4"),
        link("c", 4, Some("h3"), "h4b"),
        link("d", 5, Some("h4"), "h5"),
    ]);
    let breaks = c.breaks();
    assert_eq!(breaks.len(), 3, "{breaks:?}");
    assert!(matches!(breaks[0], ChainBreak::Missing { from: 2, to: 3, .. }), "{breaks:?}");
    assert!(matches!(breaks[1], ChainBreak::Fork { sequence: 4, .. }), "{breaks:?}");
    assert!(matches!(&breaks[2], ChainBreak::Mismatch { sequence: 5, previous, .. } if previous == "c"), "{breaks:?}");
}

#[test]
fn printable_strips_terminal_escapes() {
    assert_eq!(printable("ab\u{1b}[2Jcd\n"), "ab[2Jcd");
    assert_eq!(printable(&"x".repeat(500)).len(), 200);
}
