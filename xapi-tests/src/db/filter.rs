//! xapi's `get_all_records_where` expressions (`Db_filter`): `field "SR" = "OpaqueRef:..."`,
//! combined with `and`, `or`, `not`, parentheses, `true` and `false`, with `=` and `<>`.

use crate::error::{ApiError, ApiResult};

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// `field "name"`: the record's field as text.
    Field(String),
    /// `"text"`.
    Literal(String),
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `true`.
    True,
    /// `false`.
    False,
    /// `not e`.
    Not(Box<Expr>),
    /// `a and b`.
    And(Box<Expr>, Box<Expr>),
    /// `a or b`.
    Or(Box<Expr>, Box<Expr>),
    /// `a = b`.
    Eq(Operand, Operand),
    /// `a <> b`.
    Neq(Operand, Operand),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted(String),
    Eq,
    Neq,
    Open,
    Close,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    while let Some(&c) = it.peek() {
        match c {
            c if c.is_whitespace() => {
                it.next();
            }
            '(' => {
                it.next();
                out.push(Tok::Open);
            }
            ')' => {
                it.next();
                out.push(Tok::Close);
            }
            '=' => {
                it.next();
                out.push(Tok::Eq);
            }
            '<' => {
                it.next();
                if it.next() != Some('>') {
                    return Err("expected <>".into());
                }
                out.push(Tok::Neq);
            }
            '"' => {
                it.next();
                let mut q = String::new();
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some(e) => q.push(e),
                            None => return Err("unterminated string".into()),
                        },
                        Some(ch) => q.push(ch),
                        None => return Err("unterminated string".into()),
                    }
                }
                out.push(Tok::Quoted(q));
            }
            c if c.is_ascii_alphabetic() => {
                let mut w = String::new();
                while let Some(&ch) = it.peek() {
                    if ch.is_ascii_alphanumeric() || ch == '_' {
                        w.push(ch);
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Word(w.to_ascii_lowercase()));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.is_word("or") {
            self.next();
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.not()?;
        while self.is_word("and") {
            self.next();
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.is_word("not") {
            self.next();
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn operand(&mut self) -> Result<Operand, String> {
        match self.next() {
            Some(Tok::Word(w)) if w == "field" => match self.next() {
                Some(Tok::Quoted(n)) => Ok(Operand::Field(n)),
                other => Err(format!("expected a field name, found {other:?}")),
            },
            Some(Tok::Quoted(s)) => Ok(Operand::Literal(s)),
            other => Err(format!("expected a value, found {other:?}")),
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some(Tok::Open) => {
                self.next();
                let e = self.or()?;
                match self.next() {
                    Some(Tok::Close) => Ok(e),
                    other => Err(format!("expected ), found {other:?}")),
                }
            }
            Some(Tok::Word(w)) if w == "true" => {
                self.next();
                Ok(Expr::True)
            }
            Some(Tok::Word(w)) if w == "false" => {
                self.next();
                Ok(Expr::False)
            }
            _ => {
                let a = self.operand()?;
                let op = self.next();
                let b = self.operand()?;
                match op {
                    Some(Tok::Eq) => Ok(Expr::Eq(a, b)),
                    Some(Tok::Neq) => Ok(Expr::Neq(a, b)),
                    other => Err(format!("expected = or <>, found {other:?}")),
                }
            }
        }
    }
}

impl Expr {
    /// Parses an expression; a malformed one is `INVALID_VALUE [expr; text]` (xapi raises a
    /// parse error there too).
    pub fn parse(s: &str) -> ApiResult<Expr> {
        let err = |why: String| ApiError::invalid_value("expr", &format!("{s} ({why})"));
        let toks = tokenize(s).map_err(err)?;
        let mut p = Parser { toks, pos: 0 };
        let e = p.or().map_err(err)?;
        if p.pos != p.toks.len() {
            return Err(err("trailing input".into()));
        }
        Ok(e)
    }

    /// Evaluates against a record, given a function returning a field's text.
    pub fn eval(&self, field: &dyn Fn(&str) -> String) -> bool {
        let val = |o: &Operand| match o {
            Operand::Field(n) => field(n),
            Operand::Literal(s) => s.clone(),
        };
        match self {
            Expr::True => true,
            Expr::False => false,
            Expr::Not(e) => !e.eval(field),
            Expr::And(a, b) => a.eval(field) && b.eval(field),
            Expr::Or(a, b) => a.eval(field) || b.eval(field),
            Expr::Eq(a, b) => val(a) == val(b),
            Expr::Neq(a, b) => val(a) != val(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: &str) -> String {
        match k {
            "SR" => "OpaqueRef:sr".into(),
            "host" => "OpaqueRef:h".into(),
            "managed" => "true".into(),
            _ => String::new(),
        }
    }

    #[test]
    fn parses_what_sm_sends() {
        let e = Expr::parse(r#"field "SR" = "OpaqueRef:sr""#).unwrap();
        assert!(e.eval(&rec));
        let e = Expr::parse(r#"field "host" = "OpaqueRef:h" and field "SR" = "OpaqueRef:other""#)
            .unwrap();
        assert!(!e.eval(&rec));
        let e =
            Expr::parse(r#"(field "SR" = "x" or field "managed" = "true") and not false"#).unwrap();
        assert!(e.eval(&rec));
        let e = Expr::parse(r#"field "SR" <> "OpaqueRef:sr" or true"#).unwrap();
        assert!(e.eval(&rec));
        assert!(Expr::parse("true").unwrap().eval(&rec));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "field",
            r#"field "SR" = "#,
            r#"field "SR" == "x""#,
            "(true",
            r#""a" = "b" extra"#,
        ] {
            assert!(Expr::parse(bad).is_err(), "{bad}");
        }
    }
}
