//! Every path to every vault, resolved from a tenant seeded in the Azure double through ARM's and
//! Graph's own write calls: nested groups, an assignment at a management group inherited down to
//! the vault, Key Vault Contributor on an access-policy vault, a conditioned role-assignment
//! writer on an RBAC vault, a direct data role, an access policy for a group.

use crate::common;

use closeout_azure::directory;
use closeout_azure::http::{Api, AzureHttp};
use closeout_azure::keyvault::{Reach, Via};
use closeout_azure_double::{DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID};
use serde_json::{json, Value};

const SUB: &str = "33333333-3333-4333-8333-333333333333";
const KV_CONTRIBUTOR: &str = "f25e0fa2-a7c8-4377-a976-54943a77a395";
const KV_SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
const RBAC_ADMIN: &str = "f58310d9-a9f6-439a-9e8d-f62e7b41a168";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

async fn write(
    azure: &AzureHttp,
    api: Api,
    method: &'static str,
    path: &str,
    body: Value,
) -> Value {
    azure
        .call::<Value>(api, method, path, Some(&body))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
        .unwrap_or(Value::Null)
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

async fn assign(
    azure: &AzureHttp,
    scope: &str,
    n: u32,
    role: &str,
    principal: &str,
    kind: &str,
    condition: Option<&str>,
) {
    let mut properties = json!({
        "roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}"),
        "principalId": principal,
        "principalType": kind,
    });
    if let Some(c) = condition {
        properties["condition"] = json!(c);
        properties["conditionVersion"] = json!("2.0");
    }
    write(
        azure,
        Api::Arm,
        "PUT",
        &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/0b7e0a4c-0000-4000-8000-{n:012}?api-version=2022-04-01"),
        json!({"properties": properties}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_indirect_paths_to_every_vault() {
    let double = common::double().await;
    let azure = common::client(&double, DEFAULT_CLIENT_SECRET);

    // Graph: alice and carol in platform, platform inside engineering.
    let user = |upn: &str| {
        json!({"accountEnabled": true, "displayName": upn, "userPrincipalName": upn,
        "mailNickname": upn.split('@').next().unwrap(), "passwordProfile": {"password": "Not-Printed-1"}})
    };
    let alice = write(
        &azure,
        Api::Graph,
        "POST",
        "/v1.0/users",
        user("alice@example.com"),
    )
    .await;
    let carol = write(
        &azure,
        Api::Graph,
        "POST",
        "/v1.0/users",
        user("carol@example.com"),
    )
    .await;
    let group = |name: &str| json!({"displayName": name, "mailEnabled": false, "mailNickname": name, "securityEnabled": true});
    let platform = write(
        &azure,
        Api::Graph,
        "POST",
        "/v1.0/groups",
        group("platform"),
    )
    .await;
    let engineering = write(
        &azure,
        Api::Graph,
        "POST",
        "/v1.0/groups",
        group("engineering"),
    )
    .await;
    let reference = |v: &Value| json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", id(v))});
    for (g, m) in [
        (&platform, &alice),
        (&platform, &carol),
        (&engineering, &platform),
    ] {
        write(
            &azure,
            Api::Graph,
            "POST",
            &format!("/v1.0/groups/{}/members/$ref", id(g)),
            reference(m),
        )
        .await;
    }

    // ARM: root > mg-platform > subscription > rg-secrets (kv-ap, kv-rbac), rg-other (kv-other).
    let mg = "/providers/Microsoft.Management/managementGroups/mg-platform";
    write(
        &azure,
        Api::Arm,
        "PUT",
        &format!("{mg}?api-version=2023-04-01"),
        json!({"properties": {"displayName": "Platform"}}),
    )
    .await;
    write(
        &azure,
        Api::Arm,
        "PUT",
        &format!("/providers/Microsoft.Subscription/aliases/alias-{SUB}?api-version=2021-10-01"),
        json!({"properties": {"displayName": "prod", "workload": "Production", "billingScope": "/billingAccounts/x",
               "subscriptionId": SUB, "additionalProperties": {"managementGroupId": mg}}}),
    )
    .await;
    for rg in ["rg-secrets", "rg-other"] {
        write(
            &azure,
            Api::Arm,
            "PUT",
            &format!("/subscriptions/{SUB}/resourcegroups/{rg}?api-version=2021-04-01"),
            json!({"location": "westeurope"}),
        )
        .await;
    }
    let vault = |rg: &str, name: &str| {
        format!(
            "/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}"
        )
    };
    let (kv_ap, kv_rbac, kv_other) = (
        vault("rg-secrets", "kv-ap"),
        vault("rg-secrets", "kv-rbac"),
        vault("rg-other", "kv-other"),
    );
    let sku = json!({"family": "A", "name": "standard"});
    write(&azure, Api::Arm, "PUT", &format!("{kv_ap}?api-version=2023-07-01"), json!({"location": "westeurope", "properties": {
        "tenantId": DEFAULT_TENANT_ID, "sku": sku, "accessPolicies": [
            {"tenantId": DEFAULT_TENANT_ID, "objectId": id(&engineering), "permissions": {"secrets": ["get", "list"]}},
            {"tenantId": DEFAULT_TENANT_ID, "objectId": id(&carol), "permissions": {"keys": ["all"]}}
        ]}})).await;
    write(
        &azure,
        Api::Arm,
        "PUT",
        &format!("{kv_rbac}?api-version=2023-07-01"),
        json!({"location": "westeurope", "properties": {
        "tenantId": DEFAULT_TENANT_ID, "sku": sku, "enableRbacAuthorization": true}}),
    )
    .await;
    write(
        &azure,
        Api::Arm,
        "PUT",
        &format!("{kv_other}?api-version=2023-07-01"),
        json!({"location": "westeurope", "properties": {
        "tenantId": DEFAULT_TENANT_ID, "sku": sku, "accessPolicies": []}}),
    )
    .await;

    let only_kv_roles = format!("((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/write'}})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{KV_SECRETS_USER}}}))");
    assign(
        &azure,
        &format!("/subscriptions/{SUB}/resourceGroups/rg-secrets"),
        1,
        KV_CONTRIBUTOR,
        &id(&engineering),
        "Group",
        None,
    )
    .await;
    assign(
        &azure,
        mg,
        2,
        RBAC_ADMIN,
        &id(&platform),
        "Group",
        Some(&only_kv_roles),
    )
    .await;
    assign(
        &azure,
        &kv_rbac,
        3,
        KV_SECRETS_USER,
        &id(&alice),
        "User",
        None,
    )
    .await;
    assign(
        &azure,
        &format!("/subscriptions/{SUB}"),
        4,
        READER,
        &id(&alice),
        "User",
        None,
    )
    .await;

    // Resolve.
    let (user, _) = directory::find_user(
        &azure,
        &closeout_contract::Identity {
            id: "E1".into(),
            email: "alice@example.com".into(),
            name: "Alice".into(),
            kind: closeout_contract::IdentityKind::Human,
            status: closeout_contract::IdentityStatus::Terminated,
            manager: None,
            department: None,
            role: None,
            location: None,
            employment_type: None,
            tags: Default::default(),
        },
        &[closeout_azure::UserMatch::Upn],
    )
    .await
    .unwrap()
    .expect("alice is found");
    let principals = directory::principals(&azure, &user).await.unwrap();
    assert_eq!(principals.all.len(), 3, "{principals:#?}");
    let eng = principals.get(&id(&engineering)).unwrap();
    assert_eq!(
        eng.via_membership.as_ref().map(|v| v.1.as_str()),
        Some("platform")
    );

    let paths = closeout_azure::arm::key_vault_paths(&azure, &principals)
        .await
        .unwrap();
    let by_vault = |v: &str| {
        paths
            .iter()
            .find(|(vault, _)| vault.id.eq_ignore_ascii_case(v))
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    };
    assert!(by_vault(&kv_other).is_empty());

    let ap = by_vault(&kv_ap);
    assert_eq!(ap.len(), 2, "{ap:#?}");
    let policy = ap.iter().find(|a| a.reach == Reach::CanRead).unwrap();
    assert_eq!(policy.principal.object_id, id(&engineering));
    assert!(matches!(policy.via, Via::AccessPolicy { .. }));
    let grant = ap.iter().find(|a| a.reach == Reach::CanGrantSelf).unwrap();
    assert!(matches!(&grant.via, Via::Assignment { role, .. } if role == "Key Vault Contributor"));
    assert!(
        grant.rule.contains("Microsoft.KeyVault/vaults/write"),
        "{}",
        grant.rule
    );

    let rbac = by_vault(&kv_rbac);
    assert_eq!(rbac.len(), 3, "{rbac:#?}");
    let read = rbac.iter().find(|a| a.reach == Reach::CanRead).unwrap();
    assert!(matches!(&read.via, Via::Assignment { role, .. } if role == "Key Vault Secrets User"));
    // Key Vault Contributor may write the RBAC vault too: turn RBAC off, add itself a policy.
    let switch = rbac
        .iter()
        .find(|a| matches!(&a.via, Via::Assignment { role, .. } if role == "Key Vault Contributor"))
        .unwrap();
    assert_eq!(switch.reach, Reach::CanGrantSelf);
    assert!(
        switch.rule.contains("enableRbacAuthorization off"),
        "{}",
        switch.rule
    );
    let grant = rbac
        .iter()
        .find(|a| {
            a.reach == Reach::CanGrantSelf
                && matches!(&a.via, Via::Assignment { role, .. } if role != "Key Vault Contributor")
        })
        .unwrap();
    assert!(
        matches!(&grant.via, Via::Assignment { scope, .. } if scope.eq_ignore_ascii_case(mg)),
        "{grant:#?}"
    );
    assert!(
        grant.rule.contains("Key Vault Secrets User"),
        "{}",
        grant.rule
    );
    assert_eq!(
        grant
            .principal
            .via_membership
            .as_ref()
            .map(|v| v.1.as_str()),
        Some("platform")
    );
    double.shutdown().await;
}
