//! `nton run` on the real template when a run runs out of time: the watcher's run deadline
//! (below the state machine's TimeoutSeconds) fails the run through the Catch, and the cleanup
//! terminates the run's three stage jobs: children still waiting or running fail with the
//! cleanup's reason, their dependants fail without running, nothing is left behind.

use std::collections::BTreeMap;

use nton_core::batch::JobStatus;
use nton_engine::record::{
    ChildLine, RECORD_FILE, RecordLine, RunOutcome, StateEvent, read_record,
};
use nton_tests::cli::{expect_exit, json_summary, nton_run};

fn stage_of(child: &ChildLine) -> String {
    child.job_name.trim_start_matches("nton-").split('-').next().unwrap_or_default().to_string()
}

#[test]
fn a_run_past_its_deadline_terminates_its_jobs_and_fails_through_the_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    // A one-hour timeout with one poll an hour: the first poll already cannot be followed by
    // another before the timeout less the cleanup's margin, so the watcher ends the run while
    // procure node 2 still sleeps (10 minutes, far longer than this test may take).
    let output = expect_exit(
        nton_run(dir.path())
            .args(["--ids", "20", "--ids-per-node", "5"])
            .args(["--poll-seconds", "3600", "--param", "RunTimeoutHours=1"])
            .args(["--job-env", "NTON_FAULT_DELAY_MS=procure:2:600000"]),
        nton::exit::RUN_FAILED,
    );
    let summary = json_summary(&output.stdout);
    assert_eq!(summary["status"], "FAILED", "{summary}");
    assert_eq!(summary["error"], "nton.RunDeadlineExceeded", "{summary}");
    assert_eq!(summary["failedState"], "RunFailed", "{summary}");
    let workflow_id = summary["workflowId"].as_str().unwrap();

    let lines = read_record(&dir.path().join(workflow_id).join(RECORD_FILE)).unwrap();
    let entered: Vec<&str> = lines
        .iter()
        .filter_map(|line| match line {
            RecordLine::State(s) if s.event == StateEvent::Entered => Some(s.name.as_str()),
            _ => None,
        })
        .collect();
    for state in ["TerminateProcure", "TerminateProcess", "TerminateEgress"] {
        assert!(entered.contains(&state), "{state} never ran: {entered:?}");
    }
    let finals: BTreeMap<(String, u32), &ChildLine> = lines
        .iter()
        .filter_map(|line| match line {
            RecordLine::Child(c) if c.is_final => Some(((stage_of(c), c.node.unwrap_or(0)), c)),
            _ => None,
        })
        .collect();
    let reason = format!("nton run {workflow_id} failed with nton.RunDeadlineExceeded");
    // The slow child was stopped by the cleanup, not left to run.
    let slow = finals[&("procure".to_string(), 2)];
    assert_eq!(slow.status, JobStatus::Failed);
    assert_eq!(slow.reason.as_deref(), Some(reason.as_str()));
    // Its dependants never ran.
    for stage in ["process", "egress"] {
        let child = finals[&(stage.to_string(), 2)];
        assert_eq!(child.status, JobStatus::Failed, "{stage} node 2");
        assert_eq!(child.started_at, None, "{stage} node 2 must not run");
    }
    // Every child of every stage ended; none that had not succeeded was left waiting.
    assert_eq!(finals.len(), 12, "{finals:#?}");
    for ((stage, node), child) in &finals {
        assert!(
            child.status == JobStatus::Succeeded || child.status == JobStatus::Failed,
            "{stage} {node}: {}",
            child.status
        );
    }
    assert!(
        matches!(lines.last(), Some(RecordLine::End(end)) if end.status == RunOutcome::Failed),
        "the record ends FAILED"
    );
}
