//! `nton report --execution`: the timeline of an execution on AWS. The stage jobs' ids come
//! from the execution's history (the submitJob states put them at `$.jobs.<stage>.JobId`); an
//! array parent's children from `ListJobs(arrayJobId)`, paged, once per status (without a
//! status ListJobs returns only RUNNING jobs); their times and attempts from `DescribeJobs`
//! (at most 100 ids a call). The Watch state's entries are the poll ticks, the execution's
//! start and stop the bounds.

use std::collections::BTreeMap;

use aws_sdk_batch::types::{JobDetail, JobStatus};
use aws_sdk_sfn::types::HistoryEvent;
use serde_json::Value;

use super::WatchArgs;
use super::execution::resolve_execution;
use super::stack::aws_error;
use crate::exit::CommandError;
use crate::timeline::{Attempt, Outcome, Timeline};

/// DescribeJobs takes at most 100 job ids per call.
const DESCRIBE_BATCH: usize = 100;

/// Every status a child can be in; ListJobs is asked once for each.
const ALL_STATUSES: [JobStatus; 7] = [
    JobStatus::Submitted,
    JobStatus::Pending,
    JobStatus::Runnable,
    JobStatus::Starting,
    JobStatus::Running,
    JobStatus::Succeeded,
    JobStatus::Failed,
];

/// What the report knows of one execution.
#[derive(Debug, Clone)]
pub struct ExecutionTimeline {
    pub execution_arn: String,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub timeline: Timeline,
}

/// Reads the execution named by `args` (as `nton watch` resolves it) and builds its timeline.
pub async fn execution_timeline(
    config: &aws_config::SdkConfig,
    args: &WatchArgs,
) -> anyhow::Result<ExecutionTimeline> {
    let sfn = aws_sdk_sfn::Client::new(config);
    let execution = resolve_execution(config, &sfn, args).await?;
    let described = sfn
        .describe_execution()
        .execution_arn(&execution)
        .send()
        .await
        .map_err(|e| aws_error(format!("DescribeExecution {execution}"), &e))?;
    let mut events: Vec<HistoryEvent> = Vec::new();
    let mut pages = sfn
        .get_execution_history()
        .execution_arn(&execution)
        .include_execution_data(true)
        .max_results(1000)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error(format!("GetExecutionHistory {execution}"), &e))?;
        events.extend(page.events().iter().cloned());
    }
    let history = ExecutionHistory::from_events(&events, &args.watch_state);

    let batch = aws_sdk_batch::Client::new(config);
    let parents: Vec<String> = history.job_ids.values().cloned().collect();
    let mut attempts = Vec::new();
    for parent in describe_jobs(&batch, &parents).await? {
        let is_array =
            parent.array_properties().and_then(|p| p.size()).is_some_and(|size| size > 0);
        if !is_array {
            attempts.extend(job_attempts(&parent));
            continue;
        }
        let children = list_children(&batch, parent.job_id().unwrap_or_default()).await?;
        for child in describe_jobs(&batch, &children).await? {
            attempts.extend(job_attempts(&child));
        }
    }
    let started = described.start_date().to_millis().unwrap_or_default();
    let stopped =
        described.stop_date().and_then(|d| d.to_millis().ok()).unwrap_or_else(now_ms).max(started);
    // Jobs submitted before the execution started (or a clock apart) still fall inside.
    let (started, stopped) = attempts
        .iter()
        .flat_map(|a| a.started_at.into_iter().chain([a.stopped_at]))
        .fold((started, stopped), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let polls = history.polls;
    let timeline = Timeline::build(
        described.name().unwrap_or_default().to_string(),
        described.status().as_str().to_string(),
        attempts,
        (!polls.is_empty()).then(|| args.watch_state.clone()),
        polls,
        Some((started, stopped)),
    );
    Ok(ExecutionTimeline {
        execution_arn: execution,
        error: described.error().map(str::to_string),
        cause: described.cause().map(str::to_string),
        timeline,
    })
}

/// The children of an array job, every status, every page.
async fn list_children(
    batch: &aws_sdk_batch::Client,
    array_job: &str,
) -> Result<Vec<String>, CommandError> {
    let mut ids = Vec::new();
    for status in ALL_STATUSES {
        let mut pages = batch
            .list_jobs()
            .array_job_id(array_job)
            .job_status(status.clone())
            .max_results(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|e| aws_error(format!("ListJobs arrayJobId={array_job} {status}"), &e))?;
            ids.extend(
                page.job_summary_list().iter().filter_map(|s| s.job_id().map(str::to_string)),
            );
        }
    }
    // A child moving between statuses while the lists are read can show up twice.
    ids.sort();
    ids.dedup();
    Ok(ids)
}

async fn describe_jobs(
    batch: &aws_sdk_batch::Client,
    ids: &[String],
) -> Result<Vec<JobDetail>, CommandError> {
    let mut jobs = Vec::new();
    for chunk in ids.chunks(DESCRIBE_BATCH) {
        let described = batch
            .describe_jobs()
            .set_jobs(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| aws_error(format!("DescribeJobs ({} jobs)", chunk.len()), &e))?;
        jobs.extend(described.jobs().iter().cloned());
    }
    Ok(jobs)
}

/// The array indices of the stage jobs' FAILED children (a FAILED plain job is index 0): every
/// page of ListJobs, so none is missed however many failed.
pub async fn failed_indices(
    config: &aws_config::SdkConfig,
    job_ids: &[String],
) -> Result<std::collections::BTreeSet<u32>, CommandError> {
    let batch = aws_sdk_batch::Client::new(config);
    let mut indices = std::collections::BTreeSet::new();
    for parent in describe_jobs(&batch, job_ids).await? {
        let is_array =
            parent.array_properties().and_then(|p| p.size()).is_some_and(|size| size > 0);
        if !is_array {
            if parent.status() == Some(&JobStatus::Failed) {
                indices.insert(0);
            }
            continue;
        }
        let array_job = parent.job_id().unwrap_or_default();
        let mut pages = batch
            .list_jobs()
            .array_job_id(array_job)
            .job_status(JobStatus::Failed)
            .max_results(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| aws_error(format!("ListJobs arrayJobId={array_job} FAILED"), &e))?;
            indices.extend(page.job_summary_list().iter().filter_map(|child| {
                child
                    .array_properties()
                    .and_then(|p| p.index())
                    .and_then(|i| u32::try_from(i).ok())
                    .or_else(|| child.job_id()?.rsplit_once(':').and_then(|(_, i)| i.parse().ok()))
            }));
        }
    }
    Ok(indices)
}

/// What the report needs of an execution's history.
#[derive(Debug, Default, PartialEq)]
pub struct ExecutionHistory {
    /// Stage (`procure`) to its job id, from the states' outputs (`$.jobs.<stage>.JobId`).
    pub job_ids: BTreeMap<String, String>,
    /// When the watch state was entered, in milliseconds since the epoch, in order.
    pub polls: Vec<i64>,
}

impl ExecutionHistory {
    pub fn from_events(events: &[HistoryEvent], watch_state: &str) -> ExecutionHistory {
        let mut history = ExecutionHistory::default();
        for event in events {
            if let Some(entered) = event.state_entered_event_details()
                && entered.name() == watch_state
                && let Ok(at) = event.timestamp().to_millis()
            {
                history.polls.push(at);
            }
            let Some(output) = event.state_exited_event_details().and_then(|d| d.output()) else {
                continue;
            };
            let Ok(output) = serde_json::from_str::<Value>(output) else {
                continue;
            };
            if let Some(Value::Object(jobs)) = output.get("jobs") {
                for (stage, job) in jobs {
                    if let Some(id) = job.get("JobId").and_then(Value::as_str) {
                        history.job_ids.insert(stage.clone(), id.to_string());
                    }
                }
            }
        }
        history.polls.sort_unstable();
        history
    }
}

/// The attempts of one job (a child, or a plain job of a one-node run) that ended: each of
/// `attempts[]` but the last was followed by another one (Retried); the last one ends as the
/// job did. An attempt still running has no stop yet and is left out; a job that ended without
/// an attempt (a dependency failed, or it was cancelled) counts, with no bar.
pub fn job_attempts(job: &JobDetail) -> Vec<Attempt> {
    let stage = crate::progress::short_job_name(job.job_name().unwrap_or_default()).to_string();
    let node = node_index(job);
    let status = job.status();
    let ended = matches!(status, Some(JobStatus::Succeeded | JobStatus::Failed));
    let final_outcome =
        if status == Some(&JobStatus::Succeeded) { Outcome::Succeeded } else { Outcome::Failed };
    let tried = job.attempts();
    let mut attempts: Vec<Attempt> = tried
        .iter()
        .enumerate()
        .filter_map(|(index, detail)| {
            let stopped = detail.stopped_at()?;
            let last = index + 1 == tried.len();
            let outcome = if last && ended { final_outcome } else { Outcome::Retried };
            let reason = detail
                .status_reason()
                .map(str::to_string)
                .or_else(|| detail.container().and_then(|c| c.reason()).map(str::to_string));
            let exit = detail.container().and_then(|c| c.exit_code());
            Some(Attempt {
                stage: stage.clone(),
                node,
                attempt: index as u32 + 1,
                started_at: detail.started_at(),
                stopped_at: stopped,
                outcome,
                reason: with_exit_code(reason, exit, outcome),
            })
        })
        .collect();
    if attempts.is_empty() && ended {
        attempts.push(Attempt {
            stage,
            node,
            attempt: 1,
            started_at: job.started_at(),
            stopped_at: job.stopped_at().unwrap_or(job.created_at().unwrap_or(0)),
            outcome: final_outcome,
            reason: with_exit_code(
                job.status_reason().map(str::to_string),
                job.container().and_then(|c| c.exit_code()),
                final_outcome,
            ),
        });
    }
    attempts
}

/// A failed attempt's reason names its exit code, as the local report's do.
fn with_exit_code(reason: Option<String>, exit: Option<i32>, outcome: Outcome) -> Option<String> {
    match (reason, exit) {
        (reason, Some(code)) if outcome != Outcome::Succeeded => Some(match reason {
            Some(reason) => format!("{reason} (exit {code})"),
            None => format!("exit {code}"),
        }),
        (reason, _) => reason,
    }
}

/// The array index: `arrayProperties.index`, else the `:<index>` Batch ends a child's id with;
/// 0 for a plain job.
fn node_index(job: &JobDetail) -> u32 {
    if let Some(index) = job.array_properties().and_then(|p| p.index()) {
        return index.max(0) as u32;
    }
    job.job_id()
        .and_then(|id| id.rsplit_once(':'))
        .and_then(|(_, index)| index.parse().ok())
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_batch::types::{
        ArrayPropertiesDetail, AttemptContainerDetail, AttemptDetail, ContainerDetail,
    };
    use aws_sdk_sfn::primitives::DateTime;
    use aws_sdk_sfn::types::{HistoryEventType, StateEnteredEventDetails, StateExitedEventDetails};

    fn attempt(start: i64, stop: i64, exit: i32, reason: Option<&str>) -> AttemptDetail {
        AttemptDetail::builder()
            .started_at(start)
            .stopped_at(stop)
            .set_status_reason(reason.map(str::to_string))
            .container(AttemptContainerDetail::builder().exit_code(exit).build())
            .build()
    }

    fn child(id: &str, status: JobStatus, attempts: Vec<AttemptDetail>) -> JobDetail {
        JobDetail::builder()
            .job_id(id)
            .job_name("nton-procure-0f8fad5b-d9cb-469f-a165-70867728950e")
            .status(status)
            .set_attempts(Some(attempts))
            .build()
    }

    #[test]
    fn a_failed_attempt_followed_by_another_is_retried_and_the_last_ends_as_the_job() {
        let job = child(
            "p:7",
            JobStatus::Succeeded,
            vec![
                attempt(1_000, 1_500, 1, Some("Essential container in task exited")),
                attempt(1_600, 2_000, 0, None),
            ],
        );
        let attempts = job_attempts(&job);
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].stage, "nton-procure");
        assert_eq!(attempts[0].node, 7, "the index from the child's id");
        assert_eq!(attempts[0].outcome, Outcome::Retried);
        assert_eq!(
            attempts[0].reason.as_deref(),
            Some("Essential container in task exited (exit 1)")
        );
        assert_eq!((attempts[0].started_at, attempts[0].stopped_at), (Some(1_000), 1_500));
        assert_eq!(attempts[1].attempt, 2);
        assert_eq!(attempts[1].outcome, Outcome::Succeeded);
        assert_eq!(attempts[1].reason, None);

        let failed = child(
            "p:3",
            JobStatus::Failed,
            vec![attempt(1_000, 1_200, 2, None), attempt(1_300, 1_400, 2, None)],
        );
        let outcomes: Vec<Outcome> = job_attempts(&failed).iter().map(|a| a.outcome).collect();
        assert_eq!(outcomes, [Outcome::Retried, Outcome::Failed]);
        assert_eq!(job_attempts(&failed)[1].reason.as_deref(), Some("exit 2"));
    }

    #[test]
    fn a_running_retry_keeps_its_failed_attempts_and_drops_the_unfinished_one() {
        let job = child("p:0", JobStatus::Running, vec![attempt(1_000, 1_200, 1, None)]);
        let attempts = job_attempts(&job);
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome, Outcome::Retried);
        assert!(job_attempts(&child("p:0", JobStatus::Runnable, vec![])).is_empty());
    }

    #[test]
    fn a_job_that_ended_without_attempts_counts_without_a_bar() {
        let job = JobDetail::builder()
            .job_id("parent:4")
            .job_name("nton-process-0f8fad5b-d9cb-469f-a165-70867728950e")
            .status(JobStatus::Failed)
            .status_reason("Dependent Job failed")
            .created_at(900)
            .stopped_at(1_100)
            .array_properties(ArrayPropertiesDetail::builder().index(4).build())
            .build();
        let attempts = job_attempts(&job);
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].node, 4);
        assert_eq!(attempts[0].started_at, None);
        assert_eq!(attempts[0].stopped_at, 1_100);
        assert_eq!(attempts[0].outcome, Outcome::Failed);
        assert_eq!(attempts[0].reason.as_deref(), Some("Dependent Job failed"));
    }

    #[test]
    fn a_plain_job_is_node_zero() {
        let job = JobDetail::builder()
            .job_id("0f8fad5b-d9cb-469f-a165-70867728950e")
            .job_name("nton-egress-0f8fad5b-d9cb-469f-a165-70867728950e")
            .status(JobStatus::Succeeded)
            .started_at(10)
            .stopped_at(20)
            .container(ContainerDetail::builder().exit_code(0).build())
            .build();
        let attempts = job_attempts(&job);
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].node, 0);
        assert_eq!(attempts[0].stage, "nton-egress");
        assert_eq!((attempts[0].started_at, attempts[0].stopped_at), (Some(10), 20));
        assert_eq!(attempts[0].outcome, Outcome::Succeeded);
    }

    fn event(
        id: i64,
        kind: HistoryEventType,
        at: i64,
    ) -> aws_sdk_sfn::types::builders::HistoryEventBuilder {
        HistoryEvent::builder().id(id).r#type(kind).timestamp(DateTime::from_millis(at))
    }

    #[test]
    fn the_history_gives_the_stage_jobs_and_the_watch_entries() {
        let exited = |name: &str, output: &str| {
            StateExitedEventDetails::builder().name(name).output(output).build().unwrap()
        };
        let entered = |name: &str| StateEnteredEventDetails::builder().name(name).build().unwrap();
        let events = vec![
            event(1, HistoryEventType::TaskStateExited, 1_000)
                .state_exited_event_details(exited(
                    "SubmitProcureArray",
                    r#"{"plan":{},"jobs":{"procure":{"JobId":"a"}}}"#,
                ))
                .build()
                .unwrap(),
            event(2, HistoryEventType::TaskStateExited, 1_100)
                .state_exited_event_details(exited(
                    "SubmitProcessArray",
                    r#"{"jobs":{"procure":{"JobId":"a"},"process":{"JobId":"b"}}}"#,
                ))
                .build()
                .unwrap(),
            event(3, HistoryEventType::TaskStateEntered, 2_000)
                .state_entered_event_details(entered("Watch"))
                .build()
                .unwrap(),
            event(4, HistoryEventType::WaitStateEntered, 2_500)
                .state_entered_event_details(entered("WaitForJobs"))
                .build()
                .unwrap(),
            event(5, HistoryEventType::TaskStateEntered, 3_000)
                .state_entered_event_details(entered("Watch"))
                .build()
                .unwrap(),
            event(6, HistoryEventType::TaskStateExited, 3_100)
                .state_exited_event_details(exited("Watch", "not json"))
                .build()
                .unwrap(),
        ];
        let history = ExecutionHistory::from_events(&events, "Watch");
        assert_eq!(
            history.job_ids,
            BTreeMap::from([("procure".into(), "a".into()), ("process".into(), "b".into())])
        );
        assert_eq!(history.polls, [2_000, 3_000]);
    }
}
