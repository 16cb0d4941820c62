//! The realm helper is the shared `closeout_testkit::KeycloakRealm` (seeding through the admin
//! REST API, signing people in through the OIDC endpoints); here: the provider for a realm and
//! the person it resolves.

use closeout_contract::{Identity, IdentityKind, IdentityStatus, ResolveContext};
use closeout_keycloak::{AdminAuth, Correlation, KeycloakConfig, KeycloakProvider};
use closeout_testkit::keycloak::{ADMIN_PASSWORD, ADMIN_USERNAME};
pub use closeout_testkit::KeycloakRealm as Realm;
use std::collections::BTreeSet;

/// The provider for this realm, signing in as the master realm's admin.
pub async fn provider(realm: &Realm, publish_dir: Option<std::path::PathBuf>) -> KeycloakProvider {
    let dir = std::env::temp_dir().join(format!(
        "closeout-kc-cred-{}-{}",
        std::process::id(),
        realm.name
    ));
    std::fs::create_dir_all(&dir).expect("credential dir");
    let file = dir.join("admin-password");
    std::fs::write(&file, ADMIN_PASSWORD).expect("credential file");
    KeycloakProvider::connect(KeycloakConfig {
        base_url: realm.base.clone(),
        realm: realm.name.clone(),
        auth_realm: "master".into(),
        auth: AdminAuth::Password,
        admin_client_id: "admin-cli".into(),
        admin_username: Some(ADMIN_USERNAME.into()),
        credential_file: Some(file),
        correlation: vec![
            Correlation::Attribute("employee_id".into()),
            Correlation::Email,
            Correlation::Username,
        ],
        secret_publish_dir: publish_dir,
        ..Default::default()
    })
    .await
    .expect("the provider connects")
}

/// A confidential service-account client whose `owner` attribute names `owner`; its UUID.
pub async fn owned_service_client(
    realm: &Realm,
    client_id: &str,
    secret: &str,
    owner: &str,
) -> String {
    let rep = serde_json::json!({"serviceAccountsEnabled": true, "attributes": {"owner": owner}});
    realm.client(client_id, secret, rep).await
}

pub fn person(id: &str, email: &str, manager: Option<&str>) -> Identity {
    Identity {
        id: id.into(),
        email: email.into(),
        name: id.into(),
        kind: IdentityKind::Human,
        status: IdentityStatus::Terminated,
        manager: manager.map(str::to_string),
        department: None,
        role: None,
        location: None,
        employment_type: None,
        tags: BTreeSet::new(),
    }
}

pub fn ctx(identity: Identity, cutoff: Option<chrono::DateTime<chrono::Utc>>) -> ResolveContext {
    ResolveContext { identity, cutoff }
}
