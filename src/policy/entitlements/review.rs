//! The comparison at the heart of movers, joiners and policy drift: the entitlements an identity
//! holds (live findings the providers name as entitlements) against the ones the policy requires
//! for its attributes, taking the recorded expiry of time-bound grants into account.

use super::policy::Requirement;
use chrono::{DateTime, Utc};
use closeout_contract::{Entitlement, Finding};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub use crate::store::grants::GrantRecord;

/// Where a live entitlement stands against the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "standing")]
pub enum Standing {
    /// Some rule requires it; `expires_at` when every such rule is time-bound.
    Justified {
        /// The rules that require it, in file order.
        rules: Vec<String>,
        /// When the grant expires: the recorded grant's expiry, or, with no grant recorded, now
        /// plus the rule's duration. `None` when some rule requires it without a time bound.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
    /// No rule requires it (role creep, or the old role's access after a move).
    Unjustified,
    /// Only time-bound rules require it and its recorded grant has expired.
    Expired {
        /// The time-bound rules that required it, in file order.
        rules: Vec<String>,
        /// When the recorded grant expired.
        expires_at: DateTime<Utc>,
    },
}

impl Standing {
    /// Removed by a mover or an expiry run.
    pub fn is_removable(&self) -> bool {
        !matches!(self, Standing::Justified { .. })
    }
}

/// One entitlement the identity holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveEntitlement {
    /// The live finding that is the entitlement (a group membership, a role assignment, ...).
    pub finding: Finding,
    /// The entitlement, as its provider names it.
    pub entitlement: Entitlement,
    /// How it stands against the policy.
    #[serde(flatten)]
    pub standing: Standing,
}

/// One entitlement a rule requires that the identity does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingEntitlement {
    /// The entitlement to grant.
    pub entitlement: Entitlement,
    /// The rules that require it, in file order.
    pub rules: Vec<String>,
    /// When a time-bound grant made now would expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The identity's entitlements against the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// The entitlements the identity holds, each with its standing.
    pub live: Vec<LiveEntitlement>,
    /// The entitlements the policy requires that the identity does not hold (a joiner or mover
    /// grants them).
    pub missing: Vec<MissingEntitlement>,
    /// Time-bound entitlements held with no recorded grant: their clock starts now (the caller
    /// records them when it acts).
    pub unrecorded: Vec<GrantRecord>,
}

impl Review {
    /// The live entitlements to remove: unjustified or expired.
    pub fn removable(&self) -> impl Iterator<Item = &LiveEntitlement> {
        self.live.iter().filter(|l| l.standing.is_removable())
    }

    /// Nothing to remove and nothing missing: the live state equals the policy.
    pub fn conforms(&self) -> bool {
        self.removable().next().is_none() && self.missing.is_empty()
    }
}

/// Compare `live` (each finding with the entitlement its provider names it) with `required`.
/// `grants` are the identity's recorded time-bound grants (the latest per entitlement counts).
pub fn review(
    required: &BTreeMap<Entitlement, Requirement>,
    live: Vec<(Finding, Entitlement)>,
    grants: &[GrantRecord],
    now: DateTime<Utc>,
    run_id: &str,
) -> Review {
    let latest: BTreeMap<&Entitlement, &GrantRecord> = {
        let mut m: BTreeMap<&Entitlement, &GrantRecord> = BTreeMap::new();
        for g in grants {
            match m.get(&g.entitlement) {
                Some(existing) if existing.granted_at >= g.granted_at => {}
                _ => {
                    m.insert(&g.entitlement, g);
                }
            }
        }
        m
    };
    let mut out = Review::default();
    let held: BTreeSet<Entitlement> = live.iter().map(|(_, e)| e.clone()).collect();
    for (finding, entitlement) in live {
        let standing = match required.get(&entitlement) {
            None => Standing::Unjustified,
            Some(req) => match req.duration {
                None => Standing::Justified {
                    rules: req.rules.clone(),
                    expires_at: None,
                },
                Some(duration) => match latest.get(&entitlement) {
                    Some(g) if g.expires_at > now => Standing::Justified {
                        rules: req.rules.clone(),
                        expires_at: Some(g.expires_at),
                    },
                    Some(g) => Standing::Expired {
                        rules: req.rules.clone(),
                        expires_at: g.expires_at,
                    },
                    None => {
                        let expires_at = now + duration.to_chrono();
                        if !out.unrecorded.iter().any(|u| u.entitlement == entitlement) {
                            out.unrecorded.push(GrantRecord {
                                entitlement: entitlement.clone(),
                                rule: req.rules.first().cloned().unwrap_or_default(),
                                granted_at: now,
                                expires_at,
                                run_id: run_id.to_string(),
                            });
                        }
                        Standing::Justified {
                            rules: req.rules.clone(),
                            expires_at: Some(expires_at),
                        }
                    }
                },
            },
        };
        out.live.push(LiveEntitlement {
            finding,
            entitlement,
            standing,
        });
    }
    for (entitlement, req) in required {
        if held.contains(entitlement) {
            continue;
        }
        let expires_at = match req.duration {
            None => None,
            Some(duration) => match latest.get(entitlement) {
                // Granted for its time and expired: not granted again until the identity stops
                // and starts matching the rule again (the record is dropped in between).
                Some(g) if g.expires_at <= now => continue,
                Some(g) => Some(g.expires_at),
                None => Some(now + duration.to_chrono()),
            },
        };
        out.missing.push(MissingEntitlement {
            entitlement: entitlement.clone(),
            rules: req.rules.clone(),
            expires_at,
        });
    }
    out.live.sort_by(|a, b| a.finding.id.cmp(&b.finding.id));
    out
}

/// The findings every path of which passes through one of `removed` — what the identity could
/// reach only through entitlements being taken away (the secrets to rotate, the roles whose
/// sessions to revoke). A path passes through an entitlement when one of the entitlement
/// finding's own paths is a proper prefix of it; providers build paths so that holds.
pub fn only_through(removed: &[&Finding], findings: &[Finding]) -> BTreeSet<String> {
    let removed_ids: BTreeSet<&str> = removed.iter().map(|f| f.id.as_str()).collect();
    let prefixes: Vec<&closeout_contract::Path> =
        removed.iter().flat_map(|f| f.paths.iter()).collect();
    findings
        .iter()
        .filter(|f| !removed_ids.contains(f.id.as_str()) && !f.paths.is_empty())
        .filter(|f| {
            f.paths.iter().all(|path| {
                prefixes
                    .iter()
                    .any(|p| p.steps.len() < path.steps.len() && path.steps.starts_with(&p.steps))
            })
        })
        .map(|f| f.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grace::Grace;
    use closeout_contract::{Holder, Path, Relation, State};

    fn finding(id: &str, paths: Vec<Path>) -> Finding {
        Finding {
            id: id.into(),
            provider: "aws".into(),
            kind: "secret".into(),
            relation: Relation::CanRead,
            holder: Holder::Shared,
            resource: id.into(),
            display: id.into(),
            state: State::Active,
            paths,
            attributes: Default::default(),
        }
    }

    fn ent(target: &str) -> Entitlement {
        Entitlement::new("aws", "group-membership", target)
    }

    fn req(rules: &[&str], duration: Option<&str>) -> Requirement {
        Requirement {
            rules: rules.iter().map(|r| r.to_string()).collect(),
            duration: duration.map(|d| Grace::parse(d).unwrap()),
        }
    }

    #[test]
    fn live_entitlements_stand_justified_unjustified_or_expired() {
        let now = Utc::now();
        let required = BTreeMap::from([
            (ent("devs"), req(&["eng"], None)),
            (ent("admins"), req(&["oncall"], Some("8h"))),
            (ent("breakglass"), req(&["oncall"], Some("1h"))),
            (ent("readers"), req(&["eng"], None)),
            (ent("ops"), req(&["oncall"], Some("1h"))),
        ]);
        let grants = vec![
            GrantRecord {
                entitlement: ent("admins"),
                rule: "oncall".into(),
                granted_at: now - chrono::Duration::hours(9),
                expires_at: now - chrono::Duration::hours(1),
                run_id: "r0".into(),
            },
            GrantRecord {
                entitlement: ent("ops"),
                rule: "oncall".into(),
                granted_at: now - chrono::Duration::hours(2),
                expires_at: now - chrono::Duration::hours(1),
                run_id: "r0".into(),
            },
        ];
        let live = vec![
            (finding("a", vec![]), ent("devs")),
            (finding("b", vec![]), ent("legacy")),
            (finding("c", vec![]), ent("admins")),
            (finding("d", vec![]), ent("breakglass")),
        ];
        let r = review(&required, live, &grants, now, "r1");
        let standing: Vec<(&str, &Standing)> = r
            .live
            .iter()
            .map(|l| (l.finding.id.as_str(), &l.standing))
            .collect();
        assert!(matches!(
            standing[0].1,
            Standing::Justified {
                expires_at: None,
                ..
            }
        ));
        assert_eq!(standing[1].1, &Standing::Unjustified);
        assert!(matches!(standing[2].1, Standing::Expired { .. }));
        assert!(matches!(
            standing[3].1,
            Standing::Justified {
                expires_at: Some(_),
                ..
            }
        ));
        assert_eq!(r.unrecorded.len(), 1, "breakglass's clock starts now");
        let missing: Vec<&str> = r
            .missing
            .iter()
            .map(|m| m.entitlement.target.as_str())
            .collect();
        assert_eq!(missing, vec!["readers"], "expired ops is not granted again");
        assert!(!r.conforms());
    }

    #[test]
    fn reach_only_through_removed_entitlements_uses_path_prefixes() {
        let base = Path::new().then("account", "iam user a");
        let via_devs = base.then("member-of", "group devs");
        let via_ops = base.then("member-of", "group ops");
        let devs = finding("devs", vec![via_devs.clone()]);
        let only_devs = finding(
            "s1",
            vec![via_devs
                .then("attached", "policy p")
                .then("can-read", "secret s1")],
        );
        let both = finding(
            "s2",
            vec![
                via_devs.then("can-read", "secret s2"),
                via_ops.then("can-read", "secret s2"),
            ],
        );
        let own = finding("s3", vec![base.then("can-read", "secret s3")]);
        let all = vec![devs.clone(), only_devs, both, own];
        let got = only_through(&[&devs], &all);
        assert_eq!(got, BTreeSet::from(["s1".to_string()]));
    }
}
