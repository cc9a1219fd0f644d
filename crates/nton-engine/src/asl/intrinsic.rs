//! Intrinsic functions (`States.Format('{}-x', $.id)`, ...): parsed at load, evaluated at run
//! time.
//!
//! Hand-written: the argument syntax is Step Functions' own (single-quoted strings with `\'`,
//! `\{`, `\}`, `\\` escapes, numbers, booleans, null, paths, nested calls) and no crate
//! parses it.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::error::{StateError, excerpt};
use super::path::{Env, Path};

/// Step Functions allows calls nested up to this depth.
const MAX_DEPTH: usize = 10;
/// Longest string `States.Base64Encode`, `States.Base64Decode` and `States.Hash` accept.
const MAX_STRING: usize = 10_000;
/// Most items `States.ArrayRange` may produce.
const MAX_RANGE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayPartition,
    ArrayContains,
    ArrayRange,
    ArrayGetItem,
    ArrayLength,
    ArrayUnique,
    Base64Encode,
    Base64Decode,
    Hash,
    JsonMerge,
    MathRandom,
    MathAdd,
    StringSplit,
    Uuid,
}

/// Name, function, fewest and most arguments (`None`: no limit).
const FUNCTIONS: &[(&str, Func, usize, Option<usize>)] = &[
    ("States.Format", Func::Format, 1, None),
    ("States.StringToJson", Func::StringToJson, 1, Some(1)),
    ("States.JsonToString", Func::JsonToString, 1, Some(1)),
    ("States.Array", Func::Array, 0, None),
    ("States.ArrayPartition", Func::ArrayPartition, 2, Some(2)),
    ("States.ArrayContains", Func::ArrayContains, 2, Some(2)),
    ("States.ArrayRange", Func::ArrayRange, 3, Some(3)),
    ("States.ArrayGetItem", Func::ArrayGetItem, 2, Some(2)),
    ("States.ArrayLength", Func::ArrayLength, 1, Some(1)),
    ("States.ArrayUnique", Func::ArrayUnique, 1, Some(1)),
    ("States.Base64Encode", Func::Base64Encode, 1, Some(1)),
    ("States.Base64Decode", Func::Base64Decode, 1, Some(1)),
    ("States.Hash", Func::Hash, 2, Some(2)),
    ("States.JsonMerge", Func::JsonMerge, 3, Some(3)),
    ("States.MathRandom", Func::MathRandom, 2, Some(3)),
    ("States.MathAdd", Func::MathAdd, 2, Some(2)),
    ("States.StringSplit", Func::StringSplit, 2, Some(2)),
    ("States.UUID", Func::Uuid, 0, Some(0)),
];

const HASH_ALGORITHMS: &[&str] = &["MD5", "SHA-1", "SHA-256", "SHA-384", "SHA-512"];

/// A piece of a string literal read as a `States.Format` template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    /// An unescaped `{}`.
    Hole,
}

#[derive(Debug, Clone)]
enum Arg {
    Value(Value),
    Str { value: String, pieces: Vec<Piece> },
    Path(Path),
    Call(Box<Call>),
}

/// A parsed intrinsic function call.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    name: &'static str,
    func: Func,
    args: Vec<Arg>,
}

/// True when a `.$` value is an intrinsic call rather than a path.
pub(crate) fn looks_like_call(text: &str) -> bool {
    text.trim_start().starts_with("States.")
}

impl Call {
    /// Parses a whole intrinsic expression, checking names, argument counts and what can be
    /// checked of literal arguments.
    pub fn parse(text: &str) -> Result<Call, String> {
        let mut p = Parser { chars: text.chars().collect(), pos: 0, text };
        p.skip_ws();
        let call = p.call(1)?;
        p.skip_ws();
        if p.pos < p.chars.len() {
            return Err(p.error("unexpected text after the call"));
        }
        Ok(call)
    }

    /// Evaluates the call over the state's data and the context object.
    pub fn eval(&self, env: &Env<'_>) -> Result<Value, StateError> {
        let args = self.args.iter().map(|a| a.eval(env)).collect::<Result<Vec<_>, _>>()?;
        let name = self.name;
        let fail = |m: String| StateError::intrinsic(format!("{name}: {m}"));
        Ok(match self.func {
            Func::Format => {
                let pieces = match &self.args[0] {
                    Arg::Str { pieces, .. } => pieces.clone(),
                    _ => {
                        let t = string_arg(&args[0], "the template").map_err(fail)?;
                        let mut pieces = Vec::new();
                        for (i, part) in t.split("{}").enumerate() {
                            if i > 0 {
                                pieces.push(Piece::Hole);
                            }
                            pieces.push(Piece::Text(part.to_string()));
                        }
                        pieces
                    }
                };
                let holes = pieces.iter().filter(|p| **p == Piece::Hole).count();
                if holes != args.len() - 1 {
                    return Err(fail(format!(
                        "the template has {holes} placeholders but {} arguments follow it",
                        args.len() - 1
                    )));
                }
                let mut out = String::new();
                let mut values = args[1..].iter();
                for piece in &pieces {
                    match piece {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Hole => {
                            let v = values.next().expect("counted above");
                            out.push_str(&match v {
                                Value::String(s) => s.clone(),
                                Value::Number(_) | Value::Bool(_) | Value::Null => v.to_string(),
                                other => {
                                    return Err(fail(format!(
                                        "argument {} is not a string, number, boolean or null",
                                        excerpt(other)
                                    )));
                                }
                            });
                        }
                    }
                }
                Value::String(out)
            }
            Func::StringToJson => {
                let s = string_arg(&args[0], "the argument").map_err(fail)?;
                let parsed: Value =
                    serde_json::from_str(s).map_err(|e| fail(format!("'{s}' is not JSON: {e}")))?;
                without_negative_zero(parsed)
            }
            Func::JsonToString => Value::String(args[0].to_string()),
            Func::Array => Value::Array(args),
            Func::ArrayPartition => {
                let items = array_arg(&args[0]).map_err(fail)?;
                let size = int_arg(&args[1], "the chunk size").map_err(fail)?;
                if size < 1 {
                    return Err(fail(format!("the chunk size must be positive, got {size}")));
                }
                Value::Array(
                    items.chunks(size as usize).map(|c| Value::Array(c.to_vec())).collect(),
                )
            }
            Func::ArrayContains => {
                Value::Bool(array_arg(&args[0]).map_err(fail)?.contains(&args[1]))
            }
            Func::ArrayRange => {
                let start = int_arg(&args[0], "the start").map_err(fail)?;
                let end = int_arg(&args[1], "the end").map_err(fail)?;
                let step = int_arg(&args[2], "the step").map_err(fail)?;
                if step == 0 {
                    return Err(fail("the step must not be 0".to_string()));
                }
                let mut out = Vec::new();
                let mut i = start;
                while (step > 0 && i <= end) || (step < 0 && i >= end) {
                    if out.len() == MAX_RANGE {
                        return Err(fail(format!("the range has more than {MAX_RANGE} items")));
                    }
                    out.push(Value::from(i));
                    i = match i.checked_add(step) {
                        Some(n) => n,
                        None => break,
                    };
                }
                Value::Array(out)
            }
            Func::ArrayGetItem => {
                let items = array_arg(&args[0]).map_err(fail)?;
                let index = int_arg(&args[1], "the index").map_err(fail)?;
                usize::try_from(index).ok().and_then(|i| items.get(i)).cloned().ok_or_else(
                    || {
                        fail(format!(
                            "index {index} is out of range for an array of {} items",
                            items.len()
                        ))
                    },
                )?
            }
            Func::ArrayLength => Value::from(array_arg(&args[0]).map_err(fail)?.len()),
            Func::ArrayUnique => {
                let mut out: Vec<Value> = Vec::new();
                for v in array_arg(&args[0]).map_err(fail)? {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
                Value::Array(out)
            }
            Func::Base64Encode => {
                let s = bounded_string(&args[0]).map_err(fail)?;
                Value::String(base64::engine::general_purpose::STANDARD.encode(s))
            }
            Func::Base64Decode => {
                let s = bounded_string(&args[0]).map_err(fail)?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| fail(format!("'{s}' is not base64: {e}")))?;
                Value::String(
                    String::from_utf8(bytes)
                        .map_err(|_| fail("the decoded bytes are not UTF-8".to_string()))?,
                )
            }
            Func::Hash => {
                let data = bounded_string(&args[0]).map_err(fail)?;
                let algorithm = string_arg(&args[1], "the algorithm").map_err(fail)?;
                Value::String(hash(data, algorithm).map_err(fail)?)
            }
            Func::JsonMerge => {
                let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                    return Err(fail("the first two arguments must be objects".to_string()));
                };
                if args[2] != Value::Bool(false) {
                    return Err(fail("only a shallow merge (false) is supported".to_string()));
                }
                let mut out: Map<String, Value> = a.clone();
                for (k, v) in b {
                    out.insert(k.clone(), v.clone());
                }
                Value::Object(out)
            }
            Func::MathRandom => {
                use rand::{Rng, SeedableRng};
                let start = rounded_int_arg(&args[0], "the start").map_err(fail)?;
                let end = rounded_int_arg(&args[1], "the end").map_err(fail)?;
                if start >= end {
                    return Err(fail(format!("the start {start} must be below the end {end}")));
                }
                let n = match args.get(2) {
                    Some(seed) => {
                        let seed = rounded_int_arg(seed, "the seed").map_err(fail)?;
                        rand::rngs::StdRng::seed_from_u64(seed as u64).random_range(start..end)
                    }
                    None => rand::rng().random_range(start..end),
                };
                Value::from(n)
            }
            Func::MathAdd => {
                let a = rounded_int_arg(&args[0], "the first number").map_err(fail)?;
                let b = rounded_int_arg(&args[1], "the second number").map_err(fail)?;
                Value::from(a.checked_add(b).ok_or_else(|| fail("the sum overflows".to_string()))?)
            }
            Func::StringSplit => {
                let s = string_arg(&args[0], "the string").map_err(fail)?;
                let delimiters = string_arg(&args[1], "the delimiter").map_err(fail)?;
                if delimiters.is_empty() {
                    return Err(fail("the delimiter is empty".to_string()));
                }
                // Each character of the delimiter splits, and empty pieces are dropped, as
                // Step Functions does (`'a.b+c'` split by `'.+'` gives a, b, c).
                Value::Array(
                    s.split(|c| delimiters.contains(c))
                        .filter(|p| !p.is_empty())
                        .map(|p| Value::String(p.to_string()))
                        .collect(),
                )
            }
            Func::Uuid => Value::String(uuid::Uuid::new_v4().to_string()),
        })
    }
}

impl Arg {
    fn eval(&self, env: &Env<'_>) -> Result<Value, StateError> {
        match self {
            Arg::Value(v) => Ok(v.clone()),
            Arg::Str { value, .. } => Ok(Value::String(value.clone())),
            Arg::Path(path) => path.read(env).ok_or_else(|| {
                StateError::runtime(format!(
                    "The JSONPath '{}' given to an intrinsic function could not be found in the input '{}'",
                    path.text(),
                    excerpt(&path.source(env))
                ))
            }),
            Arg::Call(call) => call.eval(env),
        }
    }
}

fn string_arg<'v>(v: &'v Value, what: &str) -> Result<&'v str, String> {
    v.as_str().ok_or_else(|| format!("{what} must be a string, got {}", excerpt(v)))
}

fn bounded_string(v: &Value) -> Result<&str, String> {
    let s = string_arg(v, "the argument")?;
    if s.chars().count() > MAX_STRING {
        return Err(format!("the string is longer than {MAX_STRING} characters"));
    }
    Ok(s)
}

fn array_arg(v: &Value) -> Result<&Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("expected an array, got {}", excerpt(v)))
}

fn int_arg(v: &Value, what: &str) -> Result<i64, String> {
    let n = v
        .as_i64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64));
    n.ok_or_else(|| format!("{what} must be an integer, got {}", excerpt(v)))
}

/// A number for `States.MathAdd` and `States.MathRandom`: a non-integer is rounded to the
/// nearest integer rather than refused, as the developer guide says ("Intrinsics for math
/// operations": "If you specify a non-integer value ..., Step Functions will round it off to
/// the nearest integer"). The guide does not say which way a half goes; this rounds it up
/// (towards positive infinity), as Java's `Math.round` does.
fn rounded_int_arg(v: &Value, what: &str) -> Result<i64, String> {
    if let Some(n) = v.as_i64() {
        return Ok(n);
    }
    v.as_f64()
        .map(|f| (f + 0.5).floor())
        .filter(|f| f.abs() < 9.0e15)
        .map(|f| f as i64)
        .ok_or_else(|| format!("{what} must be a number, got {}", excerpt(v)))
}

/// serde_json reads `-0` as the float -0.0; Step Functions gives `0` (found against AWS's
/// own recordings, issue 11), so a negative zero anywhere in the value becomes the integer 0.
fn without_negative_zero(value: Value) -> Value {
    match value {
        Value::Number(n)
            if n.is_f64() && n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) =>
        {
            Value::from(0)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(without_negative_zero).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, without_negative_zero(v))).collect())
        }
        other => other,
    }
}

fn hash(data: &str, algorithm: &str) -> Result<String, String> {
    use sha2::Digest;
    let bytes: Vec<u8> = match algorithm {
        "MD5" => md5::Md5::digest(data.as_bytes()).to_vec(),
        "SHA-1" => sha1::Sha1::digest(data.as_bytes()).to_vec(),
        "SHA-256" => sha2::Sha256::digest(data.as_bytes()).to_vec(),
        "SHA-384" => sha2::Sha384::digest(data.as_bytes()).to_vec(),
        "SHA-512" => sha2::Sha512::digest(data.as_bytes()).to_vec(),
        other => {
            return Err(format!(
                "unknown algorithm '{other}' (expected one of {})",
                HASH_ALGORITHMS.join(", ")
            ));
        }
    };
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

struct Parser<'t> {
    chars: Vec<char>,
    pos: usize,
    text: &'t str,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> String {
        format!(
            "invalid intrinsic function '{}' at position {}: {message}",
            self.text,
            self.pos + 1
        )
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn call(&mut self, depth: usize) -> Result<Call, String> {
        if depth > MAX_DEPTH {
            return Err(self.error(&format!("calls are nested deeper than {MAX_DEPTH}")));
        }
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        let Some(&(fname, func, min, max)) = FUNCTIONS.iter().find(|(n, ..)| *n == name) else {
            self.pos = start;
            return Err(self.error(&format!("unknown function '{name}'")));
        };
        self.skip_ws();
        if self.peek() != Some('(') {
            return Err(self.error("expected '('"));
        }
        self.pos += 1;
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            loop {
                args.push(self.arg(depth)?);
                self.skip_ws();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.error("expected ',' or ')'")),
                }
            }
        }
        let count = args.len();
        if count < min || max.is_some_and(|m| count > m) {
            let expected = match max {
                Some(m) if m == min => format!("{min}"),
                Some(m) => format!("{min} to {m}"),
                None => format!("at least {min}"),
            };
            return Err(format!(
                "invalid intrinsic function '{}': {fname} takes {expected} arguments, got {count}",
                self.text
            ));
        }
        let call = Call { name: fname, func, args };
        check_literals(&call)
            .map_err(|m| format!("invalid intrinsic function '{}': {fname}: {m}", self.text))?;
        Ok(call)
    }

    fn arg(&mut self, depth: usize) -> Result<Arg, String> {
        self.skip_ws();
        match self.peek() {
            Some('\'') => self.string(),
            Some('$') => {
                let start = self.pos;
                let mut brackets = 0usize;
                let mut quote: Option<char> = None;
                while let Some(c) = self.peek() {
                    match (quote, c) {
                        // Inside a quoted name, a backslash escapes the next character.
                        (Some(_), '\\') => self.pos += 1,
                        (Some(q), _) if q == c => quote = None,
                        (Some(_), _) => {}
                        (None, '\'' | '"') => quote = Some(c),
                        (None, '[' | '(') => brackets += 1,
                        (None, ']') => brackets = brackets.saturating_sub(1),
                        (None, ')') if brackets == 0 => break,
                        (None, ')') => brackets -= 1,
                        (None, ',') if brackets == 0 => break,
                        _ => {}
                    }
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                let path = Path::parse(text.trim_end()).map_err(|m| self.error(&m))?;
                Ok(Arg::Path(path))
            }
            Some(c) if c.is_ascii_digit() || c == '-' => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || "+-.eE".contains(c)) {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                let n: Number = serde_json::from_str(&text).map_err(|_| {
                    self.pos = start;
                    self.error(&format!("'{text}' is not a number"))
                })?;
                Ok(Arg::Value(Value::Number(n)))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let rest: String = self.chars[self.pos..].iter().collect();
                for (word, value) in [
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    if rest.starts_with(word)
                        && !rest[word.len()..]
                            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '.')
                    {
                        self.pos += word.len();
                        return Ok(Arg::Value(value));
                    }
                }
                Ok(Arg::Call(Box::new(self.call(depth + 1)?)))
            }
            _ => {
                Err(self
                    .error("expected an argument: a string, number, boolean, null, path or call"))
            }
        }
    }

    fn string(&mut self) -> Result<Arg, String> {
        self.pos += 1; // opening quote
        let mut value = String::new();
        let mut pieces = Vec::new();
        let mut text = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some('\\') => {
                    let c = self.chars.get(self.pos + 1).copied();
                    match c {
                        Some(c @ ('\'' | '{' | '}' | '\\')) => {
                            value.push(c);
                            text.push(c);
                            self.pos += 2;
                        }
                        _ => {
                            return Err(
                                self.error("only \\' \\{ \\} \\\\ may be escaped in a string")
                            );
                        }
                    }
                }
                Some('\'') => {
                    self.pos += 1;
                    break;
                }
                Some('{') => {
                    if self.chars.get(self.pos + 1) != Some(&'}') {
                        return Err(self
                            .error("'{' must be escaped as \\{ unless it opens a {} placeholder"));
                    }
                    value.push_str("{}");
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                    pieces.push(Piece::Hole);
                    self.pos += 2;
                }
                Some('}') => return Err(self.error("'}' must be escaped as \\}")),
                Some(c) => {
                    value.push(c);
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
        pieces.push(Piece::Text(text));
        Ok(Arg::Str { value, pieces })
    }
}

/// Checks what the literal arguments alone already show to be wrong.
fn check_literals(call: &Call) -> Result<(), String> {
    match call.func {
        Func::Format => {
            if let Arg::Str { pieces, .. } = &call.args[0] {
                let holes = pieces.iter().filter(|p| **p == Piece::Hole).count();
                if holes != call.args.len() - 1 {
                    return Err(format!(
                        "the template has {holes} placeholders but {} arguments follow it",
                        call.args.len() - 1
                    ));
                }
            } else if matches!(call.args[0], Arg::Value(_)) {
                return Err("the template must be a string".to_string());
            }
        }
        Func::Hash => {
            if let Arg::Str { value, .. } = &call.args[1]
                && !HASH_ALGORITHMS.contains(&value.as_str())
            {
                return Err(format!(
                    "unknown algorithm '{value}' (expected one of {})",
                    HASH_ALGORITHMS.join(", ")
                ));
            }
        }
        Func::JsonMerge => match &call.args[2] {
            Arg::Value(Value::Bool(false)) | Arg::Path(_) | Arg::Call(_) => {}
            _ => {
                return Err("the third argument must be false (only a shallow merge is supported)"
                    .to_string());
            }
        },
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(text: &str, data: Value) -> Result<Value, StateError> {
        let context = json!({"Execution": {"Name": "exec-1"}});
        let vars = crate::asl::path::Vars::new();
        Call::parse(text).unwrap().eval(&Env::new(&data, &context, &vars))
    }

    #[test]
    fn format_fills_placeholders_and_keeps_escapes() {
        assert_eq!(
            eval("States.Format('nton-{}-{}', $.id, 3)", json!({"id": "abc"})).unwrap(),
            json!("nton-abc-3")
        );
        assert_eq!(
            eval(r"States.Format('\{\} it\'s {} \\', $$.Execution.Name)", json!({})).unwrap(),
            json!(r"{} it's exec-1 \")
        );
        assert_eq!(
            eval("States.Format($.t, true, null)", json!({"t": "{}/{}"})).unwrap(),
            json!("true/null")
        );
        let err = eval("States.Format($.t, 1)", json!({"t": "{}{}"})).unwrap_err();
        assert_eq!(err.error, "States.IntrinsicFailure");
        assert!(err.cause.contains("2 placeholders but 1 arguments"), "{}", err.cause);
    }

    #[test]
    fn array_functions() {
        let d = json!({"a": [1, 2, 2, 3, 4], "n": 2});
        assert_eq!(
            eval("States.Array($.n, 'x', States.Array())", d.clone()).unwrap(),
            json!([2, "x", []])
        );
        assert_eq!(
            eval("States.ArrayPartition($.a, $.n)", d.clone()).unwrap(),
            json!([[1, 2], [2, 3], [4]])
        );
        assert_eq!(eval("States.ArrayContains($.a, 3)", d.clone()).unwrap(), json!(true));
        assert_eq!(eval("States.ArrayContains($.a, 9)", d.clone()).unwrap(), json!(false));
        assert_eq!(eval("States.ArrayRange(1, 9, 2)", d.clone()).unwrap(), json!([1, 3, 5, 7, 9]));
        assert_eq!(eval("States.ArrayRange(3, 1, -1)", d.clone()).unwrap(), json!([3, 2, 1]));
        assert_eq!(eval("States.ArrayGetItem($.a, 4)", d.clone()).unwrap(), json!(4));
        assert_eq!(eval("States.ArrayLength($.a)", d.clone()).unwrap(), json!(5));
        assert_eq!(eval("States.ArrayUnique($.a)", d.clone()).unwrap(), json!([1, 2, 3, 4]));
        assert_eq!(
            eval("States.ArrayGetItem($.a, 5)", d.clone()).unwrap_err().error,
            "States.IntrinsicFailure"
        );
        assert!(eval("States.ArrayRange(0, 2000, 1)", d).is_err());
    }

    #[test]
    fn json_encoding_hash_math_and_strings() {
        let d = json!({"s": "{\"a\":1}", "o": {"a": 1, "b": 2}, "p": {"b": 3}});
        assert_eq!(eval("States.StringToJson($.s)", d.clone()).unwrap(), json!({"a": 1}));
        assert_eq!(eval("States.JsonToString($.p)", d.clone()).unwrap(), json!("{\"b\":3}"));
        assert_eq!(
            eval("States.JsonMerge($.o, $.p, false)", d.clone()).unwrap(),
            json!({"a": 1, "b": 3})
        );
        assert_eq!(
            eval("States.Base64Encode('Data to encode')", d.clone()).unwrap(),
            json!("RGF0YSB0byBlbmNvZGU=")
        );
        assert_eq!(
            eval("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')", d.clone()).unwrap(),
            json!("Data to encode")
        );
        assert_eq!(
            eval("States.Hash('input data', 'SHA-1')", d.clone()).unwrap(),
            json!("aaff4a450a104cd177d28d18d74485e8cae074b7")
        );
        assert_eq!(
            eval("States.Hash('', 'MD5')", d.clone()).unwrap(),
            json!("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(eval("States.MathAdd(111, -1)", d.clone()).unwrap(), json!(110));
        let r = eval("States.MathRandom(1, 5)", d.clone()).unwrap().as_i64().unwrap();
        assert!((1..5).contains(&r));
        assert_eq!(
            eval("States.MathRandom(1, 1000, 7)", d.clone()).unwrap(),
            eval("States.MathRandom(1, 1000, 7)", d.clone()).unwrap()
        );
        assert_eq!(
            eval("States.StringSplit('This.is+a,test=string', '.+,=')", d.clone()).unwrap(),
            json!(["This", "is", "a", "test", "string"])
        );
        let uuid = eval("States.UUID()", d).unwrap();
        assert_eq!(uuid.as_str().unwrap().len(), 36);
    }

    #[test]
    fn nested_calls() {
        let d = json!({"arn": "arn:aws:imagebuilder:us-east-1:1:image-recipe/my.recipe/1.0.0"});
        assert_eq!(
            eval(
                "States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.arn, '/'), 1), '.'), 0)",
                d
            )
            .unwrap(),
            json!("my")
        );
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let err = |t: &str| Call::parse(t).unwrap_err();
        assert!(err("States.Nope(1)").contains("unknown function 'States.Nope'"));
        assert!(err("States.ArrayLength(1, 2)").contains("takes 1 arguments, got 2"));
        assert!(err("States.Format('{} {}', 1)").contains("2 placeholders but 1 arguments"));
        assert!(err("States.Format('a { b')").contains("must be escaped"));
        assert!(err("States.Hash('x', 'SHA-3')").contains("unknown algorithm 'SHA-3'"));
        assert!(err("States.JsonMerge($.a, $.b, true)").contains("shallow merge"));
        assert!(err("States.Array($..[)").contains("invalid path '$..[)'"));
        assert!(err("States.Array(1) x").contains("unexpected text"));
        assert!(err("States.Array('x)").contains("unterminated string"));
        let deep = format!("{}1{}", "States.Array(".repeat(11), ")".repeat(11));
        assert!(err(&deep).contains("nested deeper than 10"));
    }

    /// Developer guide, "Intrinsic functions" (intrinsics for math operations): a
    /// non-integer argument of States.MathAdd or States.MathRandom is rounded to the nearest
    /// integer, not refused.
    #[test]
    fn math_functions_round_non_integers() {
        let d = json!({"x": 1.6, "y": -0.4, "half": 2.5});
        assert_eq!(eval("States.MathAdd($.x, 1)", d.clone()).unwrap(), json!(3));
        assert_eq!(eval("States.MathAdd($.y, 10)", d.clone()).unwrap(), json!(10));
        assert_eq!(eval("States.MathAdd($.half, 0)", d.clone()).unwrap(), json!(3));
        assert_eq!(eval("States.MathAdd(1.2, 1.2)", d.clone()).unwrap(), json!(2));
        // Start 0.6 rounds to 1 and end 1.6 to 2: the only value in [1, 2) is 1.
        assert_eq!(eval("States.MathRandom(0.6, 1.6)", d.clone()).unwrap(), json!(1));
        assert_eq!(eval("States.MathAdd('a', 1)", d).unwrap_err().error, "States.IntrinsicFailure");
    }

    /// Found against AWS's recordings (issue 11 item 3): States.StringToJson of -0 is 0.
    #[test]
    fn string_to_json_of_negative_zero_is_zero() {
        let d = json!({"z": "-0", "nested": "{\"a\": [-0, -0.0, 1.5]}"});
        let z = eval("States.StringToJson($.z)", d.clone()).unwrap();
        assert_eq!(z.to_string(), "0");
        let nested = eval("States.StringToJson($.nested)", d).unwrap();
        assert_eq!(nested.to_string(), r#"{"a":[0,0,1.5]}"#);
    }
}
