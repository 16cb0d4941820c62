//! The secrets a person reaches through the policies she holds: every KV secret (v1 and v2) she
//! owns or can read. One read of each policy reaching her, one listing of the mounts and of each
//! KV mount, the metadata of each v2 secret: nothing per principal.

use crate::capabilities::kinds;
use crate::client::{seg, CallError, Data};
use crate::findings::{attrs, finding};
use crate::kv::state_since;
use crate::model::{KvMetadata, Mount};
use crate::policy::{self, PathRule};
use crate::server::VaultProvider;
use closeout_contract::{Holder, Path, ProviderError, Relation, Resolution, ResolveContext, State};
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::BTreeMap;

/// Policies reaching the person: name -> every (path to it, entity id or "" for a token).
pub(crate) type PolicyPaths = BTreeMap<String, Vec<(Path, String)>>;

/// The policy set a person holds: policy name -> its rules.
type Rules = BTreeMap<String, Vec<PathRule>>;

/// How a secret is the person's: the relation and the path that explains it.
type Reached = (Relation, Path);

impl VaultProvider {
    /// The rules of every policy reaching the person.
    async fn read_policies(
        &self,
        policy_paths: &PolicyPaths,
        res: &mut Resolution,
    ) -> Result<Rules, ProviderError> {
        let mut rules: Rules = BTreeMap::new();
        for name in policy_paths.keys() {
            if name == "root" {
                rules.insert(
                    name.clone(),
                    vec![PathRule {
                        pattern: "*".into(),
                        capabilities: ["root".to_string()].into(),
                    }],
                );
                continue;
            }
            // vaultrs's `sys::policy::read` uses the legacy `sys/policy/<name>`, which needs
            // another ACL grant than `sys/policies/acl/<name>`: a typed call keeps the grant.
            match self
                .client
                .get::<Data<serde_json::Value>>(&format!("sys/policies/acl/{}", seg(name)))
                .await
            {
                Ok(Some(d)) => {
                    let text = d.data.get("policy").and_then(|p| p.as_str()).unwrap_or("");
                    match policy::parse(text) {
                        Ok(r) => {
                            rules.insert(name.clone(), r);
                        }
                        Err(e) => res.warnings.push(format!("policy {name}: {e}")),
                    }
                }
                Ok(None) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(rules)
    }

    /// Step 4 of resolution: policies, KV secrets.
    pub(crate) async fn resolve_secrets(
        &self,
        ctx: &ResolveContext,
        policy_paths: &PolicyPaths,
        res: &mut Resolution,
    ) -> Result<(), ProviderError> {
        let rules = self.read_policies(policy_paths, res).await?;
        let mounts = self.mounts("sys/mounts").await?;
        for (mount, m) in &mounts {
            if m.mount_type == "kv" {
                self.resolve_kv_mount(ctx, mount, m, &rules, policy_paths, res)
                    .await?;
            }
        }
        Ok(())
    }

    /// One KV mount: every secret the person owns (v2 custom metadata) or can read, with its
    /// state against the cutoff.
    async fn resolve_kv_mount(
        &self,
        ctx: &ResolveContext,
        mount: &str,
        m: &Mount,
        rules: &Rules,
        policy_paths: &PolicyPaths,
        res: &mut Resolution,
    ) -> Result<(), ProviderError> {
        let conc = self.config.max_in_flight.max(1);
        let v1 = m.options.get("version").map(String::as_str) != Some("2");
        let listed = self.kv_keys(mount, v1).await?;
        // Closeout's own records of KV v1 rotations hold no secret.
        let record_prefix = self.config.kv1_record_prefix();
        let data_path = |key: &str| {
            if v1 {
                format!("{mount}{key}")
            } else {
                format!("{mount}data/{key}")
            }
        };
        let keys: Vec<String> = listed
            .into_iter()
            .filter(|k| !data_path(k).starts_with(record_prefix))
            .collect();
        // v2: every secret's metadata (its owner record and current version's time).
        let metas: BTreeMap<String, KvMetadata> = if v1 {
            BTreeMap::new()
        } else {
            stream::iter(keys.iter().cloned())
                .map(|k| async move {
                    let m = self.kv_metadata(mount, &k).await?;
                    Ok::<_, CallError>(m.map(|m| (k, m)))
                })
                .buffer_unordered(conc)
                .try_filter_map(|x| async move { Ok(x) })
                .try_collect()
                .await?
        };
        let set = || rules.iter().map(|(n, r)| (n.as_str(), r.as_slice()));
        // The secrets that are findings, before their state is known.
        let mut found: Vec<(String, String, Vec<Reached>)> = Vec::new();
        for key in keys {
            let dp = data_path(&key);
            let meta = metas.get(&key);
            if !v1 && meta.is_none_or(|m| m.current_version == 0) {
                continue;
            }
            let mut how: Vec<Reached> = Vec::new();
            if meta.is_some_and(|m| {
                crate::correlation::owned_by(&self.config, &ctx.identity, &m.custom_metadata)
            }) {
                how.push((
                    Relation::Owns,
                    Path::new().then("owns", format!("secret {dp}")),
                ));
            }
            if let Some((caps, pattern, names)) = policy::effective(set(), &dp) {
                if policy::allows_read(&caps) {
                    for n in names {
                        for (path, _) in policy_paths.get(&n).into_iter().flatten() {
                            how.push((
                                Relation::CanRead,
                                path.then("can-read", format!("secret {dp} (path \"{pattern}\")")),
                            ));
                        }
                    }
                }
            }
            if !how.is_empty() {
                found.push((key, dp, how));
            }
        }
        // v1: the state comes from Closeout's rotation record, read for the findings only.
        let v1_keys: Vec<String> = if v1 {
            found.iter().map(|(k, _, _)| k.clone()).collect()
        } else {
            Vec::new()
        };
        let v1_states: BTreeMap<String, (State, Option<chrono::DateTime<chrono::Utc>>)> = if v1 {
            stream::iter(v1_keys)
                .map(|k| async move {
                    let s = self.kv1_state(mount, &k, ctx.cutoff).await?;
                    Ok::<_, CallError>((k, s))
                })
                .buffer_unordered(conc)
                .try_collect()
                .await?
        } else {
            BTreeMap::new()
        };
        for (key, dp, how) in found {
            let (state, written, version) = match metas.get(&key) {
                Some(meta) => (
                    state_since(ctx.cutoff, meta.current_created()),
                    meta.current_created(),
                    meta.current_version.to_string(),
                ),
                None => {
                    let (s, w) = v1_states
                        .get(&key)
                        .copied()
                        .unwrap_or((State::Active, None));
                    (s, w, String::new())
                }
            };
            // `created_at`: when the current value was written (the rotation policy's age);
            // unknown for a v1 secret Closeout never rotated.
            let created_at = written
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            let mut attributes = attrs([
                ("mount", mount.to_string()),
                ("key", key.clone()),
                ("kv_version", if v1 { "1" } else { "2" }.to_string()),
                ("created_at", created_at),
            ]);
            if !v1 {
                attributes.insert("current_version".into(), version);
            }
            let display = if v1 {
                format!("KV v1 secret {dp}")
            } else {
                format!("KV secret {dp}")
            };
            for (relation, path) in how {
                res.findings.push(finding(
                    kinds::KV_SECRET,
                    &dp,
                    display.clone(),
                    relation,
                    Holder::Shared,
                    state,
                    path,
                    attributes.clone(),
                ));
            }
        }
        Ok(())
    }
}
