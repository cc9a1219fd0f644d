//! The watcher Lambda: reads the stage jobs of a run from AWS Batch and says whether the run is
//! done, whether it failed, how far each stage is and which nodes failed.
//!
//! [`handle`] is the whole function: it validates the event the state machine's `Watch` state
//! sends (`{"workflowId", "nodes", "jobs": {"<stage>": {"JobId"}, ...}}`, one entry per stage
//! the template submits), makes one `DescribeJobs` call for those jobs (which gives their run
//! order through their dependencies), then only the `ListJobs` calls the status model asks
//! for (FAILED children of stages that have some; RUNNABLE children of a stage that may be
//! stuck), and returns `nton_core::status::RunStatus` as JSON. Batch is reached through the
//! [`BatchApi`] trait: [`SdkBatch`] on AWS, the engine's local Batch or a fake in tests.

pub mod cleanup;
pub mod config;
pub mod sdk;

use lambda_runtime::Diagnostic;
use nton_core::batch::{BatchApi, BatchApiError, JobDetail};
use nton_core::stage::{StageMap, StageName};
use nton_core::status::{self, Children, StageJobs, StatusOptions};
use serde::Deserialize;
use serde_json::Value;

pub use sdk::SdkBatch;

/// The largest array AWS Batch accepts.
const MAX_NODES: u64 = 10_000;

/// AWS Batch job ids are UUIDs (children add `:<index>`); anything far longer is not one.
const MAX_JOB_ID_CHARS: usize = 128;

/// Time the run keeps before its `TimeoutSeconds` for what comes after the last poll: one
/// more Watch (a 300 s Lambda timeout), the cleanup's TerminateJob calls (one per stage) with their
/// retries, and slack. Once the next poll would start later than this before the timeout, the
/// watcher fails the run, so that the state machine's Catch still runs and terminates the jobs
/// (after TimeoutSeconds no state runs at all).
pub const DEADLINE_MARGIN_SECONDS: u64 = 900;

/// Why a poll could not be answered. Each kind has a stable error type for the state machine's
/// Retry/Catch rules ([`WatchError::error_type`]).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The event does not have the shape the state machine sends.
    #[error("bad event: {field}: {problem}")]
    BadEvent { field: String, problem: String },
    /// A job id Batch does not know (wrong account or region, or jobs long expired).
    #[error("Batch does not know job {job_id:?} (jobs.{stage}.JobId)")]
    UnknownJob { stage: StageName, job_id: String },
    /// A stage job whose array size disagrees with the run's node count.
    #[error("jobs.{stage}.JobId {job_id:?} has {size} nodes but the event says nodes = {nodes}")]
    SizeMismatch { stage: StageName, job_id: String, size: u32, nodes: u64 },
    /// A Batch call failed (after the SDK's retries).
    #[error("Batch {call} failed: {source}")]
    Batch {
        call: &'static str,
        #[source]
        source: BatchApiError,
    },
    /// The run is not done and the next poll would come too close to the execution's
    /// `TimeoutSeconds` for the cleanup to run.
    #[error(
        "the run has taken {elapsed_seconds} s of its {timeout_seconds} s (TimeoutSeconds) and is \
         not done; the next poll in {poll_seconds} s would leave less than the \
         {DEADLINE_MARGIN_SECONDS} s its cleanup needs"
    )]
    RunDeadlineExceeded { elapsed_seconds: u64, poll_seconds: u64, timeout_seconds: u64 },
}

impl WatchError {
    /// The stable `errorType` Lambda reports, e.g. `nton.BadEvent`.
    pub fn error_type(&self) -> &'static str {
        match self {
            WatchError::BadEvent { .. } => "nton.BadEvent",
            WatchError::UnknownJob { .. } => "nton.UnknownJob",
            WatchError::SizeMismatch { .. } => "nton.SizeMismatch",
            WatchError::Batch { .. } => "nton.BatchApiError",
            WatchError::RunDeadlineExceeded { .. } => "nton.RunDeadlineExceeded",
        }
    }
}

impl From<WatchError> for Diagnostic {
    fn from(error: WatchError) -> Diagnostic {
        Diagnostic { error_type: error.error_type().to_string(), error_message: error.to_string() }
    }
}

/// The validated event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub workflow_id: Option<String>,
    pub nodes: Option<u64>,
    /// Each stage's job id, as the event names the stages (`jobs.<stage>.JobId`). However many
    /// stages the template submits; their run order comes from the jobs' dependencies
    /// ([`status::in_run_order`]).
    pub jobs: StageMap<String>,
    /// A retry's nodes (`nodeMap`, from init): array index `i` runs original node
    /// `node_map[i]`. Failed nodes are named by their original numbers. `None` for a run of
    /// the whole plan (the field absent or null).
    pub node_map: Option<Vec<u32>>,
    /// The run deadline, when the event carries `startedAt`, `now`, `pollSeconds` and
    /// `timeoutSeconds` (all four or none).
    pub deadline: Option<Deadline>,
}

/// Where the run stands against its execution's `TimeoutSeconds`, on the execution's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub elapsed_seconds: u64,
    pub poll_seconds: u64,
    pub timeout_seconds: u64,
}

impl Deadline {
    /// Whether the poll after this one would start within [`DEADLINE_MARGIN_SECONDS`] of the
    /// timeout.
    pub fn exceeded(&self) -> bool {
        self.elapsed_seconds + self.poll_seconds + DEADLINE_MARGIN_SECONDS >= self.timeout_seconds
    }
}

/// The event as the Watch state sends it, before the checks serde cannot state.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawWatchEvent {
    #[serde(default)]
    workflow_id: Option<String>,
    #[serde(default)]
    nodes: Option<u64>,
    jobs: StageMap<SubmittedJob>,
    #[serde(default)]
    node_map: Option<Vec<u64>>,
    #[serde(default)]
    started_at: Option<String>,
    #[serde(default)]
    now: Option<String>,
    #[serde(default)]
    poll_seconds: Option<u64>,
    #[serde(default)]
    timeout_seconds: Option<u64>,
}

/// One stage's entry of `jobs`: the submitJob result the state machine kept (`ResultSelector`).
#[derive(Deserialize)]
#[serde(expecting = "an object with a JobId")]
struct SubmittedJob {
    #[serde(rename = "JobId")]
    job_id: String,
}

impl WatchEvent {
    /// Validates the event, naming the first field that is missing or odd.
    pub fn parse(event: &Value) -> Result<WatchEvent, WatchError> {
        let bad = |field: &str, problem: String| WatchError::BadEvent {
            field: field.to_string(),
            problem,
        };
        if !event.is_object() {
            return Err(bad("event", format!("expected a JSON object, got {}", brief(event))));
        }
        let raw: RawWatchEvent = serde_path_to_error::deserialize(event).map_err(|error| {
            let path = error.path().to_string();
            let message = error.into_inner().to_string();
            // serde names a missing field in its message, at its parent's path: say it the way
            // every other field error is said, `<path>: missing`.
            if let Some(name) =
                message.strip_prefix("missing field `").and_then(|rest| rest.strip_suffix('`'))
            {
                let field = if path == "." { name.to_string() } else { format!("{path}.{name}") };
                return bad(&field, "missing".to_string());
            }
            let field = if path == "." { "event".to_string() } else { path };
            bad(&field, message)
        })?;
        let nodes = match raw.nodes {
            Some(n) if !(1..=MAX_NODES).contains(&n) => {
                return Err(bad(
                    "nodes",
                    format!("expected an integer from 1 to {MAX_NODES}, got {n}"),
                ));
            }
            nodes => nodes,
        };
        if raw.jobs.is_empty() {
            return Err(bad("jobs", "names no stage job".to_string()));
        }
        let mut jobs = StageMap::new();
        for (stage, job) in raw.jobs.iter() {
            validate_job_id(&job.job_id)
                .map_err(|problem| bad(&format!("jobs.{stage}.JobId"), problem))?;
            jobs.insert(stage.clone(), job.job_id.clone());
        }
        let node_map = match &raw.node_map {
            None => None,
            Some(list) => {
                let map = list
                    .iter()
                    .map(|&n| {
                        u32::try_from(n).ok().filter(|_| n < MAX_NODES).ok_or_else(|| {
                            bad(
                                "nodeMap",
                                format!("expected node numbers below {MAX_NODES}, got {n}"),
                            )
                        })
                    })
                    .collect::<Result<Vec<u32>, WatchError>>()?;
                let expected = nodes.unwrap_or(map.len() as u64);
                if map.is_empty() || map.len() as u64 != expected {
                    return Err(bad(
                        "nodeMap",
                        format!(
                            "has {} nodes but the event says nodes = {expected} (one per array \
                             index)",
                            map.len()
                        ),
                    ));
                }
                Some(map)
            }
        };
        let deadline = parse_deadline(&raw).map_err(|(field, problem)| bad(field, problem))?;
        Ok(WatchEvent { workflow_id: raw.workflow_id.clone(), nodes, jobs, node_map, deadline })
    }
}

/// The four deadline fields: all absent (no deadline) or all valid.
fn parse_deadline(raw: &RawWatchEvent) -> Result<Option<Deadline>, (&'static str, String)> {
    const FIELDS: [&str; 4] = ["startedAt", "now", "pollSeconds", "timeoutSeconds"];
    let given = [
        raw.started_at.is_some(),
        raw.now.is_some(),
        raw.poll_seconds.is_some(),
        raw.timeout_seconds.is_some(),
    ];
    if !given.contains(&true) {
        return Ok(None);
    }
    if let Some(missing) = FIELDS.into_iter().zip(given).find(|(_, given)| !given) {
        return Err((
            missing.0,
            format!("missing (the deadline needs all of {})", FIELDS.join(", ")),
        ));
    }
    let timestamp = |field: &'static str, text: &Option<String>| {
        let text = text.as_deref().unwrap_or_default();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|_| (field, format!("expected an RFC 3339 timestamp, got {text:?}")))
    };
    let seconds = |field: &'static str, value: Option<u64>| {
        value.filter(|s| *s > 0).ok_or_else(|| (field, "expected a positive integer, got 0".into()))
    };
    let started = timestamp("startedAt", &raw.started_at)?;
    let now = timestamp("now", &raw.now)?;
    // A clock that reads before the start counts as no time taken.
    let elapsed_seconds = u64::try_from((now - started).whole_seconds()).unwrap_or(0);
    Ok(Some(Deadline {
        elapsed_seconds,
        poll_seconds: seconds("pollSeconds", raw.poll_seconds)?,
        timeout_seconds: seconds("timeoutSeconds", raw.timeout_seconds)?,
    }))
}

fn validate_job_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("is empty".to_string());
    }
    if id.chars().count() > MAX_JOB_ID_CHARS {
        return Err(format!(
            "{:?} is {} characters, more than the {MAX_JOB_ID_CHARS} a Batch job id can have",
            id,
            id.chars().count()
        ));
    }
    if let Some(c) =
        id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':')))
    {
        return Err(format!(
            "{id:?} has {c:?}; a Batch job id has only letters, digits, '-', '_' and ':'"
        ));
    }
    Ok(())
}

/// A short rendering of an unexpected JSON value for an error message.
fn brief(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        None => text,
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// Answers one poll with the default [`StatusOptions`].
pub async fn handle(event: Value, batch: &dyn BatchApi, now_ms: i64) -> Result<Value, WatchError> {
    handle_with(event, batch, now_ms, &StatusOptions::default()).await
}

/// Answers one poll: validates the event, reads the jobs, returns the `RunStatus` JSON.
pub async fn handle_with(
    event: Value,
    batch: &dyn BatchApi,
    now_ms: i64,
    options: &StatusOptions,
) -> Result<Value, WatchError> {
    let event = WatchEvent::parse(&event)?;
    let job_ids: Vec<String> = event.jobs.values().cloned().collect();
    let described = batch
        .describe_jobs(&job_ids)
        .await
        .map_err(|source| WatchError::Batch { call: "DescribeJobs", source })?;
    let mut found = Vec::with_capacity(event.jobs.len());
    for (stage, job_id) in event.jobs.iter() {
        let job = described.iter().find(|job| &job.job_id == job_id).cloned().ok_or_else(|| {
            WatchError::UnknownJob { stage: stage.clone(), job_id: job_id.clone() }
        })?;
        check_size(&event, stage, &job)?;
        found.push((stage.clone(), job));
    }
    let mut jobs = status::in_run_order(found);

    let mut children = Children::new();
    for listing in status::listings_needed(&jobs, now_ms, options) {
        let mut listed = batch
            .list_array_children(&listing.array_job_id, listing.status)
            .await
            .map_err(|source| WatchError::Batch { call: "ListJobs", source })?;
        if let Some(map) = &event.node_map {
            to_original_nodes(&mut listed, map);
        }
        children.insert(listing.stage, listing.status, listed);
    }
    if let Some(map) = &event.node_map {
        plain_jobs_as_arrays(&mut jobs, &mut children, map);
    }

    let run = status::assess(&jobs, &children, now_ms, options);
    if let Some(deadline) = event.deadline.filter(|d| !run.done && d.exceeded()) {
        tracing::warn!(
            workflow_id = event.workflow_id.as_deref().unwrap_or(""),
            elapsed_seconds = deadline.elapsed_seconds,
            timeout_seconds = deadline.timeout_seconds,
            "run deadline reached"
        );
        return Err(WatchError::RunDeadlineExceeded {
            elapsed_seconds: deadline.elapsed_seconds,
            poll_seconds: deadline.poll_seconds,
            timeout_seconds: deadline.timeout_seconds,
        });
    }
    tracing::info!(
        workflow_id = event.workflow_id.as_deref().unwrap_or(""),
        done = run.done,
        failed = run.failed,
        failed_node_count = run.failed_node_count,
        stuck = run.stuck.len(),
        "polled stage jobs"
    );
    for stuck in &run.stuck {
        tracing::warn!(stage = %stuck.stage, runnable = stuck.runnable, "{}", stuck.message);
    }
    Ok(serde_json::to_value(&run).expect("RunStatus serializes to JSON"))
}

/// Gives each listed child of a retry's array the number of the original node its index runs
/// (`arrayProperties.index` and the `:<index>` suffix of its job id), so the status model names
/// original nodes. An index past the map is left as it is.
fn to_original_nodes(children: &mut [nton_core::batch::JobSummary], map: &[u32]) {
    for child in children {
        let index =
            child.array_properties.as_ref().and_then(|props| props.index).or_else(|| {
                child.job_id.rsplit_once(':').and_then(|(_, index)| index.parse().ok())
            });
        let Some(node) = index.and_then(|index| map.get(index as usize).copied()) else {
            continue;
        };
        child.array_properties.get_or_insert_with(Default::default).index = Some(node);
        if let Some((parent, _)) = child.job_id.rsplit_once(':') {
            child.job_id = format!("{parent}:{node}");
        }
    }
}

/// A one-node retry runs plain jobs, which the status model counts as node 0. Shown to it as
/// arrays of one child whose index is the retried node, a failure names that node instead.
fn plain_jobs_as_arrays(jobs: &mut StageJobs, children: &mut Children, map: &[u32]) {
    let [node] = map else {
        return;
    };
    for (stage, job) in jobs.iter_mut() {
        // Only a failure names a node; other plain jobs stay as they are.
        if job.status != nton_core::batch::JobStatus::Failed
            || job.array_properties.as_ref().is_some_and(|p| p.size.is_some())
        {
            continue;
        }
        let container = job.attempts.last().and_then(|a| a.container.as_ref());
        let child = nton_core::batch::JobSummary {
            job_id: format!("{}:{node}", job.job_id),
            job_name: job.job_name.clone(),
            status: Some(job.status),
            status_reason: job.status_reason.clone(),
            created_at: job.created_at,
            started_at: job.started_at,
            stopped_at: job.stopped_at,
            array_properties: Some(nton_core::batch::ArrayPropertiesSummary {
                size: None,
                index: Some(*node),
            }),
            container: container.map(|c| nton_core::batch::ContainerSummary {
                exit_code: c.exit_code,
                reason: c.reason.clone(),
            }),
        };
        job.array_properties = Some(nton_core::batch::ArrayPropertiesDetail {
            status_summary: Some([(job.status, 1)].into_iter().collect()),
            size: Some(1),
            index: None,
        });
        children.insert(stage.clone(), job.status, vec![child]);
    }
}

/// An array job must have as many children as the run has nodes; a plain job stands for a
/// one-node run.
fn check_size(event: &WatchEvent, stage: &StageName, job: &JobDetail) -> Result<(), WatchError> {
    let Some(nodes) = event.nodes else {
        return Ok(());
    };
    let size = job.array_properties.as_ref().and_then(|props| props.size).unwrap_or(1);
    if u64::from(size) != nodes {
        return Err(WatchError::SizeMismatch {
            stage: stage.clone(),
            job_id: job.job_id.clone(),
            size,
            nodes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use nton_core::batch::{JobStatus, JobSummary};
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    /// A Batch that answers from fixtures and records every call.
    struct FakeBatch {
        jobs: Vec<JobDetail>,
        children: Vec<(String, JobStatus, Vec<JobSummary>)>,
        calls: Mutex<Vec<String>>,
        fail_with: Option<&'static str>,
    }

    impl FakeBatch {
        fn new(jobs: Value, children: Value) -> FakeBatch {
            let children = children
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| {
                    (
                        entry["arrayJobId"].as_str().unwrap().to_string(),
                        JobStatus::parse(entry["status"].as_str().unwrap()).unwrap(),
                        serde_json::from_value(entry["jobSummaryList"].clone()).unwrap(),
                    )
                })
                .collect();
            FakeBatch {
                jobs: serde_json::from_value(jobs).unwrap(),
                children,
                calls: Mutex::new(Vec::new()),
                fail_with: None,
            }
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait::async_trait]
    impl BatchApi for FakeBatch {
        async fn describe_jobs(&self, job_ids: &[String]) -> Result<Vec<JobDetail>, BatchApiError> {
            self.calls.lock().unwrap().push(format!("DescribeJobs {}", job_ids.join(",")));
            if let Some(code) = self.fail_with {
                return Err(BatchApiError {
                    code: code.to_string(),
                    message: "Rate exceeded".to_string(),
                });
            }
            Ok(self.jobs.iter().filter(|job| job_ids.contains(&job.job_id)).cloned().collect())
        }

        async fn list_array_children(
            &self,
            array_job_id: &str,
            status: JobStatus,
        ) -> Result<Vec<JobSummary>, BatchApiError> {
            self.calls.lock().unwrap().push(format!("ListJobs {array_job_id} {status}"));
            Ok(self
                .children
                .iter()
                .find(|(id, s, _)| id == array_job_id && *s == status)
                .map(|(_, _, list)| list.clone())
                .unwrap_or_default())
        }
    }

    fn event() -> Value {
        json!({
            "workflowId": "5f0c7a8e-3b1d-4c2a-9e7f-0a1b2c3d4e5f",
            "nodes": 4,
            "jobs": {
                "procure": {"JobId": "j-procure"},
                "process": {"JobId": "j-process"},
                "egress": {"JobId": "j-egress"}
            }
        })
    }

    /// `dependsOn` as Batch reports it for the template's chain: each stage job depends on
    /// the one before (N_TO_N).
    fn chained(mut job: Value) -> Value {
        let before = match job["jobId"].as_str().unwrap() {
            "j-process" => "j-procure",
            "j-egress" => "j-process",
            _ => return job,
        };
        job["dependsOn"] = json!([{"jobId": before, "type": "N_TO_N"}]);
        job
    }

    fn parent(id: &str, status: &str, summary: Value) -> Value {
        chained(json!({"jobId": id, "jobName": id, "status": status, "createdAt": NOW - 60_000,
               "arrayProperties": {"size": 4, "statusSummary": summary}}))
    }

    #[tokio::test]
    async fn a_finished_run_costs_one_describe_call() {
        let batch = FakeBatch::new(
            json!([
                parent("j-procure", "SUCCEEDED", json!({"SUCCEEDED": 4})),
                parent("j-process", "SUCCEEDED", json!({"SUCCEEDED": 4})),
                parent("j-egress", "SUCCEEDED", json!({"SUCCEEDED": 4})),
            ]),
            json!([]),
        );
        let out = handle(event(), &batch, NOW).await.unwrap();
        assert_eq!(out["done"], json!(true));
        assert_eq!(out["failed"], json!(false));
        assert_eq!(out["error"], Value::Null);
        assert_eq!(out["cause"], Value::Null);
        assert_eq!(out["progress"]["egress"]["counts"]["SUCCEEDED"], json!(4));
        assert_eq!(batch.calls(), vec!["DescribeJobs j-procure,j-process,j-egress"]);
    }

    /// The event with the deadline fields: `elapsed` seconds into a run of `timeout` seconds
    /// that polls every `poll` seconds.
    fn event_at(elapsed: i64, poll: u64, timeout: u64) -> Value {
        let start = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let format = &time::format_description::well_known::Rfc3339;
        let mut e = event();
        e["startedAt"] = json!(start.format(format).unwrap());
        e["now"] = json!((start + time::Duration::seconds(elapsed)).format(format).unwrap());
        e["pollSeconds"] = json!(poll);
        e["timeoutSeconds"] = json!(timeout);
        e
    }

    #[tokio::test]
    async fn a_run_not_done_fails_once_its_next_poll_would_leave_no_time_to_clean_up() {
        let running = || {
            FakeBatch::new(
                json!([
                    parent("j-procure", "PENDING", json!({"RUNNING": 4})),
                    parent("j-process", "PENDING", json!({"PENDING": 4})),
                    parent("j-egress", "PENDING", json!({"PENDING": 4})),
                ]),
                json!([]),
            )
        };
        // 3600 s timeout, 30 s polls, 900 s margin: the last poll that may be followed by
        // another is at 2669 s.
        let out = handle(event_at(2669, 30, 3600), &running(), NOW).await.unwrap();
        assert_eq!(out["done"], json!(false));
        let error = handle(event_at(2670, 30, 3600), &running(), NOW).await.unwrap_err();
        assert_eq!(error.error_type(), "nton.RunDeadlineExceeded");
        assert!(error.to_string().starts_with("the run has taken 2670 s of its 3600 s"), "{error}");
        // A run that has ended is reported as it is, deadline or not.
        let done = FakeBatch::new(
            json!([
                parent("j-procure", "SUCCEEDED", json!({"SUCCEEDED": 4})),
                parent("j-process", "SUCCEEDED", json!({"SUCCEEDED": 4})),
                parent("j-egress", "SUCCEEDED", json!({"SUCCEEDED": 4})),
            ]),
            json!([]),
        );
        let out = handle(event_at(3599, 30, 3600), &done, NOW).await.unwrap();
        assert_eq!(out["done"], json!(true));
    }

    #[tokio::test]
    async fn deadline_fields_come_all_together_and_well_formed() {
        let batch = FakeBatch::new(json!([]), json!([]));
        let mut partial = event();
        partial["pollSeconds"] = json!(30);
        let error = handle(partial, &batch, NOW).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "bad event: startedAt: missing (the deadline needs all of startedAt, now, \
             pollSeconds, timeoutSeconds)"
        );
        let mut bad_time = event_at(10, 30, 3600);
        bad_time["now"] = json!("yesterday");
        let error = handle(bad_time, &batch, NOW).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "bad event: now: expected an RFC 3339 timestamp, got \"yesterday\""
        );
        let mut zero = event_at(10, 30, 3600);
        zero["timeoutSeconds"] = json!(0);
        let error = handle(zero, &batch, NOW).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "bad event: timeoutSeconds: expected a positive integer, got 0"
        );
        // Step Functions' own format: milliseconds and Z.
        let mut aws = event_at(0, 30, 3600);
        aws["startedAt"] = json!("2026-12-01T23:00:00.123Z");
        aws["now"] = json!("2026-12-01T23:10:00.456Z");
        let parsed = WatchEvent::parse(&aws).unwrap();
        assert_eq!(
            parsed.deadline,
            Some(Deadline { elapsed_seconds: 600, poll_seconds: 30, timeout_seconds: 3600 })
        );
    }

    #[tokio::test]
    async fn failed_children_are_listed_only_for_stages_with_failures() {
        let batch = FakeBatch::new(
            json!([
                parent("j-procure", "FAILED", json!({"SUCCEEDED": 3, "FAILED": 1})),
                parent("j-process", "FAILED", json!({"SUCCEEDED": 3, "FAILED": 1})),
                parent("j-egress", "FAILED", json!({"SUCCEEDED": 3, "FAILED": 1})),
            ]),
            json!([
                {"arrayJobId": "j-procure", "status": "FAILED", "jobSummaryList": [
                    {"jobId": "j-procure:2", "jobName": "p", "status": "FAILED",
                     "statusReason": "Essential container in task exited",
                     "container": {"exitCode": 1}, "arrayProperties": {"index": 2}}]},
                {"arrayJobId": "j-process", "status": "FAILED", "jobSummaryList": [
                    {"jobId": "j-process:2", "jobName": "p", "status": "FAILED",
                     "statusReason": "Dependent Job failed", "arrayProperties": {"index": 2}}]},
                {"arrayJobId": "j-egress", "status": "FAILED", "jobSummaryList": [
                    {"jobId": "j-egress:2", "jobName": "p", "status": "FAILED",
                     "statusReason": "Dependent Job failed", "arrayProperties": {"index": 2}}]}
            ]),
        );
        let out = handle(event(), &batch, NOW).await.unwrap();
        assert_eq!(out["done"], json!(true));
        assert_eq!(out["failed"], json!(true));
        assert_eq!(out["error"], json!("nton.NodesFailed"));
        assert_eq!(
            out["cause"],
            json!(
                "1 of 4 nodes failed: procure failed on node 2 (Essential container in task exited, exit code 1); process and egress did not run on that node."
            )
        );
        assert_eq!(out["failedNodes"][0]["skipped"], json!(["process", "egress"]));
        assert_eq!(
            batch.calls(),
            vec![
                "DescribeJobs j-procure,j-process,j-egress",
                "ListJobs j-procure FAILED",
                "ListJobs j-process FAILED",
                "ListJobs j-egress FAILED",
            ]
        );

        let partly = FakeBatch::new(
            json!([
                parent("j-procure", "SUCCEEDED", json!({"SUCCEEDED": 4})),
                parent("j-process", "PENDING", json!({"SUCCEEDED": 2, "RUNNING": 1, "FAILED": 1})),
                parent("j-egress", "PENDING", json!({"PENDING": 2, "SUCCEEDED": 2})),
            ]),
            json!([]),
        );
        let out = handle(event(), &partly, NOW).await.unwrap();
        assert_eq!(out["done"], json!(false));
        assert_eq!(
            partly.calls(),
            vec!["DescribeJobs j-procure,j-process,j-egress", "ListJobs j-process FAILED"]
        );
    }

    #[tokio::test]
    async fn a_stuck_stage_lists_its_runnable_children() {
        let mut procure = parent("j-procure", "PENDING", json!({"RUNNABLE": 4}));
        procure["createdAt"] = json!(NOW - 3_600_000);
        let batch = FakeBatch::new(
            json!([
                procure,
                parent("j-process", "PENDING", json!({"PENDING": 4})),
                parent("j-egress", "PENDING", json!({"PENDING": 4})),
            ]),
            json!([{"arrayJobId": "j-procure", "status": "RUNNABLE", "jobSummaryList": [
                {"jobId": "j-procure:0", "jobName": "p", "status": "RUNNABLE", "createdAt": NOW - 3_600_000},
                {"jobId": "j-procure:1", "jobName": "p", "status": "RUNNABLE", "createdAt": NOW - 3_600_000}
            ]}]),
        );
        let out = handle(event(), &batch, NOW).await.unwrap();
        assert_eq!(out["done"], json!(false));
        assert_eq!(
            out["stuck"][0]["message"],
            json!(
                "2 children of procure RUNNABLE for over 600s with none running: check the compute environment's capacity"
            )
        );
        assert_eq!(batch.calls()[1], "ListJobs j-procure RUNNABLE");

        // The threshold comes from the options: 90 s of RUNNABLE is stuck past 60 s, not 600 s.
        let recent = || {
            let mut procure = parent("j-procure", "PENDING", json!({"RUNNABLE": 4}));
            procure["createdAt"] = json!(NOW - 90_000);
            FakeBatch::new(
                json!([
                    procure,
                    parent("j-process", "PENDING", json!({"PENDING": 4})),
                    parent("j-egress", "PENDING", json!({"PENDING": 4})),
                ]),
                json!([{"arrayJobId": "j-procure", "status": "RUNNABLE", "jobSummaryList": [
                    {"jobId": "j-procure:0", "jobName": "p", "status": "RUNNABLE", "createdAt": NOW - 90_000},
                    {"jobId": "j-procure:1", "jobName": "p", "status": "RUNNABLE", "createdAt": NOW - 90_000},
                    {"jobId": "j-procure:2", "jobName": "p", "status": "RUNNABLE", "createdAt": NOW - 90_000},
                    {"jobId": "j-procure:3", "jobName": "p", "status": "RUNNABLE", "createdAt": NOW - 90_000}
                ]}]),
            )
        };
        let batch = recent();
        let options = StatusOptions { stuck_after_ms: 60_000 };
        let out = handle_with(event(), &batch, NOW, &options).await.unwrap();
        assert_eq!(out["stuck"][0]["runnable"], json!(4));
        assert_eq!(out["stuck"][0]["overSeconds"], json!(60));
        let batch = recent();
        let out = handle(event(), &batch, NOW).await.unwrap();
        assert_eq!(out["stuck"], json!([]));
        assert_eq!(batch.calls().len(), 1, "no RUNNABLE listing below the threshold");
    }

    #[tokio::test]
    async fn bad_events_name_the_field() {
        let batch = FakeBatch::new(json!([]), json!([]));
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "bad event: event: expected a JSON object, got []"),
            (json!({"nodes": 4}), "bad event: jobs: missing"),
            (json!({"jobs": {}}), "bad event: jobs: names no stage job"),
            (
                json!({"jobs": {"procure": {"JobId": "a"}, "process": {"Id": "b"}, "egress": {"JobId": "c"}}}),
                "bad event: jobs.process.JobId: missing",
            ),
            (
                json!({"jobs": {"procure": {"JobId": 7}, "process": {"JobId": "b"}, "egress": {"JobId": "c"}}}),
                "bad event: jobs.procure.JobId: invalid type: integer `7`, expected a string",
            ),
            (
                json!({"jobs": {"procure": {"JobId": ""}, "process": {"JobId": "b"}, "egress": {"JobId": "c"}}}),
                "bad event: jobs.procure.JobId: is empty",
            ),
            (
                json!({"jobs": {"procure": {"JobId": "a b"}, "process": {"JobId": "b"}, "egress": {"JobId": "c"}}}),
                "bad event: jobs.procure.JobId: \"a b\" has ' '; a Batch job id has only letters, digits, '-', '_' and ':'",
            ),
            (
                json!({"jobs": {"procure": "a", "process": {"JobId": "b"}, "egress": {"JobId": "c"}}}),
                "bad event: jobs.procure: invalid type: string \"a\", expected an object with a JobId",
            ),
            (
                json!({"nodes": 0, "jobs": {"procure": {"JobId": "a"}}}),
                "bad event: nodes: expected an integer from 1 to 10000, got 0",
            ),
            (
                json!({"nodes": 10001, "jobs": {"procure": {"JobId": "a"}}}),
                "bad event: nodes: expected an integer from 1 to 10000, got 10001",
            ),
            (
                json!({"workflowId": 5, "jobs": {}}),
                "bad event: workflowId: invalid type: integer `5`, expected a string",
            ),
        ];
        for (event, message) in cases {
            let error = handle(event.clone(), &batch, NOW).await.unwrap_err();
            assert_eq!(error.to_string(), message, "event {event}");
            assert_eq!(error.error_type(), "nton.BadEvent");
        }
        let long = "x".repeat(129);
        let error = handle(
            json!({"jobs": {"procure": {"JobId": "a"}, "process": {"JobId": "b"}, "egress": {"JobId": long}}}),
            &batch,
            NOW,
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("jobs.egress.JobId"), "{error}");
        assert!(error.to_string().contains("129 characters, more than the 128"), "{error}");
        // Nothing reached Batch for a bad event.
        assert!(batch.calls().is_empty());
    }

    #[tokio::test]
    async fn a_job_batch_does_not_know_is_named() {
        let batch = FakeBatch::new(
            json!([
                parent("j-procure", "SUCCEEDED", json!({"SUCCEEDED": 4})),
                parent("j-egress", "SUCCEEDED", json!({"SUCCEEDED": 4})),
            ]),
            json!([]),
        );
        let error = handle(event(), &batch, NOW).await.unwrap_err();
        assert_eq!(error.to_string(), "Batch does not know job \"j-process\" (jobs.process.JobId)");
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "nton.UnknownJob");
    }

    #[tokio::test]
    async fn sizes_must_match_the_node_count() {
        let batch = FakeBatch::new(
            json!([
                parent("j-procure", "SUCCEEDED", json!({"SUCCEEDED": 4})),
                parent("j-process", "SUCCEEDED", json!({"SUCCEEDED": 4})),
                chained(json!({"jobId": "j-egress", "jobName": "e", "status": "SUCCEEDED"})),
            ]),
            json!([]),
        );
        let error = handle(event(), &batch, NOW).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "jobs.egress.JobId \"j-egress\" has 1 nodes but the event says nodes = 4"
        );
        assert_eq!(error.error_type(), "nton.SizeMismatch");
    }

    #[tokio::test]
    async fn a_one_node_run_of_plain_jobs() {
        let plain =
            |id: &str, status: &str| chained(json!({"jobId": id, "jobName": id, "status": status}));
        let batch = FakeBatch::new(
            json!([
                plain("j-procure", "SUCCEEDED"),
                plain("j-process", "RUNNING"),
                plain("j-egress", "PENDING"),
            ]),
            json!([]),
        );
        let mut one = event();
        one["nodes"] = json!(1);
        let out = handle(one, &batch, NOW).await.unwrap();
        assert_eq!(out["done"], json!(false));
        assert_eq!(out["progress"]["process"]["counts"]["RUNNING"], json!(1));
        assert_eq!(out["progress"]["process"]["size"], json!(1));
        assert_eq!(batch.calls().len(), 1);
    }

    #[tokio::test]
    async fn a_retry_names_the_original_nodes_of_its_array_indices() {
        let batch = FakeBatch::new(
            json!([
                parent("j-procure", "FAILED", json!({"SUCCEEDED": 3, "FAILED": 1})),
                parent("j-process", "FAILED", json!({"SUCCEEDED": 3, "FAILED": 1})),
                parent("j-egress", "FAILED", json!({"SUCCEEDED": 3, "FAILED": 1})),
            ]),
            json!([
                {"arrayJobId": "j-procure", "status": "FAILED", "jobSummaryList": [
                    {"jobId": "j-procure:2", "jobName": "p", "status": "FAILED",
                     "statusReason": "Essential container in task exited",
                     "container": {"exitCode": 1}, "arrayProperties": {"index": 2}}]},
                // No index field: the job id's suffix is the index.
                {"arrayJobId": "j-process", "status": "FAILED", "jobSummaryList": [
                    {"jobId": "j-process:2", "jobName": "p", "status": "FAILED",
                     "statusReason": "Dependent Job failed"}]},
                {"arrayJobId": "j-egress", "status": "FAILED", "jobSummaryList": [
                    {"jobId": "j-egress:2", "jobName": "p", "status": "FAILED",
                     "statusReason": "Dependent Job failed", "arrayProperties": {"index": 2}}]}
            ]),
        );
        let mut retry = event();
        retry["nodeMap"] = json!([40, 17, 93, 5]);
        let out = handle(retry, &batch, NOW).await.unwrap();
        assert_eq!(
            out["cause"],
            json!(
                "1 of 4 nodes failed: procure failed on node 93 (Essential container in task exited, exit code 1); process and egress did not run on that node."
            )
        );
        assert_eq!(out["failedNodes"][0]["node"], json!(93));
        assert_eq!(out["failedNodes"][0]["skipped"], json!(["process", "egress"]));

        // A null map is a run of the whole plan.
        let mut whole = event();
        whole["nodeMap"] = Value::Null;
        let out = handle(whole, &batch, NOW).await.unwrap();
        assert_eq!(out["failedNodes"][0]["node"], json!(2));
    }

    #[tokio::test]
    async fn a_one_node_retry_of_plain_jobs_names_its_node() {
        let batch = FakeBatch::new(
            json!([
                {"jobId": "j-procure", "jobName": "p", "status": "FAILED",
                 "statusReason": "Essential container in task exited",
                 "attempts": [{"container": {"exitCode": 1}}]},
                chained(json!({"jobId": "j-process", "jobName": "p", "status": "FAILED",
                 "statusReason": "Dependent Job failed"})),
                chained(json!({"jobId": "j-egress", "jobName": "e", "status": "FAILED",
                 "statusReason": "Dependent Job failed"})),
            ]),
            json!([]),
        );
        let mut one = event();
        one["nodes"] = json!(1);
        one["nodeMap"] = json!([6]);
        let out = handle(one, &batch, NOW).await.unwrap();
        assert_eq!(
            out["cause"],
            json!(
                "1 of 1 nodes failed: procure failed on node 6 (Essential container in task exited, exit code 1); process and egress did not run on that node."
            )
        );
        assert_eq!(out["progress"]["procure"]["size"], json!(1));
        assert_eq!(batch.calls().len(), 1, "no listing for plain jobs");
    }

    #[test]
    fn a_node_map_must_fit_the_event() {
        for (map, want) in [
            (json!([1, 2]), "bad event: nodeMap: has 2 nodes but the event says nodes = 4"),
            (json!([]), "bad event: nodeMap: has 0 nodes"),
            (
                json!([1, 2, 3, -1]),
                "bad event: nodeMap[3]: invalid value: integer `-1`, expected u64",
            ),
            (
                json!([1, 2, 3, 10000]),
                "bad event: nodeMap: expected node numbers below 10000, got 10000",
            ),
            (json!("1,2"), "bad event: nodeMap: invalid type: string \"1,2\", expected a sequence"),
        ] {
            let mut bad = event();
            bad["nodeMap"] = map;
            let message = WatchEvent::parse(&bad).unwrap_err().to_string();
            assert!(message.starts_with(want) || message.ends_with(want), "{message}");
        }
    }

    #[tokio::test]
    async fn batch_errors_keep_their_code() {
        let mut batch = FakeBatch::new(json!([]), json!([]));
        batch.fail_with = Some("TooManyRequestsException");
        let error = handle(event(), &batch, NOW).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "Batch DescribeJobs failed: TooManyRequestsException: Rate exceeded"
        );
        assert_eq!(error.error_type(), "nton.BatchApiError");
    }

    #[tokio::test]
    async fn a_fourth_stage_in_the_event_is_watched_in_its_dependency_order() {
        let mut check = parent("j-check", "FAILED", json!({"SUCCEEDED": 3, "FAILED": 1}));
        check["dependsOn"] = json!([{"jobId": "j-process", "type": "N_TO_N"}]);
        let mut egress = parent("j-egress", "FAILED", json!({"SUCCEEDED": 3, "FAILED": 1}));
        egress["dependsOn"] = json!([{"jobId": "j-check", "type": "N_TO_N"}]);
        let batch = FakeBatch::new(
            json!([
                parent("j-procure", "SUCCEEDED", json!({"SUCCEEDED": 4})),
                parent("j-process", "SUCCEEDED", json!({"SUCCEEDED": 4})),
                check,
                egress,
            ]),
            json!([
                {"arrayJobId": "j-check", "status": "FAILED", "jobSummaryList": [
                    {"jobId": "j-check:3", "jobName": "c", "status": "FAILED",
                     "statusReason": "Essential container in task exited",
                     "container": {"exitCode": 2}, "arrayProperties": {"index": 3}}]},
                {"arrayJobId": "j-egress", "status": "FAILED", "jobSummaryList": [
                    {"jobId": "j-egress:3", "jobName": "e", "status": "FAILED",
                     "statusReason": "Dependent Job failed", "arrayProperties": {"index": 3}}]}
            ]),
        );
        let mut four = event();
        // Named in no particular order: the jobs' dependencies give the run order.
        four["jobs"] = json!({
            "egress": {"JobId": "j-egress"}, "check": {"JobId": "j-check"},
            "procure": {"JobId": "j-procure"}, "process": {"JobId": "j-process"}
        });
        let out = handle(four, &batch, NOW).await.unwrap();
        assert_eq!(
            out["cause"],
            json!(
                "1 of 4 nodes failed: check failed on node 3 (Essential container in task exited, exit code 2); egress did not run on that node."
            )
        );
        assert_eq!(out["progress"]["check"]["position"], json!(2));
        assert_eq!(out["progress"]["egress"]["position"], json!(3));
        assert_eq!(out["failedNodes"][0]["stage"], json!("check"));
    }
}
