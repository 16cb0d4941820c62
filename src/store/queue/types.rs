//! The event queue's records, statuses and errors, shared by its SQLite and PostgreSQL backends
//! (the backends are in `super` and [`super::pg`]).

use crate::event::{EventSource, LifecycleEvent};
use crate::trigger::Trigger;
use chrono::{DateTime, Utc};
use std::fmt;
use std::path::PathBuf;

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
    /// The transaction of a group commit failed (see [`crate::store::group_commit`]): none of its
    /// events was stored.
    #[error("event queue: a batch of {events} event(s) was not stored: {message}")]
    BatchFailed {
        /// How many events the batch held.
        events: usize,
        /// The error of the batch's transaction.
        message: String,
    },
    /// The PostgreSQL store failed (connection, statement, schema).
    #[error("event queue: {0}")]
    Postgres(#[from] crate::store::pg::PgError),
    /// An asynchronous call never ran (the runtime is shutting down).
    #[error("event queue: {0}")]
    Interrupted(#[from] crate::store::blocking::Interrupted),
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

impl Outcome {
    /// What the queue stores for this outcome, on either backend: the event's new status, the
    /// run to record (none keeps the one recorded), the message, and whether the event is
    /// finished (a run waiting for approval is not).
    pub(crate) fn columns(&self) -> (QueueStatus, Option<&str>, Option<&str>, bool) {
        match self {
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
        }
    }
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

pub(super) const COLUMNS: &str =
    "seq, source, external_id, kind, identity, attributes_json, effective_at, \
     received_at, status, run_id, attempts, message, claimed_at, finished_at";

/// Fixed-width UTC timestamps, so SQL compares them as text in time order.
pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(super) fn claimed(changed: usize, seq: i64) -> Result<(), QueueError> {
    if changed == 0 {
        Err(QueueError::NotClaimed { seq })
    } else {
        Ok(())
    }
}

pub(super) fn parse_status(seq: i64, s: &str) -> Result<QueueStatus, QueueError> {
    QueueStatus::parse(s).ok_or_else(|| QueueError::Corrupt {
        seq,
        message: format!("unknown status {s:?}"),
    })
}

pub(super) struct RawRow {
    pub(super) seq: i64,
    pub(super) source: String,
    pub(super) external_id: String,
    pub(super) kind: String,
    pub(super) identity: String,
    pub(super) attributes_json: String,
    pub(super) effective_at: String,
    pub(super) received_at: String,
    pub(super) status: String,
    pub(super) run_id: Option<String>,
    pub(super) attempts: i64,
    pub(super) message: Option<String>,
    pub(super) claimed_at: Option<String>,
    pub(super) finished_at: Option<String>,
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
    pub(super) fn into_record(self) -> Result<QueuedEvent, QueueError> {
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

impl From<postgres::Error> for QueueError {
    fn from(e: postgres::Error) -> Self {
        QueueError::Postgres(crate::store::pg::PgError::Sql(e))
    }
}
