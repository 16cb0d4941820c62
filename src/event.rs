//! Lifecycle events: what the HR system, the identity provider (SCIM), an export diff, the
//! scheduler or the CLI says happened to an identity. Every intake turns its input into a
//! [`LifecycleEvent`]; the durable queue stores it before it is acknowledged, and a worker runs
//! the matching playbook.
//!
//! Architecture invariant: layer 0, vocabulary; imports only the [`Trigger`].

use crate::trigger::Trigger;
use chrono::{DateTime, Utc};
use closeout_contract::{Identity, IdentityKind, IdentityStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// The kebab-case name, as stored in the queue and shown in the audit log and metrics.
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
    /// Which intake produced the event; with `external_id` it identifies the event for
    /// deduplication.
    pub source: EventSource,
    /// Unique per source: the `webhook-id`, a SCIM request's derived id, a diff's line id. A
    /// second event with the same source and id is a duplicate and is not processed again.
    pub external_id: String,
    /// What happened: the trigger the event runs.
    pub kind: Trigger,
    /// The identity's id in the authoritative source.
    pub identity: String,
    /// For a mover: the new attributes (`department`, `role`, `manager`, `location`, ...); for a
    /// joiner: the identity's attributes. Keys are the HR export's column names.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// When the change takes effect (the HR system's date); a worker does not run it earlier.
    pub effective_at: DateTime<Utc>,
}

impl LifecycleEvent {
    /// The identity a joiner event describes, for a joiner the HR export does not list yet
    /// (IdPs and HR webhooks announce people before the next export). Needs an `email`
    /// attribute; the others are the export's columns. `None` for other events.
    pub fn joiner_identity(&self) -> Option<Identity> {
        if !self.kind.records_nhi_owners() {
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
    use closeout_contract::IdentityStatus;

    fn now() -> DateTime<Utc> {
        "2026-11-30T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_joiner_event_describes_its_identity_and_others_do_not() {
        let mut event = LifecycleEvent {
            source: EventSource::Webhook,
            external_id: "m1".into(),
            kind: Trigger::Joiner,
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
        event.kind = Trigger::Leaver;
        assert!(event.joiner_identity().is_none());
    }
}
