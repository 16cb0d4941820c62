//! The closure report: for each finding its paths, the actions taken, the final state and when;
//! an overall status that says `closed` or lists what is open; time-to-containment and
//! time-to-closure from the event's effective time. Rendered as JSON, text or Markdown.

use crate::pipeline::plan::Plan;
use crate::pipeline::resolve::identity_label;
use crate::pipeline::verify::{AcceptedGap, OpenFinding, ProbeRecord, Verification};
use crate::store::journal::{ActionRecord, RunRecord, RunStatus};
use crate::trigger::Trigger;
use chrono::{DateTime, Utc};
use closeout_contract::{Exposure, Finding, Identity};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The closure report of one run: what was found, what was done, what is still open, and how long
/// containment and closure took. Stored with the run (JSON) and rendered as text or Markdown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClosureReport {
    /// The run id.
    pub run: String,
    /// Who the report is about.
    pub identity: IdentitySummary,
    /// The trigger the run executed.
    pub trigger: Trigger,
    /// The playbook's name.
    pub playbook: String,
    /// SHA-256 (hex) of the playbook's source text: which exact playbook ran.
    pub playbook_digest: String,
    /// `closed`, `open` (verification found open findings) or `failed` (an action failed).
    pub status: String,
    /// When the triggering event took effect; the origin of both durations below.
    pub effective_at: DateTime<Utc>,
    /// When the run was created.
    pub started_at: DateTime<Utc>,
    /// When containment finished (see the journal's `contained_at`); `None` if it has not.
    pub contained_at: Option<DateTime<Utc>>,
    /// When verification finished and this report was made.
    pub finished_at: DateTime<Utc>,
    /// Sign-in and sessions stopped, counted from the effective time (NIST SP 800-53 PS-4).
    pub time_to_containment_seconds: Option<f64>,
    /// Verified closed, counted from the effective time; absent while anything is open.
    pub time_to_closure_seconds: Option<f64>,
    /// Counts over the whole run.
    pub summary: Summary,
    /// Every finding seen (before the run, acted on, or found by verification), sorted by id.
    pub findings: Vec<ReportFinding>,
    /// Actions the plan left for later because their grace period has not passed.
    pub deferred: Vec<ReportDeferred>,
    /// Findings still usable, or whose state is unknown; empty means closed.
    pub open: Vec<OpenFinding>,
    /// Credential probes made during verification (an old credential actively tried) and whether
    /// each proved it dead.
    pub probes: Vec<ProbeRecord>,
    /// The providers' warnings from the verification resolve (non-fatal notes; what could not be
    /// verified is in `open` or `accepted_gaps`).
    pub warnings: Vec<String>,
    /// Gaps the site accepted by name (not open, and always listed).
    #[serde(default)]
    pub accepted_gaps: Vec<AcceptedGap>,
    /// Scopes the identity could grant itself everything in, as resolved before the run.
    #[serde(default)]
    pub exposures: Vec<Exposure>,
}

/// Who the report is about, as the source names them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentitySummary {
    /// The identity's id in the source.
    pub id: String,
    /// Their email.
    pub email: String,
    /// Their display name.
    pub name: String,
}

/// Counts over the whole run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Findings in the report.
    pub findings: usize,
    /// Actions the provider carried out.
    pub actions_done: usize,
    /// Actions the provider found already in effect.
    pub actions_already_done: usize,
    /// Actions that failed, or were interrupted and never finished.
    pub actions_failed: usize,
    /// Actions deferred by a grace period.
    pub deferred: usize,
    /// Findings still open after verification.
    pub open: usize,
}

/// One finding, with how it is reached and what was done to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportFinding {
    /// The finding id, `<provider>:<kind>:<id>`.
    pub id: String,
    /// Its provider.
    pub provider: String,
    /// Its kind (`access-key`, `session`, ...).
    pub kind: String,
    /// How it relates to the identity (`owns`, `member-of`, ...).
    pub relation: String,
    /// How the finding is shown to a person.
    pub display: String,
    /// How the identity reaches it, each path rendered from the identity (`E1001 <a@example.com>
    /// -member-of-> group devs -can-assume-> ...`).
    pub paths: Vec<String>,
    /// Its state before the run; `absent` when only verification found it.
    pub initial_state: String,
    /// Its live state after the run; `gone` when verification no longer finds it.
    pub final_state: String,
    /// The actions taken on it, in the order they started.
    pub actions: Vec<ReportAction>,
}

/// One action taken on a finding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportAction {
    /// The playbook stage.
    pub stage: String,
    /// The playbook step.
    pub step: String,
    /// The verb executed.
    pub verb: String,
    /// `done`, `already-done`, `failed`, or `started` (interrupted).
    pub status: String,
    /// The provider's non-secret description of what it did.
    pub detail: Option<String>,
    /// The provider's error, when the action failed.
    pub error: Option<String>,
    /// When the action was first started.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` if it never did.
    pub finished_at: Option<DateTime<Utc>>,
    /// The request ids the provider's server gave the action's calls, in order (calls without
    /// one left out; the evidence bundle has every call with its status).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_ids: Vec<String>,
}

/// An action the plan deferred: its finding has not been in its state for the step's grace period.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportDeferred {
    /// The finding id.
    pub finding: String,
    /// How the finding is shown to a person.
    pub display: String,
    /// The step that will act on it.
    pub step: String,
    /// The verb it will execute.
    pub verb: String,
    /// When the grace period ends and a later run may act.
    pub due_at: DateTime<Utc>,
}

/// Everything the report is made from.
pub struct ReportInput<'a> {
    /// The run.
    pub run: &'a RunRecord,
    /// The identity the run is for.
    pub identity: &'a Identity,
    /// The plan the run followed.
    pub plan: &'a Plan,
    /// Findings as resolved before the run (the plan's findings plus the initial graph).
    pub initial: &'a [Finding],
    /// The run's actions, as journaled.
    pub actions: &'a [ActionRecord],
    /// What verification found.
    pub verification: &'a Verification,
    /// The run's final status.
    pub status: RunStatus,
    /// When verification finished.
    pub finished_at: DateTime<Utc>,
}

/// Build the closure report of a run from its journal and its verification. Pure.
pub fn build(input: &ReportInput<'_>) -> ClosureReport {
    let origin = identity_label(input.identity);
    let mut findings: BTreeMap<String, ReportFinding> = BTreeMap::new();
    let mut add = |f: &Finding, initial: bool| {
        let entry = findings
            .entry(f.id.clone())
            .or_insert_with(|| ReportFinding {
                id: f.id.clone(),
                provider: f.provider.clone(),
                kind: f.kind.clone(),
                relation: f.relation.to_string(),
                display: f.display.clone(),
                paths: f.paths.iter().map(|p| p.render(&origin)).collect(),
                initial_state: if initial {
                    f.state.to_string()
                } else {
                    "absent".into()
                },
                final_state: String::new(),
                actions: Vec::new(),
            });
        for p in &f.paths {
            let rendered = p.render(&origin);
            if !entry.paths.contains(&rendered) {
                entry.paths.push(rendered);
            }
        }
    };
    for f in input.initial {
        add(f, true);
    }
    for stage in &input.plan.stages {
        for a in &stage.actions {
            add(&a.finding, true);
        }
    }
    for f in &input.verification.graph.findings {
        add(f, false);
    }
    let mut summary = Summary::default();
    for a in input.actions {
        match a.status {
            crate::store::journal::ActionStatus::Done => summary.actions_done += 1,
            crate::store::journal::ActionStatus::AlreadyDone => summary.actions_already_done += 1,
            crate::store::journal::ActionStatus::Failed
            | crate::store::journal::ActionStatus::Started => summary.actions_failed += 1,
        }
        if let Some(f) = findings.get_mut(&a.finding_id) {
            f.actions.push(ReportAction {
                stage: a.stage.clone(),
                step: a.step.clone(),
                verb: a.verb.clone(),
                status: serde_json::to_value(a.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                detail: a.detail.clone(),
                error: a.error.clone(),
                started_at: a.started_at,
                finished_at: a.finished_at,
                request_ids: a
                    .provider_calls
                    .iter()
                    .filter_map(|c| c.request_id.clone())
                    .collect(),
            });
        }
    }
    for f in findings.values_mut() {
        f.final_state = input
            .verification
            .final_states
            .get(&f.id)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "gone".into());
    }
    let deferred: Vec<ReportDeferred> = input
        .plan
        .deferred
        .iter()
        .map(|d| ReportDeferred {
            finding: d.finding_id.clone(),
            display: d.display.clone(),
            step: d.step.clone(),
            verb: d.verb.clone(),
            due_at: d.due_at,
        })
        .collect();
    summary.findings = findings.len();
    summary.deferred = deferred.len();
    summary.open = input.verification.open.len();
    let seconds =
        |t: DateTime<Utc>| (t - input.run.effective_at).num_milliseconds() as f64 / 1000.0;
    let status = match input.status {
        RunStatus::Closed => "closed",
        RunStatus::Open => "open",
        RunStatus::Failed => "failed",
        RunStatus::Running => "running",
        RunStatus::WaitingApproval => "waiting-approval",
    };
    ClosureReport {
        run: input.run.id.clone(),
        identity: IdentitySummary {
            id: input.identity.id.clone(),
            email: input.identity.email.clone(),
            name: input.identity.name.clone(),
        },
        trigger: input.run.trigger,
        playbook: input.run.playbook.clone(),
        playbook_digest: input.run.playbook_digest.clone(),
        status: status.into(),
        effective_at: input.run.effective_at,
        started_at: input.run.created_at,
        contained_at: input.run.contained_at,
        finished_at: input.finished_at,
        time_to_containment_seconds: input.run.contained_at.map(seconds),
        time_to_closure_seconds: (input.status == RunStatus::Closed)
            .then(|| seconds(input.finished_at)),
        summary,
        findings: findings.into_values().collect(),
        deferred,
        open: input.verification.open.clone(),
        probes: input.verification.probes.clone(),
        warnings: input.verification.graph.warnings.clone(),
        accepted_gaps: input.verification.accepted.clone(),
        exposures: input.plan.exposures.clone(),
    }
}

impl ClosureReport {
    /// Whether the run ended closed: no failed action and nothing open after verification.
    pub fn is_closed(&self) -> bool {
        self.status == "closed"
    }

    /// The report as text, for a terminal.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Closure report — run {} — {} <{}> — trigger {} (playbook {})",
            self.run, self.identity.id, self.identity.email, self.trigger, self.playbook
        );
        let _ = writeln!(out, "Status: {}", self.status_line());
        let _ = writeln!(out, "{}", self.timing_line());
        let s = &self.summary;
        let _ =
            writeln!(
            out,
            "Findings: {}  actions: {} done, {} already done, {} failed  deferred: {}  open: {}",
            s.findings, s.actions_done, s.actions_already_done, s.actions_failed, s.deferred, s.open
        );
        for f in &self.findings {
            let _ = writeln!(
                out,
                "\n  [{}] {} ({} -> {})",
                f.provider, f.display, f.initial_state, f.final_state
            );
            for p in &f.paths {
                let _ = writeln!(out, "      path: {p}");
            }
            for a in &f.actions {
                let what = a.error.as_deref().or(a.detail.as_deref()).unwrap_or("");
                let _ = writeln!(
                    out,
                    "      {}/{}: {} {} — {}",
                    a.stage, a.step, a.verb, a.status, what
                );
            }
        }
        if !self.deferred.is_empty() {
            let _ = writeln!(out, "\nDeferred (grace period):");
            for d in &self.deferred {
                let _ = writeln!(
                    out,
                    "  {} {} — due {}",
                    d.verb,
                    d.display,
                    d.due_at.to_rfc3339()
                );
            }
        }
        if !self.open.is_empty() {
            let _ = writeln!(out, "\nOPEN:");
            for o in &self.open {
                let _ = writeln!(out, "  {} [{}] {} — {}", o.id, o.state, o.display, o.reason);
            }
        }
        for p in &self.probes {
            let _ = writeln!(
                out,
                "probe {}: {} ({})",
                p.outcome.probe,
                if p.outcome.dead {
                    "dead"
                } else {
                    "STILL WORKS"
                },
                p.outcome.detail
            );
        }
        for a in &self.accepted_gaps {
            let _ = writeln!(
                out,
                "accepted gap [{}] {} {}: {} (accepted: {})",
                a.gap.provider, a.gap.kind, a.gap.resource, a.gap.reason, a.reason
            );
        }
        for e in &self.exposures {
            let _ = writeln!(out, "exposure [{}] {}: {}", e.provider, e.scope, e.what);
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }

    /// The report as Markdown (`--format markdown`).
    pub fn render_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Closure report: {} ({})\n",
            self.identity.name, self.identity.id
        );
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| run | `{}` |", self.run);
        let _ = writeln!(
            out,
            "| trigger | {} (playbook `{}`) |",
            self.trigger, self.playbook
        );
        let _ = writeln!(out, "| status | **{}** |", self.status_line());
        let _ = writeln!(out, "| effective | {} |", self.effective_at.to_rfc3339());
        let _ = writeln!(out, "| timing | {} |\n", self.timing_line());
        let _ = writeln!(out, "## Findings\n");
        let _ = writeln!(
            out,
            "| finding | path | actions | final state |\n|---|---|---|---|"
        );
        for f in &self.findings {
            let actions: Vec<String> = f
                .actions
                .iter()
                .map(|a| format!("{} ({})", a.verb, a.status))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                md(&f.display),
                md(&f.paths.join("<br>")),
                md(&actions.join(", ")),
                f.final_state
            );
        }
        if !self.deferred.is_empty() {
            let _ = writeln!(out, "\n## Deferred\n");
            for d in &self.deferred {
                let _ = writeln!(
                    out,
                    "- {} {} — due {}",
                    d.verb,
                    md(&d.display),
                    d.due_at.to_rfc3339()
                );
            }
        }
        if !self.open.is_empty() {
            let _ = writeln!(out, "\n## Open\n");
            for o in &self.open {
                let _ = writeln!(out, "- `{}` {} — {}", o.id, md(&o.display), md(&o.reason));
            }
        }
        if !self.accepted_gaps.is_empty() {
            let _ = writeln!(out, "\n## Accepted gaps\n");
            for a in &self.accepted_gaps {
                let _ = writeln!(
                    out,
                    "- {} `{}` {}: {} — accepted: {}",
                    a.gap.provider,
                    a.gap.kind,
                    md(&a.gap.resource),
                    md(&a.gap.reason),
                    md(&a.reason)
                );
            }
        }
        if !self.exposures.is_empty() {
            let _ = writeln!(out, "\n## Exposures\n");
            for e in &self.exposures {
                let _ = writeln!(out, "- {} {}: {}", e.provider, md(&e.scope), md(&e.what));
            }
        }
        out
    }

    fn status_line(&self) -> String {
        if self.is_closed() {
            "closed".into()
        } else if self.open.is_empty() {
            self.status.clone()
        } else {
            let ids: Vec<&str> = self.open.iter().map(|o| o.id.as_str()).collect();
            format!("{} — open: {}", self.status, ids.join(", "))
        }
    }

    fn timing_line(&self) -> String {
        let fmt = |s: Option<f64>| s.map(|s| format!("{s:.1}s")).unwrap_or_else(|| "—".into());
        format!(
            "time to containment: {}  time to closure: {}",
            fmt(self.time_to_containment_seconds),
            fmt(self.time_to_closure_seconds)
        )
    }
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
