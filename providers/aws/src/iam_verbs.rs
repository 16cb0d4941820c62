//! The IAM verbs of `execute`: revoke sessions, deactivate and delete credentials, deactivate MFA
//! devices, remove group memberships, detach and remove policies, reassign an NHI's owner. Each
//! reads the live state first and answers "already done" when there is nothing to change, so a
//! repeated action is safe.

use crate::capabilities::PROVIDER;
use crate::client::AwsProvider;
use crate::error::{permanent, CallError};
use crate::inventory::{rfc3339, tag};
use crate::policy::PolicyDocument;
use crate::principal::Principal;
use aws_sdk_iam::types::StatusType;
use chrono::{DateTime, Utc};
use closeout_contract::{ActionOutcome, ActionRequest, ProviderError, State};

/// `t` rounded up to the next whole second (unchanged when already whole), so a policy written
/// with second precision never lets through a session issued just before `t`.
pub fn ceil_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t);
    if floor < t {
        floor + chrono::Duration::seconds(1)
    } else {
        floor
    }
}

/// The session-revocation policy: deny everything to sessions issued before `cutoff`.
pub fn revoke_policy_document(cutoff: DateTime<Utc>) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": rfc3339(cutoff)}}
        }]
    })
    .to_string()
}

/// A credential with an Active/Inactive status.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusKind {
    AccessKey,
    SshKey,
    Certificate,
    ServiceCredential,
}

impl StatusKind {
    fn label(self) -> &'static str {
        match self {
            StatusKind::AccessKey => "access key",
            StatusKind::SshKey => "ssh public key",
            StatusKind::Certificate => "signing certificate",
            StatusKind::ServiceCredential => "service-specific credential",
        }
    }
}

impl AwsProvider {
    pub(crate) async fn revoke_sessions(
        &self,
        target: Principal<'_>,
        before: Option<DateTime<Utc>>,
    ) -> Result<ActionOutcome, ProviderError> {
        let before = before.ok_or_else(|| {
            permanent("revoke-sessions needs the sessions_issued_before parameter")
        })?;
        let cutoff = ceil_to_second(before);
        let name = self.config.session_revoke_policy.as_str();
        let who = target.describe();
        if let Some(text) = self.inline_policy_text(target, name).await? {
            if let Some(existing) = PolicyDocument::token_issue_cutoff(&text) {
                if existing.timestamp() >= cutoff.timestamp() {
                    return Ok(ActionOutcome::already(
                        State::Revoked,
                        format!(
                            "sessions of {who} issued before {} are already denied (inline policy {name})",
                            rfc3339(existing)
                        ),
                    ));
                }
            }
        }
        let doc = revoke_policy_document(cutoff);
        let result = match target {
            Principal::User(u) => self
                .call(
                    "PutUserPolicy",
                    self.iam
                        .put_user_policy()
                        .user_name(u)
                        .policy_name(name)
                        .policy_document(&doc)
                        .send(),
                )
                .await
                .map(|_| ()),
            Principal::Role(r) => self
                .call(
                    "PutRolePolicy",
                    self.iam
                        .put_role_policy()
                        .role_name(r)
                        .policy_name(name)
                        .policy_document(&doc)
                        .send(),
                )
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => Ok(ActionOutcome::done(
                State::Revoked,
                format!(
                    "sessions of {who} issued before {} are denied (inline policy {name})",
                    rfc3339(cutoff)
                ),
            )),
            Err(e) if e.is_not_found() => Ok(ActionOutcome::already(
                State::Deleted,
                format!("{who} no longer exists"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn remove_login_profile(
        &self,
        user: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        settle(
            self.call(
                "DeleteLoginProfile",
                self.iam.delete_login_profile().user_name(user).send(),
            )
            .await,
            State::Deleted,
            format!("deleted the login profile (console password) of iam user {user}"),
            format!("iam user {user} has no login profile"),
        )
    }

    /// The status of one credential: `None` when it (or its user) is gone, `Some(active)`.
    async fn credential_status(
        &self,
        kind: StatusKind,
        user: &str,
        id: &str,
    ) -> Result<Option<bool>, ProviderError> {
        let listed: Result<Option<Vec<(String, bool)>>, CallError> = match kind {
            StatusKind::AccessKey => self
                .list_keys_raw(user)
                .await
                .map(|o| o.map(|v| v.into_iter().map(|(i, a, _)| (i, a)).collect())),
            StatusKind::SshKey => self
                .list_ssh_keys(user)
                .await
                .map(|v| Some(v.into_iter().map(|c| (c.id, c.active)).collect())),
            StatusKind::Certificate => self
                .list_certificates(user)
                .await
                .map(|v| Some(v.into_iter().map(|c| (c.id, c.active)).collect())),
            StatusKind::ServiceCredential => match self.list_service_credentials(user).await {
                Ok(Some(v)) => Ok(Some(v.into_iter().map(|c| (c.id, c.active)).collect())),
                Ok(None) => {
                    return Err(ProviderError::Unsupported {
                        provider: PROVIDER,
                        message: "the endpoint does not implement ListServiceSpecificCredentials"
                            .into(),
                    })
                }
                Err(e) => Err(e),
            },
        };
        let listed = match listed {
            Ok(l) => l,
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        Ok(listed.and_then(|l| l.into_iter().find(|(i, _)| i == id).map(|(_, a)| a)))
    }

    pub(crate) async fn deactivate(
        &self,
        kind: StatusKind,
        user: &str,
        id: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        let label = kind.label();
        match self.credential_status(kind, user, id).await? {
            None => {
                return Ok(ActionOutcome::already(
                    State::Deleted,
                    format!("{label} {id} of iam user {user} no longer exists"),
                ))
            }
            Some(false) => {
                return Ok(ActionOutcome::already(
                    State::Inactive,
                    format!("{label} {id} of iam user {user} is already inactive"),
                ))
            }
            Some(true) => {}
        }
        let result = match kind {
            StatusKind::AccessKey => self
                .call(
                    "UpdateAccessKey",
                    self.iam
                        .update_access_key()
                        .user_name(user)
                        .access_key_id(id)
                        .status(StatusType::Inactive)
                        .send(),
                )
                .await
                .map(|_| ()),
            StatusKind::SshKey => self
                .call(
                    "UpdateSSHPublicKey",
                    self.iam
                        .update_ssh_public_key()
                        .user_name(user)
                        .ssh_public_key_id(id)
                        .status(StatusType::Inactive)
                        .send(),
                )
                .await
                .map(|_| ()),
            StatusKind::Certificate => self
                .call(
                    "UpdateSigningCertificate",
                    self.iam
                        .update_signing_certificate()
                        .user_name(user)
                        .certificate_id(id)
                        .status(StatusType::Inactive)
                        .send(),
                )
                .await
                .map(|_| ()),
            StatusKind::ServiceCredential => self
                .call(
                    "UpdateServiceSpecificCredential",
                    self.iam
                        .update_service_specific_credential()
                        .user_name(user)
                        .service_specific_credential_id(id)
                        .status(StatusType::Inactive)
                        .send(),
                )
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => Ok(ActionOutcome::done(
                State::Inactive,
                format!("deactivated {label} {id} of iam user {user}"),
            )),
            Err(e) if e.is_not_found() => Ok(ActionOutcome::already(
                State::Deleted,
                format!("{label} {id} of iam user {user} no longer exists"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn delete(
        &self,
        kind: StatusKind,
        user: &str,
        id: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        let label = kind.label();
        let result = match kind {
            StatusKind::AccessKey => self
                .call(
                    "DeleteAccessKey",
                    self.iam
                        .delete_access_key()
                        .user_name(user)
                        .access_key_id(id)
                        .send(),
                )
                .await
                .map(|_| ()),
            StatusKind::SshKey => self
                .call(
                    "DeleteSSHPublicKey",
                    self.iam
                        .delete_ssh_public_key()
                        .user_name(user)
                        .ssh_public_key_id(id)
                        .send(),
                )
                .await
                .map(|_| ()),
            StatusKind::Certificate => self
                .call(
                    "DeleteSigningCertificate",
                    self.iam
                        .delete_signing_certificate()
                        .user_name(user)
                        .certificate_id(id)
                        .send(),
                )
                .await
                .map(|_| ()),
            StatusKind::ServiceCredential => self
                .call(
                    "DeleteServiceSpecificCredential",
                    self.iam
                        .delete_service_specific_credential()
                        .user_name(user)
                        .service_specific_credential_id(id)
                        .send(),
                )
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => Ok(ActionOutcome::done(
                State::Deleted,
                format!("deleted {label} {id} of iam user {user}"),
            )),
            Err(e) if e.is_not_found() => Ok(ActionOutcome::already(
                State::Deleted,
                format!("{label} {id} of iam user {user} is already deleted"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn deactivate_mfa(
        &self,
        user: &str,
        serial: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        let devices = match self.list_mfa(user).await {
            Ok(d) => d,
            Err(e) if e.is_not_found() => {
                return Ok(ActionOutcome::already(
                    State::Deleted,
                    format!("iam user {user} no longer exists"),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        if !devices.iter().any(|d| d.serial == serial) {
            return Ok(ActionOutcome::already(
                State::Inactive,
                format!("mfa device {serial} is not enabled for iam user {user}"),
            ));
        }
        settle(
            self.call(
                "DeactivateMFADevice",
                self.iam
                    .deactivate_mfa_device()
                    .user_name(user)
                    .serial_number(serial)
                    .send(),
            )
            .await,
            State::Inactive,
            format!("deactivated mfa device {serial} of iam user {user}"),
            format!("mfa device {serial} is not enabled for iam user {user}"),
        )
    }

    pub(crate) async fn remove_from_group(
        &self,
        user: &str,
        group: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        let groups = match self.groups_for_user(user).await {
            Ok(g) => g,
            Err(e) if e.is_not_found() => {
                return Ok(ActionOutcome::already(
                    State::Deleted,
                    format!("iam user {user} no longer exists"),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        if !groups.iter().any(|g| g == group) {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("iam user {user} is not in group {group}"),
            ));
        }
        settle(
            self.call(
                "RemoveUserFromGroup",
                self.iam
                    .remove_user_from_group()
                    .user_name(user)
                    .group_name(group)
                    .send(),
            )
            .await,
            State::Deleted,
            format!("removed iam user {user} from group {group}"),
            format!("iam user {user} is not in group {group}"),
        )
    }

    pub(crate) async fn detach_user_policy(
        &self,
        user: &str,
        arn: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        let attached = match self.attached_user_policies(user).await {
            Ok(a) => a,
            Err(e) if e.is_not_found() => {
                return Ok(ActionOutcome::already(
                    State::Deleted,
                    format!("iam user {user} no longer exists"),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        if !attached.iter().any(|a| a == arn) {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("policy {arn} is not attached to iam user {user}"),
            ));
        }
        settle(
            self.call(
                "DetachUserPolicy",
                self.iam
                    .detach_user_policy()
                    .user_name(user)
                    .policy_arn(arn)
                    .send(),
            )
            .await,
            State::Deleted,
            format!("detached policy {arn} from iam user {user}"),
            format!("policy {arn} is not attached to iam user {user}"),
        )
    }

    pub(crate) async fn remove_inline_policy(
        &self,
        user: &str,
        name: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        let Some(document) = self.inline_policy_text(Principal::User(user), name).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("iam user {user} has no inline policy {name}"),
            ));
        };
        match self
            .call(
                "DeleteUserPolicy",
                self.iam
                    .delete_user_policy()
                    .user_name(user)
                    .policy_name(name)
                    .send(),
            )
            .await
        {
            // Policy documents are not secret: keeping it lets an operator restore the policy.
            Ok(_) => Ok(ActionOutcome::done(
                State::Deleted,
                format!(
                    "deleted inline policy {name} of iam user {user}; its document was: {document}"
                ),
            )),
            Err(e) if e.is_not_found() => Ok(ActionOutcome::already(
                State::Deleted,
                format!("iam user {user} has no inline policy {name}"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn reassign_owner(
        &self,
        target: Principal<'_>,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        let new_owner = action
            .params
            .new_owner
            .as_deref()
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .ok_or_else(|| permanent("reassign-owner needs the new_owner parameter"))?;
        let owner_tag = self.config.owner_tag.as_str();
        let who = target.describe();
        let tags = match self.principal_tags(target).await? {
            Some(t) => t,
            None => {
                return Ok(ActionOutcome::already(
                    State::Deleted,
                    format!("{who} no longer exists"),
                ))
            }
        };
        // Write to the key as it is spelled on the resource (IAM tag keys ignore case).
        let key = tags
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(owner_tag))
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| owner_tag.to_string());
        let previous = tag(&tags, owner_tag).map(str::to_string);
        if previous.as_deref() == Some(new_owner) {
            return Ok(ActionOutcome::already(
                State::Reassigned,
                format!("{who} is already owned by {new_owner}"),
            ));
        }
        let mut new_tags = vec![(key, new_owner.to_string())];
        if let Some(prev) = &previous {
            new_tags.push(("closeout:previous-owner".into(), prev.clone()));
        }
        if !action.params.run_id.is_empty() {
            new_tags.push(("closeout:run".into(), action.params.run_id.clone()));
        }
        let iam_tags: Vec<aws_sdk_iam::types::Tag> = new_tags
            .iter()
            .filter_map(|(k, v)| {
                aws_sdk_iam::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .ok()
            })
            .collect();
        let result = match target {
            Principal::User(u) => self
                .call(
                    "TagUser",
                    self.iam
                        .tag_user()
                        .user_name(u)
                        .set_tags(Some(iam_tags))
                        .send(),
                )
                .await
                .map(|_| ()),
            Principal::Role(r) => self
                .call(
                    "TagRole",
                    self.iam
                        .tag_role()
                        .role_name(r)
                        .set_tags(Some(iam_tags))
                        .send(),
                )
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => Ok(ActionOutcome::done(
                State::Reassigned,
                format!(
                    "owner of {who} changed from {} to {new_owner}",
                    previous.as_deref().unwrap_or("(none)")
                ),
            )),
            Err(e) if e.is_not_found() => Ok(ActionOutcome::already(
                State::Deleted,
                format!("{who} no longer exists"),
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// A mutating call's result as an action outcome: success is done, "not found" is the
/// idempotent success (the thing is already gone), anything else an error.
pub(crate) fn settle<T>(
    result: Result<T, CallError>,
    state: State,
    done: String,
    already: String,
) -> Result<ActionOutcome, ProviderError> {
    match result {
        Ok(_) => Ok(ActionOutcome::done(state, done)),
        Err(e) if e.is_not_found() => Ok(ActionOutcome::already(state, already)),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_round_up_to_the_second() {
        let t: DateTime<Utc> = "2025-01-01T00:00:10.200Z".parse().unwrap();
        assert_eq!(rfc3339(ceil_to_second(t)), "2025-01-01T00:00:11Z");
        let whole: DateTime<Utc> = "2025-01-01T00:00:10Z".parse().unwrap();
        assert_eq!(ceil_to_second(whole), whole);
    }

    #[test]
    fn revoke_policy_round_trips_through_the_cutoff_parser() {
        let t: DateTime<Utc> = "2025-01-01T00:00:10Z".parse().unwrap();
        let doc = revoke_policy_document(t);
        assert_eq!(
            doc,
            r#"{"Statement":[{"Action":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":"2025-01-01T00:00:10Z"}},"Effect":"Deny","Resource":"*"}],"Version":"2012-10-17"}"#
        );
        assert_eq!(PolicyDocument::token_issue_cutoff(&doc), Some(t));
    }
}
