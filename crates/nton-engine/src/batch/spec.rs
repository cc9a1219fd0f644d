//! What the engine tells the local Batch before anything is submitted: its configuration, the
//! job queues (with the vCPU ceiling of their compute environments) and the job definitions,
//! all read from the template by the engine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nton_core::batch::BatchApiError;

use super::limits::InstanceSize;
use super::retry;

/// How the local Batch runs children on this machine.
#[derive(Clone, Debug)]
pub struct LocalBatchConfig {
    /// The environment every child starts from. Children do NOT inherit the engine's own
    /// environment, as a container does not inherit the host's: the engine decides what goes
    /// here (PATH, NTON_DATA_ROOT, AWS_* ...).
    pub base_env: BTreeMap<String, String>,
    /// Where child stdout/stderr go: one file per job, each line prefixed by index and attempt.
    pub log_dir: PathBuf,
    /// At most this many children STARTING or RUNNING over all queues (the machine's cores,
    /// say); `None` leaves only the per-queue bounds.
    pub max_parallel_total: Option<usize>,
    /// For job ARNs.
    pub region: String,
    /// For job ARNs.
    pub account_id: String,
    /// After SIGTERM (attempt timeout, termination), how long a child has before SIGKILL.
    /// AWS gives 30 seconds.
    pub kill_grace: Duration,
    /// The one instance every local compute environment has (this machine, by default): a
    /// job needing more vCPUs or memory than it has stays RUNNABLE with
    /// `MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT`, as on AWS. `None`: any size fits.
    pub instance: Option<InstanceSize>,
}

impl LocalBatchConfig {
    /// An empty base environment, no global bound, `local-1`/`000000000000`, AWS's 30 s
    /// grace, and this machine as the instance.
    pub fn new(log_dir: impl Into<PathBuf>) -> Self {
        Self {
            base_env: BTreeMap::new(),
            log_dir: log_dir.into(),
            max_parallel_total: None,
            region: "local-1".to_string(),
            account_id: "000000000000".to_string(),
            kill_grace: Duration::from_secs(30),
            instance: InstanceSize::of_this_machine(),
        }
    }
}

/// A job queue and the capacity of its compute environment(s).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueSpec {
    pub arn: String,
    pub name: String,
    /// Sum of `MaxvCpus` over the queue's compute environments.
    pub max_vcpus: f64,
    /// For `AWS_BATCH_CE_NAME`; empty means the queue's name.
    pub compute_environment: String,
}

/// A container job definition, as the local Batch runs it: `program` stands in for the
/// image's entry point, `command` for the container command.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobDefinitionSpec {
    /// With its revision, e.g. `arn:aws:batch:r:a:job-definition/Name:1`.
    pub arn: String,
    pub name: String,
    pub program: PathBuf,
    /// Arguments; `ContainerOverrides.Command` replaces them. `Ref::key` in an argument is
    /// replaced by the job's parameter `key`.
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    /// Default values of `Ref::key` placeholders; `Parameters` of a submission win.
    pub parameters: BTreeMap<String, String>,
    pub vcpus: f64,
    pub memory_mib: u64,
    pub retry: RetryStrategy,
    /// Per attempt, from the attempt's start. The engine may give any duration here; a
    /// submission's `Timeout.AttemptDurationSeconds` is held to AWS's minimum of 60.
    pub attempt_timeout: Option<Duration>,
}

/// `retryStrategy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryStrategy {
    /// 1..=10; 1 means no retry.
    pub attempts: u32,
    /// At most 5 rules, first match decides; no match retries while attempts remain.
    pub evaluate_on_exit: Vec<EvaluateOnExit>,
}

impl Default for RetryStrategy {
    fn default() -> Self {
        Self { attempts: 1, evaluate_on_exit: Vec::new() }
    }
}

impl RetryStrategy {
    /// Checks AWS's limits: 1..=10 attempts, at most 5 rules, patterns with `*` only at the
    /// end, exit-code patterns of digits.
    pub fn validate(&self) -> Result<(), BatchApiError> {
        retry::validate(self)
    }
}

/// One `evaluateOnExit` rule: every condition given must match (glob, `*` only at the end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvaluateOnExit {
    pub on_status_reason: Option<String>,
    pub on_reason: Option<String>,
    pub on_exit_code: Option<String>,
    pub action: RetryAction,
}

/// What a matching `evaluateOnExit` rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAction {
    Retry,
    Exit,
}

impl RetryAction {
    /// `RETRY` / `EXIT`, in any case (AWS: "The values aren't case sensitive").
    pub fn parse(text: &str) -> Option<RetryAction> {
        if text.eq_ignore_ascii_case("RETRY") {
            Some(RetryAction::Retry)
        } else if text.eq_ignore_ascii_case("EXIT") {
            Some(RetryAction::Exit)
        } else {
            None
        }
    }
}
