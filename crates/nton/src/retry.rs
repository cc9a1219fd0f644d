//! `nton retry`: re-run only the failed nodes of a finished run, through the same state
//! machine. The execution's input is the run's own plan (`workflowId`, `ids`, `idsPerNode`)
//! plus `retryNodes`, the failed nodes; init checks the run's prep and maps each array index to
//! its original node, so the workers use the nodes' own files and the results keep their keys.
//!
//! Locally the retry runs in the run's directory (its `efs/` still holds the prep and the
//! finished nodes' work after a failure) and appends to its record. A retry execution's child
//! lines carry array indices, as Batch numbers them; [`read_run_record`] gives them their
//! original node numbers, for the report, the timeline, `nton watch` and a later retry.
//! On AWS the failed nodes come from the execution's history (see `aws::retry`).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nton_core::batch::JobStatus;
use nton_core::plan::{PlanDefaults, PlanInput, RetryNodes, WorkflowId};
use nton_engine::local::LocalRunSpec;
use nton_engine::record::{RECORD_FILE, RecordLine, RunOutcome, read_record};
use serde_json::{Value, json};

use crate::cli::RetryArgs;
use crate::exit::CommandError;
use crate::run::{self, RunRequest};

/// What `nton retry` acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A local run directory.
    Local(PathBuf),
    /// An execution on AWS: its ARN, or `None` for the state machine's newest.
    Execution(Option<String>),
}

/// Decides what the arguments name, before anything is read.
pub fn target(args: &RetryArgs) -> anyhow::Result<Target> {
    let aws = args.env.is_some() || args.state_machine_arn.is_some();
    match &args.target {
        Some(text) if text.starts_with("arn:") => Ok(Target::Execution(Some(text.clone()))),
        Some(_) if aws => Err(CommandError::bad_input(
            "--env/--state-machine-arn: they pick an execution on AWS, but RUN_DIR names a local \
             run (give an execution ARN, or --latest)",
        )
        .into()),
        Some(text) if text.is_empty() => Err(CommandError::bad_input(
            "RUN_DIR: empty (must be a local run directory or an execution ARN)",
        )
        .into()),
        Some(text) => Ok(Target::Local(PathBuf::from(text))),
        None if args.latest && aws => Ok(Target::Execution(None)),
        None if args.latest => Ok(Target::Local(crate::report::latest_run(&args.data_dir)?)),
        None => Err(CommandError::bad_input(
            "nton retry: name the failed run: RUN_DIR, an execution ARN, or --latest (with --env \
             ENV for the newest execution on AWS)",
        )
        .into()),
    }
}

/// `nton retry`.
pub async fn retry(args: RetryArgs) -> anyhow::Result<u8> {
    match target(&args)? {
        Target::Local(dir) => {
            let cwd = std::env::current_dir().context("reading the current directory")?;
            let request = plan_local_retry(&args, &run::absolute(&cwd, &dir), &cwd)?;
            if !args.json {
                let nodes: Vec<u32> = request.spec.input["retryNodes"]
                    .as_array()
                    .map(|list| list.iter().filter_map(|n| n.as_u64()).map(|n| n as u32).collect())
                    .unwrap_or_default();
                eprintln!(
                    "nton retry: re-running {} node(s) of {}: {}",
                    nodes.len(),
                    request.workflow_id,
                    node_list(&nodes)
                );
            }
            run::execute(request, args.engine.bin_dir.is_none()).await
        }
        Target::Execution(execution) => crate::aws::retry::retry(&args, execution.as_deref()).await,
    }
}

/// "3, 7, 12" (the first 20, then how many more).
pub fn node_list(nodes: &[u32]) -> String {
    const SHOWN: usize = 20;
    let mut text = nodes.iter().take(SHOWN).map(u32::to_string).collect::<Vec<_>>().join(", ");
    if nodes.len() > SHOWN {
        text.push_str(&format!(" and {} more", nodes.len() - SHOWN));
    }
    text
}

/// Reads a run record with every retry execution's children under their original nodes.
pub fn read_run_record(path: &Path) -> io::Result<Vec<RecordLine>> {
    let mut lines = read_record(path)?;
    to_original_nodes(&mut lines);
    Ok(lines)
}

/// Renumbers the child lines of retry executions (those whose run line's input has
/// `retryNodes`): array index `i` becomes `retryNodes[i]`. A one-node retry runs plain jobs
/// (no index): they become the retried node, unless the run itself has one node, whose
/// children are plain jobs too.
pub fn to_original_nodes(lines: &mut [RecordLine]) {
    let mut run_has_one_node = false;
    let mut map: Option<Vec<u32>> = None;
    let mut first = true;
    for line in lines.iter_mut() {
        match line {
            RecordLine::Run(start) => {
                if first {
                    let ids = start.input["ids"].as_u64().unwrap_or(0);
                    let per_node = start.input["idsPerNode"].as_u64().unwrap_or(1).max(1);
                    run_has_one_node = ids.div_ceil(per_node) <= 1;
                    first = false;
                }
                map = start.input["retryNodes"].as_array().map(|nodes| {
                    nodes
                        .iter()
                        .filter_map(|n| n.as_u64().and_then(|n| u32::try_from(n).ok()))
                        .collect()
                });
            }
            RecordLine::Child(child) => {
                let Some(map) = &map else { continue };
                child.node = match child.node {
                    Some(index) => map.get(index as usize).copied().or(Some(index)),
                    None if run_has_one_node => None,
                    None => map.first().copied(),
                };
            }
            RecordLine::State(_) | RecordLine::End(_) => {}
        }
    }
}

/// The nodes whose latest word in the record, for some stage, is a failure (lines already
/// under their original nodes). A plain job's child counts as node 0.
pub fn failed_nodes(lines: &[RecordLine]) -> BTreeSet<u32> {
    let mut last: BTreeMap<(String, u32), bool> = BTreeMap::new();
    for line in lines {
        if let RecordLine::Child(child) = line
            && child.is_final
        {
            let stage = crate::progress::short_job_name(&child.job_name).to_string();
            last.insert((stage, child.node.unwrap_or(0)), child.status == JobStatus::Succeeded);
        }
    }
    last.into_iter().filter(|(_, succeeded)| !succeeded).map(|((_, node), _)| node).collect()
}

/// How a record's last execution ended.
fn last_end(lines: &[RecordLine]) -> Option<&nton_engine::record::RunEnd> {
    let last_run = lines.iter().rposition(|line| matches!(line, RecordLine::Run(_)))?;
    lines[last_run..].iter().rev().find_map(|line| match line {
        RecordLine::End(end) => Some(end),
        _ => None,
    })
}

/// Checks a local retry and derives its execution: everything is read and checked before
/// anything is written.
pub fn plan_local_retry(
    args: &RetryArgs,
    run_dir: &Path,
    cwd: &Path,
) -> anyhow::Result<RunRequest> {
    let shown = run_dir.display();
    let record_path = run_dir.join(RECORD_FILE);
    let lines = read_run_record(&record_path).map_err(|error| {
        CommandError::bad_input(format!(
            "RUN_DIR: cannot read {}: {error} (must be a run directory nton run made)",
            record_path.display()
        ))
    })?;
    let first = lines
        .iter()
        .find_map(|line| match line {
            RecordLine::Run(start) => Some(start),
            _ => None,
        })
        .ok_or_else(|| {
            CommandError::bad_input(format!(
                "RUN_DIR: {} has no run start line",
                record_path.display()
            ))
        })?;
    match last_end(&lines).map(|end| end.status) {
        Some(RunOutcome::Failed) => {}
        Some(RunOutcome::Succeeded) => {
            return Err(CommandError::bad_input(format!(
                "RUN_DIR: the run in {shown} succeeded; there is nothing to retry"
            ))
            .into());
        }
        Some(RunOutcome::Interrupted) => {
            return Err(CommandError::bad_input(format!(
                "RUN_DIR: the run in {shown} was interrupted, not failed; resume it with: nton \
                 run --resume {shown}"
            ))
            .into());
        }
        Some(other) => {
            return Err(CommandError::bad_input(format!(
                "RUN_DIR: the run in {shown} ended {other}, not FAILED; nothing to retry"
            ))
            .into());
        }
        None => {
            return Err(CommandError::bad_input(format!(
                "RUN_DIR: the run in {shown} has not ended (still running, or killed: resume it \
                 with nton run --resume {shown}); only a failed run can be retried"
            ))
            .into());
        }
    }
    let failed: Vec<u32> = failed_nodes(&lines).into_iter().collect();
    if failed.is_empty() {
        let state = lines.iter().rev().find_map(|line| match line {
            RecordLine::End(end) => end.error.clone(),
            _ => None,
        });
        return Err(CommandError::bad_input(format!(
            "RUN_DIR: the run in {shown} failed ({}) with no failed node; nothing to retry \
             (resume it with nton run --resume {shown})",
            state.unwrap_or_else(|| "no error recorded".to_string())
        ))
        .into());
    }

    let input = retry_input(&first.input, &failed)?;
    let workflow_id =
        input["workflowId"].as_str().and_then(|id| WorkflowId::parse(id).ok()).ok_or_else(
            || CommandError::bad_input(format!("RUN_DIR: the run in {shown} has no workflowId")),
        )?;
    let output = first.meta["output"].as_str().map(str::to_string).ok_or_else(|| {
        CommandError::bad_input(format!(
            "RUN_DIR: the record in {shown} does not say where the run put its results"
        ))
    })?;
    let efs_dir = run_dir.join("efs");
    if !efs_dir.is_dir() {
        return Err(CommandError::bad_input(format!(
            "RUN_DIR: {} is gone: the run's prep and working data are needed to retry it",
            efs_dir.display()
        ))
        .into());
    }

    let parallelism = args
        .engine
        .parallelism
        .unwrap_or_else(|| std::thread::available_parallelism().map(usize::from).unwrap_or(2));
    let bin_dir = run::worker_dir(cwd, args.engine.bin_dir.as_deref())?;
    let run::EngineSettings { env_overrides, parameters } =
        run::engine_settings(&efs_dir, &output, &args.engine.job_env, &args.engine.params)?;
    // The retry's Distributed Maps read and write where the first execution's did.
    let s3_buckets = run::recorded_s3_buckets(&first.meta);
    let spec = LocalRunSpec {
        template: run::absolute(cwd, &args.engine.template),
        state_machine: args.engine.state_machine.clone(),
        parameters,
        run_dir: run_dir.to_path_buf(),
        bin_dir,
        parallelism,
        base_env: run::child_base_env(std::env::vars()),
        env_overrides,
        input,
        execution_name: format!("local-retry-{}", uuid::Uuid::new_v4()),
        resumed_children: BTreeSet::new(),
        meta: {
            let mut meta = run::run_meta(&output, &s3_buckets);
            meta["retryOf"] = json!(first.execution_name);
            meta
        },
        s3_buckets,
    };
    Ok(RunRequest {
        spec,
        workflow_id,
        run_dir: run_dir.to_path_buf(),
        efs_dir,
        output,
        keep_data: args.engine.keep_data,
        json: args.json,
    })
}

/// The retry's execution input: the run's plan (`workflowId`, `ids`, `idsPerNode`,
/// `pollSeconds` as the run had them) and `retryNodes`, checked by init's own rules.
pub fn retry_input(original: &Value, failed: &[u32]) -> Result<Value, CommandError> {
    let mut input = serde_json::Map::new();
    for field in ["workflowId", "ids", "idsPerNode", "pollSeconds"] {
        if let Some(value) = original.get(field).filter(|v| !v.is_null()) {
            input.insert(field.to_string(), value.clone());
        }
    }
    input.insert("retryNodes".to_string(), json!(failed));
    let input = Value::Object(input);
    let plan = PlanInput::from_json(&input, &PlanDefaults::default())
        .map_err(|error| CommandError::bad_input(format!("the run's input: {error}")))?;
    RetryNodes::from_json(&input, &plan)
        .map_err(|error| CommandError::bad_input(error.to_string()))?;
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use nton_engine::record::{ChildLine, RunEnd, RunStart};

    const WF: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn start(input: Value) -> RecordLine {
        RecordLine::Run(RunStart {
            execution_name: "e".into(),
            template: "t".into(),
            state_machine: "s".into(),
            input,
            started_at: 0,
            resumed: false,
            meta: json!({"output": "/out"}),
        })
    }

    fn child(stage: &str, node: Option<u32>, status: &str) -> RecordLine {
        RecordLine::Child(ChildLine {
            job_id: "j".into(),
            job_name: format!("nton-{stage}-{WF}"),
            node,
            attempt: 1,
            started_at: Some(1),
            stopped_at: 2,
            status: serde_json::from_value(json!(status)).expect("a status name"),
            reason: None,
            exit_code: None,
            stderr_tail: None,
            is_final: true,
        })
    }

    fn end(status: &str) -> RecordLine {
        RecordLine::End(RunEnd {
            status: serde_json::from_value(json!(status)).expect("a status name"),
            at: 3,
            error: Some("nton.NodesFailed".into()),
            cause: None,
            output: None,
        })
    }

    fn nodes(lines: &[RecordLine]) -> Vec<Option<u32>> {
        lines
            .iter()
            .filter_map(|line| match line {
                RecordLine::Child(child) => Some(child.node),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_retrys_children_get_their_original_nodes_and_a_later_success_clears_a_failure() {
        let whole = json!({"workflowId": WF, "ids": 40, "idsPerNode": 10});
        let mut retry = whole.clone();
        retry["retryNodes"] = json!([3, 1]);
        let mut one = whole.clone();
        one["retryNodes"] = json!([1]);
        let mut lines = vec![
            start(whole.clone()),
            child("procure", Some(1), "FAILED"),
            child("procure", Some(3), "FAILED"),
            child("procure", Some(0), "SUCCEEDED"),
            end("FAILED"),
            start(retry),
            child("procure", Some(0), "SUCCEEDED"),
            child("procure", Some(1), "FAILED"),
            end("FAILED"),
            start(one),
            child("procure", None, "SUCCEEDED"),
        ];
        to_original_nodes(&mut lines);
        assert_eq!(nodes(&lines), [Some(1), Some(3), Some(0), Some(3), Some(1), Some(1)]);
        assert_eq!(failed_nodes(&lines[..9]), BTreeSet::from([1]));
        assert!(failed_nodes(&lines).is_empty());

        // A one-node run's plain jobs stay plain.
        let small = json!({"workflowId": WF, "ids": 5, "idsPerNode": 10});
        let mut small_retry = small.clone();
        small_retry["retryNodes"] = json!([0]);
        let mut lines = vec![
            start(small),
            child("procure", None, "FAILED"),
            start(small_retry),
            child("procure", None, "SUCCEEDED"),
        ];
        to_original_nodes(&mut lines);
        assert_eq!(nodes(&lines), [None, None]);
        assert!(failed_nodes(&lines).is_empty());
    }

    fn args(extra: &[&str]) -> RetryArgs {
        let mut argv = vec!["nton", "retry"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Retry(args) => args,
            _ => unreachable!("parsed a retry"),
        }
    }

    fn record(dir: &Path, lines: &[RecordLine]) {
        let text: String =
            lines.iter().map(|line| serde_json::to_string(line).unwrap() + "\n").collect();
        std::fs::write(dir.join(RECORD_FILE), text).unwrap();
    }

    #[test]
    fn only_a_failed_run_with_failed_nodes_and_its_data_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let input = json!({"workflowId": WF, "ids": 40, "idsPerNode": 10});
        let message = |lines: &[RecordLine]| {
            record(dir.path(), lines);
            let error = plan_local_retry(&args(&[]), dir.path(), dir.path()).unwrap_err();
            assert_eq!(
                error.downcast_ref::<CommandError>().map(|e| e.code),
                Some(crate::exit::BAD_INPUT),
                "{error}"
            );
            error.to_string()
        };
        let failed = [start(input.clone()), child("process", Some(2), "FAILED"), end("FAILED")];
        for (lines, want) in [
            (vec![start(input.clone()), end("SUCCEEDED")], "succeeded; there is nothing to retry"),
            (vec![start(input.clone())], "has not ended"),
            (vec![start(input.clone()), end("INTERRUPTED")], "nton run --resume"),
            (
                vec![start(input.clone()), end("FAILED")],
                "failed (nton.NodesFailed) with no failed node",
            ),
            // The working data is gone.
            (failed.to_vec(), "efs is gone"),
            (vec![], "has no run start line"),
        ] {
            let got = message(&lines);
            assert!(got.contains(want), "{got}\nwant: {want}");
        }
        std::fs::create_dir(dir.path().join("efs")).unwrap();
        record(dir.path(), &failed);
        let request =
            plan_local_retry(&args(&["--job-env", "A=b"]), dir.path(), dir.path()).unwrap();
        assert_eq!(
            request.spec.input,
            json!({"workflowId": WF, "ids": 40, "idsPerNode": 10, "retryNodes": [2]})
        );
        assert_eq!(request.output, "/out");
        assert_eq!(request.spec.env_overrides["NTON_RESULTS_URL"], "/out");
        assert_eq!(request.spec.env_overrides["A"], "b");
        assert_eq!(request.run_dir, dir.path());
        assert!(request.spec.s3_buckets.is_empty(), "the run mapped no bucket");
        // A run that mapped buckets (`nton run --s3-bucket`): its retry reads and writes there too.
        let mut mapped = failed.to_vec();
        if let RecordLine::Run(first) = &mut mapped[0] {
            first.meta = json!({"output": "/out", "s3Buckets": {"data-in": "/srv/in"}});
        }
        record(dir.path(), &mapped);
        let request = plan_local_retry(&args(&[]), dir.path(), dir.path()).unwrap();
        let buckets = BTreeMap::from([("data-in".to_string(), PathBuf::from("/srv/in"))]);
        assert_eq!(request.spec.s3_buckets, buckets);
        assert_eq!(request.spec.meta["s3Buckets"], json!({"data-in": "/srv/in"}));
        record(dir.path(), &failed);
        // Only the record was read: nothing was written.
        let names: BTreeSet<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, BTreeSet::from([RECORD_FILE.to_string(), "efs".to_string()]));
        let error = plan_local_retry(&args(&[]), &dir.path().join("nope"), dir.path()).unwrap_err();
        assert!(error.to_string().starts_with("RUN_DIR: cannot read "), "{error}");
    }

    #[test]
    fn the_target_is_a_run_dir_an_execution_arn_or_the_latest() {
        let arn = "arn:aws:states:eu-west-1:123456789012:execution:nton-dev-pipeline:run-1";
        assert_eq!(target(&args(&[arn])).unwrap(), Target::Execution(Some(arn.into())));
        assert_eq!(target(&args(&["--env", "dev", "--latest"])).unwrap(), Target::Execution(None));
        assert_eq!(
            target(&args(&["nton-runs/x"])).unwrap(),
            Target::Local(PathBuf::from("nton-runs/x"))
        );
        for (argv, want) in [
            (vec![], "nton retry: name the failed run"),
            (vec!["--env", "dev", "nton-runs/x"], "--env/--state-machine-arn: "),
            (vec![""], "RUN_DIR: empty"),
        ] {
            let error = target(&args(&argv)).unwrap_err().to_string();
            assert!(error.starts_with(want), "{error}");
        }
    }

    #[test]
    fn the_retry_input_is_the_runs_plan_and_the_nodes() {
        let original = json!({"workflowId": WF, "ids": 40, "idsPerNode": 10, "Comment": "x",
                              "retryNodes": [0]});
        assert_eq!(
            retry_input(&original, &[3, 1]).unwrap(),
            json!({"workflowId": WF, "ids": 40, "idsPerNode": 10, "retryNodes": [3, 1]})
        );
        let error = retry_input(&original, &[4]).unwrap_err();
        assert!(
            error.message.starts_with("retryNodes: node 4 is not a node of the run"),
            "{}",
            error.message
        );
    }
}
