//! Reading IAM Identity Center: the instance and its Identity Store, the person's Identity Store
//! user (by external id, user name or email), the groups it is in, and the account assignments of
//! permission sets to the user and to those groups. Plain data for [`crate::federation`].
//!
//! Users are listed whole and matched here (the `ListUsers` filters are deprecated, and the
//! external id is not a filter): the rules are those of IAM users' correlation.

use crate::client::AwsProvider;
use crate::config::{rule_form, AwsConfig};
use crate::error::CallError;
use aws_sdk_identitystore::types::MemberId;
use aws_sdk_ssoadmin::types::PrincipalType;
use closeout_contract::Identity;
use std::collections::BTreeMap;

/// An Identity Store user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoUser {
    pub user_id: String,
    pub user_name: String,
    pub external_ids: Vec<String>,
    pub emails: Vec<String>,
    /// `ENABLED` / `DISABLED` where the store reports it.
    pub status: Option<String>,
}

/// A membership of the person's user in an Identity Store group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoMembership {
    pub membership_id: String,
    pub group_id: String,
    /// The group's display name (its id when it has none).
    pub group: String,
}

/// An account assignment of a permission set, to the user or to one of its groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoAssignment {
    pub account: String,
    pub permission_set_arn: String,
    /// `USER` or `GROUP`.
    pub principal_type: String,
    pub principal_id: String,
    /// The group's display name when assigned to a group.
    pub group: Option<String>,
}

/// A permission set's facts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PermissionSet {
    pub name: String,
    /// ISO 8601 duration (`PT8H`), the longest session it gives.
    pub session_duration: Option<String>,
}

/// What Identity Center says about one identity.
#[derive(Debug, Clone, Default)]
pub struct SsoAccess {
    pub instance_arn: String,
    pub identity_store_id: String,
    /// The person's user and how it matched (`external id = E1001`).
    pub user: Option<(SsoUser, String)>,
    pub memberships: Vec<SsoMembership>,
    pub assignments: Vec<SsoAssignment>,
    pub permission_sets: BTreeMap<String, PermissionSet>,
    pub warnings: Vec<String>,
}

/// How an Identity Store user is the identity's: its external id is the identity's id, or its
/// user name is one of the `match_user_name` forms, or one of its emails is the identity's.
pub fn sso_match(user: &SsoUser, identity: &Identity, config: &AwsConfig) -> Option<String> {
    let id = identity.id.trim();
    if !id.is_empty() && user.external_ids.iter().any(|e| e.trim() == id) {
        return Some(format!("external id = {id}"));
    }
    if let Some(rule) = config.match_user_name.iter().find(|rule| {
        rule_form(**rule, identity).is_some_and(|f| user.user_name.eq_ignore_ascii_case(&f))
    }) {
        return Some(format!("user name = {}", rule.describe()));
    }
    let email = identity.email.trim();
    if !email.is_empty() && user.emails.iter().any(|e| e.eq_ignore_ascii_case(email)) {
        return Some("email".to_string());
    }
    None
}

/// The person's user among `users`: the first by user name when several match, with a warning.
pub fn find_sso_user(
    users: &[SsoUser],
    identity: &Identity,
    config: &AwsConfig,
    warnings: &mut Vec<String>,
) -> Option<(SsoUser, String)> {
    let mut found: Vec<(&SsoUser, String)> = users
        .iter()
        .filter_map(|u| sso_match(u, identity, config).map(|how| (u, how)))
        .collect();
    found.sort_by(|a, b| a.0.user_name.cmp(&b.0.user_name));
    if found.len() > 1 {
        let all: Vec<String> = found
            .iter()
            .map(|(u, how)| format!("{} ({how})", u.user_name))
            .collect();
        warnings.push(format!(
            "several Identity Center users match identity {}: {}; using {}",
            identity.id,
            all.join(", "),
            found[0].0.user_name
        ));
    }
    found.first().map(|(u, how)| ((*u).clone(), how.clone()))
}

fn sso_user(u: &aws_sdk_identitystore::types::User) -> SsoUser {
    SsoUser {
        user_id: u.user_id().to_string(),
        user_name: u.user_name().unwrap_or_default().to_string(),
        external_ids: u
            .external_ids()
            .iter()
            .map(|e| e.id().to_string())
            .collect(),
        emails: u
            .emails()
            .iter()
            .filter_map(|e| e.value().map(str::to_string))
            .collect(),
        status: u.user_status().map(|s| s.as_str().to_string()),
    }
}

impl AwsProvider {
    /// The instance ARN and Identity Store id: from the configuration, else the first instance
    /// `ListInstances` returns; `None` when there is none (Identity Center not enabled).
    pub(crate) async fn sso_instance(&self) -> Result<Option<(String, String)>, CallError> {
        let cfg = &self.config.identity_center;
        if let (Some(arn), Some(store)) = (&cfg.instance_arn, &cfg.identity_store_id) {
            return Ok(Some((arn.clone(), store.clone())));
        }
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call(
                    "ListInstances",
                    self.sso
                        .list_instances()
                        .set_next_token(token.take())
                        .send(),
                )
                .await?;
            for i in page.instances() {
                let (Some(arn), Some(store)) = (i.instance_arn(), i.identity_store_id()) else {
                    continue;
                };
                if cfg.instance_arn.as_deref().is_none_or(|a| a == arn) {
                    let store = cfg
                        .identity_store_id
                        .clone()
                        .unwrap_or_else(|| store.to_string());
                    return Ok(Some((arn.to_string(), store)));
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(None),
            }
        }
    }

    /// Every user of the Identity Store (all pages).
    pub(crate) async fn sso_users(&self, store: &str) -> Result<Vec<SsoUser>, CallError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call(
                    "ListUsers",
                    self.idstore
                        .list_users()
                        .identity_store_id(store)
                        .set_next_token(token.take())
                        .send(),
                )
                .await?;
            out.extend(page.users().iter().map(sso_user));
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// The memberships of user `user_id` (all pages), group names filled in.
    pub(crate) async fn sso_memberships(
        &self,
        store: &str,
        user_id: &str,
    ) -> Result<Vec<SsoMembership>, CallError> {
        let mut raw: Vec<(String, String)> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call(
                    "ListGroupMembershipsForMember",
                    self.idstore
                        .list_group_memberships_for_member()
                        .identity_store_id(store)
                        .member_id(MemberId::UserId(user_id.to_string()))
                        .set_next_token(token.take())
                        .send(),
                )
                .await?;
            for m in page.group_memberships() {
                if let Some(g) = m.group_id() {
                    raw.push((m.membership_id().to_string(), g.to_string()));
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        let mut out = Vec::new();
        for (membership_id, group_id) in raw {
            let group = match self
                .call(
                    "DescribeGroup",
                    self.idstore
                        .describe_group()
                        .identity_store_id(store)
                        .group_id(&group_id)
                        .send(),
                )
                .await
            {
                Ok(g) => g.display_name().unwrap_or(&group_id).to_string(),
                Err(e) if e.is_not_found() => group_id.clone(),
                Err(e) => return Err(e),
            };
            out.push(SsoMembership {
                membership_id,
                group_id,
                group,
            });
        }
        Ok(out)
    }

    /// The account assignments of one principal (all pages).
    pub(crate) async fn sso_assignments(
        &self,
        instance: &str,
        principal_type: PrincipalType,
        principal_id: &str,
        group: Option<&str>,
    ) -> Result<Vec<SsoAssignment>, CallError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call(
                    "ListAccountAssignmentsForPrincipal",
                    self.sso
                        .list_account_assignments_for_principal()
                        .instance_arn(instance)
                        .principal_type(principal_type.clone())
                        .principal_id(principal_id)
                        .set_next_token(token.take())
                        .send(),
                )
                .await?;
            for a in page.account_assignments() {
                let (Some(account), Some(ps)) = (a.account_id(), a.permission_set_arn()) else {
                    continue;
                };
                out.push(SsoAssignment {
                    account: account.to_string(),
                    permission_set_arn: ps.to_string(),
                    principal_type: principal_type.as_str().to_string(),
                    principal_id: principal_id.to_string(),
                    group: group.map(str::to_string),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Whether permission set `ps` is assigned in `account` to the principal (`USER`/`GROUP`);
    /// false when the principal is gone.
    pub(crate) async fn sso_assignment_exists(
        &self,
        instance: &str,
        principal_type: &str,
        principal_id: &str,
        account: &str,
        ps: &str,
    ) -> Result<bool, CallError> {
        let principal_type = match principal_type {
            "GROUP" => PrincipalType::Group,
            _ => PrincipalType::User,
        };
        let listed = crate::error::found(
            self.sso_assignments(instance, principal_type, principal_id, None)
                .await,
        )?;
        Ok(listed.is_some_and(|l| {
            l.iter()
                .any(|a| a.account == account && a.permission_set_arn == ps)
        }))
    }

    /// A permission set's name and session duration.
    pub(crate) async fn permission_set(
        &self,
        instance: &str,
        arn: &str,
    ) -> Result<PermissionSet, CallError> {
        let out = self
            .call(
                "DescribePermissionSet",
                self.sso
                    .describe_permission_set()
                    .instance_arn(instance)
                    .permission_set_arn(arn)
                    .send(),
            )
            .await?;
        let ps = out.permission_set();
        Ok(PermissionSet {
            name: ps.and_then(|p| p.name()).unwrap_or_default().to_string(),
            session_duration: ps.and_then(|p| p.session_duration()).map(str::to_string),
        })
    }

    /// Everything Identity Center says about `identity`; `None` when there is no instance.
    pub(crate) async fn load_sso(
        &self,
        identity: &Identity,
    ) -> Result<Option<SsoAccess>, CallError> {
        let Some((instance, store)) = self.sso_instance().await? else {
            return Ok(None);
        };
        let mut access = SsoAccess {
            instance_arn: instance.clone(),
            identity_store_id: store.clone(),
            ..Default::default()
        };
        let users = self.sso_users(&store).await?;
        access.user = find_sso_user(&users, identity, &self.config, &mut access.warnings);
        let Some((user, _)) = &access.user else {
            return Ok(Some(access));
        };
        access.memberships = self.sso_memberships(&store, &user.user_id).await?;
        access.assignments = self
            .sso_assignments(&instance, PrincipalType::User, &user.user_id, None)
            .await?;
        for m in &access.memberships {
            let through_group = self
                .sso_assignments(&instance, PrincipalType::Group, &m.group_id, Some(&m.group))
                .await?;
            access.assignments.extend(through_group);
        }
        for a in &access.assignments {
            if !access.permission_sets.contains_key(&a.permission_set_arn) {
                let ps = self
                    .permission_set(&instance, &a.permission_set_arn)
                    .await?;
                access
                    .permission_sets
                    .insert(a.permission_set_arn.clone(), ps);
            }
        }
        Ok(Some(access))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::identity;

    fn u(name: &str, ext: &[&str], emails: &[&str]) -> SsoUser {
        SsoUser {
            user_id: format!("id-{name}"),
            user_name: name.into(),
            external_ids: ext.iter().map(|s| s.to_string()).collect(),
            emails: emails.iter().map(|s| s.to_string()).collect(),
            status: None,
        }
    }

    #[test]
    fn sso_users_match_by_external_id_user_name_or_email() {
        let cfg = AwsConfig::default();
        let dana = identity("E1005", "dana.kim@example.com");
        assert_eq!(
            sso_match(&u("dk", &["E1005"], &[]), &dana, &cfg).as_deref(),
            Some("external id = E1005")
        );
        assert_eq!(
            sso_match(&u("Dana.Kim@example.com", &[], &[]), &dana, &cfg).as_deref(),
            Some("user name = email")
        );
        assert_eq!(
            sso_match(&u("dk", &[], &["DANA.KIM@example.com"]), &dana, &cfg).as_deref(),
            Some("email")
        );
        assert_eq!(
            sso_match(&u("carol", &["E1002"], &["carol@example.com"]), &dana, &cfg),
            None
        );
        let mut w = Vec::new();
        let users = [u("zed", &["E1005"], &[]), u("dana.kim", &[], &[])];
        let (found, _) = find_sso_user(&users, &dana, &cfg, &mut w).unwrap();
        assert_eq!(found.user_name, "dana.kim");
        assert_eq!(w.len(), 1, "{w:?}");
    }
}
