//! The SDK clients behind one [`CallGate`]: [`AwsProvider`] itself, how it is built, and the
//! low-level helpers every AWS call goes through (`call`, `all_pages`).
//!
//! This is the crate's lowest I/O layer, so every other module can import it and nothing here
//! imports them back.

use crate::config::{AwsConfig, AwsError};
use crate::error::CallError;
use crate::limits::Gates;
use crate::receipts::Receipts;
use crate::retry::{retry_config, timeout_config, RetryAfterClassifier};
use aws_config::BehaviorVersion;
use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use closeout_contract::handoff::Handoff;
use closeout_contract::CallGate;
use std::future::Future;

/// The AWS provider: SDK clients for IAM, STS, Secrets Manager and IAM Identity Center, each
/// call behind its API family's [`CallGate`] (`limits`).
pub struct AwsProvider {
    pub(crate) config: AwsConfig,
    pub(crate) sdk: aws_config::SdkConfig,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) sts: aws_sdk_sts::Client,
    pub(crate) sm: aws_sdk_secretsmanager::Client,
    /// IAM Identity Center: the Identity Store (users, groups, memberships)...
    pub(crate) idstore: aws_sdk_identitystore::Client,
    /// ...and SSO admin (instances, permission sets, account assignments).
    pub(crate) sso: aws_sdk_ssoadmin::Client,
    /// The IAM family's gate (the same as `gates.iam`): IAM fan-outs size themselves by it.
    pub(crate) gate: CallGate,
    /// One gate per API family; every call passes its family's.
    pub(crate) gates: Gates,
    /// Where calls go, for error messages.
    endpoint: String,
    /// What `resolve_accounts` read (the inventory, and the person's user and credentials), for
    /// the resolution that follows it (`closeout_contract::handoff`). Type-erased so this layer
    /// does not name the inventory's types: `resolve.rs` puts and takes its `AccountsRead`.
    pub(crate) ahead: Handoff<Box<dyn std::any::Any + Send>>,
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
        let policy = config.retry_policy();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(retry_config(&policy))
            .timeout_config(timeout_config(&policy));
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
        let gates = Gates::from_config(&config);
        let classifier = |gates: Vec<CallGate>| RetryAfterClassifier { gates };
        // Every client gets the classifier that honours `Retry-After` (see `retry`), and a retry
        // quota (the SDK's token bucket) of its own: the SDK's default partition keeps one
        // bucket per service for the whole process, so a provider connected after a fault storm
        // (a resume in the same process, a test) would start with the quota another drained.
        // Every client also records each attempt's status and request id for the action
        // being executed (`receipts`).
        let iam = aws_sdk_iam::config::Builder::from(&sdk)
            .retry_classifier(classifier(vec![gates.iam.clone()]))
            .interceptor(Receipts)
            .retry_partition(
                aws_sdk_iam::config::retry::RetryPartition::custom("closeout-iam").build(),
            );
        let sts = aws_sdk_sts::config::Builder::from(&sdk)
            .retry_classifier(classifier(vec![gates.sts.clone()]))
            .interceptor(Receipts)
            .retry_partition(
                aws_sdk_sts::config::retry::RetryPartition::custom("closeout-sts").build(),
            );
        let sm = aws_sdk_secretsmanager::config::Builder::from(&sdk)
            .retry_classifier(classifier(gates.secrets_manager()))
            .interceptor(Receipts)
            .retry_partition(
                aws_sdk_secretsmanager::config::retry::RetryPartition::custom(
                    "closeout-secretsmanager",
                )
                .build(),
            );
        let idstore = aws_sdk_identitystore::config::Builder::from(&sdk)
            .retry_classifier(classifier(vec![gates.identity_center.clone()]))
            .interceptor(Receipts)
            .retry_partition(
                aws_sdk_identitystore::config::retry::RetryPartition::custom(
                    "closeout-identitystore",
                )
                .build(),
            );
        let sso = aws_sdk_ssoadmin::config::Builder::from(&sdk)
            .retry_classifier(classifier(vec![gates.identity_center.clone()]))
            .interceptor(Receipts)
            .retry_partition(
                aws_sdk_ssoadmin::config::retry::RetryPartition::custom("closeout-ssoadmin")
                    .build(),
            );
        Ok(AwsProvider {
            idstore: aws_sdk_identitystore::Client::from_conf(idstore.build()),
            sso: aws_sdk_ssoadmin::Client::from_conf(sso.build()),
            iam: aws_sdk_iam::Client::from_conf(iam.build()),
            sts: aws_sdk_sts::Client::from_conf(sts.build()),
            sm: aws_sdk_secretsmanager::Client::from_conf(sm.build()),
            gate: gates.iam.clone(),
            gates,
            config,
            sdk,
            endpoint,
            ahead: Handoff::default(),
        })
    }

    /// Where calls go (the configured endpoint, or the SDK's default), as error messages and
    /// process-wide locks name it.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The configuration the provider was built with.
    pub fn config(&self) -> &AwsConfig {
        &self.config
    }

    /// Run one SDK call through its family's gate and classify its error.
    pub(crate) async fn call<T, E>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<T, CallError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let _pass = self.gates.of(op).enter().await;
        tracing::trace!(op, "aws call");
        let result = fut.await;
        result.map_err(|e| {
            let e = CallError::from_sdk(op, &self.endpoint, e);
            tracing::debug!(op, error = %e, "aws call failed");
            e
        })
    }

    /// An STS client that signs with the given access key instead of the provider's
    /// credentials, against the same endpoint and region: to test a key (a new one works, an
    /// old one is refused). `retries`: the SDK's retries, off when a single answer is wanted.
    pub(crate) fn sts_with_key(
        &self,
        id: &str,
        secret: &closeout_contract::SecretValue,
        retries: bool,
    ) -> aws_sdk_sts::Client {
        let creds = aws_credential_types::Credentials::new(
            id,
            secret.expose(),
            None,
            None,
            "closeout-key-test",
        );
        let mut conf = aws_sdk_sts::config::Builder::from(&self.sdk)
            .credentials_provider(creds)
            .retry_classifier(RetryAfterClassifier {
                gates: vec![self.gates.sts.clone()],
            })
            .interceptor(Receipts);
        if !retries {
            conf = conf.retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled());
        }
        aws_sdk_sts::Client::from_conf(conf.build())
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use closeout_contract::{Provider, ProviderError};

    #[tokio::test]
    async fn connect_without_network_and_refuses_bad_config() {
        let p = AwsProvider::connect(AwsConfig {
            region: Some("eu-west-1".into()),
            endpoint_url: Some("http://127.0.0.1:1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
        assert_eq!(p.limits().max_in_flight, 32);
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
