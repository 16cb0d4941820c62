//! The provider contract.

use crate::action::{ActionOutcome, ActionRequest};
use crate::entitlement::{Entitlement, UnclaimedAccount};
use crate::error::ProviderError;
use crate::finding::{Finding, Resolution, State};
use crate::identity::Identity;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::future::Future;

/// A verb a provider can apply to one kind of finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verb {
    pub name: &'static str,
    /// The state the finding is in once the verb succeeded; verify checks it.
    pub leaves: State,
    /// Destroys something that cannot be brought back (a key, a certificate): the playbook must
    /// deactivate first and state a grace period.
    pub needs_grace: bool,
}

/// The verbs shared by every provider, so playbooks read the same everywhere.
pub mod verbs {
    use super::Verb;
    use crate::finding::State;

    pub const DEACTIVATE: Verb = Verb {
        name: "deactivate",
        leaves: State::Inactive,
        needs_grace: false,
    };
    /// Delete a credential for good (after a grace period).
    pub const DELETE: Verb = Verb {
        name: "delete",
        leaves: State::Deleted,
        needs_grace: true,
    };
    /// Delete something that has no inactive state and can be recreated (a login profile, an
    /// inline policy whose document the journal keeps).
    pub const REMOVE: Verb = Verb {
        name: "remove",
        leaves: State::Deleted,
        needs_grace: false,
    };
    /// Detach a managed policy from a principal (the policy itself stays).
    pub const DETACH: Verb = Verb {
        name: "detach",
        leaves: State::Deleted,
        needs_grace: false,
    };
    pub const DISABLE: Verb = Verb {
        name: "disable",
        leaves: State::Disabled,
        needs_grace: false,
    };
    pub const ROTATE: Verb = Verb {
        name: "rotate",
        leaves: State::Rotated,
        needs_grace: false,
    };
    pub const REVOKE_SESSIONS: Verb = Verb {
        name: "revoke-sessions",
        leaves: State::Revoked,
        needs_grace: false,
    };
    pub const REVOKE: Verb = Verb {
        name: "revoke",
        leaves: State::Revoked,
        needs_grace: false,
    };
    /// Grant an entitlement the policy requires (a mover's or joiner's new access). The finding
    /// is the one [`super::Provider::grant_finding`] built; it is active once granted.
    pub const GRANT: Verb = Verb {
        name: "grant",
        leaves: State::Active,
        needs_grace: false,
    };
    pub const REASSIGN_OWNER: Verb = Verb {
        name: "reassign-owner",
        leaves: State::Reassigned,
        needs_grace: false,
    };
}

/// One kind of finding a provider resolves, and the verbs it supports on it.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    pub kind: &'static str,
    pub description: &'static str,
    pub verbs: &'static [Verb],
}

/// What a provider can resolve and do; static, so playbooks are validated without I/O.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    pub provider: &'static str,
    pub kinds: &'static [KindSpec],
}

impl Capabilities {
    pub fn kind(&self, kind: &str) -> Option<&'static KindSpec> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    pub fn verb(&self, kind: &str, verb: &str) -> Option<&'static Verb> {
        self.kind(kind)?.verbs.iter().find(|v| v.name == verb)
    }
}

/// What a provider needs to resolve one identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResolveContext {
    pub identity: Identity,
    /// The instant the identity's access ended (the first containment of this closeout). A shared
    /// secret rotated after it is [`State::Rotated`]; a role whose sessions issued before it are
    /// denied is [`State::Revoked`]. `None`: nothing counts as rotated or revoked yet.
    pub cutoff: Option<DateTime<Utc>>,
}

/// The result of actively trying an old credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    /// What was tried, e.g. `GetAccessKeyLastUsed AKIA...`.
    pub probe: String,
    /// True when the credential is proven dead.
    pub dead: bool,
    pub detail: String,
}

/// The contract every provider implements. Implementations are registered in the closed list in
/// `closeout::registry`.
pub trait Provider: Send + Sync {
    /// What the provider resolves and which verbs it supports.
    fn capabilities(&self) -> &'static Capabilities;

    /// Cheap check that the provider's endpoint answers and the credentials work.
    fn health(&self) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Every account, credential and entitlement bound to the identity, with explained paths.
    fn resolve(
        &self,
        ctx: &ResolveContext,
    ) -> impl Future<Output = Result<Resolution, ProviderError>> + Send;

    /// Execute one action idempotently: re-running a finished action returns
    /// `ActionOutcome { already_done: true, .. }` or [`ProviderError::AlreadyDone`].
    fn execute(
        &self,
        action: &ActionRequest,
    ) -> impl Future<Output = Result<ActionOutcome, ProviderError>> + Send;

    /// The live state of one finding, read from the provider (never from a cache).
    fn live_state(
        &self,
        finding: &Finding,
        ctx: &ResolveContext,
    ) -> impl Future<Output = Result<State, ProviderError>> + Send;

    /// Actively try the finding's old credential where the provider allows it; `None` when no
    /// probe exists for its kind.
    fn probe(
        &self,
        finding: &Finding,
    ) -> impl Future<Output = Result<Option<ProbeOutcome>, ProviderError>> + Send;

    /// The entitlement a live finding is, when it is a direct grant a policy can name (a direct
    /// group membership, a policy on the account, a role assignment of the account's own);
    /// `None` for everything else. Pure: reads only the finding's kind and attributes.
    fn entitlement(&self, finding: &Finding) -> Option<Entitlement> {
        let _ = finding;
        None
    }

    /// The finding `entitlement` will be once granted to the identity, in state
    /// [`State::Deleted`] (not held yet) and with the id `resolve` gives it once held; the planner
    /// puts a [`verbs::GRANT`] action on it. Reads the provider for the identity's account and
    /// the target's id; fails with [`ProviderError::Config`] when the target does not exist or
    /// the identity has no account to grant to.
    fn grant_finding(
        &self,
        ctx: &ResolveContext,
        entitlement: &Entitlement,
    ) -> impl Future<Output = Result<Finding, ProviderError>> + Send {
        let _ = ctx;
        let message = format!("cannot grant {entitlement}");
        let provider = self.capabilities().provider;
        async move { Err(ProviderError::Unsupported { provider, message }) }
    }

    /// Every human account in the provider (IAM user, Vault entity, Entra user) that none of
    /// `identities` correlates with by the provider's own matching rules, and that is not a
    /// non-human identity with an owner record. One paged listing, no per-account calls.
    fn unclaimed_accounts(
        &self,
        identities: &[Identity],
    ) -> impl Future<Output = Result<Vec<UnclaimedAccount>, ProviderError>> + Send {
        let _ = identities;
        let provider = self.capabilities().provider;
        async move {
            Err(ProviderError::Unsupported {
                provider,
                message: "listing accounts".into(),
            })
        }
    }

    /// The non-human-identity findings (kinds such as `nhi-user`, `nhi-role`, `nhi-entity`) of
    /// the principals a service identity from the source has in this provider, built as
    /// `resolve` builds them for an owner (holder [`crate::Holder::Nhi`], state active, the
    /// `owner` attribute set to the current owner record when there is one). A joiner records
    /// its owner by a [`verbs::REASSIGN_OWNER`] action on them. Empty when the service identity
    /// has no principal here.
    fn nhi_findings(
        &self,
        nhi: &ResolveContext,
    ) -> impl Future<Output = Result<Vec<Finding>, ProviderError>> + Send {
        let _ = nhi;
        async { Ok(Vec::new()) }
    }

    /// Whether `session` (a token, a sign-in session: a finding whose permissions were fixed or
    /// are looked up while it lives) still carries the access `removed`, an entitlement finding
    /// of this provider that a mover removes, gave. Pure: decided from the two findings. The
    /// default, every session of the provider, is the safe answer when the provider cannot tell.
    fn session_carries(&self, session: &Finding, removed: &Finding) -> bool {
        let _ = (session, removed);
        true
    }
}
