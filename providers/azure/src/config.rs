//! The Azure provider's configuration (`[providers.azure]`) and its pure validation.

use crate::capabilities::PROVIDER;
use crate::entra::UserMatch;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// Configuration of the Azure provider.
///
/// The client secret is never part of the configuration text: it comes from the file
/// `client_secret_file` names, else `AZURE_CLIENT_SECRET` in the environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    /// The Entra tenant (directory) id Closeout signs in to.
    pub tenant_id: String,
    /// The application (client) id Closeout signs in as.
    pub client_id: String,
    /// A file holding the client secret (first line). Unset: `AZURE_CLIENT_SECRET`.
    pub client_secret_file: Option<PathBuf>,
    /// The Entra authority host. Default: `https://login.microsoftonline.com`.
    pub authority_host: String,
    /// Azure Resource Manager. Default: `https://management.azure.com`.
    pub arm_endpoint: String,
    /// Microsoft Graph. Default: `https://graph.microsoft.com`.
    pub graph_endpoint: String,
    /// A PEM file of extra trusted roots (e.g. a test server's CA), added to the system roots.
    pub ca_file: Option<PathBuf>,
    /// The Key Vault data-plane REST api-version sent by the SDK clients.
    pub key_vault_api_version: String,
    /// Hosts ending in a suffix resolve to the given address instead of DNS (local test vaults).
    pub host_overrides: BTreeMap<String, IpAddr>,
    /// How the person's Entra user is found, tried in order.
    pub user_match: Vec<UserMatch>,
    /// Tag on Key Vault secrets, keys and certificates naming their owner (by id or email).
    pub owner_tag: String,
    /// The vault URI where rotated application credentials are published.
    pub credential_vault: Option<String>,
    /// The secret name for a rotated application credential: `{app}` is the application's
    /// display name as a slug, `{app_id}` its application (client) id, `{object_id}` the object
    /// id of the application or service principal whose credential it is. Display names
    /// collide (case, spacing, an application and its own service principal), so the default
    /// names the object id too; two credentials of different objects that a template gives the
    /// same name are refused at plan time.
    pub credential_secret_name: String,
    /// How many calls of each API family (ARM, Graph, Key Vault) may be in flight at once; unset:
    /// each family's default ([`crate::limits`]).
    pub max_in_flight: Option<usize>,
    /// How many calls of each API family may start per second (token bucket); unset: each
    /// family's default from its documented quota ([`crate::limits`]).
    pub requests_per_second: Option<f64>,
    /// How reads (`GET`) are retried on 5xx, 429 and no answer (`[providers.azure.retry]`):
    /// jittered exponential backoff honouring `Retry-After`, within a deadline.
    pub retry: closeout_contract::RetryPolicy,
}

impl Default for AzureConfig {
    fn default() -> Self {
        AzureConfig {
            tenant_id: String::new(),
            client_id: String::new(),
            client_secret_file: None,
            authority_host: "https://login.microsoftonline.com".into(),
            arm_endpoint: "https://management.azure.com".into(),
            graph_endpoint: "https://graph.microsoft.com".into(),
            ca_file: None,
            key_vault_api_version: "7.6".into(),
            host_overrides: BTreeMap::new(),
            user_match: UserMatch::DEFAULTS.to_vec(),
            owner_tag: "owner".into(),
            credential_vault: None,
            credential_secret_name: "app-{app}-{object_id}-credential".into(),
            max_in_flight: None,
            requests_per_second: None,
            retry: closeout_contract::RetryPolicy::default(),
        }
    }
}

/// Errors building the Azure provider from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no client secret: set AZURE_CLIENT_SECRET or `client_secret_file`")]
    NoSecret,
    #[error("{field} {path}: {message}")]
    File {
        field: &'static str,
        path: String,
        message: String,
    },
    #[error("cannot build the client: {0}")]
    Client(String),
}

impl From<AzureError> for closeout_contract::ProviderError {
    fn from(e: AzureError) -> Self {
        closeout_contract::ProviderError::Config {
            provider: PROVIDER,
            message: e.to_string(),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> AzureError {
    AzureError::Invalid {
        field,
        message: message.into(),
    }
}

/// An `https://` URL with a host and at most a trailing `/` after the authority (`path_ok`:
/// any path, for vault URIs).
fn validate_https(field: &'static str, url: &str) -> Result<(), AzureError> {
    let rest = url.strip_prefix("https://").ok_or_else(|| {
        invalid(
            field,
            format!(
                "{url:?} must start with https:// (Azure tokens are never sent over plain HTTP)"
            ),
        )
    })?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains('/') || authority.contains(char::is_whitespace) {
        return Err(invalid(
            field,
            format!("{url:?} must be https:// and host[:port] only"),
        ));
    }
    Ok(())
}

fn validate_id(field: &'static str, value: &str) -> Result<(), AzureError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must be set"));
    }
    if value.len() > 128
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            field,
            format!("{value:?} must be an id (letters, digits, - _ .)"),
        ));
    }
    Ok(())
}

impl AzureConfig {
    /// Check every field without any I/O.
    pub fn validate(&self) -> Result<(), AzureError> {
        validate_id("tenant_id", &self.tenant_id)?;
        validate_id("client_id", &self.client_id)?;
        validate_https("authority_host", &self.authority_host)?;
        validate_https("arm_endpoint", &self.arm_endpoint)?;
        validate_https("graph_endpoint", &self.graph_endpoint)?;
        let v = &self.key_vault_api_version;
        if v.is_empty()
            || !v
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
        {
            return Err(invalid(
                "key_vault_api_version",
                format!("{v:?} must be an api-version such as 7.6"),
            ));
        }
        for suffix in self.host_overrides.keys() {
            let s = suffix.trim_start_matches('.');
            if s.is_empty() || !s.contains('.') && s != "localhost" || s.contains(['/', ':', ' ']) {
                return Err(invalid(
                    "host_overrides",
                    format!("{suffix:?} must be a DNS suffix such as lowkey-vault.local"),
                ));
            }
        }
        if self.user_match.is_empty() {
            return Err(invalid(
                "user_match",
                "must list at least one of object-id, upn, mail, employee-id",
            ));
        }
        let tag = &self.owner_tag;
        if tag.is_empty() || tag.len() > 256 || tag.chars().any(char::is_control) {
            return Err(invalid("owner_tag", format!("{tag:?} is not a tag name")));
        }
        if let Some(uri) = &self.credential_vault {
            validate_https("credential_vault", uri)?;
        }
        let name = &self.credential_secret_name;
        let sample = credential_secret_name(name, "app", "id", "oid");
        if !(name.contains("{app}") || name.contains("{app_id}") || name.contains("{object_id}"))
            || !sample
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(invalid(
                "credential_secret_name",
                format!(
                    "{name:?} must contain {{app}}, {{app_id}} or {{object_id}} and otherwise only letters, digits and -"
                ),
            ));
        }
        if self.max_in_flight.is_some_and(|n| n == 0 || n > 256) {
            return Err(invalid("max_in_flight", "must be between 1 and 256"));
        }
        if self
            .requests_per_second
            .is_some_and(|r| !(r.is_finite() && r > 0.0))
        {
            return Err(invalid("requests_per_second", "must be a positive number"));
        }
        self.retry
            .validate()
            .map_err(|e| invalid("retry", e.to_string()))?;
        Ok(())
    }
}

/// `template` with `{app}` (slug of the display name), `{app_id}` and `{object_id}` filled in.
pub fn credential_secret_name(
    template: &str,
    app_name: &str,
    app_id: &str,
    object_id: &str,
) -> String {
    let slug: String = app_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    template
        .replace("{app}", &slug)
        .replace("{app_id}", app_id)
        .replace("{object_id}", object_id)
}

/// The secret a rotated credential of `f` is published to: `credential_secret_name` filled in
/// from the finding (`-certificate` appended for a certificate, so an application with both
/// kinds keeps its client secret readable under the configured name).
pub(crate) fn publish_secret_name(config: &AzureConfig, f: &closeout_contract::Finding) -> String {
    let mut name = credential_secret_name(
        &config.credential_secret_name,
        f.attr("app_name").unwrap_or(&f.resource),
        f.attr("app_id").unwrap_or(""),
        f.attr("object_id").unwrap_or(&f.resource),
    );
    if f.kind == crate::capabilities::kinds::APP_CERTIFICATE {
        name.push_str("-certificate");
    }
    name
}

impl closeout_contract::ProviderConfig for AzureConfig {
    type Error = AzureError;

    fn validate(&self) -> Result<(), AzureError> {
        AzureConfig::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> AzureConfig {
        AzureConfig {
            tenant_id: "72f988bf-0000-4000-8000-00000000c105".into(),
            client_id: "closeout".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_with_ids_are_valid() {
        valid().validate().unwrap();
        assert!(AzureConfig::default().validate().is_err());
    }

    #[test]
    fn unknown_fields_and_a_secret_in_the_config_are_refused() {
        let err = toml::from_str::<AzureConfig>("client_secret = \"x\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `client_secret`"),
            "{err}"
        );
        let c: AzureConfig = toml::from_str(
            "tenant_id = \"t\"\nclient_id = \"c\"\nhost_overrides = { \"lowkey-vault.local\" = \"127.0.0.1\" }\nuser_match = [\"upn\"]",
        )
        .unwrap();
        assert_eq!(c.user_match, vec![UserMatch::Upn]);
        assert_eq!(c.host_overrides.len(), 1);
        c.validate().unwrap();
    }

    #[test]
    fn secret_names_are_slugs() {
        assert_eq!(
            credential_secret_name("app-{app}-credential", "Payments API (prod)", "x", "o"),
            "app-payments-api-prod-credential"
        );
        assert_eq!(
            credential_secret_name("{app_id}", "n", "123-abc", "o"),
            "123-abc"
        );
        // The default tells apart names that differ only in case or spacing, and an
        // application from its own service principal.
        let d = AzureConfig::default().credential_secret_name;
        assert_ne!(
            credential_secret_name(&d, "Payments API", "a1", "obj-1"),
            credential_secret_name(&d, "payments  api", "a1", "obj-2")
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases: Vec<(AzureConfig, &str)> = vec![
            (
                AzureConfig {
                    tenant_id: "".into(),
                    ..valid()
                },
                "tenant_id",
            ),
            (
                AzureConfig {
                    arm_endpoint: "http://127.0.0.1:8444".into(),
                    ..valid()
                },
                "arm_endpoint",
            ),
            (
                AzureConfig {
                    graph_endpoint: "https://graph/v1.0".into(),
                    ..valid()
                },
                "graph_endpoint",
            ),
            (
                AzureConfig {
                    key_vault_api_version: "latest".into(),
                    ..valid()
                },
                "key_vault_api_version",
            ),
            (
                AzureConfig {
                    user_match: vec![],
                    ..valid()
                },
                "user_match",
            ),
            (
                AzureConfig {
                    credential_secret_name: "fixed".into(),
                    ..valid()
                },
                "credential_secret_name",
            ),
            (
                AzureConfig {
                    credential_vault: Some("http://kv".into()),
                    ..valid()
                },
                "credential_vault",
            ),
            (
                AzureConfig {
                    max_in_flight: Some(0),
                    ..valid()
                },
                "max_in_flight",
            ),
        ];
        for (c, field) in cases {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{field}: {err}");
        }
    }
}
