//! `nton run` honours the job queues' `JobStateTimeLimitActions` as AWS Batch does: a process
//! child asking for more memory than any instance of its compute environment has (locally:
//! this machine) stays RUNNABLE at the head of its queue with
//! `MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT`, is cancelled once the queue's `MaxTimeSeconds`
//! has passed with "Canceled by JobStateTimeLimit action due to reason: ...", its egress
//! dependant fails without running, and the run fails through the watcher.
//!
//! The template is the real `pipeline.yaml` with one change made here: the queues'
//! `MaxTimeSeconds` (a parameter of at least 600 s, as AWS requires) becomes 2 s, so the test
//! takes seconds. The memory comes through the template's own `ProcessMemory` parameter.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nton_core::batch::JobStatus;
use nton_engine::record::{ChildLine, RECORD_FILE, RecordLine, RunOutcome, read_record};
use nton_tests::cli::{expect_exit, json_summary, nton_run};
use nton_tests::workspace_root;

/// The queues' time limit in the derived template.
const MAX_TIME_SECONDS: u64 = 2;
/// 100 TiB: more than any machine running this test.
const HUGE_MEMORY_MIB: u64 = 100 * 1024 * 1024;

fn stage_of(child: &ChildLine) -> String {
    child.job_name.trim_start_matches("nton-").split('-').next().unwrap_or_default().to_string()
}

/// `pipeline.yaml` with every queue's time limits shortened to [`MAX_TIME_SECONDS`].
fn template_with_short_limits(dir: &std::path::Path) -> std::path::PathBuf {
    let real = std::fs::read_to_string(workspace_root().join("cloudformation/pipeline.yaml"))
        .expect("the template reads");
    let from = "MaxTimeSeconds: !Ref RunnableTimeLimitSeconds";
    // Three reasons on each of the three queues.
    assert_eq!(real.matches(from).count(), 9, "the queues' time limits moved");
    let variant = real.replace(from, &format!("MaxTimeSeconds: {MAX_TIME_SECONDS}"));
    let path = dir.join("pipeline-short-limits.yaml");
    std::fs::write(&path, variant).unwrap();
    path
}

#[test]
fn a_job_too_big_for_the_machine_is_cancelled_by_the_queue_time_limit_and_the_run_fails() {
    let dir = tempfile::tempdir().unwrap();
    let template = template_with_short_limits(dir.path());
    let began = Instant::now();
    let output = expect_exit(
        nton_run(&dir.path().join("runs"))
            .args(["--ids", "10", "--ids-per-node", "5"])
            .arg("--template")
            .arg(&template)
            .args(["--param", &format!("ProcessMemory={HUGE_MEMORY_MIB}")]),
        nton::exit::RUN_FAILED,
    );
    let took = began.elapsed();
    let summary = json_summary(&output.stdout);
    assert_eq!(summary["status"], "FAILED", "{summary}");
    assert_eq!(summary["error"], "nton.NodesFailed", "{summary}");
    let cause = summary["cause"].as_str().unwrap_or_default();
    assert!(
        cause.contains("Canceled by JobStateTimeLimit action due to reason: MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"),
        "{summary}"
    );
    // Two process children, each cancelled after its own wait at the head of the queue.
    assert!(
        took >= Duration::from_secs(2 * MAX_TIME_SECONDS),
        "cancelled before the time limit: {took:?}"
    );

    let workflow_id = summary["workflowId"].as_str().unwrap();
    let lines = read_record(&dir.path().join("runs").join(workflow_id).join(RECORD_FILE)).unwrap();
    let mut finals: BTreeMap<(String, u32), &ChildLine> = BTreeMap::new();
    for line in &lines {
        if let RecordLine::Child(c) = line
            && c.is_final
        {
            finals.insert((stage_of(c), c.node.unwrap_or(0)), c);
        }
    }
    assert_eq!(finals.len(), 6, "{finals:#?}");
    for node in 0..2 {
        let procure = finals[&("procure".to_string(), node)];
        assert_eq!(procure.status, JobStatus::Succeeded, "procure node {node}");
        let process = finals[&("process".to_string(), node)];
        assert_eq!(process.status, JobStatus::Failed, "process node {node}");
        assert_eq!(
            process.reason.as_deref(),
            Some(
                "Canceled by JobStateTimeLimit action due to reason: MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"
            ),
            "process node {node}"
        );
        assert_eq!(process.started_at, None, "process node {node} must never start");
        let egress = finals[&("egress".to_string(), node)];
        assert_eq!(egress.status, JobStatus::Failed, "egress node {node}");
        assert_eq!(egress.started_at, None, "egress node {node} must not run");
    }
    assert!(
        matches!(lines.last(), Some(RecordLine::End(end)) if end.status == RunOutcome::Failed),
        "the record ends FAILED"
    );
}
