//! The real state machine of `cloudformation/pipeline.yaml`, executed by LocalStack's Step
//! Functions (an independent ASL engine) with mocked task answers, and the same cases through
//! nton's own interpreter: both must enter the same states, send the same parameters to every
//! task, and end with the same status, output, error and cause.
//!
//! The definition comes from [`Template::state_machine`], the function the local engine loads
//! it with (DefinitionSubstitutions filled in one place). The task answers come from one
//! Step Functions Local style mock file, `tests/localstack/sfn-mock-config.json`: LocalStack
//! reads it as `SFN_MOCK_CONFIG`, and [`MockedTasks`] answers nton's interpreter from it.
//!
//! All cases run in one test function: under nextest each test is its own process, and one
//! LocalStack start (seconds) should serve every case.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent, HistoryEventType};
use nton_engine::asl::{
    ExecutionContext, ExecutionObserver, ExecutionOutcome, StateMachine, TaskCall, TaskExecutor,
    TaskFailure, run_execution,
};
use nton_engine::template::{LocalContext, Template};
use nton_tests::localstack::{self, ACCOUNT_ID, REGION};
use serde_json::{Value, json};

/// The name the mock file's `StateMachines` knows the machine by.
const MACHINE: &str = "nton-sfn-cases";
/// The same machine with a short `TimeoutSeconds`, for the case that runs past it.
const TIMEOUT_MACHINE: &str = "nton-sfn-cases-timeout";
/// The `TimeoutSeconds` of [`TIMEOUT_MACHINE`]: short, since LocalStack waits in real time,
/// and long enough for LocalStack to reach the first Wait (a whole run takes about 2 s there;
/// 3 s were too few with the other cases running beside it, and 10 s too few on a machine at
/// load 25, where LocalStack timed the run out before it scheduled the first poll).
const SHORT_TIMEOUT_SECONDS: u64 = 30;

fn mock_config_path() -> PathBuf {
    nton_tests::workspace_root().join("tests/localstack/sfn-mock-config.json")
}

/// The definition as deployed: the template's state machine with its substitutions filled
/// for a stack named [`MACHINE`] in LocalStack's account and region.
fn definition() -> Value {
    let template =
        Template::load(nton_tests::workspace_root().join("cloudformation/pipeline.yaml"))
            .expect("the template loads");
    let ctx = LocalContext::new(MACHINE).with_region(REGION).with_account_id(ACCOUNT_ID);
    template.state_machine(&ctx, None).expect("the state machine resolves").1
}

/// What one engine did in one execution: the states it entered and the tasks it scheduled,
/// in order, then how it ended.
#[derive(Debug, Clone, PartialEq)]
struct Trace {
    events: Vec<Event>,
    end: End,
}

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Entered(String),
    /// A task scheduled by `state`: `resource` is the service integration without its
    /// `arn:aws:states:::` prefix (e.g. `batch:submitJob`), `parameters` the effective ones.
    Task {
        state: String,
        resource: String,
        parameters: Value,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct End {
    /// SUCCEEDED, FAILED or TIMED_OUT.
    status: String,
    output: Option<Value>,
    error: Option<String>,
    cause: Option<String>,
}

// ---- LocalStack --------------------------------------------------------------------------

async fn localstack_trace(
    sfn: &aws_sdk_sfn::Client,
    machine_arn: &str,
    case: &str,
    input: &Value,
    limit: Duration,
) -> anyhow::Result<Trace> {
    let execution = sfn
        .start_execution()
        .state_machine_arn(format!("{machine_arn}#{case}"))
        .input(input.to_string())
        .send()
        .await
        .with_context(|| format!("StartExecution of test case {case}"))?;
    let arn = execution.execution_arn();
    let started = Instant::now();
    let described = loop {
        let d = sfn.describe_execution().execution_arn(arn).send().await?;
        if *d.status() != ExecutionStatus::Running {
            break d;
        }
        if started.elapsed() > limit {
            bail!("{case}: still RUNNING on LocalStack after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut history: Vec<HistoryEvent> = Vec::new();
    let mut pages = sfn.get_execution_history().execution_arn(arn).into_paginator().send();
    while let Some(page) = pages.next().await {
        history.extend(page?.events().iter().cloned());
    }
    let start = described.start_date();
    let started = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(start.secs()) * 1_000_000_000 + i128::from(start.subsec_nanos()),
    )?;
    let mut events = Vec::new();
    let mut current = String::new();
    for e in &history {
        if let Some(d) = e.state_entered_event_details() {
            current = d.name().to_string();
            events.push(Event::Entered(current.clone()));
        }
        if *e.r#type() == HistoryEventType::TaskScheduled {
            let d = e.task_scheduled_event_details().expect("TaskScheduled has details");
            events.push(Event::Task {
                state: current.clone(),
                resource: format!("{}:{}", d.resource_type(), d.resource()),
                parameters: serde_json::from_str(d.parameters())
                    .context("TaskScheduled parameters are JSON")?,
            });
        }
    }
    check_times(&mut events, started)?;
    let output = described
        .output()
        .map(serde_json::from_str)
        .transpose()
        .context("the execution's output is JSON")?;
    Ok(Trace {
        events,
        end: End {
            status: described.status().as_str().to_string(),
            output,
            error: described.error().map(str::to_string),
            cause: described.cause().map(str::to_string),
        },
    })
}

// ---- nton's interpreter ------------------------------------------------------------------

/// Answers Task states from the mock file as Step Functions Local does: the test case names a
/// mocked response per state; the n-th invocation of a state (retries included, from 0) takes
/// the entry whose key is `n` or a range `a-b` holding it, and returns its `Return` or fails
/// with its `Throw`.
struct MockedTasks {
    responses: BTreeMap<String, Value>,
    invocations: Mutex<BTreeMap<String, u64>>,
    events: Mutex<Vec<Event>>,
}

impl MockedTasks {
    fn new(config: &Value, machine: &str, case: &str) -> anyhow::Result<MockedTasks> {
        let test_case = config
            .pointer(&format!("/StateMachines/{machine}/TestCases/{case}"))
            .and_then(Value::as_object)
            .with_context(|| format!("the mock file has no test case {case}"))?;
        let mut responses = BTreeMap::new();
        for (state, name) in test_case {
            let name = name.as_str().context("a test case maps states to names")?;
            let response = config
                .pointer(&format!("/MockedResponses/{name}"))
                .with_context(|| format!("the mock file has no mocked response {name}"))?;
            responses.insert(state.clone(), response.clone());
        }
        Ok(MockedTasks {
            responses,
            invocations: Mutex::new(BTreeMap::new()),
            events: Mutex::new(Vec::new()),
        })
    }

    fn answer(&self, state: &str) -> Result<Value, TaskFailure> {
        let n = {
            let mut invocations = self.invocations.lock().unwrap();
            let n = invocations.entry(state.to_string()).or_insert(0);
            *n += 1;
            *n - 1
        };
        let response = self.responses.get(state).ok_or_else(|| {
            TaskFailure::new("MockMissing", format!("no mocked response for {state}"))
        })?;
        let entry = response
            .as_object()
            .into_iter()
            .flatten()
            .find(|(key, _)| match key.split_once('-') {
                Some((a, b)) => {
                    a.parse::<u64>().is_ok_and(|a| a <= n) && b.parse::<u64>().is_ok_and(|b| n <= b)
                }
                None => key.parse::<u64>() == Ok(n),
            })
            .map(|(_, v)| v)
            .ok_or_else(|| {
                TaskFailure::new("MockMissing", format!("no mocked answer {n} for state {state}"))
            })?;
        if let Some(value) = entry.get("Return") {
            return Ok(value.clone());
        }
        let thrown = entry.get("Throw").expect("a mocked answer returns or throws");
        Err(TaskFailure::new(
            thrown["Error"].as_str().unwrap_or_default(),
            thrown["Cause"].as_str().unwrap_or_default(),
        ))
    }
}

#[async_trait::async_trait]
impl TaskExecutor for MockedTasks {
    async fn invoke(&self, call: TaskCall<'_>) -> Result<Value, TaskFailure> {
        self.events.lock().unwrap().push(Event::Task {
            state: call.state.to_string(),
            resource: call
                .resource
                .strip_prefix("arn:aws:states:::")
                .unwrap_or(call.resource)
                .to_string(),
            parameters: call.parameters.clone(),
        });
        self.answer(call.state)
    }

    /// Waits and retry intervals take no real time: the interpreter's clock advances anyway.
    async fn wait(&self, _state: &str, _duration: Duration) {}
}

impl ExecutionObserver for MockedTasks {
    fn state_entered(&self, name: &str, _input: &Value) {
        self.events.lock().unwrap().push(Event::Entered(name.to_string()));
    }
    fn state_exited(&self, _name: &str, _output: &Value) {}
}

async fn nton_trace(
    machine: &StateMachine,
    machine_name: &str,
    config: &Value,
    case: &str,
    input: &Value,
) -> anyhow::Result<Trace> {
    let tasks = MockedTasks::new(config, machine_name, case)?;
    let started = time::OffsetDateTime::now_utc();
    let ctx = ExecutionContext::new(machine_name)
        .with_start_time(started)
        .with_region(REGION)
        .with_account_id(ACCOUNT_ID);
    let outcome = run_execution(machine, input.clone(), &tasks, &tasks, ctx).await;
    let end = match outcome {
        ExecutionOutcome::Succeeded { output } => {
            End { status: "SUCCEEDED".into(), output: Some(output), error: None, cause: None }
        }
        ExecutionOutcome::TimedOut { .. } => End {
            status: "TIMED_OUT".into(),
            output: None,
            error: Some("States.Timeout".into()),
            cause: None,
        },
        ExecutionOutcome::Failed { error, cause, .. } => {
            End { status: "FAILED".into(), output: None, error: Some(error), cause: Some(cause) }
        }
    };
    let mut events = tasks.events.into_inner().unwrap();
    check_times(&mut events, started)?;
    Ok(Trace { events, end })
}

/// The Watch payload carries `$$.Execution.StartTime` and `$$.State.EnteredTime`, which no two
/// executions share: checks that the first is the execution's start (to the millisecond) and
/// the second a timestamp not before it, then puts placeholders in their place.
fn check_times(events: &mut [Event], started: time::OffsetDateTime) -> anyhow::Result<()> {
    use time::format_description::well_known::Rfc3339;
    let parse = |v: &Value, field: &str| -> anyhow::Result<time::OffsetDateTime> {
        let text = v.as_str().with_context(|| format!("{field} is not a string: {v}"))?;
        time::OffsetDateTime::parse(text, &Rfc3339)
            .with_context(|| format!("{field} is not an RFC 3339 timestamp: {text}"))
    };
    for event in events {
        let Event::Task { parameters, .. } = event else {
            continue;
        };
        let Some(payload) = parameters.get_mut("Payload").and_then(Value::as_object_mut) else {
            continue;
        };
        if let Some(v) = payload.get_mut("startedAt") {
            let at = parse(v, "startedAt")?;
            if (at - started).abs() >= time::Duration::milliseconds(1) {
                bail!("startedAt {v} is not the execution's start {started}");
            }
            *v = json!(STARTED_AT);
        }
        if let Some(v) = payload.get_mut("now") {
            let at = parse(v, "now")?;
            if at < started - time::Duration::milliseconds(1) {
                bail!("now {v} is before the execution's start {started}");
            }
            *v = json!(ENTERED_AT);
        }
    }
    Ok(())
}

/// The first place two traces differ, named for a person; `None` when they agree.
fn first_divergence(left: (&str, &Trace), right: (&str, &Trace)) -> Option<String> {
    let ((a_name, a), (b_name, b)) = (left, right);
    let width = a_name.len().max(b_name.len());
    for i in 0..a.events.len().max(b.events.len()) {
        let (x, y) = (a.events.get(i), b.events.get(i));
        if x != y {
            return Some(format!(
                "event {i} differs:\n  {a_name:width$}: {x:?}\n  {b_name:width$}: {y:?}"
            ));
        }
    }
    if !same_end(&a.end, &b.end) {
        return Some(format!(
            "the end differs:\n  {a_name:width$}: {:?}\n  {b_name:width$}: {:?}",
            a.end, b.end
        ));
    }
    None
}

/// Ends agree when status, output and error are equal and the causes say the same thing
/// (see [`same_cause`]).
fn same_end(a: &End, b: &End) -> bool {
    if a.status == "TIMED_OUT" && b.status == "TIMED_OUT" {
        // The developer guide (state machine structure, TimeoutSeconds): "the execution
        // fails with a States.Timeout error name". LocalStack's ExecutionTimedOut event and
        // DescribeExecution carry no error and no cause; AWS documents no cause text.
        let agree = |x: &Option<String>, y: &Option<String>| x.is_none() || y.is_none() || x == y;
        return a.output == b.output && agree(&a.error, &b.error) && agree(&a.cause, &b.cause);
    }
    a.status == b.status && a.output == b.output && a.error == b.error && same_cause(a, b)
}

/// Causes agree when equal, or when both say a JSONPath was missing from a state's input and
/// agree on every part that both give. Two engines' departures from AWS are tolerated here,
/// and only here. AWS words it (as captured from a real execution):
/// `An error occurred while executing the state 'S' (entered at the event id #7). The JSONPath
/// '$.a' specified for the field 'a.$' could not be found in the input '{...}'`.
/// - nton leaves out the first sentence: its interpreter keeps no execution history, so it
///   has no event ids to name;
/// - LocalStack leaves out `specified for the field 'a.$'`;
/// - the input is compared as JSON: nton writes object keys sorted (serde_json without
///   `preserve_order`), Step Functions in the order the task returned them.
fn same_cause(a: &End, b: &End) -> bool {
    if a.cause == b.cause {
        return true;
    }
    let (Some(x), Some(y)) = (
        a.cause.as_deref().and_then(MissingPath::parse),
        b.cause.as_deref().and_then(MissingPath::parse),
    ) else {
        return false;
    };
    fn agree<T: PartialEq>(x: &Option<T>, y: &Option<T>) -> bool {
        x.is_none() || y.is_none() || x == y
    }
    x.path == y.path
        && x.input == y.input
        && agree(&x.state, &y.state)
        && agree(&x.event_id, &y.event_id)
        && agree(&x.field, &y.field)
}

/// A States.Runtime cause about a JSONPath missing from a state's input, in its parts.
#[derive(Debug, PartialEq)]
struct MissingPath {
    state: Option<String>,
    event_id: Option<u64>,
    path: String,
    field: Option<String>,
    input: Value,
}

impl MissingPath {
    fn parse(cause: &str) -> Option<MissingPath> {
        static PATTERN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(
                r"(?s)^(?:An error occurred while executing the state '(?P<state>[^']+)' \(entered at the event id #(?P<id>\d+)\)\. )?The JSONPath '(?P<path>[^']+)'(?: specified for the field '(?P<field>[^']+)')? could not be found in the input '(?P<input>.*)'$",
            )
            .expect("a valid pattern")
        });
        let c = PATTERN.captures(cause)?;
        Some(MissingPath {
            state: c.name("state").map(|m| m.as_str().to_string()),
            event_id: c.name("id").and_then(|m| m.as_str().parse().ok()),
            path: c["path"].to_string(),
            field: c.name("field").map(|m| m.as_str().to_string()),
            input: serde_json::from_str(&c["input"]).ok()?,
        })
    }
}

// ---- the cases ---------------------------------------------------------------------------

/// What [`check_times`] puts in place of the context object's timestamps in a Watch payload.
const STARTED_AT: &str = "<$$.Execution.StartTime>";
const ENTERED_AT: &str = "<$$.State.EnteredTime>";

const INIT_FN: &str = "arn:aws:lambda:us-east-1:000000000000:function:InitFunction";
const WATCH_FN: &str = "arn:aws:lambda:us-east-1:000000000000:function:WatchFunction";

fn entered(names: &[&str]) -> Vec<Event> {
    names.iter().map(|n| Event::Entered(n.to_string())).collect()
}

fn task(state: &str, resource: &str, parameters: Value) -> Event {
    Event::Task { state: state.into(), resource: resource.into(), parameters }
}

fn init(input: &Value) -> Vec<Event> {
    vec![
        Event::Entered("Init".into()),
        task("Init", "lambda:invoke", json!({"FunctionName": INIT_FN, "Payload": input})),
    ]
}

/// The three submissions of a run of `nodes` nodes (arrays, or plain jobs for one node).
fn submissions(workflow_id: &str, nodes: u64) -> Vec<Event> {
    let shape = if nodes == 1 { "Single" } else { "Array" };
    let mut events = entered(&["ChooseJobShape"]);
    let mut previous: Option<&str> = None;
    for (stage, title) in [("procure", "Procure"), ("process", "Process"), ("egress", "Egress")] {
        let state = format!("Submit{title}{shape}");
        let mut parameters = json!({
            "JobName": format!("nton-{stage}-{workflow_id}"),
            "JobQueue": format!("arn:aws:batch:us-east-1:000000000000:job-queue/{title}JobQueue"),
            "JobDefinition": format!("arn:aws:batch:us-east-1:000000000000:job-definition/{title}JobDefinition:1"),
            "ContainerOverrides": {"Environment": [{"Name": "NTON_WORKFLOW_ID", "Value": workflow_id}]},
        });
        if nodes > 1 {
            parameters["ArrayProperties"] = json!({"Size": nodes});
        }
        if let Some(previous) = previous {
            parameters["DependsOn"] = if nodes > 1 {
                json!([{"JobId": format!("job-{previous}"), "Type": "N_TO_N"}])
            } else {
                json!([{"JobId": format!("job-{previous}")}])
            };
        }
        events.push(Event::Entered(state.clone()));
        events.push(task(&state, "batch:submitJob", parameters));
        previous = Some(stage);
    }
    events
}

fn jobs() -> Value {
    json!({
        "procure": {"JobId": "job-procure"},
        "process": {"JobId": "job-process"},
        "egress": {"JobId": "job-egress"},
    })
}

/// The Watch state and its task; `IsDone` follows unless the answer is refused.
fn watch(workflow_id: &str, nodes: u64, poll_seconds: u64) -> Vec<Event> {
    vec![
        Event::Entered("Watch".into()),
        task(
            "Watch",
            "lambda:invoke",
            json!({"FunctionName": WATCH_FN, "Payload": {
                "workflowId": workflow_id, "nodes": nodes, "jobs": jobs(),
                "startedAt": STARTED_AT, "now": ENTERED_AT, "pollSeconds": poll_seconds, "timeoutSeconds": 43200, "nodeMap": null}}),
        ),
    ]
}

/// A poll whose answer the machine reads: Watch, then IsDone.
fn poll(workflow_id: &str, nodes: u64) -> Vec<Event> {
    poll_every(workflow_id, nodes, 0)
}

fn poll_every(workflow_id: &str, nodes: u64, poll_seconds: u64) -> Vec<Event> {
    let mut events = watch(workflow_id, nodes, poll_seconds);
    events.push(Event::Entered("IsDone".into()));
    events
}

/// Init's answer as the machine keeps it (`$.plan`); the mocks plan 12 h runs (the default
/// RunTimeoutHours).
fn plan(nodes: u64, poll_seconds: u64) -> Value {
    json!({"workflowId": format!("wf-{nodes}"), "nodes": nodes, "ids": nodes * 10, "idsPerNode": 10,
        "pollSeconds": poll_seconds, "timeoutSeconds": 43200, "nodeMap": null})
}

fn progress(state: &str, nodes: u64) -> Value {
    let one = json!({"size": nodes, "counts": {state: nodes}});
    json!({"procure": one, "process": one, "egress": one})
}

/// The execution's output after a run that ended with this watcher answer.
fn final_output(input: &Value, nodes: u64, status: Value) -> Value {
    let mut output = input.clone();
    output["plan"] = plan(nodes, 0);
    output["jobs"] = jobs();
    output["status"] = status;
    output
}

struct Case {
    name: &'static str,
    /// The state machine (and the mock file's entry) the case runs on.
    machine: &'static str,
    input: Value,
    /// What AWS does (per the developer guide); nton must do the same.
    expected: Trace,
    /// Where LocalStack is known to depart from AWS: the event it has instead of the
    /// expected trace's end, and why. The test checks that it still departs there (so a fixed
    /// LocalStack is noticed) and holds nton to `expected` alone for this case.
    localstack_departs: Option<(Event, &'static str)>,
}

fn succeeded(output: Value) -> End {
    End { status: "SUCCEEDED".into(), output: Some(output), error: None, cause: None }
}

fn failed(status: &str, error: &str, cause: &str) -> End {
    End {
        status: status.into(),
        output: None,
        error: Some(error.into()),
        cause: Some(cause.into()),
    }
}

fn cases() -> Vec<Case> {
    let input = json!({"ids": 30, "idsPerNode": 10});
    let done = |nodes| json!({"done": true, "failed": false, "error": null, "cause": null, "progress": progress("SUCCEEDED", nodes)});
    let concat = |parts: Vec<Vec<Event>>| parts.concat();
    let nodes_failed = "1 of 3 nodes failed: procure failed on node 2 (Essential container in task exited, exit code 1); process and egress did not run on that node.";
    let wait = || entered(&["WaitForJobs"]);
    vec![
        Case {
            name: "AllDoneAfterTwoPolls",
            machine: MACHINE,
            input: input.clone(),
            localstack_departs: None,
            expected: Trace {
                events: concat(vec![
                    init(&input),
                    submissions("wf-3", 3),
                    poll("wf-3", 3),
                    wait(),
                    poll("wf-3", 3),
                    wait(),
                    poll("wf-3", 3),
                    entered(&["Succeeded"]),
                ]),
                end: succeeded(final_output(&input, 3, done(3))),
            },
        },
        Case {
            name: "FailedStage",
            machine: MACHINE,
            input: input.clone(),
            localstack_departs: None,
            expected: Trace {
                events: concat(vec![
                    init(&input),
                    submissions("wf-3", 3),
                    poll("wf-3", 3),
                    entered(&["Failed"]),
                ]),
                end: failed("FAILED", "nton.NodesFailed", nodes_failed),
            },
        },
        Case {
            name: "OneNode",
            machine: MACHINE,
            input: input.clone(),
            localstack_departs: None,
            expected: Trace {
                events: concat(vec![
                    init(&input),
                    submissions("wf-1", 1),
                    poll("wf-1", 1),
                    entered(&["Succeeded"]),
                ]),
                end: succeeded(final_output(&input, 1, done(1))),
            },
        },
        Case {
            name: "RetriedServiceException",
            machine: MACHINE,
            input: input.clone(),
            localstack_departs: None,
            expected: Trace {
                events: concat(vec![
                    init(&input),
                    // The retry: the same parameters again, without entering Init again.
                    init(&input)[1..].to_vec(),
                    submissions("wf-3", 3),
                    poll("wf-3", 3),
                    entered(&["Succeeded"]),
                ]),
                end: succeeded(final_output(&input, 3, done(3))),
            },
        },
        Case {
            name: "InitErrorNotRetried",
            machine: MACHINE,
            input: input.clone(),
            localstack_departs: None,
            expected: Trace {
                events: init(&input),
                end: failed(
                    "FAILED",
                    "InvalidInput",
                    r#"{"errorType": "InvalidInput", "errorMessage": "ids: 0 is out of range 1..=10000000"}"#,
                ),
            },
        },
        Case {
            name: "WatcherAnswerMissingField",
            machine: MACHINE,
            input: input.clone(),
            localstack_departs: Some((
                Event::Entered("CleanUpProcure".into()),
                "LocalStack catches the States.Runtime of a ResultSelector path with Catch \
                 States.ALL; the developer guide (error handling, States.Runtime): \"A retry or \
                 catch on States.ALL won't catch States.Runtime errors\"",
            )),
            expected: Trace {
                events: concat(vec![init(&input), submissions("wf-3", 3), watch("wf-3", 3, 0)]),
                end: failed(
                    "FAILED",
                    "States.Runtime",
                    &format!(
                        "An error occurred while executing the state 'Watch' (entered at the event id #27). The JSONPath '$.Payload.cause' specified for the field 'cause.$' could not be found in the input '{}'",
                        json!({"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": {
                            "done": true, "failed": false, "error": null, "progress": progress("SUCCEEDED", 3)}})
                    ),
                ),
            },
        },
        Case {
            name: "CleanUpAfterFailedSubmission",
            machine: MACHINE,
            input: input.clone(),
            localstack_departs: None,
            expected: Trace {
                events: concat(vec![
                    init(&input),
                    // Procure is submitted, process fails: only procure's job is terminated.
                    submissions("wf-3", 3)[..5].to_vec(),
                    entered(&["CleanUpProcure", "TerminateProcure"]),
                    vec![task(
                        "TerminateProcure",
                        "aws-sdk:batch:terminateJob",
                        json!({"JobId": "job-procure", "Reason": "nton run wf-3 failed with Batch.ClientException"}),
                    )],
                    entered(&["CleanUpProcess", "RunFailed"]),
                ]),
                end: failed(
                    "FAILED",
                    "Batch.ClientException",
                    "JobQueue ProcessJobQueue is DISABLED (mocked).",
                ),
            },
        },
        Case {
            name: "PastTimeout",
            machine: TIMEOUT_MACHINE,
            input: input.clone(),
            localstack_departs: None,
            expected: Trace {
                events: concat(vec![
                    init(&input),
                    submissions("wf-3", 3),
                    poll_every("wf-3", 3, 3600),
                    wait(),
                ]),
                end: End {
                    status: "TIMED_OUT".into(),
                    output: None,
                    error: Some("States.Timeout".into()),
                    cause: None,
                },
            },
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_state_machine_runs_the_same_on_localstack_and_on_nton() {
    let began = Instant::now();
    let config_path = mock_config_path();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let server = tokio::task::spawn_blocking(move || localstack::shared(&config_path))
        .await
        .unwrap()
        .expect("LocalStack starts");
    let started = began.elapsed();
    let sfn = aws_sdk_sfn::Client::new(&server.sdk_config().await);
    let definition = definition();
    let mut short_timeout = definition.clone();
    short_timeout["TimeoutSeconds"] = json!(SHORT_TIMEOUT_SECONDS);
    let mut machines = BTreeMap::new();
    for (name, definition) in [(MACHINE, definition), (TIMEOUT_MACHINE, short_timeout)] {
        let arn = sfn
            .create_state_machine()
            .name(name)
            .definition(definition.to_string())
            .role_arn(format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}-role"))
            .send()
            .await
            .map_err(|e| e.into_service_error())
            .unwrap_or_else(|e| {
                // Step Functions checks every Resource at CreateStateMachine, as AWS does.
                panic!("LocalStack refuses the template's state machine ({name}): {e}")
            })
            .state_machine_arn()
            .to_string();
        let machine = StateMachine::from_json(&definition).expect("nton accepts the definition");
        machines.insert(name, (arn, machine));
    }

    // LocalStack runs the cases at once (a retry interval and a timeout are real seconds
    // there); nton's interpreter skips waits.
    let cases = cases();
    let runs = cases.iter().map(|case| {
        let (arn, _) = &machines[case.machine];
        localstack_trace(&sfn, arn, case.name, &case.input, Duration::from_secs(90))
    });
    let on_localstack = futures::future::join_all(runs).await;
    let mut failures = Vec::new();
    for (case, on_localstack) in cases.iter().zip(on_localstack) {
        let on_localstack = on_localstack.unwrap();
        let (_, machine) = &machines[case.machine];
        let on_nton =
            nton_trace(machine, case.machine, &config, case.name, &case.input).await.unwrap();
        if let Some((instead, why)) = &case.localstack_departs {
            let at = case.expected.events.len();
            if on_localstack.events.get(at) != Some(instead) {
                failures.push(format!(
                    "{}: LocalStack no longer departs from AWS at event {at} ({why}): it has {:?}; remove the departure",
                    case.name,
                    on_localstack.events.get(at)
                ));
            }
            if let Some(divergence) =
                first_divergence(("expected", &case.expected), ("nton", &on_nton))
            {
                failures.push(format!("{}: nton differs from AWS: {divergence}", case.name));
            }
            continue;
        }
        if let Some(divergence) =
            first_divergence(("expected", &case.expected), ("LocalStack", &on_localstack))
        {
            failures.push(format!(
                "{}: LocalStack differs from the expected run: {divergence}",
                case.name
            ));
        }
        if let Some(divergence) =
            first_divergence(("LocalStack", &on_localstack), ("nton", &on_nton))
        {
            failures.push(format!("{}: nton differs from LocalStack: {divergence}", case.name));
        }
    }
    eprintln!("LocalStack started in {started:?}; start and every case took {:?}", began.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
