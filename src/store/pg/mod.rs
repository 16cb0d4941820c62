//! The PostgreSQL store backend (`[store] url`): several `closeout serve` replicas share one
//! database. Synchronous connections (the `postgres` crate), called from async code through the
//! same blocking pattern as SQLite (`super::blocking`); versioned schema migrations (refinery,
//! `src/store/pg/migrations/`) applied at open, under an advisory lock so replicas starting
//! together migrate once, and refused when the database has a newer schema than this binary.
//!
//! The event queue (`super::queue::PgQueue`), the identity and leader leases (`super::lease`),
//! the journal, observations and grant ledger, the audit log (`super::audit`, migration V3), the
//! SCIM Users (`crate::intake::scim::store`, migration V4) and the HR export's last snapshot
//! (`super::snapshot`, migration V5)
//! have a PostgreSQL backend; docs/serve.md ("Deployment") says what does not yet. Migration V6
//! indexes the queue's claim order.
//!
//! Invariant: the password is read from the environment or a file when connecting, and appears
//! in no error, log or `Debug` output of this module.

use crate::config::{PasswordSource, StoreBackend, StoreConfig};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

mod embedded {
    refinery::embed_migrations!("src/store/pg/migrations");
}

/// Advisory-lock key serialising schema migrations between replicas ("closeout" in ASCII).
const MIGRATION_LOCK: i64 = 0x636c_6f73_656f_7574;

/// Why the PostgreSQL store failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// `[store]` does not name a PostgreSQL store, or names it wrongly.
    #[error("{0}")]
    Config(String),
    /// The password's environment variable is unset or not UTF-8.
    #[error("the PostgreSQL password variable ${0} ([store] password_env) is not set")]
    PasswordEnv(String),
    /// The password file cannot be read.
    #[error("cannot read the PostgreSQL password file {path} ([store] password_file): {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No connection could be made (refused, authentication failed, no such database).
    #[error("cannot connect to the PostgreSQL store {target}: {source}")]
    Connect {
        /// user@host:port/database (never the password).
        target: String,
        /// The driver's error.
        source: postgres::Error,
    },
    /// Applying the schema migrations failed.
    #[error("PostgreSQL store {target}: schema migration failed: {message}")]
    Migrate {
        /// user@host:port/database.
        target: String,
        /// refinery's message.
        message: String,
    },
    /// The database has a schema newer than this binary knows: a newer Closeout migrated it.
    #[error(
        "PostgreSQL store {target} has schema version {found}, newer than this Closeout's \
         {known}: upgrade this Closeout (it will not run against a newer schema)"
    )]
    SchemaNewer {
        /// user@host:port/database.
        target: String,
        /// The newest version applied in the database.
        found: i64,
        /// The newest version this binary carries.
        known: i64,
    },
    /// A statement failed.
    #[error("PostgreSQL store: {0}")]
    Sql(#[from] postgres::Error),
}

/// A PostgreSQL store: where it is and how to log in. Cheap to share; each user of the store
/// ([`PgConn`]) holds its own connection.
pub struct PgStore {
    config: postgres::Config,
    target: String,
    /// Connections given back by dropped [`PgConn`]s, reused by new ones (at most [`IDLE_MAX`]):
    /// `closeout serve` opens the engine, its journal and its leases for every event, and a
    /// new connection (TCP and SCRAM) each time made PostgreSQL events several times slower.
    idle: Mutex<Vec<postgres::Client>>,
}

/// Idle connections a store keeps.
const IDLE_MAX: usize = 16;

/// The stores this process opened, by target and a digest of the password: opening the same
/// store again (every event opens the engine) reuses it, its migration check and its idle
/// connections. A changed password (a rotated password file) opens a new one.
fn opened() -> &'static Mutex<std::collections::HashMap<String, Arc<PgStore>>> {
    static OPENED: std::sync::OnceLock<Mutex<std::collections::HashMap<String, Arc<PgStore>>>> =
        std::sync::OnceLock::new();
    OPENED.get_or_init(Default::default)
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish()
    }
}

/// user@host:port/database, for messages.
fn describe(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

fn read_password(source: &PasswordSource) -> Result<Option<String>, PgError> {
    match source {
        PasswordSource::None => Ok(None),
        PasswordSource::Env(var) => std::env::var(var)
            .map(Some)
            .map_err(|_| PgError::PasswordEnv(var.clone())),
        PasswordSource::File(path) => std::fs::read_to_string(path)
            .map(|text| Some(text.lines().next().unwrap_or("").to_string()))
            .map_err(|source| PgError::PasswordFile {
                path: path.clone(),
                source,
            }),
    }
}

impl PgStore {
    /// Connect to the store `config` names, apply the migrations this binary carries (refusing
    /// a newer schema), and keep what is needed to connect again. Blocking.
    pub fn open(config: &StoreConfig) -> Result<Arc<PgStore>, PgError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            // See PgConn::with: never block the client on an async runtime's thread.
            return crate::store::blocking::on_plain_thread(|| PgStore::open_here(config));
        }
        PgStore::open_here(config)
    }

    /// [`PgStore::open`] without reusing a store this process opened before: connects and
    /// checks the schema again (tests of the migrations).
    pub fn open_uncached(config: &StoreConfig) -> Result<Arc<PgStore>, PgError> {
        opened().lock().unwrap_or_else(|p| p.into_inner()).clear();
        PgStore::open(config)
    }

    fn open_here(config: &StoreConfig) -> Result<Arc<PgStore>, PgError> {
        let (mut target, password) = match config.backend().map_err(PgError::Config)? {
            StoreBackend::Postgres { target, password } => (*target, password),
            StoreBackend::Sqlite(_) => {
                return Err(PgError::Config(
                    "[store] url is not set: this is the SQLite store".into(),
                ))
            }
        };
        let password = read_password(&password)?;
        let key = {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(password.as_deref().unwrap_or("").as_bytes());
            format!("{}#{}", describe(&target), hex::encode(digest))
        };
        if let Some(store) = opened().lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(Arc::clone(store));
        }
        if let Some(password) = password {
            target.password(password);
        }
        target
            .application_name("closeout")
            .connect_timeout(std::time::Duration::from_secs(10));
        let store = PgStore {
            target: describe(&target),
            config: target,
            idle: Mutex::new(Vec::new()),
        };
        let mut client = store.connect()?;
        store.migrate(&mut client)?;
        store.give_back(client);
        let store = Arc::new(store);
        opened()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::clone(&store));
        Ok(store)
    }

    /// An idle connection, or a new one.
    fn take(&self) -> Result<postgres::Client, PgError> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match idle {
                Some(c) if !c.is_closed() => return Ok(c),
                // Closed by the server meanwhile: dropped (closing it blocks no runtime: it is
                // already closed), try the next.
                Some(_) => continue,
                None => return self.connect(),
            }
        }
    }

    /// Keep `client` for reuse, or close it when enough are idle. Returns it when it must be
    /// closed by the caller.
    fn give_back(&self, client: postgres::Client) -> Option<postgres::Client> {
        if client.is_closed() {
            return Some(client);
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_MAX {
            idle.push(client);
            None
        } else {
            Some(client)
        }
    }

    /// user@host:port/database.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A new connection.
    pub fn connect(&self) -> Result<postgres::Client, PgError> {
        self.config
            .connect(postgres::NoTls)
            .map_err(|source| PgError::Connect {
                target: self.target.clone(),
                source,
            })
    }

    /// The newest schema version this binary carries.
    pub fn known_version() -> i64 {
        embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|m| i64::from(m.version()))
            .max()
            .unwrap_or(0)
    }

    /// The newest schema version applied in the database (0 for none).
    pub fn schema_version(client: &mut postgres::Client) -> Result<i64, PgError> {
        let exists: bool = client
            .query_one(
                "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
                &[],
            )?
            .try_get(0)?;
        if !exists {
            return Ok(0);
        }
        let found: Option<i64> = client
            .query_one(
                "SELECT MAX(version)::BIGINT FROM refinery_schema_history",
                &[],
            )?
            .try_get(0)?;
        Ok(found.unwrap_or(0))
    }

    fn migrate(&self, client: &mut postgres::Client) -> Result<(), PgError> {
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
        let result = self.migrate_locked(client);
        let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
        result?;
        unlocked?;
        Ok(())
    }

    /// Apply the migrations this binary carries that the database skipped: versions below its
    /// newest applied one that were never applied (it was migrated by a build that lacked them,
    /// e.g. V4 released before V3, each written on its own branch). refinery only applies versions
    /// above the newest applied and refuses such a gap, so they are applied here first, each in
    /// its own transaction with its history row written as refinery writes it; refinery then finds
    /// the history contiguous. This assumes what every migration here is written to hold: a
    /// migration does not depend on one with a higher version.
    fn apply_skipped(&self, client: &mut postgres::Client) -> Result<(), PgError> {
        if PgStore::schema_version(client)? == 0 {
            return Ok(());
        }
        let applied: Vec<i64> = client
            .query("SELECT version::BIGINT FROM refinery_schema_history", &[])?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let newest = applied.iter().copied().max().unwrap_or(0);
        let runner = embedded::migrations::runner();
        let mut skipped: Vec<&refinery::Migration> = runner
            .get_migrations()
            .iter()
            .filter(|m| {
                let v = i64::from(m.version());
                v < newest && !applied.contains(&v)
            })
            .collect();
        skipped.sort_by_key(|m| m.version());
        for m in skipped {
            tracing::warn!(
                target = %self.target,
                migration = %m,
                "applying a schema migration this database skipped (migrated by a build without it)"
            );
            let version = i32::try_from(i64::from(m.version())).map_err(|_| PgError::Migrate {
                target: self.target.clone(),
                message: format!("migration {m}: version out of range"),
            })?;
            let applied_on = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let mut tx = client.transaction()?;
            tx.batch_execute(m.sql().unwrap_or_default())
                .map_err(|e| PgError::Migrate {
                    target: self.target.clone(),
                    message: format!("migration {m}: {e}"),
                })?;
            tx.execute(
                "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
                 VALUES ($1, $2, $3, $4)",
                &[&version, &m.name(), &applied_on, &m.checksum().to_string()],
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    fn migrate_locked(&self, client: &mut postgres::Client) -> Result<(), PgError> {
        let (found, known) = (PgStore::schema_version(client)?, PgStore::known_version());
        if found > known {
            return Err(PgError::SchemaNewer {
                target: self.target.clone(),
                found,
                known,
            });
        }
        self.apply_skipped(client)?;
        embedded::migrations::runner()
            .set_abort_divergent(true)
            .set_abort_missing(true)
            .run(client)
            .map(|_| ())
            .map_err(|e| PgError::Migrate {
                target: self.target.clone(),
                message: e.to_string(),
            })
    }
}

/// One connection to the store for one user of it (the queue, the leases), opened on first use
/// and again after it broke. Calls are serialised on it, as on a SQLite connection.
pub struct PgConn {
    store: Arc<PgStore>,
    client: Mutex<Option<postgres::Client>>,
}

impl PgConn {
    /// A connection to `store`, not opened yet.
    pub fn new(store: &Arc<PgStore>) -> PgConn {
        PgConn {
            store: Arc::clone(store),
            client: Mutex::new(None),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<PgStore> {
        &self.store
    }

    /// Run `f` on the connection, connecting first when there is none or it broke. Blocking.
    ///
    /// The client blocks on a runtime of its own, which tokio forbids on a thread that drives an
    /// async runtime; synchronous code reached from async code (a CLI command calling the
    /// journal directly) would panic there. So when this thread is inside a tokio runtime's
    /// context, `f` runs on a scoped plain thread (a SQLite call there merely blocks).
    pub fn with<R: Send, E: From<PgError> + Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<R, E> + Send,
    ) -> Result<R, E> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return crate::store::blocking::on_plain_thread(|| self.with_here(f));
        }
        self.with_here(f)
    }

    fn with_here<R, E: From<PgError>>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<R, E>,
    ) -> Result<R, E> {
        // Every write is one transaction, so a poisoned lock leaves the database consistent.
        let mut guard = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let client = match guard.take() {
            Some(c) if !c.is_closed() => guard.insert(c),
            _ => guard.insert(self.store.take()?),
        };
        f(client)
    }
}

impl Drop for PgConn {
    /// The connection goes back to the store's idle ones; closing one (when enough are idle)
    /// blocks on its runtime too: off an async runtime's thread, as in [`PgConn::with`].
    fn drop(&mut self) {
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(client) = client.and_then(|c| self.store.give_back(c)) {
            if tokio::runtime::Handle::try_current().is_ok() {
                crate::store::blocking::on_plain_thread(move || drop(client));
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A fresh database on the test binary's shared PostgreSQL cluster, per test.
    use super::*;
    use closeout_testkit::PostgresServer;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A new empty database's store config (password from a file in the returned directory).
    pub fn fresh_config() -> (tempfile::TempDir, StoreConfig, String) {
        static N: AtomicU32 = AtomicU32::new(0);
        let db = format!(
            "t_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let pw = dir.path().join("pw");
        let url = PostgresServer::shared().new_database(&db, &pw);
        let config = StoreConfig::postgres(&url, PasswordSource::File(pw));
        (dir, config, db)
    }

    /// A fresh, migrated database.
    pub fn fresh() -> (tempfile::TempDir, Arc<PgStore>) {
        let (dir, config, _) = fresh_config();
        (
            dir,
            PgStore::open(&config).expect("open the PostgreSQL store"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_a_newer_schema_is_refused() {
        let (_dir, config, _db) = testing::fresh_config();
        let store = PgStore::open(&config).expect("first open migrates");
        let mut client = store.connect().expect("connect");
        let known = PgStore::known_version();
        assert!(known >= 1);
        assert_eq!(PgStore::schema_version(&mut client).unwrap(), known);
        PgStore::open_uncached(&config).expect("a second open finds nothing to do");
        // A newer Closeout migrated this database: this one refuses it.
        client
            .execute(
                "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
                 VALUES ($1, 'from_the_future', '2099-01-01T00:00:00Z', '0')",
                &[&i32::try_from(known + 1).expect("small")],
            )
            .expect("pretend a newer migration");
        let err = PgStore::open_uncached(&config).expect_err("a newer schema is refused");
        assert!(matches!(err, PgError::SchemaNewer { .. }), "{err}");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    /// A database migrated by a build that lacked a lower version (V4 released before V3, say):
    /// this binary applies the skipped one and then the rest, and opens it again as usual.
    #[test]
    fn a_migration_the_database_skipped_is_applied_out_of_order() {
        let (_dir, config, _db) = testing::fresh_config();
        let all = embedded::migrations::runner().get_migrations().clone();
        let versions: Vec<i64> = all.iter().map(|m| i64::from(m.version())).collect();
        assert!(versions.len() >= 3, "{versions:?}");
        let skipped = versions[1];
        // Migrate with every version but the second (V2: the journal), as an older build would.
        let (target, password) = match config.backend().expect("backend") {
            StoreBackend::Postgres { target, password } => (*target, password),
            StoreBackend::Sqlite(_) => unreachable!("a PostgreSQL config"),
        };
        let mut target = target;
        if let Some(p) = read_password(&password).expect("password") {
            target.password(p);
        }
        let partial: Vec<refinery::Migration> = all
            .iter()
            .filter(|m| i64::from(m.version()) != skipped)
            .cloned()
            .collect();
        let mut client = target.connect(postgres::NoTls).expect("connect");
        refinery::Runner::new(&partial)
            .run(&mut client)
            .expect("migrate without V2");
        let journal_table = |client: &mut postgres::Client| -> bool {
            client
                .query_one("SELECT to_regclass('runs') IS NOT NULL", &[])
                .expect("query")
                .get(0)
        };
        assert!(!journal_table(&mut client), "V2 was skipped");
        // refinery alone refuses the gap; the store applies it and opens.
        let refused = embedded::migrations::runner()
            .set_abort_missing(true)
            .run(&mut client);
        assert!(refused.is_err(), "refinery refuses a skipped version");
        PgStore::open_uncached(&config).expect("the skipped migration is applied");
        assert!(journal_table(&mut client), "V2's tables exist now");
        let history: Vec<i64> = client
            .query(
                "SELECT version::BIGINT FROM refinery_schema_history ORDER BY version",
                &[],
            )
            .expect("history")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(history, versions);
        PgStore::open_uncached(&config).expect("and it opens again without anything to do");
    }

    #[test]
    fn a_wrong_or_missing_password_is_refused_without_showing_it() {
        let (dir, config, _db) = testing::fresh_config();
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "not-the-password-xyz\n").expect("write");
        let url = config.url.clone().expect("url");
        let err = PgStore::open(&StoreConfig::postgres(&url, PasswordSource::File(bad)))
            .expect_err("wrong password");
        assert!(matches!(err, PgError::Connect { .. }), "{err}");
        assert!(!format!("{err} {err:?}").contains("not-the-password-xyz"));
        let err = PgStore::open(&StoreConfig::postgres(
            &url,
            PasswordSource::Env("CLOSEOUT_TEST_UNSET_PG_PASSWORD".into()),
        ))
        .expect_err("unset variable");
        assert!(matches!(err, PgError::PasswordEnv(_)), "{err}");
    }
}
