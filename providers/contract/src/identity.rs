//! Identities as the authoritative source (HR export, SCIM, owner records) knows them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A person or a non-human identity, as the authoritative source describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Stable id from the source (employee id, service id).
    pub id: String,
    /// Work email (the usual correlation key).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Person or non-human identity.
    pub kind: IdentityKind,
    /// Active, terminated or suspended, as the source says.
    pub status: IdentityStatus,
    /// The manager's (or for a service, the owner's) identity id or email, as the source gives it.
    pub manager: Option<String>,
    /// Department (entitlement policies match on it).
    pub department: Option<String>,
    /// Job role (entitlement policies match on it).
    pub role: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Employment type (employee, contractor...).
    pub employment_type: Option<String>,
    /// Free-form tags such as `protected` (break-glass: never acted on without an override).
    pub tags: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
/// Person or non-human identity.
pub enum IdentityKind {
    /// A person.
    Human,
    /// A service account, workload or app (has an owner: its `manager`).
    Service,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
/// Whether the source says the identity is current.
pub enum IdentityStatus {
    /// Works here.
    Active,
    /// Left: every access must end.
    Terminated,
    /// On leave or blocked: access paused.
    Suspended,
}

impl Identity {
    /// The tag that marks a break-glass or otherwise protected identity.
    pub const PROTECTED_TAG: &'static str = "protected";

    /// Tagged `protected` (break-glass): never acted on without an audited override.
    pub fn is_protected(&self) -> bool {
        self.tags.contains(Self::PROTECTED_TAG)
    }

    /// The part of the email before `@`, lower-cased; `None` when the email has no local part.
    pub fn email_local_part(&self) -> Option<String> {
        let local = self.email.split('@').next()?.trim();
        (!local.is_empty()).then(|| local.to_ascii_lowercase())
    }

    /// True when `value` names this identity by id or by email (case-insensitive for email).
    pub fn is_named_by(&self, value: &str) -> bool {
        let value = value.trim();
        !value.is_empty() && (value == self.id || value.eq_ignore_ascii_case(&self.email))
    }

    /// The form of this identity's name that matches `value`'s form: when `value` is an email the
    /// identity's email, otherwise its id. Used to write a new owner in the same form as the old.
    pub fn name_in_form_of(&self, value: &str) -> String {
        if value.contains('@') {
            self.email.clone()
        } else {
            self.id.clone()
        }
    }
}

#[cfg(test)]
pub(crate) fn sample(id: &str, email: &str) -> Identity {
    Identity {
        id: id.into(),
        email: email.into(),
        name: id.into(),
        kind: IdentityKind::Human,
        status: IdentityStatus::Active,
        manager: None,
        department: None,
        role: None,
        location: None,
        employment_type: None,
        tags: BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_by_id_or_email_case_insensitively() {
        let alice = sample("E100", "Alice.Smith@example.com");
        assert!(alice.is_named_by("E100"));
        assert!(alice.is_named_by("alice.smith@EXAMPLE.com"));
        assert!(!alice.is_named_by("e100x"));
        assert!(!alice.is_named_by(""));
        assert_eq!(alice.email_local_part().as_deref(), Some("alice.smith"));
    }

    #[test]
    fn owner_written_in_the_form_it_was_found() {
        let bob = sample("E200", "bob@example.com");
        assert_eq!(bob.name_in_form_of("alice@example.com"), "bob@example.com");
        assert_eq!(bob.name_in_form_of("E100"), "E200");
    }
}
