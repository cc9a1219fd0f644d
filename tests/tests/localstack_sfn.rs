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

fn mock_config_path() -> PathBuf {
    nton_tests::workspace_root().join("tests/localstack/sfn-mock-config.json")
}

/// The definition as deployed: the template's state machine with its substitutions filled
/// for a stack named [`MACHINE`] in LocalStack's account and region.
fn definition() -> Value {
    let template =
        Template::load(nton_tests::workspace_root().join("cloudformation/pipeline.yaml"))
            .expect("the template loads");
    let ctx = LocalContext::new(MACHINE)
        .with_region(REGION)
        .with_account_id(ACCOUNT_ID);
    template
        .state_machine(&ctx, None)
        .expect("the state machine resolves")
        .1
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
    let mut pages = sfn
        .get_execution_history()
        .execution_arn(arn)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        history.extend(page?.events().iter().cloned());
    }
    let mut events = Vec::new();
    let mut current = String::new();
    for e in &history {
        if let Some(d) = e.state_entered_event_details() {
            current = d.name().to_string();
            events.push(Event::Entered(current.clone()));
        }
        if *e.r#type() == HistoryEventType::TaskScheduled {
            let d = e
                .task_scheduled_event_details()
                .expect("TaskScheduled has details");
            events.push(Event::Task {
                state: current.clone(),
                resource: format!("{}:{}", d.resource_type(), d.resource()),
                parameters: serde_json::from_str(d.parameters())
                    .context("TaskScheduled parameters are JSON")?,
            });
        }
    }
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
    fn new(config: &Value, case: &str) -> anyhow::Result<MockedTasks> {
        let test_case = config
            .pointer(&format!("/StateMachines/{MACHINE}/TestCases/{case}"))
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
                TaskFailure::new(
                    "MockMissing",
                    format!("no mocked answer {n} for state {state}"),
                )
            })?;
        if let Some(value) = entry.get("Return") {
            return Ok(value.clone());
        }
        let thrown = entry
            .get("Throw")
            .expect("a mocked answer returns or throws");
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
        self.events
            .lock()
            .unwrap()
            .push(Event::Entered(name.to_string()));
    }
    fn state_exited(&self, _name: &str, _output: &Value) {}
}

async fn nton_trace(
    machine: &StateMachine,
    config: &Value,
    case: &str,
    input: &Value,
) -> anyhow::Result<Trace> {
    let tasks = MockedTasks::new(config, case)?;
    let ctx = ExecutionContext::new(MACHINE)
        .with_region(REGION)
        .with_account_id(ACCOUNT_ID);
    let outcome = run_execution(machine, input.clone(), &tasks, &tasks, ctx).await;
    let end = match outcome {
        ExecutionOutcome::Succeeded { output } => End {
            status: "SUCCEEDED".into(),
            output: Some(output),
            error: None,
            cause: None,
        },
        ExecutionOutcome::Failed { error, cause, .. } => End {
            status: "FAILED".into(),
            output: None,
            error: Some(error),
            cause: Some(cause),
        },
    };
    let events = tasks.events.into_inner().unwrap();
    Ok(Trace { events, end })
}

/// The first place two traces differ, named for a person; `None` when they agree.
fn first_divergence(localstack: &Trace, nton: &Trace) -> Option<String> {
    let n = localstack.events.len().max(nton.events.len());
    for i in 0..n {
        let (a, b) = (localstack.events.get(i), nton.events.get(i));
        if a != b {
            return Some(format!(
                "event {i} differs:\n  LocalStack: {a:?}\n  nton:       {b:?}"
            ));
        }
    }
    if localstack.end != nton.end {
        return Some(format!(
            "the end differs:\n  LocalStack: {:?}\n  nton:       {:?}",
            localstack.end, nton.end
        ));
    }
    None
}

// ---- the cases ---------------------------------------------------------------------------

const INIT_FN: &str = "arn:aws:lambda:us-east-1:000000000000:function:InitFunction";
const WATCH_FN: &str = "arn:aws:lambda:us-east-1:000000000000:function:WatchFunction";

fn entered(names: &[&str]) -> Vec<Event> {
    names
        .iter()
        .map(|n| Event::Entered(n.to_string()))
        .collect()
}

fn task(state: &str, resource: &str, parameters: Value) -> Event {
    Event::Task {
        state: state.into(),
        resource: resource.into(),
        parameters,
    }
}

fn init(input: &Value) -> Vec<Event> {
    vec![
        Event::Entered("Init".into()),
        task(
            "Init",
            "lambda:invoke",
            json!({"FunctionName": INIT_FN, "Payload": input}),
        ),
    ]
}

/// The three submissions of a run of `nodes` nodes (arrays, or plain jobs for one node).
fn submissions(workflow_id: &str, nodes: u64) -> Vec<Event> {
    let shape = if nodes == 1 { "Single" } else { "Array" };
    let mut events = entered(&["ChooseJobShape"]);
    let mut previous: Option<&str> = None;
    for (stage, title) in [
        ("procure", "Procure"),
        ("process", "Process"),
        ("egress", "Egress"),
    ] {
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

fn watch(workflow_id: &str, nodes: u64) -> Vec<Event> {
    vec![
        Event::Entered("Watch".into()),
        task(
            "Watch",
            "lambda:invoke",
            json!({"FunctionName": WATCH_FN, "Payload": {"workflowId": workflow_id, "nodes": nodes, "jobs": jobs()}}),
        ),
        Event::Entered("IsDone".into()),
    ]
}

fn plan(nodes: u64, poll_seconds: u64) -> Value {
    json!({"workflowId": format!("wf-{nodes}"), "nodes": nodes, "ids": nodes * 10, "idsPerNode": 10, "pollSeconds": poll_seconds})
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
    input: Value,
    expected: Trace,
}

fn cases() -> Vec<Case> {
    let input = json!({"ids": 30, "idsPerNode": 10});
    let done = |nodes| json!({"done": true, "failed": false, "error": null, "cause": null, "progress": progress("SUCCEEDED", nodes)});
    let mut cases = Vec::new();

    let mut events = init(&input);
    events.extend(submissions("wf-3", 3));
    for _ in 0..2 {
        events.extend(watch("wf-3", 3));
        events.extend(entered(&["WaitForJobs"]));
    }
    events.extend(watch("wf-3", 3));
    events.extend(entered(&["Succeeded"]));
    cases.push(Case {
        name: "AllDoneAfterTwoPolls",
        input: input.clone(),
        expected: Trace {
            events,
            end: End {
                status: "SUCCEEDED".into(),
                output: Some(final_output(&input, 3, done(3))),
                error: None,
                cause: None,
            },
        },
    });
    cases
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
    let machine_arn = sfn
        .create_state_machine()
        .name(MACHINE)
        .definition(definition.to_string())
        .role_arn(format!("arn:aws:iam::{ACCOUNT_ID}:role/{MACHINE}-role"))
        .send()
        .await
        .expect("LocalStack accepts the definition")
        .state_machine_arn()
        .to_string();
    let machine = StateMachine::from_json(&definition).expect("nton accepts the definition");

    let mut failures = Vec::new();
    for case in cases() {
        let on_localstack = localstack_trace(
            &sfn,
            &machine_arn,
            case.name,
            &case.input,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        if on_localstack != case.expected {
            failures.push(format!(
                "{}: LocalStack differs from the expected run: {}",
                case.name,
                first_divergence(&case.expected, &on_localstack)
                    .unwrap_or_default()
                    .replace("LocalStack:", "expected:  ")
                    .replace("nton:      ", "LocalStack:")
            ));
        }
        let on_nton = nton_trace(&machine, &config, case.name, &case.input)
            .await
            .unwrap();
        if let Some(divergence) = first_divergence(&on_localstack, &on_nton) {
            failures.push(format!(
                "{}: nton differs from LocalStack: {divergence}",
                case.name
            ));
        }
    }
    eprintln!(
        "LocalStack started in {started:?}; start and every case took {:?}",
        began.elapsed()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
