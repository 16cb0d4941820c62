//! The entitlement review against live providers: which findings are entitlements (each provider
//! names them), the findings missing entitlements will be once granted, the selection facts a
//! mover or joiner plan is built from, and the policy verification that closes such a run.

use crate::pipeline::plan::PlannedGrant;
use crate::pipeline::resolve::Graph;
use crate::pipeline::verify::{OpenFinding, Verification};
use crate::policy::entitlements::policy::EntitlementPolicy;
use crate::policy::entitlements::review::{only_through, review, Review, Standing};
use crate::policy::playbook::{EntitlementStanding, SelectionFacts};
use crate::registry::Providers;
use crate::store::grants::GrantRecord;
use chrono::{DateTime, Utc};
use closeout_contract::{Entitlement, Finding, ProviderError, ResolveContext, State};
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::{BTreeMap, BTreeSet};

/// How many grant findings are built at once (each provider's own gate still applies).
const GRANT_LOOKUPS: usize = 4;

/// Each finding a provider names as an entitlement, with that entitlement.
pub fn live_entitlements(
    providers: &Providers,
    findings: &[Finding],
) -> Vec<(Finding, Entitlement)> {
    findings
        .iter()
        .filter(|f| f.state == State::Active)
        .filter_map(|f| {
            let e = providers.get(&f.provider)?.entitlement(f)?;
            Some((f.clone(), e))
        })
        .collect()
}

/// The identity's review against the policy, from already resolved findings.
pub fn review_findings(
    providers: &Providers,
    ctx: &ResolveContext,
    policy: &EntitlementPolicy,
    findings: &[Finding],
    grants: &[GrantRecord],
    now: DateTime<Utc>,
    run_id: &str,
) -> Review {
    let required = policy.required(&ctx.identity);
    review(
        &required,
        live_entitlements(providers, findings),
        grants,
        now,
        run_id,
    )
}

/// The findings that still carry access an entitlement in `removed` gave, as their provider
/// judges ([`closeout_contract::Provider::session_carries`]; only findings of a provider that
/// loses an entitlement are asked).
fn sessions_losing_access(
    providers: &Providers,
    removed: &[&Finding],
    findings: &[Finding],
) -> BTreeSet<String> {
    findings
        .iter()
        .filter(|f| {
            removed.iter().any(|e| {
                e.provider == f.provider
                    && providers
                        .get(&f.provider)
                        .is_none_or(|p| p.session_carries(f, e))
            })
        })
        .map(|f| f.id.clone())
        .collect()
}

/// What a mover or joiner plan is built from, beyond the resolved findings.
#[derive(Debug, Clone, Default)]
pub struct EntitlementPlan {
    /// The identity's live entitlements against the policy, and the missing ones.
    pub review: Review,
    /// The findings the missing entitlements will be once granted (state deleted).
    pub grant_findings: Vec<Finding>,
    /// The `entitlement` and `reach` facts the playbook's selectors match on.
    pub facts: SelectionFacts,
    /// Time-bound grants the run records once granted (or at once, when already held).
    pub time_bound: Vec<PlannedGrant>,
    /// Entitlements the policy requires in a provider that is not configured.
    pub skipped: Vec<Entitlement>,
}

/// Review the identity's entitlements and prepare the facts a plan selects on: the standing of
/// every live entitlement, the grant findings of the missing ones (read from the providers),
/// what is reachable only through entitlements being removed, and which providers lose access.
pub async fn prepare(
    providers: &Providers,
    ctx: &ResolveContext,
    policy: &EntitlementPolicy,
    graph: &Graph,
    grants: &[GrantRecord],
    now: DateTime<Utc>,
    run_id: &str,
) -> Result<EntitlementPlan, ProviderError> {
    let review = review_findings(providers, ctx, policy, &graph.findings, grants, now, run_id);
    let mut facts = SelectionFacts::default();
    for live in &review.live {
        let standing = match live.standing {
            Standing::Justified { .. } => EntitlementStanding::Justified,
            Standing::Unjustified => EntitlementStanding::Unjustified,
            Standing::Expired { .. } => EntitlementStanding::Expired,
        };
        facts.entitlements.insert(live.finding.id.clone(), standing);
    }
    let removed: Vec<&Finding> = review.removable().map(|l| &l.finding).collect();
    facts.only_through_removed = only_through(&removed, &graph.findings);
    facts.sessions_losing_access = sessions_losing_access(providers, &removed, &graph.findings);

    let (grantable, skipped): (Vec<_>, Vec<_>) = review
        .missing
        .iter()
        .partition(|m| providers.get(&m.entitlement.provider).is_some());
    let grant_findings: Vec<Finding> = stream::iter(grantable.iter().map(|m| {
        let provider = providers.get(&m.entitlement.provider);
        async move {
            match provider {
                Some(p) => p.grant_finding(ctx, &m.entitlement).await.map(|mut f| {
                    f.state = State::Deleted;
                    f
                }),
                None => unreachable_provider(&m.entitlement),
            }
        }
    }))
    .buffered(GRANT_LOOKUPS)
    .try_collect()
    .await?;
    for f in &grant_findings {
        facts
            .entitlements
            .insert(f.id.clone(), EntitlementStanding::Missing);
    }

    let mut time_bound = Vec::new();
    for (m, f) in grantable.iter().zip(&grant_findings) {
        if let Some(expires_at) = m.expires_at {
            time_bound.push(PlannedGrant {
                finding_id: f.id.clone(),
                needs_grant: true,
                record: GrantRecord {
                    entitlement: m.entitlement.clone(),
                    rule: m.rules.first().cloned().unwrap_or_default(),
                    granted_at: now,
                    expires_at,
                    run_id: run_id.to_string(),
                },
            });
        }
    }
    for record in &review.unrecorded {
        if let Some(live) = review
            .live
            .iter()
            .find(|l| l.entitlement == record.entitlement)
        {
            time_bound.push(PlannedGrant {
                finding_id: live.finding.id.clone(),
                needs_grant: false,
                record: record.clone(),
            });
        }
    }
    Ok(EntitlementPlan {
        skipped: skipped.iter().map(|m| m.entitlement.clone()).collect(),
        review,
        grant_findings,
        facts,
        time_bound,
    })
}

fn unreachable_provider(e: &Entitlement) -> Result<Finding, ProviderError> {
    Err(ProviderError::Config {
        provider: "closeout",
        message: format!("provider {} is not configured", e.provider),
    })
}

/// An acted-on finding and the state its action should have left it in.
pub struct Expected<'a> {
    /// The finding acted on.
    pub finding: &'a Finding,
    /// The state the action should have left it in.
    pub state: State,
}

/// Verify a mover or joiner from live state: every action left its finding in the expected
/// state (read back from the provider), and the live entitlements equal the policy's for the
/// identity's (new) attributes — nothing unjustified or expired held, nothing required missing.
pub async fn verify_against_policy(
    providers: &Providers,
    ctx: &ResolveContext,
    policy: &EntitlementPolicy,
    grants: &[GrantRecord],
    expected: &[Expected<'_>],
) -> Result<Verification, ProviderError> {
    let graph = crate::pipeline::resolve::resolve(providers, ctx).await?;
    let mut final_states: BTreeMap<String, State> = graph
        .findings
        .iter()
        .map(|f| (f.id.clone(), f.state))
        .collect();
    let gone: Vec<&Finding> = {
        let mut seen = BTreeSet::new();
        expected
            .iter()
            .map(|e| e.finding)
            .filter(|f| !final_states.contains_key(&f.id) && seen.insert(f.id.clone()))
            .collect()
    };
    let live: Vec<(String, State)> = stream::iter(gone)
        .map(|f| async move {
            let state = match providers.get(&f.provider) {
                Some(p) => p.live_state(f, ctx).await?,
                None => State::Unknown,
            };
            Ok::<_, ProviderError>((f.id.clone(), state))
        })
        .buffer_unordered(GRANT_LOOKUPS)
        .try_collect()
        .await?;
    final_states.extend(live);

    let mut open = Vec::new();
    for e in expected {
        let got = final_states
            .get(&e.finding.id)
            .copied()
            .unwrap_or(State::Unknown);
        let reached = if e.state.is_open() {
            got == e.state
        } else {
            !got.is_open()
        };
        if !reached {
            open.push(OpenFinding {
                id: e.finding.id.clone(),
                provider: e.finding.provider.clone(),
                kind: e.finding.kind.clone(),
                display: e.finding.display.clone(),
                state: got,
                reason: format!("expected {} after the run, live state is {got}", e.state),
            });
        }
    }
    let review = review_findings(
        providers,
        ctx,
        policy,
        &graph.findings,
        grants,
        Utc::now(),
        "verify",
    );
    for l in review.removable() {
        if open.iter().any(|o| o.id == l.finding.id) {
            continue;
        }
        let reason = match &l.standing {
            Standing::Expired { expires_at, .. } => {
                format!("time-bound grant expired at {expires_at} and is still held")
            }
            _ => "held, and no rule of the entitlement policy justifies it".into(),
        };
        open.push(OpenFinding {
            id: l.finding.id.clone(),
            provider: l.finding.provider.clone(),
            kind: l.finding.kind.clone(),
            display: l.finding.display.clone(),
            state: l.finding.state,
            reason,
        });
    }
    for m in &review.missing {
        if providers.get(&m.entitlement.provider).is_none() {
            continue;
        }
        open.push(OpenFinding {
            id: format!(
                "{}:{}:{}",
                m.entitlement.provider, m.entitlement.kind, m.entitlement.target
            ),
            provider: m.entitlement.provider.clone(),
            kind: m.entitlement.kind.clone(),
            display: m.entitlement.to_string(),
            state: State::Deleted,
            reason: format!("required by rule {} and not held", m.rules.join(", ")),
        });
    }
    open.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Verification {
        graph,
        final_states,
        probes: Vec::new(),
        open,
        accepted: Vec::new(),
    })
}
