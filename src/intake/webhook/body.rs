//! The body of `POST /v1/events` (a signed HR webhook) as a [`LifecycleEvent`]: the JSON shape,
//! and every way a body is refused, each a typed [`EventError`].

use crate::event::{EventSource, LifecycleEvent};
use crate::trigger::Trigger;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The JSON body of `POST /v1/events`.
///
/// ```json
/// {"type": "leaver", "identity": {"id": "E1001", "attributes": {"department": "sales"}},
///  "effective_at": "2026-12-01T09:00:00Z"}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    #[serde(rename = "type")]
    kind: String,
    identity: WebhookIdentity,
    #[serde(default)]
    effective_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookIdentity {
    id: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

/// Why a webhook body is refused (each becomes a 400 or 422 with this text).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    /// Not JSON, not the expected shape (a missing or unknown key, a wrong type), or a field longer
    /// than 512 bytes (400). The message is serde_json's, which names the place but not the
    /// content.
    #[error("the body is not valid JSON for an event: {0}")]
    Malformed(String),
    /// `type` is not an event an outside system may send (`joiner`, `mover`, `leaver`, `incident`);
    /// the value is what was sent (422).
    #[error("unknown event type {0:?}: expected one of joiner, mover, leaver, incident")]
    UnknownType(String),
    /// `identity.id` is empty or only whitespace (422).
    #[error("identity.id must not be empty")]
    NoIdentity,
    /// A mover without `identity.attributes`: without the new values there is nothing to move to
    /// (422).
    #[error("a mover event needs identity.attributes with the new values")]
    MoverWithoutAttributes,
}

/// Longest identity id and attribute value accepted (HR ids are short; this bounds storage).
const MAX_FIELD: usize = 512;

/// Parse a webhook body. `external_id` is the `webhook-id`; `now` is used when the body
/// gives no `effective_at`. Rotation events are the scheduler's, not a webhook's.
pub fn parse_event(
    body: &[u8],
    external_id: &str,
    now: DateTime<Utc>,
) -> Result<LifecycleEvent, EventError> {
    let parsed: WebhookBody = serde_json::from_slice(body).map_err(|e| {
        // serde_json's message names the line and column, never more of the input than a
        // field name or a type.
        EventError::Malformed(e.to_string())
    })?;
    let kind = match Trigger::parse(&parsed.kind) {
        Ok(k) if k.accepted_from_outside() => k,
        _ => return Err(EventError::UnknownType(parsed.kind)),
    };
    let id = parsed.identity.id.trim();
    if id.is_empty() {
        return Err(EventError::NoIdentity);
    }
    if id.len() > MAX_FIELD
        || parsed
            .identity
            .attributes
            .iter()
            .any(|(k, v)| k.len() > MAX_FIELD || v.len() > MAX_FIELD)
    {
        return Err(EventError::Malformed(format!(
            "identity.id and attributes must be at most {MAX_FIELD} bytes"
        )));
    }
    if kind.takes_new_attributes() && parsed.identity.attributes.is_empty() {
        return Err(EventError::MoverWithoutAttributes);
    }
    Ok(LifecycleEvent {
        source: EventSource::Webhook,
        external_id: external_id.to_string(),
        kind,
        identity: id.to_string(),
        attributes: parsed.identity.attributes,
        effective_at: parsed.effective_at.unwrap_or(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-30T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_webhook_body_becomes_an_event() {
        let e = parse_event(
            br#"{"type":"mover","identity":{"id":"E1001","attributes":{"department":"sales"}},"effective_at":"2026-12-01T09:00:00Z"}"#,
            "msg_1",
            now(),
        )
        .unwrap();
        assert_eq!(e.kind, Trigger::Mover);
        assert_eq!(e.identity, "E1001");
        assert_eq!(e.attributes["department"], "sales");
        assert_eq!(e.effective_at.to_rfc3339(), "2026-12-01T09:00:00+00:00");
        let leaver =
            parse_event(br#"{"type":"leaver","identity":{"id":"E1"}}"#, "m", now()).unwrap();
        assert_eq!(leaver.effective_at, now());
    }

    #[test]
    fn bad_bodies_are_named() {
        let parse = |b: &str| parse_event(b.as_bytes(), "m", now()).unwrap_err();
        assert!(matches!(parse("{"), EventError::Malformed(_)));
        assert!(matches!(
            parse(r#"{"type":"leaver"}"#),
            EventError::Malformed(_)
        ));
        assert_eq!(
            parse(r#"{"type":"fired","identity":{"id":"E1"}}"#),
            EventError::UnknownType("fired".into())
        );
        assert_eq!(
            parse(r#"{"type":"rotation","identity":{"id":"E1"}}"#),
            EventError::UnknownType("rotation".into())
        );
        assert_eq!(
            parse(r#"{"type":"leaver","identity":{"id":" "}}"#),
            EventError::NoIdentity
        );
        assert_eq!(
            parse(r#"{"type":"mover","identity":{"id":"E1"}}"#),
            EventError::MoverWithoutAttributes
        );
        assert!(matches!(
            parse(r#"{"type":"leaver","identity":{"id":"E1"},"extra":1}"#),
            EventError::Malformed(_)
        ));
    }
}

/// Properties of the parser over generated bodies (docs/fuzzing.md; the fuzz target
/// `webhook_body` drives the same function with coverage-guided input).
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    /// A body an HR system could send: an accepted type, an id with optional surrounding
    /// whitespace, some attributes, an optional `effective_at`.
    fn valid_body() -> impl Strategy<Value = (String, String, BTreeMap<String, String>, Option<i64>)>
    {
        (
            prop::sample::select(vec!["joiner", "mover", "leaver", "incident"]),
            "[ \t]{0,2}[A-Za-z0-9._@-]{1,40}[ \t]{0,2}",
            prop::collection::btree_map("[a-z_]{1,12}", "\\PC{0,20}", 1..4),
            prop::option::of(0i64..4_000_000_000),
        )
            .prop_map(|(kind, id, attrs, at)| (kind.to_string(), id, attrs, at))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes: an event or a typed refusal with a message, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Err(e) = parse_event(&body, "m", now()) {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        /// JSON-shaped text (the likelier input): same promise.
        #[test]
        fn json_like_text_never_panics(body in "[{}\\[\\]\":, a-z0-9_\\\\]{0,80}") {
            let _ = parse_event(body.as_bytes(), "m", now());
        }

        /// A valid body parses to exactly what was sent: the trimmed id, the attributes, the time
        /// (or `now` without one), and the webhook id as the external id.
        #[test]
        fn a_valid_body_parses_to_what_was_sent((kind, id, attrs, at) in valid_body()) {
            let mut body = json!({"type": kind, "identity": {"id": id, "attributes": attrs}});
            let at = at.and_then(|s| DateTime::from_timestamp(s, 0));
            if let Some(at) = at {
                body["effective_at"] = json!(at.to_rfc3339());
            }
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let event = parse_event(&bytes, "msg_7", now());
            prop_assert!(event.is_ok(), "{event:?}");
            let event = event.unwrap_or_else(|_| unreachable!());
            prop_assert_eq!(event.kind.as_str(), kind.as_str());
            prop_assert_eq!(event.identity.as_str(), id.trim());
            prop_assert_eq!(&event.attributes, &attrs);
            prop_assert_eq!(event.effective_at, at.unwrap_or_else(now));
            prop_assert_eq!(event.external_id.as_str(), "msg_7");
        }

        /// A type outside the four is refused by name, whatever else the body holds.
        #[test]
        fn an_unknown_type_is_named(kind in "[a-z]{1,10}") {
            prop_assume!(!["joiner", "mover", "leaver", "incident"].contains(&kind.as_str()));
            let body = json!({"type": kind, "identity": {"id": "E1"}}).to_string();
            prop_assert_eq!(
                parse_event(body.as_bytes(), "m", now()),
                Err(EventError::UnknownType(kind))
            );
        }
    }
}
