//! A local AWS Batch with AWS's semantics, on which the engine runs the state machine's
//! `batch:submitJob` tasks: array jobs of 2..=10,000 children, N_TO_N / SEQUENTIAL / whole-job
//! dependencies (a failed dependency fails its dependents without running them), the child
//! lifecycle SUBMITTED -> PENDING -> RUNNABLE -> STARTING -> RUNNING -> SUCCEEDED | FAILED,
//! bounded parallelism per queue, attempt timeouts and `retryStrategy`. Each child is a
//! process, given the environment a Batch container gets.
//!
//! No emulator does this (moto ends every job at once; LocalStack runs children one after
//! another), so the engine's faithfulness rests here. The watcher Lambda reads this Batch
//! through [`BatchApi`], exactly as it reads the real one.
//!
//! Layout: `request` reads a submission, `state` is the scheduler (no I/O, one lock),
//! `runner` runs one attempt as a process, `describe` answers the read calls, `events` is the
//! transition stream, `retry` applies `evaluateOnExit`.

mod describe;
mod events;
mod log;
mod request;
mod retry;
mod runner;
mod spec;
mod state;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use nton_core::batch::{BatchApi, BatchApiError, JobDetail, JobStatus, JobSummary};
use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::Notify;

pub use events::{BatchEvent, EventReceiver};
pub use spec::{
    EvaluateOnExit, JobDefinitionSpec, LocalBatchConfig, QueueSpec, RetryAction, RetryStrategy,
};

use runner::Launch;
use state::State;

/// `statusReason` of a child that an earlier run already finished (see
/// [`LocalBatch::mark_succeeded_before`]).
pub const RESUMED_REASON: &str = "Succeeded in an earlier run (resumed)";

/// `statusReason` of the children that [`LocalBatch::shutdown`] ends.
pub const SHUTDOWN_REASON: &str = "Terminated: the local engine is shutting down";

pub(crate) fn client_error(message: impl Into<String>) -> BatchApiError {
    BatchApiError {
        code: "ClientException".to_string(),
        message: message.into(),
    }
}

/// Epoch milliseconds, as the Batch API reports times.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The local Batch. Cheap to clone: clones share one Batch.
#[derive(Clone)]
pub struct LocalBatch {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Woken after every change of state (see [`LocalBatch::changed`]).
    changed: Notify,
    /// The runtime children run on when a call comes from outside one.
    handle: Option<Handle>,
}

impl LocalBatch {
    /// A Batch with no queues and no job definitions yet. Children run on the Tokio runtime
    /// of the caller (of `new`, or of each call).
    pub fn new(config: LocalBatchConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new(Arc::new(config))),
                changed: Notify::new(),
                handle: Handle::try_current().ok(),
            }),
        }
    }

    /// Adds a job queue. At most min(floor(max_vcpus / a job's vcpus), `parallelism_cap`)
    /// of its children are STARTING or RUNNING at once, and always at least one.
    pub fn add_queue(&self, spec: QueueSpec, parallelism_cap: usize) {
        self.inner.lock().add_queue(spec, parallelism_cap);
    }

    /// Adds a job definition, found by its ARN, its name or `name:revision`.
    pub fn add_job_definition(&self, spec: JobDefinitionSpec) {
        self.inner.lock().add_definition(spec);
    }

    /// `SubmitJob`, given the Parameters of a `batch:submitJob` Task (PascalCase, as Step
    /// Functions sends them). Returns what the request-response integration returns:
    /// `{"JobId", "JobName", "JobArn"}`. Errors are AWS's `ClientException`s.
    pub fn submit_job(&self, request: &Value) -> Result<Value, BatchApiError> {
        let request = request::parse(request)?;
        let handle = self.inner.runtime()?;
        let (answer, launches) = {
            let mut state = self.inner.lock();
            if state.is_shut_down() {
                return Err(BatchApiError {
                    code: "ServerException".to_string(),
                    message: "the local Batch has shut down".to_string(),
                });
            }
            state.submit(request)?
        };
        self.inner.after_change(&handle, launches);
        Ok(answer)
    }

    /// `TerminateJob`: children not started yet fail at once with `reason`; running ones
    /// get SIGTERM (SIGKILL after the grace period) and then fail with `reason`.
    pub fn terminate_job(&self, job_id: &str, reason: &str) -> Result<(), BatchApiError> {
        let handle = self.inner.runtime()?;
        let launches = {
            let mut state = self.inner.lock();
            let job = state
                .job_index(job_id)
                .ok_or_else(|| client_error(format!("Job {job_id} not found")))?;
            state.terminate(job, reason)
        };
        self.inner.after_change(&handle, launches);
        Ok(())
    }

    /// Every child transition and job end from now on, in order, none dropped.
    pub fn subscribe(&self) -> EventReceiver {
        self.inner.lock().events.subscribe()
    }

    /// Resolves at the next change of state (a child transition or a job end) after this
    /// call: the future listens from the moment it is made, not from its first poll, so a
    /// change between `changed()` and `.await` is not missed.
    pub fn changed(&self) -> impl Future<Output = ()> + Send + '_ {
        self.inner.changed.notified()
    }

    /// Every submitted job has ended (true before the first submission).
    pub fn all_terminal(&self) -> bool {
        self.inner.lock().all_terminal()
    }

    /// Resolves once every submitted job has ended.
    pub async fn wait_all_terminal(&self) {
        self.inner.wait_until(|state| state.all_terminal()).await;
    }

    /// Resume: children of jobs submitted from now on for which `already_done(job name,
    /// array index)` holds go straight to SUCCEEDED with [`RESUMED_REASON`], without running
    /// and without waiting on their dependencies. The index is `None` for a plain job.
    /// Several calls add up.
    pub fn mark_succeeded_before<F>(&self, already_done: F)
    where
        F: Fn(&str, Option<u32>) -> bool + Send + Sync + 'static,
    {
        self.inner.lock().add_resumed(Arc::new(already_done));
    }

    /// Where the output of a job's children goes (the file exists once a line was written).
    pub fn log_path(&self, job_id: &str) -> Option<PathBuf> {
        let state = self.inner.lock();
        let job = state.job_index(job_id)?;
        Some(state.jobs[job as usize].log.path().to_path_buf())
    }

    /// Ctrl-C: nothing more starts, children not started fail, running ones are stopped
    /// (SIGTERM, SIGKILL after the grace period); all fail with [`SHUTDOWN_REASON`].
    /// Resolves when no child process is left.
    pub async fn shutdown(&self) {
        self.inner.lock().shut_down(SHUTDOWN_REASON);
        self.inner.changed.notify_waiters();
        self.inner
            .wait_until(|state| state.running_total() == 0)
            .await;
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock leaves the state as consistent as any single step does;
        // keep serving rather than poison every later call.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn runtime(&self) -> Result<Handle, BatchApiError> {
        Handle::try_current()
            .ok()
            .or_else(|| self.handle.clone())
            .ok_or_else(|| BatchApiError {
                code: "ServerException".to_string(),
                message: "the local Batch needs a Tokio runtime to run children".to_string(),
            })
    }

    /// Wakes `changed` waiters and starts what the change made startable.
    fn after_change(self: &Arc<Self>, handle: &Handle, launches: Vec<Launch>) {
        self.changed.notify_waiters();
        for launch in launches {
            handle.spawn(Arc::clone(self).run(launch));
        }
    }

    async fn run(self: Arc<Self>, launch: Launch) {
        let end = runner::run_attempt(&launch, |_| {
            self.lock().mark_running(launch.job, launch.child);
            self.changed.notify_waiters();
        })
        .await;
        let launches = self.lock().finish(&launch, end);
        self.after_change(&Handle::current(), launches);
    }

    async fn wait_until(&self, done: impl Fn(&State) -> bool) {
        loop {
            // Registered before the check, so a change between check and wait is not lost.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(&self.lock()) {
                return;
            }
            changed.await;
        }
    }
}

#[async_trait::async_trait]
impl BatchApi for LocalBatch {
    async fn describe_jobs(&self, job_ids: &[String]) -> Result<Vec<JobDetail>, BatchApiError> {
        self.inner.lock().describe(job_ids)
    }

    async fn list_array_children(
        &self,
        array_job_id: &str,
        status: JobStatus,
    ) -> Result<Vec<JobSummary>, BatchApiError> {
        self.inner.lock().list_children(array_job_id, status)
    }
}
