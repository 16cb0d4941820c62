//! The SCIM provider's configuration (`[providers.scim]`, one `[[providers.scim.apps]]` per
//! downstream app) and its pure validation.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which SCIM attribute identifies the person in one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchAttribute {
    /// `externalId`
    #[serde(rename = "externalId")]
    ExternalId,
    /// `userName`
    #[serde(rename = "userName")]
    UserName,
    /// `emails.value` (any of the user's emails)
    #[serde(rename = "email")]
    Email,
}

impl MatchAttribute {
    /// The attribute path in a SCIM filter.
    pub fn filter_path(self) -> &'static str {
        match self {
            MatchAttribute::ExternalId => "externalId",
            MatchAttribute::UserName => "userName",
            MatchAttribute::Email => "emails.value",
        }
    }
}

/// Which form of the identity's name that attribute holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchValue {
    /// The identity's id (the HR employee id).
    Id,
    /// The work email.
    Email,
    /// The email's local part.
    EmailLocalPart,
}

/// What the leaver does to the person's account in one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaverMode {
    /// `PATCH` `active` to false (the account stays, for audit).
    Deactivate,
    /// `DELETE` the User.
    Delete,
}

/// One downstream app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The app's name in findings and policies (`[a-z0-9_-]`).
    pub name: String,
    /// The SCIM base URL (`https://app.example.com/scim/v2`).
    pub base_url: String,
    /// The variable holding the bearer token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file whose first line is the bearer token (wins over `token_env`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The attribute that identifies the person.
    #[serde(rename = "match")]
    pub match_attribute: MatchAttribute,
    /// The form of the identity's name it holds (default: `id` for externalId, `email`
    /// otherwise).
    #[serde(default)]
    pub match_value: Option<MatchValue>,
    /// What the leaver does.
    #[serde(default = "default_leaver")]
    pub leaver: LeaverMode,
    /// `count` of each page.
    #[serde(default = "default_page")]
    pub page_size: usize,
}

fn default_leaver() -> LeaverMode {
    LeaverMode::Deactivate
}

fn default_page() -> usize {
    100
}

impl AppConfig {
    /// The form of the identity's name the match attribute holds.
    pub fn value_form(&self) -> MatchValue {
        self.match_value.unwrap_or(match self.match_attribute {
            MatchAttribute::ExternalId => MatchValue::Id,
            _ => MatchValue::Email,
        })
    }
}

/// Configuration of the SCIM provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScimConfig {
    /// The apps, each its own SCIM service provider.
    pub apps: Vec<AppConfig>,
    /// Calls in flight at most (all apps together).
    pub max_in_flight: usize,
    /// Calls started per second at most.
    pub requests_per_second: f64,
    /// Retries of reads (`GET`): 5xx, 429 with `Retry-After`, no answer.
    pub retry: closeout_contract::RetryPolicy,
}

impl Default for ScimConfig {
    fn default() -> Self {
        ScimConfig {
            apps: Vec::new(),
            max_in_flight: 8,
            requests_per_second: 20.0,
            retry: closeout_contract::RetryPolicy::default(),
        }
    }
}

/// Errors building the SCIM provider from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ScimError {
    /// A field is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// The field (`apps[1].base_url`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// An app's token could not be read.
    #[error("apps {app}: {message}")]
    Token {
        /// The app.
        app: String,
        /// Why.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

impl From<ScimError> for closeout_contract::ProviderError {
    fn from(e: ScimError) -> Self {
        closeout_contract::ProviderError::Config {
            provider: crate::capabilities::PROVIDER,
            message: e.to_string(),
        }
    }
}

impl ScimConfig {
    /// Check every field without I/O.
    pub fn validate(&self) -> Result<(), ScimError> {
        let bad = |field: String, message: &str| {
            Err(ScimError::Invalid {
                field,
                message: message.to_string(),
            })
        };
        if self.apps.is_empty() {
            return bad("apps".into(), "configure at least one app");
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, a) in self.apps.iter().enumerate() {
            let f = |x: &str| format!("apps[{i}].{x}");
            if a.name.is_empty()
                || !a
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return bad(f("name"), "must be 1+ characters of a-z, 0-9, - and _");
            }
            if !names.insert(a.name.as_str()) {
                return bad(f("name"), "names must be unique");
            }
            if !(a.base_url.starts_with("http://") || a.base_url.starts_with("https://"))
                || a.base_url.contains(char::is_whitespace)
            {
                return bad(f("base_url"), "must be an http:// or https:// URL");
            }
            if a.token_env.is_none() && a.token_file.is_none() {
                return bad(f("token_env"), "set token_env or token_file");
            }
            if a.page_size == 0 || a.page_size > 1000 {
                return bad(f("page_size"), "must be 1-1000");
            }
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight".into(), "must be at least 1");
        }
        if !(self.requests_per_second.is_finite() && self.requests_per_second > 0.0) {
            return bad("requests_per_second".into(), "must be a positive number");
        }
        self.retry.validate().map_err(|e| ScimError::Invalid {
            field: "retry".into(),
            message: e.to_string(),
        })
    }
}

impl closeout_contract::ProviderConfig for ScimConfig {
    type Error = ScimError;
    fn validate(&self) -> Result<(), ScimError> {
        ScimConfig::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_parse_and_validate() {
        let c: ScimConfig = serde_json::from_value(serde_json::json!({"apps": [
            {"name": "wiki", "base_url": "http://w/scim/v2", "token_env": "T", "match": "externalId"},
            {"name": "crm", "base_url": "http://c/v2", "token_file": "/t", "match": "email", "leaver": "delete"}
        ]}))
        .unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.apps[0].value_form(), MatchValue::Id);
        assert_eq!(c.apps[1].value_form(), MatchValue::Email);
        assert_eq!(c.apps[1].leaver, LeaverMode::Delete);
        let mut dup = c.clone();
        dup.apps[1].name = "wiki".into();
        assert!(dup
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("apps[1].name"));
        assert!(ScimConfig::default().validate().is_err());
    }
}
