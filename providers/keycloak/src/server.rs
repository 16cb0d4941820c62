//! [`KeycloakProvider`] itself, `connect`, and the reads of the realm several modules share.

use crate::client::{CallError, Client};
use crate::config::{KeycloakConfig, KeycloakError};
use crate::model;
use closeout_contract::SecretValue;
use std::path::PathBuf;

/// The Keycloak provider for one realm.
pub struct KeycloakProvider {
    pub(crate) client: Client,
    pub(crate) config: KeycloakConfig,
    /// Held for the whole of every action. Keycloak's admin API updates a user or a client by
    /// PUT of its whole representation (a partial one drops attributes), so two actions on the
    /// same user or client running at once (a stage's actions run concurrently) can undo each
    /// other: a reassign-owner PUT read before a secret rotation writes the old secret back; a
    /// disable racing a credential removal was seen to leave the user enabled. Actions are
    /// few and quick; reads (resolve, live state) are not serialized.
    pub(crate) writes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for KeycloakProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeycloakProvider")
            .field("base_url", &self.config.base_url)
            .field("realm", &self.config.realm)
            .finish_non_exhaustive()
    }
}

/// Page size of every listing.
pub(crate) const PAGE: usize = 100;

impl KeycloakProvider {
    /// Validate the configuration, read the credential (file, else environment) and build the
    /// HTTP client. Makes no call to Keycloak.
    pub async fn connect(config: KeycloakConfig) -> Result<KeycloakProvider, KeycloakError> {
        config.validate()?;
        let credential = match &config.credential_file {
            Some(path) => read_credential_file(path)?,
            None => std::env::var(&config.credential_env)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .map(SecretValue::new)
                .ok_or_else(|| KeycloakError::NoCredential {
                    env: config.credential_env.clone(),
                })?,
        };
        let client = Client::new(&config, credential)?;
        Ok(KeycloakProvider {
            client,
            config,
            writes: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn realm(&self) -> &str {
        &self.config.realm
    }

    /// A user by id; `None` when it no longer exists.
    pub(crate) async fn user(&self, id: &str) -> Result<Option<model::User>, CallError> {
        match self
            .client
            .admin("GET", &format!("/users/{}", urlencoding::encode(id)), None)
            .await
        {
            Ok(u) => Ok(u),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A list under the user (`sessions`, `credentials`, ...); empty when the user is gone.
    pub(crate) async fn user_list<T: serde::de::DeserializeOwned>(
        &self,
        user_id: &str,
        what: &str,
    ) -> Result<Vec<T>, CallError> {
        match self
            .client
            .admin::<Vec<T>>(
                "GET",
                &format!("/users/{}/{what}", urlencoding::encode(user_id)),
                None,
            )
            .await
        {
            Ok(v) => Ok(v.unwrap_or_default()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The user's direct groups (every page).
    pub(crate) async fn user_groups(&self, user_id: &str) -> Result<Vec<model::Group>, CallError> {
        let mut out = Vec::new();
        loop {
            let page: Vec<model::Group> = self
                .user_list(
                    user_id,
                    &format!(
                        "groups?briefRepresentation=false&first={}&max={PAGE}",
                        out.len()
                    ),
                )
                .await?;
            let n = page.len();
            out.extend(page);
            if n < PAGE {
                return Ok(out);
            }
        }
    }

    /// The user's direct role mappings; empty when the user is gone.
    pub(crate) async fn user_mappings(&self, user_id: &str) -> Result<model::Mappings, CallError> {
        match self
            .client
            .admin(
                "GET",
                &format!("/users/{}/role-mappings", urlencoding::encode(user_id)),
                None,
            )
            .await
        {
            Ok(m) => Ok(m.unwrap_or_default()),
            Err(e) if e.is_not_found() => Ok(model::Mappings::default()),
            Err(e) => Err(e),
        }
    }

    /// Every client of the realm (every page).
    pub(crate) async fn clients(&self) -> Result<Vec<model::Client>, CallError> {
        let mut out = Vec::new();
        loop {
            let page: Vec<model::Client> = self
                .client
                .admin(
                    "GET",
                    &format!("/clients?first={}&max={PAGE}", out.len()),
                    None,
                )
                .await?
                .unwrap_or_default();
            let n = page.len();
            out.extend(page);
            if n < PAGE {
                return Ok(out);
            }
        }
    }

    /// A client by UUID; `None` when gone.
    pub(crate) async fn client_by_uuid(
        &self,
        uuid: &str,
    ) -> Result<Option<model::Client>, CallError> {
        match self
            .client
            .admin(
                "GET",
                &format!("/clients/{}", urlencoding::encode(uuid)),
                None,
            )
            .await
        {
            Ok(c) => Ok(c),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A client by clientId; `None` when there is none.
    pub(crate) async fn client_by_client_id(
        &self,
        client_id: &str,
    ) -> Result<Option<model::Client>, CallError> {
        let found: Vec<model::Client> = self
            .client
            .admin(
                "GET",
                &format!("/clients?clientId={}", urlencoding::encode(client_id)),
                None,
            )
            .await?
            .unwrap_or_default();
        Ok(found.into_iter().find(|c| c.client_id == client_id))
    }

    /// Where a client's secret is published: `<dir>/<realm>/<clientId>`.
    pub(crate) fn publish_path(&self, client_id: &str) -> Option<PathBuf> {
        self.config
            .secret_publish_dir
            .as_ref()
            .map(|d| d.join(&self.config.realm).join(sanitize(client_id)))
    }
}

/// A clientId as a file name: anything but `[A-Za-z0-9._-]` becomes `_`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn read_credential_file(path: &std::path::Path) -> Result<SecretValue, KeycloakError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeycloakError::CredentialFile {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let first = text.lines().next().unwrap_or("").trim();
    if first.is_empty() {
        return Err(KeycloakError::CredentialFile {
            path: path.display().to_string(),
            message: "the file is empty".into(),
        });
    }
    Ok(SecretValue::new(first))
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_ids_become_safe_file_names() {
        assert_eq!(super::sanitize("https://app/x"), "https___app_x");
        assert_eq!(super::sanitize("billing-sync"), "billing-sync");
    }
}
