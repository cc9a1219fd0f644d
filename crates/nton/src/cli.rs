//! Command-line definitions (clap derive): one subcommand per thing a user does, each with an
//! options struct. Parsing stops here; `main` hands the parsed options to the command modules.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// nton: fan-out batch pipelines on AWS (Step Functions + AWS Batch N_TO_N array jobs),
/// run locally from the same CloudFormation template that deploys them.
#[derive(Debug, Parser)]
#[command(name = "nton", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on this machine: the template's own state machine, a local
    /// AWS Batch with real array, N_TO_N and failure semantics, and the real workers.
    Run(RunArgs),
    /// Summarise a run (local, from its run record; or an execution on AWS) with a timeline picture.
    Report(ReportArgs),
    /// Re-run only the failed nodes of a finished run (local, or an execution on AWS) through
    /// the same state machine; their results keep their keys.
    Retry(RetryArgs),
    /// Deploy (create or update) the stacks of one environment.
    Deploy(crate::aws::DeployArgs),
    /// Start an execution of a deployed pipeline.
    Start(crate::aws::StartArgs),
    /// Follow a deployed execution until it ends, with per-stage progress.
    Watch(WatchCommand),
    /// Delete the stacks of one environment, and everything they own.
    Teardown(TeardownCommand),
}

/// Options of `nton watch`: the AWS ones, and where a report of the end goes.
#[derive(Debug, Args)]
pub struct WatchCommand {
    #[command(flatten)]
    pub watch: crate::aws::WatchArgs,

    /// When the execution ends, append a markdown report (status, per-stage progress, failed
    /// nodes, results location) to FILE, e.g. "$GITHUB_STEP_SUMMARY" in a GitHub workflow.
    #[arg(long, value_name = "FILE")]
    pub summary_markdown: Option<PathBuf>,

    /// Follow a local run instead: its run directory (as `nton run` prints it), read from its
    /// run record as the record grows.
    #[arg(value_name = "RUN_DIR", conflicts_with_all = ["env", "state_machine_arn", "summary_markdown"])]
    pub run_dir: Option<PathBuf>,

    /// Without --env: follow the newest local run under --data-dir.
    #[arg(long, conflicts_with = "run_dir")]
    pub latest: bool,

    /// Where `nton run` keeps its runs (for --latest without --env).
    #[arg(long, default_value = "nton-runs")]
    pub data_dir: PathBuf,
}

impl WatchCommand {
    /// The local run to follow, if this watch is of a local run.
    pub fn local_run(&self) -> anyhow::Result<Option<PathBuf>> {
        if let Some(dir) = &self.run_dir {
            return Ok(Some(dir.clone()));
        }
        let aws = self.watch.env.is_some() || self.watch.state_machine_arn.is_some();
        if self.latest && !aws {
            return crate::report::latest_run(&self.data_dir).map(Some);
        }
        Ok(None)
    }
}

/// Options of `nton teardown`: the AWS ones, and a typed confirmation for unattended use.
#[derive(Debug, Args)]
pub struct TeardownCommand {
    #[command(flatten)]
    pub teardown: crate::aws::TeardownArgs,

    /// The environment's name once more: anything else is refused (exit 2) before any AWS
    /// call. The teardown workflow passes what the person who started it typed.
    #[arg(long, value_name = "ENV")]
    pub confirm: Option<String>,

    /// Only check --confirm and the names, then exit (0, or 2 on a mismatch) without any AWS
    /// call: the teardown workflow checks before it takes credentials.
    #[arg(long, requires = "confirm")]
    pub confirm_only: bool,
}

/// Options of `nton run`. Every default works on a fresh clone.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Number of record ids to generate.
    #[arg(long, default_value_t = 4000, allow_negative_numbers = true, value_parser = id_count)]
    pub ids: u64,

    /// Most record ids per array node.
    #[arg(long, default_value_t = 40, allow_negative_numbers = true, value_parser = id_count)]
    pub ids_per_node: u64,

    /// Where runs keep their working data (the local stand-in for EFS), run records and logs.
    #[arg(long, default_value = "nton-runs")]
    pub data_dir: PathBuf,

    /// Where results go: a directory, or s3://bucket[/prefix]. Default: <data-dir>/results.
    #[arg(long)]
    pub output: Option<String>,

    /// An S3 bucket a Distributed Map (ItemReader, ResultWriter) reads or writes, as a local
    /// directory: BUCKET=DIR (repeatable); object s3://BUCKET/KEY is the file DIR/KEY. A bucket
    /// the state machine names without one is refused before the run starts.
    #[arg(long = "s3-bucket", value_name = "BUCKET=DIR")]
    pub s3_buckets: Vec<String>,

    /// Print newline-delimited JSON events and a JSON summary instead of progress bars.
    #[arg(long)]
    pub json: bool,

    /// Seconds between two checks of the jobs (the state machine's Wait). Locally a Wait also
    /// ends as soon as the local Batch changes, so this rarely matters.
    #[arg(long, allow_negative_numbers = true, value_parser = poll_seconds)]
    pub poll_seconds: Option<u64>,

    #[command(flatten)]
    pub engine: LocalEngineArgs,

    /// Resume a run that was interrupted: its run directory. Children that already succeeded
    /// are not run again.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["ids", "ids_per_node"])]
    pub resume: Option<PathBuf>,
}

/// The local engine's options, the same for `nton run` and a local `nton retry`.
#[derive(Debug, Args)]
pub struct LocalEngineArgs {
    /// The CloudFormation template holding the state machine and job definitions.
    #[arg(long, default_value = "cloudformation/pipeline.yaml")]
    pub template: PathBuf,

    /// Logical id of the state machine, when the template has more than one.
    #[arg(long)]
    pub state_machine: Option<String>,

    /// Most children running at once per job queue (default: the machine's cores).
    #[arg(long, allow_negative_numbers = true, value_parser = parallelism)]
    pub parallelism: Option<usize>,

    /// Keep the run's working data (prep, data, results on the local "EFS") after a success.
    #[arg(long)]
    pub keep_data: bool,

    /// Template parameter override, KEY=VALUE (repeatable), as for a deploy.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,

    /// Extra environment for every job child and Lambda handler, KEY=VALUE (repeatable); e.g.
    /// the worker's fault injection NTON_FAULT_FAIL=procure:3 for a failure drill.
    #[arg(long = "job-env", value_name = "KEY=VALUE")]
    pub job_env: Vec<String>,

    /// Directory holding the nton-job binary (default: next to this executable).
    #[arg(long, env = "NTON_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
}

/// Options of `nton retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The failed run: a local run directory (as `nton run` prints it), or an execution's ARN
    /// on AWS.
    #[arg(value_name = "RUN_DIR|EXECUTION_ARN")]
    pub target: Option<String>,

    /// Retry the newest run: of the environment's state machine with --env, else the newest
    /// local run under --data-dir.
    #[arg(long, conflicts_with = "target")]
    pub latest: bool,

    /// Environment whose pipeline stack holds the state machine (with --latest).
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,

    /// First part of every stack name.
    #[arg(long, env = "NTON_STACK_PREFIX", default_value = "nton")]
    pub prefix: String,

    /// The state machine (with --latest), instead of the one in the pipeline stack's outputs.
    #[arg(long, value_name = "ARN")]
    pub state_machine_arn: Option<String>,

    /// Name of the retry's execution on AWS (default: one Step Functions makes up).
    #[arg(long)]
    pub name: Option<String>,

    /// Name of the state whose output is the watcher's status (default: the state of
    /// cloudformation/pipeline.yaml whose Task invokes the nton-watch function).
    #[arg(long, default_value_t = crate::run::default_watch_state(), value_name = "STATE")]
    pub watch_state: String,

    #[command(flatten)]
    pub aws: crate::aws::AwsArgs,

    /// Where `nton run` keeps its runs (for --latest without --env).
    #[arg(long, default_value = "nton-runs")]
    pub data_dir: PathBuf,

    #[command(flatten)]
    pub engine: LocalEngineArgs,

    /// Print JSON: local, newline-delimited events and a summary; on AWS, the new execution.
    #[arg(long)]
    pub json: bool,
}

/// Options of `nton report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A local run directory (holding run-record.jsonl). Default: the latest run under --data-dir.
    #[arg(conflicts_with_all = ["execution", "env", "state_machine_arn"])]
    pub run_dir: Option<PathBuf>,

    /// Report on an execution on AWS instead: its ARN, its name, or "latest" (resolved as
    /// `nton watch` does). Implied "latest" by --env or --state-machine-arn alone.
    #[arg(long, value_name = "ARN|NAME|latest")]
    pub execution: Option<String>,

    /// Environment whose pipeline stack holds the state machine (for an execution's name or
    /// "latest").
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,

    /// First part of every stack name.
    #[arg(long, env = "NTON_STACK_PREFIX", default_value = "nton")]
    pub prefix: String,

    /// The state machine, instead of the one in the pipeline stack's outputs.
    #[arg(long, value_name = "ARN")]
    pub state_machine_arn: Option<String>,

    /// Name of the state the poll loop enters each round (its entries are the ticks; default:
    /// the state of cloudformation/pipeline.yaml whose Task invokes the nton-watch function).
    #[arg(long, default_value_t = crate::run::default_watch_state(), value_name = "STATE")]
    pub watch_state: String,

    #[command(flatten)]
    pub aws: crate::aws::AwsArgs,

    /// Where `nton run` kept its runs.
    #[arg(long, default_value = "nton-runs")]
    pub data_dir: PathBuf,

    /// Print the report (with the timeline's data) as JSON.
    #[arg(long)]
    pub json: bool,

    /// Where the timeline picture goes (one self-contained HTML file).
    /// Default: report.html in the run directory; for an execution on AWS,
    /// nton-report-<execution name>.html here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Parses a whole number in `min..=max`. Negative and oversized input gets the range in its
/// message (clap adds the option's name), instead of clap's "unexpected argument '-5'" or
/// "invalid digit" that name neither the option nor its limits.
fn integer_in(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let rule = format!("must be an integer in {min}..={max}");
    let value: i128 =
        text.trim().parse().map_err(|_| format!("{text:?} is not an integer ({rule})"))?;
    u64::try_from(value)
        .ok()
        .filter(|value| (min..=max).contains(value))
        .ok_or_else(|| format!("{value} is out of range ({rule})"))
}

/// `--ids` and `--ids-per-node` (the plan's own limits; the node count is checked with both).
pub fn id_count(text: &str) -> Result<u64, String> {
    integer_in(text, 1, u64::from(nton_core::plan::MAX_IDS))
}

/// `--poll-seconds`: the plan's limits.
pub fn poll_seconds(text: &str) -> Result<u64, String> {
    integer_in(text, 1, u64::from(nton_core::plan::MAX_POLL_SECONDS))
}

/// `--parallelism`: at least one child; at most 4,096 processes per queue at once.
fn parallelism(text: &str) -> Result<usize, String> {
    integer_in(text, 1, MAX_PARALLELISM).map(|value| value as usize)
}

/// Most children one local queue runs at once: far above any machine's cores, low enough that
/// a typo cannot exhaust the process table.
pub const MAX_PARALLELISM: u64 = 4_096;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn run_error(args: &[&str]) -> String {
        let mut argv = vec!["nton", "run"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap_err().to_string()
    }

    #[test]
    fn negative_and_oversized_counts_name_the_option_and_its_range() {
        let error = run_error(&["--ids", "-5"]);
        assert!(error.contains("'--ids <IDS>'"), "{error}");
        assert!(
            error.contains("-5 is out of range (must be an integer in 1..=10000000)"),
            "{error}"
        );
        let error = run_error(&["--ids-per-node", "10000001"]);
        assert!(error.contains("'--ids-per-node <IDS_PER_NODE>'"), "{error}");
        assert!(error.contains("10000001 is out of range"), "{error}");
        let error = run_error(&["--parallelism", "0"]);
        assert!(error.contains("'--parallelism <PARALLELISM>'"), "{error}");
        assert!(error.contains("must be an integer in 1..=4096"), "{error}");
        let error = run_error(&["--poll-seconds", "x"]);
        assert!(error.contains("\"x\" is not an integer"), "{error}");
    }

    fn verb_error(argv: &[&str]) -> String {
        let mut full = vec!["nton"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).unwrap_err().to_string()
    }

    #[test]
    fn every_verbs_counts_name_the_option_and_its_range() {
        for (argv, option, want) in [
            (
                &["retry", "x", "--parallelism", "-1"][..],
                "'--parallelism <PARALLELISM>'",
                "-1 is out of range (must be an integer in 1..=4096)",
            ),
            (
                &["start", "--env", "d", "--ids", "-5"][..],
                "'--ids <IDS>'",
                "-5 is out of range (must be an integer in 1..=10000000)",
            ),
            (
                &["start", "--env", "d", "--ids-per-node", "0"][..],
                "'--ids-per-node <IDS_PER_NODE>'",
                "0 is out of range",
            ),
            (
                &["watch", "--poll-seconds", "-1"][..],
                "'--poll-seconds <SECONDS>'",
                "-1 is out of range (must be more than 0 and at most 3600)",
            ),
            (
                &["deploy", "--env", "d", "--poll-seconds", "x"][..],
                "'--poll-seconds <SECONDS>'",
                "\"x\" is not a number of seconds",
            ),
            (
                &["teardown", "--env", "d", "--poll-seconds", "0"][..],
                "'--poll-seconds <SECONDS>'",
                "0 is out of range",
            ),
        ] {
            let error = verb_error(argv);
            assert!(error.contains(option), "{argv:?}: {error}");
            assert!(error.contains(want), "{argv:?}: {error}");
        }
        assert!(
            Cli::try_parse_from(["nton", "retry", "x", "--latest"]).is_err(),
            "a target and --latest"
        );
    }

    #[test]
    fn counts_in_range_parse() {
        let Cli { command: Command::Run(args) } =
            Cli::try_parse_from(["nton", "run", "--ids", "7", "--ids-per-node", "1"]).unwrap()
        else {
            panic!("not run");
        };
        assert_eq!((args.ids, args.ids_per_node), (7, 1));
    }
}
