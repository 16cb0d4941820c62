//! Verify: resolve the identity again from live state, read the live state of everything the run
//! acted on, and probe old credentials where the provider can. Never trusts the journal.

use crate::registry::Providers;
use crate::resolve::{resolve, Graph};
use closeout_contract::{Finding, ProbeOutcome, ProviderError, ResolveContext, State};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many live-state reads and probes run at once (each provider's own gate still applies).
const VERIFY_CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenFinding {
    pub id: String,
    pub provider: String,
    pub kind: String,
    pub display: String,
    pub state: State,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeRecord {
    pub finding: String,
    #[serde(flatten)]
    pub outcome: ProbeOutcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// The graph as resolved after the run.
    pub graph: Graph,
    /// The live state of every finding in the graph or acted on.
    pub final_states: BTreeMap<String, State>,
    pub probes: Vec<ProbeRecord>,
    /// Everything still usable; empty means closed.
    pub open: Vec<OpenFinding>,
}

impl Verification {
    pub fn is_closed(&self) -> bool {
        self.open.is_empty()
    }
}

/// Re-resolve, read the live state of each finding in `acted` that no longer shows in the
/// graph, and probe every acted-on finding.
pub async fn verify(
    providers: &Providers,
    ctx: &ResolveContext,
    acted: &[Finding],
) -> Result<Verification, ProviderError> {
    let graph = resolve(providers, ctx).await?;
    let mut final_states: BTreeMap<String, State> = graph
        .findings
        .iter()
        .map(|f| (f.id.clone(), f.state))
        .collect();
    let mut open: Vec<OpenFinding> = graph
        .open_findings()
        .map(|f| open_finding(f, f.state, "still bound and usable after the run".into()))
        .collect();

    let mut seen = std::collections::BTreeSet::new();
    let gone: Vec<&Finding> = acted
        .iter()
        .filter(|f| !final_states.contains_key(&f.id) && seen.insert(f.id.clone()))
        .collect();
    let live: Vec<(&Finding, Result<State, ProviderError>)> = stream::iter(gone)
        .map(|f| async move {
            let state = match providers.get(&f.provider) {
                Some(p) => p.live_state(f, ctx).await,
                None => Ok(State::Unknown),
            };
            (f, state)
        })
        .buffer_unordered(VERIFY_CONCURRENCY)
        .collect()
        .await;
    for (f, state) in live {
        let state = state?;
        final_states.insert(f.id.clone(), state);
        if state.is_open() {
            open.push(open_finding(f, state, "live state is still usable".into()));
        }
    }

    let mut probed = std::collections::BTreeSet::new();
    let to_probe: Vec<&Finding> = acted
        .iter()
        .filter(|f| probed.insert(f.id.clone()))
        .collect();
    let probe_results: Vec<(&Finding, Result<Option<ProbeOutcome>, ProviderError>)> =
        stream::iter(to_probe)
            .map(|f| async move {
                let outcome = match providers.get(&f.provider) {
                    Some(p) => p.probe(f).await,
                    None => Ok(None),
                };
                (f, outcome)
            })
            .buffer_unordered(VERIFY_CONCURRENCY)
            .collect()
            .await;
    let mut probes = Vec::new();
    for (f, outcome) in probe_results {
        if let Some(outcome) = outcome? {
            if !outcome.dead && !open.iter().any(|o| o.id == f.id) {
                let state = final_states.get(&f.id).copied().unwrap_or(State::Unknown);
                open.push(open_finding(
                    f,
                    state,
                    format!(
                        "probe {} shows it still works: {}",
                        outcome.probe, outcome.detail
                    ),
                ));
            }
            probes.push(ProbeRecord {
                finding: f.id.clone(),
                outcome,
            });
        }
    }
    open.sort_by(|a, b| a.id.cmp(&b.id));
    probes.sort_by(|a, b| a.finding.cmp(&b.finding));
    Ok(Verification {
        graph,
        final_states,
        probes,
        open,
    })
}

fn open_finding(f: &Finding, state: State, reason: String) -> OpenFinding {
    OpenFinding {
        id: f.id.clone(),
        provider: f.provider.clone(),
        kind: f.kind.clone(),
        display: f.display.clone(),
        state,
        reason,
    }
}
