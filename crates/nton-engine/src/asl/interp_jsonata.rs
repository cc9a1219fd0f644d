//! Running a JSONata state (developer guide, "Transforming data with JSONata in Step
//! Functions"): no paths; `Arguments` builds what a task or the branches get (default: the
//! state input), `Output` the state output (default: the result of a Task, Parallel or Map,
//! else the input), `Assign` the variables. Expressions see `$states.input` (the state's
//! input), `$states.context` (the context object), `$states.result` in `Output` and `Assign`
//! after a result and `$states.errorOutput` in a Catch clause. `Output` and `Assign` are
//! evaluated with the variables as they were when the state was entered ("Passing data between
//! states with variables": assignments take effect for the next state).

use std::time::Duration;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::super::error::{StateError, excerpt, names};
use super::super::jsonata::{QUERY_EVALUATION, Scope, Template};
use super::super::model::{self, JsonataState, Kind, TaskTimeout, Text};
use super::super::path::Vars;
use super::{Attempt, Lane, Run, Step, check_size, go, until};

/// `$states` for a field: the input and context, with a result or error output where the
/// field has one.
fn states(input: &Value, context: &Value, extra: Option<(&str, Value)>) -> Value {
    let mut states = json!({"input": input, "context": context});
    if let Some((key, value)) = extra {
        states[key] = value;
    }
    states
}

fn eval_or(
    template: Option<&Template>,
    scope: &Scope<'_>,
    field: &str,
    default: impl FnOnce() -> Value,
) -> Result<Value, StateError> {
    match template {
        Some(t) => t.eval(scope, field),
        None => Ok(default()),
    }
}

/// A JSONata `Assign`: each variable's expression, all with the variables as they were.
fn assign(
    template: Option<&Template>,
    scope: &Scope<'_>,
    field: &str,
) -> Result<Option<Vars>, StateError> {
    let Some(template) = template else {
        return Ok(None);
    };
    let mut values = Map::new();
    for (name, value) in template.entries() {
        values.insert(name.clone(), value.eval(scope, &format!("{field}/{name}"))?);
    }
    let values = Value::Object(values);
    check_size(&values, || "the variables assigned".to_string())?;
    match values {
        Value::Object(values) => Ok(Some(values)),
        _ => unreachable!("built as an object"),
    }
}

fn query_error(cause: String) -> StateError {
    StateError::new(QUERY_EVALUATION, cause)
}

/// A field that must evaluate to a whole number in `min..=max` (`TimeoutSeconds`, `Seconds`,
/// `MaxConcurrency`).
fn whole_number(
    template: &Template,
    scope: &Scope<'_>,
    field: &str,
    min: u64,
    max: u64,
) -> Result<u64, StateError> {
    let value = template.eval(scope, field)?;
    value.as_u64().filter(|n| (min..=max).contains(n)).ok_or_else(|| {
        query_error(format!(
            "The field '{field}' must evaluate to an integer from {min} to {max}, got {}",
            excerpt(&value)
        ))
    })
}

/// Largest number Step Functions accepts for seconds.
const MAX_SECONDS: u64 = 99_999_999;

/// A Catch clause of a JSONata state: `Output` (default: the error output) and `Assign`, over
/// `$states.errorOutput` and `$states.input`.
pub(super) fn caught(
    j: &JsonataState,
    index: usize,
    input: &Value,
    error_output: Value,
    context: &Value,
    vars: &Vars,
) -> Result<(Value, Option<Vars>), StateError> {
    let clause = j.catchers.get(index).cloned().unwrap_or_default();
    let st = states(input, context, Some(("errorOutput", error_output.clone())));
    let scope = Scope { states: &st, vars };
    let at = format!("Catch[{index}]");
    let assigned = assign(clause.assign.as_ref(), &scope, &format!("{at}/Assign"))?;
    let output = eval_or(clause.output.as_ref(), &scope, &format!("{at}/Output"), || error_output)?;
    Ok((output, assigned))
}

impl Run<'_> {
    /// Pass, Wait, Choice, Succeed and Fail states in JSONata.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn step_jsonata(
        &self,
        name: &str,
        state: &model::State,
        j: &JsonataState,
        raw: Value,
        entered: OffsetDateTime,
        vars: &Vars,
        lane: &Lane,
    ) -> Result<(Step, Option<Vars>), StateError> {
        let context = self.context(name, entered, None);
        let st = states(&raw, &context, None);
        let scope = Scope { states: &st, vars };
        let output_and_assign = |output: Option<&Template>,
                                 assign_t: Option<&Template>,
                                 at: &str|
         -> Result<(Value, Option<Vars>), StateError> {
            let assigned = assign(assign_t, &scope, &format!("{at}Assign"))?;
            let output = eval_or(output, &scope, &format!("{at}Output"), || raw.clone())?;
            Ok((output, assigned))
        };
        match &state.kind {
            Kind::Pass(pass) => {
                let (output, assigned) =
                    output_and_assign(j.output.as_ref(), j.assign.as_ref(), "")?;
                Ok((go(&pass.transition, output), assigned))
            }
            Kind::Succeed => {
                let (output, _) = output_and_assign(j.output.as_ref(), None, "")?;
                Ok((Step::End(output), None))
            }
            Kind::Wait(wait) => {
                let duration = if let Some(t) = &j.seconds {
                    Duration::from_secs(whole_number(t, &scope, "Seconds", 0, MAX_SECONDS)?)
                } else if let Some(t) = &j.timestamp {
                    let value = t.eval(&scope, "Timestamp")?;
                    let at = value.as_str().and_then(super::super::choice::parse_timestamp).ok_or_else(|| {
                        query_error(format!(
                            "The field 'Timestamp' must evaluate to an RFC 3339 timestamp (ISO 8601 with a 'T' separator, such as 2016-03-14T01:59:00Z), got {}",
                            excerpt(&value)
                        ))
                    })?;
                    until(at, self.now(lane))
                } else {
                    match &wait.wait_for {
                        model::WaitFor::Seconds(s) => Duration::from_secs(*s),
                        model::WaitFor::Timestamp(t) => until(*t, self.now(lane)),
                        _ => unreachable!("a JSONata Wait has no path"),
                    }
                };
                let (output, assigned) =
                    output_and_assign(j.output.as_ref(), j.assign.as_ref(), "")?;
                self.sleep(name, duration, lane).await?;
                Ok((go(&wait.transition, output), assigned))
            }
            Kind::Choice(choice) => {
                for (i, rule) in j.rules.iter().enumerate() {
                    let field = format!("Choices[{i}]/Condition");
                    let matched = match rule.condition.eval(&scope, &field)? {
                        Value::Bool(b) => b,
                        other => {
                            return Err(query_error(format!(
                                "The field '{field}' must evaluate to a boolean, got {}",
                                excerpt(&other)
                            )));
                        }
                    };
                    if matched {
                        let at = format!("Choices[{i}]/");
                        let (output, assigned) =
                            output_and_assign(rule.output.as_ref(), rule.assign.as_ref(), &at)?;
                        return Ok((Step::Next(rule.next.clone(), output), assigned));
                    }
                }
                let Some(default) = &choice.default else {
                    return Err(StateError::new(
                        names::NO_CHOICE,
                        format!("No choice rule matched and there is no Default in state '{name}'"),
                    ));
                };
                let (output, assigned) =
                    output_and_assign(j.output.as_ref(), j.assign.as_ref(), "")?;
                Ok((Step::Next(default.clone(), output), assigned))
            }
            Kind::Fail(fail) => {
                let text = |expr: Option<&Template>, literal: &Option<Text>, field: &str| {
                    let value = match (expr, literal) {
                        (Some(t), _) => t.eval(&scope, field)?,
                        (None, Some(Text::Literal(s))) => return Ok(s.clone()),
                        _ => return Ok(String::new()),
                    };
                    match value {
                        Value::String(s) => Ok(s),
                        other => Err(query_error(format!(
                            "The field '{field}' must evaluate to a string, got {}",
                            excerpt(&other)
                        ))),
                    }
                };
                let error = text(j.error.as_ref(), &fail.error, "Error")?;
                let cause = text(j.cause.as_ref(), &fail.cause, "Cause")?;
                let mut e = StateError::new(error, cause);
                e.terminal = true;
                Err(e)
            }
            Kind::Task(_) | Kind::Parallel(_) | Kind::Map(_) => {
                unreachable!("run through retrying")
            }
        }
    }

    /// `Output` (default: the result) and `Assign` after a Task, Parallel or Map result.
    fn finish_jsonata(
        &self,
        j: &JsonataState,
        result: Value,
        raw: &Value,
        at: &Attempt<'_>,
    ) -> Result<(Value, Option<Vars>), StateError> {
        let st = states(raw, at.context, Some(("result", result.clone())));
        let scope = Scope { states: &st, vars: at.vars };
        let assigned = assign(j.assign.as_ref(), &scope, "Assign")?;
        let output = eval_or(j.output.as_ref(), &scope, "Output", || result)?;
        Ok((output, assigned))
    }

    pub(super) async fn attempt_task_jsonata(
        &self,
        name: &str,
        task: &model::Task,
        j: &JsonataState,
        raw: &Value,
        at: &Attempt<'_>,
    ) -> Result<(Value, Option<Vars>), StateError> {
        let st = states(raw, at.context, None);
        let scope = Scope { states: &st, vars: at.vars };
        let arguments = eval_or(j.arguments.as_ref(), &scope, "Arguments", || raw.clone())?;
        check_size(&arguments, || format!("the arguments of task {name}"))?;
        let timeout = match (&j.timeout_seconds, &task.timeout) {
            (Some(t), _) => Some(whole_number(t, &scope, "TimeoutSeconds", 1, MAX_SECONDS)?),
            (None, Some(TaskTimeout::Seconds(s))) => Some(*s),
            (None, _) => None,
        };
        let timeout = timeout.map(Duration::from_secs);
        let result =
            self.invoke_task(name, &task.resource, arguments, timeout, at.context, at.lane).await?;
        self.finish_jsonata(j, result, raw, at)
    }

    pub(super) async fn attempt_parallel_jsonata(
        &self,
        parallel: &model::Parallel,
        j: &JsonataState,
        raw: &Value,
        at: &Attempt<'_>,
    ) -> Result<(Value, Option<Vars>), StateError> {
        let st = states(raw, at.context, None);
        let scope = Scope { states: &st, vars: at.vars };
        let input = eval_or(j.arguments.as_ref(), &scope, "Arguments", || raw.clone())?;
        let outputs = self.run_branches(parallel, input, at.vars, at.lane).await?;
        self.finish_jsonata(j, outputs, raw, at)
    }

    /// `Items` (default: the state input) must be an array; `ItemSelector` sees the item as
    /// `$states.context.Map.Item.Value` (developer guide, "Map state input and output fields").
    pub(super) async fn attempt_map_jsonata(
        &self,
        map: &model::MapState,
        j: &JsonataState,
        raw: &Value,
        at: &Attempt<'_>,
    ) -> Result<(Value, Option<Vars>), StateError> {
        let st = states(raw, at.context, None);
        let scope = Scope { states: &st, vars: at.vars };
        let items = eval_or(j.items.as_ref(), &scope, "Items", || raw.clone())?;
        let Value::Array(items) = items else {
            return Err(query_error(format!(
                "The Map state's items must be a JSON array, found {}",
                excerpt(&items)
            )));
        };
        let limit = match (&j.max_concurrency, &map.concurrency) {
            (Some(t), _) => whole_number(t, &scope, "MaxConcurrency", 0, MAX_SECONDS)?,
            (None, model::Concurrency::Fixed(n)) => *n,
            (None, model::Concurrency::Path(_)) => unreachable!("a JSONata Map has no path"),
        };
        let limit = match usize::try_from(limit) {
            Ok(0) | Err(_) => items.len().max(1),
            Ok(n) => n,
        };
        let mut inputs = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let input = match &j.item_selector {
                Some(selector) => {
                    let mut context = at.context.clone();
                    context["Map"] = json!({"Item": {"Index": index, "Value": item}});
                    let st = states(raw, &context, None);
                    selector.eval(&Scope { states: &st, vars: at.vars }, "ItemSelector")?
                }
                None => item,
            };
            inputs.push(input);
        }
        let outputs = self.run_iterations(map, inputs, limit, at.vars, at.lane).await?;
        self.finish_jsonata(j, outputs, raw, at)
    }
}
