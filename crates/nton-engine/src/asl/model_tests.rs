//! Loading: what is refused at load (issue 11 item 2: by state and feature, before anything
//! runs) and what nested machines (Parallel, Map, variables) look like once loaded.

use super::*;
use serde_json::json;

fn refused(definition: Value) -> String {
    match StateMachine::from_json(&definition) {
        Ok(_) => panic!("loaded, but should have been refused: {definition}"),
        Err(e) => e.to_string(),
    }
}

/// A machine of one state named S.
fn one(state: Value) -> Value {
    json!({"StartAt": "S", "States": {"S": state}})
}

fn map_with(extra: Value) -> Value {
    let mut state = json!({
        "Type": "Map",
        "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}},
        "End": true
    });
    for (k, v) in extra.as_object().unwrap() {
        state[k] = v.clone();
    }
    one(state)
}

#[test]
fn callback_tasks_and_activities_are_refused_by_name() {
    assert_eq!(
        refused(one(json!({
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "f", "Payload": {"token.$": "$$.Task.Token"}},
            "End": true
        }))),
        "state S: field Resource: arn:aws:states:::lambda:invoke.waitForTaskToken: callback tasks (.waitForTaskToken) are not run by the local engine"
    );
    assert_eq!(
        refused(one(json!({
            "Type": "Task",
            "Resource": "arn:aws:states:eu-west-1:123456789012:activity:approve",
            "End": true
        }))),
        "state S: field Resource: arn:aws:states:eu-west-1:123456789012:activity:approve: activities are not run by the local engine"
    );
}

#[test]
fn fields_the_engine_does_not_run_are_refused_by_name() {
    let task = |field: &str, value: Value| {
        let mut state = json!({"Type": "Task", "Resource": "arn:x", "End": true});
        state[field] = value;
        refused(one(state))
    };
    assert_eq!(
        task("Credentials", json!({"RoleArn": "arn:aws:iam::1:role/r"})),
        "state S: field Credentials: cross-account task credentials are not run by the local engine"
    );
    // JSONata's fields in a JSONPath state (developer guide, "Transforming data with JSONata
    // in Step Functions": JSONata states have Arguments and Output instead of the path fields).
    assert_eq!(
        task("Arguments", json!({})),
        "state S: field Arguments: is a JSONata field, not allowed in a JSONPath state (set QueryLanguage to JSONata on the state or the state machine)"
    );
    assert_eq!(
        refused(one(json!({"Type": "Pass", "Output": {}, "End": true}))),
        "state S: field Output: is a JSONata field, not allowed in a JSONPath state (set QueryLanguage to JSONata on the state or the state machine)"
    );
    assert_eq!(
        refused(map_with(json!({"Items": [1]}))),
        "state S: field Items: is a JSONata field, not allowed in a JSONPath state (set QueryLanguage to JSONata on the state or the state machine)"
    );
    // Not a field of a Pass state at all: serde's "unknown field", not a feature refusal.
    assert_eq!(
        refused(one(json!({"Type": "Pass", "Arguments": {}, "End": true}))),
        "state S: field Arguments: not a field of a Pass state"
    );
}

#[test]
fn distributed_map_fields_need_mode_distributed() {
    // The fields themselves are checked in `distributed_tests.rs`; an inline Map refuses them.
    assert_eq!(
        refused(map_with(json!({"Label": "x"}))),
        "state S: field Label: is a Distributed Map field (ItemProcessor.ProcessorConfig.Mode DISTRIBUTED)"
    );
    assert_eq!(
        refused(map_with(json!({"ItemProcessor": {
            "ProcessorConfig": {"ExecutionType": "STANDARD", "Mode": "INLINE"},
            "StartAt": "I", "States": {"I": {"Type": "Succeed"}}
        }}))),
        "state S: field ItemProcessor.ProcessorConfig.ExecutionType: is a Distributed Map field (Mode DISTRIBUTED)"
    );
    assert_eq!(
        refused(map_with(json!({"ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED"},
            "StartAt": "I", "States": {"I": {"Type": "Succeed"}}
        }}))),
        "state S: field ItemProcessor.ProcessorConfig.ExecutionType: missing: a Distributed Map needs ExecutionType STANDARD or EXPRESS"
    );
    // Mode INLINE is what runs.
    StateMachine::from_json(&map_with(json!({"ItemProcessor": {
        "ProcessorConfig": {"Mode": "INLINE"},
        "StartAt": "I", "States": {"I": {"Type": "Succeed"}}
    }})))
    .unwrap();
}

/// A JSONata machine of one state named S.
fn jsonata(state: Value) -> Value {
    json!({"QueryLanguage": "JSONata", "StartAt": "S", "States": {"S": state}})
}

#[test]
fn jsonata_states_load_at_the_top_and_per_state() {
    // "QueryLanguage: JSONata at the top or per state" (developer guide, "Transforming data
    // with JSONata in Step Functions").
    StateMachine::from_json(&jsonata(
        json!({"Type": "Pass", "Output": "{% $states.input %}", "End": true}),
    ))
    .unwrap();
    StateMachine::from_json(&map_with(json!({"ItemProcessor": {
        "StartAt": "I", "States": {"I": {"Type": "Pass", "QueryLanguage": "JSONata", "Output": {"a": "{% 1 %}"}, "End": true}}
    }})))
    .unwrap();
    assert_eq!(
        refused(
            json!({"QueryLanguage": "XPath", "StartAt": "S", "States": {"S": {"Type": "Succeed"}}})
        ),
        "state machine: field QueryLanguage: must be JSONPath or JSONata, got \"XPath\""
    );
    // "If JSONata is specified at the top level, JSONPath cannot be used in the state machine
    // definition" (the CDK's QueryLanguage reference, stating the rule Step Functions applies).
    assert_eq!(
        refused(jsonata(json!({"Type": "Pass", "QueryLanguage": "JSONPath", "End": true}))),
        "state S: field QueryLanguage: JSONPath is not allowed in a state machine whose QueryLanguage is JSONata"
    );
}

#[test]
fn jsonata_field_rules_are_checked_at_load() {
    // "your workflow fields will be reduced from five JSONPath fields (InputPath, Parameters,
    // ResultSelector, ResultPath, and OutputPath) to only two fields: Arguments and Output";
    // the *Path variants of the other fields are JSONPath too.
    let why = "is a JSONPath field, not allowed in a JSONata state (use Arguments, Output or a {% %} expression)";
    let task = |field: &str, value: Value| {
        let mut state = json!({"Type": "Task", "Resource": "arn:x", "End": true});
        state[field] = value;
        refused(jsonata(state))
    };
    for (field, value) in [
        ("InputPath", json!("$.a")),
        ("Parameters", json!({})),
        ("ResultSelector", json!({})),
        ("ResultPath", json!("$.r")),
        ("OutputPath", json!("$.o")),
        ("TimeoutSecondsPath", json!("$.t")),
    ] {
        assert_eq!(task(field, value), format!("state S: field {field}: {why}"));
    }
    assert_eq!(
        refused(jsonata(json!({"Type": "Wait", "SecondsPath": "$.s", "End": true}))),
        format!("state S: field SecondsPath: {why}")
    );
    assert_eq!(
        refused(jsonata(json!({"Type": "Map", "ItemsPath": "$.items", "End": true,
            "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}}))),
        format!("state S: field ItemsPath: {why}")
    );
    assert_eq!(
        task("Catch", json!([{"ErrorEquals": ["States.ALL"], "Next": "S", "ResultPath": "$.e"}])),
        "state S: field Catch[0].ResultPath: is a JSONPath field, not allowed in a JSONata state (use Output)"
    );
    // A Choice rule has Condition, not Variable.
    assert_eq!(
        refused(jsonata(json!({"Type": "Choice", "Default": "S",
            "Choices": [{"Variable": "$.a", "BooleanEquals": true, "Next": "S"}]}))),
        "state S: field Choices[0].Variable: not a field of a JSONata Choice rule (Condition, Next, Output, Assign, Comment)"
    );
    assert_eq!(
        refused(jsonata(json!({"Type": "Choice", "Default": "S", "Choices": [{"Next": "S"}]}))),
        "state S: field Choices[0].Condition: missing"
    );
    // Expressions are parsed at load, and the field named.
    let e = refused(jsonata(json!({"Type": "Pass", "Output": {"a": ["{% 1 + %}"]}, "End": true})));
    assert!(
        e.starts_with("state S: field Output/a[0]: the JSONata expression '1 +' does not parse"),
        "{e}"
    );
    // Choice targets are checked like JSONPath ones.
    assert_eq!(
        refused(jsonata(
            json!({"Type": "Choice", "Choices": [{"Condition": "{% true %}", "Next": "Nowhere"}]})
        )),
        "state S: field Choices[0].Next: no state named 'Nowhere'"
    );
    // Variable names are checked as in JSONPath.
    let e = refused(jsonata(json!({"Type": "Pass", "Assign": {"1x": 1}, "End": true})));
    assert!(e.starts_with("state S: field Assign.1x:"), "{e}");
}

#[test]
fn nested_blocks_are_checked_like_the_machine() {
    let branch = |states: Value, start: &str| json!({"StartAt": start, "States": states});
    let parallel =
        |branches: Value| one(json!({"Type": "Parallel", "Branches": branches, "End": true}));
    assert_eq!(
        refused(parallel(json!([]))),
        "state S: field Branches: must hold at least one branch"
    );
    assert_eq!(
        refused(parallel(json!([branch(json!({"A": {"Type": "Succeed"}}), "Nope")]))),
        "state S: field Branches[0].StartAt: no state named 'Nope'"
    );
    assert_eq!(
        refused(parallel(json!([branch(json!({}), "A")]))),
        "state S: field Branches[0].States: has no states"
    );
    // Names are unique machine-wide.
    assert_eq!(
        refused(parallel(json!([
            branch(json!({"A": {"Type": "Succeed"}}), "A"),
            branch(json!({"A": {"Type": "Succeed"}}), "A")
        ]))),
        "state A: a state name must be unique in the whole state machine, nested states included"
    );
    // A transition cannot leave a branch.
    let definition = json!({
        "StartAt": "P",
        "States": {
            "P": {"Type": "Parallel", "Next": "After", "Branches": [
                branch(json!({"A": {"Type": "Pass", "Next": "After"}}), "A")
            ]},
            "After": {"Type": "Succeed"}
        }
    });
    assert_eq!(
        refused(definition),
        "state A: field Next: no state named 'After' here: a transition cannot leave or enter a Parallel branch or a Map item processor"
    );
    assert_eq!(
        refused(one(json!({"Type": "Map", "End": true}))),
        "state S: field ItemProcessor: missing: a Map state needs ItemProcessor (or its old name Iterator)"
    );
    assert_eq!(
        refused(map_with(json!({"ItemsPath": "$.a[*]"}))),
        "state S: field ItemsPath: '$.a[*]' must be a reference path (selecting a single value)"
    );
    assert_eq!(
        refused(map_with(json!({"MaxConcurrency": 1, "MaxConcurrencyPath": "$.n"}))),
        "state S: field MaxConcurrencyPath: MaxConcurrency is set too; use one"
    );
    assert_eq!(
        refused(map_with(json!({"ItemSelector": {}, "Parameters": {}}))),
        "state S: field Parameters: ItemSelector is set too; use one (Parameters is its old name)"
    );
}

#[test]
fn assign_names_and_scopes_are_checked() {
    let pass = |assign: Value| refused(one(json!({"Type": "Pass", "Assign": assign, "End": true})));
    assert_eq!(
        pass(json!({"1x": 1})),
        "state S: field Assign.1x: '1x' is not a variable name (a letter or _, then letters, digits or _, at most 80 characters)"
    );
    assert_eq!(
        pass(json!({"states": 1})),
        "state S: field Assign.states: $states is reserved by Step Functions"
    );
    assert_eq!(
        pass(json!({"x.$": "$..["})).split(": invalid path").next().unwrap(),
        "state S: field Assign.x.$"
    );
    assert_eq!(
        refused(one(json!({"Type": "Pass", "Assign": [1], "End": true}))),
        "state S: field Assign: must be an object"
    );
    // An iteration cannot assign a variable the enclosing scope assigns.
    let definition = json!({
        "StartAt": "Set",
        "States": {
            "Set": {"Type": "Pass", "Assign": {"total": 0}, "Next": "M"},
            "M": {"Type": "Map", "End": true, "ItemProcessor": {"StartAt": "I", "States": {
                "I": {"Type": "Pass", "Assign": {"total.$": "$"}, "End": true}
            }}}
        }
    });
    assert_eq!(
        refused(definition),
        "state I: field Assign.total.$: 'total' is assigned in an enclosing scope; a Parallel branch or Map iteration cannot assign an outer variable"
    );
    // A nested choice rule cannot assign.
    let definition = one(json!({"Type": "Choice", "Default": "S", "Choices": [
        {"Not": {"Variable": "$.a", "IsPresent": true, "Assign": {"x": 1}}, "Next": "S"}
    ]}));
    assert!(refused(definition).starts_with(
        "state S: field Choices[0].Not.Assign: only a top-level rule may have Assign"
    ),);
}

#[test]
fn nested_states_are_listed_typed_and_bound() {
    let m = StateMachine::from_json(&json!({
        "StartAt": "Fan",
        "States": {
            "Fan": {"Type": "Map", "ItemsPath": "$.nodes", "Next": "Egress",
                "Iterator": {"StartAt": "Work", "States": {
                    "Work": {"Type": "Task", "Resource": "arn:work", "Parameters": {"Node.$": "$"}, "End": true}
                }}},
            "Egress": {"Type": "Parallel", "End": true, "Branches": [
                {"StartAt": "Up", "States": {"Up": {"Type": "Task", "Resource": "arn:up", "End": true}}},
                {"StartAt": "Note", "States": {"Note": {"Type": "Pass", "End": true}}}
            ]}
        }
    }))
    .unwrap();
    assert_eq!(m.state_names().collect::<Vec<_>>(), ["Fan", "Egress"]);
    assert_eq!(m.all_state_names(), ["Fan", "Work", "Egress", "Up", "Note"]);
    assert_eq!(m.state_type("Work"), Some("Task"));
    assert_eq!(m.state_type("Fan"), Some("Map"));
    assert_eq!(m.state_type("Egress"), Some("Parallel"));
    let tasks: Vec<_> = m.task_resources().iter().map(|t| (t.state, t.resource)).collect();
    assert_eq!(tasks, [("Work", "arn:work"), ("Up", "arn:up")]);
}

#[test]
fn data_limit_is_caught_only_by_name_and_runtime_never() {
    let all = vec![names::ALL.to_string()];
    let task_failed = vec![names::TASK_FAILED.to_string()];
    let named = vec![names::DATA_LIMIT.to_string()];
    assert!(!error_matches(&all, names::DATA_LIMIT));
    assert!(!error_matches(&task_failed, names::DATA_LIMIT));
    assert!(error_matches(&named, names::DATA_LIMIT));
    assert!(!error_matches(&all, names::RUNTIME));
    assert!(!error_matches(&[names::RUNTIME.to_string()], names::RUNTIME));
    assert!(error_matches(&all, "Custom.Error"));
    assert!(!error_matches(&task_failed, names::TIMEOUT));
}

/// Every state type takes the common fields (`Comment` a string, `QueryLanguage`) and still
/// refuses a field of another type by name.
#[test]
fn the_common_fields_are_read_once_for_every_state_type() {
    let states = [
        json!({"Type": "Pass", "End": true}),
        json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true}),
        json!({"Type": "Wait", "Seconds": 1, "End": true}),
        json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "S"}], "Default": "S"}),
        json!({"Type": "Succeed"}),
        json!({"Type": "Fail"}),
        json!({"Type": "Parallel", "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Succeed"}}}], "End": true}),
        json!({"Type": "Map", "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}, "End": true}),
    ];
    for state in states {
        let mut with_common = state.clone();
        with_common["Comment"] = json!("why");
        with_common["QueryLanguage"] = json!("JSONPath");
        StateMachine::from_json(&one(with_common.clone()))
            .unwrap_or_else(|e| panic!("{with_common}: {e}"));
        let mut bad_comment = state.clone();
        bad_comment["Comment"] = json!(5);
        assert_eq!(refused(one(bad_comment)), "state S: field Comment: must be a string");
    }
    assert_eq!(
        refused(one(json!({"Type": "Succeed", "Seconds": 1}))),
        refused(one(json!({"Type": "Succeed", "Comment": "c", "Seconds": 1}))),
    );
}
