//! The event queue on PostgreSQL (`[store] url`), shared by several `closeout serve` replicas:
//! the same records and answers as the SQLite queue, plus claims that expire.
//!
//! - A claim takes the oldest runnable event with `FOR UPDATE SKIP LOCKED`, so two replicas
//!   claiming at once never take the same event nor wait on each other; the per-identity order is
//!   the SQLite queue's (a later event of an identity waits while an earlier one is unfinished).
//! - A claim expires `claim_ttl` after it was taken or last renewed ([`PgQueue::heartbeat`]),
//!   measured by the database's clock; a claim of a process on this host that no longer exists
//!   is treated as expired at once (a restarted replica resumes its own events without waiting). The next claim on any replica first puts expired claims
//!   back to pending, first in line, keeping their run id: the replica that takes one resumes the
//!   dead replica's run from the journal. A late heartbeat or finish of the old claim then fails
//!   with [`QueueError::NotClaimed`], as on SQLite after a recovery.

use super::types::{claimed, parse_status, ts, RawRow, COLUMNS};
use super::types::{Claimed, Outcome, QueueError, QueueStatus, QueuedEvent, Recovered, Submitted};
use crate::event::LifecycleEvent;
use crate::store::lease::Holder;
use crate::store::pg::{PgConn, PgStore};
use crate::trigger::Trigger;
use chrono::{DateTime, Utc};
use postgres::GenericClient;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The PostgreSQL event queue. Blocking; shared through [`super::EventQueue`].
pub struct PgQueue {
    conn: PgConn,
    claim_ttl_secs: f64,
    taken_over: AtomicU64,
    claims: AtomicU64,
}

fn raw_row(r: &postgres::Row) -> Result<RawRow, postgres::Error> {
    Ok(RawRow {
        seq: r.try_get(0)?,
        source: r.try_get(1)?,
        external_id: r.try_get(2)?,
        kind: r.try_get(3)?,
        identity: r.try_get(4)?,
        attributes_json: r.try_get(5)?,
        effective_at: r.try_get(6)?,
        received_at: r.try_get(7)?,
        status: r.try_get(8)?,
        run_id: r.try_get(9)?,
        attempts: r.try_get(10)?,
        message: r.try_get(11)?,
        claimed_at: r.try_get(12)?,
        finished_at: r.try_get(13)?,
    })
}

fn records(rows: &[postgres::Row]) -> Result<Vec<QueuedEvent>, QueueError> {
    rows.iter()
        .map(|r| raw_row(r).map_err(QueueError::from)?.into_record())
        .collect()
}

fn changed(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Expired claims, and claims of a process on this host that no longer exists (a restarted
/// replica takes its own in-flight events at once, as on SQLite), back to pending (first in
/// line, run id kept); returns them.
fn take_over_expired(
    client: &mut impl GenericClient,
) -> Result<Vec<postgres::Row>, postgres::Error> {
    let dead_here: Vec<String> = client
        .query(
            "SELECT claimed_by FROM event_queue WHERE status = 'processing' \
             AND claimed_by IS NOT NULL AND claim_expires_at >= now()",
            &[],
        )?
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .filter(|by| Holder::described_is_dead_here(by))
        .collect();
    client.query(
        &format!(
            "UPDATE event_queue SET status = 'pending', claim_token = NULL, claimed_by = NULL, \
             claim_expires_at = NULL, priority = 1 \
             WHERE status = 'processing' \
             AND (claim_expires_at < now() OR claimed_by = ANY($1)) RETURNING {COLUMNS}"
        ),
        &[&dead_here],
    )
}

impl PgQueue {
    /// The queue in `store`; claims expire `claim_ttl` after they were taken or renewed.
    pub fn new(store: &Arc<PgStore>, claim_ttl: std::time::Duration) -> PgQueue {
        PgQueue {
            conn: PgConn::new(store),
            claim_ttl_secs: claim_ttl.as_secs_f64(),
            taken_over: AtomicU64::new(0),
            claims: AtomicU64::new(0),
        }
    }

    /// Claims of other (dead) holders this queue handle put back to pending so far.
    pub fn claims_taken_over(&self) -> u64 {
        self.taken_over.load(Ordering::Relaxed)
    }

    /// Events this queue handle claimed so far.
    pub fn claims_made(&self) -> u64 {
        self.claims.load(Ordering::Relaxed)
    }

    /// See [`super::EventQueue::submit`]: committed before it returns (synchronous commit).
    pub fn submit(
        &self,
        event: &LifecycleEvent,
        received_at: DateTime<Utc>,
    ) -> Result<Submitted, QueueError> {
        self.conn.with(|c| {
            let mut tx = c.transaction()?;
            let submitted = PgQueue::submit_in(&mut tx, event, received_at)?;
            tx.commit()?;
            Ok(submitted)
        })
    }

    /// Store an event inside the caller's transaction on the store (SCIM writes a User and its
    /// event in one transaction): kept only if the caller commits.
    pub fn submit_in(
        tx: &mut postgres::Transaction<'_>,
        event: &LifecycleEvent,
        received_at: DateTime<Utc>,
    ) -> Result<Submitted, QueueError> {
        submit_in(tx, event, received_at)
    }

    /// See [`super::EventQueue::submit_batch`]: one transaction for the batch.
    pub fn submit_batch(
        &self,
        events: &[(LifecycleEvent, DateTime<Utc>)],
    ) -> Result<Vec<Result<Submitted, QueueError>>, QueueError> {
        self.conn.with(|c| {
            let mut tx = c.transaction()?;
            let mut answers = Vec::with_capacity(events.len());
            for (event, received_at) in events {
                match PgQueue::submit_in(&mut tx, event, *received_at) {
                    Err(e @ QueueError::Postgres(_)) => return Err(e),
                    answer => answers.push(answer),
                }
            }
            tx.commit()?;
            Ok(answers)
        })
    }

    /// See [`super::EventQueue::claim_next`]; expired claims are taken over first.
    pub fn claim_next(&self, now: DateTime<Utc>) -> Result<Option<Claimed>, QueueError> {
        let now_s = ts(now);
        let token = format!("{:032x}", rand::random::<u128>());
        let by = Holder::this_process().describe();
        let row = self.conn.with(|c| {
            let expired = take_over_expired(c)?;
            if !expired.is_empty() {
                self.taken_over
                    .fetch_add(expired.len() as u64, Ordering::Relaxed);
                crate::metrics::global()
                    .claims_taken_over
                    .inc_by(expired.len() as u64);
                tracing::warn!(
                    events = expired.len(),
                    "claims of a replica that stopped renewing them expired: taken over"
                );
            }
            c.query_opt(
                &format!(
                    "WITH next AS ( \
                       SELECT e.seq FROM event_queue e WHERE e.status = 'pending' \
                       AND e.effective_at <= $1 AND (e.not_before IS NULL OR e.not_before <= $1) \
                       AND NOT EXISTS (SELECT 1 FROM event_queue p WHERE p.identity = e.identity \
                         AND p.seq < e.seq \
                         AND p.status IN ('pending', 'processing', 'waiting-approval')) \
                       ORDER BY e.priority DESC, e.seq LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     UPDATE event_queue q SET status = 'processing', claim_token = $2, \
                       claimed_at = $1, claimed_by = $3, \
                       claim_expires_at = now() + make_interval(secs => $4), \
                       attempts = q.attempts + 1, priority = 0 \
                     FROM next WHERE q.seq = next.seq RETURNING {}",
                    COLUMNS
                        .split(", ")
                        .map(|col| format!("q.{col}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                &[&now_s, &token, &by, &self.claim_ttl_secs],
            )
            .map_err(QueueError::from)
        })?;
        let Some(row) = row else {
            return Ok(None);
        };
        self.claims.fetch_add(1, Ordering::Relaxed);
        let record = raw_row(&row)?.into_record()?;
        Ok(Some(Claimed {
            seq: record.seq,
            token,
            event: record.event,
            run_id: record.run_id,
            // RETURNING gives the row after the update: this claim is counted.
            attempts: record.attempts,
        }))
    }

    /// See [`super::EventQueue::heartbeat`]: the claim's expiry moves `claim_ttl` past now.
    pub fn heartbeat(&self, seq: i64, token: &str) -> Result<(), QueueError> {
        let n = self.conn.with(|c| {
            c.execute(
                "UPDATE event_queue SET claim_expires_at = now() + make_interval(secs => $3) \
                 WHERE seq = $1 AND claim_token = $2 AND status = 'processing'",
                &[&seq, &token, &self.claim_ttl_secs],
            )
            .map_err(QueueError::from)
        })?;
        claimed(changed(n), seq)
    }

    /// See [`super::EventQueue::set_run`].
    pub fn set_run(&self, seq: i64, token: &str, run_id: Option<&str>) -> Result<(), QueueError> {
        let n = self.conn.with(|c| {
            c.execute(
                "UPDATE event_queue SET run_id = $3 WHERE seq = $1 AND claim_token = $2 \
                 AND status = 'processing'",
                &[&seq, &token, &run_id],
            )
            .map_err(QueueError::from)
        })?;
        claimed(changed(n), seq)
    }

    /// See [`super::EventQueue::finish`].
    pub fn finish(
        &self,
        seq: i64,
        token: &str,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        let (status, run_id, message, finished) = outcome.columns();
        let finished_at = finished.then(|| ts(now));
        let n = self.conn.with(|c| {
            c.execute(
                "UPDATE event_queue SET status = $3, run_id = COALESCE($4, run_id), message = $5, \
                 finished_at = $6, claim_token = NULL, claimed_by = NULL, claim_expires_at = NULL \
                 WHERE seq = $1 AND claim_token = $2 AND status = 'processing'",
                &[
                    &seq,
                    &token,
                    &status.as_str(),
                    &run_id,
                    &message,
                    &finished_at,
                ],
            )
            .map_err(QueueError::from)
        })?;
        claimed(changed(n), seq)
    }

    /// See [`super::EventQueue::release`].
    pub fn release(
        &self,
        seq: i64,
        token: &str,
        error: &str,
        not_before: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        let not_before = ts(not_before);
        let n = self.conn.with(|c| {
            c.execute(
                "UPDATE event_queue SET status = 'pending', claim_token = NULL, claimed_by = NULL, \
                 claim_expires_at = NULL, message = $3, not_before = $4 \
                 WHERE seq = $1 AND claim_token = $2 AND status = 'processing'",
                &[&seq, &token, &error, &not_before],
            )
            .map_err(QueueError::from)
        })?;
        claimed(changed(n), seq)
    }

    /// The events whose claims expired (their replica died), pending again and first in line,
    /// with their run ids. Unlike SQLite's, it leaves live replicas' claims alone.
    pub fn recover(&self) -> Result<Vec<Recovered>, QueueError> {
        let rows = self
            .conn
            .with(|c| take_over_expired(c).map_err(QueueError::from))?;
        self.taken_over
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        crate::metrics::global()
            .claims_taken_over
            .inc_by(rows.len() as u64);
        let mut recovered: Vec<Recovered> = records(&rows)?
            .into_iter()
            .map(|r| Recovered {
                seq: r.seq,
                event: r.event,
                run_id: r.run_id,
                attempts: r.attempts,
            })
            .collect();
        recovered.sort_by_key(|r| r.seq);
        Ok(recovered)
    }

    /// See [`super::EventQueue::approve_waiting`].
    pub fn approve_waiting(&self, run_id: &str) -> Result<Option<i64>, QueueError> {
        let row = self.conn.with(|c| {
            c.query_opt(
                "UPDATE event_queue SET status = 'pending', priority = 1, not_before = NULL \
                 WHERE run_id = $1 AND status = 'waiting-approval' RETURNING seq",
                &[&run_id],
            )
            .map_err(QueueError::from)
        })?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// See [`super::EventQueue::get`].
    pub fn get(&self, seq: i64) -> Result<Option<QueuedEvent>, QueueError> {
        let rows = self.conn.with(|c| {
            c.query(
                &format!("SELECT {COLUMNS} FROM event_queue WHERE seq = $1"),
                &[&seq],
            )
            .map_err(QueueError::from)
        })?;
        Ok(records(&rows)?.into_iter().next())
    }

    /// See [`super::EventQueue::list`].
    pub fn list(
        &self,
        limit: usize,
        status: Option<QueueStatus>,
    ) -> Result<Vec<QueuedEvent>, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let status = status.map(QueueStatus::as_str);
        let rows = self.conn.with(|c| {
            c.query(
                &format!(
                    "SELECT {COLUMNS} FROM event_queue WHERE ($1::TEXT IS NULL OR status = $1) \
                     ORDER BY seq DESC LIMIT $2"
                ),
                &[&status, &limit],
            )
            .map_err(QueueError::from)
        })?;
        records(&rows)
    }

    /// See [`super::EventQueue::unfinished_identities`].
    pub fn unfinished_identities(&self, kind: Trigger) -> Result<BTreeSet<String>, QueueError> {
        let rows = self.conn.with(|c| {
            c.query(
                "SELECT DISTINCT identity FROM event_queue WHERE kind = $1 \
                 AND status IN ('pending', 'processing', 'waiting-approval')",
                &[&kind.as_str()],
            )
            .map_err(QueueError::from)
        })?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(QueueError::from))
            .collect()
    }

    /// See [`super::EventQueue::counts`].
    pub fn counts(&self) -> Result<BTreeMap<QueueStatus, u64>, QueueError> {
        let mut counts: BTreeMap<QueueStatus, u64> =
            QueueStatus::ALL.into_iter().map(|s| (s, 0)).collect();
        let rows = self.conn.with(|c| {
            c.query(
                "SELECT status, COUNT(*) FROM event_queue GROUP BY status",
                &[],
            )
            .map_err(QueueError::from)
        })?;
        for row in rows {
            let (status, n): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
            counts.insert(parse_status(0, &status)?, u64::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }

    /// See [`super::EventQueue::depth`].
    pub fn depth(&self) -> Result<u64, QueueError> {
        let n: i64 = self.conn.with(|c| {
            c.query_one(
                "SELECT COUNT(*) FROM event_queue WHERE status IN ('pending', 'processing')",
                &[],
            )?
            .try_get(0)
            .map_err(QueueError::from)
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// Store an event in the caller's transaction, or report the stored event it duplicates.
fn submit_in(
    tx: &mut postgres::Transaction<'_>,
    event: &LifecycleEvent,
    received_at: DateTime<Utc>,
) -> Result<Submitted, QueueError> {
    let attributes = serde_json::to_string(&event.attributes).map_err(|e| QueueError::Corrupt {
        seq: 0,
        message: format!("cannot encode attributes: {e}"),
    })?;
    let inserted = tx.query_opt(
        "INSERT INTO event_queue (source, external_id, kind, identity, attributes_json, \
         effective_at, received_at, status) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') \
         ON CONFLICT (source, external_id) DO NOTHING RETURNING seq",
        &[
            &event.source.as_str(),
            &event.external_id,
            &event.kind.as_str(),
            &event.identity,
            &attributes,
            &ts(event.effective_at),
            &ts(received_at),
        ],
    )?;
    if let Some(row) = inserted {
        return Ok(Submitted::New {
            seq: row.try_get(0)?,
        });
    }
    let row = tx.query_one(
        "SELECT seq, status FROM event_queue WHERE source = $1 AND external_id = $2",
        &[&event.source.as_str(), &event.external_id],
    )?;
    let (seq, status): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
    Ok(Submitted::Duplicate {
        seq,
        status: parse_status(seq, &status)?,
    })
}
