//! Lifecycle events: what the HR system, the identity provider (SCIM), an export diff, the
//! scheduler or the CLI says happened to an identity. Every intake turns its input into a
//! [`LifecycleEvent`]; the durable queue stores it before it is acknowledged, and a worker runs
//! the matching playbook.

use chrono::{DateTime, Utc};
use closeout_contract::{Identity, IdentityKind, IdentityStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    Joiner,
    Mover,
    Leaver,
    Incident,
    /// Scheduled rotation (from the rotation policy).
    Rotation,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::Joiner,
        EventKind::Mover,
        EventKind::Leaver,
        EventKind::Incident,
        EventKind::Rotation,
    ];

    /// The trigger (and so the playbook) the event runs.
    pub fn trigger(self) -> &'static str {
        match self {
            EventKind::Joiner => "joiner",
            EventKind::Mover => "mover",
            EventKind::Leaver => "leaver",
            EventKind::Incident => "incident",
            EventKind::Rotation => "rotation",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.trigger() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.trigger())
    }
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventSource {
    /// `POST /v1/events`, signed per Standard Webhooks.
    Webhook,
    /// A SCIM 2.0 push from an identity provider.
    Scim,
    /// The diff of two HR exports (`closeout source diff --submit`, or the file source).
    HrDiff,
    /// The scheduler (rotation policy, reconcile).
    Scheduler,
    /// The command line.
    Cli,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Webhook => "webhook",
            EventSource::Scim => "scim",
            EventSource::HrDiff => "hr-diff",
            EventSource::Scheduler => "scheduler",
            EventSource::Cli => "cli",
        }
    }
}

/// One lifecycle event. Never carries a secret: attributes are HR facts (department, manager...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    pub source: EventSource,
    /// Unique per source: the `webhook-id`, a SCIM request's derived id, a diff's line id. A
    /// second event with the same source and id is a duplicate and is not processed again.
    pub external_id: String,
    pub kind: EventKind,
    /// The identity's id in the authoritative source.
    pub identity: String,
    /// For a mover: the new attributes (`department`, `role`, `manager`, `location`, ...); for a
    /// joiner: the identity's attributes. Keys are the HR export's column names.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// When the change takes effect (the HR system's date); a worker does not run it earlier.
    pub effective_at: DateTime<Utc>,
}

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
    #[error("the body is not valid JSON for an event: {0}")]
    Malformed(String),
    #[error("unknown event type {0:?}: expected one of joiner, mover, leaver, incident")]
    UnknownType(String),
    #[error("identity.id must not be empty")]
    NoIdentity,
    #[error("a mover event needs identity.attributes with the new values")]
    MoverWithoutAttributes,
}

/// Longest identity id and attribute value accepted (HR ids are short; this bounds storage).
const MAX_FIELD: usize = 512;

impl LifecycleEvent {
    /// Parse a webhook body. `external_id` is the `webhook-id`; `now` is used when the body
    /// gives no `effective_at`. Rotation events are the scheduler's, not a webhook's.
    pub fn from_webhook(
        body: &[u8],
        external_id: &str,
        now: DateTime<Utc>,
    ) -> Result<LifecycleEvent, EventError> {
        let parsed: WebhookBody = serde_json::from_slice(body).map_err(|e| {
            // serde_json's message names the line and column, never more of the input than a
            // field name or a type.
            EventError::Malformed(e.to_string())
        })?;
        let kind = match EventKind::parse(&parsed.kind) {
            Some(k) if k != EventKind::Rotation => k,
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
        if kind == EventKind::Mover && parsed.identity.attributes.is_empty() {
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
}

impl LifecycleEvent {
    /// The identity a joiner event describes, for a joiner the HR export does not list yet
    /// (IdPs and HR webhooks announce people before the next export). Needs an `email`
    /// attribute; the others are the export's columns. `None` for other events.
    pub fn joiner_identity(&self) -> Option<Identity> {
        if self.kind != EventKind::Joiner {
            return None;
        }
        let attr = |k: &str| {
            self.attributes
                .get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let email = attr("email")?;
        Some(Identity {
            id: self.identity.clone(),
            name: attr("name").unwrap_or_else(|| self.identity.clone()),
            email,
            kind: match attr("kind").as_deref() {
                Some("service") => IdentityKind::Service,
                _ => IdentityKind::Human,
            },
            status: IdentityStatus::Active,
            manager: attr("manager"),
            department: attr("department"),
            role: attr("role"),
            location: attr("location"),
            employment_type: attr("employment_type"),
            tags: attr("tags")
                .map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-30T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_webhook_body_becomes_an_event() {
        let e = LifecycleEvent::from_webhook(
            br#"{"type":"mover","identity":{"id":"E1001","attributes":{"department":"sales"}},"effective_at":"2026-12-01T09:00:00Z"}"#,
            "msg_1",
            now(),
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::Mover);
        assert_eq!(e.identity, "E1001");
        assert_eq!(e.attributes["department"], "sales");
        assert_eq!(e.effective_at.to_rfc3339(), "2026-12-01T09:00:00+00:00");
        let leaver = LifecycleEvent::from_webhook(
            br#"{"type":"leaver","identity":{"id":"E1"}}"#,
            "m",
            now(),
        )
        .unwrap();
        assert_eq!(leaver.effective_at, now());
    }

    #[test]
    fn a_joiner_event_describes_its_identity_and_others_do_not() {
        let mut event = LifecycleEvent {
            source: EventSource::Webhook,
            external_id: "m1".into(),
            kind: EventKind::Joiner,
            identity: "E3000".into(),
            attributes: BTreeMap::from([
                ("email".to_string(), " new@example.com ".to_string()),
                ("department".to_string(), "Finance".to_string()),
                ("tags".to_string(), "oncall, remote".to_string()),
            ]),
            effective_at: now(),
        };
        let joiner = event.joiner_identity().unwrap();
        assert_eq!(joiner.email, "new@example.com");
        assert_eq!(joiner.name, "E3000");
        assert_eq!(joiner.department.as_deref(), Some("Finance"));
        assert_eq!(joiner.tags.len(), 2);
        assert_eq!(joiner.status, IdentityStatus::Active);
        event.attributes.remove("email");
        assert!(event.joiner_identity().is_none(), "no email, no identity");
        event.kind = EventKind::Leaver;
        assert!(event.joiner_identity().is_none());
    }

    #[test]
    fn bad_bodies_are_named() {
        let parse = |b: &str| LifecycleEvent::from_webhook(b.as_bytes(), "m", now()).unwrap_err();
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
