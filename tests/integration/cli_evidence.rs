//! Issue 18: a signed audit log an auditor can check without trusting Closeout, and a signed
//! evidence bundle per run that verifies offline with only the public key. Every tampering an
//! auditor would try — an edited, reordered, deleted, appended or truncated record, and a log
//! re-chained with the documented algorithm (`audit_tamper.py`) — is detected and named; so is
//! a changed, added or re-signed bundle file. No secret value reaches the bundle.

use crate::common;

use common::{audit_records, journal_runs, stderr, stdout, World, REPO};
use std::path::{Path, PathBuf};
use std::process::Output;

/// `closeout audit keygen --out DIR/NAME`: (private key, public key).
fn keygen(world: &World, name: &str) -> (PathBuf, PathBuf) {
    let private = world.dir.path().join(name);
    let out = world.closeout(&["audit", "keygen", "--out", private.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let public = world.dir.path().join(format!("{name}.pub"));
    assert!(public.exists() && stdout(&out).contains("key id"));
    (private, public)
}

/// `closeout ARGS` signing the audit log with `key`.
fn signed(world: &World, key: &Path, args: &[&str]) -> Output {
    world
        .command(args)
        .env("CLOSEOUT_AUDIT_KEY_FILE", key)
        .output()
        .expect("run closeout")
}

fn sha256(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// A closed leaver run of E1001 with a signed audit log: (world, canary, private, public, run).
async fn signed_leaver_run() -> (World, String, PathBuf, PathBuf, String) {
    let world = World::new();
    let canary = world.seed_demo();
    let (private, public) = keygen(&world, "audit.key");
    let out = signed(
        &world,
        &private,
        &[
            "apply",
            "leaver",
            "--identity",
            "E1001",
            "--yes",
            "--format",
            "json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let run = journal_runs(&world)[0].id.clone();
    (world, canary, private, public, run)
}

fn verify_log(world: &World, public: &Path) -> Output {
    world.closeout(&["audit", "verify", "--public-key", public.to_str().unwrap()])
}

#[tokio::test]
async fn the_signed_audit_log_names_every_tampering() {
    let (world, _canary, _private, public, run) = signed_leaver_run().await;

    // Every record is signed by the key, names a known actor, and the chain holds the plan's
    // and the report's SHA-256 as the journal keeps them.
    let records = audit_records(&world);
    assert!(records.len() >= 5, "{records:?}");
    let key_id = records[0]["key"].as_str().expect("key id").to_string();
    for r in &records {
        assert_eq!(r["key"], key_id.as_str(), "{r}");
        assert_eq!(r["sig"].as_str().map(str::len), Some(128), "{r}");
        assert_eq!(r["actor"], "integration-test", "{r}");
    }
    let stored = journal_runs(&world).remove(0);
    // The plan the run ran: named by `run.planned` when the run contained ahead of discovery
    // (its `run.started` names the contain-only plan it started with), else by `run.started`.
    let planned = records
        .iter()
        .rev()
        .find(|r| r["event"] == "run.planned" || r["event"] == "run.started")
        .unwrap();
    assert_eq!(planned["details"]["plan_sha256"], sha256(&stored.plan_json));
    let finished = records
        .iter()
        .find(|r| r["event"] == "run.finished")
        .unwrap();
    assert_eq!(
        finished["details"]["report_sha256"],
        sha256(stored.report_json.as_deref().unwrap())
    );
    assert_eq!(stored.started_by.as_deref(), Some("integration-test"));

    let ok = verify_log(&world, &public);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(
        stdout(&ok).contains(&format!("every record and the head signed (key {key_id})")),
        "{}",
        stdout(&ok)
    );
    let unkeyed = world.closeout(&["audit", "verify"]);
    assert_eq!(unkeyed.status.code(), Some(0));
    assert!(
        stdout(&unkeyed).contains("no signature was checked"),
        "{}",
        stdout(&unkeyed)
    );

    // `audit verify` needs no provider, no source: a config with only [audit].
    let bare = world.dir.path().join("audit-only.toml");
    std::fs::write(
        &bare,
        format!(
            "[audit]\npath = {:?}\n",
            world.audit_path().display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_closeout"))
        .args([
            "--config",
            bare.to_str().unwrap(),
            "audit",
            "verify",
            "--public-key",
        ])
        .arg(&public)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // A different key does not vouch for the log.
    let (_, other) = keygen(&world, "other.key");
    let out = verify_log(&world, &other);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("record seq 1 is signed by key"),
        "{}",
        stderr(&out)
    );

    let log = world.audit_path();
    let head = PathBuf::from(format!("{}.head", log.display()));
    let (log_text, head_text) = (
        std::fs::read_to_string(&log).unwrap(),
        std::fs::read_to_string(&head).unwrap(),
    );
    let last = records.len();
    let cases: Vec<(&str, String)> = vec![
        ("edit", "record seq 3 was edited".into()),
        (
            "rechain",
            format!("record seq 3: signature by key {key_id} does not verify"),
        ),
        (
            "reorder",
            "expected seq 2, found seq 3: records are out of order".into(),
        ),
        (
            "delete",
            "expected seq 3, found seq 4: 1 record(s) deleted".into(),
        ),
        ("append", format!("record seq {} is not signed", last + 1)),
        (
            "truncate",
            "records at the end of the log may have been cut".into(),
        ),
    ];
    let python = common::venv().join("bin/python");
    for (mode, expected) in cases {
        std::fs::write(&log, &log_text).unwrap();
        std::fs::write(&head, &head_text).unwrap();
        let tamper = std::process::Command::new(&python)
            .arg(format!("{REPO}/tests/integration/audit_tamper.py"))
            .arg(mode)
            .arg(&log)
            .output()
            .unwrap();
        assert!(tamper.status.success(), "{mode}: {}", stderr(&tamper));
        if mode == "rechain" || mode == "truncate" {
            // The chain alone is intact again: without the key this is what issue 18 found.
            let chain = world.closeout(&["audit", "verify"]);
            assert_eq!(chain.status.code(), Some(0), "{mode}: {}", stderr(&chain));
        }
        let out = verify_log(&world, &public);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{mode} was not detected: {}",
            stdout(&out)
        );
        assert!(stderr(&out).contains(&expected), "{mode}: {}", stderr(&out));
    }
    // Restored, the log verifies again and the run's evidence can still be exported.
    std::fs::write(&log, &log_text).unwrap();
    std::fs::write(&head, &head_text).unwrap();
    assert_eq!(verify_log(&world, &public).status.code(), Some(0));
    let _ = run;
}

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// `closeout evidence verify` where nothing but the bundle and the public key exists: another
/// directory, no config file, an empty environment.
fn offline_verify(bundle: &Path, public: &Path) -> Output {
    let elsewhere = tempfile::tempdir().unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_closeout"))
        .current_dir(elsewhere.path())
        .args(["evidence", "verify"])
        .arg(bundle)
        .arg("--public-key")
        .arg(public)
        .env_clear()
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_evidence_bundle_verifies_offline_and_names_every_mismatch() {
    let (world, canary, private, public, run) = signed_leaver_run().await;
    let dir = world.dir.path().join("bundle");
    let out = signed(
        &world,
        &private,
        &["evidence", "export", &run, "-o", dir.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let tarball = world.dir.path().join("out/evidence.tar.gz");
    let out = signed(
        &world,
        &private,
        &["evidence", "export", &run, "-o", tarball.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Exporting over an existing bundle is refused.
    let again = signed(
        &world,
        &private,
        &["evidence", "export", &run, "-o", dir.to_str().unwrap()],
    );
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));

    let names: Vec<String> = files_of(&dir).into_iter().map(|(n, _)| n).collect();
    for expected in [
        "README.txt",
        "actions.json",
        "audit.jsonl",
        "graph-after.json",
        "graph-before.json",
        "manifest.json",
        "manifest.sig",
        "plan.json",
        "playbook.yaml",
        "probes.json",
        "report.json",
        "run.json",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} missing: {names:?}"
        );
    }
    // No secret value anywhere in the bundle (the seed planted a canary secret value).
    for (name, bytes) in files_of(&dir) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&canary),
            "the canary secret value is in {name}"
        );
    }
    let actions: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("actions.json")).unwrap()).unwrap();
    let actions = actions["actions"].as_array().unwrap();
    assert!(!actions.is_empty());
    assert!(actions
        .iter()
        .all(|a| a["status"] == "done" || a["status"] == "already-done"));
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert!(audit.lines().all(|l| l.contains(&run)), "{audit}");
    assert!(audit.contains("\"run.started\"") && audit.contains("\"run.finished\""));
    let before: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("graph-before.json")).unwrap()).unwrap();
    assert!(!before["findings"].as_array().unwrap().is_empty());

    // Both forms verify offline with only the public key.
    for bundle in [&dir, &tarball] {
        let out = offline_verify(bundle, &public);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).ends_with("bundle verified\n"),
            "{}",
            stdout(&out)
        );
        assert!(stdout(&out).contains("ok   plan.json matches the audit log"));
        assert!(stdout(&out).contains("ok   report.json matches the audit log"));
    }

    // Tampering, each on a fresh copy, each explained.
    let copy = |name: &str| -> PathBuf {
        let to = world.dir.path().join(name);
        std::fs::create_dir(&to).unwrap();
        for (file, bytes) in files_of(&dir) {
            std::fs::write(to.join(file), bytes).unwrap();
        }
        to
    };
    let edit = |path: &Path, from: &str, to: &str| {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains(from), "{} lacks {from}", path.display());
        std::fs::write(path, text.replacen(from, to, 1)).unwrap();
    };
    let fails = |bundle: &Path, expected: &[&str]| {
        let out = offline_verify(bundle, &public);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        for e in expected {
            assert!(
                stdout(&out).contains(e),
                "expected {e:?} in:\n{}",
                stdout(&out)
            );
        }
        assert!(stdout(&out).ends_with("bundle NOT verified\n"));
    };

    // A file changed after export.
    let t = copy("t-report");
    edit(
        &t.join("report.json"),
        "\"status\":\"closed\"",
        "\"status\":\"open\"",
    );
    fails(
        &t,
        &[
            "FAIL file report.json: SHA-256 is",
            "the file was changed after export",
        ],
    );

    // The same change with the manifest's digest updated: the manifest's signature breaks.
    let t = copy("t-manifest");
    let old =
        closeout::pipeline::evidence::sha256_hex(&std::fs::read(t.join("report.json")).unwrap());
    edit(
        &t.join("report.json"),
        "\"status\":\"closed\"",
        "\"status\":\"open\"",
    );
    let new =
        closeout::pipeline::evidence::sha256_hex(&std::fs::read(t.join("report.json")).unwrap());
    edit(&t.join("manifest.json"), &old, &new);
    fails(
        &t,
        &[
            "FAIL manifest signature: does not verify with key",
            "FAIL report.json matches the audit log: SHA-256 is",
        ],
    );

    // A file added, one removed.
    let t = copy("t-files");
    std::fs::write(t.join("extra.txt"), "planted").unwrap();
    std::fs::remove_file(t.join("probes.json")).unwrap();
    fails(
        &t,
        &[
            "FAIL file extra.txt: not in the manifest: added after export",
            "FAIL file probes.json: listed in the manifest but missing",
        ],
    );

    // The whole bundle re-sealed by someone else's key, with an audit record edited: the
    // manifest is signed by an unknown key, and the record's signature no longer verifies.
    let t = copy("t-resealed");
    edit(
        &t.join("audit.jsonl"),
        "\"actor\":\"integration-test\"",
        "\"actor\":\"mallory\"",
    );
    let mut bundle = closeout::pipeline::evidence::Bundle::read(&t).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(bundle.get("manifest.json").unwrap()).unwrap();
    let forger = closeout::store::signing::PrivateKey::generate();
    bundle.seal(
        serde_json::json!({"run": manifest["run"], "identity": manifest["identity"]}),
        &forger,
    );
    let resealed = world.dir.path().join("t-resealed-out");
    bundle.write(&resealed).unwrap();
    fails(
        &resealed,
        &[
            "FAIL manifest signature: signed by key",
            "which is not among the public keys given",
            "FAIL audit.jsonl line 1: record seq 1 was edited",
        ],
    );
}

/// `closeout ARGS` on the runtime (the proxy or the double serving it runs on this one), with
/// the audit log signed by `key`.
async fn signed_async(command: std::process::Command, key: &Path) -> Output {
    let mut command = tokio::process::Command::from(command);
    command
        .env("CLOSEOUT_AUDIT_KEY_FILE", key)
        .output()
        .await
        .expect("run closeout")
}

/// The exported bundle's actions of `run` (written to DIR/bundle).
fn bundle_actions(dir: &Path) -> Vec<serde_json::Value> {
    let actions: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("actions.json")).unwrap()).unwrap();
    actions["actions"].as_array().unwrap().clone()
}

/// Every call of every action: (action key, call).
fn calls_of(actions: &[serde_json::Value]) -> Vec<(String, serde_json::Value)> {
    actions
        .iter()
        .flat_map(|a| {
            let key = a["key"].as_str().unwrap().to_string();
            a["provider_calls"]
                .as_array()
                .unwrap_or_else(|| panic!("no provider_calls in {a}"))
                .iter()
                .map(move |c| (key.clone(), c.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Each executed action names at least one provider call with a status; the audit log's
/// record of each action carries the same calls.
fn assert_every_action_has_answered_calls(actions: &[serde_json::Value], audit: &str) {
    assert!(!actions.is_empty());
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for a in actions {
        let calls = a["provider_calls"].as_array().unwrap();
        assert!(
            calls.iter().any(|c| c["status"].as_u64().is_some()),
            "action {} has no answered provider call: {a}",
            a["key"]
        );
        for c in calls {
            assert!(
                c["operation"].as_str().is_some_and(|o| !o.is_empty()),
                "{c}"
            );
            assert!(c["at"].as_str().is_some(), "{c}");
        }
        let audited = records
            .iter()
            .find(|r| {
                r["details"]["key"] == a["key"]
                    && r["event"]
                        .as_str()
                        .is_some_and(|e| e.starts_with("action."))
            })
            .unwrap_or_else(|| panic!("no audit record of {}", a["key"]));
        assert_eq!(audited["details"]["provider_calls"], a["provider_calls"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aws_action_in_the_bundle_names_the_requests_moto_answered() {
    use closeout_testkit::proxy::{Fault, FaultProxy, Rule, When};
    let world = World::new();
    // A proxy between Closeout and moto logs what moto answered each request (its status and
    // x-amzn-RequestId): the receipts in the bundle are checked against that log.
    let proxy = FaultProxy::start(&world.moto.endpoint()).await;
    let config = std::fs::read_to_string(world.config_path()).unwrap();
    assert!(config.contains(&world.moto.endpoint()));
    std::fs::write(
        world.config_path(),
        config.replace(&world.moto.endpoint(), &proxy.endpoint()),
    )
    .unwrap();
    let canary = world.seed_demo();
    let (private, _public) = keygen(&world, "audit.key");
    // The first UpdateAccessKey is answered 503 by the proxy: the SDK retries it, and both
    // attempts are receipts of the action (the failed one with no request id: moto never saw it).
    proxy.set_rules(vec![Rule::new(
        When::Times(1),
        Fault::Status { status: 503 },
    )
    .on("UpdateAccessKey")]);
    let apply = signed_async(
        world.command(&[
            "apply",
            "leaver",
            "--identity",
            "E1001",
            "--yes",
            "--format",
            "json",
        ]),
        &private,
    )
    .await;
    assert_eq!(apply.status.code(), Some(0), "{}", stderr(&apply));
    let run = journal_runs(&world)[0].id.clone();
    let dir = world.dir.path().join("bundle");
    let out = signed(
        &world,
        &private,
        &["evidence", "export", &run, "-o", dir.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let actions = bundle_actions(&dir);
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert_every_action_has_answered_calls(&actions, &audit);
    let log = proxy.log();
    let calls = calls_of(&actions);
    let mut seen = std::collections::BTreeSet::new();
    let mut injected = Vec::new();
    for (key, c) in &calls {
        let Some(id) = c["request_id"].as_str() else {
            injected.push((key.clone(), c.clone()));
            continue;
        };
        assert!(seen.insert(id.to_string()), "{key}: request id {id} twice");
        let answered = log
            .iter()
            .find(|e| e.request_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{key}: moto never answered request id {id}: {c}"));
        assert_eq!(c["status"].as_u64(), answered.status.map(u64::from), "{c}");
        let op = c["operation"].as_str().unwrap();
        assert!(
            op.ends_with(&format!(":{}", answered.op)),
            "{key}: receipt {op} for moto's {}",
            answered.op
        );
    }
    // The HTML report shows each action's request ids.
    let html = world.closeout(&["report", &run]);
    assert_eq!(html.status.code(), Some(0), "{}", stderr(&html));
    let html = stdout(&html);
    for id in &seen {
        assert!(
            html.contains(&format!("<code>{id}</code>")),
            "{id} not in the report"
        );
    }
    // The only call without a request id is the 503 the proxy injected, followed in the same
    // action by the retry moto answered.
    assert_eq!(injected.len(), 1, "{injected:?}");
    let (key, failed) = &injected[0];
    assert_eq!(failed["operation"], "iam:UpdateAccessKey");
    assert_eq!(failed["status"], 503);
    let same_action: Vec<&serde_json::Value> = calls
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, c)| c)
        .collect();
    let at = same_action.iter().position(|c| *c == failed).unwrap();
    let retry = same_action
        .get(at + 1)
        .unwrap_or_else(|| panic!("no retry after the 503 in {same_action:?}"));
    assert_eq!(retry["operation"], "iam:UpdateAccessKey");
    assert_eq!(retry["status"], 200);
    // The leaver's writes are there, by name.
    let ops: Vec<&str> = calls
        .iter()
        .map(|(_, c)| c["operation"].as_str().unwrap())
        .collect();
    for write in ["iam:UpdateAccessKey", "iam:DeleteLoginProfile"] {
        assert!(ops.contains(&write), "{write} not among {ops:?}");
    }
    let text = std::fs::read_to_string(dir.join("actions.json")).unwrap();
    assert!(!text.contains(&canary));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_azure_action_in_the_bundle_names_the_requests_the_double_answered() {
    use crate::common::azure::{AzureWorld, ARM_SCOPE};
    let world = AzureWorld::new().await;
    let (canary, _) = world.seed_demo().await;
    let command = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_closeout"));
        c.current_dir(world.dir.path())
            .arg("--config")
            .arg(world.config_path())
            .args(args)
            .env_remove("AZURE_CLIENT_SECRET")
            .env("CLOSEOUT_ACTOR", "integration-test")
            .env_remove("RUST_LOG");
        c
    };
    let private = world.dir.path().join("audit.key");
    let out = tokio::process::Command::from(command(&[
        "audit",
        "keygen",
        "--out",
        private.to_str().unwrap(),
    ]))
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let apply = signed_async(
        command(&[
            "apply",
            "leaver",
            "--identity",
            "E1001",
            "--yes",
            "--format",
            "json",
        ]),
        &private,
    )
    .await;
    assert_eq!(
        apply.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&apply),
        stderr(&apply)
    );
    let run = common::runs_at(&world.dir.path().join("state/closeout.db"))[0]
        .id
        .clone();
    let dir = world.dir.path().join("bundle");
    let out = signed_async(
        command(&["evidence", "export", &run, "-o", dir.to_str().unwrap()]),
        &private,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let actions = bundle_actions(&dir);
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert_every_action_has_answered_calls(&actions, &audit);
    // The double's own log of what it answered, with the request id it sent back.
    let (status, answered) = world
        .api
        .call(
            ARM_SCOPE,
            "GET",
            &format!("{}/_double/calls", world.double.base_url()),
        )
        .await;
    assert_eq!(status, 200);
    let answered = answered["calls"].as_array().unwrap().clone();
    let calls = calls_of(&actions);
    let mut data_plane = 0;
    for (key, c) in &calls {
        let id = c["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: an Azure call without a request id: {c}"));
        let record = answered
            .iter()
            .find(|r| r["request_id"] == id)
            .unwrap_or_else(|| panic!("{key}: the double never answered request id {id}: {c}"));
        assert_eq!(c["status"], record["status"], "{c} / {record}");
        let host = record["host"].as_str().unwrap_or("");
        data_plane += usize::from(!host.is_empty());
        assert_eq!(
            c["operation"].as_str().unwrap(),
            format!(
                "{} {host}{}",
                record["method"].as_str().unwrap(),
                record["path"].as_str().unwrap()
            ),
            "{key}"
        );
    }
    assert!(
        data_plane > 0,
        "no Key Vault data-plane call among {calls:?}"
    );
    let text = std::fs::read_to_string(dir.join("actions.json")).unwrap();
    assert!(!text.contains(&canary));
}

#[test]
fn every_vault_action_in_the_bundle_names_its_calls_and_openbao_logged_their_ids() {
    use crate::common::vault::VaultWorld;
    let world = VaultWorld::new();
    let (canary, _) = world.seed_demo();
    let private = world.dir.path().join("audit.key");
    let out = world.closeout(&["audit", "keygen", "--out", private.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let signed = |args: &[&str]| {
        world
            .command(args)
            .env("CLOSEOUT_AUDIT_KEY_FILE", &private)
            .output()
            .expect("run closeout")
    };
    let apply = signed(&[
        "apply",
        "leaver",
        "--identity",
        "E1001",
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(
        apply.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&apply),
        stderr(&apply)
    );
    let run = common::runs_at(&world.dir.path().join("state/closeout.db"))[0]
        .id
        .clone();
    let dir = world.dir.path().join("bundle");
    let out = signed(&["evidence", "export", &run, "-o", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let actions = bundle_actions(&dir);
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert_every_action_has_answered_calls(&actions, &audit);
    // OpenBao's file audit device logs every request with its id and path: each request id in
    // the bundle is one OpenBao logged, for the path the receipt names.
    let logged: std::collections::BTreeMap<String, String> =
        std::fs::read_to_string(world.bao.audit_log())
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|e| {
                Some((
                    e["request"]["id"].as_str()?.to_string(),
                    e["request"]["path"].as_str()?.to_string(),
                ))
            })
            .collect();
    let calls = calls_of(&actions);
    let mut with_id = 0;
    for (key, c) in &calls {
        let op = c["operation"].as_str().unwrap();
        // OpenBao names a request in the body of an answer that has one; a 204 has none.
        if c["status"] == 200 {
            assert!(
                c["request_id"].is_string(),
                "{key}: a 200 without its id: {c}"
            );
        }
        let Some(id) = c["request_id"].as_str() else {
            continue;
        };
        with_id += 1;
        let path = logged
            .get(id)
            .unwrap_or_else(|| panic!("{key}: OpenBao never logged request id {id}: {c}"));
        // The receipt keeps the path as sent (percent-encoded); OpenBao logs it decoded, and
        // a LIST's with a trailing slash.
        assert!(
            percent_decoded(op).ends_with(&format!(" /v1/{}", path.trim_end_matches('/'))),
            "{key}: {op} vs {path}"
        );
    }
    assert!(with_id > 0, "no Vault call carried a request id: {calls:?}");
    let text = std::fs::read_to_string(dir.join("actions.json")).unwrap();
    assert!(!text.contains(&canary));
}

/// `text` with its `%XX` escapes decoded.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
