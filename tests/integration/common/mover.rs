//! Shared pieces of the mover and joiner acceptance tests (`tests/mover_*.rs`): a small HR
//! export and an entitlement policy written by the test, and the checks every provider's mover
//! test makes on the audit log, the journal and `closeout reconcile`.

use serde_json::Value;
use std::path::Path;

use super::REPO;

/// `apply joiner --identity ID --yes --format json`.
pub fn apply_joiner(id: &str) -> [&str; 7] {
    [
        "apply",
        "joiner",
        "--identity",
        id,
        "--yes",
        "--format",
        "json",
    ]
}

/// One row of the test's HR export.
pub struct Person<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub department: &'a str,
    pub tags: &'a str,
}

/// Write `people` (all active humans, full-time) as the HR export at `path`.
pub fn write_hr(path: &Path, people: &[Person<'_>]) {
    let mut csv = String::from(
        "id,email,name,kind,status,manager,department,role,location,employment_type,tags\n",
    );
    for p in people {
        csv.push_str(&format!(
            "{},{},{},human,active,,{},Staff,London,employee,{}\n",
            p.id, p.email, p.id, p.department, p.tags
        ));
    }
    std::fs::write(path, csv).expect("write the HR export");
}

/// The mover tests' HR export: the person (`id`, pat.lee@, in `department`), a colleague who
/// stays in Engineering (sam.ro@) and a Finance joiner on the on-call rota (joe.new@, E2003).
pub fn write_cast(path: &Path, id: &str, department: &str) {
    write_hr(
        path,
        &[
            Person {
                id,
                email: "pat.lee@example.com",
                department,
                tags: "",
            },
            Person {
                id: "E2002",
                email: "sam.ro@example.com",
                department: "Engineering",
                tags: "",
            },
            Person {
                id: "E2003",
                email: "joe.new@example.com",
                department: "Finance",
                tags: "oncall",
            },
        ],
    );
}

/// Point a test config (written with the demo HR export) at `hr` and add `[policy]`.
pub fn use_source_and_policy(config: &Path, hr: &Path, policy: &Path) {
    let text = std::fs::read_to_string(config).expect("read config");
    let demo = format!("{REPO}/examples/demo/hr.csv");
    assert!(text.contains(&demo), "config names the demo HR export");
    let text = text.replace(&demo, &hr.display().to_string());
    let text = format!(
        "{text}\n[policy]\nentitlements = \"{}\"\n",
        policy.display()
    );
    std::fs::write(config, text).expect("write config");
}

/// The action records (`action.*`) of one run, in audit-log order.
pub fn run_actions<'a>(audit: &'a [Value], run: &str) -> Vec<&'a Value> {
    audit
        .iter()
        .filter(|r| {
            r["run"].as_str() == Some(run)
                && r["event"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("action."))
        })
        .collect()
}

/// The mover's ordering promise, read from the audit log: every `action.done` of stage `remove`
/// comes before every grant action, and there was at least one of each. Returns the findings
/// removed and granted.
pub fn assert_removals_before_grants(audit: &[Value], run: &str) -> (Vec<String>, Vec<String>) {
    let actions = run_actions(audit, run);
    let finding = |r: &Value| r["details"]["finding"].as_str().unwrap_or("").to_string();
    let removals: Vec<usize> = actions
        .iter()
        .enumerate()
        .filter(|(_, r)| r["event"] == "action.done" && r["details"]["stage"] == "remove")
        .map(|(i, _)| i)
        .collect();
    let grants: Vec<usize> = actions
        .iter()
        .enumerate()
        .filter(|(_, r)| r["details"]["verb"] == "grant")
        .map(|(i, _)| i)
        .collect();
    assert!(!removals.is_empty(), "no removal audited: {actions:#?}");
    assert!(!grants.is_empty(), "no grant audited: {actions:#?}");
    let last_removal = *removals.last().expect("a removal");
    let first_grant = grants[0];
    assert!(
        last_removal < first_grant,
        "a grant was audited before a removal: {actions:#?}"
    );
    for r in &actions {
        assert_ne!(r["event"], "action.failed", "an action failed: {r:#}");
    }
    (
        removals.iter().map(|&i| finding(actions[i])).collect(),
        grants.iter().map(|&i| finding(actions[i])).collect(),
    )
}

/// No audit record and no journal action ever named `finding` (a shared entitlement).
pub fn assert_never_touched(audit: &[Value], journal: &Path, finding: &str) {
    for r in audit {
        assert_ne!(
            r["details"]["finding"].as_str(),
            Some(finding),
            "an action touched the shared entitlement: {r:#}"
        );
    }
    let actions = super::actions_at(journal).unwrap_or_else(|e| panic!("read the actions: {e}"));
    let on_it: Vec<_> = actions.iter().filter(|a| a.finding_id == finding).collect();
    assert!(
        on_it.is_empty(),
        "the journal has actions on {finding}: {on_it:#?}"
    );
}

/// The line of `policy explain`'s text output naming `entitlement` (e.g. `aws group-membership
/// developers`) in the section that starts with `section` (`Should hold` or `Holds`).
pub fn explain_line<'a>(text: &'a str, section: &str, entitlement: &str) -> &'a str {
    let start = text
        .find(section)
        .unwrap_or_else(|| panic!("no section {section:?} in:\n{text}"));
    let body = &text[start..];
    let body = body[section.len()..]
        .split("\n\n")
        .next()
        .unwrap_or_default();
    let needle = format!(" {entitlement} ");
    body.lines()
        .find(|l| format!("{l} ").contains(&needle))
        .unwrap_or_else(|| panic!("{entitlement} not under {section:?} in:\n{text}"))
}

/// The drift `closeout reconcile --format json` reports for `identity`, as `(kind, detail)`.
pub fn drift_of(report: &Value, identity: &str) -> Vec<(String, String)> {
    report["drift"]
        .as_array()
        .expect("reconcile reports drift")
        .iter()
        .filter(|d| d["identity"].as_str() == Some(identity))
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or_default().to_string(),
                d["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}
