//! A job queue's `JobStateTimeLimitActions`, and why a RUNNABLE job at the head of a queue
//! can never start there.
//!
//! AWS Batch (user guide, "Jobs stuck in a RUNNABLE status" and "Automatic remediation with
//! jobStateTimeLimitActions"): when the job at the head of a queue cannot be placed, Batch
//! sets its `statusReason` to one of a fixed set of reasons and the queue is blocked behind
//! it; an action whose `reason` matches cancels the job once it has been RUNNABLE with that
//! reason for `maxTimeSeconds`, and the next job moves to the head. Only three reasons
//! support actions, and CANCEL is the only action for ECS, EKS and Fargate queues.
//!
//! Locally the compute environment is this machine: a job whose vCPUs exceed the queue's
//! `MaxvCpus` is `MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE`, one whose vCPUs or
//! memory exceed the machine ([`InstanceSize`], the only "instance" the environment has) is
//! `MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT`. `CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY`
//! never arises here (local capacity comes back when a child ends), but an action on it is
//! accepted, as AWS accepts it.

use std::time::Duration;

use nton_core::batch::BatchApiError;

use super::client_error;

/// A reason AWS Batch gives a RUNNABLE job that blocks its queue, of those that support
/// `jobStateTimeLimitActions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockedReason {
    InsufficientInstanceCapacity,
    ComputeEnvironmentMaxResource,
    JobResourceRequirement,
}

impl BlockedReason {
    /// Every reason that supports an action.
    pub const ALL: [BlockedReason; 3] = [
        BlockedReason::InsufficientInstanceCapacity,
        BlockedReason::ComputeEnvironmentMaxResource,
        BlockedReason::JobResourceRequirement,
    ];

    /// The `reason` of a `jobStateTimeLimitActions` entry.
    pub fn code(self) -> &'static str {
        match self {
            BlockedReason::InsufficientInstanceCapacity => {
                "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
            }
            BlockedReason::ComputeEnvironmentMaxResource => {
                "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE"
            }
            BlockedReason::JobResourceRequirement => "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT",
        }
    }

    pub fn parse(code: &str) -> Option<BlockedReason> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The job's `statusReason` while it blocks the queue: the code, then the API
    /// reference's description of it (JobDetail.statusReason).
    pub fn status_reason(self) -> String {
        let text = match self {
            BlockedReason::InsufficientInstanceCapacity => {
                "All compute environments have insufficient capacity to service the job."
            }
            BlockedReason::ComputeEnvironmentMaxResource => {
                "All compute environments have a maxVcpu setting that is smaller than the job requirements."
            }
            BlockedReason::JobResourceRequirement => {
                "All compute environments have no connected instances that meet the job requirements."
            }
        };
        format!("{} - {text}", self.code())
    }

    /// The job's `statusReason` after the action cancelled it (user guide, "Jobs stuck in
    /// RUNNABLE due to capacity": `Canceled by JobStateTimeLimit action due to reason: ...`).
    pub fn canceled_reason(self) -> String {
        format!("Canceled by JobStateTimeLimit action due to reason: {}", self.code())
    }
}

/// What an action does. AWS has CANCEL, and TERMINATE for SageMaker training queues only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeLimitAction {
    Cancel,
}

/// One `JobStateTimeLimitActions` entry (`state` is always RUNNABLE: the only state AWS
/// accepts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateTimeLimit {
    pub reason: BlockedReason,
    /// How long the job may stay RUNNABLE with `reason`. AWS takes 600..=86,400 seconds;
    /// the template's parameter holds the pipeline to that, and the local Batch takes any
    /// positive duration so that tests need not wait ten minutes.
    pub max_time: Duration,
    pub action: TimeLimitAction,
}

impl StateTimeLimit {
    /// Reads one entry as CloudFormation writes it (`State`, `Action`, `Reason`,
    /// `MaxTimeSeconds`); an error names the field.
    pub fn from_template(entry: &serde_json::Value) -> Result<StateTimeLimit, String> {
        let text = |field: &str| -> Result<String, String> {
            match &entry[field] {
                serde_json::Value::String(s) => Ok(s.clone()),
                serde_json::Value::Null => Err(format!("{field}: missing")),
                other => Err(format!("{field}: must be a string, got {other}")),
            }
        };
        let state = text("State")?;
        if state != "RUNNABLE" {
            return Err(format!("State: {state} is not RUNNABLE, the only state AWS Batch takes"));
        }
        let action = match text("Action")?.as_str() {
            "CANCEL" => TimeLimitAction::Cancel,
            "TERMINATE" => {
                return Err(
                    "Action: TERMINATE is for job queues of SageMaker training service environments only; container job queues take CANCEL"
                        .to_string(),
                );
            }
            other => return Err(format!("Action: {other} is not CANCEL")),
        };
        let reason = text("Reason")?;
        let reason = BlockedReason::parse(&reason).ok_or_else(|| {
            format!(
                "Reason: {reason} does not support time-limit actions; AWS Batch takes {}",
                BlockedReason::ALL.map(BlockedReason::code).join(", ")
            )
        })?;
        let seconds = match &entry["MaxTimeSeconds"] {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.parse::<f64>().ok(),
            _ => None,
        }
        .ok_or_else(|| "MaxTimeSeconds: missing or not a number".to_string())?;
        if !(seconds > 0.0 && seconds <= 86_400.0) {
            return Err(format!("MaxTimeSeconds: {seconds} is out of range (0, 86400]"));
        }
        Ok(StateTimeLimit { reason, max_time: Duration::from_secs_f64(seconds), action })
    }
}

/// The one instance a local compute environment has: this machine.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstanceSize {
    pub vcpus: f64,
    pub memory_mib: u64,
}

impl InstanceSize {
    /// This machine: its logical CPUs and its memory (`MemTotal` of `/proc/meminfo`). `None`
    /// where the memory cannot be read (not Linux): then no job is held back for its size.
    pub fn of_this_machine() -> Option<InstanceSize> {
        let vcpus = std::thread::available_parallelism().ok()?.get() as f64;
        // The standard library has no memory query and this is its only use: one line of
        // one file, rather than a system-information crate.
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()?;
        Some(InstanceSize { vcpus, memory_mib: kib / 1024 })
    }
}

/// Why a job of `millicpus` and `memory_mib` can never start on a queue of
/// `queue_millicpus` whose instance is `instance`; `None` when it can.
pub(crate) fn never_fits(
    millicpus: u64,
    memory_mib: u64,
    queue_millicpus: u64,
    instance: Option<InstanceSize>,
) -> Option<BlockedReason> {
    if millicpus > queue_millicpus {
        return Some(BlockedReason::ComputeEnvironmentMaxResource);
    }
    let instance = instance?;
    let instance_millicpus = (instance.vcpus * 1000.0).round() as u64;
    (millicpus > instance_millicpus || memory_mib > instance.memory_mib)
        .then_some(BlockedReason::JobResourceRequirement)
}

/// Checks a queue's actions as CreateJobQueue does: one action per reason.
pub(crate) fn validate(limits: &[StateTimeLimit]) -> Result<(), BatchApiError> {
    for (i, limit) in limits.iter().enumerate() {
        if limits[..i].iter().any(|l| l.reason == limit.reason) {
            return Err(client_error(format!(
                "jobStateTimeLimitActions: reason {} is given twice",
                limit.reason.code()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_three_reasons_read_back_and_say_what_aws_says() {
        for reason in BlockedReason::ALL {
            assert_eq!(BlockedReason::parse(reason.code()), Some(reason));
            assert!(reason.status_reason().starts_with(reason.code()));
        }
        assert_eq!(
            BlockedReason::JobResourceRequirement.canceled_reason(),
            "Canceled by JobStateTimeLimit action due to reason: MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"
        );
        assert_eq!(BlockedReason::parse("MISCONFIGURATION:SERVICE_ROLE_PERMISSIONS"), None);
    }

    #[test]
    fn template_entries_are_read_and_bad_ones_name_the_field() {
        let entry = json!({"State": "RUNNABLE", "Action": "CANCEL",
            "Reason": "MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT", "MaxTimeSeconds": "600"});
        assert_eq!(
            StateTimeLimit::from_template(&entry).unwrap(),
            StateTimeLimit {
                reason: BlockedReason::JobResourceRequirement,
                max_time: Duration::from_secs(600),
                action: TimeLimitAction::Cancel,
            }
        );
        let with = |field: &str, value: serde_json::Value| {
            let mut e = entry.clone();
            e[field] = value;
            StateTimeLimit::from_template(&e).unwrap_err()
        };
        assert!(with("State", json!("STARTING")).starts_with("State: "));
        assert!(with("Action", json!("TERMINATE")).starts_with("Action: "));
        assert!(with("Reason", json!("ACTION_REQUIRED")).starts_with("Reason: "));
        assert!(with("MaxTimeSeconds", json!(0)).starts_with("MaxTimeSeconds: "));
        assert!(with("MaxTimeSeconds", json!(86_401)).starts_with("MaxTimeSeconds: "));
        assert!(with("Reason", serde_json::Value::Null).starts_with("Reason: missing"));
    }

    #[test]
    fn a_job_too_big_for_the_queue_or_the_machine_never_fits() {
        let machine = Some(InstanceSize { vcpus: 2.0, memory_mib: 4096 });
        assert_eq!(never_fits(1000, 2048, 4000, machine), None);
        assert_eq!(
            never_fits(5000, 2048, 4000, machine),
            Some(BlockedReason::ComputeEnvironmentMaxResource)
        );
        assert_eq!(
            never_fits(1000, 8192, 4000, machine),
            Some(BlockedReason::JobResourceRequirement)
        );
        assert_eq!(
            never_fits(3000, 1024, 4000, machine),
            Some(BlockedReason::JobResourceRequirement)
        );
        // The machine's size unknown: only the queue's ceiling holds a job back.
        assert_eq!(never_fits(1000, 1 << 40, 4000, None), None);
    }

    #[test]
    fn one_action_per_reason() {
        let limit = StateTimeLimit {
            reason: BlockedReason::JobResourceRequirement,
            max_time: Duration::from_secs(1),
            action: TimeLimitAction::Cancel,
        };
        assert!(validate(std::slice::from_ref(&limit)).is_ok());
        assert!(validate(&[limit.clone(), limit]).is_err());
    }

    #[test]
    fn this_machine_has_a_size_on_linux() {
        if cfg!(target_os = "linux") {
            let size = InstanceSize::of_this_machine().expect("/proc/meminfo is readable");
            assert!(size.vcpus >= 1.0 && size.memory_mib > 0);
        }
    }
}
