//! `closeout doctor`: is this installation ready to run its playbooks? The configuration and
//! every trigger's playbook are checked (bad input), each configured provider is reached with
//! its credentials, and asked which of the permissions its calls need — resolution, and every
//! (kind, verb) a playbook step can apply — the credentials lack. The permissions come from each
//! provider's own capability table; how each provider checks them is in its `health.rs`.

use super::base::Engine;
use super::error::EngineError;
use crate::policy::playbook::Playbook;
use crate::registry::ProviderHandle;
use crate::trigger::Trigger;
use closeout_contract::{Capabilities, Operation};
use futures::future::join_all;
use serde::Serialize;
use std::collections::BTreeMap;

/// What doctor found for one provider.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderCheck {
    /// The provider.
    pub provider: String,
    /// Whether it answered with the configured credentials.
    pub reachable: bool,
    /// Who the credentials are, when it answered.
    pub principal: Option<String>,
    /// Why it could not be reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Permissions the credentials lack, each with what needs it.
    pub missing: Vec<Need>,
    /// Permissions that could not be checked, each with the reason.
    pub unchecked: Vec<Need>,
    /// How many permissions were asked about.
    pub checked: usize,
}

/// A permission and the calls that need it.
#[derive(Debug, Clone, Serialize)]
pub struct Need {
    /// The permission in the provider's words.
    pub permission: String,
    /// `resolve`, or `PLAYBOOK step STEP: VERB KIND` for each step that needs it.
    pub needed_by: Vec<String>,
    /// Why it could not be checked (unchecked only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The whole check.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// The playbooks checked (one per trigger that has one).
    pub playbooks: Vec<String>,
    /// One entry per configured provider.
    pub providers: Vec<ProviderCheck>,
}

impl DoctorReport {
    /// Every provider answered and holds every permission asked about.
    pub fn all_good(&self) -> bool {
        self.providers
            .iter()
            .all(|p| p.reachable && p.missing.is_empty() && p.unchecked.is_empty())
    }

    /// Some provider could not be reached.
    pub fn unreachable(&self) -> bool {
        self.providers.iter().any(|p| !p.reachable)
    }

    /// For people: one block per provider.
    pub fn render_text(&self) -> String {
        let mut out = format!("playbooks: {}\n", self.playbooks.join(", "));
        for p in &self.providers {
            if !p.reachable {
                out.push_str(&format!(
                    "[{}] UNREACHABLE: {}\n",
                    p.provider,
                    p.error.as_deref().unwrap_or("no answer")
                ));
                continue;
            }
            let verdict = if p.missing.is_empty() && p.unchecked.is_empty() {
                "ok"
            } else if p.missing.is_empty() {
                "UNCHECKED permissions"
            } else {
                "MISSING permissions"
            };
            out.push_str(&format!(
                "[{}] reachable as {}; {} permissions asked: {verdict}\n",
                p.provider,
                p.principal.as_deref().unwrap_or("?"),
                p.checked
            ));
            for n in &p.missing {
                out.push_str(&format!(
                    "  missing {} (needed by {})\n",
                    n.permission,
                    n.needed_by.join("; ")
                ));
            }
            for n in &p.unchecked {
                out.push_str(&format!(
                    "  unchecked {}: {} (needed by {})\n",
                    n.permission,
                    n.reason.as_deref().unwrap_or(""),
                    n.needed_by.join("; ")
                ));
            }
        }
        out
    }
}

/// Permission → what needs it, for one provider: resolution, and every step of `books` that
/// can act on one of its kinds.
pub fn needs_of(caps: &Capabilities, books: &[Playbook]) -> BTreeMap<&'static str, Vec<String>> {
    let mut needs: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for permission in caps.permissions_for(Operation::Resolve) {
        needs.entry(permission).or_default().push("resolve".into());
    }
    for book in books {
        for (_, step) in book.steps() {
            for (provider, kind) in step.targets() {
                if provider != caps.provider {
                    continue;
                }
                let Some(verb) = caps.verb(kind, &step.action) else {
                    continue;
                };
                let operation = Operation::Act {
                    kind: caps.kind(kind).map_or("", |k| k.kind),
                    verb: verb.name,
                };
                for permission in caps.permissions_for(operation) {
                    let by = format!("{} step {}: {operation}", book.name, step.name);
                    let list = needs.entry(permission).or_default();
                    if !list.contains(&by) {
                        list.push(by);
                    }
                }
            }
        }
    }
    needs
}

async fn check(provider: &ProviderHandle, books: &[Playbook]) -> ProviderCheck {
    let needs = needs_of(provider.capabilities(), books);
    let asked: Vec<&'static str> = needs.keys().copied().collect();
    let mut check = ProviderCheck {
        provider: provider.name().to_string(),
        reachable: false,
        principal: None,
        error: None,
        missing: Vec::new(),
        unchecked: Vec::new(),
        checked: asked.len(),
    };
    match provider.health(&asked).await {
        Ok(health) => {
            check.reachable = true;
            check.principal = Some(health.principal);
            let by = |permission: &str| {
                // A provider may name a permission more precisely than asked (a Vault mount, an
                // Azure subscription): credit it to the need it starts with.
                needs
                    .iter()
                    .filter(|(p, _)| permission.starts_with(*p) || p.starts_with(permission))
                    .flat_map(|(_, by)| by.clone())
                    .collect::<Vec<_>>()
            };
            check.missing = health
                .missing
                .iter()
                .map(|p| Need {
                    permission: p.clone(),
                    needed_by: by(p),
                    reason: None,
                })
                .collect();
            check.unchecked = health
                .unchecked
                .iter()
                .map(|(p, why)| Need {
                    permission: p.clone(),
                    needed_by: by(p),
                    reason: Some(why.clone()),
                })
                .collect();
        }
        Err(e) => check.error = Some(e.to_string()),
    }
    check
}

impl Engine {
    /// Check the playbooks, reach every configured provider and ask about its permissions.
    /// Changes nothing. Bad playbooks and configuration are errors; an unreachable provider
    /// is reported, not an error.
    pub async fn doctor(&self) -> Result<DoctorReport, EngineError> {
        let mut books = Vec::new();
        for trigger in Trigger::ALL {
            let path = crate::policy::playbook::find(&self.config.playbook_dir, trigger);
            if path.exists() {
                books.push(self.playbook(trigger)?);
            }
        }
        let providers = self.providers().await?;
        let checks = join_all(providers.iter().map(|p| check(p, &books))).await;
        Ok(DoctorReport {
            playbooks: books.iter().map(|b| b.file.clone()).collect(),
            providers: checks,
        })
    }
}
