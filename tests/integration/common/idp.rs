//! The identity provider and the apps behind it: a realm of its own on the binary's shared
//! Keycloak (`closeout_testkit::KeycloakServer::shared`), two downstream SCIM apps
//! (`closeout_testkit::ScimApp`), seeded through their real APIs, and a config naming only the
//! `keycloak` and `scim` providers.

use super::{config_without_providers, REPO};
use closeout_testkit::keycloak::{ADMIN_PASSWORD, ADMIN_USERNAME};
use closeout_testkit::{KeycloakServer, ScimApp};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct IdpWorld {
    pub dir: tempfile::TempDir,
    pub base: String,
    pub realm: String,
    pub wiki: ScimApp,
    pub crm: ScimApp,
    http: reqwest::Client,
}

impl IdpWorld {
    pub async fn new() -> IdpWorld {
        static N: AtomicUsize = AtomicUsize::new(0);
        let server = tokio::task::spawn_blocking(KeycloakServer::shared)
            .await
            .expect("the Keycloak start-up thread panicked");
        let dir = tempfile::tempdir().expect("temp dir");
        let world = IdpWorld {
            base: server.base_url(),
            realm: format!("acme{}", N.fetch_add(1, Ordering::SeqCst)),
            wiki: ScimApp::start("wiki-token-canary"),
            crm: ScimApp::start("crm-token-canary"),
            http: reqwest::Client::new(),
            dir,
        };
        world
            .kc(
                "POST",
                "",
                Some(json!({"realm": world.realm, "enabled": true})),
            )
            .await;
        let mut profile = world.kc("GET", "/users/profile", None).await;
        profile["unmanagedAttributePolicy"] = json!("ENABLED");
        world.kc("PUT", "/users/profile", Some(profile)).await;
        let file = |name: &str, value: &str| {
            let p = world.dir.path().join(name);
            std::fs::write(&p, value).expect("write secret file");
            p
        };
        let admin = file("keycloak-admin", ADMIN_PASSWORD);
        let wiki_token = file("wiki-token", world.wiki.token());
        let crm_token = file("crm-token", world.crm.token());
        let config = format!(
            r#"{common}
[providers.keycloak]
base_url = "{base}"
realm = "{realm}"
auth = "password"
auth_realm = "master"
admin_username = "{ADMIN_USERNAME}"
credential_file = "{admin}"
correlation = [{{ by = "attribute", value = "employee_id" }}, {{ by = "email" }}]
secret_publish_dir = "{publish}"

[providers.scim]
[[providers.scim.apps]]
name = "wiki"
base_url = "{wiki}"
token_file = "{wiki_token}"
match = "externalId"
leaver = "deactivate"
page_size = 2

[[providers.scim.apps]]
name = "crm"
base_url = "{crm}"
token_file = "{crm_token}"
match = "email"
leaver = "delete"
"#,
            common = config_without_providers(&format!("{REPO}/playbooks")),
            base = world.base,
            realm = world.realm,
            admin = admin.display(),
            publish = world.publish_dir().display(),
            wiki = world.wiki.base_url(),
            wiki_token = wiki_token.display(),
            crm = world.crm.base_url(),
            crm_token = crm_token.display(),
        );
        std::fs::write(world.config_path(), config).expect("write config");
        world
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("closeout.toml")
    }

    pub fn publish_dir(&self) -> PathBuf {
        self.dir.path().join("published")
    }

    pub fn state_files(&self) -> [PathBuf; 2] {
        [
            self.dir.path().join("state/closeout.db"),
            self.dir.path().join("state/audit.jsonl"),
        ]
    }

    pub fn closeout(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_closeout"))
            .current_dir(self.dir.path())
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env("CLOSEOUT_ACTOR", "integration-test")
            .env_remove("RUST_LOG")
            .output()
            .expect("run closeout")
    }

    async fn admin_token(&self) -> String {
        let v: Value = self
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
            .expect("admin token");
        v["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// An admin call under the realm (`""` with POST: create the realm); panics unless 2xx.
    pub async fn kc(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path.is_empty() {
            format!("{}/admin/realms", self.base)
        } else {
            format!("{}/admin/realms/{}{path}", self.base, self.realm)
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

    /// A user with a password and an employee_id; returns its id.
    pub async fn kc_user(
        &self,
        username: &str,
        email: &str,
        employee: &str,
        password: &str,
    ) -> String {
        self.kc(
            "POST",
            "/users",
            Some(
                json!({"username": username, "email": email, "emailVerified": true,
                "enabled": true, "firstName": username, "lastName": "Example",
                "attributes": {"employee_id": [employee]},
                "credentials": [{"type": "password", "value": password, "temporary": false}]}),
            ),
        )
        .await;
        let found = self
            .kc(
                "GET",
                &format!("/users?username={username}&exact=true"),
                None,
            )
            .await;
        found[0]["id"].as_str().expect("user id").to_string()
    }

    /// A confidential client; returns its UUID.
    pub async fn kc_client(&self, client_id: &str, secret: &str, extra: Value) -> String {
        let mut rep = json!({"clientId": client_id, "publicClient": false, "secret": secret,
            "directAccessGrantsEnabled": true, "standardFlowEnabled": false});
        if let (Some(r), Some(e)) = (rep.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        self.kc("POST", "/clients", Some(rep)).await;
        let found = self
            .kc("GET", &format!("/clients?clientId={client_id}"), None)
            .await;
        found[0]["id"].as_str().expect("client uuid").to_string()
    }

    /// The realm's token endpoint: the answer, or the OAuth error code.
    pub async fn token(&self, form: &[(&str, &str)]) -> Result<Value, String> {
        let answer = self
            .http
            .post(format!(
                "{}/realms/{}/protocol/openid-connect/token",
                self.base, self.realm
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

    /// Sign in with a password; returns the refresh (or, `offline`, the offline) token.
    pub async fn sign_in(
        &self,
        client: &str,
        secret: &str,
        user: &str,
        password: &str,
        offline: bool,
    ) -> String {
        let scope = if offline {
            "openid offline_access"
        } else {
            "openid"
        };
        let v = self
            .token(&[
                ("grant_type", "password"),
                ("client_id", client),
                ("client_secret", secret),
                ("username", user),
                ("password", password),
                ("scope", scope),
            ])
            .await
            .unwrap_or_else(|e| panic!("{user} could not sign in: {e}"));
        v["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_string()
    }

    pub async fn refresh(&self, client: &str, secret: &str, token: &str) -> Result<Value, String> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", client),
            ("client_secret", secret),
            ("refresh_token", token),
        ])
        .await
    }

    /// A SCIM call to one app: status and JSON body.
    pub async fn scim(
        &self,
        app: &ScimApp,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", app.base_url()),
            )
            .bearer_auth(app.token());
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let answer = req.send().await.expect("SCIM call");
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn scim_user(
        &self,
        app: &ScimApp,
        user_name: &str,
        external_id: &str,
        email: &str,
    ) -> String {
        let (status, v) = self
            .scim(
                app,
                "POST",
                "/Users",
                Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user_name, "externalId": external_id, "active": true,
                "emails": [{"value": email, "primary": true}]})),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().expect("SCIM user id").to_string()
    }

    pub async fn scim_group(&self, app: &ScimApp, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let (status, v) = self
            .scim(
                app,
                "POST",
                "/Groups",
                Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": name, "members": members})),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().expect("SCIM group id").to_string()
    }

    pub async fn scim_members(&self, app: &ScimApp, group: &str) -> Vec<String> {
        let (_, g) = self
            .scim(app, "GET", &format!("/Groups/{group}"), None)
            .await;
        g["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["value"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}
