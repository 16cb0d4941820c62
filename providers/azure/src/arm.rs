//! Azure Resource Manager reads for RBAC and Key Vault: the scope tree (management groups and
//! the subscriptions under them), role definitions, every role assignment of each subscription
//! (at, above and below it), and the vaults — then every path to each
//! vault, evaluated by [`crate::keyvault::vault_access`] over the [`Survey`]; and the single
//! reads actions and verification make (one vault, one assignment).

use crate::http::{Api, AzureHttp, CallError, Unread};
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

/// Every vault of the subscription, with its access policies and permission model.
pub async fn vaults(http: &AzureHttp, subscription_id: &str) -> Result<Vec<Vault>, CallError> {
    http.list(
        Api::Arm,
        &format!(
            "/subscriptions/{subscription_id}/providers/Microsoft.KeyVault/vaults?api-version={KEY_VAULT_API}"
        ),
    )
    .await
}

/// Every role assignment at, above and below the subscription: one paged list, no filter.
pub async fn assignments(
    http: &AzureHttp,
    subscription_id: &str,
) -> Result<Vec<RoleAssignment>, CallError> {
    http.list(
        Api::Arm,
        &format!(
            "/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleAssignments?api-version={AUTHORIZATION_API}"
        ),
    )
    .await
}

/// Survey every subscription the caller can see: the management-group tree, then per
/// subscription one paged list each of role definitions, role assignments (all of them: whose
/// reach they make is decided locally) and vaults. A listing refused or missing is recorded in
/// [`Survey::unread`] and the survey goes on; the tree is only needed for paths to name the
/// groups above a subscription (assignments there are matched through each subscription's own
/// listing), so an unreadable tree leaves nothing unknown.
pub async fn survey(http: &AzureHttp) -> Result<Survey, CallError> {
    let mut out = Survey::default();
    match scope_tree(http).await {
        Ok(tree) => out.tree = tree,
        Err(e) if e.refused_or_missing() => {}
        Err(e) => return Err(e),
    }
    let subscriptions = match subscriptions(http).await {
        Ok(s) => s,
        Err(e) => {
            out.unread
                .push(Unread::of("subscription", "", "the subscriptions", e)?);
            Vec::new()
        }
    };
    for sub in subscriptions {
        let id = &sub.subscription_id;
        let scope = format!("/subscriptions/{id}");
        match role_definitions(http, id).await {
            Ok(roles) => out.roles.extend(roles),
            Err(e) => out.unread.push(Unread::of(
                "role-definition",
                scope.clone(),
                format!("the role definitions of subscription {id}"),
                e,
            )?),
        }
        match assignments(http, id).await {
            Ok(list) => {
                for a in list {
                    out.add_assignment(id, a);
                }
            }
            Err(e) => out.unread.push(Unread::of(
                "role-assignment",
                scope.clone(),
                format!("the role assignments of subscription {id}"),
                e,
            )?),
        }
        match vaults(http, id).await {
            Ok(v) => out.vaults.extend(v),
            Err(e) => out.unread.push(Unread::of(
                "key-vault",
                scope.clone(),
                format!("the key vaults of subscription {id}"),
                e,
            )?),
        }
    }
    Ok(out)
}

/// Every vault `principals` reach, with every path, across every subscription the caller can
/// see.
pub async fn key_vault_paths(
    http: &AzureHttp,
    principals: &Principals,
) -> Result<Vec<(Vault, Vec<Access>)>, CallError> {
    let survey = survey(http).await?;
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
