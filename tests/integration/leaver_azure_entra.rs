//! Issue 17 for Entra, end to end through the real binary against the Azure test double: a
//! leaver who is a Global Administrator, eligible (PIM) for Privileged Role Administrator and
//! active (PIM) User Administrator, owns a group, holds an app role, consented a delegated grant
//! and registered a phone, a temporary access pass and a FIDO2 key — all seeded through Graph's
//! write calls (the FIDO2 key through the double's seed route). The plan shows the tenant-wide
//! exposure; `apply leaver` removes everything and hands the group to her HR manager; Graph
//! then shows none of it, and a colleague's identical grants are untouched. A role-management
//! listing refused with 403 keeps the run open (exit 3) with the reason.

use crate::common;

use common::azure::{AzureWorld, GRAPH_SCOPE};
use common::{describe, json, stdout};
use serde_json::{json, Value};

const LEAVER: &str = "E1001";
const ROLES: &str = "roleManagement/directory";
const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";
const PRIVILEGED_ROLE_ADMINISTRATOR: &str = "e8611ab8-c189-46e8-94e1-60213ab1f814";
const USER_ADMINISTRATOR: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";
const DEFAULT_ACCESS: &str = "00000000-0000-0000-0000-000000000000";
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

async fn post(world: &AzureWorld, path: &str, body: Value) -> Value {
    world
        .api
        .write(
            GRAPH_SCOPE,
            "POST",
            &format!("{}/v1.0/{path}", world.double.base_url()),
            &body,
        )
        .await
}

fn ref_to(id: &str) -> Value {
    json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}")})
}

/// Grants shared by the leaver and her colleague: the PIM eligibility, the active PIM role,
/// the app role, the delegated grant and the authentication methods.
async fn seed_common(world: &AzureWorld, user: &str, app_sp: &str, graph_sp: &str) {
    for (collection, role) in [
        (
            "roleEligibilityScheduleRequests",
            PRIVILEGED_ROLE_ADMINISTRATOR,
        ),
        ("roleAssignmentScheduleRequests", USER_ADMINISTRATOR),
    ] {
        post(
            world,
            &format!("{ROLES}/{collection}"),
            json!({"action": "adminAssign", "principalId": user, "roleDefinitionId": role,
                   "directoryScopeId": "/", "justification": "on call",
                   "scheduleInfo": {"startDateTime": "2026-01-01T00:00:00Z",
                                    "expiration": {"type": "noExpiration"}}}),
        )
        .await;
    }
    post(
        world,
        &format!("users/{user}/appRoleAssignments"),
        json!({"principalId": user, "resourceId": app_sp, "appRoleId": DEFAULT_ACCESS}),
    )
    .await;
    post(
        world,
        "oauth2PermissionGrants",
        json!({"clientId": app_sp, "consentType": "Principal", "principalId": user,
               "resourceId": graph_sp, "scope": "User.Read Files.Read.All"}),
    )
    .await;
    post(
        world,
        &format!("users/{user}/authentication/phoneMethods"),
        json!({"phoneNumber": "+44 7700900123", "phoneType": "mobile"}),
    )
    .await;
    post(
        world,
        &format!("users/{user}/authentication/temporaryAccessPassMethods"),
        json!({"lifetimeInMinutes": 480}),
    )
    .await;
    let (status, _) = world
        .api
        .send(
            GRAPH_SCOPE,
            "POST",
            &format!(
                "{}/_double/users/{user}/authentication/fido2Methods",
                world.double.base_url()
            ),
            Some(
                &json!({"displayName": "YubiKey 5C", "model": "YubiKey 5C NFC",
                         "aaGuid": "2fc0579f-8113-47ea-b116-bb5a8db9202a"}),
            ),
        )
        .await;
    assert_eq!(status, 201);
}

/// What `user` holds in Entra, read back through Graph, as sorted strings.
async fn holdings(world: &AzureWorld, user: &str) -> Vec<String> {
    let api = &world.api;
    let by = format!("$filter=principalId eq '{user}'");
    let mut out = Vec::new();
    for (what, path, field) in [
        (
            "role",
            format!("/{ROLES}/roleAssignments?{by}"),
            "roleDefinitionId",
        ),
        (
            "eligible",
            format!("/{ROLES}/roleEligibilitySchedules?{by}"),
            "roleDefinitionId",
        ),
        (
            "app-role",
            format!("/users/{user}/appRoleAssignments"),
            "resourceId",
        ),
        ("grant", format!("/oauth2PermissionGrants?{by}"), "scope"),
        (
            "method",
            format!("/users/{user}/authentication/methods"),
            "@odata.type",
        ),
    ] {
        for v in api.graph_list(&path).await {
            out.push(format!("{what} {}", v[field].as_str().unwrap_or("?")));
        }
    }
    out.sort();
    out
}

struct Seeded {
    alice: String,
    bob: String,
    carol: String,
    group: String,
}

async fn seed(world: &AzureWorld) -> Seeded {
    let api = &world.api;
    let alice = api.create_user("alice.nguyen@example.com", LEAVER).await;
    // Her manager in the HR export (E1000) and a colleague (E1002).
    let bob = api.create_user("bob.martin@example.com", "E1000").await;
    let carol = api.create_user("carol.diaz@example.com", "E1002").await;
    let (_, app_sp) = api.create_application("expenses", &[]).await;
    let graph_sp = api
        .graph(&format!(
            "/servicePrincipals(appId='{GRAPH_APP_ID}')?$select=id"
        ))
        .await
        .1["id"]
        .as_str()
        .expect("graph sp")
        .to_string();
    post(
        world,
        &format!("{ROLES}/roleAssignments"),
        json!({"principalId": alice, "roleDefinitionId": GLOBAL_ADMINISTRATOR, "directoryScopeId": "/"}),
    )
    .await;
    seed_common(world, &alice, &app_sp, &graph_sp).await;
    seed_common(world, &carol, &app_sp, &graph_sp).await;
    let group = api.create_group("platform-oncall-owners").await;
    post(
        world,
        &format!("groups/{group}/owners/$ref"),
        ref_to(&alice),
    )
    .await;
    post(
        world,
        &format!("groups/{group}/owners/$ref"),
        ref_to(&carol),
    )
    .await;
    Seeded {
        alice,
        bob,
        carol,
        group,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_administrators_entra_access_is_removed_and_her_colleagues_stays() {
    let world = AzureWorld::new().await;
    let s = seed(&world).await;
    let carol_before = holdings(&world, &s.carol).await;
    assert_eq!(carol_before.len(), 8, "{carol_before:#?}");

    let plan = world
        .closeout(&["plan", "leaver", "--identity", LEAVER])
        .await;
    assert_eq!(plan.status.code(), Some(0), "{}", describe(&plan));
    let text = stdout(&plan);
    assert!(
        text.contains("EXPOSURE [azure] tenant") && text.contains("Global Administrator"),
        "{text}"
    );
    assert!(
        text.contains("eligible for Privileged Role Administrator"),
        "{text}"
    );

    let out = world
        .closeout(&[
            "apply",
            "leaver",
            "--identity",
            LEAVER,
            "--yes",
            "--format",
            "json",
        ])
        .await;
    // Everything is removed, and one thing stays unknown: the tenant's application credentials,
    // to any of which a Global Administrator could have added one of her own.
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let report = json(&out);
    assert_eq!(report["status"], "open", "{report:#}");
    let open: Vec<&str> = report["open"]
        .as_array()
        .expect("open")
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert_eq!(open.len(), 1, "{report:#}");
    assert!(
        open[0].starts_with("azure:unverified:tenant-application-credentials:"),
        "{report:#}"
    );

    // Only the password method is left (it cannot be deleted; the user is disabled).
    assert_eq!(
        holdings(&world, &s.alice).await,
        ["method #microsoft.graph.passwordAuthenticationMethod"]
    );
    let mut owners: Vec<String> = world
        .api
        .owners("groups", &s.group)
        .await
        .into_iter()
        .collect();
    owners.sort();
    let mut expected = vec![s.bob.clone(), s.carol.clone()];
    expected.sort();
    assert_eq!(owners, expected, "the group passed to her manager");
    assert_eq!(holdings(&world, &s.carol).await, carol_before);

    // Her role is gone now, but what she could have added before is not known: a second apply
    // still says open, carrying the first run's gap.
    let second = world
        .closeout(&[
            "apply",
            "leaver",
            "--identity",
            LEAVER,
            "--yes",
            "--format",
            "json",
        ])
        .await;
    assert_eq!(second.status.code(), Some(3), "{}", describe(&second));
    assert!(
        json(&second)
            .to_string()
            .contains("found by an earlier run of this identity"),
        "{}",
        describe(&second)
    );

    // The site accepts that gap by name, having reviewed its application credentials: the next
    // apply has nothing left to do and says closed, listing the accepted gap.
    let config = std::fs::read_to_string(world.config_path()).expect("read the config");
    std::fs::write(
        world.config_path(),
        format!(
            "{config}\n[[accept_unverified]]\nprovider = \"azure\"\nkind = \"tenant-application-credentials\"\nreason = \"application credentials are reviewed by the identity team\"\n"
        ),
    )
    .expect("write the config");
    let again = world
        .closeout(&[
            "apply",
            "leaver",
            "--identity",
            LEAVER,
            "--yes",
            "--format",
            "json",
        ])
        .await;
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let report = json(&again);
    assert_eq!(report["status"], "closed", "{report:#}");
    assert!(
        report
            .to_string()
            .contains("application credentials are reviewed"),
        "the accepted gap is not listed: {report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_role_management_listing_keeps_the_run_open() {
    let world = AzureWorld::new().await;
    let s = seed(&world).await;
    let (status, _) = world
        .api
        .send(
            GRAPH_SCOPE,
            "POST",
            &format!("{}/_double/faults", world.double.base_url()),
            Some(
                &json!({"path_prefix": format!("/v1.0/{ROLES}/roleEligibilitySchedules"),
                         "count": 1000, "status": 403}),
            ),
        )
        .await;
    assert_eq!(status, 201);
    let out = world
        .closeout(&[
            "apply",
            "leaver",
            "--identity",
            LEAVER,
            "--yes",
            "--format",
            "json",
        ])
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let report = json(&out);
    assert_eq!(report["status"], "open", "{report:#}");
    let open = report["open"].as_array().expect("open");
    let gap = open
        .iter()
        .find(|o| o["id"] == format!("azure:unverified:directory-role-eligibility:{}", s.alice))
        .unwrap_or_else(|| panic!("no eligibility gap in {report:#}"));
    assert!(
        gap["reason"]
            .as_str()
            .is_some_and(|r| r.contains("PIM role eligibilities")
                && r.contains("Authorization_RequestDenied")),
        "{gap:#}"
    );
    // What could be read was still acted on: the Global Administrator role is gone.
    let roles = world
        .api
        .graph_list(&format!(
            "/{ROLES}/roleAssignments?$filter=principalId eq '{}'",
            s.alice
        ))
        .await;
    assert!(
        roles
            .iter()
            .all(|r| r["roleDefinitionId"] != GLOBAL_ADMINISTRATOR),
        "{roles:#?}"
    );
}
