//! KV secrets, versions 1 and 2: listing a mount, the state of a secret against the cutoff,
//! rotation, destroying the versions a person knew, live state.
//!
//! What changes is the secret's rotation strategy (`closeout_contract::rotation_strategy`): the
//! custom metadata `closeout:rotation` (v2) or a config rule names it; a secret with one secret
//! field gets a new value in it; any other secret with no strategy is refused, never scrambled.
//!
//! - v2: a rotation writes a new version (check-and-set on the version read) and records its
//!   idempotency key in custom metadata; the version's creation time is the rotation's.
//! - v1 keeps no versions and no metadata: a rotation overwrites the value in place (the fields
//!   the strategy names new, the others kept), then writes a record at `kv1_rotation_record_path` (a KV v2 secret holding
//!   the time and run, its custom metadata the idempotency key). That record's creation time is
//!   what the state of a v1 secret is read from. A crash between the two writes reruns the
//!   overwrite (new values again) before recording it.

use crate::capabilities::PROVIDER;
use crate::client::{CallError, Versioned};
use crate::model::{KvData, KvMetadata};
use crate::server::VaultProvider;
use closeout_contract::rotation_strategy::{self, rotate_named};
use closeout_contract::Strategy;
use closeout_contract::{
    ActionOutcome, ActionRequest, Finding, ProviderError, ResolveContext, SecretValue, State,
};
use closeout_postgres::{SecretStore, Staged};

/// The custom-metadata key a KV rotation records its idempotency key under (v2: on the secret;
/// v1: on its rotation record).
pub(crate) const ROTATED_BY: &str = "closeout-rotated-by";

/// The custom-metadata key a KV v2 rotation records its intent under before it writes the new
/// version: `<idempotency key>@<version it replaces>`. An attempt whose write took effect but
/// whose answer (or the marking that follows) was lost is recognised by it, so the retry marks
/// that version rather than writing another (issue 14: two new versions where one was due).
pub(crate) const ROTATING: &str = "closeout-rotating";

/// The answer of a KV v2 write: the version written.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Written {
    pub version: u64,
}

/// How many times a KV v2 rotation starts over when its check-and-set write is refused
/// ([`VaultProvider::rotate_kv2`]) before the action fails as transient (the executor retries it).
const KV2_CAS_ATTEMPTS: u32 = 5;

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

/// The rotated data for `current` under the strategy `named` (else the default for its shape):
/// only the fields the strategy names change. A secret no strategy covers is refused with a
/// configuration error naming it, and nothing is written.
fn rotated_data(
    path: &str,
    named: Option<&str>,
    current: KvData,
) -> Result<serde_json::Map<String, serde_json::Value>, ProviderError> {
    let old = SecretValue::new(serde_json::Value::Object(current.data).to_string());
    let new = rotate_named(named, &old).map_err(|e| ProviderError::Config {
        provider: PROVIDER,
        message: format!("secret {path} was not rotated: {e}"),
    })?;
    drop(old);
    match serde_json::from_str::<serde_json::Value>(new.expose()) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(permanent(format!(
            "secret {path}: the rotated value is not a map of fields"
        ))),
    }
}

/// Whether a `kv-secret` finding is on a KV version 1 mount (findings made before v1 was
/// supported carry no `kv_version`: they are v2).
pub(crate) fn is_v1(f: &Finding) -> bool {
    f.attr("kv_version") == Some("1")
}

/// The state of a secret whose current value was written at `written`, against the cutoff.
pub(crate) fn state_since(
    cutoff: Option<chrono::DateTime<chrono::Utc>>,
    written: Option<chrono::DateTime<chrono::Utc>>,
) -> State {
    match (cutoff, written) {
        (Some(cutoff), Some(at)) if at > cutoff => State::Rotated,
        _ => State::Active,
    }
}

/// The keys of one KV mount, and the prefixes Vault refused to list.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub keys: Vec<String>,
    /// `(path, error)` of each LIST answered 403: what lies below is unknown.
    pub refused: Vec<(String, CallError)>,
}

impl VaultProvider {
    /// Every secret key of a KV mount (v1 or v2), depth-first. A LIST refused (403) is kept in
    /// [`Listing::refused`] and the walk goes on.
    pub(crate) async fn kv_keys(&self, mount: &str, v1: bool) -> Result<Listing, CallError> {
        let mut out = Listing::default();
        let mut stack = vec![String::new()];
        while let Some(prefix) = stack.pop() {
            let r = if v1 {
                let path = format!("{mount}{prefix}");
                self.client.list_keys(&path).await.map_err(|e| (path, e))
            } else {
                let path = format!("{mount}metadata/{prefix}");
                self.client.list_keys(&path).await.map_err(|e| (path, e))
            };
            let keys = match r {
                Ok(keys) => keys,
                Err((_, e)) if e.is_not_found() => Vec::new(),
                Err((path, e)) if e.is_refused() => {
                    out.refused.push((path, e));
                    continue;
                }
                Err((_, e)) => return Err(e),
            };
            for k in keys {
                let full = format!("{prefix}{k}");
                if k.ends_with('/') {
                    stack.push(full);
                } else {
                    out.keys.push(full);
                }
            }
        }
        Ok(out)
    }

    /// The rotation record of the KV v1 secret `<mount><key>` (its metadata), if Closeout wrote
    /// one.
    pub(crate) async fn kv1_record(
        &self,
        mount: &str,
        key: &str,
    ) -> Result<Option<KvMetadata>, CallError> {
        let (record_mount, record_key) = self.config.kv1_record(&format!("{mount}{key}"));
        self.kv_metadata(&record_mount, &record_key).await
    }

    /// The state of the KV v1 secret `<mount><key>`: rotated when Closeout's record of a
    /// rotation postdates the cutoff. The creation time of that record, if any, is returned too.
    pub(crate) async fn kv1_state(
        &self,
        mount: &str,
        key: &str,
        cutoff: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(State, Option<chrono::DateTime<chrono::Utc>>), CallError> {
        let written = self
            .kv1_record(mount, key)
            .await?
            .filter(|m| m.custom_metadata.contains_key(ROTATED_BY))
            .and_then(|m| m.current_created());
        Ok((state_since(cutoff, written), written))
    }

    /// The field names of a KV secret's current value (never the values), for the plan's rotation
    /// strategy; `None` when it does not exist or Closeout may not read it.
    pub(crate) async fn kv_fields(
        &self,
        mount: &str,
        key: &str,
        v1: bool,
    ) -> Result<Option<Vec<String>>, CallError> {
        let read = if v1 {
            self.kv1_read(mount, key).await
        } else {
            match self
                .client
                .read_data::<Versioned<KvData>>("GET", &format!("{mount}data/{key}"), None)
                .await
            {
                Ok(d) => Ok(Some(d.data)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        };
        match read {
            Ok(d) => Ok(d.map(|d| {
                let mut keys: Vec<String> = d.data.keys().cloned().collect();
                keys.sort();
                keys
            })),
            Err(e) if e.is_refused() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The current data of a KV v1 secret; `None` when it does not exist.
    async fn kv1_read(&self, mount: &str, key: &str) -> Result<Option<KvData>, CallError> {
        let path = format!("{mount}{key}");
        match self.client.read_data::<KvData>("GET", &path, None).await {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn rotate_kv(
        &self,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        if let Some(strategy) = database_strategy(&action.finding) {
            return self.rotate_kv_database(action, &strategy).await;
        }
        if is_v1(&action.finding) {
            self.rotate_kv1(action).await
        } else {
            self.rotate_kv2(action).await
        }
    }

    /// The fields the strategy names rotated, written in place; then the rotation record.
    async fn rotate_kv1(&self, action: &ActionRequest) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let mount = attr(f, "mount")?;
        let key = attr(f, "key")?;
        let path = format!("{mount}{key}");
        let (record_mount, record_key) = self.config.kv1_record(&path);
        let record = self.kv_metadata(&record_mount, &record_key).await?;
        if record
            .as_ref()
            .is_some_and(|m| m.custom_metadata.get(ROTATED_BY) == Some(&action.idempotency_key))
        {
            return Ok(ActionOutcome::already(
                State::Rotated,
                format!("KV v1 secret {path} already rotated"),
            ));
        }
        let Some(current) = self.kv1_read(mount, key).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("KV v1 secret {path} no longer exists"),
            ));
        };
        // The fields the strategy names get new values; the others are kept.
        let rotated = rotated_data(&path, action.finding.attr(rotation_strategy::ATTR), current)?;
        let keys: Vec<String> = rotated.keys().cloned().collect();
        let fields: std::collections::HashMap<&str, &serde_json::Value> =
            rotated.iter().map(|(k, v)| (k.as_str(), v)).collect();
        self.client
            .write_json("POST", &path, &serde_json::json!(rotated))
            .await?;
        drop(fields);
        drop(rotated);
        // The record: when and by which run (no secret), and the idempotency key.
        let data = serde_json::json!({
            "secret": path,
            "rotated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "run": action.params.run_id,
        });
        let record_path = format!("{record_mount}data/{record_key}");
        self.client
            .write_json("POST", &record_path, &serde_json::json!({ "data": data }))
            .await
            .map_err(|e| {
                permanent(format!(
                    "KV v1 secret {path} has new values, but its rotation could not be recorded at {record_path} (kv1_rotation_record_path must be on a KV v2 mount Closeout can write): {e}"
                ))
            })?;
        let mut custom = record.map(|m| m.custom_metadata).unwrap_or_default();
        custom.insert(ROTATED_BY.into(), action.idempotency_key.clone());
        self.set_custom_metadata(&record_mount, &record_key, custom)
            .await?;
        Ok(ActionOutcome::done(
            State::Rotated,
            format!(
                "rotated KV v1 secret {path} ({} keys, strategy {}) (recorded at {record_path})",
                keys.len(),
                action
                    .finding
                    .attr(rotation_strategy::ATTR)
                    .unwrap_or("default for its shape")
            ),
        ))
    }

    /// The current version with the fields its strategy names rotated, written as a new version with
    /// check-and-set on the version read; the idempotency key is recorded in custom metadata.
    ///
    /// Another writer can make a version between the read and the write: another run rotating
    /// the same shared secret (two leavers who both read it, handled at once), or an application.
    /// The write is then refused and the rotation starts over from the new version, so the
    /// value left is always one this rotation made from the latest — never rolled back, and
    /// never an unknown writer's value taken as rotated.
    async fn rotate_kv2(&self, action: &ActionRequest) -> Result<ActionOutcome, ProviderError> {
        for attempt in 1..=KV2_CAS_ATTEMPTS {
            if let Some(outcome) = self.rotate_kv2_once(action).await? {
                return Ok(outcome);
            }
            if attempt == KV2_CAS_ATTEMPTS {
                break;
            }
            tracing::info!(
                finding = %action.finding.id,
                attempt,
                "the secret changed between its read and the rotation's write; rotating again from the new version"
            );
            // Spread the next try (the configured backoff, jittered), so two rotations that
            // collided do not collide again.
            tokio::time::sleep(self.config.retry.delay_for(attempt, None)).await;
        }
        Err(ProviderError::Transient {
            provider: PROVIDER,
            message: format!(
                "secret {}: another writer changed it between the read and the write in each of {KV2_CAS_ATTEMPTS} tries",
                action.finding.resource
            ),
        })
    }

    /// One try of [`Self::rotate_kv2`]: `None` when the check-and-set write was refused because
    /// another writer made a version after the read.
    async fn rotate_kv2_once(
        &self,
        action: &ActionRequest,
    ) -> Result<Option<ActionOutcome>, ProviderError> {
        let f = &action.finding;
        let mount = attr(f, "mount")?;
        let key = attr(f, "key")?;
        let data_path = format!("{mount}data/{key}");
        let Some(meta) = self.kv_metadata(mount, key).await? else {
            return Ok(Some(ActionOutcome::already(
                State::Deleted,
                format!("secret {data_path} no longer exists"),
            )));
        };
        if meta.custom_metadata.get(ROTATED_BY) == Some(&action.idempotency_key) {
            return Ok(Some(ActionOutcome::already(
                State::Rotated,
                format!(
                    "secret {data_path} already rotated (version {})",
                    meta.current_version
                ),
            )));
        }
        let intent = |v: u64| format!("{}@{v}", action.idempotency_key);
        let version = meta.current_version;
        if version > 0 && meta.custom_metadata.get(ROTATING) == Some(&intent(version - 1)) {
            // An earlier attempt recorded its intent to replace version - 1 and the secret is
            // one version further: that write took effect (with check-and-set on version - 1,
            // nothing else could have made it version - 1 + 1 without failing it). Mark it.
            let mut custom = meta.custom_metadata.clone();
            custom.remove(ROTATING);
            custom.insert(ROTATED_BY.into(), action.idempotency_key.clone());
            self.set_custom_metadata(mount, key, custom).await?;
            return Ok(Some(ActionOutcome::done(
                State::Rotated,
                format!(
                    "version {version} of {data_path}, written by an earlier attempt whose answer was lost, recorded as the rotation"
                ),
            )));
        }
        let mut custom = meta.custom_metadata.clone();
        custom.insert(ROTATING.into(), intent(version));
        self.set_custom_metadata(mount, key, custom.clone()).await?;
        let current: KvData = match self
            .client
            .read_data::<Versioned<KvData>>("GET", &format!("{data_path}?version={version}"), None)
            .await
        {
            Ok(d) => d.data,
            Err(e) if e.is_not_found() => {
                return Err(permanent(format!(
                    "secret {data_path}: current version {} is deleted or destroyed",
                    meta.current_version
                )))
            }
            Err(e) => return Err(e.into()),
        };
        // The strategy: the secret's own custom metadata, else a config rule on the finding.
        let named = meta
            .custom_metadata
            .get(rotation_strategy::TAG)
            .map(String::as_str)
            .or(f.attr(rotation_strategy::ATTR));
        let rotated = rotated_data(&data_path, named, current)?;
        let n_keys = rotated.len();
        let cas = u32::try_from(version)
            .map_err(|_| permanent(format!("secret {data_path}: version {version} too large")))?;
        let written = self
            .client
            .write_data::<Written>(
                "POST",
                &data_path,
                &serde_json::json!({ "data": rotated, "options": { "cas": cas } }),
            )
            .await;
        drop(rotated);
        let version = match written {
            Ok(written) => written.version,
            Err(e) if e.is_cas_mismatch() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        custom.remove(ROTATING);
        custom.insert(ROTATED_BY.into(), action.idempotency_key.clone());
        self.set_custom_metadata(mount, key, custom).await?;
        Ok(Some(ActionOutcome::done(
            State::Rotated,
            format!(
                "wrote version {version} of {data_path} (strategy {}, {n_keys} keys)",
                named.unwrap_or("default for its shape")
            ),
        )))
    }

    /// Rotate a KV v2 secret holding a PostgreSQL login by its database strategy (create, set,
    /// test, finish; see `closeout_postgres`). The pending value is a KV v2 secret beside the
    /// rotation records (`kv1_rotation_record_path` with `pending/<path>`), which consumers of the
    /// secret never read; promotion writes it as the secret's new version (check-and-set) and
    /// records the idempotency key in the secret's custom metadata.
    async fn rotate_kv_database(
        &self,
        action: &ActionRequest,
        strategy: &Strategy,
    ) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let mount = attr(f, "mount")?;
        let key = attr(f, "key")?;
        let v1 = is_v1(f);
        let data_path = if v1 {
            format!("{mount}{key}")
        } else {
            format!("{mount}data/{key}")
        };
        let exists = if v1 {
            self.kv1_read(mount, key).await?.is_some()
        } else {
            self.kv_metadata(mount, key).await?.is_some()
        };
        if !exists {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("secret {data_path} no longer exists"),
            ));
        }
        let (pending_mount, pending_key) = self.config.kv1_record(&format!("pending/{data_path}"));
        let store = KvStore {
            vault: self,
            v1,
            mount,
            key,
            pending_mount: &pending_mount,
            pending_key: &pending_key,
            idempotency_key: &action.idempotency_key,
        };
        let done = closeout_postgres::rotate(PROVIDER, &data_path, strategy, &store).await?;
        Ok(if done.changed {
            ActionOutcome::done(State::Rotated, done.detail)
        } else {
            ActionOutcome::already(State::Rotated, done.detail)
        })
    }

    /// The data of version `version` of a KV v2 secret (the current one when `None`) as a JSON
    /// object's text; `None` when it does not exist or is deleted.
    pub(crate) async fn kv2_value(
        &self,
        mount: &str,
        key: &str,
        version: Option<u64>,
    ) -> Result<Option<SecretValue>, CallError> {
        let path = format!("{mount}data/{key}");
        let read = match version {
            Some(v) => {
                self.client
                    .read_data::<Versioned<KvData>>("GET", &format!("{path}?version={v}"), None)
                    .await
            }
            None => {
                self.client
                    .read_data::<Versioned<KvData>>("GET", &path, None)
                    .await
            }
        };
        match read {
            Ok(d) => Ok(Some(SecretValue::new(
                serde_json::Value::Object(d.data.data).to_string(),
            ))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The login probe of a KV v2 secret rotated by a database strategy: its previous version
    /// must be refused by PostgreSQL, its current one must log in.
    pub(crate) async fn probe_kv_database(
        &self,
        f: &Finding,
    ) -> Result<Option<closeout_contract::ProbeOutcome>, ProviderError> {
        if database_strategy(f).is_none() || is_v1(f) {
            return Ok(None);
        }
        let (mount, key) = (attr(f, "mount")?, attr(f, "key")?);
        let probe =
            format!("PostgreSQL login with the previous and current versions of {mount}data/{key}");
        let Some(meta) = self.kv_metadata(mount, key).await? else {
            return Ok(None);
        };
        let current = self
            .kv2_value(mount, key, Some(meta.current_version))
            .await?;
        let previous = match meta.current_version {
            0 | 1 => None,
            v => self.kv2_value(mount, key, Some(v - 1)).await?,
        };
        let (Some(old), Some(new)) = (previous, current) else {
            return Ok(Some(closeout_contract::ProbeOutcome {
                probe,
                dead: false,
                detail: "the secret has no previous version: it was not rotated".into(),
            }));
        };
        let (dead, detail) = closeout_postgres::probe(&old, &new)
            .await
            .map_err(|e| e.into_provider(PROVIDER, &probe))?;
        Ok(Some(closeout_contract::ProbeOutcome {
            probe,
            dead,
            detail,
        }))
    }

    /// Destroy every version older than the current one. Only for secrets Closeout rotated:
    /// the old versions are then what the person knew. A KV v1 secret keeps no old value.
    pub(crate) async fn destroy_old_kv_versions(
        &self,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let mount = attr(f, "mount")?;
        let key = attr(f, "key")?;
        if is_v1(f) {
            let path = format!("{mount}{key}");
            return match self.kv1_record(mount, key).await? {
                Some(record) if record.custom_metadata.contains_key(ROTATED_BY) => {
                    Ok(ActionOutcome::already(
                        State::Rotated,
                        format!("KV v1 secret {path} keeps no old versions"),
                    ))
                }
                _ => Err(permanent(format!(
                    "refusing to treat {path} as rotated: Closeout has not rotated it"
                ))),
            };
        }
        let data_path = format!("{mount}data/{key}");
        let Some(meta) = self.kv_metadata(mount, key).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("secret {data_path} no longer exists"),
            ));
        };
        if !meta.custom_metadata.contains_key(ROTATED_BY) {
            return Err(permanent(format!(
                "refusing to destroy old versions of {data_path}: Closeout has not rotated it"
            )));
        }
        let old: Vec<u64> = meta
            .versions
            .iter()
            .filter(|(_, v)| !v.destroyed)
            .filter_map(|(n, _)| n.parse::<u64>().ok())
            .filter(|n| *n < meta.current_version)
            .collect();
        if old.is_empty() {
            return Ok(ActionOutcome::already(
                State::Rotated,
                format!("secret {data_path} keeps no old version"),
            ));
        }
        let n = old.len();
        self.client
            .write_json(
                "PUT",
                &format!("{mount}destroy/{key}"),
                &serde_json::json!({ "versions": old }),
            )
            .await?;
        Ok(ActionOutcome::done(
            State::Rotated,
            format!(
                "destroyed {n} old versions of {data_path}; version {} is kept",
                meta.current_version
            ),
        ))
    }

    /// Live state of a `kv-secret` finding: gone, or rotated since the cutoff, or active.
    pub(crate) async fn live_state_kv(
        &self,
        f: &Finding,
        ctx: &ResolveContext,
    ) -> Result<State, ProviderError> {
        let (mount, key) = (attr(f, "mount")?, attr(f, "key")?);
        if is_v1(f) {
            if self.kv1_read(mount, key).await?.is_none() {
                return Ok(State::Deleted);
            }
            return Ok(self.kv1_state(mount, key, ctx.cutoff).await?.0);
        }
        Ok(match self.kv_metadata(mount, key).await? {
            None => State::Deleted,
            Some(m) => state_since(ctx.cutoff, m.current_created()),
        })
    }
}

/// The database strategy a finding names, if any.
fn database_strategy(f: &Finding) -> Option<Strategy> {
    Strategy::parse(f.attr(rotation_strategy::ATTR)?)
        .ok()
        .filter(Strategy::is_postgres)
}

/// One KV secret as one database rotation (one idempotency key) sees it. The pending value is
/// a KV v2 secret beside the KV v1 rotation records for both versions; a v2 secret's promotion
/// is a new version (check-and-set) marked with the key in its custom metadata, a v1 secret's
/// is written in place and marked by its rotation record (it keeps no previous value).
struct KvStore<'a> {
    vault: &'a VaultProvider,
    v1: bool,
    mount: &'a str,
    key: &'a str,
    pending_mount: &'a str,
    pending_key: &'a str,
    idempotency_key: &'a str,
}

impl KvStore<'_> {
    fn permanent(&self, what: &str) -> ProviderError {
        if self.v1 {
            return permanent(format!("secret {}{}: {what}", self.mount, self.key));
        }
        permanent(format!("secret {}data/{}: {what}", self.mount, self.key))
    }

    /// A KV v2 secret: the pending value written as a new version (check-and-set), marked
    /// with this rotation's key.
    async fn v2_promote(&self) -> Result<(), ProviderError> {
        let meta = self.meta().await?;
        if meta.custom_metadata.get(ROTATED_BY).map(String::as_str) != Some(self.idempotency_key) {
            let pending = self
                .vault
                .kv2_value(self.pending_mount, self.pending_key, None)
                .await?
                .ok_or_else(|| self.permanent("its pending value is gone"))?;
            let data: serde_json::Value = serde_json::from_str(pending.expose())
                .map_err(|_| self.permanent("the pending value is not JSON"))?;
            drop(pending);
            let cas = u32::try_from(meta.current_version)
                .map_err(|_| self.permanent("version too large"))?;
            let data_path = format!("{}data/{}", self.mount, self.key);
            self.vault
                .client
                .write_json(
                    "POST",
                    &data_path,
                    &serde_json::json!({ "data": data, "options": { "cas": cas } }),
                )
                .await?;
            drop(data);
            let mut custom = meta.custom_metadata.clone();
            custom.insert(ROTATED_BY.into(), self.idempotency_key.to_string());
            self.vault
                .set_custom_metadata(self.mount, self.key, custom)
                .await?;
        }
        Ok(())
    }

    /// The pending value is no longer needed: destroy it with its metadata.
    async fn clear_pending(&self) -> Result<(), ProviderError> {
        let path = format!("{}metadata/{}", self.pending_mount, self.pending_key);
        match self
            .vault
            .client
            .call::<serde_json::Value>("DELETE", &path, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A KV v2 secret: its current value when this rotation's key marks it promoted.
    async fn v2_promoted(&self) -> Result<Option<SecretValue>, ProviderError> {
        let meta = self.meta().await?;
        if meta.custom_metadata.get(ROTATED_BY).map(String::as_str) != Some(self.idempotency_key) {
            return Ok(None);
        }
        let v = self
            .vault
            .kv2_value(self.mount, self.key, Some(meta.current_version))
            .await?
            .ok_or_else(|| self.permanent("its current version is deleted"))?;
        Ok(Some(v))
    }

    /// A KV v1 secret's current value as JSON text.
    async fn v1_value(&self) -> Result<SecretValue, ProviderError> {
        let d = self
            .vault
            .kv1_read(self.mount, self.key)
            .await?
            .ok_or_else(|| self.permanent("no longer exists"))?;
        Ok(SecretValue::new(
            serde_json::Value::Object(d.data).to_string(),
        ))
    }

    /// A KV v1 secret: whether its rotation record carries this rotation's key.
    async fn v1_promoted(&self) -> Result<bool, ProviderError> {
        Ok(self
            .vault
            .kv1_record(self.mount, self.key)
            .await?
            .is_some_and(|m| {
                m.custom_metadata.get(ROTATED_BY).map(String::as_str) == Some(self.idempotency_key)
            }))
    }

    /// A KV v1 secret: write the pending value in place, then the rotation record.
    async fn v1_promote(&self, data: serde_json::Value) -> Result<(), ProviderError> {
        let path = format!("{}{}", self.mount, self.key);
        let serde_json::Value::Object(map) = data else {
            return Err(self.permanent("the pending value is not a JSON object"));
        };
        let fields = serde_json::Value::Object(map);
        self.vault.client.write_json("POST", &path, &fields).await?;
        drop(fields);
        let (record_mount, record_key) = self.vault.config.kv1_record(&path);
        let record = self.vault.kv_metadata(&record_mount, &record_key).await?;
        let data = serde_json::json!({
            "secret": path,
            "rotated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        let record_path = format!("{record_mount}data/{record_key}");
        self.vault
            .client
            .write_json("POST", &record_path, &serde_json::json!({ "data": data }))
            .await?;
        let mut custom = record.map(|m| m.custom_metadata).unwrap_or_default();
        custom.insert(ROTATED_BY.into(), self.idempotency_key.to_string());
        self.vault
            .set_custom_metadata(&record_mount, &record_key, custom)
            .await?;
        Ok(())
    }

    async fn meta(&self) -> Result<KvMetadata, ProviderError> {
        self.vault
            .kv_metadata(self.mount, self.key)
            .await?
            .ok_or_else(|| self.permanent("no longer exists"))
    }
}

impl SecretStore for KvStore<'_> {
    async fn staged(&self) -> Result<Staged, ProviderError> {
        if self.v1 {
            if self.v1_promoted().await? {
                return Ok(Staged::Current(self.v1_value().await?));
            }
        } else if let Some(v) = self.v2_promoted().await? {
            return Ok(Staged::Current(v));
        }
        let ours = self
            .vault
            .kv_metadata(self.pending_mount, self.pending_key)
            .await?
            .is_some_and(|m| {
                m.custom_metadata.get(ROTATED_BY).map(String::as_str) == Some(self.idempotency_key)
            });
        if !ours {
            return Ok(Staged::None);
        }
        // The pending secret holds the new value's fields as they are.
        match self
            .vault
            .kv2_value(self.pending_mount, self.pending_key, None)
            .await?
        {
            Some(v) => Ok(Staged::Pending(v)),
            None => Ok(Staged::None),
        }
    }

    async fn current(&self) -> Result<SecretValue, ProviderError> {
        if self.v1 {
            return self.v1_value().await;
        }
        let meta = self.meta().await?;
        self.vault
            .kv2_value(self.mount, self.key, Some(meta.current_version))
            .await?
            .ok_or_else(|| self.permanent("its current version is deleted"))
    }

    async fn previous(&self) -> Result<Option<SecretValue>, ProviderError> {
        if self.v1 {
            return Ok(None);
        }
        let meta = self.meta().await?;
        Ok(match meta.current_version {
            0 | 1 => None,
            v => {
                self.vault
                    .kv2_value(self.mount, self.key, Some(v - 1))
                    .await?
            }
        })
    }

    async fn stage(&self, value: &SecretValue) -> Result<(), ProviderError> {
        let data: serde_json::Value = serde_json::from_str(value.expose())
            .map_err(|_| self.permanent("the pending value is not JSON"))?;
        let path = format!("{}data/{}", self.pending_mount, self.pending_key);
        self.vault
            .client
            .write_json("POST", &path, &serde_json::json!({ "data": data }))
            .await
            .map_err(|e| {
                permanent(format!(
                    "the pending value of {}data/{} could not be stored at {path} (kv1_rotation_record_path must be on a KV v2 mount Closeout can write): {e}",
                    self.mount, self.key
                ))
            })?;
        drop(data);
        // The key last: a pending value without it is not this rotation's, and is replaced.
        let custom = [(ROTATED_BY.to_string(), self.idempotency_key.to_string())].into();
        self.vault
            .set_custom_metadata(self.pending_mount, self.pending_key, custom)
            .await?;
        Ok(())
    }

    async fn promote(&self) -> Result<(), ProviderError> {
        if self.v1 {
            if !self.v1_promoted().await? {
                let pending = self
                    .vault
                    .kv2_value(self.pending_mount, self.pending_key, None)
                    .await?
                    .ok_or_else(|| self.permanent("its pending value is gone"))?;
                let data: serde_json::Value = serde_json::from_str(pending.expose())
                    .map_err(|_| self.permanent("the pending value is not JSON"))?;
                drop(pending);
                self.v1_promote(data).await?;
            }
        } else {
            self.v2_promote().await?;
        }
        self.clear_pending().await
    }

    async fn other(&self, reference: &str) -> Result<SecretValue, ProviderError> {
        // A KV v2 data path: `<mount>/data/<key>`.
        let Some((mount, key)) = reference.split_once("/data/") else {
            return Err(ProviderError::Config {
                provider: PROVIDER,
                message: format!(
                    "secret {}data/{}: admin_secret {reference:?} is not a KV v2 path (<mount>/data/<key>)",
                    self.mount, self.key
                ),
            });
        };
        let mount = format!("{mount}/");
        self.vault
            .kv2_value(&mount, key, None)
            .await?
            .ok_or_else(|| ProviderError::Config {
                provider: PROVIDER,
                message: format!("the admin secret {reference} does not exist"),
            })
    }
}
