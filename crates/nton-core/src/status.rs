//! The job-status model: from the stage jobs of a run (as `DescribeJobs` returns them)
//! and the children `ListJobs` returned, decide whether the run is done, whether it failed,
//! how far each stage is, which nodes failed and why, and whether a stage looks stuck.
//!
//! Pure: no I/O and no clock. The watcher Lambda and the local engine both feed it, so every
//! rule below is tested once, here, against fixtures in the Batch API's JSON shape.
//!
//! The output, [`RunStatus`], is what the state machine's `Watch` state reads (`done`, `failed`,
//! `error`, `cause`, `progress`) plus details for people (`failedNodes`, `stuck`). It stays far
//! below Step Functions' 256 KiB payload limit: at most [`MAX_FAILED_NODES`] nodes are listed,
//! reasons are cut at [`MAX_REASON_CHARS`] characters and the cause names a bounded number of
//! nodes and failure groups.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::batch::{DEPENDENCY_FAILED_REASON, JobDetail, JobStatus, JobSummary};
use crate::stage::{StageMap, StageName};

/// The `error` of a run in which a node failed; the state machine's `Fail` state reports it.
pub const NODES_FAILED_ERROR: &str = "nton.NodesFailed";

/// At most this many nodes are listed in [`RunStatus::failed_nodes`].
pub const MAX_FAILED_NODES: usize = 100;

/// Failure reasons longer than this many characters are cut (with a trailing `…`).
pub const MAX_REASON_CHARS: usize = 240;

/// At most this many node numbers are named per failure group in the cause.
const MAX_CAUSE_NODES: usize = 20;

/// At most this many failure groups are described in the cause.
const MAX_CAUSE_GROUPS: usize = 5;

/// Tunables of the assessment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusOptions {
    /// Children RUNNABLE for longer than this (milliseconds), with none of their stage
    /// STARTING or RUNNING, are reported as stuck.
    pub stuck_after_ms: i64,
}

impl Default for StatusOptions {
    fn default() -> Self {
        // Fargate and EC2 capacity normally arrives within a few minutes; ten minutes without
        // a single child starting means the compute environment cannot place the jobs.
        StatusOptions { stuck_after_ms: 10 * 60 * 1000 }
    }
}

/// The stage jobs of one run (array parents, or plain jobs for a one-node run), in run order.
pub type StageJobs = StageMap<JobDetail>;

/// Puts a run's stage jobs in run order: a job comes after every other stage job it depends on
/// (`dependsOn`, as the state machine chains them N_TO_N), then by creation time, then as given.
/// The jobs themselves say the order, so no list of stages is needed: a template's fourth stage
/// takes its place by its dependency.
pub fn in_run_order(jobs: Vec<(StageName, JobDetail)>) -> StageJobs {
    let mut left: Vec<(usize, StageName, JobDetail)> =
        jobs.into_iter().enumerate().map(|(given, (name, job))| (given, name, job)).collect();
    let mut ordered = StageMap::new();
    while !left.is_empty() {
        let waits_on_another = |job: &JobDetail, others: &[(usize, StageName, JobDetail)]| {
            job.depends_on.iter().any(|dependency| {
                others.iter().any(|(_, _, other)| {
                    other.job_id != job.job_id && dependency.job_id.as_ref() == Some(&other.job_id)
                })
            })
        };
        let ready = (0..left.len())
            .filter(|&i| !waits_on_another(&left[i].2, &left))
            // A dependency cycle cannot come from Batch; taking every job keeps this total.
            .collect::<Vec<usize>>();
        let candidates = if ready.is_empty() { (0..left.len()).collect() } else { ready };
        let next = candidates
            .into_iter()
            .min_by_key(|&i| (left[i].2.created_at.unwrap_or(i64::MAX), left[i].0))
            .expect("left is not empty");
        let (_, name, job) = left.remove(next);
        ordered.insert(name, job);
    }
    ordered
}

/// One `ListJobs(arrayJobId, jobStatus)` call the assessment wants made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildListing {
    pub stage: StageName,
    pub array_job_id: String,
    pub status: JobStatus,
}

/// The children `ListJobs` returned, by stage and status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Children {
    lists: BTreeMap<(StageName, JobStatus), Vec<JobSummary>>,
}

impl Children {
    pub fn new() -> Children {
        Children::default()
    }

    /// Records the answer of one listing (replacing an earlier answer for the same pair).
    pub fn insert(&mut self, stage: StageName, status: JobStatus, children: Vec<JobSummary>) {
        self.lists.insert((stage, status), children);
    }

    /// The children listed for a stage and status, if that listing was made.
    pub fn get(&self, stage: &StageName, status: JobStatus) -> Option<&[JobSummary]> {
        self.lists.get(&(stage.clone(), status)).map(Vec::as_slice)
    }
}

/// What the watcher returns for one poll.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// Every stage job has ended (SUCCEEDED or FAILED) with no child still in flight.
    pub done: bool,
    /// Done, and some node failed in some stage.
    pub failed: bool,
    /// [`NODES_FAILED_ERROR`] when failed, else null.
    pub error: Option<String>,
    /// One paragraph naming the failed stages and nodes when failed, else null.
    pub cause: Option<String>,
    /// Per stage, in run order: job id, status, size and children by status.
    #[serde(deserialize_with = "progress_in_run_order")]
    pub progress: StageMap<StageProgress>,
    /// The first [`MAX_FAILED_NODES`] failed nodes, by node number (known even while running).
    pub failed_nodes: Vec<FailedNode>,
    /// How many nodes failed in total.
    pub failed_node_count: usize,
    /// Stages whose children wait for capacity that does not come.
    pub stuck: Vec<StuckStage>,
}

/// How far one stage is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageProgress {
    /// The stage's place in the run, 0 for the first. The JSON object of stages does not keep
    /// its order everywhere (serde_json's `Value` sorts keys unless `preserve_order` is on, and
    /// the run record holds a `Value`), so the order travels in the entries themselves.
    #[serde(default)]
    pub position: usize,
    pub job_id: String,
    /// The status of the stage job itself (for an array, the parent's).
    pub status: JobStatus,
    /// Number of nodes (1 for a plain job).
    pub size: u32,
    /// Children by status; every status is present, 0 when none.
    pub counts: BTreeMap<JobStatus, u32>,
}

/// Reads `progress` back in run order (by `position`; entries without one keep the order the
/// object gives).
fn progress_in_run_order<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<StageMap<StageProgress>, D::Error> {
    let progress = StageMap::<StageProgress>::deserialize(deserializer)?;
    let mut entries: Vec<(StageName, StageProgress)> = progress.into_iter().collect();
    entries.sort_by_key(|(_, entry)| entry.position);
    Ok(entries.into_iter().collect())
}

/// A node that failed: the stage where it first failed on its own, and the later stages that
/// failed only because of it.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedNode {
    pub node: u32,
    /// The root failure's stage.
    pub stage: StageName,
    /// Why it failed (status reason, container reason, exit code), cut to [`MAX_REASON_CHARS`].
    pub reason: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Later stages that failed on this node without running, because of the root failure.
    #[serde(default)]
    pub skipped: Vec<StageName>,
}

/// A stage whose children sit RUNNABLE with none running.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StuckStage {
    pub stage: StageName,
    /// Children RUNNABLE for longer than the threshold.
    pub runnable: u32,
    /// The threshold, in seconds.
    pub over_seconds: i64,
    pub message: String,
}

/// The `ListJobs` calls needed for this poll: FAILED children of stages that have some, and
/// RUNNABLE children of stages that may be stuck. Stages with nothing to explain cost no call.
pub fn listings_needed(
    jobs: &StageJobs,
    now_ms: i64,
    options: &StatusOptions,
) -> Vec<ChildListing> {
    let mut listings = Vec::new();
    for (stage, job) in jobs.iter() {
        if !is_array(job) {
            // A plain job carries its own status and reason: nothing to list.
            continue;
        }
        let counts = counts_of(job);
        // A FAILED parent whose summary shows no FAILED child is inconsistent (the summary
        // lags, or the parent failed as a whole): listing tells which, and costs one call.
        if counts[&JobStatus::Failed] > 0 || job.status == JobStatus::Failed {
            listings.push(ChildListing {
                stage: stage.clone(),
                array_job_id: job.job_id.clone(),
                status: JobStatus::Failed,
            });
        }
        if possibly_stuck(jobs, stage, now_ms, options).is_some() {
            listings.push(ChildListing {
                stage: stage.clone(),
                array_job_id: job.job_id.clone(),
                status: JobStatus::Runnable,
            });
        }
    }
    listings
}

/// Decides the run's status from its stage jobs and the listed children.
pub fn assess(
    jobs: &StageJobs,
    children: &Children,
    now_ms: i64,
    options: &StatusOptions,
) -> RunStatus {
    let progress = jobs.map(|stage, job| StageProgress {
        position: jobs.position(stage).expect("a stage of this map"),
        job_id: job.job_id.clone(),
        status: job.status,
        size: size_of(job),
        counts: counts_of(job),
    });

    let done = jobs.values().all(stage_ended);
    let failures = collect_failures(jobs, children);
    let nodes = root_failures(&failures, jobs);
    let stage_failed = |stage: &StageName, job: &JobDetail| {
        job.status == JobStatus::Failed
            || counts_of(job)[&JobStatus::Failed] > 0
            || failures.iter().any(|f| f.stage == *stage)
    };
    let failed = done && jobs.iter().any(|(stage, job)| stage_failed(stage, job));

    let cause = failed.then(|| {
        let total = jobs.values().map(size_of).max().unwrap_or(1);
        // Stages that failed yet gave no failed child (a parent that failed as a whole, or a
        // summary ahead of ListJobs) are still named, with the parent's own reason.
        let unexplained: Vec<(StageName, String)> = jobs
            .iter()
            .filter(|&(stage, job)| {
                stage_failed(stage, job) && !failures.iter().any(|f| f.stage == *stage)
            })
            .map(|(stage, job)| {
                let reason = job
                    .status_reason
                    .clone()
                    .unwrap_or_else(|| "Batch listed no failed child".to_string());
                (stage.clone(), truncate(&reason, MAX_REASON_CHARS))
            })
            .collect();
        describe_cause(&nodes, &unexplained, total, jobs)
    });

    let stuck = jobs
        .stages()
        .filter_map(|stage| stuck_stage(jobs, children, stage, now_ms, options))
        .collect();

    let failed_node_count = nodes.len();
    let failed_nodes = nodes.into_iter().take(MAX_FAILED_NODES).collect();
    RunStatus {
        done,
        failed,
        error: failed.then(|| NODES_FAILED_ERROR.to_string()),
        cause,
        progress,
        failed_nodes,
        failed_node_count,
        stuck,
    }
}

/// An array parent carries `arrayProperties.size`; anything else stands for node 0 alone.
fn is_array(job: &JobDetail) -> bool {
    job.array_properties.as_ref().is_some_and(|props| props.size.is_some())
}

fn size_of(job: &JobDetail) -> u32 {
    job.array_properties.as_ref().and_then(|props| props.size).unwrap_or(1)
}

/// Children by status with every status present. A plain job counts as one child in its own
/// status.
fn counts_of(job: &JobDetail) -> BTreeMap<JobStatus, u32> {
    let mut counts: BTreeMap<JobStatus, u32> = JobStatus::ALL.into_iter().map(|s| (s, 0)).collect();
    if !is_array(job) {
        counts.insert(job.status, 1);
        return counts;
    }
    let summary = job.array_properties.as_ref().and_then(|props| props.status_summary.as_ref());
    if let Some(summary) = summary {
        for (status, count) in summary {
            counts.insert(*status, *count);
        }
    }
    // A SUCCEEDED parent means every child succeeded, even when the summary is missing.
    if job.status == JobStatus::Succeeded && counts.values().sum::<u32>() == 0 {
        counts.insert(JobStatus::Succeeded, size_of(job));
    }
    counts
}

/// The job has ended and, for an array, its summary shows no child still in flight (a parent
/// marked FAILED early must not end the run while its other children still work).
fn stage_ended(job: &JobDetail) -> bool {
    job.status.is_terminal()
        && counts_of(job).iter().all(|(status, count)| status.is_terminal() || *count == 0)
}

/// One failed child (or failed plain job) of one stage.
struct Failure {
    stage: StageName,
    node: u32,
    reason: String,
    exit_code: Option<i32>,
    because_of_dependency: bool,
}

fn collect_failures(jobs: &StageJobs, children: &Children) -> Vec<Failure> {
    let mut failures = Vec::new();
    for (stage, job) in jobs.iter() {
        if !is_array(job) {
            if job.status == JobStatus::Failed {
                let container = job.attempts.last().and_then(|a| a.container.as_ref());
                let exit_code = container.and_then(|c| c.exit_code);
                let container_reason = container.and_then(|c| c.reason.as_deref());
                failures.push(Failure {
                    stage: stage.clone(),
                    node: 0,
                    reason: describe_reason(
                        job.status_reason.as_deref(),
                        container_reason,
                        exit_code,
                    ),
                    exit_code,
                    because_of_dependency: is_dependency_failure(job.status_reason.as_deref()),
                });
            }
            continue;
        }
        for child in children.get(stage, JobStatus::Failed).unwrap_or_default() {
            if child.status.is_some_and(|status| status != JobStatus::Failed) {
                continue;
            }
            let Some(node) = child_index(child) else {
                // Without an index the child names no node; its stage still counts as failed.
                continue;
            };
            let container = child.container.as_ref();
            let exit_code = container.and_then(|c| c.exit_code);
            let container_reason = container.and_then(|c| c.reason.as_deref());
            failures.push(Failure {
                stage: stage.clone(),
                node,
                reason: describe_reason(
                    child.status_reason.as_deref(),
                    container_reason,
                    exit_code,
                ),
                exit_code,
                because_of_dependency: is_dependency_failure(child.status_reason.as_deref()),
            });
        }
    }
    failures
}

/// `arrayProperties.index`, else the `:<index>` suffix of the child's job id (emulators leave
/// the index out, and AWS names children `<parent>:<index>`).
fn child_index(child: &JobSummary) -> Option<u32> {
    child
        .array_properties
        .as_ref()
        .and_then(|props| props.index)
        .or_else(|| child.job_id.rsplit_once(':').and_then(|(_, index)| index.parse().ok()))
}

fn is_dependency_failure(status_reason: Option<&str>) -> bool {
    status_reason.is_some_and(|reason| reason.trim() == DEPENDENCY_FAILED_REASON)
}

/// `"<status reason>: <container reason>, exit code <n>"`, leaving out the parts Batch did not
/// give, cut to [`MAX_REASON_CHARS`].
fn describe_reason(
    status_reason: Option<&str>,
    container_reason: Option<&str>,
    exit_code: Option<i32>,
) -> String {
    let mut text = String::new();
    let status_reason = status_reason.map(str::trim).filter(|r| !r.is_empty());
    let container_reason = container_reason.map(str::trim).filter(|r| !r.is_empty());
    if let Some(reason) = status_reason {
        text.push_str(reason);
    }
    if let Some(reason) = container_reason.filter(|r| Some(*r) != status_reason) {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(reason);
    }
    if let Some(code) = exit_code {
        if !text.is_empty() {
            text.push_str(", ");
        }
        text.push_str(&format!("exit code {code}"));
    }
    if text.is_empty() {
        text.push_str("no reason given");
    }
    truncate(&text, MAX_REASON_CHARS)
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// Groups the failures by node: the root is the node's first stage that failed on its own
/// (not with [`DEPENDENCY_FAILED_REASON`]); with no such stage, its first failing stage.
fn root_failures(failures: &[Failure], jobs: &StageJobs) -> Vec<FailedNode> {
    let place = |stage: &StageName| jobs.position(stage).unwrap_or(usize::MAX);
    let mut by_node: BTreeMap<u32, Vec<&Failure>> = BTreeMap::new();
    for failure in failures {
        by_node.entry(failure.node).or_default().push(failure);
    }
    by_node
        .into_iter()
        .map(|(node, mut failures)| {
            failures.sort_by_key(|f| place(&f.stage));
            let root = failures.iter().find(|f| !f.because_of_dependency).unwrap_or(&failures[0]);
            let skipped = failures
                .iter()
                .filter(|f| place(&f.stage) > place(&root.stage))
                .map(|f| f.stage.clone())
                .collect();
            FailedNode {
                node,
                stage: root.stage.clone(),
                reason: root.reason.clone(),
                exit_code: root.exit_code,
                skipped,
            }
        })
        .collect()
}

/// The one-paragraph cause, e.g. "2 of 10 nodes failed: procure failed on nodes 3, 7
/// (Essential container in task exited, exit code 1); process and egress did not run on those
/// nodes."
fn describe_cause(
    nodes: &[FailedNode],
    unexplained: &[(StageName, String)],
    total: u32,
    jobs: &StageJobs,
) -> String {
    // Nodes that failed the same way in the same stage are named together.
    let mut groups: Vec<(&StageName, &str, &[StageName], Vec<u32>)> = Vec::new();
    for node in nodes {
        match groups.iter_mut().find(|(stage, reason, skipped, _)| {
            **stage == node.stage && *reason == node.reason && *skipped == node.skipped.as_slice()
        }) {
            Some(group) => group.3.push(node.node),
            None => groups.push((&node.stage, &node.reason, &node.skipped, vec![node.node])),
        }
    }
    groups.sort_by_key(|(stage, _, _, nodes)| (jobs.position(stage), nodes[0]));

    let mut clauses: Vec<String> = Vec::new();
    for (stage, reason, skipped, group_nodes) in groups.iter().take(MAX_CAUSE_GROUPS) {
        let mut clause = format!("{stage} failed on {} ({reason})", name_nodes(group_nodes));
        if !skipped.is_empty() {
            let them = if group_nodes.len() == 1 { "that node" } else { "those nodes" };
            clause.push_str(&format!("; {} did not run on {them}", join_and(skipped)));
        }
        clauses.push(clause);
    }
    if groups.len() > MAX_CAUSE_GROUPS {
        let rest: usize = groups[MAX_CAUSE_GROUPS..].iter().map(|g| g.3.len()).sum();
        clauses.push(format!("{rest} more nodes failed in other ways (see failedNodes)"));
    }
    for (stage, reason) in unexplained {
        clauses.push(format!("{stage} failed ({reason})"));
    }

    let lead = match nodes.len() {
        0 => "the run failed".to_string(),
        1 => format!("1 of {total} nodes failed"),
        n => format!("{n} of {total} nodes failed"),
    };
    format!("{lead}: {}.", clauses.join("; "))
}

/// "node 3" or "nodes 3, 7" or "nodes 1, 2, … and 15 more".
fn name_nodes(nodes: &[u32]) -> String {
    let shown: Vec<String> = nodes.iter().take(MAX_CAUSE_NODES).map(u32::to_string).collect();
    let mut text = if nodes.len() == 1 {
        format!("node {}", shown[0])
    } else {
        format!("nodes {}", shown.join(", "))
    };
    if nodes.len() > MAX_CAUSE_NODES {
        text.push_str(&format!(" and {} more", nodes.len() - MAX_CAUSE_NODES));
    }
    text
}

/// "egress", "process and egress".
fn join_and(stages: &[StageName]) -> String {
    let names: Vec<&str> = stages.iter().map(|s| s.as_str()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// When the stage's children may have waited RUNNABLE past the threshold: returns the time
/// since which they can have been RUNNABLE at the earliest.
///
/// Batch records no time of entering RUNNABLE. A child of the first stage can be RUNNABLE
/// from its creation; a child of a later stage only once its node in the stage before ended,
/// so a later stage is judged only once the stage before it has ended, from that end time.
fn possibly_stuck(
    jobs: &StageJobs,
    stage: &StageName,
    now_ms: i64,
    options: &StatusOptions,
) -> Option<i64> {
    let job = &jobs[stage];
    let counts = counts_of(job);
    let active = counts[&JobStatus::Starting] + counts[&JobStatus::Running];
    if counts[&JobStatus::Runnable] == 0 || active > 0 {
        return None;
    }
    let created = job.created_at?;
    let since = match jobs.previous(stage) {
        None => created,
        Some(before) => {
            let upstream = &jobs[before];
            if !stage_ended(upstream) {
                return None;
            }
            created.max(upstream.stopped_at?)
        }
    };
    (now_ms - since > options.stuck_after_ms).then_some(since)
}

fn stuck_stage(
    jobs: &StageJobs,
    children: &Children,
    stage: &StageName,
    now_ms: i64,
    options: &StatusOptions,
) -> Option<StuckStage> {
    let since = possibly_stuck(jobs, stage, now_ms, options)?;
    let over_seconds = options.stuck_after_ms / 1000;
    let job = &jobs[stage];
    if !is_array(job) {
        return Some(StuckStage {
            stage: stage.clone(),
            runnable: 1,
            over_seconds,
            message: format!(
                "the {stage} job has been RUNNABLE for over {over_seconds}s: check the compute environment's capacity"
            ),
        });
    }
    // With the RUNNABLE children listed, count only those old enough; without, every RUNNABLE
    // child of the summary is (the bound above already holds for all of them).
    let runnable = match children.get(stage, JobStatus::Runnable) {
        Some(listed) => listed
            .iter()
            .filter(|child| child.status.is_none_or(|s| s == JobStatus::Runnable))
            .filter(|child| {
                let entered = child.created_at.unwrap_or(since).max(since);
                now_ms - entered > options.stuck_after_ms
            })
            .count() as u32,
        None => counts_of(job)[&JobStatus::Runnable],
    };
    if runnable == 0 {
        return None;
    }
    let children_word = if runnable == 1 { "child" } else { "children" };
    Some(StuckStage {
        stage: stage.clone(),
        runnable,
        over_seconds,
        message: format!(
            "{runnable} {children_word} of {stage} RUNNABLE for over {over_seconds}s with none running: check the compute environment's capacity"
        ),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::stage::Stage;

    const NOW: i64 = 1_700_000_000_000;
    const MINUTE: i64 = 60_000;

    /// An array parent in the API's shape.
    fn parent(stage: Stage, status: &str, size: u32, summary: Value) -> Value {
        json!({
            "jobId": format!("{stage}-job"),
            "jobName": format!("nton-{stage}-wf"),
            "status": status,
            "createdAt": NOW - 60 * MINUTE,
            "arrayProperties": {"size": size, "statusSummary": summary}
        })
    }

    /// A failed child in the ListJobs shape.
    fn failed_child(stage: Stage, index: u32, reason: &str, exit_code: Option<i32>) -> Value {
        let mut child = json!({
            "jobId": format!("{stage}-job:{index}"),
            "jobName": format!("nton-{stage}-wf"),
            "status": "FAILED",
            "statusReason": reason,
            "arrayProperties": {"index": index}
        });
        if let Some(code) = exit_code {
            child["container"] = json!({"exitCode": code});
        }
        child
    }

    fn jobs(procure: Value, process: Value, egress: Value) -> StageJobs {
        [(Stage::Procure, procure), (Stage::Process, process), (Stage::Egress, egress)]
            .into_iter()
            .map(|(stage, job)| (stage.into(), serde_json::from_value(job).unwrap()))
            .collect()
    }

    fn children(lists: Vec<(Stage, JobStatus, Vec<Value>)>) -> Children {
        let mut children = Children::new();
        for (stage, status, list) in lists {
            let list = list.into_iter().map(|c| serde_json::from_value(c).unwrap()).collect();
            children.insert(stage.into(), status, list);
        }
        children
    }

    /// Every key of `expected` must be in `actual` with the same value, recursively (arrays
    /// element by element, of equal length): the fixtures state only what each case is about.
    fn assert_subset(actual: &Value, expected: &Value, path: &str) {
        match expected {
            Value::Object(fields) => {
                for (key, want) in fields {
                    let got = actual
                        .get(key)
                        .unwrap_or_else(|| panic!("{path}.{key} missing in {actual}"));
                    assert_subset(got, want, &format!("{path}.{key}"));
                }
            }
            Value::Array(items) => {
                let got = actual
                    .as_array()
                    .unwrap_or_else(|| panic!("{path}: expected an array, got {actual}"));
                assert_eq!(got.len(), items.len(), "length of {path}: {actual}");
                for (index, (got, want)) in got.iter().zip(items).enumerate() {
                    assert_subset(got, want, &format!("{path}[{index}]"));
                }
            }
            _ => assert_eq!(actual, expected, "at {path}"),
        }
    }

    struct Case {
        name: &'static str,
        jobs: StageJobs,
        children: Children,
        listings: Vec<(Stage, JobStatus)>,
        expect: Value,
    }

    fn check(case: Case) {
        let options = StatusOptions::default();
        let listings: Vec<(StageName, JobStatus)> = listings_needed(&case.jobs, NOW, &options)
            .into_iter()
            .map(|l| {
                assert_eq!(l.array_job_id, case.jobs[&l.stage].job_id, "{}", case.name);
                (l.stage, l.status)
            })
            .collect();
        let expected: Vec<(StageName, JobStatus)> =
            case.listings.into_iter().map(|(stage, status)| (stage.into(), status)).collect();
        assert_eq!(listings, expected, "{}: listings", case.name);
        let status = assess(&case.jobs, &case.children, NOW, &options);
        let value = serde_json::to_value(&status).unwrap();
        assert_subset(&value, &case.expect, case.name);
        // The output must read back as the same status (the engine and CLI parse it).
        let back: RunStatus = serde_json::from_value(value).unwrap();
        assert_eq!(back, status, "{}: round trip", case.name);
    }

    fn all_succeeded(size: u32) -> Value {
        json!({"SUCCEEDED": size})
    }

    #[test]
    fn all_succeeded_is_done_and_not_failed() {
        check(Case {
            name: "all succeeded",
            jobs: jobs(
                parent(Stage::Procure, "SUCCEEDED", 10, all_succeeded(10)),
                parent(Stage::Process, "SUCCEEDED", 10, all_succeeded(10)),
                parent(Stage::Egress, "SUCCEEDED", 10, all_succeeded(10)),
            ),
            children: Children::new(),
            listings: vec![],
            expect: json!({
                "done": true, "failed": false, "error": null, "cause": null,
                "failedNodes": [], "failedNodeCount": 0, "stuck": [],
                "progress": {
                    "procure": {"jobId": "procure-job", "status": "SUCCEEDED", "size": 10,
                        "counts": {"SUBMITTED": 0, "PENDING": 0, "RUNNABLE": 0, "STARTING": 0,
                                   "RUNNING": 0, "SUCCEEDED": 10, "FAILED": 0}},
                    "egress": {"size": 10, "counts": {"SUCCEEDED": 10, "FAILED": 0}}
                }
            }),
        });
    }

    #[test]
    fn failed_nodes_tell_root_failures_from_skipped_stages() {
        let dep = DEPENDENCY_FAILED_REASON;
        let exited = "Essential container in task exited";
        check(Case {
            name: "procure fails on 3 and 7, egress on 5",
            jobs: jobs(
                parent(Stage::Procure, "FAILED", 10, json!({"SUCCEEDED": 8, "FAILED": 2})),
                parent(Stage::Process, "FAILED", 10, json!({"SUCCEEDED": 8, "FAILED": 2})),
                parent(
                    Stage::Egress,
                    "FAILED",
                    10,
                    json!({"SUCCEEDED": 5, "FAILED": 3, "PENDING": 0}),
                ),
            ),
            children: children(vec![
                (
                    Stage::Procure,
                    JobStatus::Failed,
                    vec![
                        failed_child(Stage::Procure, 7, exited, Some(1)),
                        failed_child(Stage::Procure, 3, exited, Some(1)),
                    ],
                ),
                (
                    Stage::Process,
                    JobStatus::Failed,
                    vec![
                        failed_child(Stage::Process, 3, dep, None),
                        failed_child(Stage::Process, 7, dep, None),
                    ],
                ),
                (
                    Stage::Egress,
                    JobStatus::Failed,
                    vec![
                        failed_child(Stage::Egress, 3, dep, None),
                        failed_child(
                            Stage::Egress,
                            5,
                            "Job attempt duration exceeded timeout",
                            None,
                        ),
                        failed_child(Stage::Egress, 7, dep, None),
                    ],
                ),
            ]),
            listings: vec![
                (Stage::Procure, JobStatus::Failed),
                (Stage::Process, JobStatus::Failed),
                (Stage::Egress, JobStatus::Failed),
            ],
            expect: json!({
                "done": true, "failed": true, "error": "nton.NodesFailed",
                "cause": "3 of 10 nodes failed: procure failed on nodes 3, 7 (Essential container in task exited, exit code 1); process and egress did not run on those nodes; egress failed on node 5 (Job attempt duration exceeded timeout).",
                "failedNodeCount": 3,
                "failedNodes": [
                    {"node": 3, "stage": "procure", "reason": "Essential container in task exited, exit code 1", "exitCode": 1, "skipped": ["process", "egress"]},
                    {"node": 5, "stage": "egress", "reason": "Job attempt duration exceeded timeout", "skipped": []},
                    {"node": 7, "stage": "procure", "reason": "Essential container in task exited, exit code 1", "exitCode": 1, "skipped": ["process", "egress"]}
                ],
                "progress": {"procure": {"counts": {"FAILED": 2, "SUCCEEDED": 8, "RUNNING": 0}}}
            }),
        });
    }

    #[test]
    fn a_container_reason_joins_the_status_reason() {
        let mut child =
            failed_child(Stage::Process, 2, "Essential container in task exited", Some(137));
        child["container"]["reason"] =
            json!("OutOfMemoryError: Container killed due to memory usage");
        check(Case {
            name: "out of memory in process",
            jobs: jobs(
                parent(Stage::Procure, "SUCCEEDED", 4, all_succeeded(4)),
                parent(Stage::Process, "FAILED", 4, json!({"SUCCEEDED": 3, "FAILED": 1})),
                parent(Stage::Egress, "FAILED", 4, json!({"SUCCEEDED": 3, "FAILED": 1})),
            ),
            children: children(vec![
                (Stage::Process, JobStatus::Failed, vec![child]),
                (
                    Stage::Egress,
                    JobStatus::Failed,
                    vec![failed_child(Stage::Egress, 2, DEPENDENCY_FAILED_REASON, None)],
                ),
            ]),
            listings: vec![(Stage::Process, JobStatus::Failed), (Stage::Egress, JobStatus::Failed)],
            expect: json!({
                "failed": true,
                "cause": "1 of 4 nodes failed: process failed on node 2 (Essential container in task exited: OutOfMemoryError: Container killed due to memory usage, exit code 137); egress did not run on that node.",
                "failedNodes": [{"node": 2, "stage": "process", "exitCode": 137, "skipped": ["egress"]}]
            }),
        });
    }

    #[test]
    fn a_run_still_in_flight_is_not_done_but_reports_failures_so_far() {
        check(Case {
            name: "still running",
            jobs: jobs(
                parent(
                    Stage::Procure,
                    "PENDING",
                    10,
                    json!({"SUCCEEDED": 6, "RUNNING": 3, "FAILED": 1}),
                ),
                parent(
                    Stage::Process,
                    "PENDING",
                    10,
                    json!({"SUCCEEDED": 2, "RUNNING": 2, "PENDING": 5, "FAILED": 1}),
                ),
                parent(Stage::Egress, "PENDING", 10, json!({"PENDING": 9, "FAILED": 1})),
            ),
            children: children(vec![
                (
                    Stage::Procure,
                    JobStatus::Failed,
                    vec![failed_child(
                        Stage::Procure,
                        4,
                        "Essential container in task exited",
                        Some(1),
                    )],
                ),
                (
                    Stage::Process,
                    JobStatus::Failed,
                    vec![failed_child(Stage::Process, 4, DEPENDENCY_FAILED_REASON, None)],
                ),
                (
                    Stage::Egress,
                    JobStatus::Failed,
                    vec![failed_child(Stage::Egress, 4, DEPENDENCY_FAILED_REASON, None)],
                ),
            ]),
            listings: vec![
                (Stage::Procure, JobStatus::Failed),
                (Stage::Process, JobStatus::Failed),
                (Stage::Egress, JobStatus::Failed),
            ],
            expect: json!({
                "done": false, "failed": false, "error": null, "cause": null,
                "failedNodeCount": 1, "stuck": [],
                "failedNodes": [{"node": 4, "stage": "procure", "skipped": ["process", "egress"]}],
                "progress": {"process": {"status": "PENDING", "counts": {"RUNNING": 2, "PENDING": 5, "SUBMITTED": 0}}}
            }),
        });
    }

    #[test]
    fn a_parent_marked_failed_while_children_still_run_is_not_done() {
        check(Case {
            name: "early FAILED parent",
            jobs: jobs(
                parent(
                    Stage::Procure,
                    "FAILED",
                    3,
                    json!({"SUCCEEDED": 1, "RUNNING": 1, "FAILED": 1}),
                ),
                parent(Stage::Process, "PENDING", 3, json!({"PENDING": 2, "FAILED": 1})),
                parent(Stage::Egress, "PENDING", 3, json!({"PENDING": 2, "FAILED": 1})),
            ),
            children: Children::new(),
            listings: vec![
                (Stage::Procure, JobStatus::Failed),
                (Stage::Process, JobStatus::Failed),
                (Stage::Egress, JobStatus::Failed),
            ],
            expect: json!({"done": false, "failed": false, "cause": null}),
        });
    }

    #[test]
    fn children_long_runnable_with_none_running_are_stuck() {
        let mut procure = parent(Stage::Procure, "PENDING", 10, json!({"RUNNABLE": 10}));
        procure["createdAt"] = json!(NOW - 30 * MINUTE);
        let runnable: Vec<Value> = (0..10)
            .map(|i| {
                json!({"jobId": format!("procure-job:{i}"), "jobName": "n", "status": "RUNNABLE",
                       "createdAt": NOW - 30 * MINUTE, "arrayProperties": {"index": i}})
            })
            .collect();
        check(Case {
            name: "procure stuck in RUNNABLE",
            jobs: jobs(
                procure,
                parent(Stage::Process, "PENDING", 10, json!({"PENDING": 10})),
                parent(Stage::Egress, "PENDING", 10, json!({"PENDING": 10})),
            ),
            children: children(vec![(Stage::Procure, JobStatus::Runnable, runnable)]),
            listings: vec![(Stage::Procure, JobStatus::Runnable)],
            expect: json!({
                "done": false, "failed": false,
                "stuck": [{"stage": "procure", "runnable": 10, "overSeconds": 600,
                    "message": "10 children of procure RUNNABLE for over 600s with none running: check the compute environment's capacity"}]
            }),
        });
    }

    #[test]
    fn runnable_children_are_not_stuck_while_some_run_or_before_the_threshold() {
        let mut young = parent(Stage::Procure, "PENDING", 10, json!({"RUNNABLE": 10}));
        young["createdAt"] = json!(NOW - 5 * MINUTE);
        check(Case {
            name: "young RUNNABLE",
            jobs: jobs(
                young,
                parent(Stage::Process, "PENDING", 10, json!({"PENDING": 10})),
                parent(Stage::Egress, "PENDING", 10, json!({"PENDING": 10})),
            ),
            children: Children::new(),
            listings: vec![],
            expect: json!({"stuck": []}),
        });
        check(Case {
            name: "old RUNNABLE with some running",
            jobs: jobs(
                parent(Stage::Procure, "PENDING", 10, json!({"RUNNABLE": 8, "RUNNING": 2})),
                parent(Stage::Process, "PENDING", 10, json!({"PENDING": 10})),
                parent(Stage::Egress, "PENDING", 10, json!({"PENDING": 10})),
            ),
            children: Children::new(),
            listings: vec![],
            expect: json!({"stuck": []}),
        });
    }

    #[test]
    fn a_later_stage_is_judged_from_the_end_of_the_stage_before() {
        let mut procure = parent(Stage::Procure, "SUCCEEDED", 4, all_succeeded(4));
        let process = parent(Stage::Process, "PENDING", 4, json!({"RUNNABLE": 4}));
        // Procure ended 5 minutes ago: process children cannot have waited 10 minutes yet.
        procure["stoppedAt"] = json!(NOW - 5 * MINUTE);
        check(Case {
            name: "process RUNNABLE since procure ended recently",
            jobs: jobs(
                procure.clone(),
                process.clone(),
                parent(Stage::Egress, "PENDING", 4, json!({"PENDING": 4})),
            ),
            children: Children::new(),
            listings: vec![],
            expect: json!({"stuck": []}),
        });
        procure["stoppedAt"] = json!(NOW - 20 * MINUTE);
        check(Case {
            name: "process RUNNABLE since procure ended long ago",
            jobs: jobs(
                procure,
                process.clone(),
                parent(Stage::Egress, "PENDING", 4, json!({"PENDING": 4})),
            ),
            children: Children::new(),
            listings: vec![(Stage::Process, JobStatus::Runnable)],
            expect: json!({"stuck": [{"stage": "process", "runnable": 4}]}),
        });
        // Procure still running: when process children became RUNNABLE is unknown.
        check(Case {
            name: "process RUNNABLE while procure runs",
            jobs: jobs(
                parent(Stage::Procure, "PENDING", 4, json!({"RUNNING": 2, "SUCCEEDED": 2})),
                process,
                parent(Stage::Egress, "PENDING", 4, json!({"PENDING": 4})),
            ),
            children: Children::new(),
            listings: vec![],
            expect: json!({"stuck": []}),
        });
    }

    #[test]
    fn listed_runnable_children_count_only_those_past_the_threshold() {
        let mut procure = parent(Stage::Procure, "PENDING", 3, json!({"RUNNABLE": 3}));
        procure["createdAt"] = json!(NOW - 30 * MINUTE);
        let listed = vec![
            json!({"jobId": "procure-job:0", "jobName": "n", "status": "RUNNABLE", "createdAt": NOW - 30 * MINUTE}),
            json!({"jobId": "procure-job:1", "jobName": "n", "status": "RUNNABLE", "createdAt": NOW - MINUTE}),
            json!({"jobId": "procure-job:2", "jobName": "n", "status": "RUNNABLE", "createdAt": NOW - MINUTE}),
        ];
        check(Case {
            name: "one of three old enough",
            jobs: jobs(
                procure,
                parent(Stage::Process, "PENDING", 3, json!({"PENDING": 3})),
                parent(Stage::Egress, "PENDING", 3, json!({"PENDING": 3})),
            ),
            children: children(vec![(Stage::Procure, JobStatus::Runnable, listed)]),
            listings: vec![(Stage::Procure, JobStatus::Runnable)],
            expect: json!({"stuck": [{"runnable": 1,
                "message": "1 child of procure RUNNABLE for over 600s with none running: check the compute environment's capacity"}]}),
        });
    }

    fn plain(stage: Stage, status: &str) -> Value {
        json!({"jobId": format!("{stage}-job"), "jobName": format!("nton-{stage}-wf"),
               "status": status, "createdAt": NOW - 60 * MINUTE})
    }

    #[test]
    fn one_node_runs_use_plain_jobs() {
        check(Case {
            name: "one node succeeded",
            jobs: jobs(
                plain(Stage::Procure, "SUCCEEDED"),
                plain(Stage::Process, "SUCCEEDED"),
                plain(Stage::Egress, "SUCCEEDED"),
            ),
            children: Children::new(),
            listings: vec![],
            expect: json!({"done": true, "failed": false, "cause": null,
                "progress": {"process": {"size": 1, "counts": {"SUCCEEDED": 1, "FAILED": 0, "RUNNING": 0}}}}),
        });

        let mut procure = plain(Stage::Procure, "FAILED");
        procure["statusReason"] = json!("Essential container in task exited");
        procure["attempts"] = json!([{"container": {"exitCode": 1}}]);
        let mut process = plain(Stage::Process, "FAILED");
        process["statusReason"] = json!(DEPENDENCY_FAILED_REASON);
        let mut egress = plain(Stage::Egress, "FAILED");
        egress["statusReason"] = json!(DEPENDENCY_FAILED_REASON);
        check(Case {
            name: "one node failed in procure",
            jobs: jobs(procure, process, egress),
            children: Children::new(),
            listings: vec![],
            expect: json!({"done": true, "failed": true, "error": "nton.NodesFailed",
                "cause": "1 of 1 nodes failed: procure failed on node 0 (Essential container in task exited, exit code 1); process and egress did not run on that node.",
                "failedNodes": [{"node": 0, "stage": "procure", "exitCode": 1, "skipped": ["process", "egress"]}],
                "progress": {"procure": {"size": 1, "counts": {"FAILED": 1, "SUCCEEDED": 0}}}}),
        });

        let mut procure = plain(Stage::Procure, "RUNNABLE");
        procure["createdAt"] = json!(NOW - 11 * MINUTE);
        check(Case {
            name: "one node stuck",
            jobs: jobs(procure, plain(Stage::Process, "PENDING"), plain(Stage::Egress, "PENDING")),
            children: Children::new(),
            listings: vec![],
            expect: json!({"done": false, "stuck": [{"stage": "procure", "runnable": 1,
                "message": "the procure job has been RUNNABLE for over 600s: check the compute environment's capacity"}]}),
        });
    }

    #[test]
    fn a_failed_parent_without_counts_still_fails_the_run() {
        let mut procure = json!({"jobId": "procure-job", "jobName": "p", "status": "FAILED",
            "statusReason": "Job queue disabled", "arrayProperties": {"size": 5}});
        check(Case {
            name: "failed parent, no summary, no children listed",
            jobs: jobs(
                procure.clone(),
                parent(Stage::Process, "FAILED", 5, json!({})),
                parent(Stage::Egress, "FAILED", 5, json!({})),
            ),
            children: children(vec![
                (Stage::Procure, JobStatus::Failed, vec![]),
                (Stage::Process, JobStatus::Failed, vec![]),
                (Stage::Egress, JobStatus::Failed, vec![]),
            ]),
            listings: vec![
                (Stage::Procure, JobStatus::Failed),
                (Stage::Process, JobStatus::Failed),
                (Stage::Egress, JobStatus::Failed),
            ],
            expect: json!({"done": true, "failed": true, "error": "nton.NodesFailed", "failedNodeCount": 0,
                "cause": "the run failed: procure failed (Job queue disabled); process failed (Batch listed no failed child); egress failed (Batch listed no failed child).",
                "progress": {"procure": {"size": 5, "counts": {"FAILED": 0, "SUCCEEDED": 0}}}}),
        });
        // The listing finds the failed child the summary did not count.
        procure["arrayProperties"]["statusSummary"] = json!({"SUCCEEDED": 4});
        check(Case {
            name: "failed parent, summary lagging",
            jobs: jobs(
                procure,
                parent(Stage::Process, "SUCCEEDED", 5, all_succeeded(5)),
                parent(Stage::Egress, "SUCCEEDED", 5, all_succeeded(5)),
            ),
            children: children(vec![(
                Stage::Procure,
                JobStatus::Failed,
                vec![failed_child(
                    Stage::Procure,
                    1,
                    "Essential container in task exited",
                    Some(2),
                )],
            )]),
            listings: vec![(Stage::Procure, JobStatus::Failed)],
            expect: json!({"done": true, "failed": true, "failedNodeCount": 1,
                "cause": "1 of 5 nodes failed: procure failed on node 1 (Essential container in task exited, exit code 2)."}),
        });
    }

    #[test]
    fn a_succeeded_parent_without_summary_counts_every_child_succeeded() {
        let bare = |stage: Stage| json!({"jobId": format!("{stage}-job"), "jobName": "n", "status": "SUCCEEDED", "arrayProperties": {"size": 7}});
        check(Case {
            name: "succeeded, no summary",
            jobs: jobs(bare(Stage::Procure), bare(Stage::Process), bare(Stage::Egress)),
            children: Children::new(),
            listings: vec![],
            expect: json!({"done": true, "failed": false, "progress": {"egress": {"counts": {"SUCCEEDED": 7}}}}),
        });
    }

    #[test]
    fn failed_children_without_index_take_it_from_the_job_id() {
        let child = json!({"jobId": "procure-job:12", "jobName": "n", "status": "FAILED", "statusReason": "boom"});
        check(Case {
            name: "index from job id",
            jobs: jobs(
                parent(Stage::Procure, "FAILED", 20, json!({"SUCCEEDED": 19, "FAILED": 1})),
                parent(Stage::Process, "SUCCEEDED", 20, all_succeeded(20)),
                parent(Stage::Egress, "SUCCEEDED", 20, all_succeeded(20)),
            ),
            children: children(vec![(Stage::Procure, JobStatus::Failed, vec![child])]),
            listings: vec![(Stage::Procure, JobStatus::Failed)],
            expect: json!({"failedNodes": [{"node": 12, "stage": "procure", "reason": "boom"}]}),
        });
    }

    #[test]
    fn many_failures_are_capped_and_long_reasons_cut() {
        let long_reason = "x".repeat(1000);
        let failed: Vec<Value> =
            (0..250).map(|i| failed_child(Stage::Procure, i, &long_reason, Some(1))).collect();
        let skipped: Vec<Value> = (0..250)
            .map(|i| failed_child(Stage::Process, i, DEPENDENCY_FAILED_REASON, None))
            .collect();
        let status = assess(
            &jobs(
                parent(Stage::Procure, "FAILED", 1000, json!({"SUCCEEDED": 750, "FAILED": 250})),
                parent(Stage::Process, "FAILED", 1000, json!({"SUCCEEDED": 750, "FAILED": 250})),
                parent(Stage::Egress, "FAILED", 1000, json!({"SUCCEEDED": 750, "FAILED": 250})),
            ),
            &children(vec![
                (Stage::Procure, JobStatus::Failed, failed),
                (Stage::Process, JobStatus::Failed, skipped),
            ]),
            NOW,
            &StatusOptions::default(),
        );
        assert_eq!(status.failed_node_count, 250);
        assert_eq!(status.failed_nodes.len(), MAX_FAILED_NODES);
        assert_eq!(status.failed_nodes.last().unwrap().node, 99);
        let reason = &status.failed_nodes[0].reason;
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS + 1);
        assert!(reason.ends_with('…'), "{reason}");
        let cause = status.cause.clone().unwrap();
        assert!(
            cause.starts_with("250 of 1000 nodes failed: procure failed on nodes 0, 1, 2,"),
            "{cause}"
        );
        assert!(cause.contains("19 and 230 more"), "{cause}");
        assert!(cause.ends_with("; process did not run on those nodes; egress failed (Batch listed no failed child)."), "{cause}");
        let bytes = serde_json::to_vec(&status).unwrap().len();
        assert!(bytes < 64 * 1024, "{bytes} bytes");
    }

    #[test]
    fn many_distinct_reasons_are_summarised_in_the_cause() {
        let failed: Vec<Value> =
            (0..8).map(|i| failed_child(Stage::Egress, i, &format!("reason {i}"), None)).collect();
        let status = assess(
            &jobs(
                parent(Stage::Procure, "SUCCEEDED", 8, all_succeeded(8)),
                parent(Stage::Process, "SUCCEEDED", 8, all_succeeded(8)),
                parent(Stage::Egress, "FAILED", 8, json!({"FAILED": 8})),
            ),
            &children(vec![(Stage::Egress, JobStatus::Failed, failed)]),
            NOW,
            &StatusOptions::default(),
        );
        assert_eq!(
            status.cause.as_deref(),
            Some(
                "8 of 8 nodes failed: egress failed on node 0 (reason 0); egress failed on node 1 (reason 1); egress failed on node 2 (reason 2); egress failed on node 3 (reason 3); egress failed on node 4 (reason 4); 3 more nodes failed in other ways (see failedNodes)."
            )
        );
    }

    #[test]
    fn a_fourth_stage_takes_its_place_from_its_dependency() {
        // Given out of order (as a JSON object may come): the dependsOn chain orders them.
        let stage = |id: &str, after: Option<&str>, summary: Value| {
            let status = if summary.get("FAILED").is_some() { "FAILED" } else { "SUCCEEDED" };
            let mut job = json!({"jobId": id, "jobName": id, "status": status, "createdAt": NOW,
                "arrayProperties": {"size": 4, "statusSummary": summary}});
            if let Some(before) = after {
                job["dependsOn"] = json!([{"jobId": before, "type": "N_TO_N"}]);
            }
            (StageName::from(id), serde_json::from_value::<JobDetail>(job).unwrap())
        };
        let jobs = in_run_order(vec![
            stage("egress", Some("check"), json!({"SUCCEEDED": 3, "FAILED": 1})),
            stage("check", Some("process"), json!({"SUCCEEDED": 3, "FAILED": 1})),
            stage("procure", None, json!({"SUCCEEDED": 4})),
            stage("process", Some("procure"), json!({"SUCCEEDED": 3, "FAILED": 1})),
        ]);
        let names: Vec<&str> = jobs.stages().map(StageName::as_str).collect();
        assert_eq!(names, ["procure", "process", "check", "egress"]);
        let failed = |id: &str, reason: &str| {
            json!({"jobId": format!("{id}:1"), "jobName": id, "status": "FAILED",
                   "statusReason": reason, "arrayProperties": {"index": 1}})
        };
        let mut children = Children::new();
        for (id, reason) in [
            ("process", "Essential container in task exited"),
            ("check", DEPENDENCY_FAILED_REASON),
            ("egress", DEPENDENCY_FAILED_REASON),
        ] {
            let list = vec![serde_json::from_value(failed(id, reason)).unwrap()];
            children.insert(id.into(), JobStatus::Failed, list);
        }
        let status = assess(&jobs, &children, NOW, &StatusOptions::default());
        assert_eq!(
            status.cause.as_deref(),
            Some(
                "1 of 4 nodes failed: process failed on node 1 (Essential container in task exited); check and egress did not run on that node."
            )
        );
        let text = serde_json::to_string(&status.progress).unwrap();
        let order: Vec<usize> = ["procure", "process", "check", "egress"]
            .iter()
            .map(|s| text.find(s).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "progress in run order: {text}");
    }

    #[test]
    fn without_dependencies_jobs_go_by_creation_time_then_as_given() {
        let job = |id: &str, created: Option<i64>| {
            let mut job = json!({"jobId": id, "jobName": id, "status": "PENDING"});
            if let Some(at) = created {
                job["createdAt"] = json!(at);
            }
            (StageName::from(id), serde_json::from_value::<JobDetail>(job).unwrap())
        };
        let jobs = in_run_order(vec![job("b", Some(2)), job("a", Some(1)), job("x", None)]);
        let names: Vec<&str> = jobs.stages().map(StageName::as_str).collect();
        assert_eq!(names, ["a", "b", "x"]);
    }
}
