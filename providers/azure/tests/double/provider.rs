//! The provider as the orchestrator drives it (`connect`, `resolve`, `execute`, `live_state`)
//! against the Azure double: a client-secret rotation that crashed after `addPassword` is
//! finished without leaving the unpublished credential behind, a repeat is "already done", and
//! a bad configuration is refused before any call.

use crate::common;

use closeout_azure::{AzureConfig, AzureProvider};
use closeout_azure_double::{DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID};
use closeout_contract::{
    ActionParams, ActionRequest, Identity, IdentityKind, IdentityStatus, Provider, ResolveContext,
    State,
};
use serde_json::{json, Value};

const SUB: &str = "77777777-7777-4777-8777-777777777777";

fn alice() -> Identity {
    Identity {
        id: "E1001".into(),
        email: "alice@example.com".into(),
        name: "Alice".into(),
        kind: IdentityKind::Human,
        status: IdentityStatus::Terminated,
        manager: Some("E1000".into()),
        department: None,
        role: None,
        location: None,
        employment_type: None,
        tags: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_client_secret_rotation_finishes_without_a_stray_credential() {
    let double = common::double().await;
    let seed = common::client(&double, DEFAULT_CLIENT_SECRET);
    let call = |method: &'static str, api, path: String, body: Value| {
        let seed = &seed;
        async move {
            let body = (!body.is_null()).then_some(body);
            seed.call::<Value>(api, method, &path, body.as_ref())
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
                .unwrap_or(Value::Null)
        }
    };
    use closeout_azure::http::Api::{Arm, Graph};
    let user = |upn: &str, employee: &str| {
        json!({"accountEnabled": true, "displayName": upn, "userPrincipalName": upn,
               "mail": upn, "employeeId": employee, "mailNickname": employee,
               "passwordProfile": {"password": "Not-Printed-1"}})
    };
    let alice_user = call(
        "POST",
        Graph,
        "/v1.0/users".into(),
        user("alice@example.com", "E1001"),
    )
    .await;
    let bob = call(
        "POST",
        Graph,
        "/v1.0/users".into(),
        user("bob@example.com", "E1000"),
    )
    .await;
    let app = call(
        "POST",
        Graph,
        "/v1.0/applications".into(),
        json!({"displayName": "Payments API"}),
    )
    .await;
    let app_object = app["id"].as_str().expect("app id").to_string();
    let app_id = app["appId"].as_str().expect("appId").to_string();
    call(
        "POST",
        Graph,
        "/v1.0/servicePrincipals".into(),
        json!({"appId": app_id}),
    )
    .await;
    call(
        "POST",
        Graph,
        format!("/v1.0/applications/{app_object}/owners/$ref"),
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", alice_user["id"].as_str().unwrap())}),
    )
    .await;
    let old = call(
        "POST",
        Graph,
        format!("/v1.0/applications/{app_object}/addPassword"),
        json!({"passwordCredential": {"displayName": "in use"}}),
    )
    .await;
    let old_key = old["keyId"].as_str().expect("keyId").to_string();
    // The vault rotated credentials are published to.
    call(
        "PUT",
        Arm,
        format!("/providers/Microsoft.Subscription/aliases/a-{SUB}?api-version=2021-10-01"),
        json!({"properties": {"displayName": "prod", "workload": "Production",
               "billingScope": "/billingAccounts/x", "subscriptionId": SUB}}),
    )
    .await;
    call(
        "PUT",
        Arm,
        format!("/subscriptions/{SUB}/resourcegroups/rg?api-version=2021-04-01"),
        json!({"location": "westeurope"}),
    )
    .await;
    let vault = call(
        "PUT",
        Arm,
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-ops?api-version=2023-07-01"),
        json!({"location": "westeurope", "properties": {"tenantId": DEFAULT_TENANT_ID,
               "sku": {"family": "A", "name": "standard"}, "enableRbacAuthorization": true}}),
    )
    .await;
    let vault_uri = vault["properties"]["vaultUri"].as_str().expect("vaultUri");

    let dir = std::env::temp_dir().join(format!("closeout-azure-provider-{}", std::process::id()));
    let config = AzureConfig {
        credential_vault: Some(vault_uri.to_string()),
        ..common::provider_config(&double, &dir)
    };
    let provider = AzureProvider::connect(config).await.expect("connect");
    let ctx = ResolveContext {
        identity: alice(),
        cutoff: None,
    };
    let resolution = provider.resolve(&ctx).await.expect("resolve");
    let secret = resolution
        .findings
        .iter()
        .find(|f| f.kind == "app-password")
        .expect("the app's client secret is Alice's")
        .clone();
    assert_eq!(secret.attr("key_id"), Some(old_key.as_str()));

    // A previous attempt crashed right after addPassword: its credential (with this run's
    // marker) exists, but its value was never published and is lost.
    let run = "run-crashed";
    let stray = call(
        "POST",
        Graph,
        format!("/v1.0/applications/{app_object}/addPassword"),
        json!({"passwordCredential": {"displayName": format!("closeout rotation {run} {old_key}")}}),
    )
    .await;
    let stray_key = stray["keyId"].as_str().unwrap().to_string();

    let action = ActionRequest {
        idempotency_key: "k1".into(),
        verb: "rotate".into(),
        finding: secret.clone(),
        params: ActionParams {
            run_id: run.into(),
            new_owner: Some("bob@example.com".into()),
            ..Default::default()
        },
    };
    let outcome = provider.execute(&action).await.expect("rotate");
    assert!(!outcome.already_done);
    assert_eq!(outcome.state, State::Rotated);

    let creds = call(
        "GET",
        Graph,
        format!("/v1.0/applications/{app_object}?$select=passwordCredentials"),
        Value::Null,
    )
    .await;
    let keys: Vec<&str> = creds["passwordCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["keyId"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 1, "exactly the new credential is left: {creds}");
    assert!(!keys.contains(&old_key.as_str()) && !keys.contains(&stray_key.as_str()));

    // The same action again is the idempotent success, and live state says rotated.
    let again = provider.execute(&action).await.expect("rotate again");
    assert!(again.already_done, "{again:?}");
    assert_eq!(
        provider.live_state(&secret, &ctx).await.unwrap(),
        State::Rotated
    );
    let _ = bob;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn bad_configuration_is_refused_before_any_call() {
    let err = AzureProvider::connect(AzureConfig {
        tenant_id: "t".into(),
        client_id: "c".into(),
        arm_endpoint: "http://127.0.0.1:1".into(),
        ..AzureConfig::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().starts_with("arm_endpoint"), "{err}");
    let err = AzureProvider::connect(AzureConfig {
        tenant_id: "t".into(),
        client_id: "c".into(),
        client_secret_file: Some("/nonexistent/closeout-secret".into()),
        ..AzureConfig::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("client_secret_file"), "{err}");
}
