//! Errors: [`AslError`] when a definition is rejected at load, [`StateError`] when a state
//! fails at run time (named like Step Functions' errors, e.g. `States.Runtime`).

use std::fmt;

/// A definition rejected at load. Names the state (if any) and the field (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AslError {
    pub state: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl AslError {
    pub(crate) fn machine(field: Option<&str>, message: impl Into<String>) -> Self {
        Self { state: None, field: field.map(str::to_string), message: message.into() }
    }

    pub(crate) fn state(state: &str, message: impl Into<String>) -> Self {
        Self { state: Some(state.to_string()), field: None, message: message.into() }
    }

    pub(crate) fn field(state: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { state: Some(state.to_string()), field: Some(field.into()), message: message.into() }
    }
}

impl fmt::Display for AslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            Some(state) => write!(f, "state {state}: ")?,
            None => write!(f, "state machine: ")?,
        }
        if let Some(field) = &self.field {
            write!(f, "field {field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for AslError {}

/// Error names the interpreter raises itself.
pub(crate) mod names {
    pub const ALL: &str = "States.ALL";
    pub const TASK_FAILED: &str = "States.TaskFailed";
    pub const TIMEOUT: &str = "States.Timeout";
    pub const RUNTIME: &str = "States.Runtime";
    pub const DATA_LIMIT: &str = "States.DataLimitExceeded";
    pub const NO_CHOICE: &str = "States.NoChoiceMatched";
    pub const RESULT_PATH: &str = "States.ResultPathMatchFailure";
    pub const INTRINSIC: &str = "States.IntrinsicFailure";
}

/// A failure while running a state: an error name and a cause, as Step Functions reports
/// them. `terminal` errors (States.Runtime, a Fail state's error within its own block, the
/// execution's own timeout) are never retried or caught: they end the block they happen in.
/// `States.DataLimitExceeded` is not terminal: a Retry or Catch that names it handles it
/// (see `model::error_matches`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateError {
    pub error: String,
    pub cause: String,
    pub terminal: bool,
    /// The execution's `TimeoutSeconds` passed: it ends the whole execution, nested blocks
    /// included.
    pub execution_timeout: bool,
}

impl StateError {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        let error = error.into();
        let terminal = error == names::RUNTIME;
        Self { error, cause: cause.into(), terminal, execution_timeout: false }
    }

    /// What a Parallel or Map state sees of a failure in one of its branches or iterations:
    /// the same error and cause, which its own Retry and Catch may handle (a Fail state in a
    /// branch fails the branch, not the execution), except a `States.Runtime` error or the
    /// execution's timeout.
    pub fn seen_by_parent(self) -> Self {
        if self.execution_timeout {
            return self;
        }
        Self::new(self.error, self.cause)
    }

    pub fn runtime(cause: impl Into<String>) -> Self {
        Self::new(names::RUNTIME, cause)
    }

    pub fn intrinsic(cause: impl Into<String>) -> Self {
        Self::new(names::INTRINSIC, cause)
    }
}

/// JSON shown inside an error cause, cut so that a large input does not flood a message.
pub(crate) fn excerpt(value: &serde_json::Value) -> String {
    const MAX: usize = 512;
    let text = value.to_string();
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}
