//! Resolve: ask every configured provider, concurrently, for what binds the identity, and merge
//! the answers into one graph.

use crate::registry::Providers;
use closeout_contract::{Account, Finding, Identity, ProviderError, ResolveContext};
use futures::future::join_all;
use serde::Serialize;

/// Everything bound to one identity across providers.
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    pub identity: Identity,
    pub accounts: Vec<Account>,
    /// Sorted by id: never depends on provider listing order.
    pub findings: Vec<Finding>,
    pub warnings: Vec<String>,
}

impl Graph {
    pub fn open_findings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.state.is_open())
    }

    /// The identity's label as the first node of every path.
    pub fn origin(&self) -> String {
        identity_label(&self.identity)
    }

    /// The graph in Graphviz DOT: the identity, every path node, and every finding.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph closeout {\n  rankdir=LR;\n  node [shape=box];\n");
        let origin = self.origin();
        out.push_str(&format!("  {} [shape=ellipse];\n", dot_id(&origin)));
        let mut edges = std::collections::BTreeSet::new();
        for f in &self.findings {
            let leaf = format!("{} ({})", f.display, f.state);
            let color = if f.state.is_open() {
                "red"
            } else {
                "darkgreen"
            };
            out.push_str(&format!("  {} [color={color}];\n", dot_id(&leaf)));
            for path in &f.paths {
                let mut from = origin.clone();
                for (i, step) in path.steps.iter().enumerate() {
                    let to = if i + 1 == path.steps.len() {
                        leaf.clone()
                    } else {
                        step.node.clone()
                    };
                    edges.insert((from.clone(), step.edge.clone(), to.clone()));
                    from = to;
                }
            }
        }
        for (from, label, to) in edges {
            out.push_str(&format!(
                "  {} -> {} [label={}];\n",
                dot_id(&from),
                dot_id(&to),
                dot_id(&label)
            ));
        }
        out.push_str("}\n");
        out
    }
}

pub fn identity_label(identity: &Identity) -> String {
    format!("{} <{}>", identity.id, identity.email)
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Resolve the identity in every provider at once. The first provider error fails the whole
/// resolution: a partial graph would make closure look better than it is.
pub async fn resolve(providers: &Providers, ctx: &ResolveContext) -> Result<Graph, ProviderError> {
    let answers = join_all(providers.iter().map(|p| p.resolve(ctx))).await;
    let mut graph = Graph {
        identity: ctx.identity.clone(),
        accounts: Vec::new(),
        findings: Vec::new(),
        warnings: Vec::new(),
    };
    for answer in answers {
        let mut resolution = answer?;
        resolution.normalize();
        graph.accounts.extend(resolution.accounts);
        graph.findings.extend(resolution.findings);
        graph.warnings.extend(resolution.warnings);
    }
    graph.findings.sort_by(|a, b| a.id.cmp(&b.id));
    graph
        .accounts
        .sort_by(|a, b| (&a.provider, &a.resource).cmp(&(&b.provider, &b.resource)));
    graph.warnings.sort();
    Ok(graph)
}
