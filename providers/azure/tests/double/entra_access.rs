//! Federated people in Entra (issue 17, items 4 and 5), against the double: directory roles
//! (direct and active PIM), PIM eligibility, an owned group, an app-role assignment, a
//! delegated OAuth2 grant and authentication methods are seeded through Graph's own write calls
//! (FIDO2 and Authenticator through the double's control route, as an administrator cannot
//! create them), resolved, removed, and read back through Graph — the leaver's are gone, a
//! colleague's identical ones are untouched. A privileged directory role, held or eligible, is
//! reach to every vault object of the tenant; what cannot be read is a gap.

use crate::common::World;
use closeout_azure::http::Api::{Arm, Graph};
use closeout_azure::AzureProvider;
use closeout_contract::{
    ActionOutcome, ActionParams, ActionRequest, Finding, Identity, IdentityKind, IdentityStatus,
    Provider, Relation, Resolution, ResolveContext, SecretValue, State,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";
const PRIVILEGED_ROLE_ADMINISTRATOR: &str = "e8611ab8-c189-46e8-94e1-60213ab1f814";
const USER_ADMINISTRATOR: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";
const SECURITY_ADMINISTRATOR: &str = "194ae4cb-b126-40b2-bd5b-6091b380977d";
const GROUPS_ADMINISTRATOR: &str = "fdd7a751-b60b-444a-984c-02652fe8fa1c";
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
const DEFAULT_ACCESS: &str = "00000000-0000-0000-0000-000000000000";
const ROLES: &str = "/v1.0/roleManagement/directory";

fn person(id: &str, email: &str) -> Identity {
    Identity {
        id: id.into(),
        email: email.into(),
        name: email.into(),
        kind: IdentityKind::Human,
        status: IdentityStatus::Terminated,
        manager: None,
        department: None,
        role: None,
        location: None,
        employment_type: None,
        tags: Default::default(),
    }
}

async fn resolve(provider: &AzureProvider, who: &Identity) -> Resolution {
    provider
        .resolve(&ResolveContext {
            identity: who.clone(),
            cutoff: None,
        })
        .await
        .expect("resolution")
}

fn of_kind<'a>(r: &'a Resolution, kind: &str) -> Vec<&'a Finding> {
    r.findings.iter().filter(|f| f.kind == kind).collect()
}

async fn execute(provider: &AzureProvider, f: &Finding, verb: &str) -> ActionOutcome {
    provider
        .execute(&ActionRequest {
            idempotency_key: format!("run-1-{}", f.id),
            verb: verb.into(),
            finding: f.clone(),
            params: ActionParams {
                run_id: "run-1".into(),
                ..Default::default()
            },
        })
        .await
        .unwrap_or_else(|e| panic!("{verb} {}: {e}", f.id))
}

/// The `value` of a Graph list (one page is enough here: `$top=999`).
async fn list(w: &World, path: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let body = w
        .call("GET", Graph, &format!("{path}{sep}$top=999"), Value::Null)
        .await;
    body["value"].as_array().cloned().unwrap_or_default()
}

fn by_principal(id: &str) -> String {
    format!("$filter=principalId%20eq%20'{id}'")
}

fn ids(values: &[Value], field: &str) -> Vec<String> {
    let mut out: Vec<String> = values
        .iter()
        .map(|v| v[field].as_str().unwrap_or("").to_string())
        .collect();
    out.sort();
    out
}

/// Everything one person holds in Entra, seeded through Graph's write calls.
struct Holdings {
    direct_role: String,
    group: String,
    app_role: String,
    grant: String,
}

async fn seed_person(w: &World, user: &str, group: &str, app_sp: &str, graph_sp: &str) -> Holdings {
    let direct = w
        .call(
            "POST",
            Graph,
            &format!("{ROLES}/roleAssignments"),
            json!({"principalId": user, "roleDefinitionId": USER_ADMINISTRATOR, "directoryScopeId": "/"}),
        )
        .await;
    for (collection, role) in [
        ("roleEligibilityScheduleRequests", SECURITY_ADMINISTRATOR),
        ("roleAssignmentScheduleRequests", GROUPS_ADMINISTRATOR),
    ] {
        let request = w
            .call(
                "POST",
                Graph,
                &format!("{ROLES}/{collection}"),
                json!({"action": "adminAssign", "principalId": user, "roleDefinitionId": role,
                       "directoryScopeId": "/", "justification": "seeded",
                       "scheduleInfo": {"startDateTime": "2026-01-01T00:00:00Z",
                                        "expiration": {"type": "noExpiration"}}}),
            )
            .await;
        assert_eq!(request["status"], "Provisioned", "{request}");
    }
    w.call(
        "POST",
        Graph,
        &format!("/v1.0/groups/{group}/owners/$ref"),
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{user}")}),
    )
    .await;
    let app_role = w
        .call(
            "POST",
            Graph,
            &format!("/v1.0/users/{user}/appRoleAssignments"),
            json!({"principalId": user, "resourceId": app_sp, "appRoleId": DEFAULT_ACCESS}),
        )
        .await;
    let grant = w
        .call(
            "POST",
            Graph,
            "/v1.0/oauth2PermissionGrants",
            json!({"clientId": app_sp, "consentType": "Principal", "principalId": user,
                   "resourceId": graph_sp, "scope": "User.Read Mail.Read"}),
        )
        .await;
    w.call(
        "POST",
        Graph,
        &format!("/v1.0/users/{user}/authentication/phoneMethods"),
        json!({"phoneNumber": "+1 2065555555", "phoneType": "mobile"}),
    )
    .await;
    let tap = w
        .call(
            "POST",
            Graph,
            &format!("/v1.0/users/{user}/authentication/temporaryAccessPassMethods"),
            json!({"lifetimeInMinutes": 60, "isUsableOnce": true}),
        )
        .await;
    assert!(tap["temporaryAccessPass"]
        .as_str()
        .is_some_and(|p| !p.is_empty()));
    for (collection, body) in [
        (
            "fido2Methods",
            json!({"displayName": "YubiKey 5 NFC", "model": "YubiKey 5 NFC",
                                "aaGuid": "cb69481e-8ff7-4039-93ec-0a2729a154a8", "attestationLevel": "attested"}),
        ),
        (
            "microsoftAuthenticatorMethods",
            json!({"displayName": "Pixel 8", "deviceTag": "SoftwareTokenActivated",
                                                 "phoneAppVersion": "6.2401.0119"}),
        ),
    ] {
        let response = w
            .raw("none")
            .post(format!(
                "{}/_double/users/{user}/authentication/{collection}",
                w.double.base_url()
            ))
            .json(&body)
            .send()
            .await
            .expect("seed a method");
        assert_eq!(response.status().as_u16(), 201, "{collection}");
    }
    Holdings {
        direct_role: direct["id"].as_str().expect("id").to_string(),
        group: group.to_string(),
        app_role: app_role["id"].as_str().expect("id").to_string(),
        grant: grant["id"].as_str().expect("id").to_string(),
    }
}

async fn new_group(w: &World, name: &str) -> String {
    let g = w
        .call(
            "POST",
            Graph,
            "/v1.0/groups",
            json!({"displayName": name, "mailEnabled": false, "mailNickname": name, "securityEnabled": true}),
        )
        .await;
    g["id"].as_str().expect("group id").to_string()
}

/// What `user` holds, read back through Graph: (active roles, eligible roles, app-role
/// assignments, grants, authentication method types).
async fn read_back(
    w: &World,
    user: &str,
) -> (
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
) {
    let roles = list(
        w,
        &format!("{ROLES}/roleAssignments?{}", by_principal(user)),
    )
    .await;
    let eligible = list(
        w,
        &format!("{ROLES}/roleEligibilitySchedules?{}", by_principal(user)),
    )
    .await;
    let app_roles = list(w, &format!("/v1.0/users/{user}/appRoleAssignments")).await;
    let grants = list(
        w,
        &format!("/v1.0/oauth2PermissionGrants?{}", by_principal(user)),
    )
    .await;
    let methods = list(w, &format!("/v1.0/users/{user}/authentication/methods")).await;
    (
        ids(&roles, "roleDefinitionId"),
        ids(&eligible, "roleDefinitionId"),
        ids(&app_roles, "id"),
        ids(&grants, "id"),
        ids(&methods, "@odata.type"),
    )
}

async fn owners(w: &World, group: &str) -> Vec<String> {
    ids(
        &list(w, &format!("/v1.0/groups/{group}/owners")).await,
        "id",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leavers_roles_grants_owned_groups_and_methods_go_and_a_colleagues_stay() {
    let w = World::new("entra-access").await;
    let alice = w.user("alice@example.com", "E2001").await;
    let bob = w.user("bob@example.com", "E2002").await;
    let mgr = w.user("mgr@example.com", "E2003").await;
    w.call(
        "PUT",
        Graph,
        &format!("/v1.0/users/{alice}/manager/$ref"),
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/users/{mgr}")}),
    )
    .await;
    let app = w
        .call(
            "POST",
            Graph,
            "/v1.0/applications",
            json!({"displayName": "payroll"}),
        )
        .await;
    let app_sp = w
        .call(
            "POST",
            Graph,
            "/v1.0/servicePrincipals",
            json!({"appId": app["appId"]}),
        )
        .await["id"]
        .as_str()
        .expect("sp id")
        .to_string();
    let graph_sp = w
        .call(
            "GET",
            Graph,
            &format!("/v1.0/servicePrincipals(appId='{GRAPH_APP_ID}')?$select=id"),
            Value::Null,
        )
        .await["id"]
        .as_str()
        .expect("graph sp")
        .to_string();
    let shared = new_group(&w, "team-shared").await;
    let bobs = new_group(&w, "team-bob").await;
    let a = seed_person(&w, &alice, &shared, &app_sp, &graph_sp).await;
    let b = seed_person(&w, &bob, &bobs, &app_sp, &graph_sp).await;
    // Bob also owns the group Alice owns: he stays its owner.
    w.call(
        "POST",
        Graph,
        &format!("/v1.0/groups/{shared}/owners/$ref"),
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{bob}")}),
    )
    .await;
    let bob_before = read_back(&w, &bob).await;
    let provider = w.provider(None).await;

    let r = resolve(&provider, &person("E2001", "alice@example.com")).await;
    assert!(r.gaps.is_empty(), "{:#?}", r.gaps);
    assert!(
        r.exposures.is_empty(),
        "no privileged role: {:#?}",
        r.exposures
    );
    let roles = of_kind(&r, "directory-role");
    assert_eq!(roles.len(), 2, "{roles:#?}");
    let direct = roles
        .iter()
        .find(|f| f.resource == a.direct_role)
        .expect("the direct role");
    assert_eq!(direct.attr("role"), Some("User Administrator"));
    assert_eq!(direct.attr("removal"), None);
    let pim = roles
        .iter()
        .find(|f| f.resource != a.direct_role)
        .expect("the active PIM role");
    assert_eq!(pim.attr("role"), Some("Groups Administrator"));
    assert_eq!(pim.attr("removal"), Some("schedule-request"));
    let eligible = of_kind(&r, "directory-role-eligibility");
    assert_eq!(eligible.len(), 1);
    assert_eq!(eligible[0].attr("role"), Some("Security Administrator"));
    let owned = of_kind(&r, "owned-group");
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].resource, a.group);
    assert_eq!(owned[0].relation, Relation::Owns);
    let app_roles = of_kind(&r, "app-role-assignment");
    assert_eq!(app_roles.len(), 1);
    assert_eq!(app_roles[0].resource, a.app_role);
    assert_eq!(app_roles[0].attr("resource_name"), Some("payroll"));
    let grants = of_kind(&r, "oauth2-grant");
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].resource, a.grant);
    assert_eq!(grants[0].attr("scope"), Some("User.Read Mail.Read"));
    assert_eq!(grants[0].attr("client_name"), Some("payroll"));
    assert_eq!(grants[0].attr("resource_name"), Some("Microsoft Graph"));
    let mut methods: Vec<&str> = of_kind(&r, "auth-method")
        .iter()
        .map(|f| f.attr("collection").unwrap_or(""))
        .collect();
    methods.sort();
    assert_eq!(
        methods,
        [
            "fido2Methods",
            "microsoftAuthenticatorMethods",
            "phoneMethods",
            "temporaryAccessPassMethods"
        ]
    );

    // Act on each with its verb, as the leaver playbook does.
    let acted: Vec<Finding> = r
        .findings
        .iter()
        .filter(|f| {
            [
                "directory-role",
                "directory-role-eligibility",
                "owned-group",
                "app-role-assignment",
                "oauth2-grant",
                "auth-method",
            ]
            .contains(&f.kind.as_str())
        })
        .cloned()
        .collect();
    assert_eq!(acted.len(), 10);
    for f in &acted {
        let verb = if f.kind == "owned-group" {
            "reassign-owner"
        } else {
            "remove"
        };
        let outcome = execute(&provider, f, verb).await;
        assert!(!outcome.already_done, "{}: {}", f.id, outcome.detail);
        let expected = if f.kind == "owned-group" {
            State::Reassigned
        } else {
            State::Deleted
        };
        assert_eq!(outcome.state, expected, "{}", f.id);
        let ctx = ResolveContext {
            identity: person("E2001", "alice@example.com"),
            cutoff: None,
        };
        assert_eq!(
            provider.live_state(f, &ctx).await.expect("live state"),
            expected,
            "{}",
            f.id
        );
        // A second run finds it done.
        let again = execute(&provider, f, verb).await;
        assert!(again.already_done, "{}: {}", f.id, again.detail);
    }

    // Read back through Graph: Alice holds nothing of it any more.
    let (roles, eligible, app_roles, grants, methods) = read_back(&w, &alice).await;
    assert!(roles.is_empty(), "{roles:?}");
    assert!(eligible.is_empty(), "{eligible:?}");
    assert!(app_roles.is_empty());
    assert!(grants.is_empty());
    assert_eq!(methods, ["#microsoft.graph.passwordAuthenticationMethod"]);
    let mut expected_owners = vec![bob.clone(), mgr.clone()];
    expected_owners.sort();
    assert_eq!(owners(&w, &shared).await, expected_owners);
    let again = resolve(&provider, &person("E2001", "alice@example.com")).await;
    assert!(
        again
            .findings
            .iter()
            .all(|f| !acted.iter().any(|a| a.id == f.id)),
        "{:#?}",
        again.findings
    );

    // Bob's identical holdings are untouched.
    assert_eq!(read_back(&w, &bob).await, bob_before);
    assert_eq!(bob_before.0.len(), 2);
    assert_eq!(bob_before.1.len(), 1);
    assert_eq!(bob_before.2, std::slice::from_ref(&b.app_role));
    assert_eq!(bob_before.3, std::slice::from_ref(&b.grant));
    assert_eq!(bob_before.4.len(), 5, "{:?}", bob_before.4);
    assert_eq!(owners(&w, &bobs).await, std::slice::from_ref(&bob));
    let rb = resolve(&provider, &person("E2002", "bob@example.com")).await;
    assert!(rb.findings.iter().any(|f| f.resource == b.direct_role));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_privileged_directory_role_held_or_eligible_reaches_every_vault_object() {
    const SUB: &str = "c3c3c3c3-0000-4000-8000-000000000017";
    let w = World::new("tenant-reach").await;
    w.subscription(SUB, "rg").await;
    let vault = w.vault(SUB, "rg", "kv-fin", true, json!([])).await;
    let uri = vault["properties"]["vaultUri"]
        .as_str()
        .expect("uri")
        .to_string();
    w.kv()
        .set_secret(
            &uri,
            "ledger-db",
            &SecretValue::new("seeded".to_string()),
            None,
            &BTreeMap::new(),
        )
        .await
        .expect("seed secret");
    let carol = w.user("carol@example.com", "E3001").await;
    let dave = w.user("dave@example.com", "E3002").await;
    let erin = w.user("erin@example.com", "E3003").await;
    w.call(
        "POST",
        Graph,
        &format!("{ROLES}/roleAssignments"),
        json!({"principalId": carol, "roleDefinitionId": GLOBAL_ADMINISTRATOR, "directoryScopeId": "/"}),
    )
    .await;
    w.call(
        "POST",
        Graph,
        &format!("{ROLES}/roleEligibilityScheduleRequests"),
        json!({"action": "adminAssign", "principalId": dave, "roleDefinitionId": PRIVILEGED_ROLE_ADMINISTRATOR,
               "directoryScopeId": "/", "justification": "on call",
               "scheduleInfo": {"startDateTime": "2026-01-01T00:00:00Z", "expiration": {"type": "noExpiration"}}}),
    )
    .await;
    w.call(
        "POST",
        Graph,
        &format!("{ROLES}/roleAssignments"),
        json!({"principalId": erin, "roleDefinitionId": USER_ADMINISTRATOR, "directoryScopeId": "/"}),
    )
    .await;
    let provider = w.provider(None).await;

    for (who, email, kind, role) in [
        (
            "E3001",
            "carol@example.com",
            "directory-role",
            "Global Administrator",
        ),
        (
            "E3002",
            "dave@example.com",
            "directory-role-eligibility",
            "Privileged Role Administrator",
        ),
    ] {
        let r = resolve(&provider, &person(who, email)).await;
        let tenant = r
            .exposures
            .iter()
            .find(|e| e.scope.starts_with("tenant "))
            .unwrap_or_else(|| panic!("{email}: no tenant exposure in {:#?}", r.exposures));
        assert!(tenant.what.contains(role), "{}", tenant.what);
        assert!(
            tenant.what.contains("every Key Vault secret"),
            "{}",
            tenant.what
        );
        let role_finding = of_kind(&r, kind);
        assert_eq!(role_finding.len(), 1, "{email}");
        assert_eq!(role_finding[0].attr("tenant_reach"), Some("true"));
        let secret = r
            .findings
            .iter()
            .find(|f| f.id == "azure:kv-secret:kv-fin/secrets/ledger-db")
            .unwrap_or_else(|| panic!("{email}: the vault's secret is not in reach"));
        assert_eq!(secret.relation, Relation::CanGrantSelf);
        // The secret's path starts with the role's own: removing the role cuts it off.
        let role_path = &role_finding[0].paths[0];
        assert!(
            secret
                .paths
                .iter()
                .any(|p| p.steps.starts_with(&role_path.steps)),
            "{:#?} vs {role_path:#?}",
            secret.paths
        );
        assert!(r.exposures.iter().any(|e| e.scope == "vault kv-fin"));
    }
    // Global Administrator held by a role-assignable group Gina is in: hers through the
    // membership, which is what closes it (the group keeps the role).
    let gina = w.user("gina@example.com", "E3004").await;
    let tier0 = new_group(&w, "tier0-admins").await;
    w.call(
        "POST",
        Graph,
        &format!("/v1.0/groups/{tier0}/members/$ref"),
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{gina}")}),
    )
    .await;
    w.call(
        "POST",
        Graph,
        &format!("{ROLES}/roleAssignments"),
        json!({"principalId": tier0, "roleDefinitionId": GLOBAL_ADMINISTRATOR, "directoryScopeId": "/"}),
    )
    .await;
    let gina_id = person("E3004", "gina@example.com");
    let r = resolve(&provider, &gina_id).await;
    let via_group = of_kind(&r, "group-directory-role");
    assert_eq!(via_group.len(), 1, "{:#?}", r.findings);
    assert_eq!(via_group[0].attr("group"), Some("tier0-admins"));
    assert!(r.exposures.iter().any(|e| e.scope.starts_with("tenant ")));
    let membership = of_kind(&r, "group-membership");
    assert_eq!(membership.len(), 1);
    let secret = r
        .findings
        .iter()
        .find(|f| f.id == "azure:kv-secret:kv-fin/secrets/ledger-db")
        .expect("reached through the group's role");
    assert!(secret
        .paths
        .iter()
        .any(|p| p.steps.starts_with(&via_group[0].paths[0].steps)
            && p.steps.starts_with(&membership[0].paths[0].steps)));
    let ctx = ResolveContext {
        identity: gina_id.clone(),
        cutoff: None,
    };
    assert_eq!(
        provider.live_state(via_group[0], &ctx).await.expect("live"),
        State::Active
    );
    assert_eq!(
        execute(&provider, membership[0], "remove").await.state,
        State::Deleted
    );
    assert_eq!(
        provider.live_state(via_group[0], &ctx).await.expect("live"),
        State::Deleted
    );
    let after = resolve(&provider, &gina_id).await;
    assert!(after.exposures.is_empty(), "{:#?}", after.exposures);
    assert!(after.findings.iter().all(|f| !f.kind.starts_with("kv-")));
    // The group keeps its role.
    let kept = list(
        &w,
        &format!("{ROLES}/roleAssignments?{}", by_principal(&tier0)),
    )
    .await;
    assert_eq!(kept.len(), 1);

    // A role that does not reach the tenant opens nothing.
    let r = resolve(&provider, &person("E3003", "erin@example.com")).await;
    assert!(r.exposures.is_empty(), "{:#?}", r.exposures);
    assert!(r.findings.iter().all(|f| !f.kind.starts_with("kv-")));
    assert_eq!(of_kind(&r, "directory-role")[0].attr("tenant_reach"), None);
    let _ = Arm;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_role_listing_is_a_gap_and_an_owner_without_manager_stays_open() {
    let w = World::new("entra-gap").await;
    let frank = w.user("frank@example.com", "E4001").await;
    let group = new_group(&w, "frank-team").await;
    w.call(
        "POST",
        Graph,
        &format!("/v1.0/groups/{group}/owners/$ref"),
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{frank}")}),
    )
    .await;
    let provider = w.provider(None).await;
    // Role management refuses the caller (403, as without RoleManagement.Read.Directory).
    let fault = w
        .raw("none")
        .post(format!("{}/_double/faults", w.double.base_url()))
        .json(
            &json!({"path_prefix": "/v1.0/roleManagement/directory/roleEligibilitySchedules",
                      "count": 1, "status": 403}),
        )
        .send()
        .await
        .expect("fault");
    assert_eq!(fault.status().as_u16(), 201);
    let r = resolve(&provider, &person("E4001", "frank@example.com")).await;
    let gaps: Vec<&str> = r.gaps.iter().map(|g| g.kind.as_str()).collect();
    assert_eq!(gaps, ["directory-role-eligibility"], "{:#?}", r.gaps);
    assert!(
        r.gaps[0].reason.contains("PIM role eligibilities"),
        "{}",
        r.gaps[0].reason
    );

    // Frank owns a group but has no manager and the plan names no new owner: the action fails
    // and the group stays his (open), never silently closed.
    let owned = of_kind(&r, "owned-group");
    assert_eq!(owned.len(), 1);
    let err = provider
        .execute(&ActionRequest {
            idempotency_key: "run-2-owned".into(),
            verb: "reassign-owner".into(),
            finding: owned[0].clone(),
            params: ActionParams {
                run_id: "run-2".into(),
                ..Default::default()
            },
        })
        .await
        .expect_err("no manager: no new owner");
    assert!(err.to_string().contains("no manager"), "{err}");
    assert_eq!(owners(&w, &group).await, std::slice::from_ref(&frank));
}
