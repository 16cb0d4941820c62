//! An Azure world for the CLI tests: the Azure test double (ARM, Graph, the token endpoint and
//! the Key Vault data plane) started in-process on a free port, the demo organisation seeded
//! into it by `examples/demo/seed_azure.py` through the real write APIs, a config naming only the
//! Azure provider, and a small client that reads the double back through the same APIs.

use super::{config_without_providers, venv, REPO};
use closeout_azure_double::{AzureDouble, Config, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;

/// The DNS suffix of vault hosts in the double (`{vault}.lowkey-vault.local`).
pub const VAULT_SUFFIX: &str = "lowkey-vault.local";
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
pub const VAULT_SCOPE: &str = "https://lowkey-vault.local/.default";
pub const KV_API: &str = "7.6";

pub struct AzureWorld {
    pub double: AzureDouble,
    pub dir: tempfile::TempDir,
    pub api: Api,
}

impl AzureWorld {
    pub async fn new() -> AzureWorld {
        AzureWorld::with_public_port(0).await
    }

    /// Like [`AzureWorld::new`], for a proxy on `port` in front of the double (0: none): the
    /// double writes that port in its links and vault URIs, and the config names it.
    pub async fn with_public_port(port: u16) -> AzureWorld {
        let double = AzureDouble::start(Config {
            page_size: 2,
            public_port: port,
            vault_port: port,
            ..Config::default()
        })
        .await
        .unwrap_or_else(|e| panic!("the Azure test double cannot start: {e}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = dir.path().join("azure-ca.pem");
        std::fs::write(&ca, double.ca_pem()).expect("write the CA");
        let secret_file = dir.path().join("azure-client-secret");
        std::fs::write(&secret_file, format!("{DEFAULT_CLIENT_SECRET}\n")).expect("secret file");
        let (base, port) = if port == 0 {
            (double.base_url(), double.addr().port())
        } else {
            (format!("https://127.0.0.1:{port}"), port)
        };
        let config = format!(
            r#"{common}
[providers.azure]
tenant_id = "{tenant}"
client_id = "{DEFAULT_CLIENT_ID}"
client_secret_file = "{secret}"
authority_host = "{base}"
arm_endpoint = "{base}"
graph_endpoint = "{base}"
ca_file = "{ca}"
host_overrides = {{ "{VAULT_SUFFIX}" = "127.0.0.1" }}
credential_vault = "https://kv-closeout-ops.{VAULT_SUFFIX}:{port}/"
# The demo seed publishes deploy-pipeline's secret under the display-name template (as the
# demo's config names it); the plan refuses it should two objects' credentials collide.
credential_secret_name = "app-{{app}}-credential"
max_in_flight = 4
"#,
            common = config_without_providers(&format!("{REPO}/playbooks")),
            tenant = closeout_azure_double::DEFAULT_TENANT_ID,
            secret = secret_file.display(),
            ca = ca.display(),
        );
        std::fs::write(dir.path().join("closeout.toml"), config).expect("write config");
        let api = Api::new(&double);
        AzureWorld { double, dir, api }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("closeout.toml")
    }

    /// Point the config at another HR export and add an entitlement policy (`[policy]`).
    pub fn use_source_and_policy(&self, hr: &std::path::Path, policy: &std::path::Path) {
        let path = self.config_path();
        let config = std::fs::read_to_string(&path).expect("read the config");
        let demo = format!("path = \"{REPO}/examples/demo/hr.csv\"");
        assert!(
            config.contains(&demo),
            "the config names no demo source:\n{config}"
        );
        let config = config.replacen(&demo, &format!("path = \"{}\"", hr.display()), 1);
        let config = format!(
            "{config}\n[policy]\nentitlements = \"{}\"\n",
            policy.display()
        );
        std::fs::write(path, config).expect("write the config");
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("state/audit.jsonl")
    }

    pub fn state_files(&self) -> [PathBuf; 2] {
        [
            self.dir.path().join("state/closeout.db"),
            self.dir.path().join("state/audit.jsonl"),
        ]
    }

    /// Run the real binary without blocking the runtime that serves the double.
    pub async fn closeout(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_closeout"))
            .current_dir(self.dir.path())
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("AZURE_CLIENT_SECRET")
            .env("CLOSEOUT_ACTOR", "integration-test")
            .env_remove("RUST_LOG")
            .output()
            .await
            .expect("run closeout")
    }

    /// Seed the demo organisation; returns the canary and what the seed created.
    pub async fn seed_demo(&self) -> (String, Value) {
        let python = venv().join("bin/python");
        assert!(
            python.exists(),
            "{} not found: run scripts/setup.sh to create the venv",
            python.display()
        );
        let canary_file = self.dir.path().join("canary.txt");
        let credentials_file = self.dir.path().join("seeded.json");
        let out = tokio::process::Command::new(python)
            .arg(format!("{REPO}/examples/demo/seed_azure.py"))
            .env("AZURE_DOUBLE_URL", self.double.base_url())
            .env("AZURE_DOUBLE_CA_FILE", self.dir.path().join("azure-ca.pem"))
            .env("AZURE_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
            .env("CLOSEOUT_CANARY_FILE", &canary_file)
            .env("CLOSEOUT_SEED_CREDENTIALS_FILE", &credentials_file)
            .output()
            .await
            .expect("run the Azure seed script");
        assert!(
            out.status.success(),
            "seeding the Azure double failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let canary = std::fs::read_to_string(&canary_file)
            .expect("the seed writes the canary")
            .trim()
            .to_string();
        let seeded = serde_json::from_slice(
            &std::fs::read(&credentials_file).expect("the seed writes what it created"),
        )
        .expect("seed JSON");
        (canary, seeded)
    }
}

/// Reads the double back through ARM, Graph and the Key Vault data plane, as Closeout's test
/// client.
pub struct Api {
    http: reqwest::Client,
    base: String,
    port: u16,
}

impl Api {
    fn new(double: &AzureDouble) -> Api {
        let ca = reqwest::Certificate::from_pem(double.ca_pem().as_bytes()).expect("CA PEM");
        // Every vault host goes to the double; the resolver override is per host name.
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .dns_resolver(std::sync::Arc::new(Loopback))
            .build()
            .expect("client");
        Api {
            http,
            base: double.base_url(),
            port: double.addr().port(),
        }
    }

    pub async fn token(&self, scope: &str) -> String {
        self.token_as(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, scope)
            .await
            .expect("the test client gets a token")
    }

    /// A client-credentials token, or the error text the endpoint answered.
    pub async fn token_as(
        &self,
        client_id: &str,
        secret: &str,
        scope: &str,
    ) -> Result<String, String> {
        let r = self
            .http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.base,
                closeout_azure_double::DEFAULT_TENANT_ID
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", scope),
            ])
            .send()
            .await
            .expect("token endpoint answers");
        let status = r.status();
        let body: Value = r.json().await.expect("token JSON");
        if status.is_success() {
            Ok(body["access_token"].as_str().expect("access_token").into())
        } else {
            Err(body["error"].to_string())
        }
    }

    /// `(status, body)` of one call with a token for `scope`.
    pub async fn call(&self, scope: &str, method: &str, url: &str) -> (u16, Value) {
        self.send(scope, method, url, None).await
    }

    /// `(status, body)` of one call with a token for `scope` and an optional JSON body.
    pub async fn send(
        &self,
        scope: &str,
        method: &str,
        url: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let token = self.token(scope).await;
        let mut request = self
            .http
            .request(method.parse().expect("method"), url)
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let r = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn graph(&self, path: &str) -> (u16, Value) {
        self.call(GRAPH_SCOPE, "GET", &format!("{}/v1.0{path}", self.base))
            .await
    }

    /// Every item of a Graph or ARM list, following the next links.
    pub async fn list(&self, scope: &str, url: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next = Some(url.to_string());
        while let Some(url) = next.take() {
            let (status, body) = self.call(scope, "GET", &url).await;
            assert_eq!(status, 200, "GET {url}: {body}");
            out.extend(body["value"].as_array().cloned().unwrap_or_default());
            next = body["nextLink"]
                .as_str()
                .or(body["@odata.nextLink"].as_str())
                .map(String::from);
        }
        out
    }

    pub async fn graph_list(&self, path: &str) -> Vec<Value> {
        self.list(GRAPH_SCOPE, &format!("{}/v1.0{path}", self.base))
            .await
    }

    pub async fn arm(&self, path: &str) -> (u16, Value) {
        self.call(ARM_SCOPE, "GET", &format!("{}{path}", self.base))
            .await
    }

    pub async fn arm_list(&self, path: &str) -> Vec<Value> {
        self.list(ARM_SCOPE, &format!("{}{path}", self.base)).await
    }

    pub fn vault_uri(&self, vault: &str) -> String {
        format!("https://{vault}.{VAULT_SUFFIX}:{}/", self.port)
    }

    /// One Key Vault data-plane GET (`path` like `secrets/db/versions`).
    pub async fn kv(&self, vault: &str, path: &str) -> (u16, Value) {
        let url = format!("{}{path}?api-version={KV_API}", self.vault_uri(vault));
        self.call(VAULT_SCOPE, "GET", &url).await
    }

    /// One Key Vault data-plane POST with a JSON body (`path` like `keys/k/{version}/wrapkey`).
    pub async fn kv_post(&self, vault: &str, path: &str, body: &Value) -> (u16, Value) {
        let url = format!("{}{path}?api-version={KV_API}", self.vault_uri(vault));
        self.send(VAULT_SCOPE, "POST", &url, Some(body)).await
    }

    /// Every version of a vault object: (version id, enabled, created unix seconds).
    pub async fn kv_versions(
        &self,
        vault: &str,
        kind: &str,
        name: &str,
    ) -> Vec<(String, bool, i64)> {
        let url = format!(
            "{}{kind}/{name}/versions?api-version={KV_API}",
            self.vault_uri(vault)
        );
        self.list(VAULT_SCOPE, &url)
            .await
            .iter()
            .map(|v| {
                // Keys list their versions by `kid`, secrets and certificates by `id`.
                let id = v["id"].as_str().or(v["kid"].as_str()).expect("id or kid");
                (
                    id.rsplit('/').next().unwrap_or_default().to_string(),
                    v["attributes"]["enabled"].as_bool().unwrap_or(true),
                    v["attributes"]["created"].as_i64().unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// Seeding through the write APIs a real tenant takes (Graph, ARM, the Key Vault data plane),
/// for tests that need a small world of their own rather than the demo organisation. Each call
/// must succeed; a refusal fails the test with the service's answer.
impl Api {
    /// A write that must succeed; returns the body.
    pub async fn write(&self, scope: &str, method: &str, url: &str, body: &Value) -> Value {
        let (status, answer) = self.send(scope, method, url, Some(body)).await;
        assert!(
            (200..300).contains(&status),
            "{method} {url}: HTTP {status}: {answer}"
        );
        answer
    }

    /// An enabled Entra user whose UPN and mail are `email`; returns its object id.
    pub async fn create_user(&self, email: &str, employee_id: &str) -> String {
        let nickname = email.split('@').next().unwrap_or(email).replace('.', "");
        let url = format!("{}/v1.0/users", self.base);
        let body = serde_json::json!({
            "accountEnabled": true, "displayName": email, "userPrincipalName": email,
            "mail": email, "employeeId": employee_id, "mailNickname": nickname,
            "passwordProfile": {"password": "Not-Printed-1"},
        });
        let user = self.write(GRAPH_SCOPE, "POST", &url, &body).await;
        user["id"].as_str().expect("user id").to_string()
    }

    /// A security group; returns its object id.
    pub async fn create_group(&self, name: &str) -> String {
        let url = format!("{}/v1.0/groups", self.base);
        let body = serde_json::json!({
            "displayName": name, "mailEnabled": false, "securityEnabled": true,
            "mailNickname": name.to_ascii_lowercase().replace(' ', "-"),
        });
        let group = self.write(GRAPH_SCOPE, "POST", &url, &body).await;
        group["id"].as_str().expect("group id").to_string()
    }

    pub async fn add_member(&self, group: &str, member: &str) {
        let url = format!("{}/v1.0/groups/{group}/members/$ref", self.base);
        let body = serde_json::json!({
            "@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{member}")
        });
        self.write(GRAPH_SCOPE, "POST", &url, &body).await;
    }

    /// An application registration owned by `owners` and its service principal; returns
    /// (application object id, service principal object id).
    pub async fn create_application(&self, name: &str, owners: &[&str]) -> (String, String) {
        let url = format!("{}/v1.0/applications", self.base);
        let body = serde_json::json!({ "displayName": name, "signInAudience": "AzureADMyOrg" });
        let app = self.write(GRAPH_SCOPE, "POST", &url, &body).await;
        let id = app["id"].as_str().expect("application id").to_string();
        for owner in owners {
            let url = format!("{}/v1.0/applications/{id}/owners/$ref", self.base);
            let body = serde_json::json!({
                "@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{owner}")
            });
            self.write(GRAPH_SCOPE, "POST", &url, &body).await;
        }
        let url = format!("{}/v1.0/servicePrincipals", self.base);
        let body = serde_json::json!({ "appId": app["appId"] });
        let sp = self.write(GRAPH_SCOPE, "POST", &url, &body).await;
        (id, sp["id"].as_str().expect("sp id").to_string())
    }

    /// The object ids of the owners of `applications/{id}` or `servicePrincipals/{id}`.
    pub async fn owners(&self, collection: &str, id: &str) -> std::collections::BTreeSet<String> {
        self.graph_list(&format!("/{collection}/{id}/owners"))
            .await
            .iter()
            .filter_map(|o| o["id"].as_str().map(String::from))
            .collect()
    }

    /// A subscription (through its alias) with the resource groups `groups`.
    pub async fn create_subscription(&self, subscription: &str, groups: &[&str]) {
        let url = format!(
            "{}/providers/Microsoft.Subscription/aliases/a-{subscription}?api-version=2021-10-01",
            self.base
        );
        let body = serde_json::json!({"properties": {
            "displayName": subscription, "workload": "Production",
            "billingScope": "/billingAccounts/test", "subscriptionId": subscription}});
        self.write(ARM_SCOPE, "PUT", &url, &body).await;
        for rg in groups {
            let url = format!(
                "{}/subscriptions/{subscription}/resourcegroups/{rg}?api-version=2021-04-01",
                self.base
            );
            let body = serde_json::json!({"location": "westeurope"});
            self.write(ARM_SCOPE, "PUT", &url, &body).await;
        }
    }

    /// Assign the built-in role `role_guid` to `principal` at `scope`; returns the assignment id.
    pub async fn assign_role(
        &self,
        subscription: &str,
        scope: &str,
        role_guid: &str,
        principal: &str,
        principal_type: &str,
    ) -> String {
        self.assign_role_with_condition(
            subscription,
            scope,
            role_guid,
            principal,
            principal_type,
            None,
        )
        .await
    }

    /// Like [`Api::assign_role`], with an ABAC `condition` (version 2.0) when given.
    pub async fn assign_role_with_condition(
        &self,
        subscription: &str,
        scope: &str,
        role_guid: &str,
        principal: &str,
        principal_type: &str,
        condition: Option<&str>,
    ) -> String {
        // ARM takes any GUID as the assignment's name.
        let h = format!("{:032x}", rand::random::<u128>());
        let name = format!(
            "{}-{}-4{}-8{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        );
        let url = format!(
            "{}{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version=2022-04-01",
            self.base
        );
        let mut properties = serde_json::json!({
            "roleDefinitionId": format!(
                "/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"
            ),
            "principalId": principal, "principalType": principal_type});
        if let Some(c) = condition {
            properties["condition"] = serde_json::json!(c);
            properties["conditionVersion"] = serde_json::json!("2.0");
        }
        let body = serde_json::json!({ "properties": properties });
        let answer = self.write(ARM_SCOPE, "PUT", &url, &body).await;
        answer["id"].as_str().expect("assignment id").to_string()
    }

    /// A Key Vault in `rg_scope`: RBAC when `access_policies` is `None`, else the access-policy
    /// model with those policies. Returns its ARM id.
    pub async fn create_vault(
        &self,
        rg_scope: &str,
        name: &str,
        access_policies: Option<Value>,
    ) -> String {
        let url = format!(
            "{}{rg_scope}/providers/Microsoft.KeyVault/vaults/{name}?api-version=2023-07-01",
            self.base
        );
        let body = serde_json::json!({"location": "westeurope", "properties": {
            "tenantId": closeout_azure_double::DEFAULT_TENANT_ID,
            "sku": {"family": "A", "name": "standard"},
            "enableRbacAuthorization": access_policies.is_none(),
            "accessPolicies": access_policies.unwrap_or_else(|| serde_json::json!([]))}});
        let vault = self.write(ARM_SCOPE, "PUT", &url, &body).await;
        vault["id"].as_str().expect("vault id").to_string()
    }

    /// An access policy entry naming `object_id` with secret `permissions`.
    pub fn access_policy(object_id: &str, permissions: &[&str]) -> Value {
        serde_json::json!({"tenantId": closeout_azure_double::DEFAULT_TENANT_ID,
            "objectId": object_id, "permissions": {"secrets": permissions}})
    }

    /// Set a secret with `tags`; returns the new version.
    pub async fn set_secret(
        &self,
        vault: &str,
        name: &str,
        value: &str,
        tags: &[(&str, &str)],
    ) -> String {
        let url = format!(
            "{}secrets/{name}?api-version={KV_API}",
            self.vault_uri(vault)
        );
        let tags: serde_json::Map<String, Value> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        let body = serde_json::json!({"value": value, "contentType": "text/plain", "tags": tags});
        let answer = self.write(VAULT_SCOPE, "PUT", &url, &body).await;
        let id = answer["id"].as_str().expect("secret id");
        id.rsplit('/').next().unwrap_or_default().to_string()
    }
}

/// Resolves every host to 127.0.0.1 (the double answers for all of them).
struct Loopback;

impl reqwest::dns::Resolve for Loopback {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async {
            let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(std::net::SocketAddr::from(
                ([127, 0, 0, 1], 0),
            )));
            Ok(addrs)
        })
    }
}
