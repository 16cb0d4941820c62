//! When each finding was first observed in its state: the start of a grace period for a
//! credential Closeout did not move into that state itself (e.g. a key already inactive).

use super::journal::{Journal, JournalError};
use super::pg::PgConn;
use super::sqlite::{parse_ts, ts};
use chrono::{DateTime, Utc};
use rusqlite::{params, TransactionBehavior};
use std::collections::BTreeMap;

impl Journal {
    /// Remember when each finding was first seen in its current state, so a grace period can
    /// start for credentials that were already inactive before Closeout acted on them.
    pub fn observe<'a>(
        &self,
        findings: impl IntoIterator<Item = (&'a str, &'a str)>,
        at: DateTime<Utc>,
    ) -> Result<(), JournalError> {
        let mut conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_observe(pg, findings, at),
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (finding, state) in findings {
            tx.execute(
                "INSERT INTO observations (finding_id, state, first_seen) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(finding_id) DO UPDATE SET state = excluded.state, first_seen = excluded.first_seen \
                 WHERE observations.state <> excluded.state",
                params![finding, state, ts(at)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// When each finding was first observed in the state recorded for it.
    pub fn observations(&self) -> Result<BTreeMap<String, (String, DateTime<Utc>)>, JournalError> {
        let conn = match self.conn() {
            Ok(conn) => conn,
            Err(pg) => return pg_observations(pg),
        };
        let mut stmt = conn.prepare("SELECT finding_id, state, first_seen FROM observations")?;
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
            out.insert(finding, (state, parse_ts(&at)?));
        }
        Ok(out)
    }
}

fn pg_observe<'a>(
    pg: &PgConn,
    findings: impl IntoIterator<Item = (&'a str, &'a str)>,
    at: DateTime<Utc>,
) -> Result<(), JournalError> {
    let at = ts(at);
    let findings: Vec<(&str, &str)> = findings.into_iter().collect();
    pg.with(|c| {
        let mut tx = c.transaction()?;
        for (finding, state) in findings {
            tx.execute(
                "INSERT INTO observations (finding_id, state, first_seen) VALUES ($1, $2, $3) \
                 ON CONFLICT (finding_id) DO UPDATE SET state = excluded.state, \
                 first_seen = excluded.first_seen WHERE observations.state <> excluded.state",
                &[&finding, &state, &at],
            )?;
        }
        tx.commit()?;
        Ok(())
    })
}

fn pg_observations(pg: &PgConn) -> Result<BTreeMap<String, (String, DateTime<Utc>)>, JournalError> {
    let rows = pg.with(|c| {
        c.query(
            "SELECT finding_id, state, first_seen FROM observations",
            &[],
        )
        .map_err(JournalError::from)
    })?;
    let mut out = BTreeMap::new();
    for r in rows {
        let at: String = r.try_get(2)?;
        out.insert(r.try_get(0)?, (r.try_get(1)?, parse_ts(&at)?));
    }
    Ok(out)
}
