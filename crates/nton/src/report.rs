//! `nton report`: a summary of a local run, made from its run record alone: how it ended,
//! each job's children (succeeded, failed, retried, time per child), how many times each
//! state ran, and the failed children with their reasons.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nton_core::batch::JobStatus;
use nton_engine::record::{ChildLine, RECORD_FILE, RecordLine, StateEvent};
use serde::Serialize;

use crate::cli::ReportArgs;
use crate::exit::{self, CommandError};
use crate::timeline::{Timeline, render_html};

/// The timeline picture's file name in a run directory.
pub const HTML_FILE: &str = "report.html";

/// Most failed children listed one by one.
const LISTED_FAILURES: usize = 20;

#[derive(Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub execution_name: String,
    pub status: String,
    pub seconds: Option<f64>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub jobs: BTreeMap<String, JobReport>,
    /// Job labels in the order their first child ended (stage order, for a pipeline).
    pub job_order: Vec<String>,
    /// How many times each state was entered (a poll loop shows here).
    pub state_visits: BTreeMap<String, u64>,
    pub failures: Vec<FailureReport>,
    pub failure_count: usize,
}

#[derive(Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobReport {
    pub succeeded: u64,
    pub failed: u64,
    /// Attempts that failed and were retried.
    pub retried_attempts: u64,
    /// Children an earlier execution had finished (a resumed run).
    pub resumed: u64,
    /// Milliseconds from start to stop of the children that ran.
    pub child_ms_median: Option<i64>,
    pub child_ms_p90: Option<i64>,
    pub child_ms_max: Option<i64>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailureReport {
    pub job_name: String,
    pub node: Option<u32>,
    pub attempt: u32,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub stderr_tail: Option<String>,
}

/// Builds the report from a record's lines.
pub fn build_report(lines: &[RecordLine]) -> Report {
    let mut report = Report { status: "RUNNING".to_string(), ..Report::default() };
    let mut started_at = None;
    let mut durations: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut finals: BTreeMap<(String, Option<u32>), &ChildLine> = BTreeMap::new();
    for line in lines {
        match line {
            RecordLine::Run(start) => {
                report.execution_name = start.execution_name.clone();
                started_at.get_or_insert(start.started_at);
                // A resumed execution starts again: its end is the one that counts.
                report.status = "RUNNING".to_string();
            }
            RecordLine::State(state) if state.event == StateEvent::Entered => {
                *report.state_visits.entry(state.name.clone()).or_default() += 1;
            }
            RecordLine::State(_) => {}
            RecordLine::Child(child) => {
                let label = job_label(&child.job_name);
                if !report.jobs.contains_key(&label) {
                    report.job_order.push(label.clone());
                }
                let job = report.jobs.entry(label.clone()).or_default();
                if !child.is_final {
                    job.retried_attempts += 1;
                }
                if let Some(start) = child.started_at {
                    durations.entry(label.clone()).or_default().push(child.stopped_at - start);
                }
                if child.is_final {
                    // A resumed execution ends every child again: the last word counts.
                    finals.insert((label, child.node), child);
                }
            }
            RecordLine::End(end) => {
                report.status = end.status.to_string();
                report.error = end.error.clone();
                report.cause = end.cause.clone();
                if let Some(start) = started_at {
                    report.seconds = Some((end.at - start) as f64 / 1000.0);
                }
            }
        }
    }
    for ((label, _), child) in finals {
        let job = report.jobs.entry(label).or_default();
        match (child.status, child.started_at) {
            (JobStatus::Succeeded, Some(_)) => job.succeeded += 1,
            (JobStatus::Succeeded, None) => {
                job.succeeded += 1;
                job.resumed += 1;
            }
            _ => {
                job.failed += 1;
                report.failure_count += 1;
                if report.failures.len() < LISTED_FAILURES {
                    report.failures.push(FailureReport {
                        job_name: child.job_name.clone(),
                        node: child.node,
                        attempt: child.attempt,
                        reason: child.reason.clone(),
                        exit_code: child.exit_code,
                        stderr_tail: child.stderr_tail.clone(),
                    });
                }
            }
        }
    }
    for (label, mut values) in durations {
        values.sort_unstable();
        let job = report.jobs.entry(label).or_default();
        job.child_ms_median = percentile(&values, 50);
        job.child_ms_p90 = percentile(&values, 90);
        job.child_ms_max = values.last().copied();
    }
    report
}

fn percentile(sorted: &[i64], pct: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * pct).div_ceil(100).max(1) - 1;
    sorted.get(rank).copied()
}

fn job_label(job_name: &str) -> String {
    crate::progress::short_job_name(job_name).to_string()
}

/// The report as text.
pub fn render(report: &Report) -> String {
    let mut text = format!("run {}: {}", report.execution_name, report.status);
    if let Some(seconds) = report.seconds {
        text += &format!(" in {seconds:.1} s");
    }
    text.push('\n');
    for (job, stats) in
        report.job_order.iter().filter_map(|label| Some((label, report.jobs.get(label)?)))
    {
        text += &format!(
            "  {job:<16} {} succeeded, {} failed, {} retried attempts",
            stats.succeeded, stats.failed, stats.retried_attempts
        );
        if stats.resumed > 0 {
            text += &format!(", {} resumed", stats.resumed);
        }
        if let (Some(median), Some(p90), Some(max)) =
            (stats.child_ms_median, stats.child_ms_p90, stats.child_ms_max)
        {
            text += &format!("; per child {median} ms median, {p90} ms p90, {max} ms max");
        }
        text.push('\n');
    }
    if !report.state_visits.is_empty() {
        let visits: Vec<String> =
            report.state_visits.iter().map(|(state, count)| format!("{state} x{count}")).collect();
        text += &format!("  states           {}\n", visits.join(", "));
    }
    if let Some(cause) = &report.cause {
        text += &format!(
            "  error            {}\n  cause            {cause}\n",
            report.error.as_deref().unwrap_or("?")
        );
    }
    for failure in &report.failures {
        text += &format!(
            "  failed           {} node {} attempt {}: {}{}\n",
            job_label(&failure.job_name),
            failure.node.map_or_else(|| "-".to_string(), |node| node.to_string()),
            failure.attempt,
            failure.reason.as_deref().unwrap_or("no reason given"),
            failure.stderr_tail.as_deref().map(|tail| format!(" — {tail}")).unwrap_or_default()
        );
    }
    if report.failure_count > report.failures.len() {
        text += &format!(
            "  ... and {} more failed children\n",
            report.failure_count - report.failures.len()
        );
    }
    text
}

/// Runs `nton report`: of an execution on AWS when one is named (`--execution`, `--env`,
/// `--state-machine-arn`, or an execution ARN in place of the run directory), else of a local run.
pub async fn report(mut args: ReportArgs) -> anyhow::Result<u8> {
    if is_of_aws(&mut args) {
        return aws_report(args).await;
    }
    local_report(args)
}

/// Whether the report is of an execution on AWS; an execution ARN given in place of the run
/// directory (and no such path here) moves to `--execution`.
fn is_of_aws(args: &mut ReportArgs) -> bool {
    if let Some(dir) = &args.run_dir
        && dir.to_string_lossy().starts_with("arn:")
        && !dir.exists()
    {
        args.execution = Some(dir.to_string_lossy().into_owned());
        args.run_dir = None;
    }
    args.execution.is_some() || args.env.is_some() || args.state_machine_arn.is_some()
}

/// The `nton watch` options that name the same execution, so both resolve it one way.
fn watch_args(args: &ReportArgs) -> crate::aws::WatchArgs {
    crate::aws::WatchArgs {
        env: args.env.clone(),
        prefix: args.prefix.clone(),
        execution: args.execution.clone().unwrap_or_else(|| "latest".to_string()),
        state_machine_arn: args.state_machine_arn.clone(),
        poll_seconds: 10.0,
        watch_state: args.watch_state.clone(),
        json: args.json,
        aws: args.aws.clone(),
    }
}

async fn aws_report(args: ReportArgs) -> anyhow::Result<u8> {
    watch_args(&args).check()?;
    let config = crate::aws::load_config(&args.aws).await?;
    let text = aws_report_with(&config, &args).await?;
    print!("{text}");
    Ok(exit::SUCCESS)
}

/// The report of an execution on AWS with an SDK config made by the caller: writes the HTML
/// page and returns what goes to stdout (the summary and the page's path, or the JSON).
pub async fn aws_report_with(
    config: &aws_config::SdkConfig,
    args: &ReportArgs,
) -> anyhow::Result<String> {
    watch_args(args).check()?;
    let read = crate::aws::jobs::execution_timeline(config, &watch_args(args)).await?;
    let timeline = &read.timeline;
    let html_path = args
        .html
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("nton-report-{}.html", timeline.run)));
    nton_core::fsutil::write_atomic(&html_path, render_html(timeline).as_bytes())
        .with_context(|| format!("writing {}", html_path.display()))?;
    if args.json {
        let value = serde_json::json!({
            "executionArn": read.execution_arn,
            "status": timeline.status,
            "error": read.error,
            "cause": read.cause,
            "timeline": timeline,
            "html": html_path,
        });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&value)?));
    }
    let seconds = (timeline.ended_at - timeline.started_at) as f64 / 1000.0;
    let mut text =
        format!("execution {}: {} in {seconds:.1} s\n", read.execution_arn, timeline.status);
    for stage in &timeline.stages {
        let totals = &timeline.totals[stage];
        text += &format!(
            "  {stage:<16} {} succeeded, {} failed, {} retried attempts\n",
            totals.succeeded, totals.failed, totals.retried_attempts
        );
    }
    if let Some(cause) = &read.cause {
        text += &format!(
            "  error            {}\n  cause            {cause}\n",
            read.error.as_deref().unwrap_or("?")
        );
    }
    if !timeline.failed_nodes.is_empty() {
        let nodes: Vec<String> = timeline.failed_nodes.iter().map(u32::to_string).collect();
        text += &format!("  failed nodes     {}\n", nodes.join(", "));
    }
    text += &format!("timeline: {}\n", html_path.display());
    Ok(text)
}

fn local_report(args: ReportArgs) -> anyhow::Result<u8> {
    let run_dir = match args.run_dir {
        Some(dir) => dir,
        None => latest_run(&args.data_dir)?,
    };
    let path = if run_dir.is_file() { run_dir.clone() } else { run_dir.join(RECORD_FILE) };
    let lines = crate::retry::read_run_record(&path).map_err(|error| {
        CommandError::bad_input(format!("cannot read {}: {error}", path.display()))
    })?;
    let report = build_report(&lines);
    let timeline = Timeline::from_record(&lines);
    let html_path =
        args.html.unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).join(HTML_FILE));
    nton_core::fsutil::write_atomic(&html_path, render_html(&timeline).as_bytes())
        .with_context(|| format!("writing {}", html_path.display()))?;
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["timeline"] = serde_json::to_value(&timeline)?;
        value["html"] = serde_json::to_value(&html_path)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(&report));
        println!("timeline: {}", html_path.display());
    }
    Ok(exit::SUCCESS)
}

/// The most recently changed run directory (one holding a record) under `data_dir`.
pub fn latest_run(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let entries = std::fs::read_dir(data_dir).map_err(|error| {
        CommandError::bad_input(format!(
            "no runs in {} (run `nton run` first, or name a run directory): {error}",
            data_dir.display()
        ))
    })?;
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join(RECORD_FILE).is_file())
        .max_by_key(|path| {
            std::fs::metadata(path.join(RECORD_FILE)).and_then(|meta| meta.modified()).ok()
        })
        .ok_or_else(|| {
            CommandError::bad_input(format!("no run records under {}", data_dir.display())).into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nton_engine::record::{ChildLine, RunEnd, RunStart, StateLine};
    use serde_json::json;

    fn child(node: u32, status: &str, is_final: bool, started: Option<i64>) -> RecordLine {
        RecordLine::Child(ChildLine {
            job_id: format!("j:{node}"),
            job_name: "nton-procure-0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            node: Some(node),
            attempt: 1,
            started_at: started,
            stopped_at: 1_100,
            status: serde_json::from_value(json!(status)).expect("a status name"),
            reason: (status == "FAILED").then(|| "Essential container in task exited".into()),
            exit_code: Some(i32::from(status == "FAILED")),
            stderr_tail: None,
            is_final,
        })
    }

    #[test]
    fn report_counts_children_states_and_failures() {
        let lines = vec![
            RecordLine::Run(RunStart {
                execution_name: "local-1".into(),
                template: "t".into(),
                state_machine: "StateMachine".into(),
                input: json!({}),
                started_at: 1_000,
                resumed: false,
                meta: json!(null),
            }),
            RecordLine::State(StateLine {
                name: "Watch".into(),
                event: StateEvent::Entered,
                at: 1_001,
                output: None,
            }),
            RecordLine::State(StateLine {
                name: "Watch".into(),
                event: StateEvent::Entered,
                at: 1_002,
                output: None,
            }),
            child(0, "SUCCEEDED", true, Some(1_000)),
            child(1, "FAILED", false, Some(1_050)),
            child(1, "FAILED", true, Some(1_080)),
            child(2, "SUCCEEDED", true, None),
            RecordLine::End(RunEnd {
                status: nton_engine::record::RunOutcome::Failed,
                at: 3_500,
                error: Some("nton.NodesFailed".into()),
                cause: Some("procure failed on node 1".into()),
                output: None,
            }),
        ];
        let report = build_report(&lines);
        let procure = &report.jobs["nton-procure"];
        assert_eq!(procure.succeeded, 2);
        assert_eq!(procure.failed, 1);
        assert_eq!(procure.retried_attempts, 1);
        assert_eq!(procure.resumed, 1);
        assert_eq!(procure.child_ms_max, Some(100));
        assert_eq!(report.state_visits["Watch"], 2);
        assert_eq!(report.seconds, Some(2.5));
        assert_eq!(report.failure_count, 1);
        assert_eq!(report.failures[0].node, Some(1));
        let text = render(&report);
        assert!(text.contains("FAILED in 2.5 s"), "{text}");
        assert!(text.contains("nton-procure node 1 attempt 1"), "{text}");
    }

    #[test]
    fn a_resumed_execution_supersedes_earlier_ends_of_the_same_child() {
        let lines = vec![
            child(0, "SUCCEEDED", true, Some(1_000)),
            child(1, "FAILED", true, Some(1_000)),
            // The resume: node 0 skipped (already done), node 1 runs again and succeeds.
            child(0, "SUCCEEDED", true, None),
            child(1, "SUCCEEDED", true, Some(1_050)),
        ];
        let report = build_report(&lines);
        let procure = &report.jobs["nton-procure"];
        assert_eq!(procure.succeeded, 2);
        assert_eq!(procure.failed, 0);
        assert_eq!(procure.resumed, 1);
        assert_eq!(report.failure_count, 0);
        assert!(report.failures.is_empty());
    }

    #[test]
    fn an_execution_arn_a_name_or_an_environment_makes_it_a_report_of_aws() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            report: ReportArgs,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("report").chain(args.iter().copied()))
                .map(|cli| cli.report)
        };
        let arn = "arn:aws:states:us-east-1:123456789012:execution:m:e";
        let mut args = parse(&[arn]).unwrap();
        assert!(is_of_aws(&mut args));
        assert_eq!(args.execution.as_deref(), Some(arn));
        assert_eq!(args.run_dir, None);
        assert_eq!(watch_args(&args).execution, arn);
        let mut args = parse(&["--env", "dev"]).unwrap();
        assert!(is_of_aws(&mut args));
        assert_eq!(watch_args(&args).execution, "latest");
        let mut args = parse(&["nton-runs/wf-1"]).unwrap();
        assert!(!is_of_aws(&mut args));
        assert!(!is_of_aws(&mut parse(&[]).unwrap()));
        // A run directory and an execution together are refused by the parser.
        assert!(parse(&["nton-runs/wf-1", "--execution", "latest"]).is_err());
        assert!(parse(&["nton-runs/wf-1", "--env", "dev"]).is_err());
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let values: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&values, 50), Some(5));
        assert_eq!(percentile(&values, 90), Some(9));
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 90), Some(7));
    }
}
