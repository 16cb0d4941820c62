//! [`closeout_contract::Provider`] for [`AwsProvider`]: the contract's entry points, each
//! delegating to the module that does the work. Nothing in the crate imports this module; it is
//! only the face the orchestrator sees.

use crate::capabilities::CAPABILITIES;
use crate::client::AwsProvider;
use crate::config::{AwsConfig, AwsError};
use crate::entitlements;
use closeout_contract::{
    ActionOutcome, ActionRequest, Capabilities, Entitlement, Finding, Health, Identity, Limits,
    ProbeOutcome, Provider, ProviderError, Resolution, ResolveContext, State, UnclaimedAccount,
};
use std::future::Future;

// The SDK's futures are large; boxing keeps callers' stacks small (debug builds especially).
impl Provider for AwsProvider {
    type Config = AwsConfig;
    const CAPABILITIES: &'static Capabilities = &CAPABILITIES;

    fn connect(config: AwsConfig) -> impl Future<Output = Result<AwsProvider, AwsError>> + Send {
        AwsProvider::connect(config)
    }

    fn limits(&self) -> Limits {
        self.gates.widest()
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
}
