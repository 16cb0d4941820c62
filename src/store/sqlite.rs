//! The store's SQLite file: durable connections (WAL, `synchronous=FULL`), the journal's
//! schema and its migrations, and the timestamp format every table uses.

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use std::path::Path;

/// Why the store's file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Its directory could not be created.
    #[error("cannot create its directory: {0}")]
    Directory(#[source] std::io::Error),
    /// SQLite refused to open or configure it.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// A timestamp in the store that is not RFC 3339.
#[derive(Debug, thiserror::Error)]
#[error("bad timestamp {text:?}: {source}")]
pub struct BadTimestamp {
    /// As stored.
    pub text: String,
    /// Why it does not parse.
    pub source: chrono::ParseError,
}

/// The journal's tables: runs, approvals, actions, observations, grants.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    trigger TEXT NOT NULL,
    playbook TEXT NOT NULL,
    playbook_digest TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    effective_at TEXT NOT NULL,
    cutoff TEXT NOT NULL,
    contained_at TEXT,
    finished_at TEXT,
    override_protected INTEGER NOT NULL DEFAULT 0,
    plan_json TEXT NOT NULL,
    report_json TEXT,
    approved_by TEXT,
    approved_at TEXT,
    started_by TEXT,
    started_os_user TEXT
);
CREATE TABLE IF NOT EXISTS run_graphs (
    run_id TEXT NOT NULL REFERENCES runs(id),
    which TEXT NOT NULL,
    graph_json TEXT NOT NULL,
    PRIMARY KEY (run_id, which)
);
CREATE TABLE IF NOT EXISTS approvals (
    run_id TEXT NOT NULL REFERENCES runs(id),
    approver TEXT NOT NULL,
    method TEXT NOT NULL,
    approved_at TEXT NOT NULL,
    PRIMARY KEY (run_id, approver)
);
CREATE INDEX IF NOT EXISTS runs_by_identity ON runs(identity, created_at);
CREATE TABLE IF NOT EXISTS actions (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    stage TEXT NOT NULL,
    step TEXT NOT NULL,
    finding_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    verb TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    detail TEXT,
    state TEXT,
    error TEXT,
    provider_calls TEXT,
    last_started_at TEXT
);
CREATE INDEX IF NOT EXISTS actions_by_run ON actions(run_id);
CREATE INDEX IF NOT EXISTS actions_by_finding ON actions(finding_id, finished_at);
CREATE TABLE IF NOT EXISTS observations (
    finding_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    identity TEXT NOT NULL,
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    rule TEXT NOT NULL,
    granted_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (identity, provider, kind, target)
);
CREATE INDEX IF NOT EXISTS grants_by_expiry ON grants(expires_at);
"#;

/// A timestamp as the store writes it (RFC 3339, microseconds, UTC).
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Read a stored timestamp.
pub fn parse_ts(s: &str) -> Result<DateTime<Utc>, BadTimestamp> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|source| BadTimestamp {
            text: s.to_string(),
            source,
        })
}

/// Read an optional stored timestamp.
pub fn parse_opt_ts(s: Option<String>) -> Result<Option<DateTime<Utc>>, BadTimestamp> {
    s.as_deref().map(parse_ts).transpose()
}

/// How long a connection waits for another connection's write lock before failing with "database
/// is locked", in [`retry_when_busy`]'s 1 ms polls.
const BUSY_POLLS: i32 = 10_000;

/// The busy handler: poll again after 1 ms, up to [`BUSY_POLLS`] times (at least 10 s). SQLite's
/// own `busy_timeout` backs off to 100 ms sleeps, so a waiting connection slept through the
/// commits of others and lost the lock to them again: with the service's workers committing
/// beside webhook intake, p99 intake latency was above 1.2 s (issue 15) while p50 was 7 ms.
fn retry_when_busy(polls_so_far: i32) -> bool {
    std::thread::sleep(std::time::Duration::from_millis(1));
    polls_so_far < BUSY_POLLS
}

/// Make `conn` wait for another connection's write lock by polling every millisecond (for at least
/// 10 s), rather than by SQLite's backing-off sleeps: every connection to the store's file uses it.
pub fn poll_when_busy(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_handler(Some(retry_when_busy))
}

/// Invariant: every transaction that writes begins `IMMEDIATE`. A deferred one that reads first
/// and then writes cannot wait for the lock: SQLite answers "database is locked" at once when
/// another connection committed in between (a busy handler would deadlock there), which failed
/// service events whenever two workers finished actions at the same moment.
///
/// A connection to the store's SQLite file for durable writes, shared by the journal and the
/// event queue: the directory is created, WAL with `synchronous=FULL` (a commit is on disk when
/// it returns), and a busy handler so several connections (workers, the CLI) can write.
pub fn open_durable(path: &Path) -> Result<Connection, OpenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(OpenError::Directory)?;
    }
    let conn = Connection::open(path)?;
    poll_when_busy(&conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Bring an older journal's tables up to [`SCHEMA`] (columns added since).
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, ty) in [
        ("runs", "approved_by", "TEXT"),
        ("runs", "approved_at", "TEXT"),
        ("runs", "started_by", "TEXT"),
        ("runs", "started_os_user", "TEXT"),
        // A JSON array of the provider calls each start of the action made (NULL: none
        // recorded, as in journals written before receipts).
        ("actions", "provider_calls", "TEXT"),
        // When the action's latest start began (NULL in older journals: its first start).
        ("actions", "last_started_at", "TEXT"),
    ] {
        let mut stmt = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
        let columns: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if !columns.iter().any(|c| c == column) {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_waits_for_another_connections_write_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        let holder = open_durable(&path).expect("open");
        holder
            .execute_batch("CREATE TABLE t (x INTEGER); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .expect("hold the write lock");
        let waiter = std::thread::spawn({
            let path = path.clone();
            move || {
                let conn = open_durable(&path).expect("open");
                let started = std::time::Instant::now();
                conn.execute("INSERT INTO t VALUES (2)", [])
                    .map(|_| started.elapsed())
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(500));
        holder.execute_batch("COMMIT").expect("commit");
        let waited = waiter
            .join()
            .expect("joined")
            .expect("the waiter's insert succeeds");
        assert!(
            waited >= std::time::Duration::from_millis(400),
            "{waited:?}"
        );
    }
}
