//! Intrinsic functions (`States.Format('{}-x', $.id)`, ...): parsed at load, evaluated at run
//! time.
//!
//! Hand-written: the argument syntax is Step Functions' own (single-quoted strings with `\'`,
//! `\{`, `\}`, `\\` escapes, numbers, booleans, null, paths, nested calls) and no crate
//! parses it.

mod eval;
mod parse;

pub(crate) use eval::hash;

use serde_json::Value;

use super::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asl::error::StateError;
    use crate::asl::path::Env;
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
