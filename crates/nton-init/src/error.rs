//! What init can fail with, and the stable error types the state machine can match on.

use std::io;
use std::path::PathBuf;

use nton_core::plan::{PlanError, WorkflowId};

/// Init failed. [`InitError::error_type`] is the Lambda `errorType`, stable across releases, so
/// a `Retry`/`Catch` in the state machine can tell a bad input from a storage hiccup.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The event asks for something impossible (a bad field, too many nodes).
    #[error(transparent)]
    InvalidInput(#[from] PlanError),
    /// The event's `pollSeconds` is too short for the run timeout (see
    /// [`crate::min_poll_seconds`]).
    #[error("{0}")]
    PollInterval(String),
    /// A retry names a workflow that has no directory under the data root.
    #[error(
        "workflowId: {workflow_id} does not exist under {} (a retry re-runs nodes of a run init \
         prepared)",
        root.display()
    )]
    UnknownWorkflow { workflow_id: WorkflowId, root: PathBuf },
    /// The workflow already has prep files that do not match the requested plan.
    #[error("workflow {workflow_id} already has prep files for another plan: {detail}")]
    PlanMismatch { workflow_id: WorkflowId, detail: String },
    /// The data root could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Storage { action: &'static str, path: PathBuf, source: io::Error },
}

impl InitError {
    /// The Lambda `errorType`: `InvalidInput`, `PlanMismatch` or `StorageError`.
    pub fn error_type(&self) -> &'static str {
        match self {
            InitError::InvalidInput(_)
            | InitError::PollInterval(_)
            | InitError::UnknownWorkflow { .. } => "InvalidInput",
            InitError::PlanMismatch { .. } => "PlanMismatch",
            InitError::Storage { .. } => "StorageError",
        }
    }

    pub(crate) fn storage(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> Self {
        InitError::Storage { action, path: path.into(), source }
    }
}

impl From<InitError> for lambda_runtime::Diagnostic {
    fn from(err: InitError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: err.error_type().to_string(),
            error_message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diagnostic_carries_the_stable_type_and_the_message() {
        let err = InitError::storage(
            "writing",
            "/mnt/efs/x",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        let message = err.to_string();
        let diagnostic = lambda_runtime::Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "StorageError");
        assert_eq!(diagnostic.error_message, message);
        assert!(message.starts_with("writing /mnt/efs/x: "), "{message}");
        let invalid =
            InitError::from(nton_core::plan::RunPlan::new(WorkflowId::new_v4(), 0, 1).unwrap_err());
        assert_eq!(invalid.error_type(), "InvalidInput");
        assert!(invalid.to_string().starts_with("ids: 0 is out of range"));
    }
}
