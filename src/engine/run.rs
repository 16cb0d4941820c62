//! Running a plan: [`Engine::apply`] (resume an unfinished run of the identity and trigger, or
//! plan, confirm and start one), stages in order with approvals and the blast-radius rule,
//! [`Engine::resume`] and [`Engine::approve`], then verification as the trigger's
//! [`Closure`] defines it and the closure report.

use super::base::Engine;
use super::error::EngineError;
use super::planning::{stored_plan, Planned};
use crate::pipeline::apply::{ActionResult, Executor};
use crate::pipeline::entitlements::{self as entitlement_live, Expected};
use crate::pipeline::plan::{Plan, CONTAIN};
use crate::pipeline::progress::Progress;
use crate::pipeline::report::{self, ClosureReport, ReportInput};
use crate::pipeline::resolve::Graph;
use crate::pipeline::spans;
use crate::pipeline::verify::{verify, verify_acted, Verification};
use crate::registry::Providers;
use crate::store::journal::{ActionStatus, RunRecord, RunStatus};
use crate::trigger::{Closure, Trigger};
use chrono::{DateTime, Utc};
use closeout_contract::reuse::{self, Reuse};
use closeout_contract::{Finding, Identity, ResolveContext, State};
use std::collections::{BTreeMap, BTreeSet};
use tracing::Instrument;

/// How to apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Skip the interactive confirmation of the plan (`--yes`); also when resuming an interrupted
    /// run. The blast-radius confirmation is still required.
    pub yes: bool,
    /// Allow acting on a protected identity (`--override-protected`); without it, applying to one
    /// fails with [`EngineError::Protected`]. The override is recorded on the run and in the audit
    /// log.
    pub override_protected: bool,
    /// Explicit confirmation of a plan above the blast-radius limit: must equal its size.
    pub confirm_actions: Option<usize>,
    /// When the triggering event took effect (default: now).
    pub effective_at: Option<DateTime<Utc>>,
    /// Wait for an approval before the first stage, whatever the playbook says (the service's
    /// policy for triggers that are not applied automatically, and for protected identities).
    pub require_approval: bool,
    /// Act only on these finding ids (a `rotation` run: the findings the rotation policy made
    /// due); `None`: every finding the playbook selects.
    pub only_findings: Option<BTreeSet<String>>,
    /// A mover's new attributes (`department` → `Finance`), applied over the source's.
    pub to: BTreeMap<String, String>,
    /// The id a new run takes (from [`new_run_id`]; default: a fresh one). The service records
    /// it on its event before applying, so whoever takes the event over finds the run. An
    /// unfinished run of the identity and trigger is resumed under its own id instead.
    pub run_id: Option<String>,
}

impl Engine {
    /// Apply the trigger's playbook to the identity: resume an unfinished run of the same
    /// identity and trigger, or resolve, plan, confirm and run a new one.
    pub async fn apply(
        &self,
        trigger: Trigger,
        id: &str,
        options: &ApplyOptions,
        confirm: &mut (dyn FnMut(&Plan) -> Result<bool, EngineError> + Send),
        progress: &Progress,
    ) -> Result<ClosureReport, EngineError> {
        let identity = self.subject(trigger, id, &options.to)?;
        let lease_on = identity.id.clone();
        let span = spans::run(trigger.as_str(), &identity.id);
        self.leased(
            &lease_on,
            self.apply_leased(trigger, identity, options, confirm, progress),
        )
        .instrument(span)
        .await
    }

    async fn apply_leased(
        &self,
        trigger: Trigger,
        identity: Identity,
        options: &ApplyOptions,
        confirm: &mut (dyn FnMut(&Plan) -> Result<bool, EngineError> + Send),
        progress: &Progress,
    ) -> Result<ClosureReport, EngineError> {
        let book = self.playbook(trigger)?;
        if identity.is_protected() && !options.override_protected {
            return Err(EngineError::Protected(identity.id.clone()));
        }
        let unfinished = {
            let id = identity.id.clone();
            self.journal
                .call(move |j| j.unfinished_run(&id, trigger))
                .await?
        };
        if let Some(run) = unfinished {
            // Finishing an interrupted run is still an apply: without --yes it asks first.
            if !options.yes {
                let plan: Plan =
                    serde_json::from_str(&run.plan_json).map_err(|e| EngineError::StoredPlan {
                        run: run.id.clone(),
                        message: e.to_string(),
                    })?;
                if !confirm(&plan)? {
                    return Err(EngineError::Declined);
                }
            }
            progress.message(&format!(
                "resuming unfinished run {} of {} for {}",
                run.id, trigger, identity.id
            ));
            return self
                .resume_leased(&run.id, options.confirm_actions, progress)
                .await;
        }
        let providers = self.providers().await?;
        let now = Utc::now();
        let run_id = options.run_id.clone().unwrap_or_else(|| new_run_id(now));
        let ahead = if self.may_contain_ahead(&book, options, &identity) {
            self.accounts_ahead(&providers, &identity, &run_id).await?
        } else {
            None
        };
        let planning = self.plan_with(
            &providers,
            &book,
            &identity,
            trigger,
            &run_id,
            now,
            options.only_findings.as_ref(),
        );
        let Planned { graph, mut plan } = match ahead {
            // Containment ahead of discovery (`super::ahead`): the identity's own accounts are
            // contained while the whole resolution goes on.
            Some(accounts) => {
                let ahead = self.contain_ahead(
                    &providers, &book, &identity, trigger, &run_id, options, now, accounts,
                    progress,
                );
                let (planned, ahead) = tokio::join!(planning, ahead);
                if let Some(ahead) = ahead? {
                    return self
                        .complete_ahead(
                            &providers,
                            ahead,
                            planned,
                            options.confirm_actions,
                            progress,
                        )
                        .await;
                }
                planned?
            }
            None => planning.await?,
        };
        if options.require_approval {
            for stage in &mut plan.stages {
                for action in &mut stage.actions {
                    action.requires_approval = true;
                }
            }
        }
        if plan.exceeds_limit() && options.confirm_actions != Some(plan.action_count()) {
            return Err(EngineError::BlastRadius {
                actions: plan.action_count(),
                limit: plan.max_actions.unwrap_or(0),
            });
        }
        if !options.yes && !confirm(&plan)? {
            return Err(EngineError::Declined);
        }
        let run = self
            .begin_run(&identity, &book, options, &plan, &graph, now)
            .await?;
        self.execute_run(&providers, run, &identity, &plan, &graph.findings, progress)
            .await
    }

    /// Create the run of `plan` in the journal with the graph it came from, record the states
    /// seen, and audit its start (and a protected identity's override).
    pub(super) async fn begin_run(
        &self,
        identity: &Identity,
        book: &crate::policy::playbook::Playbook,
        options: &ApplyOptions,
        plan: &Plan,
        graph: &Graph,
        now: DateTime<Utc>,
    ) -> Result<RunRecord, EngineError> {
        let trigger = plan.trigger;
        let run_id = plan.run_id.clone();
        // A rotation run's cutoff is its own start: a version it creates counts as rotated.
        let cutoff = if trigger.cutoff_is_run_start() {
            now
        } else {
            let id = identity.id.clone();
            self.journal
                .call(move |j| j.containment_cutoff(&id))
                .await?
                .unwrap_or(now)
        };
        let plan_json = serde_json::to_string(&plan).map_err(|e| EngineError::StoredPlan {
            run: run_id.clone(),
            message: e.to_string(),
        })?;
        let run = RunRecord {
            id: run_id.clone(),
            identity: identity.id.clone(),
            trigger,
            playbook: book.name.clone(),
            playbook_digest: book.digest(),
            status: RunStatus::Running,
            created_at: now,
            effective_at: options.effective_at.unwrap_or(now),
            cutoff,
            contained_at: None,
            finished_at: None,
            override_protected: options.override_protected && identity.is_protected(),
            plan_json,
            report_json: None,
            approved_by: None,
            started_by: Some(self.actor.clone()),
            started_os_user: self.os_user.clone(),
        };
        let record = run.clone();
        let graph_json = serde_json::to_string(&graph).map_err(|e| EngineError::StoredPlan {
            run: run_id.clone(),
            message: e.to_string(),
        })?;
        self.journal
            .call(move |j| {
                j.create_run(&record)?;
                j.save_graph(&record.id, "before", &graph_json)
            })
            .await?;
        if run.override_protected {
            self.audit_event(
                "override.protected",
                Some(&run_id),
                identity,
                serde_json::json!({ "trigger": trigger }),
            )
            .await?;
        }
        self.observe(graph, now).await?;
        self.audit_event(
            "run.started",
            Some(&run_id),
            identity,
            serde_json::json!({
                "trigger": trigger,
                "playbook": book.name,
                "playbook_digest": run.playbook_digest,
                "actions": plan.action_count(),
                "plan_sha256": sha256_hex(&run.plan_json),
                "contain_only": plan.contain_only,
            }),
        )
        .await?;
        Ok(run)
    }

    /// Record the state of each finding of `graph` as seen at `now` (the start of any grace
    /// period that Closeout did not cause).
    pub(super) async fn observe(
        &self,
        graph: &Graph,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let seen: Vec<(String, String)> = graph
            .findings
            .iter()
            .map(|f| (f.id.clone(), f.state.as_str().to_string()))
            .collect();
        self.journal
            .call(move |j| j.observe(seen.iter().map(|(f, s)| (f.as_str(), s.as_str())), now))
            .await?;
        Ok(())
    }

    /// Record `approver`'s approval of a run waiting for one (audited); once it has as many
    /// distinct approvers as it requires, finish it. Short of that, fails with
    /// [`EngineError::NeedsMoreApprovals`] (the approval is kept).
    pub async fn approve(
        &self,
        run_id: &str,
        approver: &super::approval::Approver,
        progress: &Progress,
    ) -> Result<ClosureReport, EngineError> {
        let (_, outcome) = self.record_approval(run_id, approver).await?;
        if let super::approval::ApprovalOutcome::Pending {
            approvers,
            required,
        } = outcome
        {
            return Err(EngineError::NeedsMoreApprovals {
                run: run_id.to_string(),
                approvers: approvers.join(", "),
                have: approvers.len(),
                required,
            });
        }
        let report = self.resume(run_id, progress).await?;
        // A run the service created waits in its queue too: let it see the run is done.
        let (store, run) = (self.config.store.clone(), run_id.to_string());
        let updated = crate::store::blocking::off_runtime(move || {
            crate::store::queue::EventQueue::open_config(&store)?.approve_waiting(&run)
        })
        .await;
        if let Err(e) = updated {
            tracing::warn!(error = %e, "cannot update the service's event queue");
        }
        Ok(report)
    }

    /// Finish an interrupted run without repeating its finished actions.
    pub async fn resume(
        &self,
        run_id: &str,
        progress: &Progress,
    ) -> Result<ClosureReport, EngineError> {
        let run = self.stored_run(run_id).await?;
        let span = spans::run(run.trigger.as_str(), &run.identity);
        self.leased(&run.identity, self.resume_leased(run_id, None, progress))
            .instrument(span)
            .await
    }

    /// `confirm_actions`: an `apply`'s explicit confirmation of a plan above the blast-radius
    /// limit, for a run that still has to plan beyond its containment.
    async fn resume_leased(
        &self,
        run_id: &str,
        confirm_actions: Option<usize>,
        progress: &Progress,
    ) -> Result<ClosureReport, EngineError> {
        let run = self.stored_run(run_id).await?;
        let plan: Plan =
            serde_json::from_str(&run.plan_json).map_err(|e| EngineError::StoredPlan {
                run: run.id.clone(),
                message: e.to_string(),
            })?;
        // A mover acts for the identity with its new attributes, which the plan keeps.
        let identity = if run.trigger.takes_new_attributes() || run.trigger.needs_policy() {
            plan.identity.clone()
        } else {
            self.identity(&run.identity)?
        };
        if let (false, Some(report)) = (run.status.is_unfinished(), &run.report_json) {
            if let Ok(report) = serde_json::from_str::<ClosureReport>(report) {
                progress.message(&format!(
                    "run {} already finished ({})",
                    run.id, report.status
                ));
                return Ok(report);
            }
        }
        let id = run.id.clone();
        self.journal
            .call(move |j| j.set_run_status(&id, RunStatus::Running, None))
            .await?;
        self.audit_event(
            "run.resumed",
            Some(&run.id),
            &identity,
            serde_json::json!({}),
        )
        .await?;
        let providers = self.providers().await?;
        if plan.contain_only {
            // Containment ran ahead of discovery and the whole plan was never stored: plan it
            // now, under this run's id, before anything else runs or is verified.
            return self
                .complete_contain_only(&providers, run, plan, identity, confirm_actions, progress)
                .await;
        }
        self.execute_run(&providers, run, &identity, &plan, &[], progress)
            .await
    }

    /// The executor of this engine's runs against `providers`.
    pub(super) fn executor<'a>(
        &'a self,
        providers: &'a Providers,
        progress: &'a Progress,
    ) -> Executor<'a> {
        Executor {
            providers,
            journal: &self.journal,
            audit: &self.audit,
            execution: &self.config.execution,
            progress,
            actor: &self.actor,
        }
    }

    /// Record that the run is contained now, unless it already was (the journal keeps the
    /// first time).
    pub(super) async fn mark_contained(&self, run: &mut RunRecord) -> Result<(), EngineError> {
        let at = Utc::now();
        let id = run.id.clone();
        self.journal.call(move |j| j.set_contained(&id, at)).await?;
        run.contained_at.get_or_insert(at);
        Ok(())
    }

    pub(super) async fn execute_run(
        &self,
        providers: &Providers,
        mut run: RunRecord,
        identity: &Identity,
        plan: &Plan,
        initial: &[Finding],
        progress: &Progress,
    ) -> Result<ClosureReport, EngineError> {
        let executor = self.executor(providers, progress);
        tracing::Span::current().record("run_id", run.id.as_str());
        let mut failed = false;
        for (index, stage) in plan.stages.iter().enumerate() {
            if stage.verify {
                continue;
            }
            if run.approved_by.is_none() && stage.actions.iter().any(|a| a.requires_approval) {
                let id = run.id.clone();
                self.journal
                    .call(move |j| j.set_run_status(&id, RunStatus::WaitingApproval, None))
                    .await?;
                self.audit_event(
                    "run.waiting-approval",
                    Some(&run.id),
                    identity,
                    serde_json::json!({ "stage": stage.name }),
                )
                .await?;
                return Err(EngineError::WaitingApproval {
                    run: run.id.clone(),
                    stage: stage.name.clone(),
                });
            }
            progress.stage(&stage.name, stage.actions.len());
            let results = executor
                .run_stage(&run.id, &identity.id, &stage.actions)
                .instrument(spans::phase(&stage.name))
                .await?;
            progress.finish();
            let stage_failed = results.values().any(ActionResult::is_failure);
            if !stage_failed
                && (stage.name == CONTAIN || (index == 0 && run.contained_at.is_none()))
            {
                self.mark_contained(&mut run).await?;
            }
            if stage_failed {
                // Later stages assume this one finished (e.g. remove before grant): stop here.
                progress.message(&format!(
                    "stage {} had failed actions; later stages not started",
                    stage.name
                ));
                failed = true;
                break;
            }
        }
        progress.message("verifying closure against live state");
        if !failed && plan.trigger.closure() == Closure::MatchesPolicy {
            self.record_time_bound(&run.id, identity, plan).await?;
        }
        // The providers that resolved this run's plan verify it: each may reuse what it read
        // then where it can prove it unchanged (closeout_contract::reuse; each provider's README
        // says what it re-reads). `--thorough` (Reuse::Never) reads everything again.
        let mode = match reuse::current() {
            Reuse::Never => Reuse::Never,
            _ => Reuse::SinceLastRead,
        };
        let verification = reuse::scope(
            mode,
            self.verify_closure(providers, &run, identity, plan)
                .instrument(spans::phase("verify")),
        )
        .await?;
        let status = if failed {
            RunStatus::Failed
        } else if verification.is_closed() {
            RunStatus::Closed
        } else {
            RunStatus::Open
        };
        let finished_at = Utc::now();
        let id = run.id.clone();
        let actions = self.journal.call(move |j| j.actions(&id)).await?;
        let report = report::build(&ReportInput {
            run: &run,
            identity,
            plan,
            initial,
            actions: &actions,
            verification: &verification,
            status,
            finished_at,
        });
        let report_json = serde_json::to_string(&report).map_err(|e| EngineError::StoredPlan {
            run: run.id.clone(),
            message: e.to_string(),
        })?;
        let report_sha256 = sha256_hex(&report_json);
        let graph_after =
            serde_json::to_string(&verification.graph).map_err(|e| EngineError::StoredPlan {
                run: run.id.clone(),
                message: e.to_string(),
            })?;
        let id = run.id.clone();
        self.journal
            .call(move |j| {
                j.save_graph(&id, "after", &graph_after)?;
                j.save_report(&id, &report_json)?;
                j.set_run_status(&id, status, Some(finished_at))
            })
            .await?;
        self.audit_event(
            "run.finished",
            Some(&run.id),
            identity,
            serde_json::json!({
                "status": report.status,
                "open": report.open.iter().map(|o| o.id.clone()).collect::<Vec<_>>(),
                "report_sha256": report_sha256,
            }),
        )
        .await?;
        Ok(report)
    }

    /// Verify the identity's closure from live state without creating a run, with the same
    /// code as a run's report: when the identity has runs, the closure of its latest one (its
    /// trigger's meaning of closed, what it acted on, its cutoff, its accepted gaps); otherwise
    /// nothing bound to the identity may be open.
    pub async fn verify_identity(&self, id: &str) -> Result<Verification, EngineError> {
        let identity = self.identity(id)?;
        let providers = self.providers().await?;
        let latest = {
            let id = identity.id.clone();
            self.journal.call(move |j| j.latest_run(&id)).await?
        };
        if let Some(run) = latest {
            let plan = stored_plan(&run)?;
            let subject = if run.trigger.takes_new_attributes() || run.trigger.needs_policy() {
                plan.identity.clone()
            } else {
                identity
            };
            return self
                .verify_closure(&providers, &run, &subject, &plan)
                .instrument(spans::phase("verify"))
                .await;
        }
        let ctx = self.context(&identity).await?;
        let mut verification = verify(&providers, &ctx, &[])
            .instrument(spans::phase("verify"))
            .await?;
        verification.settle_gaps(&self.config.accept_unverified);
        Ok(verification)
    }

    /// Verify one run's closure from live state now (an unfinished run has no report yet).
    pub async fn verify_run(&self, run_id: &str) -> Result<Verification, EngineError> {
        let run = self.stored_run(run_id).await?;
        let plan = stored_plan(&run)?;
        let identity = if run.trigger.takes_new_attributes() || run.trigger.needs_policy() {
            plan.identity.clone()
        } else {
            self.identity(&run.identity)?
        };
        let providers = self.providers().await?;
        self.verify_closure(&providers, &run, &identity, &plan)
            .instrument(spans::phase("verify"))
            .await
    }

    /// Verify a run's closure from live state, as its trigger's [`Closure`] defines it: the one
    /// verification behind the run's report, `verify --identity` and `runs show` of an
    /// unfinished run. The gaps found when the run was planned are carried forward (removing the
    /// access that exposed one does not make it known), and every gap is settled against the
    /// configuration's and the playbook's `accept_unverified`.
    pub async fn verify_closure(
        &self,
        providers: &Providers,
        run: &RunRecord,
        identity: &Identity,
        plan: &Plan,
    ) -> Result<Verification, EngineError> {
        let ctx = ResolveContext {
            identity: identity.clone(),
            cutoff: Some(run.cutoff),
        };
        let closure = plan.trigger.closure();
        let mut verification = match closure {
            Closure::MatchesPolicy => {
                let policy = self.policy(plan.trigger.as_str())?;
                let grants = {
                    let id = identity.id.clone();
                    self.journal.call(move |j| j.grants_of(&id)).await?
                };
                let expected: Vec<Expected<'_>> = plan
                    .actions()
                    .map(|a| Expected {
                        finding: &a.finding,
                        state: a.expect,
                    })
                    .collect();
                entitlement_live::verify_against_policy(
                    providers, &ctx, &policy, &grants, &expected,
                )
                .await?
            }
            Closure::ActedOn => {
                // The identity keeps its other access: only what the run rotated is checked.
                // A secret the plan could not rotate (no rotation strategy) was due: it is
                // expected rotated, so it stays open until a strategy is configured.
                let acted: Vec<(Finding, State)> = plan
                    .actions()
                    .map(|a| (a.finding.clone(), a.expect))
                    .chain(
                        plan.needs_strategy
                            .iter()
                            .map(|n| (n.finding.clone(), State::Rotated)),
                    )
                    .collect();
                verify_acted(providers, &ctx, &acted).await?
            }
            Closure::NothingOpen => {
                // A secret the plan could not rotate (no rotation strategy) is read live even
                // when the identity no longer reaches it: the value it could copy is unchanged.
                let acted: Vec<Finding> = plan
                    .actions()
                    .map(|a| a.finding.clone())
                    .chain(plan.needs_strategy.iter().map(|n| n.finding.clone()))
                    .collect();
                verify(providers, &ctx, &acted).await?
            }
        };
        if closure != Closure::ActedOn {
            verification.carry_gaps(&plan.gaps);
            let mut acceptances = self.config.accept_unverified.clone();
            acceptances.extend(plan.accept_unverified.iter().cloned());
            verification.settle_gaps(&acceptances);
        }
        Ok(verification)
    }

    /// Record the plan's time-bound grants whose grant finished (or that were already held),
    /// and forget the records of entitlements the identity no longer matches a rule for.
    async fn record_time_bound(
        &self,
        run_id: &str,
        identity: &Identity,
        plan: &Plan,
    ) -> Result<(), EngineError> {
        let run = run_id.to_string();
        let finished: BTreeSet<String> = self
            .journal
            .call(move |j| j.actions(&run))
            .await?
            .into_iter()
            .filter(|a| {
                matches!(a.status, ActionStatus::Done | ActionStatus::AlreadyDone)
                    && a.verb == "grant"
            })
            .map(|a| a.finding_id)
            .collect();
        let record: Vec<_> = plan
            .time_bound
            .iter()
            .filter(|g| !g.needs_grant || finished.contains(&g.finding_id))
            .map(|g| g.record.clone())
            .collect();
        let id = identity.id.clone();
        self.journal
            .call(move |j| record.iter().try_for_each(|g| j.record_grant(&id, g)))
            .await?;
        let policy = self.policy(plan.trigger.as_str())?;
        let keep: BTreeSet<_> = policy.required(identity).into_keys().collect();
        let id = identity.id.clone();
        self.journal
            .call(move |j| j.drop_grants_except(&id, &keep))
            .await?;
        Ok(())
    }

    /// The run with this id, read off the async runtime.
    pub(crate) async fn stored_run(&self, run_id: &str) -> Result<RunRecord, EngineError> {
        let id = run_id.to_string();
        self.journal
            .call(move |j| j.run(&id))
            .await?
            .ok_or_else(|| EngineError::NoSuchRun(run_id.to_string()))
    }
}

/// A sortable, unique run id: `r20261128T103000Z-3fa2c1`.
pub fn new_run_id(now: DateTime<Utc>) -> String {
    let suffix: u32 = rand::random::<u32>() & 0x00ff_ffff;
    format!("r{}-{suffix:06x}", now.format("%Y%m%dT%H%M%SZ"))
}

/// Lower-case hex SHA-256 of a stored document (the plan's and the report's JSON as the journal
/// keeps them): what the audit log records, so an evidence bundle's copies can be checked.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}
