//! The Key Vault data plane (secrets, keys, certificates) through the Azure SDK for Rust 1.x
//! Key Vault crates: listing what a vault holds, rotating it and disabling old versions.
//!
//! Setup (see docs/dependencies.md): one SDK client per vault URI and object type, cached;
//! `api_version` configurable (default `7.6`); `verify_challenge_resource` on (the SDK learns the
//! token scope from the vault's 401 challenge and checks the vault host ends with the challenge's
//! resource host); SDK retries off (the orchestrator retries, and a 429 must reach it as
//! [`CallError`] with status 429 → `ProviderError::Throttled`); our own `reqwest` transport, which
//! can trust an extra root and map host suffixes to an address (tests: `*.lowkey-vault.local` →
//! 127.0.0.1). Every request goes through the provider's [`CallGate`].
//!
//! Secret values never appear in errors, logs or `Debug` output: errors carry the method, the
//! path (no host), the service's error code and message, never a request or response body.

use crate::http::CallError;
use crate::object::ObjectType;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::headers::RETRY_AFTER;
use azure_core::http::poller::PollerOptions;
use azure_core::http::{ClientOptions, RetryOptions, Transport, Url};
use azure_security_keyvault_certificates::models::{
    CertificateAttributes, CertificateClientCreateCertificateOptions,
    CertificateClientUpdateCertificatePropertiesOptions, CreateCertificateParameters,
    UpdateCertificatePropertiesParameters,
};
use azure_security_keyvault_certificates::{CertificateClient, CertificateClientOptions};
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, CurveName, KeyAttributes, KeyClientUpdateKeyPropertiesOptions,
    KeyOperation, KeyType, UpdateKeyPropertiesParameters,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use azure_security_keyvault_secrets::models::{
    SecretAttributes, SecretClientUpdateSecretPropertiesOptions, SetSecretParameters,
    UpdateSecretPropertiesParameters,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use closeout_contract::{CallGate, SecretValue};
use futures::TryStreamExt;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// The three SDK clients of one vault.
struct VaultClients {
    secrets: SecretClient,
    keys: KeyClient,
    certificates: CertificateClient,
}

/// Key Vault data-plane calls for the Azure provider.
pub struct KeyVaultData {
    credential: Arc<dyn TokenCredential>,
    client_options: ClientOptions,
    api_version: String,
    gate: CallGate,
    clients: Mutex<HashMap<String, Arc<VaultClients>>>,
}

/// How long a certificate create may take before we stop waiting (Azure: seconds for `Self`).
const CERTIFICATE_WAIT: Duration = Duration::from_secs(120);

/// Resolves configured host suffixes to fixed addresses, everything else through the system
/// resolver (reqwest's `resolve()` takes exact names only; vault names are not known up front).
struct SuffixResolver {
    overrides: Vec<(String, IpAddr)>,
}

impl reqwest::dns::Resolve for SuffixResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let fixed = self
            .overrides
            .iter()
            .find(|(suffix, _)| host == *suffix || host.ends_with(&format!(".{suffix}")))
            .map(|(_, ip)| *ip);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match fixed {
                // Port 0: the connector puts the URL's port in.
                Some(ip) => vec![SocketAddr::new(ip, 0)],
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Which SDK object a call is about, for error paths.
fn segment(kind: ObjectType) -> &'static str {
    kind.as_str()
}

/// Maps an SDK error to [`CallError`]: status, Key Vault's error code and message (from the
/// response's error body, never anything else of it), and `Retry-After`.
fn call_error(method: &'static str, path: String, e: &azure_core::Error) -> CallError {
    #[derive(Deserialize, Default)]
    struct Envelope {
        #[serde(default)]
        error: Body,
    }
    #[derive(Deserialize, Default)]
    struct Body {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match e.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let body = raw_response
                .as_ref()
                .and_then(|r| r.body().json::<Envelope>().ok())
                .unwrap_or_default()
                .error;
            let retry_after = raw_response
                .as_ref()
                .and_then(|r| r.headers().get_optional_str(&RETRY_AFTER))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let code = if body.code.is_empty() {
                error_code.clone().unwrap_or_default()
            } else {
                body.code
            };
            CallError {
                method,
                path,
                status: Some(u16::from(*status)),
                code,
                message: body.message,
                retry_after,
            }
        }
        // A parse error can quote the text it choked on, which may be a secret value; the SDK's
        // challenge errors (same kind) quote only the `WWW-Authenticate` header, and are kept.
        ErrorKind::DataConversion => CallError {
            method,
            path,
            status: None,
            code: "DataConversion".into(),
            message: match e.to_string() {
                m if m.contains("challenge") => m,
                _ => "a request or answer body could not be converted".into(),
            },
            retry_after: None,
        },
        kind => CallError {
            method,
            path,
            status: None,
            code: kind.to_string(),
            message: closeout_contract::with_causes(&e.to_string(), e),
            retry_after: None,
        },
    }
}

/// A refusal decided here, before any call (shaped like the service's own 403).
fn refused(method: &'static str, path: String, code: &str, message: String) -> CallError {
    CallError {
        method,
        path,
        status: Some(403),
        code: code.into(),
        message,
        retry_after: None,
    }
}

/// `(name, version)` from a Key Vault id `https://{vault}/{kind}/{name}[/{version}]`.
fn split_id(id: &str) -> Option<(String, Option<String>)> {
    let url = Url::parse(id).ok()?;
    let mut segments = url.path_segments()?.filter(|s| !s.is_empty());
    let _kind = segments.next()?;
    let name = segments.next()?.to_string();
    let version = segments.next().map(str::to_string);
    Some((name, version))
}

fn version_of(id: Option<&String>) -> Option<String> {
    id.and_then(|id| split_id(id)).and_then(|(_, v)| v)
}

fn tags_of(tags: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    tags.unwrap_or_default().into_iter().collect()
}

fn merged(
    old: Option<HashMap<String, String>>,
    extra: &BTreeMap<String, String>,
) -> HashMap<String, String> {
    let mut tags = old.unwrap_or_default();
    tags.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags
}

fn unix(t: Option<azure_core::time::OffsetDateTime>) -> Option<i64> {
    t.map(|t| t.unix_timestamp())
}

impl KeyVaultData {
    /// Builds the transport; clients are made per vault on first use.
    pub fn new(
        credential: Arc<dyn TokenCredential>,
        options: DataPlaneOptions,
        gate: CallGate,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10));
        if let Some(pem) = &options.extra_root_pem {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| format!("the extra root certificate is not PEM: {e}"))?;
            builder = builder.tls_certs_merge([cert]);
        }
        if !options.host_overrides.is_empty() {
            let overrides = options
                .host_overrides
                .iter()
                .map(|(suffix, ip)| (suffix.trim_matches('.').to_ascii_lowercase(), *ip))
                .filter(|(suffix, _)| !suffix.is_empty())
                .collect();
            builder = builder.dns_resolver(SuffixResolver { overrides });
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        if options.api_version.trim().is_empty() {
            return Err("the Key Vault api-version must not be empty".into());
        }
        Ok(KeyVaultData {
            credential,
            client_options: ClientOptions {
                transport: Some(Transport::new(Arc::new(http))),
                retry: RetryOptions::none(),
                ..ClientOptions::default()
            },
            api_version: options.api_version,
            gate,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// The clients of `vault_uri`, made on first use.
    fn clients(&self, vault_uri: &str) -> Result<Arc<VaultClients>, CallError> {
        let key = vault_uri.trim_end_matches('/').to_ascii_lowercase();
        let mut cache = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let bad = |e: azure_core::Error| CallError {
            method: "NEW",
            path: "/".into(),
            status: None,
            code: "client".into(),
            message: format!("cannot make a Key Vault client for {vault_uri}: {e}"),
            retry_after: None,
        };
        let endpoint = format!("{}/", vault_uri.trim_end_matches('/'));
        let secrets = SecretClient::new(
            &endpoint,
            self.credential.clone(),
            Some(SecretClientOptions {
                api_version: self.api_version.clone(),
                client_options: self.client_options.clone(),
                verify_challenge_resource: Some(true),
            }),
        )
        .map_err(&bad)?;
        let keys = KeyClient::new(
            &endpoint,
            self.credential.clone(),
            Some(KeyClientOptions {
                api_version: self.api_version.clone(),
                client_options: self.client_options.clone(),
                verify_challenge_resource: Some(true),
            }),
        )
        .map_err(&bad)?;
        let certificates = CertificateClient::new(
            &endpoint,
            self.credential.clone(),
            Some(CertificateClientOptions {
                api_version: self.api_version.clone(),
                client_options: self.client_options.clone(),
                verify_challenge_resource: Some(true),
            }),
        )
        .map_err(&bad)?;
        let clients = Arc::new(VaultClients {
            secrets,
            keys,
            certificates,
        });
        cache.insert(key, clients.clone());
        Ok(clients)
    }

    /// Every secret, key or certificate of the vault (current version's properties), following
    /// `nextLink`; one gate pass per page.
    pub async fn list(
        &self,
        vault_uri: &str,
        kind: ObjectType,
    ) -> Result<Vec<ObjectSummary>, CallError> {
        let c = self.clients(vault_uri)?;
        let path = format!("/{}", segment(kind));
        let fail = |e: azure_core::Error| call_error("GET", path.clone(), &e);
        let mut out = Vec::new();
        match kind {
            ObjectType::Secrets => {
                let mut pages = c
                    .secrets
                    .list_secret_properties(None)
                    .map_err(fail)?
                    .into_pages();
                while let Some(page) = self.gated(pages.try_next()).await.map_err(fail)? {
                    for p in page.into_model().map_err(fail)?.value {
                        let Some(id) = p.id else { continue };
                        let Some((name, _)) = split_id(&id) else {
                            continue;
                        };
                        let attrs = p.attributes.unwrap_or_default();
                        out.push(ObjectSummary {
                            name,
                            id,
                            enabled: attrs.enabled.unwrap_or(true),
                            tags: tags_of(p.tags),
                            managed: p.managed.unwrap_or(false),
                            created: unix(attrs.created),
                            updated: unix(attrs.updated),
                            expires: unix(attrs.expires),
                            content_type: p.content_type,
                        });
                    }
                }
            }
            ObjectType::Keys => {
                let mut pages = c.keys.list_key_properties(None).map_err(fail)?.into_pages();
                while let Some(page) = self.gated(pages.try_next()).await.map_err(fail)? {
                    for p in page.into_model().map_err(fail)?.value {
                        let Some(id) = p.kid else { continue };
                        let Some((name, _)) = split_id(&id) else {
                            continue;
                        };
                        let attrs = p.attributes.unwrap_or_default();
                        out.push(ObjectSummary {
                            name,
                            id,
                            enabled: attrs.enabled.unwrap_or(true),
                            tags: tags_of(p.tags),
                            managed: p.managed.unwrap_or(false),
                            created: unix(attrs.created),
                            updated: unix(attrs.updated),
                            expires: unix(attrs.expires),
                            content_type: None,
                        });
                    }
                }
            }
            ObjectType::Certificates => {
                let mut pages = c
                    .certificates
                    .list_certificate_properties(None)
                    .map_err(fail)?
                    .into_pages();
                while let Some(page) = self.gated(pages.try_next()).await.map_err(fail)? {
                    for p in page.into_model().map_err(fail)?.value {
                        let Some(id) = p.id else { continue };
                        let Some((name, _)) = split_id(&id) else {
                            continue;
                        };
                        let attrs = p.attributes.unwrap_or_default();
                        out.push(ObjectSummary {
                            name,
                            id,
                            enabled: attrs.enabled.unwrap_or(true),
                            tags: tags_of(p.tags),
                            managed: false,
                            created: unix(attrs.created),
                            updated: unix(attrs.updated),
                            expires: unix(attrs.expires),
                            content_type: None,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every version of one object, oldest first (by `created`; Key Vault lists in no set order).
    pub async fn versions(
        &self,
        vault_uri: &str,
        kind: ObjectType,
        name: &str,
    ) -> Result<Vec<VersionSummary>, CallError> {
        let c = self.clients(vault_uri)?;
        let path = format!("/{}/{name}/versions", segment(kind));
        let fail = |e: azure_core::Error| call_error("GET", path.clone(), &e);
        let mut out = Vec::new();
        match kind {
            ObjectType::Secrets => {
                let mut pages = c
                    .secrets
                    .list_secret_properties_versions(name, None)
                    .map_err(fail)?
                    .into_pages();
                while let Some(page) = self.gated(pages.try_next()).await.map_err(fail)? {
                    for p in page.into_model().map_err(fail)?.value {
                        let Some(version) = version_of(p.id.as_ref()) else {
                            continue;
                        };
                        let attrs = p.attributes.unwrap_or_default();
                        out.push(VersionSummary {
                            version,
                            enabled: attrs.enabled.unwrap_or(true),
                            created: unix(attrs.created),
                            updated: unix(attrs.updated),
                            tags: tags_of(p.tags),
                        });
                    }
                }
            }
            ObjectType::Keys => {
                let mut pages = c
                    .keys
                    .list_key_properties_versions(name, None)
                    .map_err(fail)?
                    .into_pages();
                while let Some(page) = self.gated(pages.try_next()).await.map_err(fail)? {
                    for p in page.into_model().map_err(fail)?.value {
                        let Some(version) = version_of(p.kid.as_ref()) else {
                            continue;
                        };
                        let attrs = p.attributes.unwrap_or_default();
                        out.push(VersionSummary {
                            version,
                            enabled: attrs.enabled.unwrap_or(true),
                            created: unix(attrs.created),
                            updated: unix(attrs.updated),
                            tags: tags_of(p.tags),
                        });
                    }
                }
            }
            ObjectType::Certificates => {
                let mut pages = c
                    .certificates
                    .list_certificate_properties_versions(name, None)
                    .map_err(fail)?
                    .into_pages();
                while let Some(page) = self.gated(pages.try_next()).await.map_err(fail)? {
                    for p in page.into_model().map_err(fail)?.value {
                        let Some(version) = version_of(p.id.as_ref()) else {
                            continue;
                        };
                        let attrs = p.attributes.unwrap_or_default();
                        out.push(VersionSummary {
                            version,
                            enabled: attrs.enabled.unwrap_or(true),
                            created: unix(attrs.created),
                            updated: unix(attrs.updated),
                            tags: tags_of(p.tags),
                        });
                    }
                }
            }
        }
        out.sort_by_key(|v| v.created);
        Ok(out)
    }

    /// The current (newest) version, `None` when the object does not exist. A secret whose
    /// current version is disabled cannot be read (403 `SecretDisabled`; Lowkey: 404), so then
    /// the newest version of the versions list stands in.
    pub async fn current(
        &self,
        vault_uri: &str,
        kind: ObjectType,
        name: &str,
    ) -> Result<Option<VersionSummary>, CallError> {
        let c = self.clients(vault_uri)?;
        let path = format!("/{}/{name}", segment(kind));
        let fail = |e: azure_core::Error| call_error("GET", path.clone(), &e);
        let found = match kind {
            ObjectType::Secrets => {
                match self.gated(c.secrets.get_secret(name, None)).await {
                    Ok(r) => {
                        // The value is dropped here, unread.
                        let s = r.into_model().map_err(fail)?;
                        let attrs = s.attributes.unwrap_or_default();
                        version_of(s.id.as_ref()).map(|version| VersionSummary {
                            version,
                            enabled: attrs.enabled.unwrap_or(true),
                            created: unix(attrs.created),
                            updated: unix(attrs.updated),
                            tags: tags_of(s.tags),
                        })
                    }
                    Err(e) => {
                        let err = fail(e);
                        if err.status == Some(404) || err.status == Some(403) {
                            return match self.versions(vault_uri, kind, name).await {
                                Ok(v) => Ok(v.into_iter().next_back()),
                                Err(e) if e.is_not_found() => Ok(None),
                                Err(e) => Err(e),
                            };
                        }
                        return Err(err);
                    }
                }
            }
            ObjectType::Keys => match self.gated(c.keys.get_key(name, None)).await {
                Ok(r) => {
                    let k = r.into_model().map_err(fail)?;
                    let attrs = k.attributes.unwrap_or_default();
                    version_of(k.key.and_then(|j| j.kid).as_ref()).map(|version| VersionSummary {
                        version,
                        enabled: attrs.enabled.unwrap_or(true),
                        created: unix(attrs.created),
                        updated: unix(attrs.updated),
                        tags: tags_of(k.tags),
                    })
                }
                Err(e) => return not_found_as_none(fail(e)),
            },
            ObjectType::Certificates => {
                match self.gated(c.certificates.get_certificate(name, None)).await {
                    Ok(r) => {
                        let cert = r.into_model().map_err(fail)?;
                        let attrs = cert.attributes.unwrap_or_default();
                        version_of(cert.id.as_ref()).map(|version| VersionSummary {
                            version,
                            enabled: attrs.enabled.unwrap_or(true),
                            created: unix(attrs.created),
                            updated: unix(attrs.updated),
                            tags: tags_of(cert.tags),
                        })
                    }
                    Err(e) => return not_found_as_none(fail(e)),
                }
            }
        };
        Ok(found)
    }

    /// A new version with a new random value (32 random bytes, base64url), the same
    /// `contentType`, and the current tags plus `extra_tags`; returns the new version id.
    /// Refuses a certificate's (managed) secret: rotate the certificate instead.
    pub async fn rotate_secret(
        &self,
        vault_uri: &str,
        name: &str,
        extra_tags: &BTreeMap<String, String>,
    ) -> Result<String, CallError> {
        let c = self.clients(vault_uri)?;
        let path = format!("/secrets/{name}");
        let fail = |e: azure_core::Error| call_error("GET", path.clone(), &e);
        // The current version's content type, tags and managed flag, from the versions list
        // (no value is fetched; a disabled current version is listed too).
        let mut pages = c
            .secrets
            .list_secret_properties_versions(name, None)
            .map_err(fail)?
            .into_pages();
        let mut newest: Option<SecretHead> = None;
        while let Some(page) = self.gated(pages.try_next()).await.map_err(fail)? {
            for p in page.into_model().map_err(fail)?.value {
                let created = unix(p.attributes.as_ref().and_then(|a| a.created));
                if newest.as_ref().is_none_or(|n| created >= n.created) {
                    newest = Some(SecretHead {
                        created,
                        content_type: p.content_type,
                        tags: p.tags,
                        managed: p.managed.unwrap_or(false),
                    });
                }
            }
        }
        let Some(SecretHead {
            content_type,
            tags,
            managed,
            ..
        }) = newest
        else {
            return Err(CallError {
                method: "GET",
                path: format!("/secrets/{name}/versions"),
                status: Some(404),
                code: "SecretNotFound".into(),
                message: format!("secret {name} has no versions"),
                retry_after: None,
            });
        };
        if managed {
            return Err(refused(
                "PUT",
                path.clone(),
                "ManagedSecret",
                format!("secret {name} backs a certificate; rotate the certificate instead"),
            ));
        }
        let bytes: [u8; 32] = rand::random();
        let value = SecretValue::new(azure_core::base64::encode_url_safe(bytes));
        self.put_secret(&c, name, &value, content_type, merged(tags, extra_tags))
            .await
    }

    /// Publishes `value` as a new version of secret `name` (e.g. a rotated app credential);
    /// returns the version.
    pub async fn set_secret(
        &self,
        vault_uri: &str,
        name: &str,
        value: &SecretValue,
        content_type: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<String, CallError> {
        let c = self.clients(vault_uri)?;
        let tags = tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        self.put_secret(&c, name, value, content_type.map(str::to_string), tags)
            .await
    }

    async fn put_secret(
        &self,
        c: &VaultClients,
        name: &str,
        value: &SecretValue,
        content_type: Option<String>,
        tags: HashMap<String, String>,
    ) -> Result<String, CallError> {
        let path = format!("/secrets/{name}");
        let fail = |e: azure_core::Error| call_error("PUT", path.clone(), &e);
        let body = SetSecretParameters {
            value: Some(value.expose().to_string()),
            content_type,
            tags: Some(tags),
            ..Default::default()
        };
        let secret = self
            .gated(
                c.secrets
                    .set_secret(name, body.try_into().map_err(fail)?, None),
            )
            .await
            .map_err(fail)?
            .into_model()
            .map_err(fail)?;
        version_of(secret.id.as_ref()).ok_or_else(|| missing_id("PUT", path.clone()))
    }

    /// A new key version with the current one's type, size (from the modulus), curve and
    /// operations, and the current tags plus `extra_tags`; returns the version. Refuses a
    /// certificate's (managed) key.
    pub async fn rotate_key(
        &self,
        vault_uri: &str,
        name: &str,
        extra_tags: &BTreeMap<String, String>,
    ) -> Result<String, CallError> {
        let c = self.clients(vault_uri)?;
        let path = format!("/keys/{name}");
        let fail = |e: azure_core::Error| call_error("GET", path.clone(), &e);
        let current = self
            .gated(c.keys.get_key(name, None))
            .await
            .map_err(fail)?
            .into_model()
            .map_err(fail)?;
        if current.managed == Some(true) {
            return Err(refused(
                "POST",
                format!("/keys/{name}/create"),
                "ManagedKey",
                format!("key {name} backs a certificate; rotate the certificate instead"),
            ));
        }
        let jwk = current.key.unwrap_or_default();
        let kty = jwk.kty.clone();
        let key_size = match kty {
            Some(KeyType::Rsa) | Some(KeyType::RsaHsm) => jwk.n.as_ref().map(|n| {
                let significant = n.iter().skip_while(|b| **b == 0).count();
                i32::try_from(significant * 8).unwrap_or(2048)
            }),
            _ => None,
        };
        let curve: Option<CurveName> = jwk.crv.clone();
        let key_ops: Option<Vec<KeyOperation>> = jwk.key_ops.as_ref().map(|ops| {
            ops.iter()
                .filter_map(|o| o.parse::<KeyOperation>().ok())
                .collect()
        });
        let body = CreateKeyParameters {
            kty,
            key_size,
            curve,
            key_ops,
            tags: Some(merged(current.tags, extra_tags)),
            ..Default::default()
        };
        let create_path = format!("/keys/{name}/create");
        let fail = |e: azure_core::Error| call_error("POST", create_path.clone(), &e);
        let key = self
            .gated(
                c.keys
                    .create_key(name, body.try_into().map_err(fail)?, None),
            )
            .await
            .map_err(fail)?
            .into_model()
            .map_err(fail)?;
        version_of(key.key.and_then(|k| k.kid).as_ref())
            .ok_or_else(|| missing_id("POST", create_path.clone()))
    }

    /// A new certificate version from the existing policy (tags kept plus `extra_tags`), waiting
    /// for the create operation to complete; returns the version. Key Vault makes a new backing
    /// key and secret version with the same id.
    pub async fn rotate_certificate(
        &self,
        vault_uri: &str,
        name: &str,
        extra_tags: &BTreeMap<String, String>,
    ) -> Result<String, CallError> {
        let c = self.clients(vault_uri)?;
        let policy_path = format!("/certificates/{name}/policy");
        let policy = self
            .gated(c.certificates.get_certificate_policy(name, None))
            .await
            .map_err(|e| call_error("GET", policy_path.clone(), &e))?
            .into_model()
            .map_err(|e| call_error("GET", policy_path.clone(), &e))?;
        let get_path = format!("/certificates/{name}");
        let current = self
            .gated(c.certificates.get_certificate(name, None))
            .await
            .map_err(|e| call_error("GET", get_path.clone(), &e))?
            .into_model()
            .map_err(|e| call_error("GET", get_path.clone(), &e))?;
        let create_path = format!("/certificates/{name}/create");
        let fail = |e: azure_core::Error| call_error("POST", create_path.clone(), &e);
        let body = CreateCertificateParameters {
            certificate_policy: Some(policy),
            tags: Some(merged(current.tags, extra_tags)),
            ..Default::default()
        };
        let options = CertificateClientCreateCertificateOptions {
            method_options: PollerOptions {
                // The SDK's minimum; Azure finishes a self-signed certificate in seconds.
                frequency: azure_core::time::Duration::seconds(1),
                ..Default::default()
            },
        };
        let poller = c
            .certificates
            .begin_create_certificate(name, body.try_into().map_err(fail)?, Some(options))
            .map_err(fail)?;
        // One gate pass for the whole operation: its polls come at most once a second.
        let _pass = self.gate.enter().await;
        let certificate = match tokio::time::timeout(CERTIFICATE_WAIT, poller).await {
            Ok(result) => result.map_err(fail)?.into_model().map_err(fail)?,
            Err(_) => {
                return Err(CallError {
                    method: "POST",
                    path: create_path.clone(),
                    status: None,
                    code: "timeout".into(),
                    message: format!(
                        "the certificate operation did not complete within {} s",
                        CERTIFICATE_WAIT.as_secs()
                    ),
                    retry_after: None,
                })
            }
        };
        version_of(certificate.id.as_ref()).ok_or_else(|| missing_id("POST", create_path.clone()))
    }

    /// Disables every enabled version except `keep`; returns how many it disabled. Refuses (404,
    /// nothing changed) when `keep` is not a version of the object, so a typo cannot disable
    /// everything. For certificates the certificate versions are disabled; Key Vault mirrors a
    /// certificate's attributes to its backing key and secret version (Microsoft Learn, "About
    /// Azure Key Vault certificates"; the double does the same, not yet checked on real Azure), and
    /// the backing secret and key are managed: change the certificate, not them.
    pub async fn disable_versions_except(
        &self,
        vault_uri: &str,
        kind: ObjectType,
        name: &str,
        keep: &str,
    ) -> Result<usize, CallError> {
        let versions = self.versions(vault_uri, kind, name).await?;
        if !versions
            .iter()
            .any(|v| v.version.eq_ignore_ascii_case(keep))
        {
            return Err(CallError {
                method: "GET",
                path: format!("/{}/{name}/versions", segment(kind)),
                status: Some(404),
                code: "VersionNotFound".into(),
                message: format!("{keep} is not a version of {name}; no version was disabled"),
                retry_after: None,
            });
        }
        let c = self.clients(vault_uri)?;
        let mut disabled = 0;
        for v in versions
            .iter()
            .filter(|v| v.enabled && !v.version.eq_ignore_ascii_case(keep))
        {
            let path = format!("/{}/{name}/{}", segment(kind), v.version);
            let fail = |e: azure_core::Error| call_error("PATCH", path.clone(), &e);
            match kind {
                ObjectType::Secrets => {
                    let body = UpdateSecretPropertiesParameters {
                        secret_attributes: Some(SecretAttributes {
                            enabled: Some(false),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    let options = SecretClientUpdateSecretPropertiesOptions {
                        secret_version: Some(v.version.clone()),
                        ..Default::default()
                    };
                    self.gated(c.secrets.update_secret_properties(
                        name,
                        body.try_into().map_err(fail)?,
                        Some(options),
                    ))
                    .await
                    .map_err(fail)?;
                }
                ObjectType::Keys => {
                    let body = UpdateKeyPropertiesParameters {
                        key_attributes: Some(KeyAttributes {
                            enabled: Some(false),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    let options = KeyClientUpdateKeyPropertiesOptions {
                        key_version: Some(v.version.clone()),
                        ..Default::default()
                    };
                    self.gated(c.keys.update_key_properties(
                        name,
                        body.try_into().map_err(fail)?,
                        Some(options),
                    ))
                    .await
                    .map_err(fail)?;
                }
                ObjectType::Certificates => {
                    let body = UpdateCertificatePropertiesParameters {
                        certificate_attributes: Some(CertificateAttributes {
                            enabled: Some(false),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    let options = CertificateClientUpdateCertificatePropertiesOptions {
                        certificate_version: Some(v.version.clone()),
                        ..Default::default()
                    };
                    self.gated(c.certificates.update_certificate_properties(
                        name,
                        body.try_into().map_err(fail)?,
                        Some(options),
                    ))
                    .await
                    .map_err(fail)?;
                }
            }
            disabled += 1;
        }
        Ok(disabled)
    }

    /// Runs one request (or one page) under a gate pass.
    async fn gated<F: std::future::Future>(&self, call: F) -> F::Output {
        let _pass = self.gate.enter().await;
        call.await
    }
}

/// What rotating a secret keeps from its newest version.
struct SecretHead {
    created: Option<i64>,
    content_type: Option<String>,
    tags: Option<HashMap<String, String>>,
    managed: bool,
}

fn not_found_as_none(e: CallError) -> Result<Option<VersionSummary>, CallError> {
    if e.is_not_found() {
        Ok(None)
    } else {
        Err(e)
    }
}

fn missing_id(method: &'static str, path: String) -> CallError {
    CallError {
        method,
        path,
        status: None,
        code: "response".into(),
        message: "the answer carried no id with a version".into(),
        retry_after: None,
    }
}
