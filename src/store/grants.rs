//! The grant ledger: time-bound grants Closeout made (or first saw held), with their expiry,
//! so the expiry scheduler can remove them and a run does not grant an expired one again.

use super::journal::{Journal, JournalError};
use super::pg::PgConn;
use super::sqlite::{parse_ts, ts};
use chrono::{DateTime, Utc};
use closeout_contract::Entitlement;
use rusqlite::{params, TransactionBehavior};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A grant Closeout made (or first saw held) under a time-bound rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// What was granted.
    pub entitlement: Entitlement,
    /// The policy rule that required it.
    pub rule: String,
    /// When it was granted (or first seen held).
    pub granted_at: DateTime<Utc>,
    /// When the rule's duration ends.
    pub expires_at: DateTime<Utc>,
    /// The run that recorded it.
    pub run_id: String,
}

impl Journal {
    /// Record a time-bound grant (replacing an earlier record of the same entitlement).
    pub fn record_grant(&self, identity: &str, g: &GrantRecord) -> Result<(), JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_record_grant(pg, identity, g),
        };
        conn.execute(
            "INSERT OR REPLACE INTO grants \
             (identity, provider, kind, target, rule, granted_at, expires_at, run_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                identity,
                g.entitlement.provider,
                g.entitlement.kind,
                g.entitlement.target,
                g.rule,
                ts(g.granted_at),
                ts(g.expires_at),
                g.run_id
            ],
        )?;
        Ok(())
    }

    /// The identity's recorded time-bound grants.
    pub fn grants_of(&self, identity: &str) -> Result<Vec<GrantRecord>, JournalError> {
        Ok(self
            .grant_rows(
                ("WHERE identity = ?1", params![identity]),
                ("WHERE identity = $1", &[&identity]),
            )?
            .into_iter()
            .map(|(_, g)| g)
            .collect())
    }

    /// Every recorded grant, with its identity, ordered by identity and entitlement (for
    /// `closeout`'s readers and tests that check what the ledger holds as a whole).
    pub fn grants(&self) -> Result<Vec<(String, GrantRecord)>, JournalError> {
        self.grant_rows(("", params![]), ("", &[]))
    }

    /// Every recorded grant whose expiry is at or before `now`, with its identity.
    pub fn expired_grants(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, GrantRecord)>, JournalError> {
        let now = ts(now);
        self.grant_rows(
            ("WHERE expires_at <= ?1", params![now]),
            ("WHERE expires_at <= $1", &[&now]),
        )
    }

    /// Forget the identity's grant records for entitlements not in `keep` (it no longer matches
    /// their rule, so a later match grants them afresh).
    pub fn drop_grants_except(
        &self,
        identity: &str,
        keep: &BTreeSet<Entitlement>,
    ) -> Result<(), JournalError> {
        let mut conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_drop_grants_except(pg, identity, keep),
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stale: Vec<(String, String, String)> = {
            let mut stmt =
                tx.prepare("SELECT provider, kind, target FROM grants WHERE identity = ?1")?;
            let rows =
                stmt.query_map(params![identity], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|(p, k, t): &(String, String, String)| {
                    !keep.contains(&Entitlement::new(p.as_str(), k.as_str(), t.as_str()))
                })
                .collect()
        };
        for (p, k, t) in stale {
            tx.execute(
                "DELETE FROM grants WHERE identity = ?1 AND provider = ?2 AND kind = ?3 AND target = ?4",
                params![identity, p, k, t],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The grants a filter selects: `(filter, args)` for SQLite and for PostgreSQL.
    fn grant_rows(
        &self,
        (filter, args): (&str, impl rusqlite::Params),
        (pg_filter, pg_args): (&str, &[&(dyn postgres::types::ToSql + Sync)]),
    ) -> Result<Vec<(String, GrantRecord)>, JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_grant_rows(pg, pg_filter, pg_args),
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT identity, provider, kind, target, rule, granted_at, expires_at, run_id \
             FROM grants {filter} ORDER BY identity, provider, kind, target"
        ))?;
        let rows = stmt.query_map(args, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (identity, provider, kind, target, rule, granted, expires, run_id) = row?;
            out.push((
                identity,
                GrantRecord {
                    entitlement: Entitlement::new(provider, kind, target),
                    rule,
                    granted_at: parse_ts(&granted)?,
                    expires_at: parse_ts(&expires)?,
                    run_id,
                },
            ));
        }
        Ok(out)
    }
}

fn pg_record_grant(pg: &PgConn, identity: &str, g: &GrantRecord) -> Result<(), JournalError> {
    let (granted, expires) = (ts(g.granted_at), ts(g.expires_at));
    pg.with(|c| {
        c.execute(
            "INSERT INTO grants \
             (identity, provider, kind, target, rule, granted_at, expires_at, run_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (identity, provider, kind, target) DO UPDATE SET rule = excluded.rule, \
             granted_at = excluded.granted_at, expires_at = excluded.expires_at, \
             run_id = excluded.run_id",
            &[
                &identity,
                &g.entitlement.provider,
                &g.entitlement.kind,
                &g.entitlement.target,
                &g.rule,
                &granted,
                &expires,
                &g.run_id,
            ],
        )?;
        Ok(())
    })
}

fn pg_drop_grants_except(
    pg: &PgConn,
    identity: &str,
    keep: &BTreeSet<Entitlement>,
) -> Result<(), JournalError> {
    pg.with(|c| {
        let mut tx = c.transaction()?;
        let rows = tx.query(
            "SELECT provider, kind, target FROM grants WHERE identity = $1 FOR UPDATE",
            &[&identity],
        )?;
        for row in rows {
            let (p, k, t): (String, String, String) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            if keep.contains(&Entitlement::new(p.as_str(), k.as_str(), t.as_str())) {
                continue;
            }
            tx.execute(
                "DELETE FROM grants WHERE identity = $1 AND provider = $2 AND kind = $3 \
                 AND target = $4",
                &[&identity, &p, &k, &t],
            )?;
        }
        tx.commit()?;
        Ok(())
    })
}

fn pg_grant_rows(
    pg: &PgConn,
    filter: &str,
    args: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<(String, GrantRecord)>, JournalError> {
    let rows = pg.with(|c| {
        c.query(
            &format!(
                "SELECT identity, provider, kind, target, rule, granted_at, expires_at, run_id \
                 FROM grants {filter} ORDER BY identity, provider, kind, target"
            ),
            args,
        )
        .map_err(JournalError::from)
    })?;
    let mut out = Vec::new();
    for r in rows {
        let granted: String = r.try_get(5)?;
        let expires: String = r.try_get(6)?;
        out.push((
            r.try_get(0)?,
            GrantRecord {
                entitlement: Entitlement::new(
                    r.try_get::<_, String>(1)?,
                    r.try_get::<_, String>(2)?,
                    r.try_get::<_, String>(3)?,
                ),
                rule: r.try_get(4)?,
                granted_at: parse_ts(&granted)?,
                expires_at: parse_ts(&expires)?,
                run_id: r.try_get(7)?,
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(target: &str, at: DateTime<Utc>) -> GrantRecord {
        GrantRecord {
            entitlement: Entitlement::new("aws", "group-membership", target),
            rule: "oncall".into(),
            granted_at: at,
            expires_at: at + chrono::Duration::hours(1),
            run_id: "r1".into(),
        }
    }

    #[test]
    fn every_grant_is_listed_with_its_identity_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        every_grant_is_listed_with_its_identity(Journal::open(&dir.path().join("j.db")).unwrap());
    }

    #[test]
    fn every_grant_is_listed_with_its_identity_on_postgres() {
        let (_dir, store) = crate::store::pg::testing::fresh();
        every_grant_is_listed_with_its_identity(Journal::open_postgres(&store));
    }

    fn every_grant_is_listed_with_its_identity(j: Journal) {
        assert!(j.grants().unwrap().is_empty());
        let t0 = Utc::now();
        j.record_grant("E2", &grant("oncall", t0)).unwrap();
        j.record_grant("E1", &grant("devs", t0)).unwrap();
        j.record_grant("E1", &grant("admins", t0)).unwrap();
        let all: Vec<(String, String)> = j
            .grants()
            .unwrap()
            .into_iter()
            .map(|(identity, g)| (identity, g.entitlement.target))
            .collect();
        assert_eq!(
            all,
            [("E1", "admins"), ("E1", "devs"), ("E2", "oncall")]
                .map(|(i, t)| (i.to_string(), t.to_string()))
        );
        assert_eq!(j.grants_of("E1").unwrap().len(), 2);
        assert_eq!(ts(j.grants().unwrap()[2].1.granted_at), ts(t0));
        // Expired at their expiry; a new record of an entitlement replaces the old one.
        let later = t0 + chrono::Duration::hours(2);
        assert_eq!(j.expired_grants(t0).unwrap().len(), 0);
        assert_eq!(j.expired_grants(later).unwrap().len(), 3);
        j.record_grant("E1", &grant("devs", later)).unwrap();
        let expired: Vec<String> = j
            .expired_grants(later)
            .unwrap()
            .into_iter()
            .map(|(_, g)| g.entitlement.target)
            .collect();
        assert_eq!(expired, ["admins", "oncall"]);
        // Only the kept entitlements of E1 stay; E2's are untouched.
        let keep = BTreeSet::from([Entitlement::new("aws", "group-membership", "devs")]);
        j.drop_grants_except("E1", &keep).unwrap();
        let left: Vec<(String, String)> = j
            .grants()
            .unwrap()
            .into_iter()
            .map(|(identity, g)| (identity, g.entitlement.target))
            .collect();
        assert_eq!(
            left,
            [("E1", "devs"), ("E2", "oncall")].map(|(i, t)| (i.to_string(), t.to_string()))
        );
    }
}
