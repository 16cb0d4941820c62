//! The states of the person's user and sign-in sessions, read from the user object against the
//! run's cutoff.

use crate::entra::User;
use chrono::{DateTime, Utc};
use closeout_contract::State;

/// An RFC 3339 time as Graph writes it.
pub(crate) fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// `user` and `sign-in-sessions` states from the user object.
pub(crate) fn user_state(user: &User) -> State {
    if user.account_enabled == Some(false) {
        State::Disabled
    } else {
        State::Active
    }
}

/// `sign-in-sessions`: revoked once `signInSessionsValidFromDateTime` is at or after the
/// cutoff.
pub(crate) fn sessions_state(user: &User, cutoff: Option<DateTime<Utc>>) -> State {
    let valid_from = parse_time(user.sign_in_sessions_valid_from_date_time.as_deref());
    match (valid_from, cutoff) {
        // Graph may keep whole seconds: a revocation in the cutoff's second counts as after.
        (Some(from), Some(cutoff)) if from.timestamp() >= cutoff.timestamp() => State::Revoked,
        _ => State::Active,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_count_as_revoked_only_from_the_cutoff() {
        let user: User = serde_json::from_value(serde_json::json!({
            "id": "u", "accountEnabled": false,
            "signInSessionsValidFromDateTime": "2026-11-30T10:00:00Z"
        }))
        .unwrap();
        assert_eq!(user_state(&user), State::Disabled);
        let at = |s: &str| Some(s.parse::<DateTime<Utc>>().unwrap());
        assert_eq!(sessions_state(&user, None), State::Active);
        assert_eq!(
            sessions_state(&user, at("2026-11-30T09:59:59Z")),
            State::Revoked
        );
        assert_eq!(
            sessions_state(&user, at("2026-11-30T10:00:00.700Z")),
            State::Revoked
        );
        assert_eq!(
            sessions_state(&user, at("2026-11-30T10:00:01Z")),
            State::Active
        );
    }
}
