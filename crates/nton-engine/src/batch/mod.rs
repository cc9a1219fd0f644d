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
//! Layout: `request` reads a submission, `scheduler` decides what AWS Batch would (no I/O, one lock),
//! `runner` runs one attempt as a process, `describe` answers the read calls, `events` is the
//! transition stream, `retry` applies `evaluateOnExit`, `limits` holds the queues'
//! `JobStateTimeLimitActions` and why a job can never start on its queue. `shapes` reads the
//! Batch shapes a job definition and a submission share (two stages, each side's scalar
//! forms), `definition` the queues and job definitions of the template.

pub mod definition;
mod describe;
mod events;
mod limits;
mod log;
mod request;
mod retry;
mod runner;
mod scheduler;
pub mod shapes;
mod spec;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use nton_core::batch::{BatchApi, BatchApiError, JobDetail, JobStatus, JobSummary};
use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::Notify;

pub use events::{BatchEvent, EventReceiver};
pub use limits::{BlockedReason, InstanceSize, StateTimeLimit, TimeLimitAction};
pub use spec::{
    EvaluateOnExit, JobDefinitionSpec, LocalBatchConfig, QueueSpec, RetryAction, RetryStrategy,
};

use runner::Launch;
use scheduler::Scheduler;

/// `statusReason` of a child that an earlier run already finished (see
/// [`LocalBatch::mark_succeeded_before`]).
pub const RESUMED_REASON: &str = "Succeeded in an earlier run (resumed)";

/// `statusReason` of the children that [`LocalBatch::shutdown`] ends.
pub const SHUTDOWN_REASON: &str = "Terminated: the local engine is shutting down";

pub(crate) fn client_error(message: impl Into<String>) -> BatchApiError {
    BatchApiError { code: "ClientException".to_string(), message: message.into() }
}

/// Epoch milliseconds, as the Batch API reports times.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The local Batch. Cheap to clone: clones share one Batch.
#[derive(Clone)]
pub struct LocalBatch {
    inner: Arc<Inner>,
}

struct Inner {
    scheduler: Mutex<Scheduler>,
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
                scheduler: Mutex::new(Scheduler::new(Arc::new(config))),
                changed: Notify::new(),
                handle: Handle::try_current().ok(),
            }),
        }
    }

    /// Adds a job queue. At most min(floor(max_vcpus / a job's vcpus), `parallelism_cap`)
    /// of its children are STARTING or RUNNING at once, and always at least one, unless the
    /// child at the head can never start there (more vCPUs than `max_vcpus`, or more vCPUs or
    /// memory than [`LocalBatchConfig::instance`]): then it blocks the queue, as on AWS (see
    /// [`LocalBatch::set_queue_time_limits`]).
    pub fn add_queue(&self, spec: QueueSpec, parallelism_cap: usize) {
        self.inner.lock().add_queue(spec, parallelism_cap);
    }

    /// Sets a queue's `JobStateTimeLimitActions` (found by its ARN or name): a child that
    /// blocks the head of the queue for a reason one of them names is cancelled once it has
    /// been RUNNABLE with that reason for the action's time. Without actions a blocked child
    /// waits, as on AWS, until it is terminated.
    pub fn set_queue_time_limits(
        &self,
        queue: &str,
        limits: Vec<StateTimeLimit>,
    ) -> Result<(), BatchApiError> {
        limits::validate(&limits)?;
        self.inner.lock().set_time_limits(queue, limits)
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
        self.inner.wait_until(|state| state.running_total() == 0).await;
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Scheduler> {
        // A panic under the lock leaves the state as consistent as any single step does;
        // keep serving rather than poison every later call.
        self.scheduler.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn runtime(&self) -> Result<Handle, BatchApiError> {
        Handle::try_current().ok().or_else(|| self.handle.clone()).ok_or_else(|| BatchApiError {
            code: "ServerException".to_string(),
            message: "the local Batch needs a Tokio runtime to run children".to_string(),
        })
    }

    /// Wakes `changed` waiters, starts what the change made startable, and arms the time
    /// limit of a child that now blocks its queue.
    fn after_change(self: &Arc<Self>, handle: &Handle, launches: Vec<Launch>) {
        self.changed.notify_waiters();
        for launch in launches {
            handle.spawn(Arc::clone(self).run(launch));
        }
        let timers = self.lock().take_timers();
        for timer in timers {
            let inner = Arc::clone(self);
            handle.spawn(async move {
                tokio::time::sleep(timer.after).await;
                let launches = inner.lock().expire_blocked(&timer);
                inner.after_change(&Handle::current(), launches);
            });
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

    async fn wait_until(&self, done: impl Fn(&Scheduler) -> bool) {
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

#[cfg(test)]
mod time_limit_tests {
    use std::time::{Duration, Instant};

    use nton_core::batch::DEPENDENCY_FAILED_REASON;
    use serde_json::json;

    use super::*;

    const QUEUE: &str = "arn:aws:batch:local-1:000000000000:job-queue/q";
    /// Far longer than any wait below: a hang fails the test instead of stalling it.
    const HANG_GUARD: Duration = Duration::from_secs(20);

    struct Rig {
        batch: LocalBatch,
        _logs: tempfile::TempDir,
    }

    /// A local Batch on a 2 vCPU / 4 GiB machine, one queue of 4 vCPUs with `limits`, and a
    /// definition `small` (1 vCPU, 512 MiB) and `huge` (1 vCPU, 64 GiB) running /bin/true.
    fn rig(limits: Vec<StateTimeLimit>) -> Rig {
        let logs = tempfile::tempdir().unwrap();
        let mut config = LocalBatchConfig::new(logs.path());
        config.instance = Some(InstanceSize { vcpus: 2.0, memory_mib: 4096 });
        let batch = LocalBatch::new(config);
        batch.add_queue(
            QueueSpec {
                arn: QUEUE.to_string(),
                name: "q".to_string(),
                max_vcpus: 4.0,
                compute_environment: "ce".to_string(),
            },
            4,
        );
        batch.set_queue_time_limits("q", limits).unwrap();
        for (name, memory_mib) in [("small", 512), ("huge", 64 * 1024)] {
            batch.add_job_definition(JobDefinitionSpec {
                arn: format!("arn:aws:batch:local-1:000000000000:job-definition/{name}:1"),
                name: name.to_string(),
                program: PathBuf::from("/bin/true"),
                vcpus: 1.0,
                memory_mib,
                ..JobDefinitionSpec::default()
            });
        }
        Rig { batch, _logs: logs }
    }

    fn limit(reason: BlockedReason, millis: u64) -> StateTimeLimit {
        StateTimeLimit {
            reason,
            max_time: Duration::from_millis(millis),
            action: TimeLimitAction::Cancel,
        }
    }

    impl Rig {
        fn submit(&self, name: &str, definition: &str, extra: serde_json::Value) -> String {
            let mut request =
                json!({"JobName": name, "JobQueue": QUEUE, "JobDefinition": definition});
            for (k, v) in extra.as_object().unwrap() {
                request[k] = v.clone();
            }
            self.batch.submit_job(&request).unwrap()["JobId"].as_str().unwrap().to_string()
        }

        async fn child(&self, id: &str) -> JobDetail {
            self.batch.describe_jobs(&[id.to_string()]).await.unwrap().remove(0)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_bigger_than_the_machine_blocks_the_queue_then_is_cancelled_and_its_dependents_fail()
     {
        let rig = rig(vec![limit(BlockedReason::JobResourceRequirement, 300)]);
        let began = Instant::now();
        let huge = rig.submit("H", "huge", json!({"ArrayProperties": {"Size": 2}}));
        let after = rig.submit(
            "D",
            "small",
            json!({"ArrayProperties": {"Size": 2}, "DependsOn": [{"JobId": huge, "Type": "N_TO_N"}]}),
        );
        // Submitted behind the blocked head: it fits, but waits its turn (FIFO).
        let behind = rig.submit("B", "small", json!({}));

        let head = rig.child(&format!("{huge}:0")).await;
        assert_eq!(head.status, JobStatus::Runnable);
        assert_eq!(
            head.status_reason.as_deref(),
            Some(
                "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT - All compute environments have no connected instances that meet the job requirements."
            )
        );
        assert_eq!(rig.child(&behind).await.status, JobStatus::Runnable);

        tokio::time::timeout(HANG_GUARD, rig.batch.wait_all_terminal())
            .await
            .expect("the time limits end every job");
        // Each child waits its own limit at the head: two in a row.
        assert!(began.elapsed() >= Duration::from_millis(600), "{:?}", began.elapsed());
        for i in 0..2 {
            let child = rig.child(&format!("{huge}:{i}")).await;
            assert_eq!(child.status, JobStatus::Failed);
            assert_eq!(
                child.status_reason.as_deref(),
                Some(
                    "Canceled by JobStateTimeLimit action due to reason: MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"
                )
            );
            assert!(child.attempts.is_empty(), "a cancelled job never ran");
            let dependent = rig.child(&format!("{after}:{i}")).await;
            assert_eq!(dependent.status, JobStatus::Failed);
            assert_eq!(dependent.status_reason.as_deref(), Some(DEPENDENCY_FAILED_REASON));
        }
        assert_eq!(rig.child(&huge).await.status, JobStatus::Failed);
        assert_eq!(rig.child(&behind).await.status, JobStatus::Succeeded);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn more_vcpus_than_the_queue_has_is_compute_environment_max_resource() {
        let rig = rig(vec![limit(BlockedReason::ComputeEnvironmentMaxResource, 100)]);
        let id = rig.submit(
            "V",
            "small",
            json!({"ContainerOverrides": {"ResourceRequirements": [{"Type": "VCPU", "Value": "8"}]}}),
        );
        let blocked = rig.child(&id).await;
        assert_eq!(blocked.status, JobStatus::Runnable);
        assert!(blocked.status_reason.as_deref().is_some_and(|r| {
            r.starts_with("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE - ")
        }));
        tokio::time::timeout(HANG_GUARD, rig.batch.wait_all_terminal()).await.unwrap();
        assert_eq!(
            rig.child(&id).await.status_reason.as_deref(),
            Some(
                "Canceled by JobStateTimeLimit action due to reason: MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"
            )
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_an_action_for_its_reason_a_blocked_job_waits_until_terminated() {
        // An action for another reason does not apply.
        let rig = rig(vec![limit(BlockedReason::ComputeEnvironmentMaxResource, 50)]);
        let id = rig.submit("H", "huge", json!({}));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let still = rig.child(&id).await;
        assert_eq!(still.status, JobStatus::Runnable);
        assert!(
            still
                .status_reason
                .as_deref()
                .is_some_and(|r| r.starts_with("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"))
        );
        rig.batch.terminate_job(&id, "stopped by the test").unwrap();
        tokio::time::timeout(HANG_GUARD, rig.batch.wait_all_terminal()).await.unwrap();
        assert_eq!(rig.child(&id).await.status_reason.as_deref(), Some("stopped by the test"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_that_fits_is_never_held_back() {
        let rig = rig(vec![limit(BlockedReason::JobResourceRequirement, 50)]);
        let id = rig.submit("S", "small", json!({"ArrayProperties": {"Size": 3}}));
        tokio::time::timeout(HANG_GUARD, rig.batch.wait_all_terminal()).await.unwrap();
        assert_eq!(rig.child(&id).await.status, JobStatus::Succeeded);
    }

    #[test]
    fn time_limits_go_to_a_known_queue_one_per_reason() {
        let rig = rig(Vec::new());
        assert!(rig.batch.set_queue_time_limits("nope", Vec::new()).is_err());
        let twice = vec![
            limit(BlockedReason::JobResourceRequirement, 1),
            limit(BlockedReason::JobResourceRequirement, 2),
        ];
        assert!(rig.batch.set_queue_time_limits("q", twice).is_err());
    }
}
