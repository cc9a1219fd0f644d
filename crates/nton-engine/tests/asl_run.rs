//! Running state machines: data-driven executions (`fixtures/asl/run_cases.yaml`) and choice
//! rules (`fixtures/asl/choice_rules.yaml`) against a scripted task executor that records its
//! calls and waits (and never sleeps), then what needs code: the context object, timeouts,
//! payload limits, observers, and the real template's state machine end to end.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use nton_engine::asl::{
    ExecutionContext, ExecutionObserver, ExecutionOutcome, NullObserver, StateMachine, TaskCall,
    TaskExecutor, TaskFailure, run_execution,
};
use nton_engine::template::{LocalContext, Template};
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/asl/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    nton_engine::template::parse_document(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A task executor answering from a script per state; once a state's script runs out it
/// answers with the task's own parameters. `{"hang": true}` never answers.
#[derive(Default)]
struct Fake {
    script: Mutex<HashMap<String, VecDeque<Value>>>,
    calls: Mutex<Vec<Value>>,
    waits: Mutex<Vec<(String, Duration)>>,
}

impl Fake {
    fn scripted(responses: &Value) -> Fake {
        let fake = Fake::default();
        if let Value::Object(map) = responses {
            let mut script = fake.script.lock().unwrap();
            for (state, answers) in map {
                let answers =
                    answers.as_array().expect("a list of answers").iter().cloned().collect();
                script.insert(state.clone(), answers);
            }
        }
        fake
    }

    fn answer(&self, state: &str, answer: Value) {
        self.script.lock().unwrap().entry(state.to_string()).or_default().push_back(answer);
    }

    fn calls(&self) -> Vec<Value> {
        self.calls.lock().unwrap().clone()
    }

    fn waits(&self) -> Vec<(String, Duration)> {
        self.waits.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl TaskExecutor for Fake {
    async fn invoke(&self, call: TaskCall<'_>) -> Result<Value, TaskFailure> {
        self.calls.lock().unwrap().push(json!({
            "state": call.state,
            "resource": call.resource,
            "parameters": call.parameters,
            "retry_count": call.context["State"]["RetryCount"],
            "context": call.context,
            "timeout": call.timeout.map(|t| t.as_secs()),
        }));
        let answer = self.script.lock().unwrap().get_mut(call.state).and_then(VecDeque::pop_front);
        match answer {
            None => Ok(call.parameters),
            Some(a) if a.get("ok").is_some() => Ok(a["ok"].clone()),
            Some(a) if a.get("fail").is_some() => Err(TaskFailure::new(
                a["fail"][0].as_str().unwrap(),
                a["fail"][1].as_str().unwrap(),
            )),
            Some(a) if a.get("hang").is_some() => std::future::pending().await,
            Some(a) => panic!("bad scripted answer {a}"),
        }
    }

    async fn wait(&self, state: &str, duration: Duration) {
        self.waits.lock().unwrap().push((state.to_string(), duration));
    }
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
}

impl Recorder {
    fn entered(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| e.strip_prefix("enter ").map(str::to_string))
            .collect()
    }
}

impl ExecutionObserver for Recorder {
    fn state_entered(&self, name: &str, input: &Value) {
        self.events.lock().unwrap().push(format!("enter {name}"));
        let _ = input;
    }
    fn state_exited(&self, name: &str, output: &Value) {
        self.events.lock().unwrap().push(format!("exit {name} {output}"));
    }
    fn task_retry(&self, state: &str, failure: &TaskFailure, attempt: u32, delay: Duration) {
        self.events
            .lock()
            .unwrap()
            .push(format!("retry {state} #{attempt} after {}s: {failure}", delay.as_secs_f64()));
    }
    fn execution_ended(&self, outcome: &ExecutionOutcome) {
        let end = match outcome {
            ExecutionOutcome::Succeeded { .. } => "succeeded".to_string(),
            ExecutionOutcome::Failed { error, .. } => format!("failed {error}"),
            ExecutionOutcome::TimedOut { state } => format!("timed out in {state}"),
        };
        self.events.lock().unwrap().push(format!("end {end}"));
    }
}

fn context() -> ExecutionContext {
    ExecutionContext::new("Machine").with_execution_name("exec-1")
}

/// Checks one case of `run_cases.yaml`; returns what differs.
async fn check_run_case(case: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let machine = match StateMachine::from_json(&case["definition"]) {
        Ok(m) => m,
        Err(e) => return vec![format!("does not load: {e}")],
    };
    let fake = Fake::scripted(&case["responses"]);
    let recorder = Recorder::default();
    let input = case.get("input").cloned().unwrap_or(json!({}));
    let outcome = run_execution(&machine, input, &fake, &recorder, context()).await;
    match (case.get("output"), case.get("error"), &outcome) {
        (Some(expected), None, ExecutionOutcome::Succeeded { output }) => {
            if output != expected {
                problems.push(format!("output {output}, expected {expected}"));
            }
        }
        (None, Some(expected), ExecutionOutcome::Failed { error, cause, state }) => {
            if error != expected["error"].as_str().unwrap() {
                problems.push(format!("error {error}, expected {}", expected["error"]));
            }
            if state.as_deref() != expected["state"].as_str() {
                problems.push(format!("failed in {state:?}, expected {}", expected["state"]));
            }
            if let Some(c) = expected.get("cause").and_then(Value::as_str)
                && cause != c
            {
                problems.push(format!("cause {cause:?}, expected {c:?}"));
            }
            if let Some(c) = expected.get("cause_contains").and_then(Value::as_str)
                && !cause.contains(c)
            {
                problems.push(format!("cause {cause:?} lacks {c:?}"));
            }
        }
        (_, _, other) => problems.push(format!("ended {other:?}")),
    }
    if let Some(expected) = case.get("calls").and_then(Value::as_array) {
        let calls = fake.calls();
        if calls.len() != expected.len() {
            problems.push(format!("{} calls, expected {}: {calls:?}", calls.len(), expected.len()));
        }
        for (i, (call, want)) in calls.iter().zip(expected).enumerate() {
            for (key, value) in want.as_object().unwrap() {
                if &call[key] != value {
                    problems.push(format!("call {i}: {key} = {}, expected {value}", call[key]));
                }
            }
        }
    }
    if let Some(expected) = case.get("waits").and_then(Value::as_array) {
        let waits: Vec<(String, f64)> =
            fake.waits().into_iter().map(|(s, d)| (s, d.as_secs_f64())).collect();
        let want: Vec<(String, f64)> = expected
            .iter()
            .map(|w| (w[0].as_str().unwrap().to_string(), w[1].as_f64().unwrap()))
            .collect();
        if waits != want {
            problems.push(format!("waits {waits:?}, expected {want:?}"));
        }
    }
    if let Some(expected) = case.get("path").and_then(Value::as_array) {
        let want: Vec<String> = expected.iter().map(|s| s.as_str().unwrap().to_string()).collect();
        let got = recorder.entered();
        if got != want {
            problems.push(format!("path {got:?}, expected {want:?}"));
        }
    }
    problems
}

#[tokio::test]
async fn scripted_executions() {
    let cases = fixture("run_cases.yaml");
    let cases = cases.as_array().expect("a list of cases");
    assert!(cases.len() > 40, "the fixture lost cases");
    let mut failures = Vec::new();
    for case in cases {
        let problems = check_run_case(case).await;
        if !problems.is_empty() {
            failures.push(format!(
                "{}:\n  {}",
                case["name"].as_str().unwrap(),
                problems.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn choice_rules() {
    let rules = fixture("choice_rules.yaml");
    let mut failures = Vec::new();
    let mut checked = 0;
    for entry in rules.as_array().unwrap() {
        let mut rule = entry["rule"].clone();
        rule["Next"] = json!("Yes");
        let machine = StateMachine::from_json(&json!({
            "StartAt": "C",
            "States": {
                "C": {"Type": "Choice", "Choices": [rule], "Default": "No"},
                "Yes": {"Type": "Pass", "Result": "true", "End": true},
                "No": {"Type": "Pass", "Result": "false", "End": true}
            }
        }))
        .unwrap_or_else(|e| panic!("{}: {e}", entry["rule"]));
        for case in entry["cases"].as_array().unwrap() {
            let (input, expected) = (&case[0], case[1].to_string().replace('"', ""));
            let outcome =
                run_execution(&machine, input.clone(), &Fake::default(), &NullObserver, context())
                    .await;
            let got = match outcome {
                ExecutionOutcome::Succeeded { output } => output.as_str().unwrap().to_string(),
                ExecutionOutcome::Failed { error, .. } if error == "States.Runtime" => {
                    "runtime".to_string()
                }
                other => format!("{other:?}"),
            };
            checked += 1;
            if got != expected {
                failures.push(format!("{} on {input}: {got}, expected {expected}", entry["rule"]));
            }
        }
    }
    assert!(checked > 100, "only {checked} choice cases");
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn context_object() {
    let machine = StateMachine::from_json(&json!({
        "StartAt": "Nap",
        "States": {
            "Nap": {"Type": "Wait", "Seconds": 90, "Next": "Look"},
            "Look": {"Type": "Task", "Resource": "arn:x", "Parameters": {"ctx.$": "$$"},
                     "Retry": [{"ErrorEquals": ["E"]}], "End": true}
        }
    }))
    .unwrap();
    let fake = Fake::default();
    fake.answer("Look", json!({"fail": ["E", "again"]}));
    let start = time::macros::datetime!(2024-05-01 12:00:00 UTC);
    let ctx = ExecutionContext::new("Pipeline")
        .with_execution_name("run-7")
        .with_region("eu-west-1")
        .with_account_id("123456789012")
        .with_role_arn("arn:aws:iam::123456789012:role/sfn")
        .with_start_time(start);
    let outcome = run_execution(&machine, json!({"in": 1}), &fake, &NullObserver, ctx).await;
    let ExecutionOutcome::Succeeded { output } = outcome else { panic!("{outcome:?}") };
    let c = &output["ctx"];
    assert_eq!(
        c["Execution"]["Id"],
        "arn:aws:states:eu-west-1:123456789012:execution:Pipeline:run-7"
    );
    assert_eq!(c["Execution"]["Name"], "run-7");
    assert_eq!(c["Execution"]["Input"], json!({"in": 1}));
    assert_eq!(c["Execution"]["RoleArn"], "arn:aws:iam::123456789012:role/sfn");
    assert_eq!(c["Execution"]["StartTime"], "2024-05-01T12:00:00.000Z");
    assert_eq!(
        c["StateMachine"]["Id"],
        "arn:aws:states:eu-west-1:123456789012:stateMachine:Pipeline"
    );
    assert_eq!(c["StateMachine"]["Name"], "Pipeline");
    assert_eq!(c["State"]["Name"], "Look");
    assert_eq!(c["State"]["RetryCount"], 1);
    // The Wait was skipped by the executor, yet the execution's clock moved 90 seconds.
    let entered = c["State"]["EnteredTime"].as_str().unwrap();
    assert!(entered.starts_with("2024-05-01T12:01:30."), "{entered}");
    assert!(entered.ends_with('Z'), "{entered}");
}

#[tokio::test]
async fn default_context_names() {
    let ctx = ExecutionContext::new("M");
    assert_eq!(ctx.region, "local-1");
    assert_eq!(ctx.account_id, "000000000000");
    assert_eq!(ctx.state_machine_arn(), "arn:aws:states:local-1:000000000000:stateMachine:M");
    assert!(uuid::Uuid::parse_str(&ctx.execution_name).is_ok());
    assert_ne!(ExecutionContext::new("M").execution_name, ctx.execution_name);
}

#[tokio::test]
async fn task_timeout_is_states_timeout_and_not_task_failed() {
    let machine = StateMachine::from_json(&json!({
        "StartAt": "Slow",
        "States": {
            "Slow": {"Type": "Task", "Resource": "arn:x", "TimeoutSeconds": 1,
                     "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Wrong"},
                               {"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"}],
                     "End": true},
            "Wrong": {"Type": "Succeed"},
            "TimedOut": {"Type": "Pass", "OutputPath": "$.Error", "End": true}
        }
    }))
    .unwrap();
    let fake = Fake::default();
    fake.answer("Slow", json!({"hang": true}));
    let started = std::time::Instant::now();
    let outcome = run_execution(&machine, json!({}), &fake, &NullObserver, context()).await;
    assert_eq!(outcome, ExecutionOutcome::Succeeded { output: json!("States.Timeout") });
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(fake.calls()[0]["timeout"], 1);
}

#[tokio::test]
async fn timeout_seconds_path_is_read_from_the_input() {
    let machine = StateMachine::from_json(&json!({
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "arn:x", "TimeoutSecondsPath": "$.limit", "End": true}}
    }))
    .unwrap();
    let fake = Fake::default();
    let outcome =
        run_execution(&machine, json!({"limit": 40}), &fake, &NullObserver, context()).await;
    assert!(matches!(outcome, ExecutionOutcome::Succeeded { .. }), "{outcome:?}");
    assert_eq!(fake.calls()[0]["timeout"], 40);
    let outcome =
        run_execution(&machine, json!({"limit": 0}), &fake, &NullObserver, context()).await;
    let ExecutionOutcome::Failed { error, cause, .. } = outcome else { panic!() };
    assert_eq!(error, "States.Runtime");
    assert!(cause.contains("TimeoutSecondsPath '$.limit'"), "{cause}");
}

#[tokio::test]
async fn execution_timeout_cuts_a_wait_and_is_not_caught() {
    let machine = StateMachine::from_json(&json!({
        "TimeoutSeconds": 5,
        "StartAt": "Nap",
        "States": {"Nap": {"Type": "Wait", "Seconds": 10, "End": true}}
    }))
    .unwrap();
    let fake = Fake::default();
    let outcome = run_execution(&machine, json!({}), &fake, &NullObserver, context()).await;
    // TIMED_OUT, not FAILED: no Catch runs, and no cause.
    assert_eq!(outcome, ExecutionOutcome::TimedOut { state: "Nap".to_string() });
    let waits = fake.waits();
    assert_eq!(waits.len(), 1);
    assert!(
        waits[0].1 <= Duration::from_secs(5) && waits[0].1 > Duration::from_secs(4),
        "{waits:?}"
    );

    // Retry intervals count too, and a catch-all does not catch the execution's timeout.
    let machine = StateMachine::from_json(&json!({
        "TimeoutSeconds": 10,
        "StartAt": "T",
        "States": {
            "T": {"Type": "Task", "Resource": "arn:x",
                  "Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 4, "MaxAttempts": 10}],
                  "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true},
            "Caught": {"Type": "Succeed"}
        }
    }))
    .unwrap();
    let fake = Fake::default();
    for _ in 0..10 {
        fake.answer("T", json!({"fail": ["E", "x"]}));
    }
    let outcome = run_execution(&machine, json!({}), &fake, &NullObserver, context()).await;
    assert_eq!(outcome, ExecutionOutcome::TimedOut { state: "T".to_string() });
    assert_eq!(fake.calls().len(), 2, "4 s then 8 s (cut to the 6 s left) of retry waits");
}

#[tokio::test]
async fn payloads_over_256_kib_fail_the_execution() {
    let machine = StateMachine::from_json(&json!({
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "arn:x",
                         "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true},
                   "Caught": {"Type": "Succeed"}}
    }))
    .unwrap();
    let big = "x".repeat(300 * 1024);
    let fake = Fake::default();
    fake.answer("T", json!({"ok": big}));
    let outcome = run_execution(&machine, json!({}), &fake, &NullObserver, context()).await;
    let ExecutionOutcome::Failed { error, state, cause } = outcome else { panic!("{outcome:?}") };
    assert_eq!(error, "States.DataLimitExceeded");
    assert_eq!(state.as_deref(), Some("T"));
    assert!(cause.contains("the result of task T"), "{cause}");

    let outcome =
        run_execution(&machine, json!({"big": big}), &Fake::default(), &NullObserver, context())
            .await;
    assert_eq!(
        outcome,
        ExecutionOutcome::Failed {
            error: "States.DataLimitExceeded".to_string(),
            cause: format!(
                "the execution's input is {} bytes, more than the 262144-byte limit",
                300 * 1024 + 10
            ),
            state: None
        }
    );
}

#[tokio::test]
async fn observer_hears_states_retries_and_the_end() {
    let machine = StateMachine::from_json(&json!({
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Result": 1, "Next": "T"},
            "T": {"Type": "Task", "Resource": "arn:x", "Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 3}], "End": true}
        }
    }))
    .unwrap();
    let fake = Fake::default();
    fake.answer("T", json!({"fail": ["E", "boom"]}));
    let recorder = Recorder::default();
    run_execution(&machine, json!({}), &fake, &recorder, context()).await;
    assert_eq!(
        *recorder.events.lock().unwrap(),
        [
            "enter A",
            "exit A 1",
            "enter T",
            "retry T #1 after 3s: E: boom",
            "exit T 1",
            "end succeeded"
        ]
    );
}

#[tokio::test]
async fn full_jitter_waits_at_most_the_backoff() {
    let machine = StateMachine::from_json(&json!({
        "StartAt": "T",
        "States": {"T": {"Type": "Task", "Resource": "arn:x",
            "Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 8, "BackoffRate": 2, "MaxAttempts": 6, "JitterStrategy": "FULL"}],
            "End": true}}
    }))
    .unwrap();
    let fake = Fake::default();
    for _ in 0..6 {
        fake.answer("T", json!({"fail": ["E", "x"]}));
    }
    run_execution(&machine, json!({}), &fake, &NullObserver, context()).await;
    let waits = fake.waits();
    assert_eq!(waits.len(), 6);
    let mut ceiling = 8.0;
    for (_, d) in &waits {
        assert!(d.as_secs_f64() <= ceiling, "{waits:?}");
        ceiling *= 2.0;
    }
    // Six uniform draws all landing on their ceiling would mean no jitter at all.
    assert!(
        waits
            .iter()
            .zip([8.0, 16.0, 32.0, 64.0, 128.0, 256.0])
            .any(|((_, d), c)| d.as_secs_f64() < c)
    );
}

#[tokio::test]
async fn default_wait_sleeps() {
    struct Sleepy;
    #[async_trait::async_trait]
    impl TaskExecutor for Sleepy {
        async fn invoke(&self, call: TaskCall<'_>) -> Result<Value, TaskFailure> {
            Ok(call.parameters)
        }
    }
    let machine = StateMachine::from_json(&json!({
        "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "End": true}}
    }))
    .unwrap();
    let started = std::time::Instant::now();
    let outcome = run_execution(&machine, json!({"a": 1}), &Sleepy, &NullObserver, context()).await;
    assert_eq!(outcome, ExecutionOutcome::Succeeded { output: json!({"a": 1}) });
    assert!(started.elapsed() >= Duration::from_secs(1));
}

// --- The real template's state machine ------------------------------------------------------

fn pipeline() -> (Template, StateMachine) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../cloudformation/pipeline.yaml");
    let template = Template::load(path).unwrap();
    let (_, definition) = template.state_machine(&LocalContext::default(), None).unwrap();
    let machine = StateMachine::from_json(&definition).unwrap_or_else(|e| panic!("{e}"));
    (template, machine)
}

/// Plays the pipeline's Lambdas and Batch: Init plans `nodes` nodes, submits return job ids,
/// Watch answers from `watch` in turn.
fn pipeline_fake(nodes: u64, watch: &[Value]) -> Fake {
    let fake = Fake::default();
    fake.answer(
        "Init",
        json!({"ok": {"StatusCode": 200, "Payload": {
            "workflowId": "wf-1", "nodes": nodes, "ids": 120, "idsPerNode": 40, "pollSeconds": 30,
            "timeoutSeconds": 43200, "nodeMap": null}}}),
    );
    for state in [
        "SubmitProcureArray",
        "SubmitProcessArray",
        "SubmitEgressArray",
        "SubmitProcureSingle",
        "SubmitProcessSingle",
        "SubmitEgressSingle",
    ] {
        fake.answer(state, json!({"ok": {"JobId": format!("job-{state}"), "JobName": "n"}}));
    }
    for w in watch {
        fake.answer("Watch", json!({"ok": {"StatusCode": 200, "Payload": w}}));
    }
    fake
}

#[test]
fn pipeline_tasks_are_listed_and_bound_to_template_resources() {
    let (template, machine) = pipeline();
    assert_eq!(machine.start_at(), "Init");
    let tasks = machine.task_resources();
    let states: Vec<&str> = tasks.iter().map(|t| t.state).collect();
    for s in [
        "Init",
        "SubmitProcureArray",
        "SubmitProcessArray",
        "SubmitEgressArray",
        "SubmitProcureSingle",
        "SubmitProcessSingle",
        "SubmitEgressSingle",
        "Watch",
    ] {
        assert!(states.contains(&s), "{s} missing from {states:?}");
    }
    for task in &tasks {
        let params = task.parameters.unwrap_or_else(|| panic!("{} has no Parameters", task.state));
        match task.resource {
            "arn:aws:states:::lambda:invoke" => {
                let f = params["FunctionName"].as_str().unwrap();
                let id = template.logical_id_for_arn(f).unwrap_or_else(|| panic!("{f}"));
                assert_eq!(template.resource(id).unwrap().resource_type, "AWS::Lambda::Function");
            }
            "arn:aws:states:::batch:submitJob" => {
                let q = template.logical_id_for_arn(params["JobQueue"].as_str().unwrap()).unwrap();
                let d =
                    template.logical_id_for_arn(params["JobDefinition"].as_str().unwrap()).unwrap();
                assert_eq!(template.resource(q).unwrap().resource_type, "AWS::Batch::JobQueue");
                assert_eq!(
                    template.resource(d).unwrap().resource_type,
                    "AWS::Batch::JobDefinition"
                );
            }
            // The cleanup: the job comes from the run's data, the reason names the run.
            "arn:aws:states:::aws-sdk:batch:terminateJob" => {
                assert!(params["JobId.$"].as_str().unwrap().starts_with("$.jobs."));
                assert!(params["Reason.$"].is_string());
            }
            other => panic!("{}: unexpected resource {other}", task.state),
        }
    }
}

#[tokio::test]
async fn pipeline_runs_arrays_then_polls_until_done() {
    let (template, machine) = pipeline();
    let fake = pipeline_fake(
        3,
        &[
            json!({"done": false, "failed": false, "error": null, "cause": null, "progress": {"succeeded": 1}}),
            json!({"done": true, "failed": false, "error": null, "cause": null, "progress": {"succeeded": 9}}),
        ],
    );
    let recorder = Recorder::default();
    let outcome = run_execution(&machine, json!({"ids": 120}), &fake, &recorder, context()).await;
    let ExecutionOutcome::Succeeded { output } = outcome else { panic!("{outcome:?}") };
    assert_eq!(output["plan"]["workflowId"], "wf-1");
    assert_eq!(output["jobs"]["egress"], json!({"JobId": "job-SubmitEgressArray"}));
    assert_eq!(output["status"]["progress"], json!({"succeeded": 9}));
    assert_eq!(
        recorder.entered(),
        [
            "Init",
            "ChooseJobShape",
            "SubmitProcureArray",
            "SubmitProcessArray",
            "SubmitEgressArray",
            "Watch",
            "IsDone",
            "WaitForJobs",
            "Watch",
            "IsDone",
            "Succeeded"
        ]
    );
    assert_eq!(fake.waits(), [("WaitForJobs".to_string(), Duration::from_secs(30))]);

    let calls = fake.calls();
    assert_eq!(calls[0]["parameters"]["Payload"], json!({"ids": 120}));
    let init_fn = calls[0]["parameters"]["FunctionName"].as_str().unwrap();
    assert_eq!(template.logical_id_for_arn(init_fn), Some("InitFunction"));
    let process = calls.iter().find(|c| c["state"] == "SubmitProcessArray").unwrap();
    let p = &process["parameters"];
    assert_eq!(p["JobName"], "nton-process-wf-1");
    assert_eq!(p["ArrayProperties"], json!({"Size": 3}));
    assert_eq!(p["DependsOn"], json!([{"JobId": "job-SubmitProcureArray", "Type": "N_TO_N"}]));
    assert_eq!(
        template.logical_id_for_arn(p["JobQueue"].as_str().unwrap()),
        Some("ProcessJobQueue")
    );
    assert_eq!(
        template.logical_id_for_arn(p["JobDefinition"].as_str().unwrap()),
        Some("ProcessJobDefinition")
    );
    assert_eq!(
        p["ContainerOverrides"]["Environment"],
        json!([{"Name": "NTON_WORKFLOW_ID", "Value": "wf-1"}])
    );
    let watch = calls.iter().find(|c| c["state"] == "Watch").unwrap();
    assert_eq!(
        watch["parameters"]["Payload"]["jobs"]["process"],
        json!({"JobId": "job-SubmitProcessArray"})
    );
}

#[tokio::test]
async fn pipeline_single_node_submits_plain_jobs_and_reports_failure() {
    let (_, machine) = pipeline();
    let fake = pipeline_fake(
        1,
        &[
            json!({"done": true, "failed": true, "error": "Nton.StageFailed", "cause": "procure: node 0 failed", "progress": {}}),
        ],
    );
    let recorder = Recorder::default();
    let outcome = run_execution(&machine, json!({}), &fake, &recorder, context()).await;
    assert_eq!(
        outcome,
        ExecutionOutcome::Failed {
            error: "Nton.StageFailed".to_string(),
            cause: "procure: node 0 failed".to_string(),
            state: Some("Failed".to_string())
        }
    );
    assert_eq!(
        recorder.entered(),
        [
            "Init",
            "ChooseJobShape",
            "SubmitProcureSingle",
            "SubmitProcessSingle",
            "SubmitEgressSingle",
            "Watch",
            "IsDone",
            "Failed"
        ]
    );
    let single = fake.calls().into_iter().find(|c| c["state"] == "SubmitProcessSingle").unwrap();
    assert!(single["parameters"].get("ArrayProperties").is_none());
    assert_eq!(single["parameters"]["DependsOn"], json!([{"JobId": "job-SubmitProcureSingle"}]));
}

#[tokio::test]
async fn pipeline_retries_throttled_submits() {
    let (_, machine) = pipeline();
    let fake = Fake::default();
    fake.answer("Init", json!({"ok": {"Payload": {"workflowId": "w", "nodes": 2, "ids": 2, "idsPerNode": 1, "pollSeconds": 5, "timeoutSeconds": 3600, "nodeMap": null}}}));
    fake.answer(
        "SubmitProcureArray",
        json!({"fail": ["Batch.TooManyRequestsException", "slow down"]}),
    );
    fake.answer(
        "SubmitProcureArray",
        json!({"fail": ["Batch.TooManyRequestsException", "slow down"]}),
    );
    fake.answer("SubmitProcureArray", json!({"ok": {"JobId": "p"}}));
    fake.answer("SubmitProcessArray", json!({"fail": ["Batch.ClientException", "bad request"]}));
    let outcome = run_execution(&machine, json!({}), &fake, &NullObserver, context()).await;
    let ExecutionOutcome::Failed { error, cause, state } = outcome else { panic!("{outcome:?}") };
    // The failed submission goes through the cleanup, which terminates the one job submitted.
    assert_eq!(
        (error.as_str(), cause.as_str(), state.as_deref()),
        ("Batch.ClientException", "bad request", Some("RunFailed"))
    );
    let terminated: Vec<Value> = fake
        .calls()
        .into_iter()
        .filter(|c| c["resource"] == "arn:aws:states:::aws-sdk:batch:terminateJob")
        .map(|c| c["parameters"].clone())
        .collect();
    assert_eq!(
        terminated,
        [json!({"JobId": "p", "Reason": "nton run w failed with Batch.ClientException"})]
    );
    assert_eq!(
        fake.waits(),
        [
            ("SubmitProcureArray".to_string(), Duration::from_secs(2)),
            ("SubmitProcureArray".to_string(), Duration::from_secs(4))
        ]
    );
}
