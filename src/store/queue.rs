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

use crate::event::{EventSource, LifecycleEvent};
use crate::trigger::Trigger;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// An error reading or writing the event queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database cannot be opened or created, or its table cannot be created.
    #[error("cannot open the event queue {path}: {message}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's message.
        message: String,
    },
    /// An SQLite error reading or writing the queue (locked database, full disk, ...).
    #[error("event queue: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The worker's claim token no longer holds the event: it was recovered after a presumed
    /// crash, or already finished. The worker must drop it.
    #[error(
        "event queue: event {seq} is not claimed by this worker (claim lost or already finished)"
    )]
    NotClaimed {
        /// The event's sequence number.
        seq: i64,
    },
    /// A stored event cannot be read back (an unknown status, source or kind, a bad timestamp
    /// or attributes), or an event's attributes cannot be encoded: the database was edited or
    /// written by a newer Closeout.
    #[error("event queue: corrupt record {seq}: {message}")]
    Corrupt {
        /// The event's sequence number (0 when no single stored event is concerned).
        seq: i64,
        /// What cannot be read.
        message: String,
    },
    /// The transaction of a group commit failed (see [`super::group_commit`]): none of its
    /// events was stored.
    #[error("event queue: a batch of {events} event(s) was not stored: {message}")]
    BatchFailed {
        /// How many events the batch held.
        events: usize,
        /// The error of the batch's transaction.
        message: String,
    },
    /// An asynchronous call never ran (the runtime is shutting down).
    #[error("event queue: {0}")]
    Interrupted(#[from] super::blocking::Interrupted),
}

/// Where a queued event is in its life.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum QueueStatus {
    /// Waiting for a worker (and for its `effective_at`).
    Pending,
    /// Claimed by a worker; found in this state at start-up, the worker crashed.
    Processing,
    /// Its run stopped at an approval gate; `approve_waiting` puts it back to pending.
    WaitingApproval,
    /// The worker's run finished and produced a closure report, which says whether the identity is
    /// closed; `run_id` names the run.
    Done,
    /// The engine returned an error for the event (the run could not start, or stopped on an
    /// error); `message` says why. A later event of the identity may run.
    Failed,
    /// Nothing to do (for example an unknown identity), with the reason.
    Skipped,
}

impl QueueStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [QueueStatus; 6] = [
        QueueStatus::Pending,
        QueueStatus::Processing,
        QueueStatus::WaitingApproval,
        QueueStatus::Done,
        QueueStatus::Failed,
        QueueStatus::Skipped,
    ];

    /// The kebab-case name, as stored in the queue table.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueStatus::Pending => "pending",
            QueueStatus::Processing => "processing",
            QueueStatus::WaitingApproval => "waiting-approval",
            QueueStatus::Done => "done",
            QueueStatus::Failed => "failed",
            QueueStatus::Skipped => "skipped",
        }
    }

    /// The status named by `s` (as [`QueueStatus::as_str`] writes it), or `None` for an unknown
    /// name.
    pub fn parse(s: &str) -> Option<QueueStatus> {
        QueueStatus::ALL.into_iter().find(|q| q.as_str() == s)
    }

    /// Finished events no longer hold back later events of their identity.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            QueueStatus::Done | QueueStatus::Failed | QueueStatus::Skipped
        )
    }
}

impl fmt::Display for QueueStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many of several submitted events were new, and how many duplicates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubmitCounts {
    /// Stored now.
    pub new: u64,
    /// Already stored before (same source and external id).
    pub duplicates: u64,
}

/// What `submit` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Stored durably under this sequence number.
    New {
        /// The new event's sequence number.
        seq: i64,
    },
    /// Already stored (same source and external id); nothing was written.
    Duplicate {
        /// The stored event's sequence number.
        seq: i64,
        /// Where the stored event is now.
        status: QueueStatus,
    },
}

impl Submitted {
    /// The event's sequence number, new or existing.
    pub fn seq(&self) -> i64 {
        match self {
            Submitted::New { seq } | Submitted::Duplicate { seq, .. } => *seq,
        }
    }

    /// Whether the event was stored now (not a duplicate).
    pub fn is_new(&self) -> bool {
        matches!(self, Submitted::New { .. })
    }
}

/// An event a worker now owns. `token` proves the claim to `set_run`, `finish` and `release`.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The event's sequence number in the queue.
    pub seq: i64,
    /// A random token for this claim only: a worker that lost its claim (recovered by another
    /// process) cannot finish the event.
    pub token: String,
    /// The event to process.
    pub event: LifecycleEvent,
    /// The run started for this event before a crash: resume it rather than start another.
    pub run_id: Option<String>,
    /// Times claimed, this claim included (a crash counts as an attempt).
    pub attempts: u32,
}

/// An event found `processing` at start-up, now pending again (and claimed first).
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    /// The event's sequence number.
    pub seq: i64,
    /// The event.
    pub event: LifecycleEvent,
    /// The run started for it before the crash, if it got that far; the caller resumes it.
    pub run_id: Option<String>,
    /// Times the event was claimed so far, the interrupted claim included.
    pub attempts: u32,
}

/// How a worker finished an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The run finished and produced its closure report.
    Done {
        /// The run.
        run_id: String,
    },
    /// The engine returned an error.
    Failed {
        /// The error, prefixed with the run id when a run was started.
        message: String,
    },
    /// The run stopped at an approval gate; the event waits until the run is approved.
    WaitingApproval {
        /// The run waiting for approval.
        run_id: String,
    },
    /// Nothing to do for the event.
    Skipped {
        /// Why (an identity the source does not know, no playbook for the trigger, ...).
        reason: String,
    },
}

/// One stored event with its processing state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QueuedEvent {
    /// Position in submission order; unique and increasing.
    pub seq: i64,
    /// The event as submitted.
    pub event: LifecycleEvent,
    /// Where it is in its life.
    pub status: QueueStatus,
    /// When the queue stored it.
    pub received_at: DateTime<Utc>,
    /// The run started for it, once a worker recorded one (kept when the event later fails).
    pub run_id: Option<String>,
    /// Times claimed by a worker (a crash counts as an attempt).
    pub attempts: u32,
    /// A failure's message or a skip's reason (the last error after a release).
    pub message: Option<String>,
    /// When a worker last claimed it; `None` if none has.
    pub claimed_at: Option<DateTime<Utc>>,
    /// When it reached a finished status (done, failed, skipped); `None` while pending, processing
    /// or waiting for approval.
    pub finished_at: Option<DateTime<Utc>>,
}

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
"#;

const COLUMNS: &str = "seq, source, external_id, kind, identity, attributes_json, effective_at, \
     received_at, status, run_id, attempts, message, claimed_at, finished_at";

/// Fixed-width UTC timestamps, so SQL compares them as text in time order.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The durable event queue (see the module documentation for its guarantees). Safe to share between
/// threads (a clone shares the connection); several processes may open the same file. Async code
/// calls it through [`EventQueue::call`].
#[derive(Clone)]
pub struct EventQueue {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
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
        let conn = super::sqlite::open_durable(path).map_err(|e| open_err(e.to_string()))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| open_err(e.to_string()))?;
        Ok(EventQueue {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on this queue off the async runtime (see [`super::blocking`]), e.g.
    /// `queue.call(move |q| q.depth()).await`.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&EventQueue) -> Result<R, QueueError> + Send + 'static,
    ) -> Result<R, QueueError> {
        let queue = self.clone();
        super::blocking::off_runtime(move || f(&queue)).await
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // Every write is one transaction, so a poisoned lock leaves SQLite consistent.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store an event durably, or report the stored event it duplicates.
    pub fn submit(
        &self,
        event: &LifecycleEvent,
        received_at: DateTime<Utc>,
    ) -> Result<Submitted, QueueError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let submitted = EventQueue::submit_in(&tx, event, received_at)?;
        tx.commit()?;
        Ok(submitted)
    }

    /// Store several events in one transaction, one commit (one fsync) for all: what
    /// [`super::group_commit::GroupCommit`] gives concurrent submitters. Each event gets its own
    /// answer (an event whose attributes cannot be encoded is refused alone; a later event with the
    /// `(source, external_id)` of an earlier one in the batch is its duplicate). An SQLite error
    /// rolls the whole batch back and is the outer error: nothing of it was stored.
    pub fn submit_batch(
        &self,
        events: &[(LifecycleEvent, DateTime<Utc>)],
    ) -> Result<Vec<Result<Submitted, QueueError>>, QueueError> {
        let mut conn = self.conn();
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
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = tx
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM event_queue e WHERE e.status = 'pending' \
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

    /// Record the run started for a claimed event, before the run acts, so a crash resumes it.
    pub fn set_run(&self, seq: i64, token: &str, run_id: &str) -> Result<(), QueueError> {
        let n = self.conn().execute(
            "UPDATE event_queue SET run_id = ?3 WHERE seq = ?1 AND claim_token = ?2 \
             AND status = 'processing'",
            params![seq, token, run_id],
        )?;
        claimed(n, seq)
    }

    /// Record how a claimed event ended.
    pub fn finish(
        &self,
        seq: i64,
        token: &str,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        let (status, run_id, message, finished) = match outcome {
            Outcome::Done { run_id } => (QueueStatus::Done, Some(run_id.as_str()), None, true),
            Outcome::Failed { message } => {
                (QueueStatus::Failed, None, Some(message.as_str()), true)
            }
            Outcome::WaitingApproval { run_id } => (
                QueueStatus::WaitingApproval,
                Some(run_id.as_str()),
                None,
                false,
            ),
            Outcome::Skipped { reason } => {
                (QueueStatus::Skipped, None, Some(reason.as_str()), true)
            }
        };
        let n = self.conn().execute(
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
        let n = self.conn().execute(
            "UPDATE event_queue SET status = 'pending', claim_token = NULL, message = ?3, \
             not_before = ?4 WHERE seq = ?1 AND claim_token = ?2 AND status = 'processing'",
            params![seq, token, error, ts(not_before)],
        )?;
        claimed(n, seq)
    }

    /// At start-up: every event left `processing` by a crashed process becomes pending again,
    /// first in line; returned with its run id so the caller can resume that run.
    pub fn recover(&self) -> Result<Vec<Recovered>, QueueError> {
        let mut conn = self.conn();
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
        let seq = self
            .conn()
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
        let conn = self.conn();
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
        let conn = self.conn();
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
        let conn = self.conn();
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
        let conn = self.conn();
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
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM event_queue WHERE status IN ('pending', 'processing')",
            [],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

fn claimed(changed: usize, seq: i64) -> Result<(), QueueError> {
    if changed == 0 {
        Err(QueueError::NotClaimed { seq })
    } else {
        Ok(())
    }
}

fn parse_status(seq: i64, s: &str) -> Result<QueueStatus, QueueError> {
    QueueStatus::parse(s).ok_or_else(|| QueueError::Corrupt {
        seq,
        message: format!("unknown status {s:?}"),
    })
}

struct RawRow {
    seq: i64,
    source: String,
    external_id: String,
    kind: String,
    identity: String,
    attributes_json: String,
    effective_at: String,
    received_at: String,
    status: String,
    run_id: Option<String>,
    attempts: i64,
    message: Option<String>,
    claimed_at: Option<String>,
    finished_at: Option<String>,
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

fn parse_source(s: &str) -> Option<EventSource> {
    [
        EventSource::Webhook,
        EventSource::Scim,
        EventSource::HrDiff,
        EventSource::Scheduler,
        EventSource::Cli,
    ]
    .into_iter()
    .find(|x| x.as_str() == s)
}

impl RawRow {
    fn into_record(self) -> Result<QueuedEvent, QueueError> {
        let seq = self.seq;
        let corrupt = |message: String| QueueError::Corrupt { seq, message };
        let time = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| corrupt(format!("bad timestamp {s:?}: {e}")))
        };
        let event = LifecycleEvent {
            source: parse_source(&self.source)
                .ok_or_else(|| corrupt(format!("unknown source {:?}", self.source)))?,
            external_id: self.external_id,
            kind: Trigger::parse(&self.kind)
                .map_err(|_| corrupt(format!("unknown kind {:?}", self.kind)))?,
            identity: self.identity,
            attributes: serde_json::from_str(&self.attributes_json)
                .map_err(|e| corrupt(format!("bad attributes: {e}")))?,
            effective_at: time(&self.effective_at)?,
        };
        Ok(QueuedEvent {
            seq,
            status: parse_status(seq, &self.status)?,
            received_at: time(&self.received_at)?,
            run_id: self.run_id,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            message: self.message,
            claimed_at: self.claimed_at.as_deref().map(time).transpose()?,
            finished_at: self.finished_at.as_deref().map(time).transpose()?,
            event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn identities_with_an_unfinished_rotation_event_are_listed_until_it_finishes() {
        let (_dir, q) = open();
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

    #[test]
    fn one_identity_is_processed_in_order_and_never_twice_at_once() {
        let (_dir, q) = open();
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
            q.set_run(third.seq, "not-the-token", "r"),
            Err(QueueError::NotClaimed { .. })
        ));
        let done = q.get(first.seq).unwrap().expect("stored");
        assert_eq!(done.status, QueueStatus::Done);
        assert_eq!(done.run_id.as_deref(), Some("r1"));
        assert_eq!(done.finished_at, Some(now));
    }

    #[test]
    fn an_event_is_not_claimed_before_it_takes_effect() {
        let (_dir, q) = open();
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

    #[test]
    fn a_duplicate_stores_nothing() {
        let (_dir, q) = open();
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
            q.set_run(c.seq, &c.token, "run-a1").unwrap();
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

    #[test]
    fn release_backs_off_and_approval_resumes() {
        let (_dir, q) = open();
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
