//! Closeout's provider for Azure: Entra ID (Microsoft Graph), RBAC and Key Vault — including the
//! indirect paths (the right to add oneself an access policy or a data role).
//!
//! - [`AzureConfig`]: the `[providers.azure]` configuration, with a pure
//!   [`AzureConfig::validate`].
//! - [`AzureProvider::connect`]: reads the client secret and builds the clients (no network call).
//! - [`AzureProvider`] implements [`closeout_contract::Provider`]: `resolve` turns an identity into
//!   findings with explained paths (see [`CAPABILITIES`]), `execute` runs one action idempotently,
//!   `live_state` reads Azure again for verification.
//!
//! Module map:
//! - pure core: [`rbac`] (role definitions and assignments, wildcard matching, scope
//!   inheritance), [`condition`] (role-assignment conditions Closeout evaluates; anything else
//!   counts as allowing), [`keyvault`] (every way a person reaches a vault's objects, directly or
//!   by granting themselves access, each with its rule);
//! - I/O: [`http`] (typed ARM and Graph calls, `azure_identity` tokens, paging, throttling),
//!   [`arm`] (scope tree, role definitions, assignments, vaults), [`directory`] (the person's
//!   user, groups and owned applications), [`data_plane`] (Key Vault secrets, keys and
//!   certificates through the Azure SDK crates);
//! - the provider: `resolve` (findings), `actions` (execute), `credentials` (application
//!   credential rotation), `live` (live state for verification), [`entitlements`] (which
//!   findings are grants a policy names, the findings grants will be, the `grant` verb, users no
//!   identity claims).
//!
//! Every call passes through the provider's one [`CallGate`]. Secret values (the client secret,
//! new application credentials, rotated vault values) only travel inside
//! [`closeout_contract::SecretValue`] or straight from Azure into the next request.

mod actions;
pub mod arm;
pub mod condition;
mod config;
mod credentials;
pub mod data_plane;
pub mod directory;
pub mod entitlements;
pub mod http;
pub mod keyvault;
mod live;
mod nhi;
pub mod rbac;
mod resolve;

pub use config::{AzureConfig, AzureError};

use closeout_contract::{
    verbs, ActionOutcome, ActionRequest, CallGate, Capabilities, Entitlement, Finding, Identity,
    KindSpec, Limits, ProbeOutcome, Provider, ProviderError, Resolution, ResolveContext, State,
    UnclaimedAccount,
};
use std::future::Future;

/// The provider's name in findings, playbooks and configuration.
pub const PROVIDER: &str = "azure";

/// The finding kinds this provider emits.
pub mod kinds {
    /// The person's Entra user.
    pub const USER: &str = "user";
    /// The user's sign-in sessions (refresh tokens and session cookies).
    pub const SIGN_IN_SESSIONS: &str = "sign-in-sessions";
    /// Direct membership of the user in a group.
    pub const GROUP_MEMBERSHIP: &str = "group-membership";
    /// A group reached through nested groups (closes with the direct membership).
    pub const INHERITED_GROUP: &str = "inherited-group";
    /// A role assignment whose principal is the user.
    pub const ROLE_ASSIGNMENT: &str = "role-assignment";
    /// A role assignment whose principal is one of the user's groups (closes with the
    /// membership; the assignment itself serves the rest of the group and stays).
    pub const GROUP_ROLE_ASSIGNMENT: &str = "group-role-assignment";
    /// A Key Vault access policy naming the user.
    pub const ACCESS_POLICY: &str = "access-policy";
    /// A Key Vault access policy naming one of the user's groups (closes with the membership).
    pub const GROUP_ACCESS_POLICY: &str = "group-access-policy";
    /// An application registration the user owns (a non-human identity).
    pub const OWNED_APPLICATION: &str = "owned-application";
    /// A service principal the user owns.
    pub const OWNED_SERVICE_PRINCIPAL: &str = "owned-service-principal";
    /// A client secret of an owned application or service principal.
    pub const APP_PASSWORD: &str = "app-password";
    /// A certificate credential of an owned application or service principal.
    pub const APP_CERTIFICATE: &str = "app-certificate";
    /// A Key Vault secret the user owns (tag), can read, or can grant themselves.
    pub const KV_SECRET: &str = "kv-secret";
    /// A Key Vault key the user owns, can use, or can grant themselves.
    pub const KV_KEY: &str = "kv-key";
    /// A Key Vault certificate the user owns, can read (its private key), or can grant themselves.
    pub const KV_CERTIFICATE: &str = "kv-certificate";
}

/// What the Azure provider resolves and which verbs it supports on each kind.
pub const CAPABILITIES: Capabilities = Capabilities {
    provider: PROVIDER,
    kinds: &[
        KindSpec {
            kind: kinds::USER,
            description: "the person's Entra user; disable sets accountEnabled to false",
            verbs: &[verbs::DISABLE],
        },
        KindSpec {
            kind: kinds::SIGN_IN_SESSIONS,
            description: "the user's sign-in sessions; revoke-sessions calls revokeSignInSessions (refresh tokens and browser sessions stop working)",
            verbs: &[verbs::REVOKE_SESSIONS],
        },
        KindSpec {
            kind: kinds::GROUP_MEMBERSHIP,
            description: "direct membership of the user in an Entra group; remove deletes the membership (and with it everything the group and the groups above it grant); grant adds it (members/$ref)",
            verbs: &[verbs::REMOVE, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::INHERITED_GROUP,
            description: "group reached through nested groups (closes with the direct membership)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::ROLE_ASSIGNMENT,
            description: "Azure role assignment whose principal is the user, at any scope; remove deletes it; grant PUTs it under a name derived from user, role and scope",
            verbs: &[verbs::REMOVE, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::GROUP_ROLE_ASSIGNMENT,
            description: "Azure role assignment of one of the user's groups (closes with the membership; the group keeps it)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::ACCESS_POLICY,
            description: "Key Vault access policy naming the user; remove takes it out with accessPolicies/remove",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::GROUP_ACCESS_POLICY,
            description: "Key Vault access policy naming one of the user's groups (closes with the membership)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::OWNED_APPLICATION,
            description: "application registration the user owns; reassign-owner adds the manager as owner, then removes the user",
            verbs: &[verbs::REASSIGN_OWNER],
        },
        KindSpec {
            kind: kinds::OWNED_SERVICE_PRINCIPAL,
            description: "service principal the user owns; reassign-owner adds the manager as owner, then removes the user",
            verbs: &[verbs::REASSIGN_OWNER],
        },
        KindSpec {
            kind: kinds::APP_PASSWORD,
            description: "client secret of an owned application or service principal; rotate adds a new one, publishes it to the credential vault, tests it, then removes the old one",
            verbs: &[verbs::ROTATE],
        },
        KindSpec {
            kind: kinds::APP_CERTIFICATE,
            description: "certificate credential of an owned application or service principal; rotate adds a new rcgen certificate, publishes it (PEM with its key) to the credential vault, then removes the old one",
            verbs: &[verbs::ROTATE],
        },
        KindSpec {
            kind: kinds::KV_SECRET,
            description: "Key Vault secret the user owns (tag), can read, or can grant themselves; rotate writes a new version with a new random value and disables the old versions",
            verbs: &[verbs::ROTATE],
        },
        KindSpec {
            kind: kinds::KV_KEY,
            description: "Key Vault key the user owns, can use, or can grant themselves; rotate creates a new version of the same type and disables the old versions",
            verbs: &[verbs::ROTATE],
        },
        KindSpec {
            kind: kinds::KV_CERTIFICATE,
            description: "Key Vault certificate the user owns, can read, or can grant themselves; rotate creates a new version from its policy and disables the old versions",
            verbs: &[verbs::ROTATE],
        },
    ],
};

/// The Azure provider.
pub struct AzureProvider {
    config: AzureConfig,
    http: http::AzureHttp,
    data: data_plane::KeyVaultData,
}

impl std::fmt::Debug for AzureProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

async fn read_first_line(
    field: &'static str,
    path: &std::path::Path,
) -> Result<String, AzureError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| AzureError::File {
            field,
            path: path.display().to_string(),
            message: e.kind().to_string(),
        })?;
    let first = text.lines().next().unwrap_or("").trim().to_string();
    if first.is_empty() {
        return Err(AzureError::File {
            field,
            path: path.display().to_string(),
            message: "the file is empty".into(),
        });
    }
    Ok(first)
}

impl AzureProvider {
    /// Validate `config`, read the client secret (from `client_secret_file`, else
    /// `AZURE_CLIENT_SECRET`) and the extra root certificate, and build the clients. Makes no
    /// Azure call.
    pub async fn connect(config: AzureConfig) -> Result<AzureProvider, AzureError> {
        config.validate()?;
        let secret = match &config.client_secret_file {
            Some(path) => read_first_line("client_secret_file", path).await?,
            None => env_nonempty("AZURE_CLIENT_SECRET")
                .ok_or(AzureError::NoSecret)?
                .trim()
                .to_string(),
        };
        let ca_pem = match &config.ca_file {
            Some(path) => {
                Some(
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|e| AzureError::File {
                            field: "ca_file",
                            path: path.display().to_string(),
                            message: e.kind().to_string(),
                        })?,
                )
            }
            None => None,
        };
        let gate = CallGate::new(limits_for(&config));
        let endpoints = http::Endpoints {
            authority_host: config.authority_host.clone(),
            arm: config.arm_endpoint.clone(),
            graph: config.graph_endpoint.clone(),
            ..http::Endpoints::default()
        };
        let http = http::AzureHttp::new(
            &config.tenant_id,
            &config.client_id,
            secret.into(),
            endpoints,
            ca_pem.as_deref(),
            gate.clone(),
        )
        .map_err(AzureError::Client)?;
        let data = data_plane::KeyVaultData::new(
            http.credential(),
            data_plane::DataPlaneOptions {
                api_version: config.key_vault_api_version.clone(),
                extra_root_pem: ca_pem,
                host_overrides: config
                    .host_overrides
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
            },
            gate,
        )
        .map_err(AzureError::Client)?;
        Ok(AzureProvider { config, http, data })
    }

    /// The concurrency and rate limits every call of this provider obeys.
    pub fn limits(&self) -> Limits {
        limits_for(&self.config)
    }

    pub fn config(&self) -> &AzureConfig {
        &self.config
    }

    async fn health_impl(&self) -> Result<(), ProviderError> {
        arm::subscriptions(&self.http).await?;
        Ok(())
    }
}

fn limits_for(config: &AzureConfig) -> Limits {
    Limits::configured(config.max_in_flight, config.requests_per_second)
}

impl Provider for AzureProvider {
    fn capabilities(&self) -> &'static Capabilities {
        &CAPABILITIES
    }

    fn health(&self) -> impl Future<Output = Result<(), ProviderError>> + Send {
        Box::pin(self.health_impl())
    }

    fn resolve(
        &self,
        ctx: &ResolveContext,
    ) -> impl Future<Output = Result<Resolution, ProviderError>> + Send {
        Box::pin(self.resolve_impl(ctx))
    }

    fn execute(
        &self,
        action: &ActionRequest,
    ) -> impl Future<Output = Result<ActionOutcome, ProviderError>> + Send {
        Box::pin(self.execute_impl(action))
    }

    fn live_state(
        &self,
        finding: &Finding,
        ctx: &ResolveContext,
    ) -> impl Future<Output = Result<State, ProviderError>> + Send {
        Box::pin(self.live_state_impl(finding, ctx))
    }

    fn probe(
        &self,
        _finding: &Finding,
    ) -> impl Future<Output = Result<Option<ProbeOutcome>, ProviderError>> + Send {
        // Proving an old client secret dead is what the app-credential rotation's own test does
        // for the new one; live state (the key id gone) covers the old one. No separate probe.
        std::future::ready(Ok(None))
    }

    fn entitlement(&self, finding: &Finding) -> Option<Entitlement> {
        entitlements::entitlement_of(finding)
    }

    fn grant_finding(
        &self,
        ctx: &ResolveContext,
        entitlement: &Entitlement,
    ) -> impl Future<Output = Result<Finding, ProviderError>> + Send {
        Box::pin(self.grant_finding_impl(ctx, entitlement))
    }

    fn unclaimed_accounts(
        &self,
        identities: &[Identity],
    ) -> impl Future<Output = Result<Vec<UnclaimedAccount>, ProviderError>> + Send {
        Box::pin(self.unclaimed_impl(identities))
    }

    fn nhi_findings(
        &self,
        nhi: &ResolveContext,
    ) -> impl Future<Output = Result<Vec<Finding>, ProviderError>> + Send {
        Box::pin(self.nhi_findings_impl(nhi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_list_every_kind_once() {
        let mut kinds: Vec<_> = CAPABILITIES.kinds.iter().map(|k| k.kind).collect();
        let n = kinds.len();
        kinds.sort();
        kinds.dedup();
        assert_eq!(n, kinds.len());
        assert!(CAPABILITIES.verb("user", "disable").is_some());
        assert!(CAPABILITIES
            .verb("sign-in-sessions", "revoke-sessions")
            .is_some());
        assert!(CAPABILITIES.verb("role-assignment", "remove").is_some());
        assert!(CAPABILITIES
            .verb("group-role-assignment", "remove")
            .is_none());
        assert!(CAPABILITIES.verb("kv-secret", "rotate").is_some());
        assert!(CAPABILITIES.verb("group-membership", "grant").is_some());
        assert!(CAPABILITIES.verb("role-assignment", "grant").is_some());
        assert!(CAPABILITIES.verb("access-policy", "grant").is_none());
    }
}
