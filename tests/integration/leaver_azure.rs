//! The Azure acceptance check, end to end: the demo organisation seeded into the Azure test
//! double through the real ARM, Graph and Key Vault write APIs (nested groups, inherited scopes,
//! Key Vault Contributor on an access-policy vault, a conditioned role-assignment writer on an
//! RBAC vault, direct data roles, access policies, owned applications with secrets and
//! certificates, colleagues sharing the groups), `closeout apply leaver --yes` with the real
//! binary, then everything read back: every path gone, every exposed secret, key and certificate
//! rotated (old versions of secrets and certificates disabled; a key's old version still
//! unwraps what it wrapped), unrelated vaults and colleagues untouched, the
//! account disabled and its sessions revoked, and a second apply changes nothing.

use crate::common;

use common::azure::{AzureWorld, ARM_SCOPE};
use common::{describe, json, stderr, stdout, APPLY_LEAVER, LEAVER};
use serde_json::Value;
use std::collections::BTreeSet;

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn items<'a>(seeded: &'a Value, who: &str, what: &str) -> &'a Vec<Value> {
    seeded[who][what]
        .as_array()
        .unwrap_or_else(|| panic!("seed JSON has no {who}.{what}"))
}

/// Every vault object of `who` as (collection, vault, name, seeded version).
fn objects(seeded: &Value, who: &str) -> Vec<(&'static str, String, String, String)> {
    let mut out = Vec::new();
    for collection in ["secrets", "keys", "certificates"] {
        for o in items(seeded, who, collection) {
            out.push((
                collection,
                str_of(o, "vault").to_string(),
                str_of(o, "name").to_string(),
                str_of(o, "version").to_string(),
            ));
        }
    }
    out
}

async fn snapshot(world: &AzureWorld, seeded: &Value) -> Vec<String> {
    let api = &world.api;
    let mut out = Vec::new();
    for who in ["alice", "colleagues"] {
        for (collection, vault, name, _) in objects(seeded, who) {
            let versions = api.kv_versions(&vault, collection, &name).await;
            out.push(format!("{vault}/{collection}/{name}: {versions:?}"));
        }
        for a in items(seeded, who, "role_assignments") {
            let id = str_of(a, "id");
            let (status, _) = api.arm(&format!("{id}?api-version=2022-04-01")).await;
            out.push(format!("{id}: {status}"));
        }
    }
    for (name, id) in seeded["users"].as_object().expect("users") {
        let id = id.as_str().expect("user id");
        let (_, user) = api
            .graph(&format!(
                "/users/{id}?$select=accountEnabled,signInSessionsValidFromDateTime"
            ))
            .await;
        let groups = api.graph_list(&format!("/users/{id}/memberOf")).await.len();
        out.push(format!("{name}: {user} groups={groups}"));
    }
    for vault in seeded["vaults"].as_object().expect("vaults").values() {
        let (_, v) = api
            .arm(&format!("{}?api-version=2023-07-01", str_of(vault, "id")))
            .await;
        out.push(v["properties"]["accessPolicies"].to_string());
    }
    out
}

/// What `user` holds in Entra beyond groups, read back through Graph, sorted: directory roles
/// (active and eligible), app roles, delegated grants, authentication method types.
async fn entra_holdings(api: &common::azure::Api, user: &str) -> Vec<String> {
    let by = format!("$filter=principalId eq '{user}'");
    let mut out = Vec::new();
    for (what, path, field) in [
        (
            "role",
            format!("/roleManagement/directory/roleAssignments?{by}"),
            "roleDefinitionId",
        ),
        (
            "eligible",
            format!("/roleManagement/directory/roleEligibilitySchedules?{by}"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaver_is_closed_out_and_read_back_from_azure() {
    let world = AzureWorld::new().await;
    let (canary, seeded) = world.seed_demo().await;
    let api = &world.api;
    let alice = str_of(&seeded["users"], "alice.nguyen").to_string();
    let bob = str_of(&seeded["users"], "bob.martin").to_string();
    let carol = str_of(&seeded["users"], "carol.diaz").to_string();
    let carol_groups_before = api.graph_list(&format!("/users/{carol}/memberOf")).await;
    let carol_entra_before = entra_holdings(api, &carol).await;
    assert_eq!(carol_entra_before.len(), 6, "{carol_entra_before:#?}");
    assert!(entra_holdings(api, &alice).await.len() > 6);

    // The plan shows every kind of path, indirect ones included, before anything changes.
    let plan = world
        .closeout(&["plan", "leaver", "--identity", LEAVER, "--format", "json"])
        .await;
    assert_eq!(plan.status.code(), Some(0), "{}", describe(&plan));
    let plan_text = stdout(&plan);
    for kind in [
        "\"user\"",
        "\"sign-in-sessions\"",
        "\"group-membership\"",
        "\"role-assignment\"",
        "\"access-policy\"",
        "\"kv-secret\"",
        "\"kv-key\"",
        "\"kv-certificate\"",
        "\"app-password\"",
        "\"app-certificate\"",
        "\"owned-application\"",
        "can-grant-self",
    ] {
        assert!(plan_text.contains(kind), "plan lacks {kind}:\n{plan_text}");
    }

    // A consumer of each of her keys wrapped a data key under the version seeded: after the
    // rotation that version must still unwrap it (Key Vault keys are rotated, not revoked).
    let data_key = b"0123456789abcdef0123456789abcdef";
    let mut wrapped = Vec::new();
    for (collection, vault, name, version) in objects(&seeded, "alice") {
        if collection != "keys" {
            continue;
        }
        let (status, answer) = api
            .kv_post(
                &vault,
                &format!("keys/{name}/{version}/wrapkey"),
                &serde_json::json!({"alg": "RSA-OAEP-256", "value": b64url(data_key)}),
            )
            .await;
        assert_eq!(status, 200, "wrap with {vault}/{name}: {answer}");
        wrapped.push((vault, name, version, str_of(&answer, "value").to_string()));
    }
    assert!(!wrapped.is_empty(), "the demo gives her keys");

    let started = chrono::Utc::now().timestamp();
    let out = world.closeout(&APPLY_LEAVER).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "apply failed:\n{}",
        describe(&out)
    );
    let report = json(&out);
    assert_eq!(report["status"], "closed", "{report:#}");
    for text in [stdout(&out), stderr(&out), plan_text.clone()] {
        assert!(!text.contains(&canary), "the canary leaked into the output");
    }
    for file in world.state_files() {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&canary),
            "canary in {}",
            file.display()
        );
    }

    // The account is disabled and its sessions revoked.
    let (_, user) = api
        .graph(&format!(
            "/users/{alice}?$select=accountEnabled,signInSessionsValidFromDateTime"
        ))
        .await;
    assert_eq!(user["accountEnabled"], false, "{user}");
    let valid_from =
        chrono::DateTime::parse_from_rfc3339(str_of(&user, "signInSessionsValidFromDateTime"))
            .expect("a timestamp")
            .timestamp();
    assert!(valid_from >= started - 1, "sessions not revoked: {user}");

    // No group membership is left; Carol keeps hers.
    assert!(api
        .graph_list(&format!("/users/{alice}/transitiveMemberOf"))
        .await
        .is_empty());
    assert_eq!(
        api.graph_list(&format!("/users/{carol}/memberOf"))
            .await
            .len(),
        carol_groups_before.len()
    );

    // Entra beyond groups (issue 17): Alice's directory roles (direct, active PIM, eligible),
    // app role, delegated grant and authentication methods are gone, her share of
    // platform-oncall passed to Bob; Carol keeps all of hers.
    let entra = entra_holdings(api, &alice).await;
    assert_eq!(
        entra,
        ["method #microsoft.graph.passwordAuthenticationMethod"]
    );
    assert_eq!(entra_holdings(api, &carol).await, carol_entra_before);
    let oncall = str_of(&seeded["groups"], "platform-oncall");
    let mut expected = vec![bob.clone(), carol.clone()];
    expected.sort();
    assert_eq!(
        api.owners("groups", oncall)
            .await
            .into_iter()
            .collect::<Vec<_>>(),
        expected
    );

    // Alice's own role assignments are deleted; the groups' stay (Carol still uses them), and
    // so do every colleague's.
    for a in items(&seeded, "alice", "role_assignments") {
        let (status, _) = api
            .arm(&format!("{}?api-version=2022-04-01", str_of(a, "id")))
            .await;
        let own = a["principal_id"].as_str() == Some(alice.as_str());
        assert_eq!(status, if own { 404 } else { 200 }, "{a}");
    }
    for a in items(&seeded, "colleagues", "role_assignments") {
        let (status, _) = api
            .arm(&format!("{}?api-version=2022-04-01", str_of(a, "id")))
            .await;
        assert_eq!(status, 200, "a colleague's assignment went: {a}");
    }
    // Nothing reaches her any more: ARM's own assignedTo() filter finds nothing in either
    // subscription.
    for sub in seeded["subscriptions"]
        .as_object()
        .expect("subscriptions")
        .values()
    {
        let reaching = api
            .arm_list(&format!(
                "/subscriptions/{}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=assignedTo('{alice}')",
                sub.as_str().expect("subscription id")
            ))
            .await;
        assert!(reaching.is_empty(), "still assigned: {reaching:#?}");
    }

    // Access policies naming her are gone; a group's and colleagues' stay.
    for p in items(&seeded, "alice", "access_policies")
        .iter()
        .chain(items(&seeded, "colleagues", "access_policies"))
    {
        let vault = &seeded["vaults"][str_of(p, "vault")];
        let (_, v) = api
            .arm(&format!("{}?api-version=2023-07-01", str_of(vault, "id")))
            .await;
        let present = v["properties"]["accessPolicies"]
            .as_array()
            .expect("policies")
            .iter()
            .any(|q| q["objectId"] == p["object_id"]);
        let hers = p["object_id"].as_str() == Some(alice.as_str());
        assert_eq!(present, !hers, "{p}");
    }

    // Every secret, key and certificate she could read, grant herself or owns has a new
    // version made by this run; every older version of a secret or certificate is disabled,
    // a key's stay enabled (they still decrypt and unwrap); colleagues' are untouched.
    for (collection, vault, name, seeded_version) in objects(&seeded, "alice") {
        let versions = api.kv_versions(&vault, collection, &name).await;
        let enabled: Vec<_> = versions.iter().filter(|v| v.1).collect();
        if collection == "keys" {
            assert_eq!(
                enabled.len(),
                versions.len(),
                "{vault}/{collection}/{name}: {versions:?}"
            );
        } else {
            assert_eq!(
                enabled.len(),
                1,
                "{vault}/{collection}/{name}: {versions:?}"
            );
        }
        let newest = versions.iter().max_by_key(|v| v.2).expect("a version");
        assert_ne!(newest.0, seeded_version, "{vault}/{name} not rotated");
        assert!(newest.2 >= started - 1, "{vault}/{name}: {versions:?}");
    }
    // The seeded (now old) version still unwraps what it wrapped; the current version is the
    // new one.
    for (vault, name, version, value) in &wrapped {
        let (status, answer) = api
            .kv_post(
                vault,
                &format!("keys/{name}/{version}/unwrapkey"),
                &serde_json::json!({"alg": "RSA-OAEP-256", "value": value}),
            )
            .await;
        assert_eq!(status, 200, "unwrap with the old {vault}/{name}: {answer}");
        assert_eq!(str_of(&answer, "value"), b64url(data_key), "{vault}/{name}");
        let (status, current) = api.kv(vault, &format!("keys/{name}")).await;
        assert_eq!(status, 200, "{current}");
        let current = current["key"]["kid"].as_str().expect("kid");
        let newest = api
            .kv_versions(vault, "keys", name)
            .await
            .into_iter()
            .max_by_key(|v| v.2)
            .expect("a version");
        assert!(current.ends_with(&format!("/{}", newest.0)), "{current}");
        assert!(
            !current.ends_with(&format!("/{version}")),
            "{vault}/{name} not rotated"
        );
    }
    for (collection, vault, name, seeded_version) in objects(&seeded, "colleagues") {
        if vault == "kv-closeout-ops" {
            continue; // where Closeout publishes rotated app credentials: checked below
        }
        let versions = api.kv_versions(&vault, collection, &name).await;
        let found: BTreeSet<_> = versions.iter().map(|v| v.0.clone()).collect();
        assert_eq!(
            versions.len(),
            1,
            "{vault}/{collection}/{name} changed: {versions:?}"
        );
        assert!(found.contains(&seeded_version) && versions[0].1);
    }

    // Her applications: the old client secrets stop working and the published new ones work;
    // the old certificates are gone; Bob owns them and she does not; co-owners stay.
    for app in items(&seeded, "alice", "applications") {
        let app_id = str_of(app, "app_id");
        let object = str_of(app, "id");
        for old in app["client_secrets"].as_array().expect("client secrets") {
            let old = old.as_str().expect("secret");
            assert!(
                api.token_as(app_id, old, ARM_SCOPE).await.is_err(),
                "an old client secret of {} still works",
                str_of(app, "display_name")
            );
        }
        let (_, creds) = api
            .graph(&format!(
                "/applications/{object}?$select=passwordCredentials,keyCredentials"
            ))
            .await;
        let key_ids: BTreeSet<String> = creds["passwordCredentials"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(creds["keyCredentials"].as_array().into_iter().flatten())
            .filter_map(|c| c["keyId"].as_str().map(String::from))
            .collect();
        for old in app["password_key_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(
                app["key_credential_key_ids"]
                    .as_array()
                    .into_iter()
                    .flatten(),
            )
        {
            assert!(
                !key_ids.contains(old.as_str().expect("key id")),
                "{}: {creds}",
                str_of(app, "display_name")
            );
        }
        let owners: BTreeSet<String> = api
            .graph_list(&format!("/applications/{object}/owners"))
            .await
            .iter()
            .filter_map(|o| o["id"].as_str().map(String::from))
            .collect();
        assert!(!owners.contains(&alice), "{owners:?}");
        assert!(owners.contains(&bob), "{owners:?}");
        for co in app["owners"].as_array().into_iter().flatten() {
            let co = co.as_str().expect("owner id");
            if co != alice {
                assert!(owners.contains(co), "a co-owner was removed: {owners:?}");
            }
        }
    }
    for app in items(&seeded, "colleagues", "applications") {
        for secret in app["client_secrets"].as_array().expect("client secrets") {
            assert!(
                api.token_as(
                    str_of(app, "app_id"),
                    secret.as_str().expect("secret"),
                    ARM_SCOPE
                )
                .await
                .is_ok(),
                "a colleague's client secret stopped working"
            );
        }
    }
    // The rotated client secret of deploy-pipeline was published where the config says, and it
    // works.
    let deploy = items(&seeded, "alice", "applications")
        .iter()
        .find(|a| a["display_name"] == "deploy-pipeline")
        .expect("deploy-pipeline");
    let (status, published) = api
        .kv("kv-closeout-ops", "secrets/app-deploy-pipeline-credential")
        .await;
    assert_eq!(status, 200, "{published}");
    let value = str_of(&published, "value");
    assert!(
        api.token_as(str_of(deploy, "app_id"), value, ARM_SCOPE)
            .await
            .is_ok(),
        "the published client secret does not work"
    );
    // Its new certificate went beside it, with the private key.
    let (status, published) = api
        .kv(
            "kv-closeout-ops",
            "secrets/app-deploy-pipeline-credential-certificate",
        )
        .await;
    assert_eq!(status, 200, "{published}");
    let bundle = str_of(&published, "value");
    assert!(bundle.contains("BEGIN CERTIFICATE") && bundle.contains("PRIVATE KEY"));

    // A second apply changes nothing in Azure and still reports closed.
    let before = snapshot(&world, &seeded).await;
    let again = world.closeout(&APPLY_LEAVER).await;
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let again = json(&again);
    assert_eq!(again["status"], "closed", "{again:#}");
    assert_eq!(again["summary"]["actions_done"], 0, "{again:#}");
    assert_eq!(snapshot(&world, &seeded).await, before);

    // `verify` agrees from live state.
    let verify = world
        .closeout(&["verify", "--identity", LEAVER, "--format", "json"])
        .await;
    assert_eq!(verify.status.code(), Some(0), "{}", describe(&verify));
    assert_eq!(json(&verify)["status"], "closed");
}
