//! The federated verbs of `execute`: remove an Identity Center user, group membership or account
//! assignment; deny one person's sessions on a role; remove such a deny once it is inert. Each
//! reads the live state first and answers "already done" when there is nothing to change.

use crate::client::AwsProvider;
use crate::error::{found, permanent};
use crate::federation::{denied_userids, person_deny_document, removable_after};
use crate::findings::required_attr as attr;
use crate::iam_verbs::{ceil_to_second, settle};
use crate::inventory::rfc3339;
use crate::policy::PolicyDocument;
use crate::principal::Principal;
use aws_sdk_ssoadmin::types::{PrincipalType, StatusValues, TargetType};
use chrono::{DateTime, Utc};
use closeout_contract::{ActionOutcome, Finding, ProviderError, State};

/// How long a deletion of an account assignment is awaited (it is asynchronous in AWS).
const ASSIGNMENT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl AwsProvider {
    /// Whether the account assignment of finding `f` is live.
    pub(crate) async fn sso_assignment_live(&self, f: &Finding) -> Result<bool, ProviderError> {
        Ok(self
            .sso_assignment_exists(
                attr(f, "instance_arn")?,
                attr(f, "principal_type")?,
                attr(f, "principal_id")?,
                attr(f, "account")?,
                attr(f, "permission_set_arn")?,
            )
            .await?)
    }

    /// `DeleteUser` in the Identity Store (the API has no disable).
    pub(crate) async fn remove_sso_user(
        &self,
        f: &Finding,
    ) -> Result<ActionOutcome, ProviderError> {
        let store = attr(f, "identity_store_id")?;
        let user_id = attr(f, "user_id")?;
        let name = f.attr("user_name").unwrap_or(user_id);
        let exists = found(
            self.call(
                "DescribeUser",
                self.idstore
                    .describe_user()
                    .identity_store_id(store)
                    .user_id(user_id)
                    .send(),
            )
            .await,
        )?;
        if exists.is_none() {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("identity center user {name} no longer exists"),
            ));
        }
        settle(
            self.call(
                "DeleteUser",
                self.idstore
                    .delete_user()
                    .identity_store_id(store)
                    .user_id(user_id)
                    .send(),
            )
            .await,
            State::Deleted,
            format!("deleted identity center user {name}"),
            format!("identity center user {name} no longer exists"),
        )
    }

    /// `DeleteGroupMembership`.
    pub(crate) async fn remove_sso_membership(
        &self,
        f: &Finding,
    ) -> Result<ActionOutcome, ProviderError> {
        let store = attr(f, "identity_store_id")?;
        let id = attr(f, "membership_id")?;
        let what = format!(
            "membership of identity center user {} in group {}",
            f.attr("user_name").unwrap_or("?"),
            f.attr("group").unwrap_or("?")
        );
        let exists = found(
            self.call(
                "DescribeGroupMembership",
                self.idstore
                    .describe_group_membership()
                    .identity_store_id(store)
                    .membership_id(id)
                    .send(),
            )
            .await,
        )?;
        if exists.is_none() {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("{what} no longer exists"),
            ));
        }
        settle(
            self.call(
                "DeleteGroupMembership",
                self.idstore
                    .delete_group_membership()
                    .identity_store_id(store)
                    .membership_id(id)
                    .send(),
            )
            .await,
            State::Deleted,
            format!("removed {what}"),
            format!("{what} no longer exists"),
        )
    }

    /// `DeleteAccountAssignment` of a permission set from the person's user, awaited until AWS
    /// reports it done.
    pub(crate) async fn remove_sso_assignment(
        &self,
        f: &Finding,
    ) -> Result<ActionOutcome, ProviderError> {
        let instance = attr(f, "instance_arn")?;
        let account = attr(f, "account")?;
        let ps = attr(f, "permission_set_arn")?;
        let principal = attr(f, "principal_id")?;
        let what = format!(
            "assignment of permission set {} in account {account} to identity center user {}",
            f.attr("permission_set").unwrap_or(ps),
            f.attr("user_name").unwrap_or(principal)
        );
        if !self.sso_assignment_live(f).await? {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("{what} no longer exists"),
            ));
        }
        let out = self
            .call(
                "DeleteAccountAssignment",
                self.sso
                    .delete_account_assignment()
                    .instance_arn(instance)
                    .target_id(account)
                    .target_type(TargetType::AwsAccount)
                    .permission_set_arn(ps)
                    .principal_type(PrincipalType::User)
                    .principal_id(principal)
                    .send(),
            )
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if e.is_not_found() => {
                return Ok(ActionOutcome::already(
                    State::Deleted,
                    format!("{what} no longer exists"),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let Some(status) = out.account_assignment_deletion_status() else {
            return Ok(ActionOutcome::done(
                State::Deleted,
                format!("removed {what}"),
            ));
        };
        let mut state = status.status().cloned();
        let mut reason = status.failure_reason().map(str::to_string);
        let request = status.request_id().map(str::to_string);
        let started = std::time::Instant::now();
        while state == Some(StatusValues::InProgress) && started.elapsed() < ASSIGNMENT_WAIT {
            let Some(request) = &request else { break };
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let got = self
                .call(
                    "DescribeAccountAssignmentDeletionStatus",
                    self.sso
                        .describe_account_assignment_deletion_status()
                        .instance_arn(instance)
                        .account_assignment_deletion_request_id(request)
                        .send(),
                )
                .await?;
            let s = got.account_assignment_deletion_status();
            state = s.and_then(|s| s.status()).cloned();
            reason = s.and_then(|s| s.failure_reason()).map(str::to_string);
        }
        match state {
            Some(StatusValues::Failed) => Err(permanent(format!(
                "DeleteAccountAssignment failed for {what}: {}",
                reason.unwrap_or_else(|| "no reason given".into())
            ))),
            Some(StatusValues::InProgress) => Err(ProviderError::Transient {
                provider: crate::capabilities::PROVIDER,
                message: format!("the deletion of {what} is still in progress"),
            }),
            _ => Ok(ActionOutcome::done(
                State::Deleted,
                format!("removed {what}"),
            )),
        }
    }

    /// Deny the person's own sessions on a role: `aws:userid` = `<role id>:<session name>` for
    /// each of the person's session names, issued before `before`. The role id and the longest
    /// session are read live (`GetRole`); the deny carries when it may be removed.
    pub(crate) async fn revoke_person_sessions(
        &self,
        f: &Finding,
        before: Option<DateTime<Utc>>,
    ) -> Result<ActionOutcome, ProviderError> {
        let before = before.ok_or_else(|| {
            permanent("revoke-sessions needs the sessions_issued_before parameter")
        })?;
        let cutoff = ceil_to_second(before);
        let role = attr(f, "role")?;
        let policy = attr(f, "revoke_policy")?;
        let names: Vec<&str> = attr(f, "session_names")?
            .split(',')
            .filter(|n| !n.is_empty())
            .collect();
        let got = found(
            self.call("GetRole", self.iam.get_role().role_name(role).send())
                .await,
        )?;
        let Some(r) = got.as_ref().and_then(|o| o.role()) else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("role {role} no longer exists"),
            ));
        };
        let role_id = r.role_id().to_string();
        let lifetime = i64::from(r.max_session_duration().unwrap_or(3600)).max(
            f.attr("session_seconds")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        );
        let mut userids: Vec<String> = names.iter().map(|n| format!("{role_id}:{n}")).collect();
        let who = names.join(", ");
        let existing = self
            .inline_policy_text(Principal::Role(role), policy)
            .await?;
        let mut removable = cutoff + chrono::Duration::seconds(lifetime);
        if let Some(text) = &existing {
            let denied = denied_userids(text);
            let covered = userids.iter().all(|u| denied.contains(u));
            if let Some(at) = PolicyDocument::token_issue_cutoff(text) {
                if covered && at.timestamp() >= cutoff.timestamp() {
                    return Ok(ActionOutcome::already(
                        State::Revoked,
                        format!(
                            "sessions of {who} on role {role} issued before {} are already denied (inline policy {policy})",
                            rfc3339(at)
                        ),
                    ));
                }
            }
            for d in denied {
                if !userids.contains(&d) {
                    userids.push(d);
                }
            }
            if let Some(t) = removable_after(text) {
                removable = removable.max(t);
            }
        }
        let doc = person_deny_document(&userids, cutoff, removable);
        match self
            .call(
                "PutRolePolicy",
                self.iam
                    .put_role_policy()
                    .role_name(role)
                    .policy_name(policy)
                    .policy_document(&doc)
                    .send(),
            )
            .await
        {
            Ok(_) => Ok(ActionOutcome::done(
                State::Revoked,
                format!(
                    "sessions of {who} on role {role} issued before {} are denied (inline policy {policy}, aws:userid {}; removable after {}); other sessions of the role are not affected",
                    rfc3339(cutoff),
                    userids.join(", "),
                    rfc3339(removable)
                ),
            )),
            Err(e) if e.is_not_found() => Ok(ActionOutcome::already(
                State::Deleted,
                format!("role {role} no longer exists"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Remove a person's session deny from a role once every session it cuts has expired; a deny
    /// still in force is never removed.
    pub(crate) async fn remove_session_deny(
        &self,
        f: &Finding,
    ) -> Result<ActionOutcome, ProviderError> {
        let role = attr(f, "role")?;
        let policy = attr(f, "policy")?;
        let Some(text) = self
            .inline_policy_text(Principal::Role(role), policy)
            .await?
        else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("session deny {policy} on role {role} no longer exists"),
            ));
        };
        match removable_after(&text) {
            Some(t) if t <= Utc::now() => {}
            Some(t) => {
                return Err(permanent(format!(
                    "session deny {policy} on role {role} is still in force: sessions it cuts may live until {}",
                    rfc3339(t)
                )))
            }
            None => {
                return Err(permanent(format!(
                    "session deny {policy} on role {role}: when its sessions expire cannot be read"
                )))
            }
        }
        settle(
            self.call(
                "DeleteRolePolicy",
                self.iam
                    .delete_role_policy()
                    .role_name(role)
                    .policy_name(policy)
                    .send(),
            )
            .await,
            State::Deleted,
            format!("removed the expired session deny {policy} from role {role}"),
            format!("session deny {policy} on role {role} no longer exists"),
        )
    }
}
