//! The tests' services: the shared process wrapper, running this package's
//! `tidemark` binary.

use std::path::Path;

pub use tidemark_testkit::process::{START_TIMEOUT, Service};

/// A service that will run `tidemark ARGS` (the binary under test), logging
/// to `DIR/NAME.log`.
pub fn tidemark_service(name: &str, args: Vec<String>, dir: &Path) -> Service {
    let mut service = Service::new(name, Path::new(env!("CARGO_BIN_EXE_tidemark")), args, dir);
    service.set_env("TIDEMARK_STATE_KEY", super::s(super::state_key()));
    service
}
