//! Generated state machines ([`nton_tests::sfn_gen`]) executed by LocalStack's Step Functions
//! and by nton's interpreter (`nton_engine::asl`), with the same mocked Lambda answers: both
//! must enter the same states, schedule the same task parameters, and end with the same
//! status, output, error and cause.
//!
//! Machines: [`FIXED_COUNT`] from [`FIXED_SEED`] (the same every run) and [`EXTRA_COUNT`]
//! from `NTON_SFN_GEN_SEED` (or, when unset, a seed from the clock), both printed. A
//! divergence is shrunk (states and fields dropped while it still diverges) and printed as a
//! definition and an input that reproduce it.
//!
//! Where LocalStack departs from AWS's documented behaviour, AWS's answer is the expected
//! one: [`LOCALSTACK_DEPARTURES`] names each such case with its reason and the developer
//! guide's words, and nton is held to AWS's answer there. Where nton departs, the generator's
//! `PENDING_ENGINE_FIXES` keeps the construct out until the interpreter is fixed.
//!
//! Everything runs in one test function: one LocalStack start serves every machine.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent, HistoryEventType};
use futures::StreamExt;
use nton_engine::asl::{
    ExecutionContext, ExecutionObserver, ExecutionOutcome, StateMachine, TaskCall, TaskExecutor,
    TaskFailure, run_execution,
};
use nton_tests::localstack::{self, ACCOUNT_ID, REGION};
use nton_tests::sfn_gen::{self, Generated, MockAnswer, RANDOM_KEY_PREFIX};
use serde_json::{Value, json};

/// The seed every run uses.
const FIXED_SEED: u64 = 20_261_202;
/// Machines from [`FIXED_SEED`].
const FIXED_COUNT: u64 = 230;
/// Machines from the extra seed.
const EXTRA_COUNT: u64 = 80;
/// Machines in flight at once, each created, executed, read back and deleted on LocalStack
/// (2 cores: more only queue inside LocalStack).
const IN_FLIGHT: usize = 16;
/// How long one execution may run on LocalStack. A generated machine ends within seconds:
/// every transition goes forward, a Wait waits 0 s, and a Task's retries wait at most
/// 2 retriers x 2 attempts x 1.5 s. Past this the execution is stopped and reported as the
/// named departure `still-running-on-localstack`, not waited for.
const EXECUTION_LIMIT: Duration = Duration::from_secs(30);
/// Shrink tries per divergence (each one runs on LocalStack).
const SHRINK_TRIES: usize = 60;

/// What one engine did with one machine.
#[derive(Debug, Clone, PartialEq)]
struct Trace {
    events: Vec<Event>,
    end: End,
}

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Entered(String),
    Task { state: String, parameters: Value },
}

#[derive(Debug, Clone, PartialEq)]
enum End {
    /// The engine refused the definition (CreateStateMachine or nton's loader); the message.
    Refused(String),
    /// Still RUNNING on LocalStack after [`EXECUTION_LIMIT`] (then stopped).
    StillRunning,
    Finished {
        /// SUCCEEDED or FAILED.
        status: String,
        output: Option<Value>,
        error: Option<String>,
        cause: Option<String>,
    },
}

/// A known place where LocalStack answers differently from AWS's documentation.
struct Departure {
    name: &'static str,
    /// Why LocalStack's answer is not AWS's, with the developer guide's words.
    reason: &'static str,
    /// Whether this departure explains how LocalStack's trace (the first) differs from
    /// nton's (the second) on this machine.
    explains: fn(&Generated, &Trace, &Trace) -> bool,
    /// Whether nton's trace (the second) gives the answer AWS documents.
    aws_answer: fn(&Generated, &Trace, &Trace) -> bool,
}

/// Where LocalStack departs from AWS's documented behaviour. Each run prints how many
/// machines each entry explained (a random run need not meet every entry, so an unused one
/// is reported, not failed).
const LOCALSTACK_DEPARTURES: &[Departure] = &[
    Departure {
        name: "still-running-on-localstack",
        reason: "LocalStack left the execution RUNNING past the per-execution limit; nothing in a \
                 generated machine waits that long (see EXECUTION_LIMIT), and the developer \
                 guide's states all end: a Pass or Choice state passes its input on, a Wait \
                 waits its Seconds, a Map or Parallel state ends when its iterations or branches \
                 have (Map state, Parallel state). The only cause seen so far is LocalStack's \
                 JSONata JVM install (see sfn_gen::reads_variables), kept away from it",
        explains: |_, ls, _| ls.end == End::StillRunning,
        aws_answer: |_, _, nton| matches!(nton.end, End::Finished { .. }),
    },
    Departure {
        name: "no-choice-matched",
        reason: "LocalStack fails a Choice with no matching rule and no Default with States.Runtime \
                 ('No branching option reached'); the developer guide (Handling errors, error \
                 names): \"States.NoChoiceMatched: A Choice state failed to find a match for the \
                 condition field extracted from its input\"",
        explains: |_, ls, nton| {
            error(ls) == Some("States.Runtime")
                && cause(ls).is_some_and(|c| c.contains("No branching option reached"))
                && error(nton) == Some("States.NoChoiceMatched")
        },
        aws_answer: |_, _, nton| error(nton) == Some("States.NoChoiceMatched"),
    },
    Departure {
        name: "choice-rule-on-a-missing-variable",
        reason: "LocalStack evaluates a Choice rule whose Variable is not in the input as false; \
                 the developer guide (Choice state, Choice Rules) guards such a rule with \
                 IsPresent: \"the StringEquals rule is only evaluated if \
                 $.keyThatMightNotExist exists because of the preceding IsPresent Choice \
                 Rule\", and reading a path that is not in the input fails the state \
                 (States.Runtime)",
        explains: |_, ls, nton| {
            error(nton) == Some("States.Runtime")
                && cause(nton).is_some_and(|c| c.contains("the choice rule"))
                && ls.events.starts_with(&nton.events)
        },
        aws_answer: |_, _, nton| error(nton) == Some("States.Runtime"),
    },
    Departure {
        name: "intrinsic-failure-is-states-runtime",
        reason: "LocalStack names a failed intrinsic function States.Runtime; the developer guide \
                 (Handling errors, error names): \"States.IntrinsicFailure: An attempt to invoke \
                 an intrinsic function within a payload template failed\"",
        // nton's trace names it wherever it went: the end, a caught error in the output, or
        // the input a later state's cause quotes.
        explains: |m, ls, nton| {
            errors_in(ls).contains(&"States.Runtime".to_string())
                && (format!("{nton:?}").contains("States.IntrinsicFailure")
                    || caught_where_localstack_failed(m, ls, nton))
        },
        // Caught: Catch States.TaskFailed and States.ALL match every error name but
        // States.Timeout and States.Runtime (Handling errors, error names).
        aws_answer: |m, ls, nton| {
            format!("{nton:?}").contains("States.IntrinsicFailure")
                || caught_where_localstack_failed(m, ls, nton)
        },
    },
    Departure {
        name: "states-all-catches-states-runtime",
        reason: "LocalStack catches States.Runtime with Catch States.ALL; the developer guide \
                 (Handling errors, States.ALL): \"A retry or catch on States.ALL won't catch \
                 States.Runtime errors\"",
        explains: |m, ls, nton| {
            // Each of nton's events is in LocalStack's (whose are sorted when the machine
            // runs branches: `normalized`), and LocalStack went on.
            error(nton) == Some("States.Runtime")
                && ls.events.len() > nton.events.len()
                && nton.events.iter().all(|e| ls.events.contains(e))
                && last_entered(nton).is_some_and(|s| {
                    m.definition["States"][s]["Catch"].to_string().contains("States.ALL")
                })
        },
        aws_answer: |_, _, nton| error(nton) == Some("States.Runtime"),
    },
    Departure {
        name: "states-all-retries-states-runtime",
        reason: "LocalStack retries a States.Runtime error (a ResultSelector path missing from the \
                 task's result) under Retry on States.ALL, and evaluates the retry's Parameters \
                 against the failed attempt's result, not the state's input (its history: \
                 TaskSucceeded, then TaskFailed 'The JSONPath '$.b' could not be found in the \
                 input '{\"StatusCode\":200,...}''); the developer guide (Handling errors, \
                 States.ALL): \"A retry or catch on States.ALL won't catch States.Runtime \
                 errors\"",
        // nton failed on a ResultSelector path in a state retried on States.ALL, and both
        // engines agree until that state was entered.
        explains: |m, ls, nton| {
            let Some(failed) = last_entered(nton) else {
                return false;
            };
            let state = &m.definition["States"][failed];
            let entered = nton.events.iter().position(|e| *e == Event::Entered(failed.into()));
            error(nton) == Some("States.Runtime")
                && state.get("ResultSelector").is_some()
                && state["Retry"].to_string().contains("States.ALL")
                && entered.is_some_and(|k| ls.events.get(..=k) == nton.events.get(..=k))
        },
        aws_answer: |_, _, nton| error(nton) == Some("States.Runtime"),
    },
    Departure {
        name: "array-range-with-a-negative-step",
        reason: "LocalStack fails States.ArrayRange whenever the step is negative, even \
                 States.ArrayRange(5, 4, -1); the developer guide (Intrinsic functions, \
                 States.ArrayRange) takes a start, an end and a step 'the increment value' and \
                 names only a 1,000-item limit, so [5, 4] is the answer. The guide gives no \
                 example of a negative step: an AWS execution should confirm it",
        explains: |m, ls, nton| {
            NEGATIVE_RANGE.is_match(&m.definition.to_string())
                && errors_in(ls).contains(&"States.Runtime".to_string())
                && !errors_in(nton).contains(&"States.Runtime".to_string())
        },
        aws_answer: |_, _, nton| !cause(nton).is_some_and(|c| c.contains("ArrayRange")),
    },
    Departure {
        name: "array-unique-of-arrays",
        reason: "LocalStack fails States.ArrayUnique when the items are arrays or objects \
                 (it deduplicates through a Python dict: 'unhashable type'); the developer \
                 guide (Intrinsic functions, States.ArrayUnique): it \"removes duplicate values \
                 from an array and returns an array containing only unique elements\", for any \
                 array",
        explains: |m, ls, nton| {
            m.definition.to_string().contains("States.ArrayUnique")
                && cause(ls).is_some_and(|c| c.contains("unhashable"))
                && !errors_in(nton).contains(&"States.Runtime".to_string())
        },
        aws_answer: |_, _, nton| !cause(nton).is_some_and(|c| c.contains("ArrayUnique")),
    },
    Departure {
        name: "parallel-branch-states-error-lost",
        reason: "when a Parallel branch fails with a States.* error, LocalStack re-raises it as a \
                 custom error name, which its own check refuses, so the execution fails with \
                 States.Runtime and the cause \"ValueError(Custom Error Names MUST NOT begin with \
                 the prefix 'States.' ...)\" (asl/component/state/state_execution/\
                 state_parallel/branches_decl.py); the developer guide (Parallel state): a \
                 branch's failure fails the Parallel state, which Retry and Catch then handle \
                 like any state's error",
        explains: |_, ls, _| {
            cause(ls)
                .is_some_and(|c| c.contains("Custom Error Names MUST NOT begin with the prefix"))
        },
        // What AWS answers then depends on the branch's own error (another entry or none).
        aws_answer: |_, _, nton| !cause(nton).is_some_and(|c| c.contains("Custom Error Names")),
    },
    Departure {
        name: "base64-decode-to-non-ascii",
        reason: "LocalStack fails States.Base64Decode when the decoded bytes are not ASCII \
                 ('w6k=' is UTF-8 for 'é'); the developer guide (Intrinsic functions, \
                 States.Base64Decode): it decodes base64 data into a string, for any encoded \
                 string of up to 10,000 characters",
        explains: |m, ls, nton| {
            m.definition.to_string().contains("States.Base64Decode")
                && m.input["b64"] == json!("w6k=")
                && errors_in(ls).contains(&"States.Runtime".to_string())
                && !errors_in(nton).contains(&"States.Runtime".to_string())
        },
        aws_answer: |_, _, nton| !cause(nton).is_some_and(|c| c.contains("Base64Decode")),
    },
    Departure {
        name: "json-text-escapes-non-ascii",
        reason: "LocalStack writes non-ASCII characters in JSON text (States.JsonToString, \
                 causes) as \\u escapes (Python's json.dumps); the developer guide \
                 (Intrinsic functions, States.JsonToString) says only that it returns the JSON \
                 as a string, and RFC 8259 section 7 makes the escape optional: the same text \
                 with 'é' written as itself (nton's answer) is expected",
        explains: |_, ls, nton| {
            let text = format!("{ls:?}");
            text.contains("\\\\u00e9") && text.replace("\\\\u00e9", "é") == format!("{nton:?}")
        },
        aws_answer: |_, _, nton| format!("{nton:?}").contains('é'),
    },
];

/// `States.ArrayRange(a, b, -k)`.
static NEGATIVE_RANGE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"States\.ArrayRange\([^()]*,\s*-\d+\)").expect("a valid pattern")
});

fn error(t: &Trace) -> Option<&str> {
    match &t.end {
        End::Finished { error, .. } => error.as_deref(),
        End::Refused(_) | End::StillRunning => None,
    }
}

fn cause(t: &Trace) -> Option<&str> {
    match &t.end {
        End::Finished { cause, .. } => cause.as_deref(),
        End::Refused(_) | End::StillRunning => None,
    }
}

/// The execution's error and every error a Catch put into its output.
fn errors_in(t: &Trace) -> Vec<String> {
    fn caught(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(fields) => {
                if let Some(Value::String(e)) = fields.get("Error") {
                    out.push(e.clone());
                }
                fields.values().for_each(|v| caught(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| caught(v, out)),
            _ => {}
        }
    }
    let mut out: Vec<String> = error(t).map(str::to_string).into_iter().collect();
    if let End::Finished { output: Some(output), .. } = &t.end {
        caught(output, &mut out);
    }
    out
}

/// nton went on from the state LocalStack failed in to one of that state's Catch targets.
fn caught_where_localstack_failed(m: &Generated, ls: &Trace, nton: &Trace) -> bool {
    let Some(failed) = last_entered(ls) else {
        return false;
    };
    let targets: Vec<String> = m.definition["States"][failed]["Catch"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["Next"].as_str().map(str::to_string))
        .collect();
    let entered: Vec<&str> = nton
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Entered(name) => Some(name.as_str()),
            Event::Task { .. } => None,
        })
        .collect();
    entered.windows(2).any(|w| w[0] == failed && targets.iter().any(|t| t == w[1]))
}

fn last_entered(t: &Trace) -> Option<&str> {
    t.events.iter().rev().find_map(|e| match e {
        Event::Entered(name) => Some(name.as_str()),
        Event::Task { .. } => None,
    })
}

// ---- LocalStack ---------------------------------------------------------------------------

async fn localstack_trace(sfn: &aws_sdk_sfn::Client, m: &Generated) -> anyhow::Result<Trace> {
    let created = sfn
        .create_state_machine()
        .name(&m.name)
        .definition(m.definition.to_string())
        .role_arn(format!("arn:aws:iam::{ACCOUNT_ID}:role/{}-role", m.name))
        .send()
        .await;
    let machine_arn = match created {
        Ok(c) => c.state_machine_arn().to_string(),
        Err(e) => {
            let e = e.into_service_error();
            if e.is_invalid_definition() {
                return Ok(Trace { events: Vec::new(), end: End::Refused(e.to_string()) });
            }
            return Err(e).with_context(|| format!("CreateStateMachine {}", m.name));
        }
    };
    let target = if m.mocks.is_empty() {
        machine_arn
    } else {
        format!("{machine_arn}#{}", sfn_gen::TEST_CASE)
    };
    let execution = sfn
        .start_execution()
        .state_machine_arn(&target)
        .input(m.input.to_string())
        .send()
        .await
        .with_context(|| format!("StartExecution {target}"))?;
    let arn = execution.execution_arn();
    let started = Instant::now();
    let mut still_running = false;
    let described = loop {
        let d = sfn.describe_execution().execution_arn(arn).send().await?;
        if *d.status() != ExecutionStatus::Running {
            break d;
        }
        if started.elapsed() > EXECUTION_LIMIT {
            // Stopped so that it costs LocalStack nothing more; the history so far is kept.
            sfn.stop_execution()
                .execution_arn(arn)
                .send()
                .await
                .with_context(|| format!("StopExecution {arn}"))?;
            still_running = true;
            break d;
        }
        // Each poll costs LocalStack CPU that the executions in flight need.
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let mut history: Vec<HistoryEvent> = Vec::new();
    let mut pages = sfn.get_execution_history().execution_arn(arn).into_paginator().send();
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
            let d = e.task_scheduled_event_details().context("TaskScheduled has details")?;
            events.push(Event::Task {
                state: current.clone(),
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
    // Deleted so that a shrunk variant can be created under the same name (the mock
    // file's test case is found by the machine's name).
    sfn.delete_state_machine()
        .state_machine_arn(described.state_machine_arn())
        .send()
        .await
        .with_context(|| format!("DeleteStateMachine {}", m.name))?;
    if still_running {
        return Ok(Trace { events, end: End::StillRunning });
    }
    Ok(Trace {
        events,
        end: End::Finished {
            status: described.status().as_str().to_string(),
            output,
            error: described.error().map(str::to_string),
            cause: described.cause().map(str::to_string),
        },
    })
}

// ---- nton's interpreter -------------------------------------------------------------------

/// Answers Task states with the generated answers, in invocation order (retries included);
/// the last answer repeats, as the mock file's last range does.
struct MockedTasks<'a> {
    mocks: &'a BTreeMap<String, Vec<MockAnswer>>,
    invocations: Mutex<BTreeMap<String, usize>>,
    events: Mutex<Vec<Event>>,
}

#[async_trait::async_trait]
impl TaskExecutor for MockedTasks<'_> {
    async fn invoke(&self, call: TaskCall<'_>) -> Result<Value, TaskFailure> {
        self.events.lock().unwrap().push(Event::Task {
            state: call.state.to_string(),
            parameters: call.parameters.clone(),
        });
        let n = {
            let mut invocations = self.invocations.lock().unwrap();
            let n = invocations.entry(call.state.to_string()).or_insert(0);
            *n += 1;
            *n - 1
        };
        let answers = self.mocks.get(call.state).ok_or_else(|| {
            TaskFailure::new("MockMissing", format!("no answers for {}", call.state))
        })?;
        match &answers[n.min(answers.len() - 1)] {
            MockAnswer::Return(v) => Ok(v.clone()),
            MockAnswer::Throw { error, cause } => Err(TaskFailure::new(error, cause)),
        }
    }

    async fn wait(&self, _state: &str, _duration: Duration) {}
}

impl ExecutionObserver for MockedTasks<'_> {
    fn state_entered(&self, name: &str, _input: &Value) {
        self.events.lock().unwrap().push(Event::Entered(name.to_string()));
    }
    fn state_exited(&self, _name: &str, _output: &Value) {}
}

async fn nton_trace(m: &Generated) -> Trace {
    let machine = match StateMachine::from_json(&m.definition) {
        Ok(machine) => machine,
        Err(e) => {
            return Trace { events: Vec::new(), end: End::Refused(e.to_string()) };
        }
    };
    let tasks = MockedTasks {
        mocks: &m.mocks,
        invocations: Mutex::new(BTreeMap::new()),
        events: Mutex::new(Vec::new()),
    };
    let ctx = ExecutionContext::new(&m.name).with_region(REGION).with_account_id(ACCOUNT_ID);
    let outcome = run_execution(&machine, m.input.clone(), &tasks, &tasks, ctx).await;
    let end = match outcome {
        ExecutionOutcome::Succeeded { output } => End::Finished {
            status: "SUCCEEDED".into(),
            output: Some(output),
            error: None,
            cause: None,
        },
        ExecutionOutcome::TimedOut { .. } => End::Finished {
            status: "TIMED_OUT".into(),
            output: None,
            error: Some("States.Timeout".into()),
            cause: None,
        },
        // Step Functions leaves out an empty error or cause (a Fail state without them).
        ExecutionOutcome::Failed { error, cause, .. } => End::Finished {
            status: "FAILED".into(),
            output: None,
            error: (!error.is_empty()).then_some(error),
            cause: (!cause.is_empty()).then_some(cause),
        },
    };
    Trace { events: tasks.events.into_inner().unwrap(), end }
}

// ---- comparing ----------------------------------------------------------------------------

/// Values no two runs share, replaced by their shape: a field whose key starts with
/// [`RANDOM_KEY_PREFIX`] holds a UUID (version 4) or an integer from `States.MathRandom`.
fn normalize(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (key, v) in fields.iter_mut() {
                if key.starts_with(RANDOM_KEY_PREFIX) {
                    *v = match &*v {
                        Value::String(s)
                            if uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 4) =>
                        {
                            json!("<uuid v4>")
                        }
                        Value::Number(n) if n.is_i64() => json!("<integer>"),
                        other => json!(format!("<not a UUID or an integer: {other}>")),
                    };
                } else {
                    normalize(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// The states inside a Parallel state's branches, and for each Parallel state the errors a
/// failing branch of it can end with.
fn parallel_branches(definition: &Value) -> (Vec<String>, Vec<Vec<String>>) {
    let mut inner = Vec::new();
    let mut errors = Vec::new();
    for state in definition["States"].as_object().into_iter().flat_map(|s| s.values()) {
        let mut can_fail = Vec::new();
        for branch in state["Branches"].as_array().into_iter().flatten() {
            for (name, s) in branch["States"].as_object().into_iter().flatten() {
                inner.push(name.clone());
                if let Some(e) = s["Error"].as_str() {
                    can_fail.push(e.to_string());
                }
                if s.get("Parameters").is_some() {
                    // A payload template fails as an intrinsic or a path failure.
                    can_fail.extend(["States.IntrinsicFailure".into(), "States.Runtime".into()]);
                }
            }
        }
        if !can_fail.is_empty() {
            errors.push(can_fail);
        }
    }
    (inner, errors)
}

/// Both engines failed in the same Parallel state, each with an error one of its failing
/// branches raises. The developer guide (Parallel state): "If any branch fails, because of
/// an unhandled error or by transitioning to a Fail state, the entire Parallel state is
/// considered to have failed and all its branches are stopped"; it names no order among
/// branches that run at once, so which failing branch's error wins, and which sibling
/// states were entered before the stop, is a race in either engine, not a divergence.
fn parallel_race(m: &Generated, ls: &Trace, nton: &Trace) -> bool {
    let (End::Finished { error: Some(a), .. }, End::Finished { error: Some(b), .. }) =
        (&ls.end, &nton.end)
    else {
        return false;
    };
    ls.events == nton.events
        && parallel_branches(&m.definition)
            .1
            .iter()
            .any(|can_fail| can_fail.contains(a) && can_fail.contains(b))
}

fn normalized(mut trace: Trace, concurrent: bool, definition: &Value) -> Trace {
    if concurrent {
        // Which sibling branch states a failing Parallel entered before it stopped them is a
        // race (see parallel_race); a branch's result is compared in the Parallel's output.
        let (inner, _) = parallel_branches(definition);
        trace.events.retain(|e| !matches!(e, Event::Entered(name) if inner.contains(name)));
    }
    for event in &mut trace.events {
        if let Event::Task { parameters, .. } = event {
            normalize(parameters);
        }
    }
    if let End::Finished { output: Some(output), .. } = &mut trace.end {
        normalize(output);
    }
    if concurrent {
        // Branches and iterations interleave: compare what was entered, not in which order.
        trace.events.sort_by_key(|e| format!("{e:?}"));
    }
    trace
}

/// What kind of divergence this is, so that shrinking keeps to the same one: where the
/// traces part, and each engine's status and error there.
fn signature(ls: &Trace, nton: &Trace) -> String {
    let end = |t: &Trace| match &t.end {
        End::Refused(_) => "refused".to_string(),
        End::StillRunning => "still running".to_string(),
        End::Finished { status, error, .. } => {
            format!("{status} {}", error.as_deref().unwrap_or("-"))
        }
    };
    let first = (0..ls.events.len().max(nton.events.len()))
        .find(|&i| ls.events.get(i) != nton.events.get(i));
    let kind = |e: Option<&Event>| match e {
        None => "none",
        Some(Event::Entered(_)) => "entered",
        Some(Event::Task { .. }) => "task",
    };
    match first {
        Some(i) => format!(
            "event: LocalStack {} / nton {}; ends {} / {}",
            kind(ls.events.get(i)),
            kind(nton.events.get(i)),
            end(ls),
            end(nton)
        ),
        None => format!("end: LocalStack {} / nton {}", end(ls), end(nton)),
    }
}

/// The first place two traces differ, for a person; `None` when they agree.
fn divergence(ls: &Trace, nton: &Trace) -> Option<String> {
    for i in 0..ls.events.len().max(nton.events.len()) {
        let (a, b) = (ls.events.get(i), nton.events.get(i));
        if a != b {
            return Some(format!("event {i} differs:\n  LocalStack: {a:?}\n  nton:       {b:?}"));
        }
    }
    let agree = match (&ls.end, &nton.end) {
        (End::Refused(_), End::Refused(_)) => true,
        (a, b) => same_end(a, b),
    };
    (!agree).then(|| {
        format!("the end differs:\n  LocalStack: {:?}\n  nton:       {:?}", ls.end, nton.end)
    })
}

fn same_end(a: &End, b: &End) -> bool {
    let (
        End::Finished { status: s1, output: o1, error: e1, cause: c1 },
        End::Finished { status: s2, output: o2, error: e2, cause: c2 },
    ) = (a, b)
    else {
        return false;
    };
    s1 == s2 && o1 == o2 && e1 == e2 && same_cause(c1.as_deref(), c2.as_deref())
}

/// Causes agree when equal, or when both say the same JSONPath was missing from the same
/// input, after the first sentence naming the state and its event id. AWS words it `An error occurred while executing the state 'S' (entered at the event
/// id #7). The JSONPath '$.a' specified for the field 'a.$' could not be found in the input
/// '{...}'`; nton has no history, so no event id, and LocalStack leaves out the field; the
/// input is compared as JSON (nton writes keys sorted). The same tolerance as
/// `localstack_sfn.rs`, and only this one.
fn same_cause(a: Option<&str>, b: Option<&str>) -> bool {
    if a == b {
        return true;
    }
    // AWS (and LocalStack) start a state's runtime error with the state and the event id of
    // its entry; nton keeps no history, so has no event id: the rest must be equal.
    static ENTERED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^An error occurred while executing the state '[^']+' \(entered at the event id #\d+\)\. ",
        )
        .expect("a valid pattern")
    });
    let strip = |c: Option<&str>| c.map(|c| ENTERED.replace(c, "").into_owned());
    if strip(a) == strip(b) {
        return true;
    }
    let (Some(a), Some(b)) = (a.and_then(missing_path), b.and_then(missing_path)) else {
        return false;
    };
    a == b
}

/// The path and the input of a States.Runtime cause about a missing JSONPath.
fn missing_path(cause: &str) -> Option<(String, Value)> {
    static PATTERN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?s)The JSONPath '(?P<path>[^']+)'(?: specified for the field '[^']+')? could not be found in the input '(?P<input>.*)'$",
        )
        .expect("a valid pattern")
    });
    let c = PATTERN.captures(cause)?;
    Some((c["path"].to_string(), serde_json::from_str(&c["input"]).ok()?))
}

// ---- variables (nton only) ---------------------------------------------------------------

/// Checks nton's trace of a machine that reads variables ([`sfn_gen::reads_variables`], not
/// run on LocalStack) against the developer guide's answer, and returns how many reads it
/// saw. The guide (Passing data between states with variables): a state's `Assign` stores
/// each value under its name once the state ends, "$name" reads it in any later state, and
/// "states in a Map or Parallel state can access variables of their outer scope". The
/// first state assigns each variable from an input field the machine never changes, so every
/// `var_<name><j>` field in a task's parameters or in the output must hold that field's
/// value, and no state may fail on reading one.
fn variable_reads(m: &Generated, nton: &Trace) -> Result<usize, String> {
    fn reads(v: &Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(fields) => {
                for (k, v) in fields {
                    if let Some(rest) = k.strip_prefix(sfn_gen::VARIABLE_KEY_PREFIX) {
                        out.push((
                            rest.trim_end_matches(|c: char| c.is_ascii_digit()).into(),
                            v.clone(),
                        ));
                    } else {
                        reads(v, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| reads(v, out)),
            _ => {}
        }
    }
    let mut seen = Vec::new();
    for e in &nton.events {
        if let Event::Task { parameters, .. } = e {
            reads(parameters, &mut seen);
        }
    }
    match &nton.end {
        End::Finished { output: Some(output), .. } => reads(output, &mut seen),
        End::Finished { error, cause, .. } => {
            let cause = cause.as_deref().unwrap_or_default();
            if sfn_gen::VARIABLES.iter().any(|(name, _)| cause.contains(&format!("${name}"))) {
                return Err(format!("failed reading a variable: {error:?} {cause}"));
            }
        }
        other => return Err(format!("nton did not run it: {other:?}")),
    }
    for (name, value) in &seen {
        let Some((_, path)) = sfn_gen::VARIABLES.iter().find(|(n, _)| n == name) else {
            return Err(format!("a field names the unknown variable {name:?}"));
        };
        let field = path.trim_start_matches("$.");
        if value != &m.input[field] {
            return Err(format!(
                "${name} read {value}, but the first state assigned it {} ({path})",
                m.input[field]
            ));
        }
    }
    Ok(seen.len())
}

// ---- shrinking ----------------------------------------------------------------------------

/// Smaller variants of a machine: each drops one state (its predecessors go where it went),
/// one field of one state, one Choice rule or Parameters field, or one input field.
fn smaller(m: &Generated) -> Vec<Generated> {
    let mut out = Vec::new();
    let states = m.definition["States"].as_object().cloned().unwrap_or_default();
    let variant = |definition: Value, input: Value| {
        let mut definition = definition;
        sfn_gen::prune_unreachable(&mut definition);
        let mocks = m
            .mocks
            .iter()
            .filter(|(s, _)| definition["States"].get(s.as_str()).is_some())
            .map(|(s, a)| (s.clone(), a.clone()))
            .collect();
        Generated { name: m.name.clone(), definition, input, mocks }
    };
    // Drop a state that has one way out.
    for (name, state) in &states {
        let outs = sfn_gen::targets(state);
        let Some(via) = outs.first().filter(|_| state.get("Next").is_some() || outs.len() == 1)
        else {
            continue;
        };
        let mut d = m.definition.clone();
        d["States"].as_object_mut().unwrap().remove(name);
        if d["StartAt"] == json!(name) {
            d["StartAt"] = json!(via);
        }
        redirect(&mut d, name, via);
        out.push(variant(d, m.input.clone()));
    }
    // Replace a state by a terminal Succeed.
    for (name, state) in &states {
        if state["Type"] != "Succeed" {
            let mut d = m.definition.clone();
            d["States"][name] = json!({"Type": "Succeed"});
            out.push(variant(d, m.input.clone()));
        }
    }
    // Drop one field of a state, one element of a list field, one key of a payload.
    for (name, state) in &states {
        let Some(fields) = state.as_object() else {
            continue;
        };
        for (field, value) in fields {
            if matches!(field.as_str(), "Type" | "Next" | "End" | "Resource") {
                continue;
            }
            // A Lambda task needs its Parameters' FunctionName: without it the machine is
            // another one, not a smaller one.
            let task_parameters = field == "Parameters" && state["Type"] == "Task";
            if field != "Choices" && !task_parameters {
                let mut d = m.definition.clone();
                d["States"][name].as_object_mut().unwrap().remove(field);
                out.push(variant(d, m.input.clone()));
            }
            if let Some(items) = value.as_array().filter(|a| a.len() > 1) {
                for i in 0..items.len() {
                    let mut d = m.definition.clone();
                    d["States"][name][field].as_array_mut().unwrap().remove(i);
                    out.push(variant(d, m.input.clone()));
                }
            }
            if let Some(keys) = value.as_object() {
                for key in keys.keys().filter(|k| !(task_parameters && *k == "FunctionName")) {
                    let mut d = m.definition.clone();
                    d["States"][name][field].as_object_mut().unwrap().remove(key);
                    out.push(variant(d, m.input.clone()));
                }
                if let Some(payload) = value.get("Payload").and_then(Value::as_object) {
                    for key in payload.keys() {
                        let mut d = m.definition.clone();
                        d["States"][name][field]["Payload"].as_object_mut().unwrap().remove(key);
                        out.push(variant(d, m.input.clone()));
                    }
                }
            }
        }
    }
    for key in m.input.as_object().into_iter().flatten().map(|(k, _)| k) {
        let mut input = m.input.clone();
        input.as_object_mut().unwrap().remove(key);
        out.push(variant(m.definition.clone(), input));
    }
    out
}

/// Points every transition to `from` at `to`.
fn redirect(definition: &mut Value, from: &str, to: &str) {
    let Some(states) = definition["States"].as_object_mut() else {
        return;
    };
    for state in states.values_mut() {
        let fix = |v: &mut Value| {
            if v == from {
                *v = json!(to);
            }
        };
        if let Some(v) = state.get_mut("Next") {
            fix(v);
        }
        if let Some(v) = state.get_mut("Default") {
            fix(v);
        }
        for key in ["Choices", "Catch"] {
            for item in state.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(v) = item.get_mut("Next") {
                    fix(v);
                }
            }
        }
    }
}

/// Writes the mock file (before LocalStack starts: it reads the file then).
fn write_mocks(path: &Path, machines: &[&Generated]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&sfn_gen::mock_config(machines))?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// How the two engines' traces of a machine differ (normalized): a description, the
/// [`signature`] and both traces; `None` when they agree.
async fn diverges(
    sfn: &aws_sdk_sfn::Client,
    m: &Generated,
) -> anyhow::Result<Option<(String, String, Trace, Trace)>> {
    let concurrent = sfn_gen::has_concurrency(&m.definition);
    let ls = normalized(localstack_trace(sfn, m).await?, concurrent, &m.definition);
    let nton = normalized(nton_trace(m).await, concurrent, &m.definition);
    if parallel_race(m, &ls, &nton) {
        return Ok(None);
    }
    Ok(divergence(&ls, &nton).map(|d| (d, signature(&ls, &nton), ls, nton)))
}

/// The smallest variant of `m` that still diverges, found greedily. Every variant keeps
/// `m`'s name, so the mock file's test case for `m` answers it (its Task states are a subset
/// of `m`'s): the file is not rewritten while LocalStack runs.
async fn shrink(
    sfn: &aws_sdk_sfn::Client,
    m: &Generated,
    kind: &str,
) -> anyhow::Result<(Generated, String)> {
    let (mut best, mut why) = (m.clone(), String::new());
    let mut tries = 0;
    'outer: loop {
        for candidate in smaller(&best) {
            if tries >= SHRINK_TRIES {
                break 'outer;
            }
            // Candidates nton refuses are not smaller machines but other bugs.
            if StateMachine::from_json(&candidate.definition).is_err() {
                continue;
            }
            tries += 1;
            if let Some((d, sig, _, _)) = diverges(sfn, &candidate).await?
                && sig == kind
            {
                best = candidate;
                why = d;
                continue 'outer;
            }
        }
        break;
    }
    Ok((best, why))
}

fn reproduction(m: &Generated, why: &str) -> String {
    format!(
        "{why}\ndefinition:\n{}\ninput:\n{}\ntask answers (in invocation order, the last repeats):\n{}",
        serde_json::to_string_pretty(&m.definition).unwrap(),
        m.input,
        serde_json::to_string_pretty(
            &m.mocks.iter().map(|(s, a)| (s.clone(), format!("{a:?}"))).collect::<BTreeMap<_, _>>()
        )
        .unwrap()
    )
}

// ---- the test -----------------------------------------------------------------------------

fn extra_seed() -> u64 {
    match std::env::var("NTON_SFN_GEN_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("NTON_SFN_GEN_SEED={s:?} is not an unsigned integer")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_state_machines_run_the_same_on_localstack_and_on_nton() {
    let began = Instant::now();
    let extra = extra_seed();
    eprintln!(
        "seeds: {FIXED_SEED} (fixed, {FIXED_COUNT} machines) and {extra} (NTON_SFN_GEN_SEED={extra} repeats it, {EXTRA_COUNT} machines)"
    );
    let machines: Vec<Generated> = (0..FIXED_COUNT)
        .map(|i| sfn_gen::generate(FIXED_SEED, i, sfn_gen::ENABLED))
        .chain((0..EXTRA_COUNT).map(|i| sfn_gen::generate(extra, i, sfn_gen::ENABLED)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mock_path = dir.path().join("sfn-mock-config.json");
    write_mocks(&mock_path, &machines.iter().collect::<Vec<_>>()).unwrap();
    let server = {
        let path = mock_path.clone();
        tokio::task::spawn_blocking(move || localstack::shared(&path))
            .await
            .unwrap()
            .expect("LocalStack starts")
    };
    let started = began.elapsed();
    let sfn = aws_sdk_sfn::Client::new(&server.sdk_config().await);

    let mut failures = Vec::new();
    // Machines that read a variable run on nton alone (see sfn_gen::reads_variables).
    let (nton_only, compared): (Vec<&Generated>, Vec<&Generated>) =
        machines.iter().partition(|m| sfn_gen::reads_variables(&m.definition));
    let nton_began = Instant::now();
    let mut reads_checked = 0;
    for m in &nton_only {
        match variable_reads(m, &nton_trace(m).await) {
            Ok(n) => reads_checked += n,
            Err(e) => failures
                .push(format!("{}: {e}\ndefinition {} input {}", m.name, m.definition, m.input)),
        }
    }
    eprintln!(
        "{} machines read variables: run on nton only, {reads_checked} reads checked against the assigned values in {:?}",
        nton_only.len(),
        nton_began.elapsed()
    );

    let run_began = Instant::now();
    type Diverged = Option<(String, String, Trace, Trace)>;
    let results: Vec<(&Generated, anyhow::Result<Diverged>)> = futures::stream::iter(&compared)
        .map(|m| {
            let sfn = &sfn;
            async move { (*m, diverges(sfn, m).await) }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let ran = run_began.elapsed();

    let mut departures_seen: Vec<Vec<&str>> = vec![Vec::new(); LOCALSTACK_DEPARTURES.len()];
    let mut to_shrink: Vec<(Generated, String, String)> = Vec::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut results = results;
    results.sort_by_key(|(m, _)| m.name.clone());
    for (m, result) in results {
        let Some((why, sig, ls, nton)) = result.with_context(|| m.name.clone()).unwrap() else {
            continue;
        };
        if let Some(k) = LOCALSTACK_DEPARTURES.iter().position(|d| (d.explains)(m, &ls, &nton)) {
            departures_seen[k].push(&m.name);
            let d = &LOCALSTACK_DEPARTURES[k];
            if !(d.aws_answer)(m, &ls, &nton) {
                failures.push(format!(
                    "{}: LocalStack departs from AWS ({}), and nton does not give AWS's answer either: {:?}",
                    m.name, d.name, nton.end
                ));
            }
            continue;
        }
        *kinds.entry(sig.clone()).or_insert(0usize) += 1;
        to_shrink.push((m.clone(), why, sig));
    }
    // Shrink one machine of each kind: more of the same bug teach nothing.
    let found = to_shrink.len();
    eprintln!(
        "{} machines ran on both engines in {ran:?} ({IN_FLIGHT} at once); {found} diverge beyond the known departures",
        compared.len()
    );
    let shrink_began = Instant::now();
    let mut shrunk = std::collections::BTreeSet::new();
    for (m, why, sig) in to_shrink {
        if !shrunk.insert(sig.clone()) {
            continue;
        }
        let (small, small_why) = shrink(&sfn, &m, &sig).await.unwrap();
        let original_why = why.clone();
        let why = if small_why.is_empty() { why } else { small_why };
        failures.push(format!(
            "{} diverges ({sig}, {} machines of this kind): {}\ndefinition {} input {}\nsmallest reproduction found:\n{}",
            m.name,
            kinds[&sig],
            original_why,
            m.definition,
            m.input,
            reproduction(&small, &why)
        ));
    }
    eprintln!("shrinking took {:?}", shrink_began.elapsed());
    for (d, seen) in LOCALSTACK_DEPARTURES.iter().zip(&departures_seen) {
        eprintln!(
            "known LocalStack departure {}: {} machines {:?} ({})",
            d.name,
            seen.len(),
            &seen[..seen.len().min(5)],
            d.reason
        );
    }
    eprintln!("LocalStack started in {started:?}; the whole test took {:?}", began.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
