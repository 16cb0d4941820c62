//! The Vault provider's configuration (`[providers.vault]`) and its pure validation.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Configuration of the Vault / OpenBao provider.
///
/// The token is never part of the configuration text: it comes from `VAULT_TOKEN` (or
/// `BAO_TOKEN`) in the environment, or from the file `token_file` names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// The server's address, e.g. `https://vault.example.com:8200`. Unset: `VAULT_ADDR` or
    /// `BAO_ADDR` from the environment.
    pub address: Option<String>,
    /// A file holding the token (first line). Unset: `VAULT_TOKEN`, else `BAO_TOKEN`.
    pub token_file: Option<PathBuf>,
    /// Vault Enterprise / OpenBao namespace sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// Which forms of the identity's name an entity name is compared with (case-insensitively).
    pub match_entity_name: Vec<NameRule>,
    /// Which forms of the identity's name an entity alias (under any auth mount) is compared with.
    pub match_alias_name: Vec<NameRule>,
    /// Entity metadata key that names the identity (by id or email).
    pub identity_key: String,
    /// Metadata / custom-metadata key on entities, tokens, secret-ids and KV secrets that names
    /// their owner (by id or email).
    pub owner_key: String,
    /// Lease prefixes whose leases are the person's, with `{id}`, `{email}` and `{local}` (the
    /// email local part) filled in, e.g. `database/creds/{local}/`. Reported as `lease` findings
    /// and revoked by id.
    pub lease_prefixes: Vec<String>,
    /// A file audit device's log (as the server writes it, readable by Closeout), read for the
    /// orphan tokens the person's tokens created and the leases their requests obtained.
    pub audit_log: Option<PathBuf>,
    /// The path of that audit device (`bao audit list`), used to HMAC accessors through
    /// `sys/audit-hash/<audit_device>` so they can be compared with the log.
    pub audit_device: String,
    /// KV v2 API path a rotated AppRole secret-id is published to; `{role}` is replaced by the
    /// role name.
    pub nhi_secret_id_path: String,
    /// KV v2 API path where the rotation of a KV version 1 secret is recorded (v1 keeps no
    /// metadata, so nothing else says when its value changed); `{path}` is replaced by the
    /// secret's path, mount included (`kv/app/db`). Records under it are Closeout's own
    /// bookkeeping (a time and a run id, no secret) and are not reported as secrets.
    pub kv1_rotation_record_path: String,
    /// How many Vault calls may be in flight at once (also bounds concurrent token lookups).
    pub max_in_flight: usize,
    /// How many Vault calls may start per second (token bucket).
    pub requests_per_second: f64,
    /// How reads (`GET`, `LIST`) are retried on 5xx, 429 and no answer (`[providers.vault.retry]`):
    /// jittered exponential backoff honouring `Retry-After`, within a deadline. Writes are
    /// retried by the executor, action by action.
    pub retry: closeout_contract::RetryPolicy,
}

/// A form of the identity's name that a Vault name may equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NameRule {
    Id,
    Email,
    EmailLocalPart,
}

impl NameRule {
    pub fn describe(self) -> &'static str {
        match self {
            NameRule::Id => "id",
            NameRule::Email => "email",
            NameRule::EmailLocalPart => "email local part",
        }
    }

    /// The identity's name in this form, if it has one.
    pub fn value(self, identity: &closeout_contract::Identity) -> Option<String> {
        match self {
            NameRule::Id => Some(identity.id.clone()).filter(|s| !s.is_empty()),
            NameRule::Email => Some(identity.email.clone()).filter(|s| !s.is_empty()),
            NameRule::EmailLocalPart => identity.email_local_part(),
        }
    }
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            address: None,
            token_file: None,
            namespace: None,
            match_entity_name: vec![NameRule::Id, NameRule::Email, NameRule::EmailLocalPart],
            match_alias_name: vec![NameRule::Email, NameRule::EmailLocalPart],
            identity_key: "identity".into(),
            owner_key: "owner".into(),
            lease_prefixes: Vec::new(),
            audit_log: None,
            audit_device: "file".into(),
            nhi_secret_id_path: "secret/data/closeout/approle/{role}".into(),
            kv1_rotation_record_path: "secret/data/closeout/kv1-rotations/{path}".into(),
            // Vault and OpenBao limit no client unless an operator configures a rate-limit quota
            // (`sys/quotas/rate-limit`, answered 429, which the gate adapts to): the in-flight
            // cap is the bound, sized so that at 50 ms a round trip 32 calls keep 640/s going;
            // the rate only guards against a runaway.
            max_in_flight: 32,
            requests_per_second: 5000.0,
            retry: closeout_contract::RetryPolicy::default(),
        }
    }
}

/// Errors building the Vault provider from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(
        "no Vault address: set `address` in the vault provider configuration, or VAULT_ADDR / BAO_ADDR"
    )]
    NoAddress,
    #[error("no Vault token: set VAULT_TOKEN or BAO_TOKEN, or `token_file`")]
    NoToken,
    #[error("token_file {path}: {message}")]
    TokenFile { path: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl From<VaultError> for closeout_contract::ProviderError {
    fn from(e: VaultError) -> Self {
        closeout_contract::ProviderError::Config {
            provider: crate::capabilities::PROVIDER,
            message: e.to_string(),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> VaultError {
    VaultError::Invalid {
        field,
        message: message.into(),
    }
}

/// An `http://` or `https://` URL with a host and nothing after the authority but an optional `/`.
pub(crate) fn validate_address(field: &'static str, url: &str) -> Result<(), VaultError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            invalid(
                field,
                format!("{url:?} must start with http:// or https://"),
            )
        })?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains('/') || authority.contains(char::is_whitespace) {
        return Err(invalid(
            field,
            format!("{url:?} must be a scheme and host[:port] only, e.g. https://vault:8200"),
        ));
    }
    Ok(())
}

fn validate_key(field: &'static str, key: &str) -> Result<(), VaultError> {
    if key.is_empty() || key.len() > 128 || key.chars().any(|c| c.is_control() || c == ' ') {
        return Err(invalid(
            field,
            format!("{key:?} must be 1-128 characters without spaces"),
        ));
    }
    Ok(())
}

impl VaultConfig {
    /// The KV v2 mount and key recording the rotation of the KV v1 secret `path` (mount
    /// included), and the data-path prefix every such record starts with.
    pub(crate) fn kv1_record(&self, path: &str) -> (String, String) {
        let full = self.kv1_rotation_record_path.replace("{path}", path);
        match full.split_once("/data/") {
            Some((mount, key)) => (format!("{mount}/"), key.to_string()),
            // validate() requires `/data/`; an unvalidated config records at the mount root.
            None => (String::new(), full),
        }
    }

    /// The data-path prefix of every KV v1 rotation record.
    pub(crate) fn kv1_record_prefix(&self) -> &str {
        self.kv1_rotation_record_path.trim_end_matches("{path}")
    }

    /// Check every field without any I/O.
    pub fn validate(&self) -> Result<(), VaultError> {
        if let Some(address) = &self.address {
            validate_address("address", address)?;
        }
        if let Some(ns) = &self.namespace {
            if ns.trim().is_empty() || ns.contains("..") {
                return Err(invalid(
                    "namespace",
                    format!("{ns:?} is not a namespace path"),
                ));
            }
        }
        validate_key("identity_key", &self.identity_key)?;
        validate_key("owner_key", &self.owner_key)?;
        for prefix in &self.lease_prefixes {
            if prefix.is_empty() || prefix.starts_with('/') || prefix.contains("..") {
                return Err(invalid(
                    "lease_prefixes",
                    format!("{prefix:?} must be a relative lease prefix such as database/creds/"),
                ));
            }
        }
        let device = self.audit_device.trim_end_matches('/');
        if device.is_empty() || device.contains("..") || device.starts_with('/') {
            return Err(invalid(
                "audit_device",
                format!(
                    "{:?} must be an audit device path such as file",
                    self.audit_device
                ),
            ));
        }
        if let Some(log) = &self.audit_log {
            if log.as_os_str().is_empty() {
                return Err(invalid("audit_log", "must be the path of a file audit log"));
            }
        }
        let p = &self.nhi_secret_id_path;
        if !p.contains("{role}") || !p.contains("/data/") || p.starts_with('/') || p.contains("..")
        {
            return Err(invalid(
                "nhi_secret_id_path",
                format!(
                    "{p:?} must be a KV v2 data path containing {{role}}, e.g. secret/data/closeout/approle/{{role}}"
                ),
            ));
        }
        let p = &self.kv1_rotation_record_path;
        if !p.ends_with("{path}")
            || p.matches("{path}").count() != 1
            || !p.contains("/data/")
            || p.starts_with('/')
            || p.contains("..")
        {
            return Err(invalid(
                "kv1_rotation_record_path",
                format!(
                    "{p:?} must be a KV v2 data path ending in {{path}}, e.g. secret/data/closeout/kv1-rotations/{{path}}"
                ),
            ));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 256 {
            return Err(invalid("max_in_flight", "must be between 1 and 256"));
        }
        if !(self.requests_per_second.is_finite() && self.requests_per_second > 0.0) {
            return Err(invalid("requests_per_second", "must be a positive number"));
        }
        self.retry
            .validate()
            .map_err(|e| invalid("retry", e.to_string()))?;
        Ok(())
    }
}

impl closeout_contract::ProviderConfig for VaultConfig {
    type Error = VaultError;

    fn validate(&self) -> Result<(), VaultError> {
        VaultConfig::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        VaultConfig::default().validate().unwrap();
    }

    #[test]
    fn unknown_fields_and_token_in_config_are_refused() {
        let err = serde_json::from_str::<VaultConfig>(r#"{"token":"s.abc"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `token`"), "{err}");
        let c: VaultConfig =
            serde_json::from_str(r#"{"address":"http://127.0.0.1:8200","owner_key":"own"}"#)
                .unwrap();
        assert_eq!(c.owner_key, "own");
        assert_eq!(c.identity_key, "identity");
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            VaultConfig {
                address: Some("vault:8200".into()),
                ..Default::default()
            },
            VaultConfig {
                address: Some("http://vault:8200/v1".into()),
                ..Default::default()
            },
            VaultConfig {
                owner_key: "".into(),
                ..Default::default()
            },
            VaultConfig {
                nhi_secret_id_path: "secret/closeout".into(),
                ..Default::default()
            },
            VaultConfig {
                kv1_rotation_record_path: "secret/data/closeout/{path}/x".into(),
                ..Default::default()
            },
            VaultConfig {
                max_in_flight: 0,
                ..Default::default()
            },
            VaultConfig {
                requests_per_second: f64::NAN,
                ..Default::default()
            },
            VaultConfig {
                lease_prefixes: vec!["../x".into()],
                ..Default::default()
            },
        ];
        let fields = [
            "address",
            "address",
            "owner_key",
            "nhi_secret_id_path",
            "kv1_rotation_record_path",
            "max_in_flight",
            "requests_per_second",
            "lease_prefixes",
        ];
        for (c, field) in cases.iter().zip(fields) {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
