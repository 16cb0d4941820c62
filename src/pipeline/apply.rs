//! Apply: run a plan's actions stage by stage, journaled before and after each provider call.
//!
//! Within a stage, actions run concurrently up to each provider's in-flight limit (the
//! provider's own call gate adds its token-bucket rate limit). A stage starts only when the one
//! before it has finished. Retryable and throttled errors back off exponentially with full
//! jitter, honouring a provider's `Retry-After`. Each attempt runs inside a
//! [`receipt::collect`] scope: the provider calls it made (operation, status, request id) are
//! journaled and audited with the action's outcome.

use crate::config::ExecutionConfig;
use crate::pipeline::plan::PlannedAction;
use crate::pipeline::progress::Progress;
use crate::pipeline::spans;
use crate::registry::Providers;
use crate::store::audit::{AuditEntry, AuditLog};
use crate::store::journal::{ActionStart, Journal, JournalError};
use closeout_contract::receipt;
use closeout_contract::{ActionRequest, ErrorClass, ProviderCall, ProviderError, RetryPolicy};
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// How one planned action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionResult {
    /// The provider made the change.
    Done {
        /// The provider's non-secret description of what it did.
        detail: String,
        /// The finding's state after the action, as the provider reports it; the journal
        /// records it as the start of any grace period.
        state: String,
    },
    /// The provider found the change already in effect (e.g. the key was already deleted); counts
    /// as finished.
    AlreadyDone {
        /// The provider's description.
        detail: String,
        /// The finding's state, as the provider reports it (or the state the verb leaves, when
        /// the provider reported the change as already done).
        state: String,
    },
    /// Finished in an earlier (interrupted) attempt of this run; not repeated.
    FinishedEarlier,
    /// The provider call failed permanently, or on its last attempt.
    Failed {
        /// The provider's error message.
        error: String,
        /// The provider's endpoint did not answer (as opposed to answering with a refusal).
        unreachable: bool,
    },
}

impl ActionResult {
    /// Whether the action failed; a stage with a failure stops the run before the next stage.
    pub fn is_failure(&self) -> bool {
        matches!(self, ActionResult::Failed { .. })
    }
}

/// An error that stops a stage: the run's records could not be written, or the plan names a
/// provider that is not configured. A provider's refusal is not one (it is an
/// [`ActionResult::Failed`]).
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The journal could not record the action.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The audit log could not record the action; the action is not marked finished without it.
    #[error(transparent)]
    Audit(#[from] crate::store::audit::AuditError),
    /// The plan names a provider that is not configured now (the configuration changed since
    /// the plan was made).
    #[error("action {key}: provider {provider} is not configured")]
    ProviderMissing {
        /// The action's idempotency key.
        key: String,
        /// The provider it needs.
        provider: String,
    },
}

/// Runs a plan's actions against the providers, journaling and auditing each one.
pub struct Executor<'a> {
    /// The configured provider instances.
    pub providers: &'a Providers,
    /// Where each action is recorded before and after its provider call.
    pub journal: &'a Journal,
    /// The audit log: each finished or failed action is appended before the journal marks it.
    pub audit: &'a AuditLog,
    /// Retries and backoff.
    pub execution: &'a ExecutionConfig,
    /// Where progress is reported (a terminal, or nowhere).
    pub progress: &'a Progress,
    /// Who is acting (recorded in the audit log).
    pub actor: &'a str,
}

impl Executor<'_> {
    /// Run one stage's actions; returns each action's result by key.
    pub async fn run_stage(
        &self,
        run_id: &str,
        identity: &str,
        actions: &[PlannedAction],
    ) -> Result<BTreeMap<String, ActionResult>, ExecutorError> {
        let mut semaphores: BTreeMap<&str, Arc<Semaphore>> = BTreeMap::new();
        for a in actions {
            let provider = self.providers.get(&a.finding.provider).ok_or_else(|| {
                ExecutorError::ProviderMissing {
                    key: a.key.clone(),
                    provider: a.finding.provider.clone(),
                }
            })?;
            semaphores
                .entry(a.finding.provider.as_str())
                .or_insert_with(|| {
                    Arc::new(Semaphore::new(provider.limits().max_in_flight.max(1)))
                });
        }
        let total: usize = semaphores.values().map(|s| s.available_permits()).sum();
        let results = stream::iter(actions)
            .map(|action| {
                let semaphore = Arc::clone(&semaphores[action.finding.provider.as_str()]);
                async move {
                    let _permit = semaphore.acquire_owned().await;
                    let span = spans::action(&action.key, &action.verb, &action.finding.provider);
                    let result = self
                        .run_action(run_id, identity, action)
                        .instrument(span)
                        .await;
                    (action.key.clone(), result)
                }
            })
            .buffer_unordered(total.max(1))
            .collect::<Vec<_>>()
            .await;
        let mut out = BTreeMap::new();
        for (key, result) in results {
            out.insert(key, result?);
        }
        Ok(out)
    }

    async fn run_action(
        &self,
        run_id: &str,
        identity: &str,
        action: &PlannedAction,
    ) -> Result<ActionResult, ExecutorError> {
        let key = action.key.clone();
        let previous = self.journal.call(move |j| j.action(&key)).await?;
        if let Some(previous) = previous {
            if previous.status.is_finished() {
                self.progress.action_finished(
                    &action.verb,
                    &action.finding.display,
                    "finished earlier",
                );
                return Ok(ActionResult::FinishedEarlier);
            }
            if previous.status == crate::store::journal::ActionStatus::Started {
                tracing::warn!(
                    key = %action.key,
                    finding = %action.finding.id,
                    "action was interrupted mid-flight; running it again (provider actions are idempotent)"
                );
                self.settle_after_interrupted(action, previous.last_started_at)
                    .await;
            }
        }
        let provider = self
            .providers
            .get(&action.finding.provider)
            .ok_or_else(|| ExecutorError::ProviderMissing {
                key: action.key.clone(),
                provider: action.finding.provider.clone(),
            })?;
        let (run, a) = (run_id.to_string(), action.clone());
        self.journal
            .call(move |j| {
                j.action_started(&ActionStart {
                    run_id: &run,
                    key: &a.key,
                    stage: &a.stage,
                    step: &a.step,
                    finding_id: &a.finding.id,
                    provider: &a.finding.provider,
                    verb: &a.verb,
                })
            })
            .await?;
        let request = ActionRequest {
            idempotency_key: action.key.clone(),
            verb: action.verb.clone(),
            finding: action.finding.clone(),
            params: action.params.clone(),
        };
        let mut attempt = 1u32;
        let started = std::time::Instant::now();
        let metrics = crate::metrics::global();
        // Every attempt's calls to the provider's server, failed attempts included: the
        // evidence names each request the provider can look up.
        let mut calls: Vec<ProviderCall> = Vec::new();
        let result = loop {
            let (outcome, attempt_calls) = receipt::collect(provider.execute(&request)).await;
            calls.extend(attempt_calls);
            match outcome {
                Ok(outcome) => {
                    let state = outcome.state.as_str().to_string();
                    break if outcome.already_done {
                        ActionResult::AlreadyDone {
                            detail: outcome.detail,
                            state,
                        }
                    } else {
                        ActionResult::Done {
                            detail: outcome.detail,
                            state,
                        }
                    };
                }
                Err(e) => {
                    let class = e.class();
                    let class_name = match class {
                        ErrorClass::Retryable => "retryable",
                        ErrorClass::Throttled(_) => "throttled",
                        ErrorClass::Permanent => "permanent",
                        ErrorClass::AlreadyDone => "already-done",
                    };
                    if class != ErrorClass::AlreadyDone {
                        metrics.provider_error(&action.finding.provider, class_name);
                    }
                    if class == ErrorClass::AlreadyDone {
                        let state = provider
                            .capabilities()
                            .verb(&action.finding.kind, &action.verb)
                            .map(|v| v.leaves.as_str())
                            .unwrap_or("unknown")
                            .to_string();
                        break ActionResult::AlreadyDone {
                            detail: e.to_string(),
                            state,
                        };
                    }
                    match self.backoff(&e, attempt) {
                        Some(wait) => {
                            tracing::warn!(key = %action.key, attempt, wait_ms = wait.as_millis() as u64, error = %e, "retrying");
                            tokio::time::sleep(wait).await;
                            attempt += 1;
                        }
                        None => {
                            tracing::warn!(key = %action.key, finding = %action.finding.id, attempt, error = %e, "action failed");
                            break ActionResult::Failed {
                                error: e.to_string(),
                                unreachable: e.is_unreachable(),
                            };
                        }
                    }
                }
            }
        };
        let outcome = match &result {
            ActionResult::Done { .. } => "done",
            ActionResult::AlreadyDone { .. } => "already-done",
            ActionResult::Failed { .. } => "failed",
            ActionResult::FinishedEarlier => "finished-earlier",
        };
        metrics.action(&action.finding.provider, outcome, started.elapsed());
        self.record(run_id, identity, action, &result, calls)
            .await?;
        Ok(result)
    }

    /// Wait until an interrupted start's calls can no longer land: a request the dead process
    /// sent may still be served after it died, and an action that reads the state first (has
    /// my run already made this version?) would not see it yet. The wait ends
    /// `interrupted_settle_secs` after that start (at once when that has passed).
    async fn settle_after_interrupted(
        &self,
        action: &PlannedAction,
        started: chrono::DateTime<chrono::Utc>,
    ) {
        let settle = chrono::Duration::seconds(self.execution.interrupted_settle_secs as i64);
        let Ok(wait) = (started + settle - chrono::Utc::now()).to_std() else {
            return;
        };
        if wait.is_zero() {
            return;
        }
        self.progress.message(&format!(
            "{} {}: its interrupted start may still have calls in flight; waiting {} s before running it again",
            action.verb,
            action.finding.display,
            wait.as_secs().max(1)
        ));
        tokio::time::sleep(wait).await;
    }

    /// The wait before the next attempt, or `None` to give up: the arithmetic of the providers'
    /// [`RetryPolicy`] (full jitter under `base · 2^attempt`, capped; never sooner than a
    /// `Retry-After`), with the executor's attempts and no deadline.
    fn backoff(&self, error: &ProviderError, attempt: u32) -> Option<Duration> {
        if attempt >= self.execution.max_attempts {
            return None;
        }
        let policy = RetryPolicy {
            max_attempts: self.execution.max_attempts,
            base_ms: self.execution.base_backoff_ms,
            cap_ms: self.execution.max_backoff_ms,
            deadline_ms: u64::MAX,
        };
        // The policy's first backoff is `base`; the executor's has always been `2 · base`.
        match error.class() {
            ErrorClass::Retryable => Some(policy.delay_for(attempt + 1, None)),
            ErrorClass::Throttled(retry_after) => Some(policy.delay_for(attempt + 1, retry_after)),
            ErrorClass::Permanent | ErrorClass::AlreadyDone => None,
        }
    }

    async fn record(
        &self,
        run_id: &str,
        identity: &str,
        action: &PlannedAction,
        result: &ActionResult,
        calls: Vec<ProviderCall>,
    ) -> Result<(), ExecutorError> {
        let (event, detail, state) = match result {
            ActionResult::Done { detail, state } => {
                ("action.done", detail.as_str(), state.as_str())
            }
            ActionResult::AlreadyDone { detail, state } => {
                ("action.already-done", detail.as_str(), state.as_str())
            }
            ActionResult::Failed { error, .. } => ("action.failed", error.as_str(), ""),
            ActionResult::FinishedEarlier => return Ok(()),
        };
        // Audit first, journal second: a crash in between leaves the action `started` in the
        // journal, so resume runs it again (idempotently) and audits it again — an action is
        // never finished without an audit record.
        self.audit
            .append_async(AuditEntry {
                actor: self.actor.to_string(),
                event: event.to_string(),
                run: Some(run_id.to_string()),
                identity: Some(identity.to_string()),
                details: serde_json::json!({
                    "key": action.key,
                    "stage": action.stage,
                    "step": action.step,
                    "verb": action.verb,
                    "finding": action.finding.id,
                    "provider": action.finding.provider,
                    "outcome": detail,
                    "state": state,
                    "provider_calls": calls,
                }),
            })
            .await?;
        let (key, owned) = (action.key.clone(), result.clone());
        self.journal
            .call(move |j| match &owned {
                ActionResult::Done { detail, state } => {
                    j.action_finished(&key, false, state, detail, &calls)
                }
                ActionResult::AlreadyDone { detail, state } => {
                    j.action_finished(&key, true, state, detail, &calls)
                }
                ActionResult::Failed { error, .. } => j.action_failed(&key, error, &calls),
                ActionResult::FinishedEarlier => Ok(()),
            })
            .await?;
        self.progress
            .action_finished(&action.verb, &action.finding.display, event);
        Ok(())
    }
}
