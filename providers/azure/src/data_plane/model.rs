//! What the data plane reports, whatever the object kind: a listed object, one version, and the
//! [`Row`] every SDK model of the three kinds is read into first.

use azure_core::http::Url;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// How the data-plane clients are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlaneOptions {
    /// Key Vault REST api-version. The SDK crates default to `2025-07-01`; `7.6` is what both
    /// Azure and the emulators (Lowkey Vault, the test double) serve.
    pub api_version: String,
    /// An extra trusted root (a test double's CA), on top of the system roots.
    pub extra_root_pem: Option<String>,
    /// Hosts equal to or ending with `.{suffix}` resolve to the address (tests: vault hosts
    /// `{name}.lowkey-vault.local` → 127.0.0.1); other hosts use normal DNS. The URL's port is
    /// kept.
    pub host_overrides: Vec<(String, IpAddr)>,
}

impl Default for DataPlaneOptions {
    fn default() -> Self {
        DataPlaneOptions {
            api_version: "7.6".into(),
            extra_root_pem: None,
            host_overrides: Vec::new(),
        }
    }
}

/// A secret, key or certificate as a list shows it (its current version's properties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub name: String,
    /// The versionless id (`https://{vault}/secrets/{name}`).
    pub id: String,
    pub enabled: bool,
    pub tags: BTreeMap<String, String>,
    /// True for the secret and key backing a certificate: they change with the certificate.
    pub managed: bool,
    /// Unix seconds.
    pub created: Option<i64>,
    pub updated: Option<i64>,
    /// When the current version expires (`attributes.exp`); `None`: it never does.
    pub expires: Option<i64>,
    pub content_type: Option<String>,
}

/// One version of a secret, key or certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSummary {
    pub version: String,
    pub enabled: bool,
    /// Unix seconds.
    pub created: Option<i64>,
    pub updated: Option<i64>,
    pub tags: BTreeMap<String, String>,
}

/// The fields every secret, key and certificate model of the SDK has (the properties of a list
/// item, a version, or the current object), read into one shape so listing, versions, the
/// current version and disabling are written once for the three kinds.
#[derive(Debug, Clone, Default)]
pub(super) struct Row {
    /// The object id: versionless in a listing, with the version otherwise.
    pub id: Option<String>,
    pub enabled: Option<bool>,
    /// Unix seconds.
    pub created: Option<i64>,
    pub updated: Option<i64>,
    pub expires: Option<i64>,
    pub tags: BTreeMap<String, String>,
    /// True for the secret and key backing a certificate.
    pub managed: bool,
    pub content_type: Option<String>,
}

impl Row {
    /// The listed object, when the row has an id naming it.
    pub(super) fn summary(self) -> Option<ObjectSummary> {
        let id = self.id?;
        let (name, _) = split_id(&id)?;
        Some(ObjectSummary {
            name,
            id,
            enabled: self.enabled.unwrap_or(true),
            tags: self.tags,
            managed: self.managed,
            created: self.created,
            updated: self.updated,
            expires: self.expires,
            content_type: self.content_type,
        })
    }

    /// The version, when the row's id carries one.
    pub(super) fn version(self) -> Option<VersionSummary> {
        let version = version_of(self.id.as_ref())?;
        Some(VersionSummary {
            version,
            enabled: self.enabled.unwrap_or(true),
            created: self.created,
            updated: self.updated,
            tags: self.tags,
        })
    }
}

/// `(name, version)` from a Key Vault id `https://{vault}/{kind}/{name}[/{version}]`.
pub(super) fn split_id(id: &str) -> Option<(String, Option<String>)> {
    let url = Url::parse(id).ok()?;
    let mut segments = url.path_segments()?.filter(|s| !s.is_empty());
    let _kind = segments.next()?;
    let name = segments.next()?.to_string();
    let version = segments.next().map(str::to_string);
    Some((name, version))
}

/// The version in an id, if it has one.
pub(super) fn version_of(id: Option<&String>) -> Option<String> {
    id.and_then(|id| split_id(id)).and_then(|(_, v)| v)
}

/// Tags as the SDK gives them, sorted.
pub(super) fn tags_of(tags: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    tags.unwrap_or_default().into_iter().collect()
}

/// `old` tags with `extra` on top.
pub(super) fn merged(
    old: Option<HashMap<String, String>>,
    extra: &BTreeMap<String, String>,
) -> HashMap<String, String> {
    let mut tags = old.unwrap_or_default();
    tags.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags
}

/// A time as Unix seconds.
pub(super) fn unix(t: Option<azure_core::time::OffsetDateTime>) -> Option<i64> {
    t.map(|t| t.unix_timestamp())
}
