//! Event forwarding of a local run: the state machine's transitions and the local Batch's
//! events, written to the run record and passed on to every subscriber as [`RunEvent`]s, and
//! the wake-up of Wait states when a Batch job ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nton_core::batch::JobStatus;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

use super::lock;
use crate::asl::ExecutionObserver;
use crate::batch::{BatchEvent, now_ms};
use crate::record::{ChildLine, RecordLine, RecordWriter, StateEvent, StateLine};

/// The subscribers of a run's events.
pub(super) type Subscribers = Arc<Mutex<Vec<mpsc::UnboundedSender<RunEvent>>>>;

/// Everything a run reports as it goes: the state machine's states and every Batch transition.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum RunEvent {
    StateEntered {
        name: String,
        at_ms: i64,
    },
    StateExited {
        name: String,
        at_ms: i64,
    },
    #[serde(untagged)]
    Batch(BatchEvent),
}

/// Records state transitions and passes them on as events.
pub(super) struct Observer {
    pub(super) record: Arc<RecordWriter>,
    pub(super) events: Subscribers,
}

impl ExecutionObserver for Observer {
    fn state_entered(&self, name: &str, _input: &Value) {
        let at = now_ms();
        let _ = self.record.append(&RecordLine::State(StateLine {
            name: name.to_string(),
            event: StateEvent::Entered,
            at,
            output: None,
        }));
        send(&self.events, RunEvent::StateEntered { name: name.to_string(), at_ms: at });
    }

    fn state_exited(&self, name: &str, output: &Value) {
        let at = now_ms();
        let _ = self.record.append(&RecordLine::State(StateLine {
            name: name.to_string(),
            event: StateEvent::Exited,
            at,
            output: Some(output.clone()),
        }));
        send(&self.events, RunEvent::StateExited { name: name.to_string(), at_ms: at });
    }
}

/// Writes a record line for every attempt that ends, passes every Batch event on, and wakes
/// Wait states when a job ends. When `stop` fires it handles what is already queued, then ends:
/// the local Batch sends each event before its state change is visible, so once every job has
/// ended, everything there is to record is in the queue.
pub(super) async fn forward_batch_events(
    mut batch_events: crate::batch::EventReceiver,
    record: Arc<RecordWriter>,
    events: Subscribers,
    job_ended: Arc<Notify>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut forwarder = Forwarder { record, events, job_ended, started: HashMap::new() };
    loop {
        tokio::select! {
            biased;
            event = batch_events.recv() => match event {
                Some(event) => forwarder.handle(event),
                None => return,
            },
            _ = &mut stop => {
                while let Ok(event) = batch_events.try_recv() {
                    forwarder.handle(event);
                }
                return;
            }
        }
    }
}

struct Forwarder {
    record: Arc<RecordWriter>,
    events: Subscribers,
    job_ended: Arc<Notify>,
    /// When each child's current attempt started, for its record line.
    started: HashMap<String, i64>,
}

impl Forwarder {
    fn handle(&mut self, event: BatchEvent) {
        let Forwarder { record, events, job_ended, started } = self;
        match &event {
            BatchEvent::ChildChanged {
                job_id,
                job_name,
                index,
                status,
                attempt,
                at_ms,
                status_reason,
                exit_code,
                stderr_tail,
                ..
            } => match status {
                JobStatus::Starting | JobStatus::Running => {
                    started.entry(job_id.clone()).or_insert(*at_ms);
                }
                // RUNNABLE again after an attempt started: that attempt failed and will be
                // retried (a retried spawn failure has no exit code, so look at `started`).
                JobStatus::Succeeded | JobStatus::Failed | JobStatus::Runnable
                    if status.is_terminal() || started.contains_key(job_id) =>
                {
                    // A retry's RUNNABLE event carries the number of the attempt to come.
                    let attempt = if *status == JobStatus::Runnable {
                        attempt.saturating_sub(1).max(1)
                    } else {
                        *attempt
                    };
                    // A failed append is kept by the writer and fails the run at its end.
                    let _ = record.append(&RecordLine::Child(ChildLine {
                        job_id: job_id.clone(),
                        job_name: job_name.clone(),
                        node: *index,
                        attempt,
                        started_at: started.remove(job_id),
                        stopped_at: *at_ms,
                        status: if *status == JobStatus::Runnable {
                            JobStatus::Failed
                        } else {
                            *status
                        },
                        reason: status_reason.clone(),
                        exit_code: *exit_code,
                        stderr_tail: stderr_tail.clone(),
                        is_final: status.is_terminal(),
                    }));
                }
                _ => {}
            },
            BatchEvent::JobEnded { .. } => job_ended.notify_waiters(),
        }
        send(events, RunEvent::Batch(event));
    }
}

fn send(events: &Mutex<Vec<mpsc::UnboundedSender<RunEvent>>>, event: RunEvent) {
    let mut subscribers = lock(events);
    subscribers.retain(|tx| !tx.is_closed());
    for tx in subscribers.iter() {
        let _ = tx.send(event.clone());
    }
}
