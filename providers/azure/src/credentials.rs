//! Rotating an owned application's (or service principal's) credentials:
//! create the new one → publish it to the configured Key Vault secret → test it (client secrets:
//! a token request with it) → remove the old one. Never delete-then-create.
//!
//! The new credential's value exists only in Graph's `addPassword` answer (or the certificate
//! generated here) and in the request that publishes it; it is held in [`SecretValue`] and never
//! logged. Its display name carries the run id, so a retry after a crash recognises (and
//! replaces) a credential an earlier attempt added but may not have published.

use crate::capabilities::{CREDENTIAL_DISPLAY_PREFIX, PROVIDER, ROTATED_BY_RUN_TAG};
use crate::client::AzureProvider;
use crate::directory::object_path;
use crate::error::{attr, permanent};
use crate::http::Api;
use base64::Engine as _;
use closeout_contract::{ActionOutcome, ActionRequest, ProviderError, SecretValue, State};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    #[serde(default)]
    password_credentials: Vec<PasswordCredential>,
    #[serde(default)]
    key_credentials: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordCredential {
    key_id: String,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddedPassword {
    key_id: String,
    secret_text: Option<String>,
}

fn key_id_of(v: &serde_json::Value) -> &str {
    v.get("keyId").and_then(|k| k.as_str()).unwrap_or("")
}

fn display_of(v: &serde_json::Value) -> &str {
    v.get("displayName").and_then(|k| k.as_str()).unwrap_or("")
}

impl AzureProvider {
    async fn credentials(
        &self,
        collection: &str,
        id: &str,
    ) -> Result<Option<Credentials>, ProviderError> {
        let path = format!(
            "{}?$select=id,passwordCredentials,keyCredentials",
            object_path(collection, id)
        );
        match self
            .http
            .call::<Credentials>(Api::Graph, "GET", &path, None)
            .await
        {
            Ok(c) => Ok(c),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Where the new credential goes: (vault URI, secret name). A certificate goes to the
    /// name with `-certificate` appended, so an application with both kinds keeps its client
    /// secret readable under the configured name.
    fn publish_target(&self, action: &ActionRequest) -> Result<(String, String), ProviderError> {
        let f = &action.finding;
        let vault = self.config.credential_vault.clone().ok_or_else(|| {
            ProviderError::Config {
                provider: PROVIDER,
                message: format!(
                    "credential_vault is not set: refusing to rotate {} without a Key Vault to publish the new credential to",
                    f.display
                ),
            }
        })?;
        Ok((vault, crate::config::publish_secret_name(&self.config, f)))
    }

    fn publish_tags(action: &ActionRequest, credential: &str) -> BTreeMap<String, String> {
        let f = &action.finding;
        let mut tags = BTreeMap::from([
            (ROTATED_BY_RUN_TAG.to_string(), action.params.run_id.clone()),
            (
                "application".to_string(),
                f.attr("app_id").unwrap_or("").to_string(),
            ),
            ("credential".to_string(), credential.to_string()),
        ]);
        if let Some(owner) = &action.params.new_owner {
            tags.insert("owner".into(), owner.clone());
        }
        tags
    }

    /// The version of the publish target an earlier attempt of this rotation already wrote,
    /// with the credential it holds: the current version is tagged with this run and with one
    /// of `ours` (credentials carrying this rotation's marker). A retry after a lost answer
    /// (or a failure after publishing) then finishes from there instead of adding and
    /// publishing another credential (issue 14: two new versions where one was due).
    async fn published_earlier(
        &self,
        vault: &str,
        secret_name: &str,
        action: &ActionRequest,
        ours: &[&str],
    ) -> Result<Option<(String, String)>, ProviderError> {
        if ours.is_empty() {
            return Ok(None);
        }
        let Some(current) = self
            .data
            .current(vault, crate::object::ObjectType::Secrets, secret_name)
            .await?
        else {
            return Ok(None);
        };
        let run = current.tags.get(ROTATED_BY_RUN_TAG);
        let credential = current.tags.get("credential");
        Ok(match (run, credential) {
            (Some(run), Some(c))
                if *run == action.params.run_id
                    && ours.iter().any(|k| k.eq_ignore_ascii_case(c)) =>
            {
                Some((current.version, c.clone()))
            }
            _ => None,
        })
    }

    pub(crate) async fn rotate_app_password(
        &self,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let collection = attr(f, "collection")?;
        let object_id = attr(f, "object_id")?;
        let old_key = attr(f, "key_id")?;
        let (vault, secret_name) = self.publish_target(action)?;
        let Some(creds) = self.credentials(collection, object_id).await? else {
            return Err(permanent(format!("{} no longer exists", f.display)));
        };
        if !creds
            .password_credentials
            .iter()
            .any(|p| p.key_id.eq_ignore_ascii_case(old_key))
        {
            return Ok(ActionOutcome::already(
                State::Rotated,
                format!("{} was already replaced", f.display),
            ));
        }
        let marker = format!(
            "{CREDENTIAL_DISPLAY_PREFIX} {} {old_key}",
            action.params.run_id
        );
        let ours: Vec<&str> = creds
            .password_credentials
            .iter()
            .filter(|p| p.display_name.as_deref() == Some(marker.as_str()))
            .map(|p| p.key_id.as_str())
            .collect();
        if let Some((version, key_id)) = self
            .published_earlier(&vault, &secret_name, action, &ours)
            .await?
        {
            if let Some(secret) = self
                .data
                .secret_value(&vault, &secret_name, &version)
                .await?
            {
                for stale in ours.iter().filter(|k| !k.eq_ignore_ascii_case(&key_id)) {
                    self.remove_password(collection, object_id, stale).await?;
                }
                let tested = self.test_client_secret(action, &secret).await?;
                self.remove_password(collection, object_id, old_key).await?;
                return Ok(ActionOutcome::done(
                    State::Rotated,
                    format!(
                        "{}: new client secret {key_id}, published to {secret_name} (version {version}) in {vault} by an earlier attempt{tested}; old one removed",
                        f.display
                    ),
                ));
            }
        }
        // An earlier attempt's credential whose secret may never have been published: remove it
        // and start over (its value is unknown to us, so it can never be published now).
        for stale in ours {
            self.remove_password(collection, object_id, stale).await?;
        }
        let added: AddedPassword = self
            .http
            .call(
                Api::Graph,
                "POST",
                &format!("{}/addPassword", object_path(collection, object_id)),
                Some(&json!({ "passwordCredential": { "displayName": marker } })),
            )
            .await?
            .ok_or_else(|| permanent("addPassword returned no credential"))?;
        let secret = SecretValue::new(
            added
                .secret_text
                .ok_or_else(|| permanent("addPassword returned no secretText"))?,
        );
        let version = self
            .data
            .set_secret(
                &vault,
                &secret_name,
                &secret,
                Some("text/plain"),
                &Self::publish_tags(action, &added.key_id),
            )
            .await?;
        let tested = self.test_client_secret(action, &secret).await?;
        self.remove_password(collection, object_id, old_key).await?;
        Ok(ActionOutcome::done(
            State::Rotated,
            format!(
                "{}: new client secret {} published to {secret_name} (version {version}) in {vault}{tested}; old one removed",
                f.display, added.key_id
            ),
        ))
    }

    async fn remove_password(
        &self,
        collection: &str,
        object_id: &str,
        key_id: &str,
    ) -> Result<(), ProviderError> {
        let path = format!("{}/removePassword", object_path(collection, object_id));
        match self
            .http
            .call::<serde_json::Value>(Api::Graph, "POST", &path, Some(&json!({ "keyId": key_id })))
            .await
        {
            Ok(_) => Ok(()),
            // Already gone (Graph answers 400 or 404 for an unknown key id).
            Err(e) if matches!(e.status, Some(400) | Some(404)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Ask the authority for a token with the new client secret. Only meaningful for an
    /// application with a service principal in this tenant; real Entra may need a few seconds
    /// to replicate a new secret, so a failure is retried briefly before it counts.
    async fn test_client_secret(
        &self,
        action: &ActionRequest,
        secret: &SecretValue,
    ) -> Result<String, ProviderError> {
        let f = &action.finding;
        let Some(app_id) = f.attr("app_id").filter(|a| !a.is_empty()) else {
            return Ok(String::new());
        };
        let mut last = String::new();
        for attempt in 0..5u32 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_secs(u64::from(attempt))).await;
            }
            match self.http.token_for_app(app_id, secret).await {
                Ok(()) => return Ok(", tested (token issued)".into()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(permanent(format!(
            "the new client secret of {} was published but could not be used to get a token ({last}); the old one is kept",
            f.display
        )))
    }

    pub(crate) async fn rotate_app_certificate(
        &self,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let collection = attr(f, "collection")?;
        let object_id = attr(f, "object_id")?;
        let old_key = attr(f, "key_id")?;
        let (vault, secret_name) = self.publish_target(action)?;
        let Some(creds) = self.credentials(collection, object_id).await? else {
            return Err(permanent(format!("{} no longer exists", f.display)));
        };
        if !creds
            .key_credentials
            .iter()
            .any(|k| key_id_of(k).eq_ignore_ascii_case(old_key))
        {
            return Ok(ActionOutcome::already(
                State::Rotated,
                format!("{} was already replaced", f.display),
            ));
        }
        let marker = format!(
            "{CREDENTIAL_DISPLAY_PREFIX} {} {old_key}",
            action.params.run_id
        );
        let ours: Vec<&str> = creds
            .key_credentials
            .iter()
            .filter(|k| display_of(k) == marker)
            .map(key_id_of)
            .collect();
        if let Some((version, key_id)) = self
            .published_earlier(&vault, &secret_name, action, &ours)
            .await?
        {
            // Keep the published one, drop the old one and any other of this rotation's.
            let keys: Vec<serde_json::Value> = creds
                .key_credentials
                .iter()
                .filter(|k| {
                    let id = key_id_of(k);
                    !id.eq_ignore_ascii_case(old_key)
                        && (display_of(k) != marker || id.eq_ignore_ascii_case(&key_id))
                })
                .cloned()
                .collect();
            self.patch_keys(collection, object_id, &keys).await?;
            return Ok(ActionOutcome::done(
                State::Rotated,
                format!(
                    "{}: new certificate {key_id}, published to {secret_name} (version {version}) in {vault} by an earlier attempt; old one removed",
                    f.display
                ),
            ));
        }
        let subject = f.attr("app_name").unwrap_or("closeout-rotated");
        let (cert_der, bundle) = new_certificate(subject)?;
        let new_key_id = uuid::Uuid::new_v4().to_string();
        // Keep every other credential as it is (with its public key, which Graph returns under
        // `$select=keyCredentials`), drop an earlier attempt's, add the new one.
        let mut keys: Vec<serde_json::Value> = creds
            .key_credentials
            .iter()
            .filter(|k| display_of(k) != marker)
            .cloned()
            .collect();
        keys.push(json!({
            "keyId": new_key_id,
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
            "displayName": marker,
            "key": base64::engine::general_purpose::STANDARD.encode(&cert_der),
        }));
        self.patch_keys(collection, object_id, &keys).await?;
        let version = self
            .data
            .set_secret(
                &vault,
                &secret_name,
                &bundle,
                Some("application/x-pem-file"),
                &Self::publish_tags(action, &new_key_id),
            )
            .await?;
        // Graph's removeKey needs a proof-of-possession token signed by a valid certificate of
        // the application; PATCH keyCredentials without the old one works in every case.
        keys.retain(|k| !key_id_of(k).eq_ignore_ascii_case(old_key));
        self.patch_keys(collection, object_id, &keys).await?;
        Ok(ActionOutcome::done(
            State::Rotated,
            format!(
                "{}: new certificate {new_key_id} published to {secret_name} (version {version}) in {vault}; old one removed",
                f.display
            ),
        ))
    }

    async fn patch_keys(
        &self,
        collection: &str,
        object_id: &str,
        keys: &[serde_json::Value],
    ) -> Result<(), ProviderError> {
        self.http
            .call::<serde_json::Value>(
                Api::Graph,
                "PATCH",
                &object_path(collection, object_id),
                Some(&json!({ "keyCredentials": keys })),
            )
            .await?;
        Ok(())
    }
}

/// A self-signed client certificate for an application: its DER (for Graph) and the PEM of the
/// certificate and its private key (for the Key Vault secret the workload reads).
fn new_certificate(subject: &str) -> Result<(Vec<u8>, SecretValue), ProviderError> {
    let fail = |e: rcgen::Error| permanent(format!("cannot generate the certificate: {e}"));
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, subject);
    // Valid from yesterday (clock skew) for a year.
    use chrono::Datelike as _;
    let from = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let day = from.day().min(28) as u8;
    params.not_before = rcgen::date_time_ymd(from.year(), from.month() as u8, day);
    params.not_after = rcgen::date_time_ymd(from.year() + 1, from.month() as u8, day);
    let cert = params.self_signed(&key).map_err(fail)?;
    let bundle = SecretValue::new(format!("{}{}", cert.pem(), key.serialize_pem()));
    Ok((cert.der().to_vec(), bundle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_carry_a_private_key_that_debug_hides() {
        let (der, bundle) = new_certificate("payments").unwrap();
        assert!(!der.is_empty());
        assert!(bundle.expose().contains("BEGIN CERTIFICATE"));
        assert!(bundle.expose().contains("PRIVATE KEY"));
        assert!(!format!("{bundle:?}").contains("PRIVATE"));
    }
}
