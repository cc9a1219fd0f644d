//! The three stages of a run and what each does to one node's files.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A stage of the pipeline, in run order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Procure,
    Process,
    Egress,
}

impl Stage {
    /// Every stage, in run order.
    pub const ALL: [Stage; 3] = [Stage::Procure, Stage::Process, Stage::Egress];

    /// The lowercase name used in job names, subcommands and the state machine's `jobs` keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Procure => "procure",
            Stage::Process => "process",
            Stage::Egress => "egress",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown stage name.
#[derive(Debug, thiserror::Error)]
#[error("unknown stage {0:?}: expected procure, process or egress")]
pub struct UnknownStage(pub String);

impl FromStr for Stage {
    type Err = UnknownStage;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == text)
            .ok_or_else(|| UnknownStage(text.to_string()))
    }
}
