//! Azure Resource Manager reads for RBAC and Key Vault: the scope tree (management groups and
//! the subscriptions under them), role definitions, the role assignments reaching a user
//! (directly or through groups, at every scope), and the vaults — then every path to each
//! vault, evaluated by [`crate::keyvault::vault_access`].

use crate::http::{Api, AzureHttp, CallError};
use crate::keyvault::{vault_access, Access, Principals, Vault};
use crate::rbac::{RoleAssignment, RoleDefinition};
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

/// Who is whose parent above the subscriptions: subscription → management group → ... → root.
#[derive(Debug, Default)]
pub struct ScopeTree {
    /// Lower-cased scope id → parent scope id.
    parents: BTreeMap<String, String>,
}

impl ScopeTree {
    pub fn insert(&mut self, child: &str, parent: &str) {
        self.parents
            .insert(child.to_ascii_lowercase(), parent.to_string());
    }

    /// The scope chain of a resource: itself, its resource group, its subscription, the
    /// management groups above that, and `/`.
    pub fn chain(&self, resource_id: &str) -> Vec<String> {
        let mut chain = vec![resource_id.to_string()];
        let segments: Vec<&str> = resource_id.trim_matches('/').split('/').collect();
        if segments.len() >= 4 && segments[2].eq_ignore_ascii_case("resourceGroups") {
            chain.push(format!("/{}", segments[..4].join("/")));
        }
        if segments.len() >= 2 && segments[0].eq_ignore_ascii_case("subscriptions") {
            let mut scope = format!("/{}", segments[..2].join("/"));
            if !chain.iter().any(|c| c.eq_ignore_ascii_case(&scope)) {
                chain.push(scope.clone());
            }
            // Up the management groups; bounded, in case of a cycle in bad data.
            for _ in 0..16 {
                let Some(parent) = self.parents.get(&scope.to_ascii_lowercase()) else {
                    break;
                };
                chain.push(parent.clone());
                scope = parent.clone();
            }
        }
        chain.push("/".into());
        chain.dedup();
        chain
    }
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

/// What ARM says about one person: the scope tree, every role definition, every role
/// assignment reaching them (directly or through a group, at any scope, deduplicated across
/// subscriptions) and every vault the caller can see.
#[derive(Debug, Default)]
pub struct Survey {
    pub tree: ScopeTree,
    /// Keyed by lower-case role GUID.
    pub roles: BTreeMap<String, RoleDefinition>,
    pub assignments: Vec<RoleAssignment>,
    pub vaults: Vec<Vault>,
}

impl Survey {
    /// Every vault the person reaches, with every path.
    pub fn key_vault_paths(&self, principals: &Principals) -> Vec<(&Vault, Vec<Access>)> {
        self.vaults
            .iter()
            .filter_map(|vault| {
                let access = vault_access(
                    vault,
                    &self.tree.chain(&vault.id),
                    principals,
                    &self.assignments,
                    &self.roles,
                );
                (!access.is_empty()).then_some((vault, access))
            })
            .collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vaults_chain_climbs_the_management_groups() {
        let mut tree = ScopeTree::default();
        tree.insert(
            "/subscriptions/S1",
            "/providers/Microsoft.Management/managementGroups/platform",
        );
        tree.insert(
            "/providers/Microsoft.Management/managementGroups/platform",
            "/providers/Microsoft.Management/managementGroups/root",
        );
        let vault = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v";
        assert_eq!(
            tree.chain(vault),
            [
                vault,
                "/subscriptions/s1/resourceGroups/rg",
                "/subscriptions/s1",
                "/providers/Microsoft.Management/managementGroups/platform",
                "/providers/Microsoft.Management/managementGroups/root",
                "/",
            ]
        );
        // A cycle in bad data ends.
        tree.insert(
            "/providers/Microsoft.Management/managementGroups/root",
            "/subscriptions/s1",
        );
        assert!(tree.chain(vault).len() < 40);
    }
}
