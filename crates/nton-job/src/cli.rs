//! The command line: one subcommand per stage. Everything else comes from the environment
//! (see [`crate::config`]), as AWS Batch passes it.

use clap::{Parser, Subcommand};
use nton_core::stage::Stage;

const ENVIRONMENT_HELP: &str = "\
Environment:
  AWS_BATCH_JOB_ARRAY_INDEX          node (set by Batch; absent: node 0)
  NTON_WORKFLOW_ID                   the run's id (UUID), required
  NTON_DATA_ROOT                     data root directory (EFS mount), required
  NTON_RESULTS_URL                   egress: s3://bucket[/prefix], /dir or file:///dir
  NTON_S3_FORCE_PATH_STYLE           true|false (default: true when AWS_ENDPOINT_URL is set)
  NTON_S3_MULTIPART_THRESHOLD_BYTES  multipart upload from this size (default 8 MiB)
  NTON_FAULT_FAIL                    fault injection: stage:node,... fails there
  NTON_FAULT_DELAY_MS                fault injection: stage:node:ms,... waits there
  RUST_LOG                           log level (default info)

Exit codes: 0 success, 1 the stage failed on this node, 2 bad configuration or usage.";

/// The nton Batch worker: runs one stage of the pipeline on one array node.
#[derive(Debug, Parser)]
#[command(name = "nton-job", version, after_help = ENVIRONMENT_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub stage: StageCommand,
}

/// The stage to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum StageCommand {
    /// Writes `data/<id>.json` for every id in the node's `prep/ids.csv`.
    #[command(about = "Make each record's data: data/<id>.json for every id in prep/ids.csv")]
    Procure,
    /// Writes `results/<id>.json` from each record's data.
    #[command(about = "Turn each record's data into results: results/<id>.json")]
    Process,
    /// Ships the node's results to `NTON_RESULTS_URL` under `<wf>/<node>/results/<id>.json`.
    #[command(
        about = "Ship the node's results to NTON_RESULTS_URL under <wf>/<node>/results/<id>.json"
    )]
    Egress,
}

impl StageCommand {
    pub fn stage(self) -> Stage {
        match self {
            StageCommand::Procure => Stage::Procure,
            StageCommand::Process => Stage::Process,
            StageCommand::Egress => Stage::Egress,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn each_stage_is_a_subcommand() {
        for stage in Stage::ALL {
            let cli = Cli::try_parse_from(["nton-job", stage.as_str()]).unwrap();
            assert_eq!(cli.stage.stage(), stage);
        }
        assert!(Cli::try_parse_from(["nton-job"]).is_err());
        assert!(Cli::try_parse_from(["nton-job", "download"]).is_err());
        Cli::command().debug_assert();
    }
}
