//! JSONata in Step Functions: `{% expression %}` strings anywhere in a JSONata state's
//! `Arguments`, `Output`, `Assign` and the other fields that take them, parsed at load and
//! evaluated with `$states` and the workflow variables bound (developer guide, "Transforming
//! data with JSONata in Step Functions").
//!
//! The language itself is the `jsonata-core` crate (2.2.x), which passes the JSONata reference
//! test suite; `jsonata-rs` 0.3.4, the other crate, lacks `$type` and `$formatNumber` and
//! answers `1/0` with nothing, so it was not used. What jsonata-core lacks for Step Functions,
//! added here:
//! - the functions Step Functions adds ("JSONata functions provided by Step Functions"):
//!   `$partition`, `$range`, `$hash`, `$random` (with an optional seed, replacing JSONata's own),
//!   `$uuid` and `$parse`; and `$eval`, which Step Functions does not offer, refused;
//! - numbers: jsonata-core holds every number as an f64, so whole results come back as
//!   integers (`3`, not `3.0`) the way the JavaScript engine Step Functions runs prints them;
//! - an evaluation that yields nothing is an error (`States.QueryEvaluationError`), as JSON
//!   has no undefined.
//!
//! Its evaluator holds `Rc`s, so it is not `Send` and cannot be kept across an await: each
//! evaluation builds one, evaluates synchronously, and drops it. The parsed expressions (plain
//! data) are kept in the model.

use jsonata_core::ast::AstNode;
use jsonata_core::evaluator::{Context, Evaluator, EvaluatorError};
use jsonata_core::value::JValue;
use serde_json::{Map, Number, Value};

use super::error::StateError;
use super::path::Vars;

/// The error a failed JSONata evaluation raises (developer guide, "Handling errors in Step
/// Functions workflows": `States.QueryEvaluationError`).
pub(crate) const QUERY_EVALUATION: &str = "States.QueryEvaluationError";

/// One `{% %}` expression: its text (for error causes) and its parsed form.
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    text: String,
    ast: AstNode,
}

/// A field's value with its expressions parsed: a JSON value where any string of the form
/// `{% ... %}`, at any depth, is an expression.
#[derive(Debug, Clone)]
pub(crate) enum Template {
    Literal(Value),
    Expr(Expr),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
}

/// What an expression sees: `$states` and the workflow variables in scope.
pub(crate) struct Scope<'a> {
    /// `{"input", "context"}`, with `result` or `errorOutput` where the field has them.
    pub states: &'a Value,
    pub vars: &'a Vars,
}

/// The expression inside `{% %}`, if `text` is one. The developer guide: a JSONata string
/// "must start with `{%` ... and end with `%}`", with no space outside them.
fn expression_text(text: &str) -> Option<&str> {
    text.strip_prefix("{%").and_then(|t| t.strip_suffix("%}")).map(str::trim)
}

/// True when a string is a `{% %}` expression.
pub(crate) fn is_expression(value: &Value) -> bool {
    value.as_str().is_some_and(|s| expression_text(s).is_some())
}

impl Expr {
    pub fn parse(text: &str) -> Result<Expr, String> {
        if text.is_empty() {
            return Err("the JSONata expression is empty".to_string());
        }
        // A textual check (so it also refuses `$eval(` inside a string literal): walking
        // jsonata-core's whole AST for one function name is more code than the rule is worth.
        if text.contains("$eval(") {
            return Err(
                "$eval is not available in Step Functions (developer guide, \"Transforming data with JSONata\"): use $parse"
                    .to_string(),
            );
        }
        let ast = jsonata_core::parser::parse(text).map_err(|e| {
            format!("the JSONata expression '{text}' does not parse: {}", e.display_message())
        })?;
        Ok(Expr { text: text.to_string(), ast })
    }

    /// Evaluates the expression; `field` names where it is written, for the error cause
    /// (`Output/a/b[0]`).
    pub fn eval(&self, scope: &Scope<'_>, field: &str) -> Result<Value, StateError> {
        let mut context = Context::new();
        context.bind("states".to_string(), JValue::from(scope.states.clone()));
        for (name, value) in scope.vars {
            context.bind(name.clone(), JValue::from(value.clone()));
        }
        let mut evaluator = Evaluator::with_context(context);
        register_step_functions_functions(&mut evaluator);
        // No input document: the developer guide says `$` and bare field names at the top
        // level are not for Step Functions expressions; the data is in `$states`.
        let result = evaluator.evaluate(&self.ast, &JValue::Undefined).map_err(|e| {
            StateError::new(
                QUERY_EVALUATION,
                format!(
                    "The JSONata expression '{}' specified for the field '{field}' threw an error during evaluation. {}",
                    self.text,
                    e.message()
                ),
            )
        })?;
        if result.is_undefined() {
            return Err(StateError::new(
                QUERY_EVALUATION,
                format!(
                    "The JSONata expression '{}' specified for the field '{field}' returned nothing (undefined).",
                    self.text
                ),
            ));
        }
        if result.is_function() {
            return Err(StateError::new(
                QUERY_EVALUATION,
                format!(
                    "The JSONata expression '{}' specified for the field '{field}' returned a function, which is not JSON.",
                    self.text
                ),
            ));
        }
        Ok(whole_numbers(Value::from(&result)))
    }
}

impl Template {
    /// Parses every expression in `value`. The error names the place (`a/b[0]`, empty for
    /// the value itself) and the problem.
    pub fn compile(value: &Value) -> Result<Template, (String, String)> {
        Ok(match value {
            Value::String(s) => match expression_text(s) {
                Some(text) => Template::Expr(Expr::parse(text).map_err(|m| (String::new(), m))?),
                None => Template::Literal(value.clone()),
            },
            Value::Object(map) => Template::Object(
                map.iter()
                    .map(|(k, v)| {
                        // "you will not use .$ on JSON object key names" in a JSONata state.
                        if k.ends_with(".$") {
                            return Err((
                                format!("/{k}"),
                                "a key ending in .$ is JSONPath; in a JSONata state the value is a {% %} expression and the key has no .$".to_string(),
                            ));
                        }
                        Template::compile(v)
                            .map(|t| (k.clone(), t))
                            .map_err(|(at, m)| (join(&format!("/{k}"), &at), m))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Value::Array(items) => Template::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        Template::compile(v).map_err(|(at, m)| (join(&format!("[{i}]"), &at), m))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => Template::Literal(other.clone()),
        })
    }

    /// Evaluates every expression, `field` naming the field (`Output`, `Assign`).
    pub fn eval(&self, scope: &Scope<'_>, field: &str) -> Result<Value, StateError> {
        match self {
            Template::Literal(v) => Ok(v.clone()),
            Template::Expr(e) => e.eval(scope, field),
            Template::Object(entries) => {
                let mut out = Map::new();
                for (k, t) in entries {
                    out.insert(k.clone(), t.eval(scope, &format!("{field}/{k}"))?);
                }
                Ok(Value::Object(out))
            }
            Template::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, t)| t.eval(scope, &format!("{field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
        }
    }

    /// The names an `Assign` object assigns, in order with their templates.
    pub fn entries(&self) -> &[(String, Template)] {
        match self {
            Template::Object(entries) => entries,
            _ => &[],
        }
    }
}

fn join(head: &str, tail: &str) -> String {
    format!("{head}{tail}")
}

/// jsonata-core holds numbers as f64: a whole number within the exactly representable range
/// becomes a JSON integer again, as JavaScript prints it (`-0` too becomes `0`).
fn whole_numbers(value: Value) -> Value {
    const MAX_EXACT: f64 = 9_007_199_254_740_991.0;
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() <= MAX_EXACT && !n.is_i64() && !n.is_u64() => {
                Value::Number(Number::from(f as i64))
            }
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, whole_numbers(v))).collect())
        }
        other => other,
    }
}

fn fail(message: impl Into<String>) -> EvaluatorError {
    EvaluatorError::EvaluationError(message.into())
}

fn registered(result: Result<(), EvaluatorError>) {
    // The names are fixed and none collides with a compilable built-in: failing here is a bug.
    result.expect("Step Functions' JSONata functions register");
}

/// The functions Step Functions adds to JSONata (developer guide, "Transforming data with
/// JSONata in Step Functions", "JSONata functions provided by Step Functions").
fn register_step_functions_functions(evaluator: &mut Evaluator) {
    registered(evaluator.register_fn("partition", partition));
    registered(evaluator.register_fn("range", range));
    registered(evaluator.register_fn("hash", hash));
    registered(
        evaluator
            .register_fn("uuid", |_: &[JValue]| Ok(JValue::from(uuid::Uuid::new_v4().to_string()))),
    );
    registered(evaluator.register_fn("parse", parse));
    registered(evaluator.register_fn_override("random", random));
}

fn json_arg(args: &[JValue], i: usize) -> Value {
    args.get(i).map(Value::from).unwrap_or(Value::Null)
}

fn integer_arg(
    args: &[JValue],
    i: usize,
    function: &str,
    what: &str,
) -> Result<i64, EvaluatorError> {
    match args.get(i).and_then(JValue::as_f64) {
        Some(f) if f.fract() == 0.0 && f.is_finite() => Ok(f as i64),
        _ => Err(fail(format!("${function}: {what} must be an integer"))),
    }
}

/// `$partition(array, size)`: the array in chunks of `size`, the last one shorter if need be.
fn partition(args: &[JValue]) -> Result<JValue, EvaluatorError> {
    let Value::Array(items) = json_arg(args, 0) else {
        return Err(fail("$partition: the first argument must be an array"));
    };
    let size = integer_arg(args, 1, "partition", "the chunk size")?;
    if size < 1 {
        return Err(fail("$partition: the chunk size must be a positive integer"));
    }
    let chunks: Vec<Value> =
        items.chunks(size as usize).map(|c| Value::Array(c.to_vec())).collect();
    Ok(JValue::from(Value::Array(chunks)))
}

/// `$range(start, end, step)`: numbers from `start` to `end` inclusive by `step`, as
/// `States.ArrayRange` (at most 1000 of them).
fn range(args: &[JValue]) -> Result<JValue, EvaluatorError> {
    const MAX_ITEMS: usize = 1000;
    if args.len() != 3 {
        return Err(fail("$range: takes three arguments: start, end and step"));
    }
    let start = integer_arg(args, 0, "range", "the start")?;
    let end = integer_arg(args, 1, "range", "the end")?;
    let step = integer_arg(args, 2, "range", "the step")?;
    if step == 0 {
        return Err(fail("$range: the step must not be 0"));
    }
    let mut out = Vec::new();
    let mut n = start;
    while (step > 0 && n <= end) || (step < 0 && n >= end) {
        if out.len() == MAX_ITEMS {
            return Err(fail(format!("$range: more than {MAX_ITEMS} items")));
        }
        out.push(Value::from(n));
        n += step;
    }
    Ok(JValue::from(Value::Array(out)))
}

/// `$hash(string, algorithm)`: the hex digest, with `States.Hash`'s algorithms.
fn hash(args: &[JValue]) -> Result<JValue, EvaluatorError> {
    let Some(data) = args.first().and_then(JValue::as_str) else {
        return Err(fail("$hash: the first argument must be a string"));
    };
    let Some(algorithm) = args.get(1).and_then(JValue::as_str) else {
        return Err(fail("$hash: the second argument must be the algorithm's name"));
    };
    super::intrinsic::hash(data, algorithm)
        .map(JValue::from)
        .map_err(|m| fail(format!("$hash: {m}")))
}

/// `$parse(string)`: the JSON the string holds (Step Functions' replacement for `$eval`).
fn parse(args: &[JValue]) -> Result<JValue, EvaluatorError> {
    let Some(text) = args.first().and_then(JValue::as_str) else {
        return Err(fail("$parse: the argument must be a string"));
    };
    serde_json::from_str::<Value>(text)
        .map(JValue::from)
        .map_err(|e| fail(format!("$parse: the string is not JSON: {e}")))
}

/// `$random([seed])`: a number in [0, 1); the same seed gives the same number.
fn random(args: &[JValue]) -> Result<JValue, EvaluatorError> {
    use rand::{Rng, SeedableRng};
    let value: f64 = match args.first() {
        None | Some(JValue::Undefined) => rand::rng().random(),
        Some(seed) => {
            let seed = seed
                .as_f64()
                .filter(|f| f.is_finite() && f.fract() == 0.0)
                .ok_or_else(|| fail("$random: the seed must be an integer"))?;
            rand::rngs::StdRng::seed_from_u64(seed as i64 as u64).random()
        }
    };
    Ok(JValue::Number(value))
}

#[cfg(test)]
#[path = "jsonata_tests.rs"]
mod tests;
