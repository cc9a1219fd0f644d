//! The run record: one JSON object per line, appended and flushed as the run goes, so that a
//! report can be made from it and a killed run can be resumed without redoing finished children.
//!
//! Lines (`kind` tells them apart):
//! - `run`: the start of an execution (or of a resumed one): execution name, template, input.
//! - `state`: a state of the state machine was entered / left, with times and its output.
//! - `child`: one attempt of one Batch child ended: job, node, attempt, start, end, status, reason.
//! - `end`: the execution ended: status, error, cause, output.
//!
//! JSON lines rather than one JSON document: appending a line is atomic enough for a log that
//! must survive a kill at any moment, and a torn last line is simply skipped when read back.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use std::fmt;

use nton_core::batch::JobStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The record's file name inside a run directory.
pub const RECORD_FILE: &str = "run-record.jsonl";

/// One line of the record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RecordLine {
    Run(RunStart),
    State(StateLine),
    Child(ChildLine),
    End(RunEnd),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStart {
    pub execution_name: String,
    pub template: String,
    pub state_machine: String,
    pub input: Value,
    pub started_at: i64,
    /// True when this execution resumes an earlier one in the same run directory.
    #[serde(default)]
    pub resumed: bool,
    /// What the caller wants to find again on resume (e.g. where results go).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub meta: Value,
}

/// What happened to a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateEvent {
    Entered,
    Exited,
}

#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateLine {
    pub name: String,
    pub event: StateEvent,
    pub at: i64,
    /// The state's output, on `exited` only.
    #[serde(default)]
    pub output: Option<Value>,
}

#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildLine {
    pub job_id: String,
    pub job_name: String,
    /// The array index, `None` for a plain job.
    pub node: Option<u32>,
    pub attempt: u32,
    #[serde(default)]
    pub started_at: Option<i64>,
    pub stopped_at: i64,
    /// SUCCEEDED or FAILED (Batch's names: the attempt ended as its job would).
    pub status: JobStatus,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The last line the child wrote on stderr, when it failed.
    #[serde(default)]
    pub stderr_tail: Option<String>,
    /// False when the attempt failed but will be retried.
    #[serde(default = "yes")]
    pub is_final: bool,
}

fn yes() -> bool {
    true
}

/// How an execution ended: Step Functions' names for the ends a local run can have, and
/// INTERRUPTED for a local run stopped by Ctrl-C (which `--resume` picks up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunOutcome {
    Succeeded,
    Failed,
    TimedOut,
    Interrupted,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "SUCCEEDED",
            RunOutcome::Failed => "FAILED",
            RunOutcome::TimedOut => "TIMED_OUT",
            RunOutcome::Interrupted => "INTERRUPTED",
        }
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEnd {
    pub status: RunOutcome,
    pub at: i64,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default)]
    pub output: Option<Value>,
}

/// Appends lines to a run record, flushing each one so a kill loses at most the line being written.
pub struct RecordWriter {
    path: PathBuf,
    file: Mutex<File>,
    /// The first append that failed: callers that cannot stop for it (event forwarders) go on,
    /// and the run reports it at its end.
    first_failure: Mutex<Option<String>>,
}

impl RecordWriter {
    /// Opens (creating or appending to) `<run_dir>/run-record.jsonl`.
    /// A torn last line, left by a run killed mid-write, is cut off first: appending after it
    /// would glue the next line to it and make the record unreadable.
    pub fn open(run_dir: &Path) -> io::Result<RecordWriter> {
        std::fs::create_dir_all(run_dir)?;
        let path = run_dir.join(RECORD_FILE);
        if let Ok(bytes) = std::fs::read(&path)
            && !bytes.is_empty()
            && !bytes.ends_with(b"\n")
        {
            let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            OpenOptions::new().write(true).open(&path)?.set_len(keep as u64)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(RecordWriter { path, file: Mutex::new(file), first_failure: Mutex::new(None) })
    }

    /// The first append that failed, if any.
    pub fn failure(&self) -> Option<String> {
        self.first_failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line. The whole line goes out in one `write` so concurrent appends never interleave.
    pub fn append(&self, line: &RecordLine) -> io::Result<()> {
        let mut bytes = serde_json::to_vec(line).map_err(io::Error::other)?;
        bytes.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = file.write_all(&bytes).and_then(|()| file.flush());
        if let Err(error) = &result {
            self.first_failure
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get_or_insert_with(|| error.to_string());
        }
        result
    }
}

/// Reads every well-formed line of a record. A torn last line (a run killed mid-write) is
/// skipped; a malformed line elsewhere is an error naming its number.
pub fn read_record(path: &Path) -> io::Result<Vec<RecordLine>> {
    let reader = BufReader::new(File::open(path)?);
    let lines: Vec<String> = reader.lines().collect::<Result<_, _>>()?;
    let count = lines.len();
    let mut out = Vec::with_capacity(count);
    for (number, text) in lines.iter().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<RecordLine>(text) {
            Ok(line) => out.push(line),
            Err(_) if number + 1 == count => break,
            Err(error) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: line {}: {error}", path.display(), number + 1),
                ));
            }
        }
    }
    Ok(out)
}

/// The children (job name, node) that succeeded in the record: what a resumed run skips.
pub fn succeeded_children(lines: &[RecordLine]) -> BTreeSet<(String, Option<u32>)> {
    lines
        .iter()
        .filter_map(|line| match line {
            RecordLine::Child(child) if child.status == JobStatus::Succeeded => {
                Some((child.job_name.clone(), child.node))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(name: &str, node: u32, status: JobStatus) -> RecordLine {
        RecordLine::Child(ChildLine {
            job_id: format!("id:{node}"),
            job_name: name.into(),
            node: Some(node),
            attempt: 1,
            started_at: Some(1),
            stopped_at: 2,
            status,
            reason: None,
            exit_code: Some(0),
            stderr_tail: None,
            is_final: true,
        })
    }

    #[test]
    fn lines_round_trip_and_succeeded_children_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let writer = RecordWriter::open(dir.path()).unwrap();
        writer.append(&child("procure", 0, JobStatus::Succeeded)).unwrap();
        writer.append(&child("procure", 1, JobStatus::Failed)).unwrap();
        writer
            .append(&RecordLine::End(RunEnd {
                status: RunOutcome::Failed,
                at: 3,
                error: Some("e".into()),
                cause: None,
                output: None,
            }))
            .unwrap();
        let lines = read_record(writer.path()).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], child("procure", 0, JobStatus::Succeeded));
        let done = succeeded_children(&lines);
        assert!(done.contains(&("procure".to_string(), Some(0))));
        assert!(!done.contains(&("procure".to_string(), Some(1))));
    }

    #[test]
    fn a_torn_last_line_is_skipped_but_a_torn_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECORD_FILE);
        let good = serde_json::to_string(&child("p", 0, JobStatus::Succeeded)).unwrap();
        std::fs::write(&path, format!("{good}\n{{\"kind\":\"chi")).unwrap();
        assert_eq!(read_record(&path).unwrap().len(), 1);
        std::fs::write(&path, format!("{{\"kind\":\"chi\n{good}\n")).unwrap();
        let error = read_record(&path).unwrap_err().to_string();
        assert!(error.contains("line 1"), "{error}");
    }

    #[test]
    fn reopening_after_a_torn_line_cuts_it_so_the_record_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RECORD_FILE);
        let good = serde_json::to_string(&child("p", 0, JobStatus::Succeeded)).unwrap();
        std::fs::write(&path, format!("{good}\n{{\"kind\":\"chi")).unwrap();
        RecordWriter::open(dir.path())
            .unwrap()
            .append(&child("p", 1, JobStatus::Succeeded))
            .unwrap();
        let lines = read_record(&path).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(succeeded_children(&lines).len(), 2);
    }

    #[test]
    fn appending_to_an_existing_record_keeps_earlier_lines() {
        let dir = tempfile::tempdir().unwrap();
        RecordWriter::open(dir.path())
            .unwrap()
            .append(&child("p", 0, JobStatus::Succeeded))
            .unwrap();
        RecordWriter::open(dir.path())
            .unwrap()
            .append(&child("p", 1, JobStatus::Succeeded))
            .unwrap();
        let lines = read_record(&dir.path().join(RECORD_FILE)).unwrap();
        assert_eq!(succeeded_children(&lines).len(), 2);
    }

    #[test]
    fn statuses_and_events_are_names_from_one_list() {
        let line = r#"{"kind":"end","status":"TIMED_OUT","at":1}"#;
        let RecordLine::End(end) = serde_json::from_str(line).unwrap() else { panic!() };
        assert_eq!(end.status, RunOutcome::TimedOut);
        // A misspelt status is refused at read, not compared as a string later.
        let line = r#"{"kind":"end","status":"SUCCEDED","at":1}"#;
        let error = serde_json::from_str::<RecordLine>(line).unwrap_err().to_string();
        assert!(error.contains("unknown variant `SUCCEDED`"), "{error}");
        let line = r#"{"kind":"state","name":"Init","event":"left","at":1}"#;
        assert!(serde_json::from_str::<RecordLine>(line).is_err());
        // Absent options are left out of the line.
        let text = serde_json::to_string(&child("p", 0, JobStatus::Succeeded)).unwrap();
        assert!(!text.contains("reason") && !text.contains("stderrTail"), "{text}");
    }
}
