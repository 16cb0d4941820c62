//! Bad input to the policy and mover commands, with the real binary: a broken entitlement policy
//! is refused with every problem and its position (exit 2), and so are a bad `--to`, `--to` on
//! another trigger, and a mover without a policy — each before any provider is contacted (the
//! config names no provider at all).

use crate::common;

use common::{config_without_providers, describe, stderr, REPO};
use std::process::{Command, Output};

fn closeout(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_closeout"))
        .current_dir(dir)
        .arg("--config")
        .arg(dir.join("closeout.toml"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run closeout")
}

const BROKEN: &str = "rules:
  - name: eng
    when: { departmnet: Engineering }
    grants:
      - { provider: aws, group: developers, policy: x }
  - name: eng
    grants: []
";

#[test]
fn policy_and_mover_input_errors_exit_2_with_what_is_wrong() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    // A provider nothing listens for: every case must fail before it is called.
    let config = format!(
        "{}\n[providers.aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:9\"\n",
        config_without_providers(&format!("{REPO}/playbooks"))
    );
    std::fs::write(d.join("closeout.toml"), &config).expect("config");
    std::fs::write(d.join("broken.yaml"), BROKEN).expect("policy");

    let out = closeout(d, &["policy", "check", "broken.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    for needle in [
        "broken.yaml:3:13: unknown field `departmnet`",
        "broken.yaml:5:11: a grant names one entitlement",
        "at least one entitlement",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }

    // No file given and none configured.
    let out = closeout(d, &["policy", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("[policy] entitlements"),
        "{}",
        describe(&out)
    );

    for (args, needle) in [
        (
            vec!["plan", "mover", "--identity", "E1002", "--to", "salary=1"],
            "a mover can change department, role",
        ),
        (
            vec!["plan", "mover", "--identity", "E1002", "--to", "department"],
            "write KEY=VALUE",
        ),
        (
            vec![
                "plan",
                "mover",
                "--identity",
                "E1002",
                "--to",
                "role=a",
                "--to",
                "role=b",
            ],
            "given twice",
        ),
        (
            vec![
                "plan",
                "leaver",
                "--identity",
                "E1002",
                "--to",
                "department=data",
            ],
            "--to is for the mover trigger only",
        ),
        (
            vec![
                "plan",
                "mover",
                "--identity",
                "E1002",
                "--to",
                "department=data",
            ],
            "needs the entitlement policy",
        ),
    ] {
        let out = closeout(d, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(
            stderr(&out).contains(needle),
            "{args:?}: missing {needle:?}: {}",
            describe(&out)
        );
    }
}
