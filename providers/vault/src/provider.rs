//! The [`Provider`] impl: each contract method delegates to the module that implements it.
//! Nothing imports this module.

use crate::capabilities::CAPABILITIES;
use crate::config::{VaultConfig, VaultError};
use crate::entitlements;
use crate::server::VaultProvider;
use closeout_contract::{
    ActionOutcome, ActionRequest, Capabilities, Entitlement, Finding, Health, Identity, Limits,
    ProbeOutcome, Provider, ProviderError, Resolution, ResolveContext, State, UnclaimedAccount,
};
use std::future::Future;

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

    fn resolve_accounts(
        &self,
        ctx: &ResolveContext,
    ) -> impl Future<Output = Result<Option<Resolution>, ProviderError>> + Send {
        Box::pin(self.resolve_accounts_impl(ctx))
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
        assert_eq!(p.limits().max_in_flight, 32);
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
