//! The ARM/Graph HTTP layer against the Azure test double: tokens from `azure_identity` at the
//! double's token endpoint, paging across `@odata.nextLink` / `nextLink`, 429 with Retry-After
//! classified as throttling, Azure's error code kept, a bad secret refused.

use crate::common;

use closeout_azure::http::Api;
use closeout_azure_double::DEFAULT_CLIENT_SECRET;
use closeout_contract::{ErrorClass, ProviderError};
use common::client;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_throttling_errors_and_tokens_against_the_double() {
    let double = common::double().await;
    let azure = client(&double, DEFAULT_CLIENT_SECRET);

    for i in 0..5 {
        let created: Option<Value> = azure
            .call(
                Api::Graph,
                "POST",
                "/v1.0/users",
                Some(&json!({
                    "accountEnabled": true,
                    "displayName": format!("User {i}"),
                    "userPrincipalName": format!("user{i}@example.com"),
                    "mailNickname": format!("user{i}"),
                    "passwordProfile": {"password": "Never-Printed-1"}
                })),
            )
            .await
            .expect("create a user");
        assert!(created.is_some());
    }
    // Five users over pages of two: three pages through @odata.nextLink.
    let users: Vec<Value> = azure.list(Api::Graph, "/v1.0/users").await.expect("list");
    assert_eq!(users.len(), 5);

    // ARM pages too (role definitions: fifteen built-ins, pages of two, via nextLink).
    let roles: Vec<Value> = azure
        .list(
            Api::Arm,
            "/providers/Microsoft.Authorization/roleDefinitions?api-version=2022-04-01",
        )
        .await
        .expect("role definitions");
    assert!(roles.len() >= 15, "{}", roles.len());

    // A 404 keeps Azure's error code.
    let missing = azure
        .call::<Value>(Api::Graph, "GET", "/v1.0/users/nobody@example.com", None)
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert!(
        missing.to_string().contains("Request_ResourceNotFound"),
        "{missing}"
    );

    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(double.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    // The double's call log shows the list really took three pages.
    let calls: Value = http
        .get(format!("{}/_double/calls", double.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_pages = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["method"] == "GET" && c["path"] == "/v1.0/users" && c["status"] == 200)
        .count();
    assert_eq!(user_pages, 3, "{calls:#}");

    // A throttled read waits as Retry-After asks and is retried: one 429 costs one second.
    let fault = |count: u32| {
        http.post(format!("{}/_double/faults", double.base_url()))
            .json(&json!({"path_prefix": "/v1.0/users", "count": count, "retry_after_seconds": 1}))
            .send()
    };
    assert_eq!(fault(1).await.unwrap().status().as_u16(), 201);
    let started = std::time::Instant::now();
    azure
        .call::<Value>(Api::Graph, "GET", "/v1.0/users", None)
        .await
        .expect("a read throttled once succeeds on its retry");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );

    // As many 429s as the policy's attempts: a throttling error carrying the delay, for the
    // executor.
    let count = closeout_contract::RetryPolicy::default().max_attempts;
    assert_eq!(fault(count).await.unwrap().status().as_u16(), 201);
    let throttled: ProviderError = azure
        .call::<Value>(Api::Graph, "GET", "/v1.0/users", None)
        .await
        .unwrap_err()
        .into();
    assert_eq!(
        throttled.class(),
        ErrorClass::Throttled(Some(Duration::from_secs(1)))
    );

    // A wrong client secret gets no token: the call fails without reaching Graph, and the
    // error names neither the secret nor a token.
    let wrong = client(&double, "canary-wrong-secret");
    let err = wrong
        .call::<Value>(Api::Graph, "GET", "/v1.0/users", None)
        .await
        .unwrap_err();
    assert_eq!(err.status, None);
    assert!(!err.to_string().contains("canary"), "{err}");
    double.shutdown().await;
}
