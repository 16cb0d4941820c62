//! Execute (idempotent), live state and probes.

use crate::capabilities::{kinds, PROVIDER};
use crate::server::VaultProvider;
use closeout_contract::{
    ActionOutcome, ActionRequest, Finding, ProbeOutcome, ProviderError, ResolveContext, State,
};
use std::collections::HashMap;

fn permanent(message: impl Into<String>) -> ProviderError {
    ProviderError::Permanent {
        provider: PROVIDER,
        message: message.into(),
    }
}

fn attr<'a>(f: &'a Finding, key: &str) -> Result<&'a str, ProviderError> {
    f.attr(key)
        .ok_or_else(|| permanent(format!("finding {} lacks attribute {key}", f.id)))
}

impl VaultProvider {
    pub(crate) async fn execute_impl(
        &self,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let unsupported = || ProviderError::Unsupported {
            provider: PROVIDER,
            message: format!("verb {} on kind {}", action.verb, f.kind),
        };
        match (f.kind.as_str(), action.verb.as_str()) {
            (kinds::ENTITY, "disable") => {
                let id = attr(f, "entity_id")?;
                match self.read_entity(id).await? {
                    None => Ok(ActionOutcome::already(
                        State::Deleted,
                        format!("entity {id} no longer exists"),
                    )),
                    Some(e) if e.disabled => Ok(ActionOutcome::already(
                        State::Disabled,
                        format!("entity {} already disabled", e.name),
                    )),
                    Some(e) => {
                        self.update_entity(id, |b| {
                            b.disabled(true);
                        })
                        .await?;
                        Ok(ActionOutcome::done(
                            State::Disabled,
                            format!("disabled entity {}", e.name),
                        ))
                    }
                }
            }
            (kinds::GROUP_MEMBERSHIP, "remove") => self.remove_membership(f).await,
            (kinds::GROUP_MEMBERSHIP, "grant") => self.grant_membership(f).await,
            (kinds::ENTITY_POLICY, "grant") => self.edit_entity_policy(f, true).await,
            (kinds::ENTITY_POLICY, "remove") => self.edit_entity_policy(f, false).await,
            (kinds::TOKEN, "revoke") => {
                let acc = attr(f, "accessor")?;
                if self.lookup_accessor(acc).await?.is_none() {
                    return Ok(ActionOutcome::already(
                        State::Revoked,
                        format!("token {acc} already revoked or expired"),
                    ));
                }
                match self
                    .client
                    .write_json(
                        "POST",
                        "auth/token/revoke-accessor",
                        &serde_json::json!({ "accessor": acc }),
                    )
                    .await
                {
                    Ok(()) => Ok(ActionOutcome::done(
                        State::Revoked,
                        format!("revoked token {acc} and its children"),
                    )),
                    Err(e) if e.is_invalid_accessor() => Ok(ActionOutcome::already(
                        State::Revoked,
                        format!("token {acc} already revoked or expired"),
                    )),
                    Err(e) => Err(e.into()),
                }
            }
            (kinds::PASSWORD_LOGIN, "remove") => {
                let path = &f.resource;
                if !self.login_exists(f).await? {
                    return Ok(ActionOutcome::already(
                        State::Deleted,
                        format!("login {path} already removed"),
                    ));
                }
                let (mount, user) = (attr(f, "mount")?, attr(f, "user")?);
                let delete = format!("auth/{mount}users/{}", crate::client::seg(user));
                self.client
                    .call::<serde_json::Value>("DELETE", &delete, None)
                    .await?;
                Ok(ActionOutcome::done(
                    State::Deleted,
                    format!("removed login {path}"),
                ))
            }
            (kinds::KV_SECRET, "rotate") => self.rotate_kv(action).await,
            (kinds::KV_SECRET, "destroy-old-versions") => {
                self.destroy_old_kv_versions(action).await
            }
            (kinds::APPROLE_SECRET_ID, "revoke" | "rotate") => self.execute_approle(action).await,
            (kinds::PKI_CERTIFICATE, "revoke") => self.execute_pki(action).await,
            (kinds::LEASE, "revoke") => self.execute_lease(action).await,
            (kinds::DATABASE_STATIC_ROLE, "rotate") => self.rotate_static_role(action).await,
            (kinds::DATABASE_CONNECTION, "rotate") => self.rotate_root(action).await,
            (kinds::NHI_ENTITY, "reassign-owner") => {
                let id = attr(f, "entity_id")?;
                let new_owner = action
                    .params
                    .new_owner
                    .as_deref()
                    .map(str::trim)
                    // An empty owner record would leave the entity silently unowned.
                    .filter(|o| !o.is_empty())
                    .ok_or_else(|| permanent("reassign-owner needs a new owner"))?;
                let Some(e) = self.read_entity(id).await? else {
                    return Err(permanent(format!("entity {id} no longer exists")));
                };
                if e.metadata.get(&self.config.owner_key).map(String::as_str) == Some(new_owner) {
                    return Ok(ActionOutcome::already(
                        State::Reassigned,
                        format!("entity {} already owned by {new_owner}", e.name),
                    ));
                }
                let mut meta = e.metadata.clone();
                meta.insert(self.config.owner_key.clone(), new_owner.to_string());
                self.update_entity(id, |b| {
                    b.metadata(meta.into_iter().collect::<HashMap<_, _>>());
                })
                .await?;
                Ok(ActionOutcome::done(
                    State::Reassigned,
                    format!("entity {} now owned by {new_owner}", e.name),
                ))
            }
            _ => Err(unsupported()),
        }
    }

    pub(crate) async fn live_state_impl(
        &self,
        f: &Finding,
        ctx: &ResolveContext,
    ) -> Result<State, ProviderError> {
        let entity_state = |e: Option<crate::model::Entity>| match e {
            None => State::Deleted,
            Some(e) if e.disabled => State::Disabled,
            Some(_) => State::Active,
        };
        Ok(match f.kind.as_str() {
            kinds::ENTITY | kinds::ENTITY_ALIAS | kinds::POLICY => {
                let id = attr(f, "entity_id")?;
                if id.is_empty() {
                    // A policy reached through a token without entity: open while the token lives.
                    return Ok(match f.attr("accessor") {
                        Some(acc) => match self.lookup_accessor(acc).await? {
                            None => State::Deleted,
                            Some(_) => State::Active,
                        },
                        None => State::Unknown,
                    });
                }
                entity_state(self.read_entity(id).await?)
            }
            kinds::GROUP_MEMBERSHIP | kinds::INHERITED_GROUP => {
                let eid = attr(f, "entity_id")?;
                let gid = attr(f, "group_id")?;
                // A direct membership is held only directly (an inherited path to the same
                // group is another finding).
                let direct = f.kind == kinds::GROUP_MEMBERSHIP;
                match self.read_entity(eid).await? {
                    None => State::Deleted,
                    Some(e)
                        if !(if direct {
                            &e.direct_group_ids
                        } else {
                            &e.group_ids
                        })
                        .iter()
                        .any(|g| g == gid) =>
                    {
                        State::Deleted
                    }
                    Some(e) if e.disabled => State::Disabled,
                    Some(_) => State::Active,
                }
            }
            kinds::ENTITY_POLICY => self.live_state_entity_policy(f).await?,
            kinds::TOKEN => match self.lookup_accessor(attr(f, "accessor")?).await? {
                None => State::Deleted,
                Some(_) => State::Active,
            },
            kinds::PASSWORD_LOGIN => match self.login_exists(f).await? {
                false => State::Deleted,
                true => State::Active,
            },
            kinds::KV_SECRET => self.live_state_kv(f, ctx).await?,
            kinds::NHI_ENTITY => match self.read_entity(attr(f, "entity_id")?).await? {
                None => State::Deleted,
                Some(e) => match e.metadata.get(&self.config.owner_key) {
                    Some(o) if ctx.identity.is_named_by(o) => State::Active,
                    _ => State::Reassigned,
                },
            },
            kinds::APPROLE_SECRET_ID => self.live_state_approle(f).await?,
            kinds::PKI_CERTIFICATE => self.live_state_pki(f).await?,
            kinds::LEASE => self.live_state_lease(f).await?,
            kinds::DATABASE_STATIC_ROLE | kinds::DATABASE_CONNECTION => {
                self.live_state_database(f, ctx.cutoff).await?
            }
            other => return Err(permanent(format!("unknown kind {other}"))),
        })
    }

    pub(crate) async fn probe_impl(
        &self,
        f: &Finding,
    ) -> Result<Option<ProbeOutcome>, ProviderError> {
        match f.kind.as_str() {
            kinds::TOKEN => {
                // Closeout never holds the token itself: the probe is the accessor's lookup.
                let acc = attr(f, "accessor")?;
                let alive = self.lookup_accessor(acc).await?;
                Ok(Some(ProbeOutcome {
                    probe: format!("auth/token/lookup-accessor {acc}"),
                    dead: alive.is_none(),
                    detail: match alive {
                        None => "invalid accessor: the token is revoked".into(),
                        Some(_) => "the token still exists".into(),
                    },
                }))
            }
            kinds::PASSWORD_LOGIN => {
                let exists = self.login_exists(f).await?;
                Ok(Some(ProbeOutcome {
                    probe: format!("read {}", f.resource),
                    dead: !exists,
                    detail: if exists {
                        "the userpass user still exists".into()
                    } else {
                        "the userpass user is gone: no password can log in".into()
                    },
                }))
            }
            kinds::PKI_CERTIFICATE => Ok(Some(self.probe_pki(f).await?)),
            kinds::KV_SECRET => self.probe_kv_database(f).await,
            kinds::APPROLE_SECRET_ID => Ok(Some(self.probe_approle(f).await?)),
            _ => Ok(None),
        }
    }
}

impl VaultProvider {
    /// Whether the userpass user of a `password-login` finding exists.
    async fn login_exists(&self, f: &Finding) -> Result<bool, ProviderError> {
        let (mount, user) = (attr(f, "mount")?, attr(f, "user")?);
        let path = format!("auth/{mount}users/{}", crate::client::seg(user));
        let r = self
            .client
            .read_data::<vaultrs::api::auth::userpass::responses::ReadUserResponse>(
                "GET", &path, None,
            );
        match r.await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
