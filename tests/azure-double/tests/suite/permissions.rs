//! What a client may do, as the double answers it: Microsoft Graph's service principal with its
//! application permissions, app role assignments granting them (and refusing what Graph
//! refuses), ARM's `permissions` of the caller from its role assignments, and the configured
//! client present in the directory as an application with a service principal.

use crate::common::{self, id, token_response, Env, GRAPH_SCOPE};
use closeout_azure_double::DEFAULT_CLIENT_ID;
use reqwest::Method;
use serde_json::{json, Value};

const SUB: &str = "55555555-5555-4555-8555-555555555555";
const USER_READ_ALL: &str = "df021288-bdef-4463-88db-98f22de89214";

#[tokio::test]
async fn app_role_assignments_grant_graph_permissions() {
    let env = Env::start().await;
    let (status, graph) = env
        .graph(
            Method::GET,
            "/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')?$select=id,appId,displayName,appRoles",
            None,
        )
        .await;
    assert_eq!(status, 200, "{graph}");
    assert_eq!(graph["displayName"], "Microsoft Graph");
    let offered: Vec<&str> = graph["appRoles"]
        .as_array()
        .expect("appRoles")
        .iter()
        .filter_map(|r| r["value"].as_str())
        .collect();
    assert!(offered.contains(&"User.Read.All"), "{offered:?}");
    let (status, client) = env
        .graph(
            Method::GET,
            &format!("/servicePrincipals(appId='{DEFAULT_CLIENT_ID}')"),
            None,
        )
        .await;
    assert_eq!(
        status, 200,
        "the configured client is in the directory: {client}"
    );
    let client_path = format!("/servicePrincipals/{}/appRoleAssignments", id(&client));
    let grant = |role: &str| json!({"principalId": id(&client), "resourceId": id(&graph), "appRoleId": role});

    let (status, assignment) = env
        .graph(Method::POST, &client_path, Some(grant(USER_READ_ALL)))
        .await;
    assert_eq!(status, 201, "{assignment}");
    assert_eq!(assignment["resourceDisplayName"], "Microsoft Graph");
    assert_eq!(assignment["principalType"], "ServicePrincipal");
    // Twice, or a role Graph does not offer: refused.
    let (status, body) = env
        .graph(Method::POST, &client_path, Some(grant(USER_READ_ALL)))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = env
        .graph(
            Method::POST,
            &client_path,
            Some(grant("11111111-1111-4111-8111-111111111111")),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not found on application"));
    // Listed from both ends, by the alternate key too.
    let (_, listed) = env
        .graph(
            Method::GET,
            &format!("/servicePrincipals(appId='{DEFAULT_CLIENT_ID}')/appRoleAssignments"),
            None,
        )
        .await;
    assert_eq!(listed["value"][0]["appRoleId"], USER_READ_ALL);
    let (_, assigned_to) = env
        .graph(
            Method::GET,
            &format!("/servicePrincipals/{}/appRoleAssignedTo", id(&graph)),
            None,
        )
        .await;
    assert_eq!(assigned_to["value"][0]["principalId"], id(&client));
    // Revoked.
    let (status, _) = env
        .graph(
            Method::DELETE,
            &format!("{client_path}/{}", id(&assignment)),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, listed) = env.graph(Method::GET, &client_path, None).await;
    assert_eq!(listed["value"], json!([]));
    let (status, _) = env
        .graph(
            Method::DELETE,
            &format!("{client_path}/{}", id(&assignment)),
            None,
        )
        .await;
    assert_eq!(status, 404);
}

fn actions(blocks: &Value) -> Vec<String> {
    blocks["value"]
        .as_array()
        .expect("value")
        .iter()
        .flat_map(|b| b["actions"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn the_callers_permissions_come_from_its_role_assignments() {
    let env = Env::start().await;
    env.create_subscription(SUB, None).await;
    env.create_resource_group(SUB, "rg").await;
    let path = |scope: &str| {
        format!("{scope}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01")
    };
    let (status, none) = env
        .arm(Method::GET, &path(&format!("/subscriptions/{SUB}")), None)
        .await;
    assert_eq!(status, 200, "{none}");
    assert_eq!(none["value"], json!([]), "a new client holds nothing");

    let (_, client) = env
        .graph(
            Method::GET,
            &format!("/servicePrincipals(appId='{DEFAULT_CLIENT_ID}')"),
            None,
        )
        .await;
    // Reader on the resource group through a group the client is in.
    let group = env.create_group("automation").await;
    env.add_member(&group, &client).await;
    let (status, body) = env
        .arm(
            Method::PUT,
            &format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/0f6c1d2e-6d0b-4a1e-9d51-6a2f3c4b5d6e?api-version=2022-04-01"),
            Some(json!({"properties": {
                "roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7",
                "principalId": id(&group), "principalType": "Group"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, at_sub) = env
        .arm(Method::GET, &path(&format!("/subscriptions/{SUB}")), None)
        .await;
    assert!(
        actions(&at_sub).is_empty(),
        "not above the assignment: {at_sub}"
    );
    let (_, at_rg) = env
        .arm(
            Method::GET,
            &path(&format!("/subscriptions/{SUB}/resourceGroups/rg")),
            None,
        )
        .await;
    assert_eq!(actions(&at_rg), ["*/read"], "{at_rg}");
}

/// Entra accepts a password added to a service principal for client credentials, as it does
/// one added to the application.
#[tokio::test]
async fn a_service_principal_password_signs_in() {
    let env = Env::start().await;
    let (_, app) = env
        .graph(
            Method::POST,
            "/applications",
            Some(json!({"displayName": "sp-secret"})),
        )
        .await;
    let app_id = app["appId"].as_str().expect("appId").to_string();
    let (_, sp) = env
        .graph(
            Method::POST,
            "/servicePrincipals",
            Some(json!({"appId": app_id})),
        )
        .await;
    let (status, password) = env
        .graph(
            Method::POST,
            &format!("/servicePrincipals/{}/addPassword", id(&sp)),
            Some(json!({"passwordCredential": {"displayName": "sp"}})),
        )
        .await;
    assert_eq!(status, 200, "{password}");
    let secret = password["secretText"].as_str().expect("secretText");
    let http = common::client_trusting(env.double.ca_pem());
    let (status, token) =
        token_response(&http, &env.base, &env.tenant, &app_id, secret, GRAPH_SCOPE).await;
    assert_eq!(status, 200, "{token}");
    env.graph(
        Method::POST,
        &format!("/servicePrincipals/{}/removePassword", id(&sp)),
        Some(json!({"keyId": password["keyId"]})),
    )
    .await;
    let (status, refused) =
        token_response(&http, &env.base, &env.tenant, &app_id, secret, GRAPH_SCOPE).await;
    assert_eq!(status, 401, "{refused}");
    assert!(refused["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS7000215"));
}
