//! JSONPath as the States Language uses it.
//!
//! Reads go through serde_json_path (RFC 9535). What is hand-written, and why:
//! - telling a *definite* path (`$.a.b`, `$['x'][0]`: selects at most one node, a missing one is
//!   an error) from an indefinite one (`$..x`, `$.a[*]`: the selection is returned as a list),
//!   as Step Functions does; serde_json_path does not expose that property;
//! - accepting the dotted names Step Functions accepts (`$.my-key`) by rewriting a definite
//!   path to RFC 9535's bracket form;
//! - assigning into a document (`ResultPath`), which no JSONPath crate does.

use serde_json::{Map, Value};
use serde_json_path::JsonPath;

/// One step of a definite path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    Field(String),
    Index(i64),
}

/// Variables in scope: the name (without `$`) and its value.
pub(crate) type Vars = Map<String, Value>;

/// What a path reads from: the state's data (`$`), the context object (`$$`) and the
/// variables in scope (`$name`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env<'a> {
    pub data: &'a Value,
    pub context: &'a Value,
    pub vars: &'a Vars,
}

impl<'a> Env<'a> {
    pub fn new(data: &'a Value, context: &'a Value, vars: &'a Vars) -> Self {
        Env { data, context, vars }
    }

    /// The same context and variables over other data.
    pub fn with_data<'b>(&self, data: &'b Value) -> Env<'b>
    where
        'a: 'b,
    {
        Env { data, context: self.context, vars: self.vars }
    }
}

/// Where a path starts.
#[derive(Debug, Clone, PartialEq)]
enum Root {
    Data,
    Context,
    /// A workflow variable (`$name`, Step Functions developer guide, "Passing data between
    /// states with variables").
    Variable(String),
}

/// Splits a leading `$name` (a variable reference) from the rest of a path.
pub(crate) fn variable_name(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('$')?;
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
    let name = &rest[..end];
    let first = name.chars().next()?;
    (first.is_ascii_alphabetic() || first == '_').then_some(name)
}

/// A parsed path read from the state's data (`$...`), the context object (`$$...`) or a
/// variable (`$name...`).
#[derive(Debug, Clone)]
pub(crate) struct Path {
    text: String,
    root: Root,
    query: JsonPath,
    /// The segments of a definite path; `None` for an indefinite one.
    segments: Option<Vec<Segment>>,
}

impl Path {
    /// Parses a path. The message of an error quotes the path.
    pub fn parse(text: &str) -> Result<Path, String> {
        let (root, rest) = match text.strip_prefix("$$") {
            Some(rest) => (Root::Context, format!("${rest}")),
            None => match variable_name(text) {
                Some(name) => {
                    (Root::Variable(name.to_string()), format!("${}", &text[1 + name.len()..]))
                }
                None if text.starts_with('$') => (Root::Data, text.to_string()),
                None => return Err(format!("invalid path '{text}': a path starts with '$'")),
            },
        };
        let segments = parse_definite(&rest).ok();
        let query_text = match &segments {
            Some(segments) => normalized(segments),
            None => rest.clone(),
        };
        let query =
            JsonPath::parse(&query_text).map_err(|e| format!("invalid path '{text}': {e}"))?;
        Ok(Path { text: text.to_string(), root, query, segments })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn is_definite(&self) -> bool {
        self.segments.is_some()
    }

    /// What the path reads from, for error messages: the data, the context object or the
    /// variable's value (null when it is not set).
    pub fn source(&self, env: &Env<'_>) -> Value {
        match &self.root {
            Root::Data => env.data.clone(),
            Root::Context => env.context.clone(),
            Root::Variable(name) => env.vars.get(name).cloned().unwrap_or(Value::Null),
        }
    }

    /// The definite path's steps (`None` if indefinite).
    pub fn segments(&self) -> Option<&[Segment]> {
        self.segments.as_deref()
    }

    /// Reads the path. A definite path that selects nothing gives `None`; an indefinite
    /// path gives the list of what it selects (possibly empty).
    pub fn read(&self, env: &Env<'_>) -> Option<Value> {
        let root = match &self.root {
            Root::Data => env.data,
            Root::Context => env.context,
            Root::Variable(name) => env.vars.get(name)?,
        };
        let nodes = self.query.query(root);
        if self.segments.is_some() {
            nodes.first().cloned()
        } else {
            Some(Value::Array(nodes.all().into_iter().cloned().collect()))
        }
    }
}

/// Parses a definite path (`$`, `.name`, `['name']`, `["name"]`, `[index]`).
fn parse_definite(text: &str) -> Result<Vec<Segment>, ()> {
    let chars: Vec<char> = text.chars().collect();
    if chars.first() != Some(&'$') {
        return Err(());
    }
    let mut i = 1;
    let mut out = Vec::new();
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                // Step Functions accepts names with characters RFC 9535's shorthand does not
                // (hyphens, for instance); anything up to the next separator is the name.
                while i < chars.len() && !".[]'\"()*?@$,: \t\n=!<>&|".contains(chars[i]) {
                    i += 1;
                }
                if i == start {
                    return Err(());
                }
                out.push(Segment::Field(chars[start..i].iter().collect()));
            }
            '[' => {
                i += 1;
                match chars.get(i) {
                    Some(&q @ ('\'' | '"')) => {
                        i += 1;
                        let mut name = String::new();
                        loop {
                            match chars.get(i) {
                                None => return Err(()),
                                Some('\\') => {
                                    let c = *chars.get(i + 1).ok_or(())?;
                                    name.push(match c {
                                        'n' => '\n',
                                        't' => '\t',
                                        'r' => '\r',
                                        'b' => '\u{8}',
                                        'f' => '\u{c}',
                                        '/' | '\\' | '\'' | '"' => c,
                                        _ => return Err(()),
                                    });
                                    i += 2;
                                }
                                Some(&c) if c == q => {
                                    i += 1;
                                    break;
                                }
                                Some(&c) => {
                                    name.push(c);
                                    i += 1;
                                }
                            }
                        }
                        out.push(Segment::Field(name));
                    }
                    _ => {
                        let start = i;
                        if chars.get(i) == Some(&'-') {
                            i += 1;
                        }
                        while i < chars.len() && chars[i].is_ascii_digit() {
                            i += 1;
                        }
                        let digits: String = chars[start..i].iter().collect();
                        out.push(Segment::Index(digits.parse().map_err(|_| ())?));
                    }
                }
                if chars.get(i) != Some(&']') {
                    return Err(());
                }
                i += 1;
            }
            _ => return Err(()),
        }
    }
    Ok(out)
}

fn normalized(segments: &[Segment]) -> String {
    let mut s = String::from("$");
    for segment in segments {
        match segment {
            Segment::Field(name) => {
                s.push_str("['");
                for c in name.chars() {
                    match c {
                        '\'' => s.push_str("\\'"),
                        '\\' => s.push_str("\\\\"),
                        c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
                        c => s.push(c),
                    }
                }
                s.push_str("']");
            }
            Segment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// A `ResultPath`: `$` or `$.a.b` (field names only), where a result is written.
#[derive(Debug, Clone)]
pub(crate) struct ReferencePath {
    text: String,
    fields: Vec<String>,
}

impl ReferencePath {
    pub fn parse(text: &str) -> Result<ReferencePath, String> {
        if text.starts_with("$$") {
            return Err(format!(
                "invalid path '{text}': a result cannot be written to the context object"
            ));
        }
        if variable_name(text).is_some() {
            return Err(format!(
                "invalid path '{text}': a result cannot be written to a variable (use Assign)"
            ));
        }
        let path = Path::parse(text)?;
        let Some(segments) = path.segments() else {
            return Err(format!(
                "invalid path '{text}': must be a reference path (a single field such as $.a.b)"
            ));
        };
        let fields = segments
            .iter()
            .map(|s| match s {
                Segment::Field(f) => Ok(f.clone()),
                Segment::Index(_) => Err(format!(
                    "invalid path '{text}': array indexes are not supported here, only field names"
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(ReferencePath { text: text.to_string(), fields })
    }

    /// Writes `value` into `target` at this path, creating missing objects on the way.
    /// `$` replaces the target. Fails when the target, or a value on the way, is not an
    /// object.
    pub fn assign(&self, target: Value, value: Value) -> Result<Value, String> {
        if self.fields.is_empty() {
            return Ok(value);
        }
        let mut root = target;
        let mut current = &mut root;
        let mut value = Some(value);
        let last = self.fields.len() - 1;
        for (i, field) in self.fields.iter().enumerate() {
            let Value::Object(map) = current else {
                let at = if i == 0 {
                    "the input".to_string()
                } else {
                    format!("'$.{}'", self.fields[..i].join("."))
                };
                return Err(format!(
                    "cannot write ResultPath '{}': {at} is not an object",
                    self.text
                ));
            };
            if i == last {
                map.insert(field.clone(), value.take().expect("written once"));
                break;
            }
            current = map.entry(field.clone()).or_insert_with(|| Value::Object(Map::new()));
        }
        Ok(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definite_paths_select_one_value_or_nothing() {
        let data = json!({"a": {"b-c": [10, 20]}, "x y": 1});
        let ctx = json!({"Execution": {"Name": "n"}});
        let vars = Vars::new();
        let read = |p: &str| Path::parse(p).unwrap().read(&Env::new(&data, &ctx, &vars));
        assert_eq!(read("$.a.b-c[1]"), Some(json!(20)));
        assert_eq!(read("$['x y']"), Some(json!(1)));
        assert_eq!(read("$.a.b-c[-1]"), Some(json!(20)));
        assert_eq!(read("$.missing"), None);
        assert_eq!(read("$"), Some(data.clone()));
        assert_eq!(read("$$.Execution.Name"), Some(json!("n")));
        assert!(Path::parse("$.a").unwrap().is_definite());
    }

    #[test]
    fn indefinite_paths_select_lists() {
        let data = json!({"items": [{"id": 1}, {"id": 2}, {"id": 3}]});
        let vars = Vars::new();
        let read = |p: &str| Path::parse(p).unwrap().read(&Env::new(&data, &Value::Null, &vars));
        assert_eq!(read("$.items[*].id"), Some(json!([1, 2, 3])));
        assert_eq!(read("$..id"), Some(json!([1, 2, 3])));
        assert_eq!(read("$.items[?(@.id > 1)].id"), Some(json!([2, 3])));
        assert_eq!(read("$.nothing[*]"), Some(json!([])));
        assert!(!Path::parse("$.items[0:2]").unwrap().is_definite());
    }

    #[test]
    fn variable_paths_read_the_variable_in_scope() {
        let mut vars = Vars::new();
        vars.insert("count".into(), json!({"n": [1, 2]}));
        vars.insert("_x1".into(), json!(7));
        let data = json!({"count": "data"});
        let env = Env::new(&data, &Value::Null, &vars);
        let read = |p: &str| Path::parse(p).unwrap().read(&env);
        assert_eq!(read("$count.n[1]"), Some(json!(2)));
        assert_eq!(read("$count"), Some(json!({"n": [1, 2]})));
        assert_eq!(read("$_x1"), Some(json!(7)));
        assert_eq!(read("$.count"), Some(json!("data")));
        assert_eq!(read("$missing"), None);
        assert_eq!(read("$count.n[*]"), Some(json!([1, 2])));
        assert!(ReferencePath::parse("$count").is_err());
    }

    #[test]
    fn bad_paths_are_rejected_with_the_path_quoted() {
        let err = Path::parse("$..[").unwrap_err();
        assert!(err.starts_with("invalid path '$..[':"), "{err}");
        assert!(Path::parse("a.b").is_err());
    }

    #[test]
    fn result_paths_create_objects_and_refuse_non_objects() {
        let p = ReferencePath::parse("$.a.b").unwrap();
        assert_eq!(p.assign(json!({"x": 1}), json!(2)).unwrap(), json!({"x": 1, "a": {"b": 2}}));
        assert_eq!(
            p.assign(json!({"a": {"c": 3, "b": 0}}), json!([1])).unwrap(),
            json!({"a": {"c": 3, "b": [1]}})
        );
        let err = p.assign(json!({"a": 5}), json!(2)).unwrap_err();
        assert!(err.contains("'$.a' is not an object"), "{err}");
        let err = p.assign(json!([1]), json!(2)).unwrap_err();
        assert!(err.contains("the input is not an object"), "{err}");
        assert_eq!(
            ReferencePath::parse("$").unwrap().assign(json!(1), json!(2)).unwrap(),
            json!(2)
        );
        assert!(ReferencePath::parse("$.a[0]").is_err());
        assert!(ReferencePath::parse("$.a[*]").is_err());
        assert!(ReferencePath::parse("$$.Execution").is_err());
    }
}
