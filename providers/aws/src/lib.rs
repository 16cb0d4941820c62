//! Closeout's provider for AWS IAM, STS and Secrets Manager.
//!
//! - [`AwsConfig`]: the `[providers.aws]` configuration, with a pure [`AwsConfig::validate`].
//! - [`AwsProvider::connect`]: builds the SDK clients (no network call).
//! - [`AwsProvider`] implements [`closeout_contract::Provider`]: `resolve` turns an identity into
//!   findings with explained paths (see [`CAPABILITIES`] for the kinds and verbs), `execute` runs
//!   one action idempotently, `live_state` and `probe` read the provider for verification;
//!   `entitlement`, `grant_finding`, `unclaimed_accounts` and `nhi_findings` serve movers,
//!   joiners and reconcile.
//!
//! Module map: `config` (configuration), `policy` (pure IAM policy evaluation), `inventory`
//! (reading IAM and Secrets Manager), `resolve` (correlation and reachability: findings and
//! paths), `entitlements` (grants and unclaimed users), `actions` (execute), `live` (live
//! state, probes, health), `error` (SDK error classification).
//!
//! Every AWS call passes through the provider's [`CallGate`] (bounded in-flight calls and a
//! token-bucket rate). Secret values only ever travel inside [`closeout_contract::SecretValue`].

mod actions;
mod config;
mod entitlements;
mod error;
mod inventory;
mod live;
pub mod policy;
mod resolve;

pub use config::{AwsConfig, AwsError, UserNameRule};

use aws_config::BehaviorVersion;
use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use closeout_contract::{
    verbs, ActionOutcome, ActionRequest, CallGate, Capabilities, Entitlement, Finding, Identity,
    KindSpec, Limits, ProbeOutcome, Provider, ProviderError, Resolution, ResolveContext, State,
    UnclaimedAccount,
};
use error::CallError;
use std::future::Future;

/// The provider's name in findings, playbooks and configuration.
pub const PROVIDER: &str = "aws";

/// The finding kinds this provider emits.
pub mod kinds {
    /// The person's own IAM user.
    pub const USER: &str = "user";
    pub const LOGIN_PROFILE: &str = "login-profile";
    pub const ACCESS_KEY: &str = "access-key";
    pub const SSH_KEY: &str = "ssh-key";
    pub const SIGNING_CERTIFICATE: &str = "signing-certificate";
    pub const SERVICE_CREDENTIAL: &str = "service-credential";
    pub const MFA_DEVICE: &str = "mfa-device";
    pub const GROUP_MEMBERSHIP: &str = "group-membership";
    pub const ATTACHED_POLICY: &str = "attached-policy";
    pub const INLINE_POLICY: &str = "inline-policy";
    pub const GROUP_POLICY: &str = "group-policy";
    pub const ASSUMABLE_ROLE: &str = "assumable-role";
    pub const SECRET: &str = "secret";
    pub const NHI_USER: &str = "nhi-user";
    pub const NHI_ROLE: &str = "nhi-role";
}

/// What the AWS provider resolves and which verbs it supports on each kind.
pub const CAPABILITIES: Capabilities = Capabilities {
    provider: PROVIDER,
    kinds: &[
        KindSpec {
            kind: kinds::USER,
            description: "the person's own IAM user; revoke-sessions puts an inline deny on aws:TokenIssueTime",
            verbs: &[verbs::REVOKE_SESSIONS],
        },
        KindSpec {
            kind: kinds::LOGIN_PROFILE,
            description: "console password of the person's IAM user",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::ACCESS_KEY,
            description: "access key of the person's IAM user, or of an IAM user the person owns (rotate: owned users only)",
            verbs: &[verbs::DEACTIVATE, verbs::DELETE, verbs::ROTATE],
        },
        KindSpec {
            kind: kinds::SSH_KEY,
            description: "SSH public key (CodeCommit) of the person's IAM user",
            verbs: &[verbs::DEACTIVATE, verbs::DELETE],
        },
        KindSpec {
            kind: kinds::SIGNING_CERTIFICATE,
            description: "X.509 signing certificate of the person's IAM user",
            verbs: &[verbs::DEACTIVATE, verbs::DELETE],
        },
        KindSpec {
            kind: kinds::SERVICE_CREDENTIAL,
            description: "service-specific credential (CodeCommit, Keyspaces, Bedrock) of the person's IAM user",
            verbs: &[verbs::DEACTIVATE, verbs::DELETE],
        },
        KindSpec {
            kind: kinds::MFA_DEVICE,
            description: "MFA device enabled for the person's IAM user",
            verbs: &[verbs::DEACTIVATE],
        },
        KindSpec {
            kind: kinds::GROUP_MEMBERSHIP,
            description: "membership of the person's IAM user in an IAM group; entitlement target: the group name (grant adds the user)",
            verbs: &[verbs::REMOVE, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::ATTACHED_POLICY,
            description: "managed policy attached to the person's IAM user; entitlement target: the policy ARN (grant attaches it)",
            verbs: &[verbs::DETACH, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::INLINE_POLICY,
            description: "inline policy of the person's IAM user; entitlement target: the policy name (removable, never granted)",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::GROUP_POLICY,
            description: "managed or inline policy of a group the person is in (closes with the membership)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::ASSUMABLE_ROLE,
            description: "IAM role the person can assume (trust policy names the user, or names the account and an identity policy allows it)",
            verbs: &[verbs::REVOKE_SESSIONS],
        },
        KindSpec {
            kind: kinds::SECRET,
            description: "Secrets Manager secret the person owns (owner tag) or can read (identity, group, role or resource policy)",
            verbs: &[verbs::ROTATE],
        },
        KindSpec {
            kind: kinds::NHI_USER,
            description: "IAM user whose owner tag names the person",
            verbs: &[verbs::REASSIGN_OWNER],
        },
        KindSpec {
            kind: kinds::NHI_ROLE,
            description: "IAM role whose owner tag names the person",
            verbs: &[verbs::REASSIGN_OWNER],
        },
    ],
};

/// The AWS provider: SDK clients for IAM, STS and Secrets Manager behind one [`CallGate`].
pub struct AwsProvider {
    config: AwsConfig,
    sdk: aws_config::SdkConfig,
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    sm: aws_sdk_secretsmanager::Client,
    gate: CallGate,
    /// Where calls go, for error messages.
    endpoint: String,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("endpoint", &self.endpoint)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AwsProvider {
    /// Build the SDK clients from the SDK's standard configuration (environment, profiles,
    /// default credentials chain) plus the overrides in `config`. Validates `config` first. Makes
    /// no AWS call; credentials are resolved on first use.
    pub async fn connect(config: AwsConfig) -> Result<AwsProvider, AwsError> {
        config.validate()?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(
            aws_config::retry::RetryConfig::standard().with_max_attempts(config.max_attempts),
        );
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        let sdk = loader.load().await;
        let region = sdk.region().ok_or(AwsError::NoRegion)?.to_string();
        let endpoint = match sdk.endpoint_url() {
            Some(url) => url.to_string(),
            None => format!("the AWS endpoints of region {region}"),
        };
        let limits = limits_for(&config);
        Ok(AwsProvider {
            iam: aws_sdk_iam::Client::new(&sdk),
            sts: aws_sdk_sts::Client::new(&sdk),
            sm: aws_sdk_secretsmanager::Client::new(&sdk),
            gate: CallGate::new(limits),
            config,
            sdk,
            endpoint,
        })
    }

    /// The concurrency and rate limits every call of this provider obeys.
    pub fn limits(&self) -> Limits {
        self.gate.limits()
    }

    /// The configuration the provider was built with.
    pub fn config(&self) -> &AwsConfig {
        &self.config
    }

    /// Run one SDK call through the gate and classify its error.
    async fn call<T, E>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<T, CallError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let _pass = self.gate.enter().await;
        tracing::trace!(op, "aws call");
        let result = fut.await;
        result.map_err(|e| {
            let e = CallError::from_sdk(op, &self.endpoint, e);
            tracing::debug!(op, error = %e, "aws call failed");
            e
        })
    }
}

impl AwsProvider {
    /// Every item of a marker-paged IAM list. Each page passes the gate like any other call;
    /// `items` returns a page's items and, when the page is truncated, the next marker.
    pub(crate) async fn all_pages<P, T, E, Fut>(
        &self,
        op: &'static str,
        mut request: impl FnMut(Option<String>) -> Fut,
        mut items: impl FnMut(&P) -> (Vec<T>, Option<String>),
    ) -> Result<Vec<T>, CallError>
    where
        Fut: Future<Output = Result<P, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = self.call(op, request(marker.take())).await?;
            let (batch, next) = items(&page);
            out.extend(batch);
            match next {
                Some(m) => marker = Some(m),
                None => return Ok(out),
            }
        }
    }
}

/// The marker of the next IAM page, if the page says there is one.
pub(crate) fn next_marker(truncated: bool, marker: Option<&str>) -> Option<String> {
    marker.filter(|_| truncated).map(str::to_string)
}

fn limits_for(config: &AwsConfig) -> Limits {
    Limits::configured(config.max_in_flight, config.requests_per_second)
}

// The SDK's futures are large; boxing keeps callers' stacks small (debug builds especially).
impl Provider for AwsProvider {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_list_every_kind_once_with_the_documented_verbs() {
        let mut kinds: Vec<_> = CAPABILITIES.kinds.iter().map(|k| k.kind).collect();
        let n = kinds.len();
        kinds.sort();
        kinds.dedup();
        assert_eq!(n, kinds.len());
        assert_eq!(n, 15);
        assert!(CAPABILITIES.verb("access-key", "rotate").is_some());
        assert!(CAPABILITIES.verb("user", "revoke-sessions").is_some());
        assert!(CAPABILITIES.verb("secret", "rotate").is_some());
        assert!(CAPABILITIES.verb("group-policy", "remove").is_none());
        assert!(CAPABILITIES.verb("mfa-device", "delete").is_none());
        assert!(CAPABILITIES.verb("nhi-role", "reassign-owner").is_some());
        assert!(CAPABILITIES.verb("group-membership", "grant").is_some());
        assert!(CAPABILITIES.verb("attached-policy", "grant").is_some());
        assert!(CAPABILITIES.verb("inline-policy", "grant").is_none());
        let granted: Vec<&str> = CAPABILITIES
            .kinds
            .iter()
            .filter(|k| k.verbs.contains(&verbs::GRANT))
            .map(|k| k.kind)
            .collect();
        assert_eq!(granted, vec!["group-membership", "attached-policy"]);
    }

    #[test]
    fn limits_follow_config() {
        let l = limits_for(&AwsConfig::default());
        assert_eq!(l.max_in_flight, 8);
        assert_eq!(l.requests_per_second, 20.0);
        assert_eq!(l.burst, 10);
    }

    #[tokio::test]
    async fn connect_without_network_and_refuses_bad_config() {
        let p = AwsProvider::connect(AwsConfig {
            region: Some("eu-west-1".into()),
            endpoint_url: Some("http://127.0.0.1:1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(p.limits().max_in_flight, 8);
        let err = AwsProvider::connect(AwsConfig {
            nhi_key_secret: "no-placeholder".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert!(err.to_string().starts_with("nhi_key_secret"));
        let pe: ProviderError = err.into();
        assert_eq!(pe.class(), closeout_contract::ErrorClass::Permanent);
    }
}
