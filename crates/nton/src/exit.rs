//! Exit codes, in one place. Scripts and CI rely on them; the README lists them.

use std::process::ExitCode;

/// The pipeline (or command) did what was asked.
pub const SUCCESS: u8 = 0;
/// The pipeline ran and failed: its state machine ended in a Fail state (e.g. nodes failed).
pub const RUN_FAILED: u8 = 1;
/// Bad input: arguments, template or state machine rejected before anything ran.
pub const BAD_INPUT: u8 = 2;
/// The environment failed us: I/O, a missing binary, an AWS call.
pub const ENVIRONMENT: u8 = 3;
/// Interrupted by Ctrl-C; the run can be resumed.
pub const INTERRUPTED: u8 = 130;

/// An error carrying the exit code it should end the process with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub code: u8,
    pub message: String,
}

impl CommandError {
    pub fn bad_input(message: impl Into<String>) -> Self {
        CommandError { code: BAD_INPUT, message: message.into() }
    }

    pub fn environment(message: impl Into<String>) -> Self {
        CommandError { code: ENVIRONMENT, message: message.into() }
    }
}

/// Maps a command's result to the process exit code, printing the error's chain on stderr.
pub fn report(result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let code = error.downcast_ref::<CommandError>().map(|e| e.code).unwrap_or(ENVIRONMENT);
            eprintln!("nton: {error:#}");
            ExitCode::from(code)
        }
    }
}
