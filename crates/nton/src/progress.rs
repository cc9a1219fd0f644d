//! Live progress of a local run, from the engine's one event stream: progress bars on a
//! terminal (one per submitted job, counts by status and a rate), or newline-delimited JSON
//! events with `--json`. Both reporters consume the same [`RunEvent`]s.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use nton_core::batch::JobStatus;
use nton_engine::batch::BatchEvent;
use nton_engine::local::RunEvent;

/// Something that shows a run's events as they happen.
pub trait Reporter: Send {
    fn event(&mut self, event: &RunEvent);
    /// The run ended: clear what must be cleared before the summary is printed.
    fn finish(&mut self);
}

/// Counts of one job's children by status, kept from their transitions.
#[derive(Debug, Default)]
pub struct JobCounts {
    /// Last known status of each child (index 0 for a plain job).
    children: HashMap<u32, JobStatus>,
    counts: [u64; JobStatus::ALL.len()],
}

impl JobCounts {
    /// Applies one child transition.
    pub fn apply(&mut self, index: u32, status: JobStatus) {
        if let Some(previous) = self.children.insert(index, status) {
            self.counts[previous.index()] -= 1;
        }
        self.counts[status.index()] += 1;
    }

    pub fn count(&self, status: JobStatus) -> u64 {
        self.counts[status.index()]
    }

    /// Children seen so far (the array size once all are submitted).
    pub fn size(&self) -> u64 {
        self.children.len() as u64
    }

    /// Children that ended, SUCCEEDED or FAILED.
    pub fn ended(&self) -> u64 {
        self.count(JobStatus::Succeeded) + self.count(JobStatus::Failed)
    }

    /// "3 running · 12 waiting · 1 failed": the statuses that have children, grouped the way a
    /// person reads a queue (waiting = SUBMITTED, PENDING or RUNNABLE).
    pub fn describe(&self) -> String {
        let waiting = self.count(JobStatus::Submitted)
            + self.count(JobStatus::Pending)
            + self.count(JobStatus::Runnable);
        let running = self.count(JobStatus::Starting) + self.count(JobStatus::Running);
        let mut parts = Vec::new();
        for (label, value) in [
            ("running", running),
            ("waiting", waiting),
            ("succeeded", self.count(JobStatus::Succeeded)),
            ("failed", self.count(JobStatus::Failed)),
        ] {
            if value > 0 {
                parts.push(format!("{value} {label}"));
            }
        }
        parts.join(" · ")
    }
}

/// A job's display name: its name without a trailing workflow id, e.g. `nton-procure`.
pub fn short_job_name(job_name: &str) -> &str {
    // A UUID is 36 characters; names built as "<stage>-<uuid>" read better without it.
    if job_name.len() > 37 {
        let (head, tail) = job_name.split_at(job_name.len() - 37);
        if tail.starts_with('-') && uuid::Uuid::parse_str(&tail[1..]).is_ok() {
            return head;
        }
    }
    job_name
}

/// Progress bars on stderr, one per job, in submission order.
pub struct TerminalReporter {
    multi: MultiProgress,
    state: ProgressBar,
    jobs: HashMap<String, (ProgressBar, JobCounts)>,
}

impl TerminalReporter {
    pub fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let state = multi.add(ProgressBar::new_spinner());
        state.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} state {msg}")
                .expect("valid template"),
        );
        state.enable_steady_tick(Duration::from_millis(120));
        TerminalReporter { multi, state, jobs: HashMap::new() }
    }

    fn job_bar(&mut self, job_id: &str, job_name: &str) -> &mut (ProgressBar, JobCounts) {
        let multi = &self.multi;
        self.jobs.entry(job_id.to_string()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>14} [{bar:28}] {pos:>5}/{len:<5} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(short_job_name(job_name).to_string());
            (bar, JobCounts::default())
        })
    }
}

impl Default for TerminalReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for TerminalReporter {
    fn event(&mut self, event: &RunEvent) {
        match event {
            RunEvent::StateEntered { name, .. } => self.state.set_message(name.clone()),
            RunEvent::StateExited { .. } => {}
            RunEvent::Batch(BatchEvent::ChildChanged {
                job_id,
                parent_job_id,
                job_name,
                index,
                status,
                ..
            }) => {
                let job = parent_job_id.as_deref().unwrap_or(job_id);
                let (bar, counts) = self.job_bar(job, job_name);
                counts.apply(index.unwrap_or(0), *status);
                bar.set_length(counts.size());
                bar.set_position(counts.ended());
                // indicatif's own rate prints nine decimals; children per second needs none.
                let seconds = bar.elapsed().as_secs_f64();
                let rate = if seconds > 0.5 {
                    format!(" · {:.0}/s", counts.ended() as f64 / seconds)
                } else {
                    String::new()
                };
                bar.set_message(format!("{}{rate}", counts.describe()));
            }
            RunEvent::Batch(BatchEvent::JobEnded { job_id, .. }) => {
                if let Some((bar, _)) = self.jobs.get(job_id) {
                    bar.tick();
                }
            }
        }
    }

    fn finish(&mut self) {
        self.state.finish_and_clear();
        for (bar, _) in self.jobs.values() {
            bar.abandon();
        }
    }
}

/// Newline-delimited JSON events on stdout (`--json`).
pub struct JsonReporter<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> JsonReporter<W> {
    pub fn new(out: W) -> Self {
        JsonReporter { out }
    }
}

impl<W: Write + Send> Reporter for JsonReporter<W> {
    fn event(&mut self, event: &RunEvent) {
        // A closed stdout (a pipe to `head`) must not stop the run: drop the line.
        if serde_json::to_writer(&mut self.out, event).is_ok() {
            let _ = self.out.write_all(b"\n");
        }
    }

    fn finish(&mut self) {
        let _ = self.out.flush();
    }
}

/// Without a terminal (CI logs): one line per state entered and per job end, no bars.
#[derive(Default)]
pub struct PlainReporter {
    last_state: Option<String>,
}

impl Reporter for PlainReporter {
    fn event(&mut self, event: &RunEvent) {
        match event {
            RunEvent::StateEntered { name, .. } if self.last_state.as_ref() != Some(name) => {
                eprintln!("state {name}");
                self.last_state = Some(name.clone());
            }
            RunEvent::Batch(BatchEvent::JobEnded { job_name, status, .. }) => {
                eprintln!("job {job_name} {status}")
            }
            _ => {}
        }
    }

    fn finish(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_each_child_through_its_transitions() {
        let mut counts = JobCounts::default();
        for index in 0..3 {
            counts.apply(index, JobStatus::Submitted);
        }
        counts.apply(0, JobStatus::Running);
        counts.apply(1, JobStatus::Running);
        counts.apply(0, JobStatus::Succeeded);
        counts.apply(1, JobStatus::Failed);
        assert_eq!(counts.size(), 3);
        assert_eq!(counts.ended(), 2);
        assert_eq!(counts.count(JobStatus::Running), 0);
        assert_eq!(counts.describe(), "1 waiting · 1 succeeded · 1 failed");
    }

    #[test]
    fn job_names_lose_a_trailing_workflow_id_only() {
        assert_eq!(
            short_job_name("nton-procure-0f8fad5b-d9cb-469f-a165-70867728950e"),
            "nton-procure"
        );
        assert_eq!(short_job_name("nton-procure"), "nton-procure");
        assert_eq!(
            short_job_name("a-very-long-job-name-that-is-not-a-uuid-at-the-end"),
            "a-very-long-job-name-that-is-not-a-uuid-at-the-end"
        );
    }

    #[test]
    fn json_reporter_writes_one_line_per_event() {
        let mut out = Vec::new();
        let mut reporter = JsonReporter::new(&mut out);
        reporter.event(&RunEvent::StateEntered { name: "Init".into(), at_ms: 5 });
        reporter.event(&RunEvent::StateExited { name: "Init".into(), at_ms: 9 });
        reporter.finish();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> =
            text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "stateEntered");
        assert_eq!(lines[1]["name"], "Init");
    }
}
