//! Per-identity leases: at most one process acts for an identity at a time, across shells and
//! `closeout serve` processes sharing one store.
//!
//! A lease is a row (identity, holder, expiry) in the store's file, taken in an immediate
//! transaction so two processes cannot both see it free. Its holder renews it while it runs
//! ([`LeaseRenewal`]); a holder that dies stops renewing and its lease expires, so a dead
//! process blocks no one forever. A holder on the same host whose process no longer exists is
//! stale at once (a killed `apply` is resumed without waiting for the expiry).
//!
//! Architecture invariant: the lease knows identities and holders, nothing of runs or plans.

use super::sqlite::{open_durable, OpenError};
use chrono::{DateTime, Duration, Utc};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS identity_leases (
    identity   TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
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
}

/// The leases in the store at `path`.
#[derive(Debug, Clone)]
pub struct Leases {
    path: PathBuf,
    ttl: Duration,
}

impl Leases {
    /// Leases in the store's file, expiring `ttl` after their last renewal.
    pub fn new(path: &Path, ttl: std::time::Duration) -> Leases {
        Leases {
            path: path.to_path_buf(),
            ttl: Duration::from_std(ttl).unwrap_or(Duration::seconds(60)),
        }
    }

    /// How long a lease lasts without renewal.
    pub fn ttl(&self) -> std::time::Duration {
        self.ttl
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(60))
    }

    fn connect(&self) -> Result<rusqlite::Connection, LeaseError> {
        let conn = open_durable(&self.path).map_err(|source| LeaseError::Open {
            path: self.path.clone(),
            source,
        })?;
        conn.execute_batch(SCHEMA)?;
        Ok(conn)
    }

    /// Take the lease on `identity` for `holder`, or say who has it. Blocking (SQLite).
    pub fn acquire(&self, identity: &str, holder: &Holder) -> Result<(), LeaseError> {
        let mut conn = self.connect()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = Utc::now();
        let current: Option<(String, String, i64, String)> = tx
            .query_row(
                "SELECT holder, host, pid, expires_at FROM identity_leases WHERE identity = ?1",
                params![identity],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
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
        Ok(())
    }

    /// Extend `holder`'s lease on `identity`; [`LeaseError::Lost`] if another holder has it now.
    pub fn renew(&self, identity: &str, holder: &Holder) -> Result<(), LeaseError> {
        let conn = self.connect()?;
        let changed = conn.execute(
            "UPDATE identity_leases SET expires_at = ?3 WHERE identity = ?1 AND holder = ?2",
            params![identity, holder.id, ts(Utc::now() + self.ttl)],
        )?;
        if changed == 0 {
            return Err(LeaseError::Lost(identity.to_string()));
        }
        Ok(())
    }

    /// Give the lease back (nothing if `holder` no longer has it).
    pub fn release(&self, identity: &str, holder: &Holder) -> Result<(), LeaseError> {
        let conn = self.connect()?;
        conn.execute(
            "DELETE FROM identity_leases WHERE identity = ?1 AND holder = ?2",
            params![identity, holder.id],
        )?;
        Ok(())
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

    fn leases(dir: &tempfile::TempDir, ttl_secs: u64) -> Leases {
        Leases::new(
            &dir.path().join("closeout.db"),
            std::time::Duration::from_secs(ttl_secs),
        )
    }

    /// A holder in a live process other than this one (pid 1 exists on Linux).
    fn other_live_process() -> Holder {
        Holder {
            pid: 1,
            ..Holder::this_process()
        }
    }

    #[test]
    fn a_second_holder_is_refused_until_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = leases(&dir, 60);
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

    #[test]
    fn an_expired_or_dead_holder_does_not_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let expired = leases(&dir, 0);
        let live = other_live_process();
        expired.acquire("E1", &live).expect("take");
        std::thread::sleep(std::time::Duration::from_millis(5));
        leases(&dir, 60)
            .acquire("E1", &Holder::this_process())
            .expect("an expired lease is free");

        let l = leases(&dir, 60);
        let dead = Holder {
            pid: i64::from(u32::MAX),
            ..Holder::this_process()
        };
        l.acquire("E3", &dead).expect("take");
        l.acquire("E3", &Holder::this_process())
            .expect("a holder whose process is gone on this host is stale");
    }
}
