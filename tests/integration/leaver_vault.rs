//! The Vault acceptance check, end to end: the demo organisation seeded into a fresh OpenBao
//! server (with a file audit device), `closeout apply leaver --yes` with the real binary, then
//! everything read back through the Vault API: every old token, password and secret-id fails to
//! authenticate, every certificate is revoked and in its CRL, every reachable KV secret has a new
//! version, colleagues are untouched, and a second apply changes nothing.

use crate::common;

use common::vault::VaultWorld;
use common::{describe, json, stderr, stdout};
use serde_json::Value;
use std::collections::BTreeSet;

const LEAVER: &str = "E1001";

/// The serials a mount's CRL lists, parsed from its PEM, in Vault's form (the integer's bytes:
/// without the `00` DER puts before a serial whose top bit is set).
async fn crl_serials(world: &VaultWorld, mount: &str) -> BTreeSet<String> {
    let v = world
        .api
        .root("GET", &format!("{mount}/cert/crl"), None)
        .await;
    let pem = v["data"]["certificate"].as_str().expect("CRL PEM");
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("CRL is PEM");
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).expect("CRL is DER");
    crl.iter_revoked_certificates()
        .map(|r| {
            let mut serial = r.raw_serial_as_string();
            while serial.len() > 2 && serial.starts_with("00:") {
                serial.drain(..3);
            }
            serial
        })
        .collect()
}

async fn kv_current(world: &VaultWorld, key: &str) -> (u64, chrono::DateTime<chrono::Utc>, Value) {
    let v = world
        .api
        .root("GET", &format!("secret/data/{key}"), None)
        .await;
    let meta = &v["data"]["metadata"];
    (
        meta["version"].as_u64().expect("version"),
        meta["created_time"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("created_time"),
        v["data"]["data"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaver_is_closed_out_and_read_back_from_vault() {
    let world = VaultWorld::new();
    let (canary, seeded) = world.seed_demo();
    let api = &world.api;

    // Alice reaches these (entity, group, token policy, ownership); the others are out of reach.
    let reachable = [
        "alice/side-project",
        "engineering/ci-deploy",
        "oncall/pager",
        "platform/terraform",
    ];
    let unreachable = [
        "carol/notes",
        "engineering/break-glass",
        "finance/ledger",
        "metrics/exporter",
    ];
    let mut before = std::collections::BTreeMap::new();
    for key in reachable.iter().chain(unreachable.iter()) {
        before.insert(*key, kv_current(&world, key).await);
    }
    for t in seeded.alice.tokens.iter().chain(&seeded.colleagues.tokens) {
        assert!(api.token_works(t).await, "a seeded token does not work");
    }
    let started = chrono::Utc::now();

    let out = world.closeout(&[
        "apply",
        "leaver",
        "--identity",
        LEAVER,
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "apply failed:\n{}",
        describe(&out)
    );
    let report = json(&out);
    assert_eq!(report["status"], "closed", "{report:#}");
    for text in [stdout(&out), stderr(&out)] {
        assert!(!text.contains(&canary), "the canary leaked into the output");
    }
    for file in world.state_files() {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&canary),
            "canary in {}",
            file.display()
        );
    }
    // The orphans only the audit log ties to Alice were found through it.
    let from_audit = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["kind"] == "token" && f["paths"].to_string().contains("per the audit log"))
        .count();
    assert_eq!(
        from_audit, 2,
        "alice-cron and alice-cron-worker: {report:#}"
    );

    // Every old credential of Alice's fails to authenticate.
    for t in &seeded.alice.tokens {
        assert!(
            !api.token_works(t).await,
            "one of Alice's tokens still works"
        );
    }
    let (user, password) = &seeded.alice.userpass;
    assert!(!api.userpass_login_works(user, password).await);
    for (role_id, secret_id) in &seeded.alice.secret_ids {
        assert!(
            !api.approle_login_works(role_id, secret_id).await,
            "the old secret-id still logs in"
        );
    }
    // The rotated secret-id was published where the bot reads it, and works.
    let published = api
        .root("GET", "secret/data/closeout/approle/deploy-bot", None)
        .await;
    let new_role = published["data"]["data"]["role_id"].as_str().unwrap();
    let new_secret = published["data"]["data"]["secret_id"].as_str().unwrap();
    assert_ne!(new_secret, seeded.alice.secret_ids[0].1);
    assert!(api.approle_login_works(new_role, new_secret).await);
    // Alice's entity is disabled; the NHI she owned now answers to her manager.
    let alice = api
        .root("GET", "identity/entity/name/alice.nguyen", None)
        .await;
    assert_eq!(alice["data"]["disabled"], Value::Bool(true));
    let bot = api
        .root("GET", "identity/entity/name/deploy-bot", None)
        .await;
    assert_eq!(bot["data"]["metadata"]["owner"], "E1000");
    let platform = api.root("GET", "identity/group/name/platform", None).await;
    let members = platform["data"]["member_entity_ids"].to_string();
    assert!(!members.contains(alice["data"]["id"].as_str().unwrap()));
    // Every certificate of hers is revoked and in its mount's CRL; colleagues' are not.
    for (mount, serial) in &seeded.alice.certificates {
        let c = api
            .root("GET", &format!("{mount}/cert/{serial}"), None)
            .await;
        assert!(
            c["data"]["revocation_time"].as_i64().unwrap_or(0) > 0,
            "{mount} {serial} not revoked"
        );
        assert!(
            crl_serials(&world, mount).await.contains(serial),
            "{mount} {serial} not in the CRL"
        );
    }
    for (mount, serial) in &seeded.colleagues.certificates {
        let c = api
            .root("GET", &format!("{mount}/cert/{serial}"), None)
            .await;
        assert_eq!(c["data"]["revocation_time"].as_i64().unwrap_or(0), 0);
        assert!(!crl_serials(&world, mount).await.contains(serial));
    }
    let lease = seeded
        .alice
        .lease
        .as_deref()
        .expect("the seed made a lease");
    let (status, _) = api
        .call(
            "POST",
            "sys/leases/lookup",
            Some(world.bao.root_token()),
            Some(serde_json::json!({ "lease_id": lease })),
        )
        .await;
    assert_ne!(status, 200, "Alice's lease is still alive");
    // Every reachable secret has a new version written after the run began, same keys, new
    // values; the others are untouched.
    for key in reachable {
        let (version, created, data) = kv_current(&world, key).await;
        let (old_version, _, old_data) = &before[key];
        assert_eq!(version, old_version + 1, "{key}");
        assert!(created > started, "{key} was not rotated by this run");
        let keys = |d: &Value| d.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&data), keys(old_data), "{key}: keys changed");
        for (k, v) in data.as_object().unwrap() {
            assert_ne!(Some(v), old_data.get(k), "{key}.{k} kept its value");
        }
        assert!(!data.to_string().contains(&canary));
    }
    for key in unreachable {
        assert_eq!(
            kv_current(&world, key).await.0,
            before[key].0,
            "{key} touched"
        );
    }
    // The versions Alice knew are kept for the grace period, and their destruction is listed.
    let mut deferred: Vec<&str> = report["deferred"]
        .as_array()
        .expect("deferred")
        .iter()
        .filter(|d| d["verb"] == "destroy-old-versions")
        .filter_map(|d| d["finding"].as_str())
        .collect();
    deferred.sort();
    let expected: Vec<String> = reachable
        .iter()
        .map(|k| format!("vault:kv-secret:secret/data/{k}"))
        .collect();
    assert_eq!(deferred, expected, "{report:#}");
    // Colleagues: tokens, password, secret-id still work.
    for t in &seeded.colleagues.tokens {
        assert!(api.token_works(t).await, "a colleague's token was revoked");
    }
    let (user, password) = &seeded.colleagues.userpass;
    assert!(api.userpass_login_works(user, password).await);
    for (role_id, secret_id) in &seeded.colleagues.secret_ids {
        assert!(api.approle_login_works(role_id, secret_id).await);
    }

    // A second apply changes nothing on the server and still reports closed.
    let snapshot = api.snapshot().await;
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
    let again = json(&again);
    assert_eq!(again["status"], "closed", "{again:#}");
    assert_eq!(again["summary"]["actions_done"], 0, "{again:#}");
    assert_eq!(api.snapshot().await, snapshot);

    // `verify` agrees from live state.
    let verify = world.closeout(&["verify", "--identity", LEAVER, "--format", "json"]);
    assert_eq!(verify.status.code(), Some(0), "{}", describe(&verify));
    assert_eq!(json(&verify)["status"], "closed");
}

/// `apply`'s verification reuses what the run's resolution read where the audit log proves it
/// unchanged (providers/vault/README.md, "What a verification reads again"): it makes fewer
/// Vault calls than the full pass `apply --thorough` makes, and both close the leaver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_reuses_the_runs_reads_unless_thorough_and_both_close() {
    let mut verify_calls = Vec::new();
    for thorough in [false, true] {
        let world = VaultWorld::new();
        world.seed_demo();
        let mut args = vec![
            "--timings",
            "apply",
            "leaver",
            "--identity",
            "E1001",
            "--yes",
            "--format",
            "json",
        ];
        if thorough {
            args.push("--thorough");
        }
        let out = world.closeout(&args);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "no JSON report ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(
            report["status"], "closed",
            "thorough = {thorough}: {}",
            report["open"]
        );
        let (rows, _) = crate::cli_timings::table(&String::from_utf8_lossy(&out.stderr));
        let calls = |phase: &str| {
            rows.iter()
                .find(|(p, provider, _)| p == phase && provider == "vault")
                .map(|(_, _, c)| *c)
                .unwrap_or_else(|| panic!("no {phase} row for vault: {rows:?}"))
        };
        verify_calls.push((calls("resolve"), calls("verify")));
    }
    let (reused, thorough) = (verify_calls[0], verify_calls[1]);
    eprintln!("Vault calls (resolve, verify): reused {reused:?}, thorough {thorough:?}");
    assert!(
        reused.1 < thorough.1,
        "verification with reuse made {} Vault calls, the full pass {} (resolve: {} and {})",
        reused.1,
        thorough.1,
        reused.0,
        thorough.0
    );
}
