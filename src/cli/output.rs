//! Writing results on stdout: text, exactly one JSON document, closure reports in every format,
//! and the exit code a report means. Logs and progress go to stderr, never here.

use super::global::{exit, Format};
use crate::pipeline::report::ClosureReport;
use crate::pipeline::resolve::Graph;
use crate::pipeline::verify::Verification;
use crate::store::journal::RunRecord;
use std::io::Write;

/// Write `text` to stdout.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Write `value` as one pretty JSON document to stdout.
pub fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => print(&format!("{s}\n")),
        Err(e) => eprintln!("error: cannot serialize output: {e}"),
    }
}

/// The exit code of a run's report.
pub fn report_code(report: &ClosureReport) -> i32 {
    match report.status.as_str() {
        "closed" => exit::OK,
        "open" => exit::OPEN,
        "waiting-approval" => exit::WAITING,
        _ => exit::ERROR,
    }
}

/// Print a closure report in `format`.
pub fn print_report(report: &ClosureReport, format: Format) {
    match format {
        Format::Json => print_json(report),
        Format::Markdown => print(&report.render_markdown()),
        _ => print(&report.render_text()),
    }
}

/// A run's journal record as a summary object.
pub fn run_summary(r: &RunRecord) -> serde_json::Value {
    serde_json::json!({
        "run": r.id,
        "identity": r.identity,
        "trigger": r.trigger,
        "playbook": r.playbook,
        "status": r.status.as_str(),
        "created_at": r.created_at,
        "finished_at": r.finished_at,
    })
}

/// A resolved graph for people: accounts, findings, each with its paths.
pub fn render_graph(graph: &Graph) -> String {
    let origin = graph.origin();
    let mut out = format!("{origin}\n");
    for a in &graph.accounts {
        out.push_str(&format!(
            "  account [{}] {} (matched by {})\n",
            a.provider, a.display, a.matched_by
        ));
    }
    for f in &graph.findings {
        out.push_str(&format!(
            "  [{}] {} {} — {}\n",
            f.provider, f.kind, f.display, f.state
        ));
        for p in &f.paths {
            out.push_str(&format!("      {}\n", p.render(&origin)));
        }
    }
    for w in &graph.warnings {
        out.push_str(&format!("  warning: {w}\n"));
    }
    out
}

/// A verification for people: closed, or each open finding with its reason.
pub fn render_verification(identity: &str, v: &Verification) -> String {
    let mut out = format!(
        "{}: {}\n",
        identity,
        if v.is_closed() { "closed" } else { "OPEN" }
    );
    for o in &v.open {
        out.push_str(&format!(
            "  {} [{}] {} — {}\n",
            o.id, o.state, o.display, o.reason
        ));
    }
    for a in &v.accepted {
        out.push_str(&format!(
            "  accepted gap [{}] {} {}: {} (accepted: {})\n",
            a.gap.provider, a.gap.kind, a.gap.resource, a.gap.reason, a.reason
        ));
    }
    out
}
