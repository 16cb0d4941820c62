//! Three-valued evaluation of a parsed condition against one request.
//!
//! An attribute Closeout does not know for the request, an operator it does not implement, or a
//! comparison whose types do not fit evaluates to [`Truth::Unknown`], and unknowns propagate
//! by Kleene's rules: `False AND Unknown` is `False`, `True OR Unknown` is `True`, anything
//! else with an unknown is unknown. So a clause Closeout cannot evaluate only matters when the
//! rest of the condition does not already decide, and the caller treats an unknown result as
//! allowing: what cannot be evaluated never hides a path.

use super::parse::{Expr, Quantifier};
use std::collections::BTreeMap;

/// A truth value that can be unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Closeout cannot tell.
    Unknown,
}

impl Truth {
    fn from_bool(b: bool) -> Truth {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }

    fn and(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::False, _) | (_, Truth::False) => Truth::False,
            (Truth::True, Truth::True) => Truth::True,
            _ => Truth::Unknown,
        }
    }

    fn or(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::True, _) | (_, Truth::True) => Truth::True,
            (Truth::False, Truth::False) => Truth::False,
            _ => Truth::Unknown,
        }
    }

    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        }
    }

    /// True for some element when any is true; unknown when none is true and one is unknown.
    pub(super) fn any(items: impl IntoIterator<Item = Truth>) -> Truth {
        items.into_iter().fold(Truth::False, Truth::or)
    }

    /// True when every element is true; false as soon as one is false.
    fn all(items: impl IntoIterator<Item = Truth>) -> Truth {
        items.into_iter().fold(Truth::True, Truth::and)
    }
}

/// The type of an attribute's values, which decides the operators that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// GUIDs: compared case-insensitively with the `Guid*` operators only.
    Guid,
    /// Strings: the `String*` operators.
    String,
}

/// What Closeout knows about the request a condition is evaluated against.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The action, e.g. `Microsoft.Authorization/roleAssignments/write`.
    pub action: String,
    /// Known attributes (lower-cased names, as the parser writes them) with their type and
    /// values. An attribute missing here is unknown, not absent.
    pub attributes: BTreeMap<String, (ValueType, Vec<String>)>,
}

impl Request {
    /// The request for `action` with no attribute known yet.
    pub fn new(action: &str) -> Request {
        Request {
            action: action.to_string(),
            attributes: BTreeMap::new(),
        }
    }

    /// Adds a known attribute; its type is the one Azure gives that attribute.
    pub fn with(mut self, attribute: &str, values: Vec<String>) -> Request {
        let attribute = attribute.to_ascii_lowercase();
        let kind = value_type(&attribute);
        self.attributes.insert(attribute, (kind, values));
        self
    }
}

/// The type Azure gives an attribute: the role-assignment attributes that name a role
/// definition or a principal are GUIDs; the others Closeout knows are strings.
fn value_type(attribute: &str) -> ValueType {
    const GUIDS: [&str; 4] = [
        "@request[microsoft.authorization/roleassignments:roledefinitionid]",
        "@request[microsoft.authorization/roleassignments:principalid]",
        "@resource[microsoft.authorization/roleassignments:roledefinitionid]",
        "@resource[microsoft.authorization/roleassignments:principalid]",
    ];
    if GUIDS.contains(&attribute) {
        ValueType::Guid
    } else {
        ValueType::String
    }
}

/// Evaluates `expr` for `request`.
pub fn evaluate(expr: &Expr, request: &Request) -> Truth {
    match expr {
        Expr::And(a, b) => evaluate(a, request).and(evaluate(b, request)),
        Expr::Or(a, b) => evaluate(a, request).or(evaluate(b, request)),
        Expr::Not(inner) => evaluate(inner, request).not(),
        Expr::ActionMatches(pattern) => Truth::from_bool(glob_matches(pattern, &request.action)),
        // Sub-operations belong to data actions Closeout does not model per request.
        Expr::SubOperationMatches(_) => Truth::Unknown,
        Expr::Exists { attribute, present } => match request.attributes.get(attribute) {
            Some((_, values)) => Truth::from_bool(values.is_empty() != *present),
            None => Truth::Unknown,
        },
        Expr::Compare {
            attribute,
            quantifier,
            operator,
            values,
            set,
        } => {
            let Some((kind, actual)) = request.attributes.get(attribute) else {
                return Truth::Unknown;
            };
            let Some(op) = Operator::parse(operator, *kind) else {
                return Truth::Unknown;
            };
            compare(op, *quantifier, *set, actual, values)
        }
    }
}

/// A comparison Closeout implements, with whether it is negated (`…NotEquals`).
#[derive(Debug, Clone, Copy)]
struct Operator {
    base: Base,
    negated: bool,
}

#[derive(Debug, Clone, Copy)]
enum Base {
    Equals { ignore_case: bool },
    Like { ignore_case: bool },
    StartsWith { ignore_case: bool },
}

impl Operator {
    /// The operator named `name` (lower case) when it applies to values of `kind`.
    fn parse(name: &str, kind: ValueType) -> Option<Operator> {
        let (negated, base) = match (kind, name) {
            (ValueType::Guid, "guidequals") => (false, Base::Equals { ignore_case: true }),
            (ValueType::Guid, "guidnotequals") => (true, Base::Equals { ignore_case: true }),
            (ValueType::String, _) => {
                let (negated, rest) = match name.strip_prefix("stringnot") {
                    Some(rest) => (true, rest),
                    None => (false, name.strip_prefix("string")?),
                };
                let (rest, ignore_case) = match rest.strip_suffix("ignorecase") {
                    Some(r) => (r, true),
                    None => (rest, false),
                };
                let base = match rest {
                    "equals" => Base::Equals { ignore_case },
                    "like" => Base::Like { ignore_case },
                    "startswith" => Base::StartsWith { ignore_case },
                    _ => return None,
                };
                (negated, base)
            }
            // A string operator on a GUID attribute (or the reverse) is not a form Azure
            // accepts; do not guess what it would mean.
            _ => return None,
        };
        Some(Operator { base, negated })
    }

    fn holds(self, actual: &str, expected: &str) -> bool {
        let fold = |s: &str, ignore: bool| {
            if ignore {
                s.to_lowercase()
            } else {
                s.to_string()
            }
        };
        let result = match self.base {
            Base::Equals { ignore_case } => {
                fold(actual, ignore_case) == fold(expected, ignore_case)
            }
            Base::Like { ignore_case } => {
                glob_matches_case(&fold(expected, ignore_case), &fold(actual, ignore_case))
            }
            Base::StartsWith { ignore_case } => {
                fold(actual, ignore_case).starts_with(&fold(expected, ignore_case))
            }
        };
        result != self.negated
    }
}

/// The cross product of the attribute's values and the condition's values, as the quantifier
/// says. Without a quantifier, one attribute value is compared with one listed value; any other
/// shape is not one Closeout evaluates.
fn compare(
    op: Operator,
    quantifier: Option<Quantifier>,
    set: bool,
    actual: &[String],
    expected: &[String],
) -> Truth {
    let pair = |a: &String, e: &String| Truth::from_bool(op.holds(a, e));
    let any_expected = |a: &String| Truth::any(expected.iter().map(|e| pair(a, e)));
    let all_expected = |a: &String| Truth::all(expected.iter().map(|e| pair(a, e)));
    match quantifier {
        Some(Quantifier::AnyOfAny) => Truth::any(actual.iter().map(any_expected)),
        Some(Quantifier::AllOfAny) => Truth::all(actual.iter().map(any_expected)),
        Some(Quantifier::AnyOfAll) => Truth::any(actual.iter().map(all_expected)),
        Some(Quantifier::AllOfAll) => Truth::all(actual.iter().map(all_expected)),
        None => match (actual, expected) {
            ([a], [e]) if !set => pair(a, e),
            _ => Truth::Unknown,
        },
    }
}

/// `*` matches any run of characters; matching ignores case (actions are case-insensitive).
fn glob_matches(pattern: &str, text: &str) -> bool {
    glob_matches_case(&pattern.to_lowercase(), &text.to_lowercase())
}

fn glob_matches_case(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    const ROLE: &str = "@request[microsoft.authorization/roleassignments:roledefinitionid]";

    fn request(role: &str) -> Request {
        Request::new("Microsoft.Authorization/roleAssignments/write").with(ROLE, vec![role.into()])
    }

    fn eval(condition: &str, role: &str) -> Truth {
        evaluate(&parse(condition).expect("parses"), &request(role))
    }

    #[test]
    fn kleene_rules_let_a_decided_side_win_over_an_unknown_one() {
        let unknown =
            "@Principal[Microsoft.Directory/CustomSecurityAttributes/Id:x] StringEquals 'y'";
        assert_eq!(eval(unknown, "a"), Truth::Unknown);
        assert_eq!(
            eval(&format!("ActionMatches{{'x/y'}} AND {unknown}"), "a"),
            Truth::False
        );
        assert_eq!(
            eval(
                &format!("ActionMatches{{'Microsoft.Authorization/*'}} OR {unknown}"),
                "a"
            ),
            Truth::True
        );
        assert_eq!(eval(&format!("NOT ({unknown})"), "a"), Truth::Unknown);
    }

    #[test]
    fn every_clause_of_an_or_is_evaluated() {
        let c = format!(
            "{ROLE} GuidEquals 11111111-1111-1111-1111-111111111111 OR {ROLE} GuidEquals 22222222-2222-2222-2222-222222222222"
        );
        assert_eq!(
            eval(&c, "22222222-2222-2222-2222-222222222222"),
            Truth::True
        );
        assert_eq!(
            eval(&c, "33333333-3333-3333-3333-333333333333"),
            Truth::False
        );
    }

    #[test]
    fn quantifiers_cross_the_value_sets() {
        let set = "{aaaa, BBBB}";
        assert_eq!(
            eval(
                &format!("{ROLE} ForAnyOfAnyValues:GuidEquals {set}"),
                "bbbb"
            ),
            Truth::True
        );
        assert_eq!(
            eval(
                &format!("{ROLE} ForAnyOfAllValues:GuidNotEquals {set}"),
                "bbbb"
            ),
            Truth::False
        );
        assert_eq!(
            eval(
                &format!("{ROLE} ForAnyOfAllValues:GuidNotEquals {set}"),
                "cccc"
            ),
            Truth::True
        );
        assert_eq!(
            eval(
                &format!("{ROLE} ForAllOfAllValues:GuidEquals {set}"),
                "aaaa"
            ),
            Truth::False
        );
        // A set without a quantifier is not a shape Closeout guesses at.
        assert_eq!(
            eval(&format!("{ROLE} GuidEquals {set}"), "aaaa"),
            Truth::Unknown
        );
    }

    #[test]
    fn operators_must_fit_the_attribute_type() {
        assert_eq!(
            eval(&format!("{ROLE} StringEquals 'aaaa'"), "aaaa"),
            Truth::Unknown
        );
        let r = Request::new("x").with("@request[a:b]", vec!["Secret-1".into()]);
        let e = |c: &str| evaluate(&parse(c).expect("parses"), &r);
        assert_eq!(
            e("@Request[a:b] StringEqualsIgnoreCase 'secret-1'"),
            Truth::True
        );
        assert_eq!(e("@Request[a:b] StringEquals 'secret-1'"), Truth::False);
        assert_eq!(e("@Request[a:b] StringLike 'Sec*'"), Truth::True);
        assert_eq!(e("@Request[a:b] StringNotStartsWith 'Sec'"), Truth::False);
        assert_eq!(e("@Request[a:b] StringMatchesRegex 'x'"), Truth::Unknown);
        assert_eq!(e("Exists @Request[a:b]"), Truth::True);
        assert_eq!(e("NotExists @Request[a:b]"), Truth::False);
        assert_eq!(e("Exists @Request[a:c]"), Truth::Unknown);
    }

    #[test]
    fn globs() {
        assert!(glob_matches(
            "Microsoft.Authorization/*",
            "microsoft.authorization/roleAssignments/write"
        ));
        assert!(glob_matches("*/write", "a/b/write"));
        assert!(glob_matches("a*b*c", "aXbYc"));
        assert!(!glob_matches("a*b*c", "aXcYb"));
        assert!(!glob_matches("ab*ba", "aba"));
    }
}
