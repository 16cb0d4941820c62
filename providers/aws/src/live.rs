//! Live state of one finding and probes of old credentials. Everything here reads AWS; nothing
//! trusts a cached resolution.

use crate::capabilities::{kinds, PROVIDER};
use crate::client::AwsProvider;
use crate::error::{found, permanent};
use crate::findings::required_attr as attr;
use crate::inventory::{last_changed, tag};
use crate::principal::Principal;
use crate::state::{key_state, secret_state, session_state};
use closeout_contract::{Finding, Holder, ProbeOutcome, ProviderError, ResolveContext, State};

impl AwsProvider {
    /// The live state of one finding.
    pub(crate) async fn live_state_impl(
        &self,
        f: &Finding,
        ctx: &ResolveContext,
    ) -> Result<State, ProviderError> {
        if f.provider != PROVIDER {
            return Err(permanent(format!(
                "finding {} belongs to provider {}",
                f.id, f.provider
            )));
        }
        let revoke = self.config.session_revoke_policy.as_str();
        let state = match f.kind.as_str() {
            kinds::USER => {
                let user = attr(f, "user")?;
                if found(
                    self.call("GetUser", self.iam.get_user().user_name(user).send())
                        .await,
                )?
                .is_none()
                {
                    return Ok(State::Deleted);
                }
                let text = self
                    .inline_policy_text(Principal::User(user), revoke)
                    .await?;
                session_state(text.as_deref(), ctx.cutoff)
            }
            kinds::ASSUMABLE_ROLE => {
                let role = attr(f, "role")?;
                if found(
                    self.call("GetRole", self.iam.get_role().role_name(role).send())
                        .await,
                )?
                .is_none()
                {
                    return Ok(State::Deleted);
                }
                let text = self
                    .inline_policy_text(Principal::Role(role), revoke)
                    .await?;
                session_state(text.as_deref(), ctx.cutoff)
            }
            kinds::LOGIN_PROFILE => match self.login_profile(attr(f, "user")?).await? {
                Some(_) => State::Active,
                None => State::Deleted,
            },
            kinds::ACCESS_KEY => {
                let user = attr(f, "user")?;
                let keys = self.list_keys_raw(user).await?.unwrap_or_default();
                match keys.into_iter().find(|(id, _, _)| *id == f.resource) {
                    Some((_, active, created)) => key_state(
                        active,
                        matches!(f.holder, Holder::Nhi(_)),
                        created,
                        ctx.cutoff,
                    ),
                    None => State::Deleted,
                }
            }
            kinds::SSH_KEY | kinds::SIGNING_CERTIFICATE | kinds::SERVICE_CREDENTIAL => {
                let user = attr(f, "user")?;
                let listed = match f.kind.as_str() {
                    kinds::SSH_KEY => found(self.list_ssh_keys(user).await)?,
                    kinds::SIGNING_CERTIFICATE => found(self.list_certificates(user).await)?,
                    _ => match found(self.list_service_credentials(user).await)? {
                        Some(Some(list)) => Some(list),
                        Some(None) => return Ok(State::Unknown),
                        None => None,
                    },
                };
                match listed.and_then(|l| l.into_iter().find(|c| c.id == f.resource)) {
                    Some(c) if c.active => State::Active,
                    Some(_) => State::Inactive,
                    None => State::Deleted,
                }
            }
            kinds::MFA_DEVICE => match found(self.list_mfa(attr(f, "user")?).await)? {
                None => State::Deleted,
                Some(devices) if devices.iter().any(|d| d.serial == f.resource) => State::Active,
                // No longer enabled for the user (the device itself may still exist).
                Some(_) => State::Inactive,
            },
            kinds::GROUP_MEMBERSHIP => {
                let group = attr(f, "group")?;
                match found(self.groups_for_user(attr(f, "user")?).await)? {
                    Some(groups) if groups.iter().any(|g| g == group) => State::Active,
                    _ => State::Deleted,
                }
            }
            kinds::ATTACHED_POLICY => {
                let arn = attr(f, "policy_arn")?;
                match found(self.attached_user_policies(attr(f, "user")?).await)? {
                    Some(list) if list.iter().any(|a| a == arn) => State::Active,
                    _ => State::Deleted,
                }
            }
            kinds::INLINE_POLICY => {
                let user = attr(f, "user")?;
                match self
                    .inline_policy_text(Principal::User(user), attr(f, "policy")?)
                    .await?
                {
                    Some(_) => State::Active,
                    None => State::Deleted,
                }
            }
            kinds::GROUP_POLICY => {
                let group = attr(f, "group")?;
                let member = found(self.groups_for_user(attr(f, "user")?).await)?
                    .is_some_and(|g| g.iter().any(|x| x == group));
                if !member {
                    return Ok(State::Deleted);
                }
                let present = match f.attr("policy_arn") {
                    Some(arn) => found(self.attached_group_policies(group).await)?
                        .is_some_and(|l| l.iter().any(|a| a == arn)),
                    None => found(
                        self.call(
                            "GetGroupPolicy",
                            self.iam
                                .get_group_policy()
                                .group_name(group)
                                .policy_name(attr(f, "policy")?)
                                .send(),
                        )
                        .await,
                    )?
                    .is_some(),
                };
                if present {
                    State::Active
                } else {
                    State::Deleted
                }
            }
            kinds::SECRET => {
                let described = found(
                    self.call(
                        "DescribeSecret",
                        self.sm.describe_secret().secret_id(&f.resource).send(),
                    )
                    .await,
                )?;
                let Some(described) = described else {
                    return Ok(State::Deleted);
                };
                if described.deleted_date().is_some() {
                    return Ok(State::Deleted);
                }
                match self.secret_versions(&f.resource).await? {
                    Some(mut v) => {
                        v.last_changed = last_changed(
                            described.last_changed_date(),
                            described.last_rotated_date(),
                        );
                        secret_state(&v, ctx.cutoff)
                    }
                    None => State::Deleted,
                }
            }
            kinds::NHI_USER | kinds::NHI_ROLE => {
                let target = if f.kind == kinds::NHI_USER {
                    Principal::User(attr(f, "user")?)
                } else {
                    Principal::Role(attr(f, "role")?)
                };
                match self.principal_tags(target).await? {
                    None => State::Deleted,
                    Some(tags) => match tag(&tags, &self.config.owner_tag) {
                        Some(owner) if ctx.identity.is_named_by(owner) => State::Active,
                        _ => State::Reassigned,
                    },
                }
            }
            other => {
                return Err(permanent(format!(
                    "unknown kind {other} (finding {})",
                    f.id
                )))
            }
        };
        Ok(state)
    }

    /// Actively check an old credential: an access key (does it still exist, is it inactive) or
    /// a login profile (does it still exist).
    pub(crate) async fn probe_impl(
        &self,
        f: &Finding,
    ) -> Result<Option<ProbeOutcome>, ProviderError> {
        match f.kind.as_str() {
            kinds::ACCESS_KEY => {
                let id = f.resource.as_str();
                let probe = format!("GetAccessKeyLastUsed {id}");
                let out = match found(
                    self.call(
                        "GetAccessKeyLastUsed",
                        self.iam.get_access_key_last_used().access_key_id(id).send(),
                    )
                    .await,
                )? {
                    Some(out) => out,
                    None => {
                        return Ok(Some(ProbeOutcome {
                            probe,
                            dead: true,
                            detail: "key no longer exists".into(),
                        }))
                    }
                };
                let user = out
                    .user_name()
                    .map(str::to_string)
                    .or_else(|| f.attr("user").map(str::to_string))
                    .unwrap_or_default();
                let keys = self.list_keys_raw(&user).await?.unwrap_or_default();
                let (dead, detail) = match keys.iter().find(|(k, _, _)| k == id) {
                    None => (true, "key no longer exists".to_string()),
                    Some((_, false, _)) => (
                        true,
                        "inactive (moto still accepts inactive keys; AWS refuses them)".to_string(),
                    ),
                    Some((_, true, _)) => (false, format!("key is active for iam user {user}")),
                };
                Ok(Some(ProbeOutcome {
                    probe,
                    dead,
                    detail,
                }))
            }
            kinds::LOGIN_PROFILE => {
                let user = attr(f, "user")?;
                let probe = format!("GetLoginProfile {user}");
                Ok(Some(match self.login_profile(user).await? {
                    None => ProbeOutcome {
                        probe,
                        dead: true,
                        detail: "login profile no longer exists: console sign-in is impossible"
                            .into(),
                    },
                    Some(_) => ProbeOutcome {
                        probe,
                        dead: false,
                        detail: "login profile exists: console sign-in is still possible".into(),
                    },
                }))
            }
            _ => Ok(None),
        }
    }
}
