//! Per-identity leases: at most one process acts for an identity at a time, across shells and
//! `closeout serve` processes sharing one store.
//!
//! A lease is a row (identity, holder, expiry) in the store's file, taken in an immediate
//! transaction so two processes cannot both see it free. Its holder renews it while it runs
//! ([`LeaseRenewal`]); a holder that dies stops renewing and its lease expires, so a dead
//! process blocks no one forever. A holder on the same host whose process no longer exists is
//! stale at once (a killed `apply` is resumed without waiting for the expiry).
//!
//! Two backends behind one API: the SQLite file, and PostgreSQL (`[store] url`), where several
//! `closeout serve` replicas share the leases and expiries are measured by the database's clock.
//!
//! Leader leases ([`Leases::lead`]) work the same way for one named role (the schedulers): one
//! holder at a time, renewed by leading again, taken by another holder once it expired, each
//! change of holder numbered by a term.
//!
//! Architecture invariant: the lease knows identities and holders, nothing of runs or plans.

use super::pg::{PgConn, PgError, PgStore};
use super::sqlite::{open_durable, OpenError};
use chrono::{DateTime, Duration, Utc};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS identity_leases (
    identity   TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leader_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    term       INTEGER NOT NULL,
    expires_at TEXT NOT NULL
);";

/// Why a lease could not be taken, renewed or released.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another holder has it.
    #[error(
        "another Closeout process is acting for {identity} (holder {holder}, process {pid} on \
         {host}, lease until {until}); wait for it to finish, or for the lease to expire if it died"
    )]
    Held {
        /// The identity.
        identity: String,
        /// The other holder's id.
        holder: String,
        /// Its host.
        host: String,
        /// Its process id.
        pid: i64,
        /// When its lease expires unless renewed.
        until: DateTime<Utc>,
    },
    /// The lease was lost (expired and taken by another holder) while this one held it.
    #[error(
        "the lease on {0} was taken over by another process (this one did not renew it in time)"
    )]
    Lost(String),
    /// The store could not be opened.
    #[error("lease store {path}: {source}")]
    Open {
        /// The store's file.
        path: PathBuf,
        /// Why.
        source: OpenError,
    },
    /// SQLite failed.
    #[error("lease store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored expiry that is not a timestamp.
    #[error("lease store: bad expiry {0:?}")]
    BadExpiry(String),
    /// The PostgreSQL store failed.
    #[error("lease store: {0}")]
    Postgres(#[from] PgError),
    /// An asynchronous call never ran (the runtime is shutting down).
    #[error("lease store: {0}")]
    Interrupted(#[from] super::blocking::Interrupted),
}

impl From<postgres::Error> for LeaseError {
    fn from(e: postgres::Error) -> Self {
        LeaseError::Postgres(PgError::Sql(e))
    }
}

/// Who leads a role after [`Leases::lead`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// Whether the caller leads now.
    pub leading: bool,
    /// The leader's holder id.
    pub holder: String,
    /// The leader's term: it grows by one at each change of holder.
    pub term: i64,
}

/// Who holds a lease: a random id per acquisition, with the host and process for people and
/// for stale-holder detection.
#[derive(Debug, Clone)]
pub struct Holder {
    id: String,
    host: String,
    pid: i64,
}

impl Holder {
    /// A new holder for this process.
    pub fn this_process() -> Holder {
        Holder {
            id: format!("{:016x}", rand::random::<u64>()),
            host: host_name(),
            pid: i64::from(std::process::id()),
        }
    }

    /// The holder's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether a holder described by [`Holder::describe`] is a process on this host that no
    /// longer exists (so what it held can be taken at once, without waiting for an expiry).
    pub fn described_is_dead_here(described: &str) -> bool {
        let Some(rest) = described.split_once(" (process ").map(|(_, r)| r) else {
            return false;
        };
        let Some((pid, host)) = rest.strip_suffix(')').and_then(|r| r.split_once(" on ")) else {
            return false;
        };
        match pid.parse::<i64>() {
            Ok(pid) => host == host_name() && !process_exists(pid),
            Err(_) => false,
        }
    }

    /// "ID (process PID on HOST)", for records and messages.
    pub fn describe(&self) -> String {
        format!("{} (process {} on {})", self.id, self.pid, self.host)
    }
}

/// The leases in the store (the SQLite file or the PostgreSQL database).
#[derive(Clone)]
pub struct Leases {
    backend: Backend,
    ttl: Duration,
}

#[derive(Clone)]
enum Backend {
    Sqlite(PathBuf),
    Postgres(Arc<PgConn>),
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = match &self.backend {
            Backend::Sqlite(path) => path.display().to_string(),
            Backend::Postgres(conn) => conn.store().target().to_string(),
        };
        f.debug_struct("Leases")
            .field("store", &store)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Leases {
    /// Leases in the store's file, expiring `ttl` after their last renewal.
    pub fn new(path: &Path, ttl: std::time::Duration) -> Leases {
        Leases {
            backend: Backend::Sqlite(path.to_path_buf()),
            ttl: Duration::from_std(ttl).unwrap_or(Duration::seconds(60)),
        }
    }

    /// Leases in the PostgreSQL store (migrated by [`PgStore::open`]), expiring `ttl` after
    /// their last renewal by the database's clock.
    pub fn postgres(store: &Arc<PgStore>, ttl: std::time::Duration) -> Leases {
        Leases {
            backend: Backend::Postgres(Arc::new(PgConn::new(store))),
            ttl: Duration::from_std(ttl).unwrap_or(Duration::seconds(60)),
        }
    }

    fn ttl_secs(&self) -> f64 {
        self.ttl().as_secs_f64()
    }

    /// How long a lease lasts without renewal.
    pub fn ttl(&self) -> std::time::Duration {
        self.ttl
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(60))
    }

    /// The SQLite connection, or the PostgreSQL connection to hand the call to.
    fn connect(&self) -> Result<Result<rusqlite::Connection, &PgConn>, LeaseError> {
        let path = match &self.backend {
            Backend::Sqlite(path) => path,
            Backend::Postgres(conn) => return Ok(Err(conn)),
        };
        let conn = open_durable(path).map_err(|source| LeaseError::Open {
            path: path.clone(),
            source,
        })?;
        conn.execute_batch(SCHEMA)?;
        Ok(Ok(conn))
    }

    /// Take the lease on `identity` for `holder`, or say who has it. Blocking (SQLite).
    pub fn acquire(&self, identity: &str, holder: &Holder) -> Result<(), LeaseError> {
        let mut conn = match self.connect()? {
            Ok(conn) => conn,
            Err(pg) => return self.pg_acquire(pg, identity, holder),
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = Utc::now();
        let current: Option<(String, String, i64, String)> = tx
            .query_row(
                "SELECT holder, host, pid, expires_at FROM identity_leases WHERE identity = ?1",
                params![identity],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let mut taken_over = false;
        if let Some((other, host, pid, expires)) = current {
            let until = parse(&expires)?;
            let dead_here = host == holder.host && !process_exists(pid);
            if other != holder.id && until > now && !dead_here {
                return Err(LeaseError::Held {
                    identity: identity.to_string(),
                    holder: other,
                    host,
                    pid,
                    until,
                });
            }
            taken_over = other != holder.id;
        }
        tx.execute(
            "INSERT INTO identity_leases (identity, holder, host, pid, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(identity) DO UPDATE SET \
             holder = excluded.holder, host = excluded.host, pid = excluded.pid, \
             expires_at = excluded.expires_at",
            params![
                identity,
                holder.id,
                holder.host,
                holder.pid,
                ts(now + self.ttl)
            ],
        )?;
        tx.commit()?;
        if taken_over {
            crate::metrics::global().identity_leases_taken_over.inc();
        }
        Ok(())
    }

    /// Extend `holder`'s lease on `identity`; [`LeaseError::Lost`] if another holder has it now.
    pub fn renew(&self, identity: &str, holder: &Holder) -> Result<(), LeaseError> {
        let changed = match self.connect()? {
            Ok(conn) => conn.execute(
                "UPDATE identity_leases SET expires_at = ?3 WHERE identity = ?1 AND holder = ?2",
                params![identity, holder.id, ts(Utc::now() + self.ttl)],
            )?,
            Err(pg) => pg.with(|c| {
                c.execute(
                    "UPDATE identity_leases SET expires_at = now() + make_interval(secs => $3) \
                     WHERE identity = $1 AND holder = $2",
                    &[&identity, &holder.id, &self.ttl_secs()],
                )
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .map_err(LeaseError::from)
            })?,
        };
        if changed == 0 {
            return Err(LeaseError::Lost(identity.to_string()));
        }
        Ok(())
    }

    /// Give the lease back (nothing if `holder` no longer has it).
    pub fn release(&self, identity: &str, holder: &Holder) -> Result<(), LeaseError> {
        match self.connect()? {
            Ok(conn) => {
                conn.execute(
                    "DELETE FROM identity_leases WHERE identity = ?1 AND holder = ?2",
                    params![identity, holder.id],
                )?;
            }
            Err(pg) => {
                pg.with(|c| {
                    c.execute(
                        "DELETE FROM identity_leases WHERE identity = $1 AND holder = $2",
                        &[&identity, &holder.id],
                    )
                    .map_err(LeaseError::from)
                })?;
            }
        }
        Ok(())
    }

    /// Lead the role `name` (take it if free or expired, renew it if `holder` leads), or say
    /// who does. A leader calls it every third of the lease's lifetime and stops leading when
    /// it answers `leading: false`; another holder takes the role once the lease expired.
    pub fn lead(&self, name: &str, holder: &Holder) -> Result<Leadership, LeaseError> {
        let mut conn = match self.connect()? {
            Ok(conn) => conn,
            Err(pg) => return self.pg_lead(pg, name, holder),
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = Utc::now();
        let current: Option<(String, i64, String)> = tx
            .query_row(
                "SELECT holder, term, expires_at FROM leader_leases WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let term = match current {
            Some((other, term, expires)) if other != holder.id && parse(&expires)? > now => {
                return Ok(Leadership {
                    leading: false,
                    holder: other,
                    term,
                })
            }
            Some((other, term, _)) if other == holder.id => term,
            Some((_, term, _)) => term + 1,
            None => 1,
        };
        tx.execute(
            "INSERT INTO leader_leases (name, holder, host, pid, term, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO UPDATE SET \
             holder = excluded.holder, host = excluded.host, pid = excluded.pid, \
             term = excluded.term, expires_at = excluded.expires_at",
            params![
                name,
                holder.id,
                holder.host,
                holder.pid,
                term,
                ts(now + self.ttl)
            ],
        )?;
        tx.commit()?;
        Ok(Leadership {
            leading: true,
            holder: holder.id.clone(),
            term,
        })
    }

    /// Stop leading `name` (nothing if `holder` does not lead): another holder may take it at
    /// once, without waiting for the expiry. The row stays (expired, no holder) so the next
    /// leader's term still grows.
    pub fn resign(&self, name: &str, holder: &Holder) -> Result<(), LeaseError> {
        match self.connect()? {
            Ok(conn) => {
                conn.execute(
                    "UPDATE leader_leases SET holder = '', expires_at = ?3 \
                     WHERE name = ?1 AND holder = ?2",
                    params![name, holder.id, ts(DateTime::<Utc>::UNIX_EPOCH)],
                )?;
            }
            Err(pg) => {
                pg.with(|c| {
                    c.execute(
                        "UPDATE leader_leases SET holder = '', expires_at = '-infinity' \
                         WHERE name = $1 AND holder = $2",
                        &[&name, &holder.id],
                    )
                    .map_err(LeaseError::from)
                })?;
            }
        }
        Ok(())
    }

    /// [`Leases::acquire`] on PostgreSQL: one upsert that takes the lease only when it is free,
    /// expired or already this holder's (the row lock of `ON CONFLICT DO UPDATE` makes two
    /// replicas' attempts one after the other); a holder on this host whose process is gone is
    /// replaced by compare-and-swap on its holder id.
    fn pg_acquire(&self, pg: &PgConn, identity: &str, holder: &Holder) -> Result<(), LeaseError> {
        pg.with(|c| {
            // `previous` (the statement's snapshot, before the upsert) tells a lease taken from
            // another holder whose lease expired from a fresh or renewed one.
            let taken = c.query_opt(
                "WITH previous AS (SELECT holder FROM identity_leases WHERE identity = $1) \
                 INSERT INTO identity_leases (identity, holder, host, pid, expires_at) \
                 VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) \
                 ON CONFLICT (identity) DO UPDATE SET holder = excluded.holder, \
                 host = excluded.host, pid = excluded.pid, expires_at = excluded.expires_at \
                 WHERE identity_leases.holder = excluded.holder \
                    OR identity_leases.expires_at <= now() \
                 RETURNING (SELECT holder FROM previous)",
                &[
                    &identity,
                    &holder.id,
                    &holder.host,
                    &holder.pid,
                    &self.ttl_secs(),
                ],
            )?;
            if let Some(row) = taken {
                let previous: Option<String> = row.try_get(0)?;
                if previous.is_some_and(|p| p != holder.id) {
                    crate::metrics::global().identity_leases_taken_over.inc();
                }
                return Ok(());
            }
            let row = c.query_opt(
                "SELECT holder, host, pid, expires_at FROM identity_leases WHERE identity = $1",
                &[&identity],
            )?;
            let Some(row) = row else {
                // Released meanwhile: try once more.
                return Err(LeaseError::Lost(identity.to_string()));
            };
            let (other, host, pid, until): (String, String, i64, DateTime<Utc>) = (
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            );
            if host == holder.host && !process_exists(pid) {
                let n = c.execute(
                    "UPDATE identity_leases SET holder = $3, host = $4, pid = $5, \
                     expires_at = now() + make_interval(secs => $6) \
                     WHERE identity = $1 AND holder = $2",
                    &[
                        &identity,
                        &other,
                        &holder.id,
                        &holder.host,
                        &holder.pid,
                        &self.ttl_secs(),
                    ],
                )?;
                if n == 1 {
                    crate::metrics::global().identity_leases_taken_over.inc();
                    return Ok(());
                }
            }
            Err(LeaseError::Held {
                identity: identity.to_string(),
                holder: other,
                host,
                pid,
                until,
            })
        })
        .or_else(|e| match e {
            LeaseError::Lost(_) => self.pg_acquire_again(pg, identity, holder),
            other => Err(other),
        })
    }

    /// The lease was released between the upsert and the read: one more attempt.
    fn pg_acquire_again(
        &self,
        pg: &PgConn,
        identity: &str,
        holder: &Holder,
    ) -> Result<(), LeaseError> {
        pg.with(|c| {
            let taken = c.query_opt(
                "INSERT INTO identity_leases (identity, holder, host, pid, expires_at) \
                 VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) \
                 ON CONFLICT (identity) DO NOTHING RETURNING identity",
                &[
                    &identity,
                    &holder.id,
                    &holder.host,
                    &holder.pid,
                    &self.ttl_secs(),
                ],
            )?;
            match taken {
                Some(_) => Ok(()),
                None => Err(LeaseError::Lost(identity.to_string())),
            }
        })
    }

    /// [`Leases::lead`] on PostgreSQL: the same upsert as [`Leases::acquire`], counting terms.
    fn pg_lead(&self, pg: &PgConn, name: &str, holder: &Holder) -> Result<Leadership, LeaseError> {
        pg.with(|c| {
            let led = c.query_opt(
                "INSERT INTO leader_leases (name, holder, host, pid, term, expires_at) \
                 VALUES ($1, $2, $3, $4, 1, now() + make_interval(secs => $5)) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 host = excluded.host, pid = excluded.pid, expires_at = excluded.expires_at, \
                 term = CASE WHEN leader_leases.holder = excluded.holder \
                        THEN leader_leases.term ELSE leader_leases.term + 1 END \
                 WHERE leader_leases.holder = excluded.holder \
                    OR leader_leases.expires_at <= now() \
                 RETURNING term",
                &[
                    &name,
                    &holder.id,
                    &holder.host,
                    &holder.pid,
                    &self.ttl_secs(),
                ],
            )?;
            if let Some(row) = led {
                return Ok(Leadership {
                    leading: true,
                    holder: holder.id.clone(),
                    term: row.try_get(0)?,
                });
            }
            let row = c.query_opt(
                "SELECT holder, term FROM leader_leases WHERE name = $1",
                &[&name],
            )?;
            Ok(match row {
                Some(row) => Leadership {
                    leading: false,
                    holder: row.try_get(0)?,
                    term: row.try_get(1)?,
                },
                // No row although the upsert matched none: cannot happen (rows are never
                // deleted); nobody leads until the next attempt.
                None => Leadership {
                    leading: false,
                    holder: String::new(),
                    term: 0,
                },
            })
        })
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse(s: &str) -> Result<DateTime<Utc>, LeaseError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| LeaseError::BadExpiry(s.to_string()))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Whether process `pid` exists on this host. Where that cannot be told (no `/proc`), assume it
/// does: the lease then waits for its expiry, which is safe.
fn process_exists(pid: i64) -> bool {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leases on one store with the given lifetime (seconds): a SQLite file or a PostgreSQL
    /// database, each test on both.
    type Factory = Box<dyn Fn(f64) -> Leases>;

    fn sqlite() -> (Box<dyn std::any::Any>, Factory) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("closeout.db");
        let make = move |ttl: f64| Leases::new(&path, std::time::Duration::from_secs_f64(ttl));
        (Box::new(dir), Box::new(make))
    }

    fn postgres() -> (Box<dyn std::any::Any>, Factory) {
        let (dir, store) = crate::store::pg::testing::fresh();
        let make =
            move |ttl: f64| Leases::postgres(&store, std::time::Duration::from_secs_f64(ttl));
        (Box::new(dir), Box::new(make))
    }

    macro_rules! on_both_backends {
        ($($name:ident),* $(,)?) => {
            mod on_sqlite {
                $(#[test]
                fn $name() {
                    let (_guard, leases) = super::sqlite();
                    super::$name(&*leases)
                })*
            }
            mod on_postgres {
                $(#[test]
                fn $name() {
                    let (_guard, leases) = super::postgres();
                    super::$name(&*leases)
                })*
            }
        };
    }

    on_both_backends!(
        a_second_holder_is_refused_until_release,
        an_expired_or_dead_holder_does_not_block,
        the_leader_lease_fails_over_when_its_holder_stops_renewing,
    );

    /// A holder in a live process other than this one (pid 1 exists on Linux).
    fn other_live_process() -> Holder {
        Holder {
            pid: 1,
            ..Holder::this_process()
        }
    }

    fn a_second_holder_is_refused_until_release(leases: &dyn Fn(f64) -> Leases) {
        let l = leases(60.0);
        let (a, b) = (other_live_process(), Holder::this_process());
        l.acquire("E1", &a).expect("first");
        let err = l.acquire("E1", &b).expect_err("held");
        assert!(matches!(err, LeaseError::Held { .. }), "{err}");
        assert!(err.to_string().contains("E1"), "{err}");
        // Another identity is free, and the holder itself may take it again.
        l.acquire("E2", &b).expect("other identity");
        l.acquire("E1", &a).expect("re-entrant for its holder");
        l.release("E1", &a).expect("release");
        l.acquire("E1", &b).expect("free after release");
        assert!(matches!(l.renew("E1", &a), Err(LeaseError::Lost(_))));
        l.renew("E1", &b).expect("renew own lease");
    }

    fn an_expired_or_dead_holder_does_not_block(leases: &dyn Fn(f64) -> Leases) {
        // Each take-over is counted (other tests may count theirs meanwhile: at least).
        let taken_over = || crate::metrics::global().identity_leases_taken_over.get();
        let before = taken_over();
        let expired = leases(0.0);
        let live = other_live_process();
        expired.acquire("E1", &live).expect("take");
        std::thread::sleep(std::time::Duration::from_millis(5));
        leases(60.0)
            .acquire("E1", &Holder::this_process())
            .expect("an expired lease is free");

        let l = leases(60.0);
        let dead = Holder {
            pid: i64::from(u32::MAX),
            ..Holder::this_process()
        };
        l.acquire("E3", &dead).expect("take");
        l.acquire("E3", &Holder::this_process())
            .expect("a holder whose process is gone on this host is stale");
        assert!(taken_over() >= before + 2, "both take-overs counted");
    }

    fn the_leader_lease_fails_over_when_its_holder_stops_renewing(leases: &dyn Fn(f64) -> Leases) {
        let l = leases(1.0);
        let (a, b) = (other_live_process(), Holder::this_process());
        let first = l.lead("schedulers", &a).expect("lead");
        assert!(first.leading);
        let other = l.lead("schedulers", &b).expect("ask");
        assert!(!other.leading, "{other:?}");
        assert_eq!(other.holder, a.id);
        assert_eq!(other.term, first.term);
        // A renews: still its term; B is still refused.
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert_eq!(l.lead("schedulers", &a).expect("renew"), first);
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert!(!l.lead("schedulers", &b).expect("ask").leading, "renewed");
        // A stops renewing (it died): after the lifetime B leads, in a new term.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = l.lead("schedulers", &b).expect("fail over");
        assert!(second.leading, "{second:?}");
        assert_eq!(second.term, first.term + 1);
        let back = l.lead("schedulers", &a).expect("A comes back");
        assert!(!back.leading, "A learns it no longer leads: {back:?}");
        // B resigns: A takes over at once.
        l.resign("schedulers", &b).expect("resign");
        let third = l.lead("schedulers", &a).expect("lead again");
        assert!(third.leading);
        assert!(third.term > second.term);
    }

    const CHILD_ENV: &str = "CLOSEOUT_LEASE_PG_CHILD";

    /// The child half of `on_postgres_a_killed_holder_s_lease_expires_and_is_taken`: takes the
    /// lease as a holder on another host, renews it until killed. Does nothing in a normal run.
    #[test]
    fn pg_child_holder() {
        let Some(spec) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let spec = spec.to_string_lossy().to_string();
        let (url, pw) = spec.split_once(' ').expect("url and password file");
        let config = crate::config::StoreConfig::postgres(
            url,
            crate::config::PasswordSource::File(pw.into()),
        );
        let store = PgStore::open(&config).expect("open");
        let l = Leases::postgres(&store, std::time::Duration::from_secs(2));
        let me = Holder {
            host: "replica-on-another-host".into(),
            ..Holder::this_process()
        };
        l.acquire("E9", &me).expect("take");
        println!("HELD");
        loop {
            std::thread::sleep(std::time::Duration::from_millis(300));
            l.renew("E9", &me).expect("renew");
        }
    }

    #[test]
    fn on_postgres_a_killed_holder_s_lease_expires_and_is_taken() {
        use std::io::BufRead;
        let (dir, config, _db) = crate::store::pg::testing::fresh_config();
        let store = PgStore::open(&config).expect("open");
        let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "store::lease::tests::pg_child_holder",
                "--nocapture",
            ])
            .env(
                CHILD_ENV,
                format!(
                    "{} {}",
                    config.url.as_deref().expect("url"),
                    dir.path().join("pw").display()
                ),
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = std::io::BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("HELD") => break,
                Some(Ok(_)) => {}
                _ => panic!("the child stopped before taking the lease"),
            }
        }
        let l = Leases::postgres(&store, std::time::Duration::from_secs(60));
        let me = Holder::this_process();
        // Held while the child lives and renews, well past its 2 s lifetime.
        for _ in 0..6 {
            let err = l.acquire("E9", &me).expect_err("held by the live child");
            assert!(matches!(err, LeaseError::Held { .. }), "{err}");
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let killed = std::time::Instant::now();
        let taken = loop {
            match l.acquire("E9", &me) {
                Ok(()) => break killed.elapsed(),
                Err(LeaseError::Held { .. }) if killed.elapsed().as_secs() < 10 => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("not taken after the holder died: {e}"),
            }
        };
        assert!(
            taken <= std::time::Duration::from_millis(2600),
            "taken {taken:?} after the kill: the lease lasts 2 s"
        );
        l.renew("E9", &me).expect("ours now");
    }
}
