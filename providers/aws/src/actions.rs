//! `execute`: check that the action is this provider's and a verb its kind supports, then hand
//! it to the module that does it ([`crate::iam_verbs`], [`crate::sso_verbs`], [`crate::secret_rotation`],
//! [`crate::nhi_key_rotation`], and the grants of [`crate::entitlements`]). Every verb first
//! reads the live state and returns [`ActionOutcome::already`] when nothing needs changing, so
//! re-running a finished (or half-finished) action is safe.

use crate::capabilities::{kinds, CAPABILITIES, PROVIDER};
use crate::client::AwsProvider;
use crate::error::permanent;
use crate::findings::required_attr as attr;
use crate::iam_verbs::StatusKind;
use crate::principal::Principal;
use closeout_contract::{ActionOutcome, ActionRequest, ProviderError};

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
            // The person's own sessions when they can be told apart (federated sign-in), else
            // every session of the role.
            (kinds::ASSUMABLE_ROLE, "revoke-sessions")
                if f.attr("revoke_scope") == Some("person") =>
            {
                self.revoke_person_sessions(f, p.sessions_issued_before)
                    .await
            }
            (kinds::ASSUMABLE_ROLE, "revoke-sessions") => {
                self.revoke_sessions(Principal::Role(attr(f, "role")?), p.sessions_issued_before)
                    .await
            }
            (kinds::SSO_USER, "remove") => self.remove_sso_user(f).await,
            (kinds::SSO_GROUP_MEMBERSHIP, "remove") => self.remove_sso_membership(f).await,
            (kinds::SSO_ACCOUNT_ASSIGNMENT, "remove") => self.remove_sso_assignment(f).await,
            (kinds::SESSION_DENY, "remove") => self.remove_session_deny(f).await,
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
}
