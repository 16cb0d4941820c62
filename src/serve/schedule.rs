//! Periodic work inside `closeout serve`: the file source (diff the HR export against the last
//! one seen, and enqueue the joiner, mover and leaver events), reconcile, and scheduled rotation
//! (due findings of the rotation policy become `rotation` events), each on its cadence.

use super::AppState;
use crate::event::{EventSource, LifecycleEvent};
use crate::store::blocking::off_runtime;
use crate::store::snapshot::SourceSnapshot;
use crate::trigger::Trigger;
use std::sync::Arc;
use std::time::Duration;

/// The copy of the HR export last diffed: beside a SQLite store, in a PostgreSQL one.
fn snapshot(state: &AppState) -> SourceSnapshot {
    let source = &state.config.source.path;
    match &state.postgres {
        Some(store) => SourceSnapshot::postgres(store, source),
        None => SourceSnapshot::beside(&state.config.store.path, source),
    }
}

/// Why a scheduler pass failed (logged; the next pass tries again).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScheduleError {
    #[error("cannot read {0}: {1}")]
    Read(std::path::PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Snapshot(#[from] crate::store::snapshot::SnapshotError),
    #[error(transparent)]
    Diff(#[from] crate::intake::diff::DiffError),
    #[error("cannot open the engine: {0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Queue(#[from] crate::store::queue::QueueError),
    #[error(transparent)]
    Journal(#[from] crate::store::journal::JournalError),
    #[error(transparent)]
    Interrupted(#[from] crate::store::blocking::Interrupted),
}

/// One poll of the file source; returns how many new events were stored. The first poll only
/// takes the snapshot. Events are stored before the snapshot moves on, and their ids are stable
/// for a given export, so a crash in between re-submits duplicates, never loses one.
pub(crate) fn poll_source(state: &AppState) -> Result<usize, ScheduleError> {
    let source = &state.config.source.path;
    let snapshot = snapshot(state);
    let current = std::fs::read(source).map_err(|e| ScheduleError::Read(source.clone(), e))?;
    let Some(previous) = snapshot.read()? else {
        snapshot.write(&current)?;
        return Ok(0);
    };
    if previous == current {
        return Ok(0);
    }
    let now = chrono::Utc::now();
    let diff = crate::intake::diff::diff_exports(source, &previous, &current, now)?;
    for w in &diff.warnings {
        tracing::warn!(warning = ?w, "HR export diff");
    }
    let mut new = 0;
    for entry in &diff.events {
        let stored = state.queue.submit(&entry.event, now)?;
        let outcome = if stored.is_new() {
            new += 1;
            "accepted"
        } else {
            "duplicate"
        };
        crate::metrics::global().event(entry.event.kind.as_str(), outcome);
    }
    snapshot.write(&current)?;
    if new > 0 {
        state.wake.notify_waiters();
    }
    Ok(new)
}

pub(crate) async fn file_source(
    state: Arc<AppState>,
    every: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    on_cadence(
        state,
        every,
        stop,
        "file source (HR export)",
        // Reads and writes files and commits to the store: off the async runtime.
        |s| off_runtime(move || poll_source(&s)),
    )
    .await
}

pub(crate) async fn reconcile(
    state: Arc<AppState>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if !state.leads().await {
            continue;
        }
        let engine = match crate::engine::Engine::open_async(&state.config_path).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "reconcile: cannot open the engine");
                continue;
            }
        };
        match crate::engine::reconcile::reconcile(&engine).await {
            Ok(report) => {
                crate::metrics::global()
                    .drift
                    .set(report.drift.len() as i64);
                for d in &report.drift {
                    tracing::warn!(kind = ?d.kind, identity = %d.identity, detail = %d.detail, "drift");
                }
            }
            Err(e) => tracing::error!(error = %e, "reconcile failed"),
        }
    }
}

/// One pass of the rotation scheduler: compute what the rotation policy makes due and store one
/// `rotation` event per identity with due findings, unless that identity already has a rotation
/// event queued, running or waiting for approval. Returns how many events were stored.
pub(crate) async fn schedule_rotations(state: Arc<AppState>) -> Result<usize, ScheduleError> {
    let engine = crate::engine::Engine::open_async(&state.config_path).await?;
    let report = crate::engine::rotation::due(&engine, None).await?;
    crate::metrics::global()
        .rotations_due
        .set(i64::try_from(report.due_count()).unwrap_or(i64::MAX));
    for i in &report.identities {
        for u in &i.unknown {
            tracing::warn!(identity = %i.identity, finding = %u.id, reason = %u.reason, "rotation: age unknown");
        }
    }
    let busy = state
        .queue
        .call(|q| q.unfinished_identities(Trigger::Rotation))
        .await?;
    let now = chrono::Utc::now();
    let events = report
        .identities
        .iter()
        .filter(|i| !i.due.is_empty() && !busy.contains(&i.identity))
        .map(|i| {
            let ids: Vec<String> = i.ids().into_iter().collect();
            LifecycleEvent {
                source: EventSource::Scheduler,
                external_id: format!(
                    "rotation-{}-{}",
                    i.identity,
                    now.format("%Y%m%dT%H%M%S%.6fZ")
                ),
                kind: Trigger::Rotation,
                identity: i.identity.clone(),
                attributes: [(
                    crate::policy::rotation::EVENT_FINDINGS.to_string(),
                    ids.join(" "),
                )]
                .into(),
                effective_at: now,
            }
        })
        .collect::<Vec<_>>();
    off_runtime(move || store_events(&state, events, now)).await
}

/// Store the scheduler's events (a duplicate id is not stored twice) and wake the workers.
/// Returns how many were new.
fn store_events(
    state: &AppState,
    events: impl IntoIterator<Item = LifecycleEvent>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<usize, ScheduleError> {
    let mut stored = 0;
    for event in events {
        let submitted = state.queue.submit(&event, now)?;
        if submitted.is_new() {
            stored += 1;
            crate::metrics::global().event(event.kind.as_str(), "accepted");
        }
    }
    if stored > 0 {
        state.wake.notify_waiters();
    }
    Ok(stored)
}

/// Run `pass` now and then every `every` until stopped, logging what it stored.
async fn on_cadence<F, Fut>(
    state: Arc<AppState>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    what: &'static str,
    pass: F,
) where
    F: Fn(Arc<AppState>) -> Fut,
    Fut: std::future::Future<Output = Result<usize, ScheduleError>>,
{
    loop {
        if *stop.borrow() {
            return;
        }
        // On PostgreSQL only the replica holding the leader lease runs the schedulers.
        let leads = state.leads().await;
        match if leads {
            pass(state.clone()).await
        } else {
            Ok(0)
        } {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "{what}: events stored"),
            Err(e) => tracing::error!(error = %e, "{what}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

pub(crate) async fn rotation(
    state: Arc<AppState>,
    every: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    on_cadence(state, every, stop, "rotation scheduler", |s| async move {
        schedule_rotations(s).await
    })
    .await
}

/// One pass of the expiry scheduler: every identity with a recorded time-bound grant past its
/// expiry gets one `mover` event with no new attributes — a run that converges it to the policy,
/// which removes the expired grant (and revokes the sessions and rotates the secrets that came
/// with it). The event id names the latest expiry, so a pass after the run stores a duplicate,
/// not a second run. Returns how many events were stored.
pub(crate) fn schedule_expiries(state: &AppState) -> Result<usize, ScheduleError> {
    let engine = crate::engine::Engine::open(&state.config_path)?;
    let now = chrono::Utc::now();
    let expired = engine.journal.expired_grants(now)?;
    let mut latest: std::collections::BTreeMap<String, chrono::DateTime<chrono::Utc>> =
        Default::default();
    for (identity, grant) in &expired {
        let at = latest.entry(identity.clone()).or_insert(grant.expires_at);
        *at = (*at).max(grant.expires_at);
    }
    let busy = state.queue.unfinished_identities(Trigger::Mover)?;
    let events = latest
        .into_iter()
        .filter(|(identity, _)| {
            !busy.contains(identity) && engine.directory.get(identity).is_some()
        })
        .map(|(identity, expires_at)| LifecycleEvent {
            source: EventSource::Scheduler,
            external_id: format!(
                "expiry-{identity}-{}",
                expires_at.format("%Y%m%dT%H%M%S%.6fZ")
            ),
            kind: Trigger::Mover,
            identity,
            attributes: Default::default(),
            effective_at: now,
        });
    store_events(state, events, now)
}

pub(crate) async fn expiry(
    state: Arc<AppState>,
    every: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    on_cadence(state, every, stop, "expiry scheduler", |s| async move {
        // Opens the engine, reads the journal and commits to the store: off the async runtime.
        off_runtime(move || schedule_expiries(&s)).await
    })
    .await
}
