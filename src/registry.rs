//! The closed list of providers: every provider Closeout knows is a variant of
//! [`ProviderHandle`], so the compiler and a reader see them all in one place.
//!
//! Adding a provider means: a crate under `providers/`, a config section in
//! [`crate::config::ProvidersConfig`], a variant here, and its `CAPABILITIES` in [`CAPABILITIES`].

use crate::config::ProvidersConfig;
use closeout_contract::{
    ActionOutcome, ActionRequest, Capabilities, Entitlement, Finding, Identity, Limits,
    ProbeOutcome, Provider, ProviderError, Resolution, ResolveContext, State, UnclaimedAccount,
};
use std::collections::BTreeMap;

/// Every provider's static capabilities, for validating playbooks without I/O.
pub const CAPABILITIES: &[&Capabilities] = &[
    &closeout_aws::CAPABILITIES,
    &closeout_vault::CAPABILITIES,
    &closeout_azure::CAPABILITIES,
];

/// The capabilities of the provider called `name`, if Closeout has such a provider.
pub fn capabilities(name: &str) -> Option<&'static Capabilities> {
    CAPABILITIES.iter().copied().find(|c| c.provider == name)
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("provider {provider}: {message}")]
    Connect {
        provider: &'static str,
        message: String,
    },
}

/// One connected provider. Variants differ in size; there is one handle per provider per
/// process, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum ProviderHandle {
    Aws(closeout_aws::AwsProvider),
    Vault(closeout_vault::VaultProvider),
    Azure(closeout_azure::AzureProvider),
}

/// Dispatch one call to whichever provider the handle holds.
macro_rules! dispatch {
    ($handle:expr, $p:ident => $call:expr) => {
        match $handle {
            ProviderHandle::Aws($p) => $call,
            ProviderHandle::Vault($p) => $call,
            ProviderHandle::Azure($p) => $call,
        }
    };
}

impl ProviderHandle {
    pub fn name(&self) -> &'static str {
        self.capabilities().provider
    }

    pub fn capabilities(&self) -> &'static Capabilities {
        dispatch!(self, p => p.capabilities())
    }

    pub fn limits(&self) -> Limits {
        dispatch!(self, p => p.limits())
    }

    pub async fn health(&self) -> Result<(), ProviderError> {
        dispatch!(self, p => p.health().await)
    }

    pub async fn resolve(&self, ctx: &ResolveContext) -> Result<Resolution, ProviderError> {
        dispatch!(self, p => p.resolve(ctx).await)
    }

    pub async fn execute(&self, action: &ActionRequest) -> Result<ActionOutcome, ProviderError> {
        dispatch!(self, p => p.execute(action).await)
    }

    pub async fn live_state(
        &self,
        finding: &Finding,
        ctx: &ResolveContext,
    ) -> Result<State, ProviderError> {
        dispatch!(self, p => p.live_state(finding, ctx).await)
    }

    pub async fn probe(&self, finding: &Finding) -> Result<Option<ProbeOutcome>, ProviderError> {
        dispatch!(self, p => p.probe(finding).await)
    }

    pub fn entitlement(&self, finding: &Finding) -> Option<Entitlement> {
        dispatch!(self, p => p.entitlement(finding))
    }

    pub async fn grant_finding(
        &self,
        ctx: &ResolveContext,
        entitlement: &Entitlement,
    ) -> Result<Finding, ProviderError> {
        dispatch!(self, p => p.grant_finding(ctx, entitlement).await)
    }

    pub async fn nhi_findings(&self, nhi: &ResolveContext) -> Result<Vec<Finding>, ProviderError> {
        dispatch!(self, p => p.nhi_findings(nhi).await)
    }

    pub fn session_carries(&self, session: &Finding, removed: &Finding) -> bool {
        dispatch!(self, p => p.session_carries(session, removed))
    }

    pub async fn unclaimed_accounts(
        &self,
        identities: &[Identity],
    ) -> Result<Vec<UnclaimedAccount>, ProviderError> {
        dispatch!(self, p => p.unclaimed_accounts(identities).await)
    }
}

/// The configured providers, by name.
pub struct Providers {
    by_name: BTreeMap<&'static str, ProviderHandle>,
}

impl Providers {
    /// Build every configured provider. No provider call is made here.
    pub async fn connect(config: &ProvidersConfig) -> Result<Providers, RegistryError> {
        let mut by_name = BTreeMap::new();
        if let Some(aws) = &config.aws {
            let provider = closeout_aws::AwsProvider::connect(aws.clone())
                .await
                .map_err(|e| RegistryError::Connect {
                    provider: "aws",
                    message: e.to_string(),
                })?;
            by_name.insert("aws", ProviderHandle::Aws(provider));
        }
        if let Some(vault) = &config.vault {
            let provider = closeout_vault::VaultProvider::connect(vault.clone())
                .await
                .map_err(|e| RegistryError::Connect {
                    provider: "vault",
                    message: e.to_string(),
                })?;
            by_name.insert("vault", ProviderHandle::Vault(provider));
        }
        if let Some(azure) = &config.azure {
            let provider = closeout_azure::AzureProvider::connect(azure.clone())
                .await
                .map_err(|e| RegistryError::Connect {
                    provider: "azure",
                    message: e.to_string(),
                })?;
            by_name.insert("azure", ProviderHandle::Azure(provider));
        }
        Ok(Providers { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&ProviderHandle> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ProviderHandle> {
        self.by_name.values()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_is_listed_once() {
        let mut names: Vec<_> = CAPABILITIES.iter().map(|c| c.provider).collect();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
        assert!(capabilities("aws").is_some());
        assert!(capabilities("vault").is_some());
        assert!(capabilities("azure").is_some());
        assert!(capabilities("gcp").is_none());
    }
}
