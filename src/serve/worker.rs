//! A worker: claim the next event (the queue keeps one identity's events in order and never
//! hands out two of them at once), run its playbook, record the outcome.
//!
//! Each event opens the engine afresh, so a changed HR export or playbook is picked up without
//! a restart. A recovered event (its run interrupted by a crash) resumes that run; the journal
//! makes sure no finished action runs twice.

use super::AppState;
use crate::engine::{ApplyOptions, Engine, EngineError};
use crate::pipeline::progress::Progress;
use crate::store::blocking::off_runtime;
use crate::store::journal::RunStatus;
use crate::store::lease::LeaseError;
use crate::store::queue::{Claimed, EventQueue, Outcome};
use crate::trigger::Trigger;
use std::sync::Arc;
use std::time::Duration;

/// How long an idle worker sleeps before looking again (events with a future `effective_at`
/// become due without anyone waking it).
const IDLE_POLL: Duration = Duration::from_secs(2);

pub(crate) async fn run(
    state: Arc<AppState>,
    n: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // A connection of this worker's own: a claim that waits for the store's lock (up to the
    // busy timeout) holds up this worker only, not the others, intake or the status routes.
    let path = state.config.store.path.clone();
    let opened = match &state.postgres {
        Some(store) => Ok(EventQueue::open_postgres(
            store,
            super::claim_ttl(&state.config),
        )),
        None => off_runtime(move || EventQueue::open(&path)).await,
    };
    let queue = match opened {
        Ok(q) => q,
        Err(e) => {
            tracing::error!(worker = n, error = %e, "cannot open the event queue; this worker stops");
            return;
        }
    };
    loop {
        if *stop.borrow() {
            return;
        }
        let claimed = match queue.call(|q| q.claim_next(chrono::Utc::now())).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(worker = n, error = %e, "cannot read the event queue");
                None
            }
        };
        match claimed {
            Some(event) => {
                crate::metrics::global().claims.inc();
                process(&state, &queue, n, event).await
            }
            None => {
                tokio::select! {
                    _ = state.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

async fn process(state: &AppState, queue: &EventQueue, n: usize, claimed: Claimed) {
    let seq = claimed.seq;
    let event = &claimed.event;
    let trigger = event.kind;
    tracing::info!(worker = n, seq, %trigger, identity = %event.identity, "processing event");
    let outcome = match Engine::open_async(&state.config_path).await {
        Ok(mut engine) => {
            engine.actor = format!(
                "closeout-serve (event {seq} from {})",
                event.source.as_str()
            );
            engine.os_user = None;
            // A joiner the HR export does not list yet: act on the identity the event describes.
            if engine.identity(&event.identity).is_err() {
                if let Some(joiner) = event.joiner_identity() {
                    match engine.directory.with(joiner) {
                        Ok(directory) => engine.directory = directory,
                        Err(e) => {
                            tracing::warn!(seq, error = %e, "the joiner event's identity is not usable")
                        }
                    }
                }
            }
            // Keep the claim alive while the run goes on (on PostgreSQL a claim not renewed
            // expires and another replica takes the event over).
            let heartbeat = async {
                let every = super::claim_ttl(&state.config) / 3;
                loop {
                    tokio::time::sleep(every).await;
                    let token = claimed.token.clone();
                    if let Err(e) = queue.call(move |q| q.heartbeat(seq, &token)).await {
                        tracing::warn!(seq, error = %e, "cannot renew the event's claim");
                    }
                }
            };
            let ran = tokio::select! {
                ran = run_event(state, queue, &engine, &claimed) => ran,
                never = heartbeat => never,
            };
            match ran {
                Some(outcome) => outcome,
                None => return,
            }
        }
        Err(e) => Outcome::Failed {
            message: format!("cannot open the engine: {e}"),
        },
    };
    let label = match &outcome {
        Outcome::Done { .. } => "done",
        Outcome::Failed { .. } => "failed",
        Outcome::WaitingApproval { .. } => "waiting-approval",
        Outcome::Skipped { .. } => "skipped",
    };
    crate::metrics::global().event(trigger.as_str(), label);
    let token = claimed.token.clone();
    if let Err(e) = queue
        .call(move |q| q.finish(seq, &token, &outcome, chrono::Utc::now()))
        .await
    {
        tracing::error!(seq, error = %e, "cannot record the event's outcome; it is retried after a restart");
    }
}

/// How long an event waits before another try when another process holds its identity's lease.
const LEASE_RETRY: chrono::TimeDelta = chrono::TimeDelta::seconds(15);

/// Process one event; `None` when it was given back to the queue for later (another process
/// acts for its identity now).
async fn run_event(
    state: &AppState,
    queue: &EventQueue,
    engine: &Engine,
    claimed: &Claimed,
) -> Option<Outcome> {
    let event = &claimed.event;
    let trigger = event.kind;
    let progress = Progress::silent();
    // The event names its run before the run exists: a worker that takes the event over (this
    // process died, or on PostgreSQL its claim expired) finishes that run, even one that had
    // already closed, instead of starting a second run for the same event.
    let named = match &claimed.run_id {
        // A run already exists (the service stopped mid-run, or the run was approved): finish
        // it. None under that id: the earlier claimer stopped before creating it.
        Some(run_id) => match engine.resume(run_id, &progress).await {
            Err(EngineError::NoSuchRun(_)) => Some(run_id.clone()),
            result => {
                return deferred(queue, claimed, result)
                    .await
                    .map(|r| outcome_of(r, Some(run_id)))
            }
        },
        None => None,
    };
    let identity = match engine.identity(&event.identity) {
        Ok(i) => i,
        Err(e) => return Some(skip(queue, claimed, named.is_some(), e.to_string()).await),
    };
    if let Err(e) = engine.playbook(trigger) {
        return Some(skip(queue, claimed, named.is_some(), e.to_string()).await);
    }
    let run_id = match named {
        Some(run_id) => run_id,
        None => {
            let run_id = crate::engine::run::new_run_id(chrono::Utc::now());
            record_run(queue, claimed, Some(&run_id)).await;
            run_id
        }
    };
    // Protected identities always wait for a person; other triggers wait unless configured to
    // apply automatically.
    let auto = state.config.serve.applies_automatically(trigger) && !identity.is_protected();
    let options = ApplyOptions {
        yes: true,
        override_protected: identity.is_protected(),
        confirm_actions: None,
        effective_at: Some(event.effective_at),
        require_approval: !auto,
        to: mover_attributes(trigger, event),
        // A scheduled rotation acts only on the findings the scheduler found due (and the
        // first identity to reach a shared secret takes it); other events act on everything.
        only_findings: (event.kind == Trigger::Rotation).then(|| {
            crate::policy::rotation::event_findings(&event.attributes).unwrap_or_default()
        }),
        run_id: Some(run_id.clone()),
    };
    let mut no_prompt = |_: &crate::pipeline::plan::Plan| Ok(true);
    let result = engine
        .apply(trigger, &identity.id, &options, &mut no_prompt, &progress)
        .await;
    let result = deferred(queue, claimed, result).await?;
    // The run that ran: the one named above, or an unfinished run of the identity and trigger
    // that the engine resumed instead.
    let ran = match &result {
        Ok(report) => Some(report.run.clone()),
        Err(EngineError::WaitingApproval { run, .. }) => Some(run.clone()),
        // Failed: the named run if it was created before the failure.
        Err(_) => match engine.stored_run(&run_id).await {
            Ok(_) => Some(run_id.clone()),
            Err(_) => None,
        },
    };
    if ran.as_ref() != Some(&run_id) {
        record_run(queue, claimed, ran.as_deref()).await;
    }
    Some(outcome_of(result, ran.as_ref()))
}

/// The event is skipped; a run named on it that was never created is forgotten.
async fn skip(queue: &EventQueue, claimed: &Claimed, named: bool, reason: String) -> Outcome {
    if named {
        record_run(queue, claimed, None).await;
    }
    Outcome::Skipped { reason }
}

/// Name (or, with `None`, forget) the claimed event's run in the queue.
async fn record_run(queue: &EventQueue, claimed: &Claimed, run: Option<&str>) {
    let (seq, token, run) = (claimed.seq, claimed.token.clone(), run.map(str::to_string));
    if let Err(e) = queue
        .call(move |q| q.set_run(seq, &token, run.as_deref()))
        .await
    {
        tracing::error!(seq, error = %e, "cannot record the event's run");
    }
}

/// The result, or `None` when another process holds the identity's lease: the event is given
/// back to the queue, to be tried again after [`LEASE_RETRY`], not failed.
async fn deferred<T>(
    queue: &EventQueue,
    claimed: &Claimed,
    result: Result<T, EngineError>,
) -> Option<Result<T, EngineError>> {
    match result {
        Err(EngineError::Lease(e @ LeaseError::Held { .. })) => {
            tracing::info!(seq = claimed.seq, error = %e, "identity busy; the event waits");
            crate::metrics::global().event(claimed.event.kind.as_str(), "deferred");
            let retry_at = chrono::Utc::now() + LEASE_RETRY;
            let (seq, token, why) = (claimed.seq, claimed.token.clone(), e.to_string());
            if let Err(e) = queue
                .call(move |q| q.release(seq, &token, &why, retry_at))
                .await
            {
                tracing::error!(seq = claimed.seq, error = %e, "cannot give the event back; it is retried after a restart");
            }
            None
        }
        other => Some(other),
    }
}

fn outcome_of(
    result: Result<crate::pipeline::report::ClosureReport, EngineError>,
    run: Option<&String>,
) -> Outcome {
    match result {
        // A run that ended failed (an action failed) is not done: the event says so, and the
        // identity's next event of the trigger (or `closeout resume`) finishes that run.
        Ok(report) if report.status == RunStatus::Failed.as_str() => Outcome::Failed {
            message: format!(
                "run {} ended failed (an action failed; its report names it); the next apply or resume of it finishes it",
                report.run
            ),
        },
        Ok(report) => Outcome::Done { run_id: report.run },
        Err(EngineError::WaitingApproval { run, .. }) => Outcome::WaitingApproval { run_id: run },
        Err(e) => Outcome::Failed {
            message: match run {
                Some(run) => format!("run {run}: {e}"),
                None => e.to_string(),
            },
        },
    }
}

/// A mover event's new attributes that a mover can change (others, such as a new display name,
/// do not move entitlements).
fn mover_attributes(
    trigger: Trigger,
    event: &crate::event::LifecycleEvent,
) -> std::collections::BTreeMap<String, String> {
    if !trigger.takes_new_attributes() {
        return Default::default();
    }
    event
        .attributes
        .iter()
        .filter(|(k, _)| crate::engine::MOVABLE_ATTRIBUTES.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
