//! Evaluating a parsed intrinsic call over the state's data and the context object.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{Arg, Call, Func, HASH_ALGORITHMS, MAX_RANGE, MAX_STRING, Piece};
use crate::asl::error::{StateError, excerpt};
use crate::asl::path::Env;

impl Call {
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
                    // AWS's wording, as for a payload field but without the field.
                    "The JSONPath '{}' could not be found in the input '{}'",
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

pub(crate) fn hash(data: &str, algorithm: &str) -> Result<String, String> {
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
