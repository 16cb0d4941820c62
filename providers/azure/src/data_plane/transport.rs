//! The transport of the data-plane clients — our own `reqwest` client, which can trust an extra
//! root and map host suffixes to an address — and the three SDK clients of one vault.

use super::model::DataPlaneOptions;
use azure_core::credentials::TokenCredential;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{ClientOptions, Context, Request};
use azure_security_keyvault_certificates::{CertificateClient, CertificateClientOptions};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use closeout_contract::receipt::{self, ProviderCall};
use closeout_contract::CallGate;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

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

/// A per-try policy of the data-plane clients (after the SDK's challenge authentication, before
/// the transport): records each request sent as a [`ProviderCall`] — `METHOD host/path`, the
/// status, `x-ms-request-id` — for the action being executed. The authentication handshake (a
/// request sent without a token to learn the vault's challenge, answered 401) is not recorded.
#[derive(Debug, Default)]
pub(super) struct ReceiptPolicy;

#[async_trait::async_trait]
impl Policy for ReceiptPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let Some((first, rest)) = next.split_first() else {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Other,
                "the receipt policy must not be the last policy",
            ));
        };
        if !receipt::is_collecting() {
            return first.send(ctx, request, rest).await;
        }
        let operation = format!(
            "{} {}{}",
            request.method(),
            request.url().host_str().unwrap_or_default(),
            request.url().path()
        );
        let authorized = request
            .headers()
            .get_optional_str(&azure_core::http::headers::AUTHORIZATION)
            .is_some();
        let response = first.send(ctx, request, rest).await;
        match &response {
            Ok(r) if !authorized && u16::from(r.status()) == 401 => {}
            Ok(r) => receipt::record(ProviderCall::new(
                operation,
                Some(u16::from(r.status())),
                r.headers().get_optional_string(
                    &azure_core::http::headers::HeaderName::from_static("x-ms-request-id"),
                ),
            )),
            Err(_) => receipt::record(ProviderCall::new(operation, None, None)),
        }
        response
    }
}

/// A per-try policy of the data-plane clients: a request answered 429 tells the provider's gate
/// ([`CallGate::throttled`], with the answer's `Retry-After`), so every call of the provider slows
/// down, not only the retry of this one.
#[derive(Debug)]
pub(super) struct ThrottlePolicy {
    pub gate: CallGate,
}

#[async_trait::async_trait]
impl Policy for ThrottlePolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let Some((first, rest)) = next.split_first() else {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Other,
                "the throttle policy must not be the last policy",
            ));
        };
        let response = first.send(ctx, request, rest).await;
        if let Ok(r) = &response {
            if u16::from(r.status()) == 429 {
                let retry_after = r
                    .headers()
                    .get_optional_str(&azure_core::http::headers::RETRY_AFTER)
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                self.gate.throttled(retry_after);
            }
        }
        response
    }
}

/// The HTTP client every vault's SDK clients share.
pub(super) fn http_client(options: &DataPlaneOptions) -> Result<reqwest::Client, String> {
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
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The three SDK clients of one vault.
pub(super) struct VaultClients {
    pub secrets: SecretClient,
    pub keys: KeyClient,
    pub certificates: CertificateClient,
}

impl VaultClients {
    /// The clients of the vault at `endpoint` (its URI with a trailing `/`), with
    /// `verify_challenge_resource` on: the SDK learns the token scope from the vault's 401
    /// challenge and checks the vault host ends with the challenge's resource host.
    pub(super) fn new(
        endpoint: &str,
        credential: &Arc<dyn TokenCredential>,
        client_options: &ClientOptions,
        api_version: &str,
    ) -> azure_core::Result<VaultClients> {
        Ok(VaultClients {
            secrets: SecretClient::new(
                endpoint,
                credential.clone(),
                Some(SecretClientOptions {
                    api_version: api_version.to_string(),
                    client_options: client_options.clone(),
                    verify_challenge_resource: Some(true),
                }),
            )?,
            keys: KeyClient::new(
                endpoint,
                credential.clone(),
                Some(KeyClientOptions {
                    api_version: api_version.to_string(),
                    client_options: client_options.clone(),
                    verify_challenge_resource: Some(true),
                }),
            )?,
            certificates: CertificateClient::new(
                endpoint,
                credential.clone(),
                Some(CertificateClientOptions {
                    api_version: api_version.to_string(),
                    client_options: client_options.clone(),
                    verify_challenge_resource: Some(true),
                }),
            )?,
        })
    }
}
