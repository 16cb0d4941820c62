//! The mover acceptance check against the Azure test double, end to end with the real binary.
//!
//! Alex (E1001) moves from Engineering to Finance. Seeded through the real Graph, ARM and Key
//! Vault write APIs: Entra groups `All Staff` (the baseline rule: shared by the old and the new
//! role), `Engineering` (the old role) and `Legacy` (no rule); Alex's own Reader assignment on
//! `rg-legacy` and an access policy naming Alex on vault `kv-legacy` (role creep, no rule names
//! them; `kv-legacy` also has a policy for `Engineering`, so every path of Alex to its secret
//! passes through removed access); `kv-eng` (RBAC) readable only through `Engineering`,
//! `kv-staff` (RBAC) through `All Staff` and `Engineering`, `kv-fin` (RBAC) through `Engineering`
//! and `Finance`, a secret in `kv-eng` tagged as Alex's own; the Finance rule grants group `Finance` and Reader on
//! `rg-finance`. Carol, a colleague in Engineering, keeps everything; an Entra user no identity
//! claims is reported by reconcile.
//!
//! Everything is read back from the providers: nothing unjustified remains, the shared
//! membership was never touched, the new entitlements exist, the sign-in sessions were revoked,
//! the secrets reachable only through removed access were rotated (the shared and owned ones
//! were not),
//! and the audit log shows every removal before any grant.

use crate::common;

use common::azure::{Api, AzureWorld};
use common::{describe, json, stdout};
use serde_json::Value;
use std::collections::BTreeSet;

const MOVER: &str = "E1001";
const COLLEAGUE: &str = "E1002";
const SUB: &str = "5d2c6f0e-1a7b-4c3d-9e8f-0000000a2001";
/// Built-in role GUIDs.
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";

const HR: &str = "id,email,name,kind,status,manager,department,role,location,employment_type,tags
E1001,alex.rivera@example.com,Alex Rivera,human,active,,Engineering,Engineer,London,employee,
E1002,carol.diaz@example.com,Carol Diaz,human,active,,Engineering,Engineer,Lisbon,employee,
";

/// What the seed made, by name.
struct Seeded {
    alex: String,
    carol: String,
    ghost: String,
    all_staff: String,
    engineering: String,
    legacy: String,
    finance: String,
    /// Alex's own Reader assignment on rg-legacy (role creep).
    creep_assignment: String,
    /// Engineering's Key Vault Secrets User on kv-eng (a group's: stays).
    eng_vault_assignment: String,
    kv_legacy_id: String,
    /// (vault, secret, seeded version)
    eng_secret: (String, String, String),
    staff_secret: (String, String, String),
    /// In kv-fin: readable today only through Engineering, after the move through Finance.
    forecast_secret: (String, String, String),
    /// In kv-eng, tagged as Alex's own.
    owned_secret: (String, String, String),
    legacy_secret: (String, String, String),
}

fn rg(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{name}")
}

async fn seed(api: &Api) -> Seeded {
    let alex = api.create_user("alex.rivera@example.com", MOVER).await;
    let carol = api.create_user("carol.diaz@example.com", COLLEAGUE).await;
    let ghost = api
        .create_user("ghost.contractor@example.com", "X9999")
        .await;
    let all_staff = api.create_group("All Staff").await;
    let engineering = api.create_group("Engineering").await;
    let legacy = api.create_group("Legacy").await;
    let finance = api.create_group("Finance").await;
    for person in [&alex, &carol] {
        api.add_member(&all_staff, person).await;
        api.add_member(&engineering, person).await;
    }
    api.add_member(&legacy, &alex).await;

    api.create_subscription(SUB, &["rg-legacy", "rg-eng", "rg-staff", "rg-finance"])
        .await;
    let creep_assignment = api
        .assign_role(SUB, &rg("rg-legacy"), READER, &alex, "User")
        .await;
    let kv_legacy_id = api
        .create_vault(
            &rg("rg-legacy"),
            "kv-legacy",
            Some(Value::Array(vec![
                Api::access_policy(&alex, &["get", "list"]),
                Api::access_policy(&engineering, &["get"]),
            ])),
        )
        .await;
    let kv_eng = api.create_vault(&rg("rg-eng"), "kv-eng", None).await;
    let eng_vault_assignment = api
        .assign_role(SUB, &kv_eng, SECRETS_USER, &engineering, "Group")
        .await;
    let kv_staff = api.create_vault(&rg("rg-staff"), "kv-staff", None).await;
    api.assign_role(SUB, &kv_staff, SECRETS_USER, &all_staff, "Group")
        .await;
    api.assign_role(SUB, &kv_staff, SECRETS_USER, &engineering, "Group")
        .await;

    let kv_fin = api.create_vault(&rg("rg-finance"), "kv-fin", None).await;
    api.assign_role(SUB, &kv_fin, SECRETS_USER, &finance, "Group")
        .await;
    api.assign_role(SUB, &kv_fin, SECRETS_USER, &engineering, "Group")
        .await;

    let secret =
        |vault: &str, name: &str, version: String| (vault.to_string(), name.to_string(), version);
    let eng_secret = secret(
        "kv-eng",
        "build-signing-token",
        api.set_secret("kv-eng", "build-signing-token", "eng-value-1", &[])
            .await,
    );
    let staff_secret = secret(
        "kv-staff",
        "office-wifi",
        api.set_secret("kv-staff", "office-wifi", "staff-value-1", &[])
            .await,
    );
    let legacy_secret = secret(
        "kv-legacy",
        "old-ftp-password",
        api.set_secret("kv-legacy", "old-ftp-password", "legacy-value-1", &[])
            .await,
    );
    let forecast_secret = secret(
        "kv-fin",
        "quarterly-forecast",
        api.set_secret("kv-fin", "quarterly-forecast", "fin-value-1", &[])
            .await,
    );
    let owned_secret = secret(
        "kv-eng",
        "alex-notes",
        api.set_secret(
            "kv-eng",
            "alex-notes",
            "own-value-1",
            &[("owner", "alex.rivera@example.com")],
        )
        .await,
    );
    Seeded {
        alex,
        carol,
        ghost,
        all_staff,
        engineering,
        legacy,
        finance,
        creep_assignment,
        eng_vault_assignment,
        kv_legacy_id,
        eng_secret,
        staff_secret,
        forecast_secret,
        owned_secret,
        legacy_secret,
    }
}

fn policy() -> String {
    format!(
        r#"rules:
  - name: baseline
    description: Everyone is staff.
    grants:
      - {{ provider: azure, group: All Staff }}
  - name: engineering
    when: {{ department: Engineering }}
    grants:
      - {{ provider: azure, group: Engineering }}
  - name: finance
    when: {{ department: Finance }}
    grants:
      - {{ provider: azure, group: Finance }}
      - {{ provider: azure, role: Reader, scope: {} }}
"#,
        rg("rg-finance")
    )
}

/// The display names of the groups `user` is a direct member of.
async fn groups_of(api: &Api, user: &str) -> BTreeSet<String> {
    api.graph_list(&format!("/users/{user}/memberOf"))
        .await
        .iter()
        .filter_map(|g| g["displayName"].as_str().map(String::from))
        .collect()
}

/// Every role assignment in the subscription whose principal is `principal`, as
/// (role GUID, lower-cased scope).
async fn own_assignments(api: &Api, principal: &str) -> BTreeSet<(String, String)> {
    api.arm_list(&format!(
        "/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01"
    ))
    .await
    .iter()
    .filter(|a| a["properties"]["principalId"].as_str() == Some(principal))
    .map(|a| {
        let role = a["properties"]["roleDefinitionId"]
            .as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let scope = a["properties"]["scope"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        (role, scope)
    })
    .collect()
}

/// The object ids the access policies of the vault `vault_id` name.
async fn policy_holders(api: &Api, vault_id: &str) -> BTreeSet<String> {
    let (status, vault) = api.arm(&format!("{vault_id}?api-version=2023-07-01")).await;
    assert_eq!(status, 200, "{vault}");
    vault["properties"]["accessPolicies"]
        .as_array()
        .expect("access policies")
        .iter()
        .filter_map(|p| p["objectId"].as_str().map(String::from))
        .collect()
}

async fn sessions_valid_from(api: &Api, user: &str) -> i64 {
    let (status, u) = api
        .graph(&format!(
            "/users/{user}?$select=signInSessionsValidFromDateTime"
        ))
        .await;
    assert_eq!(status, 200, "{u}");
    let at = u["signInSessionsValidFromDateTime"]
        .as_str()
        .unwrap_or_else(|| panic!("no signInSessionsValidFromDateTime: {u}"));
    chrono::DateTime::parse_from_rfc3339(at)
        .expect("a timestamp")
        .timestamp()
}

/// Everything the move may change, read back from Azure: memberships, own assignments, access
/// policies, sessions, secret versions. Equal snapshots: nothing changed.
async fn snapshot(api: &Api, s: &Seeded) -> Vec<String> {
    let mut out = Vec::new();
    for user in [&s.alex, &s.carol] {
        out.push(format!("{user} groups {:?}", groups_of(api, user).await));
        out.push(format!(
            "{user} roles {:?}",
            own_assignments(api, user).await
        ));
        out.push(format!(
            "{user} sessions {}",
            sessions_valid_from(api, user).await
        ));
    }
    out.push(format!(
        "kv-legacy policies {:?}",
        policy_holders(api, &s.kv_legacy_id).await
    ));
    for (vault, name, _) in [
        &s.eng_secret,
        &s.staff_secret,
        &s.forecast_secret,
        &s.owned_secret,
        &s.legacy_secret,
    ] {
        out.push(format!(
            "{vault}/{name} {:?}",
            api.kv_versions(vault, "secrets", name).await
        ));
    }
    out
}

/// The one line of `policy explain`'s text naming `entitlement`.
fn explain_line<'a>(text: &'a str, entitlement: &str) -> &'a str {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!("{entitlement} ")) || l.ends_with(entitlement))
        .collect();
    assert_eq!(lines.len(), 1, "{entitlement} in:\n{text}");
    lines[0]
}

/// A rotated secret: exactly one enabled version, new, made by the run; every older one off.
async fn assert_rotated(api: &Api, (vault, name, seeded): &(String, String, String), since: i64) {
    let versions = api.kv_versions(vault, "secrets", name).await;
    let enabled: Vec<_> = versions.iter().filter(|v| v.1).collect();
    assert_eq!(enabled.len(), 1, "{vault}/{name}: {versions:?}");
    assert_ne!(&enabled[0].0, seeded, "{vault}/{name} not rotated");
    assert!(enabled[0].2 >= since, "{vault}/{name}: {versions:?}");
    assert!(
        versions.iter().any(|v| &v.0 == seeded && !v.1),
        "{vault}/{name}: the old version is not disabled: {versions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_from_engineering_to_finance_is_read_back_from_azure() {
    let world = AzureWorld::new().await;
    let api = &world.api;
    let s = seed(api).await;
    let hr = world.dir.path().join("hr.csv");
    std::fs::write(&hr, HR).expect("write the HR export");
    let policy_file = world.dir.path().join("entitlements.yaml");
    std::fs::write(&policy_file, policy()).expect("write the policy");
    world.use_source_and_policy(&hr, &policy_file);
    let to = ["--to", "department=Finance"];

    // The policy is valid.
    let check = world.closeout(&["policy", "check"]).await;
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));
    assert!(
        stdout(&check).contains("ok (3 rules, 4 grants)"),
        "{}",
        describe(&check)
    );

    // Before the move, reconcile lists the role creep and the account nobody claims.
    let before = world.closeout(&["reconcile", "--format", "json"]).await;
    assert_eq!(before.status.code(), Some(3), "{}", describe(&before));
    let drift = json(&before)["drift"].as_array().expect("drift").clone();
    let of = |kind: &str, identity: &str| -> Vec<String> {
        drift
            .iter()
            .filter(|d| d["kind"] == kind && d["identity"] == identity)
            .map(|d| d["detail"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let creep = of("unjustified-entitlement", MOVER);
    for held in [
        "azure group-membership Legacy".to_string(),
        format!(
            "azure role-assignment Reader@{}",
            rg("rg-legacy").to_lowercase()
        ),
        "azure access-policy kv-legacy".to_string(),
    ] {
        assert!(
            creep.iter().any(|d| d.contains(&held)),
            "reconcile does not list {held}: {drift:#?}"
        );
    }
    assert_eq!(
        creep.len(),
        3,
        "only the role creep is unjustified: {creep:#?}"
    );
    assert!(
        of("unjustified-entitlement", COLLEAGUE).is_empty()
            && of("missing-entitlement", COLLEAGUE).is_empty()
            && of("missing-entitlement", MOVER).is_empty(),
        "{drift:#?}"
    );
    let unclaimed = of("unclaimed-account", &format!("azure:{}", s.ghost));
    assert_eq!(unclaimed.len(), 1, "{drift:#?}");
    assert!(
        unclaimed[0].contains("ghost.contractor@example.com"),
        "{unclaimed:?}"
    );
    for id in [&s.alex, &s.carol] {
        assert!(
            of("unclaimed-account", &format!("azure:{id}")).is_empty(),
            "a claimed user is listed as unclaimed: {drift:#?}"
        );
    }

    // Explained for the new attributes: the old role's and the role creep are justified by
    // nothing, the new ones are missing, the shared one stays justified by the baseline.
    let explain = world
        .closeout(&["policy", "explain", "--identity", MOVER, to[0], to[1]])
        .await;
    assert_eq!(explain.status.code(), Some(3), "{}", describe(&explain));
    let text = stdout(&explain);
    let reader_finance = format!(
        "azure role-assignment Reader@{}",
        rg("rg-finance").to_lowercase()
    );
    let reader_legacy = format!(
        "azure role-assignment Reader@{}",
        rg("rg-legacy").to_lowercase()
    );
    for missing in ["azure group-membership Finance", reader_finance.as_str()] {
        let line = explain_line(&text, missing);
        assert!(
            line.contains("MISSING") && line.contains("rule finance"),
            "{line}"
        );
    }
    for unjustified in [
        "azure group-membership Engineering",
        "azure group-membership Legacy",
        reader_legacy.as_str(),
        "azure access-policy kv-legacy",
    ] {
        let line = explain_line(&text, unjustified);
        assert!(line.trim_end().ends_with("none"), "{line}\n{text}");
    }
    let shared: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("azure group-membership All Staff"))
        .collect();
    assert!(
        !shared.is_empty() && shared.iter().all(|l| l.contains("rule baseline")),
        "{text}"
    );

    // The plan changes nothing, and names exactly the removals and grants expected.
    let untouched = snapshot(api, &s).await;
    let plan = world
        .closeout(&[
            "plan",
            "mover",
            "--identity",
            MOVER,
            to[0],
            to[1],
            "--format",
            "json",
        ])
        .await;
    assert_eq!(plan.status.code(), Some(0), "{}", describe(&plan));
    assert_eq!(snapshot(api, &s).await, untouched, "plan changed Azure");
    let plan = json(&plan);
    let planned: Vec<(String, String)> = plan["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .flat_map(|st| st["actions"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["verb"].as_str().unwrap_or_default().to_string(),
                a["finding"]["display"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let verbs = |verb: &str| planned.iter().filter(|(v, _)| v == verb).count();
    assert_eq!(verbs("remove"), 4, "{planned:#?}");
    assert_eq!(verbs("grant"), 2, "{planned:#?}");
    assert_eq!(verbs("revoke-sessions"), 1, "{planned:#?}");
    assert_eq!(verbs("rotate"), 3, "{planned:#?}");
    assert!(
        !planned.iter().any(|(_, d)| d.contains("All Staff")
            || d.contains("office-wifi")
            || d.contains("alex-notes")),
        "the shared membership, the shared secret or Alex's own is planned: {planned:#?}"
    );

    // The move.
    let carol_before = (
        groups_of(api, &s.carol).await,
        own_assignments(api, &s.carol).await,
        sessions_valid_from(api, &s.carol).await,
    );
    let started = chrono::Utc::now().timestamp();
    // Graph keeps whole seconds: a revocation in the start's second counts.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let apply = world
        .closeout(&[
            "apply",
            "mover",
            "--identity",
            MOVER,
            to[0],
            to[1],
            "--yes",
            "--format",
            "json",
        ])
        .await;
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    let report = json(&apply);
    assert_eq!(report["status"], "closed", "{report:#}");

    // Memberships: the shared one and the new one, nothing else; Carol keeps hers.
    assert_eq!(
        groups_of(api, &s.alex).await,
        BTreeSet::from(["All Staff".to_string(), "Finance".to_string()])
    );
    // The role creep is gone and the new Reader assignment exists; nothing else is Alex's own.
    assert_eq!(
        own_assignments(api, &s.alex).await,
        BTreeSet::from([(READER.to_string(), rg("rg-finance").to_lowercase())])
    );
    let (status, _) = api
        .arm(&format!("{}?api-version=2022-04-01", s.creep_assignment))
        .await;
    assert_eq!(status, 404, "the role-creep assignment is still there");
    // Engineering's own assignment on kv-eng is the group's: it stays for Carol.
    let (status, _) = api
        .arm(&format!(
            "{}?api-version=2022-04-01",
            s.eng_vault_assignment
        ))
        .await;
    assert_eq!(status, 200, "the Engineering group's assignment went");
    // The access policy naming Alex is gone; Engineering's stays (Carol reads through it).
    assert_eq!(
        policy_holders(api, &s.kv_legacy_id).await,
        BTreeSet::from([s.engineering.clone()])
    );
    // Sign-in sessions issued before the run stop working.
    let valid_from = sessions_valid_from(api, &s.alex).await;
    assert!(
        valid_from > started,
        "sessions not revoked: {valid_from} <= {started}"
    );
    // Secrets reachable only through removed access are rotated, including one the new role
    // reaches again (Alex may have copied it under the old one); the one shared with All Staff
    // and the one Alex owns are not.
    assert_rotated(api, &s.eng_secret, started).await;
    assert_rotated(api, &s.legacy_secret, started).await;
    assert_rotated(api, &s.forecast_secret, started).await;
    for (vault, name, version) in [&s.staff_secret, &s.owned_secret] {
        let versions = api.kv_versions(vault, "secrets", name).await;
        assert!(
            versions.len() == 1 && &versions[0].0 == version && versions[0].1,
            "{vault}/{name} was touched: {versions:?}"
        );
    }
    // Carol is untouched.
    assert_eq!(
        (
            groups_of(api, &s.carol).await,
            own_assignments(api, &s.carol).await,
            sessions_valid_from(api, &s.carol).await,
        ),
        carol_before
    );
    assert!(groups_of(api, &s.carol).await.contains("Engineering"));

    // The audit log: every removal (and the session revocation and rotations that follow it)
    // before any grant, and no action on the shared All Staff membership.
    let text = std::fs::read_to_string(world.audit_path()).expect("the audit log exists");
    let actions: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("audit line is JSON"))
        .filter(|r| {
            r["event"]
                .as_str()
                .is_some_and(|e| e.starts_with("action."))
        })
        .collect();
    let verb_of = |r: &Value| {
        r["details"]["verb"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let first_grant = actions
        .iter()
        .position(|r| verb_of(r) == "grant")
        .unwrap_or_else(|| panic!("no grant audited: {actions:#?}"));
    let last_other = actions
        .iter()
        .rposition(|r| verb_of(r) != "grant")
        .expect("removals audited");
    assert!(
        last_other < first_grant,
        "a removal after a grant: {actions:#?}"
    );
    let audited = |verb: &str| actions.iter().filter(|r| verb_of(r) == verb).count();
    assert_eq!(
        (
            audited("remove"),
            audited("revoke-sessions"),
            audited("rotate"),
            audited("grant")
        ),
        (4, 1, 3, 2),
        "{actions:#?}"
    );
    assert!(
        actions.iter().all(|r| r["event"] == "action.done"),
        "{actions:#?}"
    );
    assert!(
        !actions.iter().any(|r| {
            r["details"]["finding"]
                .as_str()
                .is_some_and(|f| f.contains(&s.all_staff))
        }),
        "an action touched the All Staff membership: {actions:#?}"
    );
    for group in [&s.engineering, &s.legacy, &s.finance] {
        assert!(
            actions.iter().any(|r| r["details"]["finding"]
                .as_str()
                .is_some_and(|f| f.contains(group.as_str()))),
            "no action on group {group}: {actions:#?}"
        );
    }

    // The live state now equals the policy for the new attributes.
    let explain = world
        .closeout(&["policy", "explain", "--identity", MOVER, to[0], to[1]])
        .await;
    assert_eq!(explain.status.code(), Some(0), "{}", describe(&explain));

    // A second apply does nothing.
    let settled = snapshot(api, &s).await;
    let again = world
        .closeout(&[
            "apply",
            "mover",
            "--identity",
            MOVER,
            to[0],
            to[1],
            "--yes",
            "--format",
            "json",
        ])
        .await;
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let again = json(&again);
    assert_eq!(again["status"], "closed", "{again:#}");
    assert_eq!(again["summary"]["actions_done"], 0, "{again:#}");
    assert_eq!(
        snapshot(api, &s).await,
        settled,
        "the second apply changed Azure"
    );

    // Once the source says Finance too, reconcile finds no policy drift for Alex.
    std::fs::write(
        &hr,
        HR.replacen("Engineering,Engineer,London", "Finance,Engineer,London", 1),
    )
    .expect("update the HR export");
    let after = world.closeout(&["reconcile", "--format", "json"]).await;
    let drift = json(&after)["drift"].as_array().expect("drift").clone();
    assert!(
        !drift.iter().any(|d| d["identity"] == MOVER),
        "drift left for the mover: {drift:#?}"
    );
}

/// A joiner on Azure: Jo (E2003, Finance) gets the baseline and the Finance grants, and becomes
/// an owner of the application registration and service principal named after the ETL service
/// the source says was made for them (Carol, who registered it, stays an owner). Read back from
/// Graph and ARM; a second apply changes nothing.
#[tokio::test]
async fn joiner_gets_baseline_and_owns_the_applications_made_for_them_on_azure() {
    let world = AzureWorld::new().await;
    let api = &world.api;
    let s = seed(api).await;
    let jo = api.create_user("jo.new@example.com", "E2003").await;
    let (app, sp) = api.create_application("svc-jo-etl", &[&s.carol]).await;
    let (other_app, _) = api.create_application("svc-unrelated", &[&s.carol]).await;
    let hr = world.dir.path().join("hr.csv");
    std::fs::write(
        &hr,
        format!(
            "{HR}E2003,jo.new@example.com,Jo New,human,active,,Finance,Analyst,London,employee,\n\
             S3001,svc-jo-etl@example.com,ETL job,service,active,E2003,Finance,ETL,London,service,nhi\n"
        ),
    )
    .expect("write the HR export");
    let policy_file = world.dir.path().join("entitlements.yaml");
    std::fs::write(&policy_file, policy()).expect("write the policy");
    world.use_source_and_policy(&hr, &policy_file);

    let apply = || async { world.closeout(&common::mover::apply_joiner("E2003")).await };
    let out = apply().await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(json(&out)["status"], "closed", "{}", describe(&out));

    assert_eq!(
        groups_of(api, &jo).await,
        BTreeSet::from(["All Staff".to_string(), "Finance".to_string()])
    );
    assert_eq!(
        own_assignments(api, &jo).await,
        BTreeSet::from([(READER.to_string(), rg("rg-finance").to_lowercase())])
    );
    let both = BTreeSet::from([s.carol.clone(), jo.clone()]);
    assert_eq!(api.owners("applications", &app).await, both);
    assert!(
        api.owners("servicePrincipals", &sp).await.contains(&jo),
        "Jo owns the service principal"
    );
    assert_eq!(
        api.owners("applications", &other_app).await,
        BTreeSet::from([s.carol.clone()]),
        "an application not named after the service is not touched"
    );
    let resolved = world
        .closeout(&["resolve", "--identity", "E2003", "--format", "json"])
        .await;
    assert!(
        stdout(&resolved).contains(&format!("azure:owned-application:{app}")),
        "{}",
        describe(&resolved)
    );

    let again = apply().await;
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert_eq!(
        json(&again)["summary"]["actions_done"],
        0,
        "{}",
        describe(&again)
    );
    assert_eq!(api.owners("applications", &app).await, both);
}
