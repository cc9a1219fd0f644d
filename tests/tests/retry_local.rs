//! `nton retry RUN_DIR` end to end on the real template: a run in which some nodes always fail
//! (the worker's fault injection) fails naming them; a retry with the fault still there fails
//! naming the same original nodes; a retry without it completes them, running only them, and
//! the result set is then byte for byte the one a clean run of the same ids makes (every node's
//! three stages run by the same worker binary over a copy of the run's prep).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nton_engine::record::{RECORD_FILE, RecordLine, read_record};
use nton_tests::{binary_dir, workspace_binary};
use serde_json::Value;

struct Outcome {
    output: Output,
    summary: Value,
}

impl Outcome {
    fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

/// Runs `nton <verb> --json --bin-dir ... <args>` from the workspace root.
fn nton(verb: &str, args: &[&str]) -> Outcome {
    let output = nton_tests::cli::nton()
        .args([verb, "--json", "--bin-dir"])
        .arg(binary_dir())
        .args(args)
        .output()
        .expect("nton runs");
    let summary = nton_tests::cli::json_summary(&output.stdout);
    Outcome { output, summary }
}

/// Every result file under `<results>/<wf>/`, by its path relative to that directory.
fn result_set(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let Ok(nodes) = std::fs::read_dir(dir) else {
        return files;
    };
    for node in nodes.flatten().filter(|entry| entry.path().is_dir()) {
        for entry in std::fs::read_dir(node.path().join("results")).into_iter().flatten().flatten()
        {
            let path = entry.path();
            let relative = path.strip_prefix(dir).unwrap().to_path_buf();
            files.insert(relative, std::fs::read(&path).unwrap());
        }
    }
    files
}

/// What a clean run of the same ids makes: each node's procure, process and egress run by the
/// worker binary over a copy of the run's prep files (ids are random per run, so a fresh `nton
/// run` would process other ids).
fn clean_result_set(efs: &Path, workflow_id: &str, nodes: u32) -> BTreeMap<PathBuf, Vec<u8>> {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("efs");
    let out = scratch.path().join("out");
    for node in 0..nodes {
        let prep = format!("{workflow_id}/{node}/prep/ids.csv");
        std::fs::create_dir_all(root.join(&prep).parent().unwrap()).unwrap();
        std::fs::copy(efs.join(&prep), root.join(&prep)).unwrap();
    }
    for node in 0..nodes {
        for stage in ["procure", "process", "egress"] {
            let status = Command::new(workspace_binary("nton-job"))
                .arg(stage)
                .env_clear()
                .env("AWS_BATCH_JOB_ARRAY_INDEX", node.to_string())
                .env("NTON_WORKFLOW_ID", workflow_id)
                .env("NTON_DATA_ROOT", &root)
                .env("NTON_RESULTS_URL", &out)
                .output()
                .unwrap();
            assert!(status.status.success(), "{stage} {node}: {status:?}");
        }
    }
    result_set(&out.join(workflow_id))
}

/// One execution in a record: its input's retryNodes, and the children it ran by stage and array
/// index as recorded.
type Execution = (Option<Value>, BTreeSet<(String, Option<u32>)>);

fn executions(lines: &[RecordLine]) -> Vec<Execution> {
    let mut runs: Vec<Execution> = Vec::new();
    for line in lines {
        match line {
            RecordLine::Run(start) => {
                runs.push((start.input.get("retryNodes").cloned(), BTreeSet::new()));
            }
            RecordLine::Child(child) if child.is_final => {
                let stage = child.job_name.split('-').nth(1).unwrap().to_string();
                runs.last_mut().unwrap().1.insert((stage, child.node));
            }
            _ => {}
        }
    }
    runs
}

fn check_retry_completes(faults: &str, failed: &[u32], named: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("runs");
    let data = data_dir.to_str().unwrap();
    let fault = format!("NTON_FAULT_FAIL={faults}");
    let first = nton(
        "run",
        &["--data-dir", data, "--ids", "57", "--ids-per-node", "6", "--job-env", &fault],
    );
    assert_eq!(first.code(), 1, "{}", first.stderr());
    let cause = first.summary["cause"].as_str().unwrap_or_default().to_string();
    for name in named {
        assert!(cause.contains(name), "{cause}");
    }
    let workflow_id = first.summary["workflowId"].as_str().unwrap().to_string();
    let run_dir = data_dir.join(&workflow_id);
    let results = data_dir.join("results").join(&workflow_id);
    let efs = run_dir.join("efs");
    let clean = clean_result_set(&efs, &workflow_id, 10);
    assert_eq!(clean.len(), 57);
    let before = result_set(&results);
    let failed_keys: Vec<String> = failed.iter().map(|n| format!("{n}/")).collect();
    assert!(
        before.keys().all(|path| !failed_keys.iter().any(|k| path.starts_with(k))),
        "a failed node has results"
    );
    assert_eq!(before.len() + failed.len() * 6 - usize::from(failed.contains(&9)) * 3, 57);

    // Still failing: the retry fails and names the same original nodes.
    let again = nton("retry", &[run_dir.to_str().unwrap(), "--job-env", &fault]);
    assert_eq!(again.code(), 1, "{}", again.stderr());
    let cause = again.summary["cause"].as_str().unwrap_or_default().to_string();
    for name in named {
        assert!(cause.contains(name), "a retry names original nodes: {cause}");
    }
    assert_eq!(again.summary["workflowId"], workflow_id.as_str());

    // Fixed: the retry completes them, and only them.
    let fixed = nton("retry", &[run_dir.to_str().unwrap()]);
    assert_eq!(fixed.code(), 0, "{}", fixed.stderr());
    assert_eq!(fixed.summary["status"], "SUCCEEDED");
    let sizes: Vec<Value> =
        fixed.summary["jobs"].as_array().unwrap().iter().map(|job| job["size"].clone()).collect();
    let expected_size = if failed.len() == 1 { Value::Null } else { Value::from(failed.len()) };
    assert_eq!(sizes, vec![expected_size; 3], "{}", fixed.summary);
    let after = result_set(&results);
    assert_eq!(after.len(), 57);
    assert!(after == clean, "the result set differs from a clean run's");
    for (path, bytes) in &before {
        assert_eq!(after.get(path), Some(bytes), "{} changed", path.display());
    }

    // The record holds the three executions, the retries with the failed nodes only.
    let lines = read_record(&run_dir.join(RECORD_FILE)).unwrap();
    let runs = executions(&lines);
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].0, None);
    assert_eq!(runs[0].1.len(), 30, "{:?}", runs[0].1);
    for (nodes, children) in &runs[1..] {
        assert_eq!(nodes, &Some(Value::from(failed.to_vec())));
        assert_eq!(children.len(), 3 * failed.len(), "{children:?}");
    }

    // The report reads the retry's children as their original nodes: nothing failed now.
    let report = Command::new(workspace_binary("nton"))
        .args(["report", "--json"])
        .arg(&run_dir)
        .output()
        .unwrap();
    assert!(report.status.success(), "{report:?}");
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["status"], "SUCCEEDED");
    assert_eq!(report["failureCount"], 0, "{report}");
    assert_eq!(report["jobs"]["nton-procure"]["succeeded"], 10, "{report}");

    // A succeeded run has nothing to retry: refused, exit 2, nothing run.
    let done = nton("retry", &[run_dir.to_str().unwrap()]);
    assert_eq!(done.code(), 2, "{}", done.stderr());
    assert!(done.stderr().contains("succeeded; there is nothing to retry"), "{}", done.stderr());
    assert_eq!(read_record(&run_dir.join(RECORD_FILE)).unwrap().len(), lines.len());
}

#[test]
fn one_node_that_always_fails_is_named_then_retried_as_a_plain_job_to_a_clean_result_set() {
    check_retry_completes("process:7", &[7], &["node 7"]);
}

#[test]
fn nodes_failing_in_different_stages_are_retried_as_an_array_to_a_clean_result_set() {
    // Node 9 holds the remainder (3 ids) and fails in egress, after its results were made.
    check_retry_completes("procure:2,egress:9", &[2, 9], &["node 2", "node 9"]);
}

#[test]
fn a_retry_of_something_that_is_no_failed_run_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let outcome = nton("retry", &[missing.to_str().unwrap()]);
    assert_eq!(outcome.code(), 2, "{}", outcome.stderr());
    assert!(outcome.stderr().contains("RUN_DIR: cannot read"), "{}", outcome.stderr());
    let outcome = nton("retry", &[]);
    assert_eq!(outcome.code(), 2);
    assert!(outcome.stderr().contains("name the failed run"), "{}", outcome.stderr());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
