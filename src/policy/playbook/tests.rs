use super::test_caps::{ALL, AWS, FAKE};
use super::*;
use crate::trigger::Trigger;
use closeout_contract::{Finding, Relation, State};
use closeout_contract::{Holder, Path as FindingPath};
use std::collections::BTreeMap;

const LEAVER: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/playbooks/leaver.yaml"
));
const INCIDENT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/playbooks/incident.yaml"
));

/// A valid playbook for the fake provider; tests edit it.
const GOOD: &str = "\
name: test
triggers: [leaver]
limits: { max_actions: 10 }
stages:
  - name: contain
    steps:
      - name: deactivate-tokens
        select: { provider: fake, kind: token }
        action: deactivate
  - name: retire
    steps:
      - name: delete-tokens
        select: { provider: fake, kind: token, state: inactive }
        action: delete
        grace: 0s
  - name: verify
    verify: true
";

fn ok(text: &str) -> Playbook {
    match parse("t.yaml", text, &ALL) {
        Ok(book) => book,
        Err(diags) => panic!(
            "expected a valid playbook, got:\n{}",
            diags
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// The rendered diagnostics of an invalid playbook.
fn errs(text: &str) -> Vec<String> {
    match parse("t.yaml", text, &ALL) {
        Ok(_) => panic!("expected diagnostics for:\n{text}"),
        Err(diags) => diags.iter().map(ToString::to_string).collect(),
    }
}

fn has(errors: &[String], needle: &str) -> bool {
    errors.iter().any(|e| e.contains(needle))
}

#[track_caller]
fn assert_has(errors: &[String], needle: &str) {
    assert!(
        has(errors, needle),
        "no diagnostic contains {needle:?}:\n{}",
        errors.join("\n")
    );
}

fn finding(id: &str, provider: &str, kind: &str, relation: Relation, holder: Holder) -> Finding {
    Finding {
        id: id.into(),
        provider: provider.into(),
        kind: kind.into(),
        relation,
        holder,
        resource: id.into(),
        display: id.into(),
        state: State::Active,
        paths: vec![FindingPath::new().then("owns", id)],
        attributes: BTreeMap::new(),
    }
}

// ---------------------------------------------------------------- shipped playbooks

#[test]
fn shipped_leaver_is_valid_against_the_provider_capabilities() {
    let book = parse(
        "playbooks/leaver.yaml",
        LEAVER,
        crate::registry::CAPABILITIES,
    )
    .unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let names: Vec<&str> = book.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["contain", "revoke", "rotate", "retire", "verify"]);
    assert_eq!(book.max_actions, 200);
    assert_eq!(
        book.providers(),
        ["aws", "azure", "keycloak", "scim", "vault"]
    );
    assert!(book.handles(Trigger::Leaver) && !book.handles(Trigger::Incident));
    assert!(book.stages.last().unwrap().verify);
    let retire = &book.stages[3].steps[0];
    assert_eq!(retire.action, "delete");
    assert_eq!(retire.grace, Some(Grace::parse("7d").unwrap()));
    assert_eq!(retire.select.state, [State::Inactive]);
}

#[test]
fn shipped_leaver_follows_the_ordering_rules() {
    let book = parse("leaver.yaml", LEAVER, crate::registry::CAPABILITIES).unwrap();
    let stage_of = |action: &str, kind: &str| -> Vec<usize> {
        book.stages
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.steps
                    .iter()
                    .any(|st| st.action == action && st.select.kind.iter().any(|k| k == kind))
            })
            .map(|(i, _)| i)
            .collect()
    };
    // Contain first: sessions, login, credentials, MFA.
    assert_eq!(stage_of("revoke-sessions", "user"), [0]);
    assert_eq!(stage_of("revoke-sessions", "assumable-role"), [0]);
    assert_eq!(stage_of("remove", "login-profile"), [0]);
    for kind in [
        "access-key",
        "ssh-key",
        "signing-certificate",
        "service-credential",
        "mfa-device",
    ] {
        assert_eq!(stage_of("deactivate", kind), [0], "{kind}");
    }
    // Entitlements after containment; rotation after access is gone.
    assert_eq!(stage_of("remove", "group-membership"), [1]);
    assert_eq!(stage_of("detach", "attached-policy"), [1]);
    assert_eq!(stage_of("remove", "inline-policy"), [1]);
    assert_eq!(stage_of("rotate", "secret"), [2]);
    assert_eq!(stage_of("rotate", "access-key"), [2]);
    assert_eq!(stage_of("reassign-owner", "nhi-user"), [2]);
    assert_eq!(stage_of("reassign-owner", "nhi-role"), [2]);
    // Azure in the same order: sign-in stopped and sessions revoked first, then memberships,
    // role assignments and access policies (direct and indirect paths), then rotation.
    assert_eq!(stage_of("disable", "user"), [0]);
    assert_eq!(stage_of("revoke-sessions", "sign-in-sessions"), [0]);
    assert_eq!(stage_of("remove", "role-assignment"), [1]);
    assert_eq!(stage_of("remove", "access-policy"), [1]);
    for kind in [
        "kv-secret",
        "kv-key",
        "kv-certificate",
        "app-password",
        "app-certificate",
    ] {
        assert_eq!(stage_of("rotate", kind), [2], "{kind}");
    }
    assert_eq!(stage_of("reassign-owner", "owned-application"), [2]);
    // Deletes last, after deactivation, with a grace period.
    for kind in [
        "access-key",
        "ssh-key",
        "signing-certificate",
        "service-credential",
    ] {
        assert_eq!(stage_of("delete", kind), [3], "{kind}");
    }
    // The person's own credentials are deactivated; the NHIs' keys are rotated, not deactivated.
    let (_, deactivate) = book
        .steps()
        .find(|(_, s)| s.action == "deactivate" && s.select.kind.contains(&"access-key".into()))
        .unwrap();
    assert_eq!(deactivate.select.holder, [HolderKind::Account]);
    let (_, rotate_keys) = book
        .steps()
        .find(|(_, s)| s.action == "rotate" && s.select.kind.contains(&"access-key".into()))
        .unwrap();
    assert_eq!(rotate_keys.select.holder, [HolderKind::Nhi]);
    let (_, secrets) = book
        .steps()
        .find(|(_, s)| s.select.kind.contains(&"secret".into()))
        .unwrap();
    assert_eq!(
        secrets.select.relation,
        [Relation::Owns, Relation::CanRead, Relation::CanGrantSelf]
    );
}

#[test]
fn shipped_incident_is_valid_contains_rotates_and_deletes_nothing() {
    let book = parse(
        "playbooks/incident.yaml",
        INCIDENT,
        crate::registry::CAPABILITIES,
    )
    .unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert!(book.handles(Trigger::Incident));
    assert_eq!(book.stages[0].name, "contain");
    assert!(book.stages.last().unwrap().verify);
    assert!(book.steps().all(|(_, s)| s.action != "delete"));
    let leaver = parse("leaver.yaml", LEAVER, crate::registry::CAPABILITIES).unwrap();
    // Same containment and rotation as the leaver.
    for stage in ["contain", "rotate"] {
        let a = book.stages.iter().find(|s| s.name == stage).unwrap();
        let b = leaver.stages.iter().find(|s| s.name == stage).unwrap();
        let steps = |s: &Stage| {
            s.steps
                .iter()
                .map(|st| (st.select.clone(), st.action.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(steps(a), steps(b), "stage {stage}");
    }
    let revoke = book.stages.iter().find(|s| s.name == "revoke").unwrap();
    assert!(revoke
        .steps
        .iter()
        .any(|s| s.select.kind == ["group-membership"]));
}

#[test]
fn shipped_playbooks_pass_check_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    let files = [
        dir.join("leaver.yaml"),
        dir.join("incident.yaml"),
        dir.join("rotation.yaml"),
    ];
    assert_eq!(
        check_files(&files, crate::registry::CAPABILITIES),
        Vec::<Diagnostic>::new()
    );
}

#[test]
fn shipped_rotation_rotates_every_kind_the_policy_may_name_and_only_rotates() {
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/rotation.yaml"
    ));
    let book = parse("rotation.yaml", text, crate::registry::CAPABILITIES).unwrap();
    assert_eq!(book.triggers, [Trigger::Rotation]);
    assert!(book.stages.last().unwrap().verify);
    assert!(book.steps().all(|(_, s)| s.action == "rotate"));
    // Every (provider, kind) the rotation policy knows facts for has a step.
    for caps in crate::registry::CAPABILITIES {
        for f in caps.ages {
            assert!(
                book.steps().any(
                    |(_, s)| s.select.provider.contains(&caps.provider.to_string())
                        && s.select.kind.contains(&f.kind.to_string())
                ),
                "no step rotates {} {}",
                caps.provider,
                f.kind
            );
        }
    }
}

// ---------------------------------------------------------------- the good case

#[test]
fn a_valid_playbook_parses_into_its_model() {
    let book = ok(GOOD);
    assert_eq!(book.name, "test");
    assert_eq!(book.file, "t.yaml");
    assert_eq!(book.triggers, [Trigger::Leaver]);
    assert_eq!(book.max_actions, 10);
    assert_eq!(book.stages.len(), 3);
    let step = &book.stages[0].steps[0];
    assert_eq!(step.name, "deactivate-tokens");
    assert_eq!(step.line, 7);
    assert_eq!(step.select.provider, ["fake"]);
    assert_eq!(step.select.kind, ["token"]);
    assert_eq!(
        step.select.state,
        [State::Active],
        "state defaults to [active]"
    );
    assert!(step.select.relation.is_empty() && step.select.holder.is_empty());
    assert!(!step.requires_approval);
    assert_eq!(book.stages[1].steps[0].grace, Some(Grace::ZERO));
    assert!(book.stages[2].verify && book.stages[2].steps.is_empty());
}

#[test]
fn selectors_take_a_string_or_a_list() {
    let text = GOOD.replace(
        "select: { provider: fake, kind: token }",
        "select:\n          provider: [fake]\n          kind: token\n          relation: [owns, created]\n          holder: account\n          state: [active, unknown]",
    );
    let book = ok(&text);
    let sel = &book.stages[0].steps[0].select;
    assert_eq!(sel.relation, [Relation::Owns, Relation::Created]);
    assert_eq!(sel.holder, [HolderKind::Account]);
    assert_eq!(sel.state, [State::Active, State::Unknown]);
}

#[test]
fn digest_is_the_sha256_of_the_source_text() {
    let a = ok(GOOD);
    assert_eq!(a.digest(), hex::encode(Sha256::digest(GOOD.as_bytes())));
    let b = ok(&format!("# a comment\n{GOOD}"));
    assert_ne!(a.digest(), b.digest());
    assert_eq!(a.digest().len(), 64);
}

#[test]
fn providers_lists_every_provider_once() {
    let text = GOOD.replace(
        "  - name: verify\n",
        "  - name: rotate\n    steps:\n      - name: rotate-all\n        select: { provider: [fake, aws], kind: secret }\n        action: rotate\n  - name: verify\n",
    );
    assert_eq!(ok(&text).providers(), ["aws", "fake"]);
}

// ---------------------------------------------------------------- selection

#[test]
fn step_selects_by_every_dimension_and_projected_state() {
    let text = GOOD.replace(
        "select: { provider: fake, kind: token }",
        "select: { provider: fake, kind: token, relation: owns, holder: [account, nhi] }",
    );
    let book = ok(&text);
    let step = &book.stages[0].steps[0];
    let token = finding("t1", "fake", "token", Relation::Owns, Holder::Account);
    assert!(step.selects(&token, State::Active, &Default::default()));
    assert!(
        !step.selects(&token, State::Inactive, &Default::default()),
        "projected state counts"
    );
    let nhi = finding(
        "t2",
        "fake",
        "token",
        Relation::Owns,
        Holder::Nhi("svc".into()),
    );
    assert!(step.selects(&nhi, State::Active, &Default::default()));
    let shared = finding("t3", "fake", "token", Relation::Owns, Holder::Shared);
    assert!(!step.selects(&shared, State::Active, &Default::default()));
    let read = finding("t4", "fake", "token", Relation::CanRead, Holder::Account);
    assert!(!step.selects(&read, State::Active, &Default::default()));
    let other_kind = finding("s1", "fake", "secret", Relation::Owns, Holder::Account);
    assert!(!step.selects(&other_kind, State::Active, &Default::default()));
    let other_provider = finding("a1", "aws", "token", Relation::Owns, Holder::Account);
    assert!(!step.selects(&other_provider, State::Active, &Default::default()));
    assert_eq!(
        step.verb_for(&token),
        Some(closeout_contract::verbs::DEACTIVATE)
    );
    assert_eq!(step.verb_for(&other_kind), None);
}

#[test]
fn a_multi_provider_step_only_selects_kinds_its_providers_have() {
    // `group-membership` is an aws kind only; a fake finding of that kind is never selected.
    let text = GOOD.replace(
        "  - name: verify\n",
        "  - name: revoke\n    steps:\n      - name: remove-groups\n        select: { provider: [aws, fake], kind: group-membership }\n        action: remove\n  - name: verify\n",
    );
    let book = ok(&text);
    let step = &book.stages[2].steps[0];
    let aws = finding(
        "g1",
        "aws",
        "group-membership",
        Relation::MemberOf,
        Holder::Account,
    );
    let fake = finding(
        "g2",
        "fake",
        "group-membership",
        Relation::MemberOf,
        Holder::Account,
    );
    assert!(step.selects(&aws, State::Active, &Default::default()));
    assert!(!step.selects(&fake, State::Active, &Default::default()));
}

// ---------------------------------------------------------------- diagnostics

#[test]
fn diagnostics_render_file_line_column_message() {
    let d = Diagnostic {
        file: "p.yaml".into(),
        line: 3,
        column: 7,
        message: "bad".into(),
    };
    assert_eq!(d.to_string(), "p.yaml:3:7: bad");
    let whole = Diagnostic {
        line: 0,
        column: 0,
        ..d
    };
    assert_eq!(whole.to_string(), "p.yaml: bad");
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    let e = errs("name: x\nstages: [a, b\ntriggers: [leaver]\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("t.yaml:3:"), "{}", e[0]);
    assert_has(&e, "YAML syntax error");
    let e = errs("name: x\n  bad: indent\n");
    assert!(e[0].starts_with("t.yaml:2:"), "{}", e[0]);
}

#[test]
fn yaml_features_outside_the_format_are_refused() {
    assert_has(
        &errs("- a\n- b\n"),
        "t.yaml:1:1: a playbook must be a YAML mapping",
    );
    assert_has(&errs("name: &n x\n"), "anchors and aliases are not allowed");
    assert_has(&errs("name: *n\n"), "YAML syntax error");
    assert_has(&errs("name: !!str x\n"), "tags");
    assert_has(
        &errs("name: a\nname: b\n"),
        "t.yaml:2:1: duplicate key `name` (first written at line 1)",
    );
    let two = format!("{GOOD}---\nname: other\n");
    assert_has(
        &errs(&two),
        "t.yaml:18:1: a playbook file holds one YAML document",
    );
    // A leading document marker and a trailing end marker are fine.
    ok(&format!("---\n{GOOD}...\n# done\n"));
    assert_has(
        &errs(&format!("{GOOD}...\nname: other\n")),
        "t.yaml:19:1: a playbook file holds one YAML document",
    );
}

#[test]
fn empty_and_missing_fields_are_reported() {
    let e = errs("");
    for field in ["`name`", "`triggers`", "`limits`", "`stages`"] {
        assert_has(&e, &format!("missing field {field}"));
    }
    let e = errs(
        "name: x\ntriggers: [leaver]\nlimits: {}\nstages:\n  - steps:\n      - select: { kind: token }\n  - name: verify\n    verify: true\n",
    );
    assert_has(&e, "t.yaml:3:");
    assert_has(&e, "missing field `max_actions` in `limits`");
    assert_has(&e, "t.yaml:5:5: missing field `name` in stage");
    assert_has(&e, "t.yaml:6:9: missing field `name` in step");
    assert_has(&e, "t.yaml:6:9: missing field `action` in step");
    assert_has(&e, "missing field `provider` in `select`");
    let e = errs("name: x\ntriggers: []\nlimits: { max_actions: 1 }\nstages: []\n");
    assert_has(&e, "t.yaml:2:11: `trigger` must not be empty");
    assert_has(&e, "t.yaml:4:1: `stages` must list at least one stage");
}

#[test]
fn unknown_fields_are_denied_at_every_level() {
    let text = "\
name: x
trigers: [leaver]
triggers: [leaver]
limits: { max_actions: 5, max_action: 6 }
stages:
  - name: contain
    parallel: true
    steps:
      - name: d
        selct: {}
        select: { provider: fake, kind: token, kinds: [x] }
        action: deactivate
        approve: yes
  - name: verify
    verify: true
";
    let e = errs(text);
    assert_eq!(e.len(), 6, "{e:#?}");
    assert_has(&e, "t.yaml:2:1: unknown field `trigers` in the playbook; expected one of: name, description, triggers, limits, stages");
    assert_has(
        &e,
        "t.yaml:4:27: unknown field `max_action` in `limits`; expected one of: max_actions",
    );
    assert_has(&e, "t.yaml:7:5: unknown field `parallel` in a stage");
    assert_has(&e, "t.yaml:10:9: unknown field `selct` in a step");
    assert_has(&e, "t.yaml:11:48: unknown field `kinds` in `select`; expected one of: provider, kind, relation, state, holder");
    assert_has(&e, "t.yaml:13:9: unknown field `approve` in a step");
}

#[test]
fn bad_enum_values_list_the_allowed_ones() {
    let text = GOOD.replace("[leaver]", "[leaver, quitter]").replace(
        "select: { provider: fake, kind: token }",
        "select: { provider: fake, kind: token, relation: knows, state: [active, gone], holder: robot }",
    );
    let e = errs(&text);
    assert_eq!(e.len(), 4, "{e:#?}");
    assert_has(&e, "t.yaml:2:20: bad trigger `quitter`; expected one of: leaver, mover, joiner, incident, rotation");
    assert_has(&e, "bad relation `knows`; expected one of: owns, created, member-of, can-assume, can-act-as, can-read, can-grant-self");
    assert_has(&e, "bad state `gone`; expected one of: active, inactive, deleted, rotated, revoked, disabled, reassigned, unknown");
    assert_has(
        &e,
        "bad holder `robot`; expected one of: account, nhi, shared",
    );
}

#[test]
fn bad_scalar_types_and_durations_are_reported() {
    let text = GOOD
        .replace("max_actions: 10", "max_actions: lots")
        .replace("grace: 0s", "grace: 7 days")
        .replace("verify: true", "verify: yes");
    let e = errs(&text);
    assert_has(
        &e,
        "t.yaml:3:24: `max_actions` must be a whole number of at least 1",
    );
    assert_has(&e, "t.yaml:15:16: bad duration `7 days`");
    assert_has(&e, "t.yaml:17:13: `verify` must be true or false");
    assert_has(
        &errs(&GOOD.replace("max_actions: 10", "max_actions: 0")),
        "at least 1",
    );
    assert_has(
        &errs(&GOOD.replace("grace: 0s", "grace: 7")),
        "`7` has no unit",
    );
    assert_has(
        &errs(&GOOD.replace(
            "action: deactivate",
            "action: deactivate\n        requires_approval: maybe",
        )),
        "`requires_approval` must be true or false",
    );
    assert_has(
        &errs(&GOOD.replace(
            "action: deactivate",
            "action: deactivate\n        approvals: 0",
        )),
        "`approvals` must be a whole number from 1 to 10",
    );
    assert_has(
        &errs(&GOOD.replace("name: test", "name: [a]")),
        "t.yaml:1:7: `name` must be a string",
    );
    assert_has(
        &errs(&GOOD.replace("name: test", "name: a/b")),
        "playbook name `a/b` may hold only",
    );
    assert_has(
        &errs(&GOOD.replace("kind: token }", "kind: [token, {a: b}] }")),
        "each `kind` must be a string",
    );
    assert_has(
        &errs(&GOOD.replace(
            "  - name: verify\n    verify: true\n",
            "  - name: verify\n    verify: true\n    steps: oops\n",
        )),
        "`steps` must be a list of steps",
    );
}

#[test]
fn unknown_provider_kind_and_unsupported_action_are_reported() {
    let text = "\
name: x
triggers: [leaver]
limits: { max_actions: 5 }
stages:
  - name: contain
    steps:
      - name: a
        select: { provider: gcp, kind: token }
        action: deactivate
      - name: b
        select: { provider: fake, kind: [token, widget] }
        action: revoke-sessions
      - name: c
        select: { provider: aws, kind: group-policy }
        action: remove
  - name: verify
    verify: true
";
    let e = errs(text);
    assert_has(
        &e,
        "t.yaml:8:29: unknown provider `gcp`; known providers: aws, fake",
    );
    assert_has(&e, "t.yaml:11:49: kind `widget` is not a kind of provider fake; its kinds are: token, secret, user, service");
    assert_has(&e, "t.yaml:12:17: action `revoke-sessions` is not supported for kind `token` of provider fake; it supports: deactivate, delete, revoke");
    assert_has(&e, "t.yaml:15:17: action `remove` is not supported for kind `group-policy` of provider aws: it supports no actions");
    assert_eq!(e.len(), 4, "{e:#?}");
}

#[test]
fn multi_provider_kinds_need_one_provider_and_every_owner_must_support_the_verb() {
    let text = GOOD.replace(
        "  - name: verify\n",
        "  - name: more\n    steps:\n      - name: m\n        select: { provider: [aws, fake], kind: [user, nothing] }\n        action: disable\n  - name: verify\n",
    );
    let e = errs(&text);
    assert_has(
        &e,
        "kind `nothing` is not a kind of any of the providers aws, fake",
    );
    // aws `user` supports revoke-sessions only; fake `user` supports disable.
    assert_has(&e, "action `disable` is not supported for kind `user` of provider aws; it supports: revoke-sessions");
    assert_eq!(e.len(), 2, "{e:#?}");
}

#[test]
fn duplicate_stage_and_step_names_are_reported() {
    let text = GOOD
        .replace("name: retire", "name: contain")
        .replace("name: delete-tokens", "name: deactivate-tokens");
    let e = errs(&text);
    assert_has(
        &e,
        "t.yaml:10:11: duplicate stage name `contain` (first used at line 5)",
    );
    assert_has(
        &e,
        "t.yaml:12:15: duplicate step name `deactivate-tokens` (first used at line 7)",
    );
}

#[test]
fn stages_need_steps_and_the_verify_stage_must_be_last_and_stepless() {
    let e = errs(&GOOD.replace(
        "  - name: retire\n",
        "  - name: empty\n    steps: []\n  - name: nosteps\n  - name: retire\n",
    ));
    assert_has(&e, "t.yaml:11:5: stage `empty` has no steps");
    assert_has(&e, "t.yaml:12:5: stage `nosteps` has no steps");

    let no_verify = GOOD.replace("  - name: verify\n    verify: true\n", "");
    assert_has(&errs(&no_verify), "t.yaml:4:1: no verify stage");

    let verify_first = GOOD
        .replace("  - name: verify\n    verify: true\n", "")
        .replace("stages:\n", "stages:\n  - name: verify\n    verify: true\n");
    assert_has(
        &errs(&verify_first),
        "t.yaml:5:5: the verify stage must be the last stage",
    );

    let two = format!("{GOOD}  - name: verify-again\n    verify: true\n");
    assert_has(
        &errs(&two),
        "t.yaml:18:5: more than one verify stage (the first is at line 16)",
    );

    let with_steps = GOOD.replace(
        "    verify: true\n",
        "    verify: true\n    steps:\n      - name: x\n        select: { provider: fake, kind: user }\n        action: disable\n",
    );
    assert_has(
        &errs(&with_steps),
        "t.yaml:18:5: verify stage `verify` must not have steps",
    );
}

#[test]
fn delete_needs_a_grace_period() {
    let e = errs(&GOOD.replace("        grace: 0s\n", ""));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_has(&e, "t.yaml:14:17: action `delete` destroys what cannot be brought back: state a `grace` period");
}

#[test]
fn delete_needs_a_deactivate_in_an_earlier_stage() {
    // No deactivation at all.
    let text = GOOD.replace("action: deactivate", "action: revoke");
    let e = errs(&text);
    assert_has(&e, "t.yaml:14:17: deactivate before delete: no earlier stage deactivates kind `token` of provider fake");
    // A deactivation in the same stage does not count (a stage's actions run concurrently).
    let same_stage = "\
name: x
triggers: [leaver]
limits: { max_actions: 5 }
stages:
  - name: all
    steps:
      - name: off
        select: { provider: fake, kind: token }
        action: deactivate
      - name: gone
        select: { provider: fake, kind: token, state: inactive }
        action: delete
        grace: 1d
  - name: verify
    verify: true
";
    let e = errs(same_stage);
    assert_has(
        &e,
        "deactivate before delete: no earlier stage deactivates kind `token`",
    );
    // A later deactivation does not count either.
    let later = GOOD
        .replace("name: contain", "name: first")
        .replace("name: retire", "name: contain");
    let swapped = later.replace(
        "      - name: deactivate-tokens\n        select: { provider: fake, kind: token }\n        action: deactivate\n",
        "      - name: delete-tokens\n        select: { provider: fake, kind: token, state: inactive }\n        action: delete\n        grace: 0s\n",
    );
    let swapped = swapped.replacen(
        "      - name: delete-tokens\n        select: { provider: fake, kind: token, state: inactive }\n        action: delete\n        grace: 0s\n  - name: verify",
        "      - name: deactivate-tokens\n        select: { provider: fake, kind: token }\n        action: deactivate\n  - name: verify",
        1,
    );
    assert_has(&errs(&swapped), "deactivate before delete");
}

#[test]
fn delete_must_not_select_active_findings() {
    let e = errs(&GOOD.replace("kind: token, state: inactive }", "kind: token }"));
    assert_has(&e, "t.yaml:13:19: step `delete-tokens` would delete findings that are still active (deactivate before delete): select `state: inactive`; the default state is active");
    let e = errs(&GOOD.replace("state: inactive", "state: [inactive, unknown]"));
    assert_has(&e, "still unknown");
}

#[test]
fn contradictory_steps_in_one_stage_are_reported() {
    let text = GOOD.replace(
        "        action: deactivate\n",
        "        action: deactivate\n      - name: revoke-tokens\n        select: { provider: fake, kind: [token] }\n        action: revoke\n",
    );
    let e = errs(&text);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_has(&e, "t.yaml:10:9: contradictory steps: `deactivate-tokens` (line 7) and `revoke-tokens` in stage `contain` can both act on the same fake token findings with different actions (deactivate, revoke)");
}

#[test]
fn steps_narrowed_apart_are_not_contradictory() {
    for narrowing in [
        ("holder: account", "holder: nhi"),
        ("relation: owns", "relation: [can-read]"),
        ("state: active", "state: unknown"),
    ] {
        let text = GOOD.replace(
            "select: { provider: fake, kind: token }\n        action: deactivate\n",
            &format!(
                "select: {{ provider: fake, kind: token, {} }}\n        action: deactivate\n      - name: revoke-tokens\n        select: {{ provider: fake, kind: token, {} }}\n        action: revoke\n",
                narrowing.0, narrowing.1
            ),
        );
        ok(&text);
    }
    // Same verb twice is redundant, not contradictory.
    ok(&GOOD.replace(
        "        action: deactivate\n",
        "        action: deactivate\n      - name: deactivate-again\n        select: { provider: fake, kind: token }\n        action: deactivate\n",
    ));
}

#[test]
fn a_step_that_would_act_on_what_an_earlier_step_of_its_stage_changed_is_contradictory() {
    // `revoke` selects inactive tokens: exactly what `deactivate` leaves behind in the same stage.
    let text = GOOD.replace(
        "        action: deactivate\n",
        "        action: deactivate\n      - name: revoke-inactive\n        select: { provider: fake, kind: token, state: inactive }\n        action: revoke\n",
    );
    assert_has(
        &errs(&text),
        "contradictory steps: `deactivate-tokens` (line 7) and `revoke-inactive`",
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = "\
name: bad playbook
triggers: [leavers]
limits: { max_actions: 0 }
stages:
  - name: contain
    steps:
      - name: a
        select: { provider: nope, kind: token }
        action: deactivate
      - name: a
        select: { provider: fake, kind: token, state: inactive }
        action: delete
  - name: contain
    steps: []
";
    let e = errs(text);
    for needle in [
        "t.yaml:1:7: playbook name `bad playbook`",
        "t.yaml:2:12: bad trigger `leavers`",
        "t.yaml:3:24: `max_actions` must be a whole number",
        "t.yaml:8:29: unknown provider `nope`",
        "t.yaml:10:15: duplicate step name `a`",
        "t.yaml:12:17: action `delete` destroys what cannot be brought back",
        "t.yaml:12:17: deactivate before delete",
        "t.yaml:13:11: duplicate stage name `contain`",
        "t.yaml:14:5: stage `contain` has no steps",
        "t.yaml:4:1: no verify stage",
    ] {
        assert_has(&e, needle);
    }
    // Sorted by position.
    let positions: Vec<(usize, usize)> = parse("t.yaml", text, &ALL)
        .unwrap_err()
        .iter()
        .map(|d| (d.line, d.column))
        .collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted);
}

#[test]
fn validation_uses_only_the_capability_tables_given() {
    // Without the fake provider, every step of GOOD names an unknown provider.
    let e = parse("t.yaml", GOOD, &[AWS]).unwrap_err();
    assert!(e.iter().all(|d| d
        .message
        .contains("unknown provider `fake`; known providers: aws")));
    assert_eq!(e.len(), 2);
    let e = parse("t.yaml", GOOD, &[]).unwrap_err();
    assert!(e[0].message.contains("known providers: (none)"));
    ok(GOOD);
    parse("t.yaml", GOOD, &[&FAKE]).unwrap();
}

// ---------------------------------------------------------------- files

#[test]
fn load_check_files_find_and_for_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let leaver = find(dir.path(), Trigger::Leaver);
    assert_eq!(leaver, dir.path().join("leaver.yaml"));
    std::fs::write(&leaver, GOOD).unwrap();
    let book = load(&leaver, &ALL).unwrap();
    assert_eq!(book.file, leaver.display().to_string());
    assert_eq!(
        for_trigger(dir.path(), Trigger::Leaver, &ALL).unwrap(),
        book
    );

    // The file exists but does not list the trigger.
    std::fs::write(find(dir.path(), Trigger::Mover), GOOD).unwrap();
    let err = for_trigger(dir.path(), Trigger::Mover, &ALL).unwrap_err();
    assert!(
        err.to_string().contains("does not list trigger `mover`"),
        "{err}"
    );

    // An unknown trigger never becomes a path: only a Trigger names a playbook file.
    let err = Trigger::parse("../../etc/passwd").unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown trigger \"../../etc/passwd\": expected one of leaver"),
        "{err}"
    );

    // A missing file.
    let err = for_trigger(dir.path(), Trigger::Joiner, &ALL).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!(
            "{}: cannot read playbook",
            find(dir.path(), Trigger::Joiner).display()
        )),
        "{shown}"
    );

    // check_files: every diagnostic of every file, in file order.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        GOOD.replace("grace: 0s", "grace: soon")
            .replace("max_actions: 10", "max_actions: -1"),
    )
    .unwrap();
    let missing = dir.path().join("missing.yaml");
    let d = check_files(&[leaver.clone(), bad.clone(), missing.clone()], &ALL);
    assert_eq!(d.len(), 3, "{d:#?}");
    assert_eq!(d[0].file, bad.display().to_string());
    assert_eq!((d[0].line, d[1].line), (3, 15));
    assert_eq!(d[2].file, missing.display().to_string());
    assert_eq!(d[2].line, 0);

    // load's error displays every diagnostic, one per line.
    let err = load(&bad, &ALL).unwrap_err();
    assert_eq!(err.to_string().lines().count(), 2);
    assert!(err
        .to_string()
        .starts_with(&format!("{}:3:", bad.display())));
}

#[test]
fn every_truncation_of_a_playbook_gives_diagnostics_not_a_panic() {
    let mut cut = 0;
    while cut < LEAVER.len() {
        if LEAVER.is_char_boundary(cut) {
            let text = &LEAVER[..cut];
            if let Err(diags) = parse("cut.yaml", text, &ALL) {
                assert!(!diags.is_empty());
                assert!(
                    diags.iter().all(|d| d.line >= 1 && d.column >= 1),
                    "{diags:?}"
                );
            }
        }
        cut += 7;
    }
    // Garbage of several shapes.
    for text in [
        "\t",
        "{",
        "]",
        ": :",
        "name: [",
        "\"unterminated",
        "stages:\n  - - - x\n",
        "\u{0}",
    ] {
        assert!(parse("g.yaml", text, &ALL).is_err(), "{text:?}");
    }
}

#[test]
fn destroying_old_versions_needs_a_rotation_in_an_earlier_stage() {
    let rotate = "  - name: rotate
    steps:
      - name: rotate-secrets
        select: { provider: vault, kind: kv-secret, relation: can-read }
        action: rotate
";
    let text = |earlier: &str| {
        format!(
            "\
name: x
triggers: [leaver]
limits: {{ max_actions: 5 }}
stages:
{earlier}  - name: retire
    steps:
      - name: destroy
        select: {{ provider: vault, kind: kv-secret, state: rotated }}
        action: destroy-old-versions
        grace: 30d
  - name: verify
    verify: true
"
        )
    };
    if let Err(d) = parse("t.yaml", &text(rotate), crate::registry::CAPABILITIES) {
        panic!("{d:?}");
    }
    let e: Vec<String> = parse("t.yaml", &text(""), crate::registry::CAPABILITIES)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_has(
        &e,
        "t.yaml:9:17: `destroy-old-versions` needs an earlier stage that leaves kind `kv-secret` of provider vault rotated",
    );
    // Without a grace period it is refused like any destructive verb.
    let e: Vec<String> = parse(
        "t.yaml",
        &text(rotate).replace("        grace: 30d\n", ""),
        crate::registry::CAPABILITIES,
    )
    .unwrap_err()
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_has(&e, "destroys what cannot be brought back");
}

#[test]
fn approvals_n_gates_the_step_with_n_distinct_approvers() {
    let book = ok(&GOOD.replace(
        "action: deactivate",
        "action: deactivate\n        approvals: 2",
    ));
    let (_, step) = book
        .steps()
        .find(|(_, s)| s.action == "deactivate")
        .expect("the deactivate step");
    assert!(step.requires_approval);
    assert_eq!(step.approvals, 2);
}
