//! The identity provider and the apps behind it: a realm of its own on the binary's shared
//! Keycloak (`closeout_testkit::KeycloakServer::shared`), two downstream SCIM apps
//! (`closeout_testkit::ScimApp`), seeded through their real APIs, and a config naming only the
//! `keycloak` and `scim` providers.

use super::{config_without_providers, REPO};
use closeout_testkit::keycloak::{ADMIN_PASSWORD, ADMIN_USERNAME};
use closeout_testkit::{KeycloakRealm, ScimApp};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Output};

pub struct IdpWorld {
    pub dir: tempfile::TempDir,
    /// The realm, seeded through the admin API (`kc.admin`, `kc.user`, `kc.client`), and its
    /// token endpoint (`kc.sign_in`, `kc.refresh`, `kc.token`).
    pub kc: KeycloakRealm,
    pub wiki: ScimApp,
    pub crm: ScimApp,
    http: reqwest::Client,
}

impl IdpWorld {
    pub async fn new() -> IdpWorld {
        let world = IdpWorld {
            kc: KeycloakRealm::new("acme").await,
            wiki: ScimApp::start("wiki-token-canary"),
            crm: ScimApp::start("crm-token-canary"),
            http: reqwest::Client::new(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
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
            base = world.kc.base,
            realm = world.kc.name,
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

    /// A user with a password and an employee_id; returns its id.
    pub async fn kc_user(
        &self,
        username: &str,
        email: &str,
        employee: &str,
        password: &str,
    ) -> String {
        let attrs = json!({"employee_id": [employee]});
        self.kc.user(username, email, password, attrs).await
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
