//! What a file audit device's log says the person did: the tokens their requests created and
//! the leases their requests obtained.
//!
//! An orphan token carries no entity id, so the audit log is the only record of who created it.
//! The log HMACs accessors (`hmac-sha256:...`) with a key only the server holds, so accessors
//! are compared through `sys/audit-hash/<device>`; entity ids and lease ids are logged in clear.
//!
//! The log is streamed line by line and only the person's entries are kept, so memory follows
//! the person's activity, not the log's size.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::io::BufRead;

/// Who "the person" is in the log: their entity ids, and the HMACs of their tokens' accessors
/// (for tokens without an entity: owned tokens and orphans).
#[derive(Debug, Default)]
pub struct Requesters {
    pub entity_ids: BTreeSet<String>,
    pub accessor_hmacs: BTreeSet<String>,
}

impl Requesters {
    fn matches(&self, auth: &RequesterAuth) -> Option<String> {
        if !auth.entity_id.is_empty() && self.entity_ids.contains(&auth.entity_id) {
            return Some(format!("entity {}", auth.entity_id));
        }
        if !auth.accessor.is_empty() && self.accessor_hmacs.contains(&auth.accessor) {
            return Some(format!("token {}", auth.display_name));
        }
        None
    }
}

/// A token one of the person's requests created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedToken {
    pub time: DateTime<Utc>,
    /// The new token's accessor as the log has it (HMAC'd).
    pub accessor_hmac: String,
    /// The request path (`auth/token/create`, `auth/token/create-orphan`, ...).
    pub path: String,
    /// Who asked, as matched (`entity <id>` or `token <display name>`).
    pub by: String,
}

/// A lease one of the person's requests obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    pub lease_id: String,
    pub time: DateTime<Utc>,
    pub path: String,
    pub by: String,
}

/// The person's entries of one pass over the log.
#[derive(Debug, Default)]
pub struct AuditTrail {
    pub created: Vec<CreatedToken>,
    pub leases: Vec<LeaseGrant>,
    /// Lines that were not audit entries (truncated writes, other formats): counted, skipped.
    pub unreadable_lines: u64,
}

impl AuditTrail {
    /// True when a token created at `unix_seconds` may be one of `created` (the lookup's
    /// `creation_time` has whole seconds; the log has nanoseconds and is written after).
    pub fn created_near(&self, unix_seconds: i64) -> bool {
        self.created
            .iter()
            .any(|c| (c.time.timestamp() - unix_seconds).abs() <= NEAR_SECONDS)
    }
}

/// How far apart a token's `creation_time` and its audit entry may be.
const NEAR_SECONDS: i64 = 5;

/// True for the token store's create endpoints (`create`, `create-orphan`, `create/<role>`).
/// Logins create tokens too, but those carry the entity of whoever logged in.
fn is_token_create(path: &str) -> bool {
    path == "auth/token/create"
        || path == "auth/token/create-orphan"
        || path.starts_with("auth/token/create/")
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    entry_type: String,
    time: DateTime<Utc>,
    #[serde(default)]
    auth: Option<RequesterAuth>,
    #[serde(default)]
    request: Option<Request>,
    #[serde(default)]
    response: Option<Response>,
}

#[derive(Deserialize, Default)]
struct RequesterAuth {
    #[serde(default)]
    accessor: String,
    #[serde(default)]
    entity_id: String,
    #[serde(default)]
    display_name: String,
}

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    auth: Option<ResponseAuth>,
    #[serde(default)]
    secret: Option<ResponseSecret>,
}

#[derive(Deserialize)]
struct ResponseAuth {
    #[serde(default)]
    accessor: String,
}

#[derive(Deserialize)]
struct ResponseSecret {
    #[serde(default)]
    lease_id: String,
}

/// One pass over a log: the token creations and leases of `who`'s requests.
pub fn scan(log: impl BufRead, who: &Requesters) -> std::io::Result<AuditTrail> {
    let mut trail = AuditTrail::default();
    for line in log.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        // Cheap pre-filter: only responses are parsed.
        if !line.contains("\"response\"") {
            continue;
        }
        let Ok(entry) = serde_json::from_str::<Entry>(&line) else {
            trail.unreadable_lines += 1;
            continue;
        };
        if entry.entry_type != "response" {
            continue;
        }
        let (Some(auth), Some(request), Some(response)) =
            (entry.auth, entry.request, entry.response)
        else {
            continue;
        };
        let Some(by) = who.matches(&auth) else {
            continue;
        };
        if is_token_create(&request.path) {
            if let Some(created) = response.auth.filter(|a| !a.accessor.is_empty()) {
                trail.created.push(CreatedToken {
                    time: entry.time,
                    accessor_hmac: created.accessor,
                    path: request.path.clone(),
                    by: by.clone(),
                });
            }
        }
        if let Some(secret) = response.secret.filter(|s| !s.lease_id.is_empty()) {
            trail.leases.push(LeaseGrant {
                lease_id: secret.lease_id,
                time: entry.time,
                path: request.path,
                by,
            });
        }
    }
    Ok(trail)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "85a6b286-3499-589e-6c82-c508d457093b";

    // Shapes as OpenBao 2.7 writes them (trimmed).
    fn log() -> String {
        [
            // alice creates an orphan
            r#"{"time":"2026-11-30T16:39:13.90Z","type":"request","auth":{"accessor":"hmac-sha256:aa","entity_id":"85a6b286-3499-589e-6c82-c508d457093b"},"request":{"path":"auth/token/create"}}"#,
            r#"{"time":"2026-11-30T16:39:13.91Z","type":"response","auth":{"accessor":"hmac-sha256:aa","entity_id":"85a6b286-3499-589e-6c82-c508d457093b","display_name":"userpass-alice"},"request":{"path":"auth/token/create","data":{"no_parent":true}},"response":{"auth":{"accessor":"hmac-sha256:orphan1","client_token":"hmac-sha256:xx"}}}"#,
            // bob creates a token: not alice's
            r#"{"time":"2026-11-30T16:39:14Z","type":"response","auth":{"accessor":"hmac-sha256:bb","entity_id":"bob-entity"},"request":{"path":"auth/token/create"},"response":{"auth":{"accessor":"hmac-sha256:bobs"}}}"#,
            // the orphan (known by its HMAC) creates a child and obtains a PKI lease
            r#"{"time":"2026-11-30T16:39:15Z","type":"response","auth":{"accessor":"hmac-sha256:orphan1","display_name":"token"},"request":{"path":"auth/token/create/ci"},"response":{"auth":{"accessor":"hmac-sha256:child"}}}"#,
            r#"{"time":"2026-11-30T16:39:16Z","type":"response","auth":{"accessor":"hmac-sha256:orphan1","display_name":"token"},"request":{"path":"pki/issue/people"},"response":{"secret":{"lease_id":"pki/issue/people/abc"}}}"#,
            // a login is not a token-store creation
            r#"{"time":"2026-11-30T16:39:17Z","type":"response","auth":{"accessor":"hmac-sha256:new","entity_id":"85a6b286-3499-589e-6c82-c508d457093b"},"request":{"path":"auth/userpass/login/alice"},"response":{"auth":{"accessor":"hmac-sha256:new"}}}"#,
            // a write cut short
            r#"{"time":"2026-11-30T16:39:18Z","type":"response","auth":{"acc"#,
            "",
        ]
        .join("\n")
    }

    #[test]
    fn the_persons_creations_and_leases_are_kept_and_nothing_else() {
        let who = Requesters {
            entity_ids: [ALICE.to_string()].into(),
            accessor_hmacs: BTreeSet::new(),
        };
        let trail = scan(log().as_bytes(), &who).unwrap();
        assert_eq!(trail.created.len(), 1);
        assert_eq!(trail.created[0].accessor_hmac, "hmac-sha256:orphan1");
        assert_eq!(trail.created[0].by, format!("entity {ALICE}"));
        assert!(trail.leases.is_empty());
        assert_eq!(trail.unreadable_lines, 1);
        assert!(trail.created_near(trail.created[0].time.timestamp() + 3));
        assert!(!trail.created_near(trail.created[0].time.timestamp() + 60));

        let who = Requesters {
            entity_ids: BTreeSet::new(),
            accessor_hmacs: ["hmac-sha256:orphan1".to_string()].into(),
        };
        let trail = scan(log().as_bytes(), &who).unwrap();
        assert_eq!(trail.created.len(), 1);
        assert_eq!(trail.created[0].accessor_hmac, "hmac-sha256:child");
        assert_eq!(trail.created[0].path, "auth/token/create/ci");
        assert_eq!(trail.leases.len(), 1);
        assert_eq!(trail.leases[0].lease_id, "pki/issue/people/abc");
    }

    #[test]
    fn nobody_matches_an_empty_requester_set() {
        let trail = scan(log().as_bytes(), &Requesters::default()).unwrap();
        assert!(trail.created.is_empty() && trail.leases.is_empty());
    }
}
