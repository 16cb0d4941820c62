//! The live state of one finding, read from Azure again (for verification of findings that no
//! longer appear when the person is resolved again, e.g. a secret whose only path was removed),
//! and the probes of old credentials.

use crate::arm;
use crate::capabilities::{kinds, CREDENTIAL_DISPLAY_PREFIX, PROVIDER};
use crate::client::AzureProvider;
use crate::config::credential_secret_name;
use crate::directory::{self, object_path};
use crate::error::attr;
use crate::http::{Api, CallError, TokenFailure};
use crate::object::ObjectType;
use crate::state::{sessions_state, user_state};
use chrono::{DateTime, Utc};
use closeout_contract::{Finding, ProbeOutcome, ProviderError, ResolveContext, SecretValue, State};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credential {
    key_id: String,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize, Default)]
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
            kinds::DIRECTORY_ROLE => self.role_state(f, "roleAssignments").await,
            kinds::GROUP_DIRECTORY_ROLE => {
                // Closed when the person left the group, or the group lost the role.
                match self.in_group_id(f, attr(f, "principal_id")?, true).await? {
                    State::Active => self.role_state(f, attr(f, "listing")?).await,
                    other => Ok(other),
                }
            }
            kinds::DIRECTORY_ROLE_ELIGIBILITY => {
                self.role_state(f, "roleEligibilitySchedules").await
            }
            kinds::APP_ROLE_ASSIGNMENT => {
                let path = format!(
                    "{}/appRoleAssignments",
                    object_path("users", attr(f, "user_id")?)
                );
                let all: Vec<IdOnly> = match self.http.list(Api::Graph, &path).await {
                    Ok(all) => all,
                    Err(e) if e.is_not_found() => return Ok(State::Deleted),
                    Err(e) => return Err(e.into()),
                };
                Ok(if all.iter().any(|a| a.id == f.resource) {
                    State::Active
                } else {
                    State::Deleted
                })
            }
            kinds::OAUTH2_GRANT => {
                let path = format!(
                    "/v1.0/oauth2PermissionGrants/{}",
                    urlencoding::encode(&f.resource)
                );
                self.exists(&path).await
            }
            kinds::AUTH_METHOD => {
                let path = format!(
                    "{}/authentication/{}/{}",
                    object_path("users", attr(f, "user_id")?),
                    attr(f, "collection")?,
                    urlencoding::encode(attr(f, "method_id")?)
                );
                self.exists(&path).await
            }
            kinds::OWNED_APPLICATION | kinds::OWNED_SERVICE_PRINCIPAL | kinds::OWNED_GROUP => {
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
            kinds::ACTS_AS_SERVICE_PRINCIPAL => {
                // Closed once the person no longer owns the object the path starts with.
                let user = attr(f, "user_id")?;
                Ok(
                    match directory::owners(
                        &self.http,
                        attr(f, "owned_collection")?,
                        attr(f, "owned_object_id")?,
                    )
                    .await?
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

    /// `Active` while the person still holds (or is eligible for, in `collection`) the
    /// finding's directory role at its scope, `Deleted` once not.
    async fn role_state(&self, f: &Finding, collection: &str) -> Result<State, ProviderError> {
        let held = crate::entra_access::grants_of(
            &self.http,
            collection,
            attr(f, "principal_id")?,
            attr(f, "role_definition_id")?,
            attr(f, "directory_scope_id")?,
        )
        .await?;
        Ok(if held.is_empty() {
            State::Deleted
        } else {
            State::Active
        })
    }

    /// `Active` while Graph answers `path`, `Deleted` once it answers 404.
    async fn exists(&self, path: &str) -> Result<State, ProviderError> {
        match self
            .http
            .call::<serde_json::Value>(Api::Graph, "GET", path, None)
            .await
        {
            Ok(_) => Ok(State::Active),
            Err(e) if e.is_not_found() => Ok(State::Deleted),
            Err(e) => Err(e.into()),
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
        Ok(self
            .object_state(attr(f, "vault_uri")?, t, attr(f, "name")?, ctx.cutoff)
            .await?)
    }

    /// `Rotated` once the current version postdates the cutoff and every older version is
    /// disabled; `Deleted` when the object is gone; `Active` otherwise.
    pub(crate) async fn object_state(
        &self,
        vault_uri: &str,
        t: ObjectType,
        name: &str,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<State, CallError> {
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
        // A key's old versions stay enabled on purpose (they still decrypt and unwrap; a key
        // is not a credential a leaver carries away), and a secret rotated at its database
        // keeps them too (the database refuses their password): a current version made after
        // the cutoff is the rotation. Anything else still holds the old value while an older
        // version is enabled.
        let database = current
            .tags
            .get(closeout_contract::rotation_strategy::TAG)
            .and_then(|s| closeout_contract::Strategy::parse(s).ok())
            .is_some_and(|s| s.is_postgres());
        if t == ObjectType::Keys || (t == ObjectType::Secrets && database) {
            return Ok(State::Rotated);
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

    /// The login probe of a Key Vault secret rotated by a database strategy: its previous
    /// version must be refused by PostgreSQL, its current one must log in.
    async fn probe_database_secret(
        &self,
        f: &Finding,
    ) -> Result<Option<ProbeOutcome>, ProviderError> {
        let strategy = f
            .attr(closeout_contract::rotation_strategy::ATTR)
            .and_then(|s| closeout_contract::Strategy::parse(s).ok());
        if !strategy.is_some_and(|s| s.is_postgres()) {
            return Ok(None);
        }
        let (uri, name) = (attr(f, "vault_uri")?, attr(f, "name")?);
        let probe =
            format!("PostgreSQL login with the previous and current versions of secret {name}");
        let versions = self
            .data
            .versions(uri, crate::object::ObjectType::Secrets, name)
            .await?;
        let mut newest_first = versions.iter().rev();
        let (Some(cur), Some(prev)) = (newest_first.next(), newest_first.next()) else {
            return Ok(Some(ProbeOutcome {
                probe,
                dead: false,
                detail: "the secret has no previous version: it was not rotated".into(),
            }));
        };
        let old = self.data.secret_value(uri, name, &prev.version).await?;
        let new = self.data.secret_value(uri, name, &cur.version).await?;
        let (Some(old), Some(new)) = (old, new) else {
            return Ok(Some(ProbeOutcome {
                probe,
                dead: false,
                detail: "the previous or current version cannot be read".into(),
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

    /// Actively check an old credential after its rotation. An application's (or service
    /// principal's) client secret whose value Closeout still holds — a version of the
    /// credential-vault secret it published earlier, tagged with that credential's key id — is
    /// tried at the token endpoint (client credentials) and must be refused. Otherwise the
    /// probe reads the metadata and says so: the old key id must be gone from
    /// `passwordCredentials` (`keyCredentials` for a certificate, whose private key Closeout
    /// cannot sign with here).
    pub(crate) async fn probe_impl(
        &self,
        f: &Finding,
    ) -> Result<Option<ProbeOutcome>, ProviderError> {
        let list = match f.kind.as_str() {
            kinds::APP_PASSWORD => "passwordCredentials",
            kinds::APP_CERTIFICATE => "keyCredentials",
            kinds::KV_SECRET => return self.probe_database_secret(f).await,
            _ => return Ok(None),
        };
        let key_id = attr(f, "key_id")?;
        if f.kind == kinds::APP_PASSWORD {
            if let Some(app_id) = f.attr("app_id").filter(|a| !a.is_empty()) {
                if let Some((value, source)) = self.held_secret(f, key_id).await? {
                    let probe = format!(
                        "client-credentials token request as application {app_id} with the old secret {key_id} ({source})"
                    );
                    return match self.http.token_for_app(app_id, &value).await {
                        Ok(()) => Ok(Some(ProbeOutcome {
                            probe,
                            dead: false,
                            detail:
                                "the token endpoint issued a token: the old secret still signs in"
                                    .into(),
                        })),
                        Err(TokenFailure::Refused(message)) => Ok(Some(ProbeOutcome {
                            probe,
                            dead: true,
                            detail: format!("refused: {message}"),
                        })),
                        Err(TokenFailure::Unreachable(message)) => {
                            Err(ProviderError::Unreachable {
                                provider: PROVIDER,
                                endpoint: self.config.authority_host.clone(),
                                message,
                            })
                        }
                    };
                }
            }
        }
        let probe = format!(
            "metadata: {list} of {} (Closeout does not hold the old {}; no sign-in was tried)",
            f.display,
            if f.kind == kinds::APP_PASSWORD {
                "secret's value"
            } else {
                "private key"
            }
        );
        let path = format!(
            "{}?$select=id,passwordCredentials,keyCredentials",
            object_path(attr(f, "collection")?, attr(f, "object_id")?)
        );
        let creds = match self
            .http
            .call::<Credentials>(Api::Graph, "GET", &path, None)
            .await
        {
            Ok(c) => c.unwrap_or_default(),
            Err(e) if e.is_not_found() => {
                return Ok(Some(ProbeOutcome {
                    probe,
                    dead: true,
                    detail: "the object no longer exists: no credential of it signs in".into(),
                }))
            }
            Err(e) => return Err(e.into()),
        };
        let listed = if f.kind == kinds::APP_PASSWORD {
            &creds.password_credentials
        } else {
            &creds.key_credentials
        };
        let present = listed.iter().any(|c| c.key_id.eq_ignore_ascii_case(key_id));
        Ok(Some(ProbeOutcome {
            probe,
            dead: !present,
            detail: if present {
                format!("keyId {key_id} is still in {list}: the old credential still signs in")
            } else {
                format!("keyId {key_id} is no longer in {list}: the old credential cannot sign in")
            },
        }))
    }

    /// The value of client secret `key_id` of `f`'s application, when Closeout published it
    /// (a version of the credential-vault secret tagged `credential = key_id`) and can still
    /// read it; with where it was found.
    async fn held_secret(
        &self,
        f: &Finding,
        key_id: &str,
    ) -> Result<Option<(SecretValue, String)>, ProviderError> {
        let Some(vault) = self.config.credential_vault.as_deref() else {
            return Ok(None);
        };
        let name = credential_secret_name(
            &self.config.credential_secret_name,
            f.attr("app_name").unwrap_or(&f.resource),
            f.attr("app_id").unwrap_or(""),
            f.attr("object_id").unwrap_or(&f.resource),
        );
        let versions = match self.data.versions(vault, ObjectType::Secrets, &name).await {
            Ok(v) => v,
            Err(e) if matches!(e.status, Some(403 | 404)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(version) = versions.iter().find(|v| {
            v.tags
                .get("credential")
                .is_some_and(|k| k.eq_ignore_ascii_case(key_id))
        }) else {
            return Ok(None);
        };
        Ok(self
            .data
            .secret_value(vault, &name, &version.version)
            .await?
            .map(|value| {
                (
                    value,
                    format!("version {} of {name} in {vault}", version.version),
                )
            }))
    }
}
