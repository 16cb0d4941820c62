//! `[[accept_unverified]]`: gaps a site accepts by name. What a provider cannot list, read or
//! evaluate is open — closure is unknown — unless the site says, with a reason, that it accepts
//! that gap. Accepted gaps are listed in every closure report; nothing is accepted silently.
//! A playbook can accept gaps too (`accept_unverified:` in its YAML), for its runs only.

use closeout_contract::Gap;
use serde::{Deserialize, Serialize};

/// One accepted gap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    /// Only this provider's gaps (any provider when absent).
    #[serde(default)]
    pub provider: Option<String>,
    /// The gap's kind as providers name it (`service-credential`, `kv-v1-mount`,
    /// `role-assignment-condition`, ...).
    pub kind: String,
    /// Only the gap on this resource (every resource when absent).
    #[serde(default)]
    pub resource: Option<String>,
    /// Why the site accepts it (shown in every report that relies on it).
    pub reason: String,
}

/// An `[[accept_unverified]]` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptanceError {
    /// `kind` is empty.
    #[error("[[accept_unverified]] #{0}: `kind` must name the gap accepted")]
    NoKind(usize),
    /// `reason` is empty: a gap is never accepted without saying why.
    #[error("[[accept_unverified]] #{0}: `reason` must say why the gap is accepted")]
    NoReason(usize),
    /// The provider is not one Closeout has.
    #[error("[[accept_unverified]] #{entry}: unknown provider {provider:?}")]
    UnknownProvider {
        /// The entry, from 1.
        entry: usize,
        /// As written.
        provider: String,
    },
}

impl Acceptance {
    /// Whether this acceptance covers `gap`.
    pub fn covers(&self, gap: &Gap) -> bool {
        self.kind == gap.kind
            && self.provider.as_ref().is_none_or(|p| *p == gap.provider)
            && self.resource.as_ref().is_none_or(|r| *r == gap.resource)
    }
}

/// Check every entry (pure).
pub fn validate(list: &[Acceptance]) -> Result<(), AcceptanceError> {
    for (i, a) in list.iter().enumerate() {
        let entry = i + 1;
        if a.kind.trim().is_empty() {
            return Err(AcceptanceError::NoKind(entry));
        }
        if a.reason.trim().is_empty() {
            return Err(AcceptanceError::NoReason(entry));
        }
        if let Some(p) = &a.provider {
            if crate::registry::capabilities(p).is_none() {
                return Err(AcceptanceError::UnknownProvider {
                    entry,
                    provider: p.clone(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(provider: &str, kind: &str, resource: &str) -> Gap {
        Gap {
            provider: provider.into(),
            kind: kind.into(),
            resource: resource.into(),
            reason: "r".into(),
            paths: vec![],
        }
    }

    #[test]
    fn an_acceptance_covers_its_kind_and_narrows_by_provider_and_resource() {
        let a = Acceptance {
            provider: None,
            kind: "service-credential".into(),
            resource: None,
            reason: "not used here".into(),
        };
        assert!(a.covers(&gap("aws", "service-credential", "alice")));
        assert!(!a.covers(&gap("aws", "kv-v1-mount", "alice")));
        let narrow = Acceptance {
            provider: Some("vault".into()),
            resource: Some("legacy/".into()),
            ..a.clone()
        };
        assert!(!narrow.covers(&gap("aws", "service-credential", "legacy/")));
        assert!(!narrow.covers(&gap("vault", "service-credential", "other/")));
        assert!(narrow.covers(&gap("vault", "service-credential", "legacy/")));
    }

    #[test]
    fn an_acceptance_needs_a_kind_and_a_reason() {
        let a = Acceptance {
            provider: None,
            kind: "x".into(),
            resource: None,
            reason: " ".into(),
        };
        assert_eq!(
            validate(std::slice::from_ref(&a)),
            Err(AcceptanceError::NoReason(1))
        );
        let a = Acceptance {
            reason: "ok".into(),
            provider: Some("gcp".into()),
            ..a
        };
        assert!(matches!(
            validate(&[a]),
            Err(AcceptanceError::UnknownProvider { entry: 1, .. })
        ));
    }
}
