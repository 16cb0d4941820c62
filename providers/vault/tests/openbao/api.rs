//! The HTTP API as a client independent of the provider, to seed the server and read it back,
//! and the provider under test pointed at the same server and namespace.

use closeout_contract::{
    ActionParams, ActionRequest, Identity, IdentityKind, IdentityStatus, ResolveContext,
};
use closeout_testkit::OpenBaoServer;
use closeout_vault::{VaultConfig, VaultProvider};
use serde_json::{json, Value};

pub struct Api {
    http: reqwest::Client,
    addr: String,
    /// Sent as `X-Vault-Namespace`; `None` is the root namespace.
    namespace: Option<String>,
}

impl Api {
    /// The root namespace of the shared server.
    pub fn root_namespace() -> Api {
        Api {
            http: reqwest::Client::new(),
            addr: OpenBaoServer::shared().address(),
            namespace: None,
        }
    }

    /// A fresh namespace `name` of the shared server, with a KV v2 engine at `secret/` as a dev
    /// server's root namespace has.
    pub async fn namespace(name: &str) -> Api {
        let root = Api::root_namespace();
        root.root("POST", &format!("sys/namespaces/{name}"), None)
            .await;
        let api = Api {
            namespace: Some(name.to_string()),
            ..root
        };
        api.root(
            "POST",
            "sys/mounts/secret",
            Some(json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await;
        api
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}/v1/{path}", self.addr));
        if !token.is_empty() {
            req = req.header("X-Vault-Token", token);
        }
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let v = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, v)
    }

    /// A call with the root token that must succeed.
    pub async fn root(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, "root", body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    /// A userpass login under `auth/userpass`.
    pub async fn login(&self, user: &str, password: &str) -> (u16, Value) {
        self.call(
            "POST",
            &format!("auth/userpass/login/{user}"),
            "",
            Some(json!({ "password": password })),
        )
        .await
    }

    /// `lookup-self` with the token itself: the probe a person holding it would run.
    pub async fn token_works(&self, token: &str) -> bool {
        self.call("GET", "auth/token/lookup-self", token, None)
            .await
            .0
            == 200
    }

    /// An AppRole login under `auth/approle` with `(role_id, secret_id)`: the HTTP status.
    pub async fn approle_login(&self, cred: &(String, String)) -> u16 {
        self.call(
            "POST",
            "auth/approle/login",
            "",
            Some(json!({"role_id": cred.0, "secret_id": cred.1})),
        )
        .await
        .0
    }

    /// The current version and data of `secret/data/<key>`.
    pub async fn kv(&self, key: &str) -> (u64, Value) {
        let v = self.root("GET", &format!("secret/data/{key}"), None).await;
        (
            v["data"]["metadata"]["version"].as_u64().unwrap(),
            v["data"]["data"].clone(),
        )
    }

    /// A provider with `config`, pointed at this server and namespace, with `token` in a file
    /// under a per-test temp directory (`test` names it).
    pub async fn provider_with(
        &self,
        test: &str,
        token: &str,
        config: VaultConfig,
    ) -> VaultProvider {
        let dir =
            std::env::temp_dir().join(format!("closeout-vault-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token_file = dir.join(format!("token-{}", token.len()));
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        VaultProvider::connect(VaultConfig {
            address: Some(self.addr.clone()),
            token_file: Some(token_file),
            namespace: self.namespace.clone(),
            max_in_flight: 4,
            ..config
        })
        .await
        .unwrap()
    }

    /// The provider with the root token and the default configuration.
    pub async fn provider(&self, test: &str) -> VaultProvider {
        self.provider_with(test, "root", VaultConfig::default())
            .await
    }
}

/// A person with `id` and `email`, active.
pub fn person(id: &str, email: &str) -> Identity {
    Identity {
        id: id.into(),
        email: email.into(),
        name: id.into(),
        kind: IdentityKind::Human,
        status: IdentityStatus::Active,
        manager: None,
        department: None,
        role: None,
        location: None,
        employment_type: None,
        tags: Default::default(),
    }
}

impl Api {
    /// Write the ACL policy `name`.
    pub async fn policy(&self, name: &str, text: &str) {
        self.root(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(json!({ "policy": text })),
        )
        .await;
    }

    /// Create an entity named `name` holding `policies`; its id.
    pub async fn entity(&self, name: &str, policies: &[&str]) -> String {
        self.root(
            "POST",
            "identity/entity",
            Some(json!({"name": name, "policies": policies})),
        )
        .await["data"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Mount a KV engine of `version` at `path`.
    pub async fn mount_kv(&self, path: &str, version: u8) {
        self.root(
            "POST",
            &format!("sys/mounts/{path}"),
            Some(json!({"type": "kv", "options": {"version": version.to_string()}})),
        )
        .await;
    }

    /// The data of a KV v1 secret (`<mount>/<key>`).
    pub async fn kv1(&self, path: &str) -> Value {
        self.root("GET", path, None).await["data"].clone()
    }
}

/// The action `verb` on `f`, in run `run`.
pub fn request(run: &str, f: &closeout_contract::Finding, verb: &str) -> ActionRequest {
    ActionRequest {
        idempotency_key: format!("{run}/{}/{verb}", f.id),
        verb: verb.into(),
        finding: f.clone(),
        params: ActionParams {
            run_id: run.into(),
            ..Default::default()
        },
    }
}

/// A resolution context for `identity` with the cutoff now (after a short pause, so what the
/// test writes next is after it).
pub async fn context_now(identity: Identity) -> ResolveContext {
    let cutoff = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    ResolveContext {
        identity,
        cutoff: Some(cutoff),
    }
}
