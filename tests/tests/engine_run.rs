//! `nton run` end to end on the real template: the CLI binary, the template's own state
//! machine, the local Batch and the real `nton-job` workers. What each test shows is read
//! from the run record and the result files, never from wall-clock assertions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nton_core::batch::JobStatus;
use nton_engine::record::{
    ChildLine, RECORD_FILE, RecordLine, RunOutcome, StateEvent, read_record,
};
use nton_tests::{binary_dir, cli, workspace_binary, workspace_root};
use serde_json::Value;

struct Run {
    output: Output,
    data_dir: PathBuf,
    summary: Value,
}

impl Run {
    fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn workflow_id(&self) -> String {
        self.summary["workflowId"].as_str().expect("the summary names the workflow").to_string()
    }

    fn run_dir(&self) -> PathBuf {
        self.data_dir.join(self.workflow_id())
    }

    fn results_dir(&self) -> PathBuf {
        self.data_dir.join("results").join(self.workflow_id())
    }

    fn record(&self) -> Vec<RecordLine> {
        read_record(&self.run_dir().join(RECORD_FILE)).expect("the run left a record")
    }
}

/// Runs `nton run --json` with a fresh data dir and the given flags.
fn nton_run(data_dir: &Path, flags: &[&str]) -> Run {
    let output = cli::nton_run(data_dir).args(flags).output().expect("nton runs");
    let summary = cli::json_summary(&output.stdout);
    Run { output, data_dir: data_dir.to_path_buf(), summary }
}

fn children(lines: &[RecordLine]) -> Vec<&ChildLine> {
    lines
        .iter()
        .filter_map(|line| match line {
            RecordLine::Child(child) => Some(child),
            _ => None,
        })
        .collect()
}

/// `nton-procure-<uuid>` -> `procure`.
fn stage_of(child: &ChildLine) -> &str {
    child
        .job_name
        .strip_prefix("nton-")
        .and_then(|rest| rest.split('-').next())
        .unwrap_or(&child.job_name)
}

/// Final attempts by (stage, node).
fn final_children(lines: &[RecordLine]) -> BTreeMap<(String, u32), ChildLine> {
    children(lines)
        .into_iter()
        .filter(|child| child.is_final)
        .map(|child| ((stage_of(child).to_string(), child.node.unwrap_or(0)), child.clone()))
        .collect()
}

fn result_files(results_dir: &Path) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    let Ok(nodes) = std::fs::read_dir(results_dir) else {
        return files;
    };
    for node in nodes.flatten().filter(|entry| entry.path().is_dir()) {
        if let Ok(entries) = std::fs::read_dir(node.path().join("results")) {
            files.extend(entries.flatten().map(|entry| entry.path()));
        }
    }
    files
}

#[test]
fn n_to_n_lets_other_nodes_finish_every_stage_while_one_node_is_slow_in_procure() {
    let dir = tempfile::tempdir().unwrap();
    let run = nton_run(
        dir.path(),
        &[
            "--ids",
            "24",
            "--ids-per-node",
            "4",
            "--parallelism",
            "2",
            "--job-env",
            "NTON_FAULT_DELAY_MS=procure:0:3000",
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let finals = final_children(&run.record());
    let slow_procure_end = finals[&("procure".to_string(), 0)].stopped_at;
    let passed_before: Vec<u32> = (1..6)
        .filter(|node| finals[&("egress".to_string(), *node)].stopped_at < slow_procure_end)
        .collect();
    assert!(
        passed_before.len() >= 3,
        "nodes through egress before node 0 ended procure: {passed_before:?}"
    );
    // And node 0 still went through process and egress after its procure.
    assert!(finals[&("process".to_string(), 0)].started_at.unwrap() >= slow_procure_end);
    assert_eq!(result_files(&run.results_dir()).len(), 24);
}

#[test]
fn a_node_failing_in_procure_skips_its_later_stages_and_fails_the_run_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = nton_run(
        dir.path(),
        &["--ids", "40", "--ids-per-node", "8", "--job-env", "NTON_FAULT_FAIL=procure:3"],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let lines = run.record();
    let finals = final_children(&lines);
    for stage in ["process", "egress"] {
        let child = &finals[&(stage.to_string(), 3)];
        assert_eq!(child.status, JobStatus::Failed);
        assert_eq!(child.started_at, None, "{stage} node 3 must not run");
        assert_eq!(child.reason.as_deref(), Some(nton_core::batch::DEPENDENCY_FAILED_REASON));
    }
    assert_eq!(finals[&("procure".to_string(), 3)].status, JobStatus::Failed);
    // Every other node is complete: 4 nodes x 8 ids.
    for node in [0u32, 1, 2, 4] {
        for stage in ["procure", "process", "egress"] {
            assert_eq!(finals[&(stage.to_string(), node)].status, JobStatus::Succeeded);
        }
    }
    let results = result_files(&run.results_dir());
    assert_eq!(results.len(), 32);
    assert!(results.iter().all(|path| !path.starts_with(run.results_dir().join("3"))));
    // The run ended in the Fail state, whose cause names the stage and the node.
    assert_eq!(run.summary["status"], "FAILED");
    assert_eq!(run.summary["failedState"], "Failed");
    let cause = run.summary["cause"].as_str().unwrap_or_default();
    assert!(cause.contains("procure") && cause.contains("node 3"), "{cause}");
    // A failed run keeps its data for inspection.
    assert!(run.run_dir().join("efs").is_dir());
}

#[test]
fn a_one_node_run_uses_plain_jobs_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let run = nton_run(dir.path(), &["--ids", "5", "--ids-per-node", "40"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let lines = run.record();
    let all = children(&lines);
    assert_eq!(all.len(), 3, "three plain jobs, one attempt each");
    assert!(all.iter().all(|child| child.node.is_none()));
    assert!(lines.iter().any(|line| matches!(
        line,
        RecordLine::State(state) if state.name == "SubmitProcureSingle"
    )));
    assert_eq!(result_files(&run.results_dir()).len(), 5);
    // A success removes the local EFS data unless --keep-data.
    assert!(!run.run_dir().join("efs").exists());
}

#[test]
fn ten_thousand_nodes_complete_and_ten_thousand_and_one_are_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let refused = nton_run(&dir.path().join("refused"), &["--ids", "10001", "--ids-per-node", "1"]);
    assert_eq!(refused.code(), 2, "{}", refused.stderr());
    assert!(refused.stderr().contains("10001 nodes"), "{}", refused.stderr());
    assert!(!dir.path().join("refused").exists(), "nothing may be written");

    let run = nton_run(&dir.path().join("big"), &["--ids", "10000", "--ids-per-node", "1"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let jobs = run.summary["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    for job in jobs {
        assert_eq!(job["size"], 10_000);
        assert_eq!(job["statusSummary"]["SUCCEEDED"], 10_000);
    }
    assert_eq!(result_files(&run.results_dir()).len(), 10_000);
}

#[test]
fn every_result_of_a_few_thousand_ids_matches_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let run = nton_run(dir.path(), &["--ids", "3000", "--ids-per-node", "40", "--keep-data"]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let efs = run.run_dir().join("efs").join(run.workflow_id());
    let results = result_files(&run.results_dir());
    assert_eq!(results.len(), 3000);
    let mut ids_seen = BTreeSet::new();
    for result_path in &results {
        let node = result_path
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .unwrap()
            .to_owned();
        let file = result_path.file_name().unwrap();
        let data: Vec<Value> = serde_json::from_slice(
            &std::fs::read(efs.join(&node).join("data").join(file)).unwrap(),
        )
        .unwrap();
        let result: Vec<Value> =
            serde_json::from_slice(&std::fs::read(result_path).unwrap()).unwrap();
        assert_eq!(data.len(), 500);
        assert_eq!(result.len(), 500);
        for (point, out) in data.iter().zip(&result) {
            assert_eq!(point["timestamp"], out["timestamp"]);
            let value = point["value"].as_i64().unwrap();
            assert!((10..20_000).contains(&value));
            assert_eq!(out["open"], value > 15_000);
        }
        ids_seen.insert(file.to_owned());
    }
    assert_eq!(ids_seen.len(), 3000, "every id is distinct");
    // The record travels with the results.
    assert!(run.results_dir().join(RECORD_FILE).is_file());
}

/// Writes the real template with one edit into `dir` and returns its path.
fn edited_template(dir: &Path, from: &str, to: &str) -> PathBuf {
    let text =
        std::fs::read_to_string(workspace_root().join("cloudformation/pipeline.yaml")).unwrap();
    assert!(text.contains(from), "the template still has {from:?}");
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn an_unsupported_state_type_or_a_broken_path_fails_at_load_naming_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let map = edited_template(
        dir.path(),
        "          WaitForJobs:\n            Type: Wait",
        "          WaitForJobs:\n            Type: Map",
    );
    let run = nton_run(&dir.path().join("a"), &["--template", map.to_str().unwrap()]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stderr().contains("WaitForJobs"), "{}", run.stderr());
    assert!(!dir.path().join("a").exists(), "nothing may be written");

    let broken = edited_template(dir.path(), "nodes.$: $.Payload.nodes", "nodes.$: $.Payload..[");
    let run = nton_run(&dir.path().join("b"), &["--template", broken.to_str().unwrap()]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stderr().contains("Init"), "{}", run.stderr());
}

#[test]
fn a_failed_run_resumes_without_redoing_finished_children() {
    let dir = tempfile::tempdir().unwrap();
    let first = nton_run(
        dir.path(),
        &["--ids", "20", "--ids-per-node", "5", "--job-env", "NTON_FAULT_FAIL=process:2"],
    );
    assert_eq!(first.code(), 1, "{}", first.stderr());
    let run_dir = first.run_dir();
    let lines_before = first.record().len();

    let resumed = nton_run(dir.path(), &["--resume", run_dir.to_str().unwrap()]);
    assert_eq!(resumed.code(), 0, "{}", resumed.stderr());
    assert_eq!(resumed.workflow_id(), first.workflow_id());
    let lines = read_record(&run_dir.join(RECORD_FILE)).unwrap();
    let second_run: Vec<&ChildLine> = children(&lines[lines_before..]);
    let ran: BTreeSet<(String, u32)> = second_run
        .iter()
        .filter(|child| child.started_at.is_some())
        .map(|child| (stage_of(child).to_string(), child.node.unwrap_or(0)))
        .collect();
    let expected: BTreeSet<(String, u32)> =
        [("process".to_string(), 2), ("egress".to_string(), 2)].into();
    assert_eq!(ran, expected, "only node 2's unfinished stages run again");
    assert_eq!(result_files(&resumed.results_dir()).len(), 20);
}

#[test]
fn the_readme_run_command_works_with_no_flags_from_a_fresh_checkout() {
    // A fresh checkout: just the template, in the directory the command runs from.
    let checkout = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(checkout.path().join("cloudformation")).unwrap();
    std::fs::copy(
        workspace_root().join("cloudformation/pipeline.yaml"),
        checkout.path().join("cloudformation/pipeline.yaml"),
    )
    .unwrap();
    let output = Command::new(workspace_binary("nton"))
        .current_dir(checkout.path())
        .env("NTON_BIN_DIR", binary_dir())
        .arg("run")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SUCCEEDED"), "{stderr}");
    let results_root = checkout.path().join("nton-runs/results");
    let workflow = std::fs::read_dir(&results_root)
        .unwrap()
        .flatten()
        .next()
        .expect("one workflow's results")
        .path();
    assert_eq!(result_files(&workflow).len(), 4000);
}

#[test]
fn ctrl_c_stops_a_run_that_then_resumes_without_redoing_finished_children() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(workspace_binary("nton"))
        .current_dir(workspace_root())
        .args(["run", "--json", "--ids", "30", "--ids-per-node", "5"])
        .args(["--parallelism", "1", "--data-dir"])
        .arg(dir.path())
        .arg("--bin-dir")
        .arg(binary_dir())
        // Node 5 is slow in procure: the run is still going when it is interrupted.
        .args(["--job-env", "NTON_FAULT_DELAY_MS=procure:5:30000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some children have finished (their lines are in the record), then interrupt.
    let record_path = || {
        std::fs::read_dir(dir.path())
            .ok()?
            .flatten()
            .map(|entry| entry.path().join(RECORD_FILE))
            .find(|path| path.is_file())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let finished = record_path()
            .and_then(|path| read_record(&path).ok())
            .map(|lines| {
                children(&lines).iter().filter(|c| c.status == JobStatus::Succeeded).count()
            })
            .unwrap_or(0);
        if finished >= 10 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the run never got going");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--resume"), "{stderr}");

    let path = record_path().unwrap();
    let run_dir = path.parent().unwrap().to_path_buf();
    let before = read_record(&path).unwrap();
    assert!(
        matches!(before.last(), Some(RecordLine::End(end)) if end.status == RunOutcome::Interrupted),
        "the record ends with the interruption: {:#?}",
        &before[before.len().saturating_sub(3)..]
    );
    let done_before: BTreeSet<(String, u32)> = children(&before)
        .iter()
        .filter(|c| c.status == JobStatus::Succeeded)
        .map(|c| (stage_of(c).to_string(), c.node.unwrap_or(0)))
        .collect();
    let resumed = nton_run(dir.path(), &["--resume", run_dir.to_str().unwrap()]);
    assert_eq!(resumed.code(), 0, "{}", resumed.stderr());
    let after = read_record(&path).unwrap();
    let rerun: BTreeSet<(String, u32)> = children(&after[before.len()..])
        .iter()
        .filter(|c| c.started_at.is_some())
        .map(|c| (stage_of(c).to_string(), c.node.unwrap_or(0)))
        .collect();
    assert!(
        rerun.is_disjoint(&done_before),
        "finished children ran again: {:?}",
        rerun.intersection(&done_before).collect::<Vec<_>>()
    );
    let results = result_files(&resumed.results_dir());
    assert_eq!(results.len(), 30, "{results:#?}");
}

#[test]
fn a_retried_child_records_each_attempt_under_its_own_number() {
    let dir = tempfile::tempdir().unwrap();
    // The procure job definition (the template's first) retries every failure: 3 attempts.
    let retrying = edited_template(
        dir.path(),
        "          - OnReason: \"*\"\n            Action: EXIT",
        "          - OnReason: \"*\"\n            Action: RETRY",
    );
    let run = nton_run(
        &dir.path().join("runs"),
        &[
            "--template",
            retrying.to_str().unwrap(),
            "--ids",
            "10",
            "--ids-per-node",
            "5",
            "--job-env",
            "NTON_FAULT_FAIL=procure:1",
        ],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let lines = run.record();
    let attempts: Vec<(u32, bool)> = children(&lines)
        .into_iter()
        .filter(|child| stage_of(child) == "procure" && child.node == Some(1))
        .map(|child| (child.attempt, child.is_final))
        .collect();
    assert_eq!(attempts, vec![(1, false), (2, false), (3, true)]);
}

/// A minimal template of one `batch:submitJob.sync` state, running `nton-job` with `command`.
fn sync_template(dir: &Path, command: &str) -> PathBuf {
    let path = dir.join("sync.yaml");
    std::fs::write(
        &path,
        format!(
            r#"
Resources:
  Env:
    Type: AWS::Batch::ComputeEnvironment
    Properties: {{Type: MANAGED, ComputeResources: {{Type: FARGATE, MaxvCpus: 4}}}}
  Queue:
    Type: AWS::Batch::JobQueue
    Properties:
      Priority: 1
      ComputeEnvironmentOrder: [{{Order: 1, ComputeEnvironment: !Ref Env}}]
  Worker:
    Type: AWS::Batch::JobDefinition
    Properties:
      Type: container
      ContainerProperties:
        Image: registry.example/nton/nton-job:dev
        Command: ["{command}"]
        ResourceRequirements: [{{Type: VCPU, Value: "1"}}, {{Type: MEMORY, Value: "512"}}]
  Machine:
    Type: AWS::StepFunctions::StateMachine
    Properties:
      DefinitionSubstitutions: {{Queue: !Ref Queue, Worker: !Ref Worker}}
      Definition:
        StartAt: Submit
        States:
          Submit:
            Type: Task
            Resource: arn:aws:states:::batch:submitJob.sync
            Parameters: {{JobName: sync-check, JobQueue: "${{Queue}}", JobDefinition: "${{Worker}}"}}
            ResultSelector: {{status.$: $.Status, id.$: $.JobId}}
            End: true
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_sync_submission_waits_for_the_job_and_fails_the_task_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let ok = sync_template(dir.path(), "--help");
    let run = nton_run(&dir.path().join("ok"), &["--template", ok.to_str().unwrap()]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let exited = run
        .record()
        .into_iter()
        .find_map(|line| match line {
            RecordLine::State(state)
                if state.name == "Submit" && state.event == StateEvent::Exited =>
            {
                state.output
            }
            _ => None,
        })
        .expect("Submit exited");
    // The answer is the ended job, in Step Functions' PascalCase.
    assert_eq!(exited["status"], "SUCCEEDED");
    assert!(exited["id"].as_str().is_some_and(|id| !id.is_empty()));

    let failing = sync_template(dir.path(), "no-such-stage");
    let run = nton_run(&dir.path().join("failing"), &["--template", failing.to_str().unwrap()]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert_eq!(run.summary["error"], "States.TaskFailed");
    assert_eq!(run.summary["failedState"], "Submit");
}
