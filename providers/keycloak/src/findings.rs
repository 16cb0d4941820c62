//! Finding ids and builders every module shares.

use crate::capabilities::PROVIDER;
use closeout_contract::{Finding, Holder, Path, Relation, State};
use std::collections::BTreeMap;

/// `keycloak:{kind}:{realm}/{rest}`.
pub fn id(kind: &str, realm: &str, rest: &str) -> String {
    format!("{PROVIDER}:{kind}:{realm}/{rest}")
}

/// The path of everything bound to the user: `-account-> user NAME`.
pub fn user_path(username: &str) -> Path {
    Path::new().then("account", format!("user {username}"))
}

/// Epoch milliseconds (Keycloak's timestamps) as RFC 3339.
pub fn millis(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339())
}

/// A finding with the fields every builder sets.
#[allow(clippy::too_many_arguments)]
pub fn finding(
    id: String,
    kind: &str,
    relation: Relation,
    holder: Holder,
    resource: String,
    display: String,
    state: State,
    path: Path,
    attributes: BTreeMap<String, String>,
) -> Finding {
    Finding {
        id,
        provider: PROVIDER.to_string(),
        kind: kind.to_string(),
        relation,
        holder,
        resource,
        display,
        state,
        paths: vec![path],
        attributes,
    }
}

/// Attributes from pairs.
pub fn attrs<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// A required attribute of a finding, or a permanent error naming it.
pub fn need<'a>(f: &'a Finding, key: &str) -> Result<&'a str, closeout_contract::ProviderError> {
    f.attr(key)
        .ok_or_else(|| closeout_contract::ProviderError::Permanent {
            provider: PROVIDER,
            message: format!("finding {} has no attribute {key}", f.id),
        })
}
