//! From a change of a SCIM User to a [`LifecycleEvent`].
//!
//! - created active → joiner; re-activated (`active` false → true) → joiner;
//! - `active` true → false, or deleted while active → leaver;
//! - active, and department, title (role), manager or location changed → mover with the new
//!   values (a removed value is sent as `""`).
//!
//! A User without `active` counts as active (RFC 7643 leaves it to the provider; IdPs send it).
//! The event's identity is `externalId`, else the enterprise `employeeNumber`, else `userName`.

use super::path::AttrPath;
use super::schema::ENTERPRISE_USER;
use crate::trigger::Trigger;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The attributes whose change makes a mover.
pub const MOVER_KEYS: [&str; 4] = ["department", "role", "manager", "location"];

/// How HR attributes are read from a User.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    /// Where the location is read; default: the work address's locality, else the primary
    /// address's, else the first address's.
    pub location: Option<AttrPath>,
}

/// Whether the User counts as active: only an explicit `"active": false` makes it inactive (a User
/// without `active` is active).
pub fn is_active(doc: &Map<String, Value>) -> bool {
    doc.get("active") != Some(&Value::Bool(false))
}

fn ext_str<'a>(doc: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    doc.get(ENTERPRISE_USER)?.get(name)?.as_str()
}

/// The identity id of the events for this User.
pub fn identity(doc: &Map<String, Value>) -> String {
    [
        doc.get("externalId").and_then(Value::as_str),
        ext_str(doc, "employeeNumber"),
        doc.get("userName").and_then(Value::as_str),
    ]
    .into_iter()
    .flatten()
    .map(str::trim)
    .find(|s| !s.is_empty())
    .unwrap_or_default()
    .to_string()
}

/// The element of a multi-valued attribute that stands for it: `type` work, else primary,
/// else the first.
fn preferred<'a>(doc: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let items = doc.get(name)?.as_array()?;
    items
        .iter()
        .find(|e| {
            e.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("work"))
        })
        .or_else(|| {
            items
                .iter()
                .find(|e| e.get("primary") == Some(&Value::Bool(true)))
        })
        .or_else(|| items.first())
}

impl Mapping {
    /// The HR attributes (the HR export's column names) of a User, empty ones left out.
    /// `resolve_manager` turns a manager's SCIM id into that user's identity (IdPs send the
    /// id they were given for the manager); an unknown value is kept as sent.
    pub fn attributes(
        &self,
        doc: &Map<String, Value>,
        resolve_manager: &dyn Fn(&str) -> Option<String>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) {
                out.insert(k.to_string(), v.to_string());
            }
        };
        put(
            "email",
            preferred(doc, "emails").and_then(|e| e.get("value")?.as_str()),
        );
        let given_family = doc.get("name").map(|n| {
            [n.get("givenName"), n.get("familyName")]
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        });
        put(
            "name",
            doc.get("displayName")
                .and_then(Value::as_str)
                .or_else(|| doc.get("name")?.get("formatted")?.as_str())
                .or(given_family.as_deref()),
        );
        put("department", ext_str(doc, "department"));
        put("role", doc.get("title").and_then(Value::as_str));
        put(
            "employment_type",
            doc.get("userType").and_then(Value::as_str),
        );
        let manager = doc
            .get(ENTERPRISE_USER)
            .and_then(|e| e.get("manager")?.get("value")?.as_str())
            .map(|m| resolve_manager(m).unwrap_or_else(|| m.to_string()));
        put("manager", manager.as_deref());
        let location = match &self.location {
            Some(path) => path.get_str(doc),
            None => preferred(doc, "addresses").and_then(|a| a.get("locality")?.as_str()),
        };
        put("location", location);
        out
    }

    /// The event a change produces, if any: kind, identity and attributes.
    pub fn event(
        &self,
        old: Option<&Map<String, Value>>,
        new: Option<&Map<String, Value>>,
        resolve_manager: &dyn Fn(&str) -> Option<String>,
    ) -> Option<(Trigger, String, BTreeMap<String, String>)> {
        let was = old.is_some_and(is_active);
        let is = new.is_some_and(is_active);
        match (old, new) {
            (_, Some(n)) if is && !was => Some((
                Trigger::Joiner,
                identity(n),
                self.attributes(n, resolve_manager),
            )),
            (Some(o), _) if was && !is => Some((
                Trigger::Leaver,
                identity(o),
                self.attributes(o, resolve_manager),
            )),
            (Some(o), Some(n)) if was && is => {
                let before = self.attributes(o, resolve_manager);
                let mut after = self.attributes(n, resolve_manager);
                let moved = MOVER_KEYS.iter().any(|k| before.get(*k) != after.get(*k));
                if !moved {
                    return None;
                }
                for k in MOVER_KEYS {
                    after.entry(k.to_string()).or_default();
                }
                Some((Trigger::Mover, identity(n), after))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("object"),
        }
    }

    #[test]
    fn changes_map_to_events() {
        let m = Mapping::default();
        let none = |_: &str| None;
        let a = doc(
            json!({"userName": "ann@x.io", "externalId": "E1", "title": "Eng",
            "addresses": [{"type": "home", "locality": "Paris"}, {"type": "work", "locality": "Berlin"}],
            ENTERPRISE_USER: {"department": "R&D", "employeeNumber": "N1"}}),
        );
        let (k, id, attrs) = m.event(None, Some(&a), &none).unwrap();
        assert_eq!((k, id.as_str()), (Trigger::Joiner, "E1"));
        assert_eq!(attrs["location"], "Berlin");
        assert_eq!(attrs["role"], "Eng");
        let mut b = a.clone();
        b.insert("displayName".into(), json!("Ann"));
        assert!(
            m.event(Some(&a), Some(&b), &none).is_none(),
            "a name change is no mover"
        );
        b[ENTERPRISE_USER]["department"] = json!("Sales");
        let (k, _, attrs) = m.event(Some(&a), Some(&b), &none).unwrap();
        assert_eq!((k, attrs["department"].as_str()), (Trigger::Mover, "Sales"));
        let mut c = b.clone();
        c.insert("active".into(), json!(false));
        assert_eq!(
            m.event(Some(&b), Some(&c), &none).unwrap().0,
            Trigger::Leaver
        );
        assert!(
            m.event(Some(&c), None, &none).is_none(),
            "deleting an inactive user is no second leaver"
        );
        assert_eq!(
            m.event(Some(&c), Some(&b), &none).unwrap().0,
            Trigger::Joiner
        );
        assert_eq!(m.event(Some(&b), None, &none).unwrap().0, Trigger::Leaver);
        assert_eq!(
            identity(&doc(
                json!({"userName": "u", ENTERPRISE_USER: {"employeeNumber": "N1"}})
            )),
            "N1"
        );
        assert_eq!(identity(&doc(json!({"userName": "u"}))), "u");
    }
}
