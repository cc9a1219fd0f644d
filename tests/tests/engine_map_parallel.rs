//! `nton run --template` on a state machine the real pipeline does not have (issue 11 item 5):
//! `tests/templates/map-parallel.yaml` plans with the init function, waits on procure and
//! process array jobs, labels every node in a Map over the nodes, egresses in a Parallel state
//! and checks the run with the watch function, using variables throughout. The run goes end to
//! end through the CLI (its JSON progress events and summary, then `nton report`), the local
//! Batch and the real `nton-job` workers; what the test asserts comes from the run record and
//! the result files.

use std::collections::BTreeSet;

use nton_core::batch::JobStatus;
use nton_engine::record::{RECORD_FILE, RecordLine, RunOutcome, read_record};
use nton_tests::cli::{nton_with_data as nton, run_succeeded};
use serde_json::json;

const TEMPLATE: &str = "tests/templates/map-parallel.yaml";

#[test]
fn a_map_over_nodes_and_a_parallel_egress_run_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_succeeded(
        dir.path(),
        &["--template", TEMPLATE, "--ids", "30", "--ids-per-node", "10", "--parallelism", "2"],
    );
    let workflow_id = run.workflow_id.clone();

    // The progress stream named the nested states as they ran.
    let entered = run.entered();
    for state in ["LabelNodes", "Label", "Egress", "SubmitEgress", "Tally", "Check", "Done"] {
        assert!(entered.iter().any(|s| s == state), "{state} not entered: {entered:?}");
    }
    assert_eq!(entered.iter().filter(|s| *s == "Label").count(), 3);

    // The record: the final output carries the Map's labels in node order (set from a
    // variable the outer scope assigned and one each iteration assigned), the Parallel's
    // tally, and the three stages' jobs.
    let run_dir = dir.path().join(&workflow_id);
    let record = read_record(&run_dir.join(RECORD_FILE)).expect("a record");
    let end = record
        .iter()
        .find_map(|line| match line {
            RecordLine::End(end) => Some(end.clone()),
            _ => None,
        })
        .expect("an end line");
    assert_eq!(end.status, RunOutcome::Succeeded);
    let out = end.output.expect("an output");
    assert_eq!(out["workflowId"], workflow_id.as_str());
    assert_eq!(
        out["labels"],
        json!([
            {"node": 0, "label": format!("{workflow_id}/0")},
            {"node": 1, "label": format!("{workflow_id}/1")},
            {"node": 2, "label": format!("{workflow_id}/2")}
        ])
    );
    assert_eq!(out["labelled"], 3);
    let children: BTreeSet<(String, u32)> = record
        .iter()
        .filter_map(|line| match line {
            RecordLine::Child(c) if c.is_final && c.status == JobStatus::Succeeded => {
                Some((c.job_name.clone(), c.node.unwrap_or(u32::MAX)))
            }
            _ => None,
        })
        .collect();
    for stage in ["procure", "process", "egress"] {
        for node in 0..3 {
            let name = format!("nton-{stage}-{workflow_id}");
            assert!(
                children.contains(&(name.clone(), node)),
                "{name} node {node} did not succeed: {children:?}"
            );
        }
    }

    // Every id's result is where egress puts it.
    let results = dir.path().join("results").join(&workflow_id);
    let files: usize = (0..3)
        .map(|node| {
            std::fs::read_dir(results.join(node.to_string()).join("results"))
                .map(|entries| entries.count())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(files, 30, "result files under {}", results.display());

    // And the report draws it.
    let report = nton(&["report", run_dir.to_str().unwrap(), "--watch-state", "Check"], dir.path());
    assert_eq!(report.status.code(), Some(0), "{}", String::from_utf8_lossy(&report.stderr));
    // The report counts the nested states' entries with the others.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&report.stdout),
        String::from_utf8_lossy(&report.stderr)
    );
    for count in ["Label x3", "Labelled x3", "SubmitEgress x1", "Tally x1", "LabelNodes x1"] {
        assert!(text.contains(count), "the report lacks {count}: {text}");
    }
    let html = std::fs::read_to_string(run_dir.join("report.html")).expect("report.html");
    assert!(html.contains("nton-egress"), "the timeline draws the egress job");
}
