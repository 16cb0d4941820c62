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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClosureReport {
    pub run: String,
    pub identity: IdentitySummary,
    pub trigger: Trigger,
    pub playbook: String,
    pub playbook_digest: String,
    /// `closed`, `open` (verification found open findings) or `failed` (an action failed).
    pub status: String,
    pub effective_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub contained_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    /// Sign-in and sessions stopped, counted from the effective time (NIST SP 800-53 PS-4).
    pub time_to_containment_seconds: Option<f64>,
    /// Verified closed, counted from the effective time; absent while anything is open.
    pub time_to_closure_seconds: Option<f64>,
    pub summary: Summary,
    pub findings: Vec<ReportFinding>,
    pub deferred: Vec<ReportDeferred>,
    pub open: Vec<OpenFinding>,
    pub probes: Vec<ProbeRecord>,
    pub warnings: Vec<String>,
    /// Gaps the site accepted by name (not open, and always listed).
    #[serde(default)]
    pub accepted_gaps: Vec<AcceptedGap>,
    /// Scopes the identity could grant itself everything in, as resolved before the run.
    #[serde(default)]
    pub exposures: Vec<Exposure>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentitySummary {
    pub id: String,
    pub email: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub findings: usize,
    pub actions_done: usize,
    pub actions_already_done: usize,
    pub actions_failed: usize,
    pub deferred: usize,
    pub open: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportFinding {
    pub id: String,
    pub provider: String,
    pub kind: String,
    pub relation: String,
    pub display: String,
    pub paths: Vec<String>,
    pub initial_state: String,
    pub final_state: String,
    pub actions: Vec<ReportAction>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportAction {
    pub stage: String,
    pub step: String,
    pub verb: String,
    pub status: String,
    pub detail: Option<String>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportDeferred {
    pub finding: String,
    pub display: String,
    pub step: String,
    pub verb: String,
    pub due_at: DateTime<Utc>,
}

/// Everything the report is made from.
pub struct ReportInput<'a> {
    pub run: &'a RunRecord,
    pub identity: &'a Identity,
    pub plan: &'a Plan,
    /// Findings as resolved before the run (the plan's findings plus the initial graph).
    pub initial: &'a [Finding],
    pub actions: &'a [ActionRecord],
    pub verification: &'a Verification,
    pub status: RunStatus,
    pub finished_at: DateTime<Utc>,
}

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
    pub fn is_closed(&self) -> bool {
        self.status == "closed"
    }

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
