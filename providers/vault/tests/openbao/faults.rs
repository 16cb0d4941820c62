//! Issue 14, item 4: reads are retried. A single 5xx, 429 or reset connection during resolution
//! used to end the apply. Through a fault-injecting proxy between the provider and OpenBao,
//! resolution finds what it finds without faults, and every 429 was retried.
//!
//! And every retry of a 429 waits its `Retry-After`: reads used to go through `vaultrs`, whose
//! errors carry status and message only, so those backed off by the policy alone (a few hundred
//! milliseconds) however long the server asked; every read is now a typed call that sees the
//! header (`Client::read_data`).

use crate::api::{context_now, person, Api};
use closeout_contract::{Provider, Resolution};
use closeout_testkit::proxy::{Fault, FaultProxy, Rule, When};
use closeout_testkit::OpenBaoServer;
use closeout_vault::{VaultConfig, VaultProvider};
use serde_json::json;

/// A provider reaching OpenBao through `proxy`, as root in `namespace`.
pub(crate) async fn through(proxy: &FaultProxy, namespace: &str) -> VaultProvider {
    let dir = std::env::temp_dir().join(format!(
        "closeout-vault-faults-{namespace}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "root\n").unwrap();
    VaultProvider::connect(VaultConfig {
        address: Some(proxy.endpoint()),
        token_file: Some(token_file),
        namespace: Some(namespace.into()),
        max_in_flight: 4,
        ..VaultConfig::default()
    })
    .await
    .unwrap()
}

fn ids(r: &Resolution) -> Vec<String> {
    let mut ids: Vec<String> = r.findings.iter().map(|f| f.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_through_faulted_reads_converges() {
    let api = Api::namespace("faults").await;
    api.policy(
        "team-read",
        r#"path "secret/data/team/*" { capabilities = ["read"] }"#,
    )
    .await;
    api.entity("alice.smith", &["team-read"]).await;
    api.root(
        "POST",
        "secret/data/team/db",
        Some(json!({"data": {"password": "x"}})),
    )
    .await;
    for n in 0..3 {
        api.root(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["team-read"], "meta": {"identity": "E100"}, "display_name": format!("alice-{n}")})),
        )
        .await;
    }
    let alice = context_now(person("E100", "alice.smith@example.com")).await;
    let want = ids(&api.provider("faults").await.resolve(&alice).await.unwrap());
    assert!(!want.is_empty());

    let proxy = FaultProxy::start(&OpenBaoServer::shared().address()).await;
    let faulted = through(&proxy, "faults").await;
    let base = proxy.requests();
    let at = |n: u64, fault: Fault| Rule::new(When::Nth(base + n), fault).reads_only();
    proxy.set_rules(vec![
        at(1, Fault::Status { status: 503 }),
        at(
            2,
            Fault::TooManyRequests {
                retry_after_secs: 1,
            },
        ),
        at(5, Fault::Reset),
        at(
            7,
            Fault::TooManyRequests {
                retry_after_secs: 2,
            },
        ),
        at(9, Fault::Status { status: 500 }),
    ]);
    let got = ids(&faulted
        .resolve(&alice)
        .await
        .expect("resolution through faulted reads"));
    assert_eq!(got, want);
    let log = proxy.log();
    assert!(
        log.iter().filter(|e| e.fault.is_some()).count() >= 3,
        "{log:#?}"
    );
    let report = proxy.retry_after_report();
    assert!(report.throttled >= 1, "{report:?} {log:#?}");
    assert_eq!(report.retried, report.throttled, "{report:?}");
}

/// Issue 14: reads honour `Retry-After`. The first reads of a resolution (the mounts, the entity
/// list, each entity, token lookups — all made through `vaultrs` before) are answered 429 with
/// `Retry-After: 1`, every other one; each is retried, and no retry comes sooner than asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_reads_wait_out_retry_after() {
    let api = Api::namespace("retry-after").await;
    api.policy(
        "team-read",
        r#"path "secret/data/team/*" { capabilities = ["read"] }"#,
    )
    .await;
    api.entity("alice.smith", &["team-read"]).await;
    api.entity("bob.jones", &["team-read"]).await;
    for n in 0..3 {
        api.root(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["team-read"], "meta": {"identity": "E100"}, "display_name": format!("alice-{n}")})),
        )
        .await;
    }
    let alice = context_now(person("E100", "alice.smith@example.com")).await;
    let want = ids(&api
        .provider("retry-after")
        .await
        .resolve(&alice)
        .await
        .unwrap());

    let proxy = FaultProxy::start(&OpenBaoServer::shared().address()).await;
    let faulted = through(&proxy, "retry-after").await;
    let base = proxy.requests();
    proxy.set_rules(
        (0..12u64)
            .map(|k| {
                Rule::new(
                    When::Nth(base + 1 + 2 * k),
                    Fault::TooManyRequests {
                        retry_after_secs: 1,
                    },
                )
                .reads_only()
            })
            .collect(),
    );
    let got = ids(&faulted
        .resolve(&alice)
        .await
        .expect("resolution through throttled reads"));
    assert_eq!(got, want);
    let log = proxy.log();
    let throttled: Vec<&str> = log
        .iter()
        .filter(|e| e.status == Some(429))
        .map(|e| e.op.as_str())
        .collect();
    assert!(throttled.len() >= 6, "{throttled:?}");
    assert!(
        throttled
            .iter()
            .any(|op| op.contains("identity/entity") || op.contains("sys/")),
        "no read formerly made through vaultrs was throttled: {throttled:?}"
    );
    let report = proxy.retry_after_report();
    assert_eq!(report.retried, report.throttled, "{report:?} {log:#?}");
    assert_eq!(
        report.honoured, report.retried,
        "a throttled read was retried sooner than Retry-After: {report:?} {log:#?}"
    );
}

/// Issue 15, item 1: a throttle slows the whole provider, not only the retry of the throttled
/// call. One of 24 concurrent token lookups is answered 429 with `Retry-After: 2`; until those
/// 2 s have passed, only the calls already admitted by the gate (at most its 4 in flight) reach
/// the server, where before the other lookups went on at full speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_holds_the_providers_other_calls_until_retry_after() {
    let api = Api::namespace("hold").await;
    api.policy(
        "team-read",
        r#"path "secret/data/team/*" { capabilities = ["read"] }"#,
    )
    .await;
    api.entity("alice.smith", &["team-read"]).await;
    // Token lookups run concurrently (up to the gate's 4 in flight): what a hold must stop.
    for n in 0..24 {
        api.root(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["team-read"], "meta": {"identity": "E100"}, "display_name": format!("alice-{n}")})),
        )
        .await;
    }
    let alice = context_now(person("E100", "alice.smith@example.com")).await;
    let proxy = FaultProxy::start(&OpenBaoServer::shared().address()).await;
    let faulted = through(&proxy, "hold").await;
    proxy.set_rules(vec![Rule::new(
        When::Times(1),
        Fault::TooManyRequests {
            retry_after_secs: 2,
        },
    )
    .matching("lookup-accessor")]);
    faulted
        .resolve(&alice)
        .await
        .expect("resolution through a throttled read");
    let log = proxy.log();
    let throttle = log
        .iter()
        .find(|e| e.status == Some(429))
        .expect("a read was throttled");
    let later: Vec<_> = log.iter().filter(|e| e.n > throttle.n).collect();
    let early = later
        .iter()
        .filter(|e| e.at_ms < throttle.at_ms + 1_900)
        .count();
    assert!(
        later.len() > 8,
        "too few calls after the throttle to tell: {log:#?}"
    );
    assert!(
        early <= 4,
        "{early} calls reached the server during the Retry-After, more than the 4 the gate had \
         admitted: {log:#?}"
    );
}

/// Issue 14, seen by the chaos bench: a KV v2 rotation whose new version was written but whose
/// answer was lost (or whose marking failed after it) was retried from scratch and wrote a
/// second new version. The write of the new version has its answer cut off (the write takes
/// effect); the retried action then finishes with exactly one new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv2_rotation_whose_write_answer_was_lost_writes_one_version() {
    use crate::api::request;
    use closeout_contract::{ErrorClass, State};
    let api = Api::namespace("kv2-lost").await;
    api.policy(
        "team-read",
        r#"path "secret/data/team/*" { capabilities = ["read"] }"#,
    )
    .await;
    api.entity("alice.smith", &["team-read"]).await;
    let alice = context_now(person("E100", "alice.smith@example.com")).await;
    let proxy = FaultProxy::start(&OpenBaoServer::shared().address()).await;
    let faulted = through(&proxy, "kv2-lost").await;
    let version = |m: serde_json::Value| m["data"]["current_version"].as_u64().unwrap();
    for (n, lost) in ["/data/team/"].into_iter().enumerate() {
        let key = format!("team/db-{n}");
        api.root(
            "POST",
            &format!("secret/data/{key}"),
            Some(json!({"data": {"password": "x"}})),
        )
        .await;
        let r = faulted.resolve(&alice).await.unwrap();
        let f = r
            .findings
            .iter()
            .find(|f| f.resource == format!("secret/data/{key}"))
            .unwrap_or_else(|| panic!("no finding for {key}: {:#?}", r.findings));
        let before = version(
            api.root("GET", &format!("secret/metadata/{key}"), None)
                .await,
        );
        // The first write matching `lost` loses its answer.
        proxy.set_rules(vec![Rule::new(When::Times(1), Fault::ForwardThenReset)
            .matching(&format!("POST /v1/secret{lost}"))]);
        let req = request("run-1", f, "rotate");
        let mut attempts = 0;
        let out = loop {
            attempts += 1;
            match faulted.execute(&req).await {
                Ok(out) => break out,
                Err(e) if e.class() != ErrorClass::Permanent && attempts < 5 => continue,
                Err(e) => panic!("{key}: attempt {attempts}: {e}"),
            }
        };
        proxy.set_rules(Vec::new());
        assert!(attempts > 1, "{key}: no fault fired");
        assert_eq!(out.state, State::Rotated, "{key}: {out:?}");
        let after = version(
            api.root("GET", &format!("secret/metadata/{key}"), None)
                .await,
        );
        assert_eq!(
            after,
            before + 1,
            "{key}: one new version was due (answer of {lost} lost)"
        );
        // And it reads as rotated by this action: a further attempt does nothing.
        let again = faulted.execute(&req).await.unwrap();
        assert!(again.already_done, "{key}: {again:?}");
    }
}

/// An AppRole `role` with one secret-id owned by E100, and that secret-id's finding as the
/// provider resolves it through `faulted`.
async fn owned_secret_id(
    api: &Api,
    faulted: &VaultProvider,
    role: &str,
) -> closeout_contract::Finding {
    api.root(
        "POST",
        &format!("auth/approle/role/{role}"),
        Some(json!({"token_policies": ["default"]})),
    )
    .await;
    api.root(
        "POST",
        &format!("auth/approle/role/{role}/secret-id"),
        Some(json!({"metadata": json!({"owner": "E100"}).to_string()})),
    )
    .await;
    let alice = context_now(person("E100", "alice.smith@example.com")).await;
    let r = faulted.resolve(&alice).await.unwrap();
    r.findings
        .iter()
        .find(|f| f.kind == "approle-secret-id" && f.attr("role") == Some(role))
        .unwrap_or_else(|| panic!("no secret-id finding for {role}: {:#?}", r.findings))
        .clone()
}

/// Execute `req` through `faulted`, retrying as the executor does (up to 5 attempts); the
/// outcome and how many attempts it took.
async fn execute_retried(
    faulted: &VaultProvider,
    req: &closeout_contract::ActionRequest,
) -> (closeout_contract::ActionOutcome, u32) {
    use closeout_contract::ErrorClass;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match faulted.execute(req).await {
            Ok(out) => return (out, attempts),
            Err(e) if e.class() != ErrorClass::Permanent && attempts < 5 => continue,
            Err(e) => panic!("{}: attempt {attempts}: {e}", req.idempotency_key),
        }
    }
}

/// Read back from OpenBao: `role` has exactly one live secret-id, not `old`, published in
/// exactly one version of its KV record, the one the record names for it.
async fn assert_one_published_replacement(api: &Api, role: &str, old: &str, case: &str) {
    let live: Vec<String> = api
        .root("LIST", &format!("auth/approle/role/{role}/secret-id"), None)
        .await["data"]["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        live.len(),
        1,
        "{role} ({case}): one new secret-id: {live:?}"
    );
    assert_ne!(
        live[0], old,
        "{role} ({case}): the old secret-id is still live"
    );
    let record = api
        .root(
            "GET",
            &format!("secret/metadata/closeout/approle/{role}"),
            None,
        )
        .await;
    assert_eq!(
        record["data"]["current_version"], 1,
        "{role} ({case}): published once: {record}"
    );
    assert_eq!(
        record["data"]["custom_metadata"][format!("closeout-secret-id:{}", live[0])],
        "1",
        "{role} ({case}): the live secret-id is the published one: {record}"
    );
}

/// Issue 14, seen by the chaos bench: an AppRole secret-id rotation whose new secret-id was
/// created (or published) but whose answer was lost was retried from scratch: a second
/// secret-id, a second published version, and the first one left live. With the answer of the
/// creation lost, then of the publication, the retried action ends with the old secret-id
/// destroyed, exactly one new one live, and it published in exactly one new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_rotation_whose_answers_were_lost_leaves_one_new_secret_id() {
    use crate::api::request;
    use closeout_contract::State;
    let api = Api::namespace("approle-lost").await;
    api.root("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
        .await;
    let proxy = FaultProxy::start(&OpenBaoServer::shared().address()).await;
    let faulted = through(&proxy, "approle-lost").await;
    let lost_ops = [
        "POST /v1/auth/approle/role/{role}/secret-id",
        "POST /v1/secret/data/closeout/approle/{role}",
    ];
    for (n, lost) in lost_ops.into_iter().enumerate() {
        let role = format!("batch-{n}");
        let f = owned_secret_id(&api, &faulted, &role).await;
        let old = f.attr("accessor").unwrap().to_string();
        let lost = lost.replace("{role}", &role);
        proxy.set_rules(vec![
            Rule::new(When::Times(1), Fault::ForwardThenReset).on(&lost)
        ]);
        let (out, attempts) = execute_retried(&faulted, &request("run-1", &f, "rotate")).await;
        proxy.set_rules(Vec::new());
        assert!(attempts > 1, "{role}: no fault fired ({lost})");
        assert_eq!(out.state, State::Deleted, "{role}: {out:?}");
        assert_one_published_replacement(&api, &role, &old, &lost).await;
    }
}

/// A run whose rotation stopped part-way can be followed by a run with other idempotency keys
/// (another trigger's run — an incident after a failed leaver — or the next run after one that
/// ended open). The rotation used to know its own secret-ids by the key, so that run neither
/// destroyed the one the first run created nor recognised its publication: two new secret-ids
/// live. The first run stops after the creation's answer was lost, after the intent record was
/// refused, and after the publication's answer was lost; the next run's rotation (another key)
/// leaves exactly one new secret-id, published once (fails without the fix: two live).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approle_rotation_a_failed_run_left_half_done_is_finished_by_the_next_run() {
    use crate::api::request;
    use closeout_contract::State;
    let api = Api::namespace("approle-rerun").await;
    api.root("POST", "sys/auth/approle", Some(json!({"type": "approle"})))
        .await;
    let proxy = FaultProxy::start(&OpenBaoServer::shared().address()).await;
    let faulted = through(&proxy, "approle-rerun").await;
    let stops = [
        (
            "POST /v1/auth/approle/role/{role}/secret-id",
            Fault::ForwardThenReset,
        ),
        (
            "POST /v1/secret/metadata/closeout/approle/{role}",
            Fault::Status { status: 503 },
        ),
        (
            "POST /v1/secret/data/closeout/approle/{role}",
            Fault::ForwardThenReset,
        ),
    ];
    for (n, (op, fault)) in stops.into_iter().enumerate() {
        let role = format!("rerun-{n}");
        let f = owned_secret_id(&api, &faulted, &role).await;
        let old = f.attr("accessor").unwrap().to_string();
        let op = op.replace("{role}", &role);
        proxy.set_rules(vec![Rule::new(When::Times(1), fault).on(&op)]);
        let failed = faulted.execute(&request("run-1", &f, "rotate")).await;
        proxy.set_rules(Vec::new());
        assert!(failed.is_err(), "{role}: the fault on {op} did not fire");
        let (out, _) = execute_retried(&faulted, &request("run-2", &f, "rotate")).await;
        assert_eq!(out.state, State::Deleted, "{role}: {out:?}");
        assert_one_published_replacement(&api, &role, &old, &op).await;
    }
}

/// Seen in the demo once Vault actions ran 32 at a time: while a parent token's revocation is
/// removing its children, a child's accessor still exists but its token does not, and OpenBao
/// answers `lookup-accessor` 403 "permission denied" (its "bad token"). The child's revoke action
/// failed and the leaver stopped after `contain` (a 200 whose body is no token was seen too).
/// Every child is revoked while its parent is, in several rounds: every action must end done or
/// already done, and every token read back gone. Without the fix it fails about two runs in three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_revoked_while_its_parent_is_revoked_never_fails_the_action() {
    use closeout_contract::{Finding, Holder, Relation, State};
    let api = Api::namespace("revoke-race").await;
    let provider = api.provider("revoke-race").await;
    let ctx = context_now(person("E100", "alice.smith@example.com")).await;
    let token_finding = |accessor: &str| Finding {
        id: format!("vault:token:{accessor}"),
        provider: "vault".into(),
        kind: "token".into(),
        relation: Relation::Owns,
        holder: Holder::Account,
        resource: accessor.into(),
        display: accessor.into(),
        state: State::Active,
        paths: vec![],
        attributes: [("accessor".to_string(), accessor.to_string())].into(),
    };
    api.policy(
        "mint",
        r#"path "auth/token/create" { capabilities = ["update"] }"#,
    )
    .await;
    for round in 0..12 {
        let parent = api
            .root(
                "POST",
                "auth/token/create",
                Some(json!({"policies": ["mint"]})),
            )
            .await;
        let parent_token = parent["auth"]["client_token"].as_str().unwrap().to_string();
        let parent_accessor = parent["auth"]["accessor"].as_str().unwrap().to_string();
        let mut accessors = vec![parent_accessor];
        let mut tokens = vec![parent_token.clone()];
        for _ in 0..40 {
            let (status, child) = api
                .call(
                    "POST",
                    "auth/token/create",
                    &parent_token,
                    Some(json!({"policies": ["default"]})),
                )
                .await;
            assert_eq!(status, 200, "{child}");
            accessors.push(child["auth"]["accessor"].as_str().unwrap().to_string());
            tokens.push(child["auth"]["client_token"].as_str().unwrap().to_string());
        }
        let findings: Vec<Finding> = accessors.iter().map(|a| token_finding(a)).collect();
        let run = format!("race-{round}");
        let requests: Vec<_> = findings
            .iter()
            .map(|f| crate::api::request(&run, f, "revoke"))
            .collect();
        let outcomes =
            futures::future::join_all(requests.iter().map(|r| provider.execute(r))).await;
        for (f, outcome) in findings.iter().zip(outcomes) {
            let outcome = outcome
                .unwrap_or_else(|e| panic!("round {round}: revoking {} failed: {e}", f.resource));
            assert_eq!(outcome.state, State::Revoked, "{outcome:?}");
        }
        // Every token is dead (OpenBao may keep a dangling accessor entry of a child, so the
        // tokens themselves are asked), and the provider reads every accessor back as gone.
        for token in &tokens {
            assert!(
                !api.token_works(token).await,
                "round {round}: a token still works"
            );
        }
        for f in &findings {
            assert_eq!(
                provider.live_state(f, &ctx).await.expect("live state"),
                State::Deleted,
                "round {round}: the provider still sees token {}",
                f.resource
            );
        }
    }
}

/// The other side of the dangling-accessor rule: when Closeout itself may not call
/// `lookup-accessor`, a 403 is a refusal, never a revoked token: the revoke fails and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_on_lookup_accessor_without_the_permission_is_an_error_not_a_revoked_token() {
    use closeout_contract::{Finding, Holder, Relation, State};
    let api = Api::namespace("lookup-refused").await;
    api.policy(
        "no-lookup",
        r#"path "auth/token/revoke-accessor" { capabilities = ["update"] }"#,
    )
    .await;
    let weak = api
        .root(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["no-lookup"], "no_parent": true})),
        )
        .await;
    let weak = weak["auth"]["client_token"].as_str().unwrap().to_string();
    let victim = api
        .root(
            "POST",
            "auth/token/create",
            Some(json!({"policies": ["default"]})),
        )
        .await;
    let victim_token = victim["auth"]["client_token"].as_str().unwrap().to_string();
    let accessor = victim["auth"]["accessor"].as_str().unwrap().to_string();
    let provider = api
        .provider_with(
            "lookup-refused",
            &weak,
            closeout_vault::VaultConfig::default(),
        )
        .await;
    let f = Finding {
        id: format!("vault:token:{accessor}"),
        provider: "vault".into(),
        kind: "token".into(),
        relation: Relation::Owns,
        holder: Holder::Account,
        resource: accessor.clone(),
        display: accessor.clone(),
        state: State::Active,
        paths: vec![],
        attributes: [("accessor".to_string(), accessor.clone())].into(),
    };
    let err = provider
        .execute(&crate::api::request("refused", &f, "revoke"))
        .await
        .expect_err("a refused lookup is not a revoked token");
    assert!(err.to_string().contains("403"), "{err}");
    assert!(api.token_works(&victim_token).await, "nothing was revoked");
}
