//! `[[rotation.policy]]`: what scheduled rotation makes due. Each entry names a provider, one or
//! more kinds, optionally a holder, and exactly one threshold: `max_age` (the current credential
//! or version is at least that old) or `expires_within` (it expires within that). Validated at
//! load against the providers' capability tables: the kind must exist, be rotatable, and report
//! the fact its threshold needs (`Capabilities::ages`). Evaluation is in
//! `crate::policy::rotation`.

use crate::grace::{BadDuration, Grace};
use closeout_contract::rotation_strategy;
use closeout_contract::{AgeFacts, Finding, HolderKind, Strategy};
use serde::Deserialize;

/// `[rotation]`: the rotation policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// The `[[rotation.policy]]` entries, in file order.
    #[serde(default)]
    pub policy: Vec<PolicyEntry>,
    /// The `[[rotation.strategy]]` rules, in file order: the rotation strategy of secrets that
    /// do not name one themselves (tag or custom metadata `closeout:rotation`).
    #[serde(default)]
    pub strategy: Vec<StrategyRule>,
}

/// One `[[rotation.strategy]]` rule: secrets of `provider` whose name (or resource id) is
/// `name` — or starts with it, when it ends in `*` — are rotated by `strategy` unless they name
/// one themselves. The first matching rule wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyRule {
    /// The provider whose secrets it covers.
    pub provider: String,
    /// The secret's name (`payments/db`, a Vault path `kv/data/payments/db`, a Key Vault
    /// secret's name), or a prefix ending in `*`.
    pub name: String,
    /// The strategy (`random`, `template:password`, `postgresql-single-user`, ...).
    pub strategy: String,
}

/// A `[[rotation.strategy]]` rule that does not validate, named by its 1-based position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[[rotation.strategy]] #{entry}: {problem}")]
pub struct StrategyRuleError {
    /// The rule's position in the file, from 1.
    pub entry: usize,
    /// What is wrong with it.
    pub problem: String,
}

impl StrategyRule {
    fn matches(&self, f: &Finding) -> bool {
        if f.provider != self.provider {
            return false;
        }
        let names = [f.attr("name"), Some(f.resource.as_str())];
        match self.name.strip_suffix('*') {
            Some(prefix) => names.iter().flatten().any(|n| n.starts_with(prefix)),
            None => names.iter().flatten().any(|n| *n == self.name),
        }
    }
}

impl RotationConfig {
    /// Check every `[[rotation.strategy]]` rule (pure).
    pub fn validate_strategies(&self) -> Result<(), StrategyRuleError> {
        for (i, r) in self.strategy.iter().enumerate() {
            let err = |problem: String| StrategyRuleError {
                entry: i + 1,
                problem,
            };
            if crate::registry::capabilities(&r.provider).is_none() {
                return Err(err(format!(
                    "unknown provider {:?} (known: {})",
                    r.provider,
                    crate::registry::known().join(", ")
                )));
            }
            if r.name.trim().is_empty() {
                return Err(err(
                    "`name` must name a secret or a prefix ending in *".into()
                ));
            }
            Strategy::parse(&r.strategy).map_err(|e| err(e.to_string()))?;
        }
        Ok(())
    }

    /// Give each secret finding that names no strategy itself the strategy of the first rule
    /// that matches it (attribute `rotation`, source `config`).
    pub fn apply_strategies(&self, findings: &mut [Finding]) {
        for f in findings {
            // Only secrets whose value Closeout generates (AWS `secret`, Vault and Key Vault
            // `kv-secret`); a key or a credential is rotated its own way.
            let is_secret = f.kind == "secret" || f.kind == "kv-secret";
            if !is_secret || f.attr(rotation_strategy::ATTR).is_some() {
                continue;
            }
            if let Some(rule) = self.strategy.iter().find(|r| r.matches(f)) {
                f.attributes
                    .insert(rotation_strategy::ATTR.into(), rule.strategy.trim().into());
                f.attributes
                    .insert(rotation_strategy::SOURCE_ATTR.into(), "config".into());
            }
        }
    }
}

/// One `[[rotation.policy]]` entry as written; [`RotationConfig::policies`] validates it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// The provider whose findings it covers.
    pub provider: String,
    /// One kind or a list of kinds.
    pub kind: OneOrMany,
    /// Only findings of this holder (`account`, `nhi`, `shared`).
    #[serde(default)]
    pub holder: Option<String>,
    /// Due when the current version is at least this old (`90d`).
    #[serde(default)]
    pub max_age: Option<String>,
    /// Due when it expires within this (`30d`).
    #[serde(default)]
    pub expires_within: Option<String>,
}

/// `kind = "secret"` or `kind = ["kv-key", "kv-secret"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One kind.
    One(String),
    /// Several kinds.
    Many(Vec<String>),
}

impl OneOrMany {
    fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// When a policy makes a finding due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// The current version was made at least this long ago.
    MaxAge(Grace),
    /// It expires within this from now (or has expired).
    ExpiresWithin(Grace),
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The provider.
    pub provider: String,
    /// The kinds it covers.
    pub kinds: Vec<String>,
    /// Only findings of this holder, when set.
    pub holder: Option<HolderKind>,
    /// When a finding becomes due.
    pub threshold: Threshold,
}

/// What is wrong with one `[[rotation.policy]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationProblem {
    /// The provider is not one Closeout has.
    #[error("unknown provider {provider:?} (known: {known})")]
    UnknownProvider {
        /// As written.
        provider: String,
        /// Every provider Closeout has.
        known: String,
    },
    /// `kind = []`.
    #[error("kind must name at least one kind")]
    NoKind,
    /// A duration is malformed.
    #[error("{field}: {source}")]
    BadDuration {
        /// `max_age` or `expires_within`.
        field: &'static str,
        /// What is wrong with it.
        source: BadDuration,
    },
    /// Both thresholds given.
    #[error("give either max_age or expires_within, not both")]
    TwoThresholds,
    /// No threshold given.
    #[error("give one threshold: max_age = \"90d\" or expires_within = \"30d\"")]
    NoThreshold,
    /// The provider has no such kind.
    #[error("provider {provider} has no kind {kind:?}")]
    UnknownKind {
        /// The provider.
        provider: String,
        /// As written.
        kind: String,
    },
    /// The kind has no rotate verb.
    #[error("{provider} {kind} cannot be rotated (the provider has no rotate verb for it)")]
    NotRotatable {
        /// The provider.
        provider: String,
        /// The kind.
        kind: String,
    },
    /// `max_age` on a kind whose findings carry no creation time.
    #[error("{provider} {kind} does not report when it was made: use expires_within")]
    NoAge {
        /// The provider.
        provider: String,
        /// The kind.
        kind: String,
    },
    /// `expires_within` on a kind whose findings carry no expiry.
    #[error("{provider} {kind} does not report an expiry: use max_age")]
    NoExpiry {
        /// The provider.
        provider: String,
        /// The kind.
        kind: String,
    },
    /// The holder is not `account`, `nhi` or `shared`.
    #[error("unknown holder {0:?} (account, nhi or shared)")]
    UnknownHolder(String),
}

/// A `[[rotation.policy]]` entry that does not validate, named by its 1-based position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[[rotation.policy]] #{entry}: {problem}")]
pub struct RotationConfigError {
    /// The entry's position in the file, from 1.
    pub entry: usize,
    /// What is wrong with it.
    pub problem: RotationProblem,
}

/// Where findings of `kind` carry their age and expiry, from the provider's own capability
/// table; `None` when the provider reports neither.
pub fn facts_of(provider: &str, kind: &str) -> Option<&'static AgeFacts> {
    crate::registry::capabilities(provider)?.ages_of(kind)
}

impl RotationConfig {
    /// Validate every entry (pure: no provider is contacted).
    pub fn policies(&self) -> Result<Vec<Policy>, RotationConfigError> {
        self.policy
            .iter()
            .enumerate()
            .map(|(i, e)| {
                e.validate().map_err(|problem| RotationConfigError {
                    entry: i + 1,
                    problem,
                })
            })
            .collect()
    }
}

impl PolicyEntry {
    fn validate(&self) -> Result<Policy, RotationProblem> {
        let caps = crate::registry::capabilities(&self.provider).ok_or_else(|| {
            RotationProblem::UnknownProvider {
                provider: self.provider.clone(),
                known: crate::registry::known().join(", "),
            }
        })?;
        let kinds = self.kind.to_vec();
        if kinds.is_empty() {
            return Err(RotationProblem::NoKind);
        }
        let duration = |field: &'static str, text: &str| {
            Grace::parse(text).map_err(|source| RotationProblem::BadDuration { field, source })
        };
        let threshold = match (&self.max_age, &self.expires_within) {
            (Some(a), None) => Threshold::MaxAge(duration("max_age", a)?),
            (None, Some(e)) => Threshold::ExpiresWithin(duration("expires_within", e)?),
            (Some(_), Some(_)) => return Err(RotationProblem::TwoThresholds),
            (None, None) => return Err(RotationProblem::NoThreshold),
        };
        for kind in &kinds {
            let named = || (self.provider.clone(), kind.clone());
            if caps.kind(kind).is_none() {
                let (provider, kind) = named();
                return Err(RotationProblem::UnknownKind { provider, kind });
            }
            if caps.verb(kind, "rotate").is_none() {
                let (provider, kind) = named();
                return Err(RotationProblem::NotRotatable { provider, kind });
            }
            let f = facts_of(&self.provider, kind);
            match threshold {
                Threshold::MaxAge(_) if f.and_then(|f| f.created).is_none() => {
                    let (provider, kind) = named();
                    return Err(RotationProblem::NoAge { provider, kind });
                }
                Threshold::ExpiresWithin(_) if f.and_then(|f| f.expires).is_none() => {
                    let (provider, kind) = named();
                    return Err(RotationProblem::NoExpiry { provider, kind });
                }
                _ => {}
            }
        }
        let holder = match &self.holder {
            None => None,
            Some(h) => Some(
                HolderKind::parse(h).ok_or_else(|| RotationProblem::UnknownHolder(h.clone()))?,
            ),
        };
        Ok(Policy {
            provider: self.provider.clone(),
            kinds,
            holder,
            threshold,
        })
    }
}

impl Policy {
    /// Whether the policy covers `f` (provider, kind and holder).
    pub fn applies_to(&self, f: &Finding) -> bool {
        f.provider == self.provider
            && self.kinds.contains(&f.kind)
            && self.holder.is_none_or(|h| h == f.holder.kind())
    }
}
