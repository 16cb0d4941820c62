//! Seeding a realm through the admin REST API, and signing people in through the OIDC token
//! endpoint, the way an application would.

use closeout_contract::{Identity, IdentityKind, IdentityStatus, ResolveContext};
use closeout_keycloak::{AdminAuth, Correlation, KeycloakConfig, KeycloakProvider};
use closeout_testkit::keycloak::{ADMIN_PASSWORD, ADMIN_USERNAME};
use closeout_testkit::KeycloakServer;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh realm on the shared server, and an admin client for it.
pub struct Realm {
    pub base: String,
    pub name: String,
    http: reqwest::Client,
}

/// What a token endpoint answered: the tokens, or the OAuth error code.
pub type Grant = Result<Value, String>;

impl Realm {
    /// A new realm named `<prefix>-<n>-<pid>` with unmanaged user attributes enabled.
    pub async fn new(prefix: &str) -> Realm {
        static N: AtomicUsize = AtomicUsize::new(0);
        let server = tokio::task::spawn_blocking(KeycloakServer::shared)
            .await
            .expect("the Keycloak start-up thread panicked");
        let name = format!(
            "{prefix}-{}-{}",
            N.fetch_add(1, Ordering::SeqCst),
            std::process::id()
        );
        let realm = Realm {
            base: server.base_url(),
            name,
            http: reqwest::Client::new(),
        };
        realm
            .admin(
                "POST",
                "",
                Some(json!({"realm": realm.name, "enabled": true})),
            )
            .await;
        let mut profile = realm.admin("GET", "/users/profile", None).await;
        profile["unmanagedAttributePolicy"] = json!("ENABLED");
        realm.admin("PUT", "/users/profile", Some(profile)).await;
        realm
    }

    async fn admin_token(&self) -> String {
        let answer: Value = self
            .http
            .post(format!(
                "{}/realms/master/protocol/openid-connect/token",
                self.base
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", ADMIN_USERNAME),
                ("password", ADMIN_PASSWORD),
            ])
            .send()
            .await
            .expect("admin sign-in")
            .json()
            .await
            .expect("admin token JSON");
        answer["access_token"]
            .as_str()
            .expect("admin access_token")
            .to_string()
    }

    /// One admin call under `/admin/realms/<realm>` (`""` with POST creates the realm);
    /// panics on a non-2xx answer. Returns the JSON answer, `Null` when empty.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path.is_empty() && method == "POST" {
            format!("{}/admin/realms", self.base)
        } else {
            format!("{}/admin/realms/{}{path}", self.base, self.name)
        };
        let mut req = self
            .http
            .request(method.parse().expect("method"), &url)
            .bearer_auth(self.admin_token().await);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let answer = req.send().await.expect("admin call");
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {url}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Create a user with a password and attributes; returns its id.
    pub async fn user(&self, username: &str, email: &str, password: &str, attrs: Value) -> String {
        self.admin(
            "POST",
            "/users",
            Some(json!({
                "username": username, "email": email, "emailVerified": true, "enabled": true,
                "firstName": username, "lastName": "Test", "attributes": attrs,
                "credentials": [{"type": "password", "value": password, "temporary": false}]
            })),
        )
        .await;
        self.user_id(username).await
    }

    pub async fn user_id(&self, username: &str) -> String {
        let found = self
            .admin(
                "GET",
                &format!("/users?username={username}&exact=true"),
                None,
            )
            .await;
        found[0]["id"].as_str().expect("user id").to_string()
    }

    /// Create a confidential client; returns its UUID.
    pub async fn client(&self, client_id: &str, secret: &str, extra: Value) -> String {
        let mut rep = json!({
            "clientId": client_id, "publicClient": false, "secret": secret,
            "directAccessGrantsEnabled": true, "standardFlowEnabled": false
        });
        if let (Some(r), Some(e)) = (rep.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        self.admin("POST", "/clients", Some(rep)).await;
        let found = self
            .admin("GET", &format!("/clients?clientId={client_id}"), None)
            .await;
        found[0]["id"].as_str().expect("client uuid").to_string()
    }

    /// A POST to the realm's token endpoint.
    pub async fn token(&self, form: &[(&str, &str)]) -> Grant {
        let answer = self
            .http
            .post(format!(
                "{}/realms/{}/protocol/openid-connect/token",
                self.base, self.name
            ))
            .form(form)
            .send()
            .await
            .expect("token endpoint");
        let ok = answer.status().is_success();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        if ok {
            Ok(body)
        } else {
            Err(body["error"]
                .as_str()
                .unwrap_or("no error code")
                .to_string())
        }
    }

    /// Sign `username` in to `client` with its password (`offline`: ask for an offline token).
    pub async fn sign_in(
        &self,
        client: &str,
        secret: &str,
        username: &str,
        password: &str,
        offline: bool,
    ) -> String {
        let scope = if offline {
            "openid offline_access"
        } else {
            "openid"
        };
        let answer = self
            .token(&[
                ("grant_type", "password"),
                ("client_id", client),
                ("client_secret", secret),
                ("username", username),
                ("password", password),
                ("scope", scope),
            ])
            .await
            .unwrap_or_else(|e| panic!("{username} could not sign in to {client}: {e}"));
        answer["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_string()
    }

    /// Use a refresh (or offline) token.
    pub async fn refresh(&self, client: &str, secret: &str, refresh_token: &str) -> Grant {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", client),
            ("client_secret", secret),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    pub async fn client_credentials(&self, client: &str, secret: &str) -> Grant {
        self.token(&[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
        ])
        .await
    }

    /// The provider for this realm, signing in as the master realm's admin.
    pub async fn provider(&self, publish_dir: Option<std::path::PathBuf>) -> KeycloakProvider {
        let dir = std::env::temp_dir().join(format!(
            "closeout-kc-cred-{}-{}",
            std::process::id(),
            self.name
        ));
        std::fs::create_dir_all(&dir).expect("credential dir");
        let file = dir.join("admin-password");
        std::fs::write(&file, ADMIN_PASSWORD).expect("credential file");
        KeycloakProvider::connect(KeycloakConfig {
            base_url: self.base.clone(),
            realm: self.name.clone(),
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
