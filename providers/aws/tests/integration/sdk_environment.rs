//! The SDK's standard configuration keeps working when the provider's config leaves `region` and
//! `endpoint_url` unset, and connection failures are classified as unreachable.
//!
//! The provider reads `AWS_ENDPOINT_URL` and `AWS_REGION` from the process environment, which
//! the other tests of this binary share; setting it while they run would race them. So the test
//! starts moto and seeds it, then runs itself again in a child process of this test binary with
//! that environment set from the start, where the provider checks run.

use crate::common;

use closeout_aws::{AwsConfig, AwsProvider};
use closeout_contract::{ErrorClass, Provider, ProviderError, ResolveContext};
use common::*;
use std::process::Command;

/// Set in the child process: run the checks with the environment it was started with.
const CHILD: &str = "CLOSEOUT_AWS_TEST_SDK_ENVIRONMENT_CHILD";

/// This test's name as the test harness filters it (`--exact`).
const NAME: &str = "sdk_environment::standard_environment_and_unreachable_endpoints";

#[tokio::test]
async fn standard_environment_and_unreachable_endpoints() {
    if std::env::var_os(CHILD).is_some() {
        return checks_in_the_child().await;
    }
    let moto = Moto::start();
    let c = moto.clients().await;
    c.user("frank", &[("identity", "E600")]).await;

    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        // AWS_ENDPOINT_URL and AWS_REGION from the environment; credentials from the default
        // chain (moto accepts any).
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_DEFAULT_REGION")
        .output()
        .expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the checks with the standard environment failed (exit {:?}):\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn checks_in_the_child() {
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
