//! `nton start` and `nton watch`: start an execution of a deployed pipeline's state machine,
//! and follow one until it ends with per-stage progress read from the watcher's own answers
//! (the latest `Watch` state's output in the execution history).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent};
use nton_core::batch::JobStatus;
use nton_core::stage::{StageMap, StageName};
use nton_core::status::FailedNode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::console::Console;
use super::params::{self, StackKind};
use super::stack::{self, aws_error};
use super::{StartArgs, WatchArgs, poll_interval};
use crate::exit::{self, CommandError};

/// The pipeline stack output that holds the state machine's ARN.
pub const STATE_MACHINE_OUTPUT: &str = "StateMachineArn";

/// Starts one execution with an SDK config made by the caller; prints its ARN.
pub async fn start_with(
    config: &aws_config::SdkConfig,
    args: &StartArgs,
    console: &mut Console,
) -> anyhow::Result<u8> {
    args.check()?;
    let input = start_input(args.ids, args.ids_per_node)?;
    let state_machine = state_machine_arn(
        config,
        args.state_machine_arn.as_deref(),
        args.env.as_deref(),
        &args.prefix,
    )
    .await?;
    let sfn = aws_sdk_sfn::Client::new(config);
    let started = start_execution(&sfn, &state_machine, &input, args.name.clone()).await?;
    let execution = started.execution_arn().to_string();
    if args.json {
        console.result(json!({
            "executionArn": execution,
            "stateMachineArn": state_machine,
            "startDate": rfc3339(started.start_date().secs()),
            "input": input,
        }));
    } else {
        console.result(&execution);
        let env = args.env.as_deref().map(|e| format!("--env {e} ")).unwrap_or_default();
        console.note(format!("follow it with: nton watch {env}--execution {execution}"));
    }
    Ok(exit::SUCCESS)
}

/// StartExecution of `state_machine` with `input` (and an execution name, if given): the one
/// call `nton start` and `nton retry` make, with the error naming the state machine.
pub(crate) async fn start_execution(
    sfn: &aws_sdk_sfn::Client,
    state_machine: &str,
    input: &Value,
    name: Option<String>,
) -> anyhow::Result<aws_sdk_sfn::operation::start_execution::StartExecutionOutput> {
    Ok(sfn
        .start_execution()
        .state_machine_arn(state_machine)
        .input(input.to_string())
        .set_name(name)
        .send()
        .await
        .map_err(|e| aws_error(format!("StartExecution on {state_machine}"), &e))?)
}

/// The execution input: only what was asked for, so the deployed stack's defaults
/// (`IdsPerNode`) apply to the rest. Checked by the same rules the init Lambda applies.
pub fn start_input(ids: Option<u64>, ids_per_node: Option<u64>) -> Result<Value, CommandError> {
    let mut input = serde_json::Map::new();
    if let Some(ids) = ids {
        input.insert("ids".into(), ids.into());
    }
    if let Some(per_node) = ids_per_node {
        input.insert("idsPerNode".into(), per_node.into());
    }
    let input = Value::Object(input);
    // The defaults here are the most lenient ones, so that a field left out is not judged by
    // a default the deployed stack may not share; the init Lambda checks the whole again.
    let lenient = nton_core::plan::PlanDefaults {
        ids: 1,
        ids_per_node: nton_core::plan::MAX_IDS,
        poll_seconds: 30,
    };
    nton_core::plan::PlanInput::from_json(&input, &lenient).map_err(|error| {
        // PlanError names the input field (ids, idsPerNode); the flags are what the user typed.
        let message = error
            .to_string()
            .replacen("idsPerNode", "--ids-per-node", 1)
            .replacen("ids:", "--ids:", 1)
            .replacen("ids/", "--ids/", 1);
        CommandError::bad_input(message)
    })?;
    Ok(input)
}

/// Step Functions names: 1-80 characters; letters, digits, `-` and `_` are the ones that are
/// safe everywhere the name shows up (CloudWatch metrics refuse the rest).
pub(crate) fn check_execution_name(name: &str) -> Result<(), CommandError> {
    let valid = !name.is_empty()
        && name.len() <= 80
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(CommandError::bad_input(format!(
            "--name: {name:?} is not a usable execution name (1-80 letters, digits, '-' or '_')"
        )))
    }
}

/// `arn:<partition>:states:<region>:<account>:stateMachine:<name>`.
pub(crate) fn check_state_machine_arn(arn: &str) -> Result<(), CommandError> {
    let parts: Vec<&str> = arn.split(':').collect();
    let valid = parts.len() == 7
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "states"
        && !parts[3].is_empty()
        && is_account(parts[4])
        && parts[5] == "stateMachine"
        && !parts[6].is_empty();
    if valid {
        Ok(())
    } else {
        Err(CommandError::bad_input(format!(
            "--state-machine-arn: {arn:?} is not a state machine ARN \
             (arn:aws:states:<region>:<12-digit account>:stateMachine:<name>)"
        )))
    }
}

/// Whether an execution ARN has its eight parts:
/// `arn:<partition>:states:<region>:<account>:execution:<machine>:<name>`.
pub(crate) fn is_execution_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 8
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "states"
        && !parts[3].is_empty()
        && is_account(parts[4])
        && parts[5] == "execution"
        && !parts[6].is_empty()
        && !parts[7].is_empty()
}

fn is_account(text: &str) -> bool {
    text.len() == 12 && text.chars().all(|c| c.is_ascii_digit())
}

/// `--execution`: an execution ARN, `latest`, or an execution name.
pub(crate) fn check_execution_ref(execution: &str) -> Result<(), CommandError> {
    if execution.starts_with("arn:") {
        if is_execution_arn(execution) {
            return Ok(());
        }
        return Err(CommandError::bad_input(format!(
            "--execution: {execution:?} is not an execution ARN \
             (arn:aws:states:<region>:<12-digit account>:execution:<state machine>:<name>)"
        )));
    }
    if execution == "latest" || check_execution_name(execution).is_ok() {
        return Ok(());
    }
    Err(CommandError::bad_input(format!(
        "--execution: {execution:?} is neither an execution ARN, \"latest\" nor an execution \
         name (1-80 letters, digits, '-' or '_')"
    )))
}

/// The state machine to act on: the flag, else the pipeline stack's output.
async fn state_machine_arn(
    config: &aws_config::SdkConfig,
    explicit: Option<&str>,
    env: Option<&str>,
    prefix: &str,
) -> Result<String, CommandError> {
    if let Some(arn) = explicit {
        check_state_machine_arn(arn)?;
        return Ok(arn.to_string());
    }
    let Some(env) = env else {
        return Err(CommandError::bad_input(
            "--env: needed to find the deployed state machine (or pass --state-machine-arn)",
        ));
    };
    params::check_name("--env", env)?;
    params::check_name("--prefix", prefix)?;
    let name = StackKind::Pipeline.stack_name(prefix, env);
    let cfn = aws_sdk_cloudformation::Client::new(config);
    let Some(state) = stack::describe(&cfn, &name).await? else {
        return Err(CommandError::bad_input(format!(
            "--env {env}: the stack {name} does not exist in this account and region; \
             deploy it (nton deploy --env {env}) or pass --state-machine-arn"
        )));
    };
    if let Some(arn) = state.outputs.get(STATE_MACHINE_OUTPUT) {
        return Ok(arn.clone());
    }
    if let Some(arn) = state.outputs.values().find(|v| v.contains(":stateMachine:")) {
        return Ok(arn.clone());
    }
    // A template without the output still owns the state machine; its physical id is the ARN.
    let machines: Vec<String> = stack::resources(&cfn, &name)
        .await?
        .into_iter()
        .filter(|(_, _, kind)| kind == "AWS::StepFunctions::StateMachine")
        .map(|(_, physical, _)| physical)
        .collect();
    match machines.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(CommandError::bad_input(format!(
            "{name}: no {STATE_MACHINE_OUTPUT} output and no state machine resource; \
             pass --state-machine-arn"
        ))),
        _ => Err(CommandError::bad_input(format!(
            "{name}: {} state machines and no {STATE_MACHINE_OUTPUT} output; pass --state-machine-arn",
            machines.len()
        ))),
    }
}

/// Follows one execution until it ends, with an SDK config made by the caller.
/// Exit code 0 when it SUCCEEDED, 1 when it FAILED, TIMED_OUT or was ABORTED.
pub async fn watch_with(
    config: &aws_config::SdkConfig,
    args: &WatchArgs,
    console: &mut Console,
) -> anyhow::Result<u8> {
    Ok(watch_until_end(config, args, console).await?.exit_code())
}

/// `nton watch` from the command line: the SDK config from the environment, stdout/stderr,
/// and the markdown report when `summary` is given.
pub async fn watch_cli(args: &WatchArgs, summary: Option<&Path>) -> anyhow::Result<u8> {
    args.check()?;
    let config = super::load_config(&args.aws).await?;
    let mut console = Console::stdio();
    match summary {
        Some(path) => watch_with_summary(&config, args, &mut console, path).await,
        None => watch_with(&config, args, &mut console).await,
    }
}

/// [`watch_with`], then appends a markdown report of the ended execution to `summary` (a
/// GitHub job summary, `$GITHUB_STEP_SUMMARY`): status, per-stage progress, failed nodes and
/// where the results are. The file is opened before any AWS call, so a path that cannot be
/// written is bad input (exit 2) and nothing is watched.
pub async fn watch_with_summary(
    config: &aws_config::SdkConfig,
    args: &WatchArgs,
    console: &mut Console,
    summary: &Path,
) -> anyhow::Result<u8> {
    // Bad options are refused before the file is created.
    args.check()?;
    let mut file =
        std::fs::OpenOptions::new().create(true).append(true).open(summary).map_err(|e| {
            CommandError::bad_input(format!(
                "--summary-markdown: cannot write {}: {e}",
                summary.display()
            ))
        })?;
    let outcome = watch_until_end(config, args, console).await?;
    let results = results_location(config, args, outcome.workflow_id.as_deref()).await;
    file.write_all(outcome.markdown(&results).as_bytes())
        .map_err(|e| CommandError::environment(format!("{}: {e}", summary.display())))?;
    Ok(outcome.exit_code())
}

async fn watch_until_end(
    config: &aws_config::SdkConfig,
    args: &WatchArgs,
    console: &mut Console,
) -> anyhow::Result<WatchOutcome> {
    args.check()?;
    let poll = poll_interval(args.poll_seconds)?;
    let sfn = aws_sdk_sfn::Client::new(config);
    let execution = resolve_execution(config, &sfn, args).await?;
    if !args.json {
        console.note(format!("watching {execution}"));
    }
    let mut last_progress: Option<Vec<String>> = None;
    // A failed execution has no output: the workflow id comes from a state's output then.
    let mut workflow: Option<String> = None;
    loop {
        let described = sfn
            .describe_execution()
            .execution_arn(&execution)
            .send()
            .await
            .map_err(|e| aws_error(format!("DescribeExecution {execution}"), &e))?;
        let items = history_items(&sfn, &execution).await?;
        let status = latest_watch_status(&items, &args.watch_state)
            .map(|value| WatchedStatus::read(&value))
            .transpose()
            .map_err(|problem| CommandError::environment(format!("{execution}: {problem}")))?;
        workflow = workflow.or_else(|| workflow_in_history(&items));
        let started = described.start_date().secs();
        let ended = described.stop_date().map(|d| d.secs());
        let elapsed = ended.unwrap_or_else(now_secs).saturating_sub(started).max(0);
        if let Some(status) = &status {
            let lines = progress_lines(status);
            if last_progress.as_ref() != Some(&lines) {
                if args.json {
                    console.result(json!({
                        "event": "progress",
                        "elapsedSeconds": elapsed,
                        "progress": status.progress,
                        "stuck": status.stuck,
                    }));
                } else {
                    for line in &lines {
                        console.note(format!("{:>8}  {line}", duration_text(elapsed)));
                    }
                }
                last_progress = Some(lines);
            }
        }
        let state = described.status();
        if *state == ExecutionStatus::Running || *state == ExecutionStatus::PendingRedrive {
            tokio::time::sleep(poll).await;
            continue;
        }
        let succeeded = *state == ExecutionStatus::Succeeded;
        let output: Option<Value> = described.output().and_then(|o| serde_json::from_str(o).ok());
        let failed_nodes = status.as_ref().map(|s| &s.failed_nodes);
        if args.json {
            console.result(json!({
                "event": "finished",
                "executionArn": execution,
                "status": state.as_str(),
                "elapsedSeconds": elapsed,
                "error": described.error(),
                "cause": described.cause(),
                "output": output,
                "failedNodes": failed_nodes,
                "failedNodeCount": status.as_ref().map(|s| s.failed_node_count.unwrap_or(s.failed_nodes.len())),
            }));
        } else {
            console.result(format!(
                "{} after {}: {execution}",
                state.as_str(),
                duration_text(elapsed)
            ));
            if let Some(workflow) =
                output.as_ref().and_then(|o| o.pointer("/plan/workflowId")).and_then(Value::as_str)
            {
                console.result(format!("  workflow: {workflow}"));
            }
            if !succeeded {
                console.result(format!("  error: {}", described.error().unwrap_or("(none)")));
                console.result(format!("  cause: {}", described.cause().unwrap_or("(none)")));
                for line in failed_node_lines(status.as_ref()) {
                    console.result(format!("  {line}"));
                }
            }
        }
        return Ok(WatchOutcome {
            execution,
            status: state.as_str().to_string(),
            elapsed_seconds: elapsed,
            error: described.error().map(str::to_string),
            cause: described.cause().map(str::to_string),
            workflow_id: output
                .as_ref()
                .and_then(|o| o.pointer("/plan/workflowId"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .or(workflow),
            progress: last_progress.unwrap_or_default(),
            failed_nodes: failed_node_lines(status.as_ref()),
        });
    }
}

/// The execution ARN from `--execution`: an ARN as given, `latest` (the newest execution of
/// the state machine), or an execution name of the state machine.
pub(crate) async fn resolve_execution(
    config: &aws_config::SdkConfig,
    sfn: &aws_sdk_sfn::Client,
    args: &WatchArgs,
) -> Result<String, CommandError> {
    check_execution_ref(&args.execution)?;
    if args.execution.starts_with("arn:") {
        return Ok(args.execution.clone());
    }
    let machine = state_machine_arn(
        config,
        args.state_machine_arn.as_deref(),
        args.env.as_deref(),
        &args.prefix,
    )
    .await?;
    if args.execution != "latest" {
        check_execution_name(&args.execution).map_err(|_| {
            CommandError::bad_input(format!(
                "--execution: {:?} is neither an execution ARN, \"latest\" nor an execution name",
                args.execution
            ))
        })?;
        return Ok(format!(
            "{}:{}",
            machine.replacen(":stateMachine:", ":execution:", 1),
            args.execution
        ));
    }
    let listed = sfn
        .list_executions()
        .state_machine_arn(&machine)
        .max_results(100)
        .send()
        .await
        .map_err(|e| aws_error(format!("ListExecutions {machine}"), &e))?;
    // Newest first on AWS; chosen by start date so that the order does not matter.
    listed
        .executions()
        .iter()
        .max_by_key(|e| (e.start_date().secs(), e.start_date().subsec_nanos()))
        .map(|e| e.execution_arn().to_string())
        .ok_or_else(|| {
            CommandError::bad_input(format!(
                "--execution latest: {machine} has no executions yet; start one with nton start"
            ))
        })
}

/// One history event, reduced to what the progress needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryItem {
    pub id: i64,
    pub previous: i64,
    /// The event type, e.g. `TaskStateExited`, `TaskSucceeded`.
    pub kind: String,
    /// The state's name, for state-exited events.
    pub state: Option<String>,
    pub output: Option<String>,
}

impl From<&HistoryEvent> for HistoryItem {
    fn from(event: &HistoryEvent) -> Self {
        let exited = event.state_exited_event_details();
        let output = exited
            .and_then(|d| d.output())
            .or_else(|| event.task_succeeded_event_details().and_then(|d| d.output()))
            .or_else(|| event.lambda_function_succeeded_event_details().and_then(|d| d.output()));
        HistoryItem {
            id: event.id(),
            previous: event.previous_event_id(),
            kind: event.r#type().as_str().to_string(),
            state: exited.map(|d| d.name().to_string()),
            output: output.map(str::to_string),
        }
    }
}

/// Pages read at most per poll. Newest first, the latest Watch is in the first page; an
/// endpoint that ignores `reverseOrder` (moto) is read to the end within this bound.
const MAX_HISTORY_PAGES: usize = 50;

pub(crate) async fn history_items(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
) -> Result<Vec<HistoryItem>, CommandError> {
    let mut items: Vec<HistoryItem> = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_HISTORY_PAGES {
        let page = sfn
            .get_execution_history()
            .execution_arn(execution)
            .reverse_order(true)
            .max_results(100)
            .include_execution_data(true)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_error(format!("GetExecutionHistory {execution}"), &e))?;
        items.extend(page.events().iter().map(HistoryItem::from));
        let descending = items.len() < 2 || items[0].id > items[items.len() - 1].id;
        let found = items.iter().any(|i| i.output.is_some());
        if descending && found {
            break;
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(items)
}

/// The watcher's latest status in an execution's history: the output of the Lambda task
/// (its whole answer, with failed nodes) when it is the one behind the latest exit of the
/// watch state, else that state's output's `status` (what the state machine kept of it).
pub fn latest_watch_status(items: &[HistoryItem], watch_state: &str) -> Option<Value> {
    let parse = |item: &HistoryItem| -> Option<Value> {
        serde_json::from_str(item.output.as_deref()?).ok()
    };
    let is_status = |value: &Value| value.get("done").is_some_and(Value::is_boolean);
    let exit = items
        .iter()
        .filter(|i| i.kind.ends_with("StateExited") && i.state.as_deref() == Some(watch_state))
        .filter_map(|i| {
            let output = parse(i)?;
            let status = match output.get("status") {
                Some(status) if is_status(status) => status.clone(),
                _ if is_status(&output) => output,
                _ => return None,
            };
            Some((i, status))
        })
        .max_by_key(|(i, _)| i.id);
    let task = items
        .iter()
        .filter(|i| i.kind == "TaskSucceeded" || i.kind == "LambdaFunctionSucceeded")
        .filter_map(|i| {
            let payload = parse(i)?.get("Payload")?.clone();
            is_status(&payload).then_some((i, payload))
        })
        .max_by_key(|(i, _)| i.id);
    match (exit, task) {
        (Some((e, _)), Some((t, payload))) if t.id > e.id || e.previous == t.id => Some(payload),
        (Some((_, status)), _) => Some(status),
        (None, Some((_, payload))) => Some(payload),
        (None, None) => None,
    }
}

/// The run's workflow id from the history: every state after init carries the plan
/// (`ResultPath: $.plan`) in its output.
pub fn workflow_in_history(items: &[HistoryItem]) -> Option<String> {
    items.iter().find_map(|item| {
        let output: Value = serde_json::from_str(item.output.as_deref()?).ok()?;
        Some(output.pointer("/plan/workflowId")?.as_str()?.to_string())
    })
}

/// What `nton watch` reads of a watcher answer: the whole `RunStatus` the Lambda returned, or
/// the part the state machine kept (`ResultSelector`: done, failed, error, cause, progress).
/// Fields the kept part lacks default to empty.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedStatus {
    pub done: bool,
    #[serde(default)]
    pub failed: bool,
    #[serde(default, deserialize_with = "progress_in_run_order")]
    pub progress: StageMap<StageShown>,
    #[serde(default)]
    pub failed_nodes: Vec<FailedNode>,
    #[serde(default)]
    pub failed_node_count: Option<usize>,
    #[serde(default)]
    pub stuck: Vec<StuckShown>,
}

/// One stage of `progress` as shown: the watcher's `StageProgress`, of which only `size` and
/// `counts` are printed (and `position`, its place in the run, orders the lines).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageShown {
    #[serde(default)]
    pub position: usize,
    pub job_id: Option<String>,
    pub status: Option<JobStatus>,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub counts: BTreeMap<JobStatus, u64>,
}

/// A stuck stage as shown: its message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StuckShown {
    pub message: String,
}

/// The stages by `position`; entries without one keep the order the object gives.
fn progress_in_run_order<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<StageMap<StageShown>, D::Error> {
    let mut entries: Vec<(StageName, StageShown)> =
        StageMap::<StageShown>::deserialize(deserializer)?.into_iter().collect();
    entries.sort_by_key(|(_, stage)| stage.position);
    Ok(entries.into_iter().collect())
}

impl WatchedStatus {
    /// Reads a watcher answer, naming the field that does not fit.
    pub fn read(value: &Value) -> Result<WatchedStatus, String> {
        serde_path_to_error::deserialize(value).map_err(|error| {
            format!("the watcher's status, at {}: {}", error.path(), error.inner())
        })
    }
}

/// Statuses in the order a line shows them: the ended ones (SUCCEEDED, FAILED) first, then the
/// rest from the most advanced back (RUNNING … SUBMITTED): `JobStatus::ALL`'s lifecycle order.
fn shown_order() -> impl Iterator<Item = JobStatus> {
    let ended = JobStatus::ALL.into_iter().filter(|s| s.is_terminal());
    ended.chain(JobStatus::ALL.into_iter().rev().filter(|s| !s.is_terminal()))
}

/// One line per stage, in run order (`procure   12/40 ended  SUCCEEDED 12  RUNNING 3  RUNNABLE
/// 25`), then one per stuck stage.
pub fn progress_lines(status: &WatchedStatus) -> Vec<String> {
    let mut lines = Vec::new();
    for (stage, entry) in status.progress.iter() {
        let count = |s: JobStatus| entry.counts.get(&s).copied().unwrap_or(0);
        let ended = count(JobStatus::Succeeded) + count(JobStatus::Failed);
        let mut line = format!("{stage:<8} {ended:>5}/{:<5} ended", entry.size);
        for status in shown_order().filter(|s| count(*s) > 0) {
            line.push_str(&format!("  {status} {}", count(status)));
        }
        lines.push(line);
    }
    for stuck in &status.stuck {
        lines.push(format!("stuck?   {}", stuck.message));
    }
    lines
}

/// Most failed nodes listed at the end of a failed execution; the rest are counted.
const MAX_FAILED_LINES: usize = 20;

fn failed_node_lines(status: Option<&WatchedStatus>) -> Vec<String> {
    let Some(status) = status else {
        return Vec::new();
    };
    let mut lines: Vec<String> = status
        .failed_nodes
        .iter()
        .take(MAX_FAILED_LINES)
        .map(|node| {
            let mut line = format!("failed: {} node {}: {}", node.stage, node.node, node.reason);
            if let Some(code) = node.exit_code {
                line.push_str(&format!(" (exit {code})"));
            }
            line
        })
        .collect();
    let total = status.failed_node_count.unwrap_or(status.failed_nodes.len());
    if total > lines.len() {
        lines.push(format!("... {} failed nodes in all", total));
    }
    lines
}

/// What `nton watch` knew when the execution ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchOutcome {
    pub execution: String,
    /// The execution status, e.g. `SUCCEEDED`, `FAILED`.
    pub status: String,
    pub elapsed_seconds: i64,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// The run's workflow id, from the execution's output (`plan.workflowId`).
    pub workflow_id: Option<String>,
    /// The last per-stage progress lines (see [`progress_lines`]).
    pub progress: Vec<String>,
    /// One line per failed node, at most 20, then a count of the rest.
    pub failed_nodes: Vec<String>,
}

impl WatchOutcome {
    pub fn exit_code(&self) -> u8 {
        if self.status == ExecutionStatus::Succeeded.as_str() {
            exit::SUCCESS
        } else {
            exit::RUN_FAILED
        }
    }

    /// A markdown report (GitHub-flavoured): a heading with the status, the execution, the
    /// results location, the progress and the failed nodes. Values from AWS go in code spans
    /// or blocks, so nothing in an error message is read as markdown.
    pub fn markdown(&self, results: &str) -> String {
        let mut out = format!(
            "### nton watch: {} after {}\n\n",
            self.status,
            duration_text(self.elapsed_seconds)
        );
        out.push_str(&format!("- execution: {}\n", code_span(&self.execution)));
        if let Some(workflow) = &self.workflow_id {
            out.push_str(&format!("- workflow: {}\n", code_span(workflow)));
        }
        out.push_str(&format!("- results: {results}\n"));
        if self.exit_code() != exit::SUCCESS {
            for (name, value) in [("error", &self.error), ("cause", &self.cause)] {
                let value = value.as_deref().unwrap_or("(none)");
                out.push_str(&format!("- {name}: {}\n", code_span(value)));
            }
        }
        out.push_str("\n#### Progress\n\n");
        out.push_str(&code_block(&self.progress, "(the watcher reported no progress)"));
        if !self.failed_nodes.is_empty() {
            out.push_str("\n#### Failed nodes\n\n");
            out.push_str(&code_block(&self.failed_nodes, ""));
        }
        out.push('\n');
        out
    }
}

/// `s3://<bucket>/<workflow>/` when the pipeline stack of `--env` names its results bucket
/// (output `ResultsBucketName`), else what is known, in words.
async fn results_location(
    config: &aws_config::SdkConfig,
    args: &WatchArgs,
    workflow: Option<&str>,
) -> String {
    let Some(workflow) = workflow else {
        return "none (the execution's output names no workflow)".to_string();
    };
    let Some(env) = args.env.as_deref() else {
        return format!("workflow {} (pass --env to name the bucket)", code_span(workflow));
    };
    let name = StackKind::Pipeline.stack_name(&args.prefix, env);
    let cfn = aws_sdk_cloudformation::Client::new(config);
    match stack::describe(&cfn, &name).await {
        Ok(Some(state)) => match state.outputs.get(RESULTS_BUCKET_OUTPUT) {
            Some(bucket) => code_span(&format!("s3://{bucket}/{workflow}/")),
            None => format!(
                "workflow {} ({name} has no {RESULTS_BUCKET_OUTPUT} output)",
                code_span(workflow)
            ),
        },
        Ok(None) => format!("workflow {} (no stack {name})", code_span(workflow)),
        Err(error) => format!("workflow {} ({name}: {})", code_span(workflow), error.message),
    }
}

/// The pipeline stack output that names the results bucket.
pub const RESULTS_BUCKET_OUTPUT: &str = "ResultsBucketName";

/// Text in a markdown code span: backticks inside are replaced (a span cannot hold its own
/// delimiter without a longer fence), and newlines become spaces.
fn code_span(text: &str) -> String {
    format!("`{}`", text.replace('`', "'").replace(['\n', '\r'], " "))
}

/// Lines in a fenced block, or `empty` in words when there are none. A line that would close
/// the fence is indented.
fn code_block(lines: &[String], empty: &str) -> String {
    if lines.is_empty() {
        return format!("{empty}\n");
    }
    let mut out = String::from("```\n");
    for line in lines {
        if line.trim_start().starts_with("```") {
            out.push(' ');
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("```\n");
    out
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `45s`, `3m12s`, `2h05m`.
pub fn duration_text(seconds: i64) -> String {
    let d = Duration::from_secs(seconds.max(0) as u64).as_secs();
    match d {
        0..60 => format!("{d}s"),
        60..3600 => format!("{}m{:02}s", d / 60, d % 60),
        _ => format!("{}h{:02}m", d / 3600, (d % 3600) / 60),
    }
}

fn rfc3339(secs: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: i64, previous: i64, kind: &str, state: Option<&str>, output: Value) -> HistoryItem {
        HistoryItem {
            id,
            previous,
            kind: kind.into(),
            state: state.map(str::to_string),
            output: Some(output.to_string()),
        }
    }

    fn status(succeeded: u64) -> Value {
        json!({"done": false, "failed": false, "error": null, "cause": null,
               "progress": {"procure": {"size": 4, "counts": {"SUCCEEDED": succeeded}}}})
    }

    #[test]
    fn the_latest_watch_exit_wins() {
        let items = vec![
            item(3, 2, "TaskStateExited", Some("Watch"), json!({"status": status(1)})),
            item(5, 4, "WaitStateExited", Some("WaitForJobs"), json!({"status": status(1)})),
            item(8, 7, "TaskStateExited", Some("Watch"), json!({"status": status(3)})),
            item(9, 8, "TaskStateExited", Some("Other"), json!({"status": status(4)})),
        ];
        let latest = latest_watch_status(&items, "Watch").unwrap();
        assert_eq!(latest.pointer("/progress/procure/counts/SUCCEEDED"), Some(&json!(3)));
        assert_eq!(latest_watch_status(&items, "Missing"), None);
    }

    #[test]
    fn the_lambda_answer_behind_the_exit_gives_the_failed_nodes() {
        let mut full = status(3);
        full["failedNodes"] =
            json!([{"node": 2, "stage": "procure", "reason": "boom", "exitCode": 1}]);
        let items = vec![
            item(7, 6, "TaskSucceeded", None, json!({"Payload": full, "StatusCode": 200})),
            item(8, 7, "TaskStateExited", Some("Watch"), json!({"status": status(3)})),
            // Init's answer is a Lambda answer too, but not a status.
            item(2, 1, "TaskSucceeded", None, json!({"Payload": {"workflowId": "w", "nodes": 4}})),
        ];
        let latest = latest_watch_status(&items, "Watch").unwrap();
        assert_eq!(latest["failedNodes"][0]["reason"], "boom");
        let lines = failed_node_lines(Some(&WatchedStatus::read(&latest).unwrap()));
        assert_eq!(lines, vec!["failed: procure node 2: boom (exit 1)"]);
        // A stale Lambda answer (an earlier round) does not replace a newer exit.
        let items = vec![
            item(7, 6, "TaskSucceeded", None, json!({"Payload": full})),
            item(8, 7, "TaskStateExited", Some("Watch"), json!({"status": status(3)})),
            item(14, 13, "TaskStateExited", Some("Watch"), json!({"status": status(4)})),
        ];
        let latest = latest_watch_status(&items, "Watch").unwrap();
        assert_eq!(latest.pointer("/progress/procure/counts/SUCCEEDED"), Some(&json!(4)));
    }

    #[test]
    fn the_workflow_id_comes_from_any_state_output_with_the_plan() {
        let items = vec![
            item(2, 1, "TaskSucceeded", None, json!({"Payload": {"workflowId": "x"}})),
            item(
                3,
                2,
                "TaskStateExited",
                Some("Init"),
                json!({"plan": {"workflowId": "wf-7", "nodes": 4}}),
            ),
        ];
        assert_eq!(workflow_in_history(&items).as_deref(), Some("wf-7"));
        assert_eq!(workflow_in_history(&items[..1]), None);
    }

    #[test]
    fn the_markdown_report_names_what_failed_and_keeps_aws_text_out_of_markdown() {
        let outcome = WatchOutcome {
            execution: "arn:aws:states:r:1:execution:m:e".into(),
            status: "FAILED".into(),
            elapsed_seconds: 192,
            error: Some("NodesFailed".into()),
            cause: Some("line one\nline `two`".into()),
            workflow_id: Some("wf-7".into()),
            progress: vec!["procure      3/4     ended  SUCCEEDED 3".into()],
            failed_nodes: vec!["```".into()],
        };
        assert_eq!(outcome.exit_code(), exit::RUN_FAILED);
        assert_eq!(
            outcome.markdown("`s3://b/wf-7/`"),
            "### nton watch: FAILED after 3m12s\n\n\
             - execution: `arn:aws:states:r:1:execution:m:e`\n\
             - workflow: `wf-7`\n\
             - results: `s3://b/wf-7/`\n\
             - error: `NodesFailed`\n\
             - cause: `line one line 'two'`\n\
             \n#### Progress\n\n```\nprocure      3/4     ended  SUCCEEDED 3\n```\n\
             \n#### Failed nodes\n\n```\n ```\n```\n\n"
        );
        let succeeded = WatchOutcome {
            status: "SUCCEEDED".into(),
            progress: vec![],
            failed_nodes: vec![],
            ..outcome
        };
        assert_eq!(succeeded.exit_code(), exit::SUCCESS);
        let text = succeeded.markdown("none");
        assert!(!text.contains("error") && !text.contains("Failed nodes"), "{text}");
        assert!(text.contains("(the watcher reported no progress)\n"), "{text}");
    }

    #[test]
    fn progress_lines_follow_the_pipeline_and_batch_orders() {
        // Out of order as an object may come back (serde_json's Value sorts keys): the
        // watcher's `position` gives the run order, a fourth stage included.
        let status = json!({"done": false, "progress": {
            "check": {"position": 2, "size": 40, "counts": {"PENDING": 40}},
            "egress": {"position": 3, "size": 40, "counts": {"PENDING": 40}},
            "procure": {"position": 0, "size": 40, "counts": {"RUNNABLE": 25, "SUCCEEDED": 12, "RUNNING": 3, "FAILED": 0}},
            "process": {"position": 1, "size": 40, "counts": {"SUCCEEDED": 10, "FAILED": 2, "PENDING": 28}},
        }, "stuck": [{"stage": "procure", "message": "procure: 25 children RUNNABLE for 900 s"}]});
        assert_eq!(
            progress_lines(&WatchedStatus::read(&status).unwrap()),
            vec![
                "procure     12/40    ended  SUCCEEDED 12  RUNNING 3  RUNNABLE 25",
                "process     12/40    ended  SUCCEEDED 10  FAILED 2  PENDING 28",
                "check        0/40    ended  PENDING 40",
                "egress       0/40    ended  PENDING 40",
                "stuck?   procure: 25 children RUNNABLE for 900 s",
            ]
        );
        // A status that does not fit is named by its field.
        let bad = json!({"done": true, "progress": {"procure": {"counts": {"DONE": 1}}}});
        let error = WatchedStatus::read(&bad).unwrap_err();
        assert!(error.starts_with("the watcher's status, at progress.procure.counts"), "{error}");
    }

    #[test]
    fn start_input_holds_only_what_was_asked_and_is_checked() {
        assert_eq!(start_input(None, None).unwrap(), json!({}));
        assert_eq!(
            start_input(Some(4000), Some(40)).unwrap(),
            json!({"ids": 4000, "idsPerNode": 40})
        );
        // A large run with the stack's own group size is not judged by a local default.
        assert_eq!(start_input(Some(1_000_000), None).unwrap(), json!({"ids": 1_000_000}));
        let error = start_input(Some(0), None).unwrap_err();
        assert!(error.message.starts_with("--ids: 0 is out of range"), "{}", error.message);
        let error = start_input(Some(100_000), Some(1)).unwrap_err();
        assert!(error.message.contains("at most 10000 nodes"), "{}", error.message);
        let error = start_input(None, Some(0)).unwrap_err();
        assert!(error.message.starts_with("--ids-per-node: 0"), "{}", error.message);
    }

    #[test]
    fn execution_names_and_durations() {
        check_execution_name("nightly-2026_01").unwrap();
        for bad in ["", "a b", "x/y", &"n".repeat(81)] {
            let error = check_execution_name(bad).unwrap_err();
            assert!(error.message.starts_with("--name: "), "{}", error.message);
        }
        assert_eq!(duration_text(45), "45s");
        assert_eq!(duration_text(192), "3m12s");
        assert_eq!(duration_text(7500), "2h05m");
    }
}
