//! Typed Vault API responses (only the fields Closeout reads).

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// Vault answers `null` for empty lists and maps; read it as the empty value.
pub fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Deserialize)]
pub struct Entity {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub aliases: Vec<Alias>,
    #[serde(default, deserialize_with = "nullable")]
    pub direct_group_ids: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub group_ids: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub policies: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Alias {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub mount_accessor: String,
    #[serde(default)]
    pub mount_path: String,
    #[serde(default)]
    pub mount_type: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Group {
    pub id: String,
    pub name: String,
    #[serde(default, rename = "type")]
    pub group_type: String,
    #[serde(default, deserialize_with = "nullable")]
    pub policies: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub parent_group_ids: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub member_entity_ids: Vec<String>,
}

/// `auth/token/lookup-accessor` (and `lookup-self`).
#[derive(Debug, Clone, Deserialize)]
pub struct TokenInfo {
    pub accessor: String,
    #[serde(default)]
    pub entity_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub display_name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub policies: Vec<String>,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub orphan: bool,
    #[serde(default)]
    pub creation_time: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub expire_time: String,
}

/// One entry of `sys/auth` or `sys/mounts`.
#[derive(Debug, Clone, Deserialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub mount_type: String,
    #[serde(default)]
    pub accessor: String,
    #[serde(default, deserialize_with = "nullable")]
    pub options: BTreeMap<String, String>,
}

/// KV v2 `metadata/<path>`.
#[derive(Debug, Clone, Deserialize)]
pub struct KvMetadata {
    #[serde(default)]
    pub current_version: u64,
    #[serde(default, deserialize_with = "nullable")]
    pub custom_metadata: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub versions: BTreeMap<String, KvVersion>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KvVersion {
    pub created_time: String,
    #[serde(default)]
    pub destroyed: bool,
}

impl KvMetadata {
    pub fn current_created(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let v = self.versions.get(&self.current_version.to_string())?;
        chrono::DateTime::parse_from_rfc3339(&v.created_time)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

/// The data of one KV v2 version (`data/<path>`'s inner `data`): only its keys are kept outside
/// [`closeout_contract::SecretValue`].
#[derive(Deserialize)]
#[serde(transparent)]
pub struct KvData {
    #[serde(deserialize_with = "nullable")]
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl std::fmt::Debug for KvData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvData")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

// Conversions from the `vaultrs` responses: the fields Closeout reads, `null` as empty.

fn sorted<K: Ord, V>(m: Option<std::collections::HashMap<K, V>>) -> BTreeMap<K, V> {
    m.unwrap_or_default().into_iter().collect()
}

impl From<vaultrs::api::identity::entity::responses::ReadEntityByIdResponse> for Entity {
    fn from(e: vaultrs::api::identity::entity::responses::ReadEntityByIdResponse) -> Self {
        Entity {
            id: e.id,
            name: e.name,
            disabled: e.disabled,
            metadata: sorted(e.metadata),
            aliases: e
                .aliases
                .into_iter()
                .map(|a| Alias {
                    id: a.id,
                    name: a.name,
                    mount_accessor: a.mount_accessor,
                    mount_path: a.mount_path,
                    mount_type: a.mount_type,
                })
                .collect(),
            direct_group_ids: e.direct_group_ids,
            group_ids: e.group_ids,
            policies: e.policies,
        }
    }
}

impl From<vaultrs::api::identity::group::responses::ReadGroupByIdResponse> for Group {
    fn from(g: vaultrs::api::identity::group::responses::ReadGroupByIdResponse) -> Self {
        Group {
            id: g.id,
            name: g.name,
            group_type: g.group_type,
            policies: g.policies.unwrap_or_default(),
            parent_group_ids: g.parent_group_ids.unwrap_or_default(),
            member_entity_ids: g.member_entity_ids.unwrap_or_default(),
        }
    }
}

impl From<vaultrs::api::token::responses::LookupTokenResponse> for TokenInfo {
    fn from(t: vaultrs::api::token::responses::LookupTokenResponse) -> Self {
        TokenInfo {
            accessor: t.accessor,
            entity_id: t.entity_id,
            meta: sorted(t.meta),
            display_name: t.display_name,
            policies: t.policies,
            path: t.path,
            orphan: t.orphan,
            creation_time: i64::try_from(t.creation_time).unwrap_or(i64::MAX),
            expire_time: t.expire_time.unwrap_or_default(),
        }
    }
}

impl From<vaultrs::api::sys::responses::MountResponse> for Mount {
    fn from(m: vaultrs::api::sys::responses::MountResponse) -> Self {
        Mount {
            mount_type: m.mount_type,
            accessor: m.accessor,
            options: sorted(m.options),
        }
    }
}

impl From<vaultrs::api::sys::responses::AuthResponse> for Mount {
    fn from(m: vaultrs::api::sys::responses::AuthResponse) -> Self {
        Mount {
            mount_type: m.mount_type,
            accessor: m.accessor,
            options: sorted(m.options),
        }
    }
}

impl From<vaultrs::api::kv2::responses::ReadSecretMetadataResponse> for KvMetadata {
    fn from(m: vaultrs::api::kv2::responses::ReadSecretMetadataResponse) -> Self {
        KvMetadata {
            current_version: m.current_version,
            custom_metadata: sorted(m.custom_metadata),
            versions: m
                .versions
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        KvVersion {
                            created_time: v.created_time,
                            destroyed: v.destroyed,
                        },
                    )
                })
                .collect(),
        }
    }
}
