//! Findings: the credentials and entitlements bound to an identity, each with the paths that
//! explain why it is bound.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// How a finding is bound to the identity (the last edge of its path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relation {
    /// The identity's own credential or account, or a resource whose owner record names it.
    Owns,
    /// Something the identity created (e.g. a Vault orphan token minted by its token).
    Created,
    /// A membership: group, identity group.
    MemberOf,
    /// A role the identity can assume.
    CanAssume,
    /// A principal the identity can act as without assuming it: it can create credentials for
    /// it (an access key, a password, a secret-id, an application secret), owns it, or can pass
    /// it to compute it controls. That principal's reach is the identity's.
    CanActAs,
    /// A secret or key the identity can read.
    CanRead,
    /// A secret the identity can grant itself access to (an indirect path).
    CanGrantSelf,
}

impl Relation {
    /// Every relation.
    pub const ALL: [Relation; 7] = [
        Relation::Owns,
        Relation::Created,
        Relation::MemberOf,
        Relation::CanAssume,
        Relation::CanActAs,
        Relation::CanRead,
        Relation::CanGrantSelf,
    ];

    /// The relation as paths and playbooks write it (`can-read`).
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Owns => "owns",
            Relation::Created => "created",
            Relation::MemberOf => "member-of",
            Relation::CanAssume => "can-assume",
            Relation::CanActAs => "can-act-as",
            Relation::CanRead => "can-read",
            Relation::CanGrantSelf => "can-grant-self",
        }
    }

    /// The relation written `s`.
    pub fn parse(s: &str) -> Option<Relation> {
        Relation::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The live state of a finding. Only [`State::Active`] (and [`State::Unknown`]) is *open*: it
/// still authenticates, grants, or exposes something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Usable: a credential that authenticates, a grant in force, a secret not rotated since the
    /// identity lost access, a role whose sessions were not revoked.
    Active,
    /// Deactivated but still present (an inactive access key awaiting deletion).
    Inactive,
    /// Gone from the provider.
    Deleted,
    /// A shared secret or key whose current version postdates the cutoff.
    Rotated,
    /// Sessions cut off (a role with a session-revocation deny), a certificate revoked.
    Revoked,
    /// A disabled account or entity.
    Disabled,
    /// An owned non-human identity whose owner record now names someone else.
    Reassigned,
    /// The provider could not tell; counted as open.
    Unknown,
}

impl State {
    /// Every state.
    pub const ALL: [State; 8] = [
        State::Active,
        State::Inactive,
        State::Deleted,
        State::Rotated,
        State::Revoked,
        State::Disabled,
        State::Reassigned,
        State::Unknown,
    ];

    /// Open: still authenticates, grants or exposes something — or unknown.
    pub fn is_open(self) -> bool {
        matches!(self, State::Active | State::Unknown)
    }

    /// The state as findings and playbooks write it (`inactive`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Inactive => "inactive",
            State::Deleted => "deleted",
            State::Rotated => "rotated",
            State::Revoked => "revoked",
            State::Disabled => "disabled",
            State::Reassigned => "reassigned",
            State::Unknown => "unknown",
        }
    }

    /// The state written `s`.
    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose credential a finding is: the identity's own account, or a non-human identity it owns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type", content = "name")]
pub enum Holder {
    /// The identity's own account in the provider.
    Account,
    /// A non-human identity (service user, role, app) the identity owns; the NHI's name.
    Nhi(String),
    /// Shared: a secret or role reachable by the identity but held by nobody in particular.
    Shared,
}

impl Holder {
    /// The holder's kind as selectors and rotation policies name it.
    pub fn selector(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The holder without the NHI's name.
    pub fn kind(&self) -> HolderKind {
        match self {
            Holder::Account => HolderKind::Account,
            Holder::Nhi(_) => HolderKind::Nhi,
            Holder::Shared => HolderKind::Shared,
        }
    }
}

/// The kind of a [`Holder`], as playbook selectors and rotation policies write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HolderKind {
    /// The identity's own account.
    Account,
    /// A non-human identity the identity owns.
    Nhi,
    /// Shared by nobody in particular.
    Shared,
}

impl HolderKind {
    /// Every holder kind.
    pub const ALL: [HolderKind; 3] = [HolderKind::Account, HolderKind::Nhi, HolderKind::Shared];

    /// `account`, `nhi` or `shared`.
    pub fn as_str(self) -> &'static str {
        match self {
            HolderKind::Account => "account",
            HolderKind::Nhi => "nhi",
            HolderKind::Shared => "shared",
        }
    }

    /// The holder kind written `s`.
    pub fn parse(s: &str) -> Option<HolderKind> {
        HolderKind::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

/// One edge of a path: `-relation-> node`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PathStep {
    /// The edge label: one of the [`Relation`]s, or a provider-specific word such as `account`,
    /// `has`, `attached`, `inline`, `trusts`.
    pub edge: String,
    /// What the edge leads to, e.g. `group devs`, `role arn:aws:iam::1:role/x`.
    pub node: String,
}

/// The chain of bindings that explains one finding, from the identity to the finding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Path {
    /// The edges from the identity to the finding, in order.
    pub steps: Vec<PathStep>,
}

impl Path {
    /// An empty path (the identity itself).
    pub fn new() -> Self {
        Path { steps: Vec::new() }
    }

    /// This path extended by one edge.
    pub fn then(&self, edge: impl Into<String>, node: impl Into<String>) -> Path {
        let mut steps = self.steps.clone();
        steps.push(PathStep {
            edge: edge.into(),
            node: node.into(),
        });
        Path { steps }
    }

    /// `alice -member-of-> group devs -can-read-> secret db`, with `origin` as the first node.
    pub fn render(&self, origin: &str) -> String {
        let mut out = origin.to_string();
        for step in &self.steps {
            out.push_str(&format!(" -{}-> {}", step.edge, step.node));
        }
        out
    }
}

impl Default for Path {
    fn default() -> Self {
        Self::new()
    }
}

/// A credential or entitlement bound to the identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable and unique across providers, e.g. `aws:access-key:AKIA...`. Used in idempotency keys.
    pub id: String,
    /// The provider that resolved it.
    pub provider: String,
    /// Provider-defined kind, one of the provider's [`crate::Capabilities`] kinds.
    pub kind: String,
    /// How it is bound to the identity (the last edge of its paths).
    pub relation: Relation,
    /// Whose credential it is.
    pub holder: Holder,
    /// Provider-native identifier (ARN, key id, accessor).
    pub resource: String,
    /// Short human name, e.g. `access key AKIA... of user alice`.
    pub display: String,
    /// Its live state when resolved.
    pub state: State,
    /// Every path that binds it, sorted; at least one.
    pub paths: Vec<Path>,
    /// Non-secret facts: created, last used, expiry, owner tag, ... Never a secret value.
    pub attributes: BTreeMap<String, String>,
}

/// The value of a finding's `expires` attribute when the credential has no expiry (an absent
/// attribute means the provider does not say).
pub const NEVER_EXPIRES: &str = "never";

impl Finding {
    /// The attribute `key`, if set.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The identity's principal inside one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The provider.
    pub provider: String,
    /// Provider-native identifier (user ARN, entity id, object id).
    pub resource: String,
    /// A name for people.
    pub display: String,
    /// The correlation rule that matched, e.g. `tag identity = alice@example.com`.
    pub matched_by: String,
}

/// Everything one provider knows about one identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// The identity's accounts.
    pub accounts: Vec<Account>,
    /// Everything bound to them, with paths.
    pub findings: Vec<Finding>,
    /// Notes for people that do not affect closure (a listing that was paged, a default used).
    pub warnings: Vec<String>,
    /// What the provider could not list, read or evaluate for this identity. Each is open
    /// (closure is unknown, so not closed) unless the site accepted that gap by name.
    #[serde(default)]
    pub gaps: Vec<Gap>,
    /// Scopes the identity can grant itself everything in (every secret of an account, every
    /// object of a vault): the plan says so in one line each.
    #[serde(default)]
    pub exposures: Vec<Exposure>,
}

/// Something a provider could not list, read or evaluate: unknown, and so open.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Gap {
    /// The provider.
    pub provider: String,
    /// What is unknown, named so a site can accept it (`accept_unverified`): a finding kind
    /// whose listing failed (`service-credential`), or a check (`kv-v1-mount`,
    /// `role-assignment-condition`, `policy-document`).
    pub kind: String,
    /// Which resource (a user, a mount, an assignment id); empty when the whole kind.
    pub resource: String,
    /// Why it is unknown, in a sentence (never a secret value).
    pub reason: String,
    /// How the identity is connected to it, when known.
    pub paths: Vec<Path>,
}

/// A scope the identity can grant itself everything in, and how.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Exposure {
    /// The provider.
    pub provider: String,
    /// The scope (`account 123456789012`, `vault kv-pay`, `tenant`).
    pub scope: String,
    /// What the identity can do there, in a sentence.
    pub what: String,
    /// The paths that give it.
    pub paths: Vec<Path>,
}

impl Resolution {
    /// Take in everything `other` found (a part resolved on its own, concurrently with the
    /// rest); [`Resolution::normalize`] then merges findings seen by both.
    pub fn absorb(&mut self, other: Resolution) {
        self.accounts.extend(other.accounts);
        self.findings.extend(other.findings);
        self.warnings.extend(other.warnings);
        self.gaps.extend(other.gaps);
        self.exposures.extend(other.exposures);
    }

    /// Merge findings with the same id (their paths are unioned), then sort everything, so the
    /// result never depends on the order in which the provider listed things.
    pub fn normalize(&mut self) {
        let mut by_id: BTreeMap<String, Finding> = BTreeMap::new();
        for f in self.findings.drain(..) {
            match by_id.get_mut(&f.id) {
                Some(existing) => {
                    existing.paths.extend(f.paths);
                    // The strongest relation wins: owning beats reading.
                    existing.relation = existing.relation.min(f.relation);
                    for (k, v) in f.attributes {
                        existing.attributes.entry(k).or_insert(v);
                    }
                }
                None => {
                    by_id.insert(f.id.clone(), f);
                }
            }
        }
        self.findings = by_id
            .into_values()
            .map(|mut f| {
                f.paths.sort();
                f.paths.dedup();
                f
            })
            .collect();
        self.accounts.sort_by(|a, b| a.resource.cmp(&b.resource));
        self.accounts.dedup();
        self.warnings.sort();
        self.warnings.dedup();
        self.gaps.sort();
        self.gaps.dedup();
        self.exposures.sort();
        self.exposures.dedup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, relation: Relation, via: &str) -> Finding {
        Finding {
            id: id.into(),
            provider: "test".into(),
            kind: "secret".into(),
            relation,
            holder: Holder::Shared,
            resource: id.into(),
            display: id.into(),
            state: State::Active,
            paths: vec![Path::new().then("member-of", via)],
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn normalize_merges_paths_and_ignores_listing_order() {
        let mut a = Resolution {
            findings: vec![
                finding("s2", Relation::CanRead, "group b"),
                finding("s1", Relation::CanRead, "group a"),
                finding("s1", Relation::Owns, "group c"),
            ],
            ..Default::default()
        };
        let mut b = Resolution {
            findings: vec![
                finding("s1", Relation::Owns, "group c"),
                finding("s1", Relation::CanRead, "group a"),
                finding("s2", Relation::CanRead, "group b"),
            ],
            ..Default::default()
        };
        a.normalize();
        b.normalize();
        assert_eq!(a, b);
        assert_eq!(a.findings.len(), 2);
        assert_eq!(a.findings[0].paths.len(), 2);
        assert_eq!(a.findings[0].relation, Relation::Owns);
    }

    #[test]
    fn path_renders_as_chain() {
        let p = Path::new()
            .then("member-of", "group devs")
            .then("can-read", "secret db");
        assert_eq!(
            p.render("alice"),
            "alice -member-of-> group devs -can-read-> secret db"
        );
    }

    #[test]
    fn only_active_and_unknown_are_open() {
        for s in State::ALL {
            assert_eq!(s.is_open(), matches!(s, State::Active | State::Unknown));
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        for r in Relation::ALL {
            assert_eq!(Relation::parse(r.as_str()), Some(r));
        }
    }
}
