//! `nton watch <RUN_DIR>`: follows a local run from its run record as the record grows, with
//! the same per-stage lines as for an AWS execution (the watch state's exits carry the
//! watcher's status there as in an execution's history), and exits with the run's outcome.
//! The record is the only interface: the run may be in another process, or already over.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nton_engine::record::{RECORD_FILE, RecordLine, RunEnd, RunOutcome, StateEvent};
use serde_json::{Value, json};

use crate::aws::console::Console;
use crate::aws::execution::{WatchedStatus, duration_text, progress_lines};
use crate::exit::{self, CommandError};

/// How a followed run ended, or that it has not yet.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub execution_name: Option<String>,
    pub started_at: Option<i64>,
    /// The latest watch-state status (`{done, failed, progress, ...}`).
    pub status: Option<Value>,
    pub end: Option<RunEnd>,
}

/// What the record says so far. A resumed run starts again: only its latest execution counts.
pub fn snapshot(lines: &[RecordLine], watch_state: &str) -> Snapshot {
    let mut snapshot = Snapshot { execution_name: None, started_at: None, status: None, end: None };
    for line in lines {
        match line {
            RecordLine::Run(start) => {
                snapshot.execution_name = Some(start.execution_name.clone());
                snapshot.started_at.get_or_insert(start.started_at);
                snapshot.end = None;
            }
            RecordLine::State(state)
                if state.event == StateEvent::Exited && state.name == watch_state =>
            {
                if let Some(status) = state.output.as_ref().and_then(|o| o.get("status")) {
                    snapshot.status = Some(status.clone());
                }
            }
            RecordLine::End(end) => snapshot.end = Some(end.clone()),
            RecordLine::State(_) | RecordLine::Child(_) => {}
        }
    }
    snapshot
}

/// The exit code a run's end maps to.
pub fn exit_code(end: &RunEnd) -> u8 {
    match end.status {
        RunOutcome::Succeeded => exit::SUCCESS,
        RunOutcome::Interrupted => exit::INTERRUPTED,
        RunOutcome::Failed | RunOutcome::TimedOut => exit::RUN_FAILED,
    }
}

/// The record file of a run directory (or the record itself when given a file).
pub fn record_path(run: &Path) -> Result<PathBuf, CommandError> {
    let path = if run.is_file() { run.to_path_buf() } else { run.join(RECORD_FILE) };
    if !run.exists() {
        return Err(CommandError::bad_input(format!(
            "{}: no such run directory (nton run prints it; runs live under --data-dir)",
            run.display()
        )));
    }
    Ok(path)
}

/// Runs `nton watch RUN_DIR` (or `--latest` without `--env`).
pub async fn watch_local(run: &Path, watch_state: &str, json_output: bool) -> anyhow::Result<u8> {
    let path = record_path(run)?;
    let mut console = Console::stdio();
    if !json_output {
        console.note(format!("watching {}", run.display()));
    }
    follow(&path, watch_state, LOCAL_POLL, WAIT_FOR_START, json_output, &mut console).await
}

/// A local record is a file on this machine: reading it twice a second costs nothing.
const LOCAL_POLL: Duration = Duration::from_millis(500);

/// How long `nton watch` waits for a run directory's record to appear (a run just started).
const WAIT_FOR_START: Duration = Duration::from_secs(30);

/// Follows the record at `path` until the run ends, printing progress as it changes.
/// `wait_for_start` bounds how long a record that does not exist yet is waited for.
pub async fn follow(
    path: &Path,
    watch_state: &str,
    poll: Duration,
    wait_for_start: Duration,
    json_output: bool,
    console: &mut Console,
) -> anyhow::Result<u8> {
    let waited_since = std::time::Instant::now();
    let mut last_lines: Option<Vec<String>> = None;
    loop {
        let lines = match crate::retry::read_run_record(path) {
            Ok(lines) => lines,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if waited_since.elapsed() >= wait_for_start {
                    return Err(CommandError::bad_input(format!(
                        "{}: no run record appeared within {} s (is a run going on there?)",
                        path.display(),
                        wait_for_start.as_secs()
                    ))
                    .into());
                }
                tokio::time::sleep(poll).await;
                continue;
            }
            Err(error) => {
                return Err(CommandError::environment(format!(
                    "cannot read {}: {error}",
                    path.display()
                ))
                .into());
            }
        };
        let now = snapshot(&lines, watch_state);
        let elapsed_ms = match (now.started_at, &now.end) {
            (Some(start), Some(end)) => end.at - start,
            (Some(start), None) => now_ms() - start,
            _ => 0,
        };
        let elapsed = (elapsed_ms / 1000).max(0);
        if let Some(status) = &now.status {
            let status = WatchedStatus::read(status).map_err(|problem| {
                CommandError::environment(format!("{}: {problem}", path.display()))
            })?;
            let progress = progress_lines(&status);
            if last_lines.as_ref() != Some(&progress) {
                if json_output {
                    console.result(json!({
                        "event": "progress",
                        "elapsedSeconds": elapsed,
                        "progress": status.progress,
                    }));
                } else {
                    for line in &progress {
                        console.note(format!("{:>8}  {line}", duration_text(elapsed)));
                    }
                }
                last_lines = Some(progress);
            }
        }
        if let Some(end) = &now.end {
            let name = now.execution_name.clone().unwrap_or_default();
            if json_output {
                console.result(json!({
                    "event": "finished",
                    "execution": name,
                    "status": end.status,
                    "elapsedSeconds": elapsed,
                    "error": end.error,
                    "cause": end.cause,
                }));
            } else {
                console.result(format!("{} after {}: {name}", end.status, duration_text(elapsed)));
                if let Some(error) = &end.error {
                    console.result(format!("  error: {error}"));
                }
                if let Some(cause) = &end.cause {
                    console.result(format!("  cause: {cause}"));
                }
            }
            return Ok(exit_code(end));
        }
        tokio::time::sleep(poll).await;
    }
}

fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use nton_engine::record::{RunStart, StateLine};
    use std::io::Write;

    fn start(name: &str, at: i64) -> RecordLine {
        RecordLine::Run(RunStart {
            execution_name: name.into(),
            template: "t".into(),
            state_machine: "StateMachine".into(),
            input: json!({}),
            started_at: at,
            resumed: false,
            meta: json!(null),
        })
    }

    fn watch_exit(succeeded: u64, size: u64) -> RecordLine {
        RecordLine::State(StateLine {
            name: "Watch".into(),
            event: StateEvent::Exited,
            at: 2_000,
            output: Some(json!({"status": {"done": succeeded == size, "failed": false,
                "progress": {"procure": {"size": size, "counts": {"SUCCEEDED": succeeded, "RUNNING": size - succeeded}}}}})),
        })
    }

    fn end(status: &str) -> RecordLine {
        RecordLine::End(RunEnd {
            status: serde_json::from_value(json!(status)).expect("a status name"),
            at: 9_000,
            error: (status == "FAILED").then(|| "nton.NodesFailed".into()),
            cause: (status == "FAILED").then(|| "procure failed on node 3".into()),
            output: None,
        })
    }

    #[test]
    fn the_latest_watch_exit_and_the_end_are_read() {
        let lines = vec![start("local-1", 1_000), watch_exit(1, 4), watch_exit(3, 4)];
        let now = snapshot(&lines, "Watch");
        assert_eq!(now.status.unwrap()["progress"]["procure"]["counts"]["SUCCEEDED"], 3);
        assert!(now.end.is_none());
        let now = snapshot(&[lines.clone(), vec![end("FAILED")]].concat(), "Watch");
        assert_eq!(exit_code(now.end.as_ref().unwrap()), exit::RUN_FAILED);
        // Another watch state name sees no progress.
        assert!(snapshot(&lines, "Poll").status.is_none());
    }

    #[test]
    fn a_resume_reopens_an_ended_run() {
        let lines = vec![start("local-1", 1_000), end("INTERRUPTED"), start("local-1", 5_000)];
        let now = snapshot(&lines, "Watch");
        assert!(now.end.is_none(), "the resumed execution is still going");
        assert_eq!(now.started_at, Some(1_000));
        assert_eq!(
            exit_code(&match end("INTERRUPTED") {
                RecordLine::End(end) => end,
                _ => unreachable!(),
            }),
            exit::INTERRUPTED
        );
    }

    #[tokio::test]
    async fn follow_prints_progress_as_the_record_grows_and_exits_with_the_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECORD_FILE);
        let writer_path = path.clone();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut file = std::fs::File::create(&writer_path).unwrap();
            for line in [start("local-1", 1_000), watch_exit(1, 2)] {
                writeln!(file, "{}", serde_json::to_string(&line).unwrap()).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(80)).await;
            for line in [watch_exit(2, 2), end("SUCCEEDED")] {
                writeln!(file, "{}", serde_json::to_string(&line).unwrap()).unwrap();
            }
        });
        let (mut console, out, log) = Console::capture();
        let code = follow(
            &path,
            "Watch",
            Duration::from_millis(10),
            Duration::from_secs(5),
            false,
            &mut console,
        )
        .await
        .unwrap();
        writer.await.unwrap();
        assert_eq!(code, exit::SUCCESS);
        let log = log.text();
        assert!(log.contains("procure      1/2     ended"), "{log}");
        assert!(log.contains("procure      2/2     ended"), "{log}");
        assert!(out.text().starts_with("SUCCEEDED after 8s: local-1"), "{}", out.text());
    }

    #[tokio::test]
    async fn a_record_that_never_appears_is_bad_input_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let (mut console, _, _) = Console::capture();
        let error = follow(
            &dir.path().join(RECORD_FILE),
            "Watch",
            Duration::from_millis(10),
            Duration::from_millis(30),
            false,
            &mut console,
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("no run record appeared within 0 s"), "{error}");
        assert!(record_path(&dir.path().join("missing")).is_err());
    }
}
