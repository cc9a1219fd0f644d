//! `nton run --template` on the pipeline written in JSONata (issue 11 item 1):
//! `tests/templates/jsonata-pipeline.yaml` is `cloudformation/pipeline.yaml` with its state
//! machine rewritten in JSONata (`QueryLanguage: JSONata`, `Arguments`, `Output`, `Assign`,
//! Choice `Condition`, a Wait `Seconds` expression, Catch `Output`, the plan in a workflow
//! variable). Both templates run end to end through the CLI, the local Batch and the real
//! `nton-job` workers on the same ids; the JSONata run must succeed with the JSONPath run's
//! output (up to the ids each run mints), the same states entered and the same result files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use nton_engine::record::{RECORD_FILE, RecordLine, RunOutcome, read_record};
use nton_tests::cli::run_succeeded;
use serde_json::Value;

const JSONATA_TEMPLATE: &str = "tests/templates/jsonata-pipeline.yaml";
const JSONPATH_TEMPLATE: &str = "cloudformation/pipeline.yaml";

/// What one run left: its workflow id, the states it entered in order, its final output and
/// its result files (relative to the run's results directory).
struct Run {
    workflow_id: String,
    entered: Vec<String>,
    output: Value,
    results: BTreeSet<PathBuf>,
}

fn run(template: &str, data_dir: &Path) -> Run {
    let run = run_succeeded(
        data_dir,
        &["--template", template, "--ids", "30", "--ids-per-node", "10", "--parallelism", "2"],
    );
    let (entered, workflow_id) = (run.entered(), run.workflow_id);
    let record = read_record(&data_dir.join(&workflow_id).join(RECORD_FILE)).expect("a record");
    let end = record
        .iter()
        .find_map(|line| match line {
            RecordLine::End(end) => Some(end.clone()),
            _ => None,
        })
        .expect("an end line");
    assert_eq!(end.status, RunOutcome::Succeeded, "{template}");
    let results_dir = data_dir.join("results").join(&workflow_id);
    let mut results = BTreeSet::new();
    collect_files(&results_dir, &results_dir, &mut results);
    Run { workflow_id, entered, output: end.output.expect("an output"), results }
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else {
            out.insert(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

/// The output with what each run mints on its own (its workflow id, Batch job ids) replaced by
/// placeholders, so that two runs compare.
fn normalized(output: &Value, workflow_id: &str, job_ids: &BTreeSet<String>) -> Value {
    match output {
        Value::String(s) if s == workflow_id => Value::String("<workflow>".into()),
        Value::String(s) if job_ids.contains(s) => Value::String("<job>".into()),
        Value::String(s) => Value::String(s.replace(workflow_id, "<workflow>")),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| normalized(v, workflow_id, job_ids)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter().map(|(k, v)| (k.clone(), normalized(v, workflow_id, job_ids))).collect(),
        ),
        other => other.clone(),
    }
}

fn job_ids(output: &Value) -> BTreeSet<String> {
    ["procure", "process", "egress"]
        .iter()
        .filter_map(|stage| output["jobs"][stage]["JobId"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_pipeline_in_jsonata_runs_as_the_jsonpath_pipeline_does() {
    let jsonata_dir = tempfile::tempdir().unwrap();
    let jsonpath_dir = tempfile::tempdir().unwrap();
    let jsonata = run(JSONATA_TEMPLATE, jsonata_dir.path());
    let jsonpath = run(JSONPATH_TEMPLATE, jsonpath_dir.path());

    // The JSONata machine kept the plan in a variable and built every payload with
    // expressions: the run still went Init -> ChooseJobShape -> the array submissions -> Watch
    // (polling) -> IsDone -> Succeeded, as the JSONPath one did.
    for state in ["Init", "ChooseJobShape", "SubmitProcureArray", "SubmitEgressArray", "Watch"] {
        assert!(jsonata.entered.iter().any(|s| s == state), "{state}: {:?}", jsonata.entered);
    }
    assert_eq!(jsonata.entered.last().map(String::as_str), Some("Succeeded"));
    let states = |run: &Run| run.entered.iter().cloned().collect::<BTreeSet<String>>();
    assert_eq!(states(&jsonata), states(&jsonpath));

    // Same output, up to the ids each run minted.
    assert_eq!(job_ids(&jsonata.output).len(), 3, "{}", jsonata.output);
    assert_eq!(
        normalized(&jsonata.output, &jsonata.workflow_id, &job_ids(&jsonata.output)),
        normalized(&jsonpath.output, &jsonpath.workflow_id, &job_ids(&jsonpath.output)),
    );
    assert_eq!(jsonata.output["plan"]["nodes"], 3);
    assert_eq!(jsonata.output["status"]["done"], true);
    assert_eq!(jsonata.output["status"]["failed"], false);

    // Every id's result is where egress puts it, in both runs alike (the files are named after
    // ids each run mints, so they are counted by node).
    let by_node = |run: &Run| {
        let mut counts = BTreeMap::<String, usize>::new();
        for path in &run.results {
            let top = path.components().next().unwrap().as_os_str().to_string_lossy();
            *counts.entry(top.into_owned()).or_default() += 1;
        }
        counts
    };
    assert_eq!(by_node(&jsonata), by_node(&jsonpath));
    assert_eq!(by_node(&jsonata).get("0"), Some(&10), "{:?}", jsonata.results);
    assert_eq!(jsonata.results.iter().filter(|p| p.starts_with("2/results")).count(), 10);
}
