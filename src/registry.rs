//! The closed list of providers. Every provider Closeout knows is one line of the
//! [`providers!`] invocation below; from that line come its `[providers.NAME]` configuration
//! section ([`ProvidersConfig`]), its variant of [`ProviderHandle`], its static
//! [`Capabilities`] in [`CAPABILITIES`], and its construction in [`Providers::connect`].
//!
//! Adding a provider: a crate under `providers/` implementing
//! [`closeout_contract::Provider`] (its config type, capability tables and health check live
//! there), one dependency line in `Cargo.toml`, and one line here. Nothing else in `src/`
//! names a provider.
//!
//! Architecture invariant: this module imports nothing from the rest of the crate; every layer
//! may use it.

use closeout_contract::{
    ActionOutcome, ActionRequest, Capabilities, Entitlement, Finding, Health, Identity, Limits,
    ProbeOutcome, Provider, ProviderConfig, ProviderError, Resolution, ResolveContext, State,
    UnclaimedAccount,
};
use std::collections::BTreeMap;

/// Why the configured providers could not be built or validated.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A `[providers.NAME]` section is invalid, or the provider could not be built from it.
    #[error("[providers.{provider}]: {source}")]
    Provider {
        /// The provider's name.
        provider: &'static str,
        /// The provider crate's own error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

macro_rules! providers {
    ($( $name:ident => $variant:ident($provider:ty) ),+ $(,)?) => {
        /// One optional section per provider (`[providers.NAME]`); a provider is enabled when
        /// its section is present. Each section is the provider crate's own config type.
        #[derive(Debug, Clone, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct ProvidersConfig {
            $(
                #[doc = concat!("`[providers.", stringify!($name), "]`.")]
                pub $name: Option<<$provider as Provider>::Config>,
            )+
        }

        impl ProvidersConfig {
            /// Names of the configured providers, in the list's order.
            pub fn configured(&self) -> Vec<&'static str> {
                let mut names = Vec::new();
                $( if self.$name.is_some() { names.push(stringify!($name)); } )+
                names
            }

            /// Validate every configured section (pure; no I/O).
            pub fn validate(&self) -> Result<(), RegistryError> {
                $(
                    if let Some(config) = &self.$name {
                        ProviderConfig::validate(config).map_err(|e| RegistryError::Provider {
                            provider: stringify!($name),
                            source: Box::new(e),
                        })?;
                    }
                )+
                Ok(())
            }
        }

        /// The name of each provider's configuration section, in the list's order.
        #[cfg(test)]
        const SECTIONS: &[&str] = &[ $( stringify!($name), )+ ];

        /// Every provider's static capabilities, for validating playbooks without I/O.
        pub const CAPABILITIES: &[&Capabilities] = &[
            $( <$provider as Provider>::CAPABILITIES, )+
        ];

        /// One connected provider. Variants differ in size; there is one handle per provider
        /// per process, so boxing would buy nothing.
        #[allow(clippy::large_enum_variant)]
        pub enum ProviderHandle {
            $(
                #[doc = concat!("The `", stringify!($name), "` provider.")]
                $variant($provider),
            )+
        }

        /// Dispatch one call to whichever provider the handle holds.
        macro_rules! dispatch {
            ($handle:expr, $p:ident => $call:expr) => {
                match $handle {
                    $( ProviderHandle::$variant($p) => $call, )+
                }
            };
        }

        impl Providers {
            /// Build every configured provider. No provider call is made here.
            pub async fn connect(config: &ProvidersConfig) -> Result<Providers, RegistryError> {
                let mut by_name = BTreeMap::new();
                $(
                    if let Some(section) = &config.$name {
                        let provider = <$provider as Provider>::connect(section.clone())
                            .await
                            .map_err(|e| RegistryError::Provider {
                                provider: stringify!($name),
                                source: Box::new(e),
                            })?;
                        by_name.insert(stringify!($name), ProviderHandle::$variant(provider));
                    }
                )+
                Ok(Providers { by_name })
            }
        }
    };
}

providers! {
    aws => Aws(closeout_aws::AwsProvider),
    vault => Vault(closeout_vault::VaultProvider),
    azure => Azure(closeout_azure::AzureProvider),
    keycloak => Keycloak(closeout_keycloak::KeycloakProvider),
    scim => Scim(closeout_scim::ScimProvider),
}

/// The capabilities of the provider called `name`, if Closeout has such a provider.
pub fn capabilities(name: &str) -> Option<&'static Capabilities> {
    CAPABILITIES.iter().copied().find(|c| c.provider == name)
}

/// The names of every provider Closeout knows, in the list's order.
pub fn known() -> Vec<&'static str> {
    CAPABILITIES.iter().map(|c| c.provider).collect()
}

impl ProviderHandle {
    /// The provider's name.
    pub fn name(&self) -> &'static str {
        self.capabilities().provider
    }

    /// See [`Provider::capabilities`].
    pub fn capabilities(&self) -> &'static Capabilities {
        dispatch!(self, p => p.capabilities())
    }

    /// See [`Provider::limits`].
    pub fn limits(&self) -> Limits {
        dispatch!(self, p => p.limits())
    }

    /// See [`Provider::health`].
    pub async fn health(&self, needs: &[&'static str]) -> Result<Health, ProviderError> {
        dispatch!(self, p => p.health(needs).await)
    }

    /// See [`Provider::resolve`].
    pub async fn resolve(&self, ctx: &ResolveContext) -> Result<Resolution, ProviderError> {
        dispatch!(self, p => p.resolve(ctx).await)
    }

    /// See [`Provider::resolve_accounts`].
    pub async fn resolve_accounts(
        &self,
        ctx: &ResolveContext,
    ) -> Result<Option<Resolution>, ProviderError> {
        dispatch!(self, p => p.resolve_accounts(ctx).await)
    }

    /// See [`Provider::execute`].
    pub async fn execute(&self, action: &ActionRequest) -> Result<ActionOutcome, ProviderError> {
        dispatch!(self, p => p.execute(action).await)
    }

    /// See [`Provider::live_state`].
    pub async fn live_state(
        &self,
        finding: &Finding,
        ctx: &ResolveContext,
    ) -> Result<State, ProviderError> {
        dispatch!(self, p => p.live_state(finding, ctx).await)
    }

    /// See [`Provider::probe`].
    pub async fn probe(&self, finding: &Finding) -> Result<Option<ProbeOutcome>, ProviderError> {
        dispatch!(self, p => p.probe(finding).await)
    }

    /// See [`Provider::entitlement`].
    pub fn entitlement(&self, finding: &Finding) -> Option<Entitlement> {
        dispatch!(self, p => p.entitlement(finding))
    }

    /// See [`Provider::grant_finding`].
    pub async fn grant_finding(
        &self,
        ctx: &ResolveContext,
        entitlement: &Entitlement,
    ) -> Result<Finding, ProviderError> {
        dispatch!(self, p => p.grant_finding(ctx, entitlement).await)
    }

    /// See [`Provider::nhi_findings`].
    pub async fn nhi_findings(&self, nhi: &ResolveContext) -> Result<Vec<Finding>, ProviderError> {
        dispatch!(self, p => p.nhi_findings(nhi).await)
    }

    /// See [`Provider::session_carries`].
    pub fn session_carries(&self, session: &Finding, removed: &Finding) -> bool {
        dispatch!(self, p => p.session_carries(session, removed))
    }

    /// See [`Provider::unclaimed_accounts`].
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
    /// The provider called `name`, when it is configured.
    pub fn get(&self, name: &str) -> Option<&ProviderHandle> {
        self.by_name.get(name)
    }

    /// Every configured provider, by name.
    pub fn iter(&self) -> impl Iterator<Item = &ProviderHandle> {
        self.by_name.values()
    }

    /// The names of the configured providers.
    pub fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_is_listed_once_and_its_config_section_is_named_after_it() {
        let mut names = known();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
        assert!(capabilities("aws").is_some());
        assert!(capabilities("vault").is_some());
        assert!(capabilities("azure").is_some());
        assert!(capabilities("keycloak").is_some());
        assert!(capabilities("scim").is_some());
        assert!(capabilities("gcp").is_none());
        // A provider's findings, playbook steps and config section use one name.
        assert_eq!(SECTIONS, known().as_slice());
    }
}
