//! The SCIM filter subset Okta accepts in `filter=` (System Log, apps), parsed and evaluated
//! against the JSON the simulator serves.
//!
//! Grammar: `expr := and ("or" and)*`, `and := unary ("and" unary)*`,
//! `unary := "not" unary | "(" expr ")" | attr "pr" | attr op value`, with ops
//! `eq ne sw co ew gt ge lt le` (case-insensitive keywords) and values that are double-quoted
//! strings (with `\"` escapes), numbers, `true`, `false` or `null`. An attribute path that
//! crosses an array (`target.id`) matches when any element matches, as Okta does.

use chrono::DateTime;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    Or(Box<Filter>, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(String),
    Cmp(String, Op, Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Sw,
    Co,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    LParen,
    RParen,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push(Tok::LParen);
            i += 1;
        } else if c == ')' {
            out.push(Tok::RParen);
            i += 1;
        } else if c == '"' {
            let mut v = String::new();
            i += 1;
            let mut closed = false;
            while i < chars.len() {
                match chars[i] {
                    '\\' if i + 1 < chars.len() => {
                        v.push(chars[i + 1]);
                        i += 2;
                    }
                    '"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    ch => {
                        v.push(ch);
                        i += 1;
                    }
                }
            }
            if !closed {
                return Err("unterminated string literal".into());
            }
            out.push(Tok::Str(v));
        } else if c.is_alphanumeric() || "._-+:$".contains(c) {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || "._-+:$".contains(chars[i])) {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    allowed: &'a dyn Fn(&str) -> bool,
}

impl Parser<'_> {
    fn peek_word(&self) -> Option<String> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.peek_word().as_deref() == Some("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while self.peek_word().as_deref() == Some("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, String> {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::LParen) => {
                self.pos += 1;
                let inner = self.or()?;
                if self.toks.get(self.pos) != Some(&Tok::RParen) {
                    return Err("missing ')'".into());
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("not") => {
                self.pos += 1;
                Ok(Filter::Not(Box::new(self.unary()?)))
            }
            Some(Tok::Word(attr)) => {
                self.pos += 1;
                if !(self.allowed)(&attr) {
                    return Err(format!("unsupported attribute {attr}"));
                }
                let op = self.peek_word().ok_or("missing operator")?;
                self.pos += 1;
                let op = match op.as_str() {
                    "pr" => return Ok(Filter::Present(attr)),
                    "eq" => Op::Eq,
                    "ne" => Op::Ne,
                    "sw" => Op::Sw,
                    "co" => Op::Co,
                    "ew" => Op::Ew,
                    "gt" => Op::Gt,
                    "ge" => Op::Ge,
                    "lt" => Op::Lt,
                    "le" => Op::Le,
                    other => return Err(format!("unknown operator {other}")),
                };
                let value = match self.toks.get(self.pos).cloned() {
                    Some(Tok::Str(s)) => Value::String(s),
                    Some(Tok::Word(w)) => match w.to_ascii_lowercase().as_str() {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        "null" => Value::Null,
                        _ => match w.parse::<f64>() {
                            Ok(n) => serde_json::Number::from_f64(n)
                                .map(Value::Number)
                                .ok_or("bad number")?,
                            Err(_) => return Err(format!("unquoted value {w}")),
                        },
                    },
                    _ => return Err("missing value".into()),
                };
                self.pos += 1;
                if matches!(op, Op::Sw | Op::Co | Op::Ew) && !value.is_string() {
                    return Err("sw/co/ew need a string".into());
                }
                Ok(Filter::Cmp(attr, op, value))
            }
            _ => Err("expected an expression".into()),
        }
    }
}

/// Parses `input`; `allowed` says which attribute paths the resource supports.
pub(crate) fn parse(input: &str, allowed: &dyn Fn(&str) -> bool) -> Result<Filter, String> {
    let toks = tokenize(input)?;
    if toks.is_empty() {
        return Err("empty filter".into());
    }
    let mut p = Parser {
        toks,
        pos: 0,
        allowed,
    };
    let f = p.or()?;
    if p.pos != p.toks.len() {
        return Err("trailing input".into());
    }
    Ok(f)
}

fn collect<'v>(v: &'v Value, path: &[&str], out: &mut Vec<&'v Value>) {
    match v {
        Value::Array(items) => {
            for item in items {
                collect(item, path, out);
            }
        }
        _ if path.is_empty() => out.push(v),
        Value::Object(map) => {
            if let Some(next) = map.get(path[0]) {
                collect(next, &path[1..], out);
            }
        }
        _ => {}
    }
}

fn compare(leaf: &Value, op: Op, want: &Value) -> bool {
    match (leaf, want) {
        (Value::String(a), Value::String(b)) => match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Sw => a.to_lowercase().starts_with(&b.to_lowercase()),
            Op::Co => a.to_lowercase().contains(&b.to_lowercase()),
            Op::Ew => a.to_lowercase().ends_with(&b.to_lowercase()),
            _ => {
                // Timestamps compare as instants, other strings lexically.
                let ord = match (
                    DateTime::parse_from_rfc3339(a),
                    DateTime::parse_from_rfc3339(b),
                ) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => a.cmp(b),
                };
                ordered(ord, op)
            }
        },
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            match a.partial_cmp(&b) {
                Some(ord) => match op {
                    Op::Eq => a == b,
                    Op::Ne => a != b,
                    _ => ordered(ord, op),
                },
                None => false,
            }
        }
        (a, b) => match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            _ => false,
        },
    }
}

fn ordered(ord: std::cmp::Ordering, op: Op) -> bool {
    use std::cmp::Ordering::*;
    matches!(
        (op, ord),
        (Op::Gt, Greater) | (Op::Ge, Greater | Equal) | (Op::Lt, Less) | (Op::Le, Less | Equal)
    )
}

impl Filter {
    pub(crate) fn matches(&self, v: &Value) -> bool {
        match self {
            Filter::Or(a, b) => a.matches(v) || b.matches(v),
            Filter::And(a, b) => a.matches(v) && b.matches(v),
            Filter::Not(a) => !a.matches(v),
            Filter::Present(attr) => {
                let mut leaves = Vec::new();
                collect(v, &attr.split('.').collect::<Vec<_>>(), &mut leaves);
                leaves.iter().any(|l| match l {
                    Value::Null => false,
                    Value::String(s) => !s.is_empty(),
                    _ => true,
                })
            }
            Filter::Cmp(attr, op, want) => {
                let mut leaves = Vec::new();
                collect(v, &attr.split('.').collect::<Vec<_>>(), &mut leaves);
                if *op == Op::Ne {
                    // "ne" holds when no value equals, including when the attribute is absent.
                    !leaves.iter().any(|l| compare(l, Op::Eq, want))
                } else if leaves.is_empty() {
                    *op == Op::Eq && want.is_null()
                } else {
                    leaves.iter().any(|l| compare(l, *op, want))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn any(_: &str) -> bool {
        true
    }

    #[test]
    fn parses_and_matches() {
        let ev = json!({
            "eventType": "application.provision.user.push",
            "outcome": {"result": "FAILURE", "reason": "Unable to connect"},
            "target": [{"id": "0oa1", "type": "AppInstance"}, {"id": "00u1", "type": "User"}],
            "published": "2024-01-01T00:00:00.000Z"
        });
        let ok = [
            r#"eventType eq "application.provision.user.push" and outcome.result eq "FAILURE""#,
            r#"(eventType sw "application.provision" or eventType eq "x") and target.id eq "00u1""#,
            r#"not (outcome.result eq "SUCCESS")"#,
            r#"outcome.reason co "connect" and target.id pr"#,
            r#"published gt "2023-12-31T23:59:59Z" AND published lt "2024-01-02T00:00:00Z""#,
            r#"severity ne "ERROR""#,
        ];
        for f in ok {
            assert!(parse(f, &any).unwrap().matches(&ev), "{f}");
        }
        let no = [
            r#"eventType eq "application.provision.user.deactivate""#,
            r#"target.id eq "nope" or outcome.result eq "SUCCESS""#,
            r#"severity pr"#,
        ];
        for f in no {
            assert!(!parse(f, &any).unwrap().matches(&ev), "{f}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for f in [
            "",
            "eventType",
            "eventType eq",
            "eventType eq foo",
            r#"eventType eq "x" and"#,
            r#"(eventType eq "x""#,
            r#"eventType xx "x""#,
            r#"eventType eq "x"#,
            r#"eventType eq "x" "y""#,
        ] {
            assert!(parse(f, &any).is_err(), "{f:?} should not parse");
        }
        assert!(parse(r#"bogus eq "x""#, &|a: &str| a == "eventType").is_err());
    }
}
