//! Template text to JSON: YAML (or JSON) read by saphyr, CloudFormation's short-form tags
//! (`!Ref X`, `!GetAtt A.B`, `!Sub ...`) rewritten to their long form so the resolver sees one
//! shape only.
//!
//! Why saphyr (checked on crates.io, 2026-12): it is pure Rust with no `unsafe`, keeps a
//! user-defined tag on any node as `Yaml::Tagged` (the short forms are such tags), refuses
//! duplicate keys, expands aliases within a budget, and is released often by the maintainers of
//! yaml-rust2, whose successor it is. The others: serde_yaml_ng and serde_norway sit on
//! unsafe-libyaml (a C translation, flagged unmaintained) or its one-person fork; yaml-rust2's
//! `Yaml` drops every tag outside the core schema; serde-saphyr is serde-only, so a tree with a
//! tag on any node would need a hand-written value type around its `Tagged<T>`.

use saphyr::{LoadableYamlNode, ScalarOwned, YamlOwned as Yaml};
use serde_json::{Map, Number, Value};

/// Parses template text. JSON goes through serde_json (YAML's reading of JSON differs on
/// details such as tabs); anything else is YAML. Text starting with `{` that is not JSON may
/// still be a YAML flow mapping (`{Ref: X}`); if it is neither, the JSON error is the one
/// shown. An empty text is `null`.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text)
            .or_else(|json_error| parse_yaml(text).map_err(|_| json_error.to_string()));
    }
    parse_yaml(text)
}

fn parse_yaml(text: &str) -> Result<Value, String> {
    let mut documents = Yaml::load_from_str(text).map_err(|e| e.to_string())?;
    if documents.len() > 1 {
        return Err(format!("{} YAML documents in one file; a template is one", documents.len()));
    }
    documents.pop().map_or(Ok(Value::Null), |yaml| convert(yaml, ""))
}

/// Short-form tags and the long-form key each stands for. `!GetAtt` and `!Condition` are
/// handled apart: their long forms are not simply `{"Fn::Name": value}`.
const FN_TAGS: &[&str] = &[
    "Sub",
    "Join",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "Select",
    "Split",
    "FindInMap",
    "Base64",
    "GetAZs",
    "ImportValue",
    "Cidr",
    "Length",
    "ToJsonString",
];

fn convert(yaml: Yaml, at: &str) -> Result<Value, String> {
    Ok(match yaml {
        Yaml::Value(scalar) => match scalar {
            ScalarOwned::Null => Value::Null,
            ScalarOwned::Boolean(b) => Value::Bool(b),
            ScalarOwned::Integer(i) => Value::from(i),
            ScalarOwned::FloatingPoint(f) => Value::Number(
                Number::from_f64(f.into_inner())
                    .ok_or_else(|| format!("{}: number {f} is not finite", show(at)))?,
            ),
            ScalarOwned::String(s) => Value::String(s),
        },
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| convert(item, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(mapping) => {
            let mut out = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Yaml::Value(ScalarOwned::String(s)) => s,
                    // Mappings keyed by numbers or booleans (`1:`, `true:`) are strings to
                    // CloudFormation.
                    Yaml::Value(ScalarOwned::Integer(i)) => i.to_string(),
                    Yaml::Value(ScalarOwned::FloatingPoint(f)) => f.to_string(),
                    Yaml::Value(ScalarOwned::Boolean(b)) => b.to_string(),
                    other => {
                        return Err(format!("{}: mapping key {other:?} is not a scalar", show(at)));
                    }
                };
                let child = join(at, &key);
                let value = convert(value, &child)?;
                // saphyr refuses a key written twice; `1:` and `'1':` only meet here.
                if out.insert(key, value).is_some() {
                    return Err(format!("{child}: the key is given twice"));
                }
            }
            Value::Object(out)
        }
        Yaml::Tagged(tag, value) => {
            let value = convert(*value, at)?;
            let name = if tag.handle == "!" { tag.suffix.clone() } else { tag.to_string() };
            long_form(&name, value).map_err(|m| format!("{}: {m}", show(at)))?
        }
        // The loader resolves scalars and aliases itself: what is left is a value it could not
        // read (`!!int x`, an alias to an unknown anchor).
        other => return Err(format!("{}: {other:?} is not a value", show(at))),
    })
}

fn long_form(tag: &str, value: Value) -> Result<Value, String> {
    let key = match tag {
        "Ref" => "Ref".to_string(),
        "Condition" => "Condition".to_string(),
        "GetAtt" => {
            // `!GetAtt Resource.Attribute` splits at the first dot only: attribute names such
            // as `Endpoint.Address` contain dots themselves.
            let value = match value {
                Value::String(s) => match s.split_once('.') {
                    Some((resource, attribute)) => Value::Array(vec![
                        Value::String(resource.to_string()),
                        Value::String(attribute.to_string()),
                    ]),
                    None => return Err(format!("!GetAtt {s}: expected Resource.Attribute")),
                },
                other => other,
            };
            return Ok(single("Fn::GetAtt", value));
        }
        t if FN_TAGS.contains(&t) => format!("Fn::{t}"),
        other => return Err(format!("unknown tag !{other}")),
    };
    Ok(single(&key, value))
}

fn single(key: &str, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.to_string(), value);
    Value::Object(map)
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() { key.to_string() } else { format!("{at}.{key}") }
}

fn show(at: &str) -> &str {
    if at.is_empty() { "template" } else { at }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_forms_become_long_forms() {
        let text = "
a: !Ref X
b: !GetAtt Db.Endpoint.Address
c: !Sub '${A}-b'
d: !Join ['-', [a, !Ref B]]
e: !If [Cond, 1, !Ref AWS::NoValue]
f: !Condition IsProd
g: !GetAZs ''
h: !Cidr [10.0.0.0/16, 2, 8]
1: one
";
        let v = parse(text).unwrap();
        assert_eq!(v["a"], json!({"Ref": "X"}));
        assert_eq!(v["b"], json!({"Fn::GetAtt": ["Db", "Endpoint.Address"]}));
        assert_eq!(v["c"], json!({"Fn::Sub": "${A}-b"}));
        assert_eq!(v["d"], json!({"Fn::Join": ["-", ["a", {"Ref": "B"}]]}));
        assert_eq!(v["e"], json!({"Fn::If": ["Cond", 1, {"Ref": "AWS::NoValue"}]}));
        assert_eq!(v["f"], json!({"Condition": "IsProd"}));
        assert_eq!(v["g"], json!({"Fn::GetAZs": ""}));
        assert_eq!(v["h"], json!({"Fn::Cidr": ["10.0.0.0/16", 2, 8]}));
        assert_eq!(v["1"], json!("one"));
    }

    #[test]
    fn unknown_tag_is_an_error_naming_it_and_where() {
        let err = parse("Resources:\n  X:\n    Type: !Frobnicate y\n").unwrap_err();
        assert!(err.contains("Resources.X.Type"), "{err}");
        assert!(err.contains("!Frobnicate"), "{err}");
    }

    #[test]
    fn yaml_details_are_read_as_before() {
        let v = parse("a: &x [1, 2.5, true, ~, '3']\nb: *x\nc: !Sub\n  - '${A}'\n  - A: !Ref B\n")
            .unwrap();
        assert_eq!(v["a"], json!([1, 2.5, true, null, "3"]));
        assert_eq!(v["b"], v["a"]);
        assert_eq!(v["c"], json!({"Fn::Sub": ["${A}", {"A": {"Ref": "B"}}]}));
        assert_eq!(parse("").unwrap(), Value::Null);
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert!(err.contains("duplicated key"), "{err}");
        let err = parse("m:\n  1: a\n  '1': b\n").unwrap_err();
        assert_eq!(err, "m.1: the key is given twice");
        let err = parse("a: .inf\n").unwrap_err();
        assert!(err.starts_with("a: number"), "{err}");
        assert!(parse("a: 1\n---\nb: 2\n").unwrap_err().contains("2 YAML documents"));
    }

    #[test]
    fn json_text_is_read_as_json() {
        let v = parse("{\n\t\"a\": {\"Ref\": \"B\"}\n}").unwrap();
        assert_eq!(v, json!({"a": {"Ref": "B"}}));
        // Not JSON, but a YAML flow mapping.
        assert_eq!(parse("{Ref: X, b: !Ref Y}").unwrap(), json!({"Ref": "X", "b": {"Ref": "Y"}}));
        let err = parse("{\"a\": ").unwrap_err();
        assert!(err.contains("EOF while parsing"), "{err}");
    }
}
