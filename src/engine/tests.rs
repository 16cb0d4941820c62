//! The engine's rules that hold before any provider is called: protected identities, `--to`
//! only for movers, the playbook and policy a trigger needs, runs that do not exist or do not
//! wait, exit codes. The providers here point at a closed port: a test that reached one would
//! fail with "unreachable", so each proves the rule is checked first.

use super::*;
use crate::pipeline::progress::Progress;
use crate::store::journal::{RunRecord, RunStatus};
use crate::trigger::Trigger;
use chrono::Utc;
use std::collections::BTreeMap;

const HR: &str = "id,email,name,kind,status,manager,department,role,location,employment_type,tags
E1,alice@example.com,Alice,human,active,E2,engineering,SRE,London,full-time,
E2,bob@example.com,Bob,human,active,,engineering,Manager,London,full-time,
E3,root@example.com,Break Glass,human,active,E2,it,Admin,London,full-time,protected
";

const LEAVER: &str = "name: leaver
triggers: [leaver]
limits: { max_actions: 50 }
stages:
  - name: contain
    steps:
      - name: revoke-tokens
        select: { provider: vault, kind: token }
        action: revoke
  - name: verify
    verify: true
";

/// A working directory with an HR export, a leaver playbook for Vault and a config whose only
/// provider is a Vault at a closed port (no call is made by opening).
fn setup(extra: &str) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    std::fs::write(p("hr.csv"), HR).unwrap();
    std::fs::create_dir(p("playbooks")).unwrap();
    std::fs::write(p("playbooks/leaver.yaml"), LEAVER).unwrap();
    std::fs::write(p("token"), "not-a-real-token\n").unwrap();
    let config = format!(
        "playbook_dir = {:?}\n[source]\npath = {:?}\n[store]\npath = {:?}\n[audit]\npath = {:?}\n\
         [providers.vault]\naddress = \"http://127.0.0.1:9\"\ntoken_file = {:?}\n{extra}",
        p("playbooks"),
        p("hr.csv"),
        p("closeout.db"),
        p("audit.jsonl"),
        p("token"),
    );
    std::fs::write(p("closeout.toml"), config).unwrap();
    let engine = Engine::open(&p("closeout.toml")).unwrap();
    (dir, engine)
}

fn never(_: &crate::pipeline::plan::Plan) -> Result<bool, EngineError> {
    panic!("nothing may be confirmed in these tests")
}

#[tokio::test]
async fn a_protected_identity_is_refused_before_any_provider_call() {
    let (_dir, engine) = setup("");
    let err = engine
        .apply(
            Trigger::Leaver,
            "E3",
            &ApplyOptions::default(),
            &mut never,
            &Progress::silent(),
        )
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, EngineError::Protected(ref id) if id == "E3"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
    assert!(
        engine.journal.runs(10).unwrap().is_empty(),
        "no run was created"
    );
}

#[test]
fn new_attributes_are_for_movers_only() {
    let (_dir, engine) = setup("");
    let to = BTreeMap::from([("department".to_string(), "finance".to_string())]);
    let err = engine.subject(Trigger::Leaver, "E1", &to).unwrap_err();
    assert!(
        matches!(err, EngineError::ToNotForTrigger(Trigger::Leaver)),
        "{err}"
    );
    let moved = engine.subject(Trigger::Mover, "E1", &to).unwrap();
    assert_eq!(moved.department.as_deref(), Some("finance"));
    assert_eq!(moved.role.as_deref(), Some("SRE"), "other attributes stay");
    assert!(matches!(
        engine.subject(Trigger::Mover, "E404", &to),
        Err(EngineError::UnknownIdentity { .. })
    ));
}

#[test]
fn a_trigger_without_a_playbook_or_without_configured_providers_is_bad_input() {
    let (dir, engine) = setup("");
    let err = engine.playbook(Trigger::Incident).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::NoPlaybook {
                trigger: Trigger::Incident,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
    std::fs::write(
        dir.path().join("playbooks/incident.yaml"),
        LEAVER
            .replace("leaver", "incident")
            .replace("provider: vault", "provider: aws")
            .replace("kind: token", "kind: access-key")
            .replace("action: revoke", "action: deactivate"),
    )
    .unwrap();
    let err = engine.playbook(Trigger::Incident).unwrap_err();
    assert!(
        matches!(err, EngineError::ProviderNotConfigured { ref provider, .. } if provider == "aws"),
        "{err}"
    );
    assert!(engine.playbook(Trigger::Leaver).is_ok());
}

#[tokio::test]
async fn a_mover_needs_the_entitlement_policy_before_any_provider_call() {
    let (dir, engine) = setup("");
    std::fs::write(
        dir.path().join("playbooks/mover.yaml"),
        LEAVER.replace("leaver", "mover"),
    )
    .unwrap();
    let to = BTreeMap::from([("department".to_string(), "finance".to_string())]);
    let err = engine.plan(Trigger::Mover, "E1", &to).await.err().unwrap();
    assert!(matches!(err, EngineError::NoPolicy { .. }), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test]
async fn runs_that_do_not_exist_or_do_not_wait_cannot_be_resumed_or_approved() {
    let (_dir, engine) = setup("");
    let err = engine
        .resume("r-missing", &Progress::silent())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, EngineError::NoSuchRun(_)), "{err}");
    let now = Utc::now();
    engine
        .journal
        .create_run(&RunRecord {
            id: "r1".into(),
            identity: "E1".into(),
            trigger: Trigger::Leaver,
            playbook: "leaver".into(),
            playbook_digest: "d".into(),
            status: RunStatus::Closed,
            created_at: now,
            effective_at: now,
            cutoff: now,
            contained_at: None,
            finished_at: Some(now),
            override_protected: false,
            plan_json: "{}".into(),
            report_json: None,
            approved_by: None,
        })
        .unwrap();
    let err = engine.record_approval("r1", "carol").await.unwrap_err();
    assert!(matches!(err, EngineError::NotWaiting { .. }), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test]
async fn the_cutoff_of_a_rotation_is_its_own_start_and_of_a_leaver_the_first_containment() {
    assert!(Trigger::Rotation.cutoff_is_run_start());
    assert!(!Trigger::Leaver.cutoff_is_run_start());
    let (_dir, engine) = setup("");
    let alice = engine.identity("alice@example.com").unwrap();
    assert_eq!(alice.id, "E1", "an identity is found by email too");
    assert_eq!(
        engine.context(&alice).await.unwrap().cutoff,
        None,
        "no run yet: nothing rotated"
    );
}

#[test]
fn exit_codes_follow_the_design() {
    assert_eq!(EngineError::NotInteractive.exit_code(), 2);
    assert_eq!(
        EngineError::WaitingApproval {
            run: "r".into(),
            stage: "s".into()
        }
        .exit_code(),
        4
    );
    assert_eq!(EngineError::Declined.exit_code(), 1);
}
