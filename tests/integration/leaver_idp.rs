//! The identity provider and the apps behind it, end to end with the real binary and the shipped
//! leaver playbook: Alice (E1001) signs in through Keycloak (online, offline, and through the
//! consent screen of a client that asks for it) and has accounts in two SCIM apps that name her
//! differently; `closeout apply leaver` closes everything, and it is read back: no credential or
//! consent left, her old refresh, offline and consented tokens are refused (`invalid_grant`),
//! the client she
//! owned has a new published secret (the old one refused) and belongs to her manager, the wiki
//! keeps an inactive account, the CRM none, and Bob's session and accounts are untouched.

use crate::common::idp::IdpWorld;
use crate::common::{describe, json, stderr, stdout};
use serde_json::json;

const ALICE_PW: &str = "alice-pw-canary-e1001";
const PORTAL_SECRET: &str = "portal-secret-canary";
const BOT_SECRET: &str = "deploy-bot-secret-canary";
const INTRANET_SECRET: &str = "intranet-secret-canary";
const INTRANET_CALLBACK: &str = "http://127.0.0.1:9/intranet/callback";

/// What [`seed_leaver`] made: Keycloak ids and tokens, SCIM ids per app.
pub struct LeaverSeed {
    pub alice: String,
    pub bob: String,
    pub bot: String,
    pub alice_refresh: String,
    pub alice_offline: String,
    pub bob_refresh: String,
    /// Alice's refresh token from the authorization-code flow of the intranet (consent given).
    pub alice_consented: String,
    pub w_alice: String,
    pub w_bob: String,
    pub w_editors: String,
    pub c_alice: String,
    pub c_bob: String,
    pub c_sales: String,
}

/// The leaver scenario, also the chaos bench's Keycloak world: Alice (E1001, manager Bob) in
/// /engineering/platform with realm role oncall, signed in to the portal online and offline,
/// owning the deploy-bot client; Bob (E1000) signed in; both in the wiki (matched by externalId,
/// group editors) and the CRM (matched by email, group sales). Admin events are recorded (the
/// chaos bench counts client-secret regenerations from them).
pub async fn seed_leaver(w: &IdpWorld) -> LeaverSeed {
    let mut realm = w.kc.admin("GET", "", None).await;
    realm["adminEventsEnabled"] = json!(true);
    w.kc.admin("PUT", "", Some(realm)).await;
    w.kc.client("portal", PORTAL_SECRET, json!({})).await;
    let bot = w
        .kc.client("deploy-bot", BOT_SECRET,
            json!({"serviceAccountsEnabled": true, "attributes": {"owner": "alice.nguyen@example.com"}}))
        .await;
    w.kc.admin("POST", "/roles", Some(json!({"name": "oncall"})))
        .await;
    w.kc.admin("POST", "/groups", Some(json!({"name": "engineering"})))
        .await;
    let eng = w.kc.admin("GET", "/group-by-path/engineering", None).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    w.kc.admin(
        "POST",
        &format!("/groups/{eng}/children"),
        Some(json!({"name": "platform"})),
    )
    .await;
    let platform =
        w.kc.admin("GET", "/group-by-path/engineering/platform", None)
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
    let alice = w
        .kc_user("alice", "alice.nguyen@example.com", "E1001", ALICE_PW)
        .await;
    let bob = w
        .kc_user("bob", "bob.martin@example.com", "E1000", "bob-pw")
        .await;
    w.kc.admin("PUT", &format!("/users/{alice}/groups/{platform}"), None)
        .await;
    let oncall = w.kc.admin("GET", "/roles/oncall", None).await;
    w.kc.admin(
        "POST",
        &format!("/users/{alice}/role-mappings/realm"),
        Some(json!([oncall])),
    )
    .await;
    let alice_refresh =
        w.kc.sign_in("portal", PORTAL_SECRET, "alice", ALICE_PW, false)
            .await;
    let alice_offline =
        w.kc.sign_in("portal", PORTAL_SECRET, "alice", ALICE_PW, true)
            .await;
    let bob_refresh =
        w.kc.sign_in("portal", PORTAL_SECRET, "bob", "bob-pw", false)
            .await;
    let intranet = json!({"standardFlowEnabled": true, "consentRequired": true,
        "redirectUris": [INTRANET_CALLBACK]});
    w.kc.client("intranet", INTRANET_SECRET, intranet).await;
    let consented =
        w.kc.sign_in_with_consent(
            "intranet",
            INTRANET_SECRET,
            INTRANET_CALLBACK,
            "openid profile",
            "alice",
            ALICE_PW,
        )
        .await;
    let alice_consented = consented["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();

    let w_alice = w
        .scim_user(&w.wiki, "anguyen", "E1001", "alice.nguyen@example.com")
        .await;
    let w_bob = w
        .scim_user(&w.wiki, "bmartin", "E1000", "bob.martin@example.com")
        .await;
    let w_editors = w.scim_group(&w.wiki, "editors", &[&w_alice, &w_bob]).await;
    let c_alice = w
        .scim_user(
            &w.crm,
            "alice.nguyen@example.com",
            "crm-1",
            "alice.nguyen@example.com",
        )
        .await;
    let c_bob = w
        .scim_user(
            &w.crm,
            "bob.martin@example.com",
            "crm-2",
            "bob.martin@example.com",
        )
        .await;
    let c_sales = w.scim_group(&w.crm, "sales", &[&c_alice, &c_bob]).await;
    LeaverSeed {
        alice,
        bob,
        bot,
        alice_refresh,
        alice_offline,
        bob_refresh,
        alice_consented,
        w_alice,
        w_bob,
        w_editors,
        c_alice,
        c_bob,
        c_sales,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaver_closes_the_identity_provider_and_every_downstream_app() {
    let w = IdpWorld::new().await;
    let s = seed_leaver(&w).await;
    let alice = &s.alice;
    // Seeded as meant: Keycloak holds her consent to the intranet.
    let consents =
        w.kc.admin("GET", &format!("/users/{alice}/consents"), None)
            .await;
    assert_eq!(consents[0]["clientId"], "intranet", "{consents}");
    let bob = &s.bob;
    let bot = &s.bot;
    let c_alice = &s.c_alice;
    let w_alice = &s.w_alice;
    let w_bob = &s.w_bob;
    // Doctor: both providers reachable, every permission the playbooks need held.
    let doctor = w.closeout(&["doctor"]);
    assert_eq!(
        doctor.status.code(),
        Some(0),
        "doctor:\n{}",
        describe(&doctor)
    );
    assert!(
        stdout(&doctor).contains("[keycloak] reachable as user admin of realm master"),
        "{}",
        describe(&doctor)
    );

    let out = w.closeout(&[
        "apply",
        "leaver",
        "--identity",
        "E1001",
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "apply failed:\n{}",
        describe(&out)
    );
    let report = json(&out);
    assert_eq!(report["status"], "closed", "{report:#}");
    for canary in [
        ALICE_PW,
        PORTAL_SECRET,
        BOT_SECRET,
        s.alice_refresh.as_str(),
        s.alice_consented.as_str(),
        INTRANET_SECRET,
        w.wiki.token(),
    ] {
        assert!(
            !stdout(&out).contains(canary) && !stderr(&out).contains(canary),
            "a secret leaked into the output"
        );
        for file in w.state_files() {
            let text =
                String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
            assert!(
                !text.contains(canary),
                "a secret leaked into {}",
                file.display()
            );
        }
    }

    // Every action journaled the calls it made, each answered: Keycloak admin and token
    // endpoint calls and SCIM calls by method and path (neither sends a request id).
    let journal = crate::common::journal_at(&w.dir.path().join("state/closeout.db")).unwrap();
    let run = journal.runs(10).unwrap().remove(0);
    let actions = journal.actions(&run.id).unwrap();
    assert!(!actions.is_empty());
    for a in &actions {
        assert!(
            a.provider_calls.iter().any(|c| c.status.is_some()),
            "{} has no answered provider call: {:?}",
            a.key,
            a.provider_calls
        );
        for c in &a.provider_calls {
            let path = c.operation.split_once(' ').map(|(_, p)| p).unwrap_or("");
            let expected = match a.provider.as_str() {
                "keycloak" => path.starts_with("/admin/realms/") || path.starts_with("/realms/"),
                _ => path.starts_with("/Users") || path.starts_with("/Groups"),
            };
            assert!(expected, "{}: {c:?}", a.key);
            assert!(!c.operation.contains('?'), "{c:?}");
        }
    }

    // Keycloak refuses Alice's old tokens; Bob's still work.
    assert_eq!(
        w.kc.refresh("portal", PORTAL_SECRET, &s.alice_refresh)
            .await
            .err()
            .as_deref(),
        Some("invalid_grant")
    );
    assert_eq!(
        w.kc.refresh("portal", PORTAL_SECRET, &s.alice_offline)
            .await
            .err()
            .as_deref(),
        Some("invalid_grant")
    );
    let consented =
        w.kc.refresh("intranet", INTRANET_SECRET, &s.alice_consented)
            .await;
    assert_eq!(consented.err().as_deref(), Some("invalid_grant"));
    assert!(w
        .kc
        .refresh("portal", PORTAL_SECRET, &s.bob_refresh)
        .await
        .is_ok());
    let user = w.kc.admin("GET", &format!("/users/{alice}"), None).await;
    assert_eq!(user["enabled"], false);
    for what in ["sessions", "consents", "credentials", "groups"] {
        let list =
            w.kc.admin("GET", &format!("/users/{alice}/{what}"), None)
                .await;
        assert_eq!(list.as_array().map(Vec::len), Some(0), "{what}: {list}");
    }
    // The client she owned: new secret published and working, old one refused, owned by Bob.
    let old =
        w.kc.token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "deploy-bot"),
            ("client_secret", BOT_SECRET),
        ])
        .await;
    assert!(old.is_err(), "the old client secret still works");
    let published = std::fs::read_to_string(w.publish_dir().join(&w.kc.name).join("deploy-bot"))
        .expect("published secret");
    assert!(w
        .kc
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "deploy-bot"),
            ("client_secret", published.trim())
        ])
        .await
        .is_ok());
    let client = w.kc.admin("GET", &format!("/clients/{bot}"), None).await;
    assert_eq!(client["attributes"]["owner"], "bob.martin@example.com");
    assert!(!w
        .kc
        .admin("GET", &format!("/users/{bob}/sessions"), None)
        .await
        .as_array()
        .unwrap()
        .is_empty());

    // The apps: the wiki deactivated her (account kept), the CRM deleted her; groups lost only her.
    let (_, wu) = w
        .scim(&w.wiki, "GET", &format!("/Users/{w_alice}"), None)
        .await;
    assert_eq!(wu["active"], false, "{wu}");
    assert_eq!(
        w.scim(&w.crm, "GET", &format!("/Users/{c_alice}"), None)
            .await
            .0,
        404
    );
    assert_eq!(
        w.scim_members(&w.wiki, &s.w_editors).await,
        vec![s.w_bob.clone()]
    );
    assert_eq!(
        w.scim_members(&w.crm, &s.c_sales).await,
        vec![s.c_bob.clone()]
    );
    let (_, wb) = w
        .scim(&w.wiki, "GET", &format!("/Users/{w_bob}"), None)
        .await;
    assert_eq!(wb["active"], true);

    // A second apply finds nothing left to do.
    let again = w.closeout(&[
        "apply",
        "leaver",
        "--identity",
        "E1001",
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "second apply:\n{}",
        describe(&again)
    );
    assert_eq!(json(&again)["status"], "closed");
}
