//! [`KeyVaultData`]: the cached SDK clients of each vault, the gate every request passes, and
//! the reads and retirement that work the same for the three kinds of object, written once over
//! [`ObjectKind`].

use super::error::call_error;
use super::kind::{Certificates, Keys, ObjectKind, Secrets, StartPage};
use super::model::{DataPlaneOptions, ObjectSummary, Row, VersionSummary};
use super::transport::{http_client, VaultClients};
use crate::http::CallError;
use crate::object::ObjectType;
use azure_core::credentials::TokenCredential;
use azure_core::http::pager::PageIterator;
use azure_core::http::{ClientOptions, Response, RetryOptions, Transport};
use closeout_contract::{CallGate, ProviderError, RetryPolicy};
use futures::TryStreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Key Vault data-plane calls for the Azure provider.
pub struct KeyVaultData {
    credential: Arc<dyn TokenCredential>,
    client_options: ClientOptions,
    api_version: String,
    pub(super) gate: CallGate,
    clients: Mutex<HashMap<String, Arc<VaultClients>>>,
    /// How reads (lists, versions, the current version) are retried: resolution and
    /// verification have no retry loop of their own, and the SDK's retry is off.
    retry: RetryPolicy,
}

/// Calls `$body` with `$k` the [`ObjectKind`] of the runtime `$kind`.
macro_rules! for_kind {
    ($kind:expr, $k:ident => $body:expr) => {
        match $kind {
            ObjectType::Secrets => {
                type $k = Secrets;
                $body
            }
            ObjectType::Keys => {
                type $k = Keys;
                $body
            }
            ObjectType::Certificates => {
                type $k = Certificates;
                $body
            }
        }
    };
}

impl KeyVaultData {
    /// Builds the transport; clients are made per vault on first use.
    pub fn new(
        credential: Arc<dyn TokenCredential>,
        options: DataPlaneOptions,
        gate: CallGate,
    ) -> Result<Self, String> {
        let http = http_client(&options)?;
        if options.api_version.trim().is_empty() {
            return Err("the Key Vault api-version must not be empty".into());
        }
        Ok(KeyVaultData {
            credential,
            client_options: ClientOptions {
                transport: Some(Transport::new(Arc::new(http))),
                retry: RetryOptions::none(),
                per_try_policies: vec![
                    Arc::new(super::transport::ReceiptPolicy),
                    Arc::new(super::transport::ThrottlePolicy { gate: gate.clone() }),
                ],
                ..ClientOptions::default()
            },
            api_version: options.api_version,
            gate,
            clients: Mutex::new(HashMap::new()),
            retry: RetryPolicy::default(),
        })
    }

    /// The same, retrying reads by `retry` (never sooner than a `Retry-After`).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Run a read under the retry policy: a 5xx, a 429 or no answer is retried (a paged
    /// listing from its first page).
    pub(super) async fn read<T, F, Fut>(&self, path: &str, call: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        self.retry
            .run(
                path,
                |e: &CallError| ProviderError::from(e.clone()).class(),
                call,
            )
            .await
    }

    /// The clients of `vault_uri`, made on first use.
    pub(super) fn clients(&self, vault_uri: &str) -> Result<Arc<VaultClients>, CallError> {
        let key = vault_uri.trim_end_matches('/').to_ascii_lowercase();
        let mut cache = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let endpoint = format!("{}/", vault_uri.trim_end_matches('/'));
        let clients = VaultClients::new(
            &endpoint,
            &self.credential,
            &self.client_options,
            &self.api_version,
        )
        .map_err(|e| CallError {
            method: "NEW",
            path: "/".into(),
            status: None,
            code: "client".into(),
            message: format!("cannot make a Key Vault client for {vault_uri}: {e}"),
            retry_after: None,
        })?;
        let clients = Arc::new(clients);
        cache.insert(key, clients.clone());
        Ok(clients)
    }

    /// Runs one request (or one page) under a gate pass.
    pub(super) async fn gated<F: std::future::Future>(&self, call: F) -> F::Output {
        let _pass = self.gate.enter().await;
        call.await
    }

    /// Every row of a paged listing, one gate pass per page. A page that fails is retried by
    /// the read policy from its own link (the `nextLink` of the page before it), not the
    /// listing from its first page: a listing of n pages, each failing with probability p,
    /// would otherwise succeed with probability (1-p)^n per attempt, and long listings would
    /// rarely finish while a service throttles.
    pub(super) async fn rows<K: ObjectKind>(
        &self,
        pages_from: impl Fn(StartPage) -> azure_core::Result<PageIterator<Response<K::Page>>>,
        path: &str,
    ) -> Result<Vec<Row>, CallError> {
        let fail = |e: azure_core::Error| call_error("GET", path.to_string(), &e);
        let mut from: StartPage = None;
        let mut out = Vec::new();
        loop {
            let start = from.clone();
            let (page, next) = self
                .read(path, || async {
                    let mut pages = pages_from(start.clone()).map_err(fail)?;
                    let page = self.gated(pages.try_next()).await.map_err(fail)?;
                    Ok((page, pages.into_continuation()))
                })
                .await?;
            let Some(page) = page else { break };
            out.extend(K::rows(page).map_err(fail)?);
            match next {
                Some(next) => from = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    /// Every secret, key or certificate of the vault (current version's properties), following
    /// `nextLink`; one gate pass per page.
    pub async fn list(
        &self,
        vault_uri: &str,
        kind: ObjectType,
    ) -> Result<Vec<ObjectSummary>, CallError> {
        // Each page is retried in `rows`.
        for_kind!(kind, K => self.list_of::<K>(vault_uri).await)
    }

    async fn list_of<K: ObjectKind>(
        &self,
        vault_uri: &str,
    ) -> Result<Vec<ObjectSummary>, CallError> {
        let c = self.clients(vault_uri)?;
        let path = format!("/{}", K::TYPE.as_str());
        let rows = self.rows::<K>(|from| K::list(&c, from), &path).await?;
        Ok(rows.into_iter().filter_map(Row::summary).collect())
    }

    /// Every version of one object, oldest first (by `created`; Key Vault lists in no set order).
    pub async fn versions(
        &self,
        vault_uri: &str,
        kind: ObjectType,
        name: &str,
    ) -> Result<Vec<VersionSummary>, CallError> {
        // Each page is retried in `rows`.
        for_kind!(kind, K => self.versions_of::<K>(vault_uri, name).await)
    }

    async fn versions_of<K: ObjectKind>(
        &self,
        vault_uri: &str,
        name: &str,
    ) -> Result<Vec<VersionSummary>, CallError> {
        let c = self.clients(vault_uri)?;
        let path = format!("/{}/{name}/versions", K::TYPE.as_str());
        let rows = self
            .rows::<K>(|from| K::versions(&c, name, from), &path)
            .await?;
        let mut out: Vec<VersionSummary> = rows.into_iter().filter_map(Row::version).collect();
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
        let path = format!("{vault_uri} current {}/{name}", kind.as_str());
        self.read(&path, || async {
            for_kind!(kind, K => self.current_of::<K>(vault_uri, name).await)
        })
        .await
    }

    async fn current_of<K: ObjectKind>(
        &self,
        vault_uri: &str,
        name: &str,
    ) -> Result<Option<VersionSummary>, CallError> {
        let c = self.clients(vault_uri)?;
        let path = format!("/{}/{name}", K::TYPE.as_str());
        match self.gated(K::current(&c, name)).await {
            Ok(row) => Ok(row.version()),
            Err(e) => {
                let err = call_error("GET", path, &e);
                if K::CURRENT_FROM_VERSIONS_WHEN_UNREADABLE && matches!(err.status, Some(403 | 404))
                {
                    return match self.versions_of::<K>(vault_uri, name).await {
                        Ok(v) => Ok(v.into_iter().next_back()),
                        Err(e) if e.is_not_found() => Ok(None),
                        Err(e) => Err(e),
                    };
                }
                if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Disables every enabled version except `keep`; returns how many it disabled (each PATCH
    /// retried in place). Refuses (404, nothing changed) when `keep` is not a version of the
    /// object, so a typo cannot disable everything. For certificates the certificate versions are disabled; Key Vault mirrors a
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
        for_kind!(kind, K => self.disable_versions_except_of::<K>(vault_uri, name, keep).await)
    }

    async fn disable_versions_except_of<K: ObjectKind>(
        &self,
        vault_uri: &str,
        name: &str,
        keep: &str,
    ) -> Result<usize, CallError> {
        let versions = self.versions_of::<K>(vault_uri, name).await?;
        if !versions
            .iter()
            .any(|v| v.version.eq_ignore_ascii_case(keep))
        {
            return Err(CallError {
                method: "GET",
                path: format!("/{}/{name}/versions", K::TYPE.as_str()),
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
            let path = format!("/{}/{name}/{}", K::TYPE.as_str(), v.version);
            // Disabling is idempotent, so a failed PATCH is retried in place like a read.
            self.read(&path, || async {
                self.gated(K::disable(&c, name, &v.version))
                    .await
                    .map_err(|e| call_error("PATCH", path.clone(), &e))
            })
            .await?;
            disabled += 1;
        }
        Ok(disabled)
    }
}
