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
mod client;
mod config;
mod entitlements;
mod lease;
mod model;
mod pki;
pub mod policy;
mod resolve;
mod tokens;

pub use config::{NameRule, VaultConfig, VaultError};

use closeout_contract::{
    verbs, ActionOutcome, ActionRequest, CallGate, Capabilities, Entitlement, Finding, Identity,
    KindSpec, Limits, ProbeOutcome, Provider, ProviderError, Resolution, ResolveContext,
    SecretValue, State, UnclaimedAccount,
};
use std::future::Future;

/// Destroy every KV v2 version older than the current one (after a rotation, once its grace
/// period has passed: the old values are what the person knew; keeping them for a while allows
/// a rollback).
pub const DESTROY_OLD_VERSIONS: closeout_contract::Verb = closeout_contract::Verb {
    name: "destroy-old-versions",
    leaves: State::Rotated,
    needs_grace: true,
};

/// The provider's name in findings, playbooks and configuration.
pub const PROVIDER: &str = "vault";

/// The finding kinds this provider emits.
pub mod kinds {
    /// The person's own identity entity.
    pub const ENTITY: &str = "entity";
    /// An alias of the person's entity under an auth mount.
    pub const ENTITY_ALIAS: &str = "entity-alias";
    /// Direct membership of the person's entity in an internal identity group.
    pub const GROUP_MEMBERSHIP: &str = "group-membership";
    /// Membership through a parent group (closes with the direct membership).
    pub const INHERITED_GROUP: &str = "inherited-group";
    /// An ACL policy reaching the person through the entity, a group or a token.
    pub const POLICY: &str = "policy";
    /// A policy set directly on the person's entity (`policies`): an entitlement.
    pub const ENTITY_POLICY: &str = "entity-policy";
    /// A token bound to the entity or whose metadata names the person as owner.
    pub const TOKEN: &str = "token";
    /// A userpass login of the person.
    pub const PASSWORD_LOGIN: &str = "password-login";
    /// A KV v2 secret the person owns or can read.
    pub const KV_SECRET: &str = "kv-secret";
    /// An entity (a non-human identity) whose metadata names the person as owner.
    pub const NHI_ENTITY: &str = "nhi-entity";
    /// An AppRole secret-id whose metadata names the person as owner.
    pub const APPROLE_SECRET_ID: &str = "approle-secret-id";
    /// A PKI certificate issued to the person (subject CN, SAN email or SAN URI).
    pub const PKI_CERTIFICATE: &str = "pki-certificate";
    /// A lease under one of the configured `lease_prefixes`.
    pub const LEASE: &str = "lease";
}

/// What the Vault provider resolves and which verbs it supports on each kind.
pub const CAPABILITIES: Capabilities = Capabilities {
    provider: PROVIDER,
    kinds: &[
        KindSpec {
            kind: kinds::ENTITY,
            description: "the person's identity entity; disabling it blocks every token bound to it",
            verbs: &[verbs::DISABLE],
        },
        KindSpec {
            kind: kinds::ENTITY_ALIAS,
            description: "alias of the person's entity under an auth mount (closes with the entity)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::GROUP_MEMBERSHIP,
            description: "direct membership of the person's entity in an internal identity group; entitlement target: the group name (grant adds the entity to member_entity_ids)",
            verbs: &[verbs::REMOVE, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::INHERITED_GROUP,
            description: "identity group reached through a parent-group chain (closes with the direct membership or the entity)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::POLICY,
            description: "ACL policy reaching the person from the entity, a group or a token (closes with the entity)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::ENTITY_POLICY,
            description: "policy set directly on the person's entity; entitlement target: the policy name (closes with the entity; remove/grant edit the entity's policies)",
            verbs: &[verbs::REMOVE, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::TOKEN,
            description: "token bound to the person's entity or whose metadata names the person; revoke-accessor revokes its children too",
            verbs: &[verbs::REVOKE],
        },
        KindSpec {
            kind: kinds::PASSWORD_LOGIN,
            description: "userpass login of the person under any userpass auth mount",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::KV_SECRET,
            description: "KV v2 secret the person owns (custom metadata) or can read through a policy; rotate writes a new version with new random values for every key",
            verbs: &[verbs::ROTATE, DESTROY_OLD_VERSIONS],
        },
        KindSpec {
            kind: kinds::NHI_ENTITY,
            description: "identity entity (non-human) whose metadata names the person as owner",
            verbs: &[verbs::REASSIGN_OWNER],
        },
        KindSpec {
            kind: kinds::APPROLE_SECRET_ID,
            description: "AppRole secret-id whose metadata names the person as owner; revoke destroys it by accessor, rotate issues a new one, publishes it to nhi_secret_id_path, then destroys the old one",
            verbs: &[verbs::REVOKE, verbs::ROTATE],
        },
        KindSpec {
            kind: kinds::PKI_CERTIFICATE,
            description: "certificate issued to the person by any pki mount (subject CN, SAN email or URI); revoke revokes it by serial and rotates the CRL",
            verbs: &[verbs::REVOKE],
        },
        KindSpec {
            kind: kinds::LEASE,
            description: "lease under a configured lease prefix ({id}, {email}, {local} filled in); revoke revokes it by id",
            verbs: &[verbs::REVOKE],
        },
    ],
};

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

    /// The concurrency and rate limits every call of this provider obeys.
    pub fn limits(&self) -> Limits {
        self.client.gate().limits()
    }

    pub fn config(&self) -> &VaultConfig {
        &self.config
    }

    async fn health_impl(&self) -> Result<(), ProviderError> {
        self.client
            .sdk("GET", "auth/token/lookup-self", vaultrs::token::lookup_self)
            .await?;
        Ok(())
    }
}

fn limits_for(config: &VaultConfig) -> Limits {
    Limits::configured(config.max_in_flight, config.requests_per_second)
}

impl Provider for VaultProvider {
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
        let err = p.health_impl().await.unwrap_err();
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
