//! The transport of the data-plane clients — our own `reqwest` client, which can trust an extra
//! root and map host suffixes to an address — and the three SDK clients of one vault.

use super::model::DataPlaneOptions;
use azure_core::credentials::TokenCredential;
use azure_core::http::ClientOptions;
use azure_security_keyvault_certificates::{CertificateClient, CertificateClientOptions};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
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
