//! The leaver against a real Keycloak: the contract suite on every kind the leaver acts on,
//! then the read-back: the person's old refresh and offline tokens are refused
//! (`invalid_grant`), the owned client's old secret is refused and the published new one works,
//! the client now belongs to the manager, and a colleague's session still works.

use crate::common::{ctx, owned_service_client, person, provider, Realm};
use closeout_contract::{ActionParams, Provider, State};
use closeout_keycloak::kinds;
use closeout_testkit::contract::{run_suite, Case};
use serde_json::json;

const ALICE_PW: &str = "alice-pw-canary-71d3";
const BOB_PW: &str = "bob-pw-canary-0c9e";
const PORTAL_SECRET: &str = "portal-secret-canary-5a1b";
const SYNC_SECRET: &str = "sync-secret-canary-93fe";

#[tokio::test(flavor = "multi_thread")]
async fn leaver_closes_sessions_tokens_credentials_mappings_and_owned_clients() {
    let realm = Realm::new("leaver").await;
    let r = &realm.name;
    // Clients: the portal people sign in to, a client with roles, a service-account client
    // Alice owns.
    realm.client("portal", PORTAL_SECRET, json!({})).await;
    let reports = realm.client("reports", "reports-secret", json!({})).await;
    realm
        .admin(
            "POST",
            &format!("/clients/{reports}/roles"),
            Some(json!({"name": "viewer"})),
        )
        .await;
    let sync = owned_service_client(&realm, "billing-sync", SYNC_SECRET, "alice@example.com").await;
    // Roles and nested groups: /eng carries realm role eng-base; Alice is in /eng/platform.
    realm
        .admin("POST", "/roles", Some(json!({"name": "auditor"})))
        .await;
    realm
        .admin("POST", "/roles", Some(json!({"name": "eng-base"})))
        .await;
    realm
        .admin("POST", "/groups", Some(json!({"name": "eng"})))
        .await;
    let eng = realm.admin("GET", "/group-by-path/eng", None).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    realm
        .admin(
            "POST",
            &format!("/groups/{eng}/children"),
            Some(json!({"name": "platform"})),
        )
        .await;
    let platform = realm
        .admin("GET", "/group-by-path/eng/platform", None)
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let eng_base = realm.admin("GET", "/roles/eng-base", None).await;
    realm
        .admin(
            "POST",
            &format!("/groups/{eng}/role-mappings/realm"),
            Some(json!([eng_base])),
        )
        .await;
    // An identity provider to link Alice to.
    realm
        .admin(
            "POST",
            "/identity-provider/instances",
            Some(
                json!({"alias": "github", "providerId": "github", "enabled": true,
                        "config": {"clientId": "gh-client", "clientSecret": "gh-secret"}}),
            ),
        )
        .await;
    // People.
    let alice = realm
        .user(
            "alice",
            "alice@example.com",
            ALICE_PW,
            json!({"employee_id": ["E100"]}),
        )
        .await;
    let bob = realm
        .user(
            "bob",
            "bob@example.com",
            BOB_PW,
            json!({"employee_id": ["E200"]}),
        )
        .await;
    realm
        .admin("PUT", &format!("/users/{alice}/groups/{platform}"), None)
        .await;
    let auditor = realm.admin("GET", "/roles/auditor", None).await;
    realm
        .admin(
            "POST",
            &format!("/users/{alice}/role-mappings/realm"),
            Some(json!([auditor])),
        )
        .await;
    let viewer = realm
        .admin("GET", &format!("/clients/{reports}/roles/viewer"), None)
        .await;
    realm
        .admin(
            "POST",
            &format!("/users/{alice}/role-mappings/clients/{reports}"),
            Some(json!([viewer])),
        )
        .await;
    realm
        .admin(
            "POST",
            &format!("/users/{alice}/federated-identity/github"),
            Some(
                json!({"identityProvider": "github", "userId": "gh-4711", "userName": "alice-gh"}),
            ),
        )
        .await;
    // Sign-ins: Alice online and offline, Bob online.
    let alice_refresh = realm
        .sign_in("portal", PORTAL_SECRET, "alice", ALICE_PW, false)
        .await;
    let alice_offline = realm
        .sign_in("portal", PORTAL_SECRET, "alice", ALICE_PW, true)
        .await;
    let bob_refresh = realm
        .sign_in("portal", PORTAL_SECRET, "bob", BOB_PW, false)
        .await;
    assert!(realm
        .refresh("portal", PORTAL_SECRET, &alice_refresh)
        .await
        .is_ok());
    assert!(realm
        .client_credentials("billing-sync", SYNC_SECRET)
        .await
        .is_ok());

    let publish =
        std::env::temp_dir().join(format!("closeout-kc-publish-{}-{r}", std::process::id()));
    let provider = provider(&realm, Some(publish.clone())).await;
    let started = chrono::Utc::now();
    let alice_ctx = ctx(
        person("E100", "alice@example.com", Some("bob@example.com")),
        Some(started),
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // Resolve: everything seeded is found, with paths.
    let res = provider.resolve(&alice_ctx).await.expect("resolve");
    assert_eq!(res.accounts.len(), 1, "{:?}", res.accounts);
    assert!(
        res.accounts[0].matched_by.contains("employee_id"),
        "{:?}",
        res.accounts
    );
    let id = |kind: &str, rest: &str| format!("keycloak:{kind}:{r}/{rest}");
    let ids: Vec<&str> = res.findings.iter().map(|f| f.id.as_str()).collect();
    for want in [
        id(kinds::USER, &alice),
        id(kinds::SESSIONS, &alice),
        id(kinds::OFFLINE_SESSION, &format!("{alice}/portal")),
        id(kinds::FEDERATED_IDENTITY, &format!("{alice}/github")),
        id(kinds::GROUP_MEMBERSHIP, &format!("{alice}/eng/platform")),
        id(kinds::INHERITED_GROUP, &format!("{alice}/eng")),
        id(kinds::GROUP_ROLE, &format!("{alice}/eng#eng-base")),
        id(kinds::REALM_ROLE, &format!("{alice}/auditor")),
        id(kinds::CLIENT_ROLE, &format!("{alice}/reports/viewer")),
        id(kinds::OWNED_CLIENT, "billing-sync"),
        id(kinds::CLIENT_SECRET, "billing-sync"),
    ] {
        assert!(ids.contains(&want.as_str()), "{want} not in {ids:#?}");
    }
    let password = res
        .findings
        .iter()
        .find(|f| f.kind == kinds::CREDENTIAL && f.attr("type") == Some("password"))
        .expect("Alice's password credential");
    let inherited = res
        .findings
        .iter()
        .find(|f| f.kind == kinds::GROUP_ROLE)
        .unwrap();
    assert_eq!(
        inherited.paths[0].render("alice"),
        "alice -account-> user alice -member-of-> group /eng/platform -member-of-> group /eng -has-role-> role eng-base"
    );
    // Nothing of Bob's is Alice's.
    assert!(!ids.iter().any(|i| i.contains(&bob)), "{ids:#?}");

    let reassign = ActionParams {
        new_owner: Some("bob@example.com".into()),
        ..Default::default()
    };
    let cases = vec![
        Case::new(id(kinds::USER, &alice), "disable", State::Disabled),
        Case::new(
            id(kinds::SESSIONS, &alice),
            "revoke-sessions",
            State::Revoked,
        ),
        Case::new(
            id(kinds::OFFLINE_SESSION, &format!("{alice}/portal")),
            "revoke",
            State::Revoked,
        ),
        Case::new(password.id.clone(), "remove", State::Deleted),
        Case::new(
            id(kinds::FEDERATED_IDENTITY, &format!("{alice}/github")),
            "remove",
            State::Deleted,
        ),
        Case::new(
            id(kinds::GROUP_MEMBERSHIP, &format!("{alice}/eng/platform")),
            "remove",
            State::Deleted,
        ),
        Case::new(
            id(kinds::REALM_ROLE, &format!("{alice}/auditor")),
            "remove",
            State::Deleted,
        ),
        Case::new(
            id(kinds::CLIENT_ROLE, &format!("{alice}/reports/viewer")),
            "remove",
            State::Deleted,
        ),
        Case::new(
            id(kinds::CLIENT_SECRET, "billing-sync"),
            "rotate",
            State::Rotated,
        ),
        Case::new(
            id(kinds::OWNED_CLIENT, "billing-sync"),
            "reassign-owner",
            State::Reassigned,
        )
        .with_params(reassign),
    ];
    let report = run_suite(
        &provider,
        &alice_ctx,
        &cases,
        &[
            ALICE_PW,
            BOB_PW,
            PORTAL_SECRET,
            SYNC_SECRET,
            &alice_refresh,
            &alice_offline,
        ],
    )
    .await;
    let rotation = report.case(&id(kinds::CLIENT_SECRET, "billing-sync"), "rotate");
    assert!(
        rotation.outcome.detail.contains("old one is refused"),
        "{}",
        rotation.outcome.detail
    );
    let probe = rotation
        .probe
        .as_ref()
        .expect("the retired secret is probed");
    assert!(probe.dead, "{probe:?}");

    // The person's old tokens are refused by Keycloak itself.
    assert_eq!(
        realm
            .refresh("portal", PORTAL_SECRET, &alice_refresh)
            .await
            .err()
            .as_deref(),
        Some("invalid_grant")
    );
    assert_eq!(
        realm
            .refresh("portal", PORTAL_SECRET, &alice_offline)
            .await
            .err()
            .as_deref(),
        Some("invalid_grant")
    );
    // She cannot sign in again either.
    assert!(realm
        .token(&[
            ("grant_type", "password"),
            ("client_id", "portal"),
            ("client_secret", PORTAL_SECRET),
            ("username", "alice"),
            ("password", ALICE_PW)
        ])
        .await
        .is_err());
    // The owned client: the old secret is refused, the published one works, Bob owns it.
    let old = realm.client_credentials("billing-sync", SYNC_SECRET).await;
    assert!(
        matches!(
            old.as_ref().err().map(String::as_str),
            Some("unauthorized_client" | "invalid_client")
        ),
        "{old:?}"
    );
    let published =
        std::fs::read_to_string(publish.join(r).join("billing-sync")).expect("published secret");
    assert!(realm
        .client_credentials("billing-sync", published.trim())
        .await
        .is_ok());
    let client = realm.admin("GET", &format!("/clients/{sync}"), None).await;
    assert_eq!(client["attributes"]["owner"], "bob@example.com");
    // A colleague's session still works.
    assert!(realm
        .refresh("portal", PORTAL_SECRET, &bob_refresh)
        .await
        .is_ok());
    assert!(!realm
        .admin("GET", &format!("/users/{bob}/sessions"), None)
        .await
        .as_array()
        .unwrap()
        .is_empty());

    // Read back from the admin API.
    let user = realm.admin("GET", &format!("/users/{alice}"), None).await;
    assert_eq!(user["enabled"], false);
    for what in [
        "sessions",
        "consents",
        "credentials",
        "federated-identity",
        "groups",
    ] {
        let list = realm
            .admin("GET", &format!("/users/{alice}/{what}"), None)
            .await;
        assert_eq!(list.as_array().map(Vec::len), Some(0), "{what}: {list}");
    }
    let mappings = realm
        .admin("GET", &format!("/users/{alice}/role-mappings"), None)
        .await;
    let realm_roles: Vec<&str> = mappings["realmMappings"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(!realm_roles.contains(&"auditor"), "{mappings}");
    assert!(
        mappings["clientMappings"].get("reports").is_none(),
        "{mappings}"
    );

    // Resolving again: everything acted on is closed; the inherited group went with the
    // membership.
    let after = provider.resolve(&alice_ctx).await.expect("resolve after");
    let open: Vec<_> = after
        .findings
        .iter()
        .filter(|f| f.state.is_open() && kinds_of_leaver().contains(&f.kind.as_str()))
        .map(|f| f.id.clone())
        .collect();
    assert!(open.is_empty(), "still open: {open:#?}");
    assert!(
        !after
            .findings
            .iter()
            .any(|f| f.kind == kinds::INHERITED_GROUP),
        "{:#?}",
        after.findings
    );
    let _ = std::fs::remove_dir_all(publish);
}

fn kinds_of_leaver() -> [&'static str; 9] {
    [
        kinds::USER,
        kinds::SESSIONS,
        kinds::OFFLINE_SESSION,
        kinds::CREDENTIAL,
        kinds::FEDERATED_IDENTITY,
        kinds::GROUP_MEMBERSHIP,
        kinds::CLIENT_ROLE,
        kinds::CLIENT_SECRET,
        kinds::OWNED_CLIENT,
    ]
}

/// A stage's actions run concurrently: rotating a client's secret while reassigning its owner,
/// and disabling a user while removing her credential and logging her out, must not undo each
/// other (a PUT of a whole representation read before the other write would).
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_actions_on_one_user_and_one_client_do_not_undo_each_other() {
    let realm = Realm::new("race").await;
    let r = realm.name.clone();
    realm.client("portal", PORTAL_SECRET, json!({})).await;
    let sync = owned_service_client(&realm, "billing-sync", SYNC_SECRET, "alice@example.com").await;
    let alice = realm
        .user(
            "alice",
            "alice@example.com",
            ALICE_PW,
            json!({"employee_id": ["E100"]}),
        )
        .await;
    let refresh = realm
        .sign_in("portal", PORTAL_SECRET, "alice", ALICE_PW, false)
        .await;
    let publish = std::env::temp_dir().join(format!("closeout-kc-race-{}-{r}", std::process::id()));
    let provider = std::sync::Arc::new(provider(&realm, Some(publish.clone())).await);
    let ctx = ctx(
        person("E100", "alice@example.com", Some("bob@example.com")),
        None,
    );
    let res = provider.resolve(&ctx).await.expect("resolve");
    let request = |kind: &str, verb: &str| {
        let finding = res
            .findings
            .iter()
            .find(|f| f.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} in {:#?}", res.findings))
            .clone();
        closeout_contract::ActionRequest {
            idempotency_key: format!("race/{kind}/{verb}"),
            verb: verb.into(),
            finding,
            params: ActionParams {
                new_owner: Some("bob@example.com".into()),
                ..Default::default()
            },
        }
    };
    let actions = [
        request(kinds::CLIENT_SECRET, "rotate"),
        request(kinds::OWNED_CLIENT, "reassign-owner"),
        request(kinds::USER, "disable"),
        request(kinds::CREDENTIAL, "remove"),
        request(kinds::SESSIONS, "revoke-sessions"),
    ];
    let handles: Vec<_> = actions
        .into_iter()
        .map(|a| {
            let p = std::sync::Arc::clone(&provider);
            tokio::spawn(async move { p.execute(&a).await })
        })
        .collect();
    for h in handles {
        h.await.expect("task").expect("action");
    }
    assert!(realm
        .client_credentials("billing-sync", SYNC_SECRET)
        .await
        .is_err());
    let published = std::fs::read_to_string(publish.join(&r).join("billing-sync")).unwrap();
    assert!(realm
        .client_credentials("billing-sync", published.trim())
        .await
        .is_ok());
    let client = realm.admin("GET", &format!("/clients/{sync}"), None).await;
    assert_eq!(client["attributes"]["owner"], "bob@example.com");
    let user = realm.admin("GET", &format!("/users/{alice}"), None).await;
    assert_eq!(user["enabled"], false);
    let creds = realm
        .admin("GET", &format!("/users/{alice}/credentials"), None)
        .await;
    assert_eq!(creds.as_array().map(Vec::len), Some(0));
    assert_eq!(
        realm
            .refresh("portal", PORTAL_SECRET, &refresh)
            .await
            .err()
            .as_deref(),
        Some("invalid_grant")
    );
    let _ = std::fs::remove_dir_all(publish);
}
