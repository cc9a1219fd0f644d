//! Loading a JSONata state (developer guide, "Transforming data with JSONata in Step
//! Functions"). A JSONata state has `Arguments` and `Output` where a JSONPath state has the
//! five path fields, and takes `{% %}` expressions in fields that are numbers or paths in
//! JSONPath. Those fields are lifted out of the definition here and compiled as templates;
//! what remains has the shape of a JSONPath state and goes through the same per-type compiler,
//! so that transitions, Retry, Catch, blocks and every other check are the same in both
//! languages.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::super::jsonata::{Template, is_expression};
use super::{AslError, assign};

/// Fields only JSONPath states have, refused in a JSONata state ("After selecting JSONata,
/// your workflow fields will be reduced from five JSONPath fields (InputPath, Parameters,
/// ResultSelector, ResultPath, and OutputPath) to only two fields: Arguments and Output"; the
/// `*Path` variants of other fields are JSONPath too: "the Path versions of fields are not
/// supported, use JSONata expressions instead").
const JSONPATH_ONLY: &[&str] = &[
    "InputPath",
    "OutputPath",
    "Parameters",
    "ResultSelector",
    "ResultPath",
    "Result",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "SecondsPath",
    "TimestampPath",
    "ItemsPath",
    "MaxConcurrencyPath",
    "ErrorPath",
    "CausePath",
    "ToleratedFailurePercentagePath",
    "ToleratedFailureCountPath",
];

/// Fields only JSONata states have, by the state types that have them: refused in a JSONPath
/// state.
pub(super) const JSONATA_ONLY: &[(&str, &[&str])] = &[
    ("Arguments", &["Task", "Parallel"]),
    ("Output", &["Task", "Pass", "Wait", "Choice", "Succeed", "Parallel", "Map"]),
    ("Items", &["Map"]),
];

/// A Choice rule of a JSONata state: `Condition` instead of `Variable` and an operator.
#[derive(Debug, Clone)]
pub(crate) struct JsonataRule {
    pub condition: Template,
    pub next: String,
    pub output: Option<Template>,
    pub assign: Option<Template>,
}

/// A Catch clause's `Output` and `Assign` (over `$states.errorOutput`).
#[derive(Debug, Clone, Default)]
pub(crate) struct CatchOutput {
    pub output: Option<Template>,
    pub assign: Option<Template>,
}

/// What a JSONata state has besides its JSONPath-shaped fields. Which fields are set depends
/// on the state's type; those of other types stay `None` or empty.
#[derive(Debug, Clone, Default)]
pub(crate) struct JsonataState {
    /// Task, Parallel: the task's arguments, the branches' input (default: the state input).
    pub arguments: Option<Template>,
    /// Every type but Fail (default: the result for Task/Parallel/Map, else the input).
    pub output: Option<Template>,
    pub assign: Option<Template>,
    /// Task: `TimeoutSeconds` as an expression.
    pub timeout_seconds: Option<Template>,
    /// Wait: `Seconds` or `Timestamp` as an expression.
    pub seconds: Option<Template>,
    pub timestamp: Option<Template>,
    /// Map: `Items` (default: the state input), `ItemSelector`, `MaxConcurrency` as an
    /// expression.
    pub items: Option<Template>,
    pub item_selector: Option<Template>,
    pub max_concurrency: Option<Template>,
    /// Fail: `Error` and `Cause` as expressions.
    pub error: Option<Template>,
    pub cause: Option<Template>,
    /// Choice: its rules.
    pub rules: Vec<JsonataRule>,
    /// Task, Parallel, Map: by Catch clause.
    pub catchers: Vec<CatchOutput>,
    /// Task: `Arguments` as written, so that static fields (`FunctionName`, `JobQueue`) can be
    /// bound at load as a JSONPath task's `Parameters` are.
    pub raw_arguments: Option<Value>,
}

fn template(state: &str, field: &str, value: &Value) -> Result<Template, AslError> {
    Template::compile(value).map_err(|(at, m)| AslError::field(state, format!("{field}{at}"), m))
}

/// Lifts the JSONata fields of a state of type `ty` out of `fields`. Returns what remains
/// (JSONPath-shaped, for the per-type compiler) and the lifted fields compiled.
pub(super) fn lift(
    state: &str,
    ty: &str,
    fields: &Map<String, Value>,
    outer_vars: &BTreeSet<String>,
) -> Result<(Value, JsonataState), AslError> {
    if let Some(field) = JSONPATH_ONLY.iter().find(|f| fields.contains_key(**f)) {
        return Err(AslError::field(
            state,
            *field,
            "is a JSONPath field, not allowed in a JSONata state (use Arguments, Output or a {% %} expression)",
        ));
    }
    let mut rest = fields.clone();
    let mut out = JsonataState::default();
    let mut take = |name: &str, when: &dyn Fn(&Value) -> bool| -> Option<Value> {
        if rest.get(name).is_some_and(when) { rest.remove(name) } else { None }
    };
    let any = |_: &Value| true;
    let expression = |v: &Value| is_expression(v);
    let compiled = |field: &str, value: Option<Value>| -> Result<Option<Template>, AslError> {
        value.map(|v| template(state, field, &v)).transpose()
    };
    if ty != "Fail" {
        out.output = compiled("Output", take("Output", &any))?;
    }
    if matches!(ty, "Task" | "Pass" | "Wait" | "Choice" | "Parallel" | "Map") {
        let raw = take("Assign", &any);
        if let Some(value) = &raw {
            // Names are checked as in JSONPath (letters, digits, `_`, not an outer scope's).
            assign(state, "Assign", Some(value), outer_vars)?;
        }
        out.assign = compiled("Assign", raw)?;
    }
    let mut raw_arguments = None;
    if matches!(ty, "Task" | "Parallel") {
        raw_arguments = take("Arguments", &any);
        out.arguments = compiled("Arguments", raw_arguments.clone())?;
    }
    match ty {
        "Task" => {
            out.timeout_seconds = compiled("TimeoutSeconds", take("TimeoutSeconds", &expression))?;
            // Heartbeats are shape-checked only (see the JSONPath Task): an expression is
            // parsed and not run.
            compiled("HeartbeatSeconds", take("HeartbeatSeconds", &expression))?;
        }
        "Wait" => {
            out.seconds = compiled("Seconds", take("Seconds", &expression))?;
            out.timestamp = compiled("Timestamp", take("Timestamp", &expression))?;
            if out.seconds.is_some() || out.timestamp.is_some() {
                // A stand-in, so that the Wait compiler's "exactly one of" check still counts
                // the field; the expression is what runs.
                rest.insert("Seconds".to_string(), json!(0));
            }
        }
        "Map" => {
            out.items = compiled("Items", take("Items", &any))?;
            out.item_selector = compiled("ItemSelector", take("ItemSelector", &any))?;
            out.max_concurrency = compiled("MaxConcurrency", take("MaxConcurrency", &expression))?;
        }
        "Fail" => {
            out.error = compiled("Error", take("Error", &expression))?;
            out.cause = compiled("Cause", take("Cause", &expression))?;
        }
        "Choice" => {
            let rules = rest.remove("Choices").unwrap_or(Value::Null);
            out.rules = rules_of(state, &rules, outer_vars)?;
        }
        _ => {}
    }
    if let Some(Value::Array(catch)) = rest.get_mut("Catch") {
        for (i, clause) in catch.iter_mut().enumerate() {
            let Value::Object(clause) = clause else { continue };
            let at = format!("Catch[{i}]");
            if clause.contains_key("ResultPath") {
                return Err(AslError::field(
                    state,
                    format!("{at}.ResultPath"),
                    "is a JSONPath field, not allowed in a JSONata state (use Output)",
                ));
            }
            let assign_raw = clause.remove("Assign");
            if let Some(value) = &assign_raw {
                assign(state, &format!("{at}.Assign"), Some(value), outer_vars)?;
            }
            out.catchers.push(CatchOutput {
                output: clause
                    .remove("Output")
                    .map(|v| template(state, &format!("{at}.Output"), &v))
                    .transpose()?,
                assign: assign_raw
                    .map(|v| template(state, &format!("{at}.Assign"), &v))
                    .transpose()?,
            });
        }
    }
    out.raw_arguments = raw_arguments;
    Ok((Value::Object(rest), out))
}

/// A JSONata Choice state's rules: each `Condition`, `Next`, and optionally `Output`,
/// `Assign` and `Comment` (developer guide, "Choice workflow state": "Condition (JSONata
/// only)").
fn rules_of(
    state: &str,
    raw: &Value,
    outer_vars: &BTreeSet<String>,
) -> Result<Vec<JsonataRule>, AslError> {
    let Value::Array(rules) = raw else {
        return Err(AslError::field(state, "Choices", "missing: a Choice state needs Choices"));
    };
    if rules.is_empty() {
        return Err(AslError::field(state, "Choices", "must hold at least one rule"));
    }
    rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let at = format!("Choices[{i}]");
            let Value::Object(rule) = rule else {
                return Err(AslError::field(state, at, "must be an object"));
            };
            for key in rule.keys() {
                if !matches!(key.as_str(), "Condition" | "Next" | "Output" | "Assign" | "Comment") {
                    return Err(AslError::field(
                        state,
                        format!("{at}.{key}"),
                        "not a field of a JSONata Choice rule (Condition, Next, Output, Assign, Comment)",
                    ));
                }
            }
            let condition = match rule.get("Condition") {
                Some(v) => template(state, &format!("{at}.Condition"), v)?,
                None => {
                    return Err(AslError::field(state, format!("{at}.Condition"), "missing"));
                }
            };
            let next = match rule.get("Next") {
                Some(Value::String(n)) => n.clone(),
                _ => {
                    return Err(AslError::field(
                        state,
                        format!("{at}.Next"),
                        "missing: a rule needs Next (a state name)",
                    ));
                }
            };
            let assign_raw = rule.get("Assign");
            if let Some(value) = assign_raw {
                assign(state, &format!("{at}.Assign"), Some(value), outer_vars)?;
            }
            Ok(JsonataRule {
                condition,
                next,
                output: rule
                    .get("Output")
                    .map(|v| template(state, &format!("{at}.Output"), v))
                    .transpose()?,
                assign: assign_raw
                    .map(|v| template(state, &format!("{at}.Assign"), v))
                    .transpose()?,
            })
        })
        .collect()
}
