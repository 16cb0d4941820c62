//! Resolution: correlate the identity with an IAM user, then find everything bound to it, each
//! finding with the paths that explain it.
//!
//! The analysis (correlation, which roles the user can assume, which secrets it can read, the
//! findings themselves) is pure and works on [`Inventory`] data; `resolve_impl` only gathers that
//! data from AWS.

use crate::config::{AwsConfig, UserNameRule};
use crate::inventory::{
    account_of, rfc3339, tag, IamRole, IamUser, Inventory, SecretInfo, SecretVersions,
    UserCredentials,
};
use crate::kinds;
use crate::policy::{Caller, Grantee, PolicyDocument, Vars};
use crate::{AwsProvider, PROVIDER};
use chrono::{DateTime, Utc};
use closeout_contract::{
    Account, Finding, Holder, Identity, Path, ProviderError, Relation, Resolution, ResolveContext,
    State,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::BTreeMap;

pub const ASSUME_ROLE: &str = "sts:AssumeRole";
pub const GET_SECRET_VALUE: &str = "secretsmanager:GetSecretValue";
pub const AWSCURRENT: &str = "AWSCURRENT";
pub const AWSPENDING: &str = "AWSPENDING";

/// The result of correlating an identity with the account's IAM users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Correlation {
    /// Index into the users and the rule that matched, e.g. `tag identity = E100`.
    pub account: Option<(usize, String)>,
    pub warnings: Vec<String>,
}

/// The form of the identity's name a user-name rule compares with, lower-cased (IAM user names
/// compare case-insensitively).
pub fn rule_form(rule: UserNameRule, identity: &Identity) -> Option<String> {
    let form = match rule {
        UserNameRule::Id => Some(identity.id.trim().to_ascii_lowercase()),
        UserNameRule::Email => Some(identity.email.trim().to_ascii_lowercase()),
        UserNameRule::EmailLocalPart => identity.email_local_part(),
    };
    form.filter(|f| !f.is_empty())
}

/// How an IAM principal (user or role) with `tags` and `name` is the identity's, as (rank, rule):
/// rank 0 for a tag `identity_tag` naming the identity, then 1.. for the `match_user_name` forms
/// in their order. A principal whose identity tag names somebody else is never matched by name.
pub fn principal_match(
    tags: &[(String, String)],
    name: &str,
    identity: &Identity,
    config: &AwsConfig,
) -> Option<(usize, String)> {
    if let Some(v) = tag(tags, &config.identity_tag) {
        if identity.is_named_by(v) {
            return Some((0, format!("tag {} = {}", config.identity_tag, v.trim())));
        }
        // Tagged as somebody else's: a matching name is a coincidence.
        if !v.trim().is_empty() {
            return None;
        }
    }
    config
        .match_user_name
        .iter()
        .enumerate()
        .find(|(_, rule)| {
            rule_form(**rule, identity).is_some_and(|f| name.eq_ignore_ascii_case(&f))
        })
        .map(|(rank, rule)| (rank + 1, format!("user name = {}", rule.describe())))
}

/// Find the identity's IAM user by [`principal_match`]: a tag wins over a user name. Several
/// candidates: the first wins, with a warning.
pub fn correlate(users: &[IamUser], identity: &Identity, config: &AwsConfig) -> Correlation {
    // (rank, user index, rule).
    let mut candidates: Vec<(usize, usize, String)> = users
        .iter()
        .enumerate()
        .filter_map(|(i, u)| {
            principal_match(&u.tags, &u.name, identity, config).map(|(rank, rule)| (rank, i, rule))
        })
        .collect();
    candidates.sort_by(|a, b| (a.0, &users[a.1].name).cmp(&(b.0, &users[b.1].name)));
    let mut c = Correlation::default();
    if let Some((_, i, rule)) = candidates.first() {
        c.account = Some((*i, rule.clone()));
        if candidates.len() > 1 {
            let all: Vec<String> = candidates
                .iter()
                .map(|(_, j, r)| format!("{} ({r})", users[*j].name))
                .collect();
            c.warnings.push(format!(
                "several IAM users match identity {}: {}; using {}",
                identity.id,
                all.join(", "),
                users[*i].name
            ));
        }
    }
    c
}

/// One identity policy of a principal, and the steps from the principal to it.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub steps: Vec<(String, String)>,
    pub doc: &'a PolicyDocument,
}

fn push_sources<'a>(
    inv: &'a Inventory,
    out: &mut Vec<Source<'a>>,
    prefix: &[(String, String)],
    attached: &'a [crate::inventory::AttachedRef],
    inline: &'a [crate::inventory::InlinePolicy],
) {
    for p in inline {
        if let Some(doc) = &p.doc {
            let mut steps = prefix.to_vec();
            steps.push(("inline".into(), format!("inline policy {}", p.name)));
            out.push(Source { steps, doc });
        }
    }
    for a in attached {
        if let Some(doc) = inv.managed.get(&a.arn).and_then(|m| m.doc.as_ref()) {
            let mut steps = prefix.to_vec();
            steps.push(("attached".into(), format!("policy {}", a.name)));
            out.push(Source { steps, doc });
        }
    }
}

/// The identity policies of a user: its own inline and attached ones, then its groups'.
pub fn user_sources<'a>(inv: &'a Inventory, user: &'a IamUser) -> Vec<Source<'a>> {
    let mut out = Vec::new();
    push_sources(inv, &mut out, &[], &user.attached, &user.inline);
    for g in &user.groups {
        if let Some(group) = inv.groups.get(g) {
            let prefix = [("member-of".to_string(), format!("group {g}"))];
            push_sources(inv, &mut out, &prefix, &group.attached, &group.inline);
        }
    }
    out
}

pub fn role_sources<'a>(inv: &'a Inventory, role: &'a IamRole) -> Vec<Source<'a>> {
    let mut out = Vec::new();
    push_sources(inv, &mut out, &[], &role.attached, &role.inline);
    out
}

/// Managed policy ARNs attached to a user and its groups.
pub fn user_policy_arns(inv: &Inventory, user: &IamUser) -> Vec<String> {
    let mut arns: Vec<String> = user.attached.iter().map(|a| a.arn.clone()).collect();
    for g in &user.groups {
        if let Some(group) = inv.groups.get(g) {
            arns.extend(group.attached.iter().map(|a| a.arn.clone()));
        }
    }
    arns
}

fn extend(base: &Path, steps: &[(String, String)]) -> Path {
    steps.iter().fold(base.clone(), |p, (edge, node)| {
        p.then(edge.clone(), node.clone())
    })
}

/// Which of `sources` allow `action` on `resource`, and whether any explicitly denies it.
struct Grants<'s, 'a> {
    via: Vec<&'s Source<'a>>,
    denied: bool,
    conditional: bool,
}

fn grants<'s, 'a>(
    sources: &'s [Source<'a>],
    action: &str,
    resource: &str,
    vars: Vars<'_>,
) -> Grants<'s, 'a> {
    let mut g = Grants {
        via: Vec::new(),
        denied: false,
        conditional: true,
    };
    for s in sources {
        let d = s.doc.identity_decision(action, resource, vars);
        if d.denied {
            g.denied = true;
        }
        if d.allowed {
            g.via.push(s);
            if !d.conditional {
                g.conditional = false;
            }
        }
    }
    g
}

/// The person's IAM user as the analysis needs it.
pub struct Person<'a> {
    pub user: &'a IamUser,
    pub base: Path,
    pub account: String,
    pub sources: Vec<Source<'a>>,
}

impl<'a> Person<'a> {
    pub fn new(inv: &'a Inventory, user: &'a IamUser) -> Person<'a> {
        Person {
            user,
            base: user_base(&user.name),
            account: account_of(&user.arn).unwrap_or_default().to_string(),
            sources: user_sources(inv, user),
        }
    }

    fn caller(&self) -> Caller<'_> {
        Caller {
            arn: &self.user.arn,
            unique_id: Some(&self.user.id)
                .filter(|i| !i.is_empty())
                .map(|s| s.as_str()),
            account: &self.account,
        }
    }

    fn vars(&self) -> Vars<'_> {
        Vars {
            username: Some(&self.user.name),
            userid: Some(&self.user.id),
        }
    }
}

/// A role the person can assume, with every path that lets it.
#[derive(Debug, Clone)]
pub struct RoleReach {
    pub idx: usize,
    pub paths: Vec<Path>,
    /// Every way in depends on a `Condition` that was not evaluated.
    pub conditional: bool,
    /// `user` when the trust policy names the user (or anyone), `account` when it delegates to
    /// the account and an identity policy allows it.
    pub trust: &'static str,
}

/// Roles the person can assume: a trust policy that names the user (or `*`), or names the
/// account while one of the user's or its groups' identity policies allows `sts:AssumeRole` on
/// the role. An explicit deny in those identity policies (or the trust policy) wins.
pub fn assumable_roles(inv: &Inventory, person: &Person<'_>) -> Vec<RoleReach> {
    let caller = person.caller();
    let mut out = Vec::new();
    for (idx, role) in inv.roles.iter().enumerate() {
        let Some(trust) = &role.trust else { continue };
        let t = trust.trust_decision(&caller, ASSUME_ROLE);
        if !t.grants() {
            continue;
        }
        let g = grants(&person.sources, ASSUME_ROLE, &role.arn, person.vars());
        if g.denied {
            continue;
        }
        let (paths, conditional, how) = match t.grantee {
            Some(Grantee::Named) => (
                vec![person.base.then(
                    "can-assume",
                    format!(
                        "role {} (trust policy names iam user {})",
                        role.name, person.user.name
                    ),
                )],
                t.conditional,
                "user",
            ),
            Some(Grantee::Everyone) => (
                vec![person.base.then(
                    "can-assume",
                    format!("role {} (trust policy allows any principal)", role.name),
                )],
                t.conditional,
                "user",
            ),
            Some(Grantee::Account) => (
                g.via
                    .iter()
                    .map(|s| {
                        extend(&person.base, &s.steps).then(
                            "can-assume",
                            format!(
                                "role {} (trust policy trusts account {})",
                                role.name, person.account
                            ),
                        )
                    })
                    .collect(),
                t.conditional || g.conditional,
                "account",
            ),
            None => continue,
        };
        if paths.is_empty() {
            continue;
        }
        out.push(RoleReach {
            idx,
            paths,
            conditional,
            trust: how,
        });
    }
    out
}

/// How the person reaches one secret.
#[derive(Debug, Clone, Default)]
pub struct SecretReach {
    /// The owner tag's value when it names the identity.
    pub owner: Option<String>,
    pub paths: Vec<Path>,
    pub conditional: bool,
}

/// Paths from the identity to `secret`: ownership by tag, the person's (and its groups')
/// identity policies, the identity policies of roles it can assume, and the secret's resource
/// policy naming the user or such a role.
pub fn secret_reach(
    inv: &Inventory,
    person: Option<&Person<'_>>,
    roles: &[(&RoleReach, Vec<Source<'_>>)],
    secret: &SecretInfo,
    identity: &Identity,
    config: &AwsConfig,
) -> SecretReach {
    let mut r = SecretReach {
        conditional: true,
        ..Default::default()
    };
    let node = format!("secret {}", secret.name);
    if let Some(v) = tag(&secret.tags, &config.owner_tag) {
        if identity.is_named_by(v) {
            r.owner = Some(v.to_string());
            r.conditional = false;
            r.paths.push(Path::new().then(
                "owns",
                format!("secret {} (tag {} = {})", secret.name, config.owner_tag, v),
            ));
        }
    }
    let Some(person) = person else { return r };
    let policy = secret.policy.as_ref();
    // Through the person's own and its groups' identity policies, and the resource policy.
    {
        let caller = person.caller();
        let g = grants(
            &person.sources,
            GET_SECRET_VALUE,
            &secret.arn,
            person.vars(),
        );
        let rp = policy.map(|p| p.resource_decision(&caller, GET_SECRET_VALUE, &secret.arn));
        let denied = g.denied || rp.is_some_and(|d| d.denied);
        if !denied {
            for s in &g.via {
                r.paths
                    .push(extend(&person.base, &s.steps).then("can-read", node.clone()));
            }
            if !g.via.is_empty() && !g.conditional {
                r.conditional = false;
            }
            if let Some(d) = rp.filter(|d| d.grants()) {
                let why = match d.grantee {
                    Some(Grantee::Named) => Some(format!(
                        "(resource policy names iam user {})",
                        person.user.name
                    )),
                    Some(Grantee::Everyone) => {
                        Some("(resource policy allows any principal)".into())
                    }
                    _ => None,
                };
                if let Some(why) = why {
                    r.paths
                        .push(person.base.then("can-read", format!("{node} {why}")));
                    if !d.conditional {
                        r.conditional = false;
                    }
                }
            }
        }
    }
    // Through the roles the person can assume.
    for (reach, sources) in roles {
        let role = &inv.roles[reach.idx];
        let caller = Caller {
            arn: &role.arn,
            unique_id: Some(role.id.as_str()).filter(|i| !i.is_empty()),
            account: &person.account,
        };
        let vars = Vars {
            username: None,
            userid: Some(&role.id),
        };
        let g = grants(sources, GET_SECRET_VALUE, &secret.arn, vars);
        let rp = policy.map(|p| p.resource_decision(&caller, GET_SECRET_VALUE, &secret.arn));
        if g.denied || rp.is_some_and(|d| d.denied) {
            continue;
        }
        let named = rp.filter(|d| d.grants() && d.grantee == Some(Grantee::Named));
        for base in &reach.paths {
            for s in &g.via {
                r.paths
                    .push(extend(base, &s.steps).then("can-read", node.clone()));
            }
            if named.is_some() {
                r.paths.push(base.then(
                    "can-read",
                    format!("{node} (resource policy names role {})", role.name),
                ));
            }
        }
        let unconditional_here =
            (!g.via.is_empty() && !g.conditional) || named.is_some_and(|d| !d.conditional);
        if unconditional_here && !reach.conditional {
            r.conditional = false;
        }
    }
    r
}

/// Whether `t` is at or after `cutoff`, compared in whole seconds (moto and IAM report some
/// times truncated to the second). No cutoff: nothing counts as after it.
pub fn at_or_after(t: Option<DateTime<Utc>>, cutoff: Option<DateTime<Utc>>) -> bool {
    match (t, cutoff) {
        (Some(t), Some(c)) => t.timestamp() >= c.timestamp(),
        _ => false,
    }
}

/// The state of a user or role given the session-revocation policy's text, if any.
pub fn session_state(policy_text: Option<&str>, cutoff: Option<DateTime<Utc>>) -> State {
    let revoked_at = policy_text.and_then(PolicyDocument::token_issue_cutoff);
    if at_or_after(revoked_at, cutoff) {
        State::Revoked
    } else {
        State::Active
    }
}

/// The state of a secret from its versions: rotated when `AWSCURRENT` was created at or after
/// the cutoff.
pub fn secret_state(versions: &SecretVersions, cutoff: Option<DateTime<Utc>>) -> State {
    if at_or_after(versions.current_created(), cutoff) {
        State::Rotated
    } else {
        State::Active
    }
}

/// The state of an access key: inactive, rotated (an owned NHI's key created after the cutoff:
/// the person never saw it), or active.
pub fn key_state(
    active: bool,
    nhi: bool,
    created: Option<DateTime<Utc>>,
    cutoff: Option<DateTime<Utc>>,
) -> State {
    if !active {
        State::Inactive
    } else if nhi && at_or_after(created, cutoff) {
        State::Rotated
    } else {
        State::Active
    }
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

/// The first step of every path through the person's IAM user `user`.
pub fn user_base(user: &str) -> Path {
    Path::new().then("account", format!("iam user {user}"))
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
        let mut d = Draft::new(kinds::ACCESS_KEY, k.id.clone(), k.id.clone())
            .attr("user", u.clone())
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
            );
        d.display = format!("access key {} {of}", k.id);
        d.state = key_state(k.active, false, k.created, ctx.cutoff);
        d.paths = vec![base.then("has", format!("access key {}", k.id))];
        out.push(d.build());
    }
    let status_creds: [(&'static str, &str, &Vec<crate::inventory::StatusCred>); 3] = [
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
    d.relation = Relation::CanAssume;
    d.holder = Holder::Shared;
    d.display = format!("role {}", role.name);
    d.state = session_state(revoke.map(|p| p.text.as_str()), ctx.cutoff);
    d.paths = reach.paths.clone();
    d.build()
}

/// A finding for a secret the identity owns or can read; `state` filled in by the caller.
pub fn secret_finding(secret: &SecretInfo, reach: SecretReach) -> Finding {
    let mut d = Draft::new(kinds::SECRET, secret.arn.clone(), secret.arn.clone())
        .attr("name", secret.name.clone())
        .attr("arn", secret.arn.clone())
        .attr("rotation_enabled", secret.rotation_enabled.to_string());
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
    } else {
        Relation::CanRead
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

/// IAM users and roles (other than the person's own user) whose owner tag names the identity.
pub fn owned_nhis(
    inv: &Inventory,
    person_user: Option<usize>,
    identity: &Identity,
    config: &AwsConfig,
) -> (Vec<usize>, Vec<usize>) {
    let owned = |tags: &[(String, String)]| {
        tag(tags, &config.owner_tag).is_some_and(|v| identity.is_named_by(v))
    };
    let users = inv
        .users
        .iter()
        .enumerate()
        .filter(|(i, u)| Some(*i) != person_user && owned(&u.tags))
        .map(|(i, _)| i)
        .collect();
    let roles = inv
        .roles
        .iter()
        .enumerate()
        .filter(|(_, r)| owned(&r.tags))
        .map(|(i, _)| i)
        .collect();
    (users, roles)
}

/// The path to an owned NHI: `owns -> iam user svc (tag owner = E100)`. Untagged (a service
/// identity's principal before a joiner records its owner): `(no tag owner)`.
fn nhi_path(what: &str, name: &str, owner_tag: &str, owner: Option<&str>) -> Path {
    let why = match owner {
        Some(v) => format!("tag {owner_tag} = {v}"),
        None => format!("no tag {owner_tag}"),
    };
    Path::new().then("owns", format!("{what} {name} ({why})"))
}

/// The owner tag's value, if set and not blank.
fn owner_of<'a>(tags: &'a [(String, String)], config: &AwsConfig) -> Option<&'a str> {
    tag(tags, &config.owner_tag).filter(|v| !v.trim().is_empty())
}

/// The `nhi-user` finding of an IAM user, as its owner's resolution reports it and
/// `nhi_findings` returns it for the service identity the user correlates with: one builder, so
/// a joiner's `reassign-owner` acts on the finding the owner later resolves (same id).
pub fn nhi_user_finding(user: &IamUser, config: &AwsConfig) -> Finding {
    let owner = owner_of(&user.tags, config);
    let mut d = Draft::new(kinds::NHI_USER, user.name.clone(), user.arn.clone())
        .attr("user", user.name.clone())
        .attr("arn", user.arn.clone())
        .attr("owner", owner.unwrap_or_default());
    d.holder = Holder::Nhi(user.name.clone());
    d.display = format!("iam user {} (non-human, owned)", user.name);
    d.paths = vec![nhi_path("iam user", &user.name, &config.owner_tag, owner)];
    d.build()
}

/// An owned IAM user and its access keys.
pub fn nhi_user_findings(
    user: &IamUser,
    keys: &[crate::inventory::KeyInfo],
    ctx: &ResolveContext,
    config: &AwsConfig,
) -> Vec<Finding> {
    let nhi = nhi_user_finding(user, config);
    let path = nhi.paths[0].clone();
    let holder = nhi.holder.clone();
    let mut out = vec![nhi];
    for k in keys {
        let mut d = Draft::new(kinds::ACCESS_KEY, k.id.clone(), k.id.clone())
            .attr("user", user.name.clone())
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
            .attr("publish_secret", config.nhi_secret_name(&user.name));
        d.holder = holder.clone();
        d.display = format!("access key {} of iam user {} (non-human)", k.id, user.name);
        d.state = key_state(k.active, true, k.created, ctx.cutoff);
        d.paths = vec![path.then("has", format!("access key {}", k.id))];
        out.push(d.build());
    }
    out
}

pub fn nhi_role_finding(role: &IamRole, config: &AwsConfig) -> Finding {
    let owner = owner_of(&role.tags, config);
    let mut d = Draft::new(kinds::NHI_ROLE, role.name.clone(), role.arn.clone())
        .attr("role", role.name.clone())
        .attr("arn", role.arn.clone())
        .attr("owner", owner.unwrap_or_default());
    d.holder = Holder::Nhi(role.name.clone());
    d.display = format!("iam role {} (non-human, owned)", role.name);
    d.paths = vec![nhi_path("iam role", &role.name, &config.owner_tag, owner)];
    d.build()
}

/// The principals of a service identity: the IAM user it correlates with by the rules of
/// [`correlate`] (identity tag, then user-name rules; several candidates: the one `correlate`
/// picks, plus its warning) as an `nhi-user`, and every IAM role made for it as an `nhi-role`
/// (see [`service_roles`]).
pub fn service_nhi_findings(
    inv: &Inventory,
    identity: &Identity,
    config: &AwsConfig,
) -> (Vec<Finding>, Vec<String>) {
    let c = correlate(&inv.users, identity, config);
    let mut found: Vec<Finding> = c
        .account
        .map(|(i, _)| nhi_user_finding(&inv.users[i], config))
        .into_iter()
        .collect();
    found.extend(
        service_roles(&inv.roles, identity, config)
            .into_iter()
            .map(|r| nhi_role_finding(r, config)),
    );
    (found, c.warnings)
}

/// The IAM roles of a service identity: every role [`principal_match`] names as its (tagged
/// `identity_tag` with its id or email, or untagged and named by a `match_user_name` form).
pub fn service_roles<'a>(
    roles: &'a [IamRole],
    identity: &Identity,
    config: &AwsConfig,
) -> Vec<&'a IamRole> {
    roles
        .iter()
        .filter(|r| principal_match(&r.tags, &r.name, identity, config).is_some())
        .collect()
}

impl AwsProvider {
    /// `nhi_findings`: one paged inventory listing, no per-user call.
    pub(crate) async fn nhi_findings_impl(
        &self,
        ctx: &ResolveContext,
    ) -> Result<Vec<Finding>, ProviderError> {
        let inv = self.load_inventory().await?;
        let (found, warnings) = service_nhi_findings(&inv, &ctx.identity, &self.config);
        for w in warnings {
            tracing::warn!(identity = %ctx.identity.id, "{w}");
        }
        Ok(found)
    }
}

impl AwsProvider {
    pub(crate) async fn resolve_impl(
        &self,
        ctx: &ResolveContext,
    ) -> Result<Resolution, ProviderError> {
        let config = &self.config;
        let identity = &ctx.identity;
        let mut res = Resolution::default();
        let mut inv = self.load_inventory().await?;

        let correlation = correlate(&inv.users, identity, config);
        res.warnings.extend(correlation.warnings.iter().cloned());
        let person_idx = correlation.account.as_ref().map(|(i, _)| *i);

        // AWS-managed policies of the person, its groups, then of the roles it can assume.
        if let Some(i) = person_idx {
            let arns = user_policy_arns(&inv, &inv.users[i]);
            self.load_managed(&mut inv, arns).await?;
        }
        let role_idxs: Vec<usize> = match person_idx {
            Some(i) => assumable_roles(&inv, &Person::new(&inv, &inv.users[i]))
                .iter()
                .map(|r| r.idx)
                .collect(),
            None => Vec::new(),
        };
        let role_arns: Vec<String> = role_idxs
            .iter()
            .flat_map(|i| inv.roles[*i].attached.iter().map(|a| a.arn.clone()))
            .collect();
        self.load_managed(&mut inv, role_arns).await?;
        res.warnings.append(&mut inv.warnings);
        let inventory = inv;
        let inv = &inventory;

        let person = person_idx.map(|i| Person::new(inv, &inv.users[i]));
        let reaches = person
            .as_ref()
            .map(|p| assumable_roles(inv, p))
            .unwrap_or_default();
        let (nhi_users, nhi_roles) = owned_nhis(inv, person_idx, identity, config);

        let creds = async {
            match &person {
                Some(p) => self.user_credentials(&p.user.name).await.map(Some),
                None => Ok(None),
            }
        };
        let nhi_keys = stream::iter(nhi_users.iter().copied())
            .map(|i| async move { self.list_keys(&inv.users[i].name).await.map(|k| (i, k)) })
            .buffer_unordered(self.limits().max_in_flight)
            .try_collect::<Vec<_>>();
        let (creds, nhi_keys, (secrets, secret_warnings)) =
            futures::try_join!(creds, nhi_keys, self.load_secrets())?;
        res.warnings.extend(secret_warnings);

        if let (Some(p), Some((_, matched_by))) = (&person, &correlation.account) {
            res.accounts.push(Account {
                provider: PROVIDER.to_string(),
                resource: p.user.arn.clone(),
                display: format!("iam user {}", p.user.name),
                matched_by: matched_by.clone(),
            });
            if let Some(creds) = &creds {
                res.warnings.extend(creds.warnings.iter().cloned());
                res.findings
                    .extend(person_findings(inv, p, matched_by, creds, ctx, config));
            }
        }
        for r in &reaches {
            res.findings.push(role_finding(inv, r, ctx, config));
        }
        for (i, keys) in &nhi_keys {
            res.findings
                .extend(nhi_user_findings(&inv.users[*i], keys, ctx, config));
        }
        for i in &nhi_roles {
            res.findings.push(nhi_role_finding(&inv.roles[*i], config));
        }

        let role_sources: Vec<(&RoleReach, Vec<Source<'_>>)> = reaches
            .iter()
            .map(|r| (r, role_sources(inv, &inv.roles[r.idx])))
            .collect();
        let mut secret_findings: Vec<Finding> = secrets
            .iter()
            .filter_map(|s| {
                let reach = secret_reach(inv, person.as_ref(), &role_sources, s, identity, config);
                (!reach.paths.is_empty()).then(|| secret_finding(s, reach))
            })
            .collect();
        let last_changed: BTreeMap<&str, Option<DateTime<Utc>>> = secrets
            .iter()
            .map(|s| (s.arn.as_str(), s.last_changed))
            .collect();
        let versions: Vec<(usize, Option<SecretVersions>)> = stream::iter(
            secret_findings
                .iter()
                .map(|f| f.resource.clone())
                .enumerate()
                .collect::<Vec<_>>(),
        )
        .map(|(i, arn)| async move { self.secret_versions(&arn).await.map(|v| (i, v)) })
        .buffer_unordered(self.limits().max_in_flight)
        .try_collect()
        .await?;
        let mut gone = Vec::new();
        for (i, v) in versions {
            match v {
                Some(mut v) => {
                    let f = &mut secret_findings[i];
                    v.last_changed = last_changed.get(f.resource.as_str()).copied().flatten();
                    apply_versions(f, &v, ctx.cutoff)
                }
                None => gone.push(i),
            }
        }
        res.findings.extend(
            secret_findings
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !gone.contains(i))
                .map(|(_, f)| f),
        );
        res.normalize();
        Ok(res)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::inventory::{AttachedRef, IamGroup, InlinePolicy, ManagedPolicy};
    use closeout_contract::{IdentityKind, IdentityStatus};
    use serde_json::json;

    pub const ACCT: &str = "123456789012";

    pub fn identity(id: &str, email: &str) -> Identity {
        Identity {
            id: id.into(),
            email: email.into(),
            name: id.into(),
            kind: IdentityKind::Human,
            status: IdentityStatus::Terminated,
            manager: None,
            department: None,
            role: None,
            location: None,
            employment_type: None,
            tags: Default::default(),
        }
    }

    fn user(name: &str, tags: &[(&str, &str)]) -> IamUser {
        IamUser {
            name: name.into(),
            arn: format!("arn:aws:iam::{ACCT}:user/{name}"),
            id: format!("AIDA{}", name.to_uppercase()),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            groups: Vec::new(),
            attached: Vec::new(),
            inline: Vec::new(),
        }
    }

    fn inline(name: &str, v: serde_json::Value) -> InlinePolicy {
        let text = v.to_string();
        InlinePolicy {
            name: name.into(),
            doc: Some(PolicyDocument::parse(&text).unwrap()),
            text,
        }
    }

    fn role(name: &str, trust: serde_json::Value) -> IamRole {
        IamRole {
            name: name.into(),
            arn: format!("arn:aws:iam::{ACCT}:role/{name}"),
            id: format!("AROA{}", name.to_uppercase()),
            trust: Some(PolicyDocument::parse(&trust.to_string()).unwrap()),
            attached: Vec::new(),
            inline: Vec::new(),
            tags: Vec::new(),
        }
    }

    fn allow(action: &str, resource: &str) -> serde_json::Value {
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]})
    }

    fn trust(principal: &str) -> serde_json::Value {
        json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]})
    }

    fn secret(name: &str, tags: &[(&str, &str)], policy: Option<serde_json::Value>) -> SecretInfo {
        SecretInfo {
            arn: format!("arn:aws:secretsmanager:us-east-1:{ACCT}:secret:{name}-AbCdEf"),
            name: name.into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            policy: policy.map(|p| PolicyDocument::parse(&p.to_string()).unwrap()),
            rotation_enabled: false,
            last_changed: None,
        }
    }

    fn render(paths: &[Path]) -> Vec<String> {
        paths.iter().map(|p| p.render("alice")).collect()
    }

    #[test]
    fn correlation_prefers_tags_and_reports_ambiguity() {
        let cfg = AwsConfig::default();
        let alice = identity("E100", "Alice.Smith@example.com");
        let users = vec![
            user("alice.smith", &[]),
            user("asmith", &[("identity", "alice.smith@EXAMPLE.com")]),
            user("bob", &[]),
        ];
        let c = correlate(&users, &alice, &cfg);
        assert_eq!(
            c.account,
            Some((1, "tag identity = alice.smith@EXAMPLE.com".into()))
        );
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("alice.smith (user name = email local part)"));

        let c = correlate(&users[..1], &alice, &cfg);
        assert_eq!(c.account, Some((0, "user name = email local part".into())));
        assert!(c.warnings.is_empty());

        let users = vec![user("e100", &[])];
        assert_eq!(
            correlate(&users, &alice, &cfg).account,
            Some((0, "user name = id".into()))
        );
        let users = vec![user("Alice.Smith@example.com", &[])];
        assert_eq!(
            correlate(&users, &alice, &cfg).account,
            Some((0, "user name = email".into()))
        );
    }

    #[test]
    fn correlation_respects_rules_and_foreign_tags() {
        let alice = identity("E100", "alice@example.com");
        // A user called alice that is tagged as somebody else's account is not Alice's.
        let users = vec![user("alice", &[("identity", "E999")])];
        assert_eq!(
            correlate(&users, &alice, &AwsConfig::default()).account,
            None
        );
        let only_tags = AwsConfig {
            match_user_name: vec![],
            ..Default::default()
        };
        assert_eq!(
            correlate(&[user("alice", &[])], &alice, &only_tags).account,
            None
        );
        let custom_tag = AwsConfig {
            identity_tag: "employee".into(),
            ..Default::default()
        };
        let users = vec![user("x1", &[("Employee", "E100")])];
        assert_eq!(
            correlate(&users, &alice, &custom_tag).account,
            Some((0, "tag employee = E100".into()))
        );
        assert_eq!(
            correlate(&[user("carol", &[])], &alice, &AwsConfig::default()),
            Correlation::default()
        );
    }

    #[test]
    fn service_roles_are_matched_by_identity_tag_or_name_never_against_a_foreign_tag() {
        let etl = identity("S3001", "svc-etl@example.com");
        let tagged = |name: &str, value: &str| IamRole {
            tags: vec![("identity".into(), value.into())],
            ..role(name, trust("arn:aws:iam::123456789012:root"))
        };
        let roles = vec![
            role("svc-etl", trust("arn:aws:iam::123456789012:root")),
            tagged("etl-runner", "S3001"),
            tagged("svc-etl-2", "svc-etl@example.com"),
            tagged("S3001", "S9999"),
            role("svc-other", trust("arn:aws:iam::123456789012:root")),
        ];
        let names: Vec<&str> = service_roles(&roles, &etl, &AwsConfig::default())
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["svc-etl", "etl-runner", "svc-etl-2"]);
    }

    /// An account with every way to reach a role and a secret.
    fn sample() -> Inventory {
        let mut inv = Inventory::default();
        let mut alice = user("alice", &[("identity", "E100")]);
        alice.groups = vec!["devs".into()];
        alice.inline = vec![
            inline(
                "read-user-secret",
                allow(GET_SECRET_VALUE, "arn:aws:secretsmanager:*:*:secret:user-*"),
            ),
            inline(
                "closeout-revoke-sessions",
                json!({"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2030-01-01T00:00:00Z"}}}]}),
            ),
        ];
        alice.attached = vec![AttachedRef {
            name: "assume-app".into(),
            arn: format!("arn:aws:iam::{ACCT}:policy/assume-app"),
        }];
        inv.managed.insert(
            format!("arn:aws:iam::{ACCT}:policy/assume-app"),
            ManagedPolicy {
                doc: Some(
                    PolicyDocument::parse(
                        &allow("sts:Assume*", "arn:aws:iam::*:role/app-*").to_string(),
                    )
                    .unwrap(),
                ),
            },
        );
        inv.groups.insert(
            "devs".into(),
            IamGroup {
                arn: format!("arn:aws:iam::{ACCT}:group/devs"),
                attached: vec![],
                inline: vec![inline(
                    "group-read",
                    allow(
                        "secretsmanager:GetSecret*",
                        "arn:aws:secretsmanager:us-east-1:*:secret:group-*",
                    ),
                )],
            },
        );
        inv.users.push(alice);
        let mut bob = user("bob", &[("owner", "alice@example.com")]);
        bob.inline = vec![inline("bob-read", allow("*", "*"))];
        inv.users.push(bob);

        let mut direct = role(
            "direct-role",
            trust(&format!("arn:aws:iam::{ACCT}:user/alice")),
        );
        direct.inline = vec![inline(
            "r",
            allow(
                "secretsmanager:*",
                "arn:aws:secretsmanager:*:*:secret:role-*",
            ),
        )];
        direct.tags = vec![("owner".into(), "E100".into())];
        inv.roles.push(direct);
        inv.roles.push(role(
            "app-deploy",
            trust(&format!("arn:aws:iam::{ACCT}:root")),
        ));
        // Trusts the account, but no identity policy of alice allows it.
        inv.roles.push(role("ops-admin", trust(ACCT)));
        // Trusts somebody else.
        inv.roles.push(role(
            "app-bob",
            trust(&format!("arn:aws:iam::{ACCT}:user/bob")),
        ));
        inv
    }

    #[test]
    fn roles_assumable_by_trust_or_by_account_trust_plus_identity_policy() {
        let inv = sample();
        let p = Person::new(&inv, &inv.users[0]);
        let reaches = assumable_roles(&inv, &p);
        let names: Vec<&str> = reaches
            .iter()
            .map(|r| inv.roles[r.idx].name.as_str())
            .collect();
        assert_eq!(names, vec!["direct-role", "app-deploy"]);
        assert_eq!(
            render(&reaches[0].paths),
            vec!["alice -account-> iam user alice -can-assume-> role direct-role (trust policy names iam user alice)"]
        );
        assert_eq!(
            render(&reaches[1].paths),
            vec!["alice -account-> iam user alice -attached-> policy assume-app -can-assume-> role app-deploy (trust policy trusts account 123456789012)"]
        );
        assert_eq!(reaches[1].trust, "account");
    }

    #[test]
    fn explicit_deny_blocks_an_assumable_role() {
        let mut inv = sample();
        inv.users[0].inline.push(inline(
            "deny-app",
            json!({"Statement": [{"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": "arn:aws:iam::*:role/app-deploy"}]}),
        ));
        let p = Person::new(&inv, &inv.users[0]);
        let names: Vec<String> = assumable_roles(&inv, &p)
            .iter()
            .map(|r| inv.roles[r.idx].name.clone())
            .collect();
        assert_eq!(names, vec!["direct-role"]);
    }

    #[test]
    fn secrets_reached_every_way_and_not_otherwise() {
        let inv = sample();
        let cfg = AwsConfig::default();
        let alice = identity("E100", "alice@example.com");
        let p = Person::new(&inv, &inv.users[0]);
        let reaches = assumable_roles(&inv, &p);
        let roles: Vec<_> = reaches
            .iter()
            .map(|r| (r, role_sources(&inv, &inv.roles[r.idx])))
            .collect();
        let reach = |s: &SecretInfo| secret_reach(&inv, Some(&p), &roles, s, &alice, &cfg);

        let owned = secret("owned", &[("owner", "alice@example.com")], None);
        let r = reach(&owned);
        assert_eq!(r.owner.as_deref(), Some("alice@example.com"));
        assert_eq!(
            render(&r.paths),
            vec!["alice -owns-> secret owned (tag owner = alice@example.com)"]
        );

        let r = reach(&secret("user-db", &[], None));
        assert_eq!(
            render(&r.paths),
            vec!["alice -account-> iam user alice -inline-> inline policy read-user-secret -can-read-> secret user-db"]
        );
        let r = reach(&secret("group-db", &[], None));
        assert_eq!(
            render(&r.paths),
            vec!["alice -account-> iam user alice -member-of-> group devs -inline-> inline policy group-read -can-read-> secret group-db"]
        );
        let r = reach(&secret("role-db", &[], None));
        assert_eq!(
            render(&r.paths),
            vec!["alice -account-> iam user alice -can-assume-> role direct-role (trust policy names iam user alice) -inline-> inline policy r -can-read-> secret role-db"]
        );
        let rp = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:role/app-deploy")}, "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]});
        let r = reach(&secret("rp-role", &[], Some(rp)));
        assert_eq!(
            render(&r.paths),
            vec!["alice -account-> iam user alice -attached-> policy assume-app -can-assume-> role app-deploy (trust policy trusts account 123456789012) -can-read-> secret rp-role (resource policy names role app-deploy)"]
        );
        let rp = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:user/alice")}, "Action": "secretsmanager:*", "Resource": "*"}]});
        let r = reach(&secret("rp-user", &[], Some(rp)));
        assert_eq!(
            render(&r.paths),
            vec!["alice -account-> iam user alice -can-read-> secret rp-user (resource policy names iam user alice)"]
        );
        assert!(!r.conditional);

        // Nobody's path: bob can read everything, but bob is not alice.
        assert!(reach(&secret(
            "unreachable",
            &[("owner", "bob@example.com")],
            None
        ))
        .paths
        .is_empty());
        // A resource policy naming only bob.
        let rp = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:user/bob")}, "Action": "*", "Resource": "*"}]});
        assert!(reach(&secret("bobs", &[], Some(rp))).paths.is_empty());
        // A resource policy deny beats the identity policy.
        let rp = json!({"Statement": [{"Effect": "Deny", "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:user/alice")}, "Action": "*", "Resource": "*"}]});
        assert!(reach(&secret("user-denied", &[], Some(rp)))
            .paths
            .is_empty());
    }

    #[test]
    fn without_an_account_only_owned_things_resolve() {
        let inv = sample();
        let cfg = AwsConfig::default();
        let alice = identity("E100", "alice@example.com");
        let r = secret_reach(&inv, None, &[], &secret("user-db", &[], None), &alice, &cfg);
        assert!(r.paths.is_empty());
        let r = secret_reach(
            &inv,
            None,
            &[],
            &secret("o", &[("owner", "E100")], None),
            &alice,
            &cfg,
        );
        assert_eq!(r.paths.len(), 1);
        let (users, roles) = owned_nhis(&inv, None, &alice, &cfg);
        assert_eq!(users, vec![1]);
        assert_eq!(roles, vec![0]);
        // The person's own user is never its own NHI.
        let (users, _) = owned_nhis(&inv, Some(1), &alice, &cfg);
        assert!(users.is_empty());
    }

    #[test]
    fn a_service_identitys_user_is_the_nhi_user_its_owner_resolves() {
        let mut inv = sample();
        inv.users.push(user("svc-ci", &[]));
        let cfg = AwsConfig::default();
        let svc = identity("svc-ci", "svc-ci@example.com");
        let (found, warnings) = service_nhi_findings(&inv, &svc, &cfg);
        assert!(warnings.is_empty());
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!(f.id, "aws:nhi-user:svc-ci");
        assert_eq!(f.holder, Holder::Nhi("svc-ci".into()));
        assert_eq!(f.state, State::Active);
        assert_eq!(f.attr("owner"), None);
        assert_eq!(
            render(&f.paths),
            vec!["alice -owns-> iam user svc-ci (no tag owner)"]
        );

        // Once tagged, the owner resolves the same finding from the same builder.
        let i = inv.users.iter().position(|u| u.name == "svc-ci").unwrap();
        inv.users[i].tags = vec![("owner".into(), "alice@example.com".into())];
        let alice = identity("E100", "alice@example.com");
        let (owned, _) = owned_nhis(&inv, Some(0), &alice, &cfg);
        assert!(owned.contains(&i));
        let resolved = &nhi_user_findings(
            &inv.users[i],
            &[],
            &ResolveContext {
                identity: alice,
                cutoff: None,
            },
            &cfg,
        )[0];
        let (again, _) = service_nhi_findings(&inv, &svc, &cfg);
        assert_eq!(&again[0], resolved);
        assert_eq!(resolved.attr("owner"), Some("alice@example.com"));

        // A service identity without IAM user: nothing.
        let (none, _) = service_nhi_findings(&inv, &identity("svc-x", "svc-x@example.com"), &cfg);
        assert!(none.is_empty());
    }

    #[test]
    fn person_findings_cover_the_user_and_skip_the_revoke_policy() {
        let inv = sample();
        let cfg = AwsConfig::default();
        let p = Person::new(&inv, &inv.users[0]);
        let ctx = ResolveContext {
            identity: identity("E100", "alice@example.com"),
            cutoff: Some("2029-12-31T23:00:00Z".parse().unwrap()),
        };
        let creds = UserCredentials {
            login_profile: Some(None),
            keys: vec![crate::inventory::KeyInfo {
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
            inv.managed
                .insert(arn.clone(), ManagedPolicy { doc: Some(doc) });
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
        let p = Person::new(&inv, &inv.users[0]);
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

        let reaches = assumable_roles(&inv, &p);
        let roles: Vec<_> = reaches
            .iter()
            .map(|r| (r, role_sources(&inv, &inv.roles[r.idx])))
            .collect();
        let reach = |name: &str| {
            let s = secret(name, &[], None);
            secret_reach(&inv, Some(&p), &roles, &s, &ctx.identity, &cfg).paths
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

    #[test]
    fn cutoff_comparisons_are_in_whole_seconds() {
        let c: DateTime<Utc> = "2025-01-01T00:00:10.700Z".parse().unwrap();
        let same_second: DateTime<Utc> = "2025-01-01T00:00:10Z".parse().unwrap();
        let before: DateTime<Utc> = "2025-01-01T00:00:09.999Z".parse().unwrap();
        assert!(at_or_after(Some(same_second), Some(c)));
        assert!(!at_or_after(Some(before), Some(c)));
        assert!(!at_or_after(Some(same_second), None));
        assert!(!at_or_after(None, Some(c)));
        assert_eq!(
            key_state(true, true, Some(same_second), Some(c)),
            State::Rotated
        );
        assert_eq!(
            key_state(true, false, Some(same_second), Some(c)),
            State::Active
        );
        assert_eq!(
            key_state(false, true, Some(same_second), Some(c)),
            State::Inactive
        );
        let mut v = SecretVersions {
            versions: vec![
                crate::inventory::Version {
                    id: "old".into(),
                    stages: vec!["AWSPREVIOUS".into()],
                    created: Some(before),
                },
                crate::inventory::Version {
                    id: "new".into(),
                    stages: vec![AWSCURRENT.into()],
                    created: Some(same_second),
                },
            ],
            last_changed: None,
        };
        assert_eq!(secret_state(&v, Some(c)), State::Rotated);
        assert_eq!(secret_state(&v, None), State::Active);
        // moto's ListSecretVersionIds says "now" for every version: the secret's last change
        // bounds it.
        v.last_changed = Some(before);
        assert_eq!(secret_state(&v, Some(c)), State::Active);
        v.last_changed = Some(c + chrono::Duration::days(1));
        assert_eq!(secret_state(&v, Some(c)), State::Rotated);
        assert_eq!(v.current_created(), Some(same_second));
    }
}
