//! Containment ahead of discovery: a run whose playbook starts with a `contain` stage, applied
//! without anybody confirming its plan first, contains the identity's own accounts (sign-ins,
//! keys, sessions) as soon as the providers name them
//! ([`closeout_contract::Provider::resolve_accounts`]), while the whole resolution — groups,
//! roles, policies, every secret the accounts reach — goes on. Time to containment is then a
//! few round trips, whatever the size of the account.
//!
//! The run is created with a *contain-only* plan ([`Plan::contain_only`]): that stage's actions
//! on those findings, with the idempotency keys the whole plan gives the same actions. When the
//! whole resolution ends, its plan absorbs them ([`Plan::absorb`]), replaces the stored one, and
//! the run goes on as any other (the actions already taken are found finished).
//!
//! Invariants:
//! - Nothing but the `contain` stage runs from a contain-only plan, and no contain-only plan is
//!   ever verified: a plan that never saw the secrets cannot call them closed. A run left with
//!   one (a crash, a resolution that failed, a blast radius to confirm) plans the rest when it
//!   is resumed, taken over or applied again, before anything else ([`Engine::complete_contain_only`]).
//! - Nothing runs ahead of a person's confirmation: not without `--yes`, not when the run needs
//!   an approval, not for a protected identity, not for a run limited to some findings.
//! - The run's `contained_at` is set ahead only when every configured provider named the
//!   identity's accounts: until then some of its accounts may still sign in.

use super::base::Engine;
use super::error::EngineError;
use super::planning::Planned;
use super::run::ApplyOptions;
use crate::pipeline::apply::ActionResult;
use crate::pipeline::plan::{self, Plan, PlanInput, CONTAIN};
use crate::pipeline::progress::Progress;
use crate::pipeline::report::ClosureReport;
use crate::pipeline::resolve::{resolve_accounts, Accounts};
use crate::pipeline::spans;
use crate::policy::playbook::{Playbook, SelectionFacts};
use crate::registry::Providers;
use crate::store::journal::{RunRecord, RunStatus};
use crate::trigger::Trigger;
use chrono::Utc;
use closeout_contract::{Finding, Identity};
use std::collections::BTreeMap;
use tracing::Instrument;

/// A run that contained ahead of discovery: its record, its contain-only plan, and the
/// accounts' findings as first read (before containment changed them).
pub(super) struct Ahead {
    run: RunRecord,
    plan: Plan,
    identity: Identity,
    findings: Vec<Finding>,
}

/// The findings of a stored graph (the journal keeps a run's graphs as JSON).
#[derive(serde::Deserialize)]
struct StoredFindings {
    findings: Vec<Finding>,
}

impl Engine {
    /// Whether a run may contain ahead of discovery: the site allows it, the playbook starts
    /// with `contain`, and no person has to see the plan or approve it first.
    pub(super) fn may_contain_ahead(
        &self,
        book: &Playbook,
        options: &ApplyOptions,
        identity: &Identity,
    ) -> bool {
        self.config.execution.contain_ahead
            && book
                .stages
                .first()
                .is_some_and(|s| s.name == CONTAIN && !s.verify)
            && options.yes
            && !options.require_approval
            && options.only_findings.is_none()
            && !identity.is_protected()
    }

    /// The identity's own accounts, from every provider that can name them ahead of the
    /// whole resolution; `None` when none can, or when one fails (the whole resolution will
    /// say why). Resolved before the whole resolution starts: a provider hands what it read
    /// here to that resolution (`closeout_contract::handoff`), which so plans from the accounts
    /// as they were before containment changed them.
    pub(super) async fn accounts_ahead(
        &self,
        providers: &Providers,
        identity: &Identity,
        run_id: &str,
    ) -> Result<Option<Accounts>, EngineError> {
        let ctx = self.context_before(identity, run_id).await?;
        match resolve_accounts(providers, &ctx)
            .instrument(spans::phase("resolve-accounts"))
            .await
        {
            Ok(accounts) => Ok(accounts),
            Err(e) => {
                tracing::warn!(identity = %identity.id, error = %e, "the identity's accounts could not be named ahead of the whole resolution; containment waits for it");
                Ok(None)
            }
        }
    }

    /// Create the run with the contain-only plan of what the accounts hold, and run it. `None`
    /// (nothing created, nothing done) when there is nothing to contain, or when containing it
    /// would need a person (an approval, the blast radius).
    // Every argument is a distinct input of the run; bundling them would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn contain_ahead(
        &self,
        providers: &Providers,
        book: &Playbook,
        identity: &Identity,
        trigger: Trigger,
        run_id: &str,
        options: &ApplyOptions,
        now: chrono::DateTime<Utc>,
        accounts: Accounts,
        progress: &Progress,
    ) -> Result<Option<Ahead>, EngineError> {
        let state_since = BTreeMap::new();
        let facts = SelectionFacts::default();
        let plan = plan::contain_only(&PlanInput {
            playbook: book,
            identity,
            manager: self.directory.manager_of(identity),
            findings: &accounts.graph.findings,
            run_id,
            now,
            state_since: &state_since,
            trigger,
            facts: &facts,
            time_bound: &[],
            only: None,
            exposures: &[],
            gaps: &[],
        })?;
        let Some(plan) = plan.filter(|p| {
            p.action_count() > 0 && !p.exceeds_limit() && !p.actions().any(|a| a.requires_approval)
        }) else {
            return Ok(None);
        };
        let mut run = self
            .begin_run(identity, book, options, &plan, &accounts.graph, now)
            .await?;
        progress.message("containing the identity's accounts while discovery goes on");
        // Containment's calls go ahead of the whole resolution's at each provider's gate.
        let failed = closeout_contract::gate::urgent(
            self.run_contain_only(providers, &run, identity, &plan, progress),
        )
        .await?;
        if !failed && accounts.every_provider {
            self.mark_contained(&mut run).await?;
        }
        Ok(Some(Ahead {
            run,
            plan,
            identity: identity.clone(),
            findings: accounts.graph.findings,
        }))
    }

    /// Run the contain-only plan's stages; whether an action failed.
    async fn run_contain_only(
        &self,
        providers: &Providers,
        run: &RunRecord,
        identity: &Identity,
        plan: &Plan,
        progress: &Progress,
    ) -> Result<bool, EngineError> {
        let executor = self.executor(providers, progress);
        let mut failed = false;
        for stage in &plan.stages {
            progress.stage(&stage.name, stage.actions.len());
            let results = executor
                .run_stage(&run.id, &identity.id, &stage.actions)
                .instrument(spans::phase("contain-ahead"))
                .await?;
            progress.finish();
            failed |= results.values().any(ActionResult::is_failure);
        }
        Ok(failed)
    }

    /// Resume a run left with its contain-only plan: plan the rest now, under its id.
    pub(super) async fn complete_contain_only(
        &self,
        providers: &Providers,
        run: RunRecord,
        plan: Plan,
        identity: Identity,
        confirm_actions: Option<usize>,
        progress: &Progress,
    ) -> Result<ClosureReport, EngineError> {
        let book = self.playbook(run.trigger)?;
        let planned = self
            .plan_with(
                providers,
                &book,
                &identity,
                run.trigger,
                &run.id,
                Utc::now(),
                None,
            )
            .await;
        // The accounts as first read, kept with the run when it started.
        let id = run.id.clone();
        let before = self.journal.call(move |j| j.graph(&id, "before")).await?;
        let findings = match before.map(|g| serde_json::from_str::<StoredFindings>(&g)) {
            Some(Ok(graph)) => graph.findings,
            _ => plan.actions().map(|a| a.finding.clone()).collect(),
        };
        let ahead = Ahead {
            run,
            plan,
            identity,
            findings,
        };
        self.complete_ahead(providers, ahead, planned, confirm_actions, progress)
            .await
    }

    /// The whole resolution of a run that contained ahead ended (`planned`): replace the
    /// contain-only plan by the whole one (which absorbs it), within the blast radius, and run
    /// it. A failure to plan, or a blast radius to confirm, leaves the run failed with its
    /// contain-only plan: the next apply or resume plans again.
    pub(super) async fn complete_ahead(
        &self,
        providers: &Providers,
        ahead: Ahead,
        planned: Result<Planned, EngineError>,
        confirm_actions: Option<usize>,
        progress: &Progress,
    ) -> Result<ClosureReport, EngineError> {
        let Ahead {
            run,
            plan: ahead,
            identity,
            findings: first_read,
        } = ahead;
        let Planned {
            mut graph,
            mut plan,
        } = match planned {
            Ok(planned) => planned,
            Err(e) => return Err(self.stop_contain_only(&run, &identity, e).await),
        };
        plan.absorb(&ahead);
        // What the run found is what it saw before it changed anything: the accounts as read
        // ahead of containment, the rest as the whole resolution read it.
        let mut by_id: BTreeMap<String, Finding> = graph
            .findings
            .drain(..)
            .map(|f| (f.id.clone(), f))
            .collect();
        for f in first_read {
            by_id.insert(f.id.clone(), f);
        }
        graph.findings = by_id.into_values().collect();
        if plan.exceeds_limit() && confirm_actions != Some(plan.action_count()) {
            let limit = EngineError::BlastRadius {
                actions: plan.action_count(),
                limit: plan.max_actions.unwrap_or(0),
            };
            return Err(self.stop_contain_only(&run, &identity, limit).await);
        }
        let plan_json = serde_json::to_string(&plan).map_err(|e| EngineError::StoredPlan {
            run: run.id.clone(),
            message: e.to_string(),
        })?;
        let graph_json = serde_json::to_string(&graph).map_err(|e| EngineError::StoredPlan {
            run: run.id.clone(),
            message: e.to_string(),
        })?;
        let (id, stored) = (run.id.clone(), plan_json.clone());
        self.journal
            .call(move |j| {
                j.set_plan(&id, &stored)?;
                j.save_graph(&id, "before", &graph_json)
            })
            .await?;
        self.observe(&graph, Utc::now()).await?;
        self.audit_event(
            "run.planned",
            Some(&run.id),
            &identity,
            serde_json::json!({
                "actions": plan.action_count(),
                "plan_sha256": super::run::sha256_hex(&plan_json),
            }),
        )
        .await?;
        let run = RunRecord { plan_json, ..run };
        self.execute_run(providers, run, &identity, &plan, &graph.findings, progress)
            .await
    }

    /// Leave a run that contained ahead failed with its contain-only plan (audited as finished
    /// failed, as any failed run), and hand `error` back.
    async fn stop_contain_only(
        &self,
        run: &RunRecord,
        identity: &Identity,
        error: EngineError,
    ) -> EngineError {
        let id = run.id.clone();
        let stopped = self
            .journal
            .call(move |j| j.set_run_status(&id, RunStatus::Failed, Some(Utc::now())))
            .await;
        if let Err(e) = stopped {
            tracing::error!(run = %run.id, error = %e, "cannot mark the run failed; a resume plans it again");
        }
        let audited = self
            .audit_event(
                "run.finished",
                Some(&run.id),
                identity,
                serde_json::json!({
                    "status": RunStatus::Failed.as_str(),
                    "contain_only": true,
                    "reason": error.to_string(),
                }),
            )
            .await;
        if let Err(e) = audited {
            tracing::error!(run = %run.id, error = %e, "cannot audit the run's stop");
        }
        error
    }
}
