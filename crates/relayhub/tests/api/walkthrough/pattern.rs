//! The answers a walk-through shows, as patterns: JSON as written in the
//! README, where `…` stands for what differs from run to run.
//!
//! - `…` as a value is any value; inside a string, any text (`"rhs_…"`
//!   is a string that starts with `rhs_`);
//! - `…` as an object member allows more members; without it, the object
//!   must have exactly the members shown;
//! - `…` as the last element of an array allows more elements; without it,
//!   the array has exactly the elements shown, in order.
//!
//! `# HTTP/1.1 200 OK … idempotent-replayed: true` is a response head:
//! each piece between `…` appears in the output, in order.

use serde_json::Value;

const ELLIPSIS: char = '…';

/// One expected answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    Any,
    Null,
    Bool(bool),
    Number(f64),
    /// The literal pieces between `…` wildcards.
    Text(Vec<String>),
    Array {
        items: Vec<Pattern>,
        open: bool,
    },
    Object {
        members: Vec<(String, Pattern)>,
        open: bool,
    },
    /// Pieces of raw output (a response head) that appear in this order.
    Raw(Vec<String>),
}

/// Why a text is not (yet) a pattern.
#[derive(Debug, PartialEq)]
pub enum ParseError {
    /// It ends before the value does: the next comment line may continue it.
    Incomplete,
    Invalid(String),
}

impl Pattern {
    /// A pattern from the text after a comment's `# `; what follows the
    /// value (prose in parentheses, say) is ignored.
    pub fn parse(text: &str) -> Result<Pattern, ParseError> {
        if text.starts_with("HTTP/") {
            let pieces = text.split(ELLIPSIS).map(str::trim).filter(|p| !p.is_empty()).map(String::from);
            return Ok(Pattern::Raw(pieces.collect()));
        }
        let mut parser = Parser { chars: text.chars().collect(), at: 0 };
        parser.value()
    }

    /// Whether this pattern wants a JSON value (rather than raw output).
    pub fn is_json(&self) -> bool {
        !matches!(self, Pattern::Raw(_))
    }

    /// Where `actual` differs from the pattern, one line per difference
    /// (`path: why`); empty when it matches.
    pub fn differences(&self, actual: &Value) -> Vec<String> {
        let mut found = Vec::new();
        self.compare(actual, "$", &mut found);
        found
    }

    /// Whether raw output shows every piece of a [`Pattern::Raw`], in order.
    pub fn found_in(&self, output: &str) -> bool {
        let Pattern::Raw(pieces) = self else { return false };
        let mut rest = output;
        pieces.iter().all(|piece| match rest.find(piece.as_str()) {
            Some(at) => {
                rest = &rest[at + piece.len()..];
                true
            }
            None => false,
        })
    }

    fn compare(&self, actual: &Value, path: &str, found: &mut Vec<String>) {
        let mut differ = |why: String| found.push(format!("{path}: {why}"));
        match (self, actual) {
            (Pattern::Any, _) | (Pattern::Null, Value::Null) => {}
            (Pattern::Bool(want), Value::Bool(got)) if want == got => {}
            (Pattern::Number(want), Value::Number(got)) => {
                let got = got.as_f64().unwrap_or(f64::NAN);
                if (want - got).abs() > 1e-9 * want.abs().max(1.0) {
                    differ(format!("{got} where the README shows {want}"));
                }
            }
            (Pattern::Text(pieces), Value::String(got)) => {
                if !glob(pieces, got) {
                    differ(format!("{got:?} where the README shows {:?}", pieces.join("…")));
                }
            }
            (Pattern::Array { items, open }, Value::Array(got)) => {
                if got.len() < items.len() || (!open && got.len() != items.len()) {
                    differ(format!("{} elements where the README shows {}", got.len(), items.len()));
                }
                for (i, (want, got)) in items.iter().zip(got).enumerate() {
                    want.compare(got, &format!("{path}[{i}]"), found);
                }
            }
            (Pattern::Object { members, open }, Value::Object(got)) => {
                for (key, want) in members {
                    match got.get(key) {
                        Some(value) => want.compare(value, &format!("{path}.{key}"), found),
                        None => found.push(format!("{path}: no {key:?}, which the README shows")),
                    }
                }
                if !open {
                    let unshown: Vec<&String> = got.keys().filter(|k| !members.iter().any(|(m, _)| m == *k)).collect();
                    if !unshown.is_empty() {
                        found.push(format!("{path}: {unshown:?} not shown in the README (or add `…`)"));
                    }
                }
            }
            (want, got) => differ(format!("{got} where the README shows {want:?}")),
        }
    }
}

/// Whether `text` is the pieces with anything between them.
fn glob(pieces: &[String], text: &str) -> bool {
    let (first, last) = (&pieces[0], &pieces[pieces.len() - 1]);
    if pieces.len() == 1 {
        return text == first;
    }
    if !text.starts_with(first.as_str()) || text.len() < first.len() + last.len() || !text.ends_with(last.as_str()) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    pieces[1..pieces.len() - 1].iter().all(|piece| match rest.find(piece.as_str()) {
        Some(at) => {
            rest = &rest[at + piece.len()..];
            true
        }
        None => false,
    })
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&mut self) -> Option<char> {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
        self.chars.get(self.at).copied()
    }

    fn expect(&mut self, want: char) -> Result<(), ParseError> {
        match self.peek() {
            Some(c) if c == want => {
                self.at += 1;
                Ok(())
            }
            Some(c) => Err(ParseError::Invalid(format!("{want:?} expected at {c:?}"))),
            None => Err(ParseError::Incomplete),
        }
    }

    fn value(&mut self) -> Result<Pattern, ParseError> {
        match self.peek().ok_or(ParseError::Incomplete)? {
            ELLIPSIS => {
                self.at += 1;
                Ok(Pattern::Any)
            }
            '{' => self.object(),
            '[' => self.array(),
            '"' => Ok(Pattern::Text(self.string()?.split(ELLIPSIS).map(String::from).collect())),
            c if c == '-' || c.is_ascii_digit() => self.number(),
            _ => self.word(),
        }
    }

    fn word(&mut self) -> Result<Pattern, ParseError> {
        for (word, pattern) in [("true", Pattern::Bool(true)), ("false", Pattern::Bool(false)), ("null", Pattern::Null)]
        {
            let end = self.at + word.len();
            if self.chars.get(self.at..end).is_some_and(|w| w.iter().copied().eq(word.chars())) {
                self.at = end;
                return Ok(pattern);
            }
        }
        Err(ParseError::Invalid(format!("no JSON value at {:?}", self.chars[self.at])))
    }

    fn number(&mut self) -> Result<Pattern, ParseError> {
        let start = self.at;
        while self.chars.get(self.at).is_some_and(|c| c.is_ascii_digit() || "+-.eE".contains(*c)) {
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().collect();
        text.parse().map(Pattern::Number).map_err(|_| ParseError::Invalid(format!("bad number {text:?}")))
    }

    /// A JSON string's text (escapes decoded), `…` kept as it is.
    fn string(&mut self) -> Result<String, ParseError> {
        self.expect('"')?;
        let start = self.at;
        let mut escaped = false;
        while let Some(&c) = self.chars.get(self.at) {
            self.at += 1;
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    let literal: String = self.chars[start - 1..self.at].iter().collect();
                    return serde_json::from_str(&literal).map_err(|e| ParseError::Invalid(e.to_string()));
                }
                _ => escaped = false,
            }
        }
        Err(ParseError::Incomplete)
    }

    fn array(&mut self) -> Result<Pattern, ParseError> {
        self.expect('[')?;
        let (mut items, mut open) = (Vec::new(), false);
        if self.peek() == Some(']') {
            self.at += 1;
            return Ok(Pattern::Array { items, open });
        }
        loop {
            match self.value()? {
                Pattern::Any if self.peek() == Some(']') && !items.is_empty() => open = true,
                item => items.push(item),
            }
            match self.peek() {
                Some(',') => self.at += 1,
                _ => break,
            }
        }
        self.expect(']')?;
        Ok(Pattern::Array { items, open })
    }

    fn object(&mut self) -> Result<Pattern, ParseError> {
        self.expect('{')?;
        let (mut members, mut open) = (Vec::new(), false);
        loop {
            match self.peek().ok_or(ParseError::Incomplete)? {
                '}' => break,
                ELLIPSIS => {
                    self.at += 1;
                    open = true;
                }
                _ => {
                    let key = self.string()?;
                    self.expect(':')?;
                    members.push((key, self.value()?));
                }
            }
            match self.peek() {
                Some(',') => self.at += 1,
                _ => break,
            }
        }
        self.expect('}')?;
        Ok(Pattern::Object { members, open })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn differences(pattern: &str, actual: Value) -> Vec<String> {
        Pattern::parse(pattern).unwrap().differences(&actual)
    }

    #[test]
    fn an_ellipsis_stands_for_what_differs_and_nothing_else() {
        let shown =
            r#"{"id":"…","token":"rhs_…","seq":1,"tags":{…,"cpu":"cpu-total"},"points":[[…,97.5],…]}   (prose)"#;
        let actual = json!({"id": "6f1c", "token": "rhs_abc", "seq": 1,
            "tags": {"cpu": "cpu-total", "robot": "pi"}, "points": [[1, 97.5], [2, 97.0]]});
        assert_eq!(differences(shown, actual.clone()), Vec::<String>::new());

        let mut wrong = actual;
        wrong["token"] = json!("rhr_abc");
        wrong["seq"] = json!(2);
        wrong["extra"] = json!(true);
        wrong["points"][0][1] = json!(97.4);
        let found = differences(shown, wrong);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found.iter().any(|f| f.contains("\"extra\"")), "{found:?}");
    }

    #[test]
    fn a_closed_array_and_a_missing_member_are_differences() {
        assert_eq!(differences(r#"{"logs":[]}"#, json!({"logs": [1]})).len(), 1);
        assert_eq!(differences(r#"{"a":1,"b":2}"#, json!({"a": 1})).len(), 1);
        assert_eq!(differences(r#"{"a":"x…y…z"}"#, json!({"a": "x1y2z"})).len(), 0);
        assert_eq!(differences(r#"{"a":"x…y…z"}"#, json!({"a": "xz"})).len(), 1);
    }

    #[test]
    fn a_pattern_cut_at_the_line_end_asks_for_the_next_line() {
        assert_eq!(Pattern::parse(r#"{"series":[{"a":1,"#), Err(ParseError::Incomplete));
        assert!(matches!(Pattern::parse("{x}"), Err(ParseError::Invalid(_))));
    }

    #[test]
    fn a_response_head_is_found_piece_by_piece_in_order() {
        let head = Pattern::parse(r#"HTTP/1.1 200 OK … idempotent-replayed: true … "repeat":true}"#).unwrap();
        assert!(head.found_in("HTTP/1.1 200 OK\r\nidempotent-replayed: true\r\n\r\n{\"repeat\":true}"));
        assert!(!head.found_in("HTTP/1.1 200 OK\r\n\r\n{\"repeat\":true}"));
    }
}
