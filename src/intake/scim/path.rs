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
            let close = after
                .find(']')
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
