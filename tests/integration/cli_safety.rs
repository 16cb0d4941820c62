//! Safety rules and bad input (DESIGN.md §4-§5, issue 2 items 6, 11, 12), with the real
//! `closeout` binary against moto. Every refusal is checked from outside: the account read back
//! with the AWS SDK is unchanged, the journal holds no run, and the audit log says what it must.

use crate::common;

use common::{
    account_snapshot, audit_records, describe, journal_runs, json, plan_keys, stderr, stdout,
    World, APPLY_LEAVER, LEAVER, REPO,
};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

const PROTECTED: &str = "E1004";

fn apply_args(identity: &str) -> Vec<&str> {
    vec![
        "apply",
        "leaver",
        "--identity",
        identity,
        "--yes",
        "--format",
        "json",
    ]
}

/// Assert the exit code, with the output in the message.
fn assert_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit code {code}\n{}",
        describe(out)
    );
}

/// A `--format json` failure: stdout is exactly one JSON document with an `error` field that
/// says the same as stderr. Returns the error message.
fn json_error(out: &Output) -> String {
    let doc = json(out);
    let error = doc["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no `error` field in {doc}\n{}", describe(out)))
        .to_string();
    assert!(
        stderr(out).contains(&error),
        "stderr does not carry the error\n{}",
        describe(out)
    );
    error
}

/// Write `text` as `leaver.yaml` in a fresh playbook directory of the world; returns the file.
fn write_playbook(world: &World, dir: &str, text: &str) -> PathBuf {
    let dir = world.dir.path().join(dir);
    std::fs::create_dir_all(&dir).expect("playbook dir");
    let file = dir.join("leaver.yaml");
    std::fs::write(&file, text).expect("write playbook");
    file
}

fn shipped_leaver() -> String {
    std::fs::read_to_string(format!("{REPO}/playbooks/leaver.yaml")).expect("shipped leaver")
}

/// Point the world's config at the playbook directory holding `file`.
fn use_playbook_dir(world: &World, file: &Path) {
    world.write_config(file.parent().unwrap().to_str().unwrap(), "");
}

fn assert_no_run(world: &World, what: &str) {
    let runs = journal_runs(world);
    assert!(runs.is_empty(), "{what}: the journal holds runs: {runs:?}");
    let events: Vec<String> = audit_records(world)
        .iter()
        .map(|r| r["event"].as_str().unwrap_or_default().to_string())
        .filter(|e| e.starts_with("run.") || e.starts_with("action."))
        .collect();
    assert!(
        events.is_empty(),
        "{what}: the audit log records run activity: {events:?}"
    );
}

/// A snapshot entry that must exist with the given value (so "unchanged" really covers it).
fn assert_entry(snapshot: &std::collections::BTreeMap<String, String>, key: &str, value: &str) {
    assert_eq!(
        snapshot.get(key).map(String::as_str),
        Some(value),
        "{key} in the account"
    );
}

// ---- bad input ----------------------------------------------------------------------------------

#[test]
fn an_unknown_identity_exits_2_naming_it() {
    let world = World::new();

    let out = world.closeout(&["plan", "leaver", "--identity", "NOPE"]);
    assert_code(&out, 2, "plan for an unknown identity");
    assert!(stderr(&out).contains("NOPE"), "{}", describe(&out));
    assert!(stdout(&out).is_empty(), "{}", describe(&out));

    let out = world.closeout(&["plan", "leaver", "--identity", "NOPE", "--format", "json"]);
    assert_code(&out, 2, "plan --format json for an unknown identity");
    assert!(json_error(&out).contains("NOPE"));

    let out = world.closeout(&apply_args("NOPE"));
    assert_code(&out, 2, "apply for an unknown identity");
    let error = json_error(&out);
    assert!(error.contains("NOPE"), "{error}");
    assert_eq!(json(&out)["exit_code"], 2);
    assert_no_run(&world, "apply for an unknown identity");
}

#[tokio::test]
async fn malformed_playbooks_are_reported_by_file_line_and_column_and_apply_nothing() {
    let world = World::new();
    world.seed_demo();
    let sdk = world.sdk().await;
    let before = account_snapshot(&sdk).await;
    assert_entry(&before, "user/alice/login-profile", "present");

    let leaver = shipped_leaver();
    let unknown_field = leaver.replacen(
        "        action: remove\n",
        "        action: remove\n        graze: 7d\n",
        1,
    );
    let line = unknown_field
        .lines()
        .position(|l| l.contains("graze"))
        .unwrap()
        + 1;
    let no_grace = leaver.replacen("        grace: 7d\n", "", 1);
    assert_ne!(no_grace, leaver, "the shipped leaver has no grace period");
    let delete_line = no_grace
        .lines()
        .position(|l| l.contains("action: delete"))
        .unwrap()
        + 1;
    // Two steps of one stage acting on the same findings with different verbs (they would race).
    let racing_step = "      - name: delete-own-keys\n        select: { provider: aws, kind: access-key, holder: account, state: inactive }\n        action: delete\n        grace: 0s\n";
    let contradictory = leaver.replacen(
        "      - name: deactivate-mfa\n",
        &format!("{racing_step}      - name: deactivate-mfa\n"),
        1,
    );
    assert_ne!(contradictory, leaver);
    let racing_line = contradictory
        .lines()
        .position(|l| l.contains("delete-own-keys"))
        .unwrap()
        + 1;
    let bad_yaml = "name: leaver\ntriggers: [leaver]\nlimits:\n  max_actions: 10\nstages:\n  - name: contain\n    steps: [\n      { name: x, select: { provider: aws }\n";
    // (directory, text, lines the diagnostic may point at, what it must name)
    let cases: Vec<(&str, String, std::ops::RangeInclusive<usize>, &str)> = vec![
        ("unknown-field", unknown_field, line..=line, "graze"),
        ("no-grace", no_grace, delete_line..=delete_line, "grace"),
        (
            "contradictory",
            contradictory,
            racing_line..=racing_line + 3,
            "contradictory",
        ),
        ("bad-yaml", bad_yaml.to_string(), 1..=9, "YAML"),
    ];

    for (name, text, line, needle) in cases {
        let file = write_playbook(&world, name, &text);
        let out = world.closeout(&["playbook", "check", file.to_str().unwrap()]);
        assert_code(&out, 2, &format!("playbook check of {name}"));
        let err = stderr(&out);
        let diagnostic = err
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{name}: no diagnostic naming {needle:?}\n{err}"));
        // FILE:LINE:COL: message
        let prefix = format!("{}:", file.display());
        assert!(
            diagnostic.starts_with(&prefix),
            "{name}: not FILE:LINE:COL: {diagnostic}"
        );
        let mut rest = diagnostic[prefix.len()..].splitn(3, ':');
        let (l, c) = (rest.next().unwrap(), rest.next().unwrap());
        let l: usize = l
            .parse()
            .unwrap_or_else(|_| panic!("{name}: no line number in {diagnostic}"));
        let c: usize = c
            .parse()
            .unwrap_or_else(|_| panic!("{name}: no column in {diagnostic}"));
        assert!(c >= 1, "{diagnostic}");
        assert!(line.contains(&l), "{name}: wrong line in {diagnostic}");

        use_playbook_dir(&world, &file);
        let out = world.closeout(&apply_args(LEAVER));
        assert_code(&out, 2, &format!("apply with playbook {name}"));
        let error = json_error(&out);
        assert!(
            error.contains(file.to_str().unwrap()) && error.contains(needle),
            "{name}: the error names neither the file nor the problem: {error}"
        );
        assert_no_run(&world, &format!("apply with playbook {name}"));
    }

    // The unbroken original passes.
    let shipped = format!("{REPO}/playbooks/leaver.yaml");
    let out = world.closeout(&["playbook", "check", &shipped]);
    assert_code(&out, 0, "playbook check of the shipped leaver");

    assert_eq!(
        account_snapshot(&sdk).await,
        before,
        "a refused apply changed the account"
    );
}

#[tokio::test]
async fn a_playbook_naming_an_unknown_or_unconfigured_provider_is_refused() {
    let world = World::new();
    world.seed_demo();
    let sdk = world.sdk().await;
    let before = account_snapshot(&sdk).await;

    let vault = shipped_leaver().replacen(
        "select: { provider: aws, kind: login-profile",
        "select: { provider: vault, kind: login-profile",
        1,
    );
    assert_ne!(vault, shipped_leaver());
    let file = write_playbook(&world, "vault", &vault);
    let out = world.closeout(&["playbook", "check", file.to_str().unwrap()]);
    assert_code(&out, 2, "playbook check naming provider vault");
    assert!(stderr(&out).contains("vault"), "{}", describe(&out));

    use_playbook_dir(&world, &file);
    let out = world.closeout(&apply_args(LEAVER));
    assert_code(&out, 2, "apply with a playbook naming provider vault");
    assert!(json_error(&out).contains("vault"));
    assert_no_run(&world, "apply naming provider vault");

    // A known provider that the config does not configure: the shipped playbook uses `aws`.
    let config = common::config_without_providers(&format!("{REPO}/playbooks"));
    std::fs::write(world.config_path(), config).unwrap();
    let out = world.closeout(&apply_args(LEAVER));
    assert_code(&out, 2, "apply with provider aws not configured");
    let error = json_error(&out);
    // With a single provider in this version the config itself is refused (it configures
    // none); either way the message must name the provider to add.
    assert!(
        error.contains("[providers.aws]") || error.contains("provider \"aws\""),
        "{error}"
    );
    assert_no_run(&world, "apply with provider aws not configured");

    assert_eq!(account_snapshot(&sdk).await, before);
}

#[test]
fn a_malformed_config_exits_2_naming_the_file_and_the_key() {
    let world = World::new();
    let config = world.config_path();
    let config_name = config.display().to_string();

    // Bad TOML.
    std::fs::write(
        &config,
        "playbook_dir = \"playbooks\"\n[source\npath = \"x\"\n",
    )
    .unwrap();
    let out = world.closeout(&["plan", "leaver", "--identity", LEAVER, "--format", "json"]);
    assert_code(&out, 2, "bad TOML");
    let error = json_error(&out);
    assert!(error.contains(&config_name), "{error}");
    assert!(error.contains("line 2"), "no line in: {error}");

    // An unknown key at the top level.
    world.write_config(&format!("{REPO}/playbooks"), "");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("playbok_dir = \"typo\"\n{text}")).unwrap();
    let out = world.closeout(&apply_args(LEAVER));
    assert_code(&out, 2, "unknown top-level key");
    let error = json_error(&out);
    assert!(
        error.contains(&config_name) && error.contains("playbok_dir"),
        "{error}"
    );

    // An unknown key in the provider section (a misspelt rate limit must not be ignored).
    world.write_config(&format!("{REPO}/playbooks"), "requests_per_sec = 4.0");
    let out = world.closeout(&apply_args(LEAVER));
    assert_code(&out, 2, "unknown key in [providers.aws]");
    let error = json_error(&out);
    assert!(
        error.contains(&config_name) && error.contains("requests_per_sec"),
        "{error}"
    );

    // A config file that does not exist.
    let missing = world.dir.path().join("missing.toml");
    let out = world
        .command(&["plan", "leaver", "--identity", LEAVER])
        .arg("--config")
        .arg(&missing)
        .output()
        .unwrap();
    assert_code(&out, 2, "missing config");
    assert!(stderr(&out).contains("missing.toml"), "{}", describe(&out));

    assert_no_run(&world, "malformed config");
}

#[test]
fn an_unreachable_endpoint_exits_1_naming_it() {
    let world = World::new();
    let port = closeout_testkit::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let text = std::fs::read_to_string(world.config_path()).unwrap();
    assert!(text.contains(&world.moto.endpoint()));
    std::fs::write(
        world.config_path(),
        text.replace(&world.moto.endpoint(), &endpoint),
    )
    .unwrap();

    let started = std::time::Instant::now();
    let out = world.closeout(&apply_args(LEAVER));
    assert_code(&out, 1, "apply against an unreachable endpoint");
    let error = json_error(&out);
    assert!(error.contains(&endpoint), "{error}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "giving up on a closed port took {:?}",
        started.elapsed()
    );
    assert_no_run(&world, "apply against an unreachable endpoint");

    let out = world.closeout(&["plan", "leaver", "--identity", LEAVER]);
    assert_code(&out, 1, "plan against an unreachable endpoint");
    assert!(stderr(&out).contains(&endpoint), "{}", describe(&out));
}

// ---- safety -------------------------------------------------------------------------------------

#[tokio::test]
async fn a_protected_identity_needs_an_audited_override() {
    let world = World::new();
    world.seed_demo();
    let sdk = world.sdk().await;
    let before = account_snapshot(&sdk).await;
    assert_entry(&before, "user/erin.walsh/login-profile", "present");

    for args in [
        apply_args(PROTECTED),
        vec!["apply", "leaver", "--identity", PROTECTED, "--yes"],
    ] {
        let out = world.closeout(&args);
        assert_code(&out, 2, "apply to a protected identity");
        assert!(
            stderr(&out).contains("--override-protected"),
            "{}",
            describe(&out)
        );
    }
    assert_no_run(&world, "refused protected identity");
    assert!(
        !audit_records(&world)
            .iter()
            .any(|r| r["event"] == "override.protected"),
        "an override was audited without --override-protected"
    );
    assert_eq!(account_snapshot(&sdk).await, before);

    let mut args = apply_args(PROTECTED);
    args.push("--override-protected");
    let out = world.closeout(&args);
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "the override did not proceed\n{}",
        describe(&out)
    );
    let report = json(&out);
    let run_id = report["run"].as_str().expect("report names its run");

    let overrides: Vec<_> = audit_records(&world)
        .into_iter()
        .filter(|r| r["event"] == "override.protected")
        .collect();
    assert_eq!(overrides.len(), 1, "one audited override: {overrides:?}");
    assert_eq!(overrides[0]["identity"], PROTECTED);
    assert_eq!(overrides[0]["actor"], "integration-test");

    let runs = journal_runs(&world);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].id, run_id);
    assert_eq!(runs[0].identity, PROTECTED);
    assert!(
        runs[0].override_protected,
        "the run does not record the override"
    );

    let after = account_snapshot(&sdk).await;
    assert_entry(&after, "user/erin.walsh/login-profile", "absent");
    let out = world.closeout(&["audit", "verify"]);
    assert_code(&out, 0, "audit verify after the override");
}

#[tokio::test]
async fn the_blast_radius_limit_needs_the_exact_action_count() {
    let world = World::new();
    world.seed_demo();
    let sdk = world.sdk().await;
    let before = account_snapshot(&sdk).await;

    let limited = shipped_leaver().replacen("max_actions: 200", "max_actions: 2", 1);
    assert_ne!(limited, shipped_leaver());
    let file = write_playbook(&world, "limited", &limited);
    use_playbook_dir(&world, &file);

    let planned = world.closeout(&["plan", "leaver", "--identity", LEAVER, "--format", "json"]);
    assert_code(&planned, 0, "plan above the limit (plan only shows)");
    let count = plan_keys(&json(&planned)).len();
    assert!(count > 2, "the plan has only {count} actions");

    let out = world.closeout(&["apply", "leaver", "--identity", LEAVER, "--yes"]);
    assert_code(&out, 2, "apply above the blast-radius limit");
    let err = stderr(&out);
    let n: usize = err
        .split("--confirm-actions ")
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse().ok())
        })
        .unwrap_or_else(|| panic!("no `--confirm-actions N` in the message\n{err}"));
    assert_eq!(n, count, "the message's count differs from the plan's");
    assert_no_run(&world, "apply above the blast-radius limit");
    assert_eq!(account_snapshot(&sdk).await, before);

    // A wrong count is not a confirmation.
    let wrong = (n - 1).to_string();
    let mut args = apply_args(LEAVER);
    args.extend(["--confirm-actions", &wrong]);
    let out = world.closeout(&args);
    assert_code(&out, 2, "apply with a wrong --confirm-actions");
    assert_no_run(&world, "apply with a wrong --confirm-actions");
    assert_eq!(account_snapshot(&sdk).await, before);

    let n = n.to_string();
    let mut args = apply_args(LEAVER);
    args.extend(["--confirm-actions", &n]);
    let out = world.closeout(&args);
    assert_code(&out, 0, "apply with --confirm-actions N");
    let report = json(&out);
    assert_eq!(report["status"], "closed");
    assert_eq!(report["summary"]["actions_done"], count);
    let after = account_snapshot(&sdk).await;
    assert_entry(&after, "user/alice/login-profile", "absent");
}

#[tokio::test]
async fn apply_without_yes_on_a_non_terminal_refuses_and_changes_nothing() {
    let world = World::new();
    world.seed_demo();
    let sdk = world.sdk().await;
    let before = account_snapshot(&sdk).await;

    for format in ["text", "json"] {
        let out = world
            .command(&["apply", "leaver", "--identity", LEAVER, "--format", format])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_code(&out, 2, "apply without --yes, stdin not a terminal");
        assert!(stderr(&out).contains("--yes"), "{}", describe(&out));
        if format == "json" {
            json_error(&out);
        }
    }
    // Not even "yes" on a pipe counts: only a terminal is asked.
    let mut child = world
        .command(&["apply", "leaver", "--identity", LEAVER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(b"yes\n");
    }
    let out = child.wait_with_output().unwrap();
    assert_code(&out, 2, "apply without --yes, `yes` piped in");

    assert_no_run(&world, "apply without --yes");
    assert_eq!(account_snapshot(&sdk).await, before);
}

#[tokio::test]
async fn plan_changes_nothing_and_prints_one_json_document() {
    let world = World::new();
    world.seed_demo();
    let sdk = world.sdk().await;
    let before = account_snapshot(&sdk).await;
    assert_entry(&before, "user/alice/login-profile", "present");
    assert!(
        before
            .iter()
            .any(|(k, v)| k.starts_with("user/alice/access-key/") && v == "Active"),
        "alice has no active key: {before:?}"
    );

    let out = world.closeout(&["plan", "leaver", "--identity", LEAVER]);
    assert_code(&out, 0, "plan");
    assert!(stdout(&out).contains("contain"), "{}", describe(&out));

    let out = world.closeout(&["plan", "leaver", "--identity", LEAVER, "--format", "json"]);
    assert_code(&out, 0, "plan --format json");
    let plan = json(&out); // exactly one document, or this panics
    assert_eq!(plan["identity"]["id"], LEAVER);
    let keys = plan_keys(&plan);
    assert!(!keys.is_empty(), "an empty plan for the leaver");

    let out = world.closeout(&["resolve", "--identity", LEAVER, "--format", "json"]);
    assert_code(&out, 0, "resolve --format json");
    json(&out);

    assert_eq!(
        account_snapshot(&sdk).await,
        before,
        "plan changed the account"
    );
    assert_no_run(&world, "plan");
}

// ---- secrets ------------------------------------------------------------------------------------

/// Secret values found in the account after a run: the new `AWSCURRENT` values of the secrets
/// the canary was planted in (and their inner JSON strings), and the NHI key secret's new
/// `SecretAccessKey`.
async fn new_secret_values(world: &World) -> Vec<String> {
    let sdk = world.sdk().await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let mut values = Vec::new();
    let list = sm
        .list_secrets()
        .max_results(100)
        .send()
        .await
        .unwrap()
        .secret_list
        .unwrap_or_default();
    for name in list.into_iter().filter_map(|s| s.name) {
        if !["alice/", "prod/payments/", "eng/", "team/", "closeout/nhi/"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        let value = sm
            .get_secret_value()
            .secret_id(&name)
            .version_stage("AWSCURRENT")
            .send()
            .await
            .unwrap()
            .secret_string
            .unwrap_or_default();
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&value) {
            for (k, v) in map {
                if let Some(v) = v.as_str().filter(|v| v.len() >= 16 && k != "AccessKeyId") {
                    values.push(v.to_string());
                }
            }
        }
        values.push(value);
    }
    values
}

/// Every place a secret must not reach: outputs, the journal (and its WAL), the audit log.
fn assert_absent(world: &World, needles: &[String], outputs: &[(&str, &Output)]) {
    let mut haystacks: Vec<(String, Vec<u8>)> = Vec::new();
    for (what, out) in outputs {
        haystacks.push((format!("{what} stdout"), out.stdout.clone()));
        haystacks.push((format!("{what} stderr"), out.stderr.clone()));
    }
    let journal = world.journal_path();
    let mut files = vec![journal.clone(), world.audit_path()];
    for suffix in ["-wal", "-shm"] {
        let mut p = journal.clone().into_os_string();
        p.push(suffix);
        files.push(PathBuf::from(p));
    }
    let mut head = world.audit_path().into_os_string();
    head.push(".head");
    files.push(PathBuf::from(head));
    for f in files {
        if let Ok(bytes) = std::fs::read(&f) {
            haystacks.push((f.display().to_string(), bytes));
        }
    }
    assert!(
        haystacks.iter().any(|(w, _)| w.ends_with("closeout.db")),
        "no journal to search"
    );
    for needle in needles {
        assert!(!needle.is_empty());
        for (what, bytes) in &haystacks {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "a secret value ({}...) appears in {what}",
                &needle[..needle.len().min(10)]
            );
        }
    }
}

/// The canary must really have been in the rotated secrets: their previous versions hold it.
async fn assert_canary_was_rotated_out(world: &World, canary: &str) {
    let sdk = world.sdk().await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    for name in ["alice/personal-notes", "prod/payments/db"] {
        let read = |stage: &'static str| {
            let sm = sm.clone();
            async move {
                sm.get_secret_value()
                    .secret_id(name)
                    .version_stage(stage)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{name} {stage}: {e:?}"))
                    .secret_string
                    .unwrap_or_default()
            }
        };
        assert!(
            read("AWSPREVIOUS").await.contains(canary),
            "{name}: the canary is not in AWSPREVIOUS"
        );
        assert!(
            !read("AWSCURRENT").await.contains(canary),
            "{name}: still holds the canary"
        );
    }
}

#[tokio::test]
async fn canary_secret_values_never_leave_the_account() {
    let world = World::new();
    let canary = world.seed_demo();
    assert!(canary.starts_with("CANARY-"), "{canary}");

    let plan = world.closeout(&["plan", "leaver", "--identity", LEAVER, "--format", "json"]);
    assert_code(&plan, 0, "plan");
    let apply = world.closeout(&apply_args(LEAVER));
    assert_code(&apply, 0, "apply");
    let report = json(&apply);
    assert_eq!(report["status"], "closed");
    let run_id = report["run"].as_str().unwrap().to_string();
    let mut outputs = vec![("plan", plan), ("apply", apply)];
    for format in ["markdown", "json", "text"] {
        let out = world.closeout(&["runs", "show", &run_id, "--format", format]);
        assert_code(&out, 0, "runs show");
        outputs.push(("runs show", out));
    }
    let out = world.closeout(&["resolve", "--identity", LEAVER, "--format", "json"]);
    outputs.push(("resolve", out));
    let out = world.closeout(&["audit", "verify"]);
    assert_code(&out, 0, "audit verify");
    outputs.push(("audit verify", out));

    assert_canary_was_rotated_out(&world, &canary).await;
    let mut needles = vec![canary];
    needles.extend(new_secret_values(&world).await);
    let outputs: Vec<(&str, &Output)> = outputs.iter().map(|(w, o)| (*w, o)).collect();
    assert_absent(&world, &needles, &outputs);
}

#[tokio::test]
async fn canary_secret_values_stay_out_of_trace_logs() {
    let world = World::new();
    let canary = world.seed_demo();

    let apply = world
        .command(&[&["-vv"][..], &APPLY_LEAVER].concat())
        .output()
        .unwrap();
    assert_code(&apply, 0, "apply -vv");
    assert_eq!(json(&apply)["status"], "closed");
    assert!(
        stderr(&apply).contains("TRACE"),
        "-vv did not turn trace logging on"
    );

    assert_canary_was_rotated_out(&world, &canary).await;
    let mut needles = vec![canary];
    needles.extend(new_secret_values(&world).await);
    assert_absent(&world, &needles, &[("apply -vv", &apply)]);
}

// ---- audit log ----------------------------------------------------------------------------------

#[test]
fn audit_verify_detects_edited_reordered_and_deleted_lines() {
    let world = World::new();
    world.seed_demo();
    let out = world.closeout(&apply_args(LEAVER));
    assert_code(&out, 0, "apply");

    let log = world.audit_path();
    let original = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() >= 5, "too few audit records: {}", lines.len());

    let verify = || world.closeout(&["audit", "verify"]);
    let out = verify();
    assert_code(&out, 0, "audit verify on the untouched log");
    assert!(
        stdout(&out).contains(&format!("{} records", lines.len())),
        "{}",
        describe(&out)
    );

    let write = |lines: &[String]| {
        std::fs::write(
            &log,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .unwrap()
    };
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();

    // Edit one field of line 3, keeping it valid JSON (and the line's canonical form).
    let mut edited = owned.clone();
    assert!(
        edited[2].contains("\"actor\":\"integration-test\""),
        "{}",
        edited[2]
    );
    edited[2] = edited[2].replace("\"actor\":\"integration-test\"", "\"actor\":\"mallory\"");
    serde_json::from_str::<serde_json::Value>(&edited[2]).expect("still JSON");
    write(&edited);
    let out = verify();
    assert_code(&out, 1, "audit verify with an edited line");
    assert!(
        stderr(&out).contains("audit.jsonl:3:"),
        "the message does not name line 3\n{}",
        describe(&out)
    );

    // Delete a line in the middle.
    let mut deleted = owned.clone();
    deleted.remove(3);
    write(&deleted);
    let out = verify();
    assert_code(&out, 1, "audit verify with a deleted line");
    assert!(stderr(&out).contains("deleted"), "{}", describe(&out));

    // Delete the last line (the chain of the rest is intact; the head file catches it).
    let mut truncated = owned.clone();
    truncated.pop();
    write(&truncated);
    let out = verify();
    assert_code(&out, 1, "audit verify with the last line deleted");

    // Swap two lines.
    let mut swapped = owned.clone();
    swapped.swap(1, 2);
    write(&swapped);
    let out = verify();
    assert_code(&out, 1, "audit verify with two lines swapped");

    // Restored, it verifies again.
    write(&owned);
    let out = verify();
    assert_code(&out, 0, "audit verify on the restored log");
}
