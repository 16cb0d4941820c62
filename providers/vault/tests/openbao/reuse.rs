//! A verification's resolution (`Reuse::SinceLastRead`) reuses what the run's first resolution
//! read only where nothing can have changed it: every change made between the two resolutions
//! through a place it now reads differently (an entity's metadata, a new entity, a KV key's
//! custom metadata, a new token) is still found, and what nobody touched is not read again.
//!
//! Each test has an OpenBao dev server of its own: the reuse depends on the audit log, which the
//! shared server's other tests write to concurrently.

use closeout_contract::receipt::collect;
use closeout_contract::reuse::{scope, Reuse};
use closeout_contract::{Finding, Identity, Provider, ProviderCall, Resolution, ResolveContext};
use closeout_testkit::OpenBaoServer;
use closeout_vault::{VaultConfig, VaultProvider};
use serde_json::{json, Value};

struct Server {
    bao: OpenBaoServer,
    http: reqwest::Client,
}

impl Server {
    fn start() -> Server {
        Server {
            bao: OpenBaoServer::start(),
            http: reqwest::Client::new(),
        }
    }

    async fn root(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(
                method.parse().unwrap(),
                format!("{}/v1/{path}", self.bao.address()),
            )
            .header("X-Vault-Token", self.bao.root_token());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let v = resp.json::<Value>().await.unwrap_or(Value::Null);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    async fn entity(&self, name: &str, metadata: Value) -> String {
        self.root(
            "POST",
            "identity/entity",
            Some(json!({"name": name, "metadata": metadata})),
        )
        .await["data"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A token with `meta`, created by root (so bound to no entity).
    async fn token(&self, meta: Value) -> String {
        self.root(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["default"], "meta": meta})),
        )
        .await["auth"]["accessor"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn kv(&self, key: &str, owner: &str) {
        self.root(
            "POST",
            &format!("secret/data/{key}"),
            Some(json!({"data": {"v": "x"}})),
        )
        .await;
        self.root(
            "POST",
            &format!("secret/metadata/{key}"),
            Some(json!({"custom_metadata": {"owner": owner}})),
        )
        .await;
    }

    async fn provider(&self, audit_log: bool) -> VaultProvider {
        self.provider_logging_to(audit_log.then(|| self.bao.audit_log()))
            .await
    }

    async fn provider_logging_to(&self, audit_log: Option<std::path::PathBuf>) -> VaultProvider {
        let dir = std::env::temp_dir().join(format!(
            "closeout-vault-reuse-{}-{}",
            std::process::id(),
            self.bao.port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let token_file = dir.join("token");
        std::fs::write(&token_file, format!("{}\n", self.bao.root_token())).unwrap();
        VaultProvider::connect(VaultConfig {
            address: Some(self.bao.address()),
            token_file: Some(token_file),
            audit_log,
            max_in_flight: 4,
            ..Default::default()
        })
        .await
        .unwrap()
    }
}

fn carol() -> Identity {
    Identity {
        id: "E300".into(),
        email: "carol.jones@example.com".into(),
        name: "Carol Jones".into(),
        kind: closeout_contract::IdentityKind::Human,
        status: closeout_contract::IdentityStatus::Terminated,
        manager: None,
        department: None,
        role: None,
        location: None,
        employment_type: None,
        tags: Default::default(),
    }
}

fn ctx() -> ResolveContext {
    ResolveContext {
        identity: carol(),
        cutoff: None,
    }
}

/// Calls whose operation starts with `prefix`.
fn count(calls: &[ProviderCall], prefix: &str) -> usize {
    calls
        .iter()
        .filter(|c| c.operation.starts_with(prefix))
        .count()
}

fn ids(r: &Resolution, kind: &str) -> Vec<String> {
    let mut v: Vec<String> = r
        .findings
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f: &Finding| f.display.clone())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Ten colleagues with an entity, a token and an owned KV secret each; carol with her entity, a
/// token she owns and a KV secret she owns.
async fn seed(s: &Server) -> Vec<String> {
    let mut colleagues = Vec::new();
    for i in 0..10 {
        let name = format!("other-{i:02}");
        colleagues.push(
            s.entity(&name, json!({"identity": format!("E9{i:02}")}))
                .await,
        );
        s.token(json!({"owner": format!("E9{i:02}")})).await;
        s.kv(&format!("people/{name}"), &format!("E9{i:02}")).await;
    }
    s.entity("carol.jones", json!({"identity": "E300"})).await;
    s.token(json!({"owner": "E300"})).await;
    s.kv("people/carol", "E300").await;
    colleagues
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_between_resolve_and_verify_are_found_and_untouched_objects_are_not_read_again() {
    let s = Server::start();
    let colleagues = seed(&s).await;
    let provider = s.provider(true).await;

    // The run's first resolution reads everything.
    let (first, calls) = collect(provider.resolve(&ctx())).await;
    let first = first.unwrap();
    assert_eq!(count(&calls, "GET /v1/identity/entity/id/"), 11);
    assert_eq!(count(&calls, "GET /v1/secret/metadata/"), 11);
    assert!(count(&calls, "POST /v1/auth/token/lookup-accessor") >= 12);
    assert_eq!(ids(&first, "nhi-entity"), Vec::<String>::new());
    assert_eq!(
        ids(&first, "kv-secret"),
        vec!["KV secret secret/data/people/carol"]
    );
    assert_eq!(ids(&first, "token").len(), 1);

    // Between the resolutions: a colleague's entity comes to name carol as its owner (by id),
    // a new entity owned by her appears, a colleague's secret is handed to her (its custom
    // metadata), and a token she owns is created. Nothing else changes.
    s.root(
        "POST",
        &format!("identity/entity/id/{}", colleagues[3]),
        Some(json!({"metadata": {"owner": "E300"}})),
    )
    .await;
    // (Created by name: a creation at `identity/entity` names no entity in its path, so it
    // would make every entity be read again.)
    s.root(
        "POST",
        "identity/entity/name/svc-carol-new",
        Some(json!({"metadata": {"owner": "carol.jones@example.com"}})),
    )
    .await;
    s.root(
        "POST",
        "secret/metadata/people/other-05",
        Some(json!({"custom_metadata": {"owner": "E300"}})),
    )
    .await;
    s.token(json!({"owner": "E300"})).await;

    // Verification's resolution: every change is found ...
    let (again, calls) = collect(scope(Reuse::SinceLastRead, provider.resolve(&ctx()))).await;
    let again = again.unwrap();
    assert_eq!(
        ids(&again, "nhi-entity"),
        vec![
            "entity other-03 owned by the person",
            "entity svc-carol-new owned by the person"
        ],
        "{:#?}",
        again.findings
    );
    assert_eq!(
        ids(&again, "kv-secret"),
        vec![
            "KV secret secret/data/people/carol",
            "KV secret secret/data/people/other-05"
        ]
    );
    assert_eq!(ids(&again, "token").len(), 2);
    // ... and only what can have changed is read: carol's entity, the changed colleague and the
    // new entity (by the audit log and the listing); carol's secret, the handed-over one; carol's
    // token and the new one. The nine untouched colleagues' entities, secrets and tokens are not.
    assert_eq!(
        count(&calls, "GET /v1/identity/entity/id/"),
        3,
        "{calls:#?}"
    );
    assert_eq!(count(&calls, "GET /v1/secret/metadata/"), 2, "{calls:#?}");
    assert_eq!(
        count(&calls, "POST /v1/auth/token/lookup-accessor"),
        2,
        "{calls:#?}"
    );

    // With the full pass (`--thorough`) everything is read again, and finds the same.
    let (thorough, calls) = collect(scope(Reuse::Never, provider.resolve(&ctx()))).await;
    let thorough = thorough.unwrap();
    assert_eq!(count(&calls, "GET /v1/identity/entity/id/"), 12);
    assert_eq!(count(&calls, "GET /v1/secret/metadata/"), 11);
    assert_eq!(ids(&thorough, "nhi-entity"), ids(&again, "nhi-entity"));
    assert_eq!(ids(&thorough, "kv-secret"), ids(&again, "kv-secret"));
    assert_eq!(ids(&thorough, "token"), ids(&again, "token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_by_name_is_found_and_without_the_live_audit_log_entities_and_secrets_are_all_read(
) {
    let s = Server::start();
    seed(&s).await;

    // With the audit log: an entity changed through its name (not its id) is read again.
    let provider = s.provider(true).await;
    provider.resolve(&ctx()).await.unwrap();
    s.root(
        "POST",
        "identity/entity/name/other-07",
        Some(json!({"metadata": {"owner": "E300"}})),
    )
    .await;
    let (again, calls) = collect(scope(Reuse::SinceLastRead, provider.resolve(&ctx()))).await;
    assert_eq!(
        ids(&again.unwrap(), "nhi-entity"),
        vec!["entity other-07 owned by the person"]
    );
    assert_eq!(
        count(&calls, "GET /v1/identity/entity/id/"),
        2,
        "{calls:#?}"
    );

    // A file that is not the server's live log (a copy, a log whose device was disabled):
    // Closeout's own listing is not in it, so it proves nothing and everything is read again.
    let stale = std::env::temp_dir().join(format!(
        "closeout-vault-reuse-stale-{}-{}.log",
        std::process::id(),
        s.bao.port()
    ));
    std::fs::copy(s.bao.audit_log(), &stale).unwrap();
    let provider = s.provider_logging_to(Some(stale.clone())).await;
    provider.resolve(&ctx()).await.unwrap();
    let (_, calls) = collect(scope(Reuse::SinceLastRead, provider.resolve(&ctx()))).await;
    assert_eq!(
        count(&calls, "GET /v1/identity/entity/id/"),
        11,
        "{calls:#?}"
    );
    assert_eq!(count(&calls, "GET /v1/secret/metadata/"), 11);
    std::fs::remove_file(&stale).unwrap();

    // Without one, nothing can tell what changed: every entity and secret is read again (the
    // tokens, whose owner and entity never change, are still reused).
    let provider = s.provider(false).await;
    provider.resolve(&ctx()).await.unwrap();
    s.root(
        "POST",
        "secret/metadata/people/other-08",
        Some(json!({"custom_metadata": {"owner": "E300"}})),
    )
    .await;
    let (again, calls) = collect(scope(Reuse::SinceLastRead, provider.resolve(&ctx()))).await;
    let again = again.unwrap();
    assert_eq!(count(&calls, "GET /v1/identity/entity/id/"), 11);
    assert_eq!(count(&calls, "GET /v1/secret/metadata/"), 11);
    assert_eq!(count(&calls, "POST /v1/auth/token/lookup-accessor"), 1);
    assert!(ids(&again, "kv-secret").contains(&"KV secret secret/data/people/other-08".to_string()));
    assert_eq!(
        ids(&again, "nhi-entity"),
        vec!["entity other-07 owned by the person"]
    );
}
