//! [`AzureProvider`] itself: its configuration and the clients every call goes through (ARM
//! and Graph over [`AzureHttp`], the Key Vault data plane over [`KeyVaultData`]), built by
//! [`AzureProvider::connect`] without any Azure call.

use crate::config::{AzureConfig, AzureError};
use crate::data_plane::{DataPlaneOptions, KeyVaultData};
use crate::http::{AzureHttp, Endpoints};
use crate::limits::Gates;
use closeout_contract::Limits;

/// The Azure provider.
pub struct AzureProvider {
    pub(crate) config: AzureConfig,
    pub(crate) http: AzureHttp,
    pub(crate) data: KeyVaultData,
    /// The gates of the API families (shared with `http` and `data`).
    pub(crate) gates: Gates,
}

impl std::fmt::Debug for AzureProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

async fn read_first_line(
    field: &'static str,
    path: &std::path::Path,
) -> Result<String, AzureError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| AzureError::File {
            field,
            path: path.display().to_string(),
            message: e.kind().to_string(),
        })?;
    let first = text.lines().next().unwrap_or("").trim().to_string();
    if first.is_empty() {
        return Err(AzureError::File {
            field,
            path: path.display().to_string(),
            message: "the file is empty".into(),
        });
    }
    Ok(first)
}

impl AzureProvider {
    /// Validate `config`, read the client secret (from `client_secret_file`, else
    /// `AZURE_CLIENT_SECRET`) and the extra root certificate, and build the clients. Makes no
    /// Azure call.
    pub async fn connect(config: AzureConfig) -> Result<AzureProvider, AzureError> {
        config.validate()?;
        let secret = match &config.client_secret_file {
            Some(path) => read_first_line("client_secret_file", path).await?,
            None => env_nonempty("AZURE_CLIENT_SECRET")
                .ok_or(AzureError::NoSecret)?
                .trim()
                .to_string(),
        };
        let ca_pem = match &config.ca_file {
            Some(path) => {
                Some(
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|e| AzureError::File {
                            field: "ca_file",
                            path: path.display().to_string(),
                            message: e.kind().to_string(),
                        })?,
                )
            }
            None => None,
        };
        let gates = Gates::from_config(&config);
        let endpoints = Endpoints {
            authority_host: config.authority_host.clone(),
            arm: config.arm_endpoint.clone(),
            graph: config.graph_endpoint.clone(),
            ..Endpoints::default()
        };
        let http = AzureHttp::new(
            &config.tenant_id,
            &config.client_id,
            secret.into(),
            endpoints,
            ca_pem.as_deref(),
            gates.clone(),
        )
        .map_err(AzureError::Client)?
        .with_retry(config.retry);
        let data = KeyVaultData::new(
            http.credential(),
            DataPlaneOptions {
                api_version: config.key_vault_api_version.clone(),
                extra_root_pem: ca_pem,
                host_overrides: config
                    .host_overrides
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
            },
            gates.key_vault.clone(),
        )
        .map_err(AzureError::Client)?
        .with_retry(config.retry);
        Ok(AzureProvider {
            config,
            http,
            data,
            gates,
        })
    }

    /// The configuration the provider was built from.
    pub fn config(&self) -> &AzureConfig {
        &self.config
    }

    /// The concurrency and rate limits every call obeys.
    pub(crate) fn limits(&self) -> Limits {
        self.gates.widest()
    }
}
