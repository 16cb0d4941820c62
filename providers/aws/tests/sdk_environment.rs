//! The SDK's standard configuration keeps working when the provider's config leaves `region` and
//! `endpoint_url` unset, and connection failures are classified as unreachable. This file is its
//! own test binary (process) because it sets process-wide environment variables.

mod common;

use closeout_aws::{AwsConfig, AwsProvider};
use closeout_contract::{ErrorClass, Provider, ProviderError, ResolveContext};
use common::*;

#[tokio::test]
async fn standard_environment_and_unreachable_endpoints() {
    let moto = Moto::start();
    let c = moto.clients().await;
    c.user("frank", &[("identity", "E600")]).await;

    // AWS_ENDPOINT_URL and AWS_REGION from the environment; credentials from the default chain.
    std::env::set_var("AWS_ENDPOINT_URL", &moto.endpoint);
    std::env::set_var("AWS_REGION", "us-east-1");
    let provider = AwsProvider::connect(AwsConfig::default()).await.unwrap();
    provider
        .health(&[])
        .await
        .expect("health through AWS_ENDPOINT_URL");
    let r = provider
        .resolve(&ResolveContext {
            identity: identity("E600", "frank@example.com", None),
            cutoff: None,
        })
        .await
        .unwrap();
    assert_eq!(r.accounts.len(), 1);

    // The config overrides the environment: an endpoint nobody listens on is unreachable, and
    // the error names it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{closed}");
    let provider = AwsProvider::connect(AwsConfig {
        endpoint_url: Some(endpoint.clone()),
        region: Some("eu-west-1".into()),
        max_attempts: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let err = provider.health(&[]).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert!(err.to_string().contains(&endpoint), "{err}");
    let err = provider
        .resolve(&ResolveContext {
            identity: identity("E600", "frank@example.com", None),
            cutoff: None,
        })
        .await
        .unwrap_err();
    assert!(err.is_unreachable(), "{err}");
}
