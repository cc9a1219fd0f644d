//! Payload templates (`Parameters`, `ResultSelector`): JSON whose `"key.$"` entries take their
//! value from a path, a context path (`$$.`) or an intrinsic function, at any depth of
//! objects and arrays.

use serde_json::{Map, Value};

use super::error::{StateError, excerpt, names};
use super::intrinsic::{Call, looks_like_call};
use super::path::{Env, Path};

#[derive(Debug, Clone)]
enum Node {
    /// No `.$` key below: copied as is.
    Literal(Value),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    /// `"key.$": "$.path"`; `field` is the full field name for messages (`nodes.$`).
    Path {
        field: String,
        path: Path,
    },
    Call {
        field: String,
        call: Call,
    },
}

/// A compiled payload template.
#[derive(Debug, Clone)]
pub(crate) struct Payload {
    root: Node,
}

impl Payload {
    /// Compiles a template. On error returns `(field, message)`, the field named from
    /// `prefix` down (`Parameters.Payload.id.$`).
    pub fn compile(value: &Value, prefix: &str) -> Result<Payload, (String, String)> {
        if !value.is_object() {
            return Err((prefix.to_string(), "must be an object".to_string()));
        }
        Ok(Payload { root: compile(value, prefix, "")? })
    }

    /// Fills the template from the state's data and the context object.
    pub fn eval(&self, env: &Env<'_>) -> Result<Value, StateError> {
        eval(&self.root, env)
    }
}

fn compile(value: &Value, prefix: &str, relative: &str) -> Result<Node, (String, String)> {
    let join = |base: &str, key: &str| {
        if base.is_empty() { key.to_string() } else { format!("{base}.{key}") }
    };
    match value {
        Value::Object(map) => {
            let mut entries = Vec::with_capacity(map.len());
            let mut dynamic = false;
            for (key, item) in map {
                let field = join(prefix, key);
                if let Some(name) = key.strip_suffix(".$") {
                    let rel = join(relative, name);
                    if map.contains_key(name) {
                        return Err((field, format!("both '{name}' and '{key}' are set")));
                    }
                    let Value::String(text) = item else {
                        return Err((
                            field,
                            "must be a string: a path or an intrinsic function".to_string(),
                        ));
                    };
                    let node = if looks_like_call(text) {
                        Node::Call {
                            field: rel,
                            call: Call::parse(text).map_err(|m| (field.clone(), m))?,
                        }
                    } else if text.starts_with('$') {
                        Node::Path {
                            field: rel,
                            path: Path::parse(text).map_err(|m| (field.clone(), m))?,
                        }
                    } else {
                        return Err((
                            field,
                            format!(
                                "'{text}' is neither a path ($...) nor an intrinsic function (States....)"
                            ),
                        ));
                    };
                    dynamic = true;
                    entries.push((name.to_string(), node));
                } else {
                    let node = compile(item, &field, &join(relative, key))?;
                    dynamic |= !matches!(node, Node::Literal(_));
                    entries.push((key.clone(), node));
                }
            }
            Ok(if dynamic { Node::Object(entries) } else { Node::Literal(value.clone()) })
        }
        Value::Array(items) => {
            let nodes = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    compile(item, &format!("{prefix}[{i}]"), &format!("{relative}[{i}]"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if nodes.iter().all(|n| matches!(n, Node::Literal(_))) {
                Node::Literal(value.clone())
            } else {
                Node::Array(nodes)
            })
        }
        other => Ok(Node::Literal(other.clone())),
    }
}

fn eval(node: &Node, env: &Env<'_>) -> Result<Value, StateError> {
    Ok(match node {
        Node::Literal(v) => v.clone(),
        Node::Object(entries) => {
            let mut out = Map::new();
            for (key, child) in entries {
                out.insert(key.clone(), eval(child, env)?);
            }
            Value::Object(out)
        }
        Node::Array(items) => Value::Array(
            items
                .iter()
                .map(|n| eval(n, env))
                .collect::<Result<_, _>>()?,
        ),
        Node::Path { field, path } => path.read(env).ok_or_else(|| {
            StateError::runtime(format!(
                "The JSONPath '{}' specified for the field '{field}.$' could not be found in the input '{}'",
                path.text(),
                excerpt(&path.source(env))
            ))
        })?,
        Node::Call { field, call } => call.eval(env).map_err(|mut e| {
            // AWS names the field of a failed intrinsic, not of a path it could not read.
            if e.error != names::RUNTIME {
                e.cause = format!("field '{field}.$': {}", e.cause);
            }
            e
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fills_paths_context_calls_and_nested_arrays() {
        let template = json!({
            "Literal": "$.not-a-path",
            "Id.$": "$.id",
            "Name.$": "$$.Execution.Name",
            "Label.$": "States.Format('job-{}', $.id)",
            "List": [{"X.$": "$.id"}, 2, {"Y": "y"}],
            "Deep": {"Inner": {"V.$": "$.v"}}
        });
        let p = Payload::compile(&template, "Parameters").unwrap();
        let vars = crate::asl::path::Vars::new();
        let out = p
            .eval(&Env::new(
                &json!({"id": "a1", "v": [1]}),
                &json!({"Execution": {"Name": "e"}}),
                &vars,
            ))
            .unwrap();
        assert_eq!(
            out,
            json!({
                "Literal": "$.not-a-path",
                "Id": "a1",
                "Name": "e",
                "Label": "job-a1",
                "List": [{"X": "a1"}, 2, {"Y": "y"}],
                "Deep": {"Inner": {"V": [1]}}
            })
        );
    }

    #[test]
    fn missing_path_is_a_runtime_error_naming_field_and_path() {
        let p = Payload::compile(&json!({"a": {"b.$": "$.nope"}}), "Parameters").unwrap();
        let vars = crate::asl::path::Vars::new();
        let err = p.eval(&Env::new(&json!({"x": 1}), &json!({}), &vars)).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        assert!(err.terminal);
        assert!(err.cause.contains("'$.nope'"), "{}", err.cause);
        assert!(err.cause.contains("field 'a.b.$'"), "{}", err.cause);
    }

    /// Issue 11 item 3, AWS's wording (as LocalStack, which copies it, and the AWS
    /// recordings give it): a path an intrinsic function reads that is not in the input fails
    /// with States.Runtime (developer guide, Handling errors: "an execution failed due to some
    /// exception that it couldn't process") and the cause "The JSONPath '<path>' could not be
    /// found in the input '<input>'", naming no field; a failed intrinsic names its field.
    #[test]
    fn a_path_an_intrinsic_cannot_read_is_worded_as_aws_words_it() {
        let p = Payload::compile(
            &json!({"f2.$": "States.ArrayLength($.arr[2])", "g.$": "States.MathAdd($.s, 1)"}),
            "Parameters",
        )
        .unwrap();
        let vars = crate::asl::path::Vars::new();
        let err = p.eval(&Env::new(&json!({}), &json!({}), &vars)).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        assert_eq!(err.cause, "The JSONPath '$.arr[2]' could not be found in the input '{}'");
        let input = json!({"arr": [[1], [2], [3]], "s": "a"});
        let err = p.eval(&Env::new(&input, &json!({}), &vars));
        let err = err.unwrap_err();
        assert_eq!(err.error, "States.IntrinsicFailure");
        assert!(err.cause.starts_with("field 'g.$': "), "{}", err.cause);
    }

    #[test]
    fn compile_errors_name_the_field() {
        let e = Payload::compile(&json!({"n": {"a.$": 3}}), "ResultSelector").unwrap_err();
        assert_eq!(e.0, "ResultSelector.n.a.$");
        let e = Payload::compile(&json!({"nodes.$": "$..["}), "ResultSelector").unwrap_err();
        assert_eq!(e.0, "ResultSelector.nodes.$");
        assert!(e.1.starts_with("invalid path '$..[':"), "{}", e.1);
        let e = Payload::compile(&json!({"a.$": "$.x", "a": 1}), "Parameters").unwrap_err();
        assert!(e.1.contains("both 'a' and 'a.$'"), "{}", e.1);
        let e = Payload::compile(&json!({"a.$": "hello"}), "Parameters").unwrap_err();
        assert!(e.1.contains("neither a path"), "{}", e.1);
        let e = Payload::compile(&json!({"a.$": "States.Nope()"}), "Parameters").unwrap_err();
        assert!(e.1.contains("unknown function"), "{}", e.1);
    }
}
