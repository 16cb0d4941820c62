//! Actions, live state and probes, by kind.

use crate::capabilities::{kinds, PROVIDER};
use crate::client::CallError;
use crate::findings::need;
use crate::model;
use crate::resolve::{encode_path, parents, secret_made_after};
use crate::server::KeycloakProvider;
use closeout_contract::{
    ActionOutcome, ActionRequest, Finding, ProbeOutcome, ProviderError, ResolveContext, State,
};
use tracing::Instrument;

fn permanent(message: impl Into<String>) -> ProviderError {
    ProviderError::Permanent {
        provider: PROVIDER,
        message: message.into(),
    }
}

fn unsupported(f: &Finding, verb: &str) -> ProviderError {
    ProviderError::Unsupported {
        provider: PROVIDER,
        message: format!("{verb} on a {} finding", f.kind),
    }
}

fn enc(s: &str) -> String {
    urlencoding::encode(s).into_owned()
}

/// A write that answers 404 when its object is already gone: `Ok(false)` then.
fn gone_ok(r: Result<Option<serde_json::Value>, CallError>) -> Result<bool, ProviderError> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl KeycloakProvider {
    pub(crate) async fn execute_impl(
        &self,
        a: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        let span = tracing::info_span!("keycloak.execute", finding = %a.finding.id, verb = %a.verb);
        // One action at a time (see `KeycloakProvider::writes`).
        let _serial = self.writes.lock().await;
        self.execute_serial(a).instrument(span).await
    }

    async fn execute_serial(&self, a: &ActionRequest) -> Result<ActionOutcome, ProviderError> {
        let f = &a.finding;
        let verb = a.verb.as_str();
        match (f.kind.as_str(), verb) {
            (kinds::USER, "disable") => self.disable_user(f).await,
            (kinds::SESSIONS, "revoke-sessions") => self.logout(f).await,
            (kinds::OFFLINE_SESSION, "revoke") | (kinds::CONSENT, "revoke") => {
                self.revoke_grants(f).await
            }
            (kinds::CREDENTIAL, "remove") => {
                let uid = need(f, "user_id")?;
                let cid = need(f, "credential_id")?;
                let path = format!("/users/{}/credentials/{}", enc(uid), enc(cid));
                let present = self
                    .user_list::<model::Credential>(uid, "credentials")
                    .await?
                    .iter()
                    .any(|c| c.id == cid);
                if !present || !gone_ok(self.client.admin("DELETE", &path, None).await)? {
                    return Ok(ActionOutcome::already(
                        State::Deleted,
                        format!("{} already removed", f.display),
                    ));
                }
                Ok(ActionOutcome::done(
                    State::Deleted,
                    format!("removed {}", f.display),
                ))
            }
            (kinds::FEDERATED_IDENTITY, "remove") => {
                let uid = need(f, "user_id")?;
                let idp = need(f, "identity_provider")?;
                let present = self
                    .user_list::<model::FederatedIdentity>(uid, "federated-identity")
                    .await?
                    .iter()
                    .any(|l| l.identity_provider == idp);
                let path = format!("/users/{}/federated-identity/{}", enc(uid), enc(idp));
                if !present || !gone_ok(self.client.admin("DELETE", &path, None).await)? {
                    return Ok(ActionOutcome::already(
                        State::Deleted,
                        format!("{} already removed", f.display),
                    ));
                }
                Ok(ActionOutcome::done(
                    State::Deleted,
                    format!("removed {}", f.display),
                ))
            }
            (kinds::GROUP_MEMBERSHIP, "remove" | "grant") => {
                self.group_membership(f, verb == "grant").await
            }
            (kinds::REALM_ROLE | kinds::CLIENT_ROLE, "remove" | "grant") => {
                self.role_mapping(f, verb == "grant").await
            }
            (kinds::OWNED_CLIENT, "reassign-owner") => {
                let owner = a
                    .params
                    .new_owner
                    .as_deref()
                    .ok_or_else(|| ProviderError::Config {
                        provider: PROVIDER,
                        message: "reassign-owner needs the new owner (the leaver's manager)".into(),
                    })?;
                self.reassign_owner(f, owner).await
            }
            (kinds::CLIENT_SECRET, "rotate") => self.rotate_secret(f, &a.idempotency_key).await,
            _ => Err(unsupported(f, verb)),
        }
    }

    async fn disable_user(&self, f: &Finding) -> Result<ActionOutcome, ProviderError> {
        let uid = need(f, "user_id")?;
        let path = format!("/users/{}", enc(uid));
        let Some(mut rep) = self
            .client
            .admin::<serde_json::Value>("GET", &path, None)
            .await?
        else {
            return Err(permanent(format!(
                "user {uid} answered with no representation"
            )));
        };
        if rep.get("enabled").and_then(|e| e.as_bool()) == Some(false) {
            return Ok(ActionOutcome::already(
                State::Disabled,
                format!("{} already disabled", f.display),
            ));
        }
        rep["enabled"] = serde_json::Value::Bool(false);
        // Leave the not-before a logout set alone.
        if let Some(obj) = rep.as_object_mut() {
            obj.remove("notBefore");
        }
        self.client
            .admin::<serde_json::Value>("PUT", &path, Some(&rep))
            .await?;
        Ok(ActionOutcome::done(
            State::Disabled,
            format!("disabled {}", f.display),
        ))
    }

    async fn logout(&self, f: &Finding) -> Result<ActionOutcome, ProviderError> {
        let uid = need(f, "user_id")?;
        let sessions: Vec<model::Session> = self.user_list(uid, "sessions").await?;
        if sessions.is_empty() {
            return Ok(ActionOutcome::already(
                State::Revoked,
                format!("user {uid} has no sign-in session"),
            ));
        }
        self.client
            .admin::<serde_json::Value>("POST", &format!("/users/{}/logout", enc(uid)), None)
            .await?;
        Ok(ActionOutcome::done(
            State::Revoked,
            format!("logged out {} sign-in session(s) of user {uid}; tokens issued before now are refused", sessions.len()),
        ))
    }

    /// DELETE `consents/{clientId}`: the consent and the client's offline tokens.
    async fn revoke_grants(&self, f: &Finding) -> Result<ActionOutcome, ProviderError> {
        if self.grant_state(f).await? == State::Revoked {
            return Ok(ActionOutcome::already(
                State::Revoked,
                format!("{} already revoked", f.display),
            ));
        }
        let uid = need(f, "user_id")?;
        let client = need(f, "client_id")?;
        let path = format!("/users/{}/consents/{}", enc(uid), enc(client));
        gone_ok(self.client.admin("DELETE", &path, None).await)?;
        Ok(ActionOutcome::done(
            State::Revoked,
            format!("revoked {}", f.display),
        ))
    }

    async fn grant_state(&self, f: &Finding) -> Result<State, ProviderError> {
        let uid = need(f, "user_id")?;
        if f.kind == kinds::OFFLINE_SESSION {
            let uuid = need(f, "client_uuid")?;
            let offline: Vec<model::Session> = self
                .user_list(uid, &format!("offline-sessions/{}", enc(uuid)))
                .await?;
            return Ok(if offline.is_empty() {
                State::Revoked
            } else {
                State::Active
            });
        }
        let client = need(f, "client_id")?;
        let consents: Vec<model::Consent> = self.user_list(uid, "consents").await?;
        let held = consents
            .iter()
            .any(|c| c.client_id == client && !c.granted_client_scopes.is_empty());
        Ok(if held { State::Active } else { State::Revoked })
    }

    async fn group_id(&self, f: &Finding) -> Result<String, ProviderError> {
        if let Some(id) = f.attr("group_id") {
            return Ok(id.to_string());
        }
        let path = need(f, "group_path")?;
        let g: Option<model::Group> = self
            .client
            .admin("GET", &format!("/group-by-path{}", encode_path(path)), None)
            .await?;
        g.map(|g| g.id)
            .ok_or_else(|| permanent(format!("group {path} does not exist")))
    }

    async fn group_membership(
        &self,
        f: &Finding,
        grant: bool,
    ) -> Result<ActionOutcome, ProviderError> {
        let uid = need(f, "user_id")?;
        let gid = self.group_id(f).await?;
        let held = self.user_groups(uid).await?.iter().any(|g| g.id == gid);
        let path = format!("/users/{}/groups/{}", enc(uid), enc(&gid));
        match (grant, held) {
            (true, true) => Ok(ActionOutcome::already(
                State::Active,
                format!("{} already held", f.display),
            )),
            (false, false) => Ok(ActionOutcome::already(
                State::Deleted,
                format!("{} already removed", f.display),
            )),
            (true, false) => {
                self.client
                    .admin::<serde_json::Value>("PUT", &path, None)
                    .await?;
                Ok(ActionOutcome::done(
                    State::Active,
                    format!("granted {}", f.display),
                ))
            }
            (false, true) => {
                gone_ok(self.client.admin("DELETE", &path, None).await)?;
                Ok(ActionOutcome::done(
                    State::Deleted,
                    format!("removed {}", f.display),
                ))
            }
        }
    }

    /// Whether the user holds the role the finding names, directly.
    async fn role_held(&self, f: &Finding) -> Result<bool, ProviderError> {
        let uid = need(f, "user_id")?;
        let role = need(f, "role")?;
        let m = self.user_mappings(uid).await?;
        Ok(match f.kind.as_str() {
            kinds::REALM_ROLE => m.realm_mappings.iter().any(|r| r.name == role),
            _ => {
                let client = need(f, "client_id")?;
                m.client_mappings
                    .values()
                    .any(|cm| cm.client == client && cm.mappings.iter().any(|r| r.name == role))
            }
        })
    }

    async fn role_mapping(&self, f: &Finding, grant: bool) -> Result<ActionOutcome, ProviderError> {
        let uid = need(f, "user_id")?;
        let role = need(f, "role")?;
        let held = self.role_held(f).await?;
        if grant == held {
            let state = if grant { State::Active } else { State::Deleted };
            return Ok(ActionOutcome::already(
                state,
                format!(
                    "{} already {}",
                    f.display,
                    if grant { "held" } else { "removed" }
                ),
            ));
        }
        let (mapping_path, role_path) = match f.kind.as_str() {
            kinds::REALM_ROLE => (
                format!("/users/{}/role-mappings/realm", enc(uid)),
                format!("/roles/{}", enc(role)),
            ),
            _ => {
                let uuid = need(f, "client_uuid")?;
                (
                    format!("/users/{}/role-mappings/clients/{}", enc(uid), enc(uuid)),
                    format!("/clients/{}/roles/{}", enc(uuid), enc(role)),
                )
            }
        };
        let rep: model::Role = self
            .client
            .admin("GET", &role_path, None)
            .await?
            .ok_or_else(|| permanent(format!("role {role} answered with no representation")))?;
        let body = serde_json::json!([rep]);
        if grant {
            self.client
                .admin::<serde_json::Value>("POST", &mapping_path, Some(&body))
                .await?;
            Ok(ActionOutcome::done(
                State::Active,
                format!("granted {}", f.display),
            ))
        } else {
            self.client
                .admin::<serde_json::Value>("DELETE", &mapping_path, Some(&body))
                .await?;
            Ok(ActionOutcome::done(
                State::Deleted,
                format!("removed {}", f.display),
            ))
        }
    }

    async fn reassign_owner(
        &self,
        f: &Finding,
        owner: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        let uuid = need(f, "client_uuid")?;
        let path = format!("/clients/{}", enc(uuid));
        let mut rep = self
            .client
            .admin::<serde_json::Value>("GET", &path, None)
            .await?
            .ok_or_else(|| permanent(format!("client {uuid} answered with no representation")))?;
        let key = &self.config.owner_attribute;
        if rep["attributes"][key.as_str()].as_str() == Some(owner) {
            return Ok(ActionOutcome::already(
                State::Reassigned,
                format!("{} already owned by {owner}", f.display),
            ));
        }
        if !rep["attributes"].is_object() {
            rep["attributes"] = serde_json::json!({});
        }
        rep["attributes"][key.as_str()] = serde_json::Value::String(owner.to_string());
        // Never write a secret back: the representation carries the client's current secret,
        // and a PUT without one leaves it as it is.
        if let Some(obj) = rep.as_object_mut() {
            obj.remove("secret");
        }
        self.client
            .admin::<serde_json::Value>("PUT", &path, Some(&rep))
            .await?;
        Ok(ActionOutcome::done(
            State::Reassigned,
            format!("{} now owned by {owner}", f.display),
        ))
    }

    pub(crate) async fn live_state_impl(
        &self,
        f: &Finding,
        ctx: &ResolveContext,
    ) -> Result<State, ProviderError> {
        if f.kind == kinds::OWNED_CLIENT || f.kind == kinds::CLIENT_SECRET {
            let uuid = need(f, "client_uuid")?;
            let Some(c) = self.client_by_uuid(uuid).await? else {
                return Ok(State::Deleted);
            };
            if f.kind == kinds::OWNED_CLIENT {
                let owner = c.attributes.get(&self.config.owner_attribute);
                return Ok(match owner {
                    Some(o) if ctx.identity.is_named_by(o) => State::Active,
                    _ => State::Reassigned,
                });
            }
            let published = self.publish_path(&c.client_id);
            return Ok(match ctx.cutoff {
                Some(cut) if secret_made_after(&c, cut, published.as_deref()) => State::Rotated,
                _ => State::Active,
            });
        }
        let uid = need(f, "user_id")?;
        let Some(user) = self.user(uid).await? else {
            return Ok(State::Deleted);
        };
        Ok(match f.kind.as_str() {
            kinds::USER => {
                if user.enabled {
                    State::Active
                } else {
                    State::Disabled
                }
            }
            kinds::SESSIONS => {
                let s: Vec<model::Session> = self.user_list(uid, "sessions").await?;
                if s.is_empty() {
                    State::Revoked
                } else {
                    State::Active
                }
            }
            kinds::OFFLINE_SESSION | kinds::CONSENT => self.grant_state(f).await?,
            kinds::CREDENTIAL => {
                let cid = need(f, "credential_id")?;
                let c: Vec<model::Credential> = self.user_list(uid, "credentials").await?;
                if c.iter().any(|c| c.id == cid) {
                    State::Active
                } else {
                    State::Deleted
                }
            }
            kinds::FEDERATED_IDENTITY => {
                let idp = need(f, "identity_provider")?;
                let l: Vec<model::FederatedIdentity> =
                    self.user_list(uid, "federated-identity").await?;
                if l.iter().any(|l| l.identity_provider == idp) {
                    State::Active
                } else {
                    State::Deleted
                }
            }
            kinds::GROUP_MEMBERSHIP => {
                let path = need(f, "group_path")?;
                let held = self.user_groups(uid).await?.iter().any(|g| g.path == path);
                if held {
                    State::Active
                } else {
                    State::Deleted
                }
            }
            kinds::INHERITED_GROUP | kinds::GROUP_ROLE => {
                let path = need(f, "group_path")?;
                let groups = self.user_groups(uid).await?;
                let reached = groups
                    .iter()
                    .any(|g| g.path == path || parents(&g.path).iter().any(|p| p == path));
                if reached {
                    State::Active
                } else {
                    State::Deleted
                }
            }
            kinds::REALM_ROLE | kinds::CLIENT_ROLE => {
                if self.role_held(f).await? {
                    State::Active
                } else {
                    State::Deleted
                }
            }
            _ => return Err(unsupported(f, "live state")),
        })
    }

    pub(crate) async fn probe_impl(
        &self,
        f: &Finding,
    ) -> Result<Option<ProbeOutcome>, ProviderError> {
        match f.kind.as_str() {
            kinds::CLIENT_SECRET => self.probe_retired_secret(f).await,
            _ => Ok(None),
        }
    }
}
