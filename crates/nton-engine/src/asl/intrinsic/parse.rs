//! Parsing an intrinsic call at load: names, argument counts, literals checked.

use serde_json::{Number, Value};

use super::{Arg, Call, FUNCTIONS, Func, HASH_ALGORITHMS, MAX_DEPTH, Piece};
use crate::asl::path::Path;

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
