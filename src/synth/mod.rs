//! The synthetic workload of `tidemark demo` and `tidemark loadgen`:
//! clinicians from several sites editing a shared patient population, each
//! edit signed with its site's key.

mod clinic;
mod clock;

pub use clinic::{Clinic, ClinicConfig, Planned};
pub use tidemark_testkit::SeededRng;
