//! `baton run`: process wiring.

use std::path::Path;
use std::process::ExitCode;

/// Entry point of `baton run`.
pub fn main(_config: &Path, _set: &[(String, String)]) -> ExitCode {
    ExitCode::FAILURE
}
