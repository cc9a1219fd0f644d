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

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::error::{StateError, excerpt, names};
use super::model::{
    self, Block, Concurrency, Kind, StateMachine, TaskTimeout, Text, Transition, WaitFor,
};
use super::path::{Env, Vars};
use super::payload::Payload;

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
        Self { error: error.into(), cause: cause.into() }
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

    /// Where a Distributed Map reads and writes S3 objects; `None` (the default): nowhere, and
    /// such a Map fails with `States.ItemReaderFailed` or `States.ResultWriterFailed`.
    fn object_store(&self) -> Option<&dyn super::ObjectStore> {
        None
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
            format!("arn:aws:iam::{}:role/{}-role", self.account_id, self.state_machine_name)
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

/// When the execution started: its clock is real time since then plus, per [`Lane`], the
/// part of each wait the executor skipped.
#[derive(Clone, Copy)]
pub(super) struct Clock {
    started: Instant,
    start_time: OffsetDateTime,
}

/// One line of time through an execution: the machine's own states, or one Parallel branch or
/// Map iteration. Its states run one after another, so the waits it skipped add up; lanes run
/// side by side, so a branch starts from its parent's time and the parent goes on from the
/// latest of its branches. Overlapping waits thus count once, as on AWS.
pub(super) struct Lane(Mutex<Duration>);

impl Lane {
    pub(super) fn new(skipped: Duration) -> Self {
        Lane(Mutex::new(skipped))
    }

    pub(super) fn skipped(&self) -> Duration {
        *lock(&self.0)
    }

    pub(super) fn skip_to(&self, skipped: Duration) {
        let mut current = lock(&self.0);
        *current = (*current).max(skipped);
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
    let start_time =
        ctx.start_time.unwrap_or_else(OffsetDateTime::now_utc).to_offset(time::UtcOffset::UTC);
    let run = Run {
        machine,
        tasks,
        observer,
        clock: Clock { started: Instant::now(), start_time },
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

/// A block's failure: the error and the state of that block it happened in.
type BlockFailure = (StateError, String);

/// A boxed future: blocks run blocks (a Map inside a Parallel branch...), so the recursion
/// needs a known size.
pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub(super) struct Run<'a> {
    pub(super) machine: &'a StateMachine,
    pub(super) tasks: &'a dyn TaskExecutor,
    pub(super) observer: &'a dyn ExecutionObserver,
    pub(super) clock: Clock,
    pub(super) base_context: Value,
}

fn check_size(value: &Value, what: impl FnOnce() -> String) -> Result<(), StateError> {
    let size = value.to_string().len();
    if size > MAX_PAYLOAD_BYTES {
        return Err(StateError::new(
            names::DATA_LIMIT,
            format!("{} is {size} bytes, more than the {MAX_PAYLOAD_BYTES}-byte limit", what()),
        ));
    }
    Ok(())
}

fn go(t: &Transition, output: Value) -> Step {
    match t {
        Transition::Next(n) => Step::Next(n.clone(), output),
        Transition::End => Step::End(output),
    }
}

/// Evaluates an `Assign` over `data` (the state's result, effective input or error output,
/// whichever the state's type gives it), with the variables as they were when the state was
/// entered. The values take effect when the state is left.
fn eval_assign(
    assign: Option<&Payload>,
    data: &Value,
    context: &Value,
    vars: &Vars,
) -> Result<Option<Vars>, StateError> {
    let Some(assign) = assign else {
        return Ok(None);
    };
    match assign.eval(&Env::new(data, context, vars))? {
        Value::Object(values) => {
            check_size(&Value::Object(values.clone()), || "the variables assigned".to_string())?;
            Ok(Some(values))
        }
        _ => unreachable!("an Assign is compiled from an object"),
    }
}

/// Where an attempt of a Task, Parallel or Map state runs: its context object, the variables
/// in scope and its lane of time.
pub(super) struct Attempt<'a> {
    pub(super) context: &'a Value,
    pub(super) vars: &'a Vars,
    pub(super) lane: &'a Lane,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Run<'_> {
    async fn run(&self, input: Value) -> ExecutionOutcome {
        if let Err(e) = check_size(&input, || "the execution's input".to_string()) {
            return ExecutionOutcome::Failed { error: e.error, cause: e.cause, state: None };
        }
        let lane = Lane::new(Duration::ZERO);
        match self.run_block(&self.machine.root, input, Vars::new(), &lane).await {
            Ok(output) => ExecutionOutcome::Succeeded { output },
            Err((e, state)) if e.execution_timeout => ExecutionOutcome::TimedOut { state },
            Err((e, state)) => {
                ExecutionOutcome::Failed { error: e.error, cause: e.cause, state: Some(state) }
            }
        }
    }

    /// Runs a block of states (the machine, a Parallel branch, a Map iteration) from its
    /// `StartAt` to its end, with its own variables: a copy of those of the enclosing scopes,
    /// which it can read and never changes.
    pub(super) fn run_block<'s>(
        &'s self,
        block: &'s Block,
        input: Value,
        mut vars: Vars,
        lane: &'s Lane,
    ) -> BoxFuture<'s, Result<Value, BlockFailure>> {
        Box::pin(async move {
            let mut name = block.start_at.as_str();
            let mut data = input;
            loop {
                if let Some(limit) = self.machine.timeout()
                    && self.elapsed(lane) >= limit
                {
                    return Err((self.execution_timeout(), name.to_string()));
                }
                self.observer.state_entered(name, &data);
                let entered = self.now(lane);
                let state = &block.states[name];
                let (step, assigned) = self
                    .step(name, state, data, entered, &vars, lane)
                    .await
                    .map_err(|e| (e, name.to_string()))?;
                let (next, output) = match step {
                    Step::Next(next, output) => (Some(next), output),
                    Step::End(output) => (None, output),
                };
                check_size(&output, || format!("the output of state {name}"))
                    .map_err(|e| (e, name.to_string()))?;
                if let Some(assigned) = assigned {
                    vars.extend(assigned);
                }
                self.observer.state_exited(name, &output);
                match next {
                    Some(next) => {
                        name = block
                            .states
                            .get_key_value(&next)
                            .map(|(k, _)| k.as_str())
                            .expect("transitions are checked at load");
                        data = output;
                    }
                    None => return Ok(output),
                }
            }
        })
    }

    fn elapsed(&self, lane: &Lane) -> Duration {
        self.clock.started.elapsed() + lane.skipped()
    }

    pub(super) fn now(&self, lane: &Lane) -> OffsetDateTime {
        self.clock.start_time + self.elapsed(lane)
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
        e.execution_timeout = true;
        e
    }

    /// Time left before the execution's `TimeoutSeconds`.
    fn remaining(&self, lane: &Lane) -> Option<Duration> {
        self.machine.timeout().map(|limit| limit.saturating_sub(self.elapsed(lane)))
    }

    /// The context object for a state. `$$.State.RetryCount` exists in Task states only
    /// (developer guide, "Accessing execution data from the Context object in Step Functions").
    fn context(&self, state: &str, entered: OffsetDateTime, retry_count: Option<u32>) -> Value {
        let mut context = self.base_context.clone();
        context["State"] = json!({
            "Name": state,
            "EnteredTime": timestamp(entered),
        });
        if let Some(count) = retry_count {
            context["State"]["RetryCount"] = json!(count);
        }
        context
    }

    /// Waits through the executor, advancing the execution's clock by the full duration.
    async fn sleep(&self, state: &str, duration: Duration, lane: &Lane) -> Result<(), StateError> {
        let (duration, times_out) = match self.remaining(lane) {
            Some(left) if left < duration => (left, true),
            _ => (duration, false),
        };
        let target = self.elapsed(lane) + duration;
        self.tasks.wait(state, duration).await;
        let real = self.clock.started.elapsed();
        lane.skip_to(target.saturating_sub(real));
        if times_out {
            return Err(self.execution_timeout());
        }
        Ok(())
    }

    async fn step(
        &self,
        name: &str,
        state: &model::State,
        raw: Value,
        entered: OffsetDateTime,
        vars: &Vars,
        lane: &Lane,
    ) -> Result<(Step, Option<Vars>), StateError> {
        if let Some(j) = &state.jsonata
            && !matches!(state.kind, Kind::Task(_) | Kind::Parallel(_) | Kind::Map(_))
        {
            return self.step_jsonata(name, state, j, raw, entered, vars, lane).await;
        }
        match &state.kind {
            Kind::Task(_) | Kind::Parallel(_) | Kind::Map(_) => {
                self.retrying(name, state, raw, entered, vars, lane).await
            }
            Kind::Pass(pass) => {
                let context = self.context(name, entered, None);
                let env = Env::new(&raw, &context, vars);
                let effective = state.input_path.apply(&env, "InputPath")?;
                let effective = match &pass.parameters {
                    Some(p) => p.eval(&env.with_data(&effective))?,
                    None => effective,
                };
                let result = pass.result.clone().unwrap_or(effective);
                let assigned = eval_assign(state.assign.as_ref(), &result, &context, vars)?;
                let output = pass.result_path.apply(raw.clone(), result)?;
                let output = state.output_path.apply(&env.with_data(&output), "OutputPath")?;
                Ok((go(&pass.transition, output), assigned))
            }
            Kind::Wait(wait) => {
                let context = self.context(name, entered, None);
                let env = Env::new(&raw, &context, vars);
                let effective = state.input_path.apply(&env, "InputPath")?;
                let in_effective = env.with_data(&effective);
                let duration = match &wait.wait_for {
                    WaitFor::Seconds(s) => Duration::from_secs(*s),
                    WaitFor::SecondsPath(p) => {
                        let v = p.read(&in_effective);
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
                    WaitFor::Timestamp(t) => until(*t, self.now(lane)),
                    WaitFor::TimestampPath(p) => {
                        let v = p.read(&in_effective);
                        let t = v
                            .as_ref()
                            .and_then(Value::as_str)
                            .and_then(super::choice::parse_timestamp)
                            .ok_or_else(|| {
                                StateError::runtime(format!(
                                    "The TimestampPath '{}' must select an RFC 3339 timestamp (ISO 8601 with a 'T' separator, such as 2016-03-14T01:59:00Z) in the input '{}', found {}",
                                    p.text(),
                                    excerpt(&effective),
                                    v.as_ref().map_or("nothing".to_string(), excerpt)
                                ))
                            })?;
                        until(t, self.now(lane))
                    }
                };
                let assigned = eval_assign(state.assign.as_ref(), &effective, &context, vars)?;
                self.sleep(name, duration, lane).await?;
                let output = state.output_path.apply(&in_effective, "OutputPath")?;
                Ok((go(&wait.transition, output), assigned))
            }
            Kind::Choice(choice) => {
                let context = self.context(name, entered, None);
                let env = Env::new(&raw, &context, vars);
                let effective = state.input_path.apply(&env, "InputPath")?;
                let in_effective = env.with_data(&effective);
                let mut chosen = None;
                for (i, c) in choice.choices.iter().enumerate() {
                    if c.rule.eval(&in_effective)? {
                        chosen = Some((c.next.clone(), choice.rule_assigns[i].as_ref()));
                        break;
                    }
                }
                let chosen =
                    chosen.or_else(|| choice.default.clone().map(|d| (d, state.assign.as_ref())));
                let (next, assign) = match chosen {
                    Some(c) => c,
                    None => {
                        return Err(StateError::new(
                            names::NO_CHOICE,
                            format!(
                                "No choice rule matched and there is no Default in state '{name}'"
                            ),
                        ));
                    }
                };
                let assigned = eval_assign(assign, &effective, &context, vars)?;
                let output = state.output_path.apply(&in_effective, "OutputPath")?;
                Ok((Step::Next(next, output), assigned))
            }
            Kind::Succeed => {
                let context = self.context(name, entered, None);
                let env = Env::new(&raw, &context, vars);
                let effective = state.input_path.apply(&env, "InputPath")?;
                let output = state.output_path.apply(&env.with_data(&effective), "OutputPath")?;
                Ok((Step::End(output), None))
            }
            Kind::Fail(fail) => {
                let context = self.context(name, entered, None);
                let env = Env::new(&raw, &context, vars);
                let text = |t: &Option<Text>, field: &str| -> Result<String, StateError> {
                    let value = match t {
                        None => return Ok(String::new()),
                        Some(Text::Literal(s)) => return Ok(s.clone()),
                        Some(Text::Path(p)) => p.read(&env).ok_or_else(|| {
                            StateError::runtime(format!(
                                "The {field} '{}' could not be found in the input '{}'",
                                p.text(),
                                excerpt(&p.source(&env))
                            ))
                        })?,
                        Some(Text::Call(c)) => c.eval(&env)?,
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
                // A Fail state ends its block: the execution, or the branch or iteration that
                // holds it (whose Parallel or Map state may catch it).
                let mut e = StateError::new(error, cause);
                e.terminal = true;
                Err(e)
            }
        }
    }

    /// Task, Parallel and Map states: attempts, with their Retry and Catch.
    async fn retrying(
        &self,
        name: &str,
        state: &model::State,
        raw: Value,
        entered: OffsetDateTime,
        vars: &Vars,
        lane: &Lane,
    ) -> Result<(Step, Option<Vars>), StateError> {
        let (retriers, catchers, transition) = match &state.kind {
            Kind::Task(t) => (&t.retriers, &t.catchers, &t.transition),
            Kind::Parallel(p) => (&p.retriers, &p.catchers, &p.transition),
            Kind::Map(m) => (&m.retriers, &m.catchers, &m.transition),
            _ => unreachable!("only Task, Parallel and Map states retry"),
        };
        let mut counts = vec![0u64; retriers.len()];
        let mut retry_count = 0u32;
        loop {
            let attempt = match &state.kind {
                Kind::Task(task) => {
                    let context = self.context(name, entered, Some(retry_count));
                    let at = Attempt { context: &context, vars, lane };
                    self.attempt_task(name, state, task, &raw, &at).await
                }
                Kind::Parallel(parallel) => {
                    let context = self.context(name, entered, None);
                    let at = Attempt { context: &context, vars, lane };
                    self.attempt_parallel(state, parallel, &raw, &at).await
                }
                Kind::Map(map) => {
                    let context = self.context(name, entered, None);
                    let at = Attempt { context: &context, vars, lane };
                    self.attempt_map(state, map, &raw, &at).await
                }
                _ => unreachable!("matched above"),
            };
            let error = match attempt {
                Ok((output, assigned)) => return Ok((go(transition, output), assigned)),
                Err(e) if e.terminal => return Err(e),
                Err(e) => e,
            };
            // Only the first retrier that matches counts, even when it is spent.
            if let Some(i) =
                retriers.iter().position(|r| model::error_matches(&r.error_equals, &error.error))
            {
                let retrier = &retriers[i];
                if counts[i] < retrier.max_attempts {
                    let delay = retrier.delay(counts[i]);
                    counts[i] += 1;
                    retry_count += 1;
                    let failure = TaskFailure::new(error.error.clone(), error.cause.clone());
                    self.observer.task_retry(name, &failure, retry_count, delay);
                    self.sleep(name, delay, lane).await?;
                    continue;
                }
            }
            if let Some((i, catcher)) = catchers
                .iter()
                .enumerate()
                .find(|(_, c)| model::error_matches(&c.error_equals, &error.error))
            {
                let error_output = json!({"Error": error.error, "Cause": error.cause});
                let context = self.context(name, entered, None);
                if let Some(j) = &state.jsonata {
                    let (output, assigned) =
                        jsonata_states::caught(j, i, &raw, error_output, &context, vars)?;
                    return Ok((Step::Next(catcher.next.clone(), output), assigned));
                }
                let assigned = eval_assign(catcher.assign.as_ref(), &error_output, &context, vars)?;
                let output = catcher.result_path.apply(raw, error_output)?;
                return Ok((Step::Next(catcher.next.clone(), output), assigned));
            }
            return Err(error);
        }
    }

    /// After a Task, Parallel or Map state's result: ResultSelector, Assign (over the selected
    /// result), ResultPath over the raw input, OutputPath.
    pub(super) fn finish(
        &self,
        state: &model::State,
        (result_selector, result_path): (Option<&Payload>, &model::ResultPath),
        result: Value,
        raw: &Value,
        at: &Attempt<'_>,
    ) -> Result<(Value, Option<Vars>), StateError> {
        let (context, vars) = (at.context, at.vars);
        let selected = match result_selector {
            Some(s) => s.eval(&Env::new(&result, context, vars))?,
            None => result,
        };
        let assigned = eval_assign(state.assign.as_ref(), &selected, context, vars)?;
        let output = result_path.apply(raw.clone(), selected)?;
        let output = state.output_path.apply(&Env::new(&output, context, vars), "OutputPath")?;
        Ok((output, assigned))
    }

    async fn attempt_task(
        &self,
        name: &str,
        state: &model::State,
        task: &model::Task,
        raw: &Value,
        at: &Attempt<'_>,
    ) -> Result<(Value, Option<Vars>), StateError> {
        if let Some(j) = &state.jsonata {
            return self.attempt_task_jsonata(name, task, j, raw, at).await;
        }
        let (context, vars, lane) = (at.context, at.vars, at.lane);
        let env = Env::new(raw, context, vars);
        let effective = state.input_path.apply(&env, "InputPath")?;
        let parameters = match &task.parameters {
            Some(p) => p.eval(&env.with_data(&effective))?,
            None => effective.clone(),
        };
        check_size(&parameters, || format!("the parameters of task {name}"))?;
        let timeout = match &task.timeout {
            None => None,
            Some(TaskTimeout::Seconds(s)) => Some(Duration::from_secs(*s)),
            Some(TaskTimeout::Path(p)) => {
                let v = p.read(&env.with_data(&effective));
                let seconds =
                    v.as_ref().and_then(Value::as_u64).filter(|s| *s > 0).ok_or_else(|| {
                        StateError::runtime(format!(
                            "The TimeoutSecondsPath '{}' must select a positive integer, found {}",
                            p.text(),
                            v.as_ref().map_or("nothing".to_string(), excerpt)
                        ))
                    })?;
                Some(Duration::from_secs(seconds))
            }
        };
        let result =
            self.invoke_task(name, &task.resource, parameters, timeout, context, lane).await?;
        self.finish(state, (task.result_selector.as_ref(), &task.result_path), result, raw, at)
    }

    /// Runs a task through the executor under its timeout and the execution's.
    async fn invoke_task(
        &self,
        name: &str,
        resource: &str,
        parameters: Value,
        timeout: Option<Duration>,
        context: &Value,
        lane: &Lane,
    ) -> Result<Value, StateError> {
        let call = TaskCall { state: name, resource, parameters, context, timeout };
        let remaining = self.remaining(lane);
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
                    // A state's timeout carries no cause, as on AWS (developer guide,
                    // "Handling errors in Step Functions workflows": States.Timeout).
                    return Err(StateError::new(names::TIMEOUT, ""));
                }
            },
        };
        let result = result.map_err(|f| StateError::new(f.error, f.cause))?;
        check_size(&result, || format!("the result of task {name}"))?;
        Ok(result)
    }

    /// Every branch runs on the same input, at once; the result lists their outputs in branch
    /// order. The first branch to fail fails the state with its error and cause, and the
    /// others are stopped (developer guide, "Parallel workflow state").
    async fn attempt_parallel(
        &self,
        state: &model::State,
        parallel: &model::Parallel,
        raw: &Value,
        at: &Attempt<'_>,
    ) -> Result<(Value, Option<Vars>), StateError> {
        if let Some(j) = &state.jsonata {
            return self.attempt_parallel_jsonata(parallel, j, raw, at).await;
        }
        let (context, vars) = (at.context, at.vars);
        let env = Env::new(raw, context, vars);
        let effective = state.input_path.apply(&env, "InputPath")?;
        let input = match &parallel.parameters {
            Some(p) => p.eval(&env.with_data(&effective))?,
            None => effective,
        };
        let outputs = self.run_branches(parallel, input, vars, at.lane).await?;
        self.finish(
            state,
            (parallel.result_selector.as_ref(), &parallel.result_path),
            outputs,
            raw,
            at,
        )
    }

    /// Runs every branch on `input`; their outputs in branch order.
    async fn run_branches(
        &self,
        parallel: &model::Parallel,
        input: Value,
        vars: &Vars,
        lane: &Lane,
    ) -> Result<Value, StateError> {
        let lanes: Vec<Lane> =
            parallel.branches.iter().map(|_| Lane::new(lane.skipped())).collect();
        let branches = parallel.branches.iter().zip(&lanes).map(|(branch, branch_lane)| {
            self.run_block(branch, input.clone(), vars.clone(), branch_lane)
        });
        let outputs = futures::future::try_join_all(branches).await;
        for branch_lane in &lanes {
            lane.skip_to(branch_lane.skipped());
        }
        let outputs = outputs.map_err(|(e, _)| e.seen_by_parent())?;
        Ok(Value::Array(outputs))
    }

    /// One iteration per item of the list `ItemsPath` selects, at most `MaxConcurrency` at
    /// once (0: no limit); the result lists their outputs in item order. `ItemSelector` sees
    /// the state's effective input as `$` and the item as `$$.Map.Item.Value` (developer guide,
    /// "Map state input and output fields"). The first iteration to fail fails the state with
    /// its error and cause, and the others are stopped.
    async fn attempt_map(
        &self,
        state: &model::State,
        map: &model::MapState,
        raw: &Value,
        at: &Attempt<'_>,
    ) -> Result<(Value, Option<Vars>), StateError> {
        if let Some(distributed) = &map.distributed {
            return self.attempt_distributed_map(state, map, distributed, raw, at).await;
        }
        if let Some(j) = &state.jsonata {
            return self.attempt_map_jsonata(map, j, raw, at).await;
        }
        let (context, vars) = (at.context, at.vars);
        let env = Env::new(raw, context, vars);
        let effective = state.input_path.apply(&env, "InputPath")?;
        let in_effective = env.with_data(&effective);
        let items = match &map.items_path {
            None => effective.clone(),
            Some(p) => p.read(&in_effective).ok_or_else(|| {
                StateError::runtime(format!(
                    "Invalid path '{}': The ItemsPath '{}' could not be found in the input '{}'",
                    p.text(),
                    p.text(),
                    excerpt(&p.source(&in_effective))
                ))
            })?,
        };
        let Value::Array(items) = items else {
            return Err(StateError::runtime(format!(
                "The Map state's items must be a JSON array, found {}",
                excerpt(&items)
            )));
        };
        let limit = match &map.concurrency {
            Concurrency::Fixed(n) => *n,
            Concurrency::Path(p) => {
                let v = p.read(&in_effective);
                v.as_ref().and_then(Value::as_u64).ok_or_else(|| {
                    StateError::runtime(format!(
                        "The MaxConcurrencyPath '{}' must select a non-negative integer, found {}",
                        p.text(),
                        v.as_ref().map_or("nothing".to_string(), excerpt)
                    ))
                })?
            }
        };
        let limit = match usize::try_from(limit) {
            Ok(0) | Err(_) => items.len().max(1),
            Ok(n) => n,
        };
        let mut inputs = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let input = match &map.item_selector {
                Some(selector) => {
                    let mut item_context = context.clone();
                    item_context["Map"] = json!({"Item": {"Index": index, "Value": item}});
                    selector.eval(&Env::new(&effective, &item_context, vars))?
                }
                None => item,
            };
            inputs.push(input);
        }
        let outputs = self.run_iterations(map, inputs, limit, vars, at.lane).await?;
        self.finish(state, (map.result_selector.as_ref(), &map.result_path), outputs, raw, at)
    }

    /// Runs the item processor once per input, at most `limit` at once; the outputs in item
    /// order.
    async fn run_iterations(
        &self,
        map: &model::MapState,
        inputs: Vec<Value>,
        limit: usize,
        vars: &Vars,
        lane: &Lane,
    ) -> Result<Value, StateError> {
        use futures::{StreamExt, TryStreamExt};

        let lanes: Vec<Lane> = inputs.iter().map(|_| Lane::new(lane.skipped())).collect();
        // Built first (a future does nothing until polled): a closure inside the stream would
        // borrow the lanes through a higher-ranked lifetime the compiler cannot prove Send.
        let mut iterations = Vec::with_capacity(inputs.len());
        for (input, item_lane) in inputs.into_iter().zip(&lanes) {
            iterations.push(self.run_block(&map.processor, input, vars.clone(), item_lane));
        }
        let outputs: Result<Vec<Value>, _> =
            futures::stream::iter(iterations).buffered(limit).try_collect().await;
        for item_lane in &lanes {
            lane.skip_to(item_lane.skipped());
        }
        let outputs = outputs.map_err(|(e, _)| e.seen_by_parent())?;
        Ok(Value::Array(outputs))
    }
}

/// Time from `now` to `t`, zero if `t` has passed.
fn until(t: OffsetDateTime, now: OffsetDateTime) -> Duration {
    let d = t - now;
    if d.is_positive() { Duration::try_from(d).unwrap_or(Duration::ZERO) } else { Duration::ZERO }
}

#[path = "interp_jsonata.rs"]
mod jsonata_states;

#[cfg(test)]
#[path = "interp_tests.rs"]
mod tests;
