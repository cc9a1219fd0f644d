//! Template text to JSON: YAML (or JSON) read by serde_yaml_ng, CloudFormation's short-form
//! tags (`!Ref X`, `!GetAtt A.B`, `!Sub ...`) rewritten to their long form so the resolver
//! sees one shape only.

use serde_json::{Map, Number, Value};
use serde_yaml_ng::Value as Yaml;

/// Parses template text. JSON goes through serde_json (YAML's reading of JSON differs on
/// details such as tabs); anything else is YAML.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| e.to_string());
    }
    let yaml: Yaml = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    convert(yaml, "")
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
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                Value::Number(
                    Number::from_f64(f)
                        .ok_or_else(|| format!("{}: number {n} is not finite", show(at)))?,
                )
            }
        }
        Yaml::String(s) => Value::String(s),
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
                    Yaml::String(s) => s,
                    // Mappings keyed by numbers or booleans (`1:`, `true:`) are strings to
                    // CloudFormation.
                    Yaml::Number(n) => n.to_string(),
                    Yaml::Bool(b) => b.to_string(),
                    other => {
                        return Err(format!("{}: mapping key {other:?} is not a scalar", show(at)));
                    }
                };
                let child = join(at, &key);
                let value = convert(value, &child)?;
                out.insert(key, value);
            }
            Value::Object(out)
        }
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let value = convert(tagged.value, at)?;
            long_form(name, value).map_err(|m| format!("{}: {m}", show(at)))?
        }
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
    fn json_text_is_read_as_json() {
        let v = parse("{\n\t\"a\": {\"Ref\": \"B\"}\n}").unwrap();
        assert_eq!(v, json!({"a": {"Ref": "B"}}));
    }
}
