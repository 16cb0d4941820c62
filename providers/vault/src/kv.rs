//! KV secrets, versions 1 and 2: listing a mount, the state of a secret against the cutoff,
//! rotation, destroying the versions a person knew, live state.
//!
//! - v2: a rotation writes a new version (check-and-set on the version read) and records its
//!   idempotency key in custom metadata; the version's creation time is the rotation's.
//! - v1 keeps no versions and no metadata: a rotation overwrites the value in place (keys kept,
//!   every value new), then writes a record at `kv1_rotation_record_path` (a KV v2 secret holding
//!   the time and run, its custom metadata the idempotency key). That record's creation time is
//!   what the state of a v1 secret is read from. A crash between the two writes reruns the
//!   overwrite (new values again) before recording it.

use crate::capabilities::PROVIDER;
use crate::client::{CallError, Versioned};
use crate::model::{KvData, KvMetadata};
use crate::server::VaultProvider;
use closeout_contract::{
    ActionOutcome, ActionRequest, Finding, ProviderError, ResolveContext, SecretValue, State,
};
use std::collections::HashMap;

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
        if is_v1(&action.finding) {
            self.rotate_kv1(action).await
        } else {
            self.rotate_kv2(action).await
        }
    }

    /// New random values for every key, written in place; then the rotation record.
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
        // Keys preserved, every value replaced; the old values are dropped unread.
        let keys: Vec<String> = current.data.keys().cloned().collect();
        drop(current);
        let new_values: Vec<SecretValue> = keys.iter().map(|_| SecretValue::generate()).collect();
        let rotated: HashMap<&str, &str> = keys
            .iter()
            .map(String::as_str)
            .zip(new_values.iter().map(|v| v.expose()))
            .collect();
        self.client
            .write_json("POST", &path, &serde_json::json!(rotated))
            .await?;
        drop(rotated);
        drop(new_values);
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
                "wrote new values for the {} keys of KV v1 secret {path} (recorded at {record_path})",
                keys.len()
            ),
        ))
    }

    /// New random values for every key of the current version, written as a new version with
    /// check-and-set on the version read; the idempotency key is recorded in custom metadata.
    async fn rotate_kv2(&self, action: &ActionRequest) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let mount = attr(f, "mount")?;
        let key = attr(f, "key")?;
        let data_path = format!("{mount}data/{key}");
        let Some(meta) = self.kv_metadata(mount, key).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("secret {data_path} no longer exists"),
            ));
        };
        if meta.custom_metadata.get(ROTATED_BY) == Some(&action.idempotency_key) {
            return Ok(ActionOutcome::already(
                State::Rotated,
                format!(
                    "secret {data_path} already rotated (version {})",
                    meta.current_version
                ),
            ));
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
            return Ok(ActionOutcome::done(
                State::Rotated,
                format!(
                    "version {version} of {data_path}, written by an earlier attempt whose answer was lost, recorded as the rotation"
                ),
            ));
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
        // Keys preserved, every value replaced; the old values are dropped unread.
        let rotated: serde_json::Map<String, serde_json::Value> = current
            .data
            .keys()
            .map(|k| {
                let v = SecretValue::generate();
                (k.clone(), serde_json::Value::String(v.expose().to_string()))
            })
            .collect();
        drop(current);
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
            .await?;
        drop(rotated);
        let version = written.version;
        custom.remove(ROTATING);
        custom.insert(ROTATED_BY.into(), action.idempotency_key.clone());
        self.set_custom_metadata(mount, key, custom).await?;
        Ok(ActionOutcome::done(
            State::Rotated,
            format!("wrote version {version} of {data_path} with new values for its {n_keys} keys"),
        ))
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
