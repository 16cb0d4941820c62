//! Correlation: which IAM principal is an identity's, by the identity tag or, failing that, by
//! the user-name rules. Pure. Resolution, grants, unclaimed accounts and service identities all
//! correlate through here, so they agree on whose principal is whose.

use crate::config::AwsConfig;
use crate::inventory::{tag, IamUser};
use closeout_contract::Identity;

/// The result of correlating an identity with the account's IAM users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Correlation {
    /// Index into the users and the rule that matched, e.g. `tag identity = E100`.
    pub account: Option<(usize, String)>,
    pub warnings: Vec<String>,
}

pub use crate::config::rule_form;

/// How an IAM principal (user or role) with `tags` and `name` is the identity's, as (rank, rule):
/// rank 0 for a tag `identity_tag` naming the identity, then 1.. for the `match_user_name` forms
/// in their order. A principal whose identity tag names somebody else is never matched by name.
pub fn principal_match(
    tags: &[(String, String)],
    name: &str,
    identity: &Identity,
    config: &AwsConfig,
) -> Option<(usize, String)> {
    if let Some(v) = tag(tags, &config.identity_tag) {
        if identity.is_named_by(v) {
            return Some((0, format!("tag {} = {}", config.identity_tag, v.trim())));
        }
        // Tagged as somebody else's: a matching name is a coincidence.
        if !v.trim().is_empty() {
            return None;
        }
    }
    config
        .match_user_name
        .iter()
        .enumerate()
        .find(|(_, rule)| {
            rule_form(**rule, identity).is_some_and(|f| name.eq_ignore_ascii_case(&f))
        })
        .map(|(rank, rule)| (rank + 1, format!("user name = {}", rule.describe())))
}

/// Find the identity's IAM user by [`principal_match`]: a tag wins over a user name. Several
/// candidates: the first wins, with a warning.
pub fn correlate(users: &[IamUser], identity: &Identity, config: &AwsConfig) -> Correlation {
    // (rank, user index, rule).
    let mut candidates: Vec<(usize, usize, String)> = users
        .iter()
        .enumerate()
        .filter_map(|(i, u)| {
            principal_match(&u.tags, &u.name, identity, config).map(|(rank, rule)| (rank, i, rule))
        })
        .collect();
    candidates.sort_by(|a, b| (a.0, &users[a.1].name).cmp(&(b.0, &users[b.1].name)));
    let mut c = Correlation::default();
    if let Some((_, i, rule)) = candidates.first() {
        c.account = Some((*i, rule.clone()));
        if candidates.len() > 1 {
            let all: Vec<String> = candidates
                .iter()
                .map(|(_, j, r)| format!("{} ({r})", users[*j].name))
                .collect();
            c.warnings.push(format!(
                "several IAM users match identity {}: {}; using {}",
                identity.id,
                all.join(", "),
                users[*i].name
            ));
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{identity, user};
    #[test]
    fn correlation_prefers_tags_and_reports_ambiguity() {
        let cfg = AwsConfig::default();
        let alice = identity("E100", "Alice.Smith@example.com");
        let users = vec![
            user("alice.smith", &[]),
            user("asmith", &[("identity", "alice.smith@EXAMPLE.com")]),
            user("bob", &[]),
        ];
        let c = correlate(&users, &alice, &cfg);
        assert_eq!(
            c.account,
            Some((1, "tag identity = alice.smith@EXAMPLE.com".into()))
        );
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("alice.smith (user name = email local part)"));

        let c = correlate(&users[..1], &alice, &cfg);
        assert_eq!(c.account, Some((0, "user name = email local part".into())));
        assert!(c.warnings.is_empty());

        let users = vec![user("e100", &[])];
        assert_eq!(
            correlate(&users, &alice, &cfg).account,
            Some((0, "user name = id".into()))
        );
        let users = vec![user("Alice.Smith@example.com", &[])];
        assert_eq!(
            correlate(&users, &alice, &cfg).account,
            Some((0, "user name = email".into()))
        );
    }

    #[test]
    fn correlation_respects_rules_and_foreign_tags() {
        let alice = identity("E100", "alice@example.com");
        // A user called alice that is tagged as somebody else's account is not Alice's.
        let users = vec![user("alice", &[("identity", "E999")])];
        assert_eq!(
            correlate(&users, &alice, &AwsConfig::default()).account,
            None
        );
        let only_tags = AwsConfig {
            match_user_name: vec![],
            ..Default::default()
        };
        assert_eq!(
            correlate(&[user("alice", &[])], &alice, &only_tags).account,
            None
        );
        let custom_tag = AwsConfig {
            identity_tag: "employee".into(),
            ..Default::default()
        };
        let users = vec![user("x1", &[("Employee", "E100")])];
        assert_eq!(
            correlate(&users, &alice, &custom_tag).account,
            Some((0, "tag employee = E100".into()))
        );
        assert_eq!(
            correlate(&[user("carol", &[])], &alice, &AwsConfig::default()),
            Correlation::default()
        );
    }
}
