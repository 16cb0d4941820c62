//! The run lifecycle: resolve, plan, apply stage by stage, verify, report — with the safety
//! rules of DESIGN.md §5 (plan changes nothing, protected identities need an audited override,
//! the blast-radius limit needs explicit confirmation) and resumption of interrupted runs.

use crate::audit::{AuditEntry, AuditError, AuditLog};
use crate::config::{Config, ConfigError};
use crate::entitlements::live::{self as entitlement_live, Expected};
use crate::entitlements::{policy as entitlement_policy, EntitlementPolicy, PolicyError};
use crate::executor::{ActionResult, Executor, ExecutorError};
use crate::journal::{Journal, JournalError, RunRecord, RunStatus};
use crate::plan::{self, Plan, PlanError, PlanInput};
use crate::playbook::{self, Playbook, PlaybookError, SelectionFacts};
use crate::progress::Progress;
use crate::registry::{Providers, RegistryError};
use crate::report::{self, ClosureReport, ReportInput};
use crate::resolve::{resolve, Graph};
use crate::source::{Directory, SourceError};
use crate::verify::{verify, verify_acted, Verification};
use chrono::{DateTime, Utc};
use closeout_contract::{Finding, Identity, ProviderError, ResolveContext};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The triggers the CLI accepts (DESIGN.md §1).
pub const TRIGGERS: &[&str] = &[
    "leaver",
    "mover",
    "joiner",
    "incident",
    "rotation",
    "reconcile",
];

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Playbook(#[from] PlaybookError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(
        "unknown identity {id:?}: no identity with that id or email in the source {source_path}"
    )]
    UnknownIdentity { id: String, source_path: PathBuf },
    #[error("unknown trigger {0:?}: expected one of leaver, mover, joiner, incident, rotation, reconcile")]
    UnknownTrigger(String),
    #[error("no playbook for trigger {trigger:?}: {path} does not exist")]
    NoPlaybook { trigger: String, path: PathBuf },
    #[error("playbook {playbook} uses provider {provider:?}, and none of its providers is configured (configured: {configured}); add a [providers.{provider}] section to the config")]
    ProviderNotConfigured {
        playbook: String,
        provider: String,
        configured: String,
    },
    #[error("identity {0} is protected (tag `protected`); refusing to act without --override-protected (the override is audited)")]
    Protected(String),
    #[error("the plan has {actions} actions, more than the playbook's blast-radius limit of {limit}; review the plan and re-run with --confirm-actions {actions}")]
    BlastRadius { actions: usize, limit: usize },
    #[error("refusing to apply without --yes: stdin is not a terminal to ask on")]
    NotInteractive,
    #[error("apply cancelled: nothing was changed")]
    Declined,
    #[error("run {0} not found in the journal")]
    NoSuchRun(String),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    #[error("run {run} waits for approval before stage {stage}: `closeout approve {run}` releases it (the approver is audited)")]
    WaitingApproval { run: String, stage: String },
    #[error("run {run} is {status}; only a run waiting for approval can be approved")]
    NotWaiting { run: String, status: String },
    #[error("trigger {trigger} needs the entitlement policy: set `[policy] entitlements = \"PATH\"` in the config (format in docs/entitlements.md)")]
    NoPolicy { trigger: String },
    #[error("entitlement policy:\n{0}")]
    Policy(#[from] PolicyError),
    #[error("bad --to {0}")]
    BadAttribute(String),
    #[error("--to is for the mover trigger only: trigger {0} acts on the source's attributes")]
    ToNotForTrigger(String),
    #[error("stored plan of run {run} cannot be read: {message}")]
    StoredPlan { run: String, message: String },
}

impl EngineError {
    /// The process exit code (DESIGN.md §4): 2 for bad usage or input, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Config(_)
            | EngineError::Source(_)
            | EngineError::Playbook(_)
            | EngineError::Plan(_)
            | EngineError::UnknownIdentity { .. }
            | EngineError::UnknownTrigger(_)
            | EngineError::NoPlaybook { .. }
            | EngineError::ProviderNotConfigured { .. }
            | EngineError::Protected(_)
            | EngineError::BlastRadius { .. }
            | EngineError::NotInteractive
            | EngineError::NoSuchRun(_)
            | EngineError::NoPolicy { .. }
            | EngineError::Policy(_)
            | EngineError::BadAttribute(_)
            | EngineError::ToNotForTrigger(_)
            | EngineError::Registry(_) => 2,
            EngineError::Provider(ProviderError::Config { .. })
            | EngineError::NotWaiting { .. } => 2,
            EngineError::WaitingApproval { .. } => 4,
            _ => 1,
        }
    }
}

/// The trigger of scheduled rotation (`closeout rotate --due`, the serve scheduler).
pub const ROTATION: &str = "rotation";

/// How to apply.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub yes: bool,
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
}

/// The attributes `--to` may change, as the source names them.
pub const MOVABLE_ATTRIBUTES: &[&str] = &[
    "department",
    "role",
    "location",
    "employment_type",
    "manager",
    "tags",
];

/// `identity` with a mover's new attributes applied. An empty value clears the attribute;
/// `tags` is a comma-separated list that replaces the tags.
pub fn moved(identity: &Identity, to: &BTreeMap<String, String>) -> Result<Identity, EngineError> {
    let mut moved = identity.clone();
    for (key, value) in to {
        let value = value.trim();
        let set = (!value.is_empty()).then(|| value.to_string());
        match key.as_str() {
            "department" => moved.department = set,
            "role" => moved.role = set,
            "location" => moved.location = set,
            "employment_type" => moved.employment_type = set,
            "manager" => moved.manager = set,
            "tags" => {
                moved.tags = value
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            other => {
                return Err(EngineError::BadAttribute(format!(
                    "`{other}`: a mover can change {}",
                    MOVABLE_ATTRIBUTES.join(", ")
                )))
            }
        }
    }
    Ok(moved)
}

/// Triggers planned from the entitlement policy.
fn uses_policy(trigger: &str) -> bool {
    plan::verified_against_policy(trigger)
}

/// A plan together with the graph it came from.
pub struct Planned {
    pub graph: Graph,
    pub plan: Plan,
}

pub struct Engine {
    pub config: Config,
    pub directory: Directory,
    pub journal: Journal,
    pub audit: AuditLog,
    /// Who runs Closeout (recorded in the audit log).
    pub actor: String,
}

impl Engine {
    /// Load the config, the source, the journal and the audit log. No provider is contacted.
    pub fn open(config_path: &Path) -> Result<Engine, EngineError> {
        let config = Config::load(config_path)?;
        let directory = Directory::load(&config.source.path)?;
        let journal = Journal::open(&config.store.path)?;
        let audit = AuditLog::open(&config.audit.path)?;
        Ok(Engine {
            config,
            directory,
            journal,
            audit,
            actor: current_actor(),
        })
    }

    pub fn identity(&self, id: &str) -> Result<Identity, EngineError> {
        self.directory
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::UnknownIdentity {
                id: id.to_string(),
                source_path: self.config.source.path.clone(),
            })
    }

    /// The playbook for `trigger`, validated, with at least one provider it names configured.
    pub fn playbook(&self, trigger: &str) -> Result<Playbook, EngineError> {
        if !TRIGGERS.contains(&trigger) {
            return Err(EngineError::UnknownTrigger(trigger.to_string()));
        }
        let path = playbook::find(&self.config.playbook_dir, trigger);
        if !path.exists() {
            return Err(EngineError::NoPlaybook {
                trigger: trigger.to_string(),
                path,
            });
        }
        let book = playbook::load(&path, crate::registry::CAPABILITIES)?;
        // The shipped playbooks cover every provider; a site runs them on the providers it
        // configures. Steps for the others select nothing (no findings come from them), which
        // is said out loud; a playbook none of whose providers is configured is refused.
        let configured = self.config.providers.configured();
        let (usable, missing): (Vec<String>, Vec<String>) = book
            .providers()
            .into_iter()
            .partition(|p| configured.contains(&p.as_str()));
        if usable.is_empty() {
            if let Some(provider) = missing.first() {
                return Err(EngineError::ProviderNotConfigured {
                    playbook: path.display().to_string(),
                    provider: provider.to_string(),
                    configured: configured.join(", "),
                });
            }
        }
        for provider in &missing {
            tracing::warn!(
                playbook = %path.display(),
                "the steps for provider {provider} are skipped: [providers.{provider}] is not configured"
            );
        }
        Ok(book)
    }

    /// The entitlement policy, validated against the providers' capabilities.
    pub fn policy(&self, trigger: &str) -> Result<EntitlementPolicy, EngineError> {
        let path =
            self.config
                .policy
                .entitlements
                .as_ref()
                .ok_or_else(|| EngineError::NoPolicy {
                    trigger: trigger.to_string(),
                })?;
        Ok(entitlement_policy::load(
            path,
            crate::registry::CAPABILITIES,
        )?)
    }

    /// The identity a run of `trigger` acts for: a mover's with its new attributes.
    pub fn subject(
        &self,
        trigger: &str,
        id: &str,
        to: &BTreeMap<String, String>,
    ) -> Result<Identity, EngineError> {
        let identity = self.identity(id)?;
        if to.is_empty() {
            return Ok(identity);
        }
        if trigger != "mover" {
            return Err(EngineError::ToNotForTrigger(trigger.to_string()));
        }
        moved(&identity, to)
    }

    /// The NHI findings of every service identity the source names `identity` the owner of
    /// (its `manager`), in every provider: a joiner records the identity as their owner.
    async fn nhis_created_for(
        &self,
        providers: &Providers,
        identity: &Identity,
    ) -> Result<Vec<Finding>, EngineError> {
        let mut out = Vec::new();
        let services = self.directory.identities().iter().filter(|s| {
            s.kind == closeout_contract::IdentityKind::Service
                && s.status == closeout_contract::IdentityStatus::Active
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

    pub async fn providers(&self) -> Result<Providers, EngineError> {
        Ok(Providers::connect(&self.config.providers).await?)
    }

    pub(crate) fn context(&self, identity: &Identity) -> Result<ResolveContext, EngineError> {
        Ok(ResolveContext {
            identity: identity.clone(),
            cutoff: self.journal.containment_cutoff(&identity.id)?,
        })
    }

    /// Resolve the identity in every provider.
    pub async fn resolve(&self, id: &str) -> Result<Graph, EngineError> {
        let identity = self.identity(id)?;
        let providers = self.providers().await?;
        Ok(resolve(&providers, &self.context(&identity)?).await?)
    }

    /// Verify the identity's closure from live state (no run is created).
    pub async fn verify_identity(&self, id: &str) -> Result<Verification, EngineError> {
        let identity = self.identity(id)?;
        let providers = self.providers().await?;
        Ok(verify(&providers, &self.context(&identity)?, &[]).await?)
    }

    /// Explain the identity's entitlements against the policy (with a mover's new attributes
    /// when `to` is given). Reads the providers; changes nothing.
    pub async fn explain(
        &self,
        id: &str,
        to: &BTreeMap<String, String>,
    ) -> Result<crate::entitlements::explain::Explanation, EngineError> {
        let identity = self.subject("mover", id, to)?;
        let policy = self.policy("policy explain")?;
        let providers = self.providers().await?;
        let ctx = self.context(&identity)?;
        let graph = resolve(&providers, &ctx).await?;
        let grants = self.journal.grants_of(&identity.id)?;
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
        let review = crate::entitlements::Review { missing, ..review };
        Ok(crate::entitlements::explain::Explanation::new(
            &identity,
            &policy.file,
            &review,
            unchecked.into_iter().map(|m| m.entitlement).collect(),
        ))
    }

    /// Resolve and plan. Changes nothing.
    pub async fn plan(
        &self,
        trigger: &str,
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
    async fn plan_with(
        &self,
        providers: &Providers,
        book: &Playbook,
        identity: &Identity,
        trigger: &str,
        run_id: &str,
        now: DateTime<Utc>,
        only: Option<&BTreeSet<String>>,
    ) -> Result<Planned, EngineError> {
        let ctx = self.context(identity)?;
        // A missing or broken policy is bad input: say so before any provider is called.
        let policy = if uses_policy(trigger) {
            Some(self.policy(trigger)?)
        } else {
            None
        };
        let mut graph = resolve(providers, &ctx).await?;
        let mut facts = SelectionFacts::default();
        let mut time_bound = Vec::new();
        if let Some(policy) = &policy {
            let grants = self.journal.grants_of(&identity.id)?;
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
        if trigger == "joiner" {
            let nhis = self.nhis_created_for(providers, identity).await?;
            facts.nhis_created_for = nhis.iter().map(|f| f.id.clone()).collect();
            // One the identity already owns resolved with it: keep that finding, not a copy.
            let known: BTreeSet<String> = graph.findings.iter().map(|f| f.id.clone()).collect();
            graph
                .findings
                .extend(nhis.into_iter().filter(|f| !known.contains(&f.id)));
        }
        let acted = self.journal.state_since()?;
        let observed = self.journal.observations()?;
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
        })?;
        Ok(Planned { graph, plan })
    }

    /// Apply the trigger's playbook to the identity: resume an unfinished run of the same
    /// identity and trigger, or resolve, plan, confirm and run a new one.
    pub async fn apply(
        &self,
        trigger: &str,
        id: &str,
        options: &ApplyOptions,
        confirm: &mut (dyn FnMut(&Plan) -> Result<bool, EngineError> + Send),
        progress: &Progress,
    ) -> Result<ClosureReport, EngineError> {
        let identity = self.subject(trigger, id, &options.to)?;
        let book = self.playbook(trigger)?;
        if identity.is_protected() && !options.override_protected {
            return Err(EngineError::Protected(identity.id.clone()));
        }
        if let Some(run) = self.journal.unfinished_run(&identity.id, trigger)? {
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
            return self.resume(&run.id, progress).await;
        }
        let providers = self.providers().await?;
        let now = Utc::now();
        let run_id = new_run_id(now);
        let Planned { graph, mut plan } = self
            .plan_with(
                &providers,
                &book,
                &identity,
                trigger,
                &run_id,
                now,
                options.only_findings.as_ref(),
            )
            .await?;
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
        // A rotation run's cutoff is its own start: a version it creates counts as rotated.
        let cutoff = if trigger == ROTATION {
            now
        } else {
            self.journal
                .containment_cutoff(&identity.id)?
                .unwrap_or(now)
        };
        let plan_json = serde_json::to_string(&plan).map_err(|e| EngineError::StoredPlan {
            run: run_id.clone(),
            message: e.to_string(),
        })?;
        let run = RunRecord {
            id: run_id.clone(),
            identity: identity.id.clone(),
            trigger: trigger.to_string(),
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
        };
        self.journal.create_run(&run)?;
        if run.override_protected {
            self.audit_event(
                "override.protected",
                Some(&run_id),
                &identity,
                serde_json::json!({ "trigger": trigger }),
            )?;
        }
        self.journal.observe(
            graph
                .findings
                .iter()
                .map(|f| (f.id.as_str(), f.state.as_str())),
            now,
        )?;
        self.audit_event(
            "run.started",
            Some(&run_id),
            &identity,
            serde_json::json!({
                "trigger": trigger,
                "playbook": book.name,
                "playbook_digest": run.playbook_digest,
                "actions": plan.action_count(),
            }),
        )?;
        self.execute_run(&providers, run, &identity, &plan, &graph.findings, progress)
            .await
    }

    /// Release a run waiting for approval (the approver is audited), then finish it.
    pub async fn approve(
        &self,
        run_id: &str,
        progress: &Progress,
    ) -> Result<ClosureReport, EngineError> {
        self.record_approval(run_id, &self.actor)?;
        self.resume(run_id, progress).await
    }

    /// Record an approval of a run waiting for one (audited) without running it: the service's
    /// worker resumes it. Returns the run's identity.
    pub fn record_approval(&self, run_id: &str, approver: &str) -> Result<String, EngineError> {
        let run = self
            .journal
            .run(run_id)?
            .ok_or_else(|| EngineError::NoSuchRun(run_id.to_string()))?;
        if run.status != RunStatus::WaitingApproval {
            return Err(EngineError::NotWaiting {
                run: run.id,
                status: run.status.as_str().to_string(),
            });
        }
        let identity = self.identity(&run.identity)?;
        self.journal.approve(&run.id, approver)?;
        self.audit_event(
            "run.approved",
            Some(&run.id),
            &identity,
            serde_json::json!({ "approver": approver }),
        )?;
        Ok(run.identity)
    }

    /// Finish an interrupted run without repeating its finished actions.
    pub async fn resume(
        &self,
        run_id: &str,
        progress: &Progress,
    ) -> Result<ClosureReport, EngineError> {
        let run = self
            .journal
            .run(run_id)?
            .ok_or_else(|| EngineError::NoSuchRun(run_id.to_string()))?;
        let plan: Plan =
            serde_json::from_str(&run.plan_json).map_err(|e| EngineError::StoredPlan {
                run: run.id.clone(),
                message: e.to_string(),
            })?;
        // A mover acts for the identity with its new attributes, which the plan keeps.
        let identity = if uses_policy(&run.trigger) {
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
        self.journal
            .set_run_status(&run.id, RunStatus::Running, None)?;
        self.audit_event(
            "run.resumed",
            Some(&run.id),
            &identity,
            serde_json::json!({}),
        )?;
        let providers = self.providers().await?;
        self.execute_run(&providers, run, &identity, &plan, &[], progress)
            .await
    }

    async fn execute_run(
        &self,
        providers: &Providers,
        mut run: RunRecord,
        identity: &Identity,
        plan: &Plan,
        initial: &[Finding],
        progress: &Progress,
    ) -> Result<ClosureReport, EngineError> {
        let executor = Executor {
            providers,
            journal: &self.journal,
            audit: &self.audit,
            execution: &self.config.execution,
            progress,
            actor: &self.actor,
        };
        let mut failed = false;
        for (index, stage) in plan.stages.iter().enumerate() {
            if stage.verify {
                continue;
            }
            if run.approved_by.is_none() && stage.actions.iter().any(|a| a.requires_approval) {
                self.journal
                    .set_run_status(&run.id, RunStatus::WaitingApproval, None)?;
                self.audit_event(
                    "run.waiting-approval",
                    Some(&run.id),
                    identity,
                    serde_json::json!({ "stage": stage.name }),
                )?;
                return Err(EngineError::WaitingApproval {
                    run: run.id.clone(),
                    stage: stage.name.clone(),
                });
            }
            progress.stage(&stage.name, stage.actions.len());
            let results = executor
                .run_stage(&run.id, &identity.id, &stage.actions)
                .await?;
            progress.finish();
            let stage_failed = results.values().any(ActionResult::is_failure);
            if !stage_failed
                && (stage.name == "contain" || (index == 0 && run.contained_at.is_none()))
            {
                let at = Utc::now();
                self.journal.set_contained(&run.id, at)?;
                run.contained_at.get_or_insert(at);
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
        let ctx = ResolveContext {
            identity: identity.clone(),
            cutoff: Some(run.cutoff),
        };
        progress.message("verifying closure against live state");
        let verification = if uses_policy(&plan.trigger) {
            if !failed {
                self.record_time_bound(&run.id, identity, plan)?;
            }
            let policy = self.policy(&plan.trigger)?;
            let grants = self.journal.grants_of(&identity.id)?;
            let expected: Vec<Expected<'_>> = plan
                .actions()
                .map(|a| Expected {
                    finding: &a.finding,
                    state: a.expect,
                })
                .collect();
            entitlement_live::verify_against_policy(providers, &ctx, &policy, &grants, &expected)
                .await?
        } else if run.trigger == ROTATION {
            // The identity keeps its other access: only what the run rotated is checked.
            let acted: Vec<(Finding, closeout_contract::State)> = plan
                .actions()
                .map(|a| (a.finding.clone(), a.expect))
                .collect();
            verify_acted(providers, &ctx, &acted).await?
        } else {
            let acted: Vec<Finding> = plan.actions().map(|a| a.finding.clone()).collect();
            verify(providers, &ctx, &acted).await?
        };
        let status = if failed {
            RunStatus::Failed
        } else if verification.is_closed() {
            RunStatus::Closed
        } else {
            RunStatus::Open
        };
        let finished_at = Utc::now();
        let actions = self.journal.actions(&run.id)?;
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
        self.journal.save_report(&run.id, &report_json)?;
        self.journal
            .set_run_status(&run.id, status, Some(finished_at))?;
        self.audit_event(
            "run.finished",
            Some(&run.id),
            identity,
            serde_json::json!({
                "status": report.status,
                "open": report.open.iter().map(|o| o.id.clone()).collect::<Vec<_>>(),
            }),
        )?;
        Ok(report)
    }

    /// Record the plan's time-bound grants whose grant finished (or that were already held),
    /// and forget the records of entitlements the identity no longer matches a rule for.
    fn record_time_bound(
        &self,
        run_id: &str,
        identity: &Identity,
        plan: &Plan,
    ) -> Result<(), EngineError> {
        let finished: std::collections::BTreeSet<String> = self
            .journal
            .actions(run_id)?
            .into_iter()
            .filter(|a| {
                matches!(
                    a.status,
                    crate::journal::ActionStatus::Done | crate::journal::ActionStatus::AlreadyDone
                ) && a.verb == "grant"
            })
            .map(|a| a.finding_id)
            .collect();
        for g in &plan.time_bound {
            if !g.needs_grant || finished.contains(&g.finding_id) {
                self.journal.record_grant(&identity.id, &g.record)?;
            }
        }
        let policy = self.policy(&plan.trigger)?;
        let keep = policy.required(identity).into_keys().collect();
        self.journal.drop_grants_except(&identity.id, &keep)?;
        Ok(())
    }

    fn audit_event(
        &self,
        event: &str,
        run: Option<&str>,
        identity: &Identity,
        details: serde_json::Value,
    ) -> Result<(), EngineError> {
        self.audit.append(AuditEntry {
            actor: self.actor.clone(),
            event: event.to_string(),
            run: run.map(str::to_string),
            identity: Some(identity.id.clone()),
            details,
        })?;
        Ok(())
    }

    /// The report of a finished run, or its journaled state.
    pub fn run_report(
        &self,
        run_id: &str,
    ) -> Result<(RunRecord, Option<ClosureReport>), EngineError> {
        let run = self
            .journal
            .run(run_id)?
            .ok_or_else(|| EngineError::NoSuchRun(run_id.to_string()))?;
        let report = run
            .report_json
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok());
        Ok((run, report))
    }
}

/// A sortable, unique run id: `r20261128T103000Z-3fa2c1`.
fn new_run_id(now: DateTime<Utc>) -> String {
    let suffix: u32 = rand::random::<u32>() & 0x00ff_ffff;
    format!("r{}-{suffix:06x}", now.format("%Y%m%dT%H%M%SZ"))
}

/// Who is running Closeout: `$CLOSEOUT_ACTOR`, else the OS user.
pub fn current_actor() -> String {
    std::env::var("CLOSEOUT_ACTOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into())
}
