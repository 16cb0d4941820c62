//! Secret rotation (`rotate` on a secret): the new value put straight to `AWSCURRENT` under a
//! request token derived from the idempotency key (the token is the version id, which makes
//! every attempt the same rotation); for a secret with rotation configured, `RotateSecret`
//! under the same token; for a database secret, its strategy's staged steps.

use crate::capabilities::PROVIDER;
use crate::client::AwsProvider;
use crate::inventory::{AWSCURRENT, AWSPENDING, AWSPREVIOUS};
use closeout_contract::rotation_strategy;
use closeout_contract::rotation_strategy::rotate_for;
use closeout_contract::Strategy;
use closeout_contract::{ActionOutcome, Finding, ProviderError, SecretValue, State};
use closeout_postgres::{SecretStore, Staged};
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

/// The outcome for a secret that no longer exists.
fn gone(name: &str) -> ActionOutcome {
    ActionOutcome::already(State::Deleted, format!("secret {name} no longer exists"))
}

/// The outcome for a secret whose `AWSCURRENT` is already this rotation's version.
fn already_current(name: &str, token: &str) -> ActionOutcome {
    ActionOutcome::already(
        State::Rotated,
        format!("version {token} of secret {name} is already AWSCURRENT"),
    )
}

/// The outcome for a secret whose version under this rotation's token was promoted earlier and
/// has been superseded since: done, and an old value is never brought back.
fn superseded(name: &str, token: &str) -> ActionOutcome {
    ActionOutcome::already(
        State::Rotated,
        format!("version {token} of secret {name} was promoted earlier and has been superseded"),
    )
}

impl AwsProvider {
    /// Rotate a secret in as few calls as Secrets Manager allows: read `AWSCURRENT` (its value is
    /// what the secret's strategy changes; its version id says whether this rotation already
    /// happened), then one `PutSecretValue` of the new value straight to `AWSCURRENT` under a
    /// request token derived from the idempotency key (Secrets Manager moves `AWSPREVIOUS` to
    /// the old version). Two calls; a repeat after a crash is one read.
    ///
    /// Why that is safe to repeat: the token is the new version's id. A put whose answer was lost
    /// is sent again with the same value, which Secrets Manager accepts as the same request. A
    /// later attempt (a resume) reads `AWSCURRENT`: if it is the token, the rotation is done; if
    /// not, its put of a fresh value under the same token is refused (`ResourceExists`: the token
    /// names a version with another value), and the versions are read to tell why: promoted
    /// earlier and superseded since (done; an old value is never brought back), or staged
    /// `AWSPENDING` by an attempt of the earlier staged protocol (promoted now).
    ///
    /// A secret with rotation configured is handed to its rotation function; one with a database
    /// strategy goes through create, set, test, finish (see `closeout_postgres`).
    pub(crate) async fn rotate_secret(
        &self,
        f: &Finding,
        key: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        let secret = f.resource.as_str();
        let name = f.attr("name").unwrap_or(secret);
        let token = request_token(key);
        if f.attr("rotation_enabled") == Some("true") {
            // A secret with rotation configured belongs to its rotation function (it changes
            // the database password, say, with the value): writing a value by hand would break
            // the service it guards, so the function is asked to rotate.
            let Some(versions) = self.secret_versions(secret).await? else {
                return Ok(gone(name));
            };
            if versions.with_stage(AWSCURRENT).map(|v| v.id.as_str()) == Some(token.as_str()) {
                return Ok(already_current(name, &token));
            }
            let ours = versions.by_id(&token);
            if ours.is_some_and(|v| !v.has(AWSPENDING)) {
                return Ok(superseded(name, &token));
            }
            let started = ours.is_some();
            return self
                .trigger_configured_rotation(secret, name, &token, started)
                .await;
        }
        if let Some(strategy) = database_strategy(f) {
            return self
                .rotate_database_secret(secret, name, &token, &strategy)
                .await;
        }
        // moto returns the old value from GetSecretValue without a stage even after AWSCURRENT
        // moved: always ask for AWSCURRENT explicitly.
        let old = match self
            .call(
                "GetSecretValue",
                self.sm
                    .get_secret_value()
                    .secret_id(secret)
                    .version_stage(AWSCURRENT)
                    .send(),
            )
            .await
        {
            Ok(old) => old,
            Err(e) if e.is_not_found() => return Ok(gone(name)),
            Err(e) => return Err(e.into()),
        };
        let previous = old.version_id().map(str::to_string);
        if previous.as_deref() == Some(token.as_str()) {
            return Ok(already_current(name, &token));
        }
        let put = self
            .sm
            .put_secret_value()
            .secret_id(secret)
            .client_request_token(&token)
            .version_stages(AWSCURRENT);
        let put = match old.secret_string() {
            // The secret's strategy decides what changes; a structured value with no strategy
            // is refused, never scrambled (it stays open).
            Some(s) => {
                let new =
                    rotate_for(f, &SecretValue::new(s)).map_err(|e| ProviderError::Config {
                        provider: PROVIDER,
                        message: format!("secret {name} was not rotated: {e}"),
                    })?;
                put.secret_string(new.expose())
            }
            None => {
                let new = SecretValue::generate();
                put.secret_binary(aws_smithy_types::Blob::new(new.expose().as_bytes()))
            }
        };
        drop(old);
        match self.call("PutSecretValue", put.send()).await {
            Ok(_) => Ok(ActionOutcome::done(
                State::Rotated,
                match &previous {
                    Some(p) => format!(
                        "new version {token} of secret {name} is AWSCURRENT; previous version {p} is AWSPREVIOUS"
                    ),
                    None => format!("new version {token} of secret {name} is AWSCURRENT"),
                },
            )),
            Err(e) if e.code.as_deref() == Some("ResourceExistsException") => {
                self.finish_earlier_version(secret, name, &token, previous.as_deref())
                    .await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The version under this rotation's token exists already with another value: an earlier
    /// attempt made it. Promoted and superseded since: done (never bring an old value back).
    /// Still `AWSPENDING` (the staged protocol of earlier Closeout versions): promote it now.
    async fn finish_earlier_version(
        &self,
        secret: &str,
        name: &str,
        token: &str,
        current: Option<&str>,
    ) -> Result<ActionOutcome, ProviderError> {
        let Some(versions) = self.secret_versions(secret).await? else {
            return Ok(gone(name));
        };
        let Some(ours) = versions.by_id(token) else {
            return Err(ProviderError::Config {
                provider: PROVIDER,
                message: format!(
                    "secret {name}: Secrets Manager refused version {token} as already in use, \
                     but lists no such version"
                ),
            });
        };
        if ours.has(AWSCURRENT) {
            return Ok(already_current(name, token));
        }
        if !ours.has(AWSPENDING) {
            return Ok(superseded(name, token));
        }
        let mut promote = self
            .sm
            .update_secret_version_stage()
            .secret_id(secret)
            .version_stage(AWSCURRENT)
            .move_to_version_id(token);
        if let Some(c) = current {
            promote = promote.remove_from_version_id(c);
        }
        self.call("UpdateSecretVersionStage", promote.send())
            .await?;
        self.clear_pending(secret, token).await?;
        Ok(ActionOutcome::done(
            State::Rotated,
            format!("staged version {token} of secret {name} is AWSCURRENT"),
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

    /// Rotate a secret holding a PostgreSQL login by its database strategy: create (a new
    /// version staged `AWSPENDING` under this action's token), set (at the database), test
    /// (log in with it), finish (promote to `AWSCURRENT`); see `closeout_postgres`.
    async fn rotate_database_secret(
        &self,
        secret: &str,
        name: &str,
        token: &str,
        strategy: &Strategy,
    ) -> Result<ActionOutcome, ProviderError> {
        if self.secret_versions(secret).await?.is_none() {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("secret {name} no longer exists"),
            ));
        }
        let store = SmStore {
            aws: self,
            secret,
            token,
        };
        let done = closeout_postgres::rotate(PROVIDER, name, strategy, &store).await?;
        Ok(if done.changed {
            ActionOutcome::done(State::Rotated, done.detail)
        } else {
            ActionOutcome::already(State::Rotated, done.detail)
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

/// The database strategy a secret finding names, if any.
fn database_strategy(f: &Finding) -> Option<Strategy> {
    let named = f.attr(rotation_strategy::ATTR)?;
    Strategy::parse(named).ok().filter(Strategy::is_postgres)
}

/// One secret's versions as one database rotation (one request token) sees them: this
/// rotation's version is `token`, staged `AWSPENDING` until promoted.
struct SmStore<'a> {
    aws: &'a AwsProvider,
    secret: &'a str,
    token: &'a str,
}

impl SecretStore for SmStore<'_> {
    async fn staged(&self) -> Result<Staged, ProviderError> {
        let Some(versions) = self.aws.secret_versions(self.secret).await? else {
            return Ok(Staged::None);
        };
        let Some(ours) = versions.by_id(self.token) else {
            return Ok(Staged::None);
        };
        let current = ours.has(AWSCURRENT);
        let pending = ours.has(AWSPENDING);
        if !current && !pending {
            return Ok(Staged::Superseded);
        }
        let value = self
            .aws
            .secret_value_at(self.secret, None, Some(self.token))
            .await?
            .ok_or_else(|| ProviderError::Permanent {
                provider: PROVIDER,
                message: format!(
                    "version {} of secret {} has no string value",
                    self.token, self.secret
                ),
            })?;
        if current {
            if pending {
                self.aws.clear_pending(self.secret, self.token).await?;
            }
            Ok(Staged::Current(value))
        } else {
            Ok(Staged::Pending(value))
        }
    }

    async fn current(&self) -> Result<SecretValue, ProviderError> {
        self.aws
            .secret_value_at(self.secret, Some(AWSCURRENT), None)
            .await?
            .ok_or_else(|| ProviderError::Permanent {
                provider: PROVIDER,
                message: format!("secret {} has no AWSCURRENT string value", self.secret),
            })
    }

    async fn previous(&self) -> Result<Option<SecretValue>, ProviderError> {
        Ok(self
            .aws
            .secret_value_at(self.secret, Some(AWSPREVIOUS), None)
            .await?)
    }

    async fn stage(&self, value: &SecretValue) -> Result<(), ProviderError> {
        self.aws
            .call(
                "PutSecretValue",
                self.aws
                    .sm
                    .put_secret_value()
                    .secret_id(self.secret)
                    .client_request_token(self.token)
                    .version_stages(AWSPENDING)
                    .secret_string(value.expose())
                    .send(),
            )
            .await?;
        Ok(())
    }

    async fn promote(&self) -> Result<(), ProviderError> {
        let current = self
            .aws
            .secret_versions(self.secret)
            .await?
            .and_then(|v| v.with_stage(AWSCURRENT).map(|c| c.id.clone()));
        if current.as_deref() != Some(self.token) {
            let mut promote = self
                .aws
                .sm
                .update_secret_version_stage()
                .secret_id(self.secret)
                .version_stage(AWSCURRENT)
                .move_to_version_id(self.token);
            if let Some(c) = &current {
                promote = promote.remove_from_version_id(c);
            }
            self.aws
                .call("UpdateSecretVersionStage", promote.send())
                .await?;
        }
        self.aws.clear_pending(self.secret, self.token).await
    }

    async fn other(&self, reference: &str) -> Result<SecretValue, ProviderError> {
        self.aws
            .secret_value_at(reference, Some(AWSCURRENT), None)
            .await?
            .ok_or_else(|| ProviderError::Config {
                provider: PROVIDER,
                message: format!(
                    "the admin secret {reference} named by secret {} does not exist",
                    self.secret
                ),
            })
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
