//! Playbooks: the declarative, ordered stages and steps that turn a resolved graph into actions.
//!
//! A playbook is one YAML document (format in `docs/playbooks.md`). [`parse`] reads it with line
//! and column positions and validates it — purely, without I/O — against the providers'
//! [`Capabilities`] tables: every problem found is reported as a [`Diagnostic`]
//! (`FILE:LINE:COL: message`), not just the first. A [`Playbook`] that exists is valid: its
//! providers, kinds and verbs exist, destructive verbs state a grace period and come after a
//! deactivation, no two steps of a stage contradict each other, and the last stage verifies.
//!
//! [`crate::plan`] walks a playbook's stages and steps over the findings; [`Step::selects`] is the
//! selector it uses.

mod grace;
mod validate;
mod yaml;

#[cfg(test)]
pub(crate) mod test_caps;
#[cfg(test)]
mod tests;

pub use grace::Grace;

use closeout_contract::{Capabilities, Finding, Relation, State, Verb};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The triggers a playbook may name (DESIGN.md §1).
pub const TRIGGERS: [&str; 6] = [
    "leaver",
    "mover",
    "joiner",
    "incident",
    "rotation",
    "reconcile",
];

pub use crate::yaml_doc::Diagnostic;

/// A playbook that could not be loaded: every diagnostic, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybookError {
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
    fn one(file: &Path, message: impl Into<String>) -> Self {
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

/// The `holder` selector values: whose credential a finding is (see [`closeout_contract::Holder`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HolderKind {
    Account,
    Nhi,
    Shared,
}

impl HolderKind {
    pub const ALL: [HolderKind; 3] = [HolderKind::Account, HolderKind::Nhi, HolderKind::Shared];

    pub fn as_str(self) -> &'static str {
        match self {
            HolderKind::Account => "account",
            HolderKind::Nhi => "nhi",
            HolderKind::Shared => "shared",
        }
    }

    pub fn parse(s: &str) -> Option<HolderKind> {
        HolderKind::ALL.into_iter().find(|h| h.as_str() == s)
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
    pub const ALL: [EntitlementStanding; 4] = [
        EntitlementStanding::Justified,
        EntitlementStanding::Unjustified,
        EntitlementStanding::Expired,
        EntitlementStanding::Missing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntitlementStanding::Justified => "justified",
            EntitlementStanding::Unjustified => "unjustified",
            EntitlementStanding::Expired => "expired",
            EntitlementStanding::Missing => "missing",
        }
    }

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
    pub const ALL: [Reach; 3] = [
        Reach::OnlyThroughRemoved,
        Reach::ProviderLosingAccess,
        Reach::CreatedForIdentity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reach::OnlyThroughRemoved => "only-through-removed",
            Reach::ProviderLosingAccess => "provider-losing-access",
            Reach::CreatedForIdentity => "created-for-identity",
        }
    }

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
    pub provider: Vec<String>,
    pub kind: Vec<String>,
    pub relation: Vec<Relation>,
    pub state: Vec<State>,
    pub holder: Vec<HolderKind>,
    pub entitlement: Vec<EntitlementStanding>,
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
    pub name: String,
    pub select: Selector,
    /// The verb, e.g. `deactivate`; supported by every selected (provider, kind).
    pub action: String,
    /// Act only on findings that have been in their current state at least this long.
    pub grace: Option<Grace>,
    pub requires_approval: bool,
    /// Where the step starts in the file.
    pub line: usize,
    /// The verb's definition for each (provider, kind) the step can select.
    verbs: BTreeMap<(String, String), Verb>,
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
}

/// A stage: steps that run together; a stage starts only when the one before it has finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    /// The verify stage: no steps; re-resolve from live state and probe. Always the last stage.
    pub verify: bool,
    pub steps: Vec<Step>,
    pub line: usize,
}

/// A validated playbook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playbook {
    /// The file it was read from (as given to [`parse`]).
    pub file: String,
    pub name: String,
    pub description: Option<String>,
    pub triggers: Vec<String>,
    /// Blast radius: a run that needs more actions stops for explicit confirmation.
    pub max_actions: usize,
    pub stages: Vec<Stage>,
    digest: String,
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
    pub fn handles(&self, trigger: &str) -> bool {
        self.triggers.iter().any(|t| t == trigger)
    }

    /// Every step with its stage, in order.
    pub fn steps(&self) -> impl Iterator<Item = (&Stage, &Step)> {
        self.stages
            .iter()
            .flat_map(|stage| stage.steps.iter().map(move |step| (stage, step)))
    }

    /// Load the playbook for `trigger` from `dir` (`DIR/TRIGGER.yaml`, see [`find`]) and check
    /// that it lists the trigger. The trigger must be one of [`TRIGGERS`], which also keeps it
    /// from naming a file outside `dir`.
    pub fn for_trigger(
        dir: &Path,
        trigger: &str,
        caps: &[&'static Capabilities],
    ) -> Result<Playbook, PlaybookError> {
        if !TRIGGERS.contains(&trigger) {
            return Err(PlaybookError::one(
                dir,
                format!(
                    "unknown trigger `{trigger}`; expected one of: {}",
                    TRIGGERS.join(", ")
                ),
            ));
        }
        let path = find(dir, trigger);
        let book = load(&path, caps)?;
        if !book.handles(trigger) {
            return Err(PlaybookError::one(
                &path,
                format!(
                    "playbook `{}` does not list trigger `{trigger}` in its triggers ({})",
                    book.name,
                    book.triggers.join(", ")
                ),
            ));
        }
        Ok(book)
    }
}

/// The file of the playbook for `trigger`: `DIR/TRIGGER.yaml` (`leaver` → `DIR/leaver.yaml`).
/// Callers pass a trigger from [`TRIGGERS`]; [`Playbook::for_trigger`] checks that.
pub fn find(dir: &Path, trigger: &str) -> PathBuf {
    dir.join(format!("{trigger}.yaml"))
}

/// Read and validate a playbook file.
pub fn load(path: &Path, caps: &[&'static Capabilities]) -> Result<Playbook, PlaybookError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PlaybookError::one(path, format!("cannot read playbook: {e}")))?;
    parse(&path.display().to_string(), &text, caps)
        .map_err(|diagnostics| PlaybookError { diagnostics })
}

/// Parse and validate playbook `text` (named `file_name` in diagnostics) against the providers'
/// capability tables. Pure: no I/O. Returns every diagnostic, sorted by position.
pub fn parse(
    file_name: &str,
    text: &str,
    caps: &[&'static Capabilities],
) -> Result<Playbook, Vec<Diagnostic>> {
    let mut diags = crate::yaml_doc::Diags::new(file_name);
    let raw = yaml::read(&mut diags, text);
    let book = raw.and_then(|raw| validate::validate(&mut diags, raw, caps));
    let mut list = diags.into_list();
    match book {
        Some(mut book) if list.is_empty() => {
            book.file = file_name.to_string();
            book.digest = hex::encode(Sha256::digest(text.as_bytes()));
            Ok(book)
        }
        _ => {
            if list.is_empty() {
                // Defensive: validation refused without saying why.
                list.push(Diagnostic {
                    file: file_name.to_string(),
                    line: 1,
                    column: 1,
                    message: "invalid playbook".into(),
                });
            }
            list.sort();
            list.dedup();
            Err(list)
        }
    }
}

/// Validate playbook files (for `closeout playbook check FILE...`): every diagnostic of every
/// file, in file order; empty when all are valid.
pub fn check_files<P: AsRef<Path>>(paths: &[P], caps: &[&'static Capabilities]) -> Vec<Diagnostic> {
    paths
        .iter()
        .flat_map(|p| match load(p.as_ref(), caps) {
            Ok(_) => Vec::new(),
            Err(e) => e.diagnostics,
        })
        .collect()
}
