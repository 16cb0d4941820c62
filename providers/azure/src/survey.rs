//! What ARM says about the tenant, as one survey reads it: the scope tree above the
//! subscriptions, the role definitions, the role assignments and the vaults — and every path to
//! each vault, evaluated by [`crate::keyvault::vault_access`]. Pure: `arm` fills it.

use crate::keyvault::{vault_access, Access, Vault};
use crate::principal::Principals;
use crate::rbac::{RoleAssignment, RoleDefinition};
use std::collections::BTreeMap;

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
