//! The live state of one finding, read from Azure again (for verification of findings that no
//! longer appear when the person is resolved again, e.g. a secret whose only path was removed).

use crate::actions::{attr, object_path};
use crate::credentials::DISPLAY_PREFIX;
use crate::http::Api;
use crate::keyvault::ObjectType;
use crate::resolve::{sessions_state, user_state};
use crate::{kinds, AzureProvider};
use closeout_contract::{Finding, ProviderError, ResolveContext, State};
use serde::Deserialize;

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

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
            kinds::USER => Ok(match self.get_user(&f.resource).await? {
                Some(u) => user_state(&u),
                None => State::Deleted,
            }),
            kinds::SIGN_IN_SESSIONS => Ok(match self.get_user(&f.resource).await? {
                Some(u) => sessions_state(&u, ctx.cutoff),
                None => State::Deleted,
            }),
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
                    match self.owners(attr(f, "collection")?, &f.resource).await? {
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
        let relation = if transitive {
            "transitiveMemberOf"
        } else {
            "memberOf"
        };
        let path = format!(
            "{}/{relation}/microsoft.graph.group?$select=id",
            object_path("users", user)
        );
        let groups: Vec<IdOnly> = match self.http.list(Api::Graph, &path).await {
            Ok(g) => g,
            Err(e) if e.is_not_found() => return Ok(State::Deleted),
            Err(e) => return Err(e.into()),
        };
        Ok(if groups.iter().any(|g| g.id.eq_ignore_ascii_case(group)) {
            State::Active
        } else {
            State::Deleted
        })
    }

    pub(crate) async fn assignment_state(&self, f: &Finding) -> Result<State, ProviderError> {
        let path = format!(
            "{}?api-version={}",
            f.resource,
            crate::arm::AUTHORIZATION_API
        );
        match self.http.call::<IdOnly>(Api::Arm, "GET", &path, None).await {
            Ok(Some(_)) => Ok(State::Active),
            Ok(None) => Ok(State::Deleted),
            Err(e) if e.is_not_found() => Ok(State::Deleted),
            Err(e) => Err(e.into()),
        }
    }

    async fn policy_state(&self, f: &Finding) -> Result<State, ProviderError> {
        let object_id = attr(f, "object_id")?;
        Ok(match self.get_vault(attr(f, "vault_id")?).await? {
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
                .is_some_and(|d| d.starts_with(DISPLAY_PREFIX) && d.ends_with(key_id));
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
}
