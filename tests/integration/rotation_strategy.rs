//! Rotation strategies end to end (docs/rotation.md): the demo organisation in moto plus a JSON
//! secret of an unknown shape that Alice can read. The plan names it "needs a rotation
//! strategy"; `apply leaver` rotates the tagged `prod/payments/db` by its template (only the
//! password changes, the username is kept), leaves the unknown secret exactly as it was, and
//! exits 3 with it open, naming it; once a `[[rotation.strategy]]` rule names a strategy, the
//! next run rotates it and closes.

use crate::common;

use common::{describe, json, stdout, World};

const LEAVER: &str = "E1001";

async fn current(sm: &aws_sdk_secretsmanager::Client, name: &str) -> serde_json::Value {
    let v = sm
        .get_secret_value()
        .secret_id(name)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .expect("read AWSCURRENT")
        .secret_string
        .unwrap_or_default();
    serde_json::from_str(&v).expect("a JSON secret")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_secret_without_a_strategy_is_untouched_and_keeps_the_run_open() {
    let world = World::new();
    world.seed_demo();
    let sm = aws_sdk_secretsmanager::Client::new(&world.sdk().await);
    // Alice reads eng/* through her group: a warehouse login no strategy covers.
    let unknown = serde_json::json!({
        "engine": "redshift", "host": "warehouse.internal", "port": 5439,
        "username": "etl", "password": "warehouse-canary"
    });
    sm.create_secret()
        .name("eng/warehouse")
        .secret_string(unknown.to_string())
        .send()
        .await
        .expect("create eng/warehouse");
    // moto keeps whole seconds: let the cutoff of the run fall after the secret's creation.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    let plan = world.closeout(&["plan", "leaver", "--identity", LEAVER]);
    let text = stdout(&plan);
    assert!(
        text.contains("needs a rotation strategy") && text.contains("eng/warehouse"),
        "{}",
        describe(&plan)
    );
    assert!(
        text.contains("rotation strategy: template:password (tag)"),
        "the tagged payments secret shows its strategy: {text}"
    );
    assert!(!text.contains("warehouse-canary"), "{text}");

    let out = world.closeout(&[
        "apply",
        "leaver",
        "--identity",
        LEAVER,
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let report = json(&out);
    let open = report["open"].as_array().expect("open");
    let named: Vec<&serde_json::Value> = open
        .iter()
        .filter(|o| {
            o["id"]
                .as_str()
                .is_some_and(|id| id.contains("eng/warehouse"))
        })
        .collect();
    assert_eq!(named.len(), 1, "{report:#}");
    assert!(
        named[0].to_string().contains("needs a rotation strategy"),
        "{report:#}"
    );
    assert_eq!(
        open.len(),
        1,
        "only the unknown shape stays open: {report:#}"
    );
    // Untouched: one version, the same value.
    assert_eq!(current(&sm, "eng/warehouse").await, unknown);
    // The tagged secret: the password changed, the username kept.
    let payments = current(&sm, "prod/payments/db").await;
    assert_eq!(payments["username"], "payments");
    assert!(
        !payments["password"]
            .as_str()
            .unwrap_or_default()
            .starts_with("CANARY"),
        "{payments}"
    );

    // A rule names a strategy: the next run rotates only the password, and closes.
    let mut config = std::fs::read_to_string(world.config_path()).expect("config");
    config.push_str(
        "\n[[rotation.strategy]]\nprovider = \"aws\"\nname = \"eng/warehouse\"\nstrategy = \"template:password\"\n",
    );
    std::fs::write(world.config_path(), config).expect("config");
    let again = world.closeout(&[
        "apply",
        "leaver",
        "--identity",
        LEAVER,
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let after = current(&sm, "eng/warehouse").await;
    assert_ne!(after["password"], unknown["password"]);
    for k in ["engine", "host", "port", "username"] {
        assert_eq!(after[k], unknown[k], "{k}");
    }
}
