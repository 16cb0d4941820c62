//! Entra ID through Microsoft Graph v1.0: the person's user (by object id, UPN, mail or
//! `employeeId`, in the configured order), the groups they are in (directly and through nested
//! groups), and the applications and service principals they own with their credentials.
//!
//! Graph never returns a credential's secret after creation; the types here have no field for
//! one.

use crate::http::{Api, AzureHttp, CallError};
use crate::keyvault::{Principal, Principals};
use closeout_contract::Identity;
use serde::{Deserialize, Serialize};

/// A way to find the person's Entra user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserMatch {
    /// The identity's id is the user's object id.
    ObjectId,
    /// The identity's email is the user principal name.
    Upn,
    /// The identity's email is the user's `mail`.
    Mail,
    /// The identity's id is the user's `employeeId`.
    EmployeeId,
}

impl UserMatch {
    pub const DEFAULTS: [UserMatch; 4] = [
        UserMatch::ObjectId,
        UserMatch::Upn,
        UserMatch::Mail,
        UserMatch::EmployeeId,
    ];

    /// The name of the user's property this rule compares.
    pub fn property(self) -> &'static str {
        match self {
            UserMatch::ObjectId => "object id",
            UserMatch::Upn => "userPrincipalName",
            UserMatch::Mail => "mail",
            UserMatch::EmployeeId => "employeeId",
        }
    }

    /// The identity's value this rule compares (its id or its email).
    fn identity_value(self, identity: &Identity) -> &str {
        match self {
            UserMatch::ObjectId | UserMatch::EmployeeId => &identity.id,
            UserMatch::Upn | UserMatch::Mail => &identity.email,
        }
    }

    /// The user's value this rule compares.
    pub fn user_value(self, user: &User) -> Option<&str> {
        match self {
            UserMatch::ObjectId => Some(&user.id),
            UserMatch::Upn => user.user_principal_name.as_deref(),
            UserMatch::Mail => user.mail.as_deref(),
            UserMatch::EmployeeId => user.employee_id.as_deref(),
        }
    }

    /// What this rule compares for `identity`, e.g. `mail = alice@example.com` (the account's
    /// `matched_by`).
    pub fn describe(self, identity: &Identity) -> String {
        format!("{} = {}", self.property(), self.identity_value(identity))
    }

    /// Whether `user` is `identity`'s by this rule, compared locally the way Graph's `eq`
    /// compares (case-insensitively): for a listing of every user, where asking Graph once per
    /// identity would be a call each.
    pub fn matches(self, identity: &Identity, user: &User) -> bool {
        let mine = self.identity_value(identity);
        !mine.is_empty()
            && self
                .user_value(user)
                .is_some_and(|theirs| mine.eq_ignore_ascii_case(theirs))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(default)]
    pub employee_id: Option<String>,
    #[serde(default)]
    pub account_enabled: Option<bool>,
    #[serde(default)]
    pub sign_in_sessions_valid_from_date_time: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A password credential as Graph lists it (no secret).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordCredential {
    pub key_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub end_date_time: Option<String>,
    #[serde(default)]
    pub hint: Option<String>,
}

/// A certificate credential as Graph lists it (public part only).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyCredential {
    pub key_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub end_date_time: Option<String>,
    #[serde(default, rename = "type")]
    pub key_type: Option<String>,
}

/// An application or service principal the person owns.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnedObject {
    #[serde(rename = "@odata.type", default)]
    pub odata_type: String,
    pub id: String,
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub password_credentials: Vec<PasswordCredential>,
    #[serde(default)]
    pub key_credentials: Vec<KeyCredential>,
}

impl OwnedObject {
    pub fn is_application(&self) -> bool {
        self.odata_type == "#microsoft.graph.application"
    }

    pub fn is_service_principal(&self) -> bool {
        self.odata_type == "#microsoft.graph.servicePrincipal"
    }
}

/// `value` for an OData string literal: single quotes doubled, then percent-encoded for the URL.
pub(crate) fn odata_literal(value: &str) -> String {
    urlencoding::encode(&value.replace('\'', "''")).into_owned()
}

fn looks_like_guid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        })
}

const USER_FIELDS: &str =
    "id,displayName,userPrincipalName,mail,employeeId,accountEnabled,signInSessionsValidFromDateTime";

/// The person's Entra user and the rule that found it, trying `rules` in order.
pub async fn find_user(
    http: &AzureHttp,
    identity: &Identity,
    rules: &[UserMatch],
) -> Result<Option<(User, String)>, CallError> {
    for rule in rules {
        let found = match rule {
            UserMatch::ObjectId if looks_like_guid(&identity.id) => {
                get_user(http, &identity.id).await?
            }
            UserMatch::Upn if !identity.email.is_empty() => get_user(http, &identity.email).await?,
            UserMatch::Mail if !identity.email.is_empty() => {
                filter_users(http, "mail", &identity.email).await?
            }
            UserMatch::EmployeeId if !identity.id.is_empty() => {
                filter_users(http, "employeeId", &identity.id).await?
            }
            _ => None,
        };
        if let Some(user) = found {
            return Ok(Some((user, rule.describe(identity))));
        }
    }
    Ok(None)
}

async fn get_user(http: &AzureHttp, key: &str) -> Result<Option<User>, CallError> {
    let path = format!(
        "/v1.0/users/{}?$select={USER_FIELDS}",
        urlencoding::encode(key)
    );
    match http.call::<User>(Api::Graph, "GET", &path, None).await {
        Ok(u) => Ok(u),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The one user whose `field` equals `value`; more than one is ambiguous and matches none.
async fn filter_users(
    http: &AzureHttp,
    field: &str,
    value: &str,
) -> Result<Option<User>, CallError> {
    let path = format!(
        "/v1.0/users?$filter={field}%20eq%20'{}'&$select={USER_FIELDS}",
        odata_literal(value)
    );
    let mut users: Vec<User> = http.list(Api::Graph, &path).await?;
    if users.len() == 1 {
        Ok(users.pop())
    } else {
        if users.len() > 1 {
            tracing::warn!(
                field,
                count = users.len(),
                "several Entra users match; none is taken"
            );
        }
        Ok(None)
    }
}

/// The user properties correlation reads (see [`UserMatch::matches`]) and `accountEnabled`.
const CORRELATION_FIELDS: &str = "id,displayName,userPrincipalName,mail,employeeId,accountEnabled";

/// Every user in the directory, with only the fields correlation needs: one paged list.
pub async fn all_users(http: &AzureHttp) -> Result<Vec<User>, CallError> {
    http.list(
        Api::Graph,
        &format!("/v1.0/users?$select={CORRELATION_FIELDS}"),
    )
    .await
}

/// The groups whose display name is `name` (Graph compares case-insensitively).
pub async fn groups_named(http: &AzureHttp, name: &str) -> Result<Vec<Group>, CallError> {
    let path = format!(
        "/v1.0/groups?$filter=displayName%20eq%20'{}'&$select=id,displayName",
        odata_literal(name)
    );
    http.list(Api::Graph, &path).await
}

/// The person's user as a principal (nothing between them and it).
pub fn user_principal(user: &User) -> Principal {
    Principal {
        object_id: user.id.clone(),
        display: format!(
            "user {}",
            user.user_principal_name.as_deref().unwrap_or(&user.id)
        ),
        via_membership: None,
    }
}

/// A group the user is directly in, as a principal reached through that membership.
pub fn direct_group_principal(group_id: &str, group_name: &str) -> Principal {
    Principal {
        object_id: group_id.to_string(),
        display: format!("group {group_name}"),
        via_membership: Some((group_id.to_string(), group_name.to_string())),
    }
}

/// The groups the user is in, directly and through nested groups.
pub async fn transitive_groups(http: &AzureHttp, user_id: &str) -> Result<Vec<Group>, CallError> {
    let path = format!(
        "/v1.0/users/{}/transitiveMemberOf/microsoft.graph.group?$select=id,displayName",
        urlencoding::encode(user_id)
    );
    http.list(Api::Graph, &path).await
}

/// The groups the user is a direct member of (the memberships that can be removed).
pub async fn direct_groups(http: &AzureHttp, user_id: &str) -> Result<Vec<Group>, CallError> {
    let path = format!(
        "/v1.0/users/{}/memberOf/microsoft.graph.group?$select=id,displayName",
        urlencoding::encode(user_id)
    );
    http.list(Api::Graph, &path).await
}

/// The applications and service principals the user owns, with their credentials.
pub async fn owned_objects(http: &AzureHttp, user_id: &str) -> Result<Vec<OwnedObject>, CallError> {
    let path = format!("/v1.0/users/{}/ownedObjects", urlencoding::encode(user_id));
    let all: Vec<OwnedObject> = http.list(Api::Graph, &path).await?;
    Ok(all
        .into_iter()
        .filter(|o| o.is_application() || o.is_service_principal())
        .collect())
}

/// The user and every group they are in, each group with the direct membership that puts the
/// user in it (removing that membership removes what the group grants). One call for the
/// direct groups, one for the transitive ones, and one per direct group for what it is in.
pub async fn principals(http: &AzureHttp, user: &User) -> Result<Principals, CallError> {
    let mut all = vec![user_principal(user)];
    let direct = direct_groups(http, &user.id).await?;
    let mut reach: Vec<(Group, Vec<String>)> = Vec::with_capacity(direct.len());
    for d in direct {
        let path = format!(
            "/v1.0/groups/{}/transitiveMemberOf/microsoft.graph.group?$select=id,displayName",
            urlencoding::encode(&d.id)
        );
        let above: Vec<Group> = http.list(Api::Graph, &path).await?;
        reach.push((d, above.into_iter().map(|g| g.id).collect()));
    }
    for g in transitive_groups(http, &user.id).await? {
        let name = g.display_name.clone().unwrap_or_else(|| g.id.clone());
        let via = reach
            .iter()
            .find(|(d, above)| d.id == g.id || above.contains(&g.id))
            .map(|(d, _)| {
                (
                    d.id.clone(),
                    d.display_name.clone().unwrap_or_else(|| d.id.clone()),
                )
            });
        all.push(Principal {
            object_id: g.id,
            display: format!("group {name}"),
            via_membership: via,
        });
    }
    Ok(Principals { all })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_and_literals() {
        assert!(looks_like_guid("8e3af657-a8ff-443c-a75c-2fe8c4bcb635"));
        assert!(!looks_like_guid("E1001"));
        assert!(!looks_like_guid("8e3af657a-8ff-443c-a75c-2fe8c4bcb635"));
        assert_eq!(odata_literal("o'brien@x.com"), "o%27%27brien%40x.com");
    }
}
