//! Verify: resolve the identity again from live state, read the live state of everything the run
//! acted on, and probe old credentials where the provider can. Never trusts the journal.

use crate::config::acceptance::Acceptance;
use crate::pipeline::resolve::{gap_of, resolve, Graph};
use crate::registry::Providers;
use closeout_contract::{Finding, Gap, ProbeOutcome, ProviderError, ResolveContext, State};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How many live-state reads and probes run at once (each provider's own gate still applies).
const VERIFY_CONCURRENCY: usize = 8;

/// A finding closure does not hold for: still usable, or its state unknown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenFinding {
    /// The finding id.
    pub id: String,
    /// Its provider.
    pub provider: String,
    /// Its kind.
    pub kind: String,
    /// How the finding is shown to a person.
    pub display: String,
    /// Its live state: `active`, `unknown` (not read or not evaluated), or what the provider
    /// reports when a probe shows the credential still works despite it.
    pub state: State,
    /// Why it is open: still active after the run, not verified (a gap), or a probe shows it still
    /// works.
    pub reason: String,
}

/// One probe of an acted-on credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// The finding probed.
    pub finding: String,
    /// What was tried and whether the credential is proven dead.
    #[serde(flatten)]
    pub outcome: ProbeOutcome,
}

/// What verification found: the identity resolved again from live state, the live state of
/// everything acted on, the probes, and what stays open.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// The graph as resolved after the run.
    pub graph: Graph,
    /// The live state of every finding in the graph or acted on.
    pub final_states: BTreeMap<String, State>,
    /// Probes of acted-on findings, sorted by finding id.
    pub probes: Vec<ProbeRecord>,
    /// Everything still usable, or unknown; empty means closed.
    pub open: Vec<OpenFinding>,
    /// Gaps (what a provider could not list, read or evaluate) the site accepted by name:
    /// not open, and always listed.
    pub accepted: Vec<AcceptedGap>,
}

/// A gap closure did not count because the site accepted it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AcceptedGap {
    /// The gap.
    pub gap: Gap,
    /// Why the site accepts it (from `accept_unverified`).
    pub reason: String,
}

impl Verification {
    /// Whether nothing is open (every gap accepted, nothing active, no probe succeeded).
    pub fn is_closed(&self) -> bool {
        self.open.is_empty()
    }

    /// Carry forward the gaps found when the run was planned. Removing the access that exposed
    /// a gap does not make it known: what that access reached before the run is as unknown as
    /// it was, so each planned gap the live graph no longer shows is added back (open, unless
    /// settled as accepted). One is dropped only when verification proves the unknown is now
    /// known: the live graph still reaches the gap's resource through a finding of the same
    /// provider that is no gap (the provider could list, read or evaluate it this time).
    pub fn carry_gaps(&mut self, planned: &[Gap]) {
        self.graph.carry_gaps(
            planned,
            "found when the run was planned; the access that exposed it is gone now, but what it reached before is still unknown",
        );
    }

    /// Settle the graph's gaps: each one an acceptance covers is listed as accepted and is not
    /// open; every other one is open (unknown is not closed).
    pub fn settle_gaps(&mut self, acceptances: &[Acceptance]) {
        for f in &self.graph.findings {
            let Some(gap) = gap_of(f) else { continue };
            match acceptances.iter().find(|a| a.covers(&gap)) {
                Some(a) => {
                    self.open.retain(|o| o.id != f.id);
                    self.accepted.push(AcceptedGap {
                        gap,
                        reason: a.reason.clone(),
                    });
                }
                None => {
                    if !self.open.iter().any(|o| o.id == f.id) {
                        self.open.push(open_finding_of_gap(f));
                    }
                }
            }
        }
        self.open.sort_by(|a, b| a.id.cmp(&b.id));
        self.accepted.sort_by(|a, b| a.gap.cmp(&b.gap));
        self.accepted.dedup();
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
        .map(|f| match gap_of(f) {
            Some(_) => open_finding_of_gap(f),
            None => open_finding(
                f,
                f.state,
                reason_for(f, "still bound and usable after the run"),
            ),
        })
        .collect();
    for (f, state) in live_states_of_gone(providers, ctx, acted, &final_states).await? {
        final_states.insert(f.id.clone(), state);
        if state.is_open() {
            open.push(open_finding(
                f,
                state,
                reason_for(f, "live state is still usable"),
            ));
        }
    }
    let probes = probe_acted(providers, acted, &final_states, &mut open).await?;
    open.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Verification {
        graph,
        final_states,
        probes,
        open,
        accepted: Vec::new(),
    })
}

/// Verification scoped to what a run acted on (a `rotation` run): each acted finding must be
/// in the state its action leaves, or no longer usable at all (a rotated access key is retired:
/// inactive or deleted). The identity's other access is legitimately active and is not open;
/// the graph in the result keeps only the acted findings so the report is about them.
pub async fn verify_acted(
    providers: &Providers,
    ctx: &ResolveContext,
    acted: &[(Finding, State)],
) -> Result<Verification, ProviderError> {
    let mut graph = resolve(providers, ctx).await?;
    let expected: BTreeMap<&str, State> = acted.iter().map(|(f, s)| (f.id.as_str(), *s)).collect();
    graph
        .findings
        .retain(|f| expected.contains_key(f.id.as_str()));
    let mut final_states: BTreeMap<String, State> = graph
        .findings
        .iter()
        .map(|f| (f.id.clone(), f.state))
        .collect();
    let findings: Vec<Finding> = acted.iter().map(|(f, _)| f.clone()).collect();
    for (f, state) in live_states_of_gone(providers, ctx, &findings, &final_states).await? {
        final_states.insert(f.id.clone(), state);
    }
    let mut open = Vec::new();
    let mut seen = BTreeSet::new();
    for f in findings.iter().filter(|f| seen.insert(f.id.clone())) {
        let state = final_states.get(&f.id).copied().unwrap_or(State::Unknown);
        let want = expected
            .get(f.id.as_str())
            .copied()
            .unwrap_or(State::Rotated);
        if state != want && state.is_open() {
            open.push(open_finding(
                f,
                state,
                reason_for(
                    f,
                    &format!("expected {want} after the run, live state is {state}"),
                ),
            ));
        }
    }
    let probes = probe_acted(providers, &findings, &final_states, &mut open).await?;
    open.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Verification {
        graph,
        final_states,
        probes,
        open,
        accepted: Vec::new(),
    })
}

/// The live state of each acted finding the graph no longer shows (read one by one, with
/// bounded concurrency).
async fn live_states_of_gone<'a>(
    providers: &Providers,
    ctx: &ResolveContext,
    acted: &'a [Finding],
    known: &BTreeMap<String, State>,
) -> Result<Vec<(&'a Finding, State)>, ProviderError> {
    let mut seen = BTreeSet::new();
    let gone: Vec<&Finding> = acted
        .iter()
        .filter(|f| !known.contains_key(&f.id) && seen.insert(f.id.clone()))
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
    live.into_iter().map(|(f, s)| Ok((f, s?))).collect()
}

/// Probe every acted-on finding; a probe that shows a credential still works opens it.
async fn probe_acted(
    providers: &Providers,
    acted: &[Finding],
    final_states: &BTreeMap<String, State>,
    open: &mut Vec<OpenFinding>,
) -> Result<Vec<ProbeRecord>, ProviderError> {
    let mut probed = BTreeSet::new();
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
    probes.sort_by(|a, b| a.finding.cmp(&b.finding));
    Ok(probes)
}

/// Why `f` is open: for a secret no rotation strategy covers, that (it was not rotated, so the
/// value a leaver copied is still the value); otherwise `otherwise`.
fn reason_for(f: &Finding, otherwise: &str) -> String {
    match closeout_contract::rotation_strategy::needs_strategy(f) {
        Some(reason) => format!(
            "not rotated, {}: {reason}",
            closeout_contract::rotation_strategy::NEEDS
        ),
        None => otherwise.to_string(),
    }
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

/// The open finding a gap is: unknown, with the provider's reason.
fn open_finding_of_gap(f: &Finding) -> OpenFinding {
    OpenFinding {
        id: f.id.clone(),
        provider: f.provider.clone(),
        kind: f.kind.clone(),
        display: f.display.clone(),
        state: State::Unknown,
        reason: format!(
            "not verified: {} (accept it by name with accept_unverified kind = {:?} if the gap is acceptable)",
            f.attr("reason").unwrap_or("the provider could not tell"),
            f.attr("gap").unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::resolve::gap_finding;
    use closeout_contract::Identity;

    fn verification_with(gaps: &[Gap]) -> Verification {
        let findings: Vec<Finding> = gaps.iter().map(gap_finding).collect();
        Verification {
            graph: Graph {
                identity: Identity {
                    id: "E1".into(),
                    email: "a@example.com".into(),
                    name: "A".into(),
                    kind: closeout_contract::IdentityKind::Human,
                    status: closeout_contract::IdentityStatus::Terminated,
                    manager: None,
                    department: None,
                    role: None,
                    location: None,
                    employment_type: None,
                    tags: Default::default(),
                },
                accounts: vec![],
                findings,
                warnings: vec![],
                gaps: gaps.to_vec(),
                exposures: vec![],
            },
            final_states: BTreeMap::new(),
            probes: vec![],
            open: vec![],
            accepted: vec![],
        }
    }

    fn gap(kind: &str) -> Gap {
        Gap {
            provider: "aws".into(),
            kind: kind.into(),
            resource: "alice".into(),
            reason: "the endpoint does not serve the listing".into(),
            paths: vec![],
        }
    }

    #[test]
    fn a_planned_gap_the_live_graph_no_longer_shows_stays_open_unless_accepted() {
        let mut v = verification_with(&[]);
        v.carry_gaps(&[gap("secrets-engine")]);
        v.settle_gaps(&[]);
        assert!(!v.is_closed(), "the run removed the path, not the unknown");
        assert!(
            v.open[0].reason.contains("found when the run was planned"),
            "{}",
            v.open[0].reason
        );
        let mut v = verification_with(&[]);
        v.carry_gaps(&[gap("secrets-engine")]);
        v.settle_gaps(&[Acceptance {
            provider: None,
            kind: "secrets-engine".into(),
            resource: None,
            reason: "holds no credential".into(),
        }]);
        assert!(v.is_closed());
        assert_eq!(v.accepted.len(), 1);
    }

    #[test]
    fn a_planned_gap_still_in_the_live_graph_is_not_doubled_and_a_known_one_is_dropped() {
        let mut v = verification_with(&[gap("policy-document")]);
        v.carry_gaps(&[gap("policy-document")]);
        assert_eq!(v.graph.findings.len(), 1);
        // The provider read the resource this time: a finding on it that is no gap.
        let mut v = verification_with(&[]);
        let mut known = gap_finding(&gap("policy-document"));
        known.id = "aws:secret:alice".into();
        known.kind = "secret".into();
        v.graph.findings.push(known);
        v.carry_gaps(&[gap("policy-document")]);
        v.settle_gaps(&[]);
        assert!(v.is_closed(), "{:?}", v.open);
    }

    #[test]
    fn an_unaccepted_gap_is_open_and_an_accepted_one_is_listed_not_open() {
        let mut v = verification_with(&[gap("service-credential"), gap("kv-v1-mount")]);
        let accept = [Acceptance {
            provider: Some("aws".into()),
            kind: "service-credential".into(),
            resource: None,
            reason: "none issued in this account".into(),
        }];
        v.settle_gaps(&accept);
        assert!(!v.is_closed(), "one gap is unknown, so not closed");
        assert_eq!(v.open.len(), 1);
        assert!(
            v.open[0].reason.contains("not verified"),
            "{}",
            v.open[0].reason
        );
        assert!(
            v.open[0].reason.contains("kv-v1-mount"),
            "says how to accept it"
        );
        assert_eq!(v.accepted.len(), 1);
        assert_eq!(v.accepted[0].gap.kind, "service-credential");
        assert_eq!(v.accepted[0].reason, "none issued in this account");
        v.settle_gaps(&accept);
        assert_eq!(
            (v.open.len(), v.accepted.len()),
            (1, 1),
            "settling twice adds nothing"
        );
    }
}
