//! AppRole secret-ids the person owns — through secret-id metadata `owner_key`, or because the
//! role backs an NHI entity the person owns (the entity's AppRole alias is the role-id): resolve,
//! destroy by accessor, and rotate (issue a new one, publish it to KV, then destroy the old one).

use crate::capabilities::{kinds, PROVIDER};
use crate::client::{seg, CallError, Versioned};
use crate::correlation::{owned_by, OwnedNhiAlias};
use crate::findings::{finding, listed};
use crate::model::Mount;
use crate::server::VaultProvider;
use closeout_contract::{
    ActionOutcome, ActionRequest, Finding, Holder, Path, ProbeOutcome, ProviderError, Resolution,
    ResolveContext, SecretValue, State,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `auth/<mount>/role/<role>/secret-id-accessor/lookup`.
#[derive(Debug, Clone, Deserialize)]
pub struct SecretIdInfo {
    #[serde(default, deserialize_with = "crate::model::nullable")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub creation_time: String,
    #[serde(default)]
    pub expiration_time: String,
}

impl From<vaultrs::api::auth::approle::responses::ReadSecretIDResponse> for SecretIdInfo {
    fn from(r: vaultrs::api::auth::approle::responses::ReadSecretIDResponse) -> Self {
        SecretIdInfo {
            metadata: r.metadata.unwrap_or_default().into_iter().collect(),
            creation_time: r.creation_time,
            expiration_time: r.expiration_time,
        }
    }
}

// A rotation is known by the secret-id it replaces (its accessor), not by the action's
// idempotency key: the key names one run, and a run that stopped part-way can be followed by a
// run with other keys rotating the same, still live, secret-id (another trigger's run — an
// incident after a failed leaver — or the next run after one that ended open). Keyed by the
// run, that run could not see what the first one created and left a second new secret-id live.
// Replacing one secret-id is one operation whichever run does it.

/// Custom-metadata key on the published record: the accessor of the secret-id whose
/// replacement it publishes.
const PUBLISHED_FOR: &str = "closeout-published-for";

/// Custom-metadata key on the published record while a rotation publishes:
/// `<accessor replaced>@<version it replaces>@<new accessor>`.
const PUBLISHING: &str = "closeout-publishing";

/// Metadata key on a secret-id a rotation created: the accessor of the secret-id it replaces.
const REPLACES: &str = "closeout-replaces";

/// The accessor an earlier attempt at replacing `old` published, when the record's
/// [`PUBLISHING`] entry names `old` and the version before `current` (so that write landed).
fn publishing_of(entry: &str, old: &str, current: u64) -> Option<String> {
    let mut parts = entry.rsplitn(3, '@');
    let (acc, version, replaced) = (parts.next()?, parts.next()?, parts.next()?);
    let version: u64 = version.parse().ok()?;
    (replaced == old && version + 1 == current && !acc.is_empty()).then(|| acc.to_string())
}

/// Custom-metadata key prefix on the published record: `closeout-secret-id:<accessor>` names the
/// KV version holding that secret-id's value.
const PUBLISHED_VERSION: &str = "closeout-secret-id:";

/// How many `closeout-secret-id:` entries a record keeps (custom metadata holds at most 64
/// keys); the oldest versions go first.
const KEEP_PUBLISHED: usize = 16;

/// Record that `version` of the published record holds the secret-id `accessor`, keeping the
/// [`KEEP_PUBLISHED`] newest such entries.
fn record_published(custom: &mut BTreeMap<String, String>, accessor: &str, version: u64) {
    custom.insert(
        format!("{PUBLISHED_VERSION}{accessor}"),
        version.to_string(),
    );
    let mut entries: Vec<(u64, String)> = custom
        .iter()
        .filter(|(k, _)| k.starts_with(PUBLISHED_VERSION))
        .map(|(k, v)| (v.parse().unwrap_or(0), k.clone()))
        .collect();
    entries.sort();
    let excess = entries.len().saturating_sub(KEEP_PUBLISHED);
    for (_, k) in entries.into_iter().take(excess) {
        custom.remove(&k);
    }
}

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecretValue, D::Error> {
    String::deserialize(d).map(SecretValue::new)
}

/// One published version: `{role_id, secret_id}`.
#[derive(Deserialize)]
struct Published {
    role_id: String,
    #[serde(deserialize_with = "secret")]
    secret_id: SecretValue,
}

/// An AppRole login's answer: only the token, to revoke it.
#[derive(Deserialize)]
struct Login {
    auth: Option<LoginAuth>,
}

#[derive(Deserialize)]
struct LoginAuth {
    #[serde(deserialize_with = "secret")]
    client_token: SecretValue,
}

fn permanent(message: impl Into<String>) -> ProviderError {
    ProviderError::Permanent {
        provider: PROVIDER,
        message: message.into(),
    }
}

impl VaultProvider {
    pub(crate) async fn lookup_secret_id(
        &self,
        mount: &str,
        role: &str,
        accessor: &str,
    ) -> Result<Option<SecretIdInfo>, CallError> {
        let path = format!("auth/{mount}role/{}/secret-id-accessor/lookup", seg(role));
        match self
            .client
            .read_data::<vaultrs::api::auth::approle::responses::ReadSecretIDResponse>(
                "POST",
                &path,
                Some(&serde_json::json!({ "secret_id_accessor": accessor })),
            )
            .await
        {
            Ok(d) => Ok(Some(d.into())),
            // AppRole answers 404, or 500/400 "failed to find accessor entry" on older servers.
            Err(e) if e.is_not_found() || e.errors.iter().any(|m| m.contains("failed to find")) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn resolve_approle(
        &self,
        ctx: &ResolveContext,
        auth: &BTreeMap<String, Mount>,
        owned_nhis: &[OwnedNhiAlias],
        res: &mut Resolution,
    ) -> Result<(), ProviderError> {
        let conc = self.config.max_in_flight.max(1);
        for (mount, m) in auth.iter().filter(|(_, m)| m.mount_type == "approle") {
            let nhis_here: Vec<&OwnedNhiAlias> = owned_nhis
                .iter()
                .filter(|a| a.mount_accessor == m.accessor)
                .collect();
            let roles_path = format!("auth/{mount}role");
            let roles = self.client.list_keys(&roles_path).await;
            let roles = listed(roles, kinds::APPROLE_SECRET_ID, &roles_path, &mut res.gaps)?;
            for role in roles {
                // Does an NHI the person owns log in through this role? (Only read the role-id
                // when the person owns an NHI under this mount.)
                let backing = if nhis_here.is_empty() {
                    None
                } else {
                    let role_id = self
                        .client
                        .read_data::<vaultrs::api::auth::approle::responses::ReadRoleIDResponse>(
                            "GET",
                            &format!("auth/{mount}role/{}/role-id", seg(&role)),
                            None,
                        )
                        .await?
                        .role_id;
                    nhis_here.iter().copied().find(|a| a.name == role_id)
                };
                let path = format!("auth/{mount}role/{}/secret-id", seg(&role));
                let accessors = self.client.list_keys(&path);
                let accessors = listed(
                    accessors.await,
                    kinds::APPROLE_SECRET_ID,
                    &path,
                    &mut res.gaps,
                )?;
                let role_ref = &role;
                let found: Vec<(String, SecretIdInfo)> = stream::iter(accessors)
                    .map(|acc| async move {
                        let info = self.lookup_secret_id(mount, role_ref, &acc).await?;
                        Ok::<_, CallError>(info.map(|i| (acc, i)))
                    })
                    .buffer_unordered(conc)
                    .try_filter_map(|x| async move {
                        Ok(x.filter(|(_, i)| {
                            backing.is_some() || owned_by(&self.config, &ctx.identity, &i.metadata)
                        }))
                    })
                    .try_collect()
                    .await?;
                for (acc, info) in found {
                    let mut attributes: BTreeMap<String, String> = [
                        ("mount", mount.clone()),
                        ("role", role.clone()),
                        ("accessor", acc.clone()),
                        ("created", info.creation_time.clone()),
                        ("expires", info.expiration_time.clone()),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                    // The secret-id's own owner record wins; else the owning NHI's.
                    let metadata_owner = info
                        .metadata
                        .get(&self.config.owner_key)
                        .filter(|o| ctx.identity.is_named_by(o));
                    let (owner, holder, path) = if let Some(o) = metadata_owner {
                        (
                            o.clone(),
                            Holder::Nhi(format!("approle {role}")),
                            Path::new().then("owns", format!("approle {role} at auth/{mount}")),
                        )
                    } else if let Some(nhi) = backing {
                        (
                            nhi.owner.clone(),
                            Holder::Nhi(nhi.entity.clone()),
                            Path::new()
                                .then("owns", format!("entity {}", nhi.entity))
                                .then("logs-in-with", format!("approle {role} at auth/{mount}")),
                        )
                    } else {
                        continue;
                    };
                    attributes.insert("owner".into(), owner);
                    res.findings.push(finding(
                        kinds::APPROLE_SECRET_ID,
                        &format!("auth/{mount}role/{role}/secret-id/{acc}"),
                        format!("secret-id {acc} of AppRole {role} (auth/{mount})"),
                        closeout_contract::Relation::Owns,
                        holder,
                        State::Active,
                        path.then("secret-id", acc.clone()),
                        attributes,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Destroy every secret-id of `role` created to replace `old`, but `keep`: what earlier
    /// attempts (of this run or of a failed earlier one) left when they stopped before the new
    /// secret-id was published.
    async fn destroy_unpublished_replacements(
        &self,
        mount: &str,
        role: &str,
        old: &str,
        keep: Option<&str>,
    ) -> Result<(), CallError> {
        let path = format!("auth/{mount}role/{}/secret-id", seg(role));
        let accessors = crate::client::keys(self.client.list_keys(&path).await)?;
        for acc in accessors.iter().filter(|a| Some(a.as_str()) != keep) {
            let tagged = self
                .lookup_secret_id(mount, role, acc)
                .await?
                .is_some_and(|i| i.metadata.get(REPLACES).map(String::as_str) == Some(old));
            if tagged {
                self.destroy_secret_id(mount, role, acc).await?;
            }
        }
        Ok(())
    }

    async fn destroy_secret_id(&self, mount: &str, role: &str, acc: &str) -> Result<(), CallError> {
        let path = format!("auth/{mount}role/{}/secret-id-accessor/destroy", seg(role));
        self.client
            .write_json(
                "POST",
                &path,
                &serde_json::json!({ "secret_id_accessor": acc }),
            )
            .await
    }

    pub(crate) async fn execute_approle(
        &self,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let get = |k: &str| {
            f.attr(k)
                .ok_or_else(|| permanent(format!("finding {} lacks attribute {k}", f.id)))
        };
        let (mount, role, acc) = (get("mount")?, get("role")?, get("accessor")?);
        let Some(info) = self.lookup_secret_id(mount, role, acc).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("secret-id {acc} of AppRole {role} already destroyed"),
            ));
        };
        match action.verb.as_str() {
            "revoke" => {
                self.destroy_secret_id(mount, role, acc).await?;
                Ok(ActionOutcome::done(
                    State::Deleted,
                    format!("destroyed secret-id {acc} of AppRole {role}"),
                ))
            }
            "rotate" => {
                // create-new → publish → retire-old. A crash after publishing is recognised by
                // the published version's marker, so a rerun only destroys the old one. Each
                // new secret-id names the one it replaces in its metadata, and the intent to
                // publish it (old accessor, version replaced, new accessor) is recorded on the KV
                // record first: a rerun after a lost answer — this run's or a later run's —
                // recognises a publish that took effect (marks it instead of publishing again)
                // and destroys any secret-id an earlier attempt created but did not publish
                // (issue 14: two new secret-ids and two new versions where one was due).
                let kv_path = self.config.nhi_secret_id_path.replace("{role}", role);
                let (kv_mount, kv_key) = kv_path
                    .split_once("/data/")
                    .map(|(m, k)| (format!("{m}/"), k.to_string()))
                    .ok_or_else(|| permanent("nhi_secret_id_path is not a KV v2 data path"))?;
                let record = self.kv_metadata(&kv_mount, &kv_key).await?;
                let current = record.as_ref().map_or(0, |m| m.current_version);
                let mut custom = record.map(|m| m.custom_metadata).unwrap_or_default();
                let published = custom.get(PUBLISHED_FOR).map(String::as_str) == Some(acc);
                let mut new_acc = String::new();
                if !published {
                    let landed = custom
                        .get(PUBLISHING)
                        .and_then(|p| publishing_of(p, acc, current));
                    self.destroy_unpublished_replacements(mount, role, acc, landed.as_deref())
                        .await?;
                    let version = if let Some(landed) = landed {
                        new_acc = landed;
                        current
                    } else {
                        let path = format!("auth/{mount}role/{}/role-id", seg(role));
                        let role_id = self
                            .client
                            .read_data::<vaultrs::api::auth::approle::responses::ReadRoleIDResponse>(
                                "GET", &path, None,
                            )
                            .await?
                            .role_id;
                        // The new secret-id is owned by the new owner when the orchestrator
                        // names one (the person's manager), so the person no longer owns a
                        // live secret-id.
                        let mut metadata = info.metadata.clone();
                        if let Some(owner) = &action.params.new_owner {
                            metadata.insert(self.config.owner_key.clone(), owner.clone());
                        }
                        metadata.insert(REPLACES.into(), acc.to_string());
                        let path = format!("auth/{mount}role/{}/secret-id", seg(role));
                        let created = self
                            .client
                            .write_data::<vaultrs::api::auth::approle::responses::GenerateNewSecretIDResponse>(
                                "POST",
                                &path,
                                &serde_json::json!({
                                    "metadata": serde_json::to_string(&metadata).unwrap_or_default()
                                }),
                            )
                            .await?;
                        new_acc = created.secret_id_accessor.clone();
                        let secret = SecretValue::new(created.secret_id);
                        custom.insert(PUBLISHING.into(), format!("{acc}@{current}@{new_acc}"));
                        self.set_custom_metadata(&kv_mount, &kv_key, custom.clone())
                            .await?;
                        let data =
                            serde_json::json!({ "role_id": role_id, "secret_id": secret.expose() });
                        drop(secret);
                        let written = self
                            .client
                            .write_data::<crate::kv::Written>(
                                "POST",
                                &kv_path,
                                &serde_json::json!({ "data": data }),
                            )
                            .await?;
                        drop(data);
                        written.version
                    };
                    custom.remove(PUBLISHING);
                    custom.insert(PUBLISHED_FOR.into(), acc.to_string());
                    // Which version holds the new secret-id: once it is rotated in turn, its
                    // probe logs in with that version's value and must be refused.
                    record_published(&mut custom, &new_acc, version);
                    self.set_custom_metadata(&kv_mount, &kv_key, custom).await?;
                }
                self.destroy_secret_id(mount, role, acc).await?;
                Ok(ActionOutcome::done(
                    State::Deleted,
                    if new_acc.is_empty() {
                        format!("destroyed old secret-id {acc} of AppRole {role} (new one already published to {kv_path})")
                    } else {
                        format!("issued secret-id {new_acc} for AppRole {role}, published it to {kv_path}, destroyed {acc}")
                    },
                ))
            }
            other => Err(ProviderError::Unsupported {
                provider: PROVIDER,
                message: format!("verb {other} on kind {}", f.kind),
            }),
        }
    }

    /// The probe of a secret-id: when its accessor still looks up, it is alive (no login is
    /// tried: a login would spend one of its uses). When it is gone and Closeout published its
    /// value (an earlier rotation), an AppRole login with that value must be refused; a token it
    /// returns anyway is revoked at once. Otherwise the probe says which metadata it checked.
    pub(crate) async fn probe_approle(&self, f: &Finding) -> Result<ProbeOutcome, ProviderError> {
        let get = |k: &str| {
            f.attr(k)
                .ok_or_else(|| permanent(format!("finding {} lacks attribute {k}", f.id)))
        };
        let (mount, role, acc) = (get("mount")?, get("role")?, get("accessor")?);
        let lookup = format!("auth/{mount}role/{role}/secret-id-accessor/lookup {acc}");
        if self.lookup_secret_id(mount, role, acc).await?.is_some() {
            return Ok(ProbeOutcome {
                probe: lookup,
                dead: false,
                detail: "the accessor still looks up: the secret-id exists (no login tried, so none of its uses was spent)".into(),
            });
        }
        let kv_path = self.config.nhi_secret_id_path.replace("{role}", role);
        let record = kv_path
            .split_once("/data/")
            .map(|(m, k)| (format!("{m}/"), k.to_string()));
        let version = match &record {
            Some((kv_mount, kv_key)) => self.kv_metadata(kv_mount, kv_key).await?.and_then(|m| {
                m.custom_metadata
                    .get(&format!("{PUBLISHED_VERSION}{acc}"))
                    .and_then(|v| v.parse::<u64>().ok())
            }),
            None => None,
        };
        let (Some(_), Some(version)) = (record, version) else {
            return Ok(ProbeOutcome {
                probe: lookup,
                dead: true,
                detail: format!(
                    "the accessor no longer looks up; Closeout never published this secret-id (no {PUBLISHED_VERSION}{acc} on {kv_path}), so it holds no value to try a login with"
                ),
            });
        };
        let old = self
            .client
            .read_data::<Versioned<Published>>("GET", &format!("{kv_path}?version={version}"), None)
            .await
            .map(|v| v.data);
        let old = match old {
            Ok(p) => p,
            Err(e) if e.is_not_found() => {
                return Ok(ProbeOutcome {
                    probe: lookup,
                    dead: true,
                    detail: format!(
                        "the accessor no longer looks up; version {version} of {kv_path}, which held the secret-id, is deleted or destroyed, so no login could be tried"
                    ),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let login = format!("auth/{mount}login");
        let body = serde_json::json!({
            "role_id": old.role_id,
            "secret_id": old.secret_id.expose(),
        });
        drop(old);
        let answer = self
            .client
            .call_with_token::<Login>("POST", &login, Some(&body), None)
            .await;
        drop(body);
        let probe = format!(
            "{lookup}, then POST {login} with the old secret-id (version {version} of {kv_path})"
        );
        match answer {
            Ok(answer) => {
                let token = answer.and_then(|a| a.auth).map(|a| a.client_token);
                if let Some(token) = &token {
                    // The probe must not leave a live token behind.
                    self.client
                        .call_with_token::<serde_json::Value>(
                            "POST",
                            "auth/token/revoke-self",
                            None,
                            Some(token),
                        )
                        .await?;
                }
                Ok(ProbeOutcome {
                    probe,
                    dead: false,
                    detail: "the login with the old secret-id succeeded (the token it returned was revoked at once)".into(),
                })
            }
            Err(e) if matches!(e.status, Some(400) | Some(403)) => Ok(ProbeOutcome {
                probe,
                dead: true,
                detail: format!(
                    "the accessor no longer looks up and the login was refused (HTTP {}: {})",
                    e.status.unwrap_or_default(),
                    e.errors.join("; ")
                ),
            }),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn live_state_approle(&self, f: &Finding) -> Result<State, ProviderError> {
        let get = |k: &str| {
            f.attr(k)
                .ok_or_else(|| permanent(format!("finding {} lacks attribute {k}", f.id)))
        };
        Ok(
            match self
                .lookup_secret_id(get("mount")?, get("role")?, get("accessor")?)
                .await?
            {
                None => State::Deleted,
                Some(_) => State::Active,
            },
        )
    }
}
