//! The database secrets engine against OpenBao and a real PostgreSQL 15 (the testkit's
//! throwaway cluster), the engine's connection configured with a database user of its own:
//!
//! - the dynamic credentials the leaver obtained are a `lease` finding named by their role
//!   (the audit log says her request obtained them); revoking the lease makes OpenBao drop
//!   the database user, which then cannot log in;
//! - the static role whose credentials she could read is rotated with `rotate-role`: the
//!   password she read is refused by PostgreSQL, the one OpenBao now hands out works, and
//!   `last_vault_rotation` moved;
//! - the connection whose configuration she could read has its root credentials rotated
//!   with `rotate-root`: the root password the operator typed is refused;
//! - a static role she could not read is left alone.

use crate::api::{context_now, person, request, Api};
use closeout_contract::{Finding, Provider, Resolution, State};
use closeout_testkit::{OpenBaoServer, PostgresServer};
use closeout_vault::VaultConfig;
use serde_json::json;

fn of_kind<'a>(r: &'a Resolution, kind: &str) -> Vec<&'a Finding> {
    r.findings.iter().filter(|f| f.kind == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leavers_database_credentials_are_revoked_and_rotated_at_the_database() {
    let pg = PostgresServer::shared();
    pg.psql("CREATE ROLE dbe_root LOGIN CREATEROLE PASSWORD 'dbe-root-old'");
    pg.psql("CREATE ROLE dbe_static LOGIN PASSWORD 'dbe-static-seed'");
    pg.psql("CREATE ROLE dbe_other LOGIN PASSWORD 'dbe-other-seed'");
    let api = Api::namespace("db-engine").await;
    api.root(
        "POST",
        "sys/mounts/database",
        Some(json!({"type": "database"})),
    )
    .await;
    api.root(
        "POST",
        "database/config/pay",
        Some(json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": format!(
                "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
                pg.port()
            ),
            "username": "dbe_root",
            "password": "dbe-root-old",
            "allowed_roles": ["*"],
        })),
    )
    .await;
    for (role, user) in [("pay-static", "dbe_static"), ("other-static", "dbe_other")] {
        api.root(
            "POST",
            &format!("database/static-roles/{role}"),
            Some(json!({"db_name": "pay", "username": user, "rotation_period": "24h"})),
        )
        .await;
    }
    api.root(
        "POST",
        "database/roles/pay-dyn",
        Some(json!({
            "db_name": "pay",
            "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
            "default_ttl": "1h",
        })),
    )
    .await;
    api.policy(
        "pay-db",
        r#"path "database/creds/pay-dyn" { capabilities = ["read"] }
           path "database/static-creds/pay-static" { capabilities = ["read"] }
           path "database/config/pay" { capabilities = ["read"] }"#,
    )
    .await;
    api.root(
        "POST",
        "sys/auth/userpass",
        Some(json!({"type": "userpass"})),
    )
    .await;
    let auth = api.root("GET", "sys/auth", None).await;
    let up = auth["data"]["userpass/"]["accessor"]
        .as_str()
        .unwrap()
        .to_string();
    let alice = api.entity("alice.smith", &["pay-db"]).await;
    api.root(
        "POST",
        "identity/entity-alias",
        Some(json!({"name": "alice.smith", "canonical_id": alice, "mount_accessor": up})),
    )
    .await;
    api.root(
        "POST",
        "auth/userpass/users/alice.smith",
        Some(json!({"password": "alice-pw"})),
    )
    .await;
    let (st, v) = api.login("alice.smith", "alice-pw").await;
    assert_eq!(st, 200, "{v}");
    let token = v["auth"]["client_token"].as_str().unwrap().to_string();
    // What the leaver takes with her: dynamic credentials, and the static role's password.
    let (st, dynamic) = api
        .call("GET", "database/creds/pay-dyn", &token, None)
        .await;
    assert_eq!(st, 200, "{dynamic}");
    let dyn_user = dynamic["data"]["username"].as_str().unwrap().to_string();
    let dyn_pw = dynamic["data"]["password"].as_str().unwrap().to_string();
    let dyn_lease = dynamic["lease_id"].as_str().unwrap().to_string();
    assert!(pg.can_login(&dyn_user, &dyn_pw));
    let (st, stat) = api
        .call("GET", "database/static-creds/pay-static", &token, None)
        .await;
    assert_eq!(st, 200, "{stat}");
    let static_pw = stat["data"]["password"].as_str().unwrap().to_string();
    assert!(pg.can_login("dbe_static", &static_pw));
    let role_before = api
        .root("GET", "database/static-roles/pay-static", None)
        .await["data"]["last_vault_rotation"]
        .clone();
    let other_before = api
        .root("GET", "database/static-roles/other-static", None)
        .await["data"]["last_vault_rotation"]
        .clone();
    let other_pw = api
        .root("GET", "database/static-creds/other-static", None)
        .await["data"]["password"]
        .as_str()
        .unwrap()
        .to_string();

    let p = api
        .provider_with(
            "db-engine",
            "root",
            VaultConfig {
                audit_log: Some(OpenBaoServer::shared().audit_log()),
                ..Default::default()
            },
        )
        .await;
    let ctx = context_now(person("E100", "alice.smith@example.com")).await;
    let r = p.resolve(&ctx).await.unwrap();
    assert!(
        !r.gaps.iter().any(|g| g.resource == "database/"),
        "the database engine is enumerated, not a gap: {:#?}",
        r.gaps
    );

    // Resolve: each with its path.
    let statics = of_kind(&r, "database-static-role");
    assert_eq!(statics.len(), 1, "{statics:#?}");
    let st_f = statics[0];
    assert_eq!(st_f.resource, "database/static-roles/pay-static");
    assert_eq!(st_f.attr("username"), Some("dbe_static"));
    assert_eq!(st_f.state, State::Active);
    assert!(
        st_f.paths[0].render("alice").contains("policy pay-db")
            && st_f.paths[0]
                .render("alice")
                .contains("read database/static-creds/pay-static"),
        "{:?}",
        st_f.paths[0]
    );
    let conns = of_kind(&r, "database-connection");
    assert_eq!(conns.len(), 1, "{conns:#?}");
    let conn_f = conns[0];
    assert_eq!(conn_f.resource, "database/config/pay");
    assert_eq!(conn_f.attr("username"), Some("dbe_root"));
    assert!(
        conn_f.paths[0]
            .render("alice")
            .contains("read database/config/pay"),
        "{:?}",
        conn_f.paths[0]
    );
    let leases = of_kind(&r, "lease");
    let lease_f = leases
        .iter()
        .find(|f| f.attr("lease_id") == Some(dyn_lease.as_str()))
        .unwrap_or_else(|| panic!("no finding for the dynamic lease {dyn_lease}: {leases:#?}"));
    assert_eq!(lease_f.attr("database_role"), Some("pay-dyn"));
    assert!(
        lease_f.display.contains("dynamic database credentials"),
        "{}",
        lease_f.display
    );

    // Act, read back at the database and through the API.
    let out = p
        .execute(&request("run-db", lease_f, "revoke"))
        .await
        .unwrap();
    assert_eq!(out.state, State::Revoked, "{out:?}");
    assert!(
        !pg.can_login(&dyn_user, &dyn_pw),
        "dynamic user still logs in"
    );
    assert_eq!(
        pg.psql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{dyn_user}'"
        ))
        .trim(),
        "0",
        "the dynamic database user is dropped"
    );
    assert_eq!(p.live_state(lease_f, &ctx).await.unwrap(), State::Deleted);

    let out = p.execute(&request("run-db", st_f, "rotate")).await.unwrap();
    assert!(!out.already_done && out.state == State::Rotated, "{out:?}");
    let role_after = api
        .root("GET", "database/static-roles/pay-static", None)
        .await["data"]["last_vault_rotation"]
        .clone();
    assert_ne!(role_after, role_before, "last_vault_rotation moved");
    assert!(
        !pg.can_login("dbe_static", &static_pw),
        "the password she read still logs in"
    );
    let new_pw = api
        .root("GET", "database/static-creds/pay-static", None)
        .await["data"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(pg.can_login("dbe_static", &new_pw), "new password refused");
    assert_eq!(p.live_state(st_f, &ctx).await.unwrap(), State::Rotated);
    let again = p.execute(&request("run-db", st_f, "rotate")).await.unwrap();
    assert!(again.already_done, "{again:?}");
    assert!(pg.can_login("dbe_static", &new_pw), "not rotated twice");

    assert_eq!(
        p.live_state(conn_f, &ctx).await.unwrap(),
        State::Active,
        "no root rotation recorded yet"
    );
    let out = p
        .execute(&request("run-db", conn_f, "rotate"))
        .await
        .unwrap();
    assert!(!out.already_done && out.state == State::Rotated, "{out:?}");
    assert!(
        !pg.can_login("dbe_root", "dbe-root-old"),
        "the root password the operator typed still logs in"
    );
    assert_eq!(p.live_state(conn_f, &ctx).await.unwrap(), State::Rotated);
    let again = p
        .execute(&request("run-db", conn_f, "rotate"))
        .await
        .unwrap();
    assert!(again.already_done, "{again:?}");
    // OpenBao still reaches the database with the root password only it knows.
    let (st, v) = api
        .call("GET", "database/creds/pay-dyn", "root", None)
        .await;
    assert_eq!(st, 200, "the engine still works after rotate-root: {v}");
    let u = v["data"]["username"].as_str().unwrap();
    assert!(pg.can_login(u, v["data"]["password"].as_str().unwrap()));

    // The static role she could not read is untouched.
    let other_after = api
        .root("GET", "database/static-roles/other-static", None)
        .await["data"]["last_vault_rotation"]
        .clone();
    assert_eq!(other_after, other_before);
    assert!(pg.can_login("dbe_other", &other_pw));

    // Re-resolved: nothing open.
    let r = p.resolve(&ctx).await.unwrap();
    for f in of_kind(&r, "database-static-role")
        .into_iter()
        .chain(of_kind(&r, "database-connection"))
    {
        assert_eq!(f.state, State::Rotated, "{f:#?}");
    }
    assert!(
        !of_kind(&r, "lease")
            .iter()
            .any(|f| f.attr("lease_id") == Some(dyn_lease.as_str())),
        "the revoked lease is gone"
    );
}

/// Writing a database engine's roles is reach to every database its connections reach: a
/// writer makes a role whose creation statements give her any grants (shown here for real), so
/// every static role and the connection's root credentials of that mount are `can-grant-self`
/// findings rotated at the database, and what she may have created there (users, grants) is an
/// open `database-engine-write` gap naming the mount, which rotation cannot close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_database_engine_roles_is_reach_to_every_database_of_the_engine() {
    let pg = PostgresServer::shared();
    pg.psql("CREATE ROLE dbw_root LOGIN CREATEROLE PASSWORD 'dbw-root-old'");
    pg.psql("CREATE ROLE dbw_s1 LOGIN PASSWORD 'dbw-s1-seed'");
    pg.psql("CREATE ROLE dbw_s2 LOGIN PASSWORD 'dbw-s2-seed'");
    let api = Api::namespace("db-writer").await;
    api.root(
        "POST",
        "sys/mounts/database",
        Some(json!({"type": "database"})),
    )
    .await;
    api.root(
        "POST",
        "database/config/pay",
        Some(json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": format!(
                "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
                pg.port()
            ),
            "username": "dbw_root",
            "password": "dbw-root-old",
            "allowed_roles": ["*"],
        })),
    )
    .await;
    let mut seeded = Vec::new();
    for (role, user) in [("s1", "dbw_s1"), ("s2", "dbw_s2")] {
        api.root(
            "POST",
            &format!("database/static-roles/{role}"),
            Some(json!({"db_name": "pay", "username": user, "rotation_period": "24h"})),
        )
        .await;
        let pw = api
            .root("GET", &format!("database/static-creds/{role}"), None)
            .await["data"]["password"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(pg.can_login(user, &pw));
        seeded.push((user, pw));
    }
    // She may write dynamic roles only: no read of any credential or configuration.
    api.policy(
        "db-write",
        r#"path "database/roles/*" { capabilities = ["create", "update"] }
           path "database/creds/*" { capabilities = ["read"] }"#,
    )
    .await;
    api.root(
        "POST",
        "sys/auth/userpass",
        Some(json!({"type": "userpass"})),
    )
    .await;
    let auth = api.root("GET", "sys/auth", None).await;
    let up = auth["data"]["userpass/"]["accessor"]
        .as_str()
        .unwrap()
        .to_string();
    let bea = api.entity("bea.writer", &["db-write"]).await;
    api.root(
        "POST",
        "identity/entity-alias",
        Some(json!({"name": "bea.writer", "canonical_id": bea, "mount_accessor": up})),
    )
    .await;
    api.root(
        "POST",
        "auth/userpass/users/bea.writer",
        Some(json!({"password": "bea-pw"})),
    )
    .await;
    let (st, v) = api.login("bea.writer", "bea-pw").await;
    assert_eq!(st, 200, "{v}");
    let token = v["auth"]["client_token"].as_str().unwrap().to_string();
    // The reach is real: a role of hers whose user gets the root user's grants.
    let (st, v) = api
        .call(
            "POST",
            "database/roles/bea-own",
            &token,
            Some(json!({
                "db_name": "pay",
                "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE dbw_s1;"],
                "default_ttl": "1h",
            })),
        )
        .await;
    assert!(st == 204 || st == 200, "her role write: {st} {v}");
    let (st, creds) = api
        .call("GET", "database/creds/bea-own", &token, None)
        .await;
    assert_eq!(st, 200, "{creds}");
    let user = creds["data"]["username"].as_str().unwrap();
    assert!(pg.can_login(user, creds["data"]["password"].as_str().unwrap()));

    let p = api
        .provider_with("db-writer", "root", VaultConfig::default())
        .await;
    let ctx = context_now(person("E300", "bea.writer@example.com")).await;
    let r = p.resolve(&ctx).await.unwrap();
    let gaps: Vec<_> = r
        .gaps
        .iter()
        .filter(|g| g.kind == "database-engine-write")
        .collect();
    assert_eq!(gaps.len(), 1, "{:#?}", r.gaps);
    assert_eq!(gaps[0].resource, "database/");
    assert!(
        gaps[0].reason.contains("write a dynamic role")
            && gaps[0].paths[0].render("bea").contains("policy db-write"),
        "{:#?}",
        gaps[0]
    );
    let statics = of_kind(&r, "database-static-role");
    let mut names: Vec<&str> = statics.iter().map(|f| f.resource.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["database/static-roles/s1", "database/static-roles/s2"],
        "{statics:#?}"
    );
    let conns = of_kind(&r, "database-connection");
    assert_eq!(conns.len(), 1, "{conns:#?}");
    for f in statics.iter().chain(conns.iter()) {
        assert_eq!(
            f.relation,
            closeout_contract::Relation::CanGrantSelf,
            "{f:#?}"
        );
        assert!(
            f.paths
                .iter()
                .any(|p| p.render("bea").contains("database/roles/")),
            "{:#?}",
            f.paths
        );
        let out = p.execute(&request("run-dbw", f, "rotate")).await.unwrap();
        assert_eq!(out.state, State::Rotated, "{out:?}");
    }
    // Read back at the database: every static password and the root password changed.
    for (user, old) in &seeded {
        assert!(
            !pg.can_login(user, old),
            "{user}'s old password still logs in"
        );
    }
    assert!(
        !pg.can_login("dbw_root", "dbw-root-old"),
        "the root password still logs in"
    );
    // Rotation does not undo what she made at the database: the gap stays while the reach
    // does, and names it.
    let r = p.resolve(&ctx).await.unwrap();
    assert!(
        r.gaps.iter().any(|g| g.kind == "database-engine-write"),
        "{:#?}",
        r.gaps
    );
    for f in of_kind(&r, "database-static-role")
        .into_iter()
        .chain(of_kind(&r, "database-connection"))
    {
        assert_eq!(f.state, State::Rotated, "{f:#?}");
    }
}
