//! The health check `closeout doctor` runs, against the double: the configured client's
//! service principal holds roles (ARM) and app roles (Graph) as an administrator grants them;
//! with all of them nothing is missing, and after one is taken away (through the double's ARM
//! and Graph APIs, as an administrator would) the check names exactly what went.

use crate::common::{roles, World};
use closeout_azure::http::Api::{Arm, Graph};
use closeout_azure::CAPABILITIES;
use closeout_azure_double::DEFAULT_CLIENT_ID;
use closeout_contract::Provider;
use serde_json::{json, Value};

const SUB: &str = "44444444-4444-4444-8444-444444444444";
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Every permission the provider's calls need (resolution and every verb).
fn needs() -> Vec<&'static str> {
    let mut needs: Vec<&'static str> = CAPABILITIES.permissions.iter().map(|p| p.name).collect();
    needs.sort();
    needs.dedup();
    needs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_the_permission_the_client_lost() {
    let w = World::new("health").await;
    w.subscription(SUB, "rg").await;
    let client_sp = w
        .call(
            "GET",
            Graph,
            &format!("/v1.0/servicePrincipals(appId='{DEFAULT_CLIENT_ID}')?$select=id"),
            Value::Null,
        )
        .await["id"]
        .as_str()
        .expect("the configured client has a service principal")
        .to_string();
    let graph = w
        .call(
            "GET",
            Graph,
            &format!("/v1.0/servicePrincipals(appId='{GRAPH_APP_ID}')?$select=id,appRoles"),
            Value::Null,
        )
        .await;
    let graph_id = graph["id"]
        .as_str()
        .expect("Microsoft Graph's service principal");
    let role_id = |value: &str| -> String {
        graph["appRoles"]
            .as_array()
            .expect("appRoles")
            .iter()
            .find(|r| r["value"] == value)
            .and_then(|r| r["id"].as_str())
            .unwrap_or_else(|| panic!("Microsoft Graph offers {value}"))
            .to_string()
    };

    // An administrator grants: Owner and Key Vault Administrator on the subscription (actions
    // and data actions), and the Graph application permissions the playbooks need.
    w.assign(
        &format!("/subscriptions/{SUB}"),
        roles::OWNER,
        &client_sp,
        "ServicePrincipal",
    )
    .await;
    let kv_admin = w
        .assign(
            &format!("/subscriptions/{SUB}"),
            roles::KEY_VAULT_ADMINISTRATOR,
            &client_sp,
            "ServicePrincipal",
        )
        .await;
    let mut granted = Vec::new();
    for permission in [
        "User.ReadWrite.All",
        "GroupMember.ReadWrite.All",
        "Application.ReadWrite.All",
        "Group.ReadWrite.All",
        "RoleManagement.ReadWrite.Directory",
        "AppRoleAssignment.ReadWrite.All",
        "DelegatedPermissionGrant.ReadWrite.All",
        "UserAuthenticationMethod.ReadWrite.All",
    ] {
        let assignment = w
            .call(
                "POST",
                Graph,
                &format!("/v1.0/servicePrincipals/{client_sp}/appRoleAssignments"),
                json!({"principalId": client_sp, "resourceId": graph_id,
                       "appRoleId": role_id(permission)}),
            )
            .await;
        assert_eq!(assignment["resourceDisplayName"], "Microsoft Graph");
        granted.push((permission, assignment["id"].as_str().unwrap().to_string()));
    }
    let provider = w.provider(None).await;
    let needs = needs();

    let health = provider.health(&needs).await.expect("health");
    assert_eq!(health.principal, format!("application {DEFAULT_CLIENT_ID}"));
    assert_eq!(health.missing, Vec::<String>::new(), "{health:#?}");
    assert!(health.unchecked.is_empty(), "{health:#?}");

    // The Graph permission to manage applications is revoked: both the read and the write
    // needs it covered are named, nothing else.
    let (_, application_rw) = granted
        .iter()
        .find(|(p, _)| *p == "Application.ReadWrite.All")
        .expect("granted");
    w.call(
        "DELETE",
        Graph,
        &format!("/v1.0/servicePrincipals/{client_sp}/appRoleAssignments/{application_rw}"),
        Value::Null,
    )
    .await;
    let health = provider.health(&needs).await.expect("health");
    let mut missing = health.missing.clone();
    missing.sort();
    assert_eq!(
        missing,
        [
            "graph:Application.Read.All",
            "graph:Application.ReadWrite.All"
        ],
        "{health:#?}"
    );

    // The Key Vault data role is removed: every data action is named at the subscription; the
    // control-plane actions Owner grants are not.
    w.call(
        "DELETE",
        Arm,
        &format!("{kv_admin}?api-version=2022-04-01"),
        Value::Null,
    )
    .await;
    let health = provider.health(&needs).await.expect("health");
    let at = format!(" at /subscriptions/{SUB}");
    assert!(
        health.missing.contains(&format!(
            "Microsoft.KeyVault/vaults/secrets/setSecret/action{at}"
        )),
        "{health:#?}"
    );
    assert!(
        !health
            .missing
            .iter()
            .any(|m| m.starts_with("Microsoft.Authorization/")),
        "Owner still grants the control plane: {health:#?}"
    );
    w.double.shutdown().await;
}
