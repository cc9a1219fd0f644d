//! The built `nton-job` binary end to end on a temp dir: what Batch (or the local engine) sees —
//! exit codes, the one stderr line, the JSON log lines on stdout, the files.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use nton_core::layout::{Layout, format_ids};
use nton_core::plan::WorkflowId;
use serde_json::Value;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_nton-job");

/// Runs the binary with exactly these variables (nothing inherited but PATH).
fn run(args: &[&str], vars: &[(&str, String)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().expect("the nton-job binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn log_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
        })
        .collect()
}

fn prepare(root: &Path, wf: &WorkflowId, node: u32, count: usize) -> Vec<Uuid> {
    let layout = Layout::new(root);
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
    fs::create_dir_all(layout.prep_dir(wf, node)).unwrap();
    fs::write(layout.prep_ids_file(wf, node), format_ids(&ids)).unwrap();
    ids
}

#[test]
fn procure_process_egress_to_a_directory() {
    let root = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let wf = WorkflowId::new_v4();
    let ids = prepare(root.path(), &wf, 2, 5);
    let vars = vec![
        ("AWS_BATCH_JOB_ARRAY_INDEX", "2".to_string()),
        ("NTON_WORKFLOW_ID", wf.to_string()),
        ("NTON_DATA_ROOT", root.path().display().to_string()),
        ("NTON_RESULTS_URL", dest.path().display().to_string()),
    ];
    for stage in ["procure", "process", "egress"] {
        let output = run(&[stage], &vars);
        assert!(output.status.success(), "{stage}: {}", stderr(&output));
        assert_eq!(stderr(&output), "", "{stage} writes nothing on stderr");
        let lines = log_lines(&output);
        let started = &lines[0];
        assert_eq!(started["fields"]["message"], "stage started", "{started}");
        assert_eq!(started["fields"]["stage"], stage);
        assert_eq!(started["fields"]["node"], 2);
        assert_eq!(started["fields"]["workflow_id"], wf.to_string());
        let finished = lines.last().unwrap();
        assert_eq!(finished["fields"]["message"], "stage finished", "{finished}");
        assert_eq!(finished["fields"]["files"], 5);
        assert!(finished["fields"]["bytes"].as_u64().unwrap() > 0);
        assert!(finished["fields"]["elapsed_ms"].is_u64());
        assert_eq!(finished["level"], "INFO");
    }

    let layout = Layout::new(root.path());
    let shipped: BTreeSet<String> = fs::read_dir(dest.path().join(format!("{wf}/2/results")))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    let expected: BTreeSet<String> = ids.iter().map(|id| format!("{id}.json")).collect();
    assert_eq!(shipped, expected);
    for id in &ids {
        assert_eq!(
            fs::read(dest.path().join(layout.result_key(&wf, 2, id))).unwrap(),
            fs::read(layout.result_file(&wf, 2, id)).unwrap()
        );
    }
}

#[test]
fn a_plain_job_is_node_zero() {
    let root = tempfile::tempdir().unwrap();
    let wf = WorkflowId::new_v4();
    let ids = prepare(root.path(), &wf, 0, 2);
    let vars = vec![
        ("NTON_WORKFLOW_ID", wf.to_string()),
        ("NTON_DATA_ROOT", root.path().display().to_string()),
    ];
    let output = run(&["procure"], &vars);
    assert!(output.status.success(), "{}", stderr(&output));
    for id in &ids {
        assert!(Layout::new(root.path()).data_file(&wf, 0, id).is_file());
    }
}

#[test]
fn failures_exit_non_zero_with_one_line_on_stderr() {
    let root = tempfile::tempdir().unwrap();
    let wf = WorkflowId::new_v4();
    prepare(root.path(), &wf, 3, 2);
    let base = vec![
        ("AWS_BATCH_JOB_ARRAY_INDEX", "3".to_string()),
        ("NTON_WORKFLOW_ID", wf.to_string()),
        ("NTON_DATA_ROOT", root.path().display().to_string()),
    ];

    // Process before procure: the data file is missing.
    let output = run(&["process"], &base);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    let data_dir = Layout::new(root.path()).data_dir(&wf, 3);
    assert!(
        message.starts_with(&format!("nton-job process: node 3: {}/", data_dir.display())),
        "{message}"
    );
    let failed = log_lines(&output).pop().unwrap();
    assert_eq!(failed["level"], "ERROR");
    assert_eq!(failed["fields"]["message"], "stage failed");

    // An injected fault.
    let mut faulty = base.clone();
    faulty.push(("NTON_FAULT_FAIL", "process:1,procure:3".to_string()));
    let output = run(&["procure"], &faulty);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "nton-job procure: node 3: fault injected: NTON_FAULT_FAIL names procure:3\n"
    );

    // Bad configuration: exit 2.
    let mut bad = base.clone();
    bad[0].1 = "ten".to_string();
    let output = run(&["procure"], &bad);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "nton-job procure: AWS_BATCH_JOB_ARRAY_INDEX=\"ten\" is invalid: must be a whole number from 0 to 9999\n"
    );
    let output = run(&["egress"], &base);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "nton-job egress: NTON_RESULTS_URL is not set (egress needs s3://bucket[/prefix] or a local directory)\n"
    );

    // Bad usage: clap's message and exit 2.
    let output = run(&["download"], &base);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("unrecognized subcommand 'download'"), "{}", stderr(&output));
}

#[test]
fn rust_log_sets_the_level() {
    let root = tempfile::tempdir().unwrap();
    let wf = WorkflowId::new_v4();
    prepare(root.path(), &wf, 0, 1);
    let vars = vec![
        ("NTON_WORKFLOW_ID", wf.to_string()),
        ("NTON_DATA_ROOT", root.path().display().to_string()),
        ("RUST_LOG", "warn".to_string()),
    ];
    let output = run(&["procure"], &vars);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(output.stdout.is_empty(), "info lines are filtered out at warn");
}
