//! Choice rules: compiled from the raw rules at load, evaluated against the effective input.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::{StateError, excerpt};
use super::path::{Env, Path};
use super::raw::RawChoiceRule;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    String,
    Numeric,
    Boolean,
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Equals,
    LessThan,
    GreaterThan,
    LessThanEquals,
    GreaterThanEquals,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TypeTest {
    Null,
    Present,
    Numeric,
    String,
    Boolean,
    Timestamp,
}

#[derive(Debug, Clone)]
enum Operand {
    Literal(Value),
    Path(Path),
}

#[derive(Debug, Clone)]
enum Test {
    Compare { kind: Kind, op: Op, operand: Operand },
    Matches(Vec<GlobPiece>),
    Is(TypeTest, bool),
}

#[derive(Debug, Clone, PartialEq)]
enum GlobPiece {
    Text(String),
    Star,
}

#[derive(Debug, Clone)]
pub(crate) enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    // Boxed: a data test (a path and its operand) is far larger than the combinators.
    Data(Box<DataTest>),
}

/// `Variable` and one comparison operator.
#[derive(Debug, Clone)]
pub(crate) struct DataTest {
    variable: Path,
    operator: String,
    test: Test,
}

/// A top-level choice: a rule and where it leads.
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    pub rule: Rule,
    pub next: String,
    /// The rule's `Assign`, as written (compiled by the model, which knows the scope).
    pub assign: Option<Value>,
}

const COMPARISONS: &[(&str, Kind, Op)] = &[
    ("StringEquals", Kind::String, Op::Equals),
    ("StringLessThan", Kind::String, Op::LessThan),
    ("StringGreaterThan", Kind::String, Op::GreaterThan),
    ("StringLessThanEquals", Kind::String, Op::LessThanEquals),
    ("StringGreaterThanEquals", Kind::String, Op::GreaterThanEquals),
    ("NumericEquals", Kind::Numeric, Op::Equals),
    ("NumericLessThan", Kind::Numeric, Op::LessThan),
    ("NumericGreaterThan", Kind::Numeric, Op::GreaterThan),
    ("NumericLessThanEquals", Kind::Numeric, Op::LessThanEquals),
    ("NumericGreaterThanEquals", Kind::Numeric, Op::GreaterThanEquals),
    ("BooleanEquals", Kind::Boolean, Op::Equals),
    ("TimestampEquals", Kind::Timestamp, Op::Equals),
    ("TimestampLessThan", Kind::Timestamp, Op::LessThan),
    ("TimestampGreaterThan", Kind::Timestamp, Op::GreaterThan),
    ("TimestampLessThanEquals", Kind::Timestamp, Op::LessThanEquals),
    ("TimestampGreaterThanEquals", Kind::Timestamp, Op::GreaterThanEquals),
];

const TYPE_TESTS: &[(&str, TypeTest)] = &[
    ("IsNull", TypeTest::Null),
    ("IsPresent", TypeTest::Present),
    ("IsNumeric", TypeTest::Numeric),
    ("IsString", TypeTest::String),
    ("IsBoolean", TypeTest::Boolean),
    ("IsTimestamp", TypeTest::Timestamp),
];

/// Step Functions' timestamps: RFC 3339 with an uppercase `T` and `Z`. RFC 3339 lets a
/// reader take a space for the `T`, and the `time` crate does; Step Functions does not (issue
/// 11, found against AWS's recordings), so the separator is checked here.
pub(crate) fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    if s.contains('t') || s.contains('z') || s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Compiles the top-level rules of a Choice state. Errors are `(field, message)` with the
/// field named from `Choices[i]` down.
pub(crate) fn compile_choices(raw: Vec<RawChoiceRule>) -> Result<Vec<Choice>, (String, String)> {
    if raw.is_empty() {
        return Err(("Choices".to_string(), "must hold at least one rule".to_string()));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("Choices[{i}]");
            let next = r.next.clone().ok_or_else(|| {
                (format!("{at}.Next"), "missing: a top-level rule needs Next".to_string())
            })?;
            let assign = r.assign.clone();
            Ok(Choice { rule: compile_rule(r, &at)?, next, assign })
        })
        .collect()
}

/// Nested rules are named `Choices[i].And[j]...`; top-level ones `Choices[i]`.
fn raw_is_nested(at: &str) -> bool {
    at.contains('.')
}

fn compile_rule(raw: RawChoiceRule, at: &str) -> Result<Rule, (String, String)> {
    let RawChoiceRule { variable, next: _, _comment: _, and, or, not, assign, operators } = raw;
    if assign.is_some() && raw_is_nested(at) {
        return Err((format!("{at}.Assign"), "only a top-level rule may have Assign".to_string()));
    }
    let combinators = [and.is_some(), or.is_some(), not.is_some()].iter().filter(|b| **b).count();
    if combinators > 0 {
        if combinators > 1 || variable.is_some() || !operators.is_empty() {
            return Err((
                at.to_string(),
                "a rule is one of And, Or, Not or a Variable test".to_string(),
            ));
        }
        let nested = |rules: Vec<RawChoiceRule>,
                      name: &str|
         -> Result<Vec<Rule>, (String, String)> {
            if rules.is_empty() {
                return Err((format!("{at}.{name}"), "must hold at least one rule".to_string()));
            }
            rules
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    let at = format!("{at}.{name}[{i}]");
                    if r.next.is_some() {
                        return Err((
                            format!("{at}.Next"),
                            "only a top-level rule may have Next".to_string(),
                        ));
                    }
                    compile_rule(r, &at)
                })
                .collect()
        };
        if let Some(rules) = and {
            return Ok(Rule::And(nested(rules, "And")?));
        }
        if let Some(rules) = or {
            return Ok(Rule::Or(nested(rules, "Or")?));
        }
        let not = not.expect("counted above");
        if not.next.is_some() {
            return Err((
                format!("{at}.Not.Next"),
                "only a top-level rule may have Next".to_string(),
            ));
        }
        return Ok(Rule::Not(Box::new(compile_rule(*not, &format!("{at}.Not"))?)));
    }
    let variable = variable.ok_or_else(|| {
        (format!("{at}.Variable"), "missing: a rule needs Variable, And, Or or Not".to_string())
    })?;
    let variable = Path::parse(&variable).map_err(|m| (format!("{at}.Variable"), m))?;
    let mut ops = operators.into_iter();
    let (operator, operand) = ops.next().ok_or_else(|| {
        (at.to_string(), "a Variable test needs a comparison operator".to_string())
    })?;
    if let Some((other, _)) = ops.next() {
        return Err((
            at.to_string(),
            format!("has two comparison operators, {operator} and {other}"),
        ));
    }
    let field = format!("{at}.{operator}");
    let test = compile_test(&operator, operand).map_err(|m| (field, m))?;
    Ok(Rule::Data(Box::new(DataTest { variable, operator, test })))
}

fn compile_test(operator: &str, operand: Value) -> Result<Test, String> {
    if operator == "StringMatches" {
        let Value::String(pattern) = operand else {
            return Err(format!("must be a string, got {operand}"));
        };
        return Ok(Test::Matches(glob(&pattern)?));
    }
    if let Some((_, t)) = TYPE_TESTS.iter().find(|(n, _)| *n == operator) {
        let Value::Bool(b) = operand else {
            return Err(format!("must be true or false, got {operand}"));
        };
        return Ok(Test::Is(*t, b));
    }
    let (base, by_path) = match operator.strip_suffix("Path") {
        Some(base) => (base, true),
        None => (operator, false),
    };
    let Some(&(_, kind, op)) = COMPARISONS.iter().find(|(n, ..)| *n == base) else {
        return Err("unknown field: not a comparison operator".to_string());
    };
    let operand = if by_path {
        let Value::String(p) = &operand else {
            return Err(format!("must be a path, got {operand}"));
        };
        Operand::Path(Path::parse(p)?)
    } else {
        let ok = match kind {
            Kind::String => operand.is_string(),
            Kind::Numeric => operand.is_number(),
            Kind::Boolean => operand.is_boolean(),
            Kind::Timestamp => operand.as_str().and_then(parse_timestamp).is_some(),
        };
        if !ok {
            let expected = match kind {
                Kind::String => "a string",
                Kind::Numeric => "a number",
                Kind::Boolean => "true or false",
                Kind::Timestamp => "an RFC 3339 timestamp such as 2016-03-14T01:59:00Z",
            };
            return Err(format!("must be {expected}, got {operand}"));
        }
        Operand::Literal(operand)
    };
    Ok(Test::Compare { kind, op, operand })
}

/// `StringMatches` patterns: `*` matches any run of characters; `\*` and `\\` are literal.
/// Hand-written: `*` is the only wildcard and these two escapes are Step Functions' own; glob
/// crates give `?`, `[` and `{` meanings that `StringMatches` does not have.
fn glob(pattern: &str) -> Result<Vec<GlobPiece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('*' | '\\')) => text.push(e),
                _ => return Err(format!("'{pattern}': only \\* and \\\\ may be escaped")),
            },
            '*' => {
                if !text.is_empty() {
                    pieces.push(GlobPiece::Text(std::mem::take(&mut text)));
                }
                if pieces.last() != Some(&GlobPiece::Star) {
                    pieces.push(GlobPiece::Star);
                }
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(GlobPiece::Text(text));
    }
    Ok(pieces)
}

fn glob_matches(pieces: &[GlobPiece], s: &str) -> bool {
    match pieces.split_first() {
        None => s.is_empty(),
        Some((GlobPiece::Text(t), rest)) => {
            s.strip_prefix(t.as_str()).is_some_and(|r| glob_matches(rest, r))
        }
        Some((GlobPiece::Star, rest)) => {
            if rest.is_empty() {
                return true;
            }
            s.char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(s.len()))
                .any(|i| glob_matches(rest, &s[i..]))
        }
    }
}

impl Rule {
    /// Whether the rule holds. A variable that is absent fails the execution
    /// (`States.Runtime`), except under `IsPresent`.
    pub fn eval(&self, env: &Env<'_>) -> Result<bool, StateError> {
        match self {
            Rule::And(rules) => {
                for r in rules {
                    if !r.eval(env)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Rule::Or(rules) => {
                for r in rules {
                    if r.eval(env)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Rule::Not(rule) => Ok(!rule.eval(env)?),
            Rule::Data(data) => {
                let DataTest { variable, operator, test } = data.as_ref();
                let value = variable.read(env);
                let missing = |path: &Path| {
                    StateError::runtime(format!(
                        "Invalid path '{}': the choice rule {operator} references a value that is not in the input '{}'",
                        path.text(),
                        excerpt(&path.source(env))
                    ))
                };
                if let Test::Is(TypeTest::Present, expected) = test {
                    return Ok(value.is_some() == *expected);
                }
                let value = value.ok_or_else(|| missing(variable))?;
                Ok(match test {
                    Test::Is(t, expected) => {
                        let is = match t {
                            TypeTest::Null => value.is_null(),
                            TypeTest::Numeric => value.is_number(),
                            TypeTest::String => value.is_string(),
                            TypeTest::Boolean => value.is_boolean(),
                            TypeTest::Timestamp => {
                                value.as_str().and_then(parse_timestamp).is_some()
                            }
                            TypeTest::Present => unreachable!("handled above"),
                        };
                        is == *expected
                    }
                    Test::Matches(pieces) => {
                        value.as_str().is_some_and(|s| glob_matches(pieces, s))
                    }
                    Test::Compare { kind, op, operand } => {
                        let other = match operand {
                            Operand::Literal(v) => v.clone(),
                            Operand::Path(p) => p.read(env).ok_or_else(|| missing(p))?,
                        };
                        compare(*kind, *op, &value, &other)
                    }
                })
            }
        }
    }
}

/// Values of the wrong type never match (the rule is false, not an error).
fn compare(kind: Kind, op: Op, a: &Value, b: &Value) -> bool {
    use std::cmp::Ordering;
    let ordering: Option<Ordering> = match kind {
        Kind::String => match (a.as_str(), b.as_str()) {
            (Some(a), Some(b)) => Some(a.cmp(b)),
            _ => None,
        },
        Kind::Numeric => match (a, b) {
            (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => x.as_f64().zip(y.as_f64()).and_then(|(x, y)| x.partial_cmp(&y)),
            },
            _ => None,
        },
        Kind::Boolean => {
            return op == Op::Equals && a.is_boolean() && a == b;
        }
        Kind::Timestamp => {
            match (a.as_str().and_then(parse_timestamp), b.as_str().and_then(parse_timestamp)) {
                (Some(a), Some(b)) => Some(a.cmp(&b)),
                _ => None,
            }
        }
    };
    let Some(ordering) = ordering else {
        return false;
    };
    match op {
        Op::Equals => ordering == Ordering::Equal,
        Op::LessThan => ordering == Ordering::Less,
        Op::GreaterThan => ordering == Ordering::Greater,
        Op::LessThanEquals => ordering != Ordering::Greater,
        Op::GreaterThanEquals => ordering != Ordering::Less,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        let m = |p: &str, s: &str| glob_matches(&glob(p).unwrap(), s);
        assert!(m("log-*.txt", "log-2024.txt"));
        assert!(!m("log-*.txt", "log-2024.csv"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "axb"));
        assert!(m(r"a\\*", r"a\anything"));
        assert!(glob(r"a\b").is_err());
    }

    #[test]
    fn timestamps_follow_step_functions_rules() {
        assert!(parse_timestamp("2016-03-14T01:59:00Z").is_some());
        assert!(parse_timestamp("2016-03-14T01:59:00.123+02:00").is_some());
        assert!(parse_timestamp("2016-03-14t01:59:00z").is_none());
        assert!(parse_timestamp("2016-03-14").is_none());
    }

    /// Developer guide, "Choice workflow state" (timestamp comparisons) and "Wait workflow
    /// state": timestamps conform to RFC 3339 profile of ISO 8601, with an uppercase T between
    /// date and time; a space separator is not one.
    #[test]
    fn timestamps_need_a_t_separator() {
        assert!(parse_timestamp("2016-03-14 01:59:00Z").is_none());
        assert!(parse_timestamp("2016-03-14_01:59:00Z").is_none());
        assert!(parse_timestamp("2016-03-14T01:59:00Z").is_some());
    }
}
