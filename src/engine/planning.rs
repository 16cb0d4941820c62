//! Planning a run: resolve the identity, add what the entitlement policy and a joiner's NHIs
//! contribute, read the journal's grace-period facts, and build the plan. Changes nothing.

use super::base::Engine;
use super::error::EngineError;
use crate::pipeline::entitlements as entitlement_live;
use crate::pipeline::plan::{self, Plan, PlanInput};
use crate::pipeline::report::ClosureReport;
use crate::pipeline::resolve::{resolve, Graph};
use crate::pipeline::spans;
use crate::policy::entitlements::explain::Explanation;
use crate::policy::entitlements::Review;
use crate::policy::playbook::{Playbook, SelectionFacts};
use crate::registry::Providers;
use crate::store::journal::{ActionStatus, RunRecord, RunStatus};
use crate::trigger::Trigger;
use chrono::{DateTime, Utc};
use closeout_contract::{Finding, Identity, IdentityKind, IdentityStatus, ResolveContext};
use std::collections::{BTreeMap, BTreeSet};
use tracing::Instrument;

/// A plan together with the graph it came from.
pub struct Planned {
    /// The identity's resolved graph (with the grants a policy adds).
    pub graph: Graph,
    /// The plan built from it.
    pub plan: Plan,
}

impl Engine {
    /// The NHI findings of every service identity the source names `identity` the owner of
    /// (its `manager`), in every provider: a joiner records the identity as their owner.
    async fn nhis_created_for(
        &self,
        providers: &Providers,
        identity: &Identity,
    ) -> Result<Vec<Finding>, EngineError> {
        let mut out = Vec::new();
        let services = self.directory.identities().iter().filter(|s| {
            s.kind == IdentityKind::Service
                && s.status == IdentityStatus::Active
                && s.manager
                    .as_deref()
                    .is_some_and(|m| identity.is_named_by(m))
        });
        for service in services {
            let ctx = ResolveContext {
                identity: service.clone(),
                cutoff: None,
            };
            for provider in providers.iter() {
                out.extend(provider.nhi_findings(&ctx).await?);
            }
        }
        Ok(out)
    }

    /// Explain the identity's entitlements against the policy (with a mover's new attributes
    /// when `to` is given). Reads the providers; changes nothing.
    pub async fn explain(
        &self,
        id: &str,
        to: &BTreeMap<String, String>,
    ) -> Result<Explanation, EngineError> {
        let identity = self.subject(Trigger::Mover, id, to)?;
        let policy = self.policy("policy explain")?;
        let providers = self.providers().await?;
        let ctx = self.context(&identity).await?;
        let graph = resolve(&providers, &ctx)
            .instrument(spans::phase("resolve"))
            .await?;
        let grants = {
            let id = identity.id.clone();
            self.journal.call(move |j| j.grants_of(&id)).await?
        };
        let review = entitlement_live::review_findings(
            &providers,
            &ctx,
            &policy,
            &graph.findings,
            &grants,
            Utc::now(),
            "explain",
        );
        let (missing, unchecked): (Vec<_>, Vec<_>) = review
            .missing
            .into_iter()
            .partition(|m| providers.get(&m.entitlement.provider).is_some());
        let review = Review { missing, ..review };
        Ok(Explanation::new(
            &identity,
            &policy.file,
            &review,
            unchecked.into_iter().map(|m| m.entitlement).collect(),
        ))
    }

    /// Resolve and plan. Changes nothing.
    pub async fn plan(
        &self,
        trigger: Trigger,
        id: &str,
        to: &BTreeMap<String, String>,
    ) -> Result<Planned, EngineError> {
        let identity = self.subject(trigger, id, to)?;
        let book = self.playbook(trigger)?;
        let providers = self.providers().await?;
        self.plan_with(
            &providers,
            &book,
            &identity,
            trigger,
            "preview",
            Utc::now(),
            None,
        )
        .await
    }

    // Every argument is a distinct input of the plan; bundling them would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn plan_with(
        &self,
        providers: &Providers,
        book: &Playbook,
        identity: &Identity,
        trigger: Trigger,
        run_id: &str,
        now: DateTime<Utc>,
        only: Option<&BTreeSet<String>>,
    ) -> Result<Planned, EngineError> {
        let ctx = self.context_before(identity, run_id).await?;
        // A missing or broken policy is bad input: say so before any provider is called.
        let policy = if trigger.needs_policy() {
            Some(self.policy(trigger.as_str())?)
        } else {
            None
        };
        let mut graph = resolve(providers, &ctx)
            .instrument(spans::phase("resolve"))
            .await?;
        // A secret the identity's previous run could not rotate (no rotation strategy), and
        // anything a previous run that did not close left undone or open, is planned again
        // while its live state is open, even when the identity no longer reaches it: the value
        // it could copy is unchanged.
        // The identity's previous run, never this one (a run containing ahead of discovery
        // exists while its whole plan is made).
        let previous_run = {
            let (id, this) = (identity.id.clone(), run_id.to_string());
            self.journal
                .call(move |j| j.latest_run_except(&id, &this))
                .await?
        };
        if let Some(run) = previous_run {
            let previous = stored_plan(&run)?;
            let left_open = self.left_open_by(&run, &previous).await?;
            let known: BTreeSet<String> = graph.findings.iter().map(|f| f.id.clone()).collect();
            let carried = previous
                .needs_strategy
                .iter()
                .map(|n| &n.finding)
                .chain(left_open.iter());
            let mut seen = BTreeSet::new();
            for finding in carried {
                if known.contains(&finding.id) || !seen.insert(finding.id.clone()) {
                    continue;
                }
                let Some(p) = providers.get(&finding.provider) else {
                    continue;
                };
                let state = p.live_state(finding, &ctx).await?;
                if state.is_open() {
                    let mut f = finding.clone();
                    f.state = state;
                    graph.findings.push(f);
                }
            }
            graph.findings.sort_by(|a, b| a.id.cmp(&b.id));
            // A gap the previous run left stays: its run removing the access that exposed it
            // did not make what that access reached known (a Global Administrator's role is
            // gone, the credentials she could have added to any application are not known).
            // Without this a second `apply` would say closed where the first said open.
            graph.carry_gaps(
                &previous.gaps,
                "found by an earlier run of this identity; still unknown",
            );
        }
        // Secrets that name no rotation strategy themselves get the configured rule's.
        self.config.rotation.apply_strategies(&mut graph.findings);
        let mut facts = SelectionFacts::default();
        let mut time_bound = Vec::new();
        if let Some(policy) = &policy {
            let grants = {
                let id = identity.id.clone();
                self.journal.call(move |j| j.grants_of(&id)).await?
            };
            let prepared =
                entitlement_live::prepare(providers, &ctx, policy, &graph, &grants, now, run_id)
                    .await?;
            for e in &prepared.skipped {
                tracing::warn!(
                    "the policy grants {e}, and [providers.{}] is not configured: skipped",
                    e.provider
                );
            }
            graph.findings.extend(prepared.grant_findings);
            facts = prepared.facts;
            time_bound = prepared.time_bound;
        }
        if trigger.records_nhi_owners() {
            let nhis = self.nhis_created_for(providers, identity).await?;
            facts.nhis_created_for = nhis.iter().map(|f| f.id.clone()).collect();
            // One the identity already owns resolved with it: keep that finding, not a copy.
            let known: BTreeSet<String> = graph.findings.iter().map(|f| f.id.clone()).collect();
            graph
                .findings
                .extend(nhis.into_iter().filter(|f| !known.contains(&f.id)));
        }
        let (acted, observed) = self
            .journal
            .call(|j| Ok((j.state_since()?, j.observations()?)))
            .await?;
        // A grace period counts from when Closeout left the finding in the state it is in now,
        // or else from when a run first saw it in that state.
        let state_since: BTreeMap<String, DateTime<Utc>> = graph
            .findings
            .iter()
            .filter_map(|f| {
                let matching = |m: &BTreeMap<String, (String, DateTime<Utc>)>| {
                    m.get(&f.id)
                        .filter(|(state, _)| state == f.state.as_str())
                        .map(|(_, at)| *at)
                };
                matching(&acted)
                    .or_else(|| matching(&observed))
                    .map(|at| (f.id.clone(), at))
            })
            .collect();
        let manager = self.directory.manager_of(identity);
        let plan = plan::build(&PlanInput {
            playbook: book,
            identity,
            manager,
            findings: &graph.findings,
            run_id,
            now,
            state_since: &state_since,
            trigger,
            facts: &facts,
            time_bound: &time_bound,
            only,
            exposures: &graph.exposures,
            gaps: &graph.gaps,
        })?;
        Ok(Planned { graph, plan })
    }
}

/// The plan a run stored when it started.
impl Engine {
    /// What an identity's previous run that did not close left to do: the findings of its plan
    /// whose action did not finish (failed, interrupted, never started) or that its
    /// verification found still open. A run of another trigger (an incident after a failed
    /// leaver) plans from a fresh resolution, which no longer finds a secret through the person
    /// once the failed run removed her access; the value she could copy is unchanged, so the new
    /// plan must carry it (closed means closed). A closed run leaves nothing.
    async fn left_open_by(
        &self,
        run: &RunRecord,
        plan: &Plan,
    ) -> Result<Vec<Finding>, EngineError> {
        if run.status == RunStatus::Closed {
            return Ok(Vec::new());
        }
        let id = run.id.clone();
        let actions = self.journal.call(move |j| j.actions(&id)).await?;
        let finished: BTreeSet<String> = actions
            .iter()
            .filter(|a| matches!(a.status, ActionStatus::Done | ActionStatus::AlreadyDone))
            .map(|a| a.key.clone())
            .collect();
        let verified_open: BTreeSet<String> = run
            .report_json
            .as_deref()
            .and_then(|r| serde_json::from_str::<ClosureReport>(r).ok())
            .map(|r| r.open.into_iter().map(|o| o.id).collect())
            .unwrap_or_default();
        // A finding with several actions comes once per action; the caller keeps the first.
        Ok(plan
            .actions()
            .filter(|a| !finished.contains(&a.key) || verified_open.contains(&a.finding.id))
            .map(|a| a.finding.clone())
            .collect())
    }
}

pub(crate) fn stored_plan(run: &RunRecord) -> Result<Plan, EngineError> {
    serde_json::from_str(&run.plan_json).map_err(|e| EngineError::StoredPlan {
        run: run.id.clone(),
        message: e.to_string(),
    })
}
