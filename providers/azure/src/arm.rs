//! Azure Resource Manager reads for RBAC and Key Vault: the scope tree (management groups and
//! the subscriptions under them), role definitions, the role assignments reaching a user
//! (directly or through groups, at every scope), and the vaults — then every path to each
//! vault, evaluated by [`crate::keyvault::vault_access`] over the [`Survey`]; and the single
//! reads actions and verification make (one vault, one assignment).

use crate::http::{Api, AzureHttp, CallError};
use crate::keyvault::{Access, Vault};
use crate::principal::Principals;
use crate::rbac::{RoleAssignment, RoleDefinition};
use crate::survey::{ScopeTree, Survey};
use serde::Deserialize;
use std::collections::BTreeMap;

pub const AUTHORIZATION_API: &str = "2022-04-01";
pub const KEY_VAULT_API: &str = "2023-07-01";
pub const MANAGEMENT_GROUPS_API: &str = "2023-04-01";
pub const SUBSCRIPTIONS_API: &str = "2022-12-01";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub subscription_id: String,
    #[serde(default)]
    pub display_name: String,
}

#[derive(Deserialize)]
struct ManagementGroupRef {
    id: String,
}

#[derive(Deserialize)]
struct ManagementGroup {
    id: String,
    #[serde(default)]
    properties: ManagementGroupProperties,
}

#[derive(Deserialize, Default)]
struct ManagementGroupProperties {
    #[serde(default)]
    details: Option<ManagementGroupDetails>,
    #[serde(default)]
    children: Option<Vec<ChildRef>>,
}

#[derive(Deserialize, Default)]
struct ManagementGroupDetails {
    #[serde(default)]
    parent: Option<ParentRef>,
}

#[derive(Deserialize)]
struct ParentRef {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct ChildRef {
    id: String,
}

/// The management-group hierarchy: one list, then each group with its children.
pub async fn scope_tree(http: &AzureHttp) -> Result<ScopeTree, CallError> {
    let groups: Vec<ManagementGroupRef> = http
        .list(
            Api::Arm,
            &format!(
                "/providers/Microsoft.Management/managementGroups?api-version={MANAGEMENT_GROUPS_API}"
            ),
        )
        .await?;
    let mut tree = ScopeTree::default();
    for g in groups {
        let path = format!(
            "{}?api-version={MANAGEMENT_GROUPS_API}&$expand=children",
            g.id
        );
        let Some(mg) = http
            .call::<ManagementGroup>(Api::Arm, "GET", &path, None)
            .await?
        else {
            continue;
        };
        if let Some(parent) = mg
            .properties
            .details
            .and_then(|d| d.parent)
            .and_then(|p| p.id)
        {
            tree.insert(&mg.id, &parent);
        }
        for child in mg.properties.children.unwrap_or_default() {
            tree.insert(&child.id, &mg.id);
        }
    }
    Ok(tree)
}

pub async fn subscriptions(http: &AzureHttp) -> Result<Vec<Subscription>, CallError> {
    http.list(
        Api::Arm,
        &format!("/subscriptions?api-version={SUBSCRIPTIONS_API}"),
    )
    .await
}

/// Role definitions visible in the subscription, keyed by lower-case GUID.
pub async fn role_definitions(
    http: &AzureHttp,
    subscription_id: &str,
) -> Result<BTreeMap<String, RoleDefinition>, CallError> {
    let defs: Vec<RoleDefinition> = http
        .list(
            Api::Arm,
            &format!(
                "/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions?api-version={AUTHORIZATION_API}"
            ),
        )
        .await?;
    Ok(defs
        .into_iter()
        .map(|d| (d.name.to_ascii_lowercase(), d))
        .collect())
}

/// The role definitions named `role_name` that can be assigned at `scope` (empty or `/` for
/// the tenant root): ARM's `roleName eq` filter, one paged list.
pub async fn role_definitions_named(
    http: &AzureHttp,
    scope: &str,
    role_name: &str,
) -> Result<Vec<RoleDefinition>, CallError> {
    http.list(
        Api::Arm,
        &format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions?api-version={AUTHORIZATION_API}&$filter=roleName%20eq%20'{}'",
            scope.trim_end_matches('/'),
            crate::directory::odata_literal(role_name)
        ),
    )
    .await
}

/// Every role assignment in or above the subscription (and below it) that reaches the user,
/// directly or through any group: ARM's `assignedTo()` filter, one paged list.
pub async fn assignments_reaching(
    http: &AzureHttp,
    subscription_id: &str,
    user_object_id: &str,
) -> Result<Vec<RoleAssignment>, CallError> {
    http.list(
        Api::Arm,
        &format!(
            "/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleAssignments?api-version={AUTHORIZATION_API}&$filter=assignedTo('{}')",
            urlencoding::encode(user_object_id)
        ),
    )
    .await
}

pub async fn vaults(http: &AzureHttp, subscription_id: &str) -> Result<Vec<Vault>, CallError> {
    http.list(
        Api::Arm,
        &format!(
            "/subscriptions/{subscription_id}/providers/Microsoft.KeyVault/vaults?api-version={KEY_VAULT_API}"
        ),
    )
    .await
}

/// Survey every subscription the caller can see for the user with object id `user_id`: per
/// subscription one paged list each of role definitions, assignments (`assignedTo()`) and vaults.
pub async fn survey(http: &AzureHttp, user_id: &str) -> Result<Survey, CallError> {
    let mut out = Survey {
        tree: scope_tree(http).await?,
        ..Survey::default()
    };
    let mut seen = std::collections::BTreeSet::new();
    for sub in subscriptions(http).await? {
        out.roles
            .extend(role_definitions(http, &sub.subscription_id).await?);
        for a in assignments_reaching(http, &sub.subscription_id, user_id).await? {
            if seen.insert(a.id.to_ascii_lowercase()) {
                out.assignments.push(a);
            }
        }
        out.vaults.extend(vaults(http, &sub.subscription_id).await?);
    }
    Ok(out)
}

/// Every vault the person reaches, with every path, across every subscription the caller can
/// see.
pub async fn key_vault_paths(
    http: &AzureHttp,
    principals: &Principals,
) -> Result<Vec<(Vault, Vec<Access>)>, CallError> {
    let Some(user) = principals.user_id() else {
        return Ok(Vec::new());
    };
    let survey = survey(http, user).await?;
    Ok(survey
        .key_vault_paths(principals)
        .into_iter()
        .map(|(v, a)| (v.clone(), a))
        .collect())
}

/// The vault with ARM id `vault_id`; `None` when it no longer exists.
pub async fn vault(http: &AzureHttp, vault_id: &str) -> Result<Option<Vault>, CallError> {
    let path = format!("{vault_id}?api-version={KEY_VAULT_API}");
    match http.call::<Vault>(Api::Arm, "GET", &path, None).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
struct IdOnly {
    #[serde(rename = "id")]
    _id: String,
}

/// Whether the role assignment with ARM id `assignment_id` exists.
pub async fn assignment_exists(http: &AzureHttp, assignment_id: &str) -> Result<bool, CallError> {
    let path = format!("{assignment_id}?api-version={AUTHORIZATION_API}");
    match http.call::<IdOnly>(Api::Arm, "GET", &path, None).await {
        Ok(found) => Ok(found.is_some()),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}
