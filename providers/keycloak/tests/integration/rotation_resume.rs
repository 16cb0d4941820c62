//! A client-secret rotation interrupted between Keycloak's regeneration and the publication
//! (the process killed there, the chaos bench's one duplicated regeneration): run again under
//! the same idempotency key, it publishes the secret its first run made instead of regenerating
//! a second time.

use crate::common::{ctx, owned_service_client, person, provider, Realm};
use closeout_contract::{ActionParams, ActionRequest, Provider, State};
use closeout_keycloak::kinds;

const SYNC_SECRET: &str = "sync-secret-canary-1d7a";

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_killed_after_regenerating_publishes_that_secret_on_its_next_run() {
    let realm = Realm::new("resume").await;
    let sync = owned_service_client(&realm, "billing-sync", SYNC_SECRET, "alice@example.com").await;
    let publish = std::env::temp_dir().join(format!(
        "closeout-kc-resume-{}-{}",
        std::process::id(),
        realm.name
    ));
    let provider = provider(&realm, Some(publish.clone())).await;
    let alice = ctx(person("E100", "alice@example.com", None), None);
    let res = provider.resolve(&alice).await.expect("resolve");
    let finding = res
        .findings
        .into_iter()
        .find(|f| f.kind == kinds::CLIENT_SECRET)
        .expect("the owned client's secret");
    let key = "run-1/rotate-keycloak-client-secrets/billing-sync";
    // The first run got as far as the regeneration: what it wrote before, then Keycloak's new
    // secret, never published.
    let dir = publish.join(&realm.name);
    std::fs::create_dir_all(&dir).expect("publish dir");
    std::fs::write(dir.join("billing-sync.retired"), SYNC_SECRET).expect("retired");
    std::fs::write(dir.join("billing-sync.pending"), key).expect("pending");
    let made = realm
        .admin("POST", &format!("/clients/{sync}/client-secret"), None)
        .await;
    let made = made["value"].as_str().expect("the regenerated secret");

    let request = ActionRequest {
        idempotency_key: key.into(),
        verb: "rotate".into(),
        finding,
        params: ActionParams::default(),
    };
    let outcome = provider.execute(&request).await;
    let outcome = outcome.expect("the rotation resumes");
    assert_eq!(outcome.state, State::Rotated, "{outcome:?}");
    // No second regeneration: Keycloak still holds the first run's secret, now published.
    let live = realm
        .admin("GET", &format!("/clients/{sync}/client-secret"), None)
        .await;
    assert_eq!(live["value"].as_str(), Some(made));
    let published =
        std::fs::read_to_string(dir.join("billing-sync")).expect("the published secret");
    assert_eq!(published.trim(), made);
    assert!(realm.client_credentials("billing-sync", made).await.is_ok());
    assert!(realm
        .client_credentials("billing-sync", SYNC_SECRET)
        .await
        .is_err());
    // And once more: already done.
    let again = provider.execute(&request).await.expect("idempotent");
    assert!(again.already_done, "{again:?}");
    let _ = std::fs::remove_dir_all(publish);
}
