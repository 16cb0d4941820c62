//! Entitlements: which findings are grants a policy can name, granting them, and the IAM users
//! no identity claims.
//!
//! A granted finding is built by the same functions `resolve` uses
//! ([`group_membership_finding`], [`attached_policy_finding`]), so once granted it re-resolves
//! with the same id, paths and attributes.

use crate::capabilities::{kinds, PROVIDER};
use crate::client::AwsProvider;
use crate::config::AwsConfig;
use crate::correlation::{correlate, rule_form};
use crate::error::{permanent, CallError};
use crate::findings::{attached_policy_finding, group_membership_finding};
use crate::inventory::{tag, IamUser};
use closeout_contract::{
    ActionOutcome, Entitlement, Finding, Holder, Identity, ProviderError, ResolveContext, State,
    UnclaimedAccount,
};
use std::collections::{BTreeMap, BTreeSet};

/// The entitlement a finding is: a group membership (target: the group name), an attached
/// managed policy (the policy ARN) or an inline policy (its name; removable, not grantable), of
/// the person's own IAM user only.
pub fn entitlement(f: &Finding) -> Option<Entitlement> {
    if f.provider != PROVIDER || f.holder != Holder::Account {
        return None;
    }
    let target = match f.kind.as_str() {
        kinds::GROUP_MEMBERSHIP => f.attr("group"),
        kinds::ATTACHED_POLICY => f.attr("policy_arn"),
        kinds::INLINE_POLICY => f.attr("policy"),
        _ => None,
    }?;
    (!target.is_empty()).then(|| Entitlement::new(PROVIDER, f.kind.clone(), target))
}

fn config_error(message: impl Into<String>) -> ProviderError {
    ProviderError::Config {
        provider: PROVIDER,
        message: message.into(),
    }
}

/// Which IAM users no identity claims, by the rules of [`correlate`] (an identity claims the one
/// user it correlates with), without the identities × users product: the identities are indexed
/// by every form a tag or a user name can take. Users with an owner tag (non-human identities,
/// reported by reconcile separately) and `skip` (Closeout's own principal) are left out.
pub fn unclaimed_users(
    users: &[IamUser],
    identities: &[Identity],
    config: &AwsConfig,
    skip: Option<&str>,
) -> Vec<UnclaimedAccount> {
    // Tag values name an identity by id (exact) or email (case-insensitive).
    let mut by_id: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut by_email: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    // Per user-name rule: lower-cased form -> identities.
    let mut by_form: Vec<BTreeMap<String, Vec<usize>>> =
        vec![BTreeMap::new(); config.match_user_name.len()];
    for (i, identity) in identities.iter().enumerate() {
        // As `Identity::is_named_by` compares them.
        by_id.entry(identity.id.as_str()).or_default().push(i);
        by_email
            .entry(identity.email.to_ascii_lowercase())
            .or_default()
            .push(i);
        for (r, rule) in config.match_user_name.iter().enumerate() {
            if let Some(form) = rule_form(*rule, identity) {
                by_form[r].entry(form).or_default().push(i);
            }
        }
    }
    let tagged = |v: &str| -> Vec<usize> {
        let v = v.trim();
        let mut out: Vec<usize> = by_id.get(v).cloned().unwrap_or_default();
        out.extend(
            by_email
                .get(&v.to_ascii_lowercase())
                .into_iter()
                .flatten()
                .copied(),
        );
        out.sort_unstable();
        out.dedup();
        out
    };
    // For every identity the users it matches, as (rank, user index): the candidates
    // `correlate` would see.
    let mut candidates: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
    let mut matched_any: BTreeSet<usize> = BTreeSet::new();
    for (u, user) in users.iter().enumerate() {
        // A non-empty identity tag decides alone: a user tagged as somebody else's account is
        // never matched by name.
        if let Some(v) = tag(&user.tags, &config.identity_tag).filter(|v| !v.trim().is_empty()) {
            for i in tagged(v) {
                candidates.entry(i).or_default().push((0, u));
                matched_any.insert(u);
            }
            continue;
        }
        let name = user.name.to_ascii_lowercase();
        let mut seen = BTreeSet::new();
        for (r, forms) in by_form.iter().enumerate() {
            for i in forms.get(&name).into_iter().flatten() {
                if seen.insert(*i) {
                    candidates.entry(*i).or_default().push((r + 1, u));
                    matched_any.insert(u);
                }
            }
        }
    }
    // Each identity claims its best candidate, as in `correlate`: lowest rank, then name.
    let mut claimed: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, mut list) in candidates {
        list.sort_by(|a, b| (a.0, &users[a.1].name).cmp(&(b.0, &users[b.1].name)));
        if let Some((_, u)) = list.first() {
            claimed.entry(*u).or_insert(i);
        }
    }
    let rules: Vec<&str> = config
        .match_user_name
        .iter()
        .map(|r| r.describe())
        .collect();
    let mut out = Vec::new();
    for (u, user) in users.iter().enumerate() {
        if claimed.contains_key(&u) || Some(user.arn.as_str()) == skip {
            continue;
        }
        if tag(&user.tags, &config.owner_tag).is_some_and(|v| !v.trim().is_empty()) {
            continue;
        }
        let reason = match tag(&user.tags, &config.identity_tag).filter(|v| !v.trim().is_empty()) {
            Some(v) if matched_any.contains(&u) => format!(
                "tag {} = {} names an identity that correlates with another iam user",
                config.identity_tag,
                v.trim()
            ),
            Some(v) => format!(
                "no identity matches tag {} = {}",
                config.identity_tag,
                v.trim()
            ),
            None if matched_any.contains(&u) => format!(
                "user name {} matches an identity that correlates with another iam user",
                user.name
            ),
            None if rules.is_empty() => format!(
                "no tag {} and no user-name rule configured",
                config.identity_tag
            ),
            None => format!(
                "no tag {} and user name {} matches no identity (by {})",
                config.identity_tag,
                user.name,
                rules.join(", ")
            ),
        };
        out.push(UnclaimedAccount {
            provider: PROVIDER.to_string(),
            resource: user.arn.clone(),
            display: format!("iam user {}", user.name),
            reason,
            enabled: true,
        });
    }
    out
}

impl AwsProvider {
    /// The finding `ent` will be once granted to the identity's IAM user (state `Deleted`).
    pub(crate) async fn grant_finding_impl(
        &self,
        ctx: &ResolveContext,
        ent: &Entitlement,
    ) -> Result<Finding, ProviderError> {
        if ent.provider != PROVIDER {
            return Err(config_error(format!(
                "entitlement {ent} is not for provider {PROVIDER}"
            )));
        }
        if ent.kind != kinds::GROUP_MEMBERSHIP && ent.kind != kinds::ATTACHED_POLICY {
            return Err(config_error(format!(
                "entitlement {ent}: only {} and {} can be granted",
                kinds::GROUP_MEMBERSHIP,
                kinds::ATTACHED_POLICY
            )));
        }
        let inv = self.load_inventory().await?;
        let correlation = correlate(&inv.users, &ctx.identity, &self.config);
        let Some((i, _)) = correlation.account else {
            return Err(config_error(format!(
                "cannot grant {ent}: identity {} has no IAM user",
                ctx.identity.id
            )));
        };
        let user = inv.users[i].name.as_str();
        let mut f = if ent.kind == kinds::GROUP_MEMBERSHIP {
            let group = ent.target.as_str();
            let got = self
                .call(
                    "GetGroup",
                    self.iam.get_group().group_name(group).max_items(1).send(),
                )
                .await;
            let arn = match got {
                Ok(out) => out.group().map(|g| g.arn().to_string()),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            }
            .ok_or_else(|| config_error(format!("IAM group {group} does not exist")))?;
            group_membership_finding(user, group, &arn)
        } else {
            let arn = ent.target.as_str();
            let got = self
                .call("GetPolicy", self.iam.get_policy().policy_arn(arn).send())
                .await;
            let name = match got {
                Ok(out) => out
                    .policy()
                    .and_then(|p| p.policy_name())
                    .map(str::to_string),
                Err(e) if e.is_not_found() || e.code.as_deref() == Some("InvalidInput") => None,
                Err(e) => return Err(e.into()),
            }
            .ok_or_else(|| config_error(format!("managed policy {arn} does not exist")))?;
            attached_policy_finding(user, &name, arn)
        };
        f.state = State::Deleted;
        Ok(f)
    }

    /// `AddUserToGroup`, unless the user already is a member.
    pub(crate) async fn add_to_group(
        &self,
        user: &str,
        group: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        let groups = self
            .groups_for_user(user)
            .await
            .map_err(|e| gone(e, user))?;
        if groups.iter().any(|g| g == group) {
            return Ok(ActionOutcome::already(
                State::Active,
                format!("iam user {user} is already in group {group}"),
            ));
        }
        self.call(
            "AddUserToGroup",
            self.iam
                .add_user_to_group()
                .user_name(user)
                .group_name(group)
                .send(),
        )
        .await
        .map_err(|e| gone(e, user))?;
        Ok(ActionOutcome::done(
            State::Active,
            format!("added iam user {user} to group {group}"),
        ))
    }

    /// `AttachUserPolicy`, unless the policy is already attached.
    pub(crate) async fn attach_user_policy(
        &self,
        user: &str,
        arn: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        let attached = self
            .attached_user_policies(user)
            .await
            .map_err(|e| gone(e, user))?;
        if attached.iter().any(|a| a == arn) {
            return Ok(ActionOutcome::already(
                State::Active,
                format!("policy {arn} is already attached to iam user {user}"),
            ));
        }
        self.call(
            "AttachUserPolicy",
            self.iam
                .attach_user_policy()
                .user_name(user)
                .policy_arn(arn)
                .send(),
        )
        .await
        .map_err(|e| gone(e, user))?;
        Ok(ActionOutcome::done(
            State::Active,
            format!("attached policy {arn} to iam user {user}"),
        ))
    }

    /// IAM users no identity claims, from the one paged `GetAccountAuthorizationDetails` listing
    /// (it carries the users' tags: no per-user call). Closeout's own principal (the caller that
    /// writes the session-revocation policies) is left out.
    pub(crate) async fn unclaimed_accounts_impl(
        &self,
        identities: &[Identity],
    ) -> Result<Vec<UnclaimedAccount>, ProviderError> {
        let (inv, caller) = futures::try_join!(
            self.load_inventory(),
            self.call("GetCallerIdentity", self.sts.get_caller_identity().send()),
        )?;
        Ok(unclaimed_users(
            &inv.users,
            identities,
            &self.config,
            caller.arn(),
        ))
    }
}

/// A grant whose user or target vanished is permanent: retrying will not bring it back.
fn gone(e: CallError, user: &str) -> ProviderError {
    if e.is_not_found() {
        permanent(format!(
            "{}: iam user {user} or the granted target no longer exists",
            e.op
        ))
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{identity, user};
    use closeout_contract::Relation;

    #[test]
    fn entitlements_of_the_persons_own_grants_only() {
        let g = group_membership_finding("alice", "devs", "arn:aws:iam::1:group/devs");
        assert_eq!(
            entitlement(&g),
            Some(Entitlement::new("aws", "group-membership", "devs"))
        );
        assert_eq!(g.relation, Relation::MemberOf);
        let a = attached_policy_finding("alice", "p", "arn:aws:iam::1:policy/p");
        assert_eq!(entitlement(&a).unwrap().target, "arn:aws:iam::1:policy/p");
        let mut i = a.clone();
        i.kind = kinds::INLINE_POLICY.into();
        i.attributes.insert("policy".into(), "extra".into());
        assert_eq!(entitlement(&i).unwrap().target, "extra");
        let mut nhi = g.clone();
        nhi.holder = Holder::Nhi("svc".into());
        assert_eq!(entitlement(&nhi), None);
        let mut other = g;
        other.kind = kinds::GROUP_POLICY.into();
        assert_eq!(entitlement(&other), None);
    }

    #[test]
    fn unclaimed_users_follow_correlation() {
        let cfg = AwsConfig::default();
        let people = [
            identity("E100", "alice@example.com"),
            identity("E200", "carol@example.com"),
        ];
        let users = [
            user("alice", &[]),
            // Tagged for E100: wins over the name match, so "alice" is left unclaimed.
            user("asmith", &[("Identity", "alice@EXAMPLE.com")]),
            user("bob", &[]),
            user("ghost", &[("identity", "x@example.com")]),
            user("svc-ci", &[("owner", "E100")]),
            user("carol", &[("identity", "E999")]),
            user("closeout", &[]),
        ];
        let out = unclaimed_users(
            &users,
            &people,
            &cfg,
            Some("arn:aws:iam::123456789012:user/closeout"),
        );
        let got: Vec<(&str, &str)> = out
            .iter()
            .map(|u| (u.display.as_str(), u.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "iam user alice",
                    "user name alice matches an identity that correlates with another iam user"
                ),
                (
                    "iam user bob",
                    "no tag identity and user name bob matches no identity (by id, email, email local part)"
                ),
                ("iam user ghost", "no identity matches tag identity = x@example.com"),
                ("iam user carol", "no identity matches tag identity = E999"),
            ]
        );
        assert!(out.iter().all(|u| u.enabled && u.provider == "aws"));
        // Same answer as resolving each identity.
        for p in &people {
            if let Some((i, _)) = correlate(&users, p, &cfg).account {
                assert!(!out.iter().any(|u| u.resource == users[i].arn));
            }
        }
    }
}
