//! The scheduler: jobs, children, dependencies, queues and the decisions AWS Batch makes
//! between them. Everything here runs under one lock and does no I/O; it hands out
//! [`Launch`]es to start and takes back [`AttemptEnd`]s.
//!
//! Nothing is polled and nothing is rescanned: every child carries the count of
//! dependencies it still waits on, and each end notifies exactly its dependents (child i of
//! the N_TO_N dependents, the next child of a SEQUENTIAL array, every child of a whole-job
//! dependent). Each job keeps its children's counts by status, so a parent's summary costs
//! nothing to read. Cascades go through a work list, never recursion, so a failure at the
//! head of a 10,000-child SEQUENTIAL chain does not grow the stack.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use nton_core::batch::{
    ArrayDependencyType, AttemptContainerDetail, AttemptDetail, BatchApiError,
    DEPENDENCY_FAILED_REASON, JobDependency, JobStatus,
};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::events::{BatchEvent, EventSink};
use super::limits::{self, BlockedReason, StateTimeLimit, TimeLimitAction};
use super::log::JobLog;
use super::request::{Dependency, SubmitRequest};
use super::retry::{self, FailedAttempt};
use super::runner::{AttemptEnd, EndKind, Launch, LaunchTemplate};
use super::spec::{JobDefinitionSpec, LocalBatchConfig, QueueSpec, RetryAction, RetryStrategy};
use super::{RESUMED_REASON, client_error, now_ms};

/// `statusReason` of an attempt whose program ran and exited (AWS says it for success too).
pub(crate) const EXITED_REASON: &str = "Essential container in task exited";
/// `statusReason` of an attempt stopped at its timeout (not retried, as on AWS).
pub(crate) const TIMEOUT_REASON: &str = "Job attempt duration exceeded timeout";
/// Prefix of the reason of an attempt whose program could not be started.
pub(crate) const CANNOT_START_PREFIX: &str = "CannotStartContainerError";

/// Decides which jobs an earlier run already finished: `(job name, array index)`.
pub(crate) type ResumePredicate = dyn Fn(&str, Option<u32>) -> bool + Send + Sync;

pub(crate) struct Queue {
    pub spec: QueueSpec,
    /// The engine's cap on children at once.
    cap: usize,
    /// `max_vcpus` in thousandths, so 0.25 vCPU jobs add up exactly.
    max_millicpus: u64,
    used_millicpus: u64,
    running: usize,
    /// RUNNABLE children, FIFO by submission then index: `(job, child)`.
    runnable: BTreeSet<(u32, u32)>,
    /// `JobStateTimeLimitActions`.
    time_limits: Vec<StateTimeLimit>,
    /// The head child that can never start here, holding the queue behind it, and since
    /// when (a new head starts a new wait).
    blocked: Option<Blocked>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Blocked {
    job: u32,
    child: u32,
    reason: BlockedReason,
    /// Counts blocks, so a timer armed for an earlier block of the same child (terminated,
    /// then another head, then...) cannot cancel a later one early.
    generation: u64,
}

/// A time limit to arm: after `after`, [`Scheduler::expire_blocked`] cancels the child if it
/// still blocks its queue in the same block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timer {
    pub after: Duration,
    queue: usize,
    blocked: Blocked,
}

pub(crate) struct Job {
    pub id: String,
    pub name: String,
    pub queue: usize,
    pub definition_arn: String,
    pub array_size: Option<u32>,
    /// As submitted, in the API's shape.
    pub depends_on: Vec<JobDependency>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
    /// The parent's status (for a plain job, its only child's).
    pub status: JobStatus,
    pub children: Vec<Child>,
    /// Children by status, indexed by [`JobStatus::index`].
    pub counts: [u32; 7],
    ended: u32,
    failed: u32,
    whole_deps: Vec<u32>,
    n_to_n_deps: Vec<u32>,
    sequential: bool,
    whole_dependents: Vec<u32>,
    n_to_n_dependents: Vec<u32>,
    template: Arc<LaunchTemplate>,
    retry: RetryStrategy,
    millicpus: u64,
    memory_mib: u64,
    pub log: Arc<JobLog>,
}

impl Job {
    /// Every child ended (counted against the job's size, not the children made so far:
    /// during submission a resumed child 0 must not end the job).
    pub fn ended(&self) -> bool {
        self.ended == self.array_size.unwrap_or(1)
    }

    /// The API id of child `child_index`.
    pub fn child_id(&self, child_index: u32) -> String {
        match self.array_size {
            Some(_) => format!("{}:{child_index}", self.id),
            None => self.id.clone(),
        }
    }
}

pub(crate) struct Child {
    pub status: JobStatus,
    pub status_reason: Option<String>,
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
    pub attempts: Vec<AttemptDetail>,
    /// Dependencies not yet SUCCEEDED.
    waiting_on: u32,
}

impl Default for Child {
    fn default() -> Self {
        Self {
            status: JobStatus::Submitted,
            status_reason: None,
            started_at: None,
            stopped_at: None,
            attempts: Vec::new(),
            waiting_on: 0,
        }
    }
}

/// A child STARTING or RUNNING.
struct Running {
    cancel: Arc<Notify>,
    /// Set when the child is being terminated: its end is FAILED with this reason.
    terminate_reason: Option<String>,
}

/// Something that ended and whose dependents have not been told yet.
enum Ended {
    Child { job: u32, child: u32, ok: bool },
    Job { job: u32, ok: bool },
}

/// The extra facts of an event about an attempt that just ended.
#[derive(Default)]
struct AttemptFacts {
    exit_code: Option<i32>,
    stderr_tail: Option<String>,
}

pub(crate) struct Scheduler {
    config: Arc<LocalBatchConfig>,
    pub queues: Vec<Queue>,
    queue_keys: HashMap<String, usize>,
    definitions: Vec<Arc<JobDefinitionSpec>>,
    definition_keys: HashMap<String, usize>,
    pub jobs: Vec<Job>,
    job_keys: HashMap<String, u32>,
    resumed: Vec<Arc<ResumePredicate>>,
    running: HashMap<(u32, u32), Running>,
    running_total: usize,
    /// Where round-robin over queues resumes, so that under a global bound every stage
    /// keeps moving (and N_TO_N pipelining happens) instead of the first queue taking all.
    next_queue: usize,
    open_jobs: usize,
    shutting_down: bool,
    worklist: VecDeque<Ended>,
    /// Time limits armed since [`Scheduler::take_timers`] was last called.
    timers: Vec<Timer>,
    blocks: u64,
    pub events: EventSink,
}

impl Scheduler {
    pub fn new(config: Arc<LocalBatchConfig>) -> Self {
        Self {
            config,
            queues: Vec::new(),
            queue_keys: HashMap::new(),
            definitions: Vec::new(),
            definition_keys: HashMap::new(),
            jobs: Vec::new(),
            job_keys: HashMap::new(),
            resumed: Vec::new(),
            running: HashMap::new(),
            running_total: 0,
            next_queue: 0,
            open_jobs: 0,
            shutting_down: false,
            worklist: VecDeque::new(),
            timers: Vec::new(),
            blocks: 0,
            events: EventSink::default(),
        }
    }

    pub fn add_queue(&mut self, spec: QueueSpec, cap: usize) {
        let max_millicpus = millicpus(spec.max_vcpus);
        let slot = self.queues.len();
        self.queue_keys.insert(spec.arn.clone(), slot);
        self.queue_keys.insert(spec.name.clone(), slot);
        self.queues.push(Queue {
            spec,
            cap: cap.max(1),
            max_millicpus,
            used_millicpus: 0,
            running: 0,
            runnable: BTreeSet::new(),
            time_limits: Vec::new(),
            blocked: None,
        });
    }

    pub fn set_time_limits(
        &mut self,
        queue: &str,
        limits: Vec<StateTimeLimit>,
    ) -> Result<(), BatchApiError> {
        let q = *self
            .queue_keys
            .get(queue)
            .ok_or_else(|| client_error(format!("JobQueue {queue} not found.")))?;
        self.queues[q].time_limits = limits;
        Ok(())
    }

    /// The time limits armed since the last call, for the caller to schedule.
    pub fn take_timers(&mut self) -> Vec<Timer> {
        std::mem::take(&mut self.timers)
    }

    pub fn add_definition(&mut self, spec: JobDefinitionSpec) {
        let slot = self.definitions.len();
        self.definition_keys.insert(spec.arn.clone(), slot);
        self.definition_keys.insert(spec.name.clone(), slot);
        // `name:revision`, the other short form SubmitJob accepts.
        if let Some((_, short)) = spec.arn.rsplit_once('/') {
            self.definition_keys.insert(short.to_string(), slot);
        }
        self.definitions.push(Arc::new(spec));
    }

    pub fn add_resumed(&mut self, predicate: Arc<ResumePredicate>) {
        self.resumed.push(predicate);
    }

    pub fn all_terminal(&self) -> bool {
        self.open_jobs == 0
    }

    pub fn is_shut_down(&self) -> bool {
        self.shutting_down
    }

    pub fn running_total(&self) -> usize {
        self.running_total
    }

    pub fn job_index(&self, id: &str) -> Option<u32> {
        self.job_keys.get(id).copied()
    }

    /// Finds `<parent>:<index>` (array child) or a job id.
    pub fn resolve(&self, id: &str) -> Option<(u32, Option<u32>)> {
        if let Some(&job) = self.job_keys.get(id) {
            return Some((job, None));
        }
        let (parent, index) = id.rsplit_once(':')?;
        let job = *self.job_keys.get(parent)?;
        let index: u32 = index.parse().ok()?;
        let size = self.jobs[job as usize].array_size?;
        (index < size).then_some((job, Some(index)))
    }

    // ----- submission -----

    pub fn submit(
        &mut self,
        request: SubmitRequest,
    ) -> Result<(Value, Vec<Launch>), BatchApiError> {
        let queue = *self
            .queue_keys
            .get(&request.job_queue)
            .ok_or_else(|| client_error(format!("JobQueue {} not found.", request.job_queue)))?;
        let definition = self
            .definition_keys
            .get(&request.job_definition)
            .map(|&d| Arc::clone(&self.definitions[d]))
            .ok_or_else(|| {
                client_error(format!("JobDefinition {} not found.", request.job_definition))
            })?;
        let (whole_deps, n_to_n_deps, sequential) = self.resolve_dependencies(&request)?;

        let id = uuid::Uuid::new_v4().to_string();
        let arn =
            format!("arn:aws:batch:{}:{}:job/{id}", self.config.region, self.config.account_id);
        let queue_spec = &self.queues[queue].spec;
        let template = Arc::new(self.launch_template(&request, &definition, queue_spec));
        let vcpus = request.vcpus.unwrap_or(definition.vcpus);
        let log = Arc::new(JobLog::new(
            self.config.log_dir.join(format!("{}.{id}.log", request.job_name)),
        ));
        let depends_on = request
            .depends_on
            .iter()
            .map(|d| JobDependency { job_id: d.job_id.clone(), dependency_type: d.kind })
            .collect();
        let size = request.array_size.unwrap_or(1);
        let job = self.jobs.len() as u32;
        self.jobs.push(Job {
            id: id.clone(),
            name: request.job_name.clone(),
            queue,
            definition_arn: definition.arn.clone(),
            array_size: request.array_size,
            depends_on,
            created_at: now_ms(),
            started_at: None,
            stopped_at: None,
            // An array parent is PENDING as soon as its children exist (they are created
            // below, under the same lock, so SUBMITTED is never seen).
            status: match request.array_size {
                Some(_) => JobStatus::Pending,
                None => JobStatus::Submitted,
            },
            children: Vec::with_capacity(size as usize),
            counts: [0; 7],
            ended: 0,
            failed: 0,
            whole_deps,
            n_to_n_deps,
            sequential,
            whole_dependents: Vec::new(),
            n_to_n_dependents: Vec::new(),
            template,
            retry: request.retry.clone().unwrap_or_else(|| definition.retry.clone()),
            millicpus: millicpus(if vcpus > 0.0 { vcpus } else { 1.0 }),
            memory_mib: request.memory_mib.unwrap_or(definition.memory_mib),
            log,
        });
        self.job_keys.insert(id.clone(), job);
        self.open_jobs += 1;
        for k in 0..self.jobs[job as usize].whole_deps.len() {
            let dep = self.jobs[job as usize].whole_deps[k];
            self.jobs[dep as usize].whole_dependents.push(job);
        }
        for k in 0..self.jobs[job as usize].n_to_n_deps.len() {
            let dep = self.jobs[job as usize].n_to_n_deps[k];
            self.jobs[dep as usize].n_to_n_dependents.push(job);
        }

        let resumed = std::mem::take(&mut self.resumed);
        for child_index in 0..size {
            let index = request.array_size.map(|_| child_index);
            self.create_child(
                job,
                child_index,
                resumed.iter().any(|p| p(&request.job_name, index)),
            );
            // Ends during creation (resumed or dependency failed) reach only children that
            // exist, which counted them as still open: see `create_child`.
            self.drain();
        }
        self.resumed = resumed;

        let answer = json!({"JobId": id, "JobName": request.job_name, "JobArn": arn});
        Ok((answer, self.dispatch()))
    }

    fn resolve_dependencies(
        &self,
        request: &SubmitRequest,
    ) -> Result<(Vec<u32>, Vec<u32>, bool), BatchApiError> {
        let invalid = |m: String| client_error(format!("Error executing request, Exception : {m}"));
        let mut whole = Vec::new();
        let mut n_to_n = Vec::new();
        let mut sequential = false;
        for Dependency { job_id, kind } in &request.depends_on {
            match (job_id, kind) {
                (None, Some(ArrayDependencyType::Sequential)) => {
                    if request.array_size.is_none() {
                        return Err(invalid(
                            "A SEQUENTIAL dependency is only allowed for an array job".into(),
                        ));
                    }
                    sequential = true;
                }
                (Some(_), Some(ArrayDependencyType::Sequential)) => {
                    return Err(invalid(
                        "A SEQUENTIAL dependency orders the job's own children and takes no JobId"
                            .into(),
                    ));
                }
                (Some(dep_id), kind) => {
                    let dep = *self
                        .job_keys
                        .get(dep_id)
                        .ok_or_else(|| invalid(format!("Dependent job {dep_id} not found")))?;
                    if *kind == Some(ArrayDependencyType::NToN) {
                        let dep_size = self.jobs[dep as usize].array_size;
                        match (request.array_size, dep_size) {
                            (Some(mine), Some(theirs)) if mine == theirs => n_to_n.push(dep),
                            _ => {
                                return Err(invalid(format!(
                                    "An N_TO_N dependency needs two array jobs of the same size: this job's size is {}, job {dep_id}'s is {}",
                                    size_text(request.array_size),
                                    size_text(dep_size)
                                )));
                            }
                        }
                    } else {
                        whole.push(dep);
                    }
                }
                (None, _) => {
                    return Err(invalid(
                        "DependsOn JobId is required unless the type is SEQUENTIAL".into(),
                    ));
                }
            }
        }
        Ok((whole, n_to_n, sequential))
    }

    fn launch_template(
        &self,
        request: &SubmitRequest,
        definition: &JobDefinitionSpec,
        queue: &QueueSpec,
    ) -> LaunchTemplate {
        let mut parameters = definition.parameters.clone();
        parameters.extend(request.parameters.clone());
        let args = request
            .command
            .as_ref()
            .unwrap_or(&definition.command)
            .iter()
            .map(|arg| substitute(arg, &parameters))
            .collect();
        // Later sources win: base, definition, submission overrides.
        let mut env = self.config.base_env.clone();
        env.extend(definition.environment.clone());
        env.extend(request.environment.iter().cloned());
        env.insert("AWS_BATCH_JQ_NAME".to_string(), queue.name.clone());
        let ce = if queue.compute_environment.is_empty() {
            &queue.name
        } else {
            &queue.compute_environment
        };
        env.insert("AWS_BATCH_CE_NAME".to_string(), ce.clone());
        LaunchTemplate {
            program: definition.program.clone(),
            args,
            env: env.into_iter().collect(),
            timeout: request.attempt_timeout.or(definition.attempt_timeout),
        }
    }

    /// Adds child `child_index`, SUBMITTED, and moves it on at once: SUCCEEDED if an earlier run did
    /// it, FAILED if a dependency already failed, PENDING if one is still open, else RUNNABLE.
    /// Dependencies that already ended are read here; those still open will notify it.
    fn create_child(&mut self, job: u32, child_index: u32, resumed: bool) {
        let j = job as usize;
        self.jobs[j].children.push(Child::default());
        self.jobs[j].counts[JobStatus::Submitted.index()] += 1;
        self.emit_child(job, child_index, &AttemptFacts::default());
        if resumed {
            self.transition(
                job,
                child_index,
                JobStatus::Succeeded,
                Some(RESUMED_REASON.to_string()),
                AttemptFacts::default(),
            );
            return;
        }
        let mut waiting = 0;
        let mut failed = false;
        for &dep in &self.jobs[j].whole_deps {
            let dep = &self.jobs[dep as usize];
            match (dep.ended(), dep.failed) {
                (false, _) => waiting += 1,
                (true, 0) => {}
                (true, _) => failed = true,
            }
        }
        let mut child_deps: Vec<JobStatus> = self.jobs[j]
            .n_to_n_deps
            .iter()
            .map(|&dep| self.jobs[dep as usize].children[child_index as usize].status)
            .collect();
        if self.jobs[j].sequential && child_index > 0 {
            child_deps.push(self.jobs[j].children[child_index as usize - 1].status);
        }
        for status in child_deps {
            match status {
                JobStatus::Succeeded => {}
                JobStatus::Failed => failed = true,
                _ => waiting += 1,
            }
        }
        if failed {
            self.transition(job, child_index, JobStatus::Pending, None, AttemptFacts::default());
            self.transition(
                job,
                child_index,
                JobStatus::Failed,
                Some(DEPENDENCY_FAILED_REASON.to_string()),
                AttemptFacts::default(),
            );
        } else if waiting > 0 {
            self.jobs[j].children[child_index as usize].waiting_on = waiting;
            self.transition(job, child_index, JobStatus::Pending, None, AttemptFacts::default());
        } else {
            self.make_runnable(job, child_index, None, AttemptFacts::default());
        }
    }

    // ----- transitions -----

    /// Moves a child to `to`, keeping counts, timestamps and the parent in step, and sends
    /// the event. A terminal status queues the child (and maybe its job) for `drain`.
    fn transition(
        &mut self,
        job: u32,
        child_index: u32,
        to: JobStatus,
        reason: Option<String>,
        facts: AttemptFacts,
    ) {
        let now = now_ms();
        let record = &mut self.jobs[job as usize];
        let child = &mut record.children[child_index as usize];
        let from = child.status;
        record.counts[from.index()] -= 1;
        record.counts[to.index()] += 1;
        child.status = to;
        if reason.is_some() {
            child.status_reason = reason;
        }
        match to {
            JobStatus::Running => {
                child.started_at = Some(now);
                record.started_at.get_or_insert(now);
            }
            JobStatus::Succeeded | JobStatus::Failed => child.stopped_at = Some(now),
            _ => {}
        }
        if record.array_size.is_none() {
            record.status = to;
        }
        self.emit_child(job, child_index, &facts);

        if to.is_terminal() {
            let ok = to == JobStatus::Succeeded;
            let record = &mut self.jobs[job as usize];
            record.ended += 1;
            if !ok {
                record.failed += 1;
            }
            self.worklist.push_back(Ended::Child { job, child: child_index, ok });
            if record.ended() {
                let ok = record.failed == 0;
                record.status = if ok { JobStatus::Succeeded } else { JobStatus::Failed };
                record.stopped_at = Some(now);
                self.open_jobs -= 1;
                let seq = self.events.next_seq();
                if self.events.listening() {
                    let record = &self.jobs[job as usize];
                    let event = BatchEvent::JobEnded {
                        seq,
                        job_id: record.id.clone(),
                        job_name: record.name.clone(),
                        status: record.status,
                        at_ms: now,
                    };
                    self.events.send(event);
                }
                self.worklist.push_back(Ended::Job { job, ok });
            }
        }
    }

    fn emit_child(&mut self, job: u32, child_index: u32, facts: &AttemptFacts) {
        let seq = self.events.next_seq();
        if !self.events.listening() {
            return;
        }
        let record = &self.jobs[job as usize];
        let child = &record.children[child_index as usize];
        let made = child.attempts.len() as u32;
        let event = BatchEvent::ChildChanged {
            seq,
            job_id: record.child_id(child_index),
            parent_job_id: record.array_size.map(|_| record.id.clone()),
            job_name: record.name.clone(),
            queue: self.queues[record.queue].spec.name.clone(),
            index: record.array_size.map(|_| child_index),
            status: child.status,
            attempt: if child.status.is_terminal() { made } else { made + 1 },
            at_ms: now_ms(),
            status_reason: child.status_reason.clone(),
            exit_code: facts.exit_code,
            stderr_tail: facts.stderr_tail.clone(),
        };
        self.events.send(event);
    }

    fn make_runnable(
        &mut self,
        job: u32,
        child_index: u32,
        reason: Option<String>,
        facts: AttemptFacts,
    ) {
        self.transition(job, child_index, JobStatus::Runnable, reason, facts);
        let queue = self.jobs[job as usize].queue;
        self.queues[queue].runnable.insert((job, child_index));
    }

    /// Tells dependents about ends until nothing is left to tell.
    fn drain(&mut self) {
        while let Some(ended) = self.worklist.pop_front() {
            match ended {
                Ended::Child { job, child, ok } => {
                    let j = job as usize;
                    for k in 0..self.jobs[j].n_to_n_dependents.len() {
                        let dependent = self.jobs[j].n_to_n_dependents[k];
                        self.notify(dependent, child, ok);
                    }
                    if self.jobs[j].sequential && (child as usize + 1) < self.jobs[j].children.len()
                    {
                        self.notify(job, child + 1, ok);
                    }
                }
                Ended::Job { job, ok } => {
                    for k in 0..self.jobs[job as usize].whole_dependents.len() {
                        let dependent = self.jobs[job as usize].whole_dependents[k];
                        for child_index in 0..self.jobs[dependent as usize].children.len() as u32 {
                            self.notify(dependent, child_index, ok);
                        }
                    }
                }
            }
        }
    }

    /// One dependency of a PENDING child ended.
    fn notify(&mut self, job: u32, child_index: u32, ok: bool) {
        let child = &mut self.jobs[job as usize].children[child_index as usize];
        // Already FAILED through another dependency (or terminated): nothing left to decide.
        if child.status != JobStatus::Pending {
            return;
        }
        if !ok {
            self.transition(
                job,
                child_index,
                JobStatus::Failed,
                Some(DEPENDENCY_FAILED_REASON.to_string()),
                AttemptFacts::default(),
            );
            return;
        }
        child.waiting_on -= 1;
        if child.waiting_on == 0 {
            self.make_runnable(job, child_index, None, AttemptFacts::default());
        }
    }

    // ----- dispatch -----

    /// Starts every RUNNABLE child that fits, FIFO within a queue, round-robin between
    /// queues, within the queue's vCPUs and cap and the global bound.
    pub fn dispatch(&mut self) -> Vec<Launch> {
        let mut launches = Vec::new();
        if self.shutting_down || self.queues.is_empty() {
            return launches;
        }
        let count = self.queues.len();
        loop {
            if self.config.max_parallel_total.is_some_and(|max| self.running_total >= max.max(1)) {
                break;
            }
            let first = self.next_queue;
            let started = (0..count)
                .map(|k| (first + k) % count)
                .find_map(|q| self.start_head(q).map(|launch| (q, launch)));
            match started {
                Some((q, launch)) => {
                    self.next_queue = (q + 1) % count;
                    launches.push(launch);
                }
                None => break,
            }
        }
        launches
    }

    /// Starts the first RUNNABLE child of queue `q` if the queue has room for it. A child
    /// fits while fewer than `cap` run and its vCPUs fit beside the others'; one always fits
    /// in an idle queue, so slots = min(floor(maxvCpus / vcpus), cap), at least 1. A child
    /// that can never fit (see [`limits::never_fits`]) blocks the queue instead.
    fn start_head(&mut self, q: usize) -> Option<Launch> {
        let queue = &self.queues[q];
        let &(job, child_index) = queue.runnable.first()?;
        let millicpus = self.jobs[job as usize].millicpus;
        let memory_mib = self.jobs[job as usize].memory_mib;
        if let Some(reason) =
            limits::never_fits(millicpus, memory_mib, queue.max_millicpus, self.config.instance)
        {
            self.block(q, job, child_index, reason);
            return None;
        }
        let queue = &self.queues[q];
        if queue.running >= queue.cap
            || (queue.running > 0 && queue.used_millicpus + millicpus > queue.max_millicpus)
        {
            return None;
        }
        let queue = &mut self.queues[q];
        queue.runnable.remove(&(job, child_index));
        queue.running += 1;
        queue.used_millicpus += millicpus;
        self.running_total += 1;
        self.transition(job, child_index, JobStatus::Starting, None, AttemptFacts::default());
        let cancel = Arc::new(Notify::new());
        self.running.insert(
            (job, child_index),
            Running { cancel: Arc::clone(&cancel), terminate_reason: None },
        );
        let record = &self.jobs[job as usize];
        Some(Launch {
            job,
            child: child_index,
            index: record.array_size.map(|_| child_index),
            attempt: record.children[child_index as usize].attempts.len() as u32 + 1,
            child_id: record.child_id(child_index),
            template: Arc::clone(&record.template),
            log: Arc::clone(&record.log),
            cancel,
            kill_grace: self.config.kill_grace,
        })
    }

    /// The head of queue `q` can never start: it keeps the queue behind it (FIFO, as AWS
    /// Batch's queues are), says why in its `statusReason`, and the queue's time limit for
    /// that reason, if any, starts counting. Idempotent while the same head stays blocked.
    fn block(&mut self, q: usize, job: u32, child_index: u32, reason: BlockedReason) {
        if self.queues[q]
            .blocked
            .is_some_and(|b| b.job == job && b.child == child_index && b.reason == reason)
        {
            return;
        }
        self.blocks += 1;
        let blocked = Blocked { job, child: child_index, reason, generation: self.blocks };
        self.queues[q].blocked = Some(blocked);
        // The status stays RUNNABLE; only the reason changes, so no transition event.
        self.jobs[job as usize].children[child_index as usize].status_reason =
            Some(reason.status_reason());
        if let Some(limit) = self.queues[q].time_limits.iter().find(|l| l.reason == reason) {
            self.timers.push(Timer { after: limit.max_time, queue: q, blocked });
        }
    }

    /// A time limit ran out: if its child still blocks the queue in the same block, the
    /// action runs (CANCEL: the child fails with AWS's reason, its dependents fail, and the
    /// next child moves to the head).
    pub fn expire_blocked(&mut self, timer: &Timer) -> Vec<Launch> {
        let q = timer.queue;
        if self.shutting_down || self.queues[q].blocked != Some(timer.blocked) {
            return Vec::new();
        }
        let Blocked { job, child, reason, .. } = timer.blocked;
        if self.jobs[job as usize].children[child as usize].status != JobStatus::Runnable {
            return Vec::new();
        }
        let TimeLimitAction::Cancel = self.queues[q]
            .time_limits
            .iter()
            .find(|l| l.reason == reason)
            .map_or(TimeLimitAction::Cancel, |l| l.action);
        self.queues[q].blocked = None;
        self.queues[q].runnable.remove(&(job, child));
        self.transition(
            job,
            child,
            JobStatus::Failed,
            Some(reason.canceled_reason()),
            AttemptFacts::default(),
        );
        self.drain();
        self.dispatch()
    }

    /// The process of a STARTING child exists.
    pub fn mark_running(&mut self, job: u32, child_index: u32) {
        if self.jobs[job as usize].children[child_index as usize].status == JobStatus::Starting {
            self.transition(job, child_index, JobStatus::Running, None, AttemptFacts::default());
        }
    }

    /// An attempt ended: record it, then SUCCEEDED, FAILED, or RUNNABLE again for a retry.
    pub fn finish(&mut self, launch: &Launch, end: AttemptEnd) -> Vec<Launch> {
        let (job, child_index) = (launch.job, launch.child);
        let terminate_reason =
            self.running.remove(&(job, child_index)).and_then(|running| running.terminate_reason);
        let record = &self.jobs[job as usize];
        let queue = &mut self.queues[record.queue];
        queue.running -= 1;
        queue.used_millicpus -= record.millicpus;
        self.running_total -= 1;

        let (status_reason, container_reason) = match (&terminate_reason, &end.kind) {
            (Some(reason), _) => (reason.clone(), None),
            (None, EndKind::Exited) => (EXITED_REASON.to_string(), None),
            (None, EndKind::TimedOut) => (TIMEOUT_REASON.to_string(), None),
            (None, EndKind::Terminated) => ("Terminated".to_string(), None),
            (None, EndKind::CannotStart(why)) => {
                let reason = format!("{CANNOT_START_PREFIX}: {why}");
                (reason.clone(), Some(reason))
            }
        };
        let log = &self.jobs[job as usize].log;
        let log_stream_name = log.written().then(|| log.path().display().to_string());
        let record = &mut self.jobs[job as usize];
        let child = &mut record.children[child_index as usize];
        child.attempts.push(AttemptDetail {
            container: Some(AttemptContainerDetail {
                exit_code: end.exit_code,
                reason: container_reason.clone(),
                log_stream_name,
            }),
            started_at: end.started_at,
            stopped_at: Some(end.stopped_at),
            status_reason: Some(status_reason.clone()),
        });
        let facts = AttemptFacts { exit_code: end.exit_code, stderr_tail: end.stderr_tail.clone() };
        let succeeded =
            terminate_reason.is_none() && end.kind == EndKind::Exited && end.exit_code == Some(0);
        if succeeded {
            self.transition(job, child_index, JobStatus::Succeeded, Some(status_reason), facts);
        } else {
            // A timeout or a termination is final on AWS; other failures go to the rules.
            let retryable = terminate_reason.is_none()
                && !self.shutting_down
                && matches!(end.kind, EndKind::Exited | EndKind::CannotStart(_))
                && child.attempts.len() < record.retry.attempts as usize
                && retry::decide(
                    &record.retry.evaluate_on_exit,
                    FailedAttempt {
                        status_reason: &status_reason,
                        reason: container_reason.as_deref(),
                        exit_code: end.exit_code,
                    },
                ) == RetryAction::Retry;
            if retryable {
                self.make_runnable(job, child_index, Some(status_reason), facts);
            } else {
                self.transition(job, child_index, JobStatus::Failed, Some(status_reason), facts);
            }
        }
        self.drain();
        self.dispatch()
    }

    // ----- termination -----

    /// TerminateJob: children not yet started fail at once; STARTING and RUNNING ones are
    /// stopped and fail when their process has ended.
    pub fn terminate(&mut self, job: u32, reason: &str) -> Vec<Launch> {
        for child_index in 0..self.jobs[job as usize].children.len() as u32 {
            match self.jobs[job as usize].children[child_index as usize].status {
                JobStatus::Submitted | JobStatus::Pending | JobStatus::Runnable => {
                    let queue = self.jobs[job as usize].queue;
                    self.queues[queue].runnable.remove(&(job, child_index));
                    if self.queues[queue]
                        .blocked
                        .is_some_and(|b| b.job == job && b.child == child_index)
                    {
                        self.queues[queue].blocked = None;
                    }
                    self.transition(
                        job,
                        child_index,
                        JobStatus::Failed,
                        Some(reason.to_string()),
                        AttemptFacts::default(),
                    );
                }
                JobStatus::Starting | JobStatus::Running => {
                    if let Some(running) = self.running.get_mut(&(job, child_index)) {
                        running.terminate_reason = Some(reason.to_string());
                        running.cancel.notify_one();
                    }
                }
                JobStatus::Succeeded | JobStatus::Failed => {}
            }
        }
        self.drain();
        self.dispatch()
    }

    /// Stops dispatching and terminates every job that has not ended.
    pub fn shut_down(&mut self, reason: &str) {
        self.shutting_down = true;
        for job in 0..self.jobs.len() as u32 {
            if !self.jobs[job as usize].ended() {
                self.terminate(job, reason);
            }
        }
    }
}

fn millicpus(vcpus: f64) -> u64 {
    (vcpus * 1000.0).round().max(1.0) as u64
}

fn size_text(size: Option<u32>) -> String {
    size.map_or_else(|| "none (not an array)".to_string(), |s| s.to_string())
}

/// Replaces each `Ref::key` with the parameter's value, as AWS does in the command.
fn substitute(arg: &str, parameters: &std::collections::BTreeMap<String, String>) -> String {
    if !arg.contains("Ref::") {
        return arg.to_string();
    }
    let mut out = arg.to_string();
    // Longest keys first, so `Ref::inputfile` is not cut short by a key `input`.
    let mut keys: Vec<&String> = parameters.keys().collect();
    keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
    for key in keys {
        out = out.replace(&format!("Ref::{key}"), &parameters[key]);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn parameters_replace_refs_longest_key_first() {
        let parameters = BTreeMap::from([
            ("input".to_string(), "A".to_string()),
            ("inputfile".to_string(), "B".to_string()),
        ]);
        assert_eq!(substitute("Ref::inputfile", &parameters), "B");
        assert_eq!(substitute("--in=Ref::input", &parameters), "--in=A");
        assert_eq!(substitute("Ref::other", &parameters), "Ref::other");
    }

    #[test]
    fn vcpus_are_counted_in_thousandths() {
        assert_eq!(millicpus(0.25), 250);
        assert_eq!(millicpus(16.0), 16_000);
        // A zero-vCPU definition still takes a share, so the vCPU bound stays meaningful.
        assert_eq!(millicpus(0.0), 1);
    }
}
