//! Entra ID through Microsoft Graph v1.0: the person's user (by object id, UPN, mail or
//! `employeeId`, in the configured order), the groups they are in (directly and through nested
//! groups), and the applications and service principals they own with their credentials.

use crate::entra::{Group, OwnedObject, User, UserMatch, SERVICE_PRINCIPAL_TYPE};
use crate::http::{Api, AzureHttp, CallError, Unread};
use crate::principal::{Principal, Principals};
use closeout_contract::Identity;
use serde::Deserialize;
use serde_json::json;

/// The Graph path of a user, group, application or service principal.
pub(crate) fn object_path(collection: &str, id: &str) -> String {
    format!("/v1.0/{collection}/{}", urlencoding::encode(id))
}

/// Graph `$ref` bodies name the object by URL.
pub(crate) fn odata_ref(graph_base: &str, id: &str) -> serde_json::Value {
    json!({ "@odata.id": format!("{}/v1.0/directoryObjects/{id}", graph_base.trim_end_matches('/')) })
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
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

/// The user with object id or UPN `key`, with the fields resolution reads; `None` when there is
/// none.
pub async fn get_user(http: &AzureHttp, key: &str) -> Result<Option<User>, CallError> {
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
    groups_of(http, "users", user_id, "transitiveMemberOf").await
}

/// The groups the user is a direct member of (the memberships that can be removed).
pub async fn direct_groups(http: &AzureHttp, user_id: &str) -> Result<Vec<Group>, CallError> {
    groups_of(http, "users", user_id, "memberOf").await
}

/// The groups `id` (in `collection`: users, servicePrincipals, groups) is in: `memberOf` or
/// `transitiveMemberOf`.
async fn groups_of(
    http: &AzureHttp,
    collection: &str,
    id: &str,
    relation: &str,
) -> Result<Vec<Group>, CallError> {
    let path = format!(
        "{}/{relation}/microsoft.graph.group?$select=id,displayName",
        object_path(collection, id)
    );
    http.list(Api::Graph, &path).await
}

/// The applications and service principals the user owns, with their credentials.
pub async fn owned_objects(http: &AzureHttp, user_id: &str) -> Result<Vec<OwnedObject>, CallError> {
    owned_objects_of(http, "users", user_id).await
}

/// The applications and service principals `id` (in `collection`) owns.
async fn owned_objects_of(
    http: &AzureHttp,
    collection: &str,
    id: &str,
) -> Result<Vec<OwnedObject>, CallError> {
    let path = format!("{}/ownedObjects", object_path(collection, id));
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
    principals_of(http, "users", &user.id, user_principal(user)).await
}

/// `me` (object `id` in `collection`) and every group it is in, each group with the direct
/// membership that leads to it.
async fn principals_of(
    http: &AzureHttp,
    collection: &str,
    id: &str,
    me: Principal,
) -> Result<Principals, CallError> {
    let mut all = vec![me];
    let direct = groups_of(http, collection, id, "memberOf").await?;
    let mut reach: Vec<(Group, Vec<String>)> = Vec::with_capacity(direct.len());
    for d in direct {
        let above = groups_of(http, "groups", &d.id, "transitiveMemberOf").await?;
        reach.push((d, above.into_iter().map(|g| g.id).collect()));
    }
    for g in groups_of(http, collection, id, "transitiveMemberOf").await? {
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

/// A service principal the person can act as: they own it, or own its application (an owner
/// can add a credential and sign in as it), or it is reached the same way from one they can
/// act as.
#[derive(Debug, Clone)]
pub struct ActedAs {
    /// The service principal (object id, appId, display name).
    pub service_principal: OwnedObject,
    /// The steps from the person to it, as (edge, node): `owns application A`, `can-act-as
    /// service principal A`, `owns application B`, ...
    pub steps: Vec<(String, String)>,
    /// The object the person owns at the start of the chain: (Graph collection, object id).
    /// Handing it over (reassign-owner) closes the chain.
    pub owned: (String, String),
    /// True when the person owns the service principal itself (its finding is then
    /// `owned-service-principal`).
    pub owned_directly: bool,
    /// The service principal and the groups it is in, as RBAC and access policies see them.
    pub principals: Principals,
}

/// What [`acted_as`] found, and what it could not read.
#[derive(Debug, Default)]
pub struct ActingReach {
    /// Every service principal reached, once.
    pub reached: Vec<ActedAs>,
    /// The reads refused or missing on the way (the rest was followed).
    pub unread: Vec<Unread>,
}

fn noun(o: &OwnedObject) -> &'static str {
    if o.is_application() {
        "application"
    } else {
        "service principal"
    }
}

fn name_of(o: &OwnedObject) -> &str {
    o.display_name.as_deref().unwrap_or(&o.id)
}

/// Every service principal the owner of `owned` can act as, followed to a fixpoint: the
/// service principal of each owned application (looked up by appId) or the owned service
/// principal itself, then what that service principal owns, and so on; each service principal
/// once. Per service principal reached: its groups (as [`principals`] reads a user's) and its
/// owned objects; per application, one lookup of its service principal. A refused or missing
/// read is recorded in `unread` and the rest goes on.
pub async fn acted_as(
    http: &AzureHttp,
    kind: &'static str,
    owned: &[OwnedObject],
) -> Result<ActingReach, CallError> {
    let mut out = ActingReach::default();
    let mut seen: std::collections::BTreeSet<String> = Default::default();
    // (the object, the steps to its owner, the person's own object the chain starts at)
    type Step = (OwnedObject, Vec<(String, String)>, (String, String));
    let mut queue: std::collections::VecDeque<Step> = owned
        .iter()
        .map(|o| {
            let collection = if o.is_application() {
                "applications"
            } else {
                "servicePrincipals"
            };
            (
                o.clone(),
                Vec::new(),
                (collection.to_string(), o.id.clone()),
            )
        })
        .collect();
    while let Some((object, before, root)) = queue.pop_front() {
        let mut steps = before.clone();
        steps.push((
            "owns".into(),
            format!("{} {}", noun(&object), name_of(&object)),
        ));
        let sp = if object.is_service_principal() {
            object.clone()
        } else {
            let Some(app_id) = object.app_id.as_deref().filter(|a| !a.is_empty()) else {
                continue;
            };
            match service_principal_of_app(http, app_id).await {
                Ok(Some(sp)) => sp,
                // An application with no service principal in this tenant signs in nowhere.
                Ok(None) => continue,
                Err(e) => {
                    out.unread.push(Unread::of(
                        kind,
                        object.id.clone(),
                        format!("the service principal of application {}", name_of(&object)),
                        e,
                    )?);
                    continue;
                }
            }
        };
        if !seen.insert(sp.id.to_ascii_lowercase()) {
            continue;
        }
        let sp_node = format!("service principal {}", name_of(&sp));
        if object.is_application() {
            steps.push(("can-act-as".into(), sp_node.clone()));
        }
        let me = Principal {
            object_id: sp.id.clone(),
            display: sp_node.clone(),
            via_membership: None,
        };
        let principals = match principals_of(http, "servicePrincipals", &sp.id, me.clone()).await {
            Ok(p) => p,
            Err(e) => {
                out.unread.push(Unread::of(
                    kind,
                    sp.id.clone(),
                    format!("the groups of {sp_node}"),
                    e,
                )?);
                Principals { all: vec![me] }
            }
        };
        match owned_objects_of(http, "servicePrincipals", &sp.id).await {
            Ok(next) => {
                for o in next {
                    queue.push_back((o, steps.clone(), root.clone()));
                }
            }
            Err(e) => out.unread.push(Unread::of(
                kind,
                sp.id.clone(),
                format!("what {sp_node} owns"),
                e,
            )?),
        }
        out.reached.push(ActedAs {
            owned_directly: before.is_empty() && object.is_service_principal(),
            service_principal: sp,
            steps,
            owned: root,
            principals,
        });
    }
    Ok(out)
}

/// The service principal of application `app_id` in this tenant, if it has one.
pub async fn service_principal_of_app(
    http: &AzureHttp,
    app_id: &str,
) -> Result<Option<OwnedObject>, CallError> {
    let path = format!(
        "/v1.0/servicePrincipals?$filter=appId%20eq%20'{}'&$select=id,appId,displayName",
        odata_literal(app_id)
    );
    let mut found: Vec<OwnedObject> = http.list(Api::Graph, &path).await?;
    Ok(found.pop().map(|mut sp| {
        // A list of one collection does not repeat the type on each item.
        sp.odata_type = SERVICE_PRINCIPAL_TYPE.into();
        sp
    }))
}

/// The owners' object ids of the application or service principal `object_id` in `collection`
/// (`applications`, `servicePrincipals`); `None` when the object no longer exists.
pub async fn owners(
    http: &AzureHttp,
    collection: &str,
    object_id: &str,
) -> Result<Option<Vec<String>>, CallError> {
    let path = format!("{}/owners?$select=id", object_path(collection, object_id));
    match http.list::<IdOnly>(Api::Graph, &path).await {
        Ok(owners) => Ok(Some(owners.into_iter().map(|o| o.id).collect())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether user `user_id` is in group `group_id` (directly, or through nesting when
/// `transitive`); `None` when the user no longer exists.
pub async fn in_group(
    http: &AzureHttp,
    user_id: &str,
    group_id: &str,
    transitive: bool,
) -> Result<Option<bool>, CallError> {
    let relation = if transitive {
        "transitiveMemberOf"
    } else {
        "memberOf"
    };
    let path = format!(
        "{}/{relation}/microsoft.graph.group?$select=id",
        object_path("users", user_id)
    );
    match http.list::<IdOnly>(Api::Graph, &path).await {
        Ok(groups) => Ok(Some(
            groups.iter().any(|g| g.id.eq_ignore_ascii_case(group_id)),
        )),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
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
