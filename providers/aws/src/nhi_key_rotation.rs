//! The access-key rotation protocol of an owned NHI (`rotate` on its access key): create a key,
//! publish it to the NHI's secret, prove it works with STS, then retire the old key. A key already
//! published and active is reused, so an interrupted rotation finishes instead of starting over.
//!
//! The one gap a crash can leave is between `CreateAccessKey` and publishing: the new key exists
//! but its secret (returned only by `CreateAccessKey`) is lost. So before creating a key the
//! rotation records its intent on the IAM user, as the tag [`PENDING_TAG`] holding the time and
//! the keys the user had then ([`Intent`]). A later attempt that finds the intent deletes every
//! key created since that is neither one of those keys nor the published one — a key only this
//! protocol can have made and nobody can use — and creates a fresh one. The tag is removed when
//! the rotation finishes.

use crate::capabilities::PROVIDER;
use crate::client::AwsProvider;
use crate::error::{permanent, CallError, CallFailure};
use crate::inventory::AWSCURRENT;
use crate::principal::Principal;
use crate::secret_rotation::request_token;
use aws_sdk_iam::types::{StatusType, Tag};
use chrono::{DateTime, Utc};
use closeout_contract::{ActionOutcome, Finding, Holder, ProviderError, SecretValue, State};
use std::time::Duration;

/// The IAM user tag recording a rotation's intent to create an access key (see the module docs).
pub(crate) const PENDING_TAG: &str = "closeout:pending-key";

/// How much earlier than the recorded intent a key's `CreateDate` may be and still count as
/// created after it: the intent's time is Closeout's clock, `CreateDate` is AWS's.
const CLOCK_SKEW_SECS: i64 = 300;

/// A rotation's recorded intent to create a key: when, for which action, and the keys the user
/// had then. Written as the tag value `action=<token> at=<unix secs> had=<id>+<id>` (IAM tag
/// values allow letters, digits, spaces and `_.:/=+-@`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Intent {
    /// The first 8 characters of the action's request token, for audit.
    pub action: String,
    /// When the intent was recorded.
    pub at: DateTime<Utc>,
    /// The access keys the user had when it was recorded.
    pub had: Vec<String>,
}

impl Intent {
    /// The tag value.
    pub fn render(&self) -> String {
        format!(
            "action={} at={} had={}",
            self.action,
            self.at.timestamp(),
            self.had.join("+")
        )
    }

    /// Parse a tag value written by [`Intent::render`]; `None` for anything else.
    pub fn parse(value: &str) -> Option<Intent> {
        let mut action = None;
        let mut at = None;
        let mut had = None;
        for part in value.split(' ') {
            match part.split_once('=')? {
                ("action", v) => action = Some(v.to_string()),
                ("at", v) => at = DateTime::from_timestamp(v.parse().ok()?, 0),
                ("had", v) => {
                    had = Some(
                        v.split('+')
                            .filter(|k| !k.is_empty())
                            .map(str::to_string)
                            .collect(),
                    )
                }
                _ => return None,
            }
        }
        Some(Intent {
            action: action?,
            at: at?,
            had: had?,
        })
    }

    /// Whether `key`, created at `created`, can only be a key a rotation made after this intent:
    /// not among the keys the user had, and created no earlier than the intent (less the clock
    /// skew allowed). A key without a creation date is never claimed.
    pub fn claims(&self, key: &str, created: Option<DateTime<Utc>>) -> bool {
        !self.had.iter().any(|k| k == key)
            && created.is_some_and(|c| c >= self.at - chrono::Duration::seconds(CLOCK_SKEW_SECS))
    }
}

/// How often a freshly created access key is tried before giving up (IAM is eventually
/// consistent: a new key can take several seconds to work).
const KEY_TEST_ATTEMPTS: u32 = 8;

/// How long another action's recorded intent counts as a rotation still in flight: the whole
/// protocol takes seconds (create, publish, then at most [`KEY_TEST_ATTEMPTS`] tries of the new
/// key, 25 s of waits between them). Older, it is the intent of a rotation that was interrupted
/// (its process died, or its action failed as transient), and its unpublished keys are removed.
const FOREIGN_INTENT_LIVE_SECS: i64 = 120;

/// How long a rotation waits for another one of the same user, in flight in another process,
/// to finish before it fails as transient (and is retried).
const FOREIGN_WAIT: Duration = Duration::from_secs(90);

/// How often a waiting rotation looks again.
const FOREIGN_POLL: Duration = Duration::from_secs(2);

impl Intent {
    /// Whether this intent is another action's rotation still in flight: not `ours` (the first
    /// 8 characters of our action's request token), and recorded less than
    /// [`FOREIGN_INTENT_LIVE_SECS`] before `now`.
    pub fn in_flight_for_another(&self, ours: &str, now: DateTime<Utc>) -> bool {
        self.action != ours && now - self.at < chrono::Duration::seconds(FOREIGN_INTENT_LIVE_SECS)
    }
}

/// The transient error of a rotation that met another one of the same user in flight.
fn another_in_flight(user: &str, intent: &Intent) -> ProviderError {
    ProviderError::Transient {
        provider: PROVIDER,
        message: format!(
            "another rotation of iam user {user}'s access key is in flight (action {}, started {}); this one starts over once it is done",
            intent.action,
            intent.at.to_rfc3339()
        ),
    }
}

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

    /// Delete an access key; one already gone is fine.
    async fn delete_key(&self, user: &str, id: &str) -> Result<(), ProviderError> {
        match self
            .call(
                "DeleteAccessKey",
                self.iam
                    .delete_access_key()
                    .user_name(user)
                    .access_key_id(id)
                    .send(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The user's keys without the ones an interrupted attempt created and never published:
    /// those the recorded [`Intent`] claims, other than `old` and the published key. Each is
    /// deleted (its secret is lost, so nobody can use it). No intent recorded: `keys` as is.
    ///
    /// Another action's intent still in flight (a rotation of the same user by another process)
    /// is not an interrupted attempt: its key is about to be published. Nothing is deleted and
    /// the rotation fails as transient, to start over once that one is done.
    async fn drop_orphan_keys(
        &self,
        user: &str,
        old: &str,
        published: Option<&str>,
        keys: Vec<(String, bool, Option<DateTime<Utc>>)>,
        ours: &str,
    ) -> Result<Vec<(String, bool, Option<DateTime<Utc>>)>, ProviderError> {
        let Some(intent) = self.recorded_intent(user).await? else {
            return Ok(keys);
        };
        if intent.in_flight_for_another(ours, Utc::now()) {
            return Err(another_in_flight(user, &intent));
        }
        let mut kept = Vec::with_capacity(keys.len());
        for k in keys {
            let orphan = k.0 != old && Some(k.0.as_str()) != published && intent.claims(&k.0, k.2);
            if orphan {
                tracing::info!(user, key = %k.0, intent = %intent.render(), "deleting an access key an interrupted rotation created and never published");
                self.delete_key(user, &k.0).await?;
            } else {
                kept.push(k);
            }
        }
        Ok(kept)
    }

    /// The intent recorded on the user, if any.
    async fn recorded_intent(&self, user: &str) -> Result<Option<Intent>, ProviderError> {
        let tags = self
            .principal_tags(Principal::User(user))
            .await?
            .unwrap_or_default();
        Ok(tags
            .iter()
            .find(|(k, _)| k == PENDING_TAG)
            .and_then(|(_, v)| Intent::parse(v)))
    }

    /// Wait while another action's rotation of the user is in flight (another process: this
    /// one's rotations of a user take turns), up to [`FOREIGN_WAIT`]; then fail as transient.
    async fn wait_for_other_rotation(&self, user: &str, ours: &str) -> Result<(), ProviderError> {
        let deadline = tokio::time::Instant::now() + FOREIGN_WAIT;
        loop {
            match self.recorded_intent(user).await? {
                Some(intent) if intent.in_flight_for_another(ours, Utc::now()) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(another_in_flight(user, &intent));
                    }
                    tracing::info!(user, intent = %intent.render(), "another rotation of this user's access key is in flight; waiting for it");
                    tokio::time::sleep(FOREIGN_POLL).await;
                }
                _ => return Ok(()),
            }
        }
    }

    /// Remove the intent tag: the rotation is finished (removing an absent tag is no error).
    async fn clear_intent(&self, user: &str) -> Result<(), ProviderError> {
        match self
            .call(
                "UntagUser",
                self.iam
                    .untag_user()
                    .user_name(user)
                    .tag_keys(PENDING_TAG)
                    .send(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
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
        // One rotation of a user's key at a time: in this process by a lock, across processes
        // by the intent another one recorded (it is waited for, never taken for an interrupted
        // attempt whose keys may be deleted).
        let _turn = closeout_contract::edit_lock::edit(format!(
            "aws {} nhi-access-key {user}",
            self.endpoint()
        ))
        .await;
        let ours = request_token(key)[..8].to_string();
        self.wait_for_other_rotation(user, &ours).await?;
        let Some(keys) = self.list_keys_raw(user).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("iam user {user} no longer exists"),
            ));
        };
        let published = self.read_published(&secret_name, AWSCURRENT).await?;
        let published_id = published.as_ref().map(|(id, _)| id.clone());
        let reusable = published
            .filter(|(id, _)| id != old && keys.iter().any(|(k, active, _)| k == id && *active));
        let old_active = keys.iter().find(|(k, _, _)| k == old).map(|(_, a, _)| *a);
        let (new_id, new_secret, created) = match reusable {
            Some((id, s)) => (id, s, false),
            None => {
                let keys = self
                    .drop_orphan_keys(user, old, published_id.as_deref(), keys, &ours)
                    .await?;
                if keys.len() >= 2 {
                    let ids: Vec<&str> = keys.iter().map(|(k, _, _)| k.as_str()).collect();
                    return Err(permanent(format!(
                        "iam user {user} already has two access keys ({}) and neither is the one published in secret {secret_name}: delete the unused one, then run the rotation again",
                        ids.join(", ")
                    )));
                }
                let intent = Intent {
                    action: ours.clone(),
                    at: Utc::now(),
                    had: keys.iter().map(|(k, _, _)| k.clone()).collect(),
                };
                self.call(
                    "TagUser",
                    self.iam
                        .tag_user()
                        .user_name(user)
                        .tags(
                            Tag::builder()
                                .key(PENDING_TAG)
                                .value(intent.render())
                                .build()
                                .map_err(|e| permanent(format!("bad tag: {e}")))?,
                        )
                        .send(),
                )
                .await?;
                // Tags have no check-and-set: another process that read no intent just before
                // this one wrote may have written its own over it. Only the last writer goes on.
                if let Some(other) = self.recorded_intent(user).await? {
                    if other.in_flight_for_another(&ours, Utc::now()) {
                        return Err(another_in_flight(user, &other));
                    }
                }
                let out = match self
                    .call(
                        "CreateAccessKey",
                        self.iam.create_access_key().user_name(user).send(),
                    )
                    .await
                {
                    Ok(out) => out,
                    // The quota of two keys is met when an earlier attempt's key, whose answer was
                    // lost (a retried call), still exists: the next attempt finds it through the
                    // intent and deletes it, so this is worth retrying.
                    Err(e) if e.code.as_deref() == Some("LimitExceeded") => {
                        return Err(ProviderError::Transient {
                            provider: PROVIDER,
                            message: format!(
                                "{e} (an access key created by an interrupted attempt is removed on retry)"
                            ),
                        })
                    }
                    Err(e) => return Err(e.into()),
                };
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
                    // A permanent failure: nobody can use a key whose secret cannot be published,
                    // so remove it now. Any other failure may have published it after all (the
                    // answer was lost): the next attempt either finds it published and reuses
                    // it, or finds it through the intent and deletes it.
                    // Nothing is in flight any more then: the intent goes too, so that another
                    // action's rotation of the user (a later run's) does not wait for it.
                    if e.class() == closeout_contract::ErrorClass::Permanent
                        && self.delete_key(user, &id).await.is_ok()
                    {
                        let _ = self.clear_intent(user).await;
                    }
                    return Err(e);
                }
                (id, secret, true)
            }
        };
        match old_active {
            Some(false) | None if !created => {
                self.clear_intent(user).await?;
                return Ok(ActionOutcome::already(
                    State::Inactive,
                    format!(
                        "access key {old} of iam user {user} is already retired; access key {new_id} is published in secret {secret_name}"
                    ),
                ));
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
        self.clear_intent(user).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_round_trips_through_its_tag_value_and_claims_only_new_keys() {
        let at = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let i = Intent {
            action: "1a2b3c4d".into(),
            at,
            had: vec!["AKIAOLD".into()],
        };
        let v = i.render();
        assert_eq!(v, "action=1a2b3c4d at=1900000000 had=AKIAOLD");
        assert!(v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _.:/=+-@".contains(c)));
        assert_eq!(Intent::parse(&v), Some(i.clone()));
        let none = Intent {
            had: vec![],
            ..i.clone()
        };
        assert_eq!(Intent::parse(&none.render()), Some(none));
        assert_eq!(Intent::parse("someone else's value"), None);

        let later = Some(at + chrono::Duration::seconds(3));
        assert!(i.claims("AKIANEW", later));
        assert!(
            !i.claims("AKIAOLD", later),
            "a key the user had is never claimed"
        );
        assert!(!i.claims("AKIANEW", None), "no creation date: not claimed");
        assert!(
            !i.claims("AKIANEW", Some(at - chrono::Duration::hours(1))),
            "a key older than the intent is someone else's"
        );
        assert!(i.claims("AKIANEW", Some(at - chrono::Duration::seconds(10))));
    }
}
