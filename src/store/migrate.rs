//! `closeout store migrate`: copy a SQLite deployment (the store file at `[store] path` and the
//! audit log file at `[audit] path`) into an empty PostgreSQL store, all or nothing.
//!
//! The copy is one PostgreSQL transaction: every row of every durable table ([`TABLES`]), with
//! its ids, statuses, timestamps and sequence numbers as they are (the `BIGSERIAL` sequences set
//! past the highest copied), the audit log's records as their lines stand (same hashes and
//! signatures) and its head, and the HR export's last snapshot (the file beside the SQLite
//! store). The copied audit chain is verified inside the transaction before it commits.
//! Leases are not copied: they are live state, and the copy refuses to start while one is held.
//!
//! The copier is generic: for each table it reads the column names on both sides, copies the
//! columns SQLite has (every one of them must have a place in PostgreSQL, so nothing is dropped),
//! and converts each value by the PostgreSQL column's type ([`convert`]).
//!
//! Invariant: the source cannot change during the copy — the SQLite write lock (`BEGIN
//! IMMEDIATE`) and the audit file's append lock are held until the PostgreSQL transaction has
//! committed — and the target must be empty of Closeout data: a live store is never merged into.

use super::audit::{self, AuditError};
use super::pg::{PgError, PgStore};
use super::sqlite::{poll_when_busy, ts};
use chrono::Utc;
use postgres::types::ToSql;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A durable table copied from SQLite to PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// Its name, the same on both sides.
    pub name: &'static str,
    /// The PostgreSQL column that takes the SQLite row's `rowid` (the SCIM Users' creation order,
    /// `seq`, is the SQLite table's implicit rowid).
    pub rowid_into: Option<&'static str>,
    /// The PostgreSQL `BIGSERIAL` column whose sequence is set past the highest copied value.
    pub serial: Option<&'static str>,
}

/// Every durable table copied, parents before the tables that reference them.
pub const TABLES: [Table; 9] = [
    Table::plain("runs"),
    Table::plain("run_graphs"),
    Table::plain("approvals"),
    Table::plain("actions"),
    Table::plain("observations"),
    Table::plain("grants"),
    Table {
        name: "event_queue",
        rowid_into: None,
        serial: Some("seq"),
    },
    Table {
        name: "scim_users",
        rowid_into: Some("seq"),
        serial: Some("seq"),
    },
    Table::plain("scim_user_names"),
];

/// Tables of the PostgreSQL store that must be empty too, though nothing is copied into them by
/// [`TABLES`]: the leases (live state), the audit log and its head, the HR snapshot.
const OTHER_TABLES: [&str; 5] = [
    "identity_leases",
    "leader_leases",
    "audit_log",
    "audit_head",
    "source_snapshot",
];

impl Table {
    const fn plain(name: &'static str) -> Table {
        Table {
            name,
            rowid_into: None,
            serial: None,
        }
    }
}

/// Why the migration refused to start or failed. Nothing was committed to PostgreSQL in any case.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// There is no SQLite store file to migrate.
    #[error("no SQLite store at {} ([store] path): nothing to migrate", .0.display())]
    NoSource(PathBuf),
    /// The target already holds Closeout data.
    #[error(
        "the PostgreSQL store {target} is not empty (table {table} has {rows} row(s)): \
         `store migrate` only copies into an empty store and never merges into a live one"
    )]
    TargetNotEmpty {
        /// user@host:port/database.
        target: String,
        /// The first non-empty table.
        table: String,
        /// Its rows.
        rows: i64,
    },
    /// A process is using the SQLite store (a lease is held, an event is being processed).
    #[error("the SQLite store {} is in use: {what}; stop `closeout serve` (and any `apply`) first, then run `store migrate` again", .path.display())]
    InUse {
        /// The store file.
        path: PathBuf,
        /// What shows it (which lease or event).
        what: String,
    },
    /// A SQLite column has no place in the PostgreSQL table: copying would drop it.
    #[error("SQLite table {table} has column {column}, which the PostgreSQL table lacks: copying would lose it (is this Closeout older than the one that wrote the store?)")]
    NoSuchColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A PostgreSQL column SQLite lacks is required (NOT NULL, no default).
    #[error("PostgreSQL table {table} requires column {column}, which the SQLite table lacks")]
    MissingRequired {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A value that does not fit its PostgreSQL column.
    #[error("table {table}, row {row}, column {column}: {source}")]
    Value {
        /// The table.
        table: String,
        /// The row's position in the copy (1-based).
        row: u64,
        /// The column.
        column: String,
        /// Why.
        source: ConvertError,
    },
    /// Rows counted after the copy differ from the rows read.
    #[error(
        "table {table}: {read} row(s) read from SQLite but {written} in PostgreSQL after the copy"
    )]
    CountMismatch {
        /// The table.
        table: String,
        /// Read from SQLite.
        read: u64,
        /// Counted in PostgreSQL.
        written: i64,
    },
    /// The audit log file does not verify, or the copied chain does not.
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    /// The HR snapshot beside the store cannot be read.
    #[error("cannot read the HR source snapshot {}: {source}", .path.display())]
    Snapshot {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The SQLite store failed.
    #[error("SQLite store {}: {source}", .path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The driver's error.
        source: rusqlite::Error,
    },
    /// The PostgreSQL store failed (connect, migrate, a statement).
    #[error("{0}")]
    Postgres(#[from] PgError),
}

impl From<postgres::Error> for MigrateError {
    fn from(e: postgres::Error) -> Self {
        MigrateError::Postgres(PgError::Sql(e))
    }
}

impl MigrateError {
    /// Whether the migration refused to start for a reason the operator fixes (the input or the
    /// state of either store), rather than failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            MigrateError::NoSource(_)
                | MigrateError::TargetNotEmpty { .. }
                | MigrateError::InUse { .. }
                | MigrateError::NoSuchColumn { .. }
                | MigrateError::MissingRequired { .. }
                | MigrateError::Value { .. }
                | MigrateError::Audit(AuditError::Integrity { .. })
        )
    }
}

/// What the migration copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// user@host:port/database.
    pub target: String,
    /// Rows copied per table, in [`TABLES`] order (0 for a table the SQLite file lacks).
    pub tables: Vec<(&'static str, u64)>,
    /// Audit records copied.
    pub audit_records: u64,
    /// Whether an HR snapshot was copied.
    pub snapshot: bool,
}

/// The HR export's last snapshot to carry over: the file beside the SQLite store, and the
/// export's file name (its key in the PostgreSQL store).
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    /// `source-snapshot.<ext>` beside `[store] path`.
    pub path: PathBuf,
    /// The export's file name (`hr.csv`).
    pub name: String,
}

/// A PostgreSQL column's type, as far as the copier converts to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    /// `text`.
    Text,
    /// `bigint`.
    Int8,
    /// `integer`.
    Int4,
    /// `boolean`.
    Bool,
    /// `double precision`.
    Float8,
    /// `bytea`.
    Bytea,
}

impl PgType {
    /// From `information_schema.columns.data_type`; `None` for a type the copier does not know.
    pub fn from_data_type(data_type: &str) -> Option<PgType> {
        Some(match data_type {
            "text" | "character varying" => PgType::Text,
            "bigint" => PgType::Int8,
            "integer" => PgType::Int4,
            "boolean" => PgType::Bool,
            "double precision" => PgType::Float8,
            "bytea" => PgType::Bytea,
            _ => return None,
        })
    }
}

/// A SQLite value that does not fit a PostgreSQL column's type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConvertError {
    /// The storage class cannot become the type (text into a bigint, ...).
    #[error("a SQLite {from} value cannot be stored as PostgreSQL {to:?}")]
    Mismatch {
        /// SQLite's storage class.
        from: &'static str,
        /// The column's type.
        to: PgType,
    },
    /// An integer outside the type's range, or a boolean other than 0 and 1.
    #[error("integer {value} does not fit PostgreSQL {to:?}")]
    OutOfRange {
        /// The value.
        value: i64,
        /// The column's type.
        to: PgType,
    },
    /// A column type the copier does not convert to.
    #[error("PostgreSQL column type {0} is not one the copier converts to")]
    UnknownType(String),
}

/// A value ready for a PostgreSQL parameter of the column's type (NULL typed as the column).
#[derive(Debug, Clone, PartialEq)]
pub enum PgValue {
    /// `text`.
    Text(Option<String>),
    /// `bigint`.
    Int8(Option<i64>),
    /// `integer`.
    Int4(Option<i32>),
    /// `boolean`.
    Bool(Option<bool>),
    /// `double precision`.
    Float8(Option<f64>),
    /// `bytea`.
    Bytea(Option<Vec<u8>>),
}

impl PgValue {
    fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            PgValue::Text(v) => v,
            PgValue::Int8(v) => v,
            PgValue::Int4(v) => v,
            PgValue::Bool(v) => v,
            PgValue::Float8(v) => v,
            PgValue::Bytea(v) => v,
        }
    }
}

fn class(v: &SqlValue) -> &'static str {
    match v {
        SqlValue::Null => "NULL",
        SqlValue::Integer(_) => "integer",
        SqlValue::Real(_) => "real",
        SqlValue::Text(_) => "text",
        SqlValue::Blob(_) => "blob",
    }
}

/// Convert one SQLite value to the PostgreSQL column type `to`: the same value, never a
/// reinterpretation — NULL stays NULL, integers into integer types in range, 0 and 1 into
/// booleans (SQLite's booleans), text into text, blobs into bytea, reals into double precision.
pub fn convert(value: SqlValue, to: PgType) -> Result<PgValue, ConvertError> {
    let mismatch = |v: &SqlValue| ConvertError::Mismatch { from: class(v), to };
    Ok(match (to, value) {
        (PgType::Text, SqlValue::Null) => PgValue::Text(None),
        (PgType::Int8, SqlValue::Null) => PgValue::Int8(None),
        (PgType::Int4, SqlValue::Null) => PgValue::Int4(None),
        (PgType::Bool, SqlValue::Null) => PgValue::Bool(None),
        (PgType::Float8, SqlValue::Null) => PgValue::Float8(None),
        (PgType::Bytea, SqlValue::Null) => PgValue::Bytea(None),
        (PgType::Text, SqlValue::Text(s)) => PgValue::Text(Some(s)),
        (PgType::Int8, SqlValue::Integer(i)) => PgValue::Int8(Some(i)),
        (PgType::Int4, SqlValue::Integer(i)) => PgValue::Int4(Some(
            i32::try_from(i).map_err(|_| ConvertError::OutOfRange { value: i, to })?,
        )),
        (PgType::Bool, SqlValue::Integer(0)) => PgValue::Bool(Some(false)),
        (PgType::Bool, SqlValue::Integer(1)) => PgValue::Bool(Some(true)),
        (PgType::Bool, SqlValue::Integer(i)) => {
            return Err(ConvertError::OutOfRange { value: i, to })
        }
        (PgType::Float8, SqlValue::Real(f)) => PgValue::Float8(Some(f)),
        (PgType::Float8, SqlValue::Integer(i)) => PgValue::Float8(Some(i as f64)),
        (PgType::Bytea, SqlValue::Blob(b)) => PgValue::Bytea(Some(b)),
        (PgType::Bytea, SqlValue::Text(s)) => PgValue::Bytea(Some(s.into_bytes())),
        (_, v) => return Err(mismatch(&v)),
    })
}

/// Migrate the SQLite store at `sqlite` and the audit log file at `audit_file` (and the HR
/// `snapshot`, if there is one) into the PostgreSQL store `target` (opened, so migrated, first).
/// Refuses with [`MigrateError::TargetNotEmpty`] or [`MigrateError::InUse`] before copying
/// anything; on any error nothing is committed. Blocking.
pub fn migrate(
    sqlite: &Path,
    audit_file: &Path,
    snapshot: Option<&SnapshotFile>,
    target: &Arc<PgStore>,
) -> Result<Migrated, MigrateError> {
    if !sqlite.is_file() {
        return Err(MigrateError::NoSource(sqlite.to_path_buf()));
    }
    let sql_err = |source| MigrateError::Sqlite {
        path: sqlite.to_path_buf(),
        source,
    };
    let mut conn = Connection::open_with_flags(
        sqlite,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_err)?;
    poll_when_busy(&conn).map_err(sql_err)?;
    // The write lock for the whole copy: no `serve` or `apply` writes the store meanwhile.
    let source = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql_err)?;
    refuse_if_in_use(&source, sqlite)?;

    let mut client = target.connect()?;
    let mut tx = client.transaction()?;
    refuse_unless_empty(&mut tx, target.target())?;

    let mut tables = Vec::new();
    for table in TABLES {
        let n = copy_table(&source, &mut tx, table).map_err(|e| match e {
            CopyError::Migrate(e) => e,
            CopyError::Sqlite(source) => MigrateError::Sqlite {
                path: sqlite.to_path_buf(),
                source,
            },
        })?;
        tables.push((table.name, n));
    }
    let (copied, audit_lock) = audit::copy_file_to_table(audit_file, &mut tx)?;
    audit::verify_table_in(&mut tx, target.target(), None)?;
    let snapshot_copied = match snapshot {
        Some(s) => copy_snapshot(&mut tx, s)?,
        None => false,
    };
    tx.commit()?;
    drop(audit_lock);
    // Nothing was written to SQLite: dropping the transaction rolls it back and lets the lock
    // go (a failure there cannot undo the commit, so it is not reported as the copy's).
    drop(source);
    Ok(Migrated {
        target: target.target().to_string(),
        tables,
        audit_records: copied.records,
        snapshot: snapshot_copied,
    })
}

/// Whether `table` exists in the SQLite file.
fn sqlite_has(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Refuse when a process holds a lease or processes an event: it is running now.
fn refuse_if_in_use(conn: &Connection, path: &Path) -> Result<(), MigrateError> {
    let sql_err = |source| MigrateError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let in_use = |what: String| MigrateError::InUse {
        path: path.to_path_buf(),
        what,
    };
    // A running `serve` holds its presence lock even when idle (no lease, no event in hand).
    match super::presence::serve_running(path) {
        Ok(None) => {}
        Ok(Some(holder)) => return Err(in_use(format!("`closeout serve` ({holder}) runs on it"))),
        Err(e) => return Err(in_use(format!("its serve lock cannot be read: {e}"))),
    }
    let now = ts(Utc::now());
    for (table, key, what) in [
        ("identity_leases", "identity", "the lease on identity"),
        ("leader_leases", "name", "the leader lease"),
    ] {
        if !sqlite_has(conn, table).map_err(sql_err)? {
            continue;
        }
        let held: Option<(String, String, String, i64, String)> = conn
            .query_row(
                &format!(
                    "SELECT {key}, holder, host, pid, expires_at FROM {table} \
                     WHERE expires_at > ?1 ORDER BY expires_at DESC LIMIT 1"
                ),
                [&now],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(sql_err)?;
        if let Some((name, holder, host, pid, until)) = held {
            return Err(in_use(format!(
                "{what} {name} is held by {holder} (process {pid} on {host}) until {until}"
            )));
        }
    }
    if sqlite_has(conn, "event_queue").map_err(sql_err)? {
        let processing: Vec<(i64, String, Option<String>)> = conn
            .prepare(
                "SELECT seq, identity, claimed_at FROM event_queue \
                 WHERE status = 'processing' ORDER BY seq LIMIT 5",
            )
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()
            })
            .map_err(sql_err)?;
        if !processing.is_empty() {
            let events: Vec<String> = processing
                .iter()
                .map(|(seq, identity, at)| {
                    format!(
                        "event {seq} ({identity}, claimed at {})",
                        at.as_deref().unwrap_or("?")
                    )
                })
                .collect();
            return Err(in_use(format!(
                "queue events are being processed: {} (if the service died, start it once so it \
                 recovers them, and stop it)",
                events.join(", ")
            )));
        }
    }
    Ok(())
}

/// Refuse unless every Closeout table of the target is empty.
fn refuse_unless_empty(
    tx: &mut postgres::Transaction<'_>,
    target: &str,
) -> Result<(), MigrateError> {
    for table in TABLES.iter().map(|t| t.name).chain(OTHER_TABLES) {
        let rows: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
            .try_get(0)?;
        if rows > 0 {
            return Err(MigrateError::TargetNotEmpty {
                target: target.to_string(),
                table: table.to_string(),
                rows,
            });
        }
    }
    Ok(())
}

enum CopyError {
    Migrate(MigrateError),
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for CopyError {
    fn from(e: rusqlite::Error) -> Self {
        CopyError::Sqlite(e)
    }
}

impl From<postgres::Error> for CopyError {
    fn from(e: postgres::Error) -> Self {
        CopyError::Migrate(e.into())
    }
}

impl From<MigrateError> for CopyError {
    fn from(e: MigrateError) -> Self {
        CopyError::Migrate(e)
    }
}

/// A PostgreSQL column: name, type (as `information_schema` spells it), whether it may be left
/// out of an insert (nullable or with a default).
struct PgColumn {
    name: String,
    data_type: String,
    optional: bool,
}

/// Copy every row of `table` (in rowid order), returning the rows copied.
fn copy_table(
    source: &Connection,
    tx: &mut postgres::Transaction<'_>,
    table: Table,
) -> Result<u64, CopyError> {
    if !sqlite_has(source, table.name)? {
        return Ok(0);
    }
    let sqlite_columns: Vec<String> = source
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{}')",
            table.name
        ))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let pg_columns: Vec<PgColumn> = tx
        .query(
            "SELECT column_name::TEXT, data_type::TEXT, \
             (is_nullable = 'YES' OR column_default IS NOT NULL) \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            &[&table.name],
        )?
        .iter()
        .map(|r| {
            Ok(PgColumn {
                name: r.try_get(0)?,
                data_type: r.try_get(1)?,
                optional: r.try_get(2)?,
            })
        })
        .collect::<Result<_, postgres::Error>>()?;
    // (SQLite expression, PostgreSQL column, its type)
    let mut mapping: Vec<(String, String, PgType)> = Vec::new();
    let pg_type = |c: &PgColumn| {
        PgType::from_data_type(&c.data_type).ok_or_else(|| MigrateError::Value {
            table: table.name.to_string(),
            row: 0,
            column: c.name.clone(),
            source: ConvertError::UnknownType(c.data_type.clone()),
        })
    };
    for column in &sqlite_columns {
        let pg = pg_columns
            .iter()
            .find(|c| &c.name == column)
            .ok_or_else(|| MigrateError::NoSuchColumn {
                table: table.name.to_string(),
                column: column.clone(),
            })?;
        mapping.push((format!("\"{column}\""), column.clone(), pg_type(pg)?));
    }
    if let Some(into) = table.rowid_into {
        if let Some(pg) = pg_columns.iter().find(|c| c.name == into) {
            mapping.push(("rowid".into(), into.to_string(), pg_type(pg)?));
        }
    }
    for pg in &pg_columns {
        if !pg.optional && !mapping.iter().any(|(_, c, _)| c == &pg.name) {
            return Err(MigrateError::MissingRequired {
                table: table.name.to_string(),
                column: pg.name.clone(),
            }
            .into());
        }
    }
    let select = format!(
        "SELECT {} FROM {} ORDER BY rowid",
        mapping
            .iter()
            .map(|(e, _, _)| e.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        table.name
    );
    let insert = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        table.name,
        mapping
            .iter()
            .map(|(_, c, _)| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", "),
        (1..=mapping.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let statement = tx.prepare(&insert)?;
    let mut stmt = source.prepare(&select)?;
    let mut rows = stmt.query([])?;
    let mut n = 0u64;
    while let Some(row) = rows.next()? {
        n += 1;
        let mut values = Vec::with_capacity(mapping.len());
        for (i, (_, column, ty)) in mapping.iter().enumerate() {
            let value: SqlValue = row.get(i)?;
            values.push(convert(value, *ty).map_err(|source| MigrateError::Value {
                table: table.name.to_string(),
                row: n,
                column: column.clone(),
                source,
            })?);
        }
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(PgValue::as_param).collect();
        tx.execute(&statement, &params)?;
    }
    let written: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {}", table.name), &[])?
        .try_get(0)?;
    if u64::try_from(written).ok() != Some(n) {
        return Err(MigrateError::CountMismatch {
            table: table.name.to_string(),
            read: n,
            written,
        }
        .into());
    }
    if let Some(serial) = table.serial {
        // Past every value ever handed out: the copied rows', and SQLite's AUTOINCREMENT
        // counter (which counts deleted rows too), so no number is given out twice.
        let mut next: i64 = tx
            .query_one(
                &format!(
                    "SELECT COALESCE(MAX({serial}), 0)::BIGINT FROM {}",
                    table.name
                ),
                &[],
            )?
            .try_get(0)?;
        if sqlite_has(source, "sqlite_sequence")? {
            let counter: Option<i64> = source
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name = ?1",
                    [table.name],
                    |r| r.get(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            next = next.max(counter.unwrap_or(0));
        }
        if next > 0 {
            tx.execute(
                "SELECT setval(pg_get_serial_sequence($1, $2), $3, true)",
                &[&table.name, &serial, &next],
            )?;
        }
    }
    Ok(n)
}

/// Copy the HR snapshot file, if it exists; whether it did.
fn copy_snapshot(
    tx: &mut postgres::Transaction<'_>,
    snapshot: &SnapshotFile,
) -> Result<bool, MigrateError> {
    let content = match std::fs::read(&snapshot.path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(MigrateError::Snapshot {
                path: snapshot.path.clone(),
                source,
            })
        }
    };
    tx.execute(
        "INSERT INTO source_snapshot (name, content) VALUES ($1, $2)",
        &[&snapshot.name, &content],
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit::{AuditEntry, AuditLog};
    use crate::store::journal::Journal;
    use crate::store::pg::testing;
    use crate::store::signing::{KeyRing, PrivateKey};

    fn entry(i: u64) -> AuditEntry {
        AuditEntry {
            actor: "test".into(),
            event: "test.event".into(),
            run: Some(format!("run-{i}")),
            identity: Some("E1".into()),
            details: serde_json::json!({ "i": i }),
        }
    }

    /// A signed audit log keeps its lines and signatures: the store's chain verifies against
    /// the public key, head signature included, and the table's lines are the file's.
    #[test]
    fn a_signed_audit_log_is_copied_as_it_is_and_verifies_with_its_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sqlite = dir.path().join("closeout.db");
        drop(Journal::open(&sqlite).expect("a SQLite store"));
        let key = PrivateKey::generate();
        let ring = KeyRing::new([key.public()]);
        let file = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&file).expect("log").with_signer(key.clone());
        for i in 0..3 {
            log.append(entry(i)).expect("append");
        }
        let (_pgdir, store) = testing::fresh();
        let migrated = migrate(&sqlite, &file, None, &store).expect("migrate");
        assert_eq!(migrated.audit_records, 3);
        assert!(migrated.tables.iter().all(|(_, n)| *n == 0), "{migrated:?}");
        let table = AuditLog::open_postgres(&store);
        let report = table.verify(Some(&ring)).expect("verifies with the key");
        assert_eq!((report.records, report.last_seq), (3, 3));
        assert_eq!(report.signed_by, vec![key.id().to_string()]);
        let mut exported = Vec::new();
        table.export(&mut exported).expect("export");
        assert_eq!(exported, std::fs::read(&file).expect("the file, unchanged"));
        // The migrated chain goes on: the next record follows the copied head.
        let next = table.with_signer(key).append(entry(3)).expect("append");
        assert_eq!(next.seq, 4);
        AuditLog::open_postgres(&store)
            .verify(Some(&ring))
            .expect("still verifies");
    }

    /// Every table of the PostgreSQL schema is either copied or known not to be (and checked
    /// empty): a table a later migration adds must be placed in one list or the other.
    #[test]
    fn every_postgres_table_is_copied_or_checked_empty() {
        let (_pgdir, store) = testing::fresh();
        let mut client = store.connect().expect("connect");
        let mut tables: Vec<String> = client
            .query(
                "SELECT table_name::TEXT FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name <> 'refinery_schema_history' \
                 ORDER BY table_name",
                &[],
            )
            .expect("tables")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut known: Vec<String> = TABLES
            .iter()
            .map(|t| t.name)
            .chain(OTHER_TABLES)
            .map(String::from)
            .collect();
        tables.sort();
        known.sort();
        assert_eq!(tables, known);
    }

    /// A SQLite column PostgreSQL has no place for is refused, not dropped; the table copied
    /// before it (observations) is rolled back with it.
    #[test]
    fn a_column_postgres_lacks_is_refused_and_nothing_is_copied() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sqlite = dir.path().join("closeout.db");
        drop(Journal::open(&sqlite).expect("a SQLite store"));
        let conn = Connection::open(&sqlite).expect("open");
        conn.execute_batch(
            "ALTER TABLE grants ADD COLUMN extra TEXT; \
             INSERT INTO observations (finding_id, state, first_seen) \
             VALUES ('f1', 'active', '2026-01-01T00:00:00.000000Z'); \
             INSERT INTO grants VALUES ('E1', 'aws', 'group-membership', 'g', 'r', \
             '2026-01-01T00:00:00.000000Z', '2026-01-02T00:00:00.000000Z', 'run-1', 'x');",
        )
        .expect("an extra column");
        drop(conn);
        let (_pgdir, store) = testing::fresh();
        let err =
            migrate(&sqlite, &dir.path().join("audit.jsonl"), None, &store).expect_err("refused");
        assert!(
            matches!(&err, MigrateError::NoSuchColumn { table, column } if table == "grants" && column == "extra"),
            "{err}"
        );
        assert!(err.is_refusal());
        let mut client = store.connect().expect("connect");
        let rows: i64 = client
            .query_one("SELECT count(*) FROM observations", &[])
            .expect("count")
            .get(0);
        assert_eq!(rows, 0);
    }

    #[test]
    fn values_convert_by_the_postgres_column_type() {
        use PgType::*;
        let ok = [
            (SqlValue::Null, Text, PgValue::Text(None)),
            (SqlValue::Null, Int8, PgValue::Int8(None)),
            (SqlValue::Null, Bool, PgValue::Bool(None)),
            (SqlValue::Null, Bytea, PgValue::Bytea(None)),
            (
                SqlValue::Text("2026-01-01T00:00:00.000000Z".into()),
                Text,
                PgValue::Text(Some("2026-01-01T00:00:00.000000Z".into())),
            ),
            (
                SqlValue::Integer(i64::MAX),
                Int8,
                PgValue::Int8(Some(i64::MAX)),
            ),
            (SqlValue::Integer(-7), Int4, PgValue::Int4(Some(-7))),
            (SqlValue::Integer(0), Bool, PgValue::Bool(Some(false))),
            (SqlValue::Integer(1), Bool, PgValue::Bool(Some(true))),
            (SqlValue::Real(1.5), Float8, PgValue::Float8(Some(1.5))),
            (
                SqlValue::Blob(vec![0, 255]),
                Bytea,
                PgValue::Bytea(Some(vec![0, 255])),
            ),
            (
                SqlValue::Text("a,b".into()),
                Bytea,
                PgValue::Bytea(Some(b"a,b".to_vec())),
            ),
        ];
        for (from, to, expected) in ok {
            assert_eq!(
                convert(from.clone(), to),
                Ok(expected),
                "{from:?} -> {to:?}"
            );
        }
        let refused = [
            (SqlValue::Text("12".into()), Int8),
            (SqlValue::Integer(12), Text),
            (SqlValue::Integer(2), Bool),
            (SqlValue::Integer(i64::from(i32::MAX) + 1), Int4),
            (SqlValue::Blob(vec![1]), Text),
            (SqlValue::Real(0.5), Int8),
        ];
        for (from, to) in refused {
            assert!(convert(from.clone(), to).is_err(), "{from:?} -> {to:?}");
        }
        assert_eq!(PgType::from_data_type("bigint"), Some(Int8));
        assert_eq!(PgType::from_data_type("boolean"), Some(Bool));
        assert_eq!(PgType::from_data_type("timestamp with time zone"), None);
    }
}
