//! A Vault world for the CLI tests: an OpenBao dev server (with a file audit device), the demo
//! organisation seeded into it by `examples/demo/seed_vault.py`, a config naming only the Vault
//! provider, and a small HTTP client to read the server back.

use super::{config_without_providers, venv, REPO};
use closeout_testkit::OpenBaoServer;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

pub struct VaultWorld {
    pub bao: OpenBaoServer,
    pub dir: tempfile::TempDir,
    pub api: Api,
    /// The PostgreSQL store the config names instead of the SQLite file ([`VaultWorld::on_postgres`]).
    pub postgres: Option<closeout::config::StoreConfig>,
}

/// What the seed created, from `CLOSEOUT_SEED_CREDENTIALS_FILE`.
#[derive(Debug, serde::Deserialize)]
pub struct Seeded {
    pub alice: Holdings,
    pub colleagues: Holdings,
}

#[derive(Debug, serde::Deserialize)]
pub struct Holdings {
    pub tokens: Vec<String>,
    /// (user, password)
    pub userpass: (String, String),
    /// (role id, secret id)
    pub secret_ids: Vec<(String, String)>,
    /// (mount, serial)
    pub certificates: Vec<(String, String)>,
    #[serde(default)]
    pub lease: Option<String>,
}

impl VaultWorld {
    pub fn new() -> VaultWorld {
        let bao = OpenBaoServer::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let token_file = dir.path().join("vault-token");
        std::fs::write(&token_file, format!("{}\n", bao.root_token())).expect("token file");
        let config = format!(
            r#"{common}
[providers.vault]
address = "{address}"
token_file = "{token_file}"
audit_log = "{audit_log}"
audit_device = "{device}"
max_in_flight = 4
"#,
            common = config_without_providers(&format!("{REPO}/playbooks")),
            address = bao.address(),
            token_file = token_file.display(),
            audit_log = bao.audit_log().display(),
            device = closeout_testkit::openbao::AUDIT_DEVICE,
        );
        std::fs::write(dir.path().join("closeout.toml"), config).expect("write config");
        let api = Api {
            http: reqwest::Client::new(),
            address: bao.address(),
            root: bao.root_token().to_string(),
        };
        let world = VaultWorld {
            bao,
            dir,
            api,
            postgres: None,
        };
        // The serve suite's second pass: on PostgreSQL.
        if super::store_from_env() {
            world.on_postgres()
        } else {
            world
        }
    }

    /// The same world with its store in a new PostgreSQL database (see
    /// [`super::use_postgres_store`]).
    pub fn on_postgres(mut self) -> VaultWorld {
        if self.postgres.is_none() {
            self.postgres = Some(super::use_postgres_store(
                self.dir.path(),
                &self.config_path(),
            ));
        }
        self
    }

    /// The world's journal (SQLite or PostgreSQL).
    pub fn journal(&self) -> Option<closeout::store::journal::Journal> {
        super::store_journal(
            self.postgres.as_ref(),
            &self.dir.path().join("state/closeout.db"),
        )
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("closeout.toml")
    }

    pub fn state_files(&self) -> [PathBuf; 2] {
        [
            self.dir.path().join("state/closeout.db"),
            self.dir.path().join("state/audit.jsonl"),
        ]
    }

    /// A `closeout ARGS` command with this world's config and no Vault token from outside.
    /// `closeout serve` on the world's config with the tests' webhook secret and API token
    /// (not spawned: see `super::start_serve`).
    pub fn serve_command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_closeout"));
        cmd.current_dir(self.dir.path())
            .arg("--config")
            .arg(self.config_path())
            .arg("serve")
            .env_remove("VAULT_TOKEN")
            .env_remove("VAULT_ADDR")
            .env("CLOSEOUT_WEBHOOK_SECRETS", super::serve::WEBHOOK_SECRET)
            .env("CLOSEOUT_API_TOKEN", super::serve::API_TOKEN)
            .env_remove("RUST_LOG");
        cmd
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_closeout"));
        command
            .current_dir(self.dir.path())
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_ADDR")
            .env("CLOSEOUT_ACTOR", "integration-test")
            .env_remove("RUST_LOG");
        command
    }

    pub fn closeout(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run closeout")
    }

    /// Seed the demo organisation; returns the canary and what was created.
    pub fn seed_demo(&self) -> (String, Seeded) {
        let python = venv().join("bin/python");
        assert!(
            python.exists(),
            "{} not found: run scripts/setup.sh to create the venv",
            python.display()
        );
        let canary_file = self.dir.path().join("canary.txt");
        let credentials_file = self.dir.path().join("seeded.json");
        let out = Command::new(python)
            .arg(format!("{REPO}/examples/demo/seed_vault.py"))
            .env("VAULT_ADDR", self.bao.address())
            .env("VAULT_TOKEN", self.bao.root_token())
            .env("CLOSEOUT_CANARY_FILE", &canary_file)
            .env("CLOSEOUT_SEED_CREDENTIALS_FILE", &credentials_file)
            .output()
            .expect("run the Vault seed script");
        assert!(
            out.status.success(),
            "seeding OpenBao failed: {}\nserver output:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.bao.output_tail()
        );
        let canary = std::fs::read_to_string(&canary_file)
            .expect("the seed writes the canary")
            .trim()
            .to_string();
        let seeded = serde_json::from_slice(
            &std::fs::read(&credentials_file).expect("the seed writes its credentials"),
        )
        .expect("credentials JSON");
        (canary, seeded)
    }
}

pub struct Api {
    http: reqwest::Client,
    address: String,
    root: String,
}

impl Api {
    /// One call; `(status, body)`.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.address));
        if let Some(t) = token {
            req = req.header("X-Vault-Token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("OpenBao answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A root call that must succeed.
    pub async fn root(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, Some(&self.root), body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    /// `LIST path` keys (empty when nothing is there).
    pub async fn list(&self, path: &str) -> Vec<String> {
        let (status, v) = self.call("LIST", path, Some(&self.root), None).await;
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "LIST {path}: {v}");
        v["data"]["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The probe a holder of the token would run.
    pub async fn token_works(&self, token: &str) -> bool {
        self.call("GET", "auth/token/lookup-self", Some(token), None)
            .await
            .0
            == 200
    }

    /// `lookup-accessor` (as root) finds the token: it is still live.
    pub async fn accessor_lives(&self, accessor: &str) -> bool {
        self.call(
            "POST",
            "auth/token/lookup-accessor",
            Some(&self.root),
            Some(json!({ "accessor": accessor })),
        )
        .await
        .0 == 200
    }

    pub async fn userpass_login_works(&self, user: &str, password: &str) -> bool {
        self.call(
            "POST",
            &format!("auth/userpass/login/{user}"),
            None,
            Some(json!({ "password": password })),
        )
        .await
        .0 == 200
    }

    pub async fn approle_login_works(&self, role_id: &str, secret_id: &str) -> bool {
        self.call(
            "POST",
            "auth/approle/login",
            None,
            Some(json!({ "role_id": role_id, "secret_id": secret_id })),
        )
        .await
        .0 == 200
    }

    /// Every KV v2 key under `mount` (recursively).
    pub async fn kv_keys(&self, mount: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(prefix) = stack.pop() {
            for k in self.list(&format!("{mount}/metadata/{prefix}")).await {
                let full = format!("{prefix}{k}");
                if k.ends_with('/') {
                    stack.push(full);
                } else {
                    out.push(full);
                }
            }
        }
        out.sort();
        out
    }

    /// Everything Closeout can change, as sorted `what -> state` lines: tokens, entities
    /// (disabled, owner, policies), group members, userpass users, AppRole secret-ids, KV versions, PKI
    /// revocations. Two equal snapshots mean nothing Closeout acts on changed.
    pub async fn snapshot(&self) -> BTreeMap<String, String> {
        let mut s = BTreeMap::new();
        for acc in self.list("auth/token/accessors").await {
            s.insert(format!("token/{acc}"), "live".into());
        }
        for id in self.list("identity/entity/id").await {
            let e = self
                .root("GET", &format!("identity/entity/id/{id}"), None)
                .await;
            let d = &e["data"];
            s.insert(
                format!("entity/{}", d["name"].as_str().unwrap_or_default()),
                format!(
                    "disabled={} owner={} policies={}",
                    d["disabled"], d["metadata"]["owner"], d["policies"]
                ),
            );
        }
        for id in self.list("identity/group/id").await {
            let g = self
                .root("GET", &format!("identity/group/id/{id}"), None)
                .await;
            let d = &g["data"];
            s.insert(
                format!("group/{}", d["name"].as_str().unwrap_or_default()),
                format!("{} {}", d["member_entity_ids"], d["member_group_ids"]),
            );
        }
        for user in self.list("auth/userpass/users").await {
            s.insert(format!("userpass/{user}"), "present".into());
        }
        for role in self.list("auth/approle/role").await {
            for acc in self
                .list(&format!("auth/approle/role/{role}/secret-id"))
                .await
            {
                s.insert(format!("secret-id/{role}/{acc}"), "present".into());
            }
        }
        for key in self.kv_keys("secret").await {
            let m = self
                .root("GET", &format!("secret/metadata/{key}"), None)
                .await;
            s.insert(
                format!("kv/{key}"),
                m["data"]["current_version"].to_string(),
            );
        }
        for mount in ["pki", "pki-internal"] {
            for serial in self.list(&format!("{mount}/certs")).await {
                let c = self
                    .root("GET", &format!("{mount}/cert/{serial}"), None)
                    .await;
                s.insert(
                    format!("cert/{mount}/{serial}"),
                    format!("revoked={}", c["data"]["revocation_time"]),
                );
            }
        }
        s
    }
}
