//! How a command ended, and the exit code that tells a script or a
//! supervisor: shared by the subcommands and the service runner, below both.

use std::process::ExitCode;

/// Exit code: some input failed verification or validation.
pub const EXIT_INPUT_FAILED: u8 = 1;
/// Exit code: usage or configuration error (clap uses 2 for usage errors too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: a service stopped on a runtime failure (broker, storage, a broken
/// invariant); it was logged, and a restart may help.
pub const EXIT_SERVICE_FAILED: u8 = 3;

/// How a command that ran to the end went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything succeeded.
    Ok,
    /// Some input lines failed; each was reported.
    SomeInputFailed,
    /// A service stopped on a runtime failure, already logged.
    ServiceFailed,
}

impl Outcome {
    /// `Ok` unless `failed` lines is positive.
    pub fn from_failures(failed: usize) -> Self {
        if failed == 0 { Outcome::Ok } else { Outcome::SomeInputFailed }
    }

    /// The process exit code.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::SomeInputFailed => ExitCode::from(EXIT_INPUT_FAILED),
            Outcome::ServiceFailed => ExitCode::from(EXIT_SERVICE_FAILED),
        }
    }
}
