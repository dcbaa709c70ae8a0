//! Fixtures shared by the fuzz targets: the test key registry and signing key
//! (`tests/data`, published test keys), the built-in catalog, and a fixed
//! clock.
//!
//! Key decision: every fixture is compiled in (`include_str!`) and built once,
//! so an execution spends its time in the parser under test, and a crash
//! reproduces from the artifact alone, without files or the wall clock.
//!
//! The code under test comes through its crates as ordinary path
//! dependencies: the pure cores (`tidemark-schemas`, `tidemark-crdt`,
//! `tidemark-seal`) link neither librdkafka nor tokio, so cargo-fuzz builds
//! exactly what the services run.

#![allow(missing_docs)]

use std::sync::OnceLock;

use tidemark_schemas::keys::{KeyRegistry, SigningKeyFile};
use tidemark_schemas::verify::{BatchMode, Verifier};
use tidemark_schemas::{Catalog, EDIT_EVENT_PAYLOAD_TYPE, dsse};

/// The receiver's clock in every target: 2027-01-15, after every seed's HLC,
/// so the future-skew rule is exercised by mutated HLCs only.
pub const NOW_MS: u64 = 1_800_000_000_000;

/// The source the test key signs for (`tests/data/test-registry.toml`).
pub const TEST_SOURCE: &str = "site-a-ehr";
/// The patient-id prefix the test key is scoped to.
pub const TEST_PREFIX: &str = "pt-";

/// Everything a target needs, built once per process.
pub struct Fixtures {
    /// The built-in v1 catalog.
    pub catalog: &'static Catalog,
    /// A verifier of the test registry in the default (fast batch) mode.
    pub fast: Verifier,
    /// The same registry, every signature checked strictly one by one.
    pub exact: Verifier,
    /// The test signing key (source `site-a-ehr`, patients `pt-*`).
    pub signer: SigningKeyFile,
}

/// The fixtures.
///
/// # Panics
/// If a compiled-in fixture does not parse: the tree is broken.
pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let registry = KeyRegistry::from_toml_str(include_str!("../../tests/data/test-registry.toml"))
            .expect("the test registry parses");
        let signer = SigningKeyFile::from_toml_str(include_str!("../../tests/data/test-signing.key"))
            .expect("the test signing key parses");
        Fixtures {
            catalog: Catalog::builtin(),
            exact: Verifier::new(registry.clone()).with_batch_mode(BatchMode::Exact),
            fast: Verifier::new(registry),
            signer,
        }
    })
}

impl Fixtures {
    /// `payload` in a DSSE envelope signed by the test key, as JSON.
    pub fn sign(&self, payload: &[u8]) -> String {
        dsse::sign(EDIT_EVENT_PAYLOAD_TYPE, payload, self.signer.signing_key(), self.signer.id()).to_json()
    }
}
