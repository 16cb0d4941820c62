//! The mover and joiner acceptance checks on Vault (OpenBao dev server), end to end with the
//! real binary: an engineer with accumulated entitlements (shared baseline group, old-role group,
//! role creep) moves to Finance; everything is read back through the Vault API.

use crate::common;

use common::mover::{
    assert_never_touched, assert_removals_before_grants, drift_of, explain_line,
    use_source_and_policy, write_cast,
};
use common::vault::{Api, VaultWorld};
use common::{audit_records_at, describe, grants_at, json, stdout};
use serde_json::json;
use std::collections::BTreeMap;

const PERSON: &str = "E2001";

/// Ids the test names: entities and groups.
struct Org {
    person: String,
    colleague: String,
    joiner: String,
    groups: BTreeMap<&'static str, String>,
    /// The person's live token (from a userpass login) and its accessor.
    token: String,
    accessor: String,
    /// A token the person owns through its `owner` metadata, bound to no entity (a CI job's):
    /// its policies are its own, so no move shrinks them.
    owned_accessor: String,
}

async fn entity(api: &Api, name: &str, policies: &[&str], userpass: &str) -> String {
    let v = api
        .root(
            "POST",
            "identity/entity",
            Some(json!({ "name": name, "policies": policies })),
        )
        .await;
    let id = v["data"]["id"].as_str().expect("entity id").to_string();
    api.root(
        "POST",
        "identity/entity-alias",
        Some(json!({ "name": name, "canonical_id": id, "mount_accessor": userpass })),
    )
    .await;
    id
}

/// Policies, identity groups `everyone` (baseline), `engineering` (old role), `legacy` (no
/// rule), `finance`, `oncall`; the person's entity with an entity policy no rule names, a
/// userpass login and a live token; a colleague in engineering; KV secrets behind each group.
async fn seed(api: &Api) -> Org {
    api.root(
        "POST",
        "sys/auth/userpass",
        Some(json!({ "type": "userpass" })),
    )
    .await;
    let auth = api.root("GET", "sys/auth", None).await;
    let userpass = auth["data"]["userpass/"]["accessor"]
        .as_str()
        .expect("userpass accessor")
        .to_string();
    for (name, path) in [
        ("eng-read", "secret/data/eng/*"),
        ("all-read", "secret/data/shared/*"),
        ("legacy-read", "secret/data/legacy/*"),
        ("fin-read", "secret/data/finance/*"),
        ("finance-read", "secret/data/reports/*"),
        ("old-admin", "sys/health"),
    ] {
        api.root(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": format!("path \"{path}\" {{ capabilities = [\"read\"] }}") })),
        )
        .await;
    }
    let person = entity(api, "pat.lee", &["old-admin"], &userpass).await;
    let colleague = entity(api, "sam.ro", &[], &userpass).await;
    let joiner = entity(api, "joe.new", &[], &userpass).await;
    let mut groups = BTreeMap::new();
    for (name, policy, members) in [
        ("everyone", "all-read", vec![&person, &colleague]),
        ("engineering", "eng-read", vec![&person, &colleague]),
        ("legacy", "legacy-read", vec![&person]),
        ("finance", "fin-read", vec![]),
        ("oncall", "default", vec![]),
    ] {
        let v = api
            .root(
                "POST",
                "identity/group",
                Some(json!({ "name": name, "policies": [policy], "member_entity_ids": members })),
            )
            .await;
        groups.insert(
            name,
            v["data"]["id"].as_str().expect("group id").to_string(),
        );
    }
    for key in [
        "eng/ci",
        "eng/db",
        "legacy/ftp",
        "shared/wiki",
        "finance/ledger",
    ] {
        api.root(
            "POST",
            &format!("secret/data/{key}"),
            Some(json!({ "data": { "value": format!("{key}-initial") } })),
        )
        .await;
    }
    // The login's token carries only `default`: everything it reaches comes from the entity.
    api.root(
        "POST",
        "auth/userpass/users/pat.lee",
        Some(json!({ "password": "pat-password" })),
    )
    .await;
    let (status, login) = api
        .call(
            "POST",
            "auth/userpass/login/pat.lee",
            None,
            Some(json!({ "password": "pat-password" })),
        )
        .await;
    assert_eq!(status, 200, "login: {login}");
    assert_eq!(login["auth"]["entity_id"].as_str(), Some(person.as_str()));
    let owned = api
        .root(
            "POST",
            "auth/token/create-orphan",
            Some(json!({ "policies": ["default"], "meta": { "owner": PERSON }, "ttl": "2h" })),
        )
        .await;
    Org {
        person,
        colleague,
        joiner,
        groups,
        token: login["auth"]["client_token"]
            .as_str()
            .expect("token")
            .into(),
        accessor: login["auth"]["accessor"].as_str().expect("accessor").into(),
        owned_accessor: owned["auth"]["accessor"]
            .as_str()
            .expect("owned token accessor")
            .into(),
    }
}

/// The HR export and the policy, and the config naming both.
fn write_source_and_policy(world: &VaultWorld, person_department: &str) {
    let hr = world.dir.path().join("hr.csv");
    write_cast(&hr, PERSON, person_department);
    let policy = world.dir.path().join("entitlements.yaml");
    std::fs::write(
        &policy,
        r#"rules:
  - name: baseline
    grants:
      - { provider: vault, group: everyone }
  - name: engineering
    when: { department: Engineering }
    grants:
      - { provider: vault, group: engineering }
  - name: finance
    when: { department: Finance }
    grants:
      - { provider: vault, group: finance }
      - { provider: vault, policy: finance-read }
  - name: oncall
    when: { tags: oncall }
    duration: 1h
    grants:
      - { provider: vault, group: oncall }
"#,
    )
    .expect("write policy");
    if !std::fs::read_to_string(world.config_path())
        .expect("config")
        .contains("[policy]")
    {
        use_source_and_policy(&world.config_path(), &hr, &policy);
    }
}

async fn members(api: &Api, group: &str) -> Vec<String> {
    let g = api
        .root("GET", &format!("identity/group/id/{group}"), None)
        .await;
    let mut m: Vec<String> = g["data"]["member_entity_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    m.sort();
    m
}

/// The group names the entity is a direct member of, as the groups list them.
async fn groups_of(api: &Api, org: &Org, entity: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (name, id) in &org.groups {
        if members(api, id).await.iter().any(|m| m == entity) {
            out.push(name.to_string());
        }
    }
    out
}

async fn entity_policies(api: &Api, entity: &str) -> Vec<String> {
    let e = api
        .root("GET", &format!("identity/entity/id/{entity}"), None)
        .await;
    let mut p: Vec<String> = e["data"]["policies"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    p.sort();
    p
}

async fn kv_version(api: &Api, key: &str) -> u64 {
    let m = api
        .root("GET", &format!("secret/metadata/{key}"), None)
        .await;
    m["data"]["current_version"].as_u64().expect("version")
}

fn mover(world: &VaultWorld, command: &str) -> std::process::Output {
    let mut args = vec![
        command,
        "mover",
        "--identity",
        PERSON,
        "--to",
        "department=Finance",
        "--format",
        "json",
    ];
    if command == "apply" {
        args.push("--yes");
    }
    world.closeout(&args)
}

fn explain(world: &VaultWorld, identity: &str, to: Option<&str>) -> std::process::Output {
    let mut args = vec!["policy", "explain", "--identity", identity];
    if let Some(to) = to {
        args.extend(["--to", to]);
    }
    world.closeout(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engineer_moves_to_finance_read_back_from_vault() {
    let world = VaultWorld::new();
    let api = &world.api;
    let org = seed(api).await;
    write_source_and_policy(&world, "Engineering");
    let [journal, audit_log] = world.state_files();
    assert!(api.token_works(&org.token).await);

    let check = world.closeout(&["policy", "check"]);
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));

    // Before the move, reconcile names the role creep (the source still says Engineering).
    let drift = world.closeout(&["reconcile", "--format", "json"]);
    assert_eq!(drift.status.code(), Some(3), "{}", describe(&drift));
    let drift = drift_of(&json(&drift), PERSON);
    let mut unjustified: Vec<&str> = drift
        .iter()
        .filter(|(k, _)| k == "unjustified-entitlement")
        .map(|(_, d)| d.as_str())
        .collect();
    unjustified.sort();
    assert_eq!(unjustified.len(), 2, "{drift:?}");
    assert!(
        unjustified[0].contains("vault entity-policy old-admin"),
        "{drift:?}"
    );
    assert!(
        unjustified[1].contains("vault group-membership legacy"),
        "{drift:?}"
    );

    // Explain for the new attributes: old role and role creep unjustified, Finance's missing.
    let out = explain(&world, PERSON, Some("department=Finance"));
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let text = stdout(&out);
    for held in [
        "vault group-membership engineering",
        "vault group-membership legacy",
        "vault entity-policy old-admin",
    ] {
        let line = explain_line(&text, "Holds", held);
        assert!(line.trim_end().ends_with("none"), "{line}");
    }
    let line = explain_line(&text, "Holds", "vault group-membership everyone");
    assert!(line.contains("rule baseline"), "{line}");
    for missing in [
        "vault group-membership finance",
        "vault entity-policy finance-read",
    ] {
        let line = explain_line(&text, "Should hold", missing);
        assert!(
            line.contains("MISSING") && line.contains("rule finance"),
            "{line}"
        );
    }

    // Plan changes nothing.
    let before = api.snapshot().await;
    let plan = mover(&world, "plan");
    assert_eq!(plan.status.code(), Some(0), "{}", describe(&plan));
    assert_eq!(api.snapshot().await, before, "plan changed the server");
    let versions_before = [
        ("eng/ci", kv_version(api, "eng/ci").await),
        ("eng/db", kv_version(api, "eng/db").await),
        ("legacy/ftp", kv_version(api, "legacy/ftp").await),
        ("shared/wiki", kv_version(api, "shared/wiki").await),
        ("finance/ledger", kv_version(api, "finance/ledger").await),
    ];

    // Apply.
    let out = mover(&world, "apply");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json(&out);
    assert_eq!(report["status"], "closed", "{report:#}");
    let run = report["run"].as_str().expect("run id").to_string();

    // Nothing unjustified remains; the shared group stays; the new entitlements exist.
    assert_eq!(
        groups_of(api, &org, &org.person).await,
        ["everyone", "finance"]
    );
    assert_eq!(entity_policies(api, &org.person).await, ["finance-read"]);
    assert_eq!(
        groups_of(api, &org, &org.colleague).await,
        ["engineering", "everyone"]
    );

    // The token issued with the old access is revoked.
    assert!(
        !api.accessor_lives(&org.accessor).await,
        "the person's token survived"
    );
    assert!(!api.token_works(&org.token).await);
    // A token bound to no entity keeps exactly its own policies: it carried none of the removed
    // access, so it is left alone (the run saw it as the person's and did not act on it).
    let owned = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["id"] == format!("vault:token:{}", org.owned_accessor))
        .unwrap_or_else(|| panic!("the owned token is not among the findings: {report:#}"));
    assert_eq!(owned["actions"], json!([]), "{owned:#}");
    assert!(
        api.accessor_lives(&org.owned_accessor).await,
        "the owned token not bound to the entity was revoked"
    );

    // Secrets readable only through the removed groups rotated; the rest untouched.
    for (key, v) in versions_before {
        let now = kv_version(api, key).await;
        if key.starts_with("eng/") || key.starts_with("legacy/") {
            assert_eq!(now, v + 1, "{key} was not rotated");
        } else {
            assert_eq!(now, v, "{key} must not be rotated");
        }
    }

    // Audit: every removal before any grant; the shared membership never touched.
    let audit = audit_records_at(&audit_log);
    let (mut removed, mut granted) = assert_removals_before_grants(&audit, &run);
    removed.sort();
    granted.sort();
    let membership = |g: &str| format!("vault:group-membership:{}/{}", org.groups[g], org.person);
    let mut want_removed = vec![
        membership("engineering"),
        membership("legacy"),
        format!("vault:entity-policy:{}/old-admin", org.person),
    ];
    want_removed.sort();
    assert_eq!(removed, want_removed);
    let mut want_granted = vec![
        membership("finance"),
        format!("vault:entity-policy:{}/finance-read", org.person),
    ];
    want_granted.sort();
    assert_eq!(granted, want_granted);
    assert_never_touched(&audit, &journal, &membership("everyone"));

    // The live state now equals the policy for the new attributes.
    let out = explain(&world, PERSON, Some("department=Finance"));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // A second apply does nothing.
    let settled = api.snapshot().await;
    let again = mover(&world, "apply");
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let again = json(&again);
    assert_eq!(again["status"], "closed", "{again:#}");
    assert_eq!(again["summary"]["actions_done"], 0, "{again:#}");
    let second = again["run"].as_str().expect("run id");
    assert!(
        !audit_records_at(&audit_log)
            .iter()
            .any(|r| r["run"] == second && r["event"] == "action.done"),
        "the second apply acted"
    );
    assert_eq!(api.snapshot().await, settled);

    // With the source updated, reconcile finds no policy drift for the person.
    write_source_and_policy(&world, "Finance");
    let drift = world.closeout(&["reconcile", "--format", "json"]);
    assert!(
        matches!(drift.status.code(), Some(0 | 3)),
        "{}",
        describe(&drift)
    );
    let drift = drift_of(&json(&drift), PERSON);
    assert!(drift.is_empty(), "{drift:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiner_gets_baseline_and_a_time_bound_grant_on_vault() {
    let world = VaultWorld::new();
    let api = &world.api;
    let org = seed(api).await;
    write_source_and_policy(&world, "Engineering");
    let [journal, _] = world.state_files();
    let started = chrono::Utc::now();
    // An ETL service entity created for Joe: no owner record in Vault, owned by Joe in the source.
    let etl = api
        .root(
            "POST",
            "identity/entity",
            Some(serde_json::json!({"name": "svc-joe-etl", "metadata": {"team": "finance"}})),
        )
        .await["data"]["id"]
        .as_str()
        .expect("entity id")
        .to_string();
    let hr = world.dir.path().join("hr.csv");
    let mut rows = std::fs::read_to_string(&hr).expect("read hr.csv");
    rows.push_str(
        "S3001,svc-joe-etl@example.com,ETL job,service,active,E2003,Finance,ETL,London,service,nhi\n",
    );
    std::fs::write(&hr, rows).expect("write hr.csv");

    let out = world.closeout(&common::mover::apply_joiner("E2003"));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(json(&out)["status"], "closed", "{}", describe(&out));

    assert_eq!(
        groups_of(api, &org, &org.joiner).await,
        ["everyone", "finance", "oncall"]
    );
    assert_eq!(entity_policies(api, &org.joiner).await, ["finance-read"]);
    // The NHI created for Joe now names him as its owner (other metadata kept).
    let entity = api
        .root("GET", &format!("identity/entity/id/{etl}"), None)
        .await;
    assert_eq!(
        entity["data"]["metadata"],
        serde_json::json!({"team": "finance", "owner": "joe.new@example.com"}),
        "{entity}"
    );

    let grants = grants_at(&journal);
    assert_eq!(grants.len(), 1, "{grants:?}");
    let (identity, g) = &grants[0];
    assert_eq!(
        (
            identity.as_str(),
            g.entitlement.provider.as_str(),
            g.entitlement.kind.as_str()
        ),
        ("E2003", "vault", "group-membership")
    );
    assert_eq!(
        (g.entitlement.target.as_str(), g.rule.as_str()),
        ("oncall", "oncall")
    );
    assert!(g.granted_at >= started - chrono::Duration::seconds(1));
    assert_eq!(g.expires_at - g.granted_at, chrono::Duration::hours(1));

    let out = explain(&world, "E2003", None);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let until = format!("until {}", g.expires_at.format("%Y-%m-%d %H:%M UTC"));
    let text = stdout(&out);
    let line = explain_line(&text, "Should hold", "vault group-membership oncall");
    assert!(line.contains(&until), "{line}");
}
