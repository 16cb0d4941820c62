//! The diff of two HR exports (`closeout source diff OLD NEW`) as lifecycle events, for HR
//! systems that can only export files.
//!
//! Rules (see `docs/serve.md`, "Intake"), per identity id (exact match):
//! - **joiner**: active in NEW, and absent or `terminated` in OLD. Attributes: the identity's
//!   non-empty fields (`email`, `name`, `kind`, `manager`, `department`, `role`, `location`,
//!   `employment_type`, `tags`).
//! - **leaver**: `terminated` in NEW but not in OLD, or absent from NEW while not `terminated` in
//!   OLD (an id that disappears has left). No attributes.
//! - **mover**: active in both (or `suspended` → active) with a change of `department`, `role`,
//!   `manager`, `location` or `employment_type`. Attributes: the new values of the changed
//!   fields only; a field that became empty has the value `""`.
//! - **suspended**: DESIGN.md defines no containment for a suspension, so a change to
//!   `suspended` is reported as a warning, not an event; so are a first appearance as
//!   `terminated` and a reinstatement from `suspended`.
//!
//! Events are sorted by identity id. Each event's `external_id` hashes its kind, id, attributes
//! and the NEW file's SHA-256, so submitting the same diff twice stores nothing the second time.

use crate::event::{EventSource, LifecycleEvent};
use crate::intake::source::{Directory, SourceError};
use crate::trigger::Trigger;
use chrono::{DateTime, Utc};
use closeout_contract::{Identity, IdentityStatus};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The fields whose change makes a mover (HR export column names).
pub const MOVER_FIELDS: [&str; 5] = [
    "department",
    "role",
    "manager",
    "location",
    "employment_type",
];

/// An error diffing two HR exports.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// One of the exports is unreadable or invalid; the error names the file and the place.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The NEW export could not be read again to compute its digest (changed or removed
    /// meanwhile).
    #[error("cannot read source {}: {source}", .path.display())]
    Read {
        /// The NEW export.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One event of a diff, with what it was before (for a reader; not part of the event).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DiffEntry {
    /// The event to submit.
    pub event: LifecycleEvent,
    /// Why: `new`, `rehired`, `terminated`, `absent from NEW`, `changed`.
    pub reason: &'static str,
    /// For a mover: the old values of the changed fields (`""` when empty).
    pub previous: BTreeMap<String, String>,
}

/// A change that is reported but produces no event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiffWarning {
    /// The identity's id.
    pub identity: String,
    /// What changed and why no event was made for it (e.g. a change to `suspended`).
    pub message: String,
}

/// The events and warnings of one diff, sorted by identity id.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceDiff {
    /// SHA-256 (hex) of the NEW file, part of every event's external id.
    pub new_sha256: String,
    /// The joiner, leaver and mover events, sorted by identity id.
    pub events: Vec<DiffEntry>,
    /// Changes that make no event, sorted by identity id.
    pub warnings: Vec<DiffWarning>,
}

/// Diff the export at `source`, read as `new`, against `old`, an earlier copy of it (the
/// scheduler's snapshot; errors in it are named `<source> (last snapshot)`). Both are parsed by
/// `source`'s extension, with the same validation as every other command; the digest is that of
/// `new`, the bytes diffed.
pub fn diff_exports(
    source: &Path,
    old: &[u8],
    new: &[u8],
    now: DateTime<Utc>,
) -> Result<SourceDiff, DiffError> {
    let snapshot = PathBuf::from(format!("{} (last snapshot)", source.display()));
    let old_dir = Directory::parse_as(source, &snapshot, old)?;
    let new_dir = Directory::parse_as(source, source, new)?;
    let digest = hex::encode(Sha256::digest(new));
    Ok(diff(&old_dir, &new_dir, &digest, now))
}

/// Load both exports (same validation and errors as every other command) and diff them.
pub fn diff_files(old: &Path, new: &Path, now: DateTime<Utc>) -> Result<SourceDiff, DiffError> {
    let old_dir = Directory::load(old)?;
    let new_dir = Directory::load(new)?;
    let bytes = std::fs::read(new).map_err(|source| DiffError::Read {
        path: new.to_path_buf(),
        source,
    })?;
    let digest = hex::encode(Sha256::digest(&bytes));
    Ok(diff(&old_dir, &new_dir, &digest, now))
}

fn field(identity: &Identity, name: &str) -> Option<String> {
    match name {
        "email" => Some(identity.email.clone()),
        "name" => Some(identity.name.clone()),
        "kind" => Some(
            match identity.kind {
                closeout_contract::IdentityKind::Human => "human",
                closeout_contract::IdentityKind::Service => "service",
            }
            .to_string(),
        ),
        "manager" => identity.manager.clone(),
        "department" => identity.department.clone(),
        "role" => identity.role.clone(),
        "location" => identity.location.clone(),
        "employment_type" => identity.employment_type.clone(),
        "tags" => (!identity.tags.is_empty())
            .then(|| identity.tags.iter().cloned().collect::<Vec<_>>().join(";")),
        _ => None,
    }
}

fn status_name(status: IdentityStatus) -> &'static str {
    match status {
        IdentityStatus::Active => "active",
        IdentityStatus::Terminated => "terminated",
        IdentityStatus::Suspended => "suspended",
    }
}

/// Stable across runs and machines: the same change in the same NEW file is the same event.
fn external_id(
    kind: Trigger,
    id: &str,
    attributes: &BTreeMap<String, String>,
    new_sha256: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [kind.as_str(), id] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    for (k, v) in attributes {
        h.update(k.as_bytes());
        h.update([1u8]);
        h.update(v.as_bytes());
        h.update([0u8]);
    }
    h.update(new_sha256.as_bytes());
    format!("diff-{}", &hex::encode(h.finalize())[..32])
}

/// Diff two directories. `new_sha256` identifies the NEW export; `now` is every event's
/// `effective_at` (an export carries no effective date).
pub fn diff(old: &Directory, new: &Directory, new_sha256: &str, now: DateTime<Utc>) -> SourceDiff {
    let old_by_id: BTreeMap<&str, &Identity> = old
        .identities()
        .iter()
        .map(|i| (i.id.as_str(), i))
        .collect();
    let new_by_id: BTreeMap<&str, &Identity> = new
        .identities()
        .iter()
        .map(|i| (i.id.as_str(), i))
        .collect();
    let mut events = Vec::new();
    let mut warnings = Vec::new();
    let mut push = |kind: Trigger,
                    id: &str,
                    attributes: BTreeMap<String, String>,
                    reason: &'static str,
                    previous: BTreeMap<String, String>| {
        events.push(DiffEntry {
            event: LifecycleEvent {
                source: EventSource::HrDiff,
                external_id: external_id(kind, id, &attributes, new_sha256),
                kind,
                identity: id.to_string(),
                attributes,
                effective_at: now,
            },
            reason,
            previous,
        });
    };
    let mut warn = |id: &str, message: String| {
        warnings.push(DiffWarning {
            identity: id.to_string(),
            message,
        })
    };
    let mut ids: Vec<&str> = old_by_id.keys().chain(new_by_id.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let before = old_by_id.get(id).copied();
        let after = new_by_id.get(id).copied();
        let was = before.map(|b| b.status);
        match (before, after.map(|a| (a, a.status))) {
            (_, Some((a, IdentityStatus::Active)))
                if matches!(was, None | Some(IdentityStatus::Terminated)) =>
            {
                let attributes = [
                    "email",
                    "name",
                    "kind",
                    "manager",
                    "department",
                    "role",
                    "location",
                    "employment_type",
                    "tags",
                ]
                .into_iter()
                .filter_map(|f| field(a, f).map(|v| (f.to_string(), v)))
                .collect();
                let reason = if was.is_some() { "rehired" } else { "new" };
                push(Trigger::Joiner, id, attributes, reason, BTreeMap::new());
            }
            (Some(b), Some((a, IdentityStatus::Active))) => {
                if b.status == IdentityStatus::Suspended {
                    warn(id, "reinstated: suspended in OLD, active in NEW".into());
                }
                let mut attributes = BTreeMap::new();
                let mut previous = BTreeMap::new();
                for f in MOVER_FIELDS {
                    let (old_v, new_v) = (field(b, f), field(a, f));
                    if old_v != new_v {
                        attributes.insert(f.to_string(), new_v.unwrap_or_default());
                        previous.insert(f.to_string(), old_v.unwrap_or_default());
                    }
                }
                if !attributes.is_empty() {
                    push(Trigger::Mover, id, attributes, "changed", previous);
                }
            }
            (Some(b), Some((_, IdentityStatus::Terminated))) => {
                if b.status != IdentityStatus::Terminated {
                    push(
                        Trigger::Leaver,
                        id,
                        BTreeMap::new(),
                        "terminated",
                        BTreeMap::new(),
                    );
                }
            }
            (None, Some((_, IdentityStatus::Terminated))) => warn(
                id,
                "first seen as terminated in NEW: no event (run `closeout apply leaver` if it \
                 may still hold access)"
                    .into(),
            ),
            (b, Some((_, IdentityStatus::Suspended))) => {
                let from = b.map(|b| b.status);
                if from != Some(IdentityStatus::Suspended) {
                    warn(
                        id,
                        format!(
                            "suspended in NEW (was {}): no event, DESIGN.md defines no \
                             containment for a suspension (`closeout apply incident` contains \
                             it if needed)",
                            from.map(status_name).unwrap_or("absent")
                        ),
                    );
                }
            }
            (Some(b), None) => {
                if b.status != IdentityStatus::Terminated {
                    push(
                        Trigger::Leaver,
                        id,
                        BTreeMap::new(),
                        "absent from NEW",
                        BTreeMap::new(),
                    );
                }
            }
            // Unreachable: every id comes from one of the two directories.
            (None, None) | (None, Some((_, IdentityStatus::Active))) => {}
        }
    }
    SourceDiff {
        new_sha256: new_sha256.to_string(),
        events,
        warnings,
    }
}

impl SourceDiff {
    /// One line per event, then the warnings.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            let ev = &e.event;
            let details = match ev.kind {
                Trigger::Mover => ev
                    .attributes
                    .iter()
                    .map(|(k, v)| {
                        let was = e.previous.get(k).map(String::as_str).unwrap_or("");
                        format!("{k}={v:?} (was {was:?})")
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                Trigger::Joiner => ev
                    .attributes
                    .iter()
                    .filter(|(k, _)| MOVER_FIELDS.contains(&k.as_str()))
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => String::new(),
            };
            out.push_str(
                format!(
                    "{:<12} {:<7} ({}) {}",
                    ev.identity,
                    ev.kind.as_str(),
                    e.reason,
                    details
                )
                .trim_end(),
            );
            out.push('\n');
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {}: {}\n", w.identity, w.message));
        }
        if self.events.is_empty() {
            out.push_str("no lifecycle changes\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeout_contract::IdentityKind;

    fn person(id: &str, status: IdentityStatus, dept: &str) -> Identity {
        Identity {
            id: id.into(),
            email: format!("{}@x.io", id.to_lowercase()),
            name: id.into(),
            kind: IdentityKind::Human,
            status,
            manager: Some("E0".into()),
            department: Some(dept.into()),
            role: Some("engineer".into()),
            location: None,
            employment_type: None,
            tags: Default::default(),
        }
    }

    fn dir(people: Vec<Identity>) -> Directory {
        Directory::from_identities(people).expect("valid")
    }

    fn now() -> DateTime<Utc> {
        "2026-12-01T09:00:00Z".parse().expect("time")
    }

    use IdentityStatus::{Active, Suspended, Terminated};

    #[test]
    fn joiners_leavers_and_movers() {
        let old = dir(vec![
            person("E5", Active, "eng"),
            person("E2", Active, "eng"),
            person("E3", Active, "eng"),
            person("E4", Terminated, "eng"),
            person("E6", Terminated, "eng"),
            person("E7", Active, "eng"),
        ]);
        let mut moved = person("E3", Active, "sales");
        moved.location = Some("Lisbon".into());
        let new = dir(vec![
            person("E1", Active, "eng"),
            person("E2", Terminated, "eng"),
            moved,
            person("E4", Active, "ops"),
            person("E5", Active, "eng"),
        ]);
        let d = diff(&old, &new, "abc", now());
        let summary: Vec<(&str, Trigger, &str)> = d
            .events
            .iter()
            .map(|e| (e.event.identity.as_str(), e.event.kind, e.reason))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("E1", Trigger::Joiner, "new"),
                ("E2", Trigger::Leaver, "terminated"),
                ("E3", Trigger::Mover, "changed"),
                ("E4", Trigger::Joiner, "rehired"),
                ("E7", Trigger::Leaver, "absent from NEW"),
            ]
        );
        let mover = &d.events[2];
        assert_eq!(
            mover.event.attributes,
            BTreeMap::from([
                ("department".to_string(), "sales".to_string()),
                ("location".to_string(), "Lisbon".to_string()),
            ])
        );
        assert_eq!(mover.previous["location"], "");
        let joiner = &d.events[0].event;
        assert_eq!(joiner.attributes["email"], "e1@x.io");
        assert_eq!(joiner.attributes["department"], "eng");
        assert!(!joiner.attributes.contains_key("location"));
        assert!(d
            .events
            .iter()
            .all(|e| e.event.source == EventSource::HrDiff && e.event.effective_at == now()));
        assert!(d.warnings.is_empty());
        let text = d.render_text();
        assert!(text.contains(r#"E3           mover   (changed) department="sales" (was "eng") location="Lisbon" (was "")"#), "{text}");
    }

    #[test]
    fn a_field_that_becomes_empty_is_a_move_to_empty() {
        let old = dir(vec![person("E1", Active, "eng")]);
        let mut after = person("E1", Active, "eng");
        after.manager = None;
        let d = diff(&old, &dir(vec![after]), "abc", now());
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.events[0].event.attributes["manager"], "");
        assert_eq!(d.events[0].previous["manager"], "E0");
    }

    #[test]
    fn suspension_is_a_warning_not_an_event() {
        let old = dir(vec![
            person("E1", Active, "eng"),
            person("E2", Suspended, "eng"),
        ]);
        let new = dir(vec![
            person("E1", Suspended, "eng"),
            person("E2", Active, "eng"),
            person("E3", Terminated, "eng"),
        ]);
        let d = diff(&old, &new, "abc", now());
        assert!(d.events.is_empty(), "{:?}", d.events);
        let who: Vec<&str> = d.warnings.iter().map(|w| w.identity.as_str()).collect();
        assert_eq!(who, vec!["E1", "E2", "E3"]);
        assert!(d.warnings[0]
            .message
            .contains("suspended in NEW (was active)"));
        assert!(d.render_text().contains("no lifecycle changes"));
    }

    #[test]
    fn external_ids_are_stable_and_specific() {
        let old = dir(vec![person("E1", Active, "eng")]);
        let new = dir(vec![person("E1", Active, "sales")]);
        let a = diff(&old, &new, "sha-1", now());
        let b = diff(&old, &new, "sha-1", now() + chrono::Duration::hours(1));
        assert_eq!(a.events[0].event.external_id, b.events[0].event.external_id);
        assert!(a.events[0].event.external_id.starts_with("diff-"));
        let c = diff(&old, &new, "sha-2", now());
        assert_ne!(a.events[0].event.external_id, c.events[0].event.external_id);
        let d = diff(
            &old,
            &dir(vec![person("E1", Active, "ops")]),
            "sha-1",
            now(),
        );
        assert_ne!(a.events[0].event.external_id, d.events[0].event.external_id);
    }

    #[test]
    fn no_change_is_no_event() {
        let same = dir(vec![
            person("E1", Active, "eng"),
            person("E2", Terminated, "x"),
        ]);
        let d = diff(&same, &same, "abc", now());
        assert!(d.events.is_empty() && d.warnings.is_empty());
    }
}
