//! SCIM Users in SQLite (table `scim_users`), so that what an IdP provisioned survives a
//! restart. WAL and `synchronous=FULL`: an answered change is on disk.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

/// A failure of the SCIM store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be opened, or its tables created.
    #[error("SCIM store {path}: {source}")]
    Open {
        /// The database file.
        path: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// An SQLite error reading or writing Users.
    #[error("SCIM store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A User's stored document is not a JSON object (the database was edited), or a document
    /// could not be encoded.
    #[error("SCIM store: user {id} holds a corrupt document: {source}")]
    Corrupt {
        /// The User's id.
        id: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// One stored User: the server's fields and the attributes document.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUser {
    /// The server-assigned id (a UUID-shaped hex string derived from the userName).
    pub id: String,
    /// Starts at 1 and grows by one with every change that was kept; `meta.version` and the
    /// events' ids are made from it.
    pub version: i64,
    /// When the User was created (`meta.created`).
    pub created: DateTime<Utc>,
    /// When the User last changed (`meta.lastModified`).
    pub last_modified: DateTime<Utc>,
    /// Canonical attribute names; `externalId` and the enterprise extension (under its URN)
    /// included; no `id`, `meta` or `schemas`.
    pub doc: Map<String, Value>,
}

impl StoredUser {
    /// The `userName` (`""` if the document has none, which validation does not let in).
    pub fn user_name(&self) -> &str {
        self.doc
            .get("userName")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    /// The weak ETag of this version, `W/"<version>"`, for `If-Match` and `meta.version`.
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS scim_users (
    id            TEXT PRIMARY KEY,
    user_name_lc  TEXT NOT NULL UNIQUE,
    external_id   TEXT,
    version       INTEGER NOT NULL,
    created       TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    doc           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS scim_users_external_id ON scim_users (external_id);
-- How many Users were ever created with a userName: makes a new User's id deterministic, so a
-- POST retried after a failed commit produces the same id and so the same event id.
CREATE TABLE IF NOT EXISTS scim_user_names (
    user_name_lc TEXT PRIMARY KEY,
    created      INTEGER NOT NULL
);
";

/// Open the SCIM store at `path` (normally the journal's database), creating its tables; WAL and
/// `synchronous=FULL` so an answered change is durable.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let err = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open(path).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    crate::store::sqlite::poll_when_busy(&conn).map_err(err)?;
    conn.execute_batch(SCHEMA).map_err(err)?;
    Ok(conn)
}

const COLUMNS: &str = "id, version, created, last_modified, doc";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn decode(
    (id, version, created, last_modified, doc): (String, i64, String, String, String),
) -> Result<StoredUser, StoreError> {
    let time = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    };
    let doc = serde_json::from_str(&doc).map_err(|source| StoreError::Corrupt {
        id: id.clone(),
        source,
    })?;
    Ok(StoredUser {
        created: time(&created),
        last_modified: time(&last_modified),
        id,
        version,
        doc,
    })
}

/// The User with this id, or `None`.
pub fn get(conn: &Connection, id: &str) -> Result<Option<StoredUser>, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM scim_users WHERE id = ?1"),
        [id],
        row,
    )
    .optional()?
    .map(decode)
    .transpose()
}

/// The id of the User holding `user_name` (case-insensitively), if any.
pub fn id_by_user_name(conn: &Connection, user_name: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id FROM scim_users WHERE user_name_lc = ?1",
            [user_name.to_lowercase()],
            |r| r.get(0),
        )
        .optional()?)
}

/// Which Users a list query selects.
pub enum Selection<'a> {
    /// Every User.
    All,
    /// The User with this `userName`, compared case-insensitively.
    UserName(&'a str),
    /// The User with this `externalId`, compared exactly.
    ExternalId(&'a str),
    /// The User with this id.
    Id(&'a str),
}

/// A page of Users in creation order: (total matching, the page). `start` is 0-based.
pub fn list(
    conn: &Connection,
    sel: Selection<'_>,
    start: usize,
    count: usize,
) -> Result<(usize, Vec<StoredUser>), StoreError> {
    let (cond, arg) = match sel {
        Selection::All => ("1 = 1 OR ?1 IS NULL", None),
        Selection::UserName(u) => ("user_name_lc = ?1", Some(u.to_lowercase())),
        Selection::ExternalId(e) => ("external_id = ?1", Some(e.to_string())),
        Selection::Id(i) => ("id = ?1", Some(i.to_string())),
    };
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM scim_users WHERE {cond}"),
        [&arg],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM scim_users WHERE {cond} ORDER BY rowid LIMIT ?2 OFFSET ?3"
    ))?;
    let limit = i64::try_from(count).unwrap_or(i64::MAX);
    let offset = i64::try_from(start).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![arg, limit, offset], row)?;
    let mut users = Vec::new();
    for r in rows {
        users.push(decode(r?)?);
    }
    Ok((usize::try_from(total).unwrap_or(0), users))
}

/// A new User's id: derived from its userName and how many Users had that name before, so a
/// retry of the same POST after a failed commit gets the same id.
pub fn new_id(tx: &Transaction<'_>, user_name: &str) -> Result<String, StoreError> {
    let lc = user_name.to_lowercase();
    let n: i64 = tx.query_row(
        "INSERT INTO scim_user_names (user_name_lc, created) VALUES (?1, 1)
         ON CONFLICT (user_name_lc) DO UPDATE SET created = created + 1
         RETURNING created",
        [&lc],
        |r| r.get(0),
    )?;
    let digest = Sha256::digest(format!("closeout-scim-user\0{lc}\0{n}").as_bytes());
    let h = hex::encode(&digest[..16]);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Insert or replace a User (its userName must be unique: the caller checked).
pub fn put(tx: &Transaction<'_>, user: &StoredUser) -> Result<(), StoreError> {
    let doc = serde_json::to_string(&user.doc).map_err(|source| StoreError::Corrupt {
        id: user.id.clone(),
        source,
    })?;
    tx.execute(
        "INSERT INTO scim_users (id, user_name_lc, external_id, version, created, last_modified, doc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET user_name_lc = excluded.user_name_lc,
             external_id = excluded.external_id, version = excluded.version,
             last_modified = excluded.last_modified, doc = excluded.doc",
        params![
            user.id,
            user.user_name().to_lowercase(),
            user.doc.get("externalId").and_then(Value::as_str),
            user.version,
            ts(user.created),
            ts(user.last_modified),
            doc
        ],
    )?;
    Ok(())
}

/// Delete the User with this id (nothing when there is none).
pub fn delete(tx: &Transaction<'_>, id: &str) -> Result<(), StoreError> {
    tx.execute("DELETE FROM scim_users WHERE id = ?1", [id])?;
    Ok(())
}
