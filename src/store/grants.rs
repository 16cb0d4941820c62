//! The grant ledger: time-bound grants Closeout made (or first saw held), with their expiry,
//! so the expiry scheduler can remove them and a run does not grant an expired one again.

use super::journal::{Journal, JournalError};
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
        self.conn().execute(
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
            .grant_rows("WHERE identity = ?1", params![identity])?
            .into_iter()
            .map(|(_, g)| g)
            .collect())
    }

    /// Every recorded grant, with its identity, ordered by identity and entitlement (for
    /// `closeout`'s readers and tests that check what the ledger holds as a whole).
    pub fn grants(&self) -> Result<Vec<(String, GrantRecord)>, JournalError> {
        self.grant_rows("", params![])
    }

    /// Every recorded grant whose expiry is at or before `now`, with its identity.
    pub fn expired_grants(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, GrantRecord)>, JournalError> {
        self.grant_rows("WHERE expires_at <= ?1", params![ts(now)])
    }

    /// Forget the identity's grant records for entitlements not in `keep` (it no longer matches
    /// their rule, so a later match grants them afresh).
    pub fn drop_grants_except(
        &self,
        identity: &str,
        keep: &BTreeSet<Entitlement>,
    ) -> Result<(), JournalError> {
        let mut conn = self.conn();
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

    fn grant_rows(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<(String, GrantRecord)>, JournalError> {
        let conn = self.conn();
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
    fn every_grant_is_listed_with_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(&dir.path().join("j.db")).unwrap();
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
    }
}
