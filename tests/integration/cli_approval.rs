//! Steps that require approval stop the run with exit code 4 after the stages before them; the
//! wait survives the process, and `closeout approve RUN` records the approver and finishes it.

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

    let approved = world.closeout(&["approve", &run, "--format", "json"]);
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
    assert!(approval.contains("integration-test") && approval.contains(&run));
    let verify = world.closeout(&["audit", "verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", stderr(&verify));
}
