//! The live state of one finding, read from Azure again (for verification of findings that no
//! longer appear when the person is resolved again, e.g. a secret whose only path was removed).

use crate::arm;
use crate::capabilities::{kinds, CREDENTIAL_DISPLAY_PREFIX};
use crate::client::AzureProvider;
use crate::directory::{self, object_path};
use crate::error::attr;
use crate::http::Api;
use crate::object::ObjectType;
use crate::state::{sessions_state, user_state};
use chrono::{DateTime, Utc};
use closeout_contract::{Finding, ProviderError, ResolveContext, State};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credential {
    key_id: String,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    #[serde(default)]
    password_credentials: Vec<Credential>,
    #[serde(default)]
    key_credentials: Vec<Credential>,
}

impl AzureProvider {
    pub(crate) async fn live_state_impl(
        &self,
        f: &Finding,
        ctx: &ResolveContext,
    ) -> Result<State, ProviderError> {
        match f.kind.as_str() {
            kinds::USER => Ok(match directory::get_user(&self.http, &f.resource).await? {
                Some(u) => user_state(&u),
                None => State::Deleted,
            }),
            kinds::SIGN_IN_SESSIONS => {
                Ok(match directory::get_user(&self.http, &f.resource).await? {
                    Some(u) => sessions_state(&u, ctx.cutoff),
                    None => State::Deleted,
                })
            }
            kinds::GROUP_MEMBERSHIP => self.in_group(f, false).await,
            kinds::INHERITED_GROUP => self.in_group(f, true).await,
            kinds::ROLE_ASSIGNMENT => self.assignment_state(f).await,
            kinds::GROUP_ROLE_ASSIGNMENT => {
                // Closed when the person left the group, or the assignment went.
                match self.in_group_id(f, attr(f, "principal_id")?, true).await? {
                    State::Active => self.assignment_state(f).await,
                    other => Ok(other),
                }
            }
            kinds::ACCESS_POLICY => self.policy_state(f).await,
            kinds::GROUP_ACCESS_POLICY => {
                match self.in_group_id(f, attr(f, "object_id")?, true).await? {
                    State::Active => self.policy_state(f).await,
                    other => Ok(other),
                }
            }
            kinds::OWNED_APPLICATION | kinds::OWNED_SERVICE_PRINCIPAL => {
                // A joiner's NHI names no owner until the joiner resolves as one; read back
                // through that resolution, not here.
                let Some(user) = f.attr("user_id") else {
                    return Ok(State::Unknown);
                };
                Ok(
                    match directory::owners(&self.http, attr(f, "collection")?, &f.resource).await?
                    {
                        None => State::Deleted,
                        Some(o) if o.iter().any(|o| o.eq_ignore_ascii_case(user)) => State::Active,
                        Some(_) => State::Reassigned,
                    },
                )
            }
            kinds::APP_PASSWORD | kinds::APP_CERTIFICATE => self.credential_state(f).await,
            kinds::KV_SECRET => self.vault_object_state(f, ctx, ObjectType::Secrets).await,
            kinds::KV_KEY => self.vault_object_state(f, ctx, ObjectType::Keys).await,
            kinds::KV_CERTIFICATE => {
                self.vault_object_state(f, ctx, ObjectType::Certificates)
                    .await
            }
            _ => Ok(State::Unknown),
        }
    }

    async fn in_group(&self, f: &Finding, transitive: bool) -> Result<State, ProviderError> {
        self.in_group_id(f, &f.resource, transitive).await
    }

    /// `Active` while the person is in `group` (directly, or through nesting when
    /// `transitive`), `Deleted` once they are not.
    pub(crate) async fn in_group_id(
        &self,
        f: &Finding,
        group: &str,
        transitive: bool,
    ) -> Result<State, ProviderError> {
        let user = attr(f, "user_id")?;
        Ok(
            match directory::in_group(&self.http, user, group, transitive).await? {
                Some(true) => State::Active,
                Some(false) | None => State::Deleted,
            },
        )
    }

    pub(crate) async fn assignment_state(&self, f: &Finding) -> Result<State, ProviderError> {
        Ok(if arm::assignment_exists(&self.http, &f.resource).await? {
            State::Active
        } else {
            State::Deleted
        })
    }

    async fn policy_state(&self, f: &Finding) -> Result<State, ProviderError> {
        let object_id = attr(f, "object_id")?;
        Ok(match arm::vault(&self.http, attr(f, "vault_id")?).await? {
            Some(v)
                if v.properties
                    .access_policies
                    .iter()
                    .any(|p| p.object_id.eq_ignore_ascii_case(object_id)) =>
            {
                State::Active
            }
            _ => State::Deleted,
        })
    }

    /// A credential still listed is `Active`; one replaced by a Closeout rotation `Rotated`;
    /// one simply gone `Deleted`.
    async fn credential_state(&self, f: &Finding) -> Result<State, ProviderError> {
        let key_id = attr(f, "key_id")?;
        let path = format!(
            "{}?$select=id,passwordCredentials,keyCredentials",
            object_path(attr(f, "collection")?, attr(f, "object_id")?)
        );
        let creds = match self
            .http
            .call::<Credentials>(Api::Graph, "GET", &path, None)
            .await
        {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(State::Unknown),
            Err(e) if e.is_not_found() => return Ok(State::Deleted),
            Err(e) => return Err(e.into()),
        };
        let all = creds
            .password_credentials
            .iter()
            .chain(&creds.key_credentials);
        let mut replaced = false;
        for c in all {
            if c.key_id.eq_ignore_ascii_case(key_id) {
                return Ok(State::Active);
            }
            replaced |= c
                .display_name
                .as_deref()
                .is_some_and(|d| d.starts_with(CREDENTIAL_DISPLAY_PREFIX) && d.ends_with(key_id));
        }
        Ok(if replaced {
            State::Rotated
        } else {
            State::Deleted
        })
    }

    async fn vault_object_state(
        &self,
        f: &Finding,
        ctx: &ResolveContext,
        t: ObjectType,
    ) -> Result<State, ProviderError> {
        self.object_state(attr(f, "vault_uri")?, t, attr(f, "name")?, ctx.cutoff)
            .await
    }

    /// `Rotated` once the current version postdates the cutoff and every older version is
    /// disabled; `Deleted` when the object is gone; `Active` otherwise.
    pub(crate) async fn object_state(
        &self,
        vault_uri: &str,
        t: ObjectType,
        name: &str,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<State, ProviderError> {
        let Some(cutoff) = cutoff else {
            return Ok(State::Active);
        };
        let Some(current) = self.data.current(vault_uri, t, name).await? else {
            return Ok(State::Deleted);
        };
        // Key Vault keeps whole seconds; a version made in the cutoff's second counts as after.
        if current.created.is_none_or(|c| c < cutoff.timestamp()) {
            return Ok(State::Active);
        }
        let versions = self.data.versions(vault_uri, t, name).await?;
        let old_enabled = versions
            .iter()
            .any(|v| v.version != current.version && v.enabled);
        Ok(if old_enabled {
            State::Active
        } else {
            State::Rotated
        })
    }
}
