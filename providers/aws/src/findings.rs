//! Building findings: the [`Draft`] builder, and the findings of a person's own IAM user (the
//! user, its credentials, memberships and policies), of the roles it can assume and of the
//! secrets it reaches. A grant's promised finding comes from the same builders, so once granted
//! it re-resolves with the same id.

use crate::capabilities::{kinds, PROVIDER};
use crate::config::AwsConfig;
use crate::error::permanent;
use crate::inventory::{
    rfc3339, Inventory, KeyInfo, SecretInfo, SecretVersions, StatusCred, UserCredentials,
    AWSCURRENT,
};
use crate::policy::PolicyDocument;
use crate::reach::{user_base, Person, RoleReach, SecretReach};
use crate::state::{key_state, secret_state, session_state};
use chrono::{DateTime, Utc};
use closeout_contract::{Finding, Holder, Path, ProviderError, Relation, ResolveContext, State};
use std::collections::BTreeMap;

/// The attribute `key` a finding of this provider carries (the builders here wrote it), or a
/// permanent error naming the finding: an action or live read cannot go on without it.
pub(crate) fn required_attr<'a>(f: &'a Finding, key: &str) -> Result<&'a str, ProviderError> {
    f.attr(key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| permanent(format!("finding {} has no attribute {key}", f.id)))
}

/// Builds one finding.
pub(crate) struct Draft {
    pub kind: &'static str,
    pub key: String,
    pub relation: Relation,
    pub holder: Holder,
    pub resource: String,
    pub display: String,
    pub state: State,
    pub paths: Vec<Path>,
    pub attrs: BTreeMap<String, String>,
}

impl Draft {
    pub fn new(kind: &'static str, key: impl Into<String>, resource: impl Into<String>) -> Draft {
        Draft {
            kind,
            key: key.into(),
            relation: Relation::Owns,
            holder: Holder::Account,
            resource: resource.into(),
            display: String::new(),
            state: State::Active,
            paths: Vec::new(),
            attrs: BTreeMap::new(),
        }
    }

    pub fn attr(mut self, k: &str, v: impl Into<String>) -> Draft {
        let v = v.into();
        if !v.is_empty() {
            self.attrs.insert(k.to_string(), v);
        }
        self
    }

    pub fn build(self) -> Finding {
        Finding {
            id: format!("{PROVIDER}:{}:{}", self.kind, self.key),
            provider: PROVIDER.to_string(),
            kind: self.kind.to_string(),
            relation: self.relation,
            holder: self.holder,
            resource: self.resource,
            display: self.display,
            state: self.state,
            paths: self.paths,
            attributes: self.attrs,
        }
    }
}

fn time_attr(t: Option<DateTime<Utc>>) -> String {
    t.map(rfc3339).unwrap_or_default()
}

fn status(active: bool) -> &'static str {
    if active {
        "Active"
    } else {
        "Inactive"
    }
}

/// An access key of iam user `user` with the facts of `k`; a person's own key and an owned NHI's
/// key differ only in holder, display, state and path, which the caller sets.
pub(crate) fn access_key_draft(user: &str, k: &KeyInfo) -> Draft {
    Draft::new(kinds::ACCESS_KEY, k.id.clone(), k.id.clone())
        .attr("user", user)
        .attr("status", status(k.active))
        .attr("created", time_attr(k.created))
        .attr(
            "last_used",
            k.last_used.map(rfc3339).unwrap_or_else(|| "never".into()),
        )
        .attr(
            "last_used_service",
            k.last_used_service.clone().unwrap_or_default(),
        )
        .attr(
            "last_used_region",
            k.last_used_region.clone().unwrap_or_default(),
        )
}

/// The membership of iam user `user` in `group` (ARN `group_arn`), as `resolve` reports it and
/// `grant_finding` promises it: one builder, so a granted membership re-resolves with its id.
pub fn group_membership_finding(user: &str, group: &str, group_arn: &str) -> Finding {
    let mut d = Draft::new(
        kinds::GROUP_MEMBERSHIP,
        format!("{user}/{group}"),
        group_arn,
    )
    .attr("user", user)
    .attr("group", group)
    .attr("group_arn", group_arn);
    d.relation = Relation::MemberOf;
    d.display = format!("membership of iam user {user} in group {group}");
    d.paths = vec![user_base(user).then("member-of", format!("group {group}"))];
    d.build()
}

/// The managed policy `name` (ARN `arn`) attached to iam user `user`; shared by `resolve` and
/// `grant_finding` like [`group_membership_finding`].
pub fn attached_policy_finding(user: &str, name: &str, arn: &str) -> Finding {
    let mut d = Draft::new(kinds::ATTACHED_POLICY, format!("{user}/{arn}"), arn)
        .attr("user", user)
        .attr("policy", name)
        .attr("policy_arn", arn);
    d.display = format!("managed policy {name} attached to iam user {user}");
    d.paths = vec![user_base(user).then("attached", format!("policy {name}"))];
    d.build()
}

/// The person's own IAM user and everything on it.
pub fn person_findings(
    inv: &Inventory,
    person: &Person<'_>,
    matched_by: &str,
    creds: &UserCredentials,
    ctx: &ResolveContext,
    config: &AwsConfig,
) -> Vec<Finding> {
    let user = person.user;
    let u = &user.name;
    let base = &person.base;
    let of = format!("of iam user {u}");
    let mut out = Vec::new();

    let revoke = user
        .inline
        .iter()
        .find(|p| p.name == config.session_revoke_policy);
    let mut d = Draft::new(kinds::USER, u.clone(), user.arn.clone())
        .attr("user", u.clone())
        .attr("arn", user.arn.clone())
        .attr("matched_by", matched_by);
    if let Some(t) = revoke.and_then(|p| PolicyDocument::token_issue_cutoff(&p.text)) {
        d = d.attr("sessions_revoked_before", rfc3339(t));
    }
    d.display = format!("iam user {u}");
    d.state = session_state(revoke.map(|p| p.text.as_str()), ctx.cutoff);
    d.paths = vec![base.clone()];
    out.push(d.build());

    if let Some(created) = creds.login_profile {
        let mut d = Draft::new(kinds::LOGIN_PROFILE, u.clone(), user.arn.clone())
            .attr("user", u.clone())
            .attr("created", time_attr(created));
        d.display = format!("console password (login profile) {of}");
        d.paths = vec![base.then("has", "login profile (console password)")];
        out.push(d.build());
    }
    for k in &creds.keys {
        let mut d = access_key_draft(u, k);
        d.display = format!("access key {} {of}", k.id);
        d.state = key_state(k.active, false, k.created, ctx.cutoff);
        d.paths = vec![base.then("has", format!("access key {}", k.id))];
        out.push(d.build());
    }
    let status_creds: [(&'static str, &str, &Vec<StatusCred>); 3] = [
        (kinds::SSH_KEY, "ssh public key", &creds.ssh_keys),
        (
            kinds::SIGNING_CERTIFICATE,
            "signing certificate",
            &creds.certificates,
        ),
        (
            kinds::SERVICE_CREDENTIAL,
            "service-specific credential",
            &creds.service_credentials,
        ),
    ];
    for (kind, label, list) in status_creds {
        for c in list {
            let mut d = Draft::new(kind, c.id.clone(), c.id.clone())
                .attr("user", u.clone())
                .attr("status", status(c.active))
                .attr("created", time_attr(c.created));
            for (k, v) in &c.extra {
                d = d.attr(k, v.clone());
            }
            d.display = format!("{label} {} {of}", c.id);
            d.state = if c.active {
                State::Active
            } else {
                State::Inactive
            };
            d.paths = vec![base.then("has", format!("{label} {}", c.id))];
            out.push(d.build());
        }
    }
    for m in &creds.mfa {
        let mut d = Draft::new(kinds::MFA_DEVICE, m.serial.clone(), m.serial.clone())
            .attr("user", u.clone())
            .attr("enabled", time_attr(m.enabled));
        d.display = format!("mfa device {} {of}", m.serial);
        d.paths = vec![base.then("has", format!("mfa device {}", m.serial))];
        out.push(d.build());
    }
    for g in &user.groups {
        let group_arn = inv
            .groups
            .get(g)
            .map(|x| x.arn.clone())
            .unwrap_or_else(|| g.clone());
        out.push(group_membership_finding(u, g, &group_arn));

        let Some(group) = inv.groups.get(g) else {
            continue;
        };
        let gpath = base.then("member-of", format!("group {g}"));
        for a in &group.attached {
            let mut d = Draft::new(
                kinds::GROUP_POLICY,
                format!("{u}/{g}/{}", a.arn),
                a.arn.clone(),
            )
            .attr("user", u.clone())
            .attr("group", g.clone())
            .attr("policy", a.name.clone())
            .attr("policy_arn", a.arn.clone())
            .attr("policy_type", "managed");
            d.relation = Relation::MemberOf;
            d.display = format!("managed policy {} of group {g}", a.name);
            d.paths = vec![gpath.then("attached", format!("policy {}", a.name))];
            out.push(d.build());
        }
        for p in &group.inline {
            let mut d = Draft::new(
                kinds::GROUP_POLICY,
                format!("{u}/{g}/{}", p.name),
                format!("{}/{}", group.arn, p.name),
            )
            .attr("user", u.clone())
            .attr("group", g.clone())
            .attr("policy", p.name.clone())
            .attr("policy_type", "inline");
            d.relation = Relation::MemberOf;
            d.display = format!("inline policy {} of group {g}", p.name);
            d.paths = vec![gpath.then("inline", format!("inline policy {}", p.name))];
            out.push(d.build());
        }
    }
    for a in &user.attached {
        out.push(attached_policy_finding(u, &a.name, &a.arn));
    }
    for p in &user.inline {
        if p.name == config.session_revoke_policy {
            continue;
        }
        let mut d = Draft::new(
            kinds::INLINE_POLICY,
            format!("{u}/{}", p.name),
            format!("{}/{}", user.arn, p.name),
        )
        .attr("user", u.clone())
        .attr("policy", p.name.clone());
        d.display = format!("inline policy {} of iam user {u}", p.name);
        d.paths = vec![base.then("inline", format!("inline policy {}", p.name))];
        out.push(d.build());
    }
    out
}

/// A finding for a role the person can assume.
pub fn role_finding(
    inv: &Inventory,
    reach: &RoleReach,
    ctx: &ResolveContext,
    config: &AwsConfig,
) -> Finding {
    let role = &inv.roles[reach.idx];
    let revoke = role
        .inline
        .iter()
        .find(|p| p.name == config.session_revoke_policy);
    let mut d = Draft::new(kinds::ASSUMABLE_ROLE, role.arn.clone(), role.arn.clone())
        .attr("role", role.name.clone())
        .attr("arn", role.arn.clone())
        .attr("trust", reach.trust);
    if reach.conditional {
        d = d.attr(
            "conditions",
            "every path depends on a policy Condition that was not evaluated",
        );
    }
    if let Some(t) = revoke.and_then(|p| PolicyDocument::token_issue_cutoff(&p.text)) {
        d = d.attr("sessions_revoked_before", rfc3339(t));
    }
    d.relation = reach.relation;
    d.holder = Holder::Shared;
    d.display = format!("role {}", role.name);
    d.state = session_state(revoke.map(|p| p.text.as_str()), ctx.cutoff);
    d.paths = reach.paths.clone();
    d.build()
}

/// A finding for a secret the identity owns, can read, or can grant itself; `state` filled in
/// by the caller.
pub fn secret_finding(secret: &SecretInfo, reach: SecretReach) -> Finding {
    let mut d = Draft::new(kinds::SECRET, secret.arn.clone(), secret.arn.clone())
        .attr("name", secret.name.clone())
        .attr("arn", secret.arn.clone())
        .attr("rotation_enabled", secret.rotation_enabled.to_string());
    if let Some(strategy) = closeout_contract::rotation_strategy::from_tags(
        secret.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ) {
        d = d
            .attr(closeout_contract::rotation_strategy::ATTR, strategy)
            .attr(closeout_contract::rotation_strategy::SOURCE_ATTR, "tag");
    }
    if let Some(owner) = &reach.owner {
        d = d.attr("owner", owner.clone());
    }
    if reach.conditional && reach.owner.is_none() {
        d = d.attr(
            "conditions",
            "every path depends on a policy Condition that was not evaluated",
        );
    }
    d.relation = if reach.owner.is_some() {
        Relation::Owns
    } else if reach.readable {
        Relation::CanRead
    } else {
        Relation::CanGrantSelf
    };
    d.holder = Holder::Shared;
    d.display = format!("secret {}", secret.name);
    d.paths = reach.paths;
    d.build()
}

/// Attributes describing a secret's current version.
pub fn apply_versions(f: &mut Finding, versions: &SecretVersions, cutoff: Option<DateTime<Utc>>) {
    f.state = secret_state(versions, cutoff);
    if let Some(v) = versions.with_stage(AWSCURRENT) {
        f.attributes.insert("current_version".into(), v.id.clone());
    }
    if let Some(t) = versions.current_created() {
        f.attributes
            .insert("current_version_created".into(), rfc3339(t));
        f.attributes.insert("last_rotated".into(), rfc3339(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{AttachedRef, ManagedPolicy};
    use crate::reach::{reach, secret_reach, Node, ASSUME_ROLE, GET_SECRET_VALUE};
    use crate::tests::{allow, identity, render, sample, secret, ACCT};
    use closeout_contract::Path;
    #[test]
    fn person_findings_cover_the_user_and_skip_the_revoke_policy() {
        let inv = sample();
        let cfg = AwsConfig::default();
        let p = Person::new(&inv.users[0]);
        let ctx = ResolveContext {
            identity: identity("E100", "alice@example.com"),
            cutoff: Some("2029-12-31T23:00:00Z".parse().unwrap()),
        };
        let creds = UserCredentials {
            login_profile: Some(None),
            keys: vec![KeyInfo {
                id: "AKIA1".into(),
                active: true,
                created: None,
                last_used: None,
                last_used_service: None,
                last_used_region: None,
            }],
            ..Default::default()
        };
        let fs = person_findings(&inv, &p, "tag identity = E100", &creds, &ctx, &cfg);
        let ids: Vec<&str> = fs.iter().map(|f| f.id.as_str()).collect();
        assert!(ids.contains(&"aws:user:alice"));
        assert!(ids.contains(&"aws:login-profile:alice"));
        assert!(ids.contains(&"aws:access-key:AKIA1"));
        assert!(ids.contains(&"aws:group-membership:alice/devs"));
        assert!(ids.contains(&"aws:group-policy:alice/devs/group-read"));
        assert!(
            ids.contains(&"aws:attached-policy:alice/arn:aws:iam::123456789012:policy/assume-app")
        );
        assert!(ids.contains(&"aws:inline-policy:alice/read-user-secret"));
        assert!(!ids.iter().any(|i| i.contains("closeout-revoke-sessions")));
        let user = fs.iter().find(|f| f.kind == "user").unwrap();
        assert_eq!(
            user.state,
            State::Revoked,
            "policy cutoff 2030 >= ctx cutoff 2029"
        );
        let key = fs.iter().find(|f| f.kind == "access-key").unwrap();
        assert_eq!(key.attr("last_used"), Some("never"));
        assert_eq!(key.attr("status"), Some("Active"));
        assert_eq!(key.holder, Holder::Account);

        let later = ResolveContext {
            cutoff: Some("2030-06-01T00:00:00Z".parse().unwrap()),
            ..ctx.clone()
        };
        let fs = person_findings(&inv, &p, "x", &creds, &later, &cfg);
        assert_eq!(
            fs.iter().find(|f| f.kind == "user").unwrap().state,
            State::Active
        );
    }

    /// The entitlement policy's removal rule: whatever is reached through an entitlement
    /// finding has a path that starts with that finding's path.
    #[test]
    fn paths_through_an_entitlement_start_with_its_path() {
        let mut inv = sample();
        let read_att = format!("arn:aws:iam::{ACCT}:policy/read-att");
        let assume_ops = format!("arn:aws:iam::{ACCT}:policy/assume-ops");
        for (arn, doc) in [
            (
                &read_att,
                allow(GET_SECRET_VALUE, "arn:aws:secretsmanager:*:*:secret:att-*"),
            ),
            (
                &assume_ops,
                allow(ASSUME_ROLE, "arn:aws:iam::*:role/ops-admin"),
            ),
        ] {
            let doc = PolicyDocument::parse(&doc.to_string()).unwrap();
            inv.managed.insert(
                arn.clone(),
                ManagedPolicy {
                    doc: Some(doc),
                    problem: None,
                },
            );
        }
        inv.users[0].attached.push(AttachedRef {
            name: "read-att".into(),
            arn: read_att.clone(),
        });
        inv.groups
            .get_mut("devs")
            .unwrap()
            .attached
            .push(AttachedRef {
                name: "assume-ops".into(),
                arn: assume_ops,
            });
        let cfg = AwsConfig::default();
        let ctx = ResolveContext {
            identity: identity("E100", "alice@example.com"),
            cutoff: None,
        };
        let p = Person::new(&inv.users[0]);
        let fs = person_findings(&inv, &p, "x", &UserCredentials::default(), &ctx, &cfg);
        let path_of = |id: &str| {
            let f = fs.iter().find(|f| f.id == id).unwrap();
            assert_eq!(f.paths.len(), 1, "{id}");
            f.paths[0].clone()
        };
        let group = path_of("aws:group-membership:alice/devs");
        let attached = path_of(&format!("aws:attached-policy:alice/{read_att}"));
        let through = |paths: &[Path], via: &Path| {
            paths
                .iter()
                .any(|p| p.steps.len() > via.steps.len() && p.steps.starts_with(&via.steps))
        };

        let reached = reach(&inv, &[(Node::User(0), p.base.clone())]);
        let reaches = reached.roles();
        let reach = |name: &str| {
            let s = secret(name, &[], None);
            secret_reach(&reached, &inv, &s, &ctx.identity, &cfg).paths
        };
        assert!(
            through(&reach("group-db"), &group),
            "{:?}",
            reach("group-db")
        );
        assert!(
            through(&reach("att-db"), &attached),
            "{:?}",
            reach("att-db")
        );
        assert!(!through(&reach("att-db"), &group));

        let ops = reaches
            .iter()
            .find(|r| inv.roles[r.idx].name == "ops-admin")
            .expect("ops-admin assumable through the group's policy");
        let role = role_finding(&inv, ops, &ctx, &cfg);
        assert!(through(&role.paths, &group), "{:?}", render(&role.paths));

        // The builders `grant_finding` uses give the same findings.
        let granted = group_membership_finding("alice", "devs", &inv.groups["devs"].arn);
        assert_eq!(&granted, fs.iter().find(|f| f.id == granted.id).unwrap());
        let granted = attached_policy_finding("alice", "read-att", &read_att);
        assert_eq!(&granted, fs.iter().find(|f| f.id == granted.id).unwrap());
    }
}
