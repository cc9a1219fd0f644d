//! The timeline of one run: one row per node, one bar per stage attempt from its start to its
//! stop, coloured by outcome, with the poll loop's visits as ticks. Built from attempts alone
//! (`Attempt`), so a local run record and an AWS execution's DescribeJobs answers feed the same
//! picture; rendered as one self-contained HTML file (inline SVG and CSS, no script, no network)
//! with maud, which escapes every value it writes.

use std::collections::{BTreeMap, BTreeSet};

use maud::{DOCTYPE, Markup, PreEscaped, html};
use nton_core::batch::JobStatus;
use nton_engine::record::{RecordLine, StateEvent};
use serde::Serialize;

/// Most node rows drawn. Failed nodes and the slowest ones are always among them; the rest are
/// an even sample, so a 10,000-node run still opens instantly.
pub const MAX_ROWS: usize = 200;

/// Slowest nodes named in the header and always drawn.
pub const SLOWEST: usize = 10;

/// How one attempt of one child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Succeeded,
    /// Failed, and tried again.
    Retried,
    Failed,
    /// Ended before this run (a resumed run's earlier work): no bar, counted only.
    Resumed,
}

/// One attempt of one stage of one node, times in milliseconds since the epoch.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub stage: String,
    /// The array index; 0 for a plain job.
    pub node: u32,
    pub attempt: u32,
    pub started_at: Option<i64>,
    pub stopped_at: i64,
    pub outcome: Outcome,
    pub reason: Option<String>,
}

/// One drawn node: its attempts in stage order.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub node: u32,
    pub attempts: Vec<Attempt>,
    /// From the first start to the last stop of its attempts.
    pub span_ms: i64,
    pub failed: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageTotals {
    pub succeeded: u64,
    pub failed: u64,
    pub retried_attempts: u64,
    pub resumed: u64,
}

/// Everything the picture shows, as data (`nton report --json` prints it).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub run: String,
    pub status: String,
    pub started_at: i64,
    pub ended_at: i64,
    /// Stages in the order their first attempt started.
    pub stages: Vec<String>,
    pub totals: BTreeMap<String, StageTotals>,
    pub node_count: usize,
    pub failed_nodes: Vec<u32>,
    /// `(node, span)` of the slowest nodes, slowest first.
    pub slowest: Vec<(u32, i64)>,
    /// The rows drawn: every failed node, the slowest, then an even sample.
    pub rows: Vec<NodeRow>,
    /// The state the poll loop enters each round, and when it did.
    pub poll_state: Option<String>,
    pub polls: Vec<i64>,
}

impl Timeline {
    /// Builds the picture's data from attempts and the poll loop's visits.
    pub fn build(
        run: String,
        status: String,
        attempts: Vec<Attempt>,
        poll_state: Option<String>,
        polls: Vec<i64>,
        bounds: Option<(i64, i64)>,
    ) -> Timeline {
        let mut stage_starts: BTreeMap<String, i64> = BTreeMap::new();
        let mut totals: BTreeMap<String, StageTotals> = BTreeMap::new();
        let mut by_node: BTreeMap<u32, Vec<Attempt>> = BTreeMap::new();
        for attempt in attempts {
            let first = stage_starts.entry(attempt.stage.clone()).or_insert(i64::MAX);
            *first = (*first).min(attempt.started_at.unwrap_or(attempt.stopped_at));
            let stage = totals.entry(attempt.stage.clone()).or_default();
            match attempt.outcome {
                Outcome::Succeeded => stage.succeeded += 1,
                Outcome::Failed => stage.failed += 1,
                Outcome::Retried => stage.retried_attempts += 1,
                Outcome::Resumed => {
                    stage.succeeded += 1;
                    stage.resumed += 1;
                }
            }
            by_node.entry(attempt.node).or_default().push(attempt);
        }
        let mut stages: Vec<String> = stage_starts.keys().cloned().collect();
        stages.sort_by_key(|stage| stage_starts[stage]);
        let order: BTreeMap<&str, usize> =
            stages.iter().enumerate().map(|(index, stage)| (stage.as_str(), index)).collect();

        let mut rows: Vec<NodeRow> = by_node
            .into_iter()
            .map(|(node, mut attempts)| {
                attempts.sort_by_key(|a| (order[a.stage.as_str()], a.attempt));
                let drawn = attempts.iter().filter_map(|a| Some((a.started_at?, a.stopped_at)));
                let first = drawn.clone().map(|(start, _)| start).min();
                let last = drawn.map(|(_, stop)| stop).max();
                NodeRow {
                    node,
                    failed: attempts.iter().any(|a| a.outcome == Outcome::Failed),
                    span_ms: first.zip(last).map_or(0, |(first, last)| last - first),
                    attempts,
                }
            })
            .collect();
        let node_count = rows.len();
        let failed_nodes: Vec<u32> = rows.iter().filter(|r| r.failed).map(|r| r.node).collect();
        let mut by_span: Vec<(u32, i64)> = rows.iter().map(|r| (r.node, r.span_ms)).collect();
        by_span.sort_by_key(|&(node, span)| (std::cmp::Reverse(span), node));
        let slowest: Vec<(u32, i64)> = by_span.into_iter().take(SLOWEST).collect();

        let keep = rows_to_draw(&rows, &failed_nodes, &slowest);
        rows.retain(|row| keep.contains(&row.node));

        let times = rows
            .iter()
            .flat_map(|row| &row.attempts)
            .flat_map(|a| a.started_at.into_iter().chain([a.stopped_at]))
            .chain(polls.iter().copied());
        let (started_at, ended_at) = bounds.unwrap_or_else(|| {
            let (min, max) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
            if min > max { (0, 0) } else { (min, max) }
        });
        Timeline {
            run,
            status,
            started_at,
            ended_at,
            stages,
            totals,
            node_count,
            failed_nodes,
            slowest,
            rows,
            poll_state,
            polls,
        }
    }

    /// From a local run's record: every child attempt, and the visits of the state entered
    /// most often (the poll loop's Lambda task comes first among equals).
    pub fn from_record(lines: &[RecordLine]) -> Timeline {
        let mut run = None;
        let mut status = "RUNNING".to_string();
        let mut started = None;
        let mut ended = None;
        // Keyed by (stage, node, attempt). A resumed execution ends an earlier execution's
        // finished child again without running it: that line never replaces a real attempt.
        let mut attempts: BTreeMap<(String, u32, u32), Attempt> = BTreeMap::new();
        let mut visits: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for line in lines {
            match line {
                RecordLine::Run(start) => {
                    run.get_or_insert_with(|| start.execution_name.clone());
                    started.get_or_insert(start.started_at);
                    status = "RUNNING".to_string();
                }
                RecordLine::State(state) if state.event == StateEvent::Entered => {
                    visits.entry(state.name.clone()).or_default().push(state.at);
                }
                RecordLine::State(_) => {}
                RecordLine::Child(child) => {
                    let stage = crate::progress::short_job_name(&child.job_name).to_string();
                    let node = child.node.unwrap_or(0);
                    let outcome = match (child.status, child.is_final, child.started_at) {
                        (JobStatus::Succeeded, _, None) => Outcome::Resumed,
                        (JobStatus::Succeeded, _, Some(_)) => Outcome::Succeeded,
                        (_, false, _) => Outcome::Retried,
                        _ => Outcome::Failed,
                    };
                    let key = (stage.clone(), node, child.attempt);
                    if outcome == Outcome::Resumed && attempts.contains_key(&key) {
                        continue;
                    }
                    attempts.insert(
                        key,
                        Attempt {
                            stage,
                            node,
                            attempt: child.attempt,
                            started_at: child.started_at,
                            stopped_at: child.stopped_at,
                            outcome,
                            reason: child.reason.clone(),
                        },
                    );
                }
                RecordLine::End(end) => {
                    ended = Some(end.at);
                    status = end.status.to_string();
                }
            }
        }
        let run = run.unwrap_or_default();
        let attempts: Vec<Attempt> = attempts.into_values().collect();
        let poll =
            visits.iter().filter(|(_, times)| times.len() > 1).max_by_key(|(_, times)| times.len());
        let (poll_state, mut polls) = match poll {
            Some((name, times)) => (Some(name.clone()), times.clone()),
            None => (None, Vec::new()),
        };
        polls.sort_unstable();
        let bounds = started.map(|start| (start, ended.unwrap_or(start).max(start)));
        Timeline::build(run, status, attempts, poll_state, polls, bounds)
    }
}

/// Which nodes get a row: failed ones, the slowest, then an even sample up to [`MAX_ROWS`].
fn rows_to_draw(rows: &[NodeRow], failed: &[u32], slowest: &[(u32, i64)]) -> BTreeSet<u32> {
    let mut keep: BTreeSet<u32> = failed.iter().copied().take(MAX_ROWS).collect();
    keep.extend(slowest.iter().map(|&(node, _)| node));
    let room = MAX_ROWS.saturating_sub(keep.len());
    let rest: Vec<u32> = rows.iter().map(|r| r.node).filter(|n| !keep.contains(n)).collect();
    if rest.len() <= room {
        keep.extend(rest);
    } else if room > 0 {
        let step = rest.len() as f64 / room as f64;
        keep.extend((0..room).map(|i| rest[(i as f64 * step) as usize]));
    }
    keep
}

const ROW_HEIGHT: f64 = 14.0;
const LABEL_WIDTH: f64 = 70.0;
const PLOT_WIDTH: f64 = 1000.0;
const AXIS_HEIGHT: f64 = 24.0;

/// The stage colours, in stage order; a fourth stage or more cycles through them.
const STAGE_COLOURS: [&str; 6] = ["#4c78a8", "#54a24b", "#b279a2", "#f58518", "#72b7b2", "#9d755d"];

const CSS: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;text-align:right}\
th{text-align:left}.failed{color:#c0392b}.legend span{display:inline-block;margin-right:1.2em}\
.swatch{display:inline-block;width:12px;height:12px;vertical-align:middle;margin-right:4px}\
svg text{font:11px system-ui,sans-serif}";

/// The whole page.
pub fn render_html(timeline: &Timeline) -> String {
    let seconds = (timeline.ended_at - timeline.started_at) as f64 / 1000.0;
    let page: Markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "nton run " (timeline.run) " — " (timeline.status) }
                style { (PreEscaped(CSS)) }
            }
            body {
                h1 { "Run " (timeline.run) ": "
                    span class=(if timeline.status == "SUCCEEDED" { "" } else { "failed" }) { (timeline.status) }
                    " in " (format!("{seconds:.1}")) " s" }
                table id="totals" {
                    tr { th { "stage" } th { "succeeded" } th { "failed" } th { "retried attempts" } th { "resumed" } }
                    @for stage in &timeline.stages {
                        @let totals = &timeline.totals[stage];
                        tr { th { (stage) } td { (totals.succeeded) } td class=(if totals.failed > 0 { "failed" } else { "" }) { (totals.failed) }
                            td { (totals.retried_attempts) } td { (totals.resumed) } }
                    }
                }
                p {
                    (timeline.node_count) " nodes"
                    @if timeline.rows.len() < timeline.node_count {
                        " (" (timeline.rows.len()) " drawn: every failed node, the " (SLOWEST) " slowest, and an even sample)"
                    }
                    @if !timeline.failed_nodes.is_empty() {
                        ". " span class="failed" { "Failed nodes: " (list(&timeline.failed_nodes)) }
                    }
                    @if let Some(state) = &timeline.poll_state {
                        ". " (timeline.polls.len()) " visits of " (state) " (ticks on the axis)"
                    }
                    "."
                }
                p { "Slowest nodes: "
                    (timeline.slowest.iter().map(|(node, ms)| format!("{node} ({:.1} s)", *ms as f64 / 1000.0)).collect::<Vec<_>>().join(", ")) }
                div class="legend" {
                    @for (index, stage) in timeline.stages.iter().enumerate() {
                        span { span class="swatch" style={ "background:" (colour(index)) } {} (stage) }
                    }
                    span { span class="swatch" style="background:#e67e22;opacity:.6" {} "failed, retried" }
                    span { span class="swatch" style="background:#c0392b" {} "failed" }
                }
                (svg(timeline))
            }
        }
    };
    page.into_string()
}

fn svg(timeline: &Timeline) -> Markup {
    let span = (timeline.ended_at - timeline.started_at).max(1) as f64;
    let x = |t: i64| LABEL_WIDTH + (t - timeline.started_at) as f64 / span * PLOT_WIDTH;
    let height = timeline.rows.len() as f64 * ROW_HEIGHT + AXIS_HEIGHT;
    let stage_index: BTreeMap<&str, usize> =
        timeline.stages.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let ticks = (0..=10).map(|i| timeline.started_at + (span * f64::from(i) / 10.0) as i64);
    html! {
        svg id="timeline" xmlns="http://www.w3.org/2000/svg" width=(LABEL_WIDTH + PLOT_WIDTH + 30.0) height=(height)
            viewBox={ "0 0 " (LABEL_WIDTH + PLOT_WIDTH + 30.0) " " (height) } {
            @for (row_index, row) in timeline.rows.iter().enumerate() {
                @let y = row_index as f64 * ROW_HEIGHT;
                g class="node" data-node=(row.node) {
                    text x="4" y=(y + ROW_HEIGHT - 3.0) class=(if row.failed { "failed" } else { "" }) { "node " (row.node) }
                    @for attempt in &row.attempts {
                        @if let Some(start) = attempt.started_at {
                            rect class="bar" data-stage=(attempt.stage) data-outcome=(outcome_name(attempt.outcome))
                                x=(format!("{:.2}", x(start))) y=(y + 1.0)
                                width=(format!("{:.2}", (x(attempt.stopped_at) - x(start)).max(1.0))) height=(ROW_HEIGHT - 2.0)
                                fill=(bar_fill(attempt, &stage_index)) opacity=(if attempt.outcome == Outcome::Retried { "0.6" } else { "1" }) {
                                title { (attempt.stage) " node " (attempt.node) " attempt " (attempt.attempt) ": "
                                    (outcome_name(attempt.outcome)) " after " (format!("{:.2}", (attempt.stopped_at - start) as f64 / 1000.0)) " s"
                                    @if let Some(reason) = &attempt.reason { " — " (reason) } }
                            }
                        }
                    }
                }
            }
            @let axis = timeline.rows.len() as f64 * ROW_HEIGHT;
            line x1=(LABEL_WIDTH) x2=(LABEL_WIDTH + PLOT_WIDTH) y1=(axis + 1.0) y2=(axis + 1.0) stroke="#888" {}
            @for t in ticks {
                text x=(format!("{:.1}", x(t))) y=(axis + 20.0) text-anchor="middle" fill="#666" {
                    (axis_label(t - timeline.started_at, span)) }
            }
            @for poll in &timeline.polls {
                line class="poll" x1=(format!("{:.2}", x(*poll))) x2=(format!("{:.2}", x(*poll))) y1=(axis + 1.0) y2=(axis + 8.0) stroke="#333" {}
            }
        }
    }
}

/// An axis label: seconds, with a decimal when the whole run is short enough to need one.
fn axis_label(ms: i64, span_ms: f64) -> String {
    let seconds = ms as f64 / 1000.0;
    if span_ms < 20_000.0 { format!("{seconds:.1}s") } else { format!("{seconds:.0}s") }
}

fn colour(index: usize) -> &'static str {
    STAGE_COLOURS[index % STAGE_COLOURS.len()]
}

fn bar_fill(attempt: &Attempt, stage_index: &BTreeMap<&str, usize>) -> &'static str {
    match attempt.outcome {
        Outcome::Failed => "#c0392b",
        Outcome::Retried => "#e67e22",
        Outcome::Succeeded | Outcome::Resumed => colour(stage_index[attempt.stage.as_str()]),
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "SUCCEEDED",
        Outcome::Retried => "RETRIED",
        Outcome::Failed => "FAILED",
        Outcome::Resumed => "RESUMED",
    }
}

fn list(nodes: &[u32]) -> String {
    const SHOWN: usize = 50;
    let mut text = nodes.iter().take(SHOWN).map(u32::to_string).collect::<Vec<_>>().join(", ");
    if nodes.len() > SHOWN {
        text += &format!(" and {} more", nodes.len() - SHOWN);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(stage: &str, node: u32, number: u32, span: (i64, i64), outcome: Outcome) -> Attempt {
        Attempt {
            stage: stage.into(),
            node,
            attempt: number,
            started_at: Some(span.0),
            stopped_at: span.1,
            outcome,
            reason: (outcome != Outcome::Succeeded).then(|| "exit 1 <boom>".into()),
        }
    }

    fn three_nodes() -> Vec<Attempt> {
        vec![
            attempt("nton-procure", 0, 1, (100, 200), Outcome::Succeeded),
            attempt("nton-process", 0, 1, (200, 300), Outcome::Succeeded),
            attempt("nton-procure", 1, 1, (100, 150), Outcome::Retried),
            attempt("nton-procure", 1, 2, (150, 900), Outcome::Succeeded),
            attempt("nton-procure", 2, 1, (100, 120), Outcome::Failed),
        ]
    }

    #[test]
    fn totals_stage_order_failed_and_slowest_nodes_come_from_the_attempts() {
        let timeline =
            Timeline::build("r".into(), "FAILED".into(), three_nodes(), None, vec![], None);
        assert_eq!(timeline.stages, ["nton-procure", "nton-process"]);
        assert_eq!(timeline.totals["nton-procure"].retried_attempts, 1);
        assert_eq!(timeline.totals["nton-procure"].failed, 1);
        assert_eq!(timeline.totals["nton-procure"].succeeded, 2);
        assert_eq!(timeline.failed_nodes, [2]);
        assert_eq!(timeline.slowest[0], (1, 800));
        assert_eq!((timeline.started_at, timeline.ended_at), (100, 900));
        assert_eq!(timeline.rows.len(), 3);
    }

    #[test]
    fn ten_thousand_nodes_draw_at_most_max_rows_with_every_failure_and_straggler() {
        let mut attempts = Vec::new();
        for node in 0..10_000 {
            let slow = if node == 7_777 { 50_000 } else { 0 };
            let outcome = if node % 1_000 == 3 { Outcome::Failed } else { Outcome::Succeeded };
            attempts.push(attempt("p", node, 1, (0, 1_000 + i64::from(node % 10) + slow), outcome));
        }
        let timeline = Timeline::build("r".into(), "FAILED".into(), attempts, None, vec![], None);
        assert_eq!(timeline.node_count, 10_000);
        assert_eq!(timeline.rows.len(), MAX_ROWS);
        let drawn: BTreeSet<u32> = timeline.rows.iter().map(|r| r.node).collect();
        for failed in (0..10).map(|k| k * 1_000 + 3) {
            assert!(drawn.contains(&failed), "failed node {failed} drawn");
        }
        assert!(drawn.contains(&7_777), "the straggler is drawn");
        assert_eq!(timeline.slowest[0].0, 7_777);
    }

    #[test]
    fn the_page_has_a_bar_per_attempt_a_tick_per_poll_and_escapes_text() {
        let timeline = Timeline::build(
            "run<1>".into(),
            "FAILED".into(),
            three_nodes(),
            Some("Watch".into()),
            vec![150, 300, 600],
            None,
        );
        let page = render_html(&timeline);
        assert_eq!(page.matches("<rect class=\"bar\"").count(), 5);
        assert_eq!(page.matches("data-outcome=\"RETRIED\"").count(), 1);
        assert_eq!(page.matches("<line class=\"poll\"").count(), 3);
        assert_eq!(page.matches("<g class=\"node\"").count(), 3);
        assert!(page.contains("run&lt;1&gt;"), "the run name is escaped");
        assert!(page.contains("exit 1 &lt;boom&gt;"), "reasons are escaped");
        assert!(!page.contains("<script"), "no script needed to view it");
        assert!(
            !page.contains("http://") || page.matches("http://").count() == 1,
            "only the SVG namespace"
        );
    }
}
