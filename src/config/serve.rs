//! `[serve]`: how `closeout serve` listens, authenticates and decides what runs on its own.
//!
//! Secrets (webhook signing secrets, the SCIM and API bearer tokens) are never configuration
//! text: each comes from a file the section names, else an environment variable.

use crate::trigger::Trigger;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The `[serve]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Where to listen. Default `127.0.0.1:8787` (put a TLS-terminating proxy in front).
    pub listen: SocketAddr,
    /// Webhook signing secrets (`whsec_...`), one per line; several during a rotation of the
    /// signing secret. Unset: `CLOSEOUT_WEBHOOK_SECRETS` (separated by spaces or commas).
    pub webhook_secrets_file: Option<PathBuf>,
    /// How far a `webhook-timestamp` may be from now, either way.
    pub webhook_tolerance_secs: u64,
    /// Largest request body accepted (webhooks and SCIM).
    pub max_body_bytes: usize,
    /// The SCIM bearer token. Unset: `CLOSEOUT_SCIM_TOKEN`; without one `/scim/v2` answers 401.
    pub scim_token_file: Option<PathBuf>,
    /// The bearer token of the read and approval API (`/v1/runs`, `/v1/identities`). Unset:
    /// `CLOSEOUT_API_TOKEN`; without one those routes answer 401.
    pub api_token_file: Option<PathBuf>,
    /// Events processed at once (never two for one identity).
    pub workers: usize,
    /// Triggers applied as soon as their event is processed; every other trigger (and any event
    /// of a protected identity) creates a run that waits for `closeout approve` or
    /// `POST /v1/runs/{id}/approve`.
    pub auto_apply: Vec<Trigger>,
    /// After SIGTERM: how long in-flight runs may take to finish before the process exits.
    pub shutdown_grace_secs: u64,
    /// Poll the `[source]` HR export this often and enqueue the joiner, mover and leaver events
    /// that take the last export seen to the current one (0: off).
    pub source_poll_secs: u64,
    /// Run reconcile this often and report drift in the log and `closeout_drift` (0: off).
    pub reconcile_every_secs: u64,
    /// Compute what the rotation policy makes due this often and store one `rotation` event per
    /// identity with due findings (0: off).
    pub rotation_every_secs: u64,
    /// Look for time-bound grants past their expiry this often and store one `mover` event
    /// (same attributes: converge to the policy) per identity holding one (0: off).
    pub expiry_every_secs: u64,
    /// How long a client has to send a request's headers, from its first byte (from the
    /// connection's opening for its first request); then the connection is closed.
    pub header_read_timeout_secs: u64,
    /// How long a kept-alive connection may wait for its next request before it is closed.
    pub idle_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Who may read `/metrics`: `"token"` (the read API's bearer token) or `"none"` (anyone).
    pub metrics_auth: MetricsAuth,
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MetricsAuth {
    /// The read API's bearer token (`api_token_file` / `CLOSEOUT_API_TOKEN`).
    #[serde(rename = "token")]
    Token,
    /// Anyone who can reach the listener (a scraper on a trusted network).
    #[serde(rename = "none")]
    Unauthenticated,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            webhook_secrets_file: None,
            webhook_tolerance_secs: 300,
            max_body_bytes: 64 * 1024,
            scim_token_file: None,
            api_token_file: None,
            workers: 2,
            auto_apply: vec![Trigger::Leaver, Trigger::Incident],
            shutdown_grace_secs: 30,
            source_poll_secs: 0,
            reconcile_every_secs: 0,
            rotation_every_secs: 0,
            expiry_every_secs: 0,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 256,
            metrics_auth: MetricsAuth::Token,
        }
    }
}

/// A `[serve]` value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[serve] {field} must be between {min} and {max}")]
pub struct OutOfRange {
    /// The field.
    pub field: &'static str,
    /// The smallest value accepted.
    pub min: u64,
    /// The largest value accepted.
    pub max: u64,
}

/// A secret file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {kind}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (the I/O error's kind; never the content).
        kind: std::io::ErrorKind,
    },
    /// The file holds nothing.
    #[error("{0} is empty")]
    Empty(PathBuf),
}

impl ServeConfig {
    /// Pure checks.
    pub fn validate(&self) -> Result<(), OutOfRange> {
        let check = |field: &'static str, value: u64, min: u64, max: u64| {
            if value < min || value > max {
                Err(OutOfRange { field, min, max })
            } else {
                Ok(())
            }
        };
        check("workers", self.workers as u64, 1, 64)?;
        check(
            "max_body_bytes",
            self.max_body_bytes as u64,
            1024,
            16 * 1024 * 1024,
        )?;
        check(
            "webhook_tolerance_secs",
            self.webhook_tolerance_secs,
            1,
            3600,
        )?;
        check(
            "header_read_timeout_secs",
            self.header_read_timeout_secs,
            1,
            300,
        )?;
        check("idle_timeout_secs", self.idle_timeout_secs, 1, 3600)?;
        check("max_connections", self.max_connections as u64, 1, 65_536)?;
        Ok(())
    }

    /// Whether runs of `trigger` start without waiting for an approval.
    pub fn applies_automatically(&self, trigger: Trigger) -> bool {
        self.auto_apply.contains(&trigger)
    }
}

/// Read one secret from `file` (first line) or the environment variable `env`.
pub fn read_secret(file: Option<&PathBuf>, env: &str) -> Result<Option<String>, SecretFileError> {
    match file {
        Some(path) => {
            let text = read(path)?;
            let first = text.lines().next().unwrap_or("").trim().to_string();
            if first.is_empty() {
                return Err(SecretFileError::Empty(path.clone()));
            }
            Ok(Some(first))
        }
        None => Ok(std::env::var(env).ok().filter(|v| !v.trim().is_empty())),
    }
}

/// Several secrets: the lines of `file`, or `env` split on spaces and commas.
pub fn read_secrets(file: Option<&PathBuf>, env: &str) -> Result<Vec<String>, SecretFileError> {
    let text = match file {
        Some(path) => read(path)?,
        None => std::env::var(env).unwrap_or_default(),
    };
    Ok(text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect())
}

fn read(path: &PathBuf) -> Result<String, SecretFileError> {
    std::fs::read_to_string(path).map_err(|e| SecretFileError::Read {
        path: path.clone(),
        kind: e.kind(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        ServeConfig::default().validate().unwrap();
        let bad: Result<ServeConfig, _> = toml::from_str("auto_apply = [\"fired\"]");
        assert!(bad.unwrap_err().to_string().contains("fired"));
        let c = ServeConfig {
            workers: 0,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("workers"));
        assert!(ServeConfig::default().applies_automatically(Trigger::Leaver));
        let c: ServeConfig =
            toml::from_str("metrics_auth = \"none\"\nmax_connections = 0").unwrap();
        assert_eq!(c.metrics_auth, MetricsAuth::Unauthenticated);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_connections"));
        assert_eq!(ServeConfig::default().metrics_auth, MetricsAuth::Token);
        assert!(!ServeConfig::default().applies_automatically(Trigger::Mover));
    }
}
