//! The three worker stages of a run and what each does to one node's files; and the pipeline's
//! stages as the template names them ([`StageName`], [`StageMap`]).
//!
//! - [`procure`] makes each record's data (`data/<id>.json`, 500 points);
//! - [`process`] turns it into results (`results/<id>.json`, an `open` flag per point);
//! - [`egress_items`] lists the results to ship and [`egress_to_dir`] copies them to a local
//!   destination (the S3 upload lives in `nton-job`, beside the SDK).
//!
//! Every write is atomic and every directory creation idempotent, so re-running a node after
//! any failure is safe and gives the same bytes.

mod egress;
mod error;
mod json;
mod map;
mod process;
mod procure;
mod records;
mod report;
#[cfg(test)]
mod test_support;

pub use egress::{EgressItem, egress_items, egress_to_dir};
pub use error::StageError;
pub use map::{StageMap, StageName};
pub use process::{OPEN_ABOVE, ResultPoint, process, process_record};
pub use procure::{
    DataPoint, FIRST_TIMESTAMP_MS, POINTS, STEP_MS, VALUE_MAX, VALUE_MIN, procure, procure_record,
};
pub use records::RECORD_THREADS;
pub use report::StageReport;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A worker stage: what `nton-job <stage>` runs. The pipeline's stages are [`StageName`]s, each
/// a job the template submits (which runs one of these).
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
