//! The state of a session, an access key or a secret relative to the run's cutoff. Resolution
//! (findings) and verification (live state) both decide through here, so they answer alike.

use crate::inventory::SecretVersions;
use crate::policy::PolicyDocument;
use chrono::{DateTime, Utc};
use closeout_contract::State;

/// Whether `t` is at or after `cutoff`, compared in whole seconds (moto and IAM report some
/// times truncated to the second). No cutoff: nothing counts as after it.
pub fn at_or_after(t: Option<DateTime<Utc>>, cutoff: Option<DateTime<Utc>>) -> bool {
    match (t, cutoff) {
        (Some(t), Some(c)) => t.timestamp() >= c.timestamp(),
        _ => false,
    }
}

/// The state of a user or role given the session-revocation policy's text, if any.
pub fn session_state(policy_text: Option<&str>, cutoff: Option<DateTime<Utc>>) -> State {
    let revoked_at = policy_text.and_then(PolicyDocument::token_issue_cutoff);
    if at_or_after(revoked_at, cutoff) {
        State::Revoked
    } else {
        State::Active
    }
}

/// The state of a secret from its versions: rotated when `AWSCURRENT` was created at or after
/// the cutoff.
pub fn secret_state(versions: &SecretVersions, cutoff: Option<DateTime<Utc>>) -> State {
    if at_or_after(versions.current_created(), cutoff) {
        State::Rotated
    } else {
        State::Active
    }
}

/// The state of an access key: inactive, rotated (an owned NHI's key created after the cutoff:
/// the person never saw it), or active.
pub fn key_state(
    active: bool,
    nhi: bool,
    created: Option<DateTime<Utc>>,
    cutoff: Option<DateTime<Utc>>,
) -> State {
    if !active {
        State::Inactive
    } else if nhi && at_or_after(created, cutoff) {
        State::Rotated
    } else {
        State::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Version, AWSCURRENT};
    #[test]
    fn cutoff_comparisons_are_in_whole_seconds() {
        let c: DateTime<Utc> = "2025-01-01T00:00:10.700Z".parse().unwrap();
        let same_second: DateTime<Utc> = "2025-01-01T00:00:10Z".parse().unwrap();
        let before: DateTime<Utc> = "2025-01-01T00:00:09.999Z".parse().unwrap();
        assert!(at_or_after(Some(same_second), Some(c)));
        assert!(!at_or_after(Some(before), Some(c)));
        assert!(!at_or_after(Some(same_second), None));
        assert!(!at_or_after(None, Some(c)));
        assert_eq!(
            key_state(true, true, Some(same_second), Some(c)),
            State::Rotated
        );
        assert_eq!(
            key_state(true, false, Some(same_second), Some(c)),
            State::Active
        );
        assert_eq!(
            key_state(false, true, Some(same_second), Some(c)),
            State::Inactive
        );
        let mut v = SecretVersions {
            versions: vec![
                Version {
                    id: "old".into(),
                    stages: vec!["AWSPREVIOUS".into()],
                    created: Some(before),
                },
                Version {
                    id: "new".into(),
                    stages: vec![AWSCURRENT.into()],
                    created: Some(same_second),
                },
            ],
            last_changed: None,
        };
        assert_eq!(secret_state(&v, Some(c)), State::Rotated);
        assert_eq!(secret_state(&v, None), State::Active);
        // moto's ListSecretVersionIds says "now" for every version: the secret's last change
        // bounds it.
        v.last_changed = Some(before);
        assert_eq!(secret_state(&v, Some(c)), State::Active);
        v.last_changed = Some(c + chrono::Duration::days(1));
        assert_eq!(secret_state(&v, Some(c)), State::Rotated);
        assert_eq!(v.current_created(), Some(same_second));
    }
}
