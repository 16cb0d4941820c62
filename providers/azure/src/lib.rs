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
mod capabilities;
pub mod condition;
mod config;
mod credentials;
pub mod data_plane;
pub mod directory;
pub mod entitlements;
mod health;
pub mod http;
pub mod keyvault;
mod live;
mod nhi;
pub mod rbac;
mod resolve;

pub use capabilities::{canonical_scope, kinds, CAPABILITIES, PROVIDER};
pub use config::{AzureConfig, AzureError};

use closeout_contract::{
    ActionOutcome, ActionRequest, CallGate, Capabilities, Entitlement, Finding, Health, Identity,
    Limits, ProbeOutcome, Provider, ProviderError, Resolution, ResolveContext, State,
    UnclaimedAccount,
};
use std::future::Future;

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

    pub fn config(&self) -> &AzureConfig {
        &self.config
    }
}

fn limits_for(config: &AzureConfig) -> Limits {
    Limits::configured(config.max_in_flight, config.requests_per_second)
}

impl Provider for AzureProvider {
    type Config = AzureConfig;
    const CAPABILITIES: &'static Capabilities = &CAPABILITIES;

    fn connect(
        config: AzureConfig,
    ) -> impl Future<Output = Result<AzureProvider, AzureError>> + Send {
        AzureProvider::connect(config)
    }

    fn limits(&self) -> Limits {
        limits_for(&self.config)
    }

    fn health(
        &self,
        needs: &[&'static str],
    ) -> impl Future<Output = Result<Health, ProviderError>> + Send {
        Box::pin(self.health_impl(needs))
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
