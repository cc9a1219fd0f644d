//! `nton retry` of an execution on AWS: read the failed execution's plan and failed nodes,
//! then start a new execution of the same state machine with the plan and `retryNodes`.
//!
//! The failed nodes come from the watcher's last answer in the history when it is complete
//! (the run ended and every failed node is listed; the watcher names original nodes, so a retry
//! of a retry needs no mapping). Otherwise (more failed nodes than the watcher lists, a run
//! stopped by its deadline, TIMED_OUT or ABORTED) from Batch: the FAILED children of the
//! stage jobs the history names, mapped through the plan's `nodeMap` when the execution was
//! itself a retry.

use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{Value, json};

use super::console::Console;
use super::execution::{self, HistoryItem, check_execution_name, resolve_execution};
use super::stack::aws_error;
use super::{WatchArgs, params};
use crate::cli::RetryArgs;
use crate::exit::{self, CommandError};

/// `nton retry` on AWS, with the SDK config from the environment. The arguments are checked
/// before the config is loaded, so bad input makes no AWS call.
pub async fn retry(args: &RetryArgs, execution: Option<&str>) -> anyhow::Result<u8> {
    check_args(args, execution)?;
    let config = super::load_config(&args.aws).await?;
    retry_with(&config, args, execution, &mut Console::stdio()).await
}

/// Checks everything the arguments say before any AWS call.
pub fn check_args(args: &RetryArgs, execution: Option<&str>) -> Result<(), CommandError> {
    if let Some(arn) = execution {
        check_execution_arn(arn)?;
    }
    if let Some(env) = &args.env {
        params::check_name("--env", env)?;
    }
    params::check_name("--prefix", &args.prefix)?;
    if let Some(arn) = &args.state_machine_arn {
        execution::check_state_machine_arn(arn)?;
    }
    if let Some(name) = &args.name {
        check_execution_name(name)?;
    }
    if execution.is_none() && args.env.is_none() && args.state_machine_arn.is_none() {
        return Err(CommandError::bad_input(
            "--latest: needs --env or --state-machine-arn to find the executions on AWS",
        ));
    }
    Ok(())
}

/// An execution ARN given as the run to retry.
pub fn check_execution_arn(arn: &str) -> Result<(), CommandError> {
    if execution::is_execution_arn(arn) {
        Ok(())
    } else {
        Err(CommandError::bad_input(format!(
            "EXECUTION_ARN: {arn:?} is not an execution ARN \
             (arn:aws:states:<region>:<12-digit account>:execution:<state machine>:<name>)"
        )))
    }
}

/// The state machine an execution belongs to.
fn machine_of(execution_arn: &str) -> String {
    let parts: Vec<&str> = execution_arn.split(':').collect();
    format!("{}:stateMachine:{}", parts[..5].join(":"), parts[6])
}

/// [`retry`] with an SDK config and console from the caller (tests point it at moto).
pub async fn retry_with(
    config: &aws_config::SdkConfig,
    args: &RetryArgs,
    execution: Option<&str>,
    console: &mut Console,
) -> anyhow::Result<u8> {
    check_args(args, execution)?;
    let sfn = aws_sdk_sfn::Client::new(config);
    let execution = match execution {
        Some(arn) => arn.to_string(),
        None => {
            let watch = WatchArgs {
                env: args.env.clone(),
                prefix: args.prefix.clone(),
                execution: "latest".to_string(),
                state_machine_arn: args.state_machine_arn.clone(),
                poll_seconds: 10.0,
                watch_state: args.watch_state.clone(),
                json: false,
                aws: args.aws.clone(),
            };
            resolve_execution(config, &sfn, &watch).await?
        }
    };
    let described = sfn
        .describe_execution()
        .execution_arn(&execution)
        .send()
        .await
        .map_err(|e| aws_error(format!("DescribeExecution {execution}"), &e))?;
    match described.status() {
        ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted => {}
        ExecutionStatus::Succeeded => {
            return Err(CommandError::bad_input(format!(
                "{execution} succeeded; there is nothing to retry"
            ))
            .into());
        }
        other => {
            return Err(CommandError::bad_input(format!(
                "{execution} is {}, not finished; retry it once it has failed",
                other.as_str()
            ))
            .into());
        }
    }
    let items = execution::history_items(&sfn, &execution).await?;
    let plan = plan_in_history(&items).ok_or_else(|| {
        CommandError::bad_input(format!(
            "{execution} failed before init planned the run ({}): there are no nodes to retry; \
             start the run again",
            described.error().unwrap_or("no error")
        ))
    })?;
    let status = execution::latest_watch_status(&items, &args.watch_state);
    let failed = match status.as_ref().and_then(complete_failed_nodes) {
        Some(nodes) => nodes,
        None => {
            let job_ids = job_ids_in_history(&items);
            if job_ids.is_empty() {
                return Err(CommandError::bad_input(format!(
                    "{execution} failed before submitting its jobs ({}): no node ran; start \
                     the run again",
                    described.error().unwrap_or("no error")
                ))
                .into());
            }
            let indices = super::jobs::failed_indices(config, &job_ids).await?;
            to_original(&indices, &plan)
        }
    };
    if failed.is_empty() {
        return Err(CommandError::bad_input(format!(
            "{execution} failed ({}) with no failed node; nothing to retry",
            described.error().unwrap_or("no error")
        ))
        .into());
    }
    let input = crate::retry::retry_input(&plan, &failed)?;

    let machine = machine_of(&execution);
    let started =
        super::execution::start_execution(&sfn, &machine, &input, args.name.clone()).await?;
    let new_execution = started.execution_arn().to_string();
    if args.json {
        console.result(json!({
            "executionArn": new_execution,
            "stateMachineArn": machine,
            "retryOf": execution,
            "retryNodes": failed,
            "input": input,
        }));
    } else {
        console.result(&new_execution);
        console.note(format!(
            "retrying {} node(s) of {execution}: {}",
            failed.len(),
            crate::retry::node_list(&failed)
        ));
        console.note(format!("follow it with: nton watch --execution {new_execution}"));
    }
    Ok(exit::SUCCESS)
}

/// The run's plan (`$.plan`, which every state after Init carries) from the history.
pub fn plan_in_history(items: &[HistoryItem]) -> Option<Value> {
    items.iter().find_map(|item| {
        let output: Value = serde_json::from_str(item.output.as_deref()?).ok()?;
        let plan = output.get("plan")?;
        plan.get("workflowId")?.as_str()?;
        Some(plan.clone())
    })
}

/// The stage job ids (`$.jobs.<stage>.JobId`) from the history's latest output that has them.
fn job_ids_in_history(items: &[HistoryItem]) -> Vec<String> {
    let mut newest: Vec<&HistoryItem> = items.iter().collect();
    newest.sort_by_key(|item| std::cmp::Reverse(item.id));
    newest
        .into_iter()
        .find_map(|item| {
            let output: Value = serde_json::from_str(item.output.as_deref()?).ok()?;
            let jobs = output.get("jobs")?.as_object()?;
            let ids: Vec<String> = jobs
                .values()
                .filter_map(|job| Some(job.get("JobId")?.as_str()?.to_string()))
                .collect();
            (!ids.is_empty()).then_some(ids)
        })
        .unwrap_or_default()
}

/// The watcher's failed nodes, when its answer is the end of the run and lists all of them.
pub fn complete_failed_nodes(status: &Value) -> Option<Vec<u32>> {
    if status.get("done") != Some(&Value::Bool(true)) {
        return None;
    }
    let listed: Vec<u32> = status
        .get("failedNodes")?
        .as_array()?
        .iter()
        .map(|node| node.get("node")?.as_u64().and_then(|n| u32::try_from(n).ok()))
        .collect::<Option<Vec<u32>>>()?;
    let count = status.get("failedNodeCount")?.as_u64()?;
    let mut nodes = listed;
    nodes.sort_unstable();
    nodes.dedup();
    (nodes.len() as u64 == count).then_some(nodes)
}

/// Array indices to original nodes through the plan's `nodeMap` (none: the index is the node).
fn to_original(indices: &std::collections::BTreeSet<u32>, plan: &Value) -> Vec<u32> {
    let map: Option<Vec<u32>> = plan.get("nodeMap").and_then(Value::as_array).map(|nodes| {
        nodes.iter().filter_map(|n| n.as_u64().and_then(|n| u32::try_from(n).ok())).collect()
    });
    let mut nodes: Vec<u32> = indices
        .iter()
        .map(|&index| match &map {
            Some(map) => map.get(index as usize).copied().unwrap_or(index),
            None => index,
        })
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_arns_are_checked_and_name_their_machine() {
        let arn = "arn:aws:states:eu-west-1:123456789012:execution:nton-dev-pipeline:run-1";
        check_execution_arn(arn).unwrap();
        assert_eq!(
            machine_of(arn),
            "arn:aws:states:eu-west-1:123456789012:stateMachine:nton-dev-pipeline"
        );
        for bad in [
            "arn:",
            "arn:aws:states:eu-west-1:123456789012:stateMachine:nton-dev-pipeline",
            "arn:aws:states:eu-west-1:1234:execution:m:n",
            "arn:aws:states:eu-west-1:123456789012:execution:m:",
            "arn:aws:lambda:eu-west-1:123456789012:execution:m:n",
        ] {
            let error = check_execution_arn(bad).unwrap_err();
            assert!(
                error.message.starts_with(&format!("EXECUTION_ARN: {bad:?} is not")),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn the_watchers_list_is_used_only_when_complete() {
        let status = json!({"done": true, "failedNodes": [{"node": 7}, {"node": 3}],
                            "failedNodeCount": 2});
        assert_eq!(complete_failed_nodes(&status), Some(vec![3, 7]));
        let capped = json!({"done": true, "failedNodes": [{"node": 7}], "failedNodeCount": 150});
        assert_eq!(complete_failed_nodes(&capped), None);
        let running = json!({"done": false, "failedNodes": [], "failedNodeCount": 0});
        assert_eq!(complete_failed_nodes(&running), None);
    }

    #[test]
    fn a_retrys_indices_map_through_its_node_map() {
        let indices = [0, 2].into_iter().collect();
        assert_eq!(to_original(&indices, &json!({"nodeMap": [9, 4, 6]})), [6, 9]);
        assert_eq!(to_original(&indices, &json!({"nodeMap": null})), [0, 2]);
    }
}
