//! Closeout's provider for HashiCorp Vault and OpenBao.
//!
//! - [`VaultConfig`]: the `[providers.vault]` configuration, with a pure [`VaultConfig::validate`].
//! - [`VaultProvider::connect`]: reads the token (environment or `token_file`) and builds the HTTP
//!   client (no network call).
//! - [`VaultProvider`] implements [`closeout_contract::Provider`]: `resolve` turns an identity into
//!   findings with explained paths (see [`CAPABILITIES`]), `execute` runs one action idempotently,
//!   `live_state` and `probe` read the server for verification; `entitlement`, `grant_finding`,
//!   `unclaimed_accounts` and `nhi_findings` serve movers, joiners and reconcile.
//!
//! Module map: `config` (configuration), `client` (HTTP, gate, error classification), `model`
//! (typed API responses), `policy` (pure ACL policy parser and evaluation), `resolve`
//! (correlation and reachability), `entitlements` (grants, unclaimed entities), `tokens` (the
//! accessor scan and audit-log attribution of orphan tokens), `audit_trail` (pure reader of a
//! file audit device's log), `lease`, `pki`, `approle`, `actions` (execute, live state,
//! probes).
//!
//! Every Vault call passes through the provider's [`CallGate`]. Secret values (the token, KV
//! data) only ever travel inside [`closeout_contract::SecretValue`] or straight from one Vault
//! response into the next request.

mod actions;
mod approle;
mod audit_trail;
mod capabilities;
mod client;
mod config;
mod entitlements;
mod health;
mod lease;
mod model;
mod pki;
pub mod policy;
mod resolve;
mod tokens;

pub use capabilities::{kinds, CAPABILITIES, DESTROY_OLD_VERSIONS, PROVIDER};
pub use config::{NameRule, VaultConfig, VaultError};

use closeout_contract::{
    ActionOutcome, ActionRequest, CallGate, Capabilities, Entitlement, Finding, Health, Identity,
    Limits, ProbeOutcome, Provider, ProviderError, Resolution, ResolveContext, SecretValue, State,
    UnclaimedAccount,
};
use std::future::Future;

/// The Vault / OpenBao provider.
pub struct VaultProvider {
    config: VaultConfig,
    client: client::Client,
}

impl std::fmt::Debug for VaultProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultProvider")
            .field("address", &self.client.address())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

impl VaultProvider {
    /// Validate `config`, read the token (from `token_file`, else `VAULT_TOKEN`, else
    /// `BAO_TOKEN`) and build the client. Makes no Vault call.
    pub async fn connect(config: VaultConfig) -> Result<VaultProvider, VaultError> {
        config.validate()?;
        let address = match &config.address {
            Some(a) => a.clone(),
            None => {
                let a = env_nonempty("VAULT_ADDR")
                    .or_else(|| env_nonempty("BAO_ADDR"))
                    .ok_or(VaultError::NoAddress)?;
                config::validate_address("VAULT_ADDR", &a)?;
                a
            }
        };
        let token = match &config.token_file {
            Some(path) => {
                let text =
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|e| VaultError::TokenFile {
                            path: path.display().to_string(),
                            message: e.kind().to_string(),
                        })?;
                let first = text.lines().next().unwrap_or("").trim().to_string();
                if first.is_empty() {
                    return Err(VaultError::TokenFile {
                        path: path.display().to_string(),
                        message: "the file is empty".into(),
                    });
                }
                SecretValue::new(first)
            }
            None => SecretValue::new(
                env_nonempty("VAULT_TOKEN")
                    .or_else(|| env_nonempty("BAO_TOKEN"))
                    .ok_or(VaultError::NoToken)?
                    .trim(),
            ),
        };
        let gate = CallGate::new(limits_for(&config));
        let client = client::Client::new(address, token, config.namespace.clone(), gate)?;
        Ok(VaultProvider { config, client })
    }

    pub fn config(&self) -> &VaultConfig {
        &self.config
    }
}

fn limits_for(config: &VaultConfig) -> Limits {
    Limits::configured(config.max_in_flight, config.requests_per_second)
}

impl Provider for VaultProvider {
    type Config = VaultConfig;
    const CAPABILITIES: &'static Capabilities = &CAPABILITIES;

    fn connect(
        config: VaultConfig,
    ) -> impl Future<Output = Result<VaultProvider, VaultError>> + Send {
        VaultProvider::connect(config)
    }

    fn limits(&self) -> Limits {
        self.client.gate().limits()
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
        finding: &Finding,
    ) -> impl Future<Output = Result<Option<ProbeOutcome>, ProviderError>> + Send {
        Box::pin(self.probe_impl(finding))
    }

    fn entitlement(&self, finding: &Finding) -> Option<Entitlement> {
        entitlements::entitlement(finding)
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
        Box::pin(self.unclaimed_accounts_impl(identities))
    }

    fn nhi_findings(
        &self,
        nhi: &ResolveContext,
    ) -> impl Future<Output = Result<Vec<Finding>, ProviderError>> + Send {
        Box::pin(self.nhi_findings_impl(nhi))
    }

    fn session_carries(&self, session: &Finding, removed: &Finding) -> bool {
        entitlements::session_carries(session, removed)
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
        assert!(CAPABILITIES.verb("entity", "disable").is_some());
        assert!(CAPABILITIES.verb("token", "revoke").is_some());
        assert!(CAPABILITIES.verb("password-login", "remove").is_some());
        assert!(CAPABILITIES.verb("kv-secret", "rotate").is_some());
        assert!(CAPABILITIES.verb("group-membership", "remove").is_some());
        assert!(CAPABILITIES.verb("nhi-entity", "reassign-owner").is_some());
        assert!(CAPABILITIES.verb("policy", "remove").is_none());
        assert!(CAPABILITIES.verb("group-membership", "grant").is_some());
        assert!(CAPABILITIES.verb("entity-policy", "grant").is_some());
        assert!(CAPABILITIES.verb("entity-policy", "remove").is_some());
        assert!(CAPABILITIES.verb("inherited-group", "grant").is_none());
    }

    #[tokio::test]
    async fn connect_reads_the_token_file_and_refuses_bad_config() {
        let dir = std::env::temp_dir().join(format!("closeout-vault-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "root\n").unwrap();
        let p = VaultProvider::connect(VaultConfig {
            address: Some("http://127.0.0.1:1".into()),
            token_file: Some(file.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(p.limits().max_in_flight, 8);
        assert!(!format!("{p:?}").contains("root\""));
        let err = p.health_impl(&[]).await.unwrap_err();
        assert!(err.is_unreachable(), "{err}");
        std::fs::write(&file, "").unwrap();
        let err = VaultProvider::connect(VaultConfig {
            address: Some("http://127.0.0.1:1".into()),
            token_file: Some(file),
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let err = VaultProvider::connect(VaultConfig {
            address: Some("ftp://x".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
        let pe: ProviderError = err.into();
        assert_eq!(pe.class(), closeout_contract::ErrorClass::Permanent);
        let _ = std::fs::remove_dir_all(dir);
    }
}
