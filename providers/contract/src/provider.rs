//! The provider contract: the trait every provider crate implements, its configuration, and
//! the few value types its methods exchange.

use crate::action::{ActionOutcome, ActionRequest};
use crate::capabilities::Capabilities;
use crate::entitlement::{Entitlement, UnclaimedAccount};
use crate::error::ProviderError;
use crate::finding::{Finding, Resolution, State};
use crate::gate::Limits;
use crate::identity::Identity;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;

/// A provider's `[providers.NAME]` configuration section: deserialized with unknown fields
/// refused, validated purely (no I/O) before anything connects.
pub trait ProviderConfig:
    DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static
{
    /// What is wrong with a section, or why the provider could not be built from it.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Check the section without I/O; the error names the field.
    fn validate(&self) -> Result<(), Self::Error>;
}

/// What a provider's health check found: who the configured credentials are, and which of the
/// permissions asked about they lack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The principal the credentials authenticate as (an ARN, a token's display name, an
    /// application id).
    pub principal: String,
    /// Permissions asked about that the principal does not hold.
    pub missing: Vec<String>,
    /// Permissions that could not be checked, each with the reason. Unknown is not "held".
    pub unchecked: Vec<(String, String)>,
}

/// What a provider needs to resolve one identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResolveContext {
    /// The identity to resolve.
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
    /// What the provider answered, in a sentence (never a secret value).
    pub detail: String,
}

/// The contract every provider implements. Implementations are registered in the closed list in
/// `closeout::registry`.
pub trait Provider: Send + Sync + Sized {
    /// Its `[providers.NAME]` configuration section.
    type Config: ProviderConfig;

    /// What the provider resolves and which verbs it supports (also known without an instance,
    /// so playbooks and policies validate before anything connects).
    const CAPABILITIES: &'static Capabilities;

    /// Build the provider from its validated configuration. Makes no provider call.
    fn connect(
        config: Self::Config,
    ) -> impl Future<Output = Result<Self, <Self::Config as ProviderConfig>::Error>> + Send;

    /// What the provider resolves and which verbs it supports.
    fn capabilities(&self) -> &'static Capabilities {
        Self::CAPABILITIES
    }

    /// The concurrency and rate limits every call of this provider obeys.
    fn limits(&self) -> Limits;

    /// Reach the provider with the configured credentials, say who they are, and which of
    /// `needs` (permission names from [`Capabilities::permissions`]) they lack or cannot be
    /// checked. An unreachable endpoint or refused credentials are errors.
    fn health(
        &self,
        needs: &[&'static str],
    ) -> impl Future<Output = Result<Health, ProviderError>> + Send;

    /// Every account, credential and entitlement bound to the identity, with explained paths.
    fn resolve(
        &self,
        ctx: &ResolveContext,
    ) -> impl Future<Output = Result<Resolution, ProviderError>> + Send;

    /// Every account of the identity here, by the rules [`Provider::resolve`] correlates with,
    /// and the sign-ins and credentials they hold (a login, an access key), each finding exactly
    /// as `resolve` builds it: same id, state and attributes. Containment acts on these while
    /// `resolve` is still finding what the accounts reach, so this reads no more than naming
    /// the accounts needs. A head start, never a substitute: `resolve` still returns all of it
    /// and reports every gap (none is reported here). `None`: the provider has no quicker answer
    /// than `resolve` (the default), and its containment waits for the whole resolution.
    fn resolve_accounts(
        &self,
        ctx: &ResolveContext,
    ) -> impl Future<Output = Result<Option<Resolution>, ProviderError>> + Send {
        let _ = ctx;
        async { Ok(None) }
    }

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
    /// puts a [`crate::verbs::GRANT`] action on it. Reads the provider for the identity's account and
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
    /// its owner by a [`crate::verbs::REASSIGN_OWNER`] action on them. Empty when the service identity
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
