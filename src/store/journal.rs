//! The journal: every run and every action in an embedded SQLite database.
//!
//! An action is written as `started` before its provider call and as `done`/`already-done`/
//! `failed` after it, inside durable transactions (WAL, `synchronous=FULL`). A crashed run
//! therefore shows exactly which actions finished (skipped on resume) and which were in flight
//! (re-run: every provider action is idempotent). Observations are in `observations.rs`, the
//! grant ledger in `grants.rs`.
//!
//! Two backends behind one API: the SQLite file, and PostgreSQL (`[store] url`, migration V2),
//! where several replicas share the journal, so a replica that takes over a dead one's event
//! resumes its run from the actions journaled there. Each operation's PostgreSQL statements are
//! beside its SQLite ones (`pg_*` functions below).

use super::pg::{PgConn, PgError, PgStore};
use super::sqlite::{migrate, open_durable, parse_opt_ts, parse_ts, ts, BadTimestamp, SCHEMA};
use crate::trigger::Trigger;
use chrono::{DateTime, Utc};
use closeout_contract::ProviderCall;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// An error reading or writing the run journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The database cannot be opened, created or brought up to the current schema.
    #[error("cannot open the journal {path}: {message}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What failed (SQLite's message, or the schema migration's).
        message: String,
    },
    /// An SQLite error reading or writing the journal (locked database, full disk, ...).
    #[error("journal: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The run id names no run in the journal.
    #[error("journal: run {0} not found")]
    NoSuchRun(String),
    /// A stored value cannot be read back (an unknown run status, trigger or action status): the
    /// database was edited, or written by a newer Closeout.
    #[error("journal: corrupt record: {0}")]
    Corrupt(String),
    /// A stored timestamp cannot be parsed: the database was edited, or written by a newer
    /// Closeout.
    #[error("journal: corrupt record: {0}")]
    Timestamp(#[from] BadTimestamp),
    /// An asynchronous call never ran (the runtime is shutting down).
    #[error("journal: {0}")]
    Interrupted(#[from] super::blocking::Interrupted),
    /// The PostgreSQL store failed (connection, statement, schema).
    #[error("journal: {0}")]
    Postgres(#[from] PgError),
}

impl From<postgres::Error> for JournalError {
    fn from(e: postgres::Error) -> Self {
        JournalError::Postgres(PgError::Sql(e))
    }
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Applying; a run found in this state with no live process was interrupted.
    Running,
    /// Stopped before acting until someone approves it.
    WaitingApproval,
    /// Verified closed.
    Closed,
    /// Ran, but verification found open findings.
    Open,
    /// An action failed permanently or a provider was unreachable.
    Failed,
}

impl RunStatus {
    /// The kebab-case name, as stored in the journal and shown by `closeout runs`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::WaitingApproval => "waiting-approval",
            RunStatus::Closed => "closed",
            RunStatus::Open => "open",
            RunStatus::Failed => "failed",
        }
    }

    /// The status named by `s` (as [`RunStatus::as_str`] writes it), or `None` for an unknown name.
    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::WaitingApproval,
            RunStatus::Closed,
            RunStatus::Open,
            RunStatus::Failed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// Runs in these states are picked up again by `resume` or a re-run of `apply`.
    pub fn is_unfinished(self) -> bool {
        matches!(
            self,
            RunStatus::Running | RunStatus::Failed | RunStatus::WaitingApproval
        )
    }
}

/// One run: one playbook for one identity and trigger.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRecord {
    /// The run id, `r<UTC start time>-<6 hex digits>` (e.g. `r20260501T120000Z-3fa2c1`).
    pub id: String,
    /// The identity's id in the authoritative source.
    pub identity: String,
    /// The trigger the run executes (its playbook is `<trigger>.yaml`).
    pub trigger: Trigger,
    /// The playbook's name, as the playbook states it.
    pub playbook: String,
    /// SHA-256 (hex) of the playbook's source text at planning time, so a report shows exactly
    /// which playbook ran.
    pub playbook_digest: String,
    /// Where the run is in its life; written as it changes.
    pub status: RunStatus,
    /// When the run was planned and recorded.
    pub created_at: DateTime<Utc>,
    /// When the triggering event took effect (the CLI: when the run was created).
    pub effective_at: DateTime<Utc>,
    /// Sessions issued before it are revoked; shared secrets must be rotated after it.
    pub cutoff: DateTime<Utc>,
    /// When containment finished: the first stage, or a stage named `contain`, completing with no
    /// failed action, whichever comes first. `None` until then; set once, never moved.
    pub contained_at: Option<DateTime<Utc>>,
    /// When the run reached a final status for this attempt (closed, open or failed); `None` while
    /// running or waiting for approval, and reset by a resume.
    pub finished_at: Option<DateTime<Utc>>,
    /// The run acted on a protected identity by explicit `--override-protected` (also in the audit
    /// log).
    pub override_protected: bool,
    /// The plan, as JSON (see `crate::pipeline::plan::Plan`).
    pub plan_json: String,
    /// The closure report, as JSON, once verified.
    pub report_json: Option<String>,
    /// Who released the run's approval-gated steps (the approvers, comma-separated, once as many
    /// distinct approvers as the plan requires have approved), if anyone.
    pub approved_by: Option<String>,
    /// Who started the run (the actor: a CLI user, or the service for an event); an approver
    /// may not approve a run they started. `None` for runs journaled before it was recorded.
    pub started_by: Option<String>,
    /// The operating-system user of the process that started the run (differs from
    /// `started_by` when `$CLOSEOUT_ACTOR` names someone else); may not approve it either.
    pub started_os_user: Option<String>,
}

/// One approver's approval of a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Approval {
    /// Who approved (an authenticated name).
    pub approver: String,
    /// How they were authenticated (`api-token`, `signed`, `os-user`).
    pub method: String,
    /// When.
    pub approved_at: DateTime<Utc>,
}

/// The state of one action in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionStatus {
    /// Written before the provider call. An action found in this state after a crash was in flight
    /// and is run again (provider actions are idempotent).
    Started,
    /// The provider made the change.
    Done,
    /// The provider reported the change was already in place (e.g. the key was already deleted);
    /// counts as finished.
    AlreadyDone,
    /// The provider call failed (permanently, or after the last retry); `error` says why.
    Failed,
}

impl ActionStatus {
    fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Started => "started",
            ActionStatus::Done => "done",
            ActionStatus::AlreadyDone => "already-done",
            ActionStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<ActionStatus> {
        [
            ActionStatus::Started,
            ActionStatus::Done,
            ActionStatus::AlreadyDone,
            ActionStatus::Failed,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }

    /// Whether the action completed (done or already done); a finished action is skipped on resume.
    pub fn is_finished(self) -> bool {
        matches!(self, ActionStatus::Done | ActionStatus::AlreadyDone)
    }
}

/// One action of a run, as journaled.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ActionRecord {
    /// The run the action belongs to.
    pub run_id: String,
    /// The idempotency key (see `crate::pipeline::plan::idempotency_key`); unique across the
    /// journal.
    pub key: String,
    /// The playbook stage the action is in.
    pub stage: String,
    /// The playbook step that selected it.
    pub step: String,
    /// The finding acted on, `<provider>:<kind>:<id>` (e.g. `aws:access-key:AKIA...`).
    pub finding_id: String,
    /// The provider that executes it.
    pub provider: String,
    /// The verb executed (`deactivate`, `delete`, `rotate`, ...).
    pub verb: String,
    /// Where the action is (see [`ActionStatus`]).
    pub status: ActionStatus,
    /// How many times the action was started: 1, plus one for every later run of it (a resume after
    /// a crash or a failure). Retries of the provider call inside one start are not counted.
    pub attempts: u32,
    /// When the action was first started.
    pub started_at: DateTime<Utc>,
    /// When its latest start began (the first start's time in journals written before this
    /// was kept): an interrupted start's calls may still land until some time after it.
    pub last_started_at: DateTime<Utc>,
    /// When it last finished or failed; `None` if it never has. A restarted action keeps the
    /// previous value until it ends again.
    pub finished_at: Option<DateTime<Utc>>,
    /// Non-secret description from the provider.
    pub detail: Option<String>,
    /// The finding's state after the action.
    pub state: Option<String>,
    /// The provider's error when `failed`; cleared when the action is started again.
    pub error: Option<String>,
    /// The calls to the provider's server that finished starts of the action made, in order,
    /// each with its status and request id (every attempt, failed ones too); empty when none
    /// were recorded (a journal from before receipts, or an action still in flight).
    pub provider_calls: Vec<ProviderCall>,
}

/// What an action is about, for [`Journal::action_started`].
#[derive(Debug, Clone)]
pub struct ActionStart<'a> {
    /// The run.
    pub run_id: &'a str,
    /// The idempotency key; a second start with the same key updates the existing record.
    pub key: &'a str,
    /// The playbook stage.
    pub stage: &'a str,
    /// The playbook step.
    pub step: &'a str,
    /// The finding, `<provider>:<kind>:<id>`.
    pub finding_id: &'a str,
    /// The provider that executes the action.
    pub provider: &'a str,
    /// The verb.
    pub verb: &'a str,
}

/// The run journal: runs and their actions in the store (the SQLite file or the PostgreSQL
/// database). Safe to share between threads (one connection behind a mutex); a clone shares the
/// connection; several processes may open the same store. Async code calls it through
/// [`Journal::call`].
#[derive(Clone)]
pub struct Journal {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite {
        conn: Arc<Mutex<Connection>>,
        path: PathBuf,
    },
    Postgres(Arc<PgConn>),
}

const RUN_COLUMNS: &str = "id, identity, trigger, playbook, playbook_digest, status, created_at, \
     effective_at, cutoff, contained_at, finished_at, override_protected, plan_json, report_json, approved_by, \
     started_by, started_os_user";

const ACTION_COLUMNS: &str = "run_id, key, stage, step, finding_id, provider, verb, status, \
     attempts, started_at, finished_at, detail, state, error, provider_calls, last_started_at";

impl Journal {
    /// Open (creating it and its directory if needed) the journal at `path`.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let open_err = |message: String| JournalError::Open {
            path: path.to_path_buf(),
            message,
        };
        let conn = open_durable(path).map_err(|e| open_err(e.to_string()))?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| open_err(e.to_string()))?;
        migrate(&conn).map_err(|e| open_err(format!("schema migration: {e}")))?;
        Ok(Journal {
            backend: Backend::Sqlite {
                conn: Arc::new(Mutex::new(conn)),
                path: path.to_path_buf(),
            },
        })
    }

    /// The journal in the PostgreSQL store (migrated by [`PgStore::open`]).
    pub fn open_postgres(store: &Arc<PgStore>) -> Journal {
        Journal {
            backend: Backend::Postgres(Arc::new(PgConn::new(store))),
        }
    }

    /// The SQLite file, `None` for the PostgreSQL store.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite { path, .. } => Some(path),
            Backend::Postgres(_) => None,
        }
    }

    /// Run `f` on this journal off the async runtime (see [`super::blocking`]), e.g.
    /// `journal.call(move |j| j.create_run(&run)).await`.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Journal) -> Result<R, JournalError> + Send + 'static,
    ) -> Result<R, JournalError> {
        let journal = self.clone();
        super::blocking::off_runtime(move || f(&journal)).await
    }

    /// The SQLite connection, or the PostgreSQL connection to hand the call to.
    pub(super) fn conn(&self) -> Result<MutexGuard<'_, Connection>, &PgConn> {
        match &self.backend {
            // A panic while holding the lock leaves SQLite consistent (every write is one
            // statement or transaction), so a poisoned lock is safe to reuse.
            Backend::Sqlite { conn, .. } => Ok(conn.lock().unwrap_or_else(|p| p.into_inner())),
            Backend::Postgres(pg) => Err(pg),
        }
    }

    /// Record a new run (status, plan and cutoff as decided by the engine).
    pub fn create_run(&self, run: &RunRecord) -> Result<(), JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_create_run(pg, run),
        };
        conn.execute(
            &format!("INSERT INTO runs ({RUN_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)"),
            params![
                run.id,
                run.identity,
                run.trigger.as_str(),
                run.playbook,
                run.playbook_digest,
                run.status.as_str(),
                ts(run.created_at),
                ts(run.effective_at),
                ts(run.cutoff),
                run.contained_at.map(ts),
                run.finished_at.map(ts),
                run.override_protected,
                run.plan_json,
                run.report_json,
                run.approved_by,
                run.started_by,
                run.started_os_user,
            ],
        )?;
        Ok(())
    }

    /// Set the run's status and when it finished (`None` while running or waiting for approval).
    /// Fails with [`JournalError::NoSuchRun`] for an unknown id.
    pub fn set_run_status(
        &self,
        id: &str,
        status: RunStatus,
        finished_at: Option<DateTime<Utc>>,
    ) -> Result<(), JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_set_run_status(pg, id, status, finished_at),
        };
        let n = conn.execute(
            "UPDATE runs SET status = ?2, finished_at = ?3 WHERE id = ?1",
            params![id, status.as_str(), finished_at.map(ts)],
        )?;
        if n == 0 {
            return Err(JournalError::NoSuchRun(id.into()));
        }
        Ok(())
    }

    /// Replace the run's plan: a run started with a contain-only plan (containment ahead of
    /// discovery) gets its whole plan, which keeps every action of the first. Fails with
    /// [`JournalError::NoSuchRun`] for an unknown id.
    pub fn set_plan(&self, id: &str, plan_json: &str) -> Result<(), JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_set_plan(pg, id, plan_json),
        };
        let n = conn.execute(
            "UPDATE runs SET plan_json = ?2 WHERE id = ?1",
            params![id, plan_json],
        )?;
        if n == 0 {
            return Err(JournalError::NoSuchRun(id.into()));
        }
        Ok(())
    }

    /// Record who approved the run's approval-gated steps.
    pub fn approve(&self, id: &str, approver: &str) -> Result<(), JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_approve(pg, id, approver),
        };
        let n = conn.execute(
            "UPDATE runs SET approved_by = ?2, approved_at = ?3 WHERE id = ?1",
            params![id, approver, ts(Utc::now())],
        )?;
        if n == 0 {
            return Err(JournalError::NoSuchRun(id.into()));
        }
        Ok(())
    }

    /// Record one approver's approval (once per approver: a repeat changes nothing) and return
    /// every approval of the run so far, oldest first.
    pub fn add_approval(
        &self,
        id: &str,
        approver: &str,
        method: &str,
    ) -> Result<Vec<Approval>, JournalError> {
        {
            let conn = match self.conn() {
                Ok(conn) => conn,
                Err(pg) => return pg_add_approval(pg, id, approver, method),
            };
            let exists: bool = conn.query_row(
                "SELECT EXISTS(SELECT 1 FROM runs WHERE id = ?1)",
                params![id],
                |r| r.get(0),
            )?;
            if !exists {
                return Err(JournalError::NoSuchRun(id.into()));
            }
            conn.execute(
                "INSERT OR IGNORE INTO approvals (run_id, approver, method, approved_at) VALUES (?1, ?2, ?3, ?4)",
                params![id, approver, method, ts(Utc::now())],
            )?;
        }
        self.approvals(id)
    }

    /// The run's approvals, oldest first.
    pub fn approvals(&self, id: &str) -> Result<Vec<Approval>, JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_approvals(pg, id),
        };
        let mut stmt = conn.prepare(
            "SELECT approver, method, approved_at FROM approvals WHERE run_id = ?1 ORDER BY approved_at, approver",
        )?;
        let rows = stmt
            .query_map(params![id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(approver, method, at)| {
                Ok(Approval {
                    approver,
                    method,
                    approved_at: parse_ts(&at)?,
                })
            })
            .collect()
    }

    /// Keep the access graph of a run as JSON: `before` (resolved when it was planned) or
    /// `after` (resolved by its latest verification; replaced by a later one).
    pub fn save_graph(&self, id: &str, which: &str, json: &str) -> Result<(), JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_save_graph(pg, id, which, json),
        };
        conn.execute(
            "INSERT OR REPLACE INTO run_graphs (run_id, which, graph_json) VALUES (?1, ?2, ?3)",
            params![id, which, json],
        )?;
        Ok(())
    }

    /// The graph [`Journal::save_graph`] kept, if any.
    pub fn graph(&self, id: &str, which: &str) -> Result<Option<String>, JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_graph(pg, id, which),
        };
        let mut stmt =
            conn.prepare("SELECT graph_json FROM run_graphs WHERE run_id = ?1 AND which = ?2")?;
        let mut rows = stmt.query_map(params![id, which], |r| r.get::<_, String>(0))?;
        Ok(rows.next().transpose()?)
    }

    /// Record when containment finished (first time only).
    pub fn set_contained(&self, id: &str, at: DateTime<Utc>) -> Result<(), JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_set_contained(pg, id, at),
        };
        conn.execute(
            "UPDATE runs SET contained_at = COALESCE(contained_at, ?2) WHERE id = ?1",
            params![id, ts(at)],
        )?;
        Ok(())
    }

    /// Store the run's closure report (JSON), replacing any earlier one (a resumed run is verified
    /// again).
    pub fn save_report(&self, id: &str, report_json: &str) -> Result<(), JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_save_report(pg, id, report_json),
        };
        conn.execute(
            "UPDATE runs SET report_json = ?2 WHERE id = ?1",
            params![id, report_json],
        )?;
        Ok(())
    }

    /// The run with this id, or `None`.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_run(pg, id),
        };
        let mut stmt = conn.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?;
        let raw = stmt.query_row(params![id], raw_run).optional()?;
        raw.map(RawRun::into_record).transpose()
    }

    /// The most recent runs first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_runs(pg, limit),
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map(params![limit as i64], raw_run)?;
        rows.map(|r| r.map_err(JournalError::from).and_then(RawRun::into_record))
            .collect()
    }

    /// The identity's newest run, of any trigger.
    pub fn latest_run(&self, identity: &str) -> Result<Option<RunRecord>, JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_latest_run(pg, identity),
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE identity = ?1 ORDER BY created_at DESC, id DESC LIMIT 1"
        ))?;
        let raw = stmt.query_row(params![identity], raw_run).optional()?;
        raw.map(RawRun::into_record).transpose()
    }

    /// The identity's most recent run other than `except` (the run being planned, which a
    /// run containing ahead of discovery has already created).
    pub fn latest_run_except(
        &self,
        identity: &str,
        except: &str,
    ) -> Result<Option<RunRecord>, JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_latest_run_except(pg, identity, except),
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE identity = ?1 AND id <> ?2 \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))?;
        let raw = stmt
            .query_row(params![identity, except], raw_run)
            .optional()?;
        raw.map(RawRun::into_record).transpose()
    }

    /// How many runs are in each status (for metrics).
    pub fn runs_by_status(&self) -> Result<Vec<(String, u64)>, JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_runs_by_status(pg),
        };
        let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM runs GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|r| {
            r.map(|(s, n)| (s, n.max(0) as u64))
                .map_err(JournalError::from)
        })
        .collect()
    }

    /// The newest unfinished run (running, or failed part-way) of this identity and trigger.
    pub fn unfinished_run(
        &self,
        identity: &str,
        trigger: Trigger,
    ) -> Result<Option<RunRecord>, JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_unfinished_run(pg, identity, trigger),
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE identity = ?1 AND trigger = ?2 \
             AND status IN ('running', 'failed', 'waiting-approval') ORDER BY created_at DESC LIMIT 1"
        ))?;
        let raw = stmt
            .query_row(params![identity, trigger.as_str()], raw_run)
            .optional()?;
        raw.map(RawRun::into_record).transpose()
    }

    /// The cutoff of the identity's most recent run of a trigger that ends access (leaver,
    /// incident) that no later run of a trigger that starts access (joiner) supersedes: secrets
    /// rotated after it need no rotating again.
    pub fn containment_cutoff(
        &self,
        identity: &str,
    ) -> Result<Option<DateTime<Utc>>, JournalError> {
        self.containment_cutoff_except(identity, "")
    }

    /// [`Journal::containment_cutoff`] as it was before run `except` existed: the cutoff a
    /// run is planned with, even when it is planned again (a run that contained ahead of
    /// discovery plans the rest after it began).
    pub fn containment_cutoff_except(
        &self,
        identity: &str,
        except: &str,
    ) -> Result<Option<DateTime<Utc>>, JournalError> {
        let sql_list = |pick: fn(Trigger) -> bool| {
            Trigger::ALL
                .into_iter()
                .filter(|t| pick(*t))
                .map(|t| format!("'{}'", t.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_containment_cutoff(pg, identity, except),
        };
        let last_start: Option<String> = conn
            .query_row(
                &format!(
                    "SELECT MAX(created_at) FROM runs WHERE identity = ?1 AND id <> ?2 \
                     AND trigger IN ({})",
                    sql_list(Trigger::starts_access)
                ),
                params![identity, except],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let cutoff: Option<String> = conn
            .query_row(
                &format!(
                    "SELECT cutoff FROM runs WHERE identity = ?1 AND id <> ?3 AND trigger IN ({}) \
                     AND created_at > COALESCE(?2, '') ORDER BY created_at DESC LIMIT 1",
                    sql_list(Trigger::ends_access)
                ),
                params![identity, last_start, except],
                |r| r.get(0),
            )
            .optional()?;
        Ok(cutoff.as_deref().map(parse_ts).transpose()?)
    }

    /// The journaled action with this idempotency key, or `None` when it was never started.
    pub fn action(&self, key: &str) -> Result<Option<ActionRecord>, JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_action(pg, key),
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE key = ?1"
        ))?;
        let raw = stmt.query_row(params![key], raw_action).optional()?;
        raw.map(RawAction::into_record).transpose()
    }

    /// The run's actions, in the order they were started.
    pub fn actions(&self, run_id: &str) -> Result<Vec<ActionRecord>, JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_actions(pg, run_id),
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE run_id = ?1 ORDER BY started_at, key"
        ))?;
        let rows = stmt.query_map(params![run_id], raw_action)?;
        rows.map(|r| {
            r.map_err(JournalError::from)
                .and_then(RawAction::into_record)
        })
        .collect()
    }

    /// Record that an action is about to run (before the provider call). Returns the attempt
    /// number (1 for the first start, more when an interrupted action is run again).
    pub fn action_started(&self, a: &ActionStart<'_>) -> Result<u32, JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_action_started(pg, a),
        };
        conn.execute(
            "INSERT INTO actions (run_id, key, stage, step, finding_id, provider, verb, status, attempts, started_at, last_started_at) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,'started',1,?8,?8) \
             ON CONFLICT(key) DO UPDATE SET status = 'started', attempts = attempts + 1, error = NULL, \
             last_started_at = excluded.last_started_at",
            params![a.run_id, a.key, a.stage, a.step, a.finding_id, a.provider, a.verb, ts(Utc::now())],
        )?;
        let attempts: u32 = conn.query_row(
            "SELECT attempts FROM actions WHERE key = ?1",
            params![a.key],
            |r| r.get(0),
        )?;
        Ok(attempts)
    }

    /// Record the action's success (after the provider call), with the provider calls this
    /// start of it made (added to those of earlier starts).
    pub fn action_finished(
        &self,
        key: &str,
        already_done: bool,
        state: &str,
        detail: &str,
        calls: &[ProviderCall],
    ) -> Result<(), JournalError> {
        let status = if already_done {
            ActionStatus::AlreadyDone
        } else {
            ActionStatus::Done
        };
        let mut conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_action_finished(pg, key, status, state, detail, calls),
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let calls = calls_with_earlier(&tx, key, calls)?;
        tx.execute(
            "UPDATE actions SET status = ?2, state = ?3, detail = ?4, finished_at = ?5, error = NULL, provider_calls = ?6 WHERE key = ?1",
            params![key, status.as_str(), state, detail, ts(Utc::now()), calls],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Record the action's failure (after its last attempt) with the provider's error and the
    /// provider calls this start of it made (added to those of earlier starts).
    pub fn action_failed(
        &self,
        key: &str,
        error: &str,
        calls: &[ProviderCall],
    ) -> Result<(), JournalError> {
        let mut conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_action_failed(pg, key, error, calls),
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let calls = calls_with_earlier(&tx, key, calls)?;
        tx.execute(
            "UPDATE actions SET status = 'failed', error = ?2, finished_at = ?3, provider_calls = ?4 WHERE key = ?1",
            params![key, error, ts(Utc::now()), calls],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// For each finding, the last state a finished action left it in and when: the start of
    /// a grace period.
    pub fn state_since(&self) -> Result<BTreeMap<String, (String, DateTime<Utc>)>, JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_state_since(pg),
        };
        let mut stmt = conn.prepare(
            "SELECT finding_id, state, finished_at FROM actions \
             WHERE status IN ('done', 'already-done') AND state IS NOT NULL AND finished_at IS NOT NULL \
             ORDER BY finished_at",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (finding, state, at) = row?;
            let at = parse_ts(&at)?;
            // Keep the first moment of the latest state: an already-done repeat does not
            // restart the grace period.
            match out.get(&finding) {
                Some((s, _)) if *s == state => {}
                _ => {
                    out.insert(finding, (state, at));
                }
            }
        }
        Ok(out)
    }
}

/// Bring a journal written by an older Closeout up to [`SCHEMA`]: columns added since are
/// added here, so upgrading never strands existing runs.
struct RawRun {
    id: String,
    identity: String,
    trigger: String,
    playbook: String,
    playbook_digest: String,
    status: String,
    created_at: String,
    effective_at: String,
    cutoff: String,
    contained_at: Option<String>,
    finished_at: Option<String>,
    override_protected: bool,
    plan_json: String,
    report_json: Option<String>,
    approved_by: Option<String>,
    started_by: Option<String>,
    started_os_user: Option<String>,
}

fn raw_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRun> {
    Ok(RawRun {
        id: r.get(0)?,
        identity: r.get(1)?,
        trigger: r.get(2)?,
        playbook: r.get(3)?,
        playbook_digest: r.get(4)?,
        status: r.get(5)?,
        created_at: r.get(6)?,
        effective_at: r.get(7)?,
        cutoff: r.get(8)?,
        contained_at: r.get(9)?,
        finished_at: r.get(10)?,
        override_protected: r.get(11)?,
        plan_json: r.get(12)?,
        report_json: r.get(13)?,
        approved_by: r.get(14)?,
        started_by: r.get(15)?,
        started_os_user: r.get(16)?,
    })
}

impl RawRun {
    fn into_record(self) -> Result<RunRecord, JournalError> {
        Ok(RunRecord {
            status: RunStatus::parse(&self.status)
                .ok_or_else(|| JournalError::Corrupt(format!("run status {:?}", self.status)))?,
            created_at: parse_ts(&self.created_at)?,
            effective_at: parse_ts(&self.effective_at)?,
            cutoff: parse_ts(&self.cutoff)?,
            contained_at: parse_opt_ts(self.contained_at)?,
            finished_at: parse_opt_ts(self.finished_at)?,
            id: self.id,
            identity: self.identity,
            trigger: Trigger::parse(&self.trigger)
                .map_err(|_| JournalError::Corrupt(format!("run trigger {:?}", self.trigger)))?,
            playbook: self.playbook,
            playbook_digest: self.playbook_digest,
            override_protected: self.override_protected,
            plan_json: self.plan_json,
            report_json: self.report_json,
            approved_by: self.approved_by,
            started_by: self.started_by,
            started_os_user: self.started_os_user,
        })
    }
}

struct RawAction {
    cols: (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    ),
    attempts: u32,
    started_at: String,
    finished_at: Option<String>,
    detail: Option<String>,
    state: Option<String>,
    error: Option<String>,
    provider_calls: Option<String>,
    last_started_at: Option<String>,
}

fn raw_action(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawAction> {
    Ok(RawAction {
        cols: (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
        ),
        attempts: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
        detail: r.get(11)?,
        state: r.get(12)?,
        error: r.get(13)?,
        provider_calls: r.get(14)?,
        last_started_at: r.get(15)?,
    })
}

impl RawAction {
    fn into_record(self) -> Result<ActionRecord, JournalError> {
        let (run_id, key, stage, step, finding_id, provider, verb, status) = self.cols;
        Ok(ActionRecord {
            status: ActionStatus::parse(&status)
                .ok_or_else(|| JournalError::Corrupt(format!("action status {status:?}")))?,
            run_id,
            key,
            stage,
            step,
            finding_id,
            provider,
            verb,
            attempts: self.attempts,
            started_at: parse_ts(&self.started_at)?,
            last_started_at: match self.last_started_at.as_deref() {
                Some(t) => parse_ts(t)?,
                None => parse_ts(&self.started_at)?,
            },
            finished_at: parse_opt_ts(self.finished_at)?,
            detail: self.detail,
            state: self.state,
            error: self.error,
            provider_calls: parse_calls(self.provider_calls.as_deref())?,
        })
    }
}

/// The stored calls of an action (a JSON array; NULL: none).
fn parse_calls(text: Option<&str>) -> Result<Vec<ProviderCall>, JournalError> {
    match text {
        None => Ok(Vec::new()),
        Some(t) => serde_json::from_str(t)
            .map_err(|e| JournalError::Corrupt(format!("action provider calls: {e}"))),
    }
}

/// The action's stored calls followed by `calls`, as JSON to store.
fn calls_with_earlier(
    conn: &Connection,
    key: &str,
    calls: &[ProviderCall],
) -> Result<String, JournalError> {
    let stored: Option<Option<String>> = conn
        .query_row(
            "SELECT provider_calls FROM actions WHERE key = ?1",
            params![key],
            |r| r.get(0),
        )
        .optional()?;
    let mut all = parse_calls(stored.flatten().as_deref())?;
    all.extend_from_slice(calls);
    serde_json::to_string(&all)
        .map_err(|e| JournalError::Corrupt(format!("action provider calls: {e}")))
}

// The PostgreSQL statements of each operation (see the SQLite ones above for what each does).

fn pg_exec(
    pg: &PgConn,
    sql: &str,
    args: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<u64, JournalError> {
    pg.with(|c| c.execute(sql, args).map_err(JournalError::from))
}

fn pg_create_run(pg: &PgConn, run: &RunRecord) -> Result<(), JournalError> {
    let (created, effective, cutoff) = (ts(run.created_at), ts(run.effective_at), ts(run.cutoff));
    let (contained, finished) = (run.contained_at.map(ts), run.finished_at.map(ts));
    pg_exec(
        pg,
        &format!(
            "INSERT INTO runs ({RUN_COLUMNS}) VALUES \
             ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)"
        ),
        &[
            &run.id,
            &run.identity,
            &run.trigger.as_str(),
            &run.playbook,
            &run.playbook_digest,
            &run.status.as_str(),
            &created,
            &effective,
            &cutoff,
            &contained,
            &finished,
            &run.override_protected,
            &run.plan_json,
            &run.report_json,
            &run.approved_by,
            &run.started_by,
            &run.started_os_user,
        ],
    )?;
    Ok(())
}

fn pg_set_run_status(
    pg: &PgConn,
    id: &str,
    status: RunStatus,
    finished_at: Option<DateTime<Utc>>,
) -> Result<(), JournalError> {
    let finished = finished_at.map(ts);
    let n = pg_exec(
        pg,
        "UPDATE runs SET status = $2, finished_at = $3 WHERE id = $1",
        &[&id, &status.as_str(), &finished],
    )?;
    if n == 0 {
        return Err(JournalError::NoSuchRun(id.into()));
    }
    Ok(())
}

fn pg_approve(pg: &PgConn, id: &str, approver: &str) -> Result<(), JournalError> {
    let n = pg_exec(
        pg,
        "UPDATE runs SET approved_by = $2, approved_at = $3 WHERE id = $1",
        &[&id, &approver, &ts(Utc::now())],
    )?;
    if n == 0 {
        return Err(JournalError::NoSuchRun(id.into()));
    }
    Ok(())
}

fn pg_add_approval(
    pg: &PgConn,
    id: &str,
    approver: &str,
    method: &str,
) -> Result<Vec<Approval>, JournalError> {
    let exists: bool = pg.with(|c| {
        c.query_one("SELECT EXISTS(SELECT 1 FROM runs WHERE id = $1)", &[&id])?
            .try_get(0)
            .map_err(JournalError::from)
    })?;
    if !exists {
        return Err(JournalError::NoSuchRun(id.into()));
    }
    pg_exec(
        pg,
        "INSERT INTO approvals (run_id, approver, method, approved_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
        &[&id, &approver, &method, &ts(Utc::now())],
    )?;
    pg_approvals(pg, id)
}

fn pg_approvals(pg: &PgConn, id: &str) -> Result<Vec<Approval>, JournalError> {
    let rows = pg.with(|c| {
        c.query(
            "SELECT approver, method, approved_at FROM approvals WHERE run_id = $1 \
             ORDER BY approved_at, approver",
            &[&id],
        )
        .map_err(JournalError::from)
    })?;
    rows.iter()
        .map(|r| {
            let at: String = r.try_get(2)?;
            Ok(Approval {
                approver: r.try_get(0)?,
                method: r.try_get(1)?,
                approved_at: parse_ts(&at)?,
            })
        })
        .collect()
}

fn pg_save_graph(pg: &PgConn, id: &str, which: &str, json: &str) -> Result<(), JournalError> {
    pg_exec(
        pg,
        "INSERT INTO run_graphs (run_id, which, graph_json) VALUES ($1, $2, $3) \
         ON CONFLICT (run_id, which) DO UPDATE SET graph_json = excluded.graph_json",
        &[&id, &which, &json],
    )?;
    Ok(())
}

fn pg_graph(pg: &PgConn, id: &str, which: &str) -> Result<Option<String>, JournalError> {
    let row = pg.with(|c| {
        c.query_opt(
            "SELECT graph_json FROM run_graphs WHERE run_id = $1 AND which = $2",
            &[&id, &which],
        )
        .map_err(JournalError::from)
    })?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

fn pg_set_plan(pg: &PgConn, id: &str, plan_json: &str) -> Result<(), JournalError> {
    if pg_exec(
        pg,
        "UPDATE runs SET plan_json = $2 WHERE id = $1",
        &[&id, &plan_json],
    )? == 0
    {
        return Err(JournalError::NoSuchRun(id.into()));
    }
    Ok(())
}

fn pg_set_contained(pg: &PgConn, id: &str, at: DateTime<Utc>) -> Result<(), JournalError> {
    pg_exec(
        pg,
        "UPDATE runs SET contained_at = COALESCE(contained_at, $2) WHERE id = $1",
        &[&id, &ts(at)],
    )?;
    Ok(())
}

fn pg_save_report(pg: &PgConn, id: &str, report_json: &str) -> Result<(), JournalError> {
    pg_exec(
        pg,
        "UPDATE runs SET report_json = $2 WHERE id = $1",
        &[&id, &report_json],
    )?;
    Ok(())
}

fn pg_raw_run(r: &postgres::Row) -> Result<RawRun, postgres::Error> {
    Ok(RawRun {
        id: r.try_get(0)?,
        identity: r.try_get(1)?,
        trigger: r.try_get(2)?,
        playbook: r.try_get(3)?,
        playbook_digest: r.try_get(4)?,
        status: r.try_get(5)?,
        created_at: r.try_get(6)?,
        effective_at: r.try_get(7)?,
        cutoff: r.try_get(8)?,
        contained_at: r.try_get(9)?,
        finished_at: r.try_get(10)?,
        override_protected: r.try_get(11)?,
        plan_json: r.try_get(12)?,
        report_json: r.try_get(13)?,
        approved_by: r.try_get(14)?,
        started_by: r.try_get(15)?,
        started_os_user: r.try_get(16)?,
    })
}

fn pg_runs_where(
    pg: &PgConn,
    rest: &str,
    args: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<RunRecord>, JournalError> {
    let rows = pg.with(|c| {
        c.query(&format!("SELECT {RUN_COLUMNS} FROM runs {rest}"), args)
            .map_err(JournalError::from)
    })?;
    rows.iter()
        .map(|r| pg_raw_run(r).map_err(JournalError::from)?.into_record())
        .collect()
}

fn pg_run(pg: &PgConn, id: &str) -> Result<Option<RunRecord>, JournalError> {
    Ok(pg_runs_where(pg, "WHERE id = $1", &[&id])?
        .into_iter()
        .next())
}

fn pg_runs(pg: &PgConn, limit: usize) -> Result<Vec<RunRecord>, JournalError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    pg_runs_where(pg, "ORDER BY created_at DESC, id DESC LIMIT $1", &[&limit])
}

fn pg_latest_run(pg: &PgConn, identity: &str) -> Result<Option<RunRecord>, JournalError> {
    Ok(pg_runs_where(
        pg,
        "WHERE identity = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
        &[&identity],
    )?
    .into_iter()
    .next())
}

fn pg_latest_run_except(
    pg: &PgConn,
    identity: &str,
    except: &str,
) -> Result<Option<RunRecord>, JournalError> {
    Ok(pg_runs_where(
        pg,
        "WHERE identity = $1 AND id <> $2 ORDER BY created_at DESC, id DESC LIMIT 1",
        &[&identity, &except],
    )?
    .into_iter()
    .next())
}

fn pg_runs_by_status(pg: &PgConn) -> Result<Vec<(String, u64)>, JournalError> {
    let rows = pg.with(|c| {
        c.query("SELECT status, COUNT(*) FROM runs GROUP BY status", &[])
            .map_err(JournalError::from)
    })?;
    rows.iter()
        .map(|r| {
            let n: i64 = r.try_get(1)?;
            Ok((r.try_get(0)?, u64::try_from(n).unwrap_or(0)))
        })
        .collect()
}

fn pg_unfinished_run(
    pg: &PgConn,
    identity: &str,
    trigger: Trigger,
) -> Result<Option<RunRecord>, JournalError> {
    Ok(pg_runs_where(
        pg,
        "WHERE identity = $1 AND trigger = $2 \
         AND status IN ('running', 'failed', 'waiting-approval') ORDER BY created_at DESC LIMIT 1",
        &[&identity, &trigger.as_str()],
    )?
    .into_iter()
    .next())
}

fn pg_containment_cutoff(
    pg: &PgConn,
    identity: &str,
    except: &str,
) -> Result<Option<DateTime<Utc>>, JournalError> {
    let names = |pick: fn(Trigger) -> bool| -> Vec<String> {
        Trigger::ALL
            .into_iter()
            .filter(|t| pick(*t))
            .map(|t| t.as_str().to_string())
            .collect()
    };
    let (starts, ends) = (names(Trigger::starts_access), names(Trigger::ends_access));
    let cutoff: Option<String> = pg.with(|c| {
        let last_start: Option<String> = c
            .query_one(
                "SELECT MAX(created_at) FROM runs WHERE identity = $1 AND id <> $3 \
                 AND trigger = ANY($2)",
                &[&identity, &starts, &except],
            )?
            .try_get(0)?;
        c.query_opt(
            "SELECT cutoff FROM runs WHERE identity = $1 AND id <> $4 AND trigger = ANY($2) \
             AND created_at > COALESCE($3, '') ORDER BY created_at DESC LIMIT 1",
            &[&identity, &ends, &last_start, &except],
        )?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(JournalError::from)
    })?;
    Ok(cutoff.as_deref().map(parse_ts).transpose()?)
}

fn pg_raw_action(r: &postgres::Row) -> Result<RawAction, JournalError> {
    let attempts: i64 = r.try_get(8)?;
    Ok(RawAction {
        cols: (
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
            r.try_get(5)?,
            r.try_get(6)?,
            r.try_get(7)?,
        ),
        attempts: u32::try_from(attempts)
            .map_err(|_| JournalError::Corrupt(format!("action attempts {attempts}")))?,
        started_at: r.try_get(9)?,
        finished_at: r.try_get(10)?,
        detail: r.try_get(11)?,
        state: r.try_get(12)?,
        error: r.try_get(13)?,
        provider_calls: r.try_get(14)?,
        last_started_at: r.try_get(15)?,
    })
}

fn pg_actions_where(pg: &PgConn, rest: &str, arg: &str) -> Result<Vec<ActionRecord>, JournalError> {
    let rows = pg.with(|c| {
        c.query(
            &format!("SELECT {ACTION_COLUMNS} FROM actions {rest}"),
            &[&arg],
        )
        .map_err(JournalError::from)
    })?;
    rows.iter()
        .map(|r| pg_raw_action(r)?.into_record())
        .collect()
}

fn pg_action(pg: &PgConn, key: &str) -> Result<Option<ActionRecord>, JournalError> {
    Ok(pg_actions_where(pg, "WHERE key = $1", key)?
        .into_iter()
        .next())
}

fn pg_actions(pg: &PgConn, run_id: &str) -> Result<Vec<ActionRecord>, JournalError> {
    pg_actions_where(pg, "WHERE run_id = $1 ORDER BY started_at, key", run_id)
}

fn pg_action_started(pg: &PgConn, a: &ActionStart<'_>) -> Result<u32, JournalError> {
    let attempts: i64 = pg.with(|c| {
        c.query_one(
            "INSERT INTO actions (run_id, key, stage, step, finding_id, provider, verb, status, \
             attempts, started_at, last_started_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,'started',1,$8,$8) \
             ON CONFLICT (key) DO UPDATE SET status = 'started', \
             attempts = actions.attempts + 1, error = NULL, \
             last_started_at = excluded.last_started_at RETURNING attempts",
            &[
                &a.run_id,
                &a.key,
                &a.stage,
                &a.step,
                &a.finding_id,
                &a.provider,
                &a.verb,
                &ts(Utc::now()),
            ],
        )?
        .try_get(0)
        .map_err(JournalError::from)
    })?;
    u32::try_from(attempts)
        .map_err(|_| JournalError::Corrupt(format!("action attempts {attempts}")))
}

/// The action's stored calls (row locked for the caller's update) followed by `calls`.
fn pg_calls_with_earlier(
    tx: &mut postgres::Transaction<'_>,
    key: &str,
    calls: &[ProviderCall],
) -> Result<String, JournalError> {
    let stored: Option<Option<String>> = tx
        .query_opt(
            "SELECT provider_calls FROM actions WHERE key = $1 FOR UPDATE",
            &[&key],
        )?
        .map(|r| r.try_get(0))
        .transpose()?;
    let mut all = parse_calls(stored.flatten().as_deref())?;
    all.extend_from_slice(calls);
    serde_json::to_string(&all)
        .map_err(|e| JournalError::Corrupt(format!("action provider calls: {e}")))
}

fn pg_action_finished(
    pg: &PgConn,
    key: &str,
    status: ActionStatus,
    state: &str,
    detail: &str,
    calls: &[ProviderCall],
) -> Result<(), JournalError> {
    pg.with(|c| {
        let mut tx = c.transaction()?;
        let calls = pg_calls_with_earlier(&mut tx, key, calls)?;
        tx.execute(
            "UPDATE actions SET status = $2, state = $3, detail = $4, finished_at = $5, \
             error = NULL, provider_calls = $6 WHERE key = $1",
            &[
                &key,
                &status.as_str(),
                &state,
                &detail,
                &ts(Utc::now()),
                &calls,
            ],
        )?;
        tx.commit()?;
        Ok(())
    })
}

fn pg_action_failed(
    pg: &PgConn,
    key: &str,
    error: &str,
    calls: &[ProviderCall],
) -> Result<(), JournalError> {
    pg.with(|c| {
        let mut tx = c.transaction()?;
        let calls = pg_calls_with_earlier(&mut tx, key, calls)?;
        tx.execute(
            "UPDATE actions SET status = 'failed', error = $2, finished_at = $3, \
             provider_calls = $4 WHERE key = $1",
            &[&key, &error, &ts(Utc::now()), &calls],
        )?;
        tx.commit()?;
        Ok(())
    })
}

fn pg_state_since(pg: &PgConn) -> Result<BTreeMap<String, (String, DateTime<Utc>)>, JournalError> {
    let rows = pg.with(|c| {
        c.query(
            "SELECT finding_id, state, finished_at FROM actions \
             WHERE status IN ('done', 'already-done') AND state IS NOT NULL \
             AND finished_at IS NOT NULL ORDER BY finished_at",
            &[],
        )
        .map_err(JournalError::from)
    })?;
    let mut out: BTreeMap<String, (String, DateTime<Utc>)> = BTreeMap::new();
    for r in rows {
        let (finding, state, at): (String, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let at = parse_ts(&at)?;
        // As on SQLite: the first moment of the latest state.
        match out.get(&finding) {
            Some((s, _)) if *s == state => {}
            _ => {
                out.insert(finding, (state, at));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The journal's behaviour, the same on both backends: each test runs on a new SQLite file
    /// and on a new PostgreSQL database.
    macro_rules! on_both_backends {
        ($($name:ident),* $(,)?) => {
            mod on_sqlite {
                $(#[test]
                fn $name() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let j = super::Journal::open(&dir.path().join("sub/j.db")).expect("open");
                    super::$name(j)
                })*
            }
            mod on_postgres {
                $(#[test]
                fn $name() {
                    let (_dir, store) = crate::store::pg::testing::fresh();
                    super::$name(super::Journal::open_postgres(&store))
                })*
            }
        };
    }

    on_both_backends!(
        actions_are_recorded_before_and_after,
        unfinished_runs_and_cutoffs,
        observations_keep_the_first_sighting_of_a_state,
        every_starts_provider_calls_are_kept_in_order,
        approvals_are_kept_once_per_approver_and_graphs_by_run,
        runs_are_listed_newest_first_and_counted_by_status,
        a_run_planned_again_sees_the_journal_as_before_it_existed,
    );

    fn a_run_planned_again_sees_the_journal_as_before_it_existed(j: Journal) {
        let t0 = Utc::now() - chrono::Duration::hours(3);
        let t1 = Utc::now() - chrono::Duration::hours(1);
        j.create_run(&run("r1", "E1", "leaver", t0)).unwrap();
        j.create_run(&run("r2", "E1", "incident", t1)).unwrap();
        // r2 is the latest run and sets the cutoff, except for r2's own planning.
        assert_eq!(j.latest_run("E1").unwrap().unwrap().id, "r2");
        assert_eq!(j.latest_run_except("E1", "r2").unwrap().unwrap().id, "r1");
        assert!(j.latest_run_except("E2", "r2").unwrap().is_none());
        assert_eq!(ts(j.containment_cutoff("E1").unwrap().unwrap()), ts(t1));
        assert_eq!(
            ts(j.containment_cutoff_except("E1", "r2").unwrap().unwrap()),
            ts(t0)
        );
        assert!(j.containment_cutoff_except("E1", "r1").unwrap().is_some());
        // The whole plan replaces the contain-only one.
        j.set_plan("r2", r#"{"whole":true}"#).unwrap();
        assert_eq!(j.run("r2").unwrap().unwrap().plan_json, r#"{"whole":true}"#);
        assert!(matches!(
            j.set_plan("nope", "{}"),
            Err(JournalError::NoSuchRun(_))
        ));
    }

    fn runs_are_listed_newest_first_and_counted_by_status(j: Journal) {
        let t0: DateTime<Utc> = "2026-05-01T12:00:00Z".parse().unwrap();
        j.create_run(&run("r1", "E1", "leaver", t0)).unwrap();
        j.create_run(&run(
            "r2",
            "E2",
            "leaver",
            t0 + chrono::Duration::seconds(1),
        ))
        .unwrap();
        j.create_run(&run("r3", "E1", "mover", t0 + chrono::Duration::seconds(2)))
            .unwrap();
        j.set_run_status("r1", RunStatus::Closed, Some(t0)).unwrap();
        assert!(matches!(
            j.set_run_status("nope", RunStatus::Closed, None),
            Err(JournalError::NoSuchRun(_))
        ));
        let ids: Vec<String> = j.runs(2).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["r3", "r2"]);
        assert_eq!(j.latest_run("E1").unwrap().expect("E1's").id, "r3");
        assert_eq!(j.latest_run("E9").unwrap(), None);
        let mut by_status = j.runs_by_status().unwrap();
        by_status.sort();
        assert_eq!(
            by_status,
            vec![("closed".to_string(), 1), ("running".to_string(), 2)]
        );
        j.set_contained("r2", t0).unwrap();
        j.set_contained("r2", t0 + chrono::Duration::hours(1))
            .unwrap();
        j.save_report("r2", "{\"closed\":true}").unwrap();
        let r2 = j.run("r2").unwrap().expect("r2");
        assert_eq!(r2.contained_at, Some(t0), "set once, never moved");
        assert_eq!(r2.report_json.as_deref(), Some("{\"closed\":true}"));
        assert_eq!(r2.started_by.as_deref(), Some("tester"));
        j.approve("r2", "alice").unwrap();
        assert_eq!(
            j.run("r2").unwrap().expect("r2").approved_by.as_deref(),
            Some("alice")
        );
    }

    fn run(id: &str, identity: &str, trigger: &str, at: DateTime<Utc>) -> RunRecord {
        RunRecord {
            id: id.into(),
            identity: identity.into(),
            trigger: Trigger::parse(trigger).unwrap(),
            playbook: "leaver".into(),
            playbook_digest: "d".into(),
            status: RunStatus::Running,
            created_at: at,
            effective_at: at,
            cutoff: at,
            contained_at: None,
            finished_at: None,
            override_protected: false,
            plan_json: "{}".into(),
            report_json: None,
            approved_by: None,
            started_by: Some("tester".into()),
            started_os_user: None,
        }
    }

    fn start<'a>(run_id: &'a str, key: &'a str) -> ActionStart<'a> {
        ActionStart {
            run_id,
            key,
            stage: "contain",
            step: "s",
            finding_id: "aws:access-key:AK1",
            provider: "aws",
            verb: "deactivate",
        }
    }

    fn actions_are_recorded_before_and_after(j: Journal) {
        let t0 = Utc::now();
        j.create_run(&run("r1", "E1", "leaver", t0)).unwrap();
        assert_eq!(j.action_started(&start("r1", "k1")).unwrap(), 1);
        let a = j.action("k1").unwrap().unwrap();
        assert_eq!(a.status, ActionStatus::Started);
        // An interrupted action started again counts its attempts.
        assert_eq!(j.action_started(&start("r1", "k1")).unwrap(), 2);
        j.action_finished("k1", false, "inactive", "deactivated AK1", &[])
            .unwrap();
        let a = j.action("k1").unwrap().unwrap();
        assert_eq!(a.status, ActionStatus::Done);
        assert!(a.status.is_finished());
        assert_eq!(a.state.as_deref(), Some("inactive"));
        let since = j.state_since().unwrap();
        assert_eq!(since["aws:access-key:AK1"].0, "inactive");
        assert_eq!(j.actions("r1").unwrap().len(), 1);
    }

    fn unfinished_runs_and_cutoffs(j: Journal) {
        let t0 = Utc::now() - chrono::Duration::hours(2);
        let t1 = Utc::now() - chrono::Duration::hours(1);
        j.create_run(&run("r1", "E1", "leaver", t0)).unwrap();
        assert_eq!(
            j.unfinished_run("E1", Trigger::Leaver).unwrap().unwrap().id,
            "r1"
        );
        j.set_run_status("r1", RunStatus::Closed, Some(t1)).unwrap();
        assert!(j.unfinished_run("E1", Trigger::Leaver).unwrap().is_none());
        let cutoff = j.containment_cutoff("E1").unwrap().unwrap();
        assert_eq!(ts(cutoff), ts(t0));
        // A later joiner run (rehire) supersedes the old containment.
        j.create_run(&run("r2", "E1", "joiner", t1)).unwrap();
        assert!(j.containment_cutoff("E1").unwrap().is_none());
        assert!(j.containment_cutoff("E2").unwrap().is_none());
        assert!(matches!(
            j.set_run_status("nope", RunStatus::Closed, None),
            Err(JournalError::NoSuchRun(_))
        ));
    }

    fn observations_keep_the_first_sighting_of_a_state(j: Journal) {
        let t0 = Utc::now() - chrono::Duration::days(8);
        let t1 = Utc::now();
        j.observe([("k1", "inactive")], t0).unwrap();
        j.observe([("k1", "inactive")], t1).unwrap();
        assert_eq!(ts(j.observations().unwrap()["k1"].1), ts(t0));
        j.observe([("k1", "active")], t1).unwrap();
        let seen = j.observations().unwrap();
        assert_eq!(seen["k1"].0, "active");
        assert_eq!(ts(seen["k1"].1), ts(t1));
    }

    #[test]
    fn an_older_journal_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            let old = SCHEMA.replace(
                "    report_json TEXT,\n    approved_by TEXT,\n    approved_at TEXT,\n    started_by TEXT,\n    started_os_user TEXT\n",
                "    report_json TEXT\n",
            );
            let old = old.replace(
                "    error TEXT,\n    provider_calls TEXT,\n    last_started_at TEXT\n",
                "    error TEXT\n",
            );
            assert_ne!(old, SCHEMA);
            assert!(!old.contains("provider_calls"));
            assert!(!old.contains("last_started_at"));
            conn.execute_batch(&old).unwrap();
            conn.execute_batch(
                "INSERT INTO runs (id, identity, trigger, playbook, playbook_digest, status, created_at, effective_at, cutoff, plan_json) \
                 VALUES ('r0', 'E0', 'leaver', 'leaver', 'd', 'closed', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', '{}'); \
                 INSERT INTO actions (key, run_id, stage, step, finding_id, provider, verb, status, attempts, started_at) \
                 VALUES ('k0', 'r0', 'contain', 's', 'aws:access-key:AK0', 'aws', 'deactivate', 'done', 1, '2026-01-01T00:00:00Z');",
            )
            .unwrap();
        }
        let j = Journal::open(&path).unwrap();
        j.create_run(&run("r1", "E1", "leaver", Utc::now()))
            .unwrap();
        j.approve("r1", "alice").unwrap();
        let r = j.run("r1").unwrap().unwrap();
        assert_eq!(r.approved_by.as_deref(), Some("alice"));
        assert_eq!(r.started_by.as_deref(), Some("tester"));
        // An action journaled before receipts has none; a new one keeps its calls.
        assert_eq!(j.action("k0").unwrap().unwrap().provider_calls, vec![]);
        // An older action's latest start is its first.
        let k0 = j.action("k0").unwrap().unwrap();
        assert_eq!(k0.last_started_at, k0.started_at);
        j.action_started(&start("r1", "k1")).unwrap();
        let call = ProviderCall::new("iam:UpdateAccessKey", Some(200), Some("req-1".into()));
        j.action_finished("k1", false, "inactive", "d", std::slice::from_ref(&call))
            .unwrap();
        assert_eq!(j.action("k1").unwrap().unwrap().provider_calls, vec![call]);
    }

    fn every_starts_provider_calls_are_kept_in_order(j: Journal) {
        j.create_run(&run("r1", "E1", "leaver", Utc::now()))
            .unwrap();
        let call = |op: &str, status| ProviderCall::new(op, status, Some(format!("id-{op}")));
        j.action_started(&start("r1", "k1")).unwrap();
        j.action_failed("k1", "HTTP 503", &[call("a", Some(503)), call("b", None)])
            .unwrap();
        let failed = j.action("k1").unwrap().unwrap();
        assert_eq!(failed.status, ActionStatus::Failed);
        assert_eq!(failed.provider_calls.len(), 2);
        // Started again (a resume): the earlier start's calls stay, this start's follow them;
        // the first start's time stays, the latest start's moves.
        std::thread::sleep(std::time::Duration::from_millis(5));
        j.action_started(&start("r1", "k1")).unwrap();
        j.action_finished("k1", false, "inactive", "d", &[call("c", Some(200))])
            .unwrap();
        let done = j.action("k1").unwrap().unwrap();
        assert_eq!(done.started_at, failed.started_at);
        assert!(done.last_started_at > failed.last_started_at);
        assert_eq!(failed.last_started_at, failed.started_at);
        let ops: Vec<_> = done
            .provider_calls
            .iter()
            .map(|c| c.operation.as_str())
            .collect();
        assert_eq!(ops, ["a", "b", "c"]);
        assert_eq!(done.provider_calls[1].status, None);
        assert_eq!(done.provider_calls[2].request_id.as_deref(), Some("id-c"));
        assert_eq!(
            j.actions("r1").unwrap()[0].provider_calls,
            done.provider_calls
        );
    }

    fn approvals_are_kept_once_per_approver_and_graphs_by_run(j: Journal) {
        assert!(matches!(
            j.add_approval("nope", "alice", "signed"),
            Err(JournalError::NoSuchRun(_))
        ));
        j.create_run(&run("r1", "E1", "leaver", Utc::now()))
            .unwrap();
        assert_eq!(j.add_approval("r1", "alice", "signed").unwrap().len(), 1);
        assert_eq!(j.add_approval("r1", "alice", "signed").unwrap().len(), 1);
        let all = j.add_approval("r1", "bob", "api-token").unwrap();
        let names: Vec<&str> = all.iter().map(|a| a.approver.as_str()).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"alice") && names.contains(&"bob"));
        assert_eq!(j.graph("r1", "before").unwrap(), None);
        j.save_graph("r1", "before", "{\"findings\":[]}").unwrap();
        j.save_graph("r1", "after", "{}").unwrap();
        j.save_graph("r1", "after", "{\"x\":1}").unwrap();
        assert_eq!(
            j.graph("r1", "after").unwrap().as_deref(),
            Some("{\"x\":1}")
        );
    }

    #[test]
    fn runs_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        {
            let j = Journal::open(&path).unwrap();
            j.create_run(&run("r1", "E1", "leaver", Utc::now()))
                .unwrap();
            j.save_report("r1", "{\"status\":\"closed\"}").unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let r = j.run("r1").unwrap().unwrap();
        assert_eq!(r.report_json.as_deref(), Some("{\"status\":\"closed\"}"));
        assert_eq!(j.runs(10).unwrap().len(), 1);
    }
}
