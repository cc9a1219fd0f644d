//! Citations are to the developer guide, "Transforming data with JSONata in Step Functions".

use serde_json::{Value, json};

use super::*;

fn eval_with(expression: &str, states: Value, vars: Value) -> Result<Value, StateError> {
    let template = Template::compile(&json!(expression)).unwrap();
    let Value::Object(vars) = vars else { panic!("vars must be an object") };
    template.eval(&Scope { states: &states, vars: &vars }, "Output")
}

fn eval(expression: &str) -> Result<Value, StateError> {
    eval_with(expression, json!({"input": {"n": 3, "list": [1, 2], "name": "x"}}), json!({}))
}

#[test]
fn states_and_variables_are_bound() {
    assert_eq!(eval("{% $states.input.n + 1 %}").unwrap(), json!(4));
    assert_eq!(
        eval_with(
            "{% $greeting & ' ' & $states.input.name %}",
            json!({"input": {"name": "Ada"}}),
            json!({"greeting": "hi"})
        )
        .unwrap(),
        json!("hi Ada")
    );
    assert_eq!(eval("{% $count($states.input.list) %}").unwrap(), json!(2));
    // $type and $formatNumber, which jsonata-rs lacks.
    assert_eq!(eval("{% $type($states.input.list) %}").unwrap(), json!("array"));
    assert_eq!(eval("{% $formatNumber(1234.5, '#,##0.00') %}").unwrap(), json!("1,234.50"));
}

#[test]
fn whole_numbers_come_back_as_integers() {
    assert_eq!(eval("{% 6 / 2 %}").unwrap().to_string(), "3");
    assert_eq!(eval("{% 1 / 4 %}").unwrap(), json!(0.25));
    assert_eq!(eval("{% [$states.input.n * 2] %}").unwrap().to_string(), "[6]");
}

#[test]
fn a_string_is_an_expression_only_between_braces_with_no_space_outside() {
    // "The string must start with {% (no leading spaces) and end with %}".
    let t = Template::compile(&json!({"a": " {% 1 %}", "b": "{% 1 %}", "c": ["{% 2 %}"]})).unwrap();
    let states = json!({});
    let vars = Map::new();
    assert_eq!(
        t.eval(&Scope { states: &states, vars: &vars }, "Output").unwrap(),
        json!({"a": " {% 1 %}", "b": 1, "c": [2]})
    );
}

#[test]
fn nothing_is_a_query_evaluation_error_naming_expression_and_field() {
    let template = Template::compile(&json!({"v": ["{% $states.input.absent %}"]})).unwrap();
    let states = json!({"input": {}});
    let vars = Map::new();
    let e = template.eval(&Scope { states: &states, vars: &vars }, "Output").unwrap_err();
    assert_eq!(e.error, "States.QueryEvaluationError");
    assert_eq!(
        e.cause,
        "The JSONata expression '$states.input.absent' specified for the field 'Output/v[0]' returned nothing (undefined)."
    );
}

#[test]
fn evaluation_errors_are_query_evaluation_errors() {
    let e = eval("{% $states.input.name + 1 %}").unwrap_err();
    assert_eq!(e.error, "States.QueryEvaluationError");
    assert!(
        e.cause.starts_with(
            "The JSONata expression '$states.input.name + 1' specified for the field 'Output' threw an error during evaluation."
        ),
        "{}",
        e.cause
    );
}

#[test]
fn parse_errors_and_eval_are_refused_at_load() {
    let (at, message) = Template::compile(&json!({"a": "{% $states.input. %}"})).unwrap_err();
    assert_eq!(at, "/a");
    assert!(message.contains("does not parse"), "{message}");
    // "you will not use .$ on JSON object key names".
    let (at, message) = Template::compile(&json!({"a": {"b.$": "$.x"}})).unwrap_err();
    assert_eq!(at, "/a/b.$");
    assert!(message.contains("JSONPath"), "{message}");
    // "$eval is not available ... use $parse".
    let (_, message) = Template::compile(&json!("{% $eval('1') %}")).unwrap_err();
    assert!(message.contains("$parse"), "{message}");
}

#[test]
fn step_functions_functions() {
    // "JSONata functions provided by Step Functions".
    assert_eq!(eval("{% $partition([1,2,3,4,5], 2) %}").unwrap(), json!([[1, 2], [3, 4], [5]]));
    assert_eq!(eval("{% $range(0, 10, 2) %}").unwrap(), json!([0, 2, 4, 6, 8, 10]));
    assert_eq!(eval("{% $range(3, 1, -1) %}").unwrap(), json!([3, 2, 1]));
    assert_eq!(
        eval("{% $hash('input data', 'SHA-1') %}").unwrap(),
        json!("aaff4a450a104cd177d28d18d74485e8cae074b7")
    );
    assert!(eval("{% $hash('x', 'CRC32') %}").is_err());
    assert_eq!(eval("{% $parse('{\"a\": [1]}') %}").unwrap(), json!({"a": [1]}));
    let uuid = eval("{% $uuid() %}").unwrap();
    assert_eq!(uuid.as_str().unwrap().len(), 36);
    let seeded = eval("{% $random(7) %}").unwrap();
    assert_eq!(seeded, eval("{% $random(7) %}").unwrap());
    let r = eval("{% $random() %}").unwrap().as_f64().unwrap();
    assert!((0.0..1.0).contains(&r));
}
