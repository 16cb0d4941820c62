//! Reconcile: drift between the authoritative source and the providers, found without changing
//! anything (`closeout reconcile`).
//!
//! - **terminated-still-usable**: an identity the source marks terminated whose credentials or
//!   entitlements still resolve as open in a provider (read from live state, like `verify`);
//! - **orphaned-nhi**: a non-human identity whose owner (the source's `manager` column) is
//!   terminated or not in the source at all;
//! - **unclaimed-account**: a provider account no active identity in the source correlates with
//!   (each provider lists its accounts in one paged pass and applies its own matching rules);
//! - with an entitlement policy (`[policy] entitlements`), policy drift of every active identity:
//!   **unjustified-entitlement** (held, no rule justifies it), **missing-entitlement** (a rule
//!   requires it, not held), **expired-grant** (a time-bound grant past its expiry, still held).

use super::base::Engine;
use super::error::EngineError;
use crate::pipeline::entitlements::review_findings;
use crate::pipeline::spans;
use crate::pipeline::verify::OpenFinding;
use crate::policy::entitlements::Standing;
use crate::registry::Providers;
use closeout_contract::ProviderError;
use closeout_contract::{Identity, IdentityKind, IdentityStatus};
use serde::Serialize;
use tracing::Instrument;

/// A class of drift between the source and the providers (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftKind {
    /// The source says terminated, but something bound to the identity is still open.
    TerminatedStillUsable,
    /// A non-human identity whose owner is terminated, or not in the source.
    OrphanedNhi,
    /// A provider account no active identity in the source correlates with.
    UnclaimedAccount,
    /// An entitlement held that no policy rule justifies.
    UnjustifiedEntitlement,
    /// An entitlement a policy rule requires that is not held.
    MissingEntitlement,
    /// A time-bound grant past its expiry that is still held.
    ExpiredGrant,
}

impl DriftKind {
    /// The kebab-case name, as the report prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::TerminatedStillUsable => "terminated-still-usable",
            DriftKind::OrphanedNhi => "orphaned-nhi",
            DriftKind::UnclaimedAccount => "unclaimed-account",
            DriftKind::UnjustifiedEntitlement => "unjustified-entitlement",
            DriftKind::MissingEntitlement => "missing-entitlement",
            DriftKind::ExpiredGrant => "expired-grant",
        }
    }
}

/// One piece of drift.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    /// The class of drift.
    pub kind: DriftKind,
    /// Who it is about: the identity's id, or for an unclaimed account `<provider>:<resource>`.
    pub identity: String,
    /// What is wrong, in a sentence.
    pub detail: String,
    /// For terminated identities: what is still open.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub open: Vec<OpenFinding>,
}

/// What a reconcile found.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    /// Terminated identities checked against the providers.
    pub terminated_checked: usize,
    /// Every piece of drift found; empty when the source and the providers agree.
    pub drift: Vec<Drift>,
    /// Drift classes this reconcile could not look for, and why.
    pub not_checked: Vec<String>,
}

/// NHIs whose owner is terminated or unknown to the source. Pure.
pub fn orphaned_nhis(identities: &[Identity]) -> Vec<Drift> {
    let owner_of = |nhi: &Identity| -> Option<String> {
        let owner = nhi.manager.as_deref().map(str::trim).unwrap_or("");
        if owner.is_empty() {
            return Some("it has no owner in the source".into());
        }
        match identities.iter().find(|i| i.is_named_by(owner)) {
            None => Some(format!("its owner {owner} is not in the source")),
            Some(o) if o.status == IdentityStatus::Terminated => {
                Some(format!("its owner {} ({}) is terminated", o.id, o.email))
            }
            Some(_) => None,
        }
    };
    identities
        .iter()
        .filter(|i| i.kind == IdentityKind::Service && i.status != IdentityStatus::Terminated)
        .filter_map(|nhi| {
            owner_of(nhi).map(|why| Drift {
                kind: DriftKind::OrphanedNhi,
                identity: nhi.id.clone(),
                detail: format!("{} ({}): {why}", nhi.id, nhi.name),
                open: Vec::new(),
            })
        })
        .collect()
}

/// Look for drift across the source and every configured provider. Changes nothing.
pub async fn reconcile(engine: &Engine) -> Result<ReconcileReport, EngineError> {
    let identities = engine.directory.identities();
    let mut drift = Vec::new();
    let terminated: Vec<&Identity> = identities
        .iter()
        .filter(|i| i.status == IdentityStatus::Terminated)
        .collect();
    // One identity at a time: each verification already fans out across the providers under
    // their own limits.
    for identity in &terminated {
        let v = engine.verify_identity(&identity.id).await?;
        if !v.is_closed() {
            drift.push(Drift {
                kind: DriftKind::TerminatedStillUsable,
                identity: identity.id.clone(),
                detail: format!(
                    "{} ({}) is terminated but {} finding(s) are still usable",
                    identity.id,
                    identity.email,
                    v.open.len()
                ),
                open: v.open,
            });
        }
    }
    drift.extend(orphaned_nhis(identities));
    let mut not_checked = Vec::new();
    let providers = engine.providers().await?;
    let active: Vec<Identity> = identities
        .iter()
        .filter(|i| i.status == IdentityStatus::Active)
        .cloned()
        .collect();
    for provider in providers.iter() {
        match provider.unclaimed_accounts(&active).await {
            Ok(accounts) => drift.extend(accounts.into_iter().map(|a| Drift {
                kind: DriftKind::UnclaimedAccount,
                identity: format!("{}:{}", a.provider, a.resource),
                detail: format!(
                    "[{}] {}{}: {}",
                    a.provider,
                    a.display,
                    if a.enabled { "" } else { " (disabled)" },
                    a.reason
                ),
                open: Vec::new(),
            })),
            Err(e @ ProviderError::Unsupported { .. }) => {
                not_checked.push(format!("unclaimed accounts in {}: {e}", provider.name()))
            }
            Err(e) => return Err(e.into()),
        }
    }
    if engine.config.policy.entitlements.is_some() {
        drift.extend(policy_drift(engine, &providers, &active).await?);
    } else {
        not_checked.push(
            "policy drift: no entitlement policy (`[policy] entitlements`) is configured".into(),
        );
    }
    drift.sort_by(|a, b| (a.kind, &a.identity).cmp(&(b.kind, &b.identity)));
    Ok(ReconcileReport {
        terminated_checked: terminated.len(),
        drift,
        not_checked,
    })
}

/// Every active identity's live entitlements against the policy, one identity at a time (each
/// resolution already fans out across the providers under their limits).
async fn policy_drift(
    engine: &Engine,
    providers: &Providers,
    active: &[Identity],
) -> Result<Vec<Drift>, EngineError> {
    let policy = engine.policy("reconcile")?;
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for identity in active {
        let ctx = engine.context(identity).await?;
        let graph = crate::pipeline::resolve::resolve(providers, &ctx)
            .instrument(spans::phase("resolve"))
            .await?;
        let grants = {
            let id = identity.id.clone();
            engine.journal.call(move |j| j.grants_of(&id)).await?
        };
        let review = review_findings(
            providers,
            &ctx,
            &policy,
            &graph.findings,
            &grants,
            now,
            "reconcile",
        );
        let who = format!("{} ({})", identity.id, identity.email);
        for l in review.removable() {
            let (kind, detail) = match &l.standing {
                Standing::Expired { expires_at, rules } => (
                    DriftKind::ExpiredGrant,
                    format!(
                        "{who} holds {}, granted by time-bound rule {} until {expires_at}",
                        l.entitlement,
                        rules.join(", ")
                    ),
                ),
                _ => (
                    DriftKind::UnjustifiedEntitlement,
                    format!("{who} holds {}, and no rule justifies it", l.entitlement),
                ),
            };
            out.push(Drift {
                kind,
                identity: identity.id.clone(),
                detail,
                open: Vec::new(),
            });
        }
        for m in review
            .missing
            .iter()
            .filter(|m| providers.get(&m.entitlement.provider).is_some())
        {
            out.push(Drift {
                kind: DriftKind::MissingEntitlement,
                identity: identity.id.clone(),
                detail: format!(
                    "{who} lacks {}, required by rule {}",
                    m.entitlement,
                    m.rules.join(", ")
                ),
                open: Vec::new(),
            });
        }
    }
    Ok(out)
}

impl ReconcileReport {
    /// The report as `closeout reconcile` prints it.
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "reconcile: {} terminated identit{} checked, {} drift item(s)\n",
            self.terminated_checked,
            if self.terminated_checked == 1 {
                "y"
            } else {
                "ies"
            },
            self.drift.len()
        );
        for d in &self.drift {
            out.push_str(&format!("  {}: {}\n", d.kind.as_str(), d.detail));
            for f in &d.open {
                out.push_str(&format!(
                    "      [{}] {} ({})\n",
                    f.provider, f.display, f.state
                ));
            }
        }
        for n in &self.not_checked {
            out.push_str(&format!("  not checked: {n}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str, kind: IdentityKind, status: IdentityStatus, manager: &str) -> Identity {
        Identity {
            id: id.into(),
            email: format!("{}@example.com", id.to_lowercase()),
            name: id.into(),
            kind,
            status,
            manager: (!manager.is_empty()).then(|| manager.to_string()),
            department: None,
            role: None,
            location: None,
            employment_type: None,
            tags: Default::default(),
        }
    }

    #[test]
    fn nhis_of_terminated_missing_or_no_owner_are_orphans() {
        use IdentityKind::{Human, Service};
        use IdentityStatus::{Active, Terminated};
        let all = vec![
            person("E1", Human, Active, ""),
            person("E2", Human, Terminated, "E1"),
            person("S1", Service, Active, "E1"),
            person("S2", Service, Active, "E2"),
            person("S3", Service, Active, "E9"),
            person("S4", Service, Active, ""),
            person("S5", Service, Terminated, "E2"),
            person("S6", Service, Active, "e1@example.com"),
        ];
        let orphans: Vec<String> = orphaned_nhis(&all)
            .into_iter()
            .map(|d| d.identity)
            .collect();
        assert_eq!(orphans, ["S2", "S3", "S4"]);
    }
}
