//! `nton run --template` on a pipeline with four stages (issue 12 item 2):
//! `tests/templates/four-stage.yaml` is the real template with a `check` stage (a second
//! `nton-job process` pass) chained N_TO_N between process and egress. No Rust code names that
//! stage: the progress events, the watcher's status, the report and the run record must all show
//! it, in run order, because the template submits it.

use nton_core::batch::JobStatus;
use nton_engine::record::{RECORD_FILE, RecordLine, RunOutcome, StateEvent, read_record};
use nton_tests::cli::{nton_with_data as nton, run_succeeded};

const TEMPLATE: &str = "tests/templates/four-stage.yaml";

const STAGES: [&str; 4] = ["procure", "process", "check", "egress"];

/// The position of each stage's job name (`nton-<stage>-<workflow>`) in `names`, first seen.
fn first_seen(names: &[String], workflow_id: &str) -> Vec<usize> {
    STAGES
        .iter()
        .map(|stage| {
            let name = format!("nton-{stage}-{workflow_id}");
            names.iter().position(|n| *n == name).unwrap_or_else(|| panic!("{name} in {names:?}"))
        })
        .collect()
}

#[test]
fn a_fourth_stage_in_the_template_runs_and_shows_everywhere_in_run_order() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_succeeded(
        dir.path(),
        &["--template", TEMPLATE, "--ids", "30", "--ids-per-node", "10", "--parallelism", "2"],
    );
    let (events, workflow_id) = (&run.events, run.workflow_id.clone());

    // Progress events: the check stage's children ran, between process and egress.
    let entered = run.entered();
    assert!(entered.iter().any(|s| s == "SubmitCheckArray"), "{entered:?}");
    let job_names: Vec<String> =
        events.iter().filter_map(|e| e["jobName"].as_str().map(str::to_string)).collect();
    let order = first_seen(&job_names, &workflow_id);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "stages first seen in run order: {order:?}");

    // The record: every node of every stage succeeded, and the watcher's last status lists the
    // four stages in run order (the `position` it gives each), all done.
    let run_dir = dir.path().join(&workflow_id);
    let record = read_record(&run_dir.join(RECORD_FILE)).expect("a record");
    for stage in STAGES {
        let name = format!("nton-{stage}-{workflow_id}");
        for node in 0..3 {
            assert!(
                record.iter().any(|line| matches!(line, RecordLine::Child(c)
                    if c.job_name == name && c.node == Some(node) && c.is_final
                        && c.status == JobStatus::Succeeded)),
                "{name} node {node} did not succeed"
            );
        }
    }
    let status = record
        .iter()
        .rev()
        .find_map(|line| match line {
            RecordLine::State(state)
                if state.name == "Watch" && state.event == StateEvent::Exited =>
            {
                state.output.as_ref().map(|o| o["status"].clone())
            }
            _ => None,
        })
        .expect("a Watch exit");
    assert_eq!(status["done"], true, "{status}");
    for (position, stage) in STAGES.iter().enumerate() {
        let progress = &status["progress"][stage];
        assert_eq!(progress["position"], position, "{stage}: {status}");
        assert_eq!(progress["size"], 3, "{stage}: {status}");
        assert_eq!(progress["counts"]["SUCCEEDED"], 3, "{stage}: {status}");
    }
    let end = record.iter().find_map(|line| match line {
        RecordLine::End(end) => Some(end.clone()),
        _ => None,
    });
    assert_eq!(end.expect("an end line").status, RunOutcome::Succeeded);

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

    // The report counts each of the four stages, in run order, and the timeline draws check.
    let report = nton(&["report", run_dir.to_str().unwrap()], dir.path());
    assert_eq!(report.status.code(), Some(0), "{}", String::from_utf8_lossy(&report.stderr));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&report.stdout),
        String::from_utf8_lossy(&report.stderr)
    );
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let at: Vec<usize> = STAGES
        .iter()
        .map(|stage| {
            lines
                .iter()
                .position(|line| {
                    line.contains(&format!("nton-{stage}")) && line.contains("3 succeeded")
                })
                .unwrap_or_else(|| panic!("the report has no 3-succeeded line for {stage}: {text}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "report in run order: {text}");
    let html = std::fs::read_to_string(run_dir.join("report.html")).expect("report.html");
    assert!(html.contains("nton-check"), "the timeline draws the check job");

    // `nton watch RUN_DIR` of the ended run prints one line per stage, in run order.
    let watch = nton(&["watch", run_dir.to_str().unwrap()], dir.path());
    let watched = String::from_utf8_lossy(&watch.stderr).to_string();
    assert_eq!(watch.status.code(), Some(0), "{watched}");
    let at: Vec<usize> = STAGES
        .iter()
        .map(|stage| {
            watched
                .find(&format!("{stage:<8}     3/3     ended  SUCCEEDED 3"))
                .unwrap_or_else(|| panic!("watch has no line for {stage}: {watched}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "watch in run order: {watched}");
}
