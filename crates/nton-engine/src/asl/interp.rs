//! The interpreter: runs one execution of a [`StateMachine`] as Step Functions documents it.
//!
//! Input and output processing per state: InputPath -> Parameters -> task -> ResultSelector ->
//! ResultPath (over the state's raw input) -> OutputPath. Retry and Catch apply to Task
//! states; `States.Runtime` and `States.DataLimitExceeded` fail the execution outright.
//!
//! Time: waits (Wait states, retry intervals) go through [`TaskExecutor::wait`], which may
//! return early. The execution keeps its own clock that advances by the full wait either way,
//! so `$$.State.EnteredTime`, `Timestamp` waits and the execution's `TimeoutSeconds` see the
//! time the definition asked for.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::error::{StateError, excerpt, names};
use super::model::{self, Kind, StateMachine, TaskTimeout, Text, Transition, WaitFor};

/// Largest state input or output, task parameters or result: 256 KiB.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// What a Task state asks the engine to run.
#[derive(Debug, Clone)]
pub struct TaskCall<'a> {
    pub state: &'a str,
    pub resource: &'a str,
    /// The effective parameters (after InputPath and Parameters).
    pub parameters: Value,
    /// The context object (`$$`) at this attempt.
    pub context: &'a Value,
    /// The state's `TimeoutSeconds` (or `TimeoutSecondsPath`), if any. The interpreter
    /// enforces it too.
    pub timeout: Option<Duration>,
}

/// A task's failure: the error name Retry and Catch match on, and its cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    pub error: String,
    pub cause: String,
}

impl TaskFailure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
        }
    }
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.cause)
    }
}

impl std::error::Error for TaskFailure {}

/// Runs Task states' resources and the waits of an execution.
#[async_trait::async_trait]
pub trait TaskExecutor: Send + Sync {
    /// Runs a Task state's resource with its effective parameters.
    async fn invoke(&self, call: TaskCall<'_>) -> Result<Value, TaskFailure>;

    /// Sleeps for a Wait state or a retry interval; an implementation may return early
    /// (the local engine ends a Wait when nothing else can happen sooner). Default: tokio
    /// sleep.
    async fn wait(&self, state: &str, duration: Duration) {
        let _ = state;
        tokio::time::sleep(duration).await
    }
}

/// Hears what an execution does, as it happens. A state that fails the execution is entered
/// but never exited; a Task whose error is caught exits with the catcher's output.
pub trait ExecutionObserver: Send + Sync {
    fn state_entered(&self, name: &str, input: &Value);
    fn state_exited(&self, name: &str, output: &Value);
    /// A Task failed and will be retried (`attempt` 1 is the first retry) after `delay`.
    fn task_retry(&self, state: &str, failure: &TaskFailure, attempt: u32, delay: Duration) {
        let _ = (state, failure, attempt, delay);
    }
    fn execution_ended(&self, outcome: &ExecutionOutcome) {
        let _ = outcome;
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullObserver;

impl ExecutionObserver for NullObserver {
    fn state_entered(&self, _: &str, _: &Value) {}
    fn state_exited(&self, _: &str, _: &Value) {}
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionOutcome {
    Succeeded {
        output: Value,
    },
    Failed {
        /// The error name; empty when a Fail state names none.
        error: String,
        /// Empty when a Fail state gives no cause.
        cause: String,
        /// The state that failed (`None` when the execution's input was refused).
        state: Option<String>,
    },
    /// The execution's `TimeoutSeconds` passed (status `TIMED_OUT`). Step Functions reports
    /// error `States.Timeout` with an empty cause; no Catch sees it and no state runs after it.
    TimedOut {
        /// The state that was running.
        state: String,
    },
}

/// Who and where the execution is: names and ARNs for the context object.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionContext {
    pub execution_name: String,
    pub state_machine_name: String,
    pub region: String,
    pub account_id: String,
    /// `$$.Execution.RoleArn`; default `arn:aws:iam::<account>:role/<state machine>-role`.
    pub role_arn: Option<String>,
    /// `$$.Execution.StartTime`; default: when the execution starts.
    pub start_time: Option<OffsetDateTime>,
}

impl ExecutionContext {
    /// A context in region `local-1`, account `000000000000`, with a random execution name.
    pub fn new(state_machine_name: impl Into<String>) -> Self {
        Self {
            execution_name: uuid::Uuid::new_v4().to_string(),
            state_machine_name: state_machine_name.into(),
            region: "local-1".to_string(),
            account_id: "000000000000".to_string(),
            role_arn: None,
            start_time: None,
        }
    }

    pub fn with_execution_name(mut self, name: impl Into<String>) -> Self {
        self.execution_name = name.into();
        self
    }

    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    pub fn with_account_id(mut self, account_id: impl Into<String>) -> Self {
        self.account_id = account_id.into();
        self
    }

    pub fn with_role_arn(mut self, role_arn: impl Into<String>) -> Self {
        self.role_arn = Some(role_arn.into());
        self
    }

    pub fn with_start_time(mut self, start: OffsetDateTime) -> Self {
        self.start_time = Some(start);
        self
    }

    pub fn state_machine_arn(&self) -> String {
        format!(
            "arn:aws:states:{}:{}:stateMachine:{}",
            self.region, self.account_id, self.state_machine_name
        )
    }

    pub fn execution_arn(&self) -> String {
        format!(
            "arn:aws:states:{}:{}:execution:{}:{}",
            self.region, self.account_id, self.state_machine_name, self.execution_name
        )
    }

    fn role(&self) -> String {
        self.role_arn.clone().unwrap_or_else(|| {
            format!(
                "arn:aws:iam::{}:role/{}-role",
                self.account_id, self.state_machine_name
            )
        })
    }
}

/// The context object's timestamps: ISO 8601, milliseconds, UTC.
fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_default()
}

/// The execution's clock: real time plus the part of each wait the executor skipped.
struct Clock {
    started: Instant,
    start_time: OffsetDateTime,
    skipped: Duration,
}

impl Clock {
    fn elapsed(&self) -> Duration {
        self.started.elapsed() + self.skipped
    }

    fn now(&self) -> OffsetDateTime {
        self.start_time + self.elapsed()
    }
}

/// Runs one execution to its end.
pub async fn run_execution(
    machine: &StateMachine,
    input: Value,
    tasks: &dyn TaskExecutor,
    observer: &dyn ExecutionObserver,
    ctx: ExecutionContext,
) -> ExecutionOutcome {
    let start_time = ctx
        .start_time
        .unwrap_or_else(OffsetDateTime::now_utc)
        .to_offset(time::UtcOffset::UTC);
    let mut run = Run {
        machine,
        tasks,
        observer,
        clock: Clock {
            started: Instant::now(),
            start_time,
            skipped: Duration::ZERO,
        },
        base_context: json!({
            "Execution": {
                "Id": ctx.execution_arn(),
                "Input": input,
                "Name": ctx.execution_name,
                "RoleArn": ctx.role(),
                "StartTime": timestamp(start_time),
                "RedriveCount": 0,
            },
            "StateMachine": {
                "Id": ctx.state_machine_arn(),
                "Name": ctx.state_machine_name,
            },
        }),
    };
    let outcome = run.run(input).await;
    observer.execution_ended(&outcome);
    outcome
}

enum Step {
    Next(String, Value),
    End(Value),
}

struct Run<'a> {
    machine: &'a StateMachine,
    tasks: &'a dyn TaskExecutor,
    observer: &'a dyn ExecutionObserver,
    clock: Clock,
    base_context: Value,
}

fn check_size(value: &Value, what: impl FnOnce() -> String) -> Result<(), StateError> {
    let size = value.to_string().len();
    if size > MAX_PAYLOAD_BYTES {
        return Err(StateError::new(
            names::DATA_LIMIT,
            format!(
                "{} is {size} bytes, more than the {MAX_PAYLOAD_BYTES}-byte limit",
                what()
            ),
        ));
    }
    Ok(())
}

impl Run<'_> {
    async fn run(&mut self, input: Value) -> ExecutionOutcome {
        if let Err(e) = check_size(&input, || "the execution's input".to_string()) {
            return ExecutionOutcome::Failed {
                error: e.error,
                cause: e.cause,
                state: None,
            };
        }
        let mut name = self.machine.start_at.clone();
        let mut data = input;
        loop {
            let failed = |e: StateError, state: &str| {
                if e.terminal && e.error == names::TIMEOUT {
                    return ExecutionOutcome::TimedOut {
                        state: state.to_string(),
                    };
                }
                ExecutionOutcome::Failed {
                    error: e.error,
                    cause: e.cause,
                    state: Some(state.to_string()),
                }
            };
            if let Some(limit) = self.machine.timeout()
                && self.clock.elapsed() >= limit
            {
                return failed(self.execution_timeout(), &name);
            }
            self.observer.state_entered(&name, &data);
            let entered = self.clock.now();
            let step = match self.step(&name, data, entered).await {
                Ok(step) => step,
                Err(e) => return failed(e, &name),
            };
            let (next, output) = match step {
                Step::Next(next, output) => (Some(next), output),
                Step::End(output) => (None, output),
            };
            if let Err(e) = check_size(&output, || format!("the output of state {name}")) {
                return failed(e, &name);
            }
            self.observer.state_exited(&name, &output);
            match next {
                Some(next) => {
                    name = next;
                    data = output;
                }
                None => return ExecutionOutcome::Succeeded { output },
            }
        }
    }

    fn execution_timeout(&self) -> StateError {
        let mut e = StateError::new(
            names::TIMEOUT,
            format!(
                "The execution timed out after {} seconds (TimeoutSeconds)",
                self.machine.timeout_seconds.unwrap_or_default()
            ),
        );
        // The execution's own timeout is not the state's to retry or catch.
        e.terminal = true;
        e
    }

    /// Time left before the execution's `TimeoutSeconds`.
    fn remaining(&self) -> Option<Duration> {
        self.machine
            .timeout()
            .map(|limit| limit.saturating_sub(self.clock.elapsed()))
    }

    fn context(&self, state: &str, entered: OffsetDateTime, retry_count: u32) -> Value {
        let mut context = self.base_context.clone();
        context["State"] = json!({
            "Name": state,
            "EnteredTime": timestamp(entered),
            "RetryCount": retry_count,
        });
        context
    }

    /// Waits through the executor, advancing the execution's clock by the full duration.
    async fn sleep(&mut self, state: &str, duration: Duration) -> Result<(), StateError> {
        let (duration, times_out) = match self.remaining() {
            Some(left) if left < duration => (left, true),
            _ => (duration, false),
        };
        let before = Instant::now();
        self.tasks.wait(state, duration).await;
        let real = before.elapsed();
        if real < duration {
            self.clock.skipped += duration - real;
        }
        if times_out {
            return Err(self.execution_timeout());
        }
        Ok(())
    }

    async fn step(
        &mut self,
        name: &str,
        raw: Value,
        entered: OffsetDateTime,
    ) -> Result<Step, StateError> {
        let machine = self.machine;
        let state = &machine.states[name];
        let go = |t: &Transition, output: Value| match t {
            Transition::Next(n) => Step::Next(n.clone(), output),
            Transition::End => Step::End(output),
        };
        match &state.kind {
            Kind::Task(task) => self.task(name, state, task, raw, entered).await,
            Kind::Pass(pass) => {
                let context = self.context(name, entered, 0);
                let effective = state.input_path.apply(&raw, &context, "InputPath")?;
                let effective = match &pass.parameters {
                    Some(p) => p.eval(&effective, &context)?,
                    None => effective,
                };
                let result = pass.result.clone().unwrap_or(effective);
                let output = pass.result_path.apply(raw, result)?;
                let output = state.output_path.apply(&output, &context, "OutputPath")?;
                Ok(go(&pass.transition, output))
            }
            Kind::Wait(wait) => {
                let context = self.context(name, entered, 0);
                let effective = state.input_path.apply(&raw, &context, "InputPath")?;
                let duration = match &wait.wait_for {
                    WaitFor::Seconds(s) => Duration::from_secs(*s),
                    WaitFor::SecondsPath(p) => {
                        let v = p.read(&effective, &context);
                        let seconds = v.as_ref().and_then(Value::as_u64).ok_or_else(|| {
                            StateError::runtime(format!(
                                "The SecondsPath '{}' must select a non-negative integer in the input '{}', found {}",
                                p.text(),
                                excerpt(&effective),
                                v.as_ref().map_or("nothing".to_string(), excerpt)
                            ))
                        })?;
                        Duration::from_secs(seconds)
                    }
                    WaitFor::Timestamp(t) => until(*t, self.clock.now()),
                    WaitFor::TimestampPath(p) => {
                        let v = p.read(&effective, &context);
                        let t = v
                            .as_ref()
                            .and_then(Value::as_str)
                            .and_then(super::choice::parse_timestamp)
                            .ok_or_else(|| {
                                StateError::runtime(format!(
                                    "The TimestampPath '{}' must select an RFC 3339 timestamp in the input '{}', found {}",
                                    p.text(),
                                    excerpt(&effective),
                                    v.as_ref().map_or("nothing".to_string(), excerpt)
                                ))
                            })?;
                        until(t, self.clock.now())
                    }
                };
                self.sleep(name, duration).await?;
                let output = state
                    .output_path
                    .apply(&effective, &context, "OutputPath")?;
                Ok(go(&wait.transition, output))
            }
            Kind::Choice(choice) => {
                let context = self.context(name, entered, 0);
                let effective = state.input_path.apply(&raw, &context, "InputPath")?;
                let mut next = None;
                for c in &choice.choices {
                    if c.rule.eval(&effective, &context)? {
                        next = Some(c.next.clone());
                        break;
                    }
                }
                let next = match next.or_else(|| choice.default.clone()) {
                    Some(n) => n,
                    None => {
                        return Err(StateError::new(
                            names::NO_CHOICE,
                            format!(
                                "No choice rule matched and there is no Default in state '{name}'"
                            ),
                        ));
                    }
                };
                let output = state
                    .output_path
                    .apply(&effective, &context, "OutputPath")?;
                Ok(Step::Next(next, output))
            }
            Kind::Succeed => {
                let context = self.context(name, entered, 0);
                let effective = state.input_path.apply(&raw, &context, "InputPath")?;
                Ok(Step::End(state.output_path.apply(
                    &effective,
                    &context,
                    "OutputPath",
                )?))
            }
            Kind::Fail(fail) => {
                let context = self.context(name, entered, 0);
                let text = |t: &Option<Text>, field: &str| -> Result<String, StateError> {
                    let value = match t {
                        None => return Ok(String::new()),
                        Some(Text::Literal(s)) => return Ok(s.clone()),
                        Some(Text::Path(p)) => p.read(&raw, &context).ok_or_else(|| {
                            StateError::runtime(format!(
                                "The {field} '{}' could not be found in the input '{}'",
                                p.text(),
                                excerpt(&raw)
                            ))
                        })?,
                        Some(Text::Call(c)) => c.eval(&raw, &context)?,
                    };
                    match value {
                        Value::String(s) => Ok(s),
                        other => Err(StateError::runtime(format!(
                            "The {field} must select a string, found {}",
                            excerpt(&other)
                        ))),
                    }
                };
                let error = text(&fail.error, "ErrorPath")?;
                let cause = text(&fail.cause, "CausePath")?;
                // A Fail state's error is the execution's: never caught.
                let mut e = StateError::new(error, cause);
                e.terminal = true;
                Err(e)
            }
        }
    }

    async fn task(
        &mut self,
        name: &str,
        state: &model::State,
        task: &model::Task,
        raw: Value,
        entered: OffsetDateTime,
    ) -> Result<Step, StateError> {
        let mut counts = vec![0u64; task.retriers.len()];
        let mut retry_count = 0u32;
        loop {
            let context = self.context(name, entered, retry_count);
            let error = match self.attempt(name, state, task, &raw, &context).await {
                Ok(output) => {
                    return Ok(match &task.transition {
                        Transition::Next(n) => Step::Next(n.clone(), output),
                        Transition::End => Step::End(output),
                    });
                }
                Err(e) if e.terminal => return Err(e),
                Err(e) => e,
            };
            // Only the first retrier that matches counts, even when it is spent.
            if let Some(i) = task
                .retriers
                .iter()
                .position(|r| model::error_matches(&r.error_equals, &error.error))
            {
                let retrier = &task.retriers[i];
                if counts[i] < retrier.max_attempts {
                    let delay = retrier.delay(counts[i]);
                    counts[i] += 1;
                    retry_count += 1;
                    let failure = TaskFailure::new(error.error.clone(), error.cause.clone());
                    self.observer.task_retry(name, &failure, retry_count, delay);
                    self.sleep(name, delay).await?;
                    continue;
                }
            }
            if let Some(catcher) = task
                .catchers
                .iter()
                .find(|c| model::error_matches(&c.error_equals, &error.error))
            {
                let error_output = json!({"Error": error.error, "Cause": error.cause});
                let output = catcher.result_path.apply(raw, error_output)?;
                return Ok(Step::Next(catcher.next.clone(), output));
            }
            return Err(error);
        }
    }

    async fn attempt(
        &mut self,
        name: &str,
        state: &model::State,
        task: &model::Task,
        raw: &Value,
        context: &Value,
    ) -> Result<Value, StateError> {
        let effective = state.input_path.apply(raw, context, "InputPath")?;
        let parameters = match &task.parameters {
            Some(p) => p.eval(&effective, context)?,
            None => effective.clone(),
        };
        check_size(&parameters, || format!("the parameters of task {name}"))?;
        let timeout = match &task.timeout {
            None => None,
            Some(TaskTimeout::Seconds(s)) => Some(Duration::from_secs(*s)),
            Some(TaskTimeout::Path(p)) => {
                let v = p.read(&effective, context);
                let seconds = v
                    .as_ref()
                    .and_then(Value::as_u64)
                    .filter(|s| *s > 0)
                    .ok_or_else(|| {
                        StateError::runtime(format!(
                            "The TimeoutSecondsPath '{}' must select a positive integer, found {}",
                            p.text(),
                            v.as_ref().map_or("nothing".to_string(), excerpt)
                        ))
                    })?;
                Some(Duration::from_secs(seconds))
            }
        };
        let call = TaskCall {
            state: name,
            resource: &task.resource,
            parameters,
            context,
            timeout,
        };
        let remaining = self.remaining();
        let limit = match (timeout, remaining) {
            (Some(t), Some(r)) => Some(t.min(r)),
            (t, r) => t.or(r),
        };
        let result = match limit {
            None => self.tasks.invoke(call).await,
            Some(limit) => match tokio::time::timeout(limit, self.tasks.invoke(call)).await {
                Ok(r) => r,
                Err(_) => {
                    if remaining.is_some_and(|r| timeout.is_none_or(|t| r < t)) {
                        return Err(self.execution_timeout());
                    }
                    return Err(StateError::new(
                        names::TIMEOUT,
                        format!(
                            "The task of state '{name}' did not finish within {} seconds",
                            limit.as_secs()
                        ),
                    ));
                }
            },
        };
        let result = result.map_err(|f| StateError::new(f.error, f.cause))?;
        check_size(&result, || format!("the result of task {name}"))?;
        let selected = match &task.result_selector {
            Some(s) => s.eval(&result, context)?,
            None => result,
        };
        let output = task.result_path.apply(raw.clone(), selected)?;
        state.output_path.apply(&output, context, "OutputPath")
    }
}

/// Time from `now` to `t`, zero if `t` has passed.
fn until(t: OffsetDateTime, now: OffsetDateTime) -> Duration {
    let d = t - now;
    if d.is_positive() {
        Duration::try_from(d).unwrap_or(Duration::ZERO)
    } else {
        Duration::ZERO
    }
}
