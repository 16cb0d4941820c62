//! [`VaultProvider`] itself: how it is built from its configuration, and the reads and writes of
//! the server that several modules share (entities, groups, token lookups, mounts, KV v2
//! metadata). Everything above this layer reaches Vault through these methods or through
//! [`Client`].

use crate::client::{found, keys, seg, CallError, Client};
use crate::config::{validate_address, VaultConfig, VaultError};
use crate::model::{Entity, Group, KvMetadata, Mount, TokenInfo};
use closeout_contract::{CallGate, Limits, SecretValue};
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::BTreeMap;
use vaultrs::api::identity::entity::requests::{
    UpdateEntityByIdRequest, UpdateEntityByIdRequestBuilder,
};

/// The Vault / OpenBao provider.
pub struct VaultProvider {
    pub(crate) config: VaultConfig,
    pub(crate) client: Client,
    /// What this instance's earlier resolution read, for a verification's resolution to reuse
    /// (`memory.rs`). Never held across an await.
    pub(crate) memory: std::sync::Mutex<crate::memory::Memory>,
    /// The entities `resolve_accounts` read, for the resolution that follows it
    /// (`closeout_contract::handoff`): it plans from them as they were before containment.
    /// The audit log's length before they were read goes with them.
    pub(crate) ahead: closeout_contract::handoff::Handoff<(Option<u64>, Vec<Entity>)>,
}

impl std::fmt::Debug for VaultProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultProvider")
            .field("address", &self.client.address())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

impl VaultProvider {
    /// Validate `config`, read the token (from `token_file`, else `VAULT_TOKEN`, else
    /// `BAO_TOKEN`) and build the client. Makes no Vault call.
    pub async fn connect(config: VaultConfig) -> Result<VaultProvider, VaultError> {
        config.validate()?;
        let address = match &config.address {
            Some(a) => a.clone(),
            None => {
                let a = env_nonempty("VAULT_ADDR")
                    .or_else(|| env_nonempty("BAO_ADDR"))
                    .ok_or(VaultError::NoAddress)?;
                validate_address("VAULT_ADDR", &a)?;
                a
            }
        };
        let token = match &config.token_file {
            Some(path) => {
                let text =
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|e| VaultError::TokenFile {
                            path: path.display().to_string(),
                            message: e.kind().to_string(),
                        })?;
                let first = text.lines().next().unwrap_or("").trim().to_string();
                if first.is_empty() {
                    return Err(VaultError::TokenFile {
                        path: path.display().to_string(),
                        message: "the file is empty".into(),
                    });
                }
                SecretValue::new(first)
            }
            None => SecretValue::new(
                env_nonempty("VAULT_TOKEN")
                    .or_else(|| env_nonempty("BAO_TOKEN"))
                    .ok_or(VaultError::NoToken)?
                    .trim(),
            ),
        };
        let gate = CallGate::named("vault", limits_for(&config));
        let client =
            Client::new(address, token, config.namespace.clone(), gate)?.with_retry(config.retry);
        Ok(VaultProvider {
            config,
            client,
            memory: Default::default(),
            ahead: Default::default(),
        })
    }

    /// The configuration the provider was built with.
    pub fn config(&self) -> &VaultConfig {
        &self.config
    }

    pub(crate) async fn read_entity(&self, id: &str) -> Result<Option<Entity>, CallError> {
        let path = format!("identity/entity/id/{}", seg(id));
        let r = self
            .client
            .read_data::<vaultrs::api::identity::entity::responses::ReadEntityByIdResponse>(
                "GET", &path, None,
            );
        Ok(found(r.await)?.map(Entity::from))
    }

    /// Every entity, read one by one (bounded): the list's `key_info` lacks the metadata and
    /// policies correlation and resolution need.
    pub(crate) async fn all_entities(&self) -> Result<Vec<Entity>, CallError> {
        let ids = keys(self.client.list_keys("identity/entity/id").await)?;
        stream::iter(ids)
            .map(|id| async move { self.read_entity(&id).await })
            .buffer_unordered(self.config.max_in_flight.max(1))
            .try_filter_map(|e| async move { Ok(e) })
            .try_collect()
            .await
    }

    /// Every entity, as [`VaultProvider::all_entities`], but a remembered entity (`prior`) is
    /// taken as it was when the list's names and aliases match it, the audit log (`log`: its
    /// path and the mark to read it from) names no change of it since, and `live` (the person's
    /// own, or naming the person) does not ask for it live; the others are read. Also returns
    /// what the log shows changed since the mark (`None` without `prior` or `log`: then every
    /// entity is read).
    ///
    /// The log is read after this listing and trusted only if it holds the listing's own request
    /// (by Vault's request id): that proves the file is the live log of this server up to now. A
    /// log that does not hold it (another file, a device disabled since, a rotated log) marks
    /// everything as changed.
    pub(crate) async fn entities_reusing(
        &self,
        prior: Option<&BTreeMap<String, Entity>>,
        log: Option<(std::path::PathBuf, u64)>,
        live: impl Fn(&Entity) -> bool,
    ) -> Result<(Vec<Entity>, Option<crate::memory::Written>), CallError> {
        let (Some(prior), Some((log, mark))) = (prior, log) else {
            return Ok((self.all_entities().await?, None));
        };
        #[derive(serde::Deserialize, Default)]
        struct Listed {
            #[serde(default)]
            keys: Vec<String>,
            #[serde(default)]
            key_info: BTreeMap<String, Info>,
        }
        #[derive(serde::Deserialize, Default)]
        struct Info {
            #[serde(default)]
            name: String,
            #[serde(default, deserialize_with = "crate::model::nullable")]
            aliases: Vec<crate::model::Alias>,
        }
        // The listing's request id, as the receipt of the call (its last attempt) carries it.
        let (listed, calls) = closeout_contract::receipt::collect(self.client.read_data::<Listed>(
            "LIST",
            "identity/entity/id",
            None,
        ))
        .await;
        let listed = match listed {
            Ok(l) => l,
            Err(e) if e.is_not_found() => Listed::default(),
            Err(e) => return Err(e),
        };
        let witness = calls.last().and_then(|c| c.request_id.clone());
        let written = match witness {
            Some(witness) => tokio::task::spawn_blocking(move || {
                crate::memory::written_since(&log, mark, &witness)
            })
            .await
            .unwrap_or_else(|_| crate::memory::Written::everything()),
            None => crate::memory::Written::everything(),
        };
        let written = &written;
        let mut out = Vec::new();
        let mut to_read = Vec::new();
        for id in listed.keys {
            let info = listed.key_info.get(&id);
            match (prior.get(&id), info) {
                (Some(e), Some(info))
                    if !live(e)
                        && crate::memory::entity_unchanged(
                            e,
                            &info.name,
                            &info.aliases,
                            written,
                        ) =>
                {
                    out.push(e.clone())
                }
                _ => to_read.push(id),
            }
        }
        let read: Vec<Entity> = stream::iter(to_read)
            .map(|id| async move { self.read_entity(&id).await })
            .buffer_unordered(self.config.max_in_flight.max(1))
            .try_filter_map(|e| async move { Ok(e) })
            .try_collect()
            .await?;
        out.extend(read);
        Ok((out, Some(written.clone())))
    }

    pub(crate) async fn read_group(&self, id: &str) -> Result<Option<Group>, CallError> {
        let path = format!("identity/group/id/{}", seg(id));
        let r = self
            .client
            .read_data::<vaultrs::api::identity::group::responses::ReadGroupByIdResponse>(
                "GET", &path, None,
            );
        Ok(found(r.await)?.map(Group::from))
    }

    pub(crate) async fn lookup_accessor(
        &self,
        accessor: &str,
    ) -> Result<Option<TokenInfo>, CallError> {
        // While a parent's revocation is removing this token, its accessor entry still exists
        // but the token does not, and Vault answers the lookup 403 "permission denied" (its
        // "bad token"), or 200 with a body that is not a token; once the revocation is through,
        // the accessor is "invalid". Such an answer is asked again a few times (3.1 s in all)
        // before it counts: one that stays is returned as the error it is, never taken for a
        // revoked token.
        let mut waits = [100u64, 200, 400, 800, 1600].into_iter();
        loop {
            match self
                .client
                .read_data::<vaultrs::api::token::responses::LookupTokenResponse>(
                    "POST",
                    "auth/token/lookup-accessor",
                    Some(&serde_json::json!({ "accessor": accessor })),
                )
                .await
            {
                Ok(t) => return Ok(Some(t.into())),
                Err(e) if e.is_invalid_accessor() || e.is_not_found() => return Ok(None),
                Err(e) if matches!(e.status, Some(403) | Some(200)) => match waits.next() {
                    Some(ms) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
                    // OpenBao can keep the accessor entry of a child it removed while its parent
                    // was revoked: that lookup answers 403 for good. Vault answers a lookup 403
                    // for two reasons only: the caller may not call `lookup-accessor`, or the
                    // accessor's token does not exist ("bad token"). Closeout's own permission
                    // is asked of Vault; only when it is granted is the token taken as gone.
                    None if e.status == Some(403) && self.may_look_up_accessors().await? => {
                        tracing::warn!(
                            "lookup-accessor refused although Closeout may call it: the accessor's token no longer exists (a dangling accessor entry)"
                        );
                        return Ok(None);
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether Closeout's token may call `auth/token/lookup-accessor` (`sys/capabilities-self`).
    async fn may_look_up_accessors(&self) -> Result<bool, CallError> {
        const PATH: &str = "auth/token/lookup-accessor";
        let answer: Option<crate::client::Data<BTreeMap<String, serde_json::Value>>> = self
            .client
            .post(
                "sys/capabilities-self",
                &serde_json::json!({ "paths": [PATH] }),
            )
            .await?;
        let granted: Vec<String> = answer
            .and_then(|d| d.data.get(PATH).cloned())
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        Ok(granted.iter().any(|c| c == "root" || c == "update"))
    }

    /// The mounts of `sys/auth` (auth methods) or else `sys/mounts` (secret engines).
    pub(crate) async fn mounts(&self, path: &str) -> Result<BTreeMap<String, Mount>, CallError> {
        let all: Vec<(String, Mount)> = if path == "sys/auth" {
            let r = self.client.read_data::<std::collections::HashMap<
                String,
                vaultrs::api::sys::responses::AuthResponse,
            >>("GET", path, None);
            r.await?.into_iter().map(|(k, v)| (k, v.into())).collect()
        } else {
            let r = self.client.read_data::<std::collections::HashMap<
                String,
                vaultrs::api::sys::responses::MountResponse,
            >>("GET", path, None);
            r.await?.into_iter().map(|(k, v)| (k, v.into())).collect()
        };
        Ok(all.into_iter().filter(|(k, _)| k.ends_with('/')).collect())
    }

    pub(crate) async fn kv_metadata(
        &self,
        mount: &str,
        key: &str,
    ) -> Result<Option<KvMetadata>, CallError> {
        let path = format!("{mount}metadata/{key}");
        let r = self
            .client
            .read_data::<vaultrs::api::kv2::responses::ReadSecretMetadataResponse>(
                "GET", &path, None,
            );
        Ok(found(r.await)?.map(KvMetadata::from))
    }

    /// `POST identity/entity/id/<id>` with the fields `set` fills in.
    pub(crate) async fn update_entity(
        &self,
        id: &str,
        set: impl FnOnce(&mut UpdateEntityByIdRequestBuilder),
    ) -> Result<(), CallError> {
        let mut b = UpdateEntityByIdRequest::builder();
        set(&mut b);
        b.id(id);
        let r = b.build().map_err(|e| CallError {
            method: "POST",
            path: format!("identity/entity/id/{}", seg(id)),
            status: None,
            errors: vec![format!("the request could not be built: {e}")],
            retry_after: None,
            endpoint: self.client.address().to_string(),
        })?;
        let mut body = serde_json::Map::new();
        if let Some(v) = r.name {
            body.insert("name".into(), v.into());
        }
        if let Some(v) = r.metadata {
            body.insert("metadata".into(), serde_json::json!(v));
        }
        if let Some(v) = r.policies {
            body.insert("policies".into(), serde_json::json!(v));
        }
        if let Some(v) = r.disabled {
            body.insert("disabled".into(), v.into());
        }
        let path = format!("identity/entity/id/{}", seg(id));
        self.client
            .write_json("POST", &path, &serde_json::Value::Object(body))
            .await
    }

    /// Replace the custom metadata of a KV v2 secret.
    pub(crate) async fn set_custom_metadata(
        &self,
        mount: &str,
        key: &str,
        custom: BTreeMap<String, String>,
    ) -> Result<(), CallError> {
        let path = format!("{mount}metadata/{key}");
        self.client
            .write_json(
                "POST",
                &path,
                &serde_json::json!({ "custom_metadata": custom }),
            )
            .await
    }
}

/// The gate's limits from the configuration.
fn limits_for(config: &VaultConfig) -> Limits {
    Limits::configured(config.max_in_flight, config.requests_per_second)
}
