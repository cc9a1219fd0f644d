//! One attempt of one child as a process: spawned with a clean environment in its own process
//! group, output copied line by line into the job's log, stopped like a container on timeout
//! or termination (SIGTERM to the group, SIGKILL after the grace period).

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use super::log::JobLog;
use super::now_ms;

/// After the program exits, how long its output pipes may stay open (held by a process that
/// left the group) before the attempt ends without the rest.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// The longest `stderr_tail` kept, in characters.
const TAIL_CHARS: usize = 1000;

/// What every child of a job runs: fixed at submission.
#[derive(Debug)]
pub(crate) struct LaunchTemplate {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Base, definition and override environment, and the queue's `AWS_BATCH_*` variables.
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
}

/// One attempt to start.
pub(crate) struct Launch {
    pub job: u32,
    pub child: u32,
    /// `None` for a plain job.
    pub index: Option<u32>,
    /// From 1.
    pub attempt: u32,
    pub child_id: String,
    pub template: Arc<LaunchTemplate>,
    pub log: Arc<JobLog>,
    pub cancel: Arc<Notify>,
    pub kill_grace: Duration,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndKind {
    /// The program exited (any code, or a signal as 128 + signal, as a container reports it).
    Exited,
    /// Stopped at the attempt timeout.
    TimedOut,
    /// Stopped by a termination (TerminateJob, shutdown).
    Terminated,
    /// The program could not be started; the text says why.
    CannotStart(String),
}

/// The result of one attempt.
#[derive(Debug, Clone)]
pub(crate) struct AttemptEnd {
    pub kind: EndKind,
    pub started_at: Option<i64>,
    pub stopped_at: i64,
    pub exit_code: Option<i32>,
    pub stderr_tail: Option<String>,
}

/// Runs the attempt to its end. `running` is called once the process exists.
pub(crate) async fn run_attempt(launch: &Launch, running: impl FnOnce(i64)) -> AttemptEnd {
    let template = &launch.template;
    let mut command = Command::new(&template.program);
    command
        .args(&template.args)
        .env_clear()
        .envs(template.env.iter().map(|(k, v)| (k, v)))
        .env("AWS_BATCH_JOB_ID", &launch.child_id)
        .env("AWS_BATCH_JOB_ATTEMPT", launch.attempt.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that stopping the "container" stops everything it started.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(index) = launch.index {
        command.env("AWS_BATCH_JOB_ARRAY_INDEX", index.to_string());
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            return AttemptEnd {
                kind: EndKind::CannotStart(format!("{}: {err}", template.program.display())),
                started_at: None,
                stopped_at: now_ms(),
                exit_code: None,
                stderr_tail: None,
            };
        }
    };
    let started_at = now_ms();
    running(started_at);

    let group = child.id().and_then(|pid| i32::try_from(pid).ok()).and_then(Pid::from_raw);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let index = launch.index.map_or_else(|| "-".to_string(), |i| i.to_string());
    let out_prefix = format!("[{index} a{} stdout]", launch.attempt);
    let err_prefix = format!("[{index} a{} stderr]", launch.attempt);
    let tail = Mutex::new(None::<String>);
    let exited = Notify::new();

    let copying = async {
        let both = async {
            tokio::join!(
                copy_lines(stdout, &launch.log, &out_prefix, None),
                copy_lines(stderr, &launch.log, &err_prefix, Some(&tail)),
            )
        };
        tokio::select! {
            _ = both => {}
            _ = async { exited.notified().await; tokio::time::sleep(DRAIN_LIMIT).await } => {}
        }
    };
    let supervising = async {
        let (kind, status) = supervise(&mut child, group, launch).await;
        // A container's other processes end with its essential one; so do the program's.
        if let Some(group) = group {
            let _ = kill_process_group(group, Signal::KILL);
        }
        exited.notify_one();
        (kind, status)
    };
    let ((kind, status), ()) = tokio::join!(supervising, copying);
    launch.log.flush();

    let tail = tail.into_inner().unwrap_or_else(PoisonError::into_inner);
    AttemptEnd {
        kind,
        started_at: Some(started_at),
        stopped_at: now_ms(),
        exit_code: status.and_then(exit_code),
        stderr_tail: tail,
    }
}

/// Waits for the program, its timeout or a termination.
async fn supervise(
    child: &mut Child,
    group: Option<Pid>,
    launch: &Launch,
) -> (EndKind, Option<ExitStatus>) {
    let timeout = async {
        match launch.template.timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        status = child.wait() => (EndKind::Exited, status.ok()),
        () = timeout => (EndKind::TimedOut, stop(child, group, launch.kill_grace).await),
        () = launch.cancel.notified() => (EndKind::Terminated, stop(child, group, launch.kill_grace).await),
    }
}

/// SIGTERM to the group, SIGKILL after the grace period, as AWS stops a container.
async fn stop(child: &mut Child, group: Option<Pid>, grace: Duration) -> Option<ExitStatus> {
    match group {
        Some(group) => {
            let _ = kill_process_group(group, Signal::TERM);
        }
        None => {
            let _ = child.start_kill();
        }
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            if let Some(group) = group {
                let _ = kill_process_group(group, Signal::KILL);
            }
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    }
}

/// The exit code a container reports: the code, or 128 + the signal that ended it.
fn exit_code(status: ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s))
}

async fn copy_lines(
    stream: Option<impl AsyncRead + Unpin>,
    log: &JobLog,
    prefix: &str,
    tail: Option<&Mutex<Option<String>>>,
) {
    let Some(stream) = stream else { return };
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                let line = text.trim_end_matches(['\n', '\r']);
                log.write_line(prefix, line);
                if let Some(tail) = tail
                    && !line.trim().is_empty()
                {
                    let kept: String = line.trim().chars().take(TAIL_CHARS).collect();
                    *tail.lock().unwrap_or_else(PoisonError::into_inner) = Some(kept);
                }
            }
        }
    }
}
