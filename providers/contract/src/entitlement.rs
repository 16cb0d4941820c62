//! Entitlements: the grants an entitlement policy names (DESIGN.md §1), in the same words a
//! provider uses for the live finding that holds them, so a policy and the live state compare
//! by equality.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One grant a policy can require and a live finding can be: an AWS group membership or managed
/// policy, a Vault identity-group membership or entity policy, an Azure group membership or role
/// assignment at a scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entitlement {
    /// The provider that holds the grant.
    pub provider: String,
    /// The kind of the finding that holds the grant, e.g. `group-membership`.
    pub kind: String,
    /// The provider's canonical name of what is granted (see each provider's README): an IAM
    /// group name or managed policy ARN, a Vault identity-group or policy name, an Entra group's
    /// display name, `ROLE@SCOPE` for an Azure role assignment.
    pub target: String,
}

impl Entitlement {
    /// An entitlement of `provider`'s `kind` naming `target`.
    pub fn new(
        provider: impl Into<String>,
        kind: impl Into<String>,
        target: impl Into<String>,
    ) -> Self {
        Entitlement {
            provider: provider.into(),
            kind: kind.into(),
            target: target.into(),
        }
    }
}

impl fmt::Display for Entitlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.provider, self.kind, self.target)
    }
}

/// A principal in a provider that could belong to a person, for reconcile's "accounts no active
/// identity claims".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UnclaimedAccount {
    /// The provider the account is in.
    pub provider: String,
    /// Provider-native identifier (user ARN, entity id, object id).
    pub resource: String,
    /// A name for people.
    pub display: String,
    /// Why no identity claims it, e.g. `no identity matches tag identity = bob@example.com`.
    pub reason: String,
    /// False when the provider already blocks sign-in (a disabled entity or Entra user).
    pub enabled: bool,
}
