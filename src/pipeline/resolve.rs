//! Resolve: ask every configured provider, concurrently, for what binds the identity, and merge
//! the answers into one graph.

use crate::registry::Providers;
use closeout_contract::{
    Account, Exposure, Finding, Gap, Holder, Identity, Path, ProviderError, Relation,
    ResolveContext, State,
};
use futures::future::join_all;
use serde::Serialize;

/// Everything bound to one identity across providers.
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    /// The identity resolved.
    pub identity: Identity,
    /// Its principal in each provider, with the correlation rule that matched; sorted by provider
    /// and resource.
    pub accounts: Vec<Account>,
    /// Sorted by id: never depends on provider listing order.
    pub findings: Vec<Finding>,
    /// The providers' non-fatal notes, sorted.
    pub warnings: Vec<String>,
    /// What a provider could not list, read or evaluate. Each is also a finding of kind
    /// [`UNVERIFIED`] (state unknown, so open) unless accepted.
    pub gaps: Vec<Gap>,
    /// Scopes the identity can grant itself everything in.
    pub exposures: Vec<Exposure>,
}

/// The kind of the finding a [`Gap`] becomes: closure unknown, so open until resolved or
/// accepted by name (`accept_unverified`).
pub const UNVERIFIED: &str = "unverified";

/// The finding a gap becomes: kind [`UNVERIFIED`], state unknown (open), its paths or a path
/// naming the check, attributes `gap` (the gap's kind) and `reason`.
pub fn gap_finding(gap: &Gap) -> Finding {
    let what = if gap.resource.is_empty() {
        gap.kind.clone()
    } else {
        format!("{} {}", gap.kind, gap.resource)
    };
    let paths = if gap.paths.is_empty() {
        vec![Path::new().then("unverified", what.clone())]
    } else {
        gap.paths.clone()
    };
    Finding {
        id: format!(
            "{}:{UNVERIFIED}:{}:{}",
            gap.provider, gap.kind, gap.resource
        ),
        provider: gap.provider.clone(),
        kind: UNVERIFIED.into(),
        relation: Relation::CanRead,
        holder: Holder::Shared,
        resource: gap.resource.clone(),
        display: format!("{what}: not verified — {}", gap.reason),
        state: State::Unknown,
        paths,
        attributes: [
            ("gap".to_string(), gap.kind.clone()),
            ("reason".to_string(), gap.reason.clone()),
        ]
        .into(),
    }
}

/// The gap a [`UNVERIFIED`] finding stands for.
pub fn gap_of(finding: &Finding) -> Option<Gap> {
    (finding.kind == UNVERIFIED).then(|| Gap {
        provider: finding.provider.clone(),
        kind: finding.attr("gap").unwrap_or_default().to_string(),
        resource: finding.resource.clone(),
        reason: finding.attr("reason").unwrap_or_default().to_string(),
        paths: finding.paths.clone(),
    })
}

impl Graph {
    /// Add back each of `earlier` gaps this graph no longer shows, its reason followed by
    /// `why`: removing the access that exposed a gap does not make what it reached known. One
    /// is dropped only when the graph proves the unknown known: it still reaches the gap's
    /// resource through a finding of the same provider that is no gap (the provider could list,
    /// read or evaluate it this time). Used for the gaps of a run's own plan at verification,
    /// and for those an identity's previous run left at planning.
    pub fn carry_gaps(&mut self, earlier: &[Gap], why: &str) {
        for gap in earlier {
            let carried = gap_finding(gap);
            if self.findings.iter().any(|f| f.id == carried.id) {
                continue;
            }
            let now_known = !gap.resource.is_empty()
                && self.findings.iter().any(|f| {
                    f.provider == gap.provider && f.resource == gap.resource && gap_of(f).is_none()
                });
            if now_known {
                continue;
            }
            let reason = if gap.reason.ends_with(&format!("({why})")) {
                gap.reason.clone()
            } else {
                format!("{} ({why})", gap.reason)
            };
            let still_unknown = Gap {
                reason,
                ..gap.clone()
            };
            self.findings.push(gap_finding(&still_unknown));
            self.gaps.push(still_unknown);
        }
        self.findings.sort_by(|a, b| a.id.cmp(&b.id));
        self.gaps.sort();
    }

    /// The findings that are still open (active, or state unknown).
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

/// How the identity is written as the first node of a path: `id <email>`.
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
    let resolutions = answers.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(merge(ctx, resolutions))
}

/// What the providers told of the identity's own accounts ahead of a whole resolution.
#[derive(Debug, Clone)]
pub struct Accounts {
    /// Their accounts and what those hold. Only a head start for containment: never a
    /// closure's graph (no gaps, nothing they reach).
    pub graph: Graph,
    /// Every configured provider answered: the identity's own accounts are known everywhere,
    /// so containing them contains the identity.
    pub every_provider: bool,
}

/// The identity's own accounts and what they hold, from every provider that can tell them
/// ahead of a whole resolution ([`closeout_contract::Provider::resolve_accounts`]), at once;
/// `None` when none can.
pub async fn resolve_accounts(
    providers: &Providers,
    ctx: &ResolveContext,
) -> Result<Option<Accounts>, ProviderError> {
    let answers = join_all(providers.iter().map(|p| p.resolve_accounts(ctx))).await;
    let asked = answers.len();
    let mut resolutions = Vec::new();
    for answer in answers {
        resolutions.extend(answer?);
    }
    let every_provider = resolutions.len() == asked;
    Ok((!resolutions.is_empty()).then(|| Accounts {
        graph: merge(ctx, resolutions),
        every_provider,
    }))
}

fn merge(ctx: &ResolveContext, resolutions: Vec<closeout_contract::Resolution>) -> Graph {
    let mut graph = Graph {
        identity: ctx.identity.clone(),
        accounts: Vec::new(),
        findings: Vec::new(),
        warnings: Vec::new(),
        gaps: Vec::new(),
        exposures: Vec::new(),
    };
    for mut resolution in resolutions {
        resolution.normalize();
        graph.accounts.extend(resolution.accounts);
        graph.findings.extend(resolution.findings);
        graph
            .findings
            .extend(resolution.gaps.iter().map(gap_finding));
        graph.warnings.extend(resolution.warnings);
        graph.gaps.extend(resolution.gaps);
        graph.exposures.extend(resolution.exposures);
    }
    graph.findings.sort_by(|a, b| a.id.cmp(&b.id));
    graph.findings.dedup_by(|a, b| a.id == b.id);
    graph
        .accounts
        .sort_by(|a, b| (&a.provider, &a.resource).cmp(&(&b.provider, &b.resource)));
    graph.warnings.sort();
    graph
}
