//! Rotation strategies against moto and a real PostgreSQL 15 (the testkit's throwaway cluster):
//!
//! - a secret tagged `closeout:rotation = postgresql-single-user` / `-alternating-users` gets a
//!   new password *at the database*: afterwards PostgreSQL refuses the old password and takes
//!   the new one, every other field of the secret is unchanged, and the login probe says dead;
//! - a run killed between any two phases (create → set → test → finish) resumes to the same
//!   end, built here as the state each kill leaves;
//! - `template:<fields>` changes only those fields; a JSON secret with no strategy is refused,
//!   never scrambled.

use crate::common;

use chrono::Utc;
use closeout_contract::{ActionParams, ActionRequest, Finding, Provider, ResolveContext};
use closeout_testkit::PostgresServer;
use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The provider's request token for an idempotency key (the same derivation: a version id a
/// repeated put reuses).
fn token(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn login(pg: &PostgresServer, user: &str, password: &str) -> Value {
    json!({
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": pg.port(),
        "username": user,
        "password": password,
        "dbname": "postgres",
        "note": "kept as it is",
    })
}

/// A role with a password and a table it owns (the grants a clone must get).
fn role(pg: &PostgresServer, user: &str, password: &str) {
    pg.psql(&format!(
        "CREATE ROLE {user} LOGIN PASSWORD '{password}'; CREATE TABLE {user}_t (x int); ALTER TABLE {user}_t OWNER TO {user};"
    ));
}

struct Case {
    moto: Moto,
    arn: String,
    finding: Finding,
}

async fn case(name: &str, value: &Value, strategy: Option<&str>) -> Case {
    let moto = Moto::start();
    let c = moto.clients().await;
    let mut tags = vec![("owner", "E100")];
    if let Some(s) = strategy {
        tags.push(("closeout:rotation", s));
    }
    let arn = c.secret(name, &value.to_string(), &tags, None).await;
    let provider = moto.provider().await;
    let ctx = ResolveContext {
        identity: identity("E100", "alice@example.com", None),
        // moto's dates are whole seconds: a cutoff just after seeding could precede them.
        cutoff: Some(Utc::now() + chrono::Duration::seconds(2)),
    };
    let r = provider.resolve(&ctx).await.unwrap();
    let finding = find(&r, &format!("aws:secret:{arn}")).clone();
    Case { moto, arn, finding }
}

fn request(key: &str, f: &Finding) -> ActionRequest {
    ActionRequest {
        idempotency_key: key.into(),
        verb: "rotate".into(),
        finding: f.clone(),
        params: ActionParams::default(),
    }
}

async fn current(c: &Clients, arn: &str) -> Value {
    serde_json::from_str(&c.secret_value(arn, "AWSCURRENT").await.unwrap()).unwrap()
}

/// Every field but `username` and `password` is what it was.
fn kept(before: &Value, after: &Value) {
    for (k, v) in before.as_object().unwrap() {
        if k != "password" && k != "username" {
            assert_eq!(&after[k], v, "field {k} changed: {after}");
        }
    }
}

#[tokio::test]
async fn single_user_rotation_changes_the_password_at_the_database() {
    let pg = PostgresServer::shared();
    role(pg, "pay_single", "old-single-pw");
    let before = login(pg, "pay_single", "old-single-pw");
    let case = case("db/single", &before, Some("postgresql-single-user")).await;
    assert_eq!(
        case.finding.attr("rotation"),
        Some("postgresql-single-user")
    );
    let provider = case.moto.provider().await;
    let c = case.moto.clients().await;
    let (out, calls) = closeout_contract::receipt::collect(
        provider.execute(&request("run-1/rotate/single", &case.finding)),
    )
    .await;
    let out = out.unwrap();
    assert!(!out.already_done, "{out:?}");
    let after = current(&c, &case.arn).await;
    assert_eq!(after["username"], "pay_single");
    kept(&before, &after);
    let new = after["password"].as_str().unwrap();
    // The receipts: the Secrets Manager calls with moto's request ids, and the statement at
    // the database by kind and role only — never a password or its verifier.
    let alter: Vec<_> = calls
        .iter()
        .filter(|c| {
            c.operation
                .starts_with("ALTER ROLE \"pay_single\" PASSWORD on ")
        })
        .collect();
    assert_eq!(alter.len(), 1, "{calls:?}");
    assert_eq!((alter[0].status, &alter[0].request_id), (None, &None));
    assert!(calls
        .iter()
        .any(|c| c.operation == "secretsmanager:PutSecretValue" && c.status == Some(200)));
    assert!(calls
        .iter()
        .filter(|c| c.operation.starts_with("secretsmanager:"))
        .all(|c| c.request_id.as_deref().is_some_and(|id| !id.is_empty())));
    let text = format!("{calls:?}");
    assert!(!text.contains(new) && !text.contains("old-single-pw") && !text.contains("SCRAM"));
    assert!(
        !pg.can_login("pay_single", "old-single-pw"),
        "old password still works"
    );
    assert!(pg.can_login("pay_single", new), "new password refused");
    // AWSPENDING is cleared; the previous value is AWSPREVIOUS.
    assert!(c.secret_value(&case.arn, "AWSPENDING").await.is_none());
    // The login probe proves it.
    let probe = provider.probe(&case.finding).await.unwrap().unwrap();
    assert!(probe.dead, "{probe:?}");
    assert!(!format!("{probe:?}").contains(new));
    // Repeating the action changes nothing.
    let again = provider
        .execute(&request("run-1/rotate/single", &case.finding))
        .await
        .unwrap();
    assert!(again.already_done, "{again:?}");
    assert!(pg.can_login("pay_single", new));
}

#[tokio::test]
async fn alternating_users_switch_to_the_clone_and_retire_the_old_password() {
    let pg = PostgresServer::shared();
    role(pg, "pay_alt", "old-alt-pw");
    pg.psql("CREATE ROLE alt_admin LOGIN CREATEROLE PASSWORD 'admin-pw'");
    // The clone inherits pay_alt's grants through membership; PostgreSQL 15 lets a CREATEROLE
    // role create and alter non-superuser roles.
    pg.psql("GRANT pay_alt TO alt_admin WITH ADMIN OPTION");
    let moto_admin = login(pg, "alt_admin", "admin-pw");
    let mut before = login(pg, "pay_alt", "old-alt-pw");
    let case = {
        let moto = Moto::start();
        let c = moto.clients().await;
        let admin_arn = c
            .secret("db/alt-admin", &moto_admin.to_string(), &[], None)
            .await;
        before["admin_secret"] = json!(admin_arn);
        let arn = c
            .secret(
                "db/alt",
                &before.to_string(),
                &[
                    ("owner", "E100"),
                    ("closeout:rotation", "postgresql-alternating-users"),
                ],
                None,
            )
            .await;
        let provider = moto.provider().await;
        let ctx = ResolveContext {
            identity: identity("E100", "alice@example.com", None),
            // moto's dates are whole seconds: a cutoff just after seeding could precede them.
            cutoff: Some(Utc::now() + chrono::Duration::seconds(2)),
        };
        let r = provider.resolve(&ctx).await.unwrap();
        let finding = find(&r, &format!("aws:secret:{arn}")).clone();
        Case { moto, arn, finding }
    };
    let provider = case.moto.provider().await;
    let c = case.moto.clients().await;
    let (out, calls) = closeout_contract::receipt::collect(
        provider.execute(&request("run-1/rotate/alt", &case.finding)),
    )
    .await;
    out.unwrap();
    assert!(
        calls
            .iter()
            .any(|c| c.operation.starts_with("CREATE ROLE \"pay_alt_clone\" on ")),
        "{calls:?}"
    );
    let after = current(&c, &case.arn).await;
    assert_eq!(after["username"], "pay_alt_clone");
    kept(&before, &after);
    let new = after["password"].as_str().unwrap();
    assert!(pg.can_login("pay_alt_clone", new));
    assert!(
        !pg.can_login("pay_alt", "old-alt-pw"),
        "the old value still logs in"
    );
    // The clone has the same grants: it reads the table pay_alt owns.
    assert_eq!(
        pg.psql("SELECT pg_has_role('pay_alt_clone', 'pay_alt', 'USAGE')::text"),
        "true"
    );
    let probe = provider.probe(&case.finding).await.unwrap().unwrap();
    assert!(probe.dead, "{probe:?}");
    // The next rotation switches back to pay_alt.
    provider
        .execute(&request("run-2/rotate/alt", &case.finding))
        .await
        .unwrap();
    let third = current(&c, &case.arn).await;
    assert_eq!(third["username"], "pay_alt");
    assert!(pg.can_login("pay_alt", third["password"].as_str().unwrap()));
    assert!(!pg.can_login("pay_alt_clone", new));
}

/// Each kill point of a single-user rotation, built as the state it leaves, resumes to the same
/// end: the pending value promoted, the old password refused, the new one working.
#[tokio::test]
async fn a_kill_between_any_two_phases_resumes_to_the_same_end() {
    let pg = PostgresServer::shared();
    // (kill point, whether the database already has the new password, promoted already)
    let points = [
        ("after-create", false, false),
        ("after-set", true, false),
        ("after-test", true, false),
        ("after-finish", true, true),
    ];
    for (i, (point, set, promoted)) in points.into_iter().enumerate() {
        let user = format!("pay_kill{i}");
        role(pg, &user, "old-kill-pw");
        let before = login(pg, &user, "old-kill-pw");
        let case = case(
            &format!("db/kill-{i}"),
            &before,
            Some("postgresql-single-user"),
        )
        .await;
        let c = case.moto.clients().await;
        let key = format!("run-k/rotate/{point}");
        let tok = token(&key);
        // create: the pending value, as the provider stages it.
        let mut pending = before.clone();
        pending["password"] = json!(format!("pending-{i}-pw"));
        c.sm.put_secret_value()
            .secret_id(&case.arn)
            .client_request_token(&tok)
            .secret_string(pending.to_string())
            .version_stages("AWSPENDING")
            .send()
            .await
            .unwrap();
        if set {
            pg.psql(&format!("ALTER ROLE {user} PASSWORD 'pending-{i}-pw'"));
        }
        if promoted {
            let current =
                c.sm.list_secret_version_ids()
                    .secret_id(&case.arn)
                    .send()
                    .await
                    .unwrap()
                    .versions()
                    .iter()
                    .find(|v| v.version_stages().iter().any(|s| s == "AWSCURRENT"))
                    .and_then(|v| v.version_id().map(str::to_string))
                    .unwrap();
            c.sm.update_secret_version_stage()
                .secret_id(&case.arn)
                .version_stage("AWSCURRENT")
                .move_to_version_id(&tok)
                .remove_from_version_id(&current)
                .send()
                .await
                .unwrap();
        }
        // Nobody is locked out at the kill point: the current or the pending value logs in.
        assert!(
            pg.can_login(&user, "old-kill-pw") || pg.can_login(&user, &format!("pending-{i}-pw")),
            "{point}: locked out"
        );
        let provider = case.moto.provider().await;
        provider
            .execute(&request(&key, &case.finding))
            .await
            .unwrap_or_else(|e| panic!("{point}: {e}"));
        let after = current(&c, &case.arn).await;
        assert_eq!(
            after, pending,
            "{point}: the staged value is the one promoted"
        );
        assert!(
            c.secret_value(&case.arn, "AWSPENDING").await.is_none(),
            "{point}"
        );
        assert!(
            !pg.can_login(&user, "old-kill-pw"),
            "{point}: old password works"
        );
        assert!(pg.can_login(&user, &format!("pending-{i}-pw")), "{point}");
    }
}

#[tokio::test]
async fn template_changes_only_its_fields_and_an_unknown_shape_is_untouched() {
    let value = json!({"username": "svc", "api_key": "canary-key", "endpoint": "https://x"});
    let templated = case("app/template", &value, Some("template:api_key")).await;
    let provider = templated.moto.provider().await;
    let c = templated.moto.clients().await;
    provider
        .execute(&request("run-1/rotate/template", &templated.finding))
        .await
        .unwrap();
    let after = current(&c, &templated.arn).await;
    assert_eq!(after["username"], "svc");
    assert_eq!(after["endpoint"], "https://x");
    assert_ne!(after["api_key"], "canary-key");

    // No strategy: the shape is recorded at resolve, the rotation refused, the value untouched.
    let unknown =
        json!({"engine": "mysql", "host": "db", "username": "u", "password": "canary-pw"});
    let case = case("app/unknown", &unknown, None).await;
    assert_eq!(
        case.finding.attr("value_shape"),
        Some("json-object"),
        "{:#?}",
        case.finding
    );
    assert_eq!(
        case.finding.attr("value_fields"),
        Some("engine,host,password,username")
    );
    assert!(closeout_contract::rotation_strategy::needs_strategy(&case.finding).is_some());
    let provider = case.moto.provider().await;
    let c = case.moto.clients().await;
    let err = provider
        .execute(&request("run-1/rotate/unknown", &case.finding))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("needs a rotation strategy"),
        "{err}"
    );
    assert!(!err.to_string().contains("canary"), "{err}");
    assert_eq!(current(&c, &case.arn).await, unknown);
    // A plain string still gets a new random value.
    let case2 = {
        let moto = Moto::start();
        let c = moto.clients().await;
        let arn = c
            .secret("app/plain", "canary-plain", &[("owner", "E100")], None)
            .await;
        let provider = moto.provider().await;
        let ctx = ResolveContext {
            identity: identity("E100", "alice@example.com", None),
            // moto's dates are whole seconds: a cutoff just after seeding could precede them.
            cutoff: Some(Utc::now() + chrono::Duration::seconds(2)),
        };
        let r = provider.resolve(&ctx).await.unwrap();
        let finding = find(&r, &format!("aws:secret:{arn}")).clone();
        Case { moto, arn, finding }
    };
    assert_eq!(case2.finding.attr("value_shape"), Some("plain"));
    let provider = case2.moto.provider().await;
    provider
        .execute(&request("run-1/rotate/plain", &case2.finding))
        .await
        .unwrap();
    let c2 = case2.moto.clients().await;
    let plain = c2.secret_value(&case2.arn, "AWSCURRENT").await.unwrap();
    assert_ne!(plain, "canary-plain");
    assert_eq!(plain.len(), 40);
}
