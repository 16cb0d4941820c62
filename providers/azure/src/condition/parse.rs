//! The ABAC condition language (`conditionVersion` 2.0) parsed into an [`Expr`] tree.
//!
//! Grammar, as Azure documents it (keywords and operators are case-insensitive):
//!
//! ```text
//! expr      := or
//! or        := and (("OR" | "||") and)*
//! and       := unary (("AND" | "&&") unary)*
//! unary     := ("!" | "NOT") unary | "(" expr ")" | atom
//! atom      := ("ActionMatches" | "SubOperationMatches") "{" 'pattern' "}"
//!            | ("Exists" | "NotExists") attribute
//!            | attribute operator value
//! attribute := "@" source "[" name "]"          source: Request, Resource, Principal, Environment
//! operator  := [quantifier ":"] base             quantifier: ForAnyOfAnyValues, ForAllOfAnyValues,
//!                                                ForAnyOfAllValues, ForAllOfAllValues
//! value     := 'string' | bare token | "{" value ("," value)* "}"
//! ```
//!
//! The parser refuses anything outside this grammar with a [`ParseError`] that names what it met;
//! the caller then treats the condition as not evaluated (allowing).

use std::fmt;

/// A parsed condition expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Both sides hold.
    And(Box<Expr>, Box<Expr>),
    /// Either side holds.
    Or(Box<Expr>, Box<Expr>),
    /// The inner expression does not hold.
    Not(Box<Expr>),
    /// `ActionMatches{'pattern'}`: the request's action matches the pattern (`*` wildcards).
    ActionMatches(String),
    /// `SubOperationMatches{'pattern'}`: the request's sub-operation matches the pattern.
    SubOperationMatches(String),
    /// `Exists @X[...]` (`present == true`) or `NotExists @X[...]`.
    Exists {
        /// The attribute, lower-cased, e.g. `@request[microsoft.authorization/roleassignments:principalid]`.
        attribute: String,
        /// True for `Exists`, false for `NotExists`.
        present: bool,
    },
    /// `attribute [quantifier:]operator value(s)`.
    Compare {
        /// The attribute, lower-cased.
        attribute: String,
        /// The cross-product quantifier, if any.
        quantifier: Option<Quantifier>,
        /// The comparison operator name, lower-cased (e.g. `guidequals`, `stringlike`).
        operator: String,
        /// The right-hand values (one for a scalar, several for a `{…}` set).
        values: Vec<String>,
        /// True when the right-hand side was written as a `{…}` set.
        set: bool,
    },
}

/// How a multi-valued comparison combines the attribute's values with the condition's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    /// Some attribute value matches some listed value.
    AnyOfAny,
    /// Every attribute value matches some listed value.
    AllOfAny,
    /// Some attribute value matches every listed value.
    AnyOfAll,
    /// Every attribute value matches every listed value.
    AllOfAll,
}

/// Why a condition could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text ended where more was needed.
    #[error("condition ends early: expected {expected}")]
    UnexpectedEnd {
        /// What the parser was looking for.
        expected: &'static str,
    },
    /// A token the grammar does not allow here.
    #[error("unexpected `{found}` in condition: expected {expected}")]
    Unexpected {
        /// The token met, as written.
        found: String,
        /// What the parser was looking for.
        expected: &'static str,
    },
    /// A quoted string or attribute name without its closing delimiter.
    #[error("unterminated {what} in condition")]
    Unterminated {
        /// `string` or `attribute`.
        what: &'static str,
    },
    /// An operator prefix that is not one of the four cross-product quantifiers.
    #[error("unknown quantifier `{0}` in condition")]
    UnknownQuantifier(String),
}

impl fmt::Display for Quantifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quantifier::AnyOfAny => "ForAnyOfAnyValues",
            Quantifier::AllOfAny => "ForAllOfAnyValues",
            Quantifier::AnyOfAll => "ForAnyOfAllValues",
            Quantifier::AllOfAll => "ForAllOfAllValues",
        })
    }
}

/// Parses one condition.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, at: 0 };
    let expr = parser.or()?;
    match parser.peek() {
        None => Ok(expr),
        Some(t) => Err(ParseError::Unexpected {
            found: t.to_string(),
            expected: "end of condition",
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    BraceOpen,
    BraceClose,
    Comma,
    Bang,
    /// `@Source[name]`, lower-cased.
    Attribute(String),
    /// A quoted string, quotes removed, case kept.
    Quoted(String),
    /// A bare word: keyword, operator, GUID, number (case kept).
    Word(String),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Open => f.write_str("("),
            Token::Close => f.write_str(")"),
            Token::BraceOpen => f.write_str("{"),
            Token::BraceClose => f.write_str("}"),
            Token::Comma => f.write_str(","),
            Token::Bang => f.write_str("!"),
            Token::Attribute(a) => f.write_str(a),
            Token::Quoted(s) => write!(f, "'{s}'"),
            Token::Word(w) => f.write_str(w),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => push(&mut tokens, &mut i, Token::Open),
            ')' => push(&mut tokens, &mut i, Token::Close),
            '{' => push(&mut tokens, &mut i, Token::BraceOpen),
            '}' => push(&mut tokens, &mut i, Token::BraceClose),
            ',' => push(&mut tokens, &mut i, Token::Comma),
            '!' => push(&mut tokens, &mut i, Token::Bang),
            '&' | '|' if chars.get(i + 1) == Some(&c) => {
                tokens.push(Token::Word(if c == '&' { "AND" } else { "OR" }.into()));
                i += 2;
            }
            '\'' | '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&d| d == c)
                    .ok_or(ParseError::Unterminated { what: "string" })?;
                tokens.push(Token::Quoted(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            '@' => {
                let end = chars[i..]
                    .iter()
                    .position(|&d| d == ']')
                    .ok_or(ParseError::Unterminated { what: "attribute" })?;
                let attribute: String = chars[i..=i + end].iter().collect();
                tokens.push(Token::Attribute(attribute.to_ascii_lowercase()));
                i += end + 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !ends_word(&chars, i) {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(tokens)
}

/// Whether the character at `i` ends a bare word: whitespace, punctuation, or `&&` / `||`.
fn ends_word(chars: &[char], i: usize) -> bool {
    let c = chars[i];
    c.is_whitespace()
        || "(){},!'\"@".contains(c)
        || (matches!(c, '&' | '|') && chars.get(i + 1) == Some(&c))
}

fn push(tokens: &mut Vec<Token>, i: &mut usize, token: Token) {
    tokens.push(token);
    *i += 1;
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self, expected: &'static str) -> Result<Token, ParseError> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or(ParseError::UnexpectedEnd { expected })?;
        self.at += 1;
        Ok(token)
    }

    fn expect(&mut self, want: Token, expected: &'static str) -> Result<(), ParseError> {
        let got = self.next(expected)?;
        if got == want {
            Ok(())
        } else {
            Err(ParseError::Unexpected {
                found: got.to_string(),
                expected,
            })
        }
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.at += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == Some(&Token::Bang) || self.keyword("not") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            self.expect(Token::Close, "`)`")?;
            return Ok(inner);
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        const EXPECTED: &str = "an attribute, ActionMatches, SubOperationMatches or Exists";
        match self.next(EXPECTED)? {
            Token::Word(w)
                if w.eq_ignore_ascii_case("actionmatches")
                    || w.eq_ignore_ascii_case("suboperationmatches") =>
            {
                self.expect(Token::BraceOpen, "`{` after ActionMatches")?;
                let pattern = match self.next("a quoted pattern")? {
                    Token::Quoted(p) => p,
                    other => {
                        return Err(ParseError::Unexpected {
                            found: other.to_string(),
                            expected: "a quoted pattern",
                        })
                    }
                };
                self.expect(Token::BraceClose, "`}`")?;
                Ok(if w.eq_ignore_ascii_case("actionmatches") {
                    Expr::ActionMatches(pattern)
                } else {
                    Expr::SubOperationMatches(pattern)
                })
            }
            Token::Word(w)
                if w.eq_ignore_ascii_case("exists") || w.eq_ignore_ascii_case("notexists") =>
            {
                match self.next("an attribute")? {
                    Token::Attribute(attribute) => Ok(Expr::Exists {
                        attribute,
                        present: w.eq_ignore_ascii_case("exists"),
                    }),
                    other => Err(ParseError::Unexpected {
                        found: other.to_string(),
                        expected: "an attribute",
                    }),
                }
            }
            Token::Attribute(attribute) => self.comparison(attribute),
            other => Err(ParseError::Unexpected {
                found: other.to_string(),
                expected: EXPECTED,
            }),
        }
    }

    fn comparison(&mut self, attribute: String) -> Result<Expr, ParseError> {
        let operator = match self.next("an operator")? {
            Token::Word(w) => w.to_ascii_lowercase(),
            other => {
                return Err(ParseError::Unexpected {
                    found: other.to_string(),
                    expected: "an operator",
                })
            }
        };
        let (quantifier, operator) = match operator.split_once(':') {
            Some((q, op)) => (Some(quantifier(q)?), op.to_string()),
            None => (None, operator),
        };
        let (values, set) = if self.peek() == Some(&Token::BraceOpen) {
            self.at += 1;
            let mut values = vec![self.value()?];
            loop {
                match self.next("`,` or `}`")? {
                    Token::Comma => values.push(self.value()?),
                    Token::BraceClose => break,
                    other => {
                        return Err(ParseError::Unexpected {
                            found: other.to_string(),
                            expected: "`,` or `}`",
                        })
                    }
                }
            }
            (values, true)
        } else {
            (vec![self.value()?], false)
        };
        Ok(Expr::Compare {
            attribute,
            quantifier,
            operator,
            values,
            set,
        })
    }

    fn value(&mut self) -> Result<String, ParseError> {
        match self.next("a value")? {
            Token::Quoted(v) => Ok(v),
            Token::Word(w)
                if !w.eq_ignore_ascii_case("and")
                    && !w.eq_ignore_ascii_case("or")
                    && !w.eq_ignore_ascii_case("not") =>
            {
                Ok(w)
            }
            other => Err(ParseError::Unexpected {
                found: other.to_string(),
                expected: "a value",
            }),
        }
    }
}

fn quantifier(word: &str) -> Result<Quantifier, ParseError> {
    Ok(match word {
        "foranyofanyvalues" => Quantifier::AnyOfAny,
        "forallofanyvalues" => Quantifier::AllOfAny,
        "foranyofallvalues" => Quantifier::AnyOfAll,
        "forallofallvalues" => Quantifier::AllOfAll,
        other => return Err(ParseError::UnknownQuantifier(other.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        let e =
            parse("ActionMatches{'a'} OR ActionMatches{'b'} AND NOT ActionMatches{'c'}").unwrap();
        let Expr::Or(left, right) = e else {
            panic!("top is OR")
        };
        assert_eq!(*left, Expr::ActionMatches("a".into()));
        assert!(matches!(*right, Expr::And(_, _)));
    }

    #[test]
    fn comparisons_sets_and_quantifiers() {
        let e = parse(
            "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {a1, 'B2'}",
        )
        .unwrap();
        assert_eq!(
            e,
            Expr::Compare {
                attribute: "@request[microsoft.authorization/roleassignments:roledefinitionid]"
                    .into(),
                quantifier: Some(Quantifier::AnyOfAny),
                operator: "guidequals".into(),
                values: vec!["a1".into(), "B2".into()],
                set: true,
            }
        );
        assert!(matches!(
            parse("(@Resource[x:name] StringEquals 'a') && !(Exists @Principal[y])").unwrap(),
            Expr::And(_, _)
        ));
    }

    #[test]
    fn malformed_conditions_are_refused_with_what_was_met() {
        for bad in [
            "",
            "(ActionMatches{'a'}",
            "ActionMatches{'a'} XOR ActionMatches{'b'}",
            "@Request[x StringEquals 'a'",
            "@Request[x] StringEquals 'a",
            "@Request[x] ForSomeValues:StringEquals 'a'",
            "@Request[x] StringEquals {a b}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            parse("ActionMatches{'a'} XOR x").unwrap_err().to_string(),
            "unexpected `XOR` in condition: expected end of condition"
        );
    }
}
