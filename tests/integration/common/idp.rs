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

/// Alice's password, the portal's and the deploy bot's client secrets in [`IdpWorld::seed_leaver`]
/// (canaries: none may appear in any output).
pub const ALICE_PW: &str = "alice-pw-canary-e1001";
pub const PORTAL_SECRET: &str = "portal-secret-canary";
pub const BOT_SECRET: &str = "deploy-bot-secret-canary";

/// What [`IdpWorld::seed_leaver`] made: Keycloak ids and tokens, SCIM ids per app.
pub struct LeaverSeed {
    pub alice: String,
    pub bob: String,
    /// The deploy bot client's UUID.
    pub bot: String,
    pub alice_refresh: String,
    pub alice_offline: String,
    pub bob_refresh: String,
    pub w_alice: String,
    pub w_bob: String,
    pub w_editors: String,
    pub c_alice: String,
    pub c_bob: String,
    pub c_sales: String,
}

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

    /// The leaver scenario: Alice (E1001, manager Bob) in /engineering/platform with realm role
    /// oncall, signed in to the portal online and offline, owning the deploy-bot client; Bob
    /// (E1000) signed in; both in the wiki (matched by externalId, group editors) and the CRM
    /// (matched by email, group sales). Admin events are recorded (the chaos bench counts
    /// client-secret regenerations from them).
    pub async fn seed_leaver(&self) -> LeaverSeed {
        let mut realm = self.kc.admin("GET", "", None).await;
        realm["adminEventsEnabled"] = json!(true);
        self.kc.admin("PUT", "", Some(realm)).await;
        self.kc.client("portal", PORTAL_SECRET, json!({})).await;
        let bot = self
            .kc.client("deploy-bot", BOT_SECRET,
                json!({"serviceAccountsEnabled": true, "attributes": {"owner": "alice.nguyen@example.com"}}))
            .await;
        self.kc
            .admin("POST", "/roles", Some(json!({"name": "oncall"})))
            .await;
        self.kc
            .admin("POST", "/groups", Some(json!({"name": "engineering"})))
            .await;
        let eng = self
            .kc
            .admin("GET", "/group-by-path/engineering", None)
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        self.kc
            .admin(
                "POST",
                &format!("/groups/{eng}/children"),
                Some(json!({"name": "platform"})),
            )
            .await;
        let platform = self
            .kc
            .admin("GET", "/group-by-path/engineering/platform", None)
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let alice = self
            .kc_user("alice", "alice.nguyen@example.com", "E1001", ALICE_PW)
            .await;
        let bob = self
            .kc_user("bob", "bob.martin@example.com", "E1000", "bob-pw")
            .await;
        self.kc
            .admin("PUT", &format!("/users/{alice}/groups/{platform}"), None)
            .await;
        let oncall = self.kc.admin("GET", "/roles/oncall", None).await;
        self.kc
            .admin(
                "POST",
                &format!("/users/{alice}/role-mappings/realm"),
                Some(json!([oncall])),
            )
            .await;
        let alice_refresh = self
            .kc
            .sign_in("portal", PORTAL_SECRET, "alice", ALICE_PW, false)
            .await;
        let alice_offline = self
            .kc
            .sign_in("portal", PORTAL_SECRET, "alice", ALICE_PW, true)
            .await;
        let bob_refresh = self
            .kc
            .sign_in("portal", PORTAL_SECRET, "bob", "bob-pw", false)
            .await;

        let w_alice = self
            .scim_user(&self.wiki, "anguyen", "E1001", "alice.nguyen@example.com")
            .await;
        let w_bob = self
            .scim_user(&self.wiki, "bmartin", "E1000", "bob.martin@example.com")
            .await;
        let w_editors = self
            .scim_group(&self.wiki, "editors", &[&w_alice, &w_bob])
            .await;
        let c_alice = self
            .scim_user(
                &self.crm,
                "alice.nguyen@example.com",
                "crm-1",
                "alice.nguyen@example.com",
            )
            .await;
        let c_bob = self
            .scim_user(
                &self.crm,
                "bob.martin@example.com",
                "crm-2",
                "bob.martin@example.com",
            )
            .await;
        let c_sales = self
            .scim_group(&self.crm, "sales", &[&c_alice, &c_bob])
            .await;
        LeaverSeed {
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
        }
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
