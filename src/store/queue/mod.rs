//! The durable event queue of `closeout serve`: lifecycle events from every intake, in their own
//! table of the journal's SQLite database (`[store] path`).
//!
//! Guarantees (see `docs/serve.md`, "Intake"):
//! - **Durable before acknowledged**: [`EventQueue::submit`] returns only after its transaction
//!   committed with `synchronous=FULL` (the WAL is fsynced).
//! - **Deduplicated**: `(source, external_id)` is unique; a second submit stores nothing and says
//!   which event it duplicates and where that one is.
//! - **Ordered per identity**: an event is claimable only when every earlier event of the same
//!   identity is finished (`done`, `failed` or `skipped`), so one identity's events run in
//!   submission order and never two at once. Different identities run in parallel.
//! - **Not early**: an event is not claimed before its `effective_at` (nor before the back-off
//!   set by [`EventQueue::release`]).
//! - **Exactly once across crashes**: a claim marks the event `processing` in one `BEGIN
//!   IMMEDIATE` transaction; the worker records its run id ([`EventQueue::set_run`]) and then the
//!   outcome. After a crash, [`EventQueue::recover`] returns the events left `processing`, with
//!   their run id, so the server resumes that run (the journal skips its finished actions)
//!   instead of starting another; they are claimed before anything else.
//!
//! Two backends behind one API: the SQLite file (the default) and PostgreSQL ([`PgQueue`],
//! `[store] url`), which several `closeout serve` replicas share. There a claim also has an
//! expiry in the database, pushed on by [`EventQueue::heartbeat`]; an event whose claim expired
//! (its replica died) is taken over by the next claim on any replica, first in line and with its
//! run id, and [`EventQueue::recover`] returns only such expired claims, never a live replica's.

mod pg;
mod types;

pub use pg::PgQueue;
use types::{claimed, parse_status, ts, RawRow, COLUMNS};
pub use types::{
    Claimed, Outcome, QueueError, QueueStatus, QueuedEvent, Recovered, SubmitCounts, Submitted,
};

use crate::event::LifecycleEvent;
use crate::trigger::Trigger;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::StoreConfig;
use crate::store::pg::PgStore;

/// How long a claim on the PostgreSQL queue lasts without a heartbeat.
pub const DEFAULT_CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(60);

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS event_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    identity TEXT NOT NULL,
    attributes_json TEXT NOT NULL,
    effective_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    status TEXT NOT NULL,
    not_before TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    claim_token TEXT,
    claimed_at TEXT,
    run_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    finished_at TEXT,
    UNIQUE (source, external_id)
);
CREATE INDEX IF NOT EXISTS event_queue_by_status ON event_queue(status, effective_at);
CREATE INDEX IF NOT EXISTS event_queue_by_identity ON event_queue(identity, seq);
CREATE INDEX IF NOT EXISTS event_queue_by_run ON event_queue(run_id);
CREATE INDEX IF NOT EXISTS event_queue_claim_order ON event_queue(status, priority DESC, seq);
"#;

/// The durable event queue (see the module documentation for its guarantees). Safe to share between
/// threads (a clone shares the connection); several processes may open the same store. Async code
/// calls it through [`EventQueue::call`]. The same API over either backend: the SQLite file
/// ([`EventQueue::open`]) or the PostgreSQL store ([`EventQueue::open_postgres`], [`PgQueue`]).
#[derive(Clone)]
pub struct EventQueue {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite {
        conn: Arc<Mutex<Connection>>,
        path: PathBuf,
    },
    Postgres(Arc<PgQueue>),
}

impl EventQueue {
    /// Open (creating the file, its directory and the table if needed) the queue at `path`,
    /// normally the journal's database.
    pub fn open(path: &Path) -> Result<EventQueue, QueueError> {
        let open_err = |message: String| QueueError::Open {
            path: path.to_path_buf(),
            message,
        };
        // synchronous=FULL: a commit is on disk when it returns, which `submit` promises.
        let conn = crate::store::sqlite::open_durable(path).map_err(|e| open_err(e.to_string()))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| open_err(e.to_string()))?;
        Ok(EventQueue {
            backend: Backend::Sqlite {
                conn: Arc::new(Mutex::new(conn)),
                path: path.to_path_buf(),
            },
        })
    }

    /// The queue in the store `config` names: the SQLite file, or the PostgreSQL database
    /// (connected and migrated first; claims expire after [`DEFAULT_CLAIM_TTL`]). Blocking.
    pub fn open_config(config: &StoreConfig) -> Result<EventQueue, QueueError> {
        if config.url.is_none() {
            return EventQueue::open(&config.path);
        }
        let store = PgStore::open(config)?;
        Ok(EventQueue::open_postgres(&store, DEFAULT_CLAIM_TTL))
    }

    /// The queue in the PostgreSQL store (already migrated by [`PgStore::open`]); claims expire
    /// `claim_ttl` after the claim or the last [`EventQueue::heartbeat`].
    pub fn open_postgres(store: &Arc<PgStore>, claim_ttl: std::time::Duration) -> EventQueue {
        EventQueue {
            backend: Backend::Postgres(Arc::new(PgQueue::new(store, claim_ttl))),
        }
    }

    /// The SQLite file, `None` for the PostgreSQL store.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite { path, .. } => Some(path),
            Backend::Postgres(_) => None,
        }
    }

    /// The PostgreSQL backend, `None` for SQLite.
    pub fn postgres(&self) -> Option<&PgQueue> {
        match &self.backend {
            Backend::Sqlite { .. } => None,
            Backend::Postgres(pg) => Some(pg),
        }
    }

    /// Run `f` on this queue off the async runtime (see [`crate::store::blocking`]), e.g.
    /// `queue.call(move |q| q.depth()).await`.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&EventQueue) -> Result<R, QueueError> + Send + 'static,
    ) -> Result<R, QueueError> {
        let queue = self.clone();
        crate::store::blocking::off_runtime(move || f(&queue)).await
    }

    /// The SQLite connection, or the PostgreSQL backend to hand the call to.
    fn conn(&self) -> Result<MutexGuard<'_, Connection>, &PgQueue> {
        match &self.backend {
            // Every write is one transaction, so a poisoned lock leaves SQLite consistent.
            Backend::Sqlite { conn, .. } => Ok(conn.lock().unwrap_or_else(|p| p.into_inner())),
            Backend::Postgres(pg) => Err(pg),
        }
    }

    /// Store an event durably, or report the stored event it duplicates.
    pub fn submit(
        &self,
        event: &LifecycleEvent,
        received_at: DateTime<Utc>,
    ) -> Result<Submitted, QueueError> {
        let mut conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg.submit(event, received_at),
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let submitted = EventQueue::submit_in(&tx, event, received_at)?;
        tx.commit()?;
        Ok(submitted)
    }

    /// Store several events in one transaction, one commit (one fsync) for all: what
    /// [`crate::store::group_commit::GroupCommit`] gives concurrent submitters. Each event gets its own
    /// answer (an event whose attributes cannot be encoded is refused alone; a later event with the
    /// `(source, external_id)` of an earlier one in the batch is its duplicate). An SQLite error
    /// rolls the whole batch back and is the outer error: nothing of it was stored.
    pub fn submit_batch(
        &self,
        events: &[(LifecycleEvent, DateTime<Utc>)],
    ) -> Result<Vec<Result<Submitted, QueueError>>, QueueError> {
        let mut conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg.submit_batch(events),
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut answers = Vec::with_capacity(events.len());
        for (event, received_at) in events {
            match EventQueue::submit_in(&tx, event, *received_at) {
                Err(QueueError::Sqlite(e)) => return Err(QueueError::Sqlite(e)),
                answer => answers.push(answer),
            }
        }
        tx.commit()?;
        Ok(answers)
    }

    /// Store an event inside the caller's transaction on the store's file (SCIM writes a User
    /// and its event in one transaction): kept only if the caller commits. Opening a second
    /// connection for the event instead would wait on the caller's own write lock.
    pub fn submit_in(
        tx: &rusqlite::Transaction<'_>,
        event: &LifecycleEvent,
        received_at: DateTime<Utc>,
    ) -> Result<Submitted, QueueError> {
        let attributes =
            serde_json::to_string(&event.attributes).map_err(|e| QueueError::Corrupt {
                seq: 0,
                message: format!("cannot encode attributes: {e}"),
            })?;
        let existing: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, status FROM event_queue WHERE source = ?1 AND external_id = ?2",
                params![event.source.as_str(), event.external_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((seq, status)) = existing {
            return Ok(Submitted::Duplicate {
                seq,
                status: parse_status(seq, &status)?,
            });
        }
        tx.execute(
            "INSERT INTO event_queue (source, external_id, kind, identity, attributes_json, \
             effective_at, received_at, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending')",
            params![
                event.source.as_str(),
                event.external_id,
                event.kind.as_str(),
                event.identity,
                attributes,
                ts(event.effective_at),
                ts(received_at),
            ],
        )?;
        Ok(Submitted::New {
            seq: tx.last_insert_rowid(),
        })
    }

    /// Submit several events (an HR export diff): each is stored once, duplicates are counted.
    pub fn submit_all(
        &self,
        events: &[LifecycleEvent],
        received_at: DateTime<Utc>,
    ) -> Result<SubmitCounts, QueueError> {
        let mut counts = SubmitCounts::default();
        for event in events {
            match self.submit(event, received_at)? {
                Submitted::New { .. } => counts.new += 1,
                Submitted::Duplicate { .. } => counts.duplicates += 1,
            }
        }
        Ok(counts)
    }

    /// Claim the next runnable event: pending, effective, past any back-off, and the oldest
    /// unfinished event of its identity. Recovered and approved events come first, then
    /// submission order.
    pub fn claim_next(&self, now: DateTime<Utc>) -> Result<Option<Claimed>, QueueError> {
        let now_s = ts(now);
        let mut conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg.claim_next(now),
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Walk the pending events in claim order and stop at the first that may run. Left to
        // itself SQLite takes `event_queue_by_status` (it serves the effective_at range), visits
        // every due pending event and sorts them, inside the write transaction that intake's
        // commits wait for: 12 ms per claim with 20,000 pending (docs/serve.md, "Load").
        let row = tx
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM event_queue e INDEXED BY event_queue_claim_order \
                     WHERE e.status = 'pending' \
                     AND e.effective_at <= ?1 AND (e.not_before IS NULL OR e.not_before <= ?1) \
                     AND NOT EXISTS (SELECT 1 FROM event_queue p WHERE p.identity = e.identity \
                       AND p.seq < e.seq AND p.status IN ('pending', 'processing', 'waiting-approval')) \
                     ORDER BY e.priority DESC, e.seq LIMIT 1"
                ),
                params![now_s],
                raw_row,
            )
            .optional()?;
        let Some(raw) = row else {
            tx.commit()?;
            return Ok(None);
        };
        let token = format!("{:032x}", rand::random::<u128>());
        tx.execute(
            "UPDATE event_queue SET status = 'processing', claim_token = ?2, claimed_at = ?3, \
             attempts = attempts + 1, priority = 0 WHERE seq = ?1",
            params![raw.seq, token, now_s],
        )?;
        tx.commit()?;
        let record = raw.into_record()?;
        Ok(Some(Claimed {
            seq: record.seq,
            token,
            event: record.event,
            run_id: record.run_id,
            attempts: record.attempts + 1,
        }))
    }

    /// Record the run of a claimed event before the run exists, so whoever takes the event over
    /// finishes that run; `None` forgets it (the run was never created).
    pub fn set_run(&self, seq: i64, token: &str, run_id: Option<&str>) -> Result<(), QueueError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg.set_run(seq, token, run_id),
        };
        let n = conn.execute(
            "UPDATE event_queue SET run_id = ?3 WHERE seq = ?1 AND claim_token = ?2 \
             AND status = 'processing'",
            params![seq, token, run_id],
        )?;
        claimed(n, seq)
    }

    /// Keep a claim alive while its run goes on (a worker calls it every third of the claim's
    /// lifetime): on PostgreSQL it moves the claim's expiry on, so a live replica's event is never
    /// taken over; on SQLite, where claims live until the process restarts, it only checks that
    /// the claim still holds. [`QueueError::NotClaimed`] when it does not.
    pub fn heartbeat(&self, seq: i64, token: &str) -> Result<(), QueueError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg.heartbeat(seq, token),
        };
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM event_queue WHERE seq = ?1 AND claim_token = ?2 \
             AND status = 'processing'",
            params![seq, token],
            |r| r.get(0),
        )?;
        claimed(usize::from(n > 0), seq)
    }

    /// Record how a claimed event ended.
    pub fn finish(
        &self,
        seq: i64,
        token: &str,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg.finish(seq, token, outcome, now),
        };
        let (status, run_id, message, finished) = outcome.columns();
        let n = conn.execute(
            "UPDATE event_queue SET status = ?3, run_id = COALESCE(?4, run_id), message = ?5, \
             finished_at = ?6, claim_token = NULL WHERE seq = ?1 AND claim_token = ?2 \
             AND status = 'processing'",
            params![
                seq,
                token,
                status.as_str(),
                run_id,
                message,
                finished.then(|| ts(now)),
            ],
        )?;
        claimed(n, seq)
    }

    /// Give a claimed event back after a transient failure: pending again, not claimed before
    /// `not_before`. Later events of the identity keep waiting behind it.
    pub fn release(
        &self,
        seq: i64,
        token: &str,
        error: &str,
        not_before: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg.release(seq, token, error, not_before),
        };
        let n = conn.execute(
            "UPDATE event_queue SET status = 'pending', claim_token = NULL, message = ?3, \
             not_before = ?4 WHERE seq = ?1 AND claim_token = ?2 AND status = 'processing'",
            params![seq, token, error, ts(not_before)],
        )?;
        claimed(n, seq)
    }

    /// At start-up: every event left `processing` by a crashed process becomes pending again,
    /// first in line; returned with its run id so the caller can resume that run.
    pub fn recover(&self) -> Result<Vec<Recovered>, QueueError> {
        let mut conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg.recover(),
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let raws = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {COLUMNS} FROM event_queue WHERE status = 'processing' ORDER BY seq"
            ))?;
            let rows = stmt.query_map([], raw_row)?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        tx.execute(
            "UPDATE event_queue SET status = 'pending', claim_token = NULL, priority = 1 \
             WHERE status = 'processing'",
            [],
        )?;
        tx.commit()?;
        raws.into_iter()
            .map(|raw| {
                let r = raw.into_record()?;
                Ok(Recovered {
                    seq: r.seq,
                    event: r.event,
                    run_id: r.run_id,
                    attempts: r.attempts,
                })
            })
            .collect()
    }

    /// The run was approved: its event goes back to pending (first in line) so a worker resumes
    /// the run. `None` when no event waits on that run.
    pub fn approve_waiting(&self, run_id: &str) -> Result<Option<i64>, QueueError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg.approve_waiting(run_id),
        };
        let seq = conn
            .query_row(
                "UPDATE event_queue SET status = 'pending', priority = 1, not_before = NULL \
                 WHERE run_id = ?1 AND status = 'waiting-approval' RETURNING seq",
                params![run_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(seq)
    }

    /// The stored event with this sequence number, or `None`.
    pub fn get(&self, seq: i64) -> Result<Option<QueuedEvent>, QueueError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg.get(seq),
        };
        let raw = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM event_queue WHERE seq = ?1"),
                params![seq],
                raw_row,
            )
            .optional()?;
        raw.map(RawRow::into_record).transpose()
    }

    /// The newest events first, optionally only those in one status.
    pub fn list(
        &self,
        limit: usize,
        status: Option<QueueStatus>,
    ) -> Result<Vec<QueuedEvent>, QueueError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg.list(limit, status),
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM event_queue WHERE (?1 IS NULL OR status = ?1) \
             ORDER BY seq DESC LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![status.map(QueueStatus::as_str), limit], raw_row)?;
        rows.map(|r| r.map_err(QueueError::from).and_then(RawRow::into_record))
            .collect()
    }

    /// Identities with an event of `kind` not finished yet (pending, processing or waiting for
    /// approval): the rotation scheduler gives them no second one.
    pub fn unfinished_identities(&self, kind: Trigger) -> Result<BTreeSet<String>, QueueError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg.unfinished_identities(kind),
        };
        let mut stmt = conn.prepare(
            "SELECT DISTINCT identity FROM event_queue WHERE kind = ?1 \
             AND status IN ('pending', 'processing', 'waiting-approval')",
        )?;
        let rows = stmt.query_map(params![kind.as_str()], |r| r.get::<_, String>(0))?;
        rows.map(|r| r.map_err(QueueError::from)).collect()
    }

    /// Events per status, every status present (zero when none), for metrics.
    pub fn counts(&self) -> Result<BTreeMap<QueueStatus, u64>, QueueError> {
        let mut counts: BTreeMap<QueueStatus, u64> =
            QueueStatus::ALL.into_iter().map(|s| (s, 0)).collect();
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg.counts(),
        };
        let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM event_queue GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (status, n) = row?;
            let status = parse_status(0, &status)?;
            counts.insert(status, u64::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }

    /// Work not yet finished by a worker: pending plus processing (not waiting-approval, which
    /// waits on a person, not on capacity).
    pub fn depth(&self) -> Result<u64, QueueError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg.depth(),
        };
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM event_queue WHERE status IN ('pending', 'processing')",
            [],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        seq: r.get(0)?,
        source: r.get(1)?,
        external_id: r.get(2)?,
        kind: r.get(3)?,
        identity: r.get(4)?,
        attributes_json: r.get(5)?,
        effective_at: r.get(6)?,
        received_at: r.get(7)?,
        status: r.get(8)?,
        run_id: r.get(9)?,
        attempts: r.get(10)?,
        message: r.get(11)?,
        claimed_at: r.get(12)?,
        finished_at: r.get(13)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventSource;
    use std::io::{BufRead, BufReader, Write};

    fn t(s: &str) -> DateTime<Utc> {
        format!("2026-12-01T{s}Z").parse().expect("time")
    }

    fn event(external_id: &str, identity: &str, kind: Trigger) -> LifecycleEvent {
        LifecycleEvent {
            source: EventSource::Webhook,
            external_id: external_id.into(),
            kind,
            identity: identity.into(),
            attributes: BTreeMap::from([("department".to_string(), "sales".to_string())]),
            effective_at: t("09:00:00"),
        }
    }

    fn open() -> (tempfile::TempDir, EventQueue) {
        let dir = tempfile::tempdir().expect("temp dir");
        let q = EventQueue::open(&dir.path().join("state/closeout.db")).expect("open");
        (dir, q)
    }

    fn open_postgres(claim_ttl: std::time::Duration) -> (tempfile::TempDir, EventQueue) {
        let (dir, store) = crate::store::pg::testing::fresh();
        (dir, EventQueue::open_postgres(&store, claim_ttl))
    }

    /// The queue's behaviour, the same on both backends: each test runs on a new SQLite file
    /// and on a new PostgreSQL database.
    macro_rules! on_both_backends {
        ($($name:ident),* $(,)?) => {
            mod on_sqlite {
                $(#[test]
                fn $name() {
                    let (_dir, q) = super::open();
                    super::$name(q)
                })*
            }
            mod on_postgres {
                $(#[test]
                fn $name() {
                    let (_dir, q) = super::open_postgres(std::time::Duration::from_secs(60));
                    super::$name(q)
                })*
            }
        };
    }

    on_both_backends!(
        identities_with_an_unfinished_rotation_event_are_listed_until_it_finishes,
        one_identity_is_processed_in_order_and_never_twice_at_once,
        an_event_is_not_claimed_before_it_takes_effect,
        a_duplicate_stores_nothing,
        release_backs_off_and_approval_resumes,
        a_batch_stores_each_event_once,
        heartbeat_holds_only_a_live_claim,
    );

    fn a_batch_stores_each_event_once(q: EventQueue) {
        let now = t("08:00:00");
        let answers = q
            .submit_batch(&[
                (event("b1", "A", Trigger::Leaver), now),
                (event("b2", "B", Trigger::Leaver), now),
                (event("b1", "A", Trigger::Leaver), now),
            ])
            .unwrap();
        assert_eq!(answers.len(), 3);
        let seqs: Vec<Submitted> = answers.into_iter().map(|a| a.unwrap()).collect();
        assert!(seqs[0].is_new() && seqs[1].is_new());
        assert_eq!(
            seqs[2],
            Submitted::Duplicate {
                seq: seqs[0].seq(),
                status: QueueStatus::Pending
            }
        );
        assert_eq!(q.depth().unwrap(), 2);
        let listed = q.list(10, None).unwrap();
        assert_eq!(
            listed.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![seqs[1].seq(), seqs[0].seq()],
            "newest first"
        );
    }

    fn heartbeat_holds_only_a_live_claim(q: EventQueue) {
        let now = t("10:00:00");
        q.submit(&event("h1", "A", Trigger::Leaver), now).unwrap();
        let c = q.claim_next(now).unwrap().expect("h1");
        q.heartbeat(c.seq, &c.token).expect("a live claim");
        assert!(matches!(
            q.heartbeat(c.seq, "another-token"),
            Err(QueueError::NotClaimed { .. })
        ));
        q.finish(c.seq, &c.token, &Outcome::Done { run_id: "r".into() }, now)
            .unwrap();
        assert!(matches!(
            q.heartbeat(c.seq, &c.token),
            Err(QueueError::NotClaimed { .. })
        ));
    }

    #[test]
    fn on_postgres_a_dead_local_process_s_claim_is_taken_at_once() {
        let (dir, config, _db) = crate::store::pg::testing::fresh_config();
        let store = crate::store::pg::PgStore::open(&config).expect("open");
        let _dir = dir;
        let q = EventQueue::open_postgres(&store, std::time::Duration::from_secs(600));
        let now = t("10:00:00");
        q.submit(&event("d1", "A", Trigger::Leaver), now).unwrap();
        q.submit(&event("d2", "B", Trigger::Leaver), now).unwrap();
        let dead = q.claim_next(now).unwrap().expect("d1");
        let live = q.claim_next(now).unwrap().expect("d2");
        // d1's claimer was a process on this host that no longer exists (its claim has not
        // expired: 600 s); d2's is this live process.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let mut client = store.connect().expect("connect");
        client
            .execute(
                "UPDATE event_queue SET claimed_by = $2 WHERE seq = $1",
                &[&dead.seq, &format!("x (process {} on {host})", u32::MAX)],
            )
            .expect("forge the dead claimer");
        let recovered = q.recover().unwrap();
        assert_eq!(
            recovered.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![dead.seq],
            "only the dead process's claim"
        );
        q.heartbeat(live.seq, &live.token)
            .expect("the live claim holds");
    }

    #[test]
    fn on_postgres_an_expired_claim_is_taken_over_with_its_run_and_a_live_one_is_not() {
        let (_dir, q) = open_postgres(std::time::Duration::from_millis(1500));
        let now = t("10:00:00");
        q.submit(&event("a1", "A", Trigger::Leaver), now).unwrap();
        q.submit(&event("a2", "A", Trigger::Mover), now).unwrap();
        q.submit(&event("b1", "B", Trigger::Leaver), now).unwrap();
        // Replica 1 claims a1 and records its run, then dies (stops renewing).
        let dead = q.claim_next(now).unwrap().expect("a1");
        assert_eq!(dead.event.external_id, "a1");
        q.set_run(dead.seq, &dead.token, Some("run-a1")).unwrap();
        // Replica 2 claims b1 and keeps renewing it.
        let live = q.claim_next(now).unwrap().expect("b1");
        assert_eq!(live.event.external_id, "b1");
        assert!(q.recover().unwrap().is_empty(), "no claim expired yet");
        assert_eq!(q.claim_next(now).unwrap(), None, "a2 waits behind a1");
        for _ in 0..4 {
            std::thread::sleep(std::time::Duration::from_millis(500));
            q.heartbeat(live.seq, &live.token).expect("b1 renewed");
        }
        // a1's claim has expired by the database's clock; b1's has not.
        let again = q.claim_next(now).unwrap().expect("a1 taken over");
        assert_eq!(again.seq, dead.seq);
        assert_eq!(
            again.run_id.as_deref(),
            Some("run-a1"),
            "the run is resumed"
        );
        assert_eq!(again.attempts, 2);
        assert_eq!(q.postgres().expect("postgres").claims_taken_over(), 1);
        assert!(
            matches!(
                q.finish(
                    dead.seq,
                    &dead.token,
                    &Outcome::Done { run_id: "x".into() },
                    now
                ),
                Err(QueueError::NotClaimed { .. })
            ),
            "the dead replica's claim is gone"
        );
        q.heartbeat(live.seq, &live.token)
            .expect("b1 still held by replica 2");
        q.finish(
            again.seq,
            &again.token,
            &Outcome::Done {
                run_id: "run-a1".into(),
            },
            now,
        )
        .unwrap();
        q.finish(
            live.seq,
            &live.token,
            &Outcome::Done {
                run_id: "run-b1".into(),
            },
            now,
        )
        .unwrap();
        let a2 = q.claim_next(now).unwrap().expect("a2 after a1");
        assert_eq!(a2.event.external_id, "a2");
        assert_eq!(
            q.get(dead.seq).unwrap().expect("a1").status,
            QueueStatus::Done
        );
    }

    const PG_CHILD_URL: &str = "CLOSEOUT_QUEUE_PG_CHILD_URL";
    const PG_CHILD_PASSWORD_FILE: &str = "CLOSEOUT_QUEUE_PG_CHILD_PASSWORD_FILE";

    fn micros_now() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_micros()
    }

    /// The child half of `on_postgres_two_processes_never_claim_the_same_event`: claims until
    /// the queue is empty, holding each event a little, and prints what it did. Does nothing in
    /// a normal run.
    #[test]
    fn pg_child_claimer() {
        let (Some(url), Some(pw)) = (
            std::env::var_os(PG_CHILD_URL),
            std::env::var_os(PG_CHILD_PASSWORD_FILE),
        ) else {
            return;
        };
        let config = crate::config::StoreConfig::postgres(
            &url.to_string_lossy(),
            crate::config::PasswordSource::File(pw.into()),
        );
        let store = crate::store::pg::PgStore::open(&config).expect("open");
        let q = EventQueue::open_postgres(&store, std::time::Duration::from_secs(60));
        let mut out = std::io::stdout().lock();
        let later = t("23:00:00");
        let mut idle = 0;
        while idle < 20 {
            let Some(c) = q.claim_next(later).expect("claim") else {
                idle += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            };
            idle = 0;
            let started = micros_now();
            std::thread::sleep(std::time::Duration::from_millis(2));
            let ended = micros_now();
            q.finish(
                c.seq,
                &c.token,
                &Outcome::Done {
                    run_id: format!("r{}", c.seq),
                },
                later,
            )
            .expect("finish");
            writeln!(out, "RAN {} {} {started} {ended}", c.seq, c.event.identity).expect("stdout");
        }
        out.flush().expect("stdout");
    }

    #[test]
    fn on_postgres_two_processes_never_claim_the_same_event() {
        let (dir, config, _db) = crate::store::pg::testing::fresh_config();
        let store = crate::store::pg::PgStore::open(&config).expect("open");
        let q = EventQueue::open_postgres(&store, std::time::Duration::from_secs(60));
        let now = t("08:00:00");
        let mut submitted = BTreeSet::new();
        for i in 0..240 {
            let s = q
                .submit(
                    &event(&format!("e{i}"), &format!("I{}", i % 23), Trigger::Leaver),
                    now,
                )
                .unwrap();
            submitted.insert(s.seq());
        }
        let children: Vec<_> = (0..2)
            .map(|_| {
                std::process::Command::new(std::env::current_exe().expect("test binary"))
                    .args([
                        "--exact",
                        "store::queue::tests::pg_child_claimer",
                        "--nocapture",
                    ])
                    .env(PG_CHILD_URL, config.url.as_deref().expect("url"))
                    .env(PG_CHILD_PASSWORD_FILE, dir.path().join("pw"))
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn child")
            })
            .collect();
        let mut runs: Vec<(usize, i64, String, u128, u128)> = Vec::new();
        for (n, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().expect("child");
            assert!(out.status.success(), "child {n} failed");
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let f: Vec<&str> = line.split(' ').collect();
                if f.len() == 5 && f[0] == "RAN" {
                    runs.push((
                        n,
                        f[1].parse().expect("seq"),
                        f[2].to_string(),
                        f[3].parse().expect("start"),
                        f[4].parse().expect("end"),
                    ));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for (_, seq, ..) in &runs {
            assert!(seen.insert(*seq), "event {seq} was run twice");
        }
        assert_eq!(seen, submitted, "every event ran exactly once");
        for n in 0..2 {
            assert!(runs.iter().any(|r| r.0 == n), "process {n} claimed nothing");
        }
        // One identity never ran in both processes at once, and ran in submission order.
        let mut by_identity: BTreeMap<&str, Vec<(i64, u128, u128)>> = BTreeMap::new();
        for (_, seq, identity, start, end) in &runs {
            by_identity
                .entry(identity)
                .or_default()
                .push((*seq, *start, *end));
        }
        for (identity, mut spans) in by_identity {
            spans.sort();
            for w in spans.windows(2) {
                assert!(
                    w[0].2 <= w[1].1,
                    "{identity}: event {} started before event {} ended",
                    w[1].0,
                    w[0].0
                );
            }
        }
        assert_eq!(q.depth().unwrap(), 0);
        assert_eq!(q.counts().unwrap()[&QueueStatus::Done], 240);
    }

    fn identities_with_an_unfinished_rotation_event_are_listed_until_it_finishes(q: EventQueue) {
        let now = t("10:00:00");
        q.submit(&event("r-a", "A", Trigger::Rotation), now)
            .unwrap();
        q.submit(&event("l-b", "B", Trigger::Leaver), now).unwrap();
        let busy = |q: &EventQueue| q.unfinished_identities(Trigger::Rotation).unwrap();
        assert_eq!(busy(&q), BTreeSet::from(["A".to_string()]));
        let claimed = q.claim_next(now).unwrap().expect("A's rotation");
        assert_eq!(busy(&q), BTreeSet::from(["A".to_string()]), "processing");
        let run_id = "r1".to_string();
        q.finish(
            claimed.seq,
            &claimed.token,
            &Outcome::WaitingApproval { run_id },
            now,
        )
        .unwrap();
        assert_eq!(busy(&q), BTreeSet::from(["A".to_string()]), "waiting");
        q.approve_waiting("r1").unwrap();
        let claimed = q.claim_next(now).unwrap().expect("approved rotation");
        assert_eq!(claimed.event.kind, Trigger::Rotation);
        let run_id = "r1".to_string();
        q.finish(claimed.seq, &claimed.token, &Outcome::Done { run_id }, now)
            .unwrap();
        assert!(busy(&q).is_empty());
    }

    fn one_identity_is_processed_in_order_and_never_twice_at_once(q: EventQueue) {
        let a1 = q
            .submit(&event("a1", "A", Trigger::Mover), t("08:00:00"))
            .unwrap();
        let b1 = q
            .submit(&event("b1", "B", Trigger::Leaver), t("08:00:01"))
            .unwrap();
        let a2 = q
            .submit(&event("a2", "A", Trigger::Leaver), t("08:00:02"))
            .unwrap();
        let now = t("10:00:00");
        let first = q.claim_next(now).unwrap().expect("A1");
        assert_eq!(
            (first.seq, first.event.external_id.as_str()),
            (a1.seq(), "a1")
        );
        assert_eq!(first.attempts, 1);
        assert_eq!(first.event, event("a1", "A", Trigger::Mover));
        let second = q.claim_next(now).unwrap().expect("B1, not A2");
        assert_eq!(second.seq, b1.seq());
        assert_eq!(q.claim_next(now).unwrap(), None, "A2 waits for A1");
        q.finish(
            first.seq,
            &first.token,
            &Outcome::Done {
                run_id: "r1".into(),
            },
            now,
        )
        .unwrap();
        let third = q.claim_next(now).unwrap().expect("A2 after A1");
        assert_eq!(third.seq, a2.seq());
        // A finished or foreign claim cannot be finished again.
        assert!(matches!(
            q.finish(
                first.seq,
                &first.token,
                &Outcome::Failed {
                    message: "x".into()
                },
                now
            ),
            Err(QueueError::NotClaimed { .. })
        ));
        assert!(matches!(
            q.set_run(third.seq, "not-the-token", Some("r")),
            Err(QueueError::NotClaimed { .. })
        ));
        let done = q.get(first.seq).unwrap().expect("stored");
        assert_eq!(done.status, QueueStatus::Done);
        assert_eq!(done.run_id.as_deref(), Some("r1"));
        assert_eq!(done.finished_at, Some(now));
    }

    fn an_event_is_not_claimed_before_it_takes_effect(q: EventQueue) {
        let mut later = event("a1", "A", Trigger::Leaver);
        later.effective_at = t("12:00:00");
        q.submit(&later, t("08:00:00")).unwrap();
        q.submit(&event("a2", "A", Trigger::Mover), t("08:00:01"))
            .unwrap();
        assert_eq!(
            q.claim_next(t("11:59:59")).unwrap(),
            None,
            "nor A2 behind it"
        );
        let claimed = q.claim_next(t("12:00:00")).unwrap().expect("effective");
        assert_eq!(claimed.event.external_id, "a1");
    }

    fn a_duplicate_stores_nothing(q: EventQueue) {
        let first = q
            .submit(&event("m1", "A", Trigger::Leaver), t("08:00:00"))
            .unwrap();
        assert!(first.is_new());
        let mut changed = event("m1", "B", Trigger::Joiner);
        changed.attributes.clear();
        assert_eq!(
            q.submit(&changed, t("08:05:00")).unwrap(),
            Submitted::Duplicate {
                seq: first.seq(),
                status: QueueStatus::Pending
            }
        );
        // The same external id from another source is another event.
        let mut scim = event("m1", "A", Trigger::Leaver);
        scim.source = EventSource::Scim;
        assert!(q.submit(&scim, t("08:06:00")).unwrap().is_new());
        assert_eq!(q.counts().unwrap()[&QueueStatus::Pending], 2);
        assert_eq!(q.depth().unwrap(), 2);
        assert_eq!(
            q.get(first.seq()).unwrap().expect("kept").event.identity,
            "A"
        );
    }

    #[test]
    fn a_crashed_claim_is_recovered_with_its_run_and_claimed_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("q.db");
        let now = t("10:00:00");
        {
            let q = EventQueue::open(&path).unwrap();
            q.submit(&event("a1", "A", Trigger::Leaver), now).unwrap();
            q.submit(&event("b1", "B", Trigger::Leaver), now).unwrap();
            let c = q.claim_next(now).unwrap().expect("a1");
            q.set_run(c.seq, &c.token, Some("run-a1")).unwrap();
            // Dropped without finishing: the process died.
        }
        let q = EventQueue::open(&path).unwrap();
        let recovered = q.recover().unwrap();
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].event.external_id, "a1");
        assert_eq!(recovered[0].run_id.as_deref(), Some("run-a1"));
        assert_eq!(
            q.recover().unwrap(),
            vec![],
            "recovering twice finds nothing"
        );
        let again = q.claim_next(now).unwrap().expect("a1 again");
        assert_eq!(again.event.external_id, "a1");
        assert_eq!(again.run_id.as_deref(), Some("run-a1"));
        assert_eq!(again.attempts, 2);
        q.finish(
            again.seq,
            &again.token,
            &Outcome::Done {
                run_id: "run-a1".into(),
            },
            now,
        )
        .unwrap();
        let b = q.claim_next(now).unwrap().expect("b1");
        assert_eq!(b.event.external_id, "b1");
        assert_eq!(q.claim_next(now).unwrap(), None, "each event once");
    }

    fn release_backs_off_and_approval_resumes(q: EventQueue) {
        let now = t("10:00:00");
        q.submit(&event("a1", "A", Trigger::Leaver), now).unwrap();
        let c = q.claim_next(now).unwrap().expect("a1");
        q.release(c.seq, &c.token, "vault unreachable", t("10:01:00"))
            .unwrap();
        assert_eq!(q.claim_next(t("10:00:30")).unwrap(), None);
        let c = q
            .claim_next(t("10:01:00"))
            .unwrap()
            .expect("after back-off");
        assert_eq!(c.attempts, 2);
        q.finish(
            c.seq,
            &c.token,
            &Outcome::WaitingApproval {
                run_id: "r9".into(),
            },
            now,
        )
        .unwrap();
        assert_eq!(q.claim_next(t("11:00:00")).unwrap(), None);
        assert_eq!(q.approve_waiting("other").unwrap(), None);
        assert_eq!(q.approve_waiting("r9").unwrap(), Some(c.seq));
        let resumed = q.claim_next(t("11:00:00")).unwrap().expect("resumed");
        assert_eq!(resumed.run_id.as_deref(), Some("r9"));
        q.finish(
            resumed.seq,
            &resumed.token,
            &Outcome::Skipped {
                reason: "gone".into(),
            },
            now,
        )
        .unwrap();
        let listed = q.list(10, Some(QueueStatus::Skipped)).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].message.as_deref(), Some("gone"));
        assert!(q.list(10, Some(QueueStatus::Pending)).unwrap().is_empty());
        assert_eq!(q.counts().unwrap()[&QueueStatus::Skipped], 1);
        assert_eq!(q.depth().unwrap(), 0);
    }

    const CHILD_ENV: &str = "CLOSEOUT_QUEUE_CRASH_CHILD";

    /// The child half of `a_killed_submitter_loses_no_acknowledged_event`: submits until killed,
    /// printing each acknowledged id after `submit` returned. Does nothing in a normal run.
    #[test]
    fn crash_child_submitter() {
        let Some(path) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let q = EventQueue::open(Path::new(&path)).expect("open");
        let mut out = std::io::stdout().lock();
        for i in 0..100_000 {
            let id = format!("e{i}");
            q.submit(
                &event(&id, &format!("I{}", i % 7), Trigger::Leaver),
                Utc::now(),
            )
            .expect("submit");
            writeln!(out, "ACK {id}").expect("stdout");
            out.flush().expect("stdout");
        }
    }

    #[test]
    fn a_killed_submitter_loses_no_acknowledged_event() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("crash.db");
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "store::queue::tests::crash_child_submitter",
                "--nocapture",
            ])
            .env(CHILD_ENV, &path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut acked = Vec::new();
        while acked.len() < 40 {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(id) = line.strip_prefix("ACK ") {
                        acked.push(id.to_string());
                    }
                }
                _ => panic!("the child stopped before being killed"),
            }
        }
        child.kill().expect("SIGKILL");
        // Acknowledgements already written before the kill count too.
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("ACK ") {
                acked.push(id.to_string());
            }
        }
        let _ = child.wait();
        let conn = Connection::open(&path).expect("open after crash");
        for id in &acked {
            let n: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM event_queue WHERE external_id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .expect("count");
            assert_eq!(n, 1, "{id} was acknowledged and must be stored once");
        }
        let total: i64 = conn
            .query_row("SELECT COUNT(*) FROM event_queue", [], |r| r.get(0))
            .expect("count");
        let acked = i64::try_from(acked.len()).expect("small");
        assert!(
            total == acked || total == acked + 1,
            "{total} stored, {acked} acknowledged: at most the one in flight is extra"
        );
        // The reopened queue works: every stored event is claimable exactly once.
        let q = EventQueue::open(&path).expect("reopen");
        assert!(q.recover().expect("recover").is_empty());
        let mut claimed = 0;
        // Every test event takes effect at 2026-12-01T09:00Z.
        let later = t("23:00:00");
        while let Some(c) = q.claim_next(later).expect("claim") {
            q.finish(
                c.seq,
                &c.token,
                &Outcome::Done { run_id: "r".into() },
                later,
            )
            .expect("finish");
            claimed += 1;
        }
        assert_eq!(claimed, total);
    }
}
