//! A local run: binds a template's state machine to stand-ins on this machine and executes it.
//!
//! - `arn:aws:states:::lambda:invoke` (and a function ARN as the resource) runs the function's
//!   handler in-process, chosen by the image the template gives the function: the caller's
//!   [`LambdaRegistry`] maps image repositories to handlers ([`lambda`]); the engine knows none.
//! - `arn:aws:states:::batch:submitJob` (and `.sync`) submits to the local Batch, whose queues,
//!   compute environment capacities and job definitions are read from the same template; a job
//!   definition's image repository names the workspace binary its children run.
//! - Wait states end early once a Batch job ends (nothing else the watcher reads can change),
//!   so the poll loop runs as AWS runs it without sleeping through idle intervals.
//!
//! Everything that can be checked is checked by [`LocalRun::prepare`], before anything runs:
//! the template, the state machine, every Task's resource and function, every job definition's
//! binary. Running is here; the record and event stream are [`forward`]'s.

mod forward;
pub mod lambda;

pub use forward::RunEvent;
pub use lambda::{
    FunctionError, FunctionSpec, LambdaRegistry, LocalFunction, LocalServices, image_binary,
    states_invoking,
};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nton_core::batch::{BatchApi, JobDetail, JobStatus};
use serde::Serialize;
use serde_json::{Value, json};
use serde_with::skip_serializing_none;
use tokio::sync::{Notify, mpsc};

use self::forward::{Observer, Subscribers, forward_batch_events};
use self::lambda::{Lambda, Lambdas, bind_lambdas, find_lambda};
use crate::asl::{
    ExecutionContext, ExecutionOutcome, StateMachine, TaskCall, TaskExecutor, TaskFailure,
    TaskResource,
};
use crate::batch::definition::{
    DefinitionError, number_of, read_job_definitions, read_queues, scalar_text,
};
use crate::batch::shapes::pascal_case_keys;
use crate::batch::{LocalBatch, LocalBatchConfig, now_ms};
use crate::record::{RecordLine, RecordWriter, RunEnd, RunOutcome, RunStart};
use crate::template::{LocalContext, Template};

/// The optimized Lambda integration.
const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";
/// The Batch integration, request-response.
const BATCH_SUBMIT: &str = "arn:aws:states:::batch:submitJob";
/// The Batch integration that waits for the job to end.
const BATCH_SUBMIT_SYNC: &str = "arn:aws:states:::batch:submitJob.sync";
/// The AWS SDK integration's TerminateJob (request-response).
/// TerminateJob through the AWS SDK integration: Step Functions' optimized Batch integration
/// has submitJob only (Step Functions developer guide, "Run AWS Batch workloads").
const BATCH_TERMINATE: &str = "arn:aws:states:::aws-sdk:batch:terminateJob";

/// What a local run needs to know.
#[derive(Clone, Debug)]
pub struct LocalRunSpec {
    /// The CloudFormation template holding the state machine.
    pub template: PathBuf,
    /// The state machine's logical id, when the template has several.
    pub state_machine: Option<String>,
    /// Template parameter overrides.
    pub parameters: BTreeMap<String, String>,
    /// This run's directory: its record and its children's logs.
    pub run_dir: PathBuf,
    /// Where the workspace binaries are (`nton-job`, ...).
    pub bin_dir: PathBuf,
    /// Most children running at once per queue.
    pub parallelism: usize,
    /// Environment every job child starts from (children do not inherit ours).
    pub base_env: BTreeMap<String, String>,
    /// Set on every Lambda function's and every job definition's environment, over what the
    /// template says (the local EFS directory, the results destination, fault drills...).
    pub env_overrides: BTreeMap<String, String>,
    /// The execution's input.
    pub input: Value,
    /// The execution's name (also its id's last part).
    pub execution_name: String,
    /// Children (job name, index) an earlier execution finished: they are not run again.
    pub resumed_children: BTreeSet<(String, Option<u32>)>,
    /// The caller's notes, kept in the record's run line (found again on resume).
    pub meta: Value,
    /// S3 buckets a Distributed Map reads or writes, each mapped to a directory
    /// ([`crate::bucket_dirs`]).
    pub s3_buckets: BTreeMap<String, PathBuf>,
}

/// How a run ended.
#[skip_serializing_none]
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// SUCCEEDED or FAILED.
    pub status: String,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// The state that failed, if one did.
    pub failed_state: Option<String>,
    /// `null` when the run failed (the field is always there).
    #[serialize_always]
    pub output: Option<Value>,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    /// Every job the run submitted, as `DescribeJobs` reports it at the end.
    pub jobs: Vec<JobDetail>,
    pub record: PathBuf,
}

impl RunSummary {
    pub fn succeeded(&self) -> bool {
        self.status == "SUCCEEDED"
    }
}

/// A local run's failure: in [`LocalRun::prepare`] nothing has run yet (the template, a binding,
/// a missing binary); in [`LocalRun::execute`] or [`LocalRun::interrupt`] it is the run record
/// or the local Batch that failed ([`RunError::Io`]). The message names what is wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error("{origin}: state machine: {source}")]
    StateMachine {
        origin: String,
        #[source]
        source: crate::asl::AslError,
    },
    #[error("{origin}: {message}")]
    Binding { origin: String, message: String },
    /// A job definition's image names a workspace binary that is not built.
    #[error("{origin}: {message}")]
    MissingBinary { origin: String, message: String },
    #[error("{0}")]
    Io(String),
}

/// A prepared run: template read, state machine validated, local Batch configured.
pub struct LocalRun {
    spec: LocalRunSpec,
    origin: String,
    machine: StateMachine,
    state_machine_name: String,
    batch: LocalBatch,
    lambdas: Lambdas,
    record: Arc<RecordWriter>,
    events: Subscribers,
    /// Woken each time a Batch job ends.
    job_ended: Arc<Notify>,
    submitted: Arc<Mutex<Vec<String>>>,
    region: String,
    account_id: String,
    /// The task writing Batch events into the record, and how to stop it: held here, not only
    /// inside `execute`, because Ctrl-C drops `execute`'s future while the task goes on, and
    /// `interrupt` must let it write the stopped children's lines before the end line.
    forwarding: Mutex<Option<Forwarding>>,
    buckets: crate::bucket_dirs::BucketDirs,
}

type Forwarding = (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>);

impl LocalRun {
    /// Reads the template, validates the state machine and every binding, and configures the
    /// local Batch. A function runs the handler `functions` has for its image repository.
    /// Writes nothing but the run directory.
    pub fn prepare(spec: LocalRunSpec, functions: &LambdaRegistry) -> Result<LocalRun, RunError> {
        let template = Template::load(&spec.template)?;
        let origin = spec.template.display().to_string();
        let mut ctx = LocalContext::new("nton-local");
        for (name, value) in &spec.parameters {
            ctx = ctx.with_parameter(name.clone(), value.clone());
        }
        let region = ctx.region.clone();
        let account_id = ctx.account_id.clone();

        let (machine_id, machine) =
            load_machine(&template, &ctx, &origin, spec.state_machine.as_deref())?;

        let binding_error = |message: String| RunError::Binding { origin: origin.clone(), message };

        let lambdas =
            bind_lambdas(&template, &ctx, &spec.env_overrides, functions).map_err(binding_error)?;
        let mut config = LocalBatchConfig::new(spec.run_dir.join("logs"));
        config.base_env = spec.base_env.clone();
        config.region = region.clone();
        config.account_id = account_id.clone();
        let batch = LocalBatch::new(config);
        for (queue, time_limits) in read_queues(&template, &ctx).map_err(binding_error)? {
            let name = queue.name.clone();
            batch.add_queue(queue, spec.parallelism.max(1));
            batch
                .set_queue_time_limits(&name, time_limits)
                .map_err(|e| binding_error(format!("job queue {name}: {}", e.message)))?;
        }
        let definitions = read_job_definitions(&template, &ctx, &spec.bin_dir, &spec.env_overrides)
            .map_err(|error| match error {
                DefinitionError::Invalid(message) => binding_error(message),
                DefinitionError::MissingBinary(message) => {
                    RunError::MissingBinary { origin: origin.clone(), message }
                }
            })?;
        for definition in definitions {
            batch.add_job_definition(definition);
        }
        if !spec.resumed_children.is_empty() {
            let done = spec.resumed_children.clone();
            batch.mark_succeeded_before(move |name, index| {
                done.contains(&(name.to_string(), index))
            });
        }

        // Every Task must be runnable here: checked now, not halfway through a run.
        for task in machine.task_resources() {
            check_resource(&task, &lambdas, functions).map_err(binding_error)?;
        }
        // And every bucket a Distributed Map names must be mapped to a directory.
        let buckets =
            crate::bucket_dirs::BucketDirs::new(spec.s3_buckets.clone()).map_err(binding_error)?;
        if let Some(u) = machine.s3_buckets().into_iter().find(|u| !buckets.contains(&u.bucket)) {
            return Err(binding_error(format!(
                "state {}: field {}: bucket {} is not mapped to a directory (give nton run --s3-bucket {}=DIR)",
                u.state, u.field, u.bucket, u.bucket
            )));
        }

        // Only now, with everything checked, does the run leave a trace on disk.
        let record = RecordWriter::open(&spec.run_dir)
            .map_err(|error| RunError::Io(format!("{}: {error}", spec.run_dir.display())))?;

        Ok(LocalRun {
            state_machine_name: machine_id,
            spec,
            origin,
            machine,
            batch,
            lambdas,
            record: Arc::new(record),
            events: Arc::new(Mutex::new(Vec::new())),
            job_ended: Arc::new(Notify::new()),
            submitted: Arc::new(Mutex::new(Vec::new())),
            region,
            account_id,
            forwarding: Mutex::new(None),
            buckets,
        })
    }

    /// The local Batch (to describe jobs while the run goes).
    pub fn batch(&self) -> &LocalBatch {
        &self.batch
    }

    /// Ctrl-C: stops every child and closes the record with an INTERRUPTED end line, so a
    /// report shows the run as stopped and `--resume` picks it up.
    pub async fn interrupt(&self) -> Result<(), RunError> {
        self.batch.shutdown().await;
        self.stop_forwarding().await;
        self.record
            .append(&RecordLine::End(RunEnd {
                status: RunOutcome::Interrupted,
                at: now_ms(),
                error: None,
                cause: Some("interrupted (Ctrl-C)".to_string()),
                output: None,
            }))
            .map_err(|error| RunError::Io(format!("{}: {error}", self.record.path().display())))
    }

    /// Stops the record's event forwarder once it has written what is queued, and waits for it.
    async fn stop_forwarding(&self) {
        let forwarding = lock(&self.forwarding).take();
        if let Some((stop, forwarder)) = forwarding {
            let _ = stop.send(());
            let _ = forwarder.await;
        }
    }

    /// Every event of the run from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<RunEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.events).push(tx);
        rx
    }

    /// Runs the state machine to its end.
    pub async fn execute(&self) -> Result<RunSummary, RunError> {
        let started_at_ms = now_ms();
        self.record
            .append(&RecordLine::Run(RunStart {
                execution_name: self.spec.execution_name.clone(),
                template: self.origin.clone(),
                state_machine: self.state_machine_name.clone(),
                input: self.spec.input.clone(),
                started_at: started_at_ms,
                resumed: !self.spec.resumed_children.is_empty(),
                meta: self.spec.meta.clone(),
            }))
            .map_err(|error| RunError::Io(format!("{}: {error}", self.record.path().display())))?;

        let (stop_forwarding, stop) = tokio::sync::oneshot::channel();
        let forwarder = tokio::spawn(forward_batch_events(
            self.batch.subscribe(),
            Arc::clone(&self.record),
            Arc::clone(&self.events),
            Arc::clone(&self.job_ended),
            stop,
        ));
        *lock(&self.forwarding) = Some((stop_forwarding, forwarder));

        let context = ExecutionContext::new(&self.state_machine_name)
            .with_execution_name(&self.spec.execution_name)
            .with_region(&self.region)
            .with_account_id(&self.account_id);
        let observer =
            Observer { record: Arc::clone(&self.record), events: Arc::clone(&self.events) };
        let outcome = crate::asl::run_execution(
            &self.machine,
            self.spec.input.clone(),
            self,
            &observer,
            context,
        )
        .await;

        // The state machine may end (a Fail, say) while children still run: AWS lets them
        // finish too; a local run waits for them so its record and results are complete.
        self.batch.wait_all_terminal().await;
        // Every child's last record line is written before the run's end line.
        self.stop_forwarding().await;
        if let Some(error) = self.record.failure() {
            return Err(RunError::Io(format!(
                "{}: the run record is incomplete: {error}",
                self.record.path().display()
            )));
        }
        let job_ids = lock(&self.submitted).clone();
        let jobs = self
            .batch
            .describe_jobs(&job_ids)
            .await
            .map_err(|error| RunError::Io(format!("describing the run's jobs: {error}")))?;
        let ended_at_ms = now_ms();
        let (status, error, cause, failed_state, output) = match outcome {
            ExecutionOutcome::Succeeded { output } => {
                (RunOutcome::Succeeded, None, None, None, Some(output))
            }
            ExecutionOutcome::Failed { error, cause, state } => {
                (RunOutcome::Failed, Some(error), Some(cause), state, None)
            }
            ExecutionOutcome::TimedOut { state } => (
                RunOutcome::TimedOut,
                Some("States.Timeout".to_string()),
                Some(String::new()),
                Some(state),
                None,
            ),
        };
        let end = RunEnd {
            status,
            at: ended_at_ms,
            error: error.clone(),
            cause: cause.clone(),
            output: output.clone(),
        };
        self.record
            .append(&RecordLine::End(end))
            .map_err(|error| RunError::Io(format!("{}: {error}", self.record.path().display())))?;
        Ok(RunSummary {
            status: status.to_string(),
            error,
            cause,
            failed_state,
            output,
            started_at_ms,
            ended_at_ms,
            jobs,
            record: self.record.path().to_path_buf(),
        })
    }

    fn find_lambda(&self, function: &str) -> Option<&Arc<Lambda>> {
        find_lambda(&self.lambdas, function)
    }

    /// Runs a function's handler with this run's services.
    async fn invoke_lambda(&self, lambda: &Lambda, payload: Value) -> Result<Value, TaskFailure> {
        lambda::invoke(lambda, payload, &LocalServices { batch: &self.batch }).await
    }

    /// `batch:terminateJob` with `{"JobId", "Reason"}` (both required, as TerminateJob's
    /// `jobId` and `reason` are). The answer is TerminateJob's empty one.
    fn terminate(&self, parameters: &Value) -> Result<Value, TaskFailure> {
        let required = |field: &str| {
            parameters[field]
                .as_str()
                .ok_or_else(|| TaskFailure {
                    error: "Batch.ClientException".to_string(),
                    cause: format!("TerminateJob: {field} is required and must be a string"),
                })
                .map(str::to_string)
        };
        let (job_id, reason) = (required("JobId")?, required("Reason")?);
        self.batch.terminate_job(&job_id, &reason).map_err(|error| TaskFailure {
            error: format!("Batch.{}", error.code),
            cause: error.message,
        })?;
        Ok(json!({}))
    }

    async fn submit(&self, parameters: &Value, wait: bool) -> Result<Value, TaskFailure> {
        let answer = self.batch.submit_job(parameters).map_err(|error| TaskFailure {
            error: format!("Batch.{}", error.code),
            cause: error.message,
        })?;
        let job_id = answer["JobId"].as_str().unwrap_or_default().to_string();
        lock(&self.submitted).push(job_id.clone());
        if !wait {
            return Ok(answer);
        }
        loop {
            // Registered before looking, so a job end between the look and the wait is seen.
            let ended = self.job_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let job =
                self.batch.describe_jobs(std::slice::from_ref(&job_id)).await.map_err(|error| {
                    TaskFailure { error: format!("Batch.{}", error.code), cause: error.message }
                })?;
            if let Some(job) = job.first().filter(|job| job.status.is_terminal()) {
                // Step Functions hands service answers on with PascalCase keys (`JobId`,
                // `Status`, ...), as it does the request-response answer.
                let detail = pascal_case_keys(serde_json::to_value(job).unwrap_or(Value::Null));
                return if job.status == JobStatus::Succeeded {
                    Ok(detail)
                } else {
                    Err(TaskFailure {
                        error: "States.TaskFailed".to_string(),
                        cause: detail.to_string(),
                    })
                };
            }
            ended.await;
        }
    }
}

#[async_trait]
impl TaskExecutor for LocalRun {
    async fn invoke(&self, call: TaskCall<'_>) -> Result<Value, TaskFailure> {
        match call.resource {
            LAMBDA_INVOKE => {
                let function = call.parameters["FunctionName"].as_str().unwrap_or_default();
                let lambda = self.find_lambda(function).ok_or_else(|| TaskFailure {
                    error: "Lambda.ResourceNotFoundException".to_string(),
                    cause: format!(
                        "Function not found: {function} (no such function in the template)"
                    ),
                })?;
                let payload = call.parameters.get("Payload").cloned().unwrap_or(json!({}));
                let output = self.invoke_lambda(lambda, payload).await?;
                Ok(json!({
                    "ExecutedVersion": "$LATEST",
                    "Payload": output,
                    "StatusCode": 200
                }))
            }
            BATCH_SUBMIT => self.submit(&call.parameters, false).await,
            BATCH_SUBMIT_SYNC => self.submit(&call.parameters, true).await,
            BATCH_TERMINATE => self.terminate(&call.parameters),
            resource => match self.find_lambda(resource) {
                // A function ARN as the resource: the legacy integration, whose result is the
                // function's output itself.
                Some(lambda) => self.invoke_lambda(lambda, call.parameters).await,
                None => Err(TaskFailure {
                    error: "States.Runtime".to_string(),
                    cause: format!("resource {resource} is not bound locally"),
                }),
            },
        }
    }

    fn object_store(&self) -> Option<&dyn crate::asl::ObjectStore> {
        Some(&self.buckets)
    }

    async fn wait(&self, state: &str, duration: Duration) {
        // Only a Wait state is a poll interval. The interpreter also sleeps here between Retry
        // attempts: those back off in full, as on AWS.
        if self.machine.state_type(state) != Some("Wait") {
            tokio::time::sleep(duration).await;
            return;
        }
        // Register for the next job end before looking, so an end between the look and the
        // wait is not missed.
        let ended = self.job_ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        let nothing_submitted = lock(&self.submitted).is_empty();
        if nothing_submitted {
            // No job can end: this Wait is not a poll; sleep it out.
            tokio::time::sleep(duration).await;
            return;
        }
        if self.batch.all_terminal() {
            // Every job has ended: the next poll sees the final state at once.
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = ended => {}
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The resources of one type that the template creates (their Condition holds), with their
/// properties resolved locally.
fn created_resources(
    template: &Template,
    ctx: &LocalContext,
    resource_type: &str,
) -> Result<Vec<(String, Value)>, String> {
    template.created_resources(resource_type, ctx).map_err(|e| e.to_string())
}

/// The template's state machine (`state_machine` names it when there are several), validated.
fn load_machine(
    template: &Template,
    ctx: &LocalContext,
    origin: &str,
    state_machine: Option<&str>,
) -> Result<(String, StateMachine), RunError> {
    let (machine_id, definition) = template.state_machine(ctx, state_machine)?;
    let machine = StateMachine::from_json(&definition).map_err(|source| {
        RunError::StateMachine { origin: format!("{origin}: {machine_id}"), source }
    })?;
    Ok((machine_id, machine))
}

fn check_resource(
    task: &TaskResource<'_>,
    lambdas: &Lambdas,
    functions: &LambdaRegistry,
) -> Result<(), String> {
    let state = task.state;
    match task.resource {
        LAMBDA_INVOKE => match task.parameters.and_then(|p| p.get("FunctionName")) {
            Some(Value::String(function)) if find_lambda(lambdas, function).is_none() => {
                Err(format!(
                    "state {state}: Parameters.FunctionName {function} names no function the local \
                     engine can run (an AWS::Lambda::Function whose image repository is one of: \
                     {})",
                    functions.repositories().join(", ")
                ))
            }
            _ => Ok(()),
        },
        BATCH_SUBMIT | BATCH_SUBMIT_SYNC | BATCH_TERMINATE => Ok(()),
        other if find_lambda(lambdas, other).is_some() => Ok(()),
        other => Err(format!(
            "state {state}: Resource {other} is not supported by the local engine (supported: \
             {LAMBDA_INVOKE}, {BATCH_SUBMIT}, {BATCH_SUBMIT_SYNC}, {BATCH_TERMINATE}, and functions \
             of this template)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_integrations_step_functions_has_are_accepted() {
        let check = |resource: &str| {
            check_resource(
                &TaskResource { state: "Stop", resource, parameters: None },
                &Lambdas::new(),
                &LambdaRegistry::new(),
            )
        };
        assert_eq!(check(BATCH_TERMINATE), Ok(()));
        assert_eq!(check(BATCH_SUBMIT), Ok(()));
        // Step Functions' optimized Batch integration has submitJob only; TerminateJob is an AWS
        // SDK integration, and CreateStateMachine refuses the optimized-looking name.
        let error = check("arn:aws:states:::batch:terminateJob").unwrap_err();
        assert!(
            error.starts_with(
                "state Stop: Resource arn:aws:states:::batch:terminateJob is not supported"
            ),
            "{error}"
        );
    }
}
