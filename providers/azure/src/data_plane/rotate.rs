//! Rotation on the data plane, where the three kinds differ in substance: a secret gets a new
//! random value, a key a new version of the same type, a certificate a new version from its own
//! policy; and publishing a value Closeout holds (a rotated application credential).

use super::client::KeyVaultData;
use super::error::{call_error, missing_id, refused, timed_out};
use super::kind::{ObjectKind, Secrets};
use super::model::{merged, version_of, Row};
use super::transport::VaultClients;
use crate::http::CallError;
use crate::object::ObjectType;
use azure_security_keyvault_certificates::models::{
    CertificateOperation, CreateCertificateParameters,
};
use azure_security_keyvault_keys::models::{CreateKeyParameters, CurveName, KeyOperation, KeyType};
use azure_security_keyvault_secrets::models::{SecretClientGetSecretOptions, SetSecretParameters};
use closeout_contract::rotation_strategy::{self, rotate_named};
use closeout_contract::{SecretValue, Shape};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long a certificate create may take before we stop waiting (Azure: seconds for `Self`).
const CERTIFICATE_WAIT: Duration = Duration::from_secs(120);

/// A plain secret's new value: 32 random bytes, base64url.
fn random_value() -> SecretValue {
    let bytes: [u8; 32] = rand::random();
    SecretValue::new(azure_core::base64::encode_url_safe(bytes))
}

impl KeyVaultData {
    /// A new version whose value the secret's rotation strategy makes from the current one (the
    /// tag `closeout:rotation`, else `named` from a config rule, else the default for the
    /// value's shape: a plain value becomes 32 random bytes, base64url), the same
    /// `contentType`, and the current tags plus `extra_tags`; returns the new version id.
    /// Refuses a certificate's (managed) secret: rotate the certificate instead; and a
    /// structured value no strategy covers (never scrambled).
    pub async fn rotate_secret(
        &self,
        vault_uri: &str,
        name: &str,
        named: Option<&str>,
        extra_tags: &BTreeMap<String, String>,
    ) -> Result<String, CallError> {
        let c = self.clients(vault_uri)?;
        let path = format!("/secrets/{name}");
        // The current version's content type, tags and managed flag, from the versions list
        // (no value is fetched; a disabled current version is listed too).
        let versions_path = format!("/secrets/{name}/versions");
        let rows = self
            .rows::<Secrets>(|from| Secrets::versions(&c, name, from), &versions_path)
            .await?;
        let mut newest: Option<Row> = None;
        for row in rows {
            if newest.as_ref().is_none_or(|n| row.created >= n.created) {
                newest = Some(row);
            }
        }
        let Some(Row {
            content_type,
            tags,
            managed,
            ..
        }) = newest
        else {
            return Err(CallError {
                method: "GET",
                path: versions_path,
                status: Some(404),
                code: "SecretNotFound".into(),
                message: format!("secret {name} has no versions"),
                retry_after: None,
            });
        };
        if managed {
            return Err(refused(
                "PUT",
                path.clone(),
                "ManagedSecret",
                format!("secret {name} backs a certificate; rotate the certificate instead"),
            ));
        }
        let named =
            rotation_strategy::from_tags(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .or(named.map(str::to_string));
        let current = self.current_secret_value(vault_uri, name).await?;
        let value = match (&named, current) {
            // A plain value (or one no longer readable) with no strategy named: as before,
            // 32 random bytes, base64url.
            (None, None) => random_value(),
            (None, Some(old)) if Shape::of(old.expose()) == Shape::Plain => random_value(),
            (named, Some(old)) => rotate_named(named.as_deref(), &old).map_err(|e| {
                refused(
                    "PUT",
                    path.clone(),
                    "RotationStrategy",
                    format!("secret {name} was not rotated: {e}"),
                )
            })?,
            (Some(_), None) => {
                return Err(refused(
                    "GET",
                    path.clone(),
                    "RotationStrategy",
                    format!(
                        "secret {name} names a rotation strategy, but its current value cannot be read to apply it"
                    ),
                ))
            }
        };
        self.put_secret(
            &c,
            name,
            &value,
            content_type,
            merged(Some(tags.into_iter().collect()), extra_tags),
        )
        .await
    }

    /// Publishes `value` as a new version of secret `name` (e.g. a rotated app credential);
    /// returns the version.
    pub async fn set_secret(
        &self,
        vault_uri: &str,
        name: &str,
        value: &SecretValue,
        content_type: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Result<String, CallError> {
        let c = self.clients(vault_uri)?;
        let tags = tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        self.put_secret(&c, name, value, content_type.map(str::to_string), tags)
            .await
    }

    async fn put_secret(
        &self,
        c: &VaultClients,
        name: &str,
        value: &SecretValue,
        content_type: Option<String>,
        tags: HashMap<String, String>,
    ) -> Result<String, CallError> {
        let path = format!("/secrets/{name}");
        let fail = |e: azure_core::Error| call_error("PUT", path.clone(), &e);
        let body = SetSecretParameters {
            value: Some(value.expose().to_string()),
            content_type,
            tags: Some(tags),
            ..Default::default()
        };
        let secret = self
            .gated(
                c.secrets
                    .set_secret(name, body.try_into().map_err(fail)?, None),
            )
            .await
            .map_err(fail)?
            .into_model()
            .map_err(fail)?;
        version_of(secret.id.as_ref()).ok_or_else(|| missing_id("PUT", path.clone()))
    }

    /// A new key version with the current one's type, size (from the modulus), curve and
    /// operations, and the current tags plus `extra_tags`; returns the version. Refuses a
    /// certificate's (managed) key.
    pub async fn rotate_key(
        &self,
        vault_uri: &str,
        name: &str,
        extra_tags: &BTreeMap<String, String>,
    ) -> Result<String, CallError> {
        let c = self.clients(vault_uri)?;
        let path = format!("/keys/{name}");
        let fail = |e: azure_core::Error| call_error("GET", path.clone(), &e);
        let current = self
            .gated(c.keys.get_key(name, None))
            .await
            .map_err(fail)?
            .into_model()
            .map_err(fail)?;
        if current.managed == Some(true) {
            return Err(refused(
                "POST",
                format!("/keys/{name}/create"),
                "ManagedKey",
                format!("key {name} backs a certificate; rotate the certificate instead"),
            ));
        }
        let jwk = current.key.unwrap_or_default();
        let kty = jwk.kty.clone();
        let key_size = match kty {
            Some(KeyType::Rsa) | Some(KeyType::RsaHsm) => jwk.n.as_ref().map(|n| {
                let significant = n.iter().skip_while(|b| **b == 0).count();
                i32::try_from(significant * 8).unwrap_or(2048)
            }),
            _ => None,
        };
        let curve: Option<CurveName> = jwk.crv.clone();
        let key_ops: Option<Vec<KeyOperation>> = jwk.key_ops.as_ref().map(|ops| {
            ops.iter()
                .filter_map(|o| o.parse::<KeyOperation>().ok())
                .collect()
        });
        let body = CreateKeyParameters {
            kty,
            key_size,
            curve,
            key_ops,
            tags: Some(merged(current.tags, extra_tags)),
            ..Default::default()
        };
        let create_path = format!("/keys/{name}/create");
        let fail = |e: azure_core::Error| call_error("POST", create_path.clone(), &e);
        let key = self
            .gated(
                c.keys
                    .create_key(name, body.try_into().map_err(fail)?, None),
            )
            .await
            .map_err(fail)?
            .into_model()
            .map_err(fail)?;
        version_of(key.key.and_then(|k| k.kid).as_ref())
            .ok_or_else(|| missing_id("POST", create_path.clone()))
    }

    /// Waits while a create operation of certificate `name` is in progress, so that the version
    /// it makes is seen before anyone decides whether to make one. Key Vault creates a
    /// certificate version asynchronously: the operation (`GET /certificates/{name}/pending`,
    /// `inProgress`) exists before its version does, and a previous attempt whose process died
    /// or whose answer was lost may have started one. Returns the operation's final state once
    /// none is in progress (`None` when there is no operation); an operation still in progress
    /// after [`CERTIFICATE_WAIT`] is an error worth retrying, never a reason to create a second
    /// version. Each status read is retried in place.
    pub async fn await_certificate_operation(
        &self,
        vault_uri: &str,
        name: &str,
    ) -> Result<Option<CertificateOperation>, CallError> {
        let c = self.clients(vault_uri)?;
        let path = format!("/certificates/{name}/pending");
        let started = std::time::Instant::now();
        loop {
            let operation = self
                .read(&path, || async {
                    let answer = self
                        .gated(c.certificates.get_certificate_operation(name, None))
                        .await
                        .and_then(|r| r.into_model());
                    match answer {
                        Ok(operation) => Ok(Some(operation)),
                        Err(e) => match call_error("GET", path.clone(), &e) {
                            e if e.is_not_found() => Ok(None),
                            e => Err(e),
                        },
                    }
                })
                .await?;
            let in_progress = operation
                .as_ref()
                .and_then(|o| o.status.as_deref())
                .is_some_and(|s| s.eq_ignore_ascii_case("inProgress"));
            if !in_progress {
                return Ok(operation);
            }
            if started.elapsed() >= CERTIFICATE_WAIT {
                return Err(timed_out(
                    "GET",
                    path,
                    format!(
                        "a create operation of the certificate is still in progress after {} s",
                        CERTIFICATE_WAIT.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// A new certificate version from the existing policy (tags kept plus `extra_tags`), waiting
    /// for the create operation to complete; returns the version. Key Vault makes a new backing
    /// key and secret version with the same id.
    ///
    /// Every call is retried in place, none by re-running the whole rotation: the reads simply,
    /// the create only after making sure an earlier create did not already start (an answer
    /// lost after Key Vault accepted it): any operation in progress is waited out and a current
    /// version carrying `extra_tags` is taken as the one this rotation made.
    pub async fn rotate_certificate(
        &self,
        vault_uri: &str,
        name: &str,
        extra_tags: &BTreeMap<String, String>,
    ) -> Result<String, CallError> {
        let c = self.clients(vault_uri)?;
        let policy_path = format!("/certificates/{name}/policy");
        let policy = self
            .read(&policy_path, || async {
                self.gated(c.certificates.get_certificate_policy(name, None))
                    .await
                    .and_then(|r| r.into_model())
                    .map_err(|e| call_error("GET", policy_path.clone(), &e))
            })
            .await?;
        let get_path = format!("/certificates/{name}");
        let current = self
            .read(&get_path, || async {
                self.gated(c.certificates.get_certificate(name, None))
                    .await
                    .and_then(|r| r.into_model())
                    .map_err(|e| call_error("GET", get_path.clone(), &e))
            })
            .await?;
        let body = CreateCertificateParameters {
            certificate_policy: Some(policy),
            tags: Some(merged(current.tags, extra_tags)),
            ..Default::default()
        };
        let create_path = format!("/certificates/{name}/create");
        if let Some(made) = self
            .start_certificate_create(&c, vault_uri, name, &body, extra_tags)
            .await?
        {
            return Ok(made);
        }
        let operation = self.await_certificate_operation(vault_uri, name).await?;
        if let Some(failed) = operation.filter(|o| {
            !o.status
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("completed"))
        }) {
            let (code, message) = failed
                .error
                .map(|e| (e.code.unwrap_or_default(), e.message.unwrap_or_default()))
                .unwrap_or_default();
            return Err(CallError {
                method: "POST",
                path: create_path,
                status: None,
                code: if code.is_empty() {
                    "operation".into()
                } else {
                    code
                },
                message: format!(
                    "the certificate operation ended {}: {message}",
                    failed.status.as_deref().unwrap_or("without a status")
                ),
                retry_after: None,
            });
        }
        match self
            .current(vault_uri, ObjectType::Certificates, name)
            .await?
        {
            Some(made) if carries(&made.tags, extra_tags) => Ok(made.version),
            _ => Err(missing_id("POST", create_path)),
        }
    }

    /// Sends the certificate create (the first request of the SDK's poller; its polling is
    /// replaced by [`Self::await_certificate_operation`], whose reads are retried). Returns the
    /// version when a retry finds that an earlier, unanswered create already made it.
    async fn start_certificate_create(
        &self,
        c: &VaultClients,
        vault_uri: &str,
        name: &str,
        body: &CreateCertificateParameters,
        extra_tags: &BTreeMap<String, String>,
    ) -> Result<Option<String>, CallError> {
        let create_path = format!("/certificates/{name}/create");
        let fail = |e: azure_core::Error| call_error("POST", create_path.clone(), &e);
        let first_attempt = AtomicBool::new(true);
        self.read(&create_path, || async {
            if !first_attempt.swap(false, Ordering::Relaxed) {
                self.await_certificate_operation(vault_uri, name).await?;
                if let Some(current) = self
                    .current(vault_uri, ObjectType::Certificates, name)
                    .await?
                {
                    if carries(&current.tags, extra_tags) {
                        return Ok(Some(current.version));
                    }
                }
            }
            let mut poller = c
                .certificates
                .begin_create_certificate(name, body.clone().try_into().map_err(fail)?, None)
                .map_err(fail)?;
            match self.gated(poller.next()).await {
                Some(Ok(_accepted)) => Ok(None),
                Some(Err(e)) => Err(fail(e)),
                None => Err(missing_id("POST", create_path.clone())),
            }
        })
        .await
    }

    /// The value of the current version of secret `name`; `None` when it is gone, disabled or
    /// not readable by Closeout.
    pub async fn current_secret_value(
        &self,
        vault_uri: &str,
        name: &str,
    ) -> Result<Option<SecretValue>, CallError> {
        let c = self.clients(vault_uri)?;
        let path = format!("/secrets/{name}");
        match self.gated(c.secrets.get_secret(name, None)).await {
            Ok(response) => {
                let secret = response
                    .into_model()
                    .map_err(|e| call_error("GET", path.clone(), &e))?;
                Ok(secret.value.map(SecretValue::new))
            }
            Err(e) => {
                let err = call_error("GET", path, &e);
                if matches!(err.status, Some(403 | 404)) {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// The shape of secret `name`'s current value (never the value), for the plan's rotation
    /// strategy; `None` when it cannot be read.
    pub async fn secret_shape(
        &self,
        vault_uri: &str,
        name: &str,
    ) -> Result<Option<Shape>, CallError> {
        Ok(self
            .current_secret_value(vault_uri, name)
            .await?
            .map(|v| Shape::of(v.expose())))
    }

    /// The value of version `version` of secret `name` (a credential Closeout published, read
    /// back to prove the credential dead); `None` when that version is gone, disabled or not
    /// readable by Closeout.
    pub async fn secret_value(
        &self,
        vault_uri: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<SecretValue>, CallError> {
        let c = self.clients(vault_uri)?;
        let path = format!("/secrets/{name}/{version}");
        let options = SecretClientGetSecretOptions {
            secret_version: Some(version.to_string()),
            ..Default::default()
        };
        match self.gated(c.secrets.get_secret(name, Some(options))).await {
            Ok(response) => {
                let secret = response
                    .into_model()
                    .map_err(|e| call_error("GET", path.clone(), &e))?;
                Ok(secret.value.map(SecretValue::new))
            }
            Err(e) => {
                let err = call_error("GET", path, &e);
                if matches!(err.status, Some(403 | 404)) {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }
}

/// Whether `tags` carry every one of `wanted` with the same value (the mark a rotation puts on
/// the version it makes).
fn carries(tags: &BTreeMap<String, String>, wanted: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| tags.get(k) == Some(v))
}
