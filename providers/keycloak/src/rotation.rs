//! Rotation of an owned client's secret: regenerate → publish → prove the new secret
//! authenticates → prove the old one is refused. And the probe of a retired secret.
//!
//! Publishing writes `<secret_publish_dir>/<realm>/<clientId>` (mode 0600, through a temporary
//! file and a rename), the retired value beside it as `<clientId>.retired` (the verification
//! probe tries it later), and `<clientId>.rotation` holding the idempotency key of the action
//! that published it (no secret): an action whose key is recorded and whose published value is
//! still the client's current secret is already done.

use crate::capabilities::PROVIDER;
use crate::findings::need;
use crate::model;
use crate::server::KeycloakProvider;
use closeout_contract::{ActionOutcome, Finding, ProbeOutcome, ProviderError, SecretValue, State};
use std::io::Write;
use std::path::{Path, PathBuf};

fn permanent(message: impl Into<String>) -> ProviderError {
    ProviderError::Permanent {
        provider: PROVIDER,
        message: message.into(),
    }
}

fn sibling(p: &Path, ext: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(ext);
    PathBuf::from(s)
}

/// Write `value` to `path` with mode 0600, replacing it atomically.
fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = sibling(path, ".tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(&tmp)?;
        file.write_all(value.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

fn read_secret(path: &Path) -> Option<SecretValue> {
    let text = std::fs::read_to_string(path).ok()?;
    let v = text.trim();
    (!v.is_empty()).then(|| SecretValue::new(v))
}

impl KeycloakProvider {
    /// Whether `secret` authenticates `client_id`: a client-credentials grant for a client with a
    /// service account, else client authentication at the token introspection endpoint.
    /// `Ok(Err(error))` is the refusal (`invalid_client`, `unauthorized_client`).
    pub(crate) async fn client_authenticates(
        &self,
        client_id: &str,
        secret: &SecretValue,
        service_account: bool,
    ) -> Result<Result<(), String>, ProviderError> {
        if service_account {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret.expose()),
            ];
            return Ok(match self.client.grant(self.realm(), &form).await? {
                Ok(_) => Ok(()),
                Err(r) => Err(r.error),
            });
        }
        let form = [
            ("client_id", client_id),
            ("client_secret", secret.expose()),
            ("token", "closeout-probe"),
        ];
        Ok(self
            .client
            .introspect(self.realm(), &form)
            .await?
            .map_err(|r| r.error))
    }

    pub(crate) async fn rotate_secret(
        &self,
        f: &Finding,
        key: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        let uuid = need(f, "client_uuid")?;
        let client_id = f.resource.as_str();
        let published = self.publish_path(client_id).ok_or_else(|| ProviderError::Config {
            provider: PROVIDER,
            message: "rotating a client secret needs secret_publish_dir (where the new secret is published)".into(),
        })?;
        let client: model::Client = self
            .client_by_uuid(uuid)
            .await?
            .ok_or_else(|| permanent(format!("client {client_id} no longer exists")))?;
        let sa = client.service_accounts_enabled;
        let secret_path = format!("/clients/{}/client-secret", urlencoding::encode(uuid));
        let current: model::ClientSecret = self
            .client
            .admin("GET", &secret_path, None)
            .await?
            .ok_or_else(|| permanent(format!("client {client_id} has no secret")))?;
        let current = current
            .value
            .map(SecretValue::new)
            .ok_or_else(|| permanent(format!("client {client_id} has no secret")))?;
        let record = sibling(&published, ".rotation");
        let done_by = std::fs::read_to_string(&record).unwrap_or_default();
        if done_by.trim() == key && read_secret(&published).as_ref() == Some(&current) {
            return Ok(ActionOutcome::already(
                State::Rotated,
                format!("{} already rotated and published by this action", f.display),
            ));
        }
        let io = |what: &str, p: &Path, e: std::io::Error| {
            permanent(format!("rotating the secret of client {client_id}: {what} {} failed: {e}; run the action again", p.display()))
        };
        // Before regenerating: the value about to be retired, and that this action is about to
        // regenerate. Killed between the regeneration and the publication, the action finds
        // both on its next run and a live secret that is no longer the retired one: its own
        // regeneration, which it publishes rather than regenerating again.
        let retired = sibling(&published, ".retired");
        let pending = sibling(&published, ".pending");
        let interrupted = std::fs::read_to_string(&pending).unwrap_or_default().trim() == key;
        let (new, current) = match read_secret(&retired) {
            Some(old) if interrupted && old != current => (current, old),
            _ => {
                write_private(&retired, current.expose())
                    .map_err(|e| io("writing", &retired, e))?;
                write_private(&pending, key).map_err(|e| io("recording", &pending, e))?;
                let new: model::ClientSecret = self
                    .client
                    .admin("POST", &secret_path, None)
                    .await?
                    .ok_or_else(|| {
                        permanent(format!(
                            "regenerating the secret of {client_id} answered nothing"
                        ))
                    })?;
                let new = new.value.map(SecretValue::new).ok_or_else(|| {
                    permanent(format!(
                        "regenerating the secret of {client_id} answered no value"
                    ))
                })?;
                (new, current)
            }
        };
        // Publish.
        write_private(&published, new.expose()).map_err(|e| io("publishing to", &published, e))?;
        write_private(&record, key).map_err(|e| io("recording", &record, e))?;
        // Test: the new one works, the old one is refused.
        if let Err(error) = self.client_authenticates(client_id, &new, sa).await? {
            return Err(permanent(format!(
                "the new secret of client {client_id} (published to {}) was refused: {error}",
                published.display()
            )));
        }
        match self.client_authenticates(client_id, &current, sa).await? {
            Ok(()) => Err(permanent(format!(
                "the old secret of client {client_id} still authenticates after regeneration (is a client secret rotation policy keeping it?)"
            ))),
            Err(error) => Ok(ActionOutcome::done(
                State::Rotated,
                format!(
                    "regenerated the secret of client {client_id}, published it to {}, the new secret authenticates ({}), the old one is refused ({error})",
                    published.display(),
                    if sa { "client-credentials grant" } else { "introspection" }
                ),
            )),
        }
    }

    pub(crate) async fn probe_retired_secret(
        &self,
        f: &Finding,
    ) -> Result<Option<ProbeOutcome>, ProviderError> {
        let client_id = f.resource.as_str();
        let Some(retired) = self
            .publish_path(client_id)
            .and_then(|p| read_secret(&sibling(&p, ".retired")))
        else {
            return Ok(None);
        };
        let sa = f.attr("service_account") == Some("true");
        let probe = format!(
            "{} with the retired secret of client {client_id}",
            if sa {
                "client-credentials grant"
            } else {
                "token introspection"
            }
        );
        Ok(Some(
            match self.client_authenticates(client_id, &retired, sa).await? {
                Ok(()) => ProbeOutcome {
                    probe,
                    dead: false,
                    detail: "the retired secret still authenticates".into(),
                },
                Err(error) => ProbeOutcome {
                    probe,
                    dead: true,
                    detail: format!("refused: {error}"),
                },
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_replaced_and_mode_0600() {
        let dir = std::env::temp_dir().join(format!("closeout-kc-rot-{}", std::process::id()));
        let p = dir.join("realm").join("client");
        write_private(&p, "one").unwrap();
        write_private(&p, "two").unwrap();
        assert_eq!(read_secret(&p).unwrap().expose(), "two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            sibling(&p, ".retired"),
            dir.join("realm").join("client.retired")
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
