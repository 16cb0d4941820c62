//! Attribute paths (RFC 7644 §3.5.2 `path`, §3.10 attribute notation) over a stored User
//! document, and the `filter` expressions `GET /Users` accepts.
//!
//! Supported: `attr`, `attr.sub`, `attr[sub eq "v"]`, `attr[sub eq "v"].sub`, each optionally
//! prefixed by a schema URN (`urn:...:enterprise:2.0:User:department`), and the bare enterprise
//! URN. Value filters support `eq` only: it is what Entra ID and Okta send
//! (`emails[type eq "work"].value`, `addresses[type eq "work"].locality`).

use super::error::ScimError;
use super::schema::{self, Attr, Kind, CORE_USER, ENTERPRISE_USER};
use serde_json::{Map, Value};

/// `externalId`: a common attribute (RFC 7643 §3.1), stored beside the core attributes and not
/// listed in the User schema.
pub const EXTERNAL_ID: Attr = {
    let mut a = schema::USER_ATTRS[0];
    a.name = "externalId";
    a.required = false;
    a.unique = false;
    a.case_exact = true;
    a
};

/// `sub eq value` inside brackets.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueFilter {
    /// The sub-attribute compared (`type` in `emails[type eq "work"]`).
    pub attr: &'static Attr,
    /// The value it must equal.
    pub value: Value,
}

impl ValueFilter {
    /// Whether an element of a multi-valued attribute matches (strings compare as the
    /// sub-attribute's `caseExact` says).
    pub fn matches(&self, element: &Value) -> bool {
        let Some(actual) = element.get(self.attr.name) else {
            return false;
        };
        match (actual, &self.value) {
            (Value::String(a), Value::String(b)) if !self.attr.case_exact => {
                a.eq_ignore_ascii_case(b)
            }
            (a, b) => a == b,
        }
    }
}

/// A resolved attribute path.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    /// `CORE_USER` (attributes at the top level) or `ENTERPRISE_USER` (under that key).
    pub schema: &'static str,
    /// `None`: the whole extension (the bare enterprise URN).
    pub attr: Option<&'static Attr>,
    /// The value filter in brackets, selecting elements of a multi-valued attribute.
    pub filter: Option<ValueFilter>,
    /// The sub-attribute after the attribute (`givenName` in `name.givenName`), if any.
    pub sub: Option<&'static Attr>,
}

/// Names that are the server's and cannot be written.
pub fn is_read_only(name: &str) -> bool {
    ["id", "meta", "schemas"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

impl AttrPath {
    /// Parse a path; an unknown attribute is `invalidPath`, a value filter other than
    /// `sub eq value` is `invalidFilter`, a read-only attribute is `mutability`.
    pub fn parse(raw: &str) -> Result<AttrPath, ScimError> {
        let text = raw.trim();
        let (schema_urn, attrs, rest) = if let Some(rest) = strip_prefix_ci(text, ENTERPRISE_USER) {
            if rest.is_empty() {
                return Ok(AttrPath {
                    schema: ENTERPRISE_USER,
                    attr: None,
                    filter: None,
                    sub: None,
                });
            }
            let rest = rest
                .strip_prefix(':')
                .ok_or_else(|| ScimError::invalid_path(format!("unknown path {raw:?}")))?;
            (ENTERPRISE_USER, schema::ENTERPRISE_ATTRS, rest)
        } else if let Some(rest) = strip_prefix_ci(text, CORE_USER) {
            let rest = rest
                .strip_prefix(':')
                .ok_or_else(|| ScimError::invalid_path(format!("unknown path {raw:?}")))?;
            (CORE_USER, schema::USER_ATTRS, rest)
        } else {
            (CORE_USER, schema::USER_ATTRS, text)
        };
        let name_end = rest.find(['[', '.']).unwrap_or(rest.len());
        let name = &rest[..name_end];
        let mut tail = &rest[name_end..];
        if schema_urn == CORE_USER && is_read_only(name) {
            return Err(ScimError::mutability(format!("{name} is read-only")));
        }
        let attr = if schema_urn == CORE_USER && name.eq_ignore_ascii_case("externalId") {
            &EXTERNAL_ID
        } else {
            schema::find(attrs, name)
                .ok_or_else(|| ScimError::invalid_path(format!("unknown attribute in {raw:?}")))?
        };
        let mut filter = None;
        if let Some(after) = tail.strip_prefix('[') {
            let close = closing_bracket(after)
                .ok_or_else(|| ScimError::invalid_filter(format!("unclosed '[' in {raw:?}")))?;
            let Kind::Complex(sub) = attr.kind else {
                return Err(ScimError::invalid_filter(format!(
                    "{} has no sub-attributes to filter on",
                    attr.name
                )));
            };
            filter = Some(parse_value_filter(&after[..close], sub)?);
            tail = &after[close + 1..];
        }
        let mut sub = None;
        if let Some(sub_name) = tail.strip_prefix('.') {
            let Kind::Complex(subs) = attr.kind else {
                return Err(ScimError::invalid_path(format!(
                    "{} has no sub-attributes",
                    attr.name
                )));
            };
            sub = Some(schema::find(subs, sub_name).ok_or_else(|| {
                ScimError::invalid_path(format!("unknown sub-attribute in {raw:?}"))
            })?);
        } else if !tail.is_empty() {
            return Err(ScimError::invalid_path(format!(
                "cannot parse path {raw:?}"
            )));
        }
        if sub.is_some() && attr.multi && filter.is_none() {
            return Err(ScimError::invalid_path(format!(
                "{raw:?}: name one element of {} with a filter, e.g. {}[type eq \"work\"]",
                attr.name, attr.name
            )));
        }
        Ok(AttrPath {
            schema: schema_urn,
            attr: Some(attr),
            filter,
            sub,
        })
    }

    /// The object holding this path's attribute, if it exists.
    pub fn container<'a>(&self, doc: &'a Map<String, Value>) -> Option<&'a Map<String, Value>> {
        if self.schema == CORE_USER {
            Some(doc)
        } else {
            doc.get(ENTERPRISE_USER).and_then(Value::as_object)
        }
    }

    /// The object holding this path's attribute, created if needed.
    pub fn container_mut<'a>(&self, doc: &'a mut Map<String, Value>) -> &'a mut Map<String, Value> {
        if self.schema == CORE_USER {
            return doc;
        }
        let entry = doc
            .entry(ENTERPRISE_USER.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        match entry {
            Value::Object(m) => m,
            _ => unreachable!("replaced by an object above"),
        }
    }

    /// The first string this path names (for a filter: in the first matching element).
    pub fn get_str<'a>(&self, doc: &'a Map<String, Value>) -> Option<&'a str> {
        let attr = self.attr?;
        let value = self.container(doc)?.get(attr.name)?;
        let target = match (&self.filter, value) {
            (Some(f), Value::Array(items)) => items.iter().find(|e| f.matches(e))?,
            (Some(_), _) => return None,
            (None, Value::Array(items)) => items.first()?,
            (None, v) => v,
        };
        match self.sub {
            Some(sub) => target.get(sub.name)?.as_str(),
            None => target.as_str(),
        }
    }
}

/// Where the value filter opened by a `[` ends: the first `]` outside a JSON string, so that a
/// compared value may itself contain `]` (`emails[value eq "a]b"]`).
fn closing_bracket(text: &str) -> Option<usize> {
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            ']' if !in_string => return Some(i),
            _ => {}
        }
    }
    None
}

/// `sub eq "value"` (the inside of brackets).
fn parse_value_filter(text: &str, subs: &'static [Attr]) -> Result<ValueFilter, ScimError> {
    let (name, op, value) = split_comparison(text)?;
    let attr = schema::find(subs, name).ok_or_else(|| {
        ScimError::invalid_filter(format!("unknown attribute {name:?} in filter"))
    })?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(ScimError::invalid_filter(format!(
            "operator {op:?} is not supported in a value filter; only eq is"
        )));
    }
    Ok(ValueFilter { attr, value })
}

/// Split `attr op value` where value is a JSON literal (a quoted string, true, false, null).
fn split_comparison(text: &str) -> Result<(&str, &str, Value), ScimError> {
    let text = text.trim();
    let bad =
        || ScimError::invalid_filter(format!("expected `attribute eq \"value\"`, found {text:?}"));
    let (name, rest) = text.split_once(char::is_whitespace).ok_or_else(bad)?;
    let rest = rest.trim_start();
    let (op, value) = rest.split_once(char::is_whitespace).ok_or_else(bad)?;
    let value: Value = serde_json::from_str(value.trim()).map_err(|_| bad())?;
    if value.is_array() || value.is_object() {
        return Err(bad());
    }
    Ok((name, op, value))
}

/// What `GET /Users?filter=` supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListFilter {
    /// `userName eq "..."`, compared case-insensitively (userName is not caseExact).
    UserName(String),
    /// `externalId eq "..."`, exact.
    ExternalId(String),
    /// `id eq "..."`, exact.
    Id(String),
}

impl ListFilter {
    /// Parse a filter; anything else is `invalidFilter` (400).
    pub fn parse(text: &str) -> Result<ListFilter, ScimError> {
        let (name, op, value) = split_comparison(text)?;
        let name = strip_prefix_ci(name, CORE_USER)
            .and_then(|r| r.strip_prefix(':'))
            .unwrap_or(name);
        if !op.eq_ignore_ascii_case("eq") {
            return Err(ScimError::invalid_filter(format!(
                "operator {op:?} is not supported; filters are `userName eq`, `externalId eq` or `id eq`"
            )));
        }
        let Value::String(value) = value else {
            return Err(ScimError::invalid_filter(
                "the compared value must be a string",
            ));
        };
        if name.eq_ignore_ascii_case("userName") {
            Ok(ListFilter::UserName(value))
        } else if name.eq_ignore_ascii_case("externalId") {
            Ok(ListFilter::ExternalId(value))
        } else if name.eq_ignore_ascii_case("id") {
            Ok(ListFilter::Id(value))
        } else {
            Err(ScimError::invalid_filter(format!(
                "filtering on {name:?} is not supported; filters are `userName eq`, `externalId eq` or `id eq`"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        let p = AttrPath::parse("emails[type eq \"work\"].value").unwrap();
        assert_eq!(p.attr.unwrap().name, "emails");
        assert_eq!(p.sub.unwrap().name, "value");
        assert_eq!(p.filter.unwrap().value, Value::from("work"));
        let p = AttrPath::parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:Department",
        )
        .unwrap();
        assert_eq!(
            (p.schema, p.attr.unwrap().name),
            (ENTERPRISE_USER, "department")
        );
        let p = AttrPath::parse("NAME.givenName").unwrap();
        assert_eq!(
            (p.attr.unwrap().name, p.sub.unwrap().name),
            ("name", "givenName")
        );
        assert!(AttrPath::parse(ENTERPRISE_USER).unwrap().attr.is_none());
        assert_eq!(
            AttrPath::parse("nope").unwrap_err().scim_type,
            Some("invalidPath")
        );
        assert_eq!(
            AttrPath::parse("emails[type co \"w\"]")
                .unwrap_err()
                .scim_type,
            Some("invalidFilter")
        );
        assert_eq!(
            AttrPath::parse("id").unwrap_err().scim_type,
            Some("mutability")
        );
    }

    /// Found by the property `a_valid_path_parses_to_its_ast`: the first `]` was taken as the
    /// end of the filter even inside the quoted value, so a valid path was refused.
    #[test]
    fn a_bracket_inside_a_filter_value_is_not_the_closing_bracket() {
        let p = AttrPath::parse(r#"emails[value eq "]"]"#).unwrap();
        assert_eq!(p.filter.unwrap().value, Value::from("]"));
        let p = AttrPath::parse(r#"emails[value eq "a\"]b"].display"#).unwrap();
        assert_eq!(p.filter.unwrap().value, Value::from("a\"]b"));
        assert_eq!(p.sub.unwrap().name, "display");
        assert_eq!(
            AttrPath::parse(r#"emails[value eq "]"#)
                .unwrap_err()
                .scim_type,
            Some("invalidFilter")
        );
    }

    #[test]
    fn list_filters_parse() {
        assert_eq!(
            ListFilter::parse("userName eq \"Ann@X.io\"").unwrap(),
            ListFilter::UserName("Ann@X.io".into())
        );
        assert_eq!(
            ListFilter::parse("externalId EQ \"E1\"").unwrap(),
            ListFilter::ExternalId("E1".into())
        );
        for bad in [
            "userName co \"a\"",
            "title eq \"x\"",
            "userName eq \"a\" and active eq true",
            "userName",
        ] {
            assert_eq!(
                ListFilter::parse(bad).unwrap_err().scim_type,
                Some("invalidFilter"),
                "{bad}"
            );
        }
    }
}

/// Properties over generated paths and filters (docs/fuzzing.md; the fuzz target `scim_filter`
/// drives both parsers with coverage-guided input).
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// `name` with each ASCII letter's case chosen by `flips` (names match case-insensitively).
    fn recase(name: &str, flips: &[bool]) -> String {
        name.chars()
            .zip(flips.iter().chain(std::iter::repeat(&false)))
            .map(|(c, up)| {
                if *up {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    }

    fn flips() -> impl Strategy<Value = Vec<bool>> {
        prop::collection::vec(any::<bool>(), 0..24)
    }

    /// A filter value: any printable text, brackets and quotes included.
    fn value() -> impl Strategy<Value = String> {
        "[\\PC\\]\\[\"\\\\ .]{0,16}"
    }

    /// A list filter and a way of writing it: the AST, then the text a client sends.
    fn list_filter() -> impl Strategy<Value = (ListFilter, String)> {
        (
            0..3usize,
            value(),
            flips(),
            flips(),
            any::<bool>(),
            "[ \t]{1,3}",
            "[ \t]{1,3}",
        )
            .prop_map(|(which, v, f1, f2, urn, sp1, sp2)| {
                let (name, ast) = match which {
                    0 => ("userName", ListFilter::UserName(v.clone())),
                    1 => ("externalId", ListFilter::ExternalId(v.clone())),
                    _ => ("id", ListFilter::Id(v.clone())),
                };
                let prefix = if urn {
                    format!("{CORE_USER}:")
                } else {
                    String::new()
                };
                let text = format!(
                    "{prefix}{}{sp1}{}{sp2}{}",
                    recase(name, &f1),
                    recase("eq", &f2),
                    Value::String(v)
                );
                (ast, text)
            })
    }

    /// An attribute path and its text: any attribute of either schema, with a value filter on a
    /// multi-valued complex attribute and a sub-attribute where the schema has them.
    fn attr_path() -> impl Strategy<Value = (AttrPath, String)> {
        let attrs: Vec<(&'static str, &'static Attr)> = schema::USER_ATTRS
            .iter()
            .chain(std::iter::once(&EXTERNAL_ID))
            .map(|a| (CORE_USER, a))
            .chain(
                schema::ENTERPRISE_ATTRS
                    .iter()
                    .map(|a| (ENTERPRISE_USER, a)),
            )
            .filter(|(_, a)| !is_read_only(a.name))
            .collect();
        (
            prop::sample::select(attrs),
            any::<bool>(),
            flips(),
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            any::<bool>(),
            any::<bool>(),
            value(),
        )
            .prop_map(
                |((urn, attr), prefixed, f, fi, si, with_filter, with_sub, v)| {
                    let mut text = if urn == ENTERPRISE_USER || prefixed {
                        format!("{urn}:")
                    } else {
                        String::new()
                    };
                    text.push_str(&recase(attr.name, &f));
                    let mut path = AttrPath {
                        schema: urn,
                        attr: Some(attr),
                        filter: None,
                        sub: None,
                    };
                    if let Kind::Complex(subs) = attr.kind {
                        if attr.multi && with_filter {
                            let on = &subs[fi.index(subs.len())];
                            text.push_str(&format!(
                                "[{} eq {}]",
                                on.name,
                                Value::String(v.clone())
                            ));
                            path.filter = Some(ValueFilter {
                                attr: on,
                                value: Value::String(v),
                            });
                        }
                        if with_sub && (!attr.multi || path.filter.is_some()) {
                            let sub = &subs[si.index(subs.len())];
                            text.push('.');
                            text.push_str(sub.name);
                            path.sub = Some(sub);
                        }
                    }
                    (path, text)
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A generated filter parses to the AST it was written from.
        #[test]
        fn a_valid_filter_parses_to_its_ast((ast, text) in list_filter()) {
            prop_assert_eq!(ListFilter::parse(&text), Ok(ast));
        }

        /// A generated path parses to the path it was written from.
        #[test]
        fn a_valid_path_parses_to_its_ast((ast, text) in attr_path()) {
            prop_assert_eq!(AttrPath::parse(&text), Ok(ast));
        }

        /// Any text: a filter or a 400 `invalidFilter`, never a panic.
        #[test]
        fn any_filter_text_is_parsed_or_refused(text in "\\PC{0,40}") {
            if let Err(e) = ListFilter::parse(&text) {
                prop_assert_eq!(e.status.as_u16(), 400);
                prop_assert_eq!(e.scim_type, Some("invalidFilter"));
            }
        }

        /// Any text: a path or a typed 400 (`invalidPath`, `invalidFilter`, `mutability`), never a
        /// panic.
        #[test]
        fn any_path_text_is_parsed_or_refused(text in "[\\PCa-z\\[\\]. :\"]{0,40}") {
            if let Err(e) = AttrPath::parse(&text) {
                prop_assert_eq!(e.status.as_u16(), 400);
                prop_assert!(
                    matches!(e.scim_type, Some("invalidPath" | "invalidFilter" | "mutability")),
                    "{:?}", e
                );
            }
        }
    }
}
