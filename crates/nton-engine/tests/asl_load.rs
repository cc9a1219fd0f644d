//! Loading state machines: definitions the loader refuses (data-driven, from
//! `fixtures/asl/load_errors.yaml`, each with its exact message) and what a loaded machine
//! tells about itself.

use nton_engine::asl::{StateMachine, TaskResource};
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/asl/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    nton_engine::template::parse_document(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn refused_definitions_name_state_and_field() {
    let cases = fixture("load_errors.yaml");
    let cases = cases.as_array().expect("a list of cases");
    assert!(cases.len() > 50, "the fixture lost cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let got = match StateMachine::from_json(&case["definition"]) {
            Ok(_) => {
                failures.push(format!("{name}: loaded, but should have been refused"));
                continue;
            }
            Err(e) => e.to_string(),
        };
        if let Some(exact) = case.get("error").and_then(Value::as_str) {
            if got != exact {
                failures.push(format!("{name}:\n  expected: {exact}\n  got:      {got}"));
            }
        } else {
            let start = case["error_starts_with"].as_str().expect("error or error_starts_with");
            if !got.starts_with(start) || got.len() == start.len() {
                failures
                    .push(format!("{name}:\n  expected a message starting: {start}\n  got: {got}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn error_fields_are_structured() {
    let err = StateMachine::from_json(&json!({
        "StartAt": "A",
        "States": {"A": {"Type": "Task", "Resource": "arn:x", "Next": "B"}, "B": {"Type": "Wait", "Seconds": 1, "Next": "Nope"}}
    }))
    .unwrap_err();
    assert_eq!(err.state.as_deref(), Some("B"));
    assert_eq!(err.field.as_deref(), Some("Next"));
    assert_eq!(err.message, "no state named 'Nope'");
}

#[test]
fn definition_must_be_an_object() {
    let err = StateMachine::from_json(&json!([1])).unwrap_err();
    assert_eq!(err.to_string(), "state machine: the definition is not a JSON object");
}

#[test]
fn a_loaded_machine_lists_its_states_and_tasks_in_flow_order() {
    let m = StateMachine::from_json(&json!({
        "Comment": "demo",
        "Version": "1.0",
        "TimeoutSeconds": 60,
        "StartAt": "Fetch",
        "States": {
            "Fetch": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "arn:aws:lambda:local-1:000000000000:function:F", "Payload.$": "$"},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Broken"}],
                "Next": "Check"
            },
            "Check": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.ok", "BooleanEquals": true, "Next": "Store"}],
                "Default": "Broken"
            },
            "Store": {"Type": "Task", "Resource": "arn:aws:states:::batch:submitJob", "End": true},
            "Broken": {"Type": "Fail", "Error": "Broken"}
        }
    }))
    .unwrap();
    assert_eq!(m.start_at(), "Fetch");
    assert_eq!(m.comment(), Some("demo"));
    assert_eq!(m.version(), Some("1.0"));
    assert_eq!(m.timeout(), Some(std::time::Duration::from_secs(60)));
    assert_eq!(m.state_names().collect::<Vec<_>>(), ["Fetch", "Check", "Broken", "Store"]);
    assert_eq!(m.state_type("Check"), Some("Choice"));
    assert_eq!(m.state_type("Nope"), None);
    let params =
        json!({"FunctionName": "arn:aws:lambda:local-1:000000000000:function:F", "Payload.$": "$"});
    assert_eq!(
        m.task_resources(),
        vec![
            TaskResource {
                state: "Fetch",
                resource: "arn:aws:states:::lambda:invoke",
                parameters: Some(&params)
            },
            TaskResource {
                state: "Store",
                resource: "arn:aws:states:::batch:submitJob",
                parameters: None
            },
        ]
    );
}

#[test]
fn every_supported_field_loads() {
    let m = StateMachine::from_json(&json!({
        "StartAt": "P",
        "States": {
            "P": {
                "Type": "Pass", "Comment": "c", "QueryLanguage": "JSONPath",
                "InputPath": null, "OutputPath": "$.r", "ResultPath": "$.r", "Result": {"a": 1},
                "Parameters": {"x.$": "$$.Execution.Id"}, "Next": "T"
            },
            "T": {
                "Type": "Task", "Resource": "arn:x", "InputPath": "$", "ResultSelector": {"v.$": "$.v"},
                "ResultPath": null, "TimeoutSecondsPath": "$.t", "HeartbeatSeconds": 3,
                "Retry": [{"ErrorEquals": ["E"], "IntervalSeconds": 1, "MaxAttempts": 0, "BackoffRate": 1.5,
                           "MaxDelaySeconds": 10, "JitterStrategy": "FULL", "Comment": "r"}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "F", "ResultPath": "$.err", "Comment": "c"}],
                "Next": "W1"
            },
            "W1": {"Type": "Wait", "Seconds": 0, "Next": "W2"},
            "W2": {"Type": "Wait", "SecondsPath": "$.s", "Next": "W3"},
            "W3": {"Type": "Wait", "Timestamp": "2020-01-01T00:00:00Z", "Next": "W4"},
            "W4": {"Type": "Wait", "TimestampPath": "$$.Execution.StartTime", "Next": "C"},
            "C": {
                "Type": "Choice", "InputPath": "$.x", "OutputPath": "$",
                "Choices": [
                    {"Not": {"Variable": "$.a", "IsNull": true}, "Next": "S", "Comment": "x"},
                    {"Or": [{"Variable": "$.a", "StringMatches": "a*"},
                            {"And": [{"Variable": "$.n", "NumericGreaterThanEqualsPath": "$.m"},
                                     {"Variable": "$.t", "TimestampLessThan": "2020-01-01T00:00:00Z"}]}],
                     "Next": "S"}
                ],
                "Default": "F2"
            },
            "S": {"Type": "Succeed", "InputPath": "$", "OutputPath": null},
            "F": {"Type": "Fail", "ErrorPath": "$.err.Error", "CausePath": "States.Format('{}', $.err.Cause)"},
            "F2": {"Type": "Fail", "Error": "E", "Cause": "C", "Comment": "c"}
        }
    }));
    assert!(m.is_ok(), "{}", m.unwrap_err());
}
