//! One function per fuzz target: each feeds arbitrary bytes to a parser that takes outside input,
//! exactly as the service or the CLI would, and checks what the parser promises beyond "does not
//! panic". The binaries in `fuzz_targets/` wrap these in libFuzzer's entry point; keeping the bodies
//! here lets `cargo test` in this crate replay the corpus seeds without the fuzzer.
//!
//! A returned `Err` is a correct answer to bad input; only a panic (or an abort, a hang, an
//! out-of-memory) is a finding.

use chrono::{DateTime, TimeZone, Utc};
use closeout::intake::scim::{lifecycle, patch, path};
use closeout::intake::{source, webhook};
use serde_json::{json, Map, Value};
use std::path::Path;

/// The targets by name, in the order scripts/fuzz.sh runs them.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("webhook_body", webhook_body),
    ("scim_filter", scim_filter),
    ("scim_patch", scim_patch),
    ("playbook_yaml", playbook_yaml),
    ("policy_yaml", policy_yaml),
    ("config_toml", config_toml),
    ("hr_csv", hr_csv),
    ("hr_json", hr_json),
];

/// A fixed clock: the parse must not depend on the wall clock, and a fixed one keeps a crash
/// reproducible.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Text parsers take `&str`: the service and CLI hand them UTF-8 only (a file that is not UTF-8
/// fails at the read), so non-UTF-8 input is not theirs to see.
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A webhook body as `POST /webhooks/...` receives it (after the signature check).
pub fn webhook_body(data: &[u8]) {
    if let Ok(event) = webhook::parse_event(data, "msg_fuzz", now()) {
        // What the parser promises of an accepted event.
        assert!(!event.identity.is_empty());
        assert_eq!(event.identity, event.identity.trim());
        assert!(event.identity.len() <= 512);
    }
}

/// A `GET /Users?filter=` value, and the same text as a PATCH path.
pub fn scim_filter(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Err(e) = path::ListFilter::parse(text) {
        assert_eq!(e.status.as_u16(), 400, "{e}");
    }
    if let Err(e) = path::AttrPath::parse(text) {
        assert_eq!(e.status.as_u16(), 400, "{e}");
    }
}

/// The stored User a PATCH is applied to: every kind of attribute the patch code walks (simple,
/// complex, multi-valued with `primary`, the enterprise extension).
fn base_user() -> Map<String, Value> {
    let user = json!({
        "userName": "ada@example.com",
        "externalId": "E100",
        "active": true,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [
            {"value": "ada@example.com", "type": "work", "primary": true},
            {"value": "ada@home.example", "type": "home"}
        ],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "100",
            "department": "Engineering",
            "manager": {"value": "M1"}
        }
    });
    match patch::document(&user) {
        Ok(doc) => doc,
        Err(e) => panic!("the base user is valid: {e}"),
    }
}

/// A SCIM request body: as a PatchOp (`PATCH /Users/{id}`) applied to a stored User, and as a full
/// User (`POST`/`PUT`).
pub fn scim_patch(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(ops) = patch::parse(&body) {
        let mut doc = base_user();
        if patch::apply(&mut doc, &ops).is_ok() {
            // What the handler does next with a patched User.
            let _ = lifecycle::is_active(&doc);
            let _ = lifecycle::identity(&doc);
        }
    }
    if let Ok(doc) = patch::document(&body) {
        let _ = lifecycle::identity(&doc);
        // A stored document is normalised: building it again from itself changes nothing.
        let again = patch::document(&Value::Object(doc.clone()));
        assert_eq!(again.as_ref(), Ok(&doc), "document() is not idempotent");
    }
}

/// A playbook file, checked against every provider's capability table.
pub fn playbook_yaml(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Err(diags) =
        closeout::policy::playbook::parse("fuzz.yaml", text, closeout::registry::CAPABILITIES)
    {
        assert!(!diags.is_empty(), "a refused playbook says why");
    }
}

/// An entitlement policy file.
pub fn policy_yaml(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Err(diags) = closeout::policy::entitlements::policy::parse(
        "fuzz.yaml",
        text,
        closeout::registry::CAPABILITIES,
    ) {
        assert!(!diags.is_empty(), "a refused policy says why");
    }
}

/// The TOML configuration file (`closeout.toml`), including its validation.
pub fn config_toml(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = closeout::config::Config::parse(Path::new("fuzz.toml"), text);
}

/// An HR export as CSV.
pub fn hr_csv(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = source::parse_csv("fuzz.csv", text);
}

/// An HR export as JSON.
pub fn hr_json(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let _ = source::parse_json("fuzz.json", text);
}
