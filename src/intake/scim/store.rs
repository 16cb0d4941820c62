//! SCIM Users in the store, so that what an IdP provisioned survives a restart and is shared by
//! every replica: one type, [`ScimStore`], with its backend chosen at open as for the journal and
//! the event queue — the SQLite file (tables `scim_users` and `scim_user_names`, WAL and
//! `synchronous=FULL`: an answered change is on disk) or the PostgreSQL store (`[store] url`,
//! migration V4, the same tables).
//!
//! Every change runs in one transaction ([`ScimStore::write`], a [`ScimTx`]) that reads the User,
//! writes it and hands its event to the sink before committing:
//!
//! - On SQLite the transaction is `IMMEDIATE`: it holds the file's write lock from its first
//!   statement, so two writers (two connections, or two processes) serialise.
//! - On PostgreSQL (`READ COMMITTED`) the User is read with `SELECT … FOR UPDATE`
//!   ([`ScimTx::lock`]): a second replica changing the same User waits for the first's commit and
//!   then reads the committed version, so its `If-Match` is checked against it and its change is
//!   made on top of it: no change is lost. A new User's id is counted in `scim_user_names` with an
//!   upsert that locks that userName's row, so two replicas creating one userName serialise there
//!   and the second finds the first's User (409). The unique index on the lower-cased userName
//!   stays the last guard: a violation is answered 409 too ([`StoreError::is_unique_violation`]).

use crate::config::StoreConfig;
use crate::store::pg::{PgConn, PgError, PgStore};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, Mutex};

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
    /// The PostgreSQL store failed (connection, statement, schema).
    #[error("SCIM store: {0}")]
    Postgres(#[from] PgError),
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

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Postgres(PgError::Sql(e))
    }
}

impl StoreError {
    /// A unique index refused the write: another User holds the userName (a concurrent change
    /// committed first).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Sql(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            StoreError::Postgres(PgError::Sql(e)) => {
                e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION)
            }
            _ => false,
        }
    }

    /// The database gave up the transaction because of a concurrent one (a deadlock between two
    /// replicas' changes, a busy SQLite file): the request may simply be retried.
    pub fn is_contention(&self) -> bool {
        match self {
            StoreError::Sql(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            StoreError::Postgres(PgError::Sql(e)) => matches!(
                e.code(),
                Some(c) if *c == postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                    || *c == postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
            ),
            _ => false,
        }
    }
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

/// The SCIM Users of one store (see the module documentation). Blocking; async code calls it
/// from the blocking pool. Safe to share between threads: calls are serialised on its one
/// connection, as the queue's are.
pub struct ScimStore {
    backend: Backend,
}

enum Backend {
    Sqlite(Mutex<Connection>),
    Postgres(PgConn),
}

impl std::fmt::Debug for ScimStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Sqlite(_) => f.write_str("ScimStore(SQLite)"),
            Backend::Postgres(pg) => write!(f, "ScimStore(PostgreSQL {})", pg.store().target()),
        }
    }
}

impl ScimStore {
    /// Open the SCIM store in the SQLite file at `path` (normally the journal's database),
    /// creating its tables; WAL and `synchronous=FULL` so an answered change is durable.
    pub fn open(path: &Path) -> Result<ScimStore, StoreError> {
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
        Ok(ScimStore {
            backend: Backend::Sqlite(Mutex::new(conn)),
        })
    }

    /// The SCIM store in the PostgreSQL store (already migrated by [`PgStore::open`]).
    pub fn open_postgres(store: &Arc<PgStore>) -> ScimStore {
        ScimStore {
            backend: Backend::Postgres(PgConn::new(store)),
        }
    }

    /// The SCIM store in the store `config` names: the SQLite file at `[store] path`, or the
    /// PostgreSQL database (connected and migrated first). Blocking.
    pub fn open_config(config: &StoreConfig) -> Result<ScimStore, StoreError> {
        if config.url.is_none() {
            return ScimStore::open(&config.path);
        }
        Ok(ScimStore::open_postgres(&PgStore::open(config)?))
    }

    /// Whether this is the PostgreSQL backend.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Run `f` in one transaction and commit it when `f` returns `Ok`; an `Err` rolls it back.
    /// A write transaction: on SQLite `IMMEDIATE` (the write lock from the start), on PostgreSQL
    /// `READ COMMITTED` with the User locked by [`ScimTx::lock`].
    pub fn write<T: Send, E: From<StoreError> + Send>(
        &self,
        f: impl FnOnce(&mut ScimTx<'_>) -> Result<T, E> + Send,
    ) -> Result<T, E> {
        self.transaction(TransactionBehavior::Immediate, f)
    }

    /// Run `f` in one read transaction (a consistent snapshot on SQLite).
    pub fn read<T: Send, E: From<StoreError> + Send>(
        &self,
        f: impl FnOnce(&mut ScimTx<'_>) -> Result<T, E> + Send,
    ) -> Result<T, E> {
        self.transaction(TransactionBehavior::Deferred, f)
    }

    fn transaction<T: Send, E: From<StoreError> + Send>(
        &self,
        behavior: TransactionBehavior,
        f: impl FnOnce(&mut ScimTx<'_>) -> Result<T, E> + Send,
    ) -> Result<T, E> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                // Every change is one transaction, so a poisoned lock leaves the file consistent.
                let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                let tx = conn
                    .transaction_with_behavior(behavior)
                    .map_err(StoreError::from)?;
                let mut tx = ScimTx::Sqlite(tx);
                let value = f(&mut tx)?;
                tx.commit()?;
                Ok(value)
            }
            Backend::Postgres(pg) => {
                // The outer result is the connection's and the commit's; the inner one `f`'s
                // (an `Err` drops the transaction: rolled back).
                let answer: Result<Result<T, E>, StoreError> = pg.with(|client| {
                    let mut tx = ScimTx::Postgres(client.transaction()?);
                    match f(&mut tx) {
                        Ok(value) => {
                            tx.commit()?;
                            Ok(Ok(value))
                        }
                        Err(e) => Ok(Err(e)),
                    }
                });
                answer?
            }
        }
    }
}

/// One transaction on the SCIM store, handed to [`ScimStore::write`]'s closure and, with it,
/// to the event sink, which writes the change's event in the same transaction (the variants
/// are public for that).
pub enum ScimTx<'a> {
    /// A transaction on the SQLite file.
    Sqlite(rusqlite::Transaction<'a>),
    /// A transaction on the PostgreSQL store.
    Postgres(postgres::Transaction<'a>),
}

const COLUMNS: &str = "id, version, created, last_modified, doc";

type Raw = (String, i64, String, String, String);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn pg_row(r: &postgres::Row) -> Result<Raw, postgres::Error> {
    Ok((
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get(3)?,
        r.try_get(4)?,
    ))
}

fn decode((id, version, created, last_modified, doc): Raw) -> Result<StoredUser, StoreError> {
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

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A new User's id from its lower-cased userName and how many Users had it before.
fn id_from(user_name_lc: &str, n: i64) -> String {
    let digest = Sha256::digest(format!("closeout-scim-user\0{user_name_lc}\0{n}").as_bytes());
    let h = hex::encode(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl ScimTx<'_> {
    fn commit(self) -> Result<(), StoreError> {
        match self {
            ScimTx::Sqlite(tx) => tx.commit()?,
            ScimTx::Postgres(tx) => tx.commit()?,
        }
        Ok(())
    }

    fn one(&mut self, sqlite: &str, pg: &str, id: &str) -> Result<Option<StoredUser>, StoreError> {
        let raw = match self {
            ScimTx::Sqlite(tx) => tx.query_row(sqlite, [id], row).optional()?,
            ScimTx::Postgres(tx) => tx.query_opt(pg, &[&id])?.map(|r| pg_row(&r)).transpose()?,
        };
        raw.map(decode).transpose()
    }

    /// The User with this id, or `None`.
    pub fn get(&mut self, id: &str) -> Result<Option<StoredUser>, StoreError> {
        self.one(
            &format!("SELECT {COLUMNS} FROM scim_users WHERE id = ?1"),
            &format!("SELECT {COLUMNS} FROM scim_users WHERE id = $1"),
            id,
        )
    }

    /// The User with this id, locked until the transaction ends: on PostgreSQL another
    /// transaction's `lock` of it waits for this one's commit and then reads what it wrote (on
    /// SQLite the write transaction already holds the file's write lock).
    pub fn lock(&mut self, id: &str) -> Result<Option<StoredUser>, StoreError> {
        self.one(
            &format!("SELECT {COLUMNS} FROM scim_users WHERE id = ?1"),
            &format!("SELECT {COLUMNS} FROM scim_users WHERE id = $1 FOR UPDATE"),
            id,
        )
    }

    /// The id of the User holding `user_name` (case-insensitively), if any.
    pub fn id_by_user_name(&mut self, user_name: &str) -> Result<Option<String>, StoreError> {
        let lc = user_name.to_lowercase();
        Ok(match self {
            ScimTx::Sqlite(tx) => tx
                .query_row(
                    "SELECT id FROM scim_users WHERE user_name_lc = ?1",
                    [&lc],
                    |r| r.get(0),
                )
                .optional()?,
            ScimTx::Postgres(tx) => tx
                .query_opt("SELECT id FROM scim_users WHERE user_name_lc = $1", &[&lc])?
                .map(|r| r.try_get(0))
                .transpose()?,
        })
    }

    /// A page of Users in creation order: (total matching, the page). `start` is 0-based.
    pub fn list(
        &mut self,
        sel: Selection<'_>,
        start: usize,
        count: usize,
    ) -> Result<(usize, Vec<StoredUser>), StoreError> {
        let (column, arg) = match sel {
            Selection::All => (None, None),
            Selection::UserName(u) => (Some("user_name_lc"), Some(u.to_lowercase())),
            Selection::ExternalId(e) => (Some("external_id"), Some(e.to_string())),
            Selection::Id(i) => (Some("id"), Some(i.to_string())),
        };
        let limit = i64::try_from(count).unwrap_or(i64::MAX);
        let offset = i64::try_from(start).unwrap_or(i64::MAX);
        let (total, raws): (i64, Vec<Raw>) = match self {
            ScimTx::Sqlite(tx) => {
                let cond =
                    column.map_or("1 = 1 OR ?1 IS NULL".to_string(), |c| format!("{c} = ?1"));
                let total = tx.query_row(
                    &format!("SELECT COUNT(*) FROM scim_users WHERE {cond}"),
                    [&arg],
                    |r| r.get(0),
                )?;
                let mut stmt = tx.prepare(&format!(
                    "SELECT {COLUMNS} FROM scim_users WHERE {cond} ORDER BY rowid LIMIT ?2 OFFSET ?3"
                ))?;
                let raws = stmt
                    .query_map(params![arg, limit, offset], row)?
                    .collect::<Result<_, _>>()?;
                (total, raws)
            }
            ScimTx::Postgres(tx) => {
                let cond = column.map_or("$1::TEXT IS NULL".to_string(), |c| format!("{c} = $1"));
                let total = tx
                    .query_one(
                        &format!("SELECT COUNT(*) FROM scim_users WHERE {cond}"),
                        &[&arg],
                    )?
                    .try_get(0)?;
                let raws = tx
                    .query(
                        &format!(
                            "SELECT {COLUMNS} FROM scim_users WHERE {cond} ORDER BY seq \
                             LIMIT $2 OFFSET $3"
                        ),
                        &[&arg, &limit, &offset],
                    )?
                    .iter()
                    .map(pg_row)
                    .collect::<Result<_, _>>()?;
                (total, raws)
            }
        };
        let users = raws.into_iter().map(decode).collect::<Result<_, _>>()?;
        Ok((usize::try_from(total).unwrap_or(0), users))
    }

    /// A new User's id: derived from its userName and how many Users had that name before, so a
    /// retry of the same POST after a failed commit gets the same id. On PostgreSQL the count's
    /// row stays locked until the transaction ends: a concurrent POST of the same userName waits.
    pub fn new_id(&mut self, user_name: &str) -> Result<String, StoreError> {
        let lc = user_name.to_lowercase();
        let n: i64 = match self {
            ScimTx::Sqlite(tx) => tx.query_row(
                "INSERT INTO scim_user_names (user_name_lc, created) VALUES (?1, 1)
                 ON CONFLICT (user_name_lc) DO UPDATE SET created = created + 1
                 RETURNING created",
                [&lc],
                |r| r.get(0),
            )?,
            ScimTx::Postgres(tx) => tx
                .query_one(
                    "INSERT INTO scim_user_names (user_name_lc, created) VALUES ($1, 1) \
                     ON CONFLICT (user_name_lc) \
                     DO UPDATE SET created = scim_user_names.created + 1 RETURNING created",
                    &[&lc],
                )?
                .try_get(0)?,
        };
        Ok(id_from(&lc, n))
    }

    /// Insert or replace a User (its userName must be unique: the caller checked; the unique
    /// index refuses it otherwise, see [`StoreError::is_unique_violation`]).
    pub fn put(&mut self, user: &StoredUser) -> Result<(), StoreError> {
        let doc = serde_json::to_string(&user.doc).map_err(|source| StoreError::Corrupt {
            id: user.id.clone(),
            source,
        })?;
        let user_name_lc = user.user_name().to_lowercase();
        let external_id = user.doc.get("externalId").and_then(Value::as_str);
        let (created, last_modified) = (ts(user.created), ts(user.last_modified));
        match self {
            ScimTx::Sqlite(tx) => {
                tx.execute(
                    "INSERT INTO scim_users (id, user_name_lc, external_id, version, created, last_modified, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (id) DO UPDATE SET user_name_lc = excluded.user_name_lc,
                         external_id = excluded.external_id, version = excluded.version,
                         last_modified = excluded.last_modified, doc = excluded.doc",
                    params![
                        user.id,
                        user_name_lc,
                        external_id,
                        user.version,
                        created,
                        last_modified,
                        doc
                    ],
                )?;
            }
            ScimTx::Postgres(tx) => {
                tx.execute(
                    "INSERT INTO scim_users (id, user_name_lc, external_id, version, created, \
                     last_modified, doc) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (id) DO UPDATE SET user_name_lc = excluded.user_name_lc, \
                     external_id = excluded.external_id, version = excluded.version, \
                     last_modified = excluded.last_modified, doc = excluded.doc",
                    &[
                        &user.id,
                        &user_name_lc,
                        &external_id,
                        &user.version,
                        &created,
                        &last_modified,
                        &doc,
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Delete the User with this id (nothing when there is none).
    pub fn delete(&mut self, id: &str) -> Result<(), StoreError> {
        match self {
            ScimTx::Sqlite(tx) => {
                tx.execute("DELETE FROM scim_users WHERE id = ?1", [id])?;
            }
            ScimTx::Postgres(tx) => {
                tx.execute("DELETE FROM scim_users WHERE id = $1", &[&id])?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// (directory kept alive, the store) on SQLite or on a new PostgreSQL database.
    fn store(postgres: bool) -> (tempfile::TempDir, ScimStore) {
        if postgres {
            let (dir, pg) = crate::store::pg::testing::fresh();
            (dir, ScimStore::open_postgres(&pg))
        } else {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = ScimStore::open(&dir.path().join("scim.db")).expect("open");
            (dir, store)
        }
    }

    fn user(id: &str, user_name: &str, version: i64) -> StoredUser {
        let now = Utc::now();
        let doc =
            serde_json::json!({"userName": user_name, "externalId": format!("X-{user_name}")});
        StoredUser {
            id: id.into(),
            version,
            created: now,
            last_modified: now,
            doc: doc.as_object().expect("object").clone(),
        }
    }

    /// A new User, committed; its id.
    fn create(store: &ScimStore, user_name: &str) -> String {
        store
            .write(|tx| {
                let id = tx.new_id(user_name)?;
                tx.put(&user(&id, user_name, 1))?;
                Ok::<_, StoreError>(id)
            })
            .expect("create")
    }

    fn users_round_trip(postgres: bool) {
        let (_dir, store) = store(postgres);
        // A rolled-back creation leaves nothing, and its retry gets the same id.
        let failed: Result<(), StoreError> = store.write(|tx| {
            let id = tx.new_id("Ann@Example.com")?;
            tx.put(&user(&id, "Ann@Example.com", 1))?;
            Err(StoreError::Corrupt {
                id,
                source: serde_json::from_str::<Value>("{").expect_err("bad JSON"),
            })
        });
        assert!(failed.is_err());
        let ann = create(&store, "ann@example.com");
        let first_try = store
            .read(|tx| tx.id_by_user_name("ANN@example.com"))
            .expect("read");
        assert_eq!(first_try.as_deref(), Some(ann.as_str()));
        assert_eq!(
            ann,
            id_from("ann@example.com", 1),
            "the retry got the same id"
        );

        // Versions are what was written; a change replaces the document.
        let mut changed = user(&ann, "ann@example.com", 2);
        changed.doc.insert("title".into(), "Engineer".into());
        store.write(|tx| tx.put(&changed)).expect("change");
        let got = store.read(|tx| tx.lock(&ann)).expect("read").expect("ann");
        assert_eq!((got.version, got.etag()), (2, "W/\"2\"".to_string()));
        assert_eq!(got.doc["title"], "Engineer");

        // The unique index refuses a second User with the same userName (in another case).
        let err = store
            .write(|tx| tx.put(&user("other-id", "ANN@EXAMPLE.COM", 1)))
            .expect_err("a duplicate userName");
        assert!(err.is_unique_violation(), "{err}");

        // Lists: creation order, selections, pages.
        let bob = create(&store, "bob@example.com");
        let cy = create(&store, "cy@example.com");
        let (total, page) = store
            .read(|tx| tx.list(Selection::All, 1, 1))
            .expect("list");
        assert_eq!(total, 3);
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].id, bob, "the second created, in creation order");
        let (total, page) = store
            .read(|tx| tx.list(Selection::UserName("CY@example.com"), 0, 10))
            .expect("list");
        assert_eq!((total, page[0].id.clone()), (1, cy.clone()));
        let (total, _) = store
            .read(|tx| tx.list(Selection::ExternalId("X-bob@example.com"), 0, 10))
            .expect("list");
        assert_eq!(total, 1);
        let (total, _) = store
            .read(|tx| tx.list(Selection::ExternalId("x-bob@example.com"), 0, 10))
            .expect("list");
        assert_eq!(total, 0, "externalId is compared exactly");
        let (total, page) = store
            .read(|tx| tx.list(Selection::Id(&ann), 0, 0))
            .expect("list");
        assert_eq!((total, page.len()), (1, 0));

        // A deleted User is gone; its userName's count stays, so a new one gets a new id.
        store.write(|tx| tx.delete(&bob)).expect("delete");
        assert!(store.read(|tx| tx.get(&bob)).expect("read").is_none());
        let bob_again = create(&store, "bob@example.com");
        assert_ne!(bob_again, bob, "ids are never reused");
    }

    #[test]
    fn users_round_trip_on_sqlite() {
        users_round_trip(false);
    }

    #[test]
    fn users_round_trip_on_postgres() {
        users_round_trip(true);
    }

    /// Two replicas' stores on one database: the second's lock of a User waits for the first's
    /// transaction and then reads the version it committed.
    #[test]
    fn on_postgres_a_locked_user_waits_for_the_other_replica_and_reads_its_commit() {
        let (_dir, pg) = crate::store::pg::testing::fresh();
        let (one, two) = (ScimStore::open_postgres(&pg), ScimStore::open_postgres(&pg));
        let id = create(&one, "ann@example.com");
        let (locked_tx, locked) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                one.write(|tx| {
                    let u = tx.lock(&id)?.expect("ann");
                    locked_tx.send(()).expect("signal");
                    std::thread::sleep(Duration::from_millis(500));
                    tx.put(&StoredUser {
                        version: u.version + 1,
                        ..u
                    })
                })
                .expect("first change");
            });
            locked.recv().expect("the first holds the lock");
            let started = Instant::now();
            let seen = two
                .write(|tx| tx.lock(&id))
                .expect("second lock")
                .expect("ann");
            assert!(
                started.elapsed() >= Duration::from_millis(300),
                "the second lock waited for the first transaction ({:?})",
                started.elapsed()
            );
            assert_eq!(seen.version, 2, "and read its committed version");
        });
    }

    /// Two replicas creating the same userName: the second waits on the first's count, then its
    /// own count is the next one (a different id) and the first's User is found.
    #[test]
    fn on_postgres_concurrent_creations_of_one_user_name_serialise() {
        let (_dir, pg) = crate::store::pg::testing::fresh();
        let (one, two) = (ScimStore::open_postgres(&pg), ScimStore::open_postgres(&pg));
        let (counted_tx, counted) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                one.write(|tx| {
                    let id = tx.new_id("dana@example.com")?;
                    counted_tx.send(()).expect("signal");
                    std::thread::sleep(Duration::from_millis(300));
                    tx.put(&user(&id, "dana@example.com", 1))
                })
                .expect("first creation");
            });
            counted.recv().expect("the first counted");
            let (id, holder) = two
                .write(|tx| {
                    let id = tx.new_id("Dana@example.com")?;
                    let holder = tx.id_by_user_name("dana@example.com")?;
                    Ok::<_, StoreError>((id, holder))
                })
                .expect("second creation");
            assert_eq!(id, id_from("dana@example.com", 2));
            assert_eq!(holder, Some(id_from("dana@example.com", 1)));
        });
    }
}
