//! Shared by the OpenBao integration tests: the HTTP API as a client independent of the
//! provider, to seed the server and read it back.

#![allow(dead_code)]

use serde_json::Value;

pub struct Api {
    pub http: reqwest::Client,
    pub addr: String,
}

impl Api {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let v = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, v)
    }

    pub async fn root(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, "root", body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }
}

/// A provider for `server` with the root token in a file under a per-test temp directory.
pub async fn provider(
    server: &closeout_testkit::OpenBaoServer,
    test: &str,
) -> closeout_vault::VaultProvider {
    let dir = std::env::temp_dir().join(format!("closeout-vault-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{}\n", server.root_token())).unwrap();
    closeout_vault::VaultProvider::connect(closeout_vault::VaultConfig {
        address: Some(server.address()),
        token_file: Some(token_file),
        max_in_flight: 4,
        ..Default::default()
    })
    .await
    .unwrap()
}
