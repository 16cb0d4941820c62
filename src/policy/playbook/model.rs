//! The playbook model: a validated [`Playbook`] with its stages and steps, the selectors a step
//! matches findings with, and the facts a mover or joiner plan adds. Built only by
//! `validate.rs`; read by the planner.

pub use crate::grace::Grace;
pub use crate::policy::yaml_doc::Diagnostic;
pub use closeout_contract::HolderKind;

use crate::trigger::Trigger;
use closeout_contract::{Finding, Relation, State, Verb};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// A playbook that could not be loaded: every diagnostic, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybookError {
    /// Every problem found, in file order; never empty.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for PlaybookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlaybookError {}

impl PlaybookError {
    pub(super) fn one(file: &Path, message: impl Into<String>) -> Self {
        PlaybookError {
            diagnostics: vec![Diagnostic {
                file: file.display().to_string(),
                line: 0,
                column: 0,
                message: message.into(),
            }],
        }
    }
}

/// The `entitlement` selector values: how an entitlement finding stands against the entitlement
/// policy for the identity's (new) attributes. Only movers and joiners have these facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntitlementStanding {
    /// Held, and a rule requires it.
    Justified,
    /// Held, and no rule requires it.
    Unjustified,
    /// Held under a time-bound rule whose recorded grant has expired.
    Expired,
    /// Required and not held: the finding it will be once granted.
    Missing,
}

impl EntitlementStanding {
    /// Every standing, in the order the documentation lists them.
    pub const ALL: [EntitlementStanding; 4] = [
        EntitlementStanding::Justified,
        EntitlementStanding::Unjustified,
        EntitlementStanding::Expired,
        EntitlementStanding::Missing,
    ];

    /// The kebab-case name a playbook writes in `entitlement:`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntitlementStanding::Justified => "justified",
            EntitlementStanding::Unjustified => "unjustified",
            EntitlementStanding::Expired => "expired",
            EntitlementStanding::Missing => "missing",
        }
    }

    /// The standing named by `s` (as [`EntitlementStanding::as_str`] writes it), or `None`.
    pub fn parse(s: &str) -> Option<EntitlementStanding> {
        EntitlementStanding::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
    }
}

/// The `reach` selector values: what a finding is reached through, relative to the
/// entitlements the plan removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    /// Every path to the finding passes through an entitlement the plan removes (a secret
    /// readable only through the old role, a role assumable only through it).
    OnlyThroughRemoved,
    /// The plan removes an entitlement in the finding's provider that the finding still
    /// carries, as the provider judges (sessions whose permissions were fixed when issued, or
    /// are looked up while they live: sign-in sessions, tokens; Vault: the tokens bound to the
    /// entity whose group membership or policy goes; elsewhere every session of the provider).
    ProviderLosingAccess,
    /// A non-human identity the source says was created for the identity (a service identity
    /// whose owner it is): a joiner records the identity as its owner.
    CreatedForIdentity,
}

impl Reach {
    /// Every reach, in the order the documentation lists them.
    pub const ALL: [Reach; 3] = [
        Reach::OnlyThroughRemoved,
        Reach::ProviderLosingAccess,
        Reach::CreatedForIdentity,
    ];

    /// The kebab-case name a playbook writes in `reach:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::OnlyThroughRemoved => "only-through-removed",
            Reach::ProviderLosingAccess => "provider-losing-access",
            Reach::CreatedForIdentity => "created-for-identity",
        }
    }

    /// The reach named by `s` (as [`Reach::as_str`] writes it), or `None`.
    pub fn parse(s: &str) -> Option<Reach> {
        Reach::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Facts about findings that only the run knows (from the entitlement review), for the
/// `entitlement` and `reach` selectors. Empty for leavers: those selectors then match nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectionFacts {
    /// Finding id → how the entitlement stands.
    pub entitlements: BTreeMap<String, EntitlementStanding>,
    /// Findings reached only through entitlements the plan removes.
    pub only_through_removed: BTreeSet<String>,
    /// Findings that still carry access an entitlement the plan removes gave.
    pub sessions_losing_access: BTreeSet<String>,
    /// NHI findings of the service identities created for the identity (joiners).
    pub nhis_created_for: BTreeSet<String>,
}

/// Which findings a step acts on. Every listed dimension must match; an empty `relation`,
/// `holder` or `entitlement` list matches any. `state` is matched against the finding's
/// *projected* state (its state after the plan's earlier steps) and defaults to `[active]`
/// (`[deleted]` when `entitlement` lists `missing`: a missing entitlement is not held yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// Providers the step acts in (`aws`, `vault`, ...); a finding of any other provider is not
    /// selected.
    pub provider: Vec<String>,
    /// Finding kinds it acts on (`access-key`, `session`, ...), each a kind of one of the
    /// providers; a finding of another kind is not selected.
    pub kind: Vec<String>,
    /// How the finding relates to the identity (`owns`, `member-of`, `can-assume`, ...); empty:
    /// any.
    pub relation: Vec<Relation>,
    /// The projected states selected; defaults to `[active]`.
    pub state: Vec<State>,
    /// Who holds the finding (`account`, `nhi`, `shared`); empty: any.
    pub holder: Vec<HolderKind>,
    /// How the entitlement stands against the policy (movers, joiners); empty: any.
    pub entitlement: Vec<EntitlementStanding>,
    /// What the finding is reached through, relative to the entitlements the plan removes; `None`:
    /// not a criterion.
    pub reach: Option<Reach>,
}

impl Selector {
    /// True when `finding`, in `state`, is selected.
    pub fn matches(&self, finding: &Finding, state: State, facts: &SelectionFacts) -> bool {
        self.provider.contains(&finding.provider)
            && self.kind.contains(&finding.kind)
            && (self.relation.is_empty() || self.relation.contains(&finding.relation))
            && self.state.contains(&state)
            && (self.holder.is_empty()
                || self
                    .holder
                    .iter()
                    .any(|h| h.as_str() == finding.holder.selector()))
            && (self.entitlement.is_empty()
                || facts
                    .entitlements
                    .get(&finding.id)
                    .is_some_and(|s| self.entitlement.contains(s)))
            && match self.reach {
                None => true,
                Some(Reach::OnlyThroughRemoved) => facts.only_through_removed.contains(&finding.id),
                Some(Reach::ProviderLosingAccess) => {
                    facts.sessions_losing_access.contains(&finding.id)
                }
                Some(Reach::CreatedForIdentity) => facts.nhis_created_for.contains(&finding.id),
            }
    }
}

/// One step: apply one verb to every finding the selector matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The step's name, unique in the playbook; part of each action's idempotency key.
    pub name: String,
    /// Which findings the step acts on.
    pub select: Selector,
    /// The verb, e.g. `deactivate`; supported by every selected (provider, kind).
    pub action: String,
    /// Act only on findings that have been in their current state at least this long.
    pub grace: Option<Grace>,
    /// The step's actions wait for an approval before they run (a service run stops at the stage
    /// with the run in `waiting-approval`).
    pub requires_approval: bool,
    /// How many distinct approvers must approve (`approvals: N`; 1 when only
    /// `requires_approval: true`). None of them may be who started the run.
    pub approvals: u32,
    /// Where the step starts in the file.
    pub line: usize,
    /// The verb's definition for each (provider, kind) the step can select.
    pub(super) verbs: BTreeMap<(String, String), Verb>,
}

impl Step {
    /// True when this step acts on `finding` whose projected state is `projected`: the selector
    /// matches and the finding's provider supports the step's verb on its kind.
    pub fn selects(&self, finding: &Finding, projected: State, facts: &SelectionFacts) -> bool {
        self.select.matches(finding, projected, facts) && self.verb_for(finding).is_some()
    }

    /// The provider's definition of this step's verb for the finding's kind (what state it leaves
    /// the finding in, whether it needs a grace period).
    pub fn verb_for(&self, finding: &Finding) -> Option<Verb> {
        self.verbs
            .get(&(finding.provider.clone(), finding.kind.clone()))
            .copied()
    }

    /// Every (provider, kind) the step can act on with its verb.
    pub fn targets(&self) -> impl Iterator<Item = (&str, &str)> {
        self.verbs.keys().map(|(p, k)| (p.as_str(), k.as_str()))
    }
}

/// A stage: steps that run together; a stage starts only when the one before it has finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The stage's name, unique in the playbook; `contain` marks the containment stage.
    pub name: String,
    /// The verify stage: no steps; re-resolve from live state and probe. Always the last stage.
    pub verify: bool,
    /// The steps, run concurrently within the stage. Empty for the verify stage.
    pub steps: Vec<Step>,
    /// The line where the stage starts in the file.
    pub line: usize,
}

/// A validated playbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playbook {
    /// The file it was read from (as given to [`parse`]).
    pub file: String,
    /// The playbook's `name`.
    pub name: String,
    /// Free text for a reader; not used in planning.
    pub description: Option<String>,
    /// The triggers it may run for (at least one); the playbook for trigger `t` is `<t>.yaml` and
    /// must list `t`.
    pub triggers: Vec<Trigger>,
    /// Blast radius: a run that needs more actions stops for explicit confirmation.
    pub max_actions: usize,
    /// The stages in order; the last is the verify stage.
    pub stages: Vec<Stage>,
    pub(super) digest: String,
    /// Gaps this playbook's runs accept by name, each with its reason (`accept_unverified:`).
    pub accept_unverified: Vec<crate::config::acceptance::Acceptance>,
}

impl Playbook {
    /// Hex SHA-256 of the playbook's source text: which exact playbook a run followed.
    pub fn digest(&self) -> String {
        self.digest.clone()
    }

    /// Every provider the playbook's steps name, sorted and unique (each must be configured).
    pub fn providers(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self
            .steps()
            .flat_map(|(_, step)| step.select.provider.iter())
            .collect();
        set.into_iter().cloned().collect()
    }

    /// True when the playbook lists `trigger` in its `triggers`.
    pub fn handles(&self, trigger: Trigger) -> bool {
        self.triggers.contains(&trigger)
    }

    /// Every step with its stage, in order.
    pub fn steps(&self) -> impl Iterator<Item = (&Stage, &Step)> {
        self.stages
            .iter()
            .flat_map(|stage| stage.steps.iter().map(move |step| (stage, step)))
    }
}
