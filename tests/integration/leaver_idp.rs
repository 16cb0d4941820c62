//! The identity provider and the apps behind it, end to end with the real binary and the shipped
//! leaver playbook: Alice (E1001) signs in through Keycloak (online and offline) and has accounts
//! in two SCIM apps that name her differently; `closeout apply leaver` closes everything, and it
//! is read back: her old refresh and offline tokens are refused (`invalid_grant`), the client she
//! owned has a new published secret (the old one refused) and belongs to her manager, the wiki
//! keeps an inactive account, the CRM none, and Bob's session and accounts are untouched.

use crate::common::idp::{IdpWorld, LeaverSeed, ALICE_PW, BOT_SECRET, PORTAL_SECRET};
use crate::common::{describe, json, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaver_closes_the_identity_provider_and_every_downstream_app() {
    let w = IdpWorld::new().await;
    let LeaverSeed {
        alice,
        bob,
        bot,
        alice_refresh,
        alice_offline,
        bob_refresh,
        w_alice,
        w_bob,
        w_editors,
        c_alice,
        c_bob,
        c_sales,
    } = w.seed_leaver().await;

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
        alice_refresh.as_str(),
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

    // Keycloak refuses Alice's old tokens; Bob's still work.
    assert_eq!(
        w.kc.refresh("portal", PORTAL_SECRET, &alice_refresh)
            .await
            .err()
            .as_deref(),
        Some("invalid_grant")
    );
    assert_eq!(
        w.kc.refresh("portal", PORTAL_SECRET, &alice_offline)
            .await
            .err()
            .as_deref(),
        Some("invalid_grant")
    );
    assert!(w
        .kc
        .refresh("portal", PORTAL_SECRET, &bob_refresh)
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
        w.scim_members(&w.wiki, &w_editors).await,
        vec![w_bob.clone()]
    );
    assert_eq!(w.scim_members(&w.crm, &c_sales).await, vec![c_bob.clone()]);
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
