//! Live state of one finding and probes of old credentials. Everything here reads AWS; nothing
//! trusts a cached resolution.

use crate::capabilities::{kinds, PROVIDER};
use crate::client::AwsProvider;
use crate::error::{found, permanent};
use crate::findings::required_attr as attr;
use crate::inventory::{last_changed, tag, AWSCURRENT, AWSPREVIOUS};
use crate::principal::Principal;
use crate::state::{key_state, secret_state, session_state};
use closeout_contract::{
    Finding, Holder, ProbeOutcome, ProviderError, ResolveContext, SecretValue, State,
};

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
                // A person-scoped deny when the finding names one, else the role-wide one.
                let policy = f.attr("revoke_policy").unwrap_or(revoke);
                let text = self
                    .inline_policy_text(Principal::Role(role), policy)
                    .await?;
                session_state(text.as_deref(), ctx.cutoff)
            }
            kinds::SSO_USER => {
                let got = found(
                    self.call(
                        "DescribeUser",
                        self.idstore
                            .describe_user()
                            .identity_store_id(attr(f, "identity_store_id")?)
                            .user_id(attr(f, "user_id")?)
                            .send(),
                    )
                    .await,
                )?;
                match got {
                    None => State::Deleted,
                    Some(u) if u.user_status().map(|s| s.as_str()) == Some("DISABLED") => {
                        State::Disabled
                    }
                    Some(_) => State::Active,
                }
            }
            kinds::SSO_GROUP_MEMBERSHIP => {
                let got = found(
                    self.call(
                        "DescribeGroupMembership",
                        self.idstore
                            .describe_group_membership()
                            .identity_store_id(attr(f, "identity_store_id")?)
                            .membership_id(attr(f, "membership_id")?)
                            .send(),
                    )
                    .await,
                )?;
                if got.is_some() {
                    State::Active
                } else {
                    State::Deleted
                }
            }
            kinds::SSO_ACCOUNT_ASSIGNMENT | kinds::SSO_GROUP_ASSIGNMENT => {
                if self
                    .sso_assignment_exists(
                        attr(f, "instance_arn")?,
                        attr(f, "principal_type")?,
                        attr(f, "principal_id")?,
                        attr(f, "account")?,
                        attr(f, "permission_set_arn")?,
                    )
                    .await?
                {
                    State::Active
                } else {
                    State::Deleted
                }
            }
            kinds::SESSION_DENY => {
                let text = self
                    .inline_policy_text(Principal::Role(attr(f, "role")?), attr(f, "policy")?)
                    .await?;
                match text.as_deref().map(crate::federation::removable_after) {
                    None => State::Deleted,
                    Some(Some(t)) if t <= chrono::Utc::now() => State::Inactive,
                    Some(_) => State::Revoked,
                }
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
                let versions = match self.secret_versions(&f.resource).await {
                    Ok(v) => v,
                    // Refused: its versions, so whether it is rotated, are unknown.
                    Err(e) if e.is_access_denied() => return Ok(State::Unknown),
                    Err(e) => return Err(e.into()),
                };
                match versions {
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

    /// The access key published in the NHI secret `name` at `stage` (`AWSCURRENT` for the
    /// key in use, `AWSPREVIOUS` for the one a rotation replaced), if the secret exists and that
    /// version holds one. The value never leaves a [`SecretValue`].
    pub(crate) async fn read_published(
        &self,
        name: &str,
        stage: &str,
    ) -> Result<Option<(String, SecretValue)>, ProviderError> {
        let out = match self
            .call(
                "GetSecretValue",
                self.sm
                    .get_secret_value()
                    .secret_id(name)
                    .version_stage(stage)
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

    /// Actively check an old credential. An access key whose secret Closeout holds (an NHI key
    /// it rotated: the publish secret's `AWSPREVIOUS` version) is tried against
    /// `sts:GetCallerIdentity` and must be refused, or at least not answer as the key's user;
    /// any other access key, and a login profile, are checked by their metadata, and the
    /// outcome says which.
    pub(crate) async fn probe_impl(
        &self,
        f: &Finding,
    ) -> Result<Option<ProbeOutcome>, ProviderError> {
        match f.kind.as_str() {
            kinds::ACCESS_KEY => {
                let id = f.resource.as_str();
                let old_secret = match (&f.holder, f.attr("publish_secret")) {
                    (Holder::Nhi(_), Some(name)) => self
                        .read_published(name, AWSPREVIOUS)
                        .await?
                        .filter(|(published, _)| published == id)
                        .map(|(_, secret)| secret),
                    _ => None,
                };
                match old_secret {
                    Some(secret) => self.probe_key_by_sts(f, id, secret).await.map(Some),
                    None => self.probe_key_by_metadata(f, id).await.map(Some),
                }
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
            // A secret rotated by a database strategy: the previous value (what a leaver may
            // have copied) must be refused by PostgreSQL, and the current one must log in.
            kinds::SECRET => {
                let strategy = f
                    .attr(closeout_contract::rotation_strategy::ATTR)
                    .and_then(|s| closeout_contract::Strategy::parse(s).ok());
                if !strategy.is_some_and(|s| s.is_postgres()) {
                    return Ok(None);
                }
                let secret = f.resource.as_str();
                let probe = format!(
                    "PostgreSQL login with the AWSPREVIOUS and AWSCURRENT values of secret {}",
                    f.attr("name").unwrap_or(secret)
                );
                let old = self
                    .secret_value_at(secret, Some(AWSPREVIOUS), None)
                    .await?;
                let new = self.secret_value_at(secret, Some(AWSCURRENT), None).await?;
                let (Some(old), Some(new)) = (old, new) else {
                    return Ok(Some(ProbeOutcome {
                        probe,
                        dead: false,
                        detail: "the secret has no previous value yet: it was not rotated".into(),
                    }));
                };
                let (dead, detail) = closeout_postgres::probe(&old, &new)
                    .await
                    .map_err(|e| e.into_provider(PROVIDER, &probe))?;
                Ok(Some(ProbeOutcome {
                    probe,
                    dead,
                    detail,
                }))
            }
            _ => Ok(None),
        }
    }
}

/// What `ListAccessKeys` says of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyListed {
    Active,
    Inactive,
    Gone,
}

impl KeyListed {
    fn of(keys: &[(String, bool, Option<chrono::DateTime<chrono::Utc>>)], id: &str) -> KeyListed {
        match keys.iter().find(|(k, _, _)| k == id) {
            None => KeyListed::Gone,
            Some((_, true, _)) => KeyListed::Active,
            Some((_, false, _)) => KeyListed::Inactive,
        }
    }

    fn says(self) -> &'static str {
        match self {
            KeyListed::Active => "lists it Active",
            KeyListed::Inactive => "lists it Inactive",
            KeyListed::Gone => "no longer lists it",
        }
    }
}

/// Whether `arn` (from `GetCallerIdentity`) is iam user `user` (any path).
fn is_user_arn(arn: &str, user: &str) -> bool {
    arn.rsplit_once(":user/")
        .is_some_and(|(_, path)| path.rsplit('/').next() == Some(user))
}

/// The probe's verdict from what STS answered and what `ListAccessKeys` says.
///
/// - Refused: dead, whatever the metadata says (AWS refuses a deleted or inactive key).
/// - Answered as the key's user: alive, unless the key is listed Inactive or gone, which AWS
///   would refuse: then the endpoint does not enforce key status (moto answers inactive keys as
///   their user) and the metadata decides.
/// - Answered as anyone else: not the key's user, so dead; an endpoint that answers unknown keys
///   at all (moto answers them as `user/moto`) is not authenticating, so the metadata is
///   reported beside it.
fn sts_verdict(
    id: &str,
    user: &str,
    answer: Result<String, String>,
    listed: KeyListed,
) -> (bool, String) {
    let meta = format!("ListAccessKeys for iam user {user} {}", listed.says());
    match answer {
        Err(refusal) => (
            true,
            format!("sts:GetCallerIdentity with old access key {id} was refused ({refusal}); {meta}"),
        ),
        Ok(arn) if is_user_arn(&arn, user) => match listed {
            KeyListed::Active => (
                false,
                format!("old access key {id} still authenticates as iam user {user} ({arn}); {meta}"),
            ),
            _ => (
                true,
                format!(
                    "sts:GetCallerIdentity with old access key {id} answered as iam user {user} although {meta}: this endpoint does not enforce key status (moto accepts inactive keys; AWS refuses them), so the metadata decides: dead"
                ),
            ),
        },
        Ok(arn) => (
            listed != KeyListed::Active,
            format!(
                "sts:GetCallerIdentity with old access key {id} did not answer as iam user {user} but as {arn}: this endpoint answers keys it does not know (moto does), so it proves nothing by itself; {meta}"
            ),
        ),
    }
}

impl AwsProvider {
    /// Try the old key itself (one `GetCallerIdentity`, no retries), then read its metadata.
    async fn probe_key_by_sts(
        &self,
        f: &Finding,
        id: &str,
        secret: SecretValue,
    ) -> Result<ProbeOutcome, ProviderError> {
        let user = attr(f, "user")?;
        let sts = self.sts_with_key(id, &secret, false);
        drop(secret);
        let answer = match self
            .call("GetCallerIdentity", sts.get_caller_identity().send())
            .await
        {
            Ok(out) => Ok(out.arn().unwrap_or_default().to_string()),
            // A refusal: an AWS error, or a 4xx whose body the SDK could not parse (moto's STS
            // answers an unknown key that way when it enforces authentication).
            Err(e) if matches!(e.status, Some(400..=499)) && !e.is_throttling() => Err(e
                .code
                .clone()
                .unwrap_or_else(|| format!("HTTP {}", e.status.unwrap_or_default()))),
            // Not an answer about the key (unreachable, throttled, a server error): no verdict.
            Err(e) => return Err(e.into()),
        };
        let keys = self.list_keys_raw(user).await?.unwrap_or_default();
        let (dead, detail) = sts_verdict(id, user, answer, KeyListed::of(&keys, id));
        Ok(ProbeOutcome {
            probe: format!("sts:GetCallerIdentity with old access key {id}"),
            dead,
            detail,
        })
    }

    /// Metadata only (Closeout does not hold the key's secret): does the key still exist, and
    /// is it inactive.
    async fn probe_key_by_metadata(
        &self,
        f: &Finding,
        id: &str,
    ) -> Result<ProbeOutcome, ProviderError> {
        let probe = format!("GetAccessKeyLastUsed and ListAccessKeys {id} (metadata only: Closeout does not hold this key's secret)");
        let out = match found(
            self.call(
                "GetAccessKeyLastUsed",
                self.iam.get_access_key_last_used().access_key_id(id).send(),
            )
            .await,
        )? {
            Some(out) => out,
            None => {
                return Ok(ProbeOutcome {
                    probe,
                    dead: true,
                    detail: "key no longer exists".into(),
                })
            }
        };
        let user = out
            .user_name()
            .map(str::to_string)
            .or_else(|| f.attr("user").map(str::to_string))
            .unwrap_or_default();
        let keys = self.list_keys_raw(&user).await?.unwrap_or_default();
        let (dead, detail) = match KeyListed::of(&keys, id) {
            KeyListed::Gone => (true, "key no longer exists".to_string()),
            KeyListed::Inactive => (
                true,
                "inactive (moto still accepts inactive keys; AWS refuses them)".to_string(),
            ),
            KeyListed::Active => (false, format!("key is active for iam user {user}")),
        };
        Ok(ProbeOutcome {
            probe,
            dead,
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_verdicts() {
        let me = "arn:aws:iam::123456789012:user/ci/svc-ci";
        let (dead, d) = sts_verdict(
            "AKIA1",
            "svc-ci",
            Err("InvalidClientTokenId".into()),
            KeyListed::Active,
        );
        assert!(dead, "{d}");
        assert!(d.contains("refused (InvalidClientTokenId)"), "{d}");
        let (dead, d) = sts_verdict("AKIA1", "svc-ci", Ok(me.into()), KeyListed::Active);
        assert!(!dead, "{d}");
        let (dead, d) = sts_verdict("AKIA1", "svc-ci", Ok(me.into()), KeyListed::Inactive);
        assert!(dead && d.contains("does not enforce key status"), "{d}");
        let moto = "arn:aws:sts::123456789012:user/moto";
        let (dead, d) = sts_verdict("AKIA1", "svc-ci", Ok(moto.into()), KeyListed::Gone);
        assert!(dead && d.contains("answers keys it does not know"), "{d}");
        assert!(!d.contains("secret"), "{d}");
        let (dead, _) = sts_verdict("AKIA1", "svc-ci", Ok(moto.into()), KeyListed::Active);
        assert!(!dead);
        assert!(!is_user_arn("arn:aws:iam::1:user/svc-ci-2", "svc-ci"));
        assert!(is_user_arn("arn:aws:iam::1:user/svc-ci", "svc-ci"));
    }
}
