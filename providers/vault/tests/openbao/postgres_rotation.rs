//! Rotation strategies on KV v2 against OpenBao and a real PostgreSQL 15 (the testkit's
//! throwaway cluster): a secret whose custom metadata names `postgresql-single-user` gets a new
//! password at the database (the old one refused, the new one working, every other field
//! kept, the login probe dead), a run killed between phases resumes to the same end, and a
//! secret of an unknown shape is refused and left as it was.

use crate::api::{context_now, person, request, Api};
use closeout_contract::{Finding, Provider, State};
use closeout_testkit::PostgresServer;
use serde_json::{json, Value};

fn login(pg: &PostgresServer, user: &str, password: &str) -> Value {
    json!({
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": pg.port().to_string(),
        "username": user,
        "password": password,
        "dbname": "postgres",
        "owner_team": "payments",
    })
}

async fn seed(api: &Api, key: &str, data: &Value, strategy: Option<&str>) {
    api.root(
        "POST",
        &format!("secret/data/{key}"),
        Some(json!({ "data": data })),
    )
    .await;
    if let Some(s) = strategy {
        api.root(
            "POST",
            &format!("secret/metadata/{key}"),
            Some(json!({"custom_metadata": {"closeout:rotation": s}})),
        )
        .await;
    }
}

async fn findings(api: &Api, test: &str) -> (closeout_vault::VaultProvider, Vec<Finding>) {
    api.policy(
        "db-read",
        r#"path "secret/data/db/*" { capabilities = ["read"] }
           path "secret/metadata/db/*" { capabilities = ["read", "list"] }"#,
    )
    .await;
    api.entity("alice.smith", &["db-read"]).await;
    let p = api.provider(test).await;
    let ctx = context_now(person("E100", "alice.smith@example.com")).await;
    let r = p.resolve(&ctx).await.unwrap();
    let kv = r
        .findings
        .into_iter()
        .filter(|f| f.kind == "kv-secret")
        .collect();
    (p, kv)
}

fn by_key<'a>(kv: &'a [Finding], key: &str) -> &'a Finding {
    kv.iter()
        .find(|f| f.attr("key") == Some(key))
        .unwrap_or_else(|| panic!("no finding for {key}: {kv:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_user_rotation_on_kv_changes_the_password_at_the_database() {
    let pg = PostgresServer::shared();
    pg.psql("CREATE ROLE vault_pay LOGIN PASSWORD 'vault-old-pw'");
    let api = Api::namespace("pg-single").await;
    let before = login(pg, "vault_pay", "vault-old-pw");
    seed(&api, "db/pay", &before, Some("postgresql-single-user")).await;
    let unknown = json!({"engine": "mysql", "host": "h", "username": "u", "password": "canary-x"});
    seed(&api, "db/unknown", &unknown, None).await;
    let (p, kv) = findings(&api, "pg-single").await;

    let f = by_key(&kv, "db/pay");
    assert_eq!(f.attr("rotation"), Some("postgresql-single-user"));
    let out = p.execute(&request("run-1", f, "rotate")).await.unwrap();
    assert!(!out.already_done && out.state == State::Rotated, "{out:?}");
    let (_, after) = api.kv("db/pay").await;
    for k in ["engine", "host", "port", "username", "dbname", "owner_team"] {
        assert_eq!(after[k], before[k], "{k}");
    }
    let new = after["password"].as_str().unwrap().to_string();
    assert!(!pg.can_login("vault_pay", "vault-old-pw"));
    assert!(pg.can_login("vault_pay", &new));
    let probe = p.probe(f).await.unwrap().expect("a login probe");
    assert!(probe.dead, "{probe:?}");
    let again = p.execute(&request("run-1", f, "rotate")).await.unwrap();
    assert!(again.already_done, "{again:?}");
    // The pending copy is gone.
    let (status, _) = api
        .call(
            "GET",
            "secret/data/closeout/kv1-rotations/pending/secret/data/db/pay",
            "root",
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Unknown shape: refused with the reason, untouched.
    let g = by_key(&kv, "db/unknown");
    assert_eq!(
        g.attr("value_fields"),
        Some("engine,host,password,username")
    );
    let err = p.execute(&request("run-1", g, "rotate")).await.unwrap_err();
    assert!(
        err.to_string().contains("needs a rotation strategy"),
        "{err}"
    );
    let (version, data) = api.kv("db/unknown").await;
    assert_eq!((version, data), (1, unknown));
}

/// A run killed after *create* (pending stored, database unchanged) and after *set* (database
/// changed, not promoted) resumes to the same end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_kv_rotation_resumes_to_the_same_end() {
    let pg = PostgresServer::shared();
    let api = Api::namespace("pg-kill").await;
    for i in 0..2 {
        let user = format!("vault_kill{i}");
        pg.psql(&format!("CREATE ROLE {user} LOGIN PASSWORD 'kill-old-pw'"));
        let before = login(pg, &user, "kill-old-pw");
        seed(
            &api,
            &format!("db/kill{i}"),
            &before,
            Some("postgresql-single-user"),
        )
        .await;
    }
    let (p, kv) = findings(&api, "pg-kill").await;
    for (i, set) in [(0, false), (1, true)] {
        let user = format!("vault_kill{i}");
        let f = by_key(&kv, &format!("db/kill{i}"));
        let req = request("run-k", f, "rotate");
        // create: the pending value as the provider stores it, with this action's key.
        let mut pending = login(pg, &user, &format!("pending-{i}-pw"));
        pending["owner_team"] = json!("payments");
        let at = format!("closeout/kv1-rotations/pending/secret/data/db/kill{i}");
        api.root(
            "POST",
            &format!("secret/data/{at}"),
            Some(json!({ "data": pending })),
        )
        .await;
        api.root(
            "POST",
            &format!("secret/metadata/{at}"),
            Some(json!({"custom_metadata": {"closeout-rotated-by": req.idempotency_key}})),
        )
        .await;
        if set {
            pg.psql(&format!("ALTER ROLE {user} PASSWORD 'pending-{i}-pw'"));
        }
        p.execute(&req)
            .await
            .unwrap_or_else(|e| panic!("kill{i}: {e}"));
        let (version, after) = api.kv(&format!("db/kill{i}")).await;
        assert_eq!(version, 2, "kill{i}");
        assert_eq!(
            after, pending,
            "kill{i}: the stored pending value is the one promoted"
        );
        assert!(!pg.can_login(&user, "kill-old-pw"), "kill{i}");
        assert!(pg.can_login(&user, &format!("pending-{i}-pw")), "kill{i}");
    }
}

/// KV v1 keeps no metadata, so its strategy comes from a `[[rotation.strategy]]` rule (set on
/// the finding here as the plan sets it). The pending value is kept beside the rotation records,
/// the password set and tested at the database, then written in place and recorded: the old
/// password refused, the new one working, every other field kept. A second secret is left as a
/// run killed after *set* leaves it (pending stored, the database changed, the secret not yet
/// written) and resumes to the same end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_user_rotation_on_kv_v1_writes_in_place_and_resumes_after_a_kill() {
    let pg = PostgresServer::shared();
    pg.psql("CREATE ROLE vault_v1pay LOGIN PASSWORD 'v1-old-pw'");
    pg.psql("CREATE ROLE vault_v1kill LOGIN PASSWORD 'v1-kill-old-pw'");
    let api = Api::namespace("pg-v1").await;
    api.mount_kv("legacy", 1).await;
    let pay = login(pg, "vault_v1pay", "v1-old-pw");
    let killed = login(pg, "vault_v1kill", "v1-kill-old-pw");
    api.root("POST", "legacy/db/pay", Some(pay.clone())).await;
    api.root("POST", "legacy/db/killed", Some(killed.clone()))
        .await;
    api.policy(
        "v1-read",
        r#"path "legacy/db/*" { capabilities = ["read", "list"] }"#,
    )
    .await;
    api.entity("alice.smith", &["v1-read"]).await;
    let p = api.provider("pg-v1").await;
    let ctx = context_now(person("E100", "alice.smith@example.com")).await;
    let r = p.resolve(&ctx).await.unwrap();
    let finding = |key: &str| {
        let mut f = r
            .findings
            .iter()
            .find(|f| f.kind == "kv-secret" && f.attr("key") == Some(key))
            .unwrap_or_else(|| panic!("no finding for {key}: {:#?}", r.findings))
            .clone();
        assert_eq!(f.attr("kv_version"), Some("1"));
        f.attributes
            .insert("rotation".into(), "postgresql-single-user".into());
        f
    };

    let f = finding("db/pay");
    let out = p.execute(&request("run-v1", &f, "rotate")).await.unwrap();
    assert!(!out.already_done && out.state == State::Rotated, "{out:?}");
    let after = api.kv1("legacy/db/pay").await;
    for k in ["engine", "host", "port", "username", "dbname", "owner_team"] {
        assert_eq!(after[k], pay[k], "{k}");
    }
    let new = after["password"].as_str().unwrap().to_string();
    assert_ne!(new, "v1-old-pw");
    assert!(
        !pg.can_login("vault_v1pay", "v1-old-pw"),
        "old password still works"
    );
    assert!(pg.can_login("vault_v1pay", &new), "new password refused");
    assert_eq!(p.live_state(&f, &ctx).await.unwrap(), State::Rotated);
    let again = p.execute(&request("run-v1", &f, "rotate")).await.unwrap();
    assert!(again.already_done, "{again:?}");
    assert_eq!(api.kv1("legacy/db/pay").await, after, "not rotated twice");

    // Killed after *set*: this action's pending value stored, the database already changed.
    let g = finding("db/killed");
    let req = request("run-v1", &g, "rotate");
    let mut pending = login(pg, "vault_v1kill", "v1-kill-pending-pw");
    pending["owner_team"] = json!("payments");
    let at = "closeout/kv1-rotations/pending/legacy/db/killed";
    api.root(
        "POST",
        &format!("secret/data/{at}"),
        Some(json!({ "data": pending })),
    )
    .await;
    api.root(
        "POST",
        &format!("secret/metadata/{at}"),
        Some(json!({"custom_metadata": {"closeout-rotated-by": req.idempotency_key}})),
    )
    .await;
    pg.psql("ALTER ROLE vault_v1kill PASSWORD 'v1-kill-pending-pw'");
    p.execute(&req).await.unwrap();
    assert_eq!(
        api.kv1("legacy/db/killed").await,
        pending,
        "the stored pending value is the one promoted"
    );
    assert!(!pg.can_login("vault_v1kill", "v1-kill-old-pw"));
    assert!(pg.can_login("vault_v1kill", "v1-kill-pending-pw"));
    assert_eq!(p.live_state(&g, &ctx).await.unwrap(), State::Rotated);
    let (status, _) = api
        .call("GET", &format!("secret/data/{at}"), "root", None)
        .await;
    assert_eq!(status, 404, "the pending copy is gone");
}
