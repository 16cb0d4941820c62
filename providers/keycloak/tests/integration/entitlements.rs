//! Joiner and mover through the entitlement hooks: a grant the policy names becomes the finding
//! `resolve` reports, granting is idempotent, and removing it is read back.

use crate::common::{ctx, person, provider, Realm};
use closeout_contract::{ActionParams, ActionRequest, Entitlement, Provider, State};
use closeout_keycloak::{kinds, CAPABILITIES};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn grants_from_the_policy_are_made_read_back_and_removed() {
    let realm = Realm::new("grants").await;
    let reports = realm.client("reports", "reports-secret", json!({})).await;
    realm
        .admin(
            "POST",
            &format!("/clients/{reports}/roles"),
            Some(json!({"name": "editor"})),
        )
        .await;
    realm
        .admin("POST", "/roles", Some(json!({"name": "finance"})))
        .await;
    realm
        .admin("POST", "/groups", Some(json!({"name": "fin"})))
        .await;
    let fin = realm.admin("GET", "/group-by-path/fin", None).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    realm
        .admin(
            "POST",
            &format!("/groups/{fin}/children"),
            Some(json!({"name": "ap"})),
        )
        .await;
    let carol = realm
        .user("carol", "carol@example.com", "carol-pw", json!({}))
        .await;
    let provider = provider(&realm, None).await;
    let carol_ctx = ctx(person("E300", "carol@example.com", None), None);

    // The policy's words, through the grant forms.
    let group = (CAPABILITIES.grant_form("group").unwrap().target)("fin/ap", &[]).unwrap();
    let role = (CAPABILITIES.grant_form("realm-role").unwrap().target)("finance", &[]).unwrap();
    let client_role =
        (CAPABILITIES.grant_form("client-role").unwrap().target)("editor", &["reports"]).unwrap();
    let wanted = [
        Entitlement::new("keycloak", kinds::GROUP_MEMBERSHIP, group),
        Entitlement::new("keycloak", kinds::REALM_ROLE, role),
        Entitlement::new("keycloak", kinds::CLIENT_ROLE, client_role),
    ];
    for e in &wanted {
        let f = provider
            .grant_finding(&carol_ctx, e)
            .await
            .expect("grant finding");
        assert_eq!(f.state, State::Deleted);
        let req = |verb: &str| ActionRequest {
            idempotency_key: format!("test/{}/{verb}", f.id),
            verb: verb.into(),
            finding: f.clone(),
            params: ActionParams::default(),
        };
        let out = provider.execute(&req("grant")).await.expect("grant");
        assert!(!out.already_done && out.state == State::Active, "{out:?}");
        let again = provider.execute(&req("grant")).await.expect("grant again");
        assert!(again.already_done, "{again:?}");
        // resolve reports it under the same id, and it is the same entitlement.
        let res = provider.resolve(&carol_ctx).await.expect("resolve");
        let live = res
            .findings
            .iter()
            .find(|l| l.id == f.id)
            .unwrap_or_else(|| panic!("{} not resolved: {:#?}", f.id, res.findings));
        assert_eq!(provider.entitlement(live).as_ref(), Some(e));
        assert_eq!(
            provider.live_state(live, &carol_ctx).await.unwrap(),
            State::Active
        );
    }
    // Read back from the admin API.
    let groups = realm
        .admin("GET", &format!("/users/{carol}/groups"), None)
        .await;
    assert_eq!(groups[0]["path"], "/fin/ap", "{groups}");
    let mappings = realm
        .admin("GET", &format!("/users/{carol}/role-mappings"), None)
        .await;
    assert!(
        mappings["realmMappings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "finance"),
        "{mappings}"
    );
    assert_eq!(
        mappings["clientMappings"]["reports"]["mappings"][0]["name"], "editor",
        "{mappings}"
    );

    // A mover loses the client role.
    let res = provider.resolve(&carol_ctx).await.unwrap();
    let held = res
        .findings
        .iter()
        .find(|f| f.kind == kinds::CLIENT_ROLE)
        .unwrap()
        .clone();
    let remove = ActionRequest {
        idempotency_key: "test/remove".into(),
        verb: "remove".into(),
        finding: held.clone(),
        params: ActionParams::default(),
    };
    assert_eq!(
        provider.execute(&remove).await.unwrap().state,
        State::Deleted
    );
    assert_eq!(
        provider.live_state(&held, &carol_ctx).await.unwrap(),
        State::Deleted
    );
    let mappings = realm
        .admin("GET", &format!("/users/{carol}/role-mappings"), None)
        .await;
    assert!(
        mappings["clientMappings"].get("reports").is_none(),
        "{mappings}"
    );

    // Reconcile: a user no identity claims is unclaimed; Carol is claimed.
    realm
        .user("ghost", "ghost@example.com", "ghost-pw", json!({}))
        .await;
    let unclaimed = provider
        .unclaimed_accounts(std::slice::from_ref(&carol_ctx.identity))
        .await
        .expect("unclaimed accounts");
    let names: Vec<&str> = unclaimed.iter().map(|u| u.display.as_str()).collect();
    assert_eq!(
        names,
        [format!("user ghost in realm {}", realm.name)],
        "{unclaimed:?}"
    );
    assert!(unclaimed[0].enabled);

    // Doctor: the master admin holds every role the capabilities name; a service account of
    // the realm holding only view-users lacks the rest, by name.
    let needs: Vec<&'static str> = CAPABILITIES.permissions.iter().map(|p| p.name).collect();
    let health = provider.health(&needs).await.expect("health");
    assert!(
        health.missing.is_empty() && health.unchecked.is_empty(),
        "{health:?}"
    );
    realm
        .client(
            "closeout",
            "closeout-sa-secret",
            json!({"serviceAccountsEnabled": true}),
        )
        .await;
    let sa_client = realm.admin("GET", "/clients?clientId=closeout", None).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sa_user = realm
        .admin(
            "GET",
            &format!("/clients/{sa_client}/service-account-user"),
            None,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rm = realm
        .admin("GET", "/clients?clientId=realm-management", None)
        .await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let view_users = realm
        .admin("GET", &format!("/clients/{rm}/roles/view-users"), None)
        .await;
    realm
        .admin(
            "POST",
            &format!("/users/{sa_user}/role-mappings/clients/{rm}"),
            Some(json!([view_users])),
        )
        .await;
    let secret_file = std::env::temp_dir().join(format!(
        "closeout-kc-sa-{}-{}",
        std::process::id(),
        realm.name
    ));
    std::fs::write(&secret_file, "closeout-sa-secret").unwrap();
    let sa = closeout_keycloak::KeycloakProvider::connect(closeout_keycloak::KeycloakConfig {
        base_url: realm.base.clone(),
        realm: realm.name.clone(),
        auth_realm: realm.name.clone(),
        admin_client_id: "closeout".into(),
        credential_file: Some(secret_file.clone()),
        ..Default::default()
    })
    .await
    .expect("connect as the service account");
    let health = sa.health(&needs).await;
    let _ = std::fs::remove_file(secret_file);
    // Listing clients needs view-clients: the health check says so as an error.
    let err = health.expect_err("view-clients is missing");
    assert!(err.to_string().contains("403"), "{err}");
    realm
        .admin(
            "POST",
            &format!("/users/{sa_user}/role-mappings/clients/{rm}"),
            Some(json!([realm
                .admin("GET", &format!("/clients/{rm}/roles/view-clients"), None)
                .await])),
        )
        .await;
    let health = sa.health(&needs).await.expect("health with the view roles");
    let mut missing = health.missing.clone();
    missing.sort();
    missing.dedup();
    assert_eq!(
        missing,
        // view-users is a composite that carries query-groups.
        [
            "realm-management:manage-clients",
            "realm-management:manage-users"
        ],
        "{health:?}"
    );

    // Granting a group that does not exist is a configuration error naming it.
    let err = provider
        .grant_finding(
            &carol_ctx,
            &Entitlement::new("keycloak", kinds::GROUP_MEMBERSHIP, "/nope"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nope"), "{err}");
}
