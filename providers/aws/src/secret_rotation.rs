//! Secret rotation (`rotate` on a secret): a new value staged as `AWSPENDING` under a request
//! token derived from the idempotency key, promoted to `AWSCURRENT`, the label cleared; or, for a
//! secret with rotation configured, `RotateSecret` under the same token. The staging labels make
//! every step safe to repeat.

use crate::client::AwsProvider;
use crate::inventory::{AWSCURRENT, AWSPENDING};
use closeout_contract::{
    replacement_for, ActionOutcome, Finding, ProviderError, SecretValue, State,
};
use sha2::{Digest, Sha256};

/// A UUID-shaped string derived from `key`: the same key always gives the same token, so a
/// `ClientRequestToken` built from an idempotency key makes a repeated put a no-op.
pub fn request_token(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4 layout
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl AwsProvider {
    /// Rotate a secret: new value staged as `AWSPENDING` with a request token derived from the
    /// idempotency key, promoted to `AWSCURRENT` (the old version becomes `AWSPREVIOUS`), then the
    /// `AWSPENDING` label is cleared.
    pub(crate) async fn rotate_secret(
        &self,
        f: &Finding,
        key: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        let secret = f.resource.as_str();
        let name = f.attr("name").unwrap_or(secret);
        let token = request_token(key);
        let Some(versions) = self.secret_versions(secret).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("secret {name} no longer exists"),
            ));
        };
        let current = versions.with_stage(AWSCURRENT).map(|v| v.id.clone());
        let ours = versions.by_id(&token).cloned();
        if current.as_deref() == Some(token.as_str()) {
            if ours.as_ref().is_some_and(|v| v.has(AWSPENDING)) {
                self.clear_pending(secret, &token).await?;
            }
            return Ok(ActionOutcome::already(
                State::Rotated,
                format!("version {token} of secret {name} is already AWSCURRENT"),
            ));
        }
        match &ours {
            // Promoted earlier and superseded since: never bring an old value back.
            Some(v) if !v.has(AWSPENDING) => {
                return Ok(ActionOutcome::already(
                    State::Rotated,
                    format!(
                        "version {token} of secret {name} was promoted earlier and has been superseded"
                    ),
                ));
            }
            // A secret with rotation configured belongs to its rotation function (it changes
            // the database password, say, with the value): writing a value by hand would break
            // the service it guards, so the function is asked to rotate.
            _ if f.attr("rotation_enabled") == Some("true") => {
                return self
                    .trigger_configured_rotation(secret, name, &token, ours.is_some())
                    .await;
            }
            // Staged by an earlier attempt that did not finish: promote it below.
            Some(_) => {}
            None => {
                // moto returns the old value from GetSecretValue without a stage even after
                // AWSCURRENT moved: always ask for AWSCURRENT explicitly.
                let old = self
                    .call(
                        "GetSecretValue",
                        self.sm
                            .get_secret_value()
                            .secret_id(secret)
                            .version_stage(AWSCURRENT)
                            .send(),
                    )
                    .await?;
                let put = self
                    .sm
                    .put_secret_value()
                    .secret_id(secret)
                    .client_request_token(&token)
                    .version_stages(AWSPENDING);
                let put = match old.secret_string() {
                    Some(s) => {
                        let new = replacement_for(&SecretValue::new(s));
                        put.secret_string(new.expose())
                    }
                    None => {
                        let new = SecretValue::generate();
                        put.secret_binary(aws_smithy_types::Blob::new(new.expose().as_bytes()))
                    }
                };
                drop(old);
                self.call("PutSecretValue", put.send()).await?;
            }
        }
        let mut promote = self
            .sm
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(AWSCURRENT)
            .move_to_version_id(&token);
        if let Some(c) = &current {
            promote = promote.remove_from_version_id(c);
        }
        self.call("UpdateSecretVersionStage", promote.send())
            .await?;
        self.clear_pending(secret, &token).await?;
        Ok(ActionOutcome::done(
            State::Rotated,
            match &current {
                Some(c) => format!(
                    "new version {token} of secret {name} is AWSCURRENT; previous version {c} is AWSPREVIOUS"
                ),
                None => format!("new version {token} of secret {name} is AWSCURRENT"),
            },
        ))
    }

    /// `RotateSecret` with this action's request token as the new version's id (so a retry is
    /// the same rotation, never a second one); `started`: an earlier attempt already asked and
    /// its version is still AWSPENDING. Rotated once the function has made that version
    /// AWSCURRENT; still active while it is AWSPENDING (verification reads the outcome again).
    async fn trigger_configured_rotation(
        &self,
        secret: &str,
        name: &str,
        token: &str,
        started: bool,
    ) -> Result<ActionOutcome, ProviderError> {
        if !started {
            self.call(
                "RotateSecret",
                self.sm
                    .rotate_secret()
                    .secret_id(secret)
                    .client_request_token(token)
                    .rotate_immediately(true)
                    .send(),
            )
            .await?;
        }
        let current = self
            .secret_versions(secret)
            .await?
            .and_then(|v| v.with_stage(AWSCURRENT).map(|c| c.id.clone()));
        Ok(if current.as_deref() == Some(token) {
            ActionOutcome::done(
                State::Rotated,
                format!(
                    "the rotation function of secret {name} made new version {token} AWSCURRENT"
                ),
            )
        } else {
            ActionOutcome::done(
                State::Active,
                format!(
                    "asked the rotation function of secret {name} to rotate (version {token} is AWSPENDING until it finishes; verification reads the result)"
                ),
            )
        })
    }

    async fn clear_pending(&self, secret: &str, version: &str) -> Result<(), ProviderError> {
        self.call(
            "UpdateSecretVersionStage",
            self.sm
                .update_secret_version_stage()
                .secret_id(secret)
                .version_stage(AWSPENDING)
                .remove_from_version_id(version)
                .send(),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_tokens_are_stable_uuid_shaped_and_distinct() {
        let a = request_token("run-1/step-3/aws:secret:arn:x");
        assert_eq!(a, request_token("run-1/step-3/aws:secret:arn:x"));
        assert_ne!(a, request_token("run-2/step-3/aws:secret:arn:x"));
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }
}
