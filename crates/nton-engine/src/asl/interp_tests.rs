//! Running Parallel and Map states, variables, and Step Functions' exact answers (issue 11
//! items 1 and 3), against an executor whose resources say what they do.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use serde_json::json;

/// Resources: `arn:echo` answers its parameters; `arn:fail` fails with the parameters'
/// `error` and `cause`; `arn:slow` sleeps `ms` milliseconds then answers its parameters;
/// `arn:flaky` fails with `Flaky` until it has been called `ok_after` times for its state;
/// `arn:big` answers a string over 256 KiB; `arn:hang` never answers.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<Value>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

impl Fake {
    fn calls(&self) -> Vec<Value> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl TaskExecutor for Fake {
    async fn invoke(&self, call: TaskCall<'_>) -> Result<Value, TaskFailure> {
        let count = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(json!({
                "state": call.state,
                "parameters": call.parameters,
                "context": call.context,
            }));
            calls.iter().filter(|c| c["state"] == call.state).count()
        };
        let p = call.parameters;
        match call.resource {
            "arn:echo" => Ok(p),
            "arn:fail" => Err(TaskFailure::new(
                p["error"].as_str().unwrap_or("Failed"),
                p["cause"].as_str().unwrap_or(""),
            )),
            "arn:slow" => {
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.most_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(p["ms"].as_u64().unwrap_or(20))).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(p)
            }
            "arn:flaky" if count <= p["ok_after"].as_u64().unwrap_or(0) as usize => {
                Err(TaskFailure::new("Flaky", format!("call {count}")))
            }
            "arn:flaky" => Ok(json!({"calls": count})),
            "arn:big" => Ok(json!("x".repeat(MAX_PAYLOAD_BYTES + 1))),
            "arn:hang" => std::future::pending().await,
            other => panic!("no such fake resource {other}"),
        }
    }

    async fn wait(&self, _state: &str, _duration: Duration) {}
}

#[derive(Default)]
struct Entered(Mutex<Vec<String>>);

impl ExecutionObserver for Entered {
    fn state_entered(&self, name: &str, _: &Value) {
        self.0.lock().unwrap().push(name.to_string());
    }
    fn state_exited(&self, _: &str, _: &Value) {}
}

async fn run_with(definition: Value, input: Value, fake: &Fake) -> ExecutionOutcome {
    let machine = StateMachine::from_json(&definition).unwrap_or_else(|e| panic!("{e}"));
    run_execution(&machine, input, fake, &NullObserver, ExecutionContext::new("test")).await
}

async fn run(definition: Value, input: Value) -> ExecutionOutcome {
    run_with(definition, input, &Fake::default()).await
}

fn output(outcome: ExecutionOutcome) -> Value {
    match outcome {
        ExecutionOutcome::Succeeded { output } => output,
        other => panic!("expected success, got {other:?}"),
    }
}

fn failure(outcome: ExecutionOutcome) -> (String, String, Option<String>) {
    match outcome {
        ExecutionOutcome::Failed { error, cause, state } => (error, cause, state),
        other => panic!("expected failure, got {other:?}"),
    }
}

fn branch(start: &str, states: Value) -> Value {
    json!({"StartAt": start, "States": states})
}

#[tokio::test]
async fn parallel_results_come_in_branch_order_whatever_finishes_first() {
    let definition = json!({
        "StartAt": "P",
        "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
            branch("Slow", json!({"Slow": {"Type": "Task", "Resource": "arn:slow",
                "Parameters": {"ms": 80, "b": 0}, "End": true}})),
            branch("Fast", json!({"Fast": {"Type": "Task", "Resource": "arn:slow",
                "Parameters": {"ms": 1, "b.$": "$.n"}, "End": true}})),
            branch("Same", json!({"Same": {"Type": "Pass", "End": true}}))
        ]}}
    });
    let fake = Fake::default();
    let out = output(run_with(definition, json!({"n": 7}), &fake).await);
    assert_eq!(out, json!([{"ms": 80, "b": 0}, {"ms": 1, "b": 7}, {"n": 7}]));
    // The branches ran at once.
    assert_eq!(fake.most_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_branch_fails_the_parallel_state_with_its_error_and_cause() {
    let definition = json!({
        "StartAt": "P",
        "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
            branch("Wait", json!({"Wait": {"Type": "Task", "Resource": "arn:hang", "End": true}})),
            branch("Bad", json!({"Bad": {"Type": "Task", "Resource": "arn:fail",
                "Parameters": {"error": "Boom", "cause": "branch two"}, "End": true}}))
        ]}}
    });
    // The hanging branch is stopped: the execution ends.
    let (error, cause, state) = failure(run(definition, json!({})).await);
    assert_eq!(
        (error.as_str(), cause.as_str(), state.as_deref()),
        ("Boom", "branch two", Some("P"))
    );
}

#[tokio::test]
async fn parallel_retry_reruns_every_branch_and_catch_sees_a_fail_state_in_a_branch() {
    let definition = json!({
        "StartAt": "P",
        "States": {
            "P": {"Type": "Parallel", "Next": "Done", "ResultPath": "$.p",
                "Retry": [{"ErrorEquals": ["Flaky"], "MaxAttempts": 2}],
                "Branches": [
                    branch("F", json!({"F": {"Type": "Task", "Resource": "arn:flaky",
                        "Parameters": {"ok_after": 2}, "End": true}})),
                    branch("E", json!({"E": {"Type": "Task", "Resource": "arn:echo",
                        "Parameters": {"e": 1}, "End": true}}))
                ]},
            "Done": {"Type": "Parallel", "End": true,
                "Catch": [{"ErrorEquals": ["Given.Up"], "ResultPath": "$.caught", "Next": "Caught"}],
                "Branches": [branch("Stop", json!({"Stop": {"Type": "Fail", "Error": "Given.Up", "Cause": "by a Fail state"}}))]},
            "Caught": {"Type": "Pass", "End": true}
        }
    });
    let fake = Fake::default();
    let out = output(run_with(definition, json!({}), &fake).await);
    assert_eq!(out["p"], json!([{"calls": 3}, {"e": 1}]));
    // F failed twice, so the whole state ran three times.
    let calls: Vec<_> = fake.calls().iter().map(|c| c["state"].clone()).collect();
    assert_eq!(calls.iter().filter(|s| *s == "F").count(), 3);
    assert_eq!(out["caught"], json!({"Error": "Given.Up", "Cause": "by a Fail state"}));
}

#[tokio::test]
async fn map_runs_each_item_with_its_selector_and_keeps_item_order() {
    let definition = json!({
        "StartAt": "M",
        "States": {"M": {"Type": "Map", "ItemsPath": "$.nodes", "ResultPath": "$.done", "End": true,
            "ItemSelector": {
                "node.$": "$$.Map.Item.Value",
                "index.$": "$$.Map.Item.Index",
                "run.$": "$.run"
            },
            "ItemProcessor": {"StartAt": "Work", "States": {
                "Work": {"Type": "Task", "Resource": "arn:slow", "End": true,
                    "Parameters": {"ms.$": "$.node.ms", "index.$": "$.index", "run.$": "$.run"}}
            }}}}
    });
    let fake = Fake::default();
    let input = json!({"run": "r1", "nodes": [{"ms": 60}, {"ms": 1}, {"ms": 30}]});
    let out = output(run_with(definition, input, &fake).await);
    assert_eq!(
        out["done"],
        json!([
            {"ms": 60, "index": 0, "run": "r1"},
            {"ms": 1, "index": 1, "run": "r1"},
            {"ms": 30, "index": 2, "run": "r1"}
        ])
    );
    assert_eq!(out["run"], "r1");
    // No MaxConcurrency: every item at once.
    assert_eq!(fake.most_in_flight.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn map_concurrency_is_limited_by_max_concurrency_and_its_path() {
    for (limit, field) in [(1, "MaxConcurrency"), (2, "MaxConcurrencyPath")] {
        let mut state = json!({"Type": "Map", "End": true, "ItemsPath": "$.items",
        "Iterator": {"StartAt": "Work", "States": {
            "Work": {"Type": "Task", "Resource": "arn:slow", "End": true}
        }}});
        state[field] = if field == "MaxConcurrency" { json!(limit) } else { json!("$.limit") };
        let fake = Fake::default();
        let items: Vec<_> = (0..5).map(|i| json!({"ms": 10, "i": i})).collect();
        let out = output(
            run_with(
                json!({"StartAt": "M", "States": {"M": state}}),
                json!({"items": items, "limit": limit}),
                &fake,
            )
            .await,
        );
        assert_eq!(out, json!(items));
        assert_eq!(fake.most_in_flight.load(Ordering::SeqCst), limit, "{field}");
    }
}

#[tokio::test]
async fn map_failures_and_bad_items() {
    let map = |items_path: &str, catch: Value| {
        json!({"StartAt": "M", "States": {
            "M": {"Type": "Map", "ItemsPath": items_path, "Next": "After", "Catch": catch,
                "ItemProcessor": {"StartAt": "Check", "States": {
                    "Check": {"Type": "Choice", "Default": "Ok", "Choices": [
                        {"Variable": "$.bad", "BooleanEquals": true, "Next": "Bad"}
                    ]},
                    "Bad": {"Type": "Fail", "Error": "Item.Bad", "Cause": "a bad item"},
                    "Ok": {"Type": "Pass", "End": true}
                }}},
            "After": {"Type": "Pass", "End": true}
        }})
    };
    let input = json!({"items": [{"bad": false}, {"bad": true}], "notalist": 3});
    let (error, cause, state) = failure(run(map("$.items", json!([])), input.clone()).await);
    assert_eq!(
        (error.as_str(), cause.as_str(), state.as_deref()),
        ("Item.Bad", "a bad item", Some("M"))
    );
    let out = output(
        run(
            map(
                "$.items",
                json!([{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "After"}]),
            ),
            input.clone(),
        )
        .await,
    );
    assert_eq!(out["error"], json!({"Error": "Item.Bad", "Cause": "a bad item"}));
    // An empty list gives an empty result.
    let out = output(run(map("$.none", json!([])), json!({"none": []})).await);
    assert_eq!(out, json!([]));
    // Items that are not a list fail the execution, and no Catch sees it.
    let (error, cause, _) = failure(
        run(map("$.notalist", json!([{"ErrorEquals": ["States.ALL"], "Next": "After"}])), input)
            .await,
    );
    assert_eq!(error, "States.Runtime");
    assert!(cause.contains("must be a JSON array, found 3"), "{cause}");
}

#[tokio::test]
async fn nested_states_are_observed() {
    let definition = json!({"StartAt": "M", "States": {
        "M": {"Type": "Map", "End": true, "MaxConcurrency": 1,
            "ItemProcessor": {"StartAt": "A", "States": {
                "A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Succeed"}
            }}}
    }});
    let machine = StateMachine::from_json(&definition).unwrap();
    let observer = Entered::default();
    let outcome = run_execution(
        &machine,
        json!([1, 2]),
        &Fake::default(),
        &observer,
        ExecutionContext::new("t"),
    )
    .await;
    assert_eq!(output(outcome), json!([1, 2]));
    assert_eq!(*observer.0.lock().unwrap(), ["M", "A", "B", "A", "B"]);
}

/// Developer guide, "Passing data between states with variables": `Assign` stores values
/// that any later state reads as `$name`; every expression of an Assign sees the values from
/// before the state, so the new ones take effect when the state is left.
#[tokio::test]
async fn assign_sets_variables_that_later_states_read() {
    let definition = json!({"StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Assign": {"a": 1, "b": "two", "from.$": "$.seed"}, "Next": "Swap"},
        "Swap": {"Type": "Pass", "Assign": {"a.$": "$b", "b.$": "$a"}, "Next": "Call"},
        "Call": {"Type": "Task", "Resource": "arn:echo", "Next": "Report",
            "Parameters": {"a.$": "$a", "b.$": "$b", "from.$": "$from", "sum.$": "States.MathAdd($b, 1)"},
            "ResultSelector": {"got.$": "$.a"},
            "Assign": {"result.$": "$.got"}},
        "Report": {"Type": "Pass", "End": true,
            "Parameters": {"result.$": "$result", "input.$": "$"}}
    }});
    let fake = Fake::default();
    let out = output(run_with(definition, json!({"seed": "s"}), &fake).await);
    assert_eq!(fake.calls()[0]["parameters"], json!({"a": "two", "b": 1, "from": "s", "sum": 2}));
    assert_eq!(out, json!({"result": "two", "input": {"got": "two"}}));
}

#[tokio::test]
async fn inner_scopes_read_outer_variables_and_their_own_stay_inside() {
    let definition = json!({"StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Assign": {"prefix": "node"}, "Next": "M"},
        "M": {"Type": "Map", "Next": "Check", "ItemsPath": "$.items",
            "ItemProcessor": {"StartAt": "Name", "States": {
                "Name": {"Type": "Pass", "Assign": {"mine.$": "$"}, "Next": "Use"},
                "Use": {"Type": "Pass", "End": true,
                    "Parameters": {"name.$": "States.Format('{}-{}', $prefix, $mine)"}}
            }}},
        "Check": {"Type": "Pass", "End": true, "Parameters": {"names.$": "$", "mine.$": "$mine"}}
    }});
    let (error, cause, state) = failure(run(definition, json!({"items": [1, 2]})).await);
    // `mine` was the iterations' own: outside the Map it does not exist.
    assert_eq!(error, "States.Runtime");
    assert_eq!(state.as_deref(), Some("Check"));
    assert!(cause.contains("'$mine'"), "{cause}");
}

#[tokio::test]
async fn map_iterations_see_outer_variables() {
    let definition = json!({"StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Assign": {"prefix": "node"}, "Next": "M"},
        "M": {"Type": "Map", "End": true,
            "ItemProcessor": {"StartAt": "Use", "States": {
                "Use": {"Type": "Pass", "End": true,
                    "Parameters": {"name.$": "States.Format('{}-{}', $prefix, $)"}}
            }}}
    }});
    let out = output(run(definition, json!([1, 2])).await);
    assert_eq!(out, json!([{"name": "node-1"}, {"name": "node-2"}]));
}

#[tokio::test]
async fn catch_and_choice_assign() {
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:fail", "Parameters": {"error": "E", "cause": "c"},
            "Next": "Never",
            "Catch": [{"ErrorEquals": ["E"], "Next": "C", "Assign": {"err.$": "$.Error"}}]},
        "Never": {"Type": "Succeed"},
        "C": {"Type": "Choice", "Assign": {"went": "default"}, "Default": "End",
            "Choices": [{"Variable": "$err", "StringEquals": "X", "Next": "End", "Assign": {"went": "rule"}}]},
        "End": {"Type": "Pass", "End": true, "Parameters": {"err.$": "$err", "went.$": "$went"}}
    }});
    let out = output(run(definition, json!({})).await);
    assert_eq!(out, json!({"err": "E", "went": "default"}));
}

/// Developer guide, "Accessing execution data from the Context object": `$$.State.RetryCount`
/// is there in Task states only.
#[tokio::test]
async fn retry_count_is_in_task_states_only() {
    let definition = json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Parameters": {"state.$": "$$.State"}, "Next": "T"},
        "T": {"Type": "Task", "Resource": "arn:echo", "Parameters": {"count.$": "$$.State.RetryCount"}, "Next": "Missing"},
        "Missing": {"Type": "Pass", "Parameters": {"count.$": "$$.State.RetryCount"}, "End": true}
    }});
    let fake = Fake::default();
    let (error, cause, state) = failure(run_with(definition, json!({}), &fake).await);
    assert_eq!(fake.calls()[0]["parameters"], json!({"count": 0}));
    assert_eq!((error.as_str(), state.as_deref()), ("States.Runtime", Some("Missing")));
    assert!(cause.contains("'$$.State.RetryCount'"), "{cause}");
}

/// Developer guide, "Handling errors in Step Functions workflows": States.DataLimitExceeded
/// (a task result over the 256 KiB quota raises it) is handled by a Catch that names it, and
/// States.ALL does not cover it.
#[tokio::test]
async fn data_limit_exceeded_is_caught_by_name_only() {
    let machine = |catch: &str| {
        json!({"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "arn:big", "Next": "Ok",
                "Catch": [{"ErrorEquals": [catch], "Next": "Ok"}]},
            "Ok": {"Type": "Pass", "End": true}
        }})
    };
    let out = output(run(machine("States.DataLimitExceeded"), json!({})).await);
    assert_eq!(out["Error"], "States.DataLimitExceeded");
    let (error, _, state) = failure(run(machine("States.ALL"), json!({})).await);
    assert_eq!((error.as_str(), state.as_deref()), ("States.DataLimitExceeded", Some("T")));
}

/// Developer guide, "Handling errors in Step Functions workflows": States.Timeout, and AWS's
/// recordings (issue 11): a task's timeout carries an empty cause.
#[tokio::test]
async fn task_timeout_has_an_empty_cause() {
    let definition = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:hang", "TimeoutSeconds": 1, "End": true}
    }});
    let (error, cause, _) = failure(run(definition, json!({})).await);
    assert_eq!((error.as_str(), cause.as_str()), ("States.Timeout", ""));
}

/// Developer guide, "Wait workflow state": a TimestampPath timestamp is ISO 8601 with an
/// uppercase T; one with a space fails the execution.
#[tokio::test]
async fn wait_timestamp_path_needs_a_t() {
    let definition = json!({"StartAt": "W", "States": {
        "W": {"Type": "Wait", "TimestampPath": "$.at", "End": true}
    }});
    let ok = output(run(definition.clone(), json!({"at": "2016-03-14T01:59:00Z"})).await);
    assert_eq!(ok["at"], "2016-03-14T01:59:00Z");
    let (error, _, _) = failure(run(definition, json!({"at": "2016-03-14 01:59:00Z"})).await);
    assert_eq!(error, "States.Runtime");
}

#[tokio::test]
async fn concurrent_waits_advance_the_clock_once() {
    // Two branches each wait 100 s with an executor that returns at once: the clock moves
    // 100 s, not 200 s, so a 150 s execution timeout is not reached.
    let wait =
        |name: &str| branch(name, json!({ name: {"Type": "Wait", "Seconds": 100, "End": true} }));
    let definition = json!({"TimeoutSeconds": 150, "StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Branches": [wait("W1"), wait("W2")], "Next": "Later"},
        "Later": {"Type": "Wait", "Seconds": 10, "End": true}
    }});
    let out = output(run(definition, json!({"x": 1})).await);
    assert_eq!(out, json!([{"x": 1}, {"x": 1}]));
}

// JSONata states. Citations are to the developer guide, "Transforming data with JSONata in
// Step Functions" and "Passing data between states with variables".

fn jsonata_machine(start: &str, states: Value) -> Value {
    json!({"QueryLanguage": "JSONata", "StartAt": start, "States": states})
}

/// "Arguments" builds the task's input, "Output" the state's output from `$states.result`;
/// a Task without Output outputs its result and a Pass without Output its input.
#[tokio::test]
async fn jsonata_arguments_output_and_states() {
    let definition = jsonata_machine(
        "Call",
        json!({
            "Call": {"Type": "Task", "Resource": "arn:echo", "Next": "Keep",
                "Arguments": {"n": "{% $states.input.n * 2 %}", "fixed": "f",
                    "machine": "{% $states.context.StateMachine.Name %}"},
                "Output": {"doubled": "{% $states.result.n %}", "was": "{% $states.input.n %}"}},
            "Keep": {"Type": "Pass", "Next": "Raw"},
            "Raw": {"Type": "Task", "Resource": "arn:echo", "End": true}
        }),
    );
    let fake = Fake::default();
    let out = output(run_with(definition, json!({"n": 21}), &fake).await);
    assert_eq!(fake.calls()[0]["parameters"], json!({"n": 42, "fixed": "f", "machine": "test"}));
    assert_eq!(out, json!({"doubled": 42, "was": 21}));
}

/// Variables: `Assign` takes effect for the next state, so a state's `Output` and `Assign`
/// both see the values from before it ("Assign and Output are evaluated in parallel").
#[tokio::test]
async fn jsonata_assign_takes_effect_after_the_state() {
    let definition = jsonata_machine(
        "Init",
        json!({
            "Init": {"Type": "Pass", "Assign": {"a": 1, "b": "{% $states.input.b %}"}, "Next": "Swap"},
            "Swap": {"Type": "Pass", "Assign": {"a": "{% $b %}", "b": "{% $a %}"},
                "Output": {"a": "{% $a %}"}, "Next": "Report"},
            "Report": {"Type": "Pass", "End": true,
                "Output": {"a": "{% $a %}", "b": "{% $b %}", "before": "{% $states.input.a %}"}}
        }),
    );
    let out = output(run(definition, json!({"b": "two"})).await);
    assert_eq!(out, json!({"a": "two", "b": 1, "before": 1}));
}

/// JSONPath and JSONata states share the variables of a machine; a JSONata state inside a
/// JSONPath Map reads the outer variables and `$states.context.Map.Item` in ItemSelector.
#[tokio::test]
async fn jsonata_map_items_selector_and_mixed_languages() {
    let definition = json!({"StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Assign": {"prefix": "node"}, "Next": "M"},
        "M": {"Type": "Map", "QueryLanguage": "JSONata", "Next": "Last",
            "Items": "{% $states.input.names %}",
            "ItemSelector": {"name": "{% $states.context.Map.Item.Value %}",
                "index": "{% $states.context.Map.Item.Index %}"},
            "MaxConcurrency": "{% 1 %}",
            "ItemProcessor": {"StartAt": "Use", "States": {
                "Use": {"Type": "Pass", "End": true, "QueryLanguage": "JSONata",
                    "Output": "{% $prefix & '-' & $states.input.name & '-' & $states.input.index %}"}
            }},
            "Assign": {"count": "{% $count($states.result) %}"},
            "Output": {"names": "{% $states.result %}"}},
        "Last": {"Type": "Pass", "End": true, "Parameters": {"names.$": "$.names", "count.$": "$count"}}
    }});
    let out = output(run(definition, json!({"names": ["a", "b"]})).await);
    assert_eq!(out, json!({"names": ["node-a-0", "node-b-1"], "count": 2}));
}

#[tokio::test]
async fn jsonata_parallel_choice_and_wait() {
    let definition = jsonata_machine(
        "P",
        json!({
            "P": {"Type": "Parallel", "Next": "C", "Arguments": {"x": "{% $states.input.x %}"},
                "Branches": [
                    {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true,
                        "Output": "{% $states.input.x + 1 %}"}}},
                    {"StartAt": "B", "States": {"B": {"Type": "Wait", "Seconds": "{% $states.input.x %}",
                        "End": true, "Output": "{% $states.input.x * 10 %}"}}}
                ],
                "Output": {"sum": "{% $sum($states.result) %}"}},
            "C": {"Type": "Choice", "Default": "Small",
                "Choices": [{"Condition": "{% $states.input.sum > 20 %}", "Next": "Big",
                    "Output": {"size": "big", "sum": "{% $states.input.sum %}"},
                    "Assign": {"chosen": "big"}}]},
            "Big": {"Type": "Succeed", "Output": {"size": "{% $states.input.size %}", "chosen": "{% $chosen %}"}},
            "Small": {"Type": "Succeed"}
        }),
    );
    assert_eq!(
        output(run(definition.clone(), json!({"x": 2})).await),
        json!({"size": "big", "chosen": "big"})
    );
    assert_eq!(output(run(definition, json!({"x": 1})).await), json!({"sum": 12}));
}

/// A Catch clause's `Output` and `Assign` see `$states.errorOutput`; without Output the
/// error output is the state's output.
#[tokio::test]
async fn jsonata_catch_output_and_assign() {
    let definition = jsonata_machine(
        "T",
        json!({
            "T": {"Type": "Task", "Resource": "arn:fail", "Arguments": {"error": "E", "cause": "c"}, "End": true,
                "Catch": [{"ErrorEquals": ["E"], "Next": "Handled",
                    "Output": {"was": "{% $states.errorOutput.Error %}", "input": "{% $states.input %}"},
                    "Assign": {"why": "{% $states.errorOutput.Cause %}"}}]},
            "Handled": {"Type": "Pass", "End": true, "Output": {"got": "{% $states.input %}", "why": "{% $why %}"}}
        }),
    );
    assert_eq!(
        output(run(definition, json!({"k": 1})).await),
        json!({"got": {"was": "E", "input": {"k": 1}}, "why": "c"})
    );
    let definition = jsonata_machine(
        "U",
        json!({
            "U": {"Type": "Task", "Resource": "arn:fail", "Arguments": {"error": "F"}, "End": true,
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Done"}]},
            "Done": {"Type": "Succeed"}
        }),
    );
    assert_eq!(output(run(definition, json!({})).await), json!({"Error": "F", "Cause": ""}));
}

/// An expression that yields nothing, or fails, raises States.QueryEvaluationError with the
/// expression and field in its cause ("The JSONata expression '...' specified for the field
/// '...' returned nothing (undefined)."), and a Catch can catch it.
#[tokio::test]
async fn jsonata_evaluation_failures_are_query_evaluation_errors() {
    let definition = jsonata_machine(
        "S",
        json!({
            "S": {"Type": "Pass", "End": true, "Output": {"v": "{% $states.input.absent %}"}}
        }),
    );
    let (error, cause, state) = failure(run(definition, json!({})).await);
    assert_eq!(error, "States.QueryEvaluationError");
    assert_eq!(
        cause,
        "The JSONata expression '$states.input.absent' specified for the field 'Output/v' returned nothing (undefined)."
    );
    assert_eq!(state.as_deref(), Some("S"));
    let definition = jsonata_machine(
        "T",
        json!({
            "T": {"Type": "Task", "Resource": "arn:echo", "Arguments": "{% $states.input.s + 1 %}", "End": true,
                "Catch": [{"ErrorEquals": ["States.QueryEvaluationError"], "Next": "Done",
                    "Output": "{% $states.errorOutput.Error %}"}]},
            "Done": {"Type": "Succeed"}
        }),
    );
    assert_eq!(
        output(run(definition, json!({"s": "x"})).await),
        json!("States.QueryEvaluationError")
    );
    let definition = jsonata_machine(
        "C",
        json!({
            "C": {"Type": "Choice", "Default": "D", "Choices": [{"Condition": "{% 1 %}", "Next": "D"}]},
            "D": {"Type": "Succeed"}
        }),
    );
    let (error, cause, _) = failure(run(definition, json!({})).await);
    assert_eq!(error, "States.QueryEvaluationError");
    assert_eq!(cause, "The field 'Choices[0]/Condition' must evaluate to a boolean, got 1");
}

/// Fail's Error and Cause, and a Task's TimeoutSeconds, take expressions.
#[tokio::test]
async fn jsonata_fail_and_task_timeout_expressions() {
    let definition = jsonata_machine(
        "F",
        json!({
            "F": {"Type": "Fail", "Error": "{% 'Bad.' & $states.input.kind %}", "Cause": "fixed"}
        }),
    );
    let (error, cause, _) = failure(run(definition, json!({"kind": "Input"})).await);
    assert_eq!((error.as_str(), cause.as_str()), ("Bad.Input", "fixed"));
    let definition = jsonata_machine(
        "T",
        json!({
            "T": {"Type": "Task", "Resource": "arn:hang", "TimeoutSeconds": "{% $states.input.t %}", "End": true}
        }),
    );
    let outcome = run(definition, json!({"t": 1})).await;
    let (error, cause, _) = failure(outcome);
    assert_eq!((error.as_str(), cause.as_str()), ("States.Timeout", ""));
}

/// Developer guide, Handling errors, error names: "States.NoChoiceMatched: A Choice state
/// failed to find a match for the condition field extracted from its input" (a Choice with no
/// matching rule and no Default); LocalStack says States.Runtime instead (listed as a
/// departure in tests/tests/localstack_sfn_gen.rs).
#[tokio::test]
async fn a_choice_that_matches_nothing_without_a_default_fails_with_no_choice_matched() {
    let definition = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "P"}]},
        "P": {"Type": "Pass", "End": true}
    }});
    let (error, _, state) = failure(run(definition.clone(), json!({"n": 2})).await);
    assert_eq!((error.as_str(), state.as_deref()), ("States.NoChoiceMatched", Some("C")));
    assert_eq!(output(run(definition, json!({"n": 1})).await), json!({"n": 1}));
}

/// Issue 11 item 3, AWS's wording (its JSONPath library's, as the AWS recordings and
/// LocalStack give it) of an OutputPath or InputPath that selects nothing: States.Runtime with
/// "Invalid path '<path>' : No results for path: <the path in bracket notation>".
#[tokio::test]
async fn a_missing_output_path_is_worded_as_aws_words_it() {
    let definition = |path: &str| json!({"StartAt": "S", "States": {"S": {"Type": "Succeed", "OutputPath": path}}});
    let (error, cause, state) = failure(run(definition("$.r1"), json!({})).await);
    assert_eq!((error.as_str(), state.as_deref()), ("States.Runtime", Some("S")));
    assert_eq!(cause, "Invalid path '$.r1' : No results for path: $['r1']");
    let (_, cause, _) = failure(run(definition("$.a.b[2]"), json!({"a": {"b": [1]}})).await);
    assert_eq!(cause, "Invalid path '$.a.b[2]' : No results for path: $['a']['b'][2]");
}
