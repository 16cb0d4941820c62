//! `execute`: one action on one finding, idempotently. Every verb first reads the live state and
//! returns [`ActionOutcome::already`] when nothing needs changing, so re-running a finished (or
//! half-finished) action is safe.

use crate::error::{permanent, CallError, CallFailure};
use crate::inventory::{rfc3339, tag};
use crate::policy::PolicyDocument;
use crate::resolve::{AWSCURRENT, AWSPENDING};
use crate::{kinds, AwsProvider, CAPABILITIES, PROVIDER};
use aws_sdk_iam::types::StatusType;
use chrono::{DateTime, Utc};
use closeout_contract::{
    replacement_for, ActionOutcome, ActionRequest, Finding, Holder, ProviderError, SecretValue,
    State,
};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How often a freshly created access key is tried before giving up (IAM is eventually
/// consistent: a new key can take several seconds to work).
const KEY_TEST_ATTEMPTS: u32 = 8;

/// A UUID-shaped string derived from `key`: the same key always gives the same token, so a
/// `ClientRequestToken` built from an idempotency key makes a repeated put a no-op.
pub fn request_token(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4 layout
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

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

fn attr<'a>(f: &'a Finding, key: &str) -> Result<&'a str, ProviderError> {
    f.attr(key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| permanent(format!("finding {} has no attribute {key}", f.id)))
}

/// Whose sessions to revoke.
#[derive(Clone, Copy)]
pub(crate) enum Principal<'a> {
    User(&'a str),
    Role(&'a str),
}

impl Principal<'_> {
    fn describe(&self) -> String {
        match self {
            Principal::User(u) => format!("iam user {u}"),
            Principal::Role(r) => format!("role {r}"),
        }
    }
}

/// A credential with an Active/Inactive status.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StatusKind {
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
    pub(crate) async fn execute_impl(
        &self,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let verb = action.verb.as_str();
        if f.provider != PROVIDER {
            return Err(permanent(format!(
                "finding {} belongs to provider {}, not {PROVIDER}",
                f.id, f.provider
            )));
        }
        if CAPABILITIES.verb(&f.kind, verb).is_none() {
            return Err(permanent(format!(
                "kind {} does not support verb {verb} (finding {})",
                f.kind, f.id
            )));
        }
        tracing::info!(finding = %f.id, verb, key = %action.idempotency_key, "aws action");
        let p = &action.params;
        match (f.kind.as_str(), verb) {
            (kinds::USER, "revoke-sessions") => {
                self.revoke_sessions(Principal::User(attr(f, "user")?), p.sessions_issued_before)
                    .await
            }
            (kinds::ASSUMABLE_ROLE, "revoke-sessions") => {
                self.revoke_sessions(Principal::Role(attr(f, "role")?), p.sessions_issued_before)
                    .await
            }
            (kinds::LOGIN_PROFILE, "remove") => self.remove_login_profile(attr(f, "user")?).await,
            (kinds::ACCESS_KEY, "deactivate") => {
                self.deactivate(StatusKind::AccessKey, attr(f, "user")?, &f.resource)
                    .await
            }
            (kinds::ACCESS_KEY, "delete") => {
                self.delete(StatusKind::AccessKey, attr(f, "user")?, &f.resource)
                    .await
            }
            (kinds::ACCESS_KEY, "rotate") => self.rotate_nhi_key(f, &action.idempotency_key).await,
            (kinds::SSH_KEY, "deactivate") => {
                self.deactivate(StatusKind::SshKey, attr(f, "user")?, &f.resource)
                    .await
            }
            (kinds::SSH_KEY, "delete") => {
                self.delete(StatusKind::SshKey, attr(f, "user")?, &f.resource)
                    .await
            }
            (kinds::SIGNING_CERTIFICATE, "deactivate") => {
                self.deactivate(StatusKind::Certificate, attr(f, "user")?, &f.resource)
                    .await
            }
            (kinds::SIGNING_CERTIFICATE, "delete") => {
                self.delete(StatusKind::Certificate, attr(f, "user")?, &f.resource)
                    .await
            }
            (kinds::SERVICE_CREDENTIAL, "deactivate") => {
                self.deactivate(StatusKind::ServiceCredential, attr(f, "user")?, &f.resource)
                    .await
            }
            (kinds::SERVICE_CREDENTIAL, "delete") => {
                self.delete(StatusKind::ServiceCredential, attr(f, "user")?, &f.resource)
                    .await
            }
            (kinds::MFA_DEVICE, "deactivate") => {
                self.deactivate_mfa(attr(f, "user")?, &f.resource).await
            }
            (kinds::GROUP_MEMBERSHIP, "remove") => {
                self.remove_from_group(attr(f, "user")?, attr(f, "group")?)
                    .await
            }
            (kinds::GROUP_MEMBERSHIP, "grant") => {
                self.add_to_group(attr(f, "user")?, attr(f, "group")?).await
            }
            (kinds::ATTACHED_POLICY, "grant") => {
                self.attach_user_policy(attr(f, "user")?, attr(f, "policy_arn")?)
                    .await
            }
            (kinds::ATTACHED_POLICY, "detach") => {
                self.detach_user_policy(attr(f, "user")?, attr(f, "policy_arn")?)
                    .await
            }
            (kinds::INLINE_POLICY, "remove") => {
                self.remove_inline_policy(attr(f, "user")?, attr(f, "policy")?)
                    .await
            }
            (kinds::SECRET, "rotate") => self.rotate_secret(f, &action.idempotency_key).await,
            (kinds::NHI_USER, "reassign-owner") => {
                self.reassign_owner(Principal::User(attr(f, "user")?), action)
                    .await
            }
            (kinds::NHI_ROLE, "reassign-owner") => {
                self.reassign_owner(Principal::Role(attr(f, "role")?), action)
                    .await
            }
            (kind, verb) => Err(permanent(format!(
                "kind {kind} does not support verb {verb} (finding {})",
                f.id
            ))),
        }
    }

    /// The document of an inline policy; `None` when it (or its user/role) does not exist.
    pub(crate) async fn inline_policy_text(
        &self,
        target: Principal<'_>,
        name: &str,
    ) -> Result<Option<String>, CallError> {
        let result = match target {
            Principal::User(u) => self
                .call(
                    "GetUserPolicy",
                    self.iam
                        .get_user_policy()
                        .user_name(u)
                        .policy_name(name)
                        .send(),
                )
                .await
                .map(|o| o.policy_document().to_string()),
            Principal::Role(r) => self
                .call(
                    "GetRolePolicy",
                    self.iam
                        .get_role_policy()
                        .role_name(r)
                        .policy_name(name)
                        .send(),
                )
                .await
                .map(|o| o.policy_document().to_string()),
        };
        match result {
            Ok(text) => Ok(Some(
                crate::policy::decode_document(&text)
                    .map(|t| t.into_owned())
                    .unwrap_or(text),
            )),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn revoke_sessions(
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

    async fn remove_login_profile(&self, user: &str) -> Result<ActionOutcome, ProviderError> {
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

    async fn deactivate(
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

    async fn delete(
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

    async fn deactivate_mfa(
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

    async fn remove_from_group(
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

    async fn detach_user_policy(
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

    async fn remove_inline_policy(
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

    /// Rotate a secret: new value staged as `AWSPENDING` with a request token derived from the
    /// idempotency key, promoted to `AWSCURRENT` (the old version becomes `AWSPREVIOUS`), then the
    /// `AWSPENDING` label is cleared.
    async fn rotate_secret(&self, f: &Finding, key: &str) -> Result<ActionOutcome, ProviderError> {
        let secret = f.resource.as_str();
        let name = f.attr("name").unwrap_or(secret);
        let token = request_token(key);
        let Some(versions) = self.secret_versions(secret).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("secret {name} no longer exists"),
            ));
        };
        let current = versions.with_stage(AWSCURRENT).map(|v| v.id.clone());
        let ours = versions.by_id(&token).cloned();
        if current.as_deref() == Some(token.as_str()) {
            if ours.as_ref().is_some_and(|v| v.has(AWSPENDING)) {
                self.clear_pending(secret, &token).await?;
            }
            return Ok(ActionOutcome::already(
                State::Rotated,
                format!("version {token} of secret {name} is already AWSCURRENT"),
            ));
        }
        match &ours {
            // Promoted earlier and superseded since: never bring an old value back.
            Some(v) if !v.has(AWSPENDING) => {
                return Ok(ActionOutcome::already(
                    State::Rotated,
                    format!(
                        "version {token} of secret {name} was promoted earlier and has been superseded"
                    ),
                ));
            }
            // A secret with rotation configured belongs to its rotation function (it changes
            // the database password, say, with the value): writing a value by hand would break
            // the service it guards, so the function is asked to rotate.
            _ if f.attr("rotation_enabled") == Some("true") => {
                return self
                    .trigger_configured_rotation(secret, name, &token, ours.is_some())
                    .await;
            }
            // Staged by an earlier attempt that did not finish: promote it below.
            Some(_) => {}
            None => {
                // moto returns the old value from GetSecretValue without a stage even after
                // AWSCURRENT moved: always ask for AWSCURRENT explicitly.
                let old = self
                    .call(
                        "GetSecretValue",
                        self.sm
                            .get_secret_value()
                            .secret_id(secret)
                            .version_stage(AWSCURRENT)
                            .send(),
                    )
                    .await?;
                let put = self
                    .sm
                    .put_secret_value()
                    .secret_id(secret)
                    .client_request_token(&token)
                    .version_stages(AWSPENDING);
                let put = match old.secret_string() {
                    Some(s) => {
                        let new = replacement_for(&SecretValue::new(s));
                        put.secret_string(new.expose())
                    }
                    None => {
                        let new = SecretValue::generate();
                        put.secret_binary(aws_smithy_types::Blob::new(new.expose().as_bytes()))
                    }
                };
                drop(old);
                self.call("PutSecretValue", put.send()).await?;
            }
        }
        let mut promote = self
            .sm
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(AWSCURRENT)
            .move_to_version_id(&token);
        if let Some(c) = &current {
            promote = promote.remove_from_version_id(c);
        }
        self.call("UpdateSecretVersionStage", promote.send())
            .await?;
        self.clear_pending(secret, &token).await?;
        Ok(ActionOutcome::done(
            State::Rotated,
            match &current {
                Some(c) => format!(
                    "new version {token} of secret {name} is AWSCURRENT; previous version {c} is AWSPREVIOUS"
                ),
                None => format!("new version {token} of secret {name} is AWSCURRENT"),
            },
        ))
    }

    /// `RotateSecret` with this action's request token as the new version's id (so a retry is
    /// the same rotation, never a second one); `started`: an earlier attempt already asked and
    /// its version is still AWSPENDING. Rotated once the function has made that version
    /// AWSCURRENT; still active while it is AWSPENDING (verification reads the outcome again).
    async fn trigger_configured_rotation(
        &self,
        secret: &str,
        name: &str,
        token: &str,
        started: bool,
    ) -> Result<ActionOutcome, ProviderError> {
        if !started {
            self.call(
                "RotateSecret",
                self.sm
                    .rotate_secret()
                    .secret_id(secret)
                    .client_request_token(token)
                    .rotate_immediately(true)
                    .send(),
            )
            .await?;
        }
        let current = self
            .secret_versions(secret)
            .await?
            .and_then(|v| v.with_stage(AWSCURRENT).map(|c| c.id.clone()));
        Ok(if current.as_deref() == Some(token) {
            ActionOutcome::done(
                State::Rotated,
                format!(
                    "the rotation function of secret {name} made new version {token} AWSCURRENT"
                ),
            )
        } else {
            ActionOutcome::done(
                State::Active,
                format!(
                    "asked the rotation function of secret {name} to rotate (version {token} is AWSPENDING until it finishes; verification reads the result)"
                ),
            )
        })
    }

    async fn clear_pending(&self, secret: &str, version: &str) -> Result<(), ProviderError> {
        self.call(
            "UpdateSecretVersionStage",
            self.sm
                .update_secret_version_stage()
                .secret_id(secret)
                .version_stage(AWSPENDING)
                .remove_from_version_id(version)
                .send(),
        )
        .await?;
        Ok(())
    }

    /// The access key published in the NHI secret `name`, if the secret exists and holds one.
    async fn read_published(
        &self,
        name: &str,
    ) -> Result<Option<(String, SecretValue)>, ProviderError> {
        let out = match self
            .call(
                "GetSecretValue",
                self.sm
                    .get_secret_value()
                    .secret_id(name)
                    .version_stage(AWSCURRENT)
                    .send(),
            )
            .await
        {
            Ok(out) => out,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(text) = out.secret_string() else {
            return Ok(None);
        };
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text)
        else {
            return Ok(None);
        };
        match (
            map.get("AccessKeyId").and_then(|v| v.as_str()),
            map.get("SecretAccessKey").and_then(|v| v.as_str()),
        ) {
            (Some(id), Some(secret)) => Ok(Some((id.to_string(), SecretValue::new(secret)))),
            _ => Ok(None),
        }
    }

    /// Publish a new key to the NHI secret: a new version of it, or the secret itself when missing.
    async fn publish_key(
        &self,
        name: &str,
        user: &str,
        id: &str,
        secret: &SecretValue,
        key: &str,
    ) -> Result<(), ProviderError> {
        let value = SecretValue::new(
            serde_json::json!({"AccessKeyId": id, "SecretAccessKey": secret.expose()}).to_string(),
        );
        let token = request_token(&format!("{key}/publish/{id}"));
        match self
            .call(
                "PutSecretValue",
                self.sm
                    .put_secret_value()
                    .secret_id(name)
                    .client_request_token(&token)
                    .secret_string(value.expose())
                    .send(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => {
                self.call(
                    "CreateSecret",
                    self.sm
                        .create_secret()
                        .name(name)
                        .client_request_token(&token)
                        .description(format!(
                            "Access key of IAM user {user}, rotated and published by Closeout"
                        ))
                        .secret_string(value.expose())
                        .tags(
                            aws_sdk_secretsmanager::types::Tag::builder()
                                .key("managed-by")
                                .value("closeout")
                                .build(),
                        )
                        .tags(
                            aws_sdk_secretsmanager::types::Tag::builder()
                                .key("closeout:nhi-user")
                                .value(user)
                                .build(),
                        )
                        .send(),
                )
                .await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Prove a new key works: STS `GetCallerIdentity` with it, against the same endpoint,
    /// retried while IAM propagates the key.
    async fn test_key(
        &self,
        user: &str,
        id: &str,
        secret: &SecretValue,
    ) -> Result<(), ProviderError> {
        let creds = aws_credential_types::Credentials::new(
            id,
            secret.expose(),
            None,
            None,
            "closeout-rotation-test",
        );
        let conf = aws_sdk_sts::config::Builder::from(&self.sdk)
            .credentials_provider(creds)
            .build();
        let sts = aws_sdk_sts::Client::from_conf(conf);
        let mut last: Option<CallError> = None;
        for attempt in 0..KEY_TEST_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt.min(5)))).await;
            }
            match self
                .call("GetCallerIdentity", sts.get_caller_identity().send())
                .await
            {
                Ok(out) => {
                    let arn = out.arn().unwrap_or_default();
                    let is_user = arn
                        .rsplit_once(":user/")
                        .is_some_and(|(_, path)| path.rsplit('/').next() == Some(user));
                    if is_user {
                        return Ok(());
                    }
                    return Err(permanent(format!(
                        "new access key {id} authenticates as {arn}, not as iam user {user}"
                    )));
                }
                Err(e) => {
                    tracing::debug!(attempt, error = %e, "new access key not usable yet");
                    if matches!(
                        e.failure,
                        CallFailure::Dispatch | CallFailure::Timeout | CallFailure::Construction
                    ) {
                        // Not eventual consistency: the endpoint is unreachable or misconfigured.
                        return Err(e.into());
                    }
                    last = Some(e);
                }
            }
        }
        Err(ProviderError::Transient {
            provider: PROVIDER,
            message: format!(
                "new access key {id} of iam user {user} did not authenticate after {KEY_TEST_ATTEMPTS} attempts{}",
                last.map(|e| format!(" (last error: {e})")).unwrap_or_default()
            ),
        })
    }

    /// Rotate an owned NHI's access key: create new, publish, test, deactivate old.
    async fn rotate_nhi_key(&self, f: &Finding, key: &str) -> Result<ActionOutcome, ProviderError> {
        let Holder::Nhi(user) = &f.holder else {
            return Err(permanent(format!(
                "access key {} belongs to the person's own account: rotate applies only to access keys of non-human identities; deactivate and delete it instead",
                f.resource
            )));
        };
        let user = user.as_str();
        let old = f.resource.as_str();
        let secret_name = self.config.nhi_secret_name(user);
        let Some(keys) = self.list_keys_raw(user).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("iam user {user} no longer exists"),
            ));
        };
        let published = self.read_published(&secret_name).await?;
        let reusable = published
            .filter(|(id, _)| id != old && keys.iter().any(|(k, active, _)| k == id && *active));
        let old_active = keys.iter().find(|(k, _, _)| k == old).map(|(_, a, _)| *a);
        let (new_id, new_secret, created) = match reusable {
            Some((id, s)) => (id, s, false),
            None => {
                if keys.len() >= 2 {
                    let ids: Vec<&str> = keys.iter().map(|(k, _, _)| k.as_str()).collect();
                    return Err(permanent(format!(
                        "iam user {user} already has two access keys ({}) and neither is the one published in secret {secret_name}: delete the unused one, then run the rotation again",
                        ids.join(", ")
                    )));
                }
                let out = self
                    .call(
                        "CreateAccessKey",
                        self.iam.create_access_key().user_name(user).send(),
                    )
                    .await?;
                let Some(k) = out.access_key() else {
                    return Err(permanent("CreateAccessKey returned no access key"));
                };
                let id = k.access_key_id().to_string();
                let secret = SecretValue::new(k.secret_access_key());
                drop(out);
                if let Err(e) = self
                    .publish_key(&secret_name, user, &id, &secret, key)
                    .await
                {
                    // Nobody can use a key whose secret was never published: remove it so the
                    // retry starts from a clean state instead of finding two keys.
                    let _ = self
                        .call(
                            "DeleteAccessKey",
                            self.iam
                                .delete_access_key()
                                .user_name(user)
                                .access_key_id(&id)
                                .send(),
                        )
                        .await;
                    return Err(e);
                }
                (id, secret, true)
            }
        };
        match old_active {
            Some(false) | None if !created => {
                return Ok(ActionOutcome::already(
                    State::Inactive,
                    format!(
                        "access key {old} of iam user {user} is already retired; access key {new_id} is published in secret {secret_name}"
                    ),
                ))
            }
            _ => {}
        }
        self.test_key(user, &new_id, &new_secret).await?;
        drop(new_secret);
        let retired = match old_active {
            Some(true) => {
                match self
                    .call(
                        "UpdateAccessKey",
                        self.iam
                            .update_access_key()
                            .user_name(user)
                            .access_key_id(old)
                            .status(StatusType::Inactive)
                            .send(),
                    )
                    .await
                {
                    Ok(_) => "deactivated",
                    Err(e) if e.is_not_found() => "found already deleted",
                    Err(e) => return Err(e.into()),
                }
            }
            Some(false) => "found already inactive",
            None => "found already deleted",
        };
        let state = if retired == "found already deleted" {
            State::Deleted
        } else {
            State::Inactive
        };
        Ok(ActionOutcome::done(
            state,
            format!(
                "{} access key {new_id} for iam user {user}, published it to secret {secret_name}, verified it with sts:GetCallerIdentity, and {retired} the old key {old}",
                if created { "created" } else { "reused the already published" }
            ),
        ))
    }

    async fn reassign_owner(
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
fn settle<T>(
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
    fn request_tokens_are_stable_uuid_shaped_and_distinct() {
        let a = request_token("run-1/step-3/aws:secret:arn:x");
        assert_eq!(a, request_token("run-1/step-3/aws:secret:arn:x"));
        assert_ne!(a, request_token("run-2/step-3/aws:secret:arn:x"));
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }

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
