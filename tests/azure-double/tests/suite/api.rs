//! Drives the double over HTTPS with `reqwest`, trusting only the double's CA.

use crate::common;

use common::{all_pages, client_trusting, id, token_response, Env, ARM_SCOPE, GRAPH_SCOPE};
use reqwest::Method;
use serde_json::{json, Value};

const KV_CONTRIBUTOR: &str = "f25e0fa2-a7c8-4377-a976-54943a77a395";
const KV_SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

#[tokio::test]
async fn token_endpoint_issues_tokens_and_rejects_bad_credentials() {
    let env = Env::start().await;
    let (status, body) = token_response(
        &env.http,
        &env.base,
        &env.tenant,
        closeout_azure_double::DEFAULT_CLIENT_ID,
        closeout_azure_double::DEFAULT_CLIENT_SECRET,
        ARM_SCOPE,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));

    let (status, body) = token_response(
        &env.http,
        &env.base,
        &env.tenant,
        closeout_azure_double::DEFAULT_CLIENT_ID,
        "wrong",
        ARM_SCOPE,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"]
        .as_str()
        .is_some_and(|d| d.starts_with("AADSTS7000215:")));
    assert_eq!(body["error_codes"], json!([7000215]));

    let (status, body) = token_response(
        &env.http,
        &env.base,
        "00000000-0000-0000-0000-000000000000",
        closeout_azure_double::DEFAULT_CLIENT_ID,
        closeout_azure_double::DEFAULT_CLIENT_SECRET,
        ARM_SCOPE,
    )
    .await;
    assert_eq!(status, 400, "unknown tenant: {body}");
    assert_eq!(body["error_codes"], json!([90002]));

    let (status, body) = token_response(
        &env.http,
        &env.base,
        &env.tenant,
        closeout_azure_double::DEFAULT_CLIENT_ID,
        closeout_azure_double::DEFAULT_CLIENT_SECRET,
        "https://management.azure.com/user_impersonation",
    )
    .await;
    assert_eq!(status, 400, "non-.default scope: {body}");
    assert_eq!(body["error"], "invalid_scope");

    let (status, body) = env
        .arm(
            Method::GET,
            &format!("/{}/v2.0/.well-known/openid-configuration", env.tenant),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["token_endpoint"],
        format!("{}/{}/oauth2/v2.0/token", env.base, env.tenant)
    );
    env.double.shutdown().await;
}

#[tokio::test]
async fn calls_without_a_valid_token_get_401_with_a_challenge() {
    let env = Env::start().await;
    for path in [
        "/v1.0/users",
        "/subscriptions?api-version=2022-12-01",
        "/providers/Microsoft.Authorization/roleDefinitions?api-version=2022-04-01",
    ] {
        let response = env.send(None, Method::GET, path, None).await;
        assert_eq!(response.status().as_u16(), 401, "{path}");
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_default();
        assert!(challenge.starts_with("Bearer "), "{path}: {challenge}");
        let body: Value = response.json().await.expect("error JSON");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }
    let response = env
        .send(Some("not-a-token"), Method::GET, "/v1.0/users", None)
        .await;
    assert_eq!(response.status().as_u16(), 401);

    // A Graph token is not valid for ARM, and the other way round.
    let response = env
        .send(
            Some(&env.graph_token),
            Method::GET,
            "/subscriptions?api-version=2022-12-01",
            None,
        )
        .await;
    assert_eq!(response.status().as_u16(), 401);
    let response = env
        .send(Some(&env.arm_token), Method::GET, "/v1.0/users", None)
        .await;
    assert_eq!(response.status().as_u16(), 401);
    env.double.shutdown().await;
}

#[tokio::test]
async fn nested_groups_show_in_transitive_member_of() {
    let env = Env::start().await;
    let user = env.create_user("ada", json!({})).await;
    let outer = env.create_group("platform-admins").await;
    let inner = env.create_group("platform-oncall").await;
    let unrelated = env.create_group("finance").await;
    env.add_member(&outer, &inner).await;
    env.add_member(&inner, &user).await;

    let (status, body) = env
        .graph(Method::GET, &format!("/users/{}/memberOf", id(&user)), None)
        .await;
    assert_eq!(status, 200);
    let direct: Vec<&str> = body["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(id)
        .collect();
    assert_eq!(direct, vec![id(&inner)]);

    let (items, _) = all_pages(
        &env,
        &format!("/users/{}/transitiveMemberOf", id(&user)),
        true,
    )
    .await;
    let mut ids: Vec<&str> = items.iter().map(id).collect();
    ids.sort_unstable();
    let mut expected = vec![id(&inner), id(&outer)];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert!(!ids.contains(&id(&unrelated)));
    assert!(items
        .iter()
        .all(|g| g["@odata.type"] == "#microsoft.graph.group"));

    let (members, _) = all_pages(
        &env,
        &format!("/groups/{}/transitiveMembers", id(&outer)),
        true,
    )
    .await;
    let member_ids: Vec<&str> = members.iter().map(id).collect();
    assert!(member_ids.contains(&id(&user)) && member_ids.contains(&id(&inner)));
    assert!(members
        .iter()
        .any(|m| m["@odata.type"] == "#microsoft.graph.user"));
    // An OData cast keeps one type.
    let (status, users_only) = env
        .graph(
            Method::GET,
            &format!(
                "/groups/{}/transitiveMembers/microsoft.graph.user",
                id(&outer)
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{users_only}");
    assert_eq!(users_only["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(users_only["value"][0]["id"], user["id"]);

    // Adding the same member twice is refused, as Graph does.
    let (status, body) = env
        .graph(
            Method::POST,
            &format!("/groups/{}/members/$ref", id(&inner)),
            Some(json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", id(&user))})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    let (status, _) = env
        .graph(
            Method::DELETE,
            &format!("/groups/{}/members/{}/$ref", id(&inner), id(&user)),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, body) = env
        .graph(
            Method::GET,
            &format!("/users/{}/transitiveMemberOf", id(&user)),
            None,
        )
        .await;
    assert_eq!(body["value"], json!([]));
    env.double.shutdown().await;
}

#[tokio::test]
async fn users_filter_select_disable_revoke_and_manager() {
    let env = Env::start().await;
    let boss = env
        .create_user(
            "grace",
            json!({"mail": "grace@contoso.test", "employeeId": "E100"}),
        )
        .await;
    let user = env
        .create_user(
            "linus",
            json!({"mail": "linus@contoso.test", "employeeId": "E200"}),
        )
        .await;

    for filter in [
        "employeeId eq 'E200'",
        "mail eq 'LINUS@contoso.test'",
        "userPrincipalName eq 'linus@contoso.test'",
    ] {
        let response = env
            .http
            .get(format!("{}/v1.0/users", env.base))
            .bearer_auth(&env.graph_token)
            .query(&[
                ("$filter", filter),
                ("$select", "id,accountEnabled,employeeId"),
            ])
            .send()
            .await
            .expect("list");
        assert_eq!(response.status().as_u16(), 200, "{filter}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["value"].as_array().map(Vec::len), Some(1), "{filter}");
        assert_eq!(body["value"][0]["id"], user["id"]);
        assert_eq!(body["value"][0]["employeeId"], "E200");
        assert!(body["value"][0].get("displayName").is_none(), "$select");
    }
    let response = env
        .http
        .get(format!("{}/v1.0/users", env.base))
        .bearer_auth(&env.graph_token)
        .query(&[("$filter", "jobTitle eq 'x'")])
        .send()
        .await
        .expect("list");
    assert_eq!(response.status().as_u16(), 400);

    // By userPrincipalName; without $select only Graph's default properties come back.
    let (status, body) = env
        .graph(Method::GET, "/users/linus@contoso.test", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], user["id"]);
    assert!(body.get("accountEnabled").is_none());

    let (status, _) = env
        .graph(
            Method::PATCH,
            &format!("/users/{}", id(&user)),
            Some(json!({"accountEnabled": false})),
        )
        .await;
    assert_eq!(status, 204);
    let path = format!(
        "/users/{}?$select=accountEnabled,signInSessionsValidFromDateTime",
        id(&user)
    );
    let (_, before) = env.graph(Method::GET, &path, None).await;
    assert_eq!(before["accountEnabled"], false);

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body) = env
        .graph(
            Method::POST,
            &format!("/users/{}/revokeSignInSessions", id(&user)),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["value"], true);
    let (_, after) = env.graph(Method::GET, &path, None).await;
    assert_ne!(
        after["signInSessionsValidFromDateTime"],
        before["signInSessionsValidFromDateTime"]
    );

    let (status, body) = env
        .graph(Method::GET, &format!("/users/{}/manager", id(&user)), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
    let (status, _) = env
        .graph(
            Method::PUT,
            &format!("/users/{}/manager/$ref", id(&user)),
            Some(json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/users/{}", id(&boss))})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = env
        .graph(Method::GET, &format!("/users/{}/manager", id(&user)), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], boss["id"]);
    assert_eq!(body["@odata.type"], "#microsoft.graph.user");

    let (status, body) = env
        .graph(
            Method::GET,
            "/users/00000000-0000-0000-0000-000000000000",
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");

    let response = env
        .http
        .post(format!("{}/v1.0/users", env.base))
        .bearer_auth(&env.graph_token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 400);
    env.double.shutdown().await;
}

#[tokio::test]
async fn application_passwords_are_added_used_and_removed() {
    let env = Env::start().await;
    let owner = env.create_user("margaret", json!({})).await;
    let (status, app) = env
        .graph(
            Method::POST,
            "/applications",
            Some(json!({"displayName": "payroll-sync"})),
        )
        .await;
    assert_eq!(status, 201, "{app}");
    let app_id = app["appId"].as_str().expect("appId").to_string();
    let (status, sp) = env
        .graph(
            Method::POST,
            "/servicePrincipals",
            Some(json!({"appId": app_id})),
        )
        .await;
    assert_eq!(status, 201, "{sp}");
    assert_eq!(sp["displayName"], "payroll-sync");
    // Graph's alternate key on appId.
    let (status, by_app_id) = env
        .graph(
            Method::GET,
            &format!("/servicePrincipals(appId='{app_id}')"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{by_app_id}");
    assert_eq!(by_app_id["id"], sp["id"]);
    let (status, _) = env
        .graph(
            Method::GET,
            &format!("/applications(appId='{app_id}')"),
            None,
        )
        .await;
    assert_eq!(status, 200);

    for (set, object) in [("applications", &app), ("servicePrincipals", &sp)] {
        let (status, body) = env
            .graph(
                Method::POST,
                &format!("/{set}/{}/owners/$ref", id(object)),
                Some(json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", id(&owner))})),
            )
            .await;
        assert_eq!(status, 204, "{set}: {body}");
    }
    let (_, owned) = env
        .graph(
            Method::GET,
            &format!("/users/{}/ownedObjects?$top=10", id(&owner)),
            None,
        )
        .await;
    let types: Vec<&str> = owned["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|o| o["@odata.type"].as_str())
        .collect();
    assert_eq!(
        types,
        vec![
            "#microsoft.graph.application",
            "#microsoft.graph.servicePrincipal"
        ]
    );
    let (_, owners) = env
        .graph(
            Method::GET,
            &format!("/applications/{}/owners", id(&app)),
            None,
        )
        .await;
    assert_eq!(owners["value"][0]["id"], owner["id"]);

    let (status, credential) = env
        .graph(
            Method::POST,
            &format!("/applications/{}/addPassword", id(&app)),
            Some(json!({"passwordCredential": {"displayName": "ci"}})),
        )
        .await;
    assert_eq!(status, 200, "{credential}");
    let secret = credential["secretText"]
        .as_str()
        .expect("secretText once")
        .to_string();
    let key_id = credential["keyId"].as_str().expect("keyId").to_string();
    assert_eq!(credential["hint"], secret[..3]);

    let (_, read) = env
        .graph(Method::GET, &format!("/applications/{}", id(&app)), None)
        .await;
    let listed = &read["passwordCredentials"][0];
    assert_eq!(listed["keyId"], key_id.as_str());
    assert_eq!(listed["secretText"], Value::Null);
    assert_eq!(listed["displayName"], "ci");

    // The new secret works at the token endpoint for the application's appId.
    let (status, body) = token_response(
        &env.http,
        &env.base,
        &env.tenant,
        &app_id,
        &secret,
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A secret added to the service principal (not the application) signs in too, as on
    // Entra: client credentials accept either object's password.
    let (status, sp_credential) = env
        .graph(
            Method::POST,
            &format!("/servicePrincipals/{}/addPassword", id(&sp)),
            Some(json!({"passwordCredential": {"displayName": "sp-ci"}})),
        )
        .await;
    assert_eq!(status, 200, "{sp_credential}");
    let sp_secret = sp_credential["secretText"]
        .as_str()
        .expect("secretText once")
        .to_string();
    let (status, body) = token_response(
        &env.http,
        &env.base,
        &env.tenant,
        &app_id,
        &sp_secret,
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(status, 200, "service principal secret: {body}");
    // The same for a configured client (it is in the directory too): its configured secret and
    // one added to its service principal both sign in.
    let client = closeout_azure_double::DEFAULT_CLIENT_ID;
    let (status, client_sp) = env
        .graph(
            Method::GET,
            &format!("/servicePrincipals(appId='{client}')"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{client_sp}");
    let (status, added) = env
        .graph(
            Method::POST,
            &format!("/servicePrincipals/{}/addPassword", id(&client_sp)),
            Some(json!({"passwordCredential": {"displayName": "rotated"}})),
        )
        .await;
    assert_eq!(status, 200, "{added}");
    let (status, body) = token_response(
        &env.http,
        &env.base,
        &env.tenant,
        client,
        added["secretText"].as_str().expect("secretText"),
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(status, 200, "configured client, added secret: {body}");

    let (status, _) = env
        .graph(
            Method::POST,
            &format!("/applications/{}/removePassword", id(&app)),
            Some(json!({"keyId": key_id})),
        )
        .await;
    assert_eq!(status, 204);
    let (_, read) = env
        .graph(Method::GET, &format!("/applications/{}", id(&app)), None)
        .await;
    assert_eq!(read["passwordCredentials"], json!([]));
    let (status, body) = token_response(
        &env.http,
        &env.base,
        &env.tenant,
        &app_id,
        &secret,
        GRAPH_SCOPE,
    )
    .await;
    assert_eq!(status, 401, "removed secret: {body}");
    assert_eq!(body["error"], "invalid_client");

    // keyCredentials: PATCH replaces the collection; `key` only with $select on one object.
    let (status, body) = env
        .graph(
            Method::PATCH,
            &format!("/applications/{}", id(&app)),
            Some(json!({"keyCredentials": [{
                "type": "AsymmetricX509Cert", "usage": "Verify", "key": "TUlJQ2VydA==",
                "displayName": "CN=payroll"
            }]})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (_, read) = env
        .graph(Method::GET, &format!("/applications/{}", id(&app)), None)
        .await;
    assert_eq!(read["keyCredentials"][0]["key"], Value::Null);
    assert_eq!(read["keyCredentials"][0]["usage"], "Verify");
    let (_, read) = env
        .graph(
            Method::GET,
            &format!("/applications/{}?$select=keyCredentials", id(&app)),
            None,
        )
        .await;
    assert_eq!(read["keyCredentials"][0]["key"], "TUlJQ2VydA==");

    let (status, _) = env
        .graph(
            Method::DELETE,
            &format!("/applications/{}/owners/{}/$ref", id(&app), id(&owner)),
            None,
        )
        .await;
    assert_eq!(status, 204);

    // Deleting the application takes its service principal with it.
    let (status, _) = env
        .graph(Method::DELETE, &format!("/applications/{}", id(&app)), None)
        .await;
    assert_eq!(status, 204);
    for path in [
        format!("/applications/{}", id(&app)),
        format!("/servicePrincipals/{}", id(&sp)),
    ] {
        let (status, body) = env.graph(Method::GET, &path, None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (_, owned) = env
        .graph(
            Method::GET,
            &format!("/users/{}/ownedObjects", id(&owner)),
            None,
        )
        .await;
    assert_eq!(owned["value"], json!([]));
    env.double.shutdown().await;
}

#[tokio::test]
async fn vaults_and_access_policies_behave_like_arm() {
    let env = Env::start().await;
    let sub = "11111111-1111-4111-8111-111111111111";
    env.create_subscription(sub, None).await;
    env.create_resource_group(sub, "rg-secrets").await;
    for (rg, expected) in [("rg-secrets", 204), ("rg-none", 404)] {
        let response = env
            .send(
                Some(&env.arm_token),
                Method::HEAD,
                &format!("/subscriptions/{sub}/resourcegroups/{rg}?api-version=2021-04-01"),
                None,
            )
            .await;
        assert_eq!(response.status().as_u16(), expected, "HEAD {rg}");
    }
    let vault_path = format!(
        "/subscriptions/{sub}/resourceGroups/rg-secrets/providers/Microsoft.KeyVault/vaults/kv-payroll"
    );
    let alice = "aaaaaaaa-0000-4000-8000-000000000001";
    let bob = "bbbbbbbb-0000-4000-8000-000000000002";
    let (status, vault) = env
        .arm(
            Method::PUT,
            &format!("{vault_path}?api-version=2023-07-01"),
            Some(json!({
                "location": "westeurope",
                "properties": {
                    "tenantId": env.tenant,
                    "sku": {"family": "A", "name": "standard"},
                    "accessPolicies": [
                        {"tenantId": env.tenant, "objectId": alice,
                         "permissions": {"secrets": ["get", "list"], "keys": ["get"]}},
                        {"tenantId": env.tenant, "objectId": bob,
                         "permissions": {"secrets": ["get"]}}
                    ],
                    "enableRbacAuthorization": false
                }
            })),
        )
        .await;
    assert_eq!(status, 201, "{vault}");
    assert_eq!(vault["type"], "Microsoft.KeyVault/vaults");
    assert_eq!(
        vault["properties"]["vaultUri"],
        format!(
            "https://kv-payroll.lowkey-vault.local:{}/",
            env.double.addr().port()
        )
    );

    let (status, body) = env
        .arm(
            Method::PUT,
            &format!("{vault_path}/accessPolicies/add?api-version=2024-11-01"),
            Some(json!({"properties": {"accessPolicies": [
                {"tenantId": env.tenant, "objectId": alice, "permissions": {"secrets": ["set"]}}
            ]}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "Microsoft.KeyVault/vaults/accessPolicies");

    let (status, body) = env
        .arm(
            Method::PUT,
            &format!("{vault_path}/accessPolicies/remove?api-version=2023-07-01"),
            Some(json!({"properties": {"accessPolicies": [
                {"tenantId": env.tenant, "objectId": alice, "permissions": {"secrets": ["list", "set"]}},
                {"tenantId": env.tenant, "objectId": bob, "permissions": {"secrets": ["get"]}}
            ]}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (_, vault) = env
        .arm(
            Method::GET,
            &format!("{vault_path}?api-version=2023-07-01"),
            None,
        )
        .await;
    let policies = vault["properties"]["accessPolicies"]
        .as_array()
        .expect("policies");
    assert_eq!(
        policies.len(),
        1,
        "bob's emptied policy is removed: {policies:?}"
    );
    assert_eq!(policies[0]["objectId"], alice);
    assert_eq!(policies[0]["permissions"]["secrets"], json!(["get"]));
    assert_eq!(policies[0]["permissions"]["keys"], json!(["get"]));

    let response = env
        .http
        .put(format!("{}{vault_path}?api-version=2023-07-01", env.base))
        .bearer_auth(&env.arm_token)
        .header("content-type", "application/json")
        .body("{\"location\": ")
        .send()
        .await
        .expect("put");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "InvalidRequestContent");

    let (status, body) = env
        .arm(
            Method::GET,
            &format!("{vault_path}?api-version=2019-09-01"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "InvalidApiVersionParameter");
    let (status, body) = env.arm(Method::GET, &vault_path, None).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "MissingApiVersionParameter");

    let (_, by_rg) = env
        .arm(
            Method::GET,
            &format!("/subscriptions/{sub}/resourceGroups/rg-secrets/providers/Microsoft.KeyVault/vaults?api-version=2023-07-01"),
            None,
        )
        .await;
    assert_eq!(by_rg["value"][0]["name"], "kv-payroll");
    let (_, by_sub) = env
        .arm(
            Method::GET,
            &format!(
                "/subscriptions/{sub}/providers/Microsoft.KeyVault/vaults?api-version=2023-07-01"
            ),
            None,
        )
        .await;
    assert_eq!(by_sub["value"].as_array().map(Vec::len), Some(1));

    let (status, body) = env
        .arm(
            Method::GET,
            &format!("/subscriptions/{sub}/resourceGroups/rg-missing/providers/Microsoft.KeyVault/vaults/kv-payroll?api-version=2023-07-01"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "ResourceGroupNotFound");

    let (status, _) = env
        .arm(
            Method::DELETE,
            &format!("{vault_path}?api-version=2023-07-01"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = env
        .arm(
            Method::DELETE,
            &format!("{vault_path}?api-version=2023-07-01"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = env
        .arm(
            Method::GET,
            &format!("{vault_path}?api-version=2023-07-01"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "ResourceNotFound");
    env.double.shutdown().await;
}

fn assignment_names(body: &Value) -> Vec<String> {
    let mut names: Vec<String> = body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|a| a["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn role_assignments_are_inherited_down_the_scope_tree() {
    let env = Env::start().await;
    let user = env.create_user("barbara", json!({})).await;
    let group = env.create_group("vault-readers").await;
    env.add_member(&group, &user).await;

    let (status, body) = env
        .arm(
            Method::PUT,
            "/providers/Microsoft.Management/managementGroups/mg-corp?api-version=2023-04-01",
            Some(json!({"properties": {"displayName": "Corp"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sub = "22222222-2222-4222-8222-222222222222";
    env.create_subscription(sub, Some("mg-corp")).await;
    env.create_resource_group(sub, "rg-app").await;
    let (status, mg) = env
        .arm(
            Method::GET,
            "/providers/Microsoft.Management/managementGroups/mg-corp?api-version=2023-04-01&$expand=children",
            None,
        )
        .await;
    assert_eq!(status, 200, "{mg}");
    assert_eq!(mg["properties"]["details"]["parent"]["name"], env.tenant);
    assert_eq!(mg["properties"]["children"][0]["type"], "/subscriptions");
    assert_eq!(mg["properties"]["children"][0]["name"], sub);
    let rg_scope = format!("/subscriptions/{sub}/resourceGroups/rg-app");
    let vault_scope = format!("{rg_scope}/providers/Microsoft.KeyVault/vaults/kv-app");
    let (status, body) = env
        .arm(
            Method::PUT,
            &format!("{vault_scope}?api-version=2023-07-01"),
            Some(json!({"location": "westeurope", "properties": {
                "tenantId": env.tenant, "sku": {"family": "A", "name": "standard"},
                "enableRbacAuthorization": true}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let rg_assignment = "0b7e0a4c-0000-4000-8000-0000000000a1";
    let mg_assignment = "0b7e0a4c-0000-4000-8000-0000000000a2";
    let (status, body) = env
        .arm(
            Method::PUT,
            &format!("{rg_scope}/providers/Microsoft.Authorization/roleAssignments/{rg_assignment}?api-version=2022-04-01"),
            Some(json!({"properties": {
                "roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{KV_SECRETS_USER}"),
                "principalId": id(&user),
                "principalType": "User"
            }})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["properties"]["scope"], rg_scope);
    assert_eq!(
        body["id"],
        format!("{rg_scope}/providers/Microsoft.Authorization/roleAssignments/{rg_assignment}")
    );
    let (status, body) = env
        .arm(
            Method::PUT,
            &format!("/providers/Microsoft.Management/managementGroups/mg-corp/providers/Microsoft.Authorization/roleAssignments/{mg_assignment}?api-version=2022-04-01"),
            Some(json!({"properties": {
                "roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{READER}"),
                "principalId": id(&group),
                "principalType": "Group"
            }})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // At the vault: both are inherited (RG and management group above it).
    let list = |scope: &str, filter: Option<&str>| {
        let mut url = format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01"
        );
        if let Some(f) = filter {
            url.push_str("&$filter=");
            url.push_str(&f.replace(' ', "%20"));
        }
        url
    };
    let (items, _) = all_pages(&env, &list(&vault_scope, None), false).await;
    let mut names: Vec<String> = items
        .iter()
        .filter_map(|a| a["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    assert_eq!(names, vec![rg_assignment, mg_assignment]);

    // At the subscription: atScope() keeps at-and-above only; no filter adds the ones below.
    let (_, body) = env
        .arm(
            Method::GET,
            &list(&format!("/subscriptions/{sub}"), Some("atScope()")),
            None,
        )
        .await;
    assert_eq!(assignment_names(&body), vec![mg_assignment]);
    let (items, _) = all_pages(&env, &list(&format!("/subscriptions/{sub}"), None), false).await;
    assert_eq!(items.len(), 2);

    // assignedTo() follows group membership; principalId eq does not.
    let (_, body) = env
        .arm(
            Method::GET,
            &list(&vault_scope, Some(&format!("assignedTo('{}')", id(&user)))),
            None,
        )
        .await;
    assert_eq!(assignment_names(&body), vec![rg_assignment, mg_assignment]);
    let (_, body) = env
        .arm(
            Method::GET,
            &list(
                &vault_scope,
                Some(&format!("principalId eq '{}'", id(&user))),
            ),
            None,
        )
        .await;
    assert_eq!(assignment_names(&body), vec![rg_assignment]);

    // By full id.
    let full_id =
        format!("{rg_scope}/providers/Microsoft.Authorization/roleAssignments/{rg_assignment}");
    let (status, body) = env
        .arm(
            Method::GET,
            &format!("{full_id}?api-version=2022-04-01"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["properties"]["principalId"], user["id"]);

    // Validation as ARM does it.
    let (status, body) = env
        .arm(
            Method::PUT,
            &format!("{rg_scope}/providers/Microsoft.Authorization/roleAssignments/0b7e0a4c-0000-4000-8000-0000000000a3?api-version=2022-04-01"),
            Some(json!({"properties": {
                "roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{KV_SECRETS_USER}"),
                "principalId": id(&user)
            }})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "RoleAssignmentExists");
    let (status, body) = env
        .arm(
            Method::PUT,
            &format!("{rg_scope}/providers/Microsoft.Authorization/roleAssignments/0b7e0a4c-0000-4000-8000-0000000000a4?api-version=2022-04-01"),
            Some(json!({"properties": {
                "roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/99999999-9999-4999-8999-999999999999",
                "principalId": id(&user)
            }})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "RoleDefinitionDoesNotExist");
    let (status, body) = env
        .arm(
            Method::PUT,
            &format!("{rg_scope}/providers/Microsoft.Authorization/roleAssignments/0b7e0a4c-0000-4000-8000-0000000000a5?api-version=2022-04-01"),
            Some(json!({"properties": {
                "roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{READER}"),
                "principalId": "12345678-0000-4000-8000-000000000000"
            }})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "PrincipalNotFound");
    let (status, body) = env
        .arm(
            Method::GET,
            &list(&rg_scope, None).replace("2022-04-01", "2015-07-01"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "InvalidApiVersionParameter");

    let (status, _) = env
        .arm(
            Method::DELETE,
            &format!("{full_id}?api-version=2022-04-01"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = env
        .arm(
            Method::DELETE,
            &format!("{full_id}?api-version=2022-04-01"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = env
        .arm(
            Method::GET,
            &format!("{full_id}?api-version=2022-04-01"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "RoleAssignmentNotFound");
    env.double.shutdown().await;
}

#[tokio::test]
async fn role_definitions_include_the_real_built_in_roles() {
    let env = Env::start().await;
    let sub = "33333333-3333-4333-8333-333333333333";
    env.create_subscription(sub, None).await;
    let base = format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions");

    let (items, pages) = all_pages(&env, &format!("{base}?api-version=2022-04-01"), false).await;
    assert!(pages > 1, "listed in pages of two");
    let kv = items
        .iter()
        .find(|d| d["properties"]["roleName"] == "Key Vault Contributor")
        .expect("Key Vault Contributor is listed");
    assert_eq!(kv["name"], KV_CONTRIBUTOR);
    assert_eq!(
        kv["id"],
        format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{KV_CONTRIBUTOR}")
    );
    assert_eq!(kv["properties"]["type"], "BuiltInRole");
    assert!(kv["properties"]["permissions"][0]["actions"]
        .as_array()
        .expect("actions")
        .contains(&json!("Microsoft.KeyVault/*")));
    assert!(kv["properties"]["permissions"][0]["notActions"]
        .as_array()
        .expect("notActions")
        .contains(&json!(
            "Microsoft.KeyVault/locations/deletedVaults/purge/action"
        )));

    let (status, body) = env
        .arm(
            Method::GET,
            &format!(
                "{base}?api-version=2022-04-01&$filter=roleName%20eq%20'Key%20Vault%20Contributor'"
            ),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["value"].as_array().map(Vec::len), Some(1));
    let (status, body) = env
        .arm(
            Method::GET,
            &format!("{base}/{KV_SECRETS_USER}?api-version=2022-04-01"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["properties"]["roleName"], "Key Vault Secrets User");
    assert_eq!(
        body["properties"]["permissions"][0]["dataActions"],
        json!([
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action"
        ])
    );

    let custom = "5c0e5c0e-0000-4000-8000-00000000c0de";
    let (status, body) = env
        .arm(
            Method::PUT,
            &format!("{base}/{custom}?api-version=2022-04-01"),
            Some(json!({"properties": {
                "roleName": "Vault Rotator",
                "description": "Rotates secrets",
                "type": "CustomRole",
                "assignableScopes": [format!("/subscriptions/{sub}")],
                "permissions": [{"actions": [], "notActions": [],
                    "dataActions": ["Microsoft.KeyVault/vaults/secrets/setSecret/action"],
                    "notDataActions": []}]
            }})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let response = env
        .http
        .get(format!("{}{base}", env.base))
        .bearer_auth(&env.arm_token)
        .query(&[
            ("api-version", "2022-04-01"),
            ("$filter", "type eq 'CustomRole'"),
        ])
        .send()
        .await
        .expect("list");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["value"][0]["properties"]["roleName"], "Vault Rotator");
    let (status, body) = env
        .arm(
            Method::PUT,
            &format!("{base}/5c0e5c0e-0000-4000-8000-00000000c0df?api-version=2022-04-01"),
            Some(json!({"properties": {
                "roleName": "Key Vault Contributor",
                "assignableScopes": [format!("/subscriptions/{sub}")],
                "permissions": [{"actions": ["*/read"]}]
            }})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    env.double.shutdown().await;
}

#[tokio::test]
async fn lists_page_with_absolute_next_links() {
    let env = Env::start().await;
    for i in 0..5 {
        env.create_user(&format!("user{i}"), json!({})).await;
    }
    let (users, pages) = all_pages(&env, "/users", true).await;
    assert_eq!(users.len(), 5);
    assert_eq!(pages, 3);
    let (users, pages) = all_pages(&env, "/users?$top=4", true).await;
    assert_eq!((users.len(), pages), (5, 2));

    let sub = "44444444-4444-4444-8444-444444444444";
    env.create_subscription(sub, None).await;
    for i in 0..5 {
        env.create_resource_group(sub, &format!("rg-{i}")).await;
    }
    let (groups, pages) = all_pages(
        &env,
        &format!("/subscriptions/{sub}/resourcegroups?api-version=2021-04-01"),
        false,
    )
    .await;
    assert_eq!(groups.len(), 5);
    assert_eq!(pages, 3);

    let calls = env.calls().await;
    let followed = calls
        .iter()
        .filter(|c| {
            c["path"] == format!("/subscriptions/{sub}/resourcegroups")
                && c["query"].as_str().is_some_and(|q| {
                    q.contains("skipToken") && q.contains("api-version=2021-04-01")
                })
        })
        .count();
    assert_eq!(followed, 2, "the next links keep api-version: {calls:?}");
    env.double.shutdown().await;
}

#[tokio::test]
async fn injected_faults_answer_429_with_retry_after() {
    let env = Env::start().await;
    let response = env
        .http
        .post(format!("{}/_double/faults", env.base))
        .json(&json!({"path_prefix": "/v1.0/users", "count": 2, "retry_after_seconds": 7}))
        .send()
        .await
        .expect("fault");
    assert_eq!(response.status().as_u16(), 201);

    for _ in 0..2 {
        let response = env
            .send(Some(&env.graph_token), Method::GET, "/v1.0/users", None)
            .await;
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("7")
        );
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "TooManyRequests");
    }
    let (status, _) = env.graph(Method::GET, "/users", None).await;
    assert_eq!(status, 200);
    // Other paths were never affected.
    let (status, _) = env.graph(Method::GET, "/groups", None).await;
    assert_eq!(status, 200);

    let statuses: Vec<u64> = env
        .calls()
        .await
        .iter()
        .filter(|c| c["path"] == "/v1.0/users")
        .filter_map(|c| c["status"].as_u64())
        .collect();
    assert_eq!(statuses, vec![429, 429, 200]);

    let response = env
        .http
        .post(format!("{}/_double/faults", env.base))
        .json(&json!({"path_prefix": "v1.0", "count": 1}))
        .send()
        .await
        .expect("fault");
    assert_eq!(response.status().as_u16(), 400);

    // A refusal in the API's own words, once.
    let response = env
        .http
        .post(format!("{}/_double/faults", env.base))
        .json(&json!({"path_prefix": "/v1.0/groups", "count": 1, "status": 403}))
        .send()
        .await
        .expect("fault");
    assert_eq!(response.status().as_u16(), 201);
    let (status, body) = env.graph(Method::GET, "/groups", None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "Authorization_RequestDenied");
    let (status, _) = env.graph(Method::GET, "/groups", None).await;
    assert_eq!(status, 200);
    env.double.shutdown().await;
}

#[tokio::test]
async fn binary_writes_its_ca_and_prints_ready() {
    use tokio::io::AsyncBufReadExt;

    let dir = std::env::temp_dir().join(format!("azure-double-{}", std::process::id()));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_azure-double"))
        .arg("--port")
        .arg("0")
        .arg("--cert-dir")
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("ready within 30 s")
        .expect("stdout readable")
        .expect("one line");
    let base = line.strip_prefix("ready ").expect("ready line").to_string();
    assert!(base.starts_with("https://127.0.0.1:"), "{line}");

    let ca = std::fs::read_to_string(dir.join("ca.pem")).expect("ca.pem written");
    let http = client_trusting(&ca);
    let (status, body) = token_response(
        &http,
        &base,
        closeout_azure_double::DEFAULT_TENANT_ID,
        closeout_azure_double::DEFAULT_CLIENT_ID,
        closeout_azure_double::DEFAULT_CLIENT_SECRET,
        ARM_SCOPE,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The leaf names localhost too.
    let localhost = base.replace("127.0.0.1", "localhost");
    let response = http
        .get(format!("{localhost}/_double/calls"))
        .send()
        .await
        .expect("localhost is a SAN");
    assert_eq!(response.status().as_u16(), 200);

    child.kill().await.expect("stop the binary");
    let _ = std::fs::remove_dir_all(&dir);
}
