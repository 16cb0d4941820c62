//! PATCH (RFC 7644 §3.5.2) applied to a stored User document, accepting what Entra ID and Okta
//! really send: `op` in any case (`Replace`), booleans as strings (`"False"`), and a `value`
//! object without `path` whose keys are attribute paths (`name.givenName`,
//! `urn:...:enterprise:2.0:User:department`) or the enterprise URN holding an object.

use super::error::ScimError;
use super::path::{is_read_only, AttrPath, EXTERNAL_ID};
use super::schema::{self, normalise, normalise_single, Kind, ENTERPRISE_USER, PATCH_OP};
use serde_json::{Map, Value};

/// A PATCH operation's `op`, read case-insensitively (Entra ID sends `Replace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Add the value (appended to a multi-valued attribute, set on a single-valued one).
    Add,
    /// Replace the value (of the matching elements, with a filter).
    Replace,
    /// Remove the attribute, or the elements a filter matches; a required attribute cannot be
    /// removed.
    Remove,
}

/// One parsed operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// What to do.
    pub op: Op,
    /// The attribute path as sent; `None` (not allowed for `remove`): `value` is an object of
    /// attribute paths to values.
    pub path: Option<String>,
    /// The value as sent (normalised when applied). Required by `add` and `replace`; on a `remove`
    /// of a multi-valued attribute it names the elements to remove (Entra ID's form).
    pub value: Option<Value>,
}

/// Parse a PatchOp body. `schemas` must name the PatchOp message (RFC 7644 §3.5.2).
pub fn parse(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a PatchOp body is a JSON object"))?;
    let named = obj
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter()
                .any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP)))
        });
    if !named {
        return Err(ScimError::invalid_syntax(format!(
            "schemas must contain {PATCH_OP}"
        )));
    }
    let ops = obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
        .and_then(|(_, v)| v.as_array())
        .ok_or_else(|| ScimError::invalid_syntax("Operations must be an array"))?;
    ops.iter()
        .map(|o| {
            let o = o
                .as_object()
                .ok_or_else(|| ScimError::invalid_syntax("each operation is an object"))?;
            let field = |name: &str| {
                o.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            };
            let op = match field("op").and_then(Value::as_str) {
                Some(s) if s.eq_ignore_ascii_case("add") => Op::Add,
                Some(s) if s.eq_ignore_ascii_case("replace") => Op::Replace,
                Some(s) if s.eq_ignore_ascii_case("remove") => Op::Remove,
                other => {
                    return Err(ScimError::invalid_syntax(format!(
                        "op must be add, replace or remove, found {other:?}"
                    )))
                }
            };
            let path = match field("path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if p.trim().is_empty() => None,
                Some(Value::String(p)) => Some(p.clone()),
                Some(_) => return Err(ScimError::invalid_path("path must be a string")),
            };
            Ok(Operation {
                op,
                path,
                value: field("value").cloned(),
            })
        })
        .collect()
}

/// Apply operations in order to `doc`; all or nothing (the caller keeps the original on error).
pub fn apply(doc: &mut Map<String, Value>, ops: &[Operation]) -> Result<(), ScimError> {
    for op in ops {
        apply_one(doc, op)?;
    }
    tidy(doc);
    Ok(())
}

fn apply_one(doc: &mut Map<String, Value>, op: &Operation) -> Result<(), ScimError> {
    match (&op.path, op.op) {
        (None, Op::Remove) => Err(ScimError::no_target("remove needs a path")),
        (None, kind) => {
            let Some(Value::Object(map)) = &op.value else {
                return Err(ScimError::invalid_value(
                    "an operation without path needs an object value",
                ));
            };
            for (key, value) in map {
                if is_read_only(key) {
                    continue; // Okta and others echo `id` or `schemas`; nothing to change.
                }
                let path = match AttrPath::parse(key) {
                    Ok(p) => p,
                    // Unknown attributes in a value object are ignored, as in POST and PUT.
                    Err(e) if e.scim_type == Some("invalidPath") => continue,
                    Err(e) => return Err(e),
                };
                set(doc, &path, kind, value.clone())?;
            }
            Ok(())
        }
        (Some(p), Op::Remove) => remove(doc, &AttrPath::parse(p)?, op.value.as_ref()),
        (Some(p), kind) => {
            let value = op.value.clone().ok_or_else(|| {
                ScimError::invalid_value(format!("{p}: add and replace need a value"))
            })?;
            set(doc, &AttrPath::parse(p)?, kind, value)
        }
    }
}

/// Add or replace the value at `path`.
fn set(
    doc: &mut Map<String, Value>,
    path: &AttrPath,
    op: Op,
    value: Value,
) -> Result<(), ScimError> {
    let Some(attr) = path.attr else {
        // The bare enterprise URN: each key of the object is one of its attributes.
        let Value::Object(map) = value else {
            return Err(ScimError::invalid_value(format!(
                "{ENTERPRISE_USER} takes an object"
            )));
        };
        for (k, v) in map {
            if let Some(a) = schema::find(schema::ENTERPRISE_ATTRS, &k) {
                let sub = AttrPath {
                    schema: ENTERPRISE_USER,
                    attr: Some(a),
                    filter: None,
                    sub: None,
                };
                set(doc, &sub, op, v)?;
            }
        }
        return Ok(());
    };
    let container = path.container_mut(doc);
    match (&path.filter, path.sub) {
        (None, None) => {
            let new = normalise(attr, value)?;
            match (new, attr.multi, attr.kind) {
                (None, _, _) if op == Op::Replace => {
                    container.remove(attr.name);
                }
                (None, _, _) => {}
                (Some(Value::Array(items)), true, _) if op == Op::Add => {
                    let list = array_mut(container, attr.name);
                    for item in items {
                        if !list.contains(&item) {
                            list.push(item);
                        }
                    }
                    fix_primary(list);
                }
                (Some(Value::Array(mut items)), true, _) => {
                    fix_primary(&mut items);
                    container.insert(attr.name.to_string(), Value::Array(items));
                }
                (Some(Value::Object(sub)), false, Kind::Complex(_)) => {
                    // RFC 7644 §3.5.2.1/3: sub-attributes not given are left unchanged.
                    let target = object_mut(container, attr.name);
                    target.extend(sub);
                }
                (Some(v), _, _) => {
                    container.insert(attr.name.to_string(), v);
                }
            }
        }
        (None, Some(sub)) => {
            // `name.givenName` on a single-valued complex attribute.
            match normalise_single(sub, value)? {
                Some(v) => {
                    object_mut(container, attr.name).insert(sub.name.to_string(), v);
                }
                None => {
                    if let Some(Value::Object(o)) = container.get_mut(attr.name) {
                        o.remove(sub.name);
                    }
                }
            }
        }
        (Some(filter), sub) => {
            let new = match sub {
                Some(sub) => normalise_single(sub, value)?,
                None => normalise_single(attr, value)?,
            };
            let list = array_mut(container, attr.name);
            let mut matched = false;
            for element in list.iter_mut().filter(|e| filter.matches(e)) {
                matched = true;
                match (sub, &new) {
                    (Some(sub), Some(v)) => {
                        if let Value::Object(o) = element {
                            o.insert(sub.name.to_string(), v.clone());
                        }
                    }
                    (Some(sub), None) => {
                        if let Value::Object(o) = element {
                            o.remove(sub.name);
                        }
                    }
                    (None, Some(Value::Object(v))) => {
                        if let Value::Object(o) = element {
                            o.extend(v.clone());
                        }
                    }
                    (None, _) => {}
                }
            }
            if !matched {
                // Entra ID sends `replace emails[type eq "work"].value` for a user without a
                // work email yet: create the element the filter describes.
                let mut element = Map::new();
                element.insert(filter.attr.name.to_string(), filter.value.clone());
                match (sub, new) {
                    (Some(sub), Some(v)) => {
                        element.insert(sub.name.to_string(), v);
                    }
                    (None, Some(Value::Object(v))) => element.extend(v),
                    _ => return Ok(()),
                }
                list.push(Value::Object(element));
            }
            fix_primary(list);
        }
    }
    Ok(())
}

/// Remove the value at `path`. Removing what is not there is not an error: a retried request
/// succeeds (deliberately lenient; RFC 7644 §3.5.2.2 lets a server treat it as one).
fn remove(
    doc: &mut Map<String, Value>,
    path: &AttrPath,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let Some(attr) = path.attr else {
        doc.remove(ENTERPRISE_USER);
        return Ok(());
    };
    if attr.required {
        return Err(ScimError::mutability(format!(
            "{} is required and cannot be removed",
            attr.name
        )));
    }
    let container = path.container_mut(doc);
    match (&path.filter, path.sub) {
        (None, None) => {
            // A value on remove of a multi-valued attribute names the elements to remove
            // (Entra ID's form for members); otherwise the whole attribute goes.
            match (
                attr.multi,
                value.and_then(|v| normalise(attr, v.clone()).ok().flatten()),
            ) {
                (true, Some(Value::Array(gone))) => {
                    if let Some(Value::Array(list)) = container.get_mut(attr.name) {
                        list.retain(|e| !gone.iter().any(|g| same_element(g, e)));
                    }
                }
                _ => {
                    container.remove(attr.name);
                }
            }
        }
        (None, Some(sub)) => {
            if let Some(Value::Object(o)) = container.get_mut(attr.name) {
                o.remove(sub.name);
            }
        }
        (Some(filter), sub) => {
            if let Some(Value::Array(list)) = container.get_mut(attr.name) {
                match sub {
                    None => list.retain(|e| !filter.matches(e)),
                    Some(sub) => {
                        for e in list.iter_mut().filter(|e| filter.matches(e)) {
                            if let Value::Object(o) = e {
                                o.remove(sub.name);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Two elements are the same when their `value`s are (or, without `value`, when equal).
fn same_element(a: &Value, b: &Value) -> bool {
    match (a.get("value"), b.get("value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn array_mut<'a>(container: &'a mut Map<String, Value>, name: &str) -> &'a mut Vec<Value> {
    let entry = container
        .entry(name.to_string())
        .or_insert_with(|| Value::Array(vec![]));
    if !entry.is_array() {
        *entry = Value::Array(vec![]);
    }
    match entry {
        Value::Array(a) => a,
        _ => unreachable!("replaced by an array above"),
    }
}

fn object_mut<'a>(container: &'a mut Map<String, Value>, name: &str) -> &'a mut Map<String, Value> {
    let entry = container
        .entry(name.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(o) => o,
        _ => unreachable!("replaced by an object above"),
    }
}

/// `primary: true` appears at most once (RFC 7643 §2.4): the last one set wins.
fn fix_primary(list: &mut [Value]) {
    let last = list
        .iter()
        .rposition(|e| e.get("primary") == Some(&Value::Bool(true)));
    if let Some(last) = last {
        for (i, e) in list.iter_mut().enumerate() {
            if i != last {
                if let Some(Value::Bool(true)) = e.get("primary") {
                    if let Value::Object(o) = e {
                        o.insert("primary".into(), Value::Bool(false));
                    }
                }
            }
        }
    }
}

/// Drop empty objects and arrays, so that "unassigned" has one form (RFC 7643 §2.5).
pub fn tidy(doc: &mut Map<String, Value>) {
    for v in doc.values_mut() {
        if let Value::Object(o) = v {
            tidy(o);
        }
        if let Value::Array(items) = v {
            items.retain(|i| !matches!(i, Value::Object(o) if o.is_empty()));
        }
    }
    doc.retain(|_, v| match v {
        Value::Object(o) => !o.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Null => false,
        _ => true,
    });
}

/// Build a stored document from a full resource (POST, PUT): known attributes normalised,
/// unknown ones and the read-only `id`, `meta`, `schemas` ignored.
pub fn document(body: &Value) -> Result<Map<String, Value>, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a User is a JSON object"))?;
    let mut doc = Map::new();
    for (key, value) in obj {
        if is_read_only(key) {
            continue;
        }
        if key.eq_ignore_ascii_case(ENTERPRISE_USER) {
            let path = AttrPath {
                schema: ENTERPRISE_USER,
                attr: None,
                filter: None,
                sub: None,
            };
            set(&mut doc, &path, Op::Replace, value.clone())?;
            continue;
        }
        let attr = if key.eq_ignore_ascii_case("externalId") {
            &EXTERNAL_ID
        } else if let Some(a) = schema::find(schema::USER_ATTRS, key) {
            a
        } else {
            continue;
        };
        if let Some(v) = normalise(attr, value.clone())? {
            doc.insert(attr.name.to_string(), v);
        }
    }
    if let Some(Value::Array(list)) = doc.get_mut("emails") {
        fix_primary(list);
    }
    tidy(&mut doc);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(doc: Value, body: Value) -> Value {
        let mut d = document(&doc).unwrap();
        apply(&mut d, &parse(&body).unwrap()).unwrap();
        Value::Object(d)
    }

    fn ops(ops: Value) -> Value {
        json!({"schemas": [PATCH_OP], "Operations": ops})
    }

    #[test]
    fn entra_and_okta_forms() {
        let base = json!({"userName": "a", "active": true});
        assert_eq!(
            patched(
                base.clone(),
                ops(json!([{"op": "Replace", "path": "active", "value": "False"}]))
            )["active"],
            json!(false)
        );
        assert_eq!(
            patched(
                base.clone(),
                ops(json!([{"op": "replace", "value": {"active": false}}]))
            )["active"],
            json!(false)
        );
        let d = patched(
            base.clone(),
            ops(json!([{"op": "Add", "value": {
                "name.givenName": "Ann",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Sales",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "E1"},
                "unknownThing": 1,
            }}])),
        );
        assert_eq!(d["name"]["givenName"], "Ann");
        assert_eq!(d[ENTERPRISE_USER]["department"], "Sales");
        assert_eq!(d[ENTERPRISE_USER]["employeeNumber"], "E1");
    }

    #[test]
    fn filtered_paths_update_or_create_the_element() {
        let base = json!({"userName": "a", "emails": [{"type": "home", "value": "h@x.io"}]});
        let d = patched(
            base.clone(),
            ops(
                json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@x.io"}]),
            ),
        );
        assert_eq!(
            d["emails"],
            json!([{"type": "home", "value": "h@x.io"}, {"type": "work", "value": "w@x.io"}])
        );
        let d = patched(
            d,
            ops(
                json!([{"op": "replace", "path": "emails[type eq \"WORK\"].value", "value": "w2@x.io"}]),
            ),
        );
        assert_eq!(d["emails"][1]["value"], "w2@x.io");
        let d = patched(
            d,
            ops(json!([{"op": "remove", "path": "emails[type eq \"home\"]"}])),
        );
        assert_eq!(d["emails"], json!([{"type": "work", "value": "w2@x.io"}]));
    }

    #[test]
    fn remove_and_errors() {
        let base = json!({"userName": "a", "title": "Eng", ENTERPRISE_USER: {"department": "R&D", "manager": {"value": "m"}}});
        let d = patched(
            base.clone(),
            ops(
                json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}]),
            ),
        );
        assert_eq!(d[ENTERPRISE_USER], json!({"department": "R&D"}));
        let d = patched(
            d,
            ops(json!([{"op": "remove", "path": "title"}, {"op": "remove", "path": "title"}])),
        );
        assert!(d.get("title").is_none());
        let mut doc = document(&base).unwrap();
        let err = |body: Value| {
            parse(&body)
                .and_then(|o| apply(&mut doc.clone(), &o))
                .unwrap_err()
                .scim_type
        };
        assert_eq!(err(ops(json!([{"op": "remove"}]))), Some("noTarget"));
        assert_eq!(
            err(ops(json!([{"op": "move", "path": "title"}]))),
            Some("invalidSyntax")
        );
        assert_eq!(err(json!({"Operations": []})), Some("invalidSyntax"));
        assert_eq!(
            err(ops(
                json!([{"op": "replace", "path": "active", "value": "maybe"}])
            )),
            Some("invalidValue")
        );
        assert_eq!(
            err(ops(json!([{"op": "remove", "path": "userName"}]))),
            Some("mutability")
        );
        apply(&mut doc, &[]).unwrap();
    }
}

/// Properties over generated bodies (docs/fuzzing.md; the fuzz target `scim_patch` drives the
/// same functions with coverage-guided input).
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Words a SCIM body is made of, so generated JSON reaches past the first check.
    const WORDS: &[&str] = &[
        "schemas",
        PATCH_OP,
        "Operations",
        "op",
        "add",
        "Replace",
        "remove",
        "path",
        "value",
        "userName",
        "active",
        "name",
        "name.givenName",
        "emails",
        "emails[type eq \"work\"].value",
        "emails[type eq \"work\"]",
        "primary",
        "type",
        "work",
        "externalId",
        "id",
        "meta",
        ENTERPRISE_USER,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        "manager",
        "False",
    ];

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(WORDS).prop_map(str::to_string),
            "\\PC{0,8}",
        ]
    }

    /// Any JSON, biased towards SCIM's keys and values.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            word().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((word(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// A PatchOp body whose operations are generated JSON.
    fn patch_body() -> impl Strategy<Value = Value> {
        prop::collection::vec(json_value(), 0..4)
            .prop_map(|ops| json!({"schemas": [PATCH_OP], "Operations": ops}))
    }

    fn base() -> Map<String, Value> {
        document(&json!({
            "userName": "ada",
            "active": true,
            "name": {"givenName": "Ada"},
            "emails": [{"value": "a@x.io", "type": "work", "primary": true}],
            ENTERPRISE_USER: {"department": "Eng"},
        }))
        .unwrap()
    }

    /// Single-valued string attributes a client may write, with the path naming each.
    fn string_paths() -> Vec<String> {
        let core = schema::USER_ATTRS
            .iter()
            .filter(|a| a.kind == Kind::String && !a.multi && !is_read_only(a.name))
            .map(|a| a.name.to_string());
        let ext = schema::ENTERPRISE_ATTRS
            .iter()
            .filter(|a| a.kind == Kind::String && !a.multi)
            .map(|a| format!("{ENTERPRISE_USER}:{}", a.name));
        core.chain(ext)
            .chain(["name.familyName".to_string()])
            .collect()
    }

    fn assert_typed(e: &ScimError) -> Result<(), TestCaseError> {
        prop_assert_eq!(e.status.as_u16(), 400, "{}", e);
        prop_assert!(e.scim_type.is_some() && !e.detail.is_empty(), "{}", e);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any JSON as a PATCH body: parsed and applied, or a typed 400; never a panic.
        #[test]
        fn any_body_is_applied_or_refused(body in prop_oneof![json_value(), patch_body()]) {
            match parse(&body) {
                Ok(ops) => {
                    let mut doc = base();
                    if let Err(e) = apply(&mut doc, &ops) {
                        assert_typed(&e)?;
                    }
                }
                Err(e) => assert_typed(&e)?,
            }
        }

        /// Any JSON as a full User: a stored document or a typed 400; a stored document is a
        /// fixed point (building it again from itself changes nothing).
        #[test]
        fn document_is_idempotent(body in json_value()) {
            match document(&body) {
                Ok(doc) => prop_assert_eq!(document(&Value::Object(doc.clone())), Ok(doc)),
                Err(e) => assert_typed(&e)?,
            }
        }

        /// A replace of a string attribute, in any spelling of `op`, sets exactly that value.
        #[test]
        fn replace_sets_the_value(
            path in prop::sample::select(string_paths()),
            value in "\\PC{1,20}",
            op in prop::sample::select(vec!["replace", "Replace", "REPLACE", "add", "Add"]),
        ) {
            let body = json!({"schemas": [PATCH_OP],
                "Operations": [{"op": op, "path": path, "value": value}]});
            let mut doc = base();
            let applied = parse(&body).and_then(|ops| apply(&mut doc, &ops));
            prop_assert!(applied.is_ok(), "{applied:?}");
            prop_assert_eq!(
                AttrPath::parse(&path).unwrap().get_str(&doc),
                Some(value.as_str())
            );
        }
    }
}
