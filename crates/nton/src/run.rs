//! `nton run`: the whole pipeline on this machine, from the template that deploys it.
//!
//! This module knows the nton contract the template sets up (the workers' `NTON_DATA_ROOT`
//! and `NTON_RESULTS_URL`, the init event's fields, the Lambdas' images, bound to the
//! `nton-init` and `nton-watch` handlers in [`local_functions`]); the engine knows only
//! CloudFormation, ASL and Batch. A run lives in `<data-dir>/<workflowId>/`: `efs/` (the local stand-in for
//! EFS, removed after a success unless `--keep-data`), `logs/` and `run-record.jsonl`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use nton_core::batch::JobStatus;
use nton_core::plan::{PlanDefaults, PlanInput, WorkflowId};
use nton_core::results::{RESULTS_URL_RULE, ResultsTarget};
use nton_engine::local::{
    FunctionError, FunctionSpec, LambdaRegistry, LocalFunction, LocalRun, LocalRunSpec,
    LocalServices, RunError, RunSummary,
};
use nton_engine::record::{RECORD_FILE, RecordLine, RunOutcome, succeeded_children};
use nton_engine::template::Template;
use serde_json::{Value, json};

use crate::cli::RunArgs;
use crate::exit::{self, CommandError};
use crate::progress::{JsonReporter, PlainReporter, Reporter, TerminalReporter};

/// A validated `nton run`: everything derived from the arguments before anything runs.
#[derive(Debug)]
pub struct RunRequest {
    pub spec: LocalRunSpec,
    pub workflow_id: WorkflowId,
    pub run_dir: PathBuf,
    pub efs_dir: PathBuf,
    /// A directory, or an `s3://` URL.
    pub output: String,
    pub keep_data: bool,
    pub json: bool,
}

/// Checks the arguments and derives the run's directories and the engine's spec.
pub fn plan_run(args: &RunArgs, cwd: &Path) -> anyhow::Result<RunRequest> {
    let data_dir = absolute(cwd, &args.data_dir);
    let parallelism = args
        .engine
        .parallelism
        .unwrap_or_else(|| std::thread::available_parallelism().map(usize::from).unwrap_or(2));
    if parallelism == 0 {
        return Err(
            CommandError::bad_input("--parallelism: 0 is out of range (must be >= 1)").into()
        );
    }

    let mut recorded_output = None;
    let mut recorded_buckets = BTreeMap::new();
    let (input, resumed_children, run_dir, workflow_id) = match &args.resume {
        Some(run_dir) => {
            let point = resume_point(&absolute(cwd, run_dir))?;
            recorded_output = point.output.clone();
            recorded_buckets = point.s3_buckets.clone();
            (point.input, point.succeeded, point.run_dir, point.workflow_id)
        }
        None => {
            let workflow_id = WorkflowId::new_v4();
            let mut input = json!({
                "ids": args.ids,
                "idsPerNode": args.ids_per_node,
                "workflowId": workflow_id.to_string(),
            });
            if let Some(seconds) = args.poll_seconds {
                input["pollSeconds"] = json!(seconds);
            }
            // The init Lambda checks these too, but by then the run has begun: refuse a plan
            // AWS Batch would refuse (0 ids, 10,001 nodes...) before anything is written.
            PlanInput::from_json(&input, &PlanDefaults::default())
                .map_err(|error| CommandError::bad_input(error.to_string()))?;
            let run_dir = data_dir.join(workflow_id.to_string());
            (input, BTreeSet::new(), run_dir, workflow_id)
        }
    };

    let efs_dir = run_dir.join("efs");
    let given_output =
        args.output.as_deref().map(|output| checked_output(cwd, output)).transpose()?;
    // A resumed run writes where the first one did: egress children it skips do not write again.
    let output = match (recorded_output, given_output) {
        (Some(recorded), Some(given)) if recorded != given => {
            return Err(CommandError::bad_input(format!(
                "--output: {given} differs from {recorded}, where the run being resumed puts its \
                 results (leave --output out to resume)"
            ))
            .into());
        }
        (Some(recorded), _) => recorded,
        (None, Some(given)) => given,
        (None, None) => data_dir.join("results").display().to_string(),
    };
    let bin_dir = worker_dir(cwd, args.engine.bin_dir.as_deref())?;
    let EngineSettings { env_overrides, parameters } =
        engine_settings(&efs_dir, &output, &args.engine.job_env, &args.engine.params)?;
    let given_buckets = s3_bucket_dirs(&args.s3_buckets, cwd)?;
    // A resumed run reads and writes the buckets the first one did, like its --output.
    let s3_buckets = match (recorded_buckets.is_empty(), given_buckets.is_empty()) {
        (false, false) if recorded_buckets != given_buckets => {
            return Err(CommandError::bad_input(
                "--s3-bucket: differs from the mapping of the run being resumed (leave \
                 --s3-bucket out to resume with the recorded one)",
            )
            .into());
        }
        (false, _) => recorded_buckets,
        (true, _) => given_buckets,
    };

    let spec = LocalRunSpec {
        template: absolute(cwd, &args.engine.template),
        state_machine: args.engine.state_machine.clone(),
        parameters,
        run_dir: run_dir.clone(),
        bin_dir,
        parallelism,
        base_env: child_base_env(std::env::vars()),
        env_overrides,
        input,
        execution_name: format!("local-{}", uuid::Uuid::new_v4()),
        resumed_children,
        meta: run_meta(&output, &s3_buckets),
        s3_buckets,
    };
    Ok(RunRequest {
        spec,
        workflow_id,
        run_dir,
        efs_dir,
        output,
        keep_data: args.engine.keep_data,
        json: args.json,
    })
}

/// Runs `nton run` and returns the exit code.
pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let request = plan_run(&args, &cwd)?;
    execute(request, args.engine.bin_dir.is_none()).await
}

/// Runs a planned execution (a run, a resume or a retry) to its end: progress on the terminal
/// or as JSON, the summary, the record next to the results. `build_workers`: build a missing
/// worker binary when cargo started us (no `--bin-dir` given).
pub async fn execute(request: RunRequest, build_workers: bool) -> anyhow::Result<u8> {
    if build_workers {
        build_missing_workers(&request.spec.bin_dir, std::env::var_os("CARGO").as_deref())?;
    }
    let local =
        LocalRun::prepare(request.spec.clone(), &local_functions()).map_err(
            |error| match error {
                RunError::Io(_) | RunError::MissingBinary { .. } => {
                    CommandError::environment(error.to_string())
                }
                _ => CommandError::bad_input(error.to_string()),
            },
        )?;
    // The local stand-in for the EFS file system the template mounts: like EFS, it exists
    // before the functions and jobs that use it.
    std::fs::create_dir_all(&request.efs_dir)
        .with_context(|| format!("creating {}", request.efs_dir.display()))?;

    let mut reporter: Box<dyn Reporter> = if request.json {
        Box::new(JsonReporter::new(std::io::stdout()))
    } else if std::io::stderr().is_terminal() {
        Box::new(TerminalReporter::new())
    } else {
        Box::new(PlainReporter::default())
    };
    let mut events = local.subscribe();
    let display = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            reporter.event(&event);
        }
        reporter.finish();
    });

    let summary = tokio::select! {
        summary = local.execute() => summary.map_err(|error| CommandError::environment(error.to_string()))?,
        _ = tokio::signal::ctrl_c() => {
            let interrupted = local.interrupt().await;
            drop(local);
            let _ = display.await;
            interrupted.map_err(|error| CommandError::environment(error.to_string()))?;
            eprintln!(
                "nton: interrupted; resume with: nton run --resume {}",
                request.run_dir.display()
            );
            return Ok(exit::INTERRUPTED);
        }
    };
    drop(local);
    let _ = display.await;

    let record_copy = copy_record_next_to_results(&request, &summary)?;
    if summary.succeeded() && !request.keep_data {
        std::fs::remove_dir_all(&request.efs_dir)
            .or_else(|error| match error.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(error),
            })
            .with_context(|| format!("removing {}", request.efs_dir.display()))?;
    }

    if request.json {
        // A closed stdout (piped to `head`) must not turn the run's result into a panic.
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            summary_json(&request, &summary, record_copy.as_deref())
        );
    } else {
        eprint!("{}", summary_text(&request, &summary, record_copy.as_deref()));
    }
    Ok(if summary.succeeded() { exit::SUCCESS } else { exit::RUN_FAILED })
}

/// The image repository of the init Lambda, and of the watcher (whose Task's state is the
/// status `nton watch` and `nton report` read).
pub const INIT_IMAGE: &str = "nton-init";
pub const WATCH_IMAGE: &str = "nton-watch";

/// The in-process handlers of the template's functions, by image repository: the same
/// libraries the Lambda binaries run, configured from the function's environment.
pub fn local_functions() -> LambdaRegistry {
    let mut functions = LambdaRegistry::new();
    functions
        .register(INIT_IMAGE, |function: &FunctionSpec<'_>| {
            let config =
                nton_init::InitConfig::from_lookup(|name| function.environment.get(name).cloned())
                    .map_err(|error| error.to_string())?;
            Ok(Arc::new(InitFunction(Arc::new(config))) as Arc<dyn LocalFunction>)
        })
        .register(WATCH_IMAGE, |function: &FunctionSpec<'_>| {
            let options =
                nton_watch::config::status_options(|name| function.environment.get(name).cloned())
                    .map_err(|error| error.to_string())?;
            Ok(Arc::new(WatchFunction(options)) as Arc<dyn LocalFunction>)
        });
    functions
}

/// The template the CLI reads when none is given (`--template`'s default).
pub const DEFAULT_TEMPLATE: &str = "cloudformation/pipeline.yaml";

/// The watch state of a template: the one state whose Task invokes the function whose image is
/// the watcher ([`WATCH_IMAGE`]). Its output is the status `nton watch` reads and its entries
/// are the polls `nton report` counts, whatever the template calls it. `origin` names the
/// template in errors.
pub fn watch_state_in(template: &Template, origin: &str) -> Result<String, String> {
    let states = nton_engine::local::states_invoking(template, origin, None, WATCH_IMAGE)
        .map_err(|error| error.to_string())?;
    match states.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!("no state of {origin} invokes a function whose image is {WATCH_IMAGE}")),
        many => Err(format!(
            "several states of {origin} invoke the {WATCH_IMAGE} function ({}); name one",
            many.join(", ")
        )),
    }
}

/// The pipeline template this nton was built with: the default watch state's source when no
/// [`DEFAULT_TEMPLATE`] is under the current directory.
const BUILT_WITH_TEMPLATE: &str = include_str!("../../../cloudformation/pipeline.yaml");

/// `--watch-state`'s default: the watch state of [`DEFAULT_TEMPLATE`] under the current
/// directory (a fork's own), else of the template this nton was built with; empty when neither
/// has one (the commands that need it then refuse, asking for `--watch-state`). A template
/// here that loads but names no watcher (one reduced for an emulator, without its Lambda
/// functions) falls back to the built-in one too.
pub fn default_watch_state() -> String {
    watch_state_of(Template::load(DEFAULT_TEMPLATE).ok().as_ref())
}

/// [`default_watch_state`] given the template under the current directory, if it loaded.
fn watch_state_of(here: Option<&Template>) -> String {
    here.and_then(|template| watch_state_in(template, DEFAULT_TEMPLATE).ok())
        .or_else(|| {
            let built_in =
                Template::parse(BUILT_WITH_TEMPLATE, "the built-in pipeline template").ok()?;
            watch_state_in(&built_in, DEFAULT_TEMPLATE).ok()
        })
        .unwrap_or_default()
}

/// `nton_init::handle`, off the async threads (it blocks on file I/O), as the Lambda does.
struct InitFunction(Arc<nton_init::InitConfig>);

#[async_trait::async_trait]
impl LocalFunction for InitFunction {
    async fn invoke(&self, payload: Value, _: &LocalServices<'_>) -> Result<Value, FunctionError> {
        let config = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            nton_init::handle(payload, &config)
                .map_err(|error| FunctionError::new(error.error_type(), error))
        })
        .await
        .map_err(|error| FunctionError::new("Runtime.ExitError", error))?
    }
}

/// `nton_watch::handle_with` over the run's local Batch.
struct WatchFunction(nton_core::status::StatusOptions);

#[async_trait::async_trait]
impl LocalFunction for WatchFunction {
    async fn invoke(
        &self,
        payload: Value,
        services: &LocalServices<'_>,
    ) -> Result<Value, FunctionError> {
        nton_watch::handle_with(payload, services.batch, now_ms(), &self.0)
            .await
            .map_err(|error| FunctionError::new(error.error_type(), error))
    }
}

/// Milliseconds since the Unix epoch, the watcher's clock.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// The workspace binaries the template's job definitions run (their images' repositories).
const WORKER_BINARIES: [&str; 1] = ["nton-job"];

/// `cargo run --bin nton -- run` builds only this binary; the worker the template's job
/// definitions name is another package of the workspace. When cargo started us (it sets
/// `$CARGO`) and the worker is missing next to us, build it the same way, so the README's one
/// command works on a fresh clone. Otherwise a missing worker is left to the engine, whose
/// error says how to build it.
fn build_missing_workers(bin_dir: &Path, cargo: Option<&std::ffi::OsStr>) -> anyhow::Result<()> {
    let Some(cargo) = cargo else {
        return Ok(());
    };
    let missing: Vec<&str> =
        WORKER_BINARIES.into_iter().filter(|name| !bin_dir.join(name).is_file()).collect();
    let release = match bin_dir.file_name().and_then(|name| name.to_str()) {
        Some("release") => true,
        Some("debug") => false,
        // A custom profile or target: not ours to guess.
        _ => return Ok(()),
    };
    if missing.is_empty() {
        return Ok(());
    }
    let mut command = std::process::Command::new(cargo);
    command.arg("build");
    if release {
        command.arg("--release");
    }
    // `-p nton` too: built alone, the workers would resolve their shared dependencies' features
    // differently from the `nton` build that is running, and cargo would rebuild ~50 crates.
    command.args(["-p", "nton"]);
    for name in &missing {
        command.args(["-p", name]);
    }
    eprintln!("nton: building {} for the job definitions: {command:?}", missing.join(", "));
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        return Err(CommandError::environment(format!("{command:?} failed ({status})")).into());
    }
    Ok(())
}

/// Where an interrupted or failed run picks up again.
struct ResumePoint {
    /// The first execution's input, with its workflow id.
    input: Value,
    /// Children (job name, index) that already succeeded.
    succeeded: BTreeSet<(String, Option<u32>)>,
    run_dir: PathBuf,
    workflow_id: WorkflowId,
    /// Where the first execution put its results.
    output: Option<String>,
    /// The first execution's `--s3-bucket` mapping.
    s3_buckets: BTreeMap<String, PathBuf>,
}

/// Reads what to resume from a run directory's record.
fn resume_point(run_dir: &Path) -> anyhow::Result<ResumePoint> {
    let record_path = run_dir.join(RECORD_FILE);
    // With a retry's children under their original nodes: a resume runs the whole plan.
    let lines = crate::retry::read_run_record(&record_path).map_err(|error| {
        CommandError::bad_input(format!("--resume: cannot read {}: {error}", record_path.display()))
    })?;
    let first_start = lines.iter().find_map(|line| match line {
        RecordLine::Run(start) => Some(start),
        _ => None,
    });
    let output = first_start.and_then(|start| start.meta["output"].as_str().map(str::to_string));
    let input = first_start.map(|start| start.input.clone()).ok_or_else(|| {
        CommandError::bad_input(format!(
            "--resume: {} has no run start line",
            record_path.display()
        ))
    })?;
    if lines
        .iter()
        .any(|line| matches!(line, RecordLine::End(end) if end.status == RunOutcome::Succeeded))
    {
        return Err(CommandError::bad_input(format!(
            "--resume: the run in {} already succeeded; nothing to resume",
            run_dir.display()
        ))
        .into());
    }
    let workflow_id = input["workflowId"]
        .as_str()
        .and_then(|text| WorkflowId::parse(text).ok())
        .ok_or_else(|| {
            CommandError::bad_input(format!(
                "--resume: the run in {} has no workflowId in its input",
                run_dir.display()
            ))
        })?;
    Ok(ResumePoint {
        input,
        succeeded: succeeded_children(&lines),
        run_dir: run_dir.to_path_buf(),
        workflow_id,
        output,
        s3_buckets: first_start.map(|start| recorded_s3_buckets(&start.meta)).unwrap_or_default(),
    })
}

/// The run start line's `meta`: where the run puts its results and which directories stand
/// for which buckets, so that `--resume` and `nton retry` use the same.
pub(crate) fn run_meta(output: &str, s3_buckets: &BTreeMap<String, PathBuf>) -> Value {
    json!({ "output": output, "s3Buckets": s3_buckets })
}

/// The `--s3-bucket` mapping a run recorded in its `meta` (none in a record from before it was
/// recorded, or of a run without buckets).
pub(crate) fn recorded_s3_buckets(meta: &Value) -> BTreeMap<String, PathBuf> {
    serde_json::from_value(meta["s3Buckets"].clone()).unwrap_or_default()
}

/// Where the worker binaries are: `--bin-dir`, or beside this executable.
pub(crate) fn worker_dir(cwd: &Path, bin_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    Ok(match bin_dir {
        Some(dir) => absolute(cwd, dir),
        None => std::env::current_exe()
            .context("finding this executable's directory (give --bin-dir)")?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    })
}

/// What `nton run` and `nton retry` give the engine from their `--job-env` and `--param`s.
pub(crate) struct EngineSettings {
    /// The children's environment overrides: the nton contract (`NTON_DATA_ROOT`,
    /// `NTON_RESULTS_URL`), then each `--job-env`.
    pub env_overrides: BTreeMap<String, String>,
    /// The template's parameters.
    pub parameters: BTreeMap<String, String>,
}

/// The [`EngineSettings`] of a run whose data is in `efs_dir` and results go to `output`.
pub(crate) fn engine_settings(
    efs_dir: &Path,
    output: &str,
    job_env: &[String],
    params: &[String],
) -> Result<EngineSettings, CommandError> {
    let mut env_overrides = BTreeMap::new();
    env_overrides.insert("NTON_DATA_ROOT".to_string(), efs_dir.display().to_string());
    env_overrides.insert("NTON_RESULTS_URL".to_string(), output.to_string());
    for pair in job_env {
        let (key, value) = split_pair("--job-env", pair)?;
        env_overrides.insert(key, value);
    }
    let mut parameters = BTreeMap::new();
    for pair in params {
        let (key, value) = split_pair("--param", pair)?;
        parameters.insert(key, value);
    }
    Ok(EngineSettings { env_overrides, parameters })
}

/// The environment a job child starts from: enough to run a static binary and reach AWS
/// (credentials, region, endpoint for an emulator), not the whole of ours.
pub fn child_base_env(vars: impl Iterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.filter(|(key, _)| {
        matches!(
            key.as_str(),
            "PATH" | "HOME" | "TMPDIR" | "TZ" | "RUST_LOG" | "RUST_BACKTRACE" | "SSL_CERT_FILE"
        ) || key.starts_with("AWS_")
            || key.starts_with("NTON_S3_")
    })
    .collect()
}

/// Puts a copy of the run record next to the results (for a directory output), so results and
/// their provenance travel together.
pub(crate) fn copy_record_next_to_results(
    request: &RunRequest,
    summary: &RunSummary,
) -> anyhow::Result<Option<PathBuf>> {
    if request.output.starts_with("s3://") {
        return Ok(None);
    }
    let dir = Path::new(&request.output).join(request.workflow_id.to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let target = dir.join(RECORD_FILE);
    let bytes = std::fs::read(&summary.record)
        .with_context(|| format!("reading {}", summary.record.display()))?;
    nton_core::fsutil::write_atomic(&target, &bytes)
        .with_context(|| format!("writing {}", target.display()))?;
    Ok(Some(target))
}

fn summary_json(request: &RunRequest, summary: &RunSummary, record_copy: Option<&Path>) -> Value {
    json!({
        "event": "summary",
        "status": summary.status,
        "workflowId": request.workflow_id.to_string(),
        "error": summary.error,
        "cause": summary.cause,
        "failedState": summary.failed_state,
        "seconds": (summary.ended_at_ms - summary.started_at_ms) as f64 / 1000.0,
        "results": results_location(request),
        "runDir": request.run_dir,
        "record": record_copy.unwrap_or(&summary.record),
        "jobs": summary.jobs.iter().map(|job| json!({
            "jobId": job.job_id,
            "jobName": job.job_name,
            "status": job.status,
            "size": job.array_properties.as_ref().and_then(|a| a.size),
            "statusSummary": job.array_properties.as_ref().and_then(|a| a.status_summary.clone()),
        })).collect::<Vec<_>>(),
    })
}

fn results_location(request: &RunRequest) -> String {
    if request.output.starts_with("s3://") {
        format!("{}/{}/", request.output.trim_end_matches('/'), request.workflow_id)
    } else {
        Path::new(&request.output).join(request.workflow_id.to_string()).display().to_string()
    }
}

/// The closing summary a person reads.
pub fn summary_text(
    request: &RunRequest,
    summary: &RunSummary,
    record_copy: Option<&Path>,
) -> String {
    let seconds = (summary.ended_at_ms - summary.started_at_ms) as f64 / 1000.0;
    let mut text = format!("\nnton run: {} in {seconds:.1} s\n", summary.status);
    text += &format!("  workflow   {}\n", request.workflow_id);
    if let Some(ids) = request.spec.input["ids"].as_u64() {
        text += &format!("  ids        {ids} ({} per node)\n", request.spec.input["idsPerNode"]);
    }
    for job in &summary.jobs {
        let counts = job
            .array_properties
            .as_ref()
            .and_then(|a| a.status_summary.clone())
            .unwrap_or_default();
        let size = job.array_properties.as_ref().and_then(|a| a.size).unwrap_or(1);
        let succeeded = counts.get(&JobStatus::Succeeded).copied().unwrap_or(u32::from(
            job.status == JobStatus::Succeeded && job.array_properties.is_none(),
        ));
        let failed = counts.get(&JobStatus::Failed).copied().unwrap_or(u32::from(
            job.status == JobStatus::Failed && job.array_properties.is_none(),
        ));
        text += &format!(
            "  {:<10} {size} node(s): {succeeded} succeeded, {failed} failed\n",
            crate::progress::short_job_name(&job.job_name).trim_start_matches("nton-"),
        );
    }
    text += &format!("  results    {}\n", results_location(request));
    text += &format!("  record     {}\n", record_copy.unwrap_or(&summary.record).display());
    if let Some(error) = &summary.error {
        text += &format!(
            "  failed     {error} in state {}\n",
            summary.failed_state.as_deref().unwrap_or("?")
        );
    }
    if let Some(cause) = &summary.cause {
        text += &format!("  cause      {cause}\n");
    }
    if !summary.succeeded() {
        // What the failed children said on stderr: the first thing a person wants to see.
        if let Ok(lines) = crate::retry::read_run_record(&summary.record) {
            let report = crate::report::build_report(&lines);
            for failure in report.failures.iter().filter(|f| f.stderr_tail.is_some()).take(5) {
                text += &format!(
                    "  stderr     {} node {}: {}\n",
                    crate::progress::short_job_name(&failure.job_name),
                    failure.node.map_or_else(|| "-".to_string(), |n| n.to_string()),
                    failure.stderr_tail.as_deref().unwrap_or_default()
                );
            }
        }
        text += &format!("  logs       {}\n", request.run_dir.join("logs").display());
    }
    text
}

/// `--output`, checked with the worker's own rules (`nton_core::results`) before anything runs:
/// an S3 URL as given, a directory made absolute.
pub(crate) fn checked_output(cwd: &Path, output: &str) -> Result<String, CommandError> {
    let refuse =
        |problem: String| CommandError::bad_input(format!("--output: {output:?}: {problem}"));
    if output.starts_with("s3://") {
        ResultsTarget::parse(output).map_err(refuse)?;
        return Ok(output.to_string());
    }
    if output.contains("://") && !output.starts_with("file://") {
        return Err(refuse(RESULTS_URL_RULE.to_string()));
    }
    let dir = output.strip_prefix("file://").unwrap_or(output);
    if dir.is_empty() {
        return Err(refuse("the directory is empty".to_string()));
    }
    Ok(absolute(cwd, Path::new(dir)).display().to_string())
}

/// `--s3-bucket BUCKET=DIR`s: bucket names by S3's rules, each given once, directories made
/// absolute.
fn s3_bucket_dirs(pairs: &[String], cwd: &Path) -> Result<BTreeMap<String, PathBuf>, CommandError> {
    let mut dirs = BTreeMap::new();
    for pair in pairs {
        let (bucket, dir) = split_pair("--s3-bucket", pair)?;
        if dir.is_empty() {
            return Err(CommandError::bad_input(format!(
                "--s3-bucket: {pair:?}: the directory is empty"
            )));
        }
        if dirs.insert(bucket.clone(), absolute(cwd, Path::new(&dir))).is_some() {
            return Err(CommandError::bad_input(format!(
                "--s3-bucket: bucket {bucket} is given twice"
            )));
        }
    }
    nton_engine::bucket_dirs::BucketDirs::new(dirs.clone())
        .map_err(|problem| CommandError::bad_input(format!("--s3-bucket: {problem}")))?;
    Ok(dirs)
}

pub(crate) fn split_pair(flag: &str, pair: &str) -> Result<(String, String), CommandError> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(CommandError::bad_input(format!("{flag}: {pair:?} is not KEY=VALUE"))),
    }
}

pub(crate) fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["nton", "run"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Run(args) => args,
            _ => unreachable!("parsed a run"),
        }
    }

    #[test]
    fn defaults_put_everything_under_the_data_dir() {
        let request = plan_run(&args(&[]), Path::new("/work")).unwrap();
        assert_eq!(request.spec.input["ids"], 4000);
        assert_eq!(request.spec.input["idsPerNode"], 40);
        assert!(request.run_dir.starts_with("/work/nton-runs"));
        assert_eq!(request.efs_dir, request.run_dir.join("efs"));
        assert_eq!(request.output, "/work/nton-runs/results");
        assert_eq!(
            request.spec.env_overrides["NTON_DATA_ROOT"],
            request.efs_dir.display().to_string()
        );
        assert_eq!(request.spec.input["workflowId"], request.workflow_id.to_string());
    }

    #[test]
    fn a_bad_output_is_refused_before_anything_runs_naming_the_option() {
        let dir = tempfile::tempdir().unwrap();
        for (output, want) in [
            ("s3://", "the bucket name \"\" has 0 characters; it must have 3 to 63"),
            ("s3:///prefix", "the bucket name \"\" has 0 characters"),
            ("s3://Bad_Bucket/x", "must be lowercase letters"),
            ("s3://bucket/a/../b", "the prefix must not have empty"),
            ("https://example.com/x", RESULTS_URL_RULE),
            ("file://", "the directory is empty"),
        ] {
            let error = plan_run(&args(&["--output", output]), dir.path()).unwrap_err();
            let message = error.to_string();
            assert!(message.starts_with(&format!("--output: {output:?}: ")), "{message}");
            assert!(message.contains(want), "{output}: {message}");
            assert_eq!(
                error.downcast_ref::<CommandError>().map(|e| e.code),
                Some(exit::BAD_INPUT),
                "{output}"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
        let request = plan_run(&args(&["--output", "s3://my-bucket/runs"]), dir.path()).unwrap();
        assert_eq!(request.output, "s3://my-bucket/runs");
        let request = plan_run(&args(&["--output", "file:///srv/out"]), dir.path()).unwrap();
        assert_eq!(request.output, "/srv/out");
    }

    #[test]
    fn a_plan_batch_would_refuse_is_refused_before_anything_runs() {
        let error = plan_run(&args(&["--ids", "10001", "--ids-per-node", "1"]), Path::new("/w"))
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("10001 nodes"), "{message}");
        assert_eq!(error.downcast_ref::<CommandError>().unwrap().code, exit::BAD_INPUT);
        // clap refuses these already (cli.rs tests); plan_run checks again for library callers.
        let mut zero_ids = args(&[]);
        zero_ids.ids = 0;
        assert!(plan_run(&zero_ids, Path::new("/w")).is_err());
        let mut zero_parallelism = args(&[]);
        zero_parallelism.engine.parallelism = Some(0);
        assert!(plan_run(&zero_parallelism, Path::new("/w")).is_err());
    }

    #[test]
    fn s3_buckets_map_to_absolute_directories_and_bad_ones_are_refused() {
        let request = plan_run(
            &args(&["--s3-bucket", "data-in=in", "--s3-bucket", "data-out=/srv/out"]),
            Path::new("/w"),
        )
        .unwrap();
        assert_eq!(
            request.spec.s3_buckets,
            BTreeMap::from([
                ("data-in".to_string(), PathBuf::from("/w/in")),
                ("data-out".to_string(), PathBuf::from("/srv/out")),
            ])
        );
        for (argv, want) in [
            (
                vec!["--s3-bucket", "Bad_Bucket=/x"],
                "--s3-bucket: the bucket name \"Bad_Bucket\" must be lowercase",
            ),
            (vec!["--s3-bucket", "data-in"], "--s3-bucket: \"data-in\" is not KEY=VALUE"),
            (vec!["--s3-bucket", "data-in="], "the directory is empty"),
            (
                vec!["--s3-bucket", "data-in=/a", "--s3-bucket", "data-in=/b"],
                "bucket data-in is given twice",
            ),
        ] {
            let error = plan_run(&args(&argv), Path::new("/w")).unwrap_err();
            assert!(error.to_string().contains(want), "{argv:?}: {error}");
            assert_eq!(error.downcast_ref::<CommandError>().unwrap().code, exit::BAD_INPUT);
        }
    }

    /// A run directory whose record holds only the first execution's start, with `meta`.
    fn interrupted_run(dir: &Path, meta: Value) -> PathBuf {
        let run_dir = dir.join("run");
        let writer = nton_engine::record::RecordWriter::open(&run_dir).unwrap();
        let workflow_id = WorkflowId::new_v4().to_string();
        writer
            .append(&RecordLine::Run(nton_engine::record::RunStart {
                execution_name: "local-1".into(),
                template: "t.yaml".into(),
                state_machine: "Machine".into(),
                input: json!({"ids": 4, "idsPerNode": 2, "workflowId": workflow_id}),
                started_at: 1,
                resumed: false,
                meta,
            }))
            .unwrap();
        run_dir
    }

    #[test]
    fn a_resume_maps_the_buckets_the_first_execution_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let buckets = BTreeMap::from([("data-in".to_string(), PathBuf::from("/srv/in"))]);
        let run_dir = interrupted_run(dir.path(), run_meta("/srv/out", &buckets));
        let resume = run_dir.to_str().unwrap();
        let request = plan_run(&args(&["--resume", resume]), dir.path()).unwrap();
        assert_eq!(request.spec.s3_buckets, buckets);
        assert_eq!(request.output, "/srv/out");
        assert_eq!(recorded_s3_buckets(&request.spec.meta), buckets, "recorded again");
        // The same mapping given again is fine; another one is refused, naming the option.
        let same =
            plan_run(&args(&["--resume", resume, "--s3-bucket", "data-in=/srv/in"]), dir.path());
        assert_eq!(same.unwrap().spec.s3_buckets, buckets);
        let error =
            plan_run(&args(&["--resume", resume, "--s3-bucket", "data-in=/elsewhere"]), dir.path())
                .unwrap_err();
        assert!(error.to_string().starts_with("--s3-bucket: differs"), "{error}");
        assert_eq!(error.downcast_ref::<CommandError>().unwrap().code, exit::BAD_INPUT);
        // A record from before buckets were recorded: none, or what is given now.
        let old = interrupted_run(&dir.path().join("old"), json!({"output": "/srv/out"}));
        let old = old.to_str().unwrap();
        assert!(
            plan_run(&args(&["--resume", old]), dir.path()).unwrap().spec.s3_buckets.is_empty()
        );
        let given =
            plan_run(&args(&["--resume", old, "--s3-bucket", "data-in=/srv/in"]), dir.path());
        assert_eq!(given.unwrap().spec.s3_buckets, buckets);
    }

    #[test]
    fn job_env_and_params_must_be_pairs() {
        let request = plan_run(
            &args(&["--job-env", "NTON_FAULT_FAIL=procure:3", "--param", "PollSeconds=5"]),
            Path::new("/w"),
        )
        .unwrap();
        assert_eq!(request.spec.env_overrides["NTON_FAULT_FAIL"], "procure:3");
        assert_eq!(request.spec.parameters["PollSeconds"], "5");
        let error = plan_run(&args(&["--job-env", "oops"]), Path::new("/w")).unwrap_err();
        assert!(error.to_string().contains("--job-env"), "{error}");
    }

    #[test]
    fn workers_are_built_only_when_cargo_started_us_in_a_known_profile() {
        let dir = tempfile::tempdir().unwrap();
        // Not started by cargo: nothing to do, whatever is missing.
        build_missing_workers(&dir.path().join("debug"), None).unwrap();
        // A custom profile directory: not guessed, left to the engine's error.
        build_missing_workers(dir.path(), Some(std::ffi::OsStr::new("/no/such/cargo"))).unwrap();
        // Everything present: cargo is not run (it does not exist here).
        let debug = dir.path().join("debug");
        std::fs::create_dir_all(&debug).unwrap();
        std::fs::write(debug.join("nton-job"), b"").unwrap();
        build_missing_workers(&debug, Some(std::ffi::OsStr::new("/no/such/cargo"))).unwrap();
        // Missing, in a debug dir, started by cargo: it tries, and a failure is an error.
        let empty = dir.path().join("other").join("debug");
        std::fs::create_dir_all(&empty).unwrap();
        let error = build_missing_workers(&empty, Some(std::ffi::OsStr::new("/no/such/cargo")))
            .unwrap_err();
        assert!(error.to_string().contains("/no/such/cargo"), "{error}");
    }

    #[test]
    fn a_template_here_without_a_watcher_falls_back_to_the_built_in_watch_state() {
        // As the deploy guide's directory holds it: reduced for LocalStack, no Lambda functions.
        let reduced = Template::parse(
            "Resources:\n  Machine:\n    Type: AWS::StepFunctions::StateMachine\n    Properties:\n      \
             Definition:\n        StartAt: Done\n        States:\n          Done:\n            Type: Succeed\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(watch_state_of(Some(&reduced)), "Watch");
        assert_eq!(watch_state_of(None), "Watch");
    }

    #[test]
    fn the_watch_state_is_the_state_invoking_the_watcher_image() {
        let pipeline = Template::parse(BUILT_WITH_TEMPLATE, "pipeline.yaml").unwrap();
        assert_eq!(watch_state_in(&pipeline, "pipeline.yaml").unwrap(), "Watch");

        // Renamed in a fork's template: the default follows it.
        let watch_state =
            |text: &str| watch_state_in(&Template::parse(text, "t.yaml").unwrap(), "t.yaml");
        let with_states = |states: &str| {
            format!(
                "Resources:\n  Watcher:\n    Type: AWS::Lambda::Function\n    Properties:\n      \
                 FunctionName: w\n      Code: {{ImageUri: registry.example/nton-watch:1}}\n  \
                 Machine:\n    Type: AWS::StepFunctions::StateMachine\n    Properties:\n      \
                 Definition:\n        StartAt: Check\n        States:\n{states}"
            )
        };
        let task = |name: &str, next: &str| {
            format!(
                "          {name}:\n            Type: Task\n            Resource: \
                 arn:aws:states:::lambda:invoke\n            Parameters: {{FunctionName: w}}\n            \
                 {next}\n"
            )
        };
        assert_eq!(watch_state(&with_states(&task("Check", "End: true"))).unwrap(), "Check");

        let two = task("Check", "Next: Again") + &task("Again", "End: true");
        let error = watch_state(&with_states(&two)).unwrap_err();
        assert!(error.contains("several states") && error.contains("Check, Again"), "{error}");

        let none = "          Check:\n            Type: Succeed\n";
        let error = watch_state(&with_states(none)).unwrap_err();
        assert_eq!(error, "no state of t.yaml invokes a function whose image is nton-watch");
    }

    #[test]
    fn children_get_aws_settings_but_not_the_whole_environment() {
        let env = child_base_env(
            [
                ("PATH", "/bin"),
                ("AWS_REGION", "eu-west-1"),
                ("SECRET_TOKEN", "x"),
                ("NTON_S3_FORCE_PATH_STYLE", "true"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        assert_eq!(env.len(), 3);
        assert!(!env.contains_key("SECRET_TOKEN"));
    }
}
