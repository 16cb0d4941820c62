//! Federated access, pure: the roles a person signs in to without an IAM user.
//!
//! - IAM Identity Center: the person's Identity Store user, its group memberships and the
//!   account assignments of permission sets (direct and through groups) become findings, and
//!   each assignment in this account leads to the role Identity Center provisions for the
//!   permission set (`AWSReservedSSO_<permission set>_<suffix>`), where reach goes on.
//! - SAML / OIDC: a role whose trust policy lets a SAML or OIDC provider's users assume it is the
//!   person's when its conditions hold for the person's claims (`[providers.aws.federation]`). A
//!   condition that cannot be evaluated leaves the path assumed, and the finding says why; with
//!   no claim mapping at all, each such role is a gap.
//! - Per-person session revocation: the role session names that identify the person on a role
//!   (the Identity Store user name; the configured SAML session name), the inline policy that
//!   denies their sessions alone, and when that deny can be removed again.

use crate::capabilities::{kinds, PROVIDER};
use crate::config::AwsConfig;
use crate::findings::Draft;
use crate::inventory::{account_of, rfc3339, Inventory};
use crate::policy::{PolicyDocument, Truth};
use crate::sso::SsoAccess;
use chrono::{DateTime, Utc};
use closeout_contract::{Finding, Gap, Identity, Path, Relation, State};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Gap kind: Identity Center could not be read.
pub const GAP_IDENTITY_CENTER: &str = "identity-center";
/// Gap kind: a role trusting a SAML or OIDC provider whose assumers cannot be told.
pub const GAP_FEDERATED_ROLE: &str = "federated-role";
/// Gap kind: an account assignment in another account (its roles are outside this provider).
pub const GAP_SSO_OTHER_ACCOUNT: &str = "sso-other-account";

/// The longest a role session can last (12 hours): a deny whose removal time cannot be read is
/// kept at least this long after its cut-off.
pub const MAX_SESSION_SECONDS: i64 = 12 * 3600;

/// A role the person signs in to through federation, with every path to it.
#[derive(Debug, Clone)]
pub struct FedRole {
    pub idx: usize,
    pub paths: Vec<Path>,
    /// `identity-center`, `saml` or `oidc`.
    pub via: &'static str,
    /// Role session names that are the person's on this role (empty: cannot be told apart).
    pub session_names: Vec<String>,
    /// Why a session name is not known, when it is not.
    pub no_session_name: Option<String>,
    /// Why the path is assumed rather than evaluated (conditions not evaluated).
    pub assumed: Vec<String>,
    /// The longest session the federation gives (a permission set's session duration).
    pub session_seconds: Option<i64>,
}

/// What federation adds to a resolution.
#[derive(Debug, Clone, Default)]
pub struct Federated {
    pub roles: Vec<FedRole>,
    pub findings: Vec<Finding>,
    pub gaps: Vec<Gap>,
    pub warnings: Vec<String>,
    /// The Identity Store user (id, name, how matched), when found: the person's account there.
    pub sso_user: Option<(String, String, String)>,
}

/// `PT8H`, `PT1H30M`, `PT3600S` in seconds.
pub fn iso_duration_seconds(text: &str) -> Option<i64> {
    let rest = text.trim().strip_prefix("PT")?;
    let mut total = 0i64;
    let mut num = String::new();
    for c in rest.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().ok()?;
        num.clear();
        total += match c {
            'H' => n * 3600,
            'M' => n * 60,
            'S' => n,
            _ => return None,
        };
    }
    num.is_empty().then_some(total)
}

/// The role Identity Center provisions for permission set `ps`: `AWSReservedSSO_<ps>_<suffix>`.
pub fn is_sso_role_for(role_name: &str, ps: &str) -> bool {
    role_name
        .strip_prefix("AWSReservedSSO_")
        .and_then(|r| r.strip_prefix(ps))
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|suffix| {
            !suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_alphanumeric())
        })
}

fn is_sso_role(role_name: &str) -> bool {
    role_name.starts_with("AWSReservedSSO_")
}

fn sso_base(user_name: &str) -> Path {
    Path::new().then("account", format!("identity center user {user_name}"))
}

/// The Identity Center findings and roles of `access` in account `account`.
pub fn identity_center(inv: &Inventory, access: &SsoAccess, account: &str) -> Federated {
    let mut out = Federated {
        warnings: access.warnings.clone(),
        ..Default::default()
    };
    let Some((user, matched_by)) = &access.user else {
        return out;
    };
    let store = &access.identity_store_id;
    let base = sso_base(&user.user_name);
    out.sso_user = Some((
        user.user_id.clone(),
        user.user_name.clone(),
        matched_by.clone(),
    ));
    let mut d = Draft::new(
        kinds::SSO_USER,
        user.user_id.clone(),
        format!("{store}/{}", user.user_id),
    )
    .attr("identity_store_id", store.clone())
    .attr("user_id", user.user_id.clone())
    .attr("user_name", user.user_name.clone())
    .attr("matched_by", matched_by.clone())
    .attr("user_status", user.status.clone().unwrap_or_default());
    d.display = format!("identity center user {}", user.user_name);
    d.state = if user.status.as_deref() == Some("DISABLED") {
        State::Disabled
    } else {
        State::Active
    };
    d.paths = vec![base.clone()];
    out.findings.push(d.build());

    let mut group_paths: BTreeMap<&str, Path> = BTreeMap::new();
    for m in &access.memberships {
        let path = base.then("member-of", format!("identity center group {}", m.group));
        let mut d = Draft::new(
            kinds::SSO_GROUP_MEMBERSHIP,
            m.membership_id.clone(),
            format!("{store}/{}", m.membership_id),
        )
        .attr("identity_store_id", store.clone())
        .attr("membership_id", m.membership_id.clone())
        .attr("group_id", m.group_id.clone())
        .attr("group", m.group.clone())
        .attr("user_id", user.user_id.clone())
        .attr("user_name", user.user_name.clone());
        d.relation = Relation::MemberOf;
        d.display = format!(
            "membership of identity center user {} in group {}",
            user.user_name, m.group
        );
        d.paths = vec![path.clone()];
        out.findings.push(d.build());
        group_paths.insert(m.group_id.as_str(), path);
    }

    let mut roles: BTreeMap<usize, FedRole> = BTreeMap::new();
    for a in &access.assignments {
        let ps = access.permission_sets.get(&a.permission_set_arn);
        let ps_name = ps
            .map(|p| p.name.as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or(a.permission_set_arn.as_str());
        let from = match a.principal_type.as_str() {
            "GROUP" => group_paths
                .get(a.principal_id.as_str())
                .cloned()
                .unwrap_or_else(|| base.clone()),
            _ => base.clone(),
        };
        let path = from.then(
            "assigned",
            format!("permission set {ps_name} in account {}", a.account),
        );
        let direct = a.principal_type == "USER";
        let kind = if direct {
            kinds::SSO_ACCOUNT_ASSIGNMENT
        } else {
            kinds::SSO_GROUP_ASSIGNMENT
        };
        let mut d = Draft::new(
            kind,
            format!("{}/{}/{}", a.account, a.permission_set_arn, a.principal_id),
            format!("{}/{}", a.account, a.permission_set_arn),
        )
        .attr("instance_arn", access.instance_arn.clone())
        .attr("account", a.account.clone())
        .attr("permission_set_arn", a.permission_set_arn.clone())
        .attr("permission_set", ps_name)
        .attr("principal_type", a.principal_type.clone())
        .attr("principal_id", a.principal_id.clone())
        .attr("group", a.group.clone().unwrap_or_default())
        .attr("user_name", user.user_name.clone());
        if !direct {
            d.relation = Relation::MemberOf;
        }
        d.display = match &a.group {
            Some(g) => format!(
                "permission set {ps_name} in account {} assigned to identity center group {g}",
                a.account
            ),
            None => format!(
                "permission set {ps_name} in account {} assigned to identity center user {}",
                a.account, user.user_name
            ),
        };
        d.paths = vec![path.clone()];
        out.findings.push(d.build());

        if a.account != account {
            out.gaps.push(Gap {
                provider: PROVIDER.to_string(),
                kind: GAP_SSO_OTHER_ACCOUNT.to_string(),
                resource: format!("{}/{}", a.account, a.permission_set_arn),
                reason: format!(
                    "permission set {ps_name} is assigned in account {}, which this provider does not read (it reads account {account}): the role it provisions there and what that reaches are unknown",
                    a.account
                ),
                paths: vec![path],
            });
            continue;
        }
        let matching: Vec<usize> = inv
            .roles
            .iter()
            .enumerate()
            .filter(|(_, r)| is_sso_role_for(&r.name, ps_name))
            .map(|(i, _)| i)
            .collect();
        if matching.is_empty() {
            out.warnings.push(format!(
                "permission set {ps_name} is assigned in account {account} but no role AWSReservedSSO_{ps_name}_… exists there (not provisioned yet)"
            ));
        }
        let seconds = ps
            .and_then(|p| p.session_duration.as_deref())
            .and_then(iso_duration_seconds);
        for idx in matching {
            let role = &inv.roles[idx];
            let e = roles.entry(idx).or_insert_with(|| FedRole {
                idx,
                paths: Vec::new(),
                via: "identity-center",
                session_names: vec![user.user_name.clone()],
                no_session_name: None,
                assumed: Vec::new(),
                session_seconds: seconds,
            });
            let p = path.then("provisions", format!("role {}", role.name));
            if !e.paths.contains(&p) {
                e.paths.push(p);
            }
            e.session_seconds = e.session_seconds.max(seconds);
        }
    }
    out.roles = roles.into_values().collect();
    out
}

/// The roles whose trust policy lets a SAML or OIDC provider's users assume them, as they stand
/// for `identity` under the claim mapping (Identity Center's own roles are left to
/// [`identity_center`]).
pub fn federated_roles(inv: &Inventory, identity: &Identity, config: &AwsConfig) -> Federated {
    let mut out = Federated::default();
    for (idx, role) in inv.roles.iter().enumerate() {
        if is_sso_role(&role.name) {
            continue;
        }
        let Some(trust) = &role.trust else { continue };
        let allows = trust.federated_allows();
        if allows.is_empty() {
            continue;
        }
        let Some(fed) = &config.federation else {
            let providers: Vec<&str> = allows
                .iter()
                .flat_map(|a| a.providers.iter().map(String::as_str))
                .collect();
            out.gaps.push(Gap {
                provider: PROVIDER.to_string(),
                kind: GAP_FEDERATED_ROLE.to_string(),
                resource: role.arn.clone(),
                reason: format!(
                    "role {} trusts federated provider {}, and no claim mapping ([providers.aws.federation]) says what the identity's claims are: whether it can assume the role is unknown",
                    role.name,
                    providers.join(", ")
                ),
                paths: vec![Path::new()
                    .then("federated", providers.join(", "))
                    .then("can-assume", format!("role {}", role.name))],
            });
            continue;
        };
        let value_of = |key: &str| fed.claim(key, identity);
        // The best way in: evaluated true over assumed (unknown); false is no way in. A provider
        // the configuration does not list as signing people in is not a way in.
        let mut best: Option<(Truth, &[String])> = None;
        for a in &allows {
            if !a.providers.iter().any(|p| fed.signs_in_people(p)) {
                continue;
            }
            let t = Truth::all(a.conditions.iter().map(|c| c.evaluate(&value_of)));
            let better = match (&best, &t) {
                (_, Truth::False) => false,
                (None, _) => true,
                (Some((Truth::Unknown(_), _)), Truth::True) => true,
                _ => false,
            };
            if better {
                best = Some((t, a.providers));
            }
        }
        let Some((truth, providers)) = best else {
            continue;
        };
        let via = if providers.iter().any(|p| p.contains(":saml-provider/")) {
            "saml"
        } else {
            "oidc"
        };
        let provider_names: Vec<&str> = providers
            .iter()
            .map(|p| p.rsplit('/').next().unwrap_or(p))
            .collect();
        let path = Path::new()
            .then(
                "federated",
                format!("{via} provider {}", provider_names.join(", ")),
            )
            .then("can-assume", format!("role {}", role.name));
        let (session_names, no_session_name) = match fed.session_name {
            Some(field) => {
                let names = field.values(identity);
                let why = names.is_empty().then(|| {
                    format!("the identity has no {} (federation.session_name)", field.describe())
                });
                (names, why)
            }
            None => (
                Vec::new(),
                Some("federation.session_name is not set: the role session name the identity provider sends is unknown".to_string()),
            ),
        };
        out.roles.push(FedRole {
            idx,
            paths: vec![path],
            via,
            session_names,
            no_session_name,
            assumed: match truth {
                Truth::Unknown(why) => vec![why],
                _ => Vec::new(),
            },
            session_seconds: None,
        });
    }
    out
}

/// The name of the inline policy that denies the sessions of `identity` alone on a role:
/// `<session_revoke_policy>.<identity id>` (a hash of the id when it is not a valid policy name).
pub fn person_policy_name(config: &AwsConfig, identity: &Identity) -> String {
    let id = identity.id.trim();
    let prefix = &config.session_revoke_policy;
    let ok = !id.is_empty()
        && prefix.len() + 1 + id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if ok {
        format!("{prefix}.{id}")
    } else {
        let hash = Sha256::digest(id.as_bytes());
        let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{prefix}.{hex}")
    }
}

const RETIRE_SID: &str = "CloseoutRemovableAfter";

/// The person-scoped session deny: sessions of the role whose `aws:userid` is one of `userids`
/// (`<role id>:<session name>`) and that were issued before `cutoff` are denied everything. The
/// statement id carries `removable_after` (every such session has expired by then).
pub fn person_deny_document(
    userids: &[String],
    cutoff: DateTime<Utc>,
    removable_after: DateTime<Utc>,
) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": format!("{RETIRE_SID}{}", removable_after.format("%Y%m%dT%H%M%SZ")),
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                "StringLike": {"aws:userid": userids},
                "DateLessThan": {"aws:TokenIssueTime": rfc3339(cutoff)}
            }
        }]
    })
    .to_string()
}

/// When a session deny may be removed: the time in its statement id, else its cut-off plus the
/// longest session AWS allows; `None` when neither can be read.
pub fn removable_after(text: &str) -> Option<DateTime<Utc>> {
    let json = crate::policy::decode_document(text).ok()?;
    let value: Value = serde_json::from_str(&json).ok()?;
    let statements: Vec<&Value> = match value.get("Statement")? {
        Value::Array(list) => list.iter().collect(),
        obj @ Value::Object(_) => vec![obj],
        _ => return None,
    };
    let from_sid = statements.iter().find_map(|s| {
        let sid = s.get("Sid")?.as_str()?.strip_prefix(RETIRE_SID)?;
        chrono::NaiveDateTime::parse_from_str(sid, "%Y%m%dT%H%M%SZ")
            .ok()
            .map(|t| t.and_utc())
    });
    from_sid.or_else(|| {
        PolicyDocument::token_issue_cutoff(text)
            .map(|c| c + chrono::Duration::seconds(MAX_SESSION_SECONDS))
    })
}

/// The `aws:userid` values a person-scoped deny names.
pub fn denied_userids(text: &str) -> Vec<String> {
    let Ok(doc) = PolicyDocument::parse(text) else {
        return Vec::new();
    };
    doc.statements
        .iter()
        .flat_map(|s| s.conditions.iter())
        .filter(|c| c.key.eq_ignore_ascii_case("aws:userid"))
        .flat_map(|c| c.values.iter().cloned())
        .collect()
}

/// The person-scoped session denies Closeout put on roles for `identity`: in force (`revoked`)
/// until their sessions' maximum lifetime has passed, then `inactive` — inert, for a retire step
/// to remove.
pub fn session_denies(
    inv: &Inventory,
    identity: &Identity,
    config: &AwsConfig,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let name = person_policy_name(config, identity);
    let mut out = Vec::new();
    for role in &inv.roles {
        let Some(p) = role.inline.iter().find(|p| p.name == name) else {
            continue;
        };
        let after = removable_after(&p.text);
        let mut d = Draft::new(
            kinds::SESSION_DENY,
            format!("{}/{}", role.name, name),
            format!("{}/{}", role.arn, name),
        )
        .attr("role", role.name.clone())
        .attr("policy", name.clone())
        .attr("userids", denied_userids(&p.text).join(","))
        .attr("removable_after", after.map(rfc3339).unwrap_or_default());
        d.relation = Relation::CanAssume;
        d.display = format!("session deny {name} on role {}", role.name);
        d.state = match after {
            Some(t) if t <= now => State::Inactive,
            _ => State::Revoked,
        };
        d.paths = vec![Path::new()
            .then("denied-on", format!("role {}", role.name))
            .then("inline", format!("inline policy {name}"))];
        out.push(d.build());
    }
    out
}

/// Make the finding of a role the person signs in to through federation say so: how it is
/// entered, every federated path, the conditions assumed, and whose sessions `revoke-sessions`
/// denies — the person's alone (`revoke_scope = person`, with the session names and the policy)
/// when the person can be told apart, else every session of the role, with the reason.
pub fn federated_role_finding(
    f: &mut Finding,
    fr: &FedRole,
    only_started: bool,
    inv: &Inventory,
    identity: &Identity,
    config: &AwsConfig,
    cutoff: Option<DateTime<Utc>>,
) {
    let role = &inv.roles[fr.idx];
    f.attributes.insert("trust".into(), fr.via.to_string());
    f.relation = Relation::CanAssume;
    let mut paths = fr.paths.clone();
    for p in &f.paths {
        if !paths.contains(p) {
            paths.push(p.clone());
        }
    }
    f.paths = paths;
    if !fr.assumed.is_empty() {
        f.attributes.insert(
            "conditions".into(),
            format!("assumed to hold (not evaluated): {}", fr.assumed.join("; ")),
        );
    }
    if let Some(s) = fr.session_seconds {
        f.attributes.insert("session_seconds".into(), s.to_string());
    }
    let why_not = if !only_started {
        Some("the role is also reached from other principals, whose session names are not the person's".to_string())
    } else if role.id.is_empty() {
        Some("the role's unique id is unknown".to_string())
    } else {
        fr.no_session_name.clone()
    };
    match why_not {
        None if !fr.session_names.is_empty() => {
            let policy = person_policy_name(config, identity);
            f.attributes.insert("revoke_scope".into(), "person".into());
            f.attributes
                .insert("session_names".into(), fr.session_names.join(","));
            f.attributes.insert("role_id".into(), role.id.clone());
            f.attributes.insert("revoke_policy".into(), policy.clone());
            let text = role
                .inline
                .iter()
                .find(|p| p.name == policy)
                .map(|p| p.text.as_str());
            let covered = text.is_some_and(|t| {
                let denied = denied_userids(t);
                fr.session_names
                    .iter()
                    .all(|n| denied.contains(&format!("{}:{n}", role.id)))
            });
            if covered && crate::state::session_state(text, cutoff) == State::Revoked {
                f.state = State::Revoked;
                if let Some(t) = text.and_then(PolicyDocument::token_issue_cutoff) {
                    f.attributes
                        .insert("sessions_revoked_before".into(), rfc3339(t));
                }
            }
        }
        why => {
            let why = why.unwrap_or_else(|| "no session name identifies the person".into());
            f.attributes.insert("revoke_scope".into(), "role".into());
            f.attributes
                .insert("revoke_scope_reason".into(), why.clone());
            f.display = format!(
                "{} (revoke-sessions cuts every session of the role: {why})",
                f.display
            );
        }
    }
}

/// The account of the inventory's principals (empty when it has none).
pub fn inventory_account(inv: &Inventory) -> Option<&str> {
    inv.roles
        .iter()
        .map(|r| r.arn.as_str())
        .chain(inv.users.iter().map(|u| u.arn.as_str()))
        .find_map(account_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClaimSource, FederationConfig, IdentityField};
    use crate::inventory::InlinePolicy;
    use crate::tests::{identity, role, ACCT};
    use serde_json::json;

    #[test]
    fn durations_and_sso_role_names() {
        assert_eq!(iso_duration_seconds("PT8H"), Some(8 * 3600));
        assert_eq!(iso_duration_seconds("PT1H30M"), Some(5400));
        assert_eq!(iso_duration_seconds("PT90S"), Some(90));
        assert_eq!(iso_duration_seconds("P1D"), None);
        assert!(is_sso_role_for(
            "AWSReservedSSO_Admin_0123456789abcdef",
            "Admin"
        ));
        assert!(!is_sso_role_for(
            "AWSReservedSSO_AdminPlus_0123456789abcdef",
            "Admin"
        ));
        assert!(!is_sso_role_for("Admin", "Admin"));
    }

    #[test]
    fn person_deny_matches_the_person_alone_and_carries_its_removal_time() {
        let cutoff: DateTime<Utc> = "2026-12-07T15:00:00Z".parse().unwrap();
        let after = cutoff + chrono::Duration::hours(8);
        let text = person_deny_document(&["AROAROLE:dana@example.com".into()], cutoff, after);
        let doc = PolicyDocument::parse(&text).unwrap();
        let before = cutoff - chrono::Duration::minutes(5);
        assert!(doc.denies_session("AROAROLE:dana@example.com", before));
        assert!(!doc.denies_session("AROAROLE:carol@example.com", before));
        // A session the person starts after the cut-off is not denied by it.
        assert!(!doc.denies_session(
            "AROAROLE:dana@example.com",
            cutoff + chrono::Duration::minutes(1)
        ));
        assert_eq!(removable_after(&text), Some(after));
        assert_eq!(denied_userids(&text), vec!["AROAROLE:dana@example.com"]);
        // Without the statement id: the cut-off plus the longest session.
        let role_wide = crate::iam_verbs::revoke_policy_document(cutoff);
        assert_eq!(
            removable_after(&role_wide),
            Some(cutoff + chrono::Duration::hours(12))
        );
    }

    #[test]
    fn saml_trust_conditions_follow_the_claim_mapping() {
        let trust = |cond: serde_json::Value| {
            json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": format!("arn:aws:iam::{ACCT}:saml-provider/okta")},
                "Action": "sts:AssumeRoleWithSAML",
                "Condition": cond
            }]})
        };
        let mut inv = Inventory::default();
        let mut r = role(
            "eng-saml",
            trust(
                json!({"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml", "saml:sub": "dana.kim@example.com"}}),
            ),
        );
        r.inline.clear();
        inv.roles.push(r);
        inv.roles.push(role(
            "ops-saml",
            trust(json!({"StringEquals": {"saml:sub": "someone@example.com"}})),
        ));
        inv.roles.push(role(
            "team-saml",
            trust(json!({"ForAnyValue:StringLike": {"saml:groups": "eng-*"}})),
        ));
        let dana = identity("E1005", "dana.kim@example.com");

        // No mapping: every federated role is a gap, none is silently nobody's.
        let out = federated_roles(&inv, &dana, &AwsConfig::default());
        assert!(out.roles.is_empty());
        assert_eq!(out.gaps.len(), 3);

        let mut claims = BTreeMap::new();
        claims.insert("saml:sub".into(), ClaimSource::Field(IdentityField::Email));
        claims.insert(
            "saml:aud".into(),
            ClaimSource::Value("https://signin.aws.amazon.com/saml".into()),
        );
        let cfg = AwsConfig {
            federation: Some(FederationConfig {
                claims,
                session_name: Some(IdentityField::Email),
                providers: Vec::new(),
            }),
            ..Default::default()
        };
        let out = federated_roles(&inv, &dana, &cfg);
        let names: Vec<(&str, bool)> = out
            .roles
            .iter()
            .map(|r| (inv.roles[r.idx].name.as_str(), r.assumed.is_empty()))
            .collect();
        // eng-saml evaluated true; ops-saml evaluated false (dropped, it is someone else's);
        // team-saml's group claim is not mapped: assumed, with the reason.
        assert_eq!(names, vec![("eng-saml", true), ("team-saml", false)]);
        assert!(
            out.roles[1].assumed[0].contains("saml:groups"),
            "{:?}",
            out.roles[1].assumed
        );
        assert_eq!(out.roles[0].session_names, vec!["dana.kim@example.com"]);
        assert_eq!(out.roles[0].via, "saml");

        // Only the providers listed sign people in.
        let mut only_azure = cfg.clone();
        if let Some(f) = only_azure.federation.as_mut() {
            f.providers = vec!["azure-ad".into()];
        }
        let out = federated_roles(&inv, &dana, &only_azure);
        assert!(out.roles.is_empty() && out.gaps.is_empty());
    }

    #[test]
    fn the_person_is_told_apart_only_when_her_session_name_is_known_and_hers_alone() {
        let dana = identity("E1005", "dana.kim@example.com");
        let cfg = AwsConfig::default();
        let mut inv = Inventory::default();
        inv.roles.push(role(
            "shared",
            json!({"Version": "2012-10-17", "Statement": []}),
        ));
        let base = Draft::new(kinds::ASSUMABLE_ROLE, "r", "arn").build();
        let fr = FedRole {
            idx: 0,
            paths: vec![Path::new().then("federated", "saml provider okta")],
            via: "saml",
            session_names: vec!["dana.kim@example.com".into()],
            no_session_name: None,
            assumed: Vec::new(),
            session_seconds: Some(3600),
        };
        let mut f = base.clone();
        federated_role_finding(&mut f, &fr, true, &inv, &dana, &cfg, None);
        assert_eq!(f.attr("revoke_scope"), Some("person"));
        assert_eq!(f.attr("role_id"), Some("AROASHARED"));
        assert_eq!(
            f.attr("revoke_policy"),
            Some("closeout-revoke-sessions.E1005")
        );
        assert_eq!(f.attr("trust"), Some("saml"));

        // Also reached from an IAM principal: her sessions there have names she chose freely.
        let mut f = base.clone();
        federated_role_finding(&mut f, &fr, false, &inv, &dana, &cfg, None);
        assert_eq!(f.attr("revoke_scope"), Some("role"));
        assert!(
            f.display.contains("cuts every session of the role"),
            "{}",
            f.display
        );

        // No session name configured: role-wide, and the plan's display says why.
        let unnamed = FedRole {
            session_names: Vec::new(),
            no_session_name: Some("federation.session_name is not set".into()),
            ..fr.clone()
        };
        let mut f = base;
        federated_role_finding(&mut f, &unnamed, true, &inv, &dana, &cfg, None);
        assert_eq!(f.attr("revoke_scope"), Some("role"));
        assert!(
            f.display.contains("federation.session_name"),
            "{}",
            f.display
        );
    }

    #[test]
    fn session_denies_are_inactive_once_removable() {
        let dana = identity("E1005", "dana.kim@example.com");
        let cfg = AwsConfig::default();
        let name = person_policy_name(&cfg, &dana);
        assert_eq!(name, "closeout-revoke-sessions.E1005");
        let cutoff: DateTime<Utc> = "2026-12-07T15:00:00Z".parse().unwrap();
        let after = cutoff + chrono::Duration::hours(1);
        let text = person_deny_document(&["AROA1:dana".into()], cutoff, after);
        let mut inv = Inventory::default();
        let mut r = role("shared", json!({"Version": "2012-10-17", "Statement": []}));
        r.inline = vec![InlinePolicy {
            name: name.clone(),
            doc: PolicyDocument::parse(&text).ok(),
            text,
            problem: None,
        }];
        inv.roles.push(r);
        let f = &session_denies(&inv, &dana, &cfg, cutoff)[0];
        assert_eq!(f.state, State::Revoked);
        assert_eq!(f.kind, kinds::SESSION_DENY);
        let f = &session_denies(&inv, &dana, &cfg, after)[0];
        assert_eq!(f.state, State::Inactive);
        assert!(
            session_denies(&inv, &identity("E1002", "carol@example.com"), &cfg, after).is_empty()
        );
    }
}
