//! Executing one action idempotently: every verb first reads whether the change is already made
//! (and answers "already done"), so a re-run after a crash repeats nothing.

use crate::arm::{self, AUTHORIZATION_API, KEY_VAULT_API};
use crate::capabilities::{kinds, PROVIDER, ROTATED_BY_RUN_TAG};
use crate::client::AzureProvider;
use crate::directory::{self, object_path, odata_ref};
use crate::error::{attr, permanent};
use crate::http::{Api, CallError};
use crate::object::ObjectType;
use crate::state::sessions_state;
use closeout_contract::rotation_strategy;
use closeout_contract::{
    verbs, ActionOutcome, ActionRequest, Finding, ProviderError, SecretValue, State, Strategy,
};
use closeout_postgres::{SecretStore, Staged};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

impl AzureProvider {
    pub(crate) async fn execute_impl(
        &self,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        match (f.kind.as_str(), action.verb.as_str()) {
            (kinds::USER, v) if v == verbs::DISABLE.name => self.disable_user(f).await,
            (kinds::SIGN_IN_SESSIONS, v) if v == verbs::REVOKE_SESSIONS.name => {
                self.revoke_sessions(action).await
            }
            (kinds::GROUP_MEMBERSHIP, v) if v == verbs::REMOVE.name => {
                self.remove_membership(f).await
            }
            (kinds::ROLE_ASSIGNMENT, v) if v == verbs::REMOVE.name => {
                self.remove_assignment(f).await
            }
            (kinds::GROUP_MEMBERSHIP, v) if v == verbs::GRANT.name => {
                self.grant_membership(f).await
            }
            (kinds::ROLE_ASSIGNMENT, v) if v == verbs::GRANT.name => self.grant_assignment(f).await,
            (kinds::ACCESS_POLICY, v) if v == verbs::REMOVE.name => {
                self.remove_access_policy(f).await
            }
            (kinds::DIRECTORY_ROLE, v) if v == verbs::REMOVE.name => {
                self.remove_directory_role(f).await
            }
            (kinds::DIRECTORY_ROLE_ELIGIBILITY, v) if v == verbs::REMOVE.name => {
                self.remove_eligibility(f).await
            }
            (kinds::APP_ROLE_ASSIGNMENT, v) if v == verbs::REMOVE.name => {
                self.remove_app_role_assignment(f).await
            }
            (kinds::OAUTH2_GRANT, v) if v == verbs::REMOVE.name => {
                self.remove_permission_grant(f).await
            }
            (kinds::AUTH_METHOD, v) if v == verbs::REMOVE.name => self.remove_auth_method(f).await,
            (kinds::OWNED_APPLICATION | kinds::OWNED_SERVICE_PRINCIPAL | kinds::OWNED_GROUP, v)
                if v == verbs::REASSIGN_OWNER.name =>
            {
                self.reassign_owner(action).await
            }
            (kinds::APP_PASSWORD, v) if v == verbs::ROTATE.name => {
                self.rotate_app_password(action).await
            }
            (kinds::APP_CERTIFICATE, v) if v == verbs::ROTATE.name => {
                self.rotate_app_certificate(action).await
            }
            (kinds::KV_SECRET, v) if v == verbs::ROTATE.name => {
                self.rotate_vault_object(action, ObjectType::Secrets).await
            }
            (kinds::KV_KEY, v) if v == verbs::ROTATE.name => {
                self.rotate_vault_object(action, ObjectType::Keys).await
            }
            (kinds::KV_KEY, v) if v == crate::capabilities::DISABLE_OLD_VERSIONS.name => {
                self.disable_old_key_versions(f).await
            }
            (kinds::KV_CERTIFICATE, v) if v == verbs::ROTATE.name => {
                self.rotate_vault_object(action, ObjectType::Certificates)
                    .await
            }
            (kind, verb) => Err(ProviderError::Unsupported {
                provider: PROVIDER,
                message: format!("verb {verb} on kind {kind}"),
            }),
        }
    }

    async fn disable_user(&self, f: &Finding) -> Result<ActionOutcome, ProviderError> {
        let user = directory::get_user(&self.http, &f.resource)
            .await?
            .ok_or_else(|| permanent(format!("Entra user {} no longer exists", f.resource)))?;
        if user.account_enabled == Some(false) {
            return Ok(ActionOutcome::already(
                State::Disabled,
                format!("{} is already disabled", f.display),
            ));
        }
        self.http
            .call::<serde_json::Value>(
                Api::Graph,
                "PATCH",
                &object_path("users", &f.resource),
                Some(&json!({ "accountEnabled": false })),
            )
            .await?;
        Ok(ActionOutcome::done(
            State::Disabled,
            format!("disabled {}", f.display),
        ))
    }

    async fn revoke_sessions(
        &self,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let user = directory::get_user(&self.http, &f.resource)
            .await?
            .ok_or_else(|| permanent(format!("Entra user {} no longer exists", f.resource)))?;
        if let Some(before) = action.params.sessions_issued_before {
            if sessions_state(&user, Some(before)) == State::Revoked {
                return Ok(ActionOutcome::already(
                    State::Revoked,
                    format!("{} were already revoked after {before}", f.display),
                ));
            }
        }
        self.http
            .call::<serde_json::Value>(
                Api::Graph,
                "POST",
                &format!("{}/revokeSignInSessions", object_path("users", &f.resource)),
                Some(&json!({})),
            )
            .await?;
        Ok(ActionOutcome::done(
            State::Revoked,
            format!("revoked {} (revokeSignInSessions)", f.display),
        ))
    }

    async fn remove_membership(&self, f: &Finding) -> Result<ActionOutcome, ProviderError> {
        let user = self.account_id(f)?;
        let path = format!(
            "{}/members/{}/$ref",
            object_path("groups", &f.resource),
            urlencoding::encode(user)
        );
        match self
            .http
            .call::<serde_json::Value>(Api::Graph, "DELETE", &path, None)
            .await
        {
            Ok(_) => Ok(ActionOutcome::done(
                State::Deleted,
                format!("removed {}", f.display),
            )),
            Err(e) if e.is_not_found() => Ok(ActionOutcome::already(
                State::Deleted,
                format!("{} was already removed", f.display),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The person's user object id (resolution records it on every finding).
    fn account_id<'a>(&self, f: &'a Finding) -> Result<&'a str, ProviderError> {
        attr(f, "user_id")
    }

    async fn remove_assignment(&self, f: &Finding) -> Result<ActionOutcome, ProviderError> {
        let path = format!("{}?api-version={AUTHORIZATION_API}", f.resource);
        // ARM answers 200 with the deleted assignment, or 204 when there was none.
        let deleted = self
            .http
            .call::<serde_json::Value>(Api::Arm, "DELETE", &path, None)
            .await?;
        Ok(match deleted {
            Some(_) => ActionOutcome::done(State::Deleted, format!("deleted {}", f.display)),
            None => {
                ActionOutcome::already(State::Deleted, format!("{} was already deleted", f.display))
            }
        })
    }

    async fn remove_access_policy(&self, f: &Finding) -> Result<ActionOutcome, ProviderError> {
        let vault_id = attr(f, "vault_id")?;
        let object_id = attr(f, "object_id")?;
        let Some(vault) = arm::vault(&self.http, vault_id).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("vault {vault_id} no longer exists"),
            ));
        };
        let policies: Vec<_> = vault
            .properties
            .access_policies
            .iter()
            .filter(|p| p.object_id.eq_ignore_ascii_case(object_id))
            .collect();
        if policies.is_empty() {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("{} was already removed", f.display),
            ));
        }
        // `remove` takes the listed permissions away and drops a policy left with none: list
        // every permission the policy has.
        let body = json!({ "properties": { "accessPolicies": policies.iter().map(|p| json!({
            "tenantId": p.tenant_id,
            "objectId": p.object_id,
            "applicationId": p.application_id,
            "permissions": {
                "keys": p.permissions.keys,
                "secrets": p.permissions.secrets,
                "certificates": p.permissions.certificates,
                "storage": p.permissions.storage,
            }
        })).collect::<Vec<_>>() } });
        let path = format!("{vault_id}/accessPolicies/remove?api-version={KEY_VAULT_API}");
        self.http
            .call::<serde_json::Value>(Api::Arm, "PUT", &path, Some(&body))
            .await?;
        Ok(ActionOutcome::done(
            State::Deleted,
            format!("removed {} (accessPolicies/remove)", f.display),
        ))
    }

    /// The new owner: the user the plan names (by UPN, mail or employee id), else the person's
    /// manager in Entra.
    async fn new_owner(&self, action: &ActionRequest) -> Result<(String, String), ProviderError> {
        if let Some(name) = action.params.new_owner.as_deref() {
            let identity = closeout_contract::Identity {
                id: name.to_string(),
                email: if name.contains('@') {
                    name.to_string()
                } else {
                    String::new()
                },
                name: name.to_string(),
                kind: closeout_contract::IdentityKind::Human,
                status: closeout_contract::IdentityStatus::Active,
                manager: None,
                department: None,
                role: None,
                location: None,
                employment_type: None,
                tags: Default::default(),
            };
            if let Some((user, _)) =
                directory::find_user(&self.http, &identity, &self.config.user_match).await?
            {
                let upn = user.user_principal_name.unwrap_or(user.id.clone());
                return Ok((user.id, upn));
            }
        }
        let Some(user) = action.finding.attr("user_id") else {
            // A joiner's NHI: the plan's new owner is the only candidate.
            return Err(permanent(format!(
                "no new owner for {}: {} has no user in Entra",
                action.finding.display,
                action
                    .params
                    .new_owner
                    .as_deref()
                    .unwrap_or("the plan names none and it")
            )));
        };
        let path = format!(
            "{}/manager?$select=id,userPrincipalName",
            object_path("users", user)
        );
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Manager {
            id: String,
            #[serde(default)]
            user_principal_name: Option<String>,
        }
        match self
            .http
            .call::<Manager>(Api::Graph, "GET", &path, None)
            .await
        {
            Ok(Some(m)) => {
                let upn = m.user_principal_name.unwrap_or(m.id.clone());
                Ok((m.id, upn))
            }
            Ok(None) => Err(permanent("the manager lookup returned nothing")),
            Err(e) if e.is_not_found() => Err(permanent(format!(
                "no new owner for {}: the plan names none{} and the person has no manager in Entra",
                action.finding.display,
                action
                    .params
                    .new_owner
                    .as_deref()
                    .map(|n| format!(" that exists in Entra ({n})"))
                    .unwrap_or_default()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn reassign_owner(&self, action: &ActionRequest) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let collection = attr(f, "collection")?;
        // A joiner's NHI (found for a service identity) has no owner to remove: the new owner
        // is only added, and whoever else owns it stays.
        let user = f.attr("user_id");
        let Some(owners) = directory::owners(&self.http, collection, &f.resource).await? else {
            return Err(permanent(format!("{} no longer exists", f.display)));
        };
        let user_owns = user.is_some_and(|u| owners.iter().any(|o| o.eq_ignore_ascii_case(u)));
        let (manager, manager_name) = self.new_owner(action).await?;
        let manager_owns = owners.iter().any(|o| o.eq_ignore_ascii_case(&manager));
        // The new owner is the person the finding is held by (a joiner's NHI they already
        // own): nothing to hand over, and removing them would undo the record.
        let handing_to_self = user.is_some_and(|u| u.eq_ignore_ascii_case(&manager));
        if (!user_owns || handing_to_self) && manager_owns {
            return Ok(ActionOutcome::already(
                State::Reassigned,
                format!("{} is already owned by {manager_name}", f.display),
            ));
        }
        // Add first, then remove: the object is never left without an owner.
        if !manager_owns {
            let path = format!("{}/owners/$ref", object_path(collection, &f.resource));
            let body = odata_ref(&self.config.graph_endpoint, &manager);
            match self
                .http
                .call::<serde_json::Value>(Api::Graph, "POST", &path, Some(&body))
                .await
            {
                Ok(_) => {}
                // Added between our read and this call (a concurrent run): fine.
                Err(CallError {
                    status: Some(400),
                    ref message,
                    ..
                }) if message.contains("already exist") => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(user) = user.filter(|_| user_owns) {
            let path = format!(
                "{}/owners/{}/$ref",
                object_path(collection, &f.resource),
                urlencoding::encode(user)
            );
            match self
                .http
                .call::<serde_json::Value>(Api::Graph, "DELETE", &path, None)
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(ActionOutcome::done(
            State::Reassigned,
            format!("{} is now owned by {manager_name}", f.display),
        ))
    }

    async fn rotate_vault_object(
        &self,
        action: &ActionRequest,
        t: ObjectType,
    ) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let uri = attr(f, "vault_uri")?;
        let name = attr(f, "name")?;
        let run = &action.params.run_id;
        if t == ObjectType::Secrets {
            if let Some(strategy) = database_strategy(f) {
                return self.rotate_database_secret(uri, name, run, &strategy).await;
            }
        }
        if t == ObjectType::Certificates {
            // A version an earlier attempt's operation is still making counts as made.
            self.data.await_certificate_operation(uri, name).await?;
        }
        let Some(current) = self.data.current(uri, t, name).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("{} no longer exists", f.display),
            ));
        };
        // The version this run made, if a previous attempt got that far; otherwise a new one.
        let (version, made) = if current.tags.get(ROTATED_BY_RUN_TAG) == Some(run) {
            (current.version.clone(), false)
        } else {
            let tags = BTreeMap::from([(ROTATED_BY_RUN_TAG.to_string(), run.clone())]);
            let v = match t {
                ObjectType::Secrets => {
                    let named = f.attr(closeout_contract::rotation_strategy::ATTR);
                    self.data.rotate_secret(uri, name, named, &tags).await?
                }
                ObjectType::Keys => self.data.rotate_key(uri, name, &tags).await?,
                ObjectType::Certificates => self.data.rotate_certificate(uri, name, &tags).await?,
            };
            (v, true)
        };
        // Retire the old versions only after the new one is current (create -> set -> retire).
        // A key's old versions stay enabled: data encrypted or wrapped under them must still
        // decrypt or unwrap; `disable-old-versions` retires them when the playbook asks.
        if t == ObjectType::Keys {
            let detail = format!(
                "{} now at version {version}; older versions left enabled (they still decrypt and unwrap)",
                f.display
            );
            return Ok(if made {
                ActionOutcome::done(State::Rotated, detail)
            } else {
                ActionOutcome::already(State::Rotated, detail)
            });
        }
        let disabled = self
            .data
            .disable_versions_except(uri, t, name, &version)
            .await?;
        let detail = format!(
            "{} now at version {version}; {disabled} older version(s) disabled",
            f.display
        );
        Ok(if made || disabled > 0 {
            ActionOutcome::done(State::Rotated, detail)
        } else {
            ActionOutcome::already(State::Rotated, detail)
        })
    }
}

impl AzureProvider {
    /// `disable-old-versions` on a key: every version but the current one disabled (the data
    /// under them can then no longer be decrypted or unwrapped; the playbook asks for it).
    async fn disable_old_key_versions(&self, f: &Finding) -> Result<ActionOutcome, ProviderError> {
        let uri = attr(f, "vault_uri")?;
        let name = attr(f, "name")?;
        let Some(current) = self.data.current(uri, ObjectType::Keys, name).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("{} no longer exists", f.display),
            ));
        };
        let disabled = self
            .data
            .disable_versions_except(uri, ObjectType::Keys, name, &current.version)
            .await?;
        let detail = format!(
            "{}: {disabled} version(s) older than {} disabled",
            f.display, current.version
        );
        Ok(if disabled > 0 {
            ActionOutcome::done(State::Rotated, detail)
        } else {
            ActionOutcome::already(State::Rotated, detail)
        })
    }
}

/// The database strategy a finding names, if any.
fn database_strategy(f: &Finding) -> Option<Strategy> {
    Strategy::parse(f.attr(rotation_strategy::ATTR)?)
        .ok()
        .filter(Strategy::is_postgres)
}

/// The secret that holds the pending value of secret `name` while a database rotation runs.
pub(crate) fn pending_secret_name(name: &str) -> String {
    format!("{name}-closeout-pending")
}

impl AzureProvider {
    /// Rotate a Key Vault secret holding a PostgreSQL login by its database strategy (create,
    /// set, test, finish; see `closeout_postgres`). The pending value is a separate secret
    /// (`<name>-closeout-pending`, tagged with the run), since a new version of the secret itself
    /// would be what consumers read at once. Old versions stay enabled: the database refuses
    /// their password, and the login probe reads the previous one to prove it.
    async fn rotate_database_secret(
        &self,
        uri: &str,
        name: &str,
        run: &str,
        strategy: &Strategy,
    ) -> Result<ActionOutcome, ProviderError> {
        if self
            .data
            .current(uri, ObjectType::Secrets, name)
            .await?
            .is_none()
        {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("secret {name} no longer exists"),
            ));
        }
        let pending = pending_secret_name(name);
        let store = KvSecretStore {
            azure: self,
            uri,
            name,
            pending: &pending,
            run,
        };
        let done = closeout_postgres::rotate(PROVIDER, name, strategy, &store).await?;
        Ok(if done.changed {
            ActionOutcome::done(State::Rotated, done.detail)
        } else {
            ActionOutcome::already(State::Rotated, done.detail)
        })
    }
}

/// One Key Vault secret as one database rotation (one run) sees it.
struct KvSecretStore<'a> {
    azure: &'a AzureProvider,
    uri: &'a str,
    name: &'a str,
    pending: &'a str,
    run: &'a str,
}

impl KvSecretStore<'_> {
    fn gone(&self, what: &str) -> ProviderError {
        permanent(format!("secret {}: {what}", self.name))
    }

    /// The pending secret no longer holds a value anyone needs: a marker version replaces it
    /// and every version with the password is disabled.
    async fn retire_pending(&self) -> Result<(), ProviderError> {
        let data = &self.azure.data;
        let marker_tags = BTreeMap::from([
            (
                ROTATED_BY_RUN_TAG.to_string(),
                format!("{}-promoted", self.run),
            ),
            ("closeout-pending-for".to_string(), self.name.to_string()),
        ]);
        let marker = data
            .set_secret(
                self.uri,
                self.pending,
                &SecretValue::new("promoted"),
                Some("text/plain"),
                &marker_tags,
            )
            .await?;
        data.disable_versions_except(self.uri, ObjectType::Secrets, self.pending, &marker)
            .await?;
        Ok(())
    }
}

impl SecretStore for KvSecretStore<'_> {
    async fn staged(&self) -> Result<Staged, ProviderError> {
        let data = &self.azure.data;
        let current = data
            .current(self.uri, ObjectType::Secrets, self.name)
            .await?;
        if current
            .is_some_and(|c| c.tags.get(ROTATED_BY_RUN_TAG).map(String::as_str) == Some(self.run))
        {
            // Promoted already; a run killed before the pending copy was retired retires it now,
            // so no second secret keeps the password.
            let pending = data
                .current(self.uri, ObjectType::Secrets, self.pending)
                .await?;
            if pending.is_some_and(|p| {
                p.enabled && p.tags.get(ROTATED_BY_RUN_TAG).map(String::as_str) == Some(self.run)
            }) {
                self.retire_pending().await?;
            }
            let v = data
                .current_secret_value(self.uri, self.name)
                .await?
                .ok_or_else(|| self.gone("its current version cannot be read"))?;
            return Ok(Staged::Current(v));
        }
        let pending = data
            .current(self.uri, ObjectType::Secrets, self.pending)
            .await?;
        if !pending.is_some_and(|p| {
            p.enabled && p.tags.get(ROTATED_BY_RUN_TAG).map(String::as_str) == Some(self.run)
        }) {
            return Ok(Staged::None);
        }
        Ok(
            match data.current_secret_value(self.uri, self.pending).await? {
                Some(v) => Staged::Pending(v),
                None => Staged::None,
            },
        )
    }

    async fn current(&self) -> Result<SecretValue, ProviderError> {
        self.azure
            .data
            .current_secret_value(self.uri, self.name)
            .await?
            .ok_or_else(|| self.gone("its current version cannot be read"))
    }

    async fn previous(&self) -> Result<Option<SecretValue>, ProviderError> {
        let versions = self
            .azure
            .data
            .versions(self.uri, ObjectType::Secrets, self.name)
            .await?;
        let Some(prev) = versions.iter().rev().nth(1) else {
            return Ok(None);
        };
        Ok(self
            .azure
            .data
            .secret_value(self.uri, self.name, &prev.version)
            .await?)
    }

    async fn stage(&self, value: &SecretValue) -> Result<(), ProviderError> {
        let tags = BTreeMap::from([
            (ROTATED_BY_RUN_TAG.to_string(), self.run.to_string()),
            ("closeout-pending-for".to_string(), self.name.to_string()),
        ]);
        self.azure
            .data
            .set_secret(
                self.uri,
                self.pending,
                value,
                Some("application/json"),
                &tags,
            )
            .await?;
        Ok(())
    }

    async fn promote(&self) -> Result<(), ProviderError> {
        let data = &self.azure.data;
        let current = data
            .current(self.uri, ObjectType::Secrets, self.name)
            .await?
            .ok_or_else(|| self.gone("no longer exists"))?;
        if current.tags.get(ROTATED_BY_RUN_TAG).map(String::as_str) != Some(self.run) {
            let value = data
                .current_secret_value(self.uri, self.pending)
                .await?
                .ok_or_else(|| self.gone("its pending value is gone"))?;
            let mut tags = current.tags.clone();
            tags.insert(ROTATED_BY_RUN_TAG.to_string(), self.run.to_string());
            data.set_secret(self.uri, self.name, &value, None, &tags)
                .await?;
        }
        self.retire_pending().await
    }

    async fn other(&self, reference: &str) -> Result<SecretValue, ProviderError> {
        self.azure
            .data
            .current_secret_value(self.uri, reference)
            .await?
            .ok_or_else(|| ProviderError::Config {
                provider: PROVIDER,
                message: format!(
                    "the admin secret {reference} named by secret {} cannot be read in the same vault",
                    self.name
                ),
            })
    }
}
