//! Steps that require approval stop the run with exit code 4 after the stages before them; the
//! wait survives the process, and `closeout approve RUN` records the approver and finishes it.
//! Approvers are authenticated (their own key signs a CLI approval; with none configured, the
//! OS user), never the run's starter, and a step can require N distinct approvers.

use crate::common;

use common::{json, stderr, stdout, World, REPO};

#[tokio::test]
async fn an_approval_gated_stage_waits_and_approve_releases_it() {
    let world = World::new();
    world.seed_demo();
    let leaver = std::fs::read_to_string(format!("{REPO}/playbooks/leaver.yaml")).unwrap();
    let gated = leaver.replacen(
        "        action: rotate\n",
        "        action: rotate\n        requires_approval: true\n",
        1,
    );
    assert_ne!(
        gated, leaver,
        "the leaver playbook has no rotate step to gate"
    );
    let books = world.dir.path().join("books");
    std::fs::create_dir(&books).unwrap();
    std::fs::write(books.join("leaver.yaml"), gated).unwrap();
    world.write_config(books.to_str().unwrap(), "");

    let sdk = world.sdk().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret = |sm: aws_sdk_secretsmanager::Client| async move {
        sm.get_secret_value()
            .secret_id("eng/ci-token")
            .version_stage("AWSCURRENT")
            .send()
            .await
            .unwrap()
            .secret_string
    };
    let before = secret(sm.clone()).await;

    let out = world.closeout(&[
        "apply",
        "leaver",
        "--identity",
        "E1001",
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let error = json(&out)["error"].as_str().unwrap().to_string();
    assert!(error.contains("waits for approval"), "{error}");
    // Containment ran; the gated rotation did not.
    assert!(iam
        .get_login_profile()
        .user_name("alice")
        .send()
        .await
        .is_err());
    assert_eq!(secret(sm.clone()).await, before);

    let runs = world.closeout(&["runs", "list", "--format", "json"]);
    let runs = json(&runs);
    assert_eq!(runs[0]["status"], "waiting-approval");
    let run = runs[0]["run"].as_str().unwrap().to_string();

    // A plain re-run still waits: approval is explicit.
    let again = world.closeout(&["apply", "leaver", "--identity", "E1001", "--yes"]);
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));

    // No approvers configured: the approver is the OS user, who started this run too.
    let own = world.closeout(&["approve", &run]);
    assert_eq!(own.status.code(), Some(2), "{}", stderr(&own));
    assert!(
        stderr(&own).contains("may not approve it"),
        "{}",
        stderr(&own)
    );

    let alice = approver_key(&world, "alice");
    world.write_config(books.to_str().unwrap(), &approvers(&[("alice", &alice)]));
    let approved = world.closeout(&[
        "approve",
        &run,
        "--key",
        alice.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(
        approved.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&approved),
        stderr(&approved)
    );
    assert_eq!(json(&approved)["status"], "closed");
    assert_ne!(secret(sm).await, before);

    let audit = std::fs::read_to_string(world.audit_path()).unwrap();
    let approval = audit
        .lines()
        .find(|l| l.contains("\"run.approved\""))
        .expect("the approval is audited");
    assert!(approval.contains("\"approver\":\"alice\"") && approval.contains(&run));
    assert!(approval.contains("\"method\":\"signed\""), "{approval}");
    let verify = world.closeout(&["audit", "verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
}

/// `closeout audit keygen` for an approver: the private key's path (the public key is `.pub`).
fn approver_key(world: &World, name: &str) -> std::path::PathBuf {
    let path = world.dir.path().join(format!("{name}.key"));
    let out = world.closeout(&["audit", "keygen", "--out", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    path
}

/// `[[approvals.approver]]` sections (appended after `[providers.aws]`).
fn approvers(people: &[(&str, &std::path::Path)]) -> String {
    people
        .iter()
        .map(|(name, key)| {
            format!(
                "\n[[approvals.approver]]\nname = \"{name}\"\npublic_key_file = \"{}.pub\"\n",
                key.display()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_two_person_step_needs_two_distinct_approvers_neither_the_starter() {
    let world = World::new();
    world.seed_demo();
    let leaver = std::fs::read_to_string(format!("{REPO}/playbooks/leaver.yaml")).unwrap();
    let gated = leaver.replacen(
        "        action: rotate\n",
        "        action: rotate\n        approvals: 2\n",
        1,
    );
    assert_ne!(gated, leaver);
    let books = world.dir.path().join("books");
    std::fs::create_dir(&books).unwrap();
    std::fs::write(books.join("leaver.yaml"), gated).unwrap();
    let (alice, bob, starter, mallory) = (
        approver_key(&world, "alice"),
        approver_key(&world, "bob"),
        approver_key(&world, "starter"),
        approver_key(&world, "mallory"),
    );
    // `integration-test` (the tests' CLOSEOUT_ACTOR) is an approver too: it starts the run.
    world.write_config(
        books.to_str().unwrap(),
        &approvers(&[
            ("alice", &alice),
            ("bob", &bob),
            ("integration-test", &starter),
        ]),
    );
    let out = world.closeout(&["apply", "leaver", "--identity", "E1001", "--yes"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let run = json(&world.closeout(&["runs", "list", "--format", "json"]))[0]["run"]
        .as_str()
        .unwrap()
        .to_string();
    let approve = |key: Option<&std::path::Path>| {
        let mut args = vec!["approve".to_string(), run.clone()];
        if let Some(k) = key {
            args.extend(["--key".to_string(), k.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        world.closeout(&args)
    };
    let status = || common::journal_runs(&world)[0].status;

    let unsigned = approve(None);
    assert_eq!(unsigned.status.code(), Some(2));
    assert!(
        stderr(&unsigned).contains("--key FILE"),
        "{}",
        stderr(&unsigned)
    );
    let stranger = approve(Some(&mallory));
    assert_eq!(stranger.status.code(), Some(2));
    assert!(
        stderr(&stranger).contains("is not the key of any configured approver"),
        "{}",
        stderr(&stranger)
    );
    let own = approve(Some(&starter));
    assert_eq!(own.status.code(), Some(2));
    assert!(
        stderr(&own).contains("integration-test started run")
            && stderr(&own).contains("may not approve"),
        "{}",
        stderr(&own)
    );
    let first = approve(Some(&alice));
    assert_eq!(first.status.code(), Some(4), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("has 1 of 2 approvals (alice)"),
        "{}",
        stderr(&first)
    );
    let twice = approve(Some(&alice));
    assert_eq!(twice.status.code(), Some(4), "{}", stderr(&twice));
    assert!(
        stderr(&twice).contains("has 1 of 2 approvals"),
        "{}",
        stderr(&twice)
    );
    assert_eq!(
        status(),
        closeout::store::journal::RunStatus::WaitingApproval,
        "one person, however often, does not release it"
    );
    let second = approve(Some(&bob));
    assert_eq!(
        second.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&second),
        stderr(&second)
    );
    assert_eq!(status(), closeout::store::journal::RunStatus::Closed);
    let stored = common::journal_runs(&world).remove(0);
    assert_eq!(stored.approved_by.as_deref(), Some("alice, bob"));

    let approvals: Vec<serde_json::Value> = common::audit_records(&world)
        .into_iter()
        .filter(|r| r["event"] == "run.approved")
        .collect();
    assert_eq!(approvals.len(), 3, "{approvals:?}");
    assert_eq!(approvals[2]["details"]["approver"], "bob");
    assert_eq!(approvals[2]["details"]["released"], true);
    assert_eq!(approvals[2]["details"]["required"], 2);
    assert_eq!(approvals[0]["details"]["released"], false);
    // Each approval carries the approver's own signature, checkable with their public key.
    let bob_public = closeout::store::signing::PublicKey::read(&std::path::PathBuf::from(format!(
        "{}.pub",
        bob.display()
    )))
    .unwrap();
    assert!(bob_public.verifies(
        closeout::store::signing::Domain::Approval,
        &closeout::engine::approval::approval_body(&run, "bob"),
        approvals[2]["details"]["approver_signature"]
            .as_str()
            .unwrap(),
    ));
}
