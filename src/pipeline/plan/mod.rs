//! Plan: a playbook applied to an identity's resolved findings gives ordered stages of actions,
//! each with an idempotency key, plus the deletes deferred by a grace period and the open
//! findings no step acts on.
//!
//! Planning is pure and deterministic: the same playbook, findings, run id, clock and journal
//! facts give a byte-identical plan (findings are taken in id order, maps are `BTreeMap`s).
//! The journal stores the plan as JSON; a resumed run executes the stored plan, never a new one.
//!
//! How a plan is made: stages in order, steps in order. Each finding has a *projected* state,
//! starting at its resolved state; a step selects the findings whose projected state its
//! selector matches, and each action moves the finding's projected state to the state its verb
//! leaves (so a `deactivate` in one stage makes the key `inactive` for a `delete` in a later
//! one). A step with a grace period acts only on findings that have been in their state that
//! long; the others are listed as [`Deferred`] with the time they become due.

mod render;

use crate::config::acceptance::Acceptance;
use crate::policy::playbook::{Playbook, SelectionFacts, Step};
use crate::store::grants::GrantRecord;
use crate::trigger::Trigger;
use chrono::{DateTime, Utc};
use closeout_contract::rotation_strategy;
use closeout_contract::{
    verbs, ActionParams, ActionRequest, Exposure, Finding, Gap, Holder, Identity, State, Verb,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Everything a plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The playbook to apply; it must list `trigger`.
    pub playbook: &'a Playbook,
    /// The identity the run is for (for a mover, with its new attributes).
    pub identity: &'a Identity,
    /// The identity's manager from the source: the new owner of the NHIs it owns.
    pub manager: Option<&'a Identity>,
    /// The findings resolved from every provider.
    pub findings: &'a [Finding],
    /// The run's id; part of every idempotency key.
    pub run_id: &'a str,
    /// The planning time: grace periods are judged against it, and sessions issued before it are
    /// revoked.
    pub now: DateTime<Utc>,
    /// Finding id → when Closeout moved the finding into its current state (from the journal).
    /// Grace periods count from it.
    pub state_since: &'a BTreeMap<String, DateTime<Utc>>,
    /// The trigger the run executes.
    pub trigger: Trigger,
    /// What the entitlement review knows (movers and joiners; empty otherwise).
    pub facts: &'a SelectionFacts,
    /// Time-bound grants to record once their grant action (or, for ones already held, the
    /// run) has finished.
    pub time_bound: &'a [PlannedGrant],
    /// The finding ids the plan may act on (a `rotation` run acts only on what is due); `None`:
    /// every finding. Findings outside it are neither acted on nor listed as untouched.
    pub only: Option<&'a BTreeSet<String>>,
    /// Scopes the identity can grant itself everything in (from the resolution).
    pub exposures: &'a [Exposure],
    /// What the providers could not list, read or evaluate when the plan was made (from the
    /// resolution); verification keeps each one open until it is accepted or known.
    pub gaps: &'a [Gap],
}

/// Why a plan cannot be made. Both are problems in the playbook or the source, not in a provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A `reassign-owner` step selects an NHI the identity owns, but the source names no manager to
    /// hand it to.
    #[error("step `{step}` reassigns the owner of {finding}, but identity {identity} has no manager in the source to hand it to; set the manager in the source, or remove the step")]
    NoManager {
        /// The identity whose NHI it is.
        identity: String,
        /// The step that reassigns.
        step: String,
        /// The NHI finding.
        finding: String,
    },
    /// Two objects' rotated credentials would be published to the same secret, each overwriting
    /// the other (a `credential_secret_name` that names only the display name, say).
    #[error("the rotated credentials of {objects} would all be published to secret {secret} ({provider}), each overwriting the other; make the secret name unique per object (e.g. credential_secret_name with {{object_id}})")]
    PublishCollision {
        /// The provider.
        provider: String,
        /// The secret name.
        secret: String,
        /// The objects, comma-separated.
        objects: String,
    },
    /// The playbook does not list the trigger in its `triggers`.
    #[error(
        "playbook `{playbook}` does not handle trigger `{trigger}` (its triggers: {triggers})"
    )]
    WrongTrigger {
        /// The playbook's name.
        playbook: String,
        /// The trigger the run is for.
        trigger: Trigger,
        /// The triggers it does list, comma-separated.
        triggers: String,
    },
}

/// One action: one verb on one finding, on behalf of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAction {
    /// The idempotency key: see [`idempotency_key`].
    pub key: String,
    /// The playbook stage the action belongs to.
    pub stage: String,
    /// The playbook step that selected the finding.
    pub step: String,
    /// The verb to execute (`deactivate`, `delete`, `revoke-sessions`, ...).
    pub verb: String,
    /// The state the finding is in once the verb succeeded.
    pub expect: State,
    /// The finding acted on, as resolved when planning.
    pub finding: Finding,
    /// The verb's parameters: the run id, the session cutoff, the new owner.
    pub params: ActionParams,
    /// The action waits for an approval before it runs.
    pub requires_approval: bool,
    /// How many distinct approvers must approve first (when `requires_approval`).
    #[serde(default = "one_approval")]
    pub approvals: u32,
}

fn one_approval() -> u32 {
    1
}

impl PlannedAction {
    /// The request the finding's provider executes.
    pub fn request(&self) -> ActionRequest {
        ActionRequest {
            idempotency_key: self.key.clone(),
            verb: self.verb.clone(),
            finding: self.finding.clone(),
            params: self.params.clone(),
        }
    }
}

/// An action a grace period holds back: it becomes due at `due_at`; a run after that takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferred {
    /// The stage the step is in.
    pub stage: String,
    /// The step that would act.
    pub step: String,
    /// The finding it would act on.
    pub finding_id: String,
    /// How the finding is shown to a person.
    pub display: String,
    /// The verb it would execute.
    pub verb: String,
    /// When the finding entered its current state (the grace period's start).
    pub since: DateTime<Utc>,
    /// When the grace period ends and a run may take the action.
    pub due_at: DateTime<Utc>,
    /// Why `since` is what it is, when it is not a journal fact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One playbook stage with its planned actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStage {
    /// The stage's name.
    pub name: String,
    /// The verify stage: no actions; the run re-resolves and probes.
    pub verify: bool,
    /// In step order, and by finding id within a step.
    pub actions: Vec<PlannedAction>,
}

/// What a run will do, shown before anything changes and stored in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The playbook's name.
    pub playbook: String,
    /// SHA-256 (hex) of the playbook's source text.
    pub playbook_digest: String,
    /// The identity the plan is for (for a mover, with its new attributes).
    pub identity: Identity,
    /// The trigger the run executes.
    pub trigger: Trigger,
    /// The run id the idempotency keys are made from.
    pub run_id: String,
    /// When the plan was made.
    pub created_at: DateTime<Utc>,
    /// The playbook's blast-radius limit (always set by [`build`]; `None` would mean no limit).
    pub max_actions: Option<usize>,
    /// The stages in playbook order; the last is the verify stage.
    pub stages: Vec<PlannedStage>,
    /// Actions held back by a grace period; a later run takes them.
    pub deferred: Vec<Deferred>,
    /// Ids of open findings that no step acts on (now or deferred); verify reports them, except
    /// for a mover or joiner, which leaves them as they are.
    pub untouched: Vec<String>,
    /// Time-bound grants the run records (expiry scheduling): each once the action granting
    /// `finding_id` finished, or at once when it is already held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_bound: Vec<PlannedGrant>,
    /// Gaps the playbook accepts by name (with the configuration's, settled at verification).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept_unverified: Vec<Acceptance>,
    /// Scopes the identity can grant itself everything in, one line each in the plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposures: Vec<Exposure>,
    /// Secrets a `rotate` step selects but no rotation strategy covers: not rotated, and open
    /// (they are in `untouched` too) until a strategy is configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs_strategy: Vec<NeedsStrategy>,
    /// What the providers could not list, read or evaluate when the plan was made. A gap that
    /// only existed through access the run then removed is still unknown (what that access
    /// reached before is not known), so verification carries every one of them forward.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
    /// The plan of a run that contains ahead of discovery (`crate::engine::ahead`): only the
    /// `contain` stage's actions on the identity's own accounts, built before the whole
    /// resolution ended. Nothing beyond that stage runs, and nothing is verified, from such a
    /// plan: the whole plan, which keeps its actions ([`Plan::absorb`]), replaces it first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub contain_only: bool,
}

/// A secret a `rotate` step selects that is not rotated because no rotation strategy covers it
/// (see `closeout_contract::rotation_strategy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeedsStrategy {
    /// The finding.
    pub finding_id: String,
    /// How it is shown to a person.
    pub display: String,
    /// Why no strategy applies, and how to name one.
    pub reason: String,
    /// The finding as resolved (verification reads its live state even when the identity no
    /// longer reaches it).
    pub finding: Finding,
}

/// A time-bound grant a run records, with the finding whose grant action it waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedGrant {
    /// The finding whose grant action the record waits for.
    pub finding_id: String,
    /// False when the entitlement is already held (its clock starts with this run).
    pub needs_grant: bool,
    /// The grant to record: entitlement, rule, grant and expiry times.
    pub record: GrantRecord,
}

/// The idempotency key of an action: the first 32 hex digits of
/// SHA-256(`run_id/stage/step/finding_id/verb`). The same key always means the same change.
pub fn idempotency_key(
    run_id: &str,
    stage: &str,
    step: &str,
    finding_id: &str,
    verb: &str,
) -> String {
    let digest = Sha256::digest(format!("{run_id}/{stage}/{step}/{finding_id}/{verb}").as_bytes());
    hex::encode(digest)[..32].to_string()
}

fn params_for(
    input: &PlanInput<'_>,
    step: &Step,
    finding: &Finding,
    verb: &Verb,
) -> Result<ActionParams, PlanError> {
    let mut params = ActionParams {
        run_id: input.run_id.to_string(),
        ..ActionParams::default()
    };
    if verb.name == verbs::REVOKE_SESSIONS.name {
        params.sessions_issued_before = Some(input.now);
    }
    if verb.name == verbs::REASSIGN_OWNER.name && input.facts.nhis_created_for.contains(&finding.id)
    {
        // A joiner's NHI: the owner record names the identity itself, in the form the
        // provider's owner records use (email).
        let old = finding.attr("owner").unwrap_or(&input.identity.email);
        params.new_owner = Some(input.identity.name_in_form_of(old));
    } else if verb.name == verbs::REASSIGN_OWNER.name {
        let manager = input.manager.ok_or_else(|| PlanError::NoManager {
            identity: input.identity.id.clone(),
            step: step.name.clone(),
            finding: finding.id.clone(),
        })?;
        let old = finding.attr("owner").unwrap_or(&input.identity.email);
        params.new_owner = Some(manager.name_in_form_of(old));
    }
    // Rotating an NHI's credential re-issues it: the new one is recorded as the manager's when
    // there is a manager (the provider keeps the old owner otherwise).
    if verb.name == verbs::ROTATE.name && matches!(finding.holder, Holder::Nhi(_)) {
        if let Some(manager) = input.manager {
            let old = finding.attr("owner").unwrap_or(&input.identity.email);
            params.new_owner = Some(manager.name_in_form_of(old));
        }
    }
    Ok(params)
}

/// Plan the playbook for the identity's findings. Changes nothing.
pub fn build(input: &PlanInput<'_>) -> Result<Plan, PlanError> {
    let book = input.playbook;
    if !book.handles(input.trigger) {
        return Err(PlanError::WrongTrigger {
            playbook: book.name.clone(),
            trigger: input.trigger,
            triggers: book
                .triggers
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut findings: Vec<&Finding> = input
        .findings
        .iter()
        .filter(|f| input.only.is_none_or(|only| only.contains(&f.id)))
        .collect();
    findings.sort_by(|a, b| a.id.cmp(&b.id));
    findings.dedup_by(|a, b| a.id == b.id);

    let mut projected: BTreeMap<&str, State> =
        findings.iter().map(|f| (f.id.as_str(), f.state)).collect();
    // Findings an earlier action of this plan moved: their state starts now.
    let mut changed: BTreeSet<&str> = BTreeSet::new();
    let mut touched: BTreeSet<&str> = BTreeSet::new();
    let mut stages = Vec::with_capacity(book.stages.len());
    let mut deferred = Vec::new();
    let mut needs_strategy: Vec<NeedsStrategy> = Vec::new();

    for stage in &book.stages {
        let mut actions = Vec::new();
        for step in &stage.steps {
            for finding in &findings {
                let id = finding.id.as_str();
                let state = projected.get(id).copied().unwrap_or(finding.state);
                if !step.selects(finding, state, input.facts) {
                    continue;
                }
                let Some(verb) = step.verb_for(finding) else {
                    continue;
                };
                // A structured secret no rotation strategy covers is never rotated (a new value
                // in every field would scramble the ones that are not secrets): the plan names
                // it, and it stays open until a strategy is configured.
                if verb.name == verbs::ROTATE.name {
                    if let Some(reason) = rotation_strategy::needs_strategy(finding) {
                        if !needs_strategy
                            .iter()
                            .any(|n: &NeedsStrategy| n.finding_id == id)
                        {
                            needs_strategy.push(NeedsStrategy {
                                finding_id: finding.id.clone(),
                                display: finding.display.clone(),
                                reason,
                                finding: (*finding).clone(),
                            });
                        }
                        continue;
                    }
                }
                touched.insert(id);
                if let Some(grace) = step.grace {
                    let (since, note) = if changed.contains(id) {
                        (input.now, None)
                    } else if let Some(at) = input.state_since.get(id) {
                        (*at, None)
                    } else {
                        (
                            input.now,
                            Some(format!(
                                "not moved to {state} by Closeout (no journal record): the grace period counts from this plan"
                            )),
                        )
                    };
                    let due_at = since + grace.to_chrono();
                    if due_at > input.now {
                        deferred.push(Deferred {
                            stage: stage.name.clone(),
                            step: step.name.clone(),
                            finding_id: finding.id.clone(),
                            display: finding.display.clone(),
                            verb: step.action.clone(),
                            since,
                            due_at,
                            note,
                        });
                        continue;
                    }
                }
                let params = params_for(input, step, finding, &verb)?;
                // A joiner's NHI stays in use: once its owner record names the identity, it
                // resolves as an active NHI the identity owns.
                let leaves = if input.facts.nhis_created_for.contains(id) {
                    State::Active
                } else {
                    verb.leaves
                };
                actions.push(PlannedAction {
                    key: idempotency_key(input.run_id, &stage.name, &step.name, id, &step.action),
                    stage: stage.name.clone(),
                    step: step.name.clone(),
                    verb: step.action.clone(),
                    expect: leaves,
                    finding: (*finding).clone(),
                    params,
                    requires_approval: step.requires_approval,
                    approvals: step.approvals,
                });
                projected.insert(id, leaves);
                changed.insert(id);
            }
        }
        stages.push(PlannedStage {
            name: stage.name.clone(),
            verify: stage.verify,
            actions,
        });
    }

    check_publish_collisions(&stages)?;

    let untouched = findings
        .iter()
        .filter(|f| f.state.is_open() && !touched.contains(f.id.as_str()))
        .map(|f| f.id.clone())
        .collect();

    Ok(Plan {
        playbook: book.name.clone(),
        playbook_digest: book.digest(),
        identity: input.identity.clone(),
        trigger: input.trigger,
        run_id: input.run_id.to_string(),
        created_at: input.now,
        max_actions: Some(book.max_actions),
        stages,
        deferred,
        untouched,
        time_bound: input.time_bound.to_vec(),
        accept_unverified: book.accept_unverified.clone(),
        exposures: input.exposures.to_vec(),
        needs_strategy,
        gaps: input.gaps.to_vec(),
        contain_only: false,
    })
}

/// The contain-only plan of a run that contains ahead of discovery: the playbook's first stage,
/// which must be named `contain`, on the findings given (the identity's own accounts and what
/// they hold); `None` when the playbook does not start with a `contain` stage. Its keys are the
/// ones [`build`] gives the same actions, so the whole plan's run finds them finished.
pub fn contain_only(input: &PlanInput<'_>) -> Result<Option<Plan>, PlanError> {
    let Some(first) = input.playbook.stages.first() else {
        return Ok(None);
    };
    if first.name != CONTAIN || first.verify {
        return Ok(None);
    }
    let mut book = input.playbook.clone();
    book.stages.truncate(1);
    let mut plan = build(&PlanInput {
        playbook: &book,
        ..*input
    })?;
    plan.contain_only = true;
    // Nothing but containment is planned: what it leaves untouched is the whole plan's to say.
    plan.untouched.clear();
    Ok(Some(plan))
}

/// The name of the stage that contains: it may run ahead of discovery, and its end is the
/// run's time of containment.
pub const CONTAIN: &str = "contain";

/// Refuse a plan whose rotations would publish two objects' credentials to one secret.
fn check_publish_collisions(stages: &[PlannedStage]) -> Result<(), PlanError> {
    use closeout_contract::action::{PUBLISH_FOR_ATTR, PUBLISH_SECRET_ATTR};
    let mut by_secret: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for a in stages.iter().flat_map(|s| s.actions.iter()) {
        if a.verb != verbs::ROTATE.name {
            continue;
        }
        let f = &a.finding;
        if let (Some(secret), Some(object)) =
            (f.attr(PUBLISH_SECRET_ATTR), f.attr(PUBLISH_FOR_ATTR))
        {
            by_secret
                .entry((f.provider.as_str(), secret))
                .or_default()
                .insert(object);
        }
    }
    match by_secret.into_iter().find(|(_, objects)| objects.len() > 1) {
        Some(((provider, secret), objects)) => Err(PlanError::PublishCollision {
            provider: provider.to_string(),
            secret: secret.to_string(),
            objects: objects.into_iter().collect::<Vec<_>>().join(", "),
        }),
        None => Ok(()),
    }
}

impl Plan {
    /// Keep every action of `ahead` (the contain-only plan this run started with) that this
    /// plan lacks, in the stage of the same name: an action taken ahead of discovery changes
    /// what the whole resolution may see (a deleted login profile is no longer listed), and the
    /// run still accounts for what it did and verifies it.
    pub fn absorb(&mut self, ahead: &Plan) {
        for (index, stage) in ahead.stages.iter().enumerate() {
            let position = match self.stages.iter().position(|s| s.name == stage.name) {
                Some(p) => p,
                None => {
                    let at = index.min(self.stages.len());
                    self.stages.insert(
                        at,
                        PlannedStage {
                            actions: Vec::new(),
                            ..stage.clone()
                        },
                    );
                    at
                }
            };
            let into = &mut self.stages[position];
            let have: BTreeSet<String> = into.actions.iter().map(|a| a.key.clone()).collect();
            into.actions.extend(
                stage
                    .actions
                    .iter()
                    .filter(|a| !have.contains(&a.key))
                    .cloned(),
            );
        }
    }

    /// Every action, in execution order.
    pub fn actions(&self) -> impl Iterator<Item = &PlannedAction> {
        self.stages.iter().flat_map(|s| s.actions.iter())
    }

    /// How many actions the plan takes, over all stages (the blast radius).
    pub fn action_count(&self) -> usize {
        self.stages.iter().map(|s| s.actions.len()).sum()
    }

    /// True when the plan takes more actions than the playbook's blast-radius limit.
    pub fn exceeds_limit(&self) -> bool {
        self.max_actions
            .is_some_and(|limit| self.action_count() > limit)
    }

    /// How many distinct approvers the plan's approval-gated actions need (0 when none is
    /// gated).
    pub fn approvals_required(&self) -> u32 {
        self.actions()
            .filter(|a| a.requires_approval)
            .map(|a| a.approvals.max(1))
            .max()
            .unwrap_or(0)
    }

    /// How many actions wait for approval.
    pub fn approval_count(&self) -> usize {
        self.actions().filter(|a| a.requires_approval).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::playbook::test_caps::ALL;
    use crate::policy::playbook::{self, Playbook};
    use chrono::{Duration, TimeZone};
    use closeout_contract::{Holder, IdentityKind, IdentityStatus, Path, Relation};

    const LEAVER: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/leaver.yaml"
    ));
    const INCIDENT: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/incident.yaml"
    ));

    /// Fake provider: deactivate tokens, then delete them in the next stage with no grace.
    const QUICK: &str = "\
name: quick
triggers: [leaver, incident]
limits: { max_actions: 3 }
stages:
  - name: contain
    steps:
      - name: deactivate-tokens
        select: { provider: fake, kind: token }
        action: deactivate
        requires_approval: true
  - name: retire
    steps:
      - name: delete-tokens
        select: { provider: fake, kind: token, state: inactive }
        action: delete
        grace: 0s
  - name: rotate
    steps:
      - name: reassign
        select: { provider: fake, kind: service }
        action: reassign-owner
  - name: verify
    verify: true
";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn person(id: &str, email: &str, manager: Option<&str>) -> Identity {
        Identity {
            id: id.into(),
            email: email.into(),
            name: format!("Person {id}"),
            kind: IdentityKind::Human,
            status: IdentityStatus::Terminated,
            manager: manager.map(str::to_string),
            department: None,
            role: None,
            location: None,
            employment_type: None,
            tags: Default::default(),
        }
    }

    fn alice() -> Identity {
        person("E100", "alice@example.com", Some("E200"))
    }

    fn bob() -> Identity {
        person("E200", "bob@example.com", None)
    }

    fn f(
        provider: &str,
        kind: &str,
        name: &str,
        relation: Relation,
        holder: Holder,
        state: State,
    ) -> Finding {
        Finding {
            id: format!("{provider}:{kind}:{name}"),
            provider: provider.into(),
            kind: kind.into(),
            relation,
            holder,
            resource: name.into(),
            display: format!("{kind} {name}"),
            state,
            paths: vec![Path::new()
                .then("account", "user alice")
                .then("has", format!("{kind} {name}"))],
            attributes: BTreeMap::new(),
        }
    }

    fn book(text: &str) -> Playbook {
        playbook::parse("t.yaml", text, &ALL).unwrap_or_else(|d| panic!("{d:?}"))
    }

    fn input<'a>(
        book: &'a Playbook,
        identity: &'a Identity,
        manager: Option<&'a Identity>,
        findings: &'a [Finding],
        state_since: &'a BTreeMap<String, DateTime<Utc>>,
    ) -> PlanInput<'a> {
        PlanInput {
            playbook: book,
            identity,
            manager,
            findings,
            run_id: "run-1",
            now: now(),
            state_since,
            trigger: Trigger::Leaver,
            facts: &NO_FACTS,
            time_bound: &[],
            only: None,
            exposures: &[],
            gaps: &[],
        }
    }

    static NO_FACTS: std::sync::LazyLock<SelectionFacts> =
        std::sync::LazyLock::new(SelectionFacts::default);

    #[test]
    fn only_restricts_the_plan_to_the_given_findings() {
        let book = book(QUICK);
        let findings = vec![
            f("fake", "token", "t1", Owns, Account, Active),
            f("fake", "token", "t2", Owns, Account, Active),
        ];
        let (alice, bob) = (alice(), bob());
        let since = BTreeMap::new();
        let only: BTreeSet<String> = ["fake:token:t2".to_string()].into();
        let mut i = input(&book, &alice, Some(&bob), &findings, &since);
        i.only = Some(&only);
        let plan = build(&i).unwrap();
        assert!(plan.actions().all(|a| a.finding.id == "fake:token:t2"));
        assert_eq!(plan.action_count(), 2);
        assert!(plan.untouched.is_empty());
    }

    use Holder::{Account, Shared};
    use Relation::{CanAssume, CanRead, Created, MemberOf, Owns};
    use State::{Active, Inactive};

    /// A person's AWS findings covering every kind the leaver playbook handles.
    fn aws_findings() -> Vec<Finding> {
        let nhi = || Holder::Nhi("svc-build".into());
        let mut owned_user = f("aws", "nhi-user", "svc-build", Owns, nhi(), Active);
        owned_user
            .attributes
            .insert("owner".into(), "alice@example.com".into());
        let mut owned_role = f(
            "aws",
            "nhi-role",
            "deployer",
            Owns,
            Holder::Nhi("deployer".into()),
            Active,
        );
        owned_role.attributes.insert("owner".into(), "E100".into());
        vec![
            f("aws", "user", "alice", Owns, Account, Active),
            f("aws", "login-profile", "alice", Owns, Account, Active),
            f("aws", "access-key", "AKIAACTIVE", Owns, Account, Active),
            f(
                "aws",
                "access-key",
                "AKIAOLDINACTIVE",
                Owns,
                Account,
                Inactive,
            ),
            f(
                "aws",
                "access-key",
                "AKIAUNKNOWNSINCE",
                Owns,
                Account,
                Inactive,
            ),
            f("aws", "access-key", "AKIANHI", Owns, nhi(), Active),
            f("aws", "ssh-key", "APKA1", Owns, Account, Active),
            f("aws", "signing-certificate", "CERT1", Owns, Account, Active),
            f("aws", "service-credential", "SC1", Owns, Account, Active),
            f("aws", "mfa-device", "mfa1", Owns, Account, Active),
            f("aws", "group-membership", "devs", MemberOf, Account, Active),
            f(
                "aws",
                "group-policy",
                "devs-read",
                MemberOf,
                Account,
                Active,
            ),
            f("aws", "attached-policy", "ReadOnly", Owns, Account, Active),
            f("aws", "inline-policy", "extra", Owns, Account, Active),
            f("aws", "assumable-role", "ops", CanAssume, Shared, Active),
            f("aws", "secret", "db-password", CanRead, Shared, Active),
            f("aws", "secret", "alice-token", Owns, Shared, Active),
            f("aws", "secret", "made-by-alice", Created, Shared, Active),
            f(
                "aws",
                "secret",
                "already-rotated",
                CanRead,
                Shared,
                State::Rotated,
            ),
            owned_user,
            owned_role,
        ]
    }

    fn leaver_plan() -> Plan {
        let book = playbook::parse("leaver.yaml", LEAVER, crate::registry::CAPABILITIES).unwrap();
        let findings = aws_findings();
        let since: BTreeMap<String, DateTime<Utc>> = [(
            "aws:access-key:AKIAOLDINACTIVE".to_string(),
            now() - Duration::days(8),
        )]
        .into();
        let (alice, bob) = (alice(), bob());
        build(&input(&book, &alice, Some(&bob), &findings, &since)).unwrap()
    }

    fn acts(plan: &Plan, stage: &str) -> Vec<(String, String)> {
        plan.stages
            .iter()
            .find(|s| s.name == stage)
            .unwrap()
            .actions
            .iter()
            .map(|a| (a.verb.clone(), a.finding.id.clone()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(v, id)| (v.to_string(), id.to_string()))
            .collect()
    }

    #[test]
    fn a_contain_only_plan_has_the_keys_of_the_whole_plan_and_the_whole_plan_absorbs_it() {
        let leaver = playbook::parse("leaver.yaml", LEAVER, crate::registry::CAPABILITIES).unwrap();
        let all = aws_findings();
        // Her accounts as `resolve_accounts` names them: the user and what it holds.
        let accounts: Vec<Finding> = all
            .iter()
            .filter(|f| f.holder == Account && f.relation == Owns)
            .cloned()
            .collect();
        let (alice, bob) = (alice(), bob());
        let since = BTreeMap::new();
        let ahead = contain_only(&input(&leaver, &alice, Some(&bob), &accounts, &since))
            .unwrap()
            .expect("the leaver playbook starts with contain");
        assert!(ahead.contain_only);
        assert_eq!(
            ahead
                .stages
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["contain"]
        );
        assert!(ahead.untouched.is_empty());
        assert!(ahead.actions().all(|a| a.stage == CONTAIN));
        let whole = build(&input(&leaver, &alice, Some(&bob), &all, &since)).unwrap();
        let whole_keys: BTreeSet<&str> = whole.actions().map(|a| a.key.as_str()).collect();
        for a in ahead.actions() {
            assert!(whole_keys.contains(a.key.as_str()), "{a:?}");
        }
        assert!(ahead.action_count() < whole.actions().filter(|a| a.stage == CONTAIN).count());

        // The whole plan made after containment no longer sees the login profile (deleted
        // ahead): absorbing keeps that action, once, and adds nothing already there.
        let after: Vec<Finding> = all
            .iter()
            .filter(|f| f.kind != "login-profile")
            .cloned()
            .collect();
        let mut later = build(&input(&leaver, &alice, Some(&bob), &after, &since)).unwrap();
        assert!(!later.actions().any(|a| a.finding.kind == "login-profile"));
        let before = later.action_count();
        later.absorb(&ahead);
        assert_eq!(later.action_count(), before + 1);
        assert!(later
            .actions()
            .any(|a| a.finding.kind == "login-profile" && a.stage == CONTAIN));
        later.absorb(&ahead);
        assert_eq!(later.action_count(), before + 1);
        assert!(!later.contain_only);

        // A playbook that does not start with `contain` has no contain-only plan.
        let other = book(&QUICK.replacen("name: contain", "name: stop", 1));
        assert!(
            contain_only(&input(&other, &alice, Some(&bob), &accounts, &since))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn leaver_plan_contains_revokes_rotates_and_defers_deletes() {
        let plan = leaver_plan();
        let names: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["contain", "revoke", "rotate", "retire", "verify"]);
        assert_eq!(
            acts(&plan, "contain"),
            pairs(&[
                ("revoke-sessions", "aws:assumable-role:ops"),
                ("revoke-sessions", "aws:user:alice"),
                ("remove", "aws:login-profile:alice"),
                ("deactivate", "aws:access-key:AKIAACTIVE"),
                ("deactivate", "aws:service-credential:SC1"),
                ("deactivate", "aws:signing-certificate:CERT1"),
                ("deactivate", "aws:ssh-key:APKA1"),
                ("deactivate", "aws:mfa-device:mfa1"),
            ])
        );
        assert_eq!(
            acts(&plan, "revoke"),
            pairs(&[
                ("remove", "aws:group-membership:devs"),
                ("detach", "aws:attached-policy:ReadOnly"),
                ("remove", "aws:inline-policy:extra"),
            ])
        );
        assert_eq!(
            acts(&plan, "rotate"),
            pairs(&[
                ("rotate", "aws:secret:alice-token"),
                ("rotate", "aws:secret:db-password"),
                ("rotate", "aws:access-key:AKIANHI"),
                ("reassign-owner", "aws:nhi-role:deployer"),
                ("reassign-owner", "aws:nhi-user:svc-build"),
            ])
        );
        // Only the key deactivated by Closeout 8 days ago is deleted now.
        assert_eq!(
            acts(&plan, "retire"),
            pairs(&[("delete", "aws:access-key:AKIAOLDINACTIVE")])
        );
        let verify = plan.stages.last().unwrap();
        assert!(verify.verify && verify.actions.is_empty());
        assert_eq!(plan.action_count(), 17);
        assert_eq!(plan.max_actions, Some(200));
        assert!(!plan.exceeds_limit());
        // Informational and out-of-scope open findings are listed, closed ones are not.
        assert_eq!(
            plan.untouched,
            ["aws:group-policy:devs-read", "aws:secret:made-by-alice"]
        );
    }

    #[test]
    fn grace_counts_from_this_plan_the_journal_or_now() {
        let plan = leaver_plan();
        let deferred: BTreeMap<&str, &Deferred> = plan
            .deferred
            .iter()
            .map(|d| (d.finding_id.as_str(), d))
            .collect();
        let ids: Vec<&str> = deferred.keys().copied().collect();
        assert_eq!(
            ids,
            [
                "aws:access-key:AKIAACTIVE",
                "aws:access-key:AKIAUNKNOWNSINCE",
                "aws:service-credential:SC1",
                "aws:signing-certificate:CERT1",
                "aws:ssh-key:APKA1",
            ]
        );
        // Deactivated by this plan: due a grace period from now.
        let fresh = deferred["aws:access-key:AKIAACTIVE"];
        assert_eq!(
            (fresh.since, fresh.due_at),
            (now(), now() + Duration::days(7))
        );
        assert_eq!(
            (
                fresh.stage.as_str(),
                fresh.step.as_str(),
                fresh.verb.as_str()
            ),
            ("retire", "delete-deactivated-credentials", "delete")
        );
        assert_eq!(fresh.note, None);
        // Inactive with no journal record: counted from now, and said so.
        let unknown = deferred["aws:access-key:AKIAUNKNOWNSINCE"];
        assert_eq!(unknown.due_at, now() + Duration::days(7));
        assert!(unknown
            .note
            .as_deref()
            .unwrap()
            .contains("no journal record"));
    }

    #[test]
    fn a_journal_time_still_inside_the_grace_period_defers() {
        let book = playbook::parse("leaver.yaml", LEAVER, crate::registry::CAPABILITIES).unwrap();
        let findings = vec![f("aws", "access-key", "AKIA2", Owns, Account, Inactive)];
        let since = [(
            "aws:access-key:AKIA2".to_string(),
            now() - Duration::days(2),
        )]
        .into();
        let (alice, bob) = (alice(), bob());
        let plan = build(&input(&book, &alice, Some(&bob), &findings, &since)).unwrap();
        assert_eq!(plan.action_count(), 0);
        assert_eq!(plan.deferred[0].since, now() - Duration::days(2));
        assert_eq!(plan.deferred[0].due_at, now() + Duration::days(5));
        // Exactly at the due time it is an action.
        let since = [(
            "aws:access-key:AKIA2".to_string(),
            now() - Duration::days(7),
        )]
        .into();
        let plan = build(&input(&book, &alice, Some(&bob), &findings, &since)).unwrap();
        assert_eq!(
            acts(&plan, "retire"),
            pairs(&[("delete", "aws:access-key:AKIA2")])
        );
        assert!(plan.deferred.is_empty());
    }

    #[test]
    fn zero_grace_deletes_right_after_deactivation_in_the_same_run() {
        let book = book(QUICK);
        let findings = vec![
            f("fake", "token", "t1", Owns, Account, Active),
            f("fake", "token", "t0", Owns, Account, Inactive),
        ];
        let (alice, bob) = (alice(), bob());
        let plan = build(&input(
            &book,
            &alice,
            Some(&bob),
            &findings,
            &BTreeMap::new(),
        ))
        .unwrap();
        assert_eq!(
            acts(&plan, "contain"),
            pairs(&[("deactivate", "fake:token:t1")])
        );
        assert_eq!(
            acts(&plan, "retire"),
            pairs(&[("delete", "fake:token:t0"), ("delete", "fake:token:t1")])
        );
        assert!(plan.deferred.is_empty());
        let delete = &plan.stages[1].actions[1];
        assert_eq!(delete.expect, State::Deleted);
        assert_eq!(plan.stages[0].actions[0].expect, State::Inactive);
    }

    #[test]
    fn params_carry_the_run_the_cutoff_and_the_new_owner_in_the_old_form() {
        let plan = leaver_plan();
        for a in plan.actions() {
            assert_eq!(a.params.run_id, "run-1");
            let revoke = a.verb == "revoke-sessions";
            assert_eq!(
                a.params.sessions_issued_before,
                revoke.then_some(now()),
                "{}",
                a.finding.id
            );
            // Reassigning names the new owner; so does rotating an NHI's credential (the new
            // credential is recorded as the manager's).
            let nhi_rotation = a.verb == "rotate" && matches!(a.finding.holder, Holder::Nhi(_));
            if a.verb != "reassign-owner" && !nhi_rotation {
                assert_eq!(a.params.new_owner, None, "{}", a.finding.id);
            }
            if nhi_rotation {
                assert!(a.params.new_owner.is_some(), "{}", a.finding.id);
            }
        }
        let owner = |id: &str| {
            plan.actions()
                .find(|a| a.finding.id == id)
                .unwrap()
                .params
                .new_owner
                .clone()
        };
        assert_eq!(
            owner("aws:nhi-user:svc-build").as_deref(),
            Some("bob@example.com")
        );
        assert_eq!(owner("aws:nhi-role:deployer").as_deref(), Some("E200"));
    }

    #[test]
    fn owner_form_defaults_to_the_identity_email_without_an_owner_attribute() {
        let book = book(QUICK);
        let findings = vec![f(
            "fake",
            "service",
            "svc",
            Owns,
            Holder::Nhi("svc".into()),
            Active,
        )];
        let (alice, bob) = (alice(), bob());
        let plan = build(&input(
            &book,
            &alice,
            Some(&bob),
            &findings,
            &BTreeMap::new(),
        ))
        .unwrap();
        let a = plan.actions().next().unwrap();
        assert_eq!(a.params.new_owner.as_deref(), Some("bob@example.com"));
    }

    #[test]
    fn reassigning_without_a_manager_names_the_identity_step_and_finding() {
        let plan_err = {
            let book =
                playbook::parse("leaver.yaml", LEAVER, crate::registry::CAPABILITIES).unwrap();
            let findings = aws_findings();
            let alice = alice();
            build(&input(&book, &alice, None, &findings, &BTreeMap::new())).unwrap_err()
        };
        assert_eq!(
            plan_err,
            PlanError::NoManager {
                identity: "E100".into(),
                step: "reassign-nhi-owners".into(),
                finding: "aws:nhi-role:deployer".into(),
            }
        );
        let shown = plan_err.to_string();
        assert!(
            shown.contains("E100")
                && shown.contains("reassign-nhi-owners")
                && shown.contains("aws:nhi-role:deployer"),
            "{shown}"
        );
        // Without NHIs to reassign, no manager is needed.
        let book = playbook::parse("leaver.yaml", LEAVER, crate::registry::CAPABILITIES).unwrap();
        let findings = vec![f("aws", "user", "alice", Owns, Account, Active)];
        let alice = alice();
        assert!(build(&input(&book, &alice, None, &findings, &BTreeMap::new())).is_ok());
    }

    #[test]
    fn the_playbook_must_handle_the_trigger() {
        let book =
            playbook::parse("incident.yaml", INCIDENT, crate::registry::CAPABILITIES).unwrap();
        let (alice, bob) = (alice(), bob());
        let since = BTreeMap::new();
        let err = build(&input(&book, &alice, Some(&bob), &[], &since)).unwrap_err();
        assert!(matches!(err, PlanError::WrongTrigger { .. }));
        assert!(err.to_string().contains("does not handle trigger `leaver`"));
        let mut i = input(&book, &alice, Some(&bob), &[], &since);
        i.trigger = Trigger::Incident;
        assert!(build(&i).is_ok());
    }

    #[test]
    fn keys_are_32_hex_of_sha256_over_run_stage_step_finding_verb() {
        let plan = leaver_plan();
        let a = plan
            .actions()
            .find(|a| a.finding.id == "aws:user:alice")
            .unwrap();
        let expected = hex::encode(Sha256::digest(
            b"run-1/contain/revoke-sessions/aws:user:alice/revoke-sessions",
        ));
        assert_eq!(a.key, expected[..32]);
        assert_eq!(
            a.key,
            idempotency_key(
                "run-1",
                "contain",
                "revoke-sessions",
                "aws:user:alice",
                "revoke-sessions"
            )
        );
        let keys: BTreeSet<&str> = plan.actions().map(|a| a.key.as_str()).collect();
        assert_eq!(keys.len(), plan.action_count(), "keys are unique");
        assert!(keys
            .iter()
            .all(|k| k.len() == 32 && k.chars().all(|c| c.is_ascii_hexdigit())));
        // Another run gives other keys.
        assert_ne!(
            idempotency_key(
                "run-2",
                "contain",
                "revoke-sessions",
                "aws:user:alice",
                "revoke-sessions"
            ),
            a.key
        );
        let r = a.request();
        assert_eq!(
            (r.idempotency_key.as_str(), r.verb.as_str()),
            (a.key.as_str(), "revoke-sessions")
        );
        assert_eq!(r.finding, a.finding);
    }

    #[test]
    fn plans_are_deterministic_and_round_trip_through_json() {
        let book = playbook::parse("leaver.yaml", LEAVER, crate::registry::CAPABILITIES).unwrap();
        let (alice, bob) = (alice(), bob());
        let since = BTreeMap::new();
        let mut findings = aws_findings();
        let a = build(&input(&book, &alice, Some(&bob), &findings, &since)).unwrap();
        findings.reverse();
        findings.swap(0, 7);
        let b = build(&input(&book, &alice, Some(&bob), &findings, &since)).unwrap();
        let (ja, jb) = (
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap(),
        );
        assert_eq!(ja, jb);
        let back: Plan = serde_json::from_str(&ja).unwrap();
        assert_eq!(back, a);
        assert_eq!(serde_json::to_string(&back).unwrap(), ja);
        assert_eq!(a.playbook, "leaver");
        assert_eq!(a.playbook_digest, book.digest());
        assert_eq!(a.identity, alice);
        assert_eq!(
            (a.trigger.as_str(), a.run_id.as_str(), a.created_at),
            ("leaver", "run-1", now())
        );
    }

    #[test]
    fn a_finding_is_acted_on_at_most_once_per_step() {
        let book = book(QUICK);
        let t = f("fake", "token", "t1", Owns, Account, Active);
        let findings = vec![t.clone(), t.clone(), t];
        let (alice, bob) = (alice(), bob());
        let plan = build(&input(
            &book,
            &alice,
            Some(&bob),
            &findings,
            &BTreeMap::new(),
        ))
        .unwrap();
        assert_eq!(plan.stages[0].actions.len(), 1);
        assert_eq!(plan.stages[1].actions.len(), 1);
    }

    #[test]
    fn projected_state_stops_later_steps_from_acting_again() {
        // Two deactivate steps in successive stages: the second sees the key inactive.
        let text = QUICK.replace(
            "  - name: retire\n",
            "  - name: again\n    steps:\n      - name: deactivate-again\n        select: { provider: fake, kind: token }\n        action: deactivate\n  - name: retire\n",
        );
        let book = book(&text);
        let findings = vec![f("fake", "token", "t1", Owns, Account, Active)];
        let (alice, bob) = (alice(), bob());
        let plan = build(&input(
            &book,
            &alice,
            Some(&bob),
            &findings,
            &BTreeMap::new(),
        ))
        .unwrap();
        assert_eq!(acts(&plan, "again"), pairs(&[]));
        assert_eq!(acts(&plan, "retire"), pairs(&[("delete", "fake:token:t1")]));
    }

    #[test]
    fn the_blast_radius_limit_is_counted_over_all_stages() {
        let book = book(QUICK);
        let (alice, bob) = (alice(), bob());
        let two = vec![f("fake", "token", "t1", Owns, Account, Active)];
        let plan = build(&input(&book, &alice, Some(&bob), &two, &BTreeMap::new())).unwrap();
        assert_eq!((plan.action_count(), plan.exceeds_limit()), (2, false));
        let four = vec![
            f("fake", "token", "t1", Owns, Account, Active),
            f("fake", "token", "t2", Owns, Account, Active),
        ];
        let plan = build(&input(&book, &alice, Some(&bob), &four, &BTreeMap::new())).unwrap();
        assert_eq!((plan.action_count(), plan.exceeds_limit()), (4, true));
        assert!(plan
            .render_text()
            .contains("WARNING: 4 actions exceeds blast-radius limit 3: apply stops for explicit confirmation."));
        assert_eq!(plan.approval_count(), 2);
        assert!(plan.stages[0].actions.iter().all(|a| a.requires_approval));
        assert!(plan.stages[1].actions.iter().all(|a| !a.requires_approval));
    }

    #[test]
    fn render_text_reads_like_a_terraform_plan() {
        let plan = leaver_plan();
        let text = plan.render_text();
        for needle in [
            "Plan: leaver for E100 Person E100 <alice@example.com>",
            &format!("playbook leaver (sha256 {}), run run-1, planned at 2025-03-01T12:00:00Z", &plan.playbook_digest[..12]),
            "Stage 1/5 contain: 8 actions",
            "  step revoke-sessions\n    ~   revoke-sessions assumable-role ops\n          via E100 <alice@example.com> -account-> user alice -has-> assumable-role ops\n    ~   revoke-sessions user alice\n",
            "    -   remove login-profile alice",
            "    +/- rotate secret db-password",
            "Stage 4/5 retire: 1 action, 5 deferred",
            "    ... delete access-key AKIAACTIVE deferred until 2025-03-08T12:00:00Z (grace period from 2025-03-01T12:00:00Z)",
            "no journal record",
            "Stage 5/5 verify: re-resolve every provider from live state and probe old credentials (verify)",
            "    ! aws:group-policy:devs-read",
            "Plan: 17 actions, 5 deferred, 2 untouched open findings.",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(!text.contains("WARNING"));
    }

    #[test]
    fn render_text_never_prints_sensitive_attribute_values() {
        let book = book(QUICK);
        let mut t = f("fake", "token", "t1", Owns, Account, Active);
        for (k, v) in [
            ("secret-arn", "CANARY-1"),
            ("Password-Last-Used", "CANARY-2"),
            ("value_hash", "CANARY-3"),
            ("client_secret_hint", "CANARY-4"),
            ("last-used", "2025-02-01"),
        ] {
            t.attributes.insert(k.into(), v.into());
        }
        let findings = vec![t];
        let (alice, bob) = (alice(), bob());
        let plan = build(&input(
            &book,
            &alice,
            Some(&bob),
            &findings,
            &BTreeMap::new(),
        ))
        .unwrap();
        let text = plan.render_text();
        assert!(!text.contains("CANARY"), "{text}");
        assert!(text.contains("(last-used=2025-02-01)"), "{text}");
        assert!(text.contains("[requires approval]"), "{text}");
        assert!(
            text.contains("(2 requiring approval)") || text.contains("(1 requiring approval)"),
            "{text}"
        );
    }

    #[test]
    fn a_mover_plan_says_its_untouched_findings_stay() {
        let mut plan = leaver_plan();
        plan.trigger = Trigger::Mover;
        let text = plan.render_text();
        assert!(
            text.contains(
                "they stay as they are (verify compares the live entitlements with the policy)"
            ),
            "{text}"
        );
        assert!(!text.contains("verify will report them open"), "{text}");
        assert!(text.contains("5 deferred, 2 kept open findings."), "{text}");
    }

    #[test]
    fn an_empty_graph_gives_an_empty_plan() {
        let book = playbook::parse("leaver.yaml", LEAVER, crate::registry::CAPABILITIES).unwrap();
        let alice = alice();
        let plan = build(&input(&book, &alice, None, &[], &BTreeMap::new())).unwrap();
        assert_eq!(plan.action_count(), 0);
        assert!(plan.deferred.is_empty() && plan.untouched.is_empty());
        assert_eq!(plan.stages.len(), 5);
        assert!(plan
            .render_text()
            .contains("Plan: 0 actions, 0 deferred, 0 untouched open findings."));
    }

    /// Regression (issue 16): two applications whose display names differ only in case and
    /// spacing had their rotated credentials published to one secret, each overwriting the
    /// other. A plan whose rotations publish two objects' credentials to one secret is refused
    /// before anything runs; one secret per object passes.
    #[test]
    fn two_credentials_published_to_one_secret_are_refused_at_plan_time() {
        use closeout_contract::action::{PUBLISH_FOR_ATTR, PUBLISH_SECRET_ATTR};
        let action = |object: &str, secret: &str| {
            let mut finding = f(
                "azure",
                "app-password",
                object,
                Relation::Owns,
                Holder::Account,
                State::Active,
            );
            finding
                .attributes
                .insert(PUBLISH_SECRET_ATTR.into(), secret.into());
            finding
                .attributes
                .insert(PUBLISH_FOR_ATTR.into(), object.into());
            PlannedAction {
                key: format!("k-{object}"),
                stage: "rotate".into(),
                step: "rotate-entra-app-credentials".into(),
                verb: verbs::ROTATE.name.into(),
                expect: State::Rotated,
                finding,
                params: ActionParams::default(),
                requires_approval: false,
                approvals: 0,
            }
        };
        let stage = |actions| PlannedStage {
            name: "rotate".into(),
            verify: false,
            actions,
        };
        let err = check_publish_collisions(&[stage(vec![
            action("app-1", "app-payments-api-credential"),
            action("app-2", "app-payments-api-credential"),
        ])])
        .unwrap_err();
        assert!(
            matches!(&err, PlanError::PublishCollision { secret, objects, .. }
                if secret == "app-payments-api-credential" && objects == "app-1, app-2"),
            "{err}"
        );
        assert!(err.to_string().contains("{object_id}"), "{err}");
        check_publish_collisions(&[stage(vec![
            action("app-1", "app-payments-api-app-1-credential"),
            action("app-2", "app-payments-api-app-2-credential"),
        ])])
        .unwrap();
    }
}
