//! The HTTP API as a client independent of the provider, to seed the server and read it back,
//! and the provider under test pointed at the same server and namespace.

use closeout_contract::{Identity, IdentityKind, IdentityStatus};
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
