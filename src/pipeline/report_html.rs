//! The closure report as one self-contained HTML page (no network fetch: styles, script and the
//! graphs are inline): the summary (identity, trigger, effective time, time to containment and
//! to closure against the configured targets), the access graph before and after as inline SVG
//! laid out by the `layout-rs` graph layout library (one node per finding, plus the identity),
//! and every finding with its paths, actions, outcome and probe, filterable by provider and
//! state. Pure: a [`ClosureReport`] in, a `String` out.

use crate::grace::Grace;
use crate::pipeline::report::{ClosureReport, ReportFinding};
use layout::backends::svg::SVGWriter;
use layout::core::base::Orientation;
use layout::core::geometry::Point;
use layout::core::style::StyleAttr;
use layout::std_shapes::shapes::{Arrow, Element, ShapeKind};
use layout::topo::layout::VisualGraph;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The targets the report measures the run against (`[report]` in the configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Targets {
    /// Time from the effective time to containment.
    pub containment: Option<Grace>,
    /// Time from the effective time to verified closure.
    pub closure: Option<Grace>,
}

/// Escape text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Which graph a picture shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Before,
    After,
}

/// Whether a state leaves access usable.
fn is_open_state(state: &str) -> bool {
    matches!(state, "active" | "unknown")
}

/// Fill colour of a finding's node in one picture.
fn fill(state: &str) -> &'static str {
    match state {
        "active" => "#f8d0cc",
        "unknown" => "#fbe7b5",
        "absent" | "gone" => "#eeeeee",
        _ => "#cdebd3",
    }
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// The steps of a rendered path (`origin -edge-> node -edge-> node`): `(edge, node)` pairs.
fn path_steps(path: &str, origin: &str) -> Vec<(String, String)> {
    let rest = path.strip_prefix(origin).unwrap_or(path);
    let mut steps: Vec<(String, String)> = Vec::new();
    let mut rest = rest;
    while let Some(start) = rest.find(" -") {
        let after = &rest[start + 2..];
        let Some(arrow) = after.find("-> ") else {
            break;
        };
        let edge = &after[..arrow];
        if edge.is_empty() || edge.contains(' ') {
            // A " -" inside a node's label: it belongs to the previous node.
            if let Some(last) = steps.last_mut() {
                last.1.push_str(&rest[..start + 2]);
            }
            rest = after;
            continue;
        }
        if let Some(last) = steps.last_mut() {
            last.1.push_str(&rest[..start]);
        }
        steps.push((edge.to_string(), String::new()));
        rest = &after[arrow + 3..];
    }
    if let Some(last) = steps.last_mut() {
        last.1.push_str(rest);
    }
    steps
}

/// One graph as SVG, laid out by `layout-rs`: the identity, one node per finding (coloured by
/// its state on this side; a `<g class="node finding" data-finding=…>`), and the nodes its
/// paths pass through that are not findings themselves (`<g class="node path">`), with an edge
/// per path step labelled with its relation.
fn graph_svg(report: &ClosureReport, side: Side) -> String {
    let mut graph = VisualGraph::new(Orientation::LeftToRight);
    let node = |label: &str, fill_color: &str, props: String| {
        let mut look = StyleAttr::simple();
        look.fill_color = Some(layout::core::color::Color::fast(fill_color));
        look.rounded = 6;
        look.line_width = 1;
        look.font_size = 13;
        let width = (label.chars().count() as f64 * 7.0 + 24.0).clamp(80.0, 380.0);
        Element::create_with_properties(
            ShapeKind::new_box(label),
            look,
            Orientation::LeftToRight,
            Point::new(width, 36.0),
            props,
        )
    };
    let origin = format!("{} <{}>", report.identity.id, report.identity.email);
    let root = graph.add_node(node(
        &short(&origin, 48),
        "#dbe7f7",
        "class=\"node identity\"".to_string(),
    ));
    // Each finding's node, and the label its paths end with.
    let mut by_label: BTreeMap<String, layout::adt::dag::NodeHandle> = BTreeMap::new();
    let mut finding_nodes = Vec::new();
    for f in &report.findings {
        let state = match side {
            Side::Before => f.initial_state.as_str(),
            Side::After => f.final_state.as_str(),
        };
        let label = short(&format!("[{}] {} · {}", f.provider, f.display, state), 50);
        let props = format!(
            "class=\"node finding\" data-finding=\"{}\" data-provider=\"{}\" data-state=\"{}\"",
            escape(&f.id),
            escape(&f.provider),
            escape(state)
        );
        let handle = graph.add_node(node(&label, fill(state), props));
        for p in &f.paths {
            if let Some((_, last)) = path_steps(p, &origin).last() {
                by_label.entry(last.clone()).or_insert(handle);
            }
        }
        finding_nodes.push((f, handle));
    }
    let mut edges: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (f, handle) in &finding_nodes {
        let mut linked = false;
        for p in &f.paths {
            let steps = path_steps(p, &origin);
            let mut from = root;
            for (i, (edge, label)) in steps.iter().enumerate() {
                let to = if i + 1 == steps.len() {
                    *handle
                } else {
                    match by_label.get(label) {
                        Some(h) => *h,
                        None => {
                            let h = graph.add_node(node(
                                &short(label, 50),
                                "#ffffff",
                                "class=\"node path\"".to_string(),
                            ));
                            by_label.insert(label.clone(), h);
                            h
                        }
                    }
                };
                if from != to && edges.insert((from.get_index(), to.get_index())) {
                    graph.add_edge(Arrow::simple(edge), from, to);
                }
                from = to;
            }
            linked |= !steps.is_empty();
        }
        if !linked && edges.insert((root.get_index(), handle.get_index())) {
            graph.add_edge(Arrow::simple(&f.relation), root, *handle);
        }
    }
    let mut svg = SVGWriter::new();
    graph.do_it(false, false, false, &mut svg);
    let text = svg.finalize();
    // Inline in HTML: no XML declaration.
    let text = match text.find("<svg") {
        Some(at) => text[at..].to_string(),
        None => text,
    };
    text.replacen(
        "<svg ",
        &format!(
            "<svg class=\"graph\" id=\"graph-{}\" role=\"img\" ",
            match side {
                Side::Before => "before",
                Side::After => "after",
            }
        ),
        1,
    )
}

fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// A timing cell: the duration, and how it compares with the target.
fn timing(seconds: Option<f64>, target: Option<Grace>, pending: &str) -> (String, &'static str) {
    match (seconds, target) {
        (None, _) => (pending.to_string(), "pending"),
        (Some(s), None) => (format!("{} (no target configured)", duration(s)), "none"),
        (Some(s), Some(t)) if s <= t.seconds() as f64 => (
            format!(
                "{} — within the target of {}",
                duration(s),
                duration(t.seconds() as f64)
            ),
            "met",
        ),
        (Some(s), Some(t)) => (
            format!(
                "{} — over the target of {}",
                duration(s),
                duration(t.seconds() as f64)
            ),
            "missed",
        ),
    }
}

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1d2733; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ccd; padding-bottom: .25rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #d5dbe3; padding: .35rem .5rem; text-align: left; vertical-align: top; font-size: .9rem; }
th { background: #f1f4f8; }
table.summary th { width: 16rem; }
.status-closed { color: #176c2c; font-weight: bold; }
.status-open, .status-failed { color: #a3281c; font-weight: bold; }
.met { color: #176c2c; } .missed { color: #a3281c; font-weight: bold; } .pending { color: #8a5a00; }
.state-open { background: #fbe1de; } .state-closed { background: #e3f4e7; }
.graphs { display: flex; flex-wrap: wrap; gap: 1.5rem; }
.graphs figure { margin: 0; overflow: auto; max-width: 100%; border: 1px solid #d5dbe3; padding: .5rem; }
.graphs figcaption { font-weight: bold; margin-bottom: .5rem; }
svg.graph g.dimmed { opacity: .15; }
.filters { margin: .75rem 0; display: flex; gap: 1rem; align-items: center; }
code { font-size: .85rem; }
.ids { color: #556; font-size: .8rem; }
ul.paths { margin: 0; padding-left: 1rem; }
tr.hidden { display: none; }
"#;

const SCRIPT: &str = r#"
(function () {
  var provider = document.getElementById('filter-provider');
  var state = document.getElementById('filter-state');
  var shown = document.getElementById('shown-count');
  function matches(el) {
    var p = provider.value, s = state.value;
    return (p === '' || el.getAttribute('data-provider') === p) &&
      (s === '' || (s === 'open' ? el.getAttribute('data-open') === 'true' :
                    s === 'closed' ? el.getAttribute('data-open') === 'false' :
                    el.getAttribute('data-final-state') === s));
  }
  function apply() {
    var rows = document.querySelectorAll('tr.finding');
    var visible = {};
    var count = 0;
    rows.forEach(function (row) {
      var ok = matches(row);
      row.classList.toggle('hidden', !ok);
      if (ok) { count += 1; visible[row.getAttribute('data-finding')] = true; }
    });
    document.querySelectorAll('svg.graph g.finding').forEach(function (g) {
      g.classList.toggle('dimmed', !visible[g.getAttribute('data-finding')]);
    });
    shown.textContent = String(count);
  }
  function choose(select, value) {
    for (var i = 0; i < select.options.length; i += 1) {
      if (select.options[i].value === value) { select.value = value; }
    }
  }
  // A link may preselect the filters: report.html#provider=aws&state=open
  location.hash.replace(/^#/, '').split('&').forEach(function (pair) {
    var kv = pair.split('=');
    var value = decodeURIComponent(kv[1] || '');
    if (kv[0] === 'provider') { choose(provider, value); }
    if (kv[0] === 'state') { choose(state, value); }
  });
  provider.addEventListener('change', apply);
  state.addEventListener('change', apply);
  apply();
  document.body.setAttribute('data-ready', 'true');
})();
"#;

/// The report as one self-contained HTML document.
pub fn render(report: &ClosureReport, targets: &Targets) -> String {
    let mut out = String::new();
    let e = escape;
    let title = format!(
        "Closure report {} — {} ({})",
        report.run, report.identity.id, report.trigger
    );
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body data-run=\"{}\">\n",
        e(&title),
        e(&report.run)
    );
    let _ = writeln!(out, "<h1>{}</h1>", e(&title));
    let status_class = format!("status-{}", report.status);
    let (containment, containment_class) = timing(
        report.time_to_containment_seconds,
        targets.containment,
        "not contained",
    );
    let (closure, closure_class) = timing(
        report.time_to_closure_seconds,
        targets.closure,
        "not closed: something is still open",
    );
    let s = &report.summary;
    let _ = write!(
        out,
        "<h2>Summary</h2>\n<table class=\"summary\" id=\"summary\">\n\
         <tr><th>Identity</th><td>{} &lt;{}&gt; — {}</td></tr>\n\
         <tr><th>Trigger</th><td>{} (playbook {}, SHA-256 <code>{}</code>)</td></tr>\n\
         <tr><th>Status</th><td class=\"{}\" id=\"status\">{}</td></tr>\n\
         <tr><th>Effective time</th><td>{}</td></tr>\n\
         <tr><th>Run started</th><td>{}</td></tr>\n\
         <tr><th>Time to containment</th><td class=\"{containment_class}\" id=\"containment\">{}</td></tr>\n\
         <tr><th>Time to closure</th><td class=\"{closure_class}\" id=\"closure\">{}</td></tr>\n\
         <tr><th>Counts</th><td>{} findings; actions {} done, {} already done, {} failed; {} deferred; {} open</td></tr>\n\
         </table>\n",
        e(&report.identity.id),
        e(&report.identity.email),
        e(&report.identity.name),
        e(report.trigger.as_str()),
        e(&report.playbook),
        e(&report.playbook_digest),
        e(&status_class),
        e(&report.status),
        e(&report.effective_at.to_rfc3339()),
        e(&report.started_at.to_rfc3339()),
        e(&containment),
        e(&closure),
        s.findings,
        s.actions_done,
        s.actions_already_done,
        s.actions_failed,
        s.deferred,
        s.open,
    );
    if !report.open.is_empty() {
        let _ = writeln!(out, "<h2>Still open</h2>\n<ul id=\"open\">");
        for o in &report.open {
            let _ = writeln!(
                out,
                "<li><code>{}</code> — {} ({})</li>",
                e(&o.id),
                e(&o.display),
                e(o.state.as_str())
            );
        }
        let _ = writeln!(out, "</ul>");
    }
    let _ = write!(
        out,
        "<h2>Access graph</h2>\n<div class=\"graphs\">\n\
         <figure><figcaption>Before the run</figcaption>{}</figure>\n\
         <figure><figcaption>After the run</figcaption>{}</figure>\n</div>\n",
        graph_svg(report, Side::Before),
        graph_svg(report, Side::After)
    );

    // Filters.
    let providers: BTreeSet<&str> = report
        .findings
        .iter()
        .map(|f| f.provider.as_str())
        .collect();
    let states: BTreeSet<&str> = report
        .findings
        .iter()
        .map(|f| f.final_state.as_str())
        .collect();
    let _ = write!(
        out,
        "<h2>Findings</h2>\n<div class=\"filters\">\n\
         <label>Provider <select id=\"filter-provider\"><option value=\"\">all</option>{}</select></label>\n\
         <label>State <select id=\"filter-state\"><option value=\"\">all</option>\
         <option value=\"open\">open</option><option value=\"closed\">closed</option>{}</select></label>\n\
         <span><span id=\"shown-count\">{}</span> of {} shown</span>\n</div>\n",
        providers
            .iter()
            .map(|p| format!("<option value=\"{0}\">{0}</option>", e(p)))
            .collect::<String>(),
        states
            .iter()
            .map(|s| format!("<option value=\"{0}\">{0}</option>", e(s)))
            .collect::<String>(),
        report.findings.len(),
        report.findings.len()
    );
    let _ = writeln!(
        out,
        "<table id=\"findings\">\n<thead><tr><th>Finding</th><th>Path</th><th>Actions</th>\
         <th>Outcome</th><th>Probe</th></tr></thead>\n<tbody>"
    );
    for f in &report.findings {
        out.push_str(&finding_row(report, f));
    }
    let _ = writeln!(out, "</tbody>\n</table>");
    if !report.accepted_gaps.is_empty() || !report.warnings.is_empty() {
        let _ = writeln!(out, "<h2>Notes</h2>\n<ul>");
        for g in &report.accepted_gaps {
            let _ = writeln!(
                out,
                "<li>accepted gap: {} — {}</li>",
                e(&format!("{:?}", g.gap)),
                e(&g.reason)
            );
        }
        for w in &report.warnings {
            let _ = writeln!(out, "<li>warning: {}</li>", e(w));
        }
        let _ = writeln!(out, "</ul>");
    }
    let _ = write!(
        out,
        "<p><small>Generated by Closeout from the run's stored closure report. The signed \
         evidence bundle (<code>closeout evidence export {}</code>) is what an auditor verifies.</small></p>\n\
         <script>{SCRIPT}</script>\n</body>\n</html>\n",
        e(&report.run)
    );
    out
}

fn finding_row(report: &ClosureReport, f: &ReportFinding) -> String {
    let e = escape;
    let open = report.open.iter().any(|o| o.id == f.id) || is_open_state(&f.final_state);
    let paths: String = f
        .paths
        .iter()
        .map(|p| format!("<li>{}</li>", e(p)))
        .collect();
    let actions: String = if f.actions.is_empty() {
        "—".into()
    } else {
        f.actions
            .iter()
            .map(|a| {
                let detail = a
                    .error
                    .as_deref()
                    .or(a.detail.as_deref())
                    .map(|d| format!(": {}", e(d)))
                    .unwrap_or_default();
                let ids = if a.request_ids.is_empty() {
                    String::new()
                } else {
                    format!(
                        "<div class=\"ids\">request ids: {}</div>",
                        a.request_ids
                            .iter()
                            .map(|id| format!("<code>{}</code>", e(id)))
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                };
                format!(
                    "<div>{} <b>{}</b> ({}){detail}{ids}</div>",
                    e(&a.stage),
                    e(&a.verb),
                    e(&a.status)
                )
            })
            .collect()
    };
    let probes: String = report
        .probes
        .iter()
        .filter(|p| p.finding == f.id)
        .map(|p| {
            format!(
                "<div>{}: {} — {}</div>",
                e(&p.outcome.probe),
                if p.outcome.dead {
                    "dead"
                } else {
                    "STILL WORKS"
                },
                e(&p.outcome.detail)
            )
        })
        .collect();
    format!(
        "<tr class=\"finding {}\" data-finding=\"{}\" data-provider=\"{}\" data-final-state=\"{}\" data-open=\"{}\">\
         <td><code>{}</code><br>{} <small>({}, {})</small></td><td><ul class=\"paths\">{}</ul></td>\
         <td>{}</td><td>{} → <b>{}</b></td><td>{}</td></tr>\n",
        if open { "state-open" } else { "state-closed" },
        e(&f.id),
        e(&f.provider),
        e(&f.final_state),
        open,
        e(&f.id),
        e(&f.display),
        e(&f.kind),
        e(&f.relation),
        paths,
        actions,
        e(&f.initial_state),
        e(&f.final_state),
        if probes.is_empty() { "—".into() } else { probes },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_durations() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(600.0), "10.0 min");
        let (text, class) = timing(Some(30.0), Some(Grace::from_seconds(60)), "");
        assert_eq!(class, "met", "{text}");
        let (_, class) = timing(Some(90.0), Some(Grace::from_seconds(60)), "");
        assert_eq!(class, "missed");
        assert_eq!(timing(None, None, "pending").1, "pending");
    }

    #[test]
    fn rendered_paths_split_into_steps() {
        let origin = "E1 <a@x>";
        assert_eq!(
            path_steps(
                "E1 <a@x> -account-> iam user alice -member-of-> group dev-ops",
                origin
            ),
            vec![
                ("account".to_string(), "iam user alice".to_string()),
                ("member-of".to_string(), "group dev-ops".to_string()),
            ]
        );
        assert_eq!(
            path_steps("E1 <a@x> -has-> key -x y- z", origin),
            vec![("has".to_string(), "key -x y- z".to_string())]
        );
        assert!(path_steps("E1 <a@x>", origin).is_empty());
    }
}
