//! The access-key rotation protocol of an owned NHI (`rotate` on its access key): create a key,
//! publish it to the NHI's secret, prove it works with STS, then retire the old key. A key already
//! published and active is reused, so an interrupted rotation finishes instead of starting over.

use crate::capabilities::PROVIDER;
use crate::client::AwsProvider;
use crate::error::{permanent, CallError, CallFailure};
use crate::inventory::AWSCURRENT;
use crate::secret_rotation::request_token;
use aws_sdk_iam::types::StatusType;
use closeout_contract::{ActionOutcome, Finding, Holder, ProviderError, SecretValue, State};
use std::time::Duration;

/// How often a freshly created access key is tried before giving up (IAM is eventually
/// consistent: a new key can take several seconds to work).
const KEY_TEST_ATTEMPTS: u32 = 8;

impl AwsProvider {
    /// Publish a new key to the NHI secret: a new version of it, or the secret itself when missing.
    async fn publish_key(
        &self,
        name: &str,
        user: &str,
        id: &str,
        secret: &SecretValue,
        key: &str,
    ) -> Result<(), ProviderError> {
        let value = SecretValue::new(
            serde_json::json!({"AccessKeyId": id, "SecretAccessKey": secret.expose()}).to_string(),
        );
        let token = request_token(&format!("{key}/publish/{id}"));
        match self
            .call(
                "PutSecretValue",
                self.sm
                    .put_secret_value()
                    .secret_id(name)
                    .client_request_token(&token)
                    .secret_string(value.expose())
                    .send(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => {
                self.call(
                    "CreateSecret",
                    self.sm
                        .create_secret()
                        .name(name)
                        .client_request_token(&token)
                        .description(format!(
                            "Access key of IAM user {user}, rotated and published by Closeout"
                        ))
                        .secret_string(value.expose())
                        .tags(
                            aws_sdk_secretsmanager::types::Tag::builder()
                                .key("managed-by")
                                .value("closeout")
                                .build(),
                        )
                        .tags(
                            aws_sdk_secretsmanager::types::Tag::builder()
                                .key("closeout:nhi-user")
                                .value(user)
                                .build(),
                        )
                        .send(),
                )
                .await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Prove a new key works: STS `GetCallerIdentity` with it, against the same endpoint,
    /// retried while IAM propagates the key.
    async fn test_key(
        &self,
        user: &str,
        id: &str,
        secret: &SecretValue,
    ) -> Result<(), ProviderError> {
        let sts = self.sts_with_key(id, secret, true);
        let mut last: Option<CallError> = None;
        for attempt in 0..KEY_TEST_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt.min(5)))).await;
            }
            match self
                .call("GetCallerIdentity", sts.get_caller_identity().send())
                .await
            {
                Ok(out) => {
                    let arn = out.arn().unwrap_or_default();
                    let is_user = arn
                        .rsplit_once(":user/")
                        .is_some_and(|(_, path)| path.rsplit('/').next() == Some(user));
                    if is_user {
                        return Ok(());
                    }
                    return Err(permanent(format!(
                        "new access key {id} authenticates as {arn}, not as iam user {user}"
                    )));
                }
                Err(e) => {
                    tracing::debug!(attempt, error = %e, "new access key not usable yet");
                    if matches!(
                        e.failure,
                        CallFailure::Dispatch | CallFailure::Timeout | CallFailure::Construction
                    ) {
                        // Not eventual consistency: the endpoint is unreachable or misconfigured.
                        return Err(e.into());
                    }
                    last = Some(e);
                }
            }
        }
        Err(ProviderError::Transient {
            provider: PROVIDER,
            message: format!(
                "new access key {id} of iam user {user} did not authenticate after {KEY_TEST_ATTEMPTS} attempts{}",
                last.map(|e| format!(" (last error: {e})")).unwrap_or_default()
            ),
        })
    }

    /// Rotate an owned NHI's access key: create new, publish, test, deactivate old.
    pub(crate) async fn rotate_nhi_key(
        &self,
        f: &Finding,
        key: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        let Holder::Nhi(user) = &f.holder else {
            return Err(permanent(format!(
                "access key {} belongs to the person's own account: rotate applies only to access keys of non-human identities; deactivate and delete it instead",
                f.resource
            )));
        };
        let user = user.as_str();
        let old = f.resource.as_str();
        let secret_name = self.config.nhi_secret_name(user);
        let Some(keys) = self.list_keys_raw(user).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("iam user {user} no longer exists"),
            ));
        };
        let published = self.read_published(&secret_name, AWSCURRENT).await?;
        let reusable = published
            .filter(|(id, _)| id != old && keys.iter().any(|(k, active, _)| k == id && *active));
        let old_active = keys.iter().find(|(k, _, _)| k == old).map(|(_, a, _)| *a);
        let (new_id, new_secret, created) = match reusable {
            Some((id, s)) => (id, s, false),
            None => {
                if keys.len() >= 2 {
                    let ids: Vec<&str> = keys.iter().map(|(k, _, _)| k.as_str()).collect();
                    return Err(permanent(format!(
                        "iam user {user} already has two access keys ({}) and neither is the one published in secret {secret_name}: delete the unused one, then run the rotation again",
                        ids.join(", ")
                    )));
                }
                let out = self
                    .call(
                        "CreateAccessKey",
                        self.iam.create_access_key().user_name(user).send(),
                    )
                    .await?;
                let Some(k) = out.access_key() else {
                    return Err(permanent("CreateAccessKey returned no access key"));
                };
                let id = k.access_key_id().to_string();
                let secret = SecretValue::new(k.secret_access_key());
                drop(out);
                if let Err(e) = self
                    .publish_key(&secret_name, user, &id, &secret, key)
                    .await
                {
                    // Nobody can use a key whose secret was never published: remove it so the
                    // retry starts from a clean state instead of finding two keys.
                    let _ = self
                        .call(
                            "DeleteAccessKey",
                            self.iam
                                .delete_access_key()
                                .user_name(user)
                                .access_key_id(&id)
                                .send(),
                        )
                        .await;
                    return Err(e);
                }
                (id, secret, true)
            }
        };
        match old_active {
            Some(false) | None if !created => {
                return Ok(ActionOutcome::already(
                    State::Inactive,
                    format!(
                        "access key {old} of iam user {user} is already retired; access key {new_id} is published in secret {secret_name}"
                    ),
                ))
            }
            _ => {}
        }
        self.test_key(user, &new_id, &new_secret).await?;
        drop(new_secret);
        let retired = match old_active {
            Some(true) => {
                match self
                    .call(
                        "UpdateAccessKey",
                        self.iam
                            .update_access_key()
                            .user_name(user)
                            .access_key_id(old)
                            .status(StatusType::Inactive)
                            .send(),
                    )
                    .await
                {
                    Ok(_) => "deactivated",
                    Err(e) if e.is_not_found() => "found already deleted",
                    Err(e) => return Err(e.into()),
                }
            }
            Some(false) => "found already inactive",
            None => "found already deleted",
        };
        let state = if retired == "found already deleted" {
            State::Deleted
        } else {
            State::Inactive
        };
        Ok(ActionOutcome::done(
            state,
            format!(
                "{} access key {new_id} for iam user {user}, published it to secret {secret_name}, verified it with sts:GetCallerIdentity, and {retired} the old key {old}",
                if created { "created" } else { "reused the already published" }
            ),
        ))
    }
}
