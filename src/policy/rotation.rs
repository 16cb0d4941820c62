//! Scheduled rotation, evaluated: which findings the validated `[[rotation.policy]]` entries
//! ([`crate::config::rotation`]) make due. Pure; `crate::engine::rotation` resolves the
//! identities and `closeout rotate --due` and the serve scheduler act on the result.
//!
//! The facts come from each finding's attributes; each provider's capability table
//! (`Capabilities::ages`) says which attribute of which kind carries them. A finding whose
//! attribute is missing or unreadable is reported as "age unknown", never silently due or not
//! due.

use crate::config::rotation::{facts_of, Policy, Threshold};
use crate::grace::Grace;
use chrono::{DateTime, Utc};
use closeout_contract::Finding;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What the policy says of one finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A policy makes it due; the reason says which threshold it crossed (`... 95 days old >=
    /// 90d`).
    Due(String),
    /// The needed fact is missing or unreadable: neither due nor not due.
    Unknown(String),
    /// Policies apply, none makes it due, and each had the fact it needs.
    NotDue,
}

/// `30 days`, or `5h12m` under a day.
fn human(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    if secs >= 86_400 {
        let days = secs / 86_400;
        format!("{days} day{}", if days == 1 { "" } else { "s" })
    } else {
        Grace::from_seconds(secs as u64).to_string()
    }
}

/// Parse an RFC 3339 fact. `Ok(None)`: it never expires (`NEVER_EXPIRES`, or Vault's
/// `0001-01-01T00:00:00Z`).
fn time_fact(value: Option<&str>) -> Result<Option<DateTime<Utc>>, ()> {
    let v = value.map(str::trim).filter(|v| !v.is_empty()).ok_or(())?;
    if v == closeout_contract::NEVER_EXPIRES {
        return Ok(None);
    }
    let t = DateTime::parse_from_rfc3339(v).map_err(|_| ())?;
    let t = t.with_timezone(&Utc);
    Ok((t.timestamp() > 0).then_some(t))
}

/// Judge one open finding against the policies that apply to it; `None` when none applies. Due
/// if any policy makes it due; else unknown if any lacks its fact.
pub fn evaluate(policies: &[Policy], f: &Finding, now: DateTime<Utc>) -> Option<Verdict> {
    if !f.state.is_open() {
        return None;
    }
    let facts = facts_of(&f.provider, &f.kind);
    let mut verdict: Option<Verdict> = None;
    for p in policies.iter().filter(|p| p.applies_to(f)) {
        let v = match p.threshold {
            Threshold::MaxAge(max) => {
                let attr = facts.and_then(|x| x.created);
                match time_fact(attr.and_then(|a| f.attr(a))) {
                    Ok(Some(made)) => {
                        let age = now - made;
                        if age >= max.to_chrono() {
                            Verdict::Due(format!("{}: {} old >= {max}", f.display, human(age)))
                        } else {
                            Verdict::NotDue
                        }
                    }
                    _ => Verdict::Unknown(format!(
                        "{}: age unknown (no readable `{}` attribute)",
                        f.display,
                        attr.unwrap_or("created")
                    )),
                }
            }
            Threshold::ExpiresWithin(within) => {
                let attr = facts.and_then(|x| x.expires);
                match time_fact(attr.and_then(|a| f.attr(a))) {
                    Ok(Some(at)) if at - now <= within.to_chrono() => Verdict::Due(if at <= now {
                        format!("{}: expired {} ago", f.display, human(now - at))
                    } else {
                        format!("{}: expires in {} <= {within}", f.display, human(at - now))
                    }),
                    Ok(_) => Verdict::NotDue,
                    Err(()) => Verdict::Unknown(format!(
                        "{}: expiry unknown (no readable `{}` attribute)",
                        f.display,
                        attr.unwrap_or("expires")
                    )),
                }
            }
        };
        verdict = match (verdict, v) {
            (Some(Verdict::Due(r)), _) | (_, Verdict::Due(r)) => Some(Verdict::Due(r)),
            (Some(Verdict::Unknown(r)), _) | (_, Verdict::Unknown(r)) => Some(Verdict::Unknown(r)),
            _ => Some(Verdict::NotDue),
        };
    }
    verdict
}

/// A finding the policy makes due, or whose age is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DueFinding {
    /// The finding's id.
    pub id: String,
    /// Its provider.
    pub provider: String,
    /// Its kind.
    pub kind: String,
    /// How the finding is shown to a person.
    pub display: String,
    /// Why it is listed: the threshold crossed, or which fact is missing.
    pub reason: String,
}

/// One identity's due findings (it takes the shared ones no earlier identity took).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DueIdentity {
    /// The identity's id in the source.
    pub identity: String,
    /// Findings a policy makes due: the scheduled rotation acts on these.
    pub due: Vec<DueFinding>,
    /// Findings whose age or expiry is unknown: reported, never acted on.
    pub unknown: Vec<DueFinding>,
}

impl DueIdentity {
    /// The ids of the due findings (not the unknown ones): what a rotation run acts on.
    pub fn ids(&self) -> BTreeSet<String> {
        self.due.iter().map(|d| d.id.clone()).collect()
    }
}

/// The result of a due check over many identities (`closeout rotate --due`, the serve scheduler).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DueReport {
    /// How many identities were checked.
    pub checked: usize,
    /// Only identities with something due or unknown, in source order.
    pub identities: Vec<DueIdentity>,
}

impl DueReport {
    /// How many findings are due, over all identities.
    pub fn due_count(&self) -> usize {
        self.identities.iter().map(|i| i.due.len()).sum()
    }

    /// How many findings have an unknown age or expiry, over all identities.
    pub fn unknown_count(&self) -> usize {
        self.identities.iter().map(|i| i.unknown.len()).sum()
    }

    /// The report as `closeout rotate --due` prints it: a summary line, then each identity's due
    /// and unknown findings.
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "rotate: {} identit{} checked, {} finding(s) due, {} with unknown age\n",
            self.checked,
            if self.checked == 1 { "y" } else { "ies" },
            self.due_count(),
            self.unknown_count()
        );
        for i in &self.identities {
            out.push_str(&format!("  {}\n", i.identity));
            for d in &i.due {
                out.push_str(&format!("    due      {}\n", d.reason));
            }
            for d in &i.unknown {
                out.push_str(&format!("    unknown  {}\n", d.reason));
            }
        }
        out
    }
}

/// Which findings are due, per identity, in the given (source) order. A finding several
/// identities reach (a shared secret) is taken by the first: it is rotated once. Pure.
pub fn select_due(
    policies: &[Policy],
    resolved: &[(String, Vec<Finding>)],
    now: DateTime<Utc>,
) -> DueReport {
    let mut taken: BTreeSet<&str> = BTreeSet::new();
    let mut identities = Vec::new();
    for (identity, findings) in resolved {
        let mut entry = DueIdentity {
            identity: identity.clone(),
            due: Vec::new(),
            unknown: Vec::new(),
        };
        for f in findings {
            if taken.contains(f.id.as_str()) {
                continue;
            }
            let (list, reason) = match evaluate(policies, f, now) {
                Some(Verdict::Due(r)) => (&mut entry.due, r),
                Some(Verdict::Unknown(r)) => (&mut entry.unknown, r),
                _ => continue,
            };
            taken.insert(f.id.as_str());
            list.push(DueFinding {
                id: f.id.clone(),
                provider: f.provider.clone(),
                kind: f.kind.clone(),
                display: f.display.clone(),
                reason,
            });
        }
        if !entry.due.is_empty() || !entry.unknown.is_empty() {
            identities.push(entry);
        }
    }
    DueReport {
        checked: resolved.len(),
        identities,
    }
}

/// The finding ids a scheduled rotation event carries (attribute `findings`, space-separated).
pub const EVENT_FINDINGS: &str = "findings";

/// The finding ids a rotation event carries in its [`EVENT_FINDINGS`] attribute; `None` when it has
/// no such attribute.
pub fn event_findings(attributes: &BTreeMap<String, String>) -> Option<BTreeSet<String>> {
    attributes
        .get(EVENT_FINDINGS)
        .map(|v| v.split_whitespace().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::rotation::RotationConfig;
    use closeout_contract::{Holder, HolderKind, Path as FPath, Relation, State};
    use serde::Deserialize;

    fn now() -> DateTime<Utc> {
        "2026-11-30T12:00:00Z".parse().unwrap()
    }

    fn config(text: &str) -> Result<Vec<Policy>, String> {
        #[derive(Deserialize)]
        struct Wrap {
            rotation: RotationConfig,
        }
        let w: Wrap = toml::from_str(text).map_err(|e| e.to_string())?;
        w.rotation.policies().map_err(|e| e.to_string())
    }

    fn finding(
        provider: &str,
        kind: &str,
        id: &str,
        holder: Holder,
        attrs: &[(&str, &str)],
    ) -> Finding {
        Finding {
            id: format!("{provider}:{kind}:{id}"),
            provider: provider.into(),
            kind: kind.into(),
            relation: Relation::Owns,
            holder,
            resource: id.into(),
            display: format!("{kind} {id}"),
            state: State::Active,
            paths: vec![FPath::new().then("owns", id)],
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn policies_parse_and_bad_ones_are_named() {
        let p = config(
            r#"
[[rotation.policy]]
provider = "aws"
kind = "access-key"
holder = "nhi"
max_age = "90d"

[[rotation.policy]]
provider = "azure"
kind = ["app-password", "app-certificate"]
expires_within = "30d"
"#,
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].holder, Some(HolderKind::Nhi));
        assert_eq!(
            p[0].threshold,
            Threshold::MaxAge(Grace::from_seconds(90 * 86_400))
        );
        assert_eq!(p[1].kinds, ["app-password", "app-certificate"]);

        let err = |body: &str| config(&format!("[[rotation.policy]]\n{body}")).unwrap_err();
        assert!(err("provider = \"gcp\"\nkind = \"x\"\nmax_age = \"1d\"")
            .contains("unknown provider \"gcp\""));
        assert!(err("provider = \"aws\"\nkind = \"nope\"\nmax_age = \"1d\"")
            .contains("no kind \"nope\""));
        assert!(err("provider = \"aws\"\nkind = \"user\"\nmax_age = \"1d\"")
            .contains("cannot be rotated"));
        assert!(err("provider = \"aws\"\nkind = \"secret\"").contains("give one threshold"));
        assert!(err(
            "provider = \"aws\"\nkind = \"secret\"\nmax_age = \"1d\"\nexpires_within = \"1d\""
        )
        .contains("not both"));
        assert!(
            err("provider = \"aws\"\nkind = \"secret\"\nmax_age = \"90\"")
                .contains("max_age: bad duration `90`")
        );
        assert!(
            err("provider = \"aws\"\nkind = \"secret\"\nexpires_within = \"9d\"")
                .contains("does not report an expiry")
        );
        assert!(
            err("provider = \"azure\"\nkind = \"app-password\"\nmax_age = \"9d\"")
                .contains("does not report when it was made")
        );
        assert!(
            err("provider = \"aws\"\nkind = \"secret\"\nholder = \"me\"\nmax_age = \"1d\"")
                .contains("unknown holder")
        );
        assert!(err("provider = \"aws\"\nkind = \"secret\"\nmaxage = \"1d\"").contains("maxage"));
        assert!(err("provider = \"aws\"\nkind = \"user\"\nmax_age = \"1d\"")
            .starts_with("[[rotation.policy]] #1:"));
    }

    #[test]
    fn age_and_expiry_decide_due_and_missing_facts_are_unknown() {
        let p = config(
            "[[rotation.policy]]\nprovider = \"aws\"\nkind = [\"access-key\", \"secret\"]\nmax_age = \"90d\"\n\
             [[rotation.policy]]\nprovider = \"vault\"\nkind = \"approle-secret-id\"\nexpires_within = \"30d\"\n",
        )
        .unwrap();
        let old = finding(
            "aws",
            "access-key",
            "AKIAOLD",
            Holder::Nhi("svc-x".into()),
            &[("created", "2026-08-01T00:00:00Z")],
        );
        match evaluate(&p, &old, now()) {
            Some(Verdict::Due(r)) => assert_eq!(r, "access-key AKIAOLD: 121 days old >= 90d"),
            v => panic!("{v:?}"),
        }
        let young = finding(
            "aws",
            "secret",
            "s",
            Holder::Shared,
            &[("current_version_created", "2026-11-01T00:00:00Z")],
        );
        assert_eq!(evaluate(&p, &young, now()), Some(Verdict::NotDue));
        let blank = finding(
            "aws",
            "access-key",
            "AKIANEW",
            Holder::Account,
            &[("created", "")],
        );
        assert!(
            matches!(evaluate(&p, &blank, now()), Some(Verdict::Unknown(r)) if r.contains("age unknown"))
        );
        let expiring = finding(
            "vault",
            "approle-secret-id",
            "a",
            Holder::Nhi("e".into()),
            &[("expires", "2026-12-10T00:00:00.123Z")],
        );
        assert!(
            matches!(evaluate(&p, &expiring, now()), Some(Verdict::Due(r)) if r.contains("expires in 9 days <= 30d"))
        );
        let never = finding(
            "vault",
            "approle-secret-id",
            "b",
            Holder::Nhi("e".into()),
            &[("expires", "0001-01-01T00:00:00Z")],
        );
        assert_eq!(evaluate(&p, &never, now()), Some(Verdict::NotDue));
        let said_never = finding(
            "vault",
            "approle-secret-id",
            "n",
            Holder::Nhi("e".into()),
            &[("expires", closeout_contract::NEVER_EXPIRES)],
        );
        assert_eq!(evaluate(&p, &said_never, now()), Some(Verdict::NotDue));
        let garbled = finding(
            "vault",
            "approle-secret-id",
            "c",
            Holder::Nhi("e".into()),
            &[("expires", "soon")],
        );
        assert!(matches!(
            evaluate(&p, &garbled, now()),
            Some(Verdict::Unknown(_))
        ));
        // No policy for the kind: nothing to say.
        let other = finding("vault", "kv-secret", "k", Holder::Shared, &[]);
        assert_eq!(evaluate(&p, &other, now()), None);
        // Not open: not due whatever its age.
        let mut inactive = old.clone();
        inactive.state = State::Inactive;
        assert_eq!(evaluate(&p, &inactive, now()), None);
        // Holder narrows.
        let p = config("[[rotation.policy]]\nprovider = \"aws\"\nkind = \"access-key\"\nholder = \"nhi\"\nmax_age = \"0s\"\n").unwrap();
        let own = finding(
            "aws",
            "access-key",
            "AKIAME",
            Holder::Account,
            &[("created", "2020-01-01T00:00:00Z")],
        );
        assert_eq!(evaluate(&p, &own, now()), None);
        assert!(matches!(evaluate(&p, &old, now()), Some(Verdict::Due(_))));
    }

    #[test]
    fn a_shared_secret_is_taken_by_the_first_identity_in_source_order() {
        let p = config(
            "[[rotation.policy]]\nprovider = \"aws\"\nkind = \"secret\"\nmax_age = \"1d\"\n",
        )
        .unwrap();
        let shared = finding(
            "aws",
            "secret",
            "db",
            Holder::Shared,
            &[("current_version_created", "2026-01-01T00:00:00Z")],
        );
        let mine = finding(
            "aws",
            "secret",
            "b-own",
            Holder::Shared,
            &[("current_version_created", "2026-01-01T00:00:00Z")],
        );
        let resolved = vec![
            ("E1".to_string(), vec![shared.clone()]),
            ("E2".to_string(), vec![shared, mine]),
            ("E3".to_string(), vec![]),
        ];
        let r = select_due(&p, &resolved, now());
        assert_eq!(r.checked, 3);
        assert_eq!(r.identities.len(), 2);
        assert_eq!(r.identities[0].ids(), ["aws:secret:db".to_string()].into());
        assert_eq!(
            r.identities[1].ids(),
            ["aws:secret:b-own".to_string()].into()
        );
        assert_eq!(r.due_count(), 2);
        assert!(r
            .render_text()
            .contains("due      secret db: 333 days old >= 1d"));
    }

    #[test]
    fn events_carry_the_due_finding_ids() {
        let attrs: BTreeMap<String, String> = [(
            EVENT_FINDINGS.to_string(),
            "aws:secret:a aws:access-key:K".to_string(),
        )]
        .into();
        assert_eq!(
            event_findings(&attrs).unwrap(),
            ["aws:secret:a".to_string(), "aws:access-key:K".to_string()].into()
        );
        assert_eq!(event_findings(&BTreeMap::new()), None);
    }
}
