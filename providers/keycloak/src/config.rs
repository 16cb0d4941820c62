//! The Keycloak provider's configuration (`[providers.keycloak]`) and its pure validation.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How Closeout signs in to the admin REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminAuth {
    /// `client_credentials` of a confidential client whose service account holds the
    /// `realm-management` roles (the recommended setup); its secret is the credential.
    ClientCredentials,
    /// `password` grant of an admin user (through `admin_client_id`, `admin-cli` by default);
    /// its password is the credential.
    Password,
}

/// A way the person's user is found in the realm, tried in the order listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by", content = "value")]
pub enum Correlation {
    /// A user attribute (`{ by = "attribute", value = "employee_id" }`) equal to the identity's
    /// id or email.
    Attribute(String),
    /// The username equal to the identity's id, email or email local part.
    Username,
    /// The user's email equal to the identity's email (case-insensitively).
    Email,
}

/// Configuration of the Keycloak provider. The admin credential (a client secret or a
/// password) is never part of the configuration text: it comes from the environment variable
/// `credential_env` names or from `credential_file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeycloakConfig {
    /// The server's base URL, e.g. `https://sso.example.com` (no `/admin`, no `/realms`).
    pub base_url: String,
    /// The realm whose users are resolved and acted on.
    pub realm: String,
    /// The realm Closeout signs in to (`master` for an admin user, usually `realm` for a
    /// service account).
    pub auth_realm: String,
    /// How Closeout signs in.
    pub auth: AdminAuth,
    /// The client Closeout signs in through (`admin-cli` for the password grant).
    pub admin_client_id: String,
    /// The admin user (password grant only).
    pub admin_username: Option<String>,
    /// The environment variable holding the credential (default `KEYCLOAK_ADMIN_CREDENTIAL`).
    pub credential_env: String,
    /// A file holding the credential (first line); wins over the environment.
    pub credential_file: Option<PathBuf>,
    /// How the person's user is found, in order; the first rule that finds exactly one user wins.
    pub correlation: Vec<Correlation>,
    /// Client attribute naming a client's owner (by identity id or email).
    pub owner_attribute: String,
    /// Directory a rotated client secret is published to, as `<dir>/<realm>/<clientId>` (mode
    /// 0600, replaced atomically); the retired value is kept beside it as `<clientId>.retired`
    /// for the verification probe. Required to rotate client secrets.
    pub secret_publish_dir: Option<PathBuf>,
    /// Keycloak calls in flight at most.
    pub max_in_flight: usize,
    /// Keycloak calls started per second at most.
    pub requests_per_second: f64,
    /// How reads are retried on 5xx, 429 and no answer.
    pub retry: closeout_contract::RetryPolicy,
}

impl Default for KeycloakConfig {
    fn default() -> Self {
        KeycloakConfig {
            base_url: String::new(),
            realm: String::new(),
            auth_realm: "master".into(),
            auth: AdminAuth::ClientCredentials,
            admin_client_id: "admin-cli".into(),
            admin_username: None,
            credential_env: "KEYCLOAK_ADMIN_CREDENTIAL".into(),
            credential_file: None,
            correlation: vec![
                Correlation::Attribute("employee_id".into()),
                Correlation::Email,
                Correlation::Username,
            ],
            owner_attribute: "owner".into(),
            secret_publish_dir: None,
            max_in_flight: 8,
            requests_per_second: 50.0,
            retry: closeout_contract::RetryPolicy::default(),
        }
    }
}

/// Errors building the Keycloak provider from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum KeycloakError {
    /// A field is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No credential in the file or the environment.
    #[error("no Keycloak admin credential: set {env} or `credential_file`")]
    NoCredential {
        /// The variable looked at.
        env: String,
    },
    /// The credential file could not be read.
    #[error("credential_file {path}: {message}")]
    CredentialFile {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl From<KeycloakError> for closeout_contract::ProviderError {
    fn from(e: KeycloakError) -> Self {
        closeout_contract::ProviderError::Config {
            provider: crate::capabilities::PROVIDER,
            message: e.to_string(),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> KeycloakError {
    KeycloakError::Invalid {
        field,
        message: message.into(),
    }
}

/// A realm, client id, attribute or username: non-empty, no `/`, no control characters.
fn validate_name(field: &'static str, v: &str) -> Result<(), KeycloakError> {
    if v.trim().is_empty() || v.len() > 255 || v.contains('/') || v.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("{v:?} must be 1-255 characters without `/` or control characters"),
        ));
    }
    Ok(())
}

impl KeycloakConfig {
    /// Check every field without I/O.
    pub fn validate(&self) -> Result<(), KeycloakError> {
        let rest = self
            .base_url
            .strip_prefix("http://")
            .or_else(|| self.base_url.strip_prefix("https://"))
            .ok_or_else(|| {
                invalid(
                    "base_url",
                    format!("{:?} must start with http:// or https://", self.base_url),
                )
            })?;
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() || rest.contains(char::is_whitespace) {
            return Err(invalid(
                "base_url",
                format!("{:?} has no host", self.base_url),
            ));
        }
        validate_name("realm", &self.realm)?;
        validate_name("auth_realm", &self.auth_realm)?;
        validate_name("admin_client_id", &self.admin_client_id)?;
        validate_name("owner_attribute", &self.owner_attribute)?;
        match (&self.auth, &self.admin_username) {
            (AdminAuth::Password, None) => {
                return Err(invalid(
                    "admin_username",
                    "the password grant needs admin_username",
                ))
            }
            (AdminAuth::Password, Some(u)) => validate_name("admin_username", u)?,
            (AdminAuth::ClientCredentials, Some(_)) => {
                return Err(invalid(
                    "admin_username",
                    "only the password grant takes an admin_username",
                ))
            }
            (AdminAuth::ClientCredentials, None) => {}
        }
        if self.credential_env.trim().is_empty() {
            return Err(invalid("credential_env", "must name a variable"));
        }
        if self.correlation.is_empty() {
            return Err(invalid("correlation", "needs at least one rule"));
        }
        for c in &self.correlation {
            if let Correlation::Attribute(a) = c {
                validate_name("correlation", a)?;
            }
        }
        if self.max_in_flight == 0 {
            return Err(invalid("max_in_flight", "must be at least 1"));
        }
        if !(self.requests_per_second.is_finite() && self.requests_per_second > 0.0) {
            return Err(invalid("requests_per_second", "must be a positive number"));
        }
        self.retry
            .validate()
            .map_err(|e| invalid("retry", e.to_string()))?;
        Ok(())
    }

    /// The base URL without a trailing `/`.
    pub(crate) fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }
}

impl closeout_contract::ProviderConfig for KeycloakConfig {
    type Error = KeycloakError;
    fn validate(&self) -> Result<(), KeycloakError> {
        KeycloakConfig::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> KeycloakConfig {
        KeycloakConfig {
            base_url: "http://127.0.0.1:8080/".into(),
            realm: "acme".into(),
            ..Default::default()
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(ok().validate().is_ok());
        assert_eq!(ok().base(), "http://127.0.0.1:8080");
        let bad = |c: KeycloakConfig| c.validate().unwrap_err().to_string();
        assert!(bad(KeycloakConfig {
            base_url: "ftp://x".into(),
            ..ok()
        })
        .starts_with("base_url"));
        assert!(bad(KeycloakConfig {
            realm: "a/b".into(),
            ..ok()
        })
        .starts_with("realm"));
        assert!(bad(KeycloakConfig {
            auth: AdminAuth::Password,
            ..ok()
        })
        .starts_with("admin_username"));
        assert!(bad(KeycloakConfig {
            correlation: vec![],
            ..ok()
        })
        .starts_with("correlation"));
    }

    #[test]
    fn toml_shape() {
        let c: KeycloakConfig = serde_json::from_value(serde_json::json!({
            "base_url": "http://kc", "realm": "acme",
            "correlation": [{"by": "attribute", "value": "employee_id"}, {"by": "email"}]
        }))
        .unwrap();
        assert_eq!(c.correlation[1], Correlation::Email);
        assert!(serde_json::from_value::<KeycloakConfig>(serde_json::json!({"nope": 1})).is_err());
    }
}
