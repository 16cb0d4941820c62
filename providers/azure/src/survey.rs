//! What ARM says about the tenant, as one survey reads it: the scope tree above the
//! subscriptions, the role definitions, the role assignments and the vaults — and every path to
//! each vault, evaluated by [`crate::keyvault::vault_access`]. Pure: `arm` fills it.

use crate::http::Unread;
use crate::keyvault::{vault_access, Access, Vault};
use crate::principal::Principals;
use crate::rbac::{RoleAssignment, RoleDefinition};
use std::collections::{BTreeMap, BTreeSet};

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

/// What ARM says about the tenant, read once per resolution: the scope tree, every role
/// definition, every role assignment (at, above and below each subscription, deduplicated) and
/// every vault the caller can see — and what could not be read. Whose reach is computed from it
/// (the person's, or a service principal's they can act as) is the caller's choice: nothing in
/// it is read per principal.
#[derive(Debug, Default)]
pub struct Survey {
    pub tree: ScopeTree,
    /// Keyed by lower-case role GUID.
    pub roles: BTreeMap<String, RoleDefinition>,
    pub assignments: Vec<RoleAssignment>,
    pub vaults: Vec<Vault>,
    /// Per subscription (lower-case id), the scopes above it that its assignment listing showed
    /// assignments at (management groups, `/`): ARM lists them as applying to the subscription,
    /// so they apply to its vaults even when the management-group tree cannot be read.
    pub above: BTreeMap<String, BTreeSet<String>>,
    /// What could not be read.
    pub unread: Vec<Unread>,
    /// The lower-case ids of `assignments`, so each is kept once.
    seen: BTreeSet<String>,
}

/// The subscription id (lower case) in an ARM id, if it has one.
pub fn subscription_of(id: &str) -> Option<String> {
    let mut segments = id.trim_matches('/').split('/');
    match (segments.next(), segments.next()) {
        (Some(first), Some(sub)) if first.eq_ignore_ascii_case("subscriptions") => {
            Some(sub.to_ascii_lowercase())
        }
        _ => None,
    }
}

impl Survey {
    /// Record assignment `a`, listed for subscription `sub`, once.
    pub fn add_assignment(&mut self, sub: &str, a: RoleAssignment) {
        let sub = sub.to_ascii_lowercase();
        let scope = a.scope().to_string();
        if subscription_of(&scope).as_deref() != Some(sub.as_str()) {
            self.above.entry(sub).or_default().insert(scope);
        }
        if self.seen.insert(a.id.to_ascii_lowercase()) {
            self.assignments.push(a);
        }
    }

    /// The scopes an assignment can be made at to apply to `vault`: its own chain, and every
    /// scope above its subscription that subscription's listing showed.
    pub fn chain(&self, vault: &Vault) -> Vec<String> {
        let mut chain = self.tree.chain(&vault.id);
        if let Some(above) = subscription_of(&vault.id).and_then(|s| self.above.get(&s)) {
            for scope in above {
                if !chain.iter().any(|c| c.eq_ignore_ascii_case(scope)) {
                    chain.push(scope.clone());
                }
            }
        }
        chain
    }

    /// Every vault `principals` reach, with every path.
    pub fn key_vault_paths(&self, principals: &Principals) -> Vec<(&Vault, Vec<Access>)> {
        self.vaults
            .iter()
            .filter_map(|vault| {
                let access = vault_access(
                    vault,
                    &self.chain(vault),
                    principals,
                    &self.assignments,
                    &self.roles,
                );
                (!access.is_empty()).then_some((vault, access))
            })
            .collect()
    }

    /// The assignments naming one of `principals` whose role definition was not read: what
    /// they grant is unknown.
    pub fn unknown_roles<'a>(&'a self, principals: &'a Principals) -> Vec<&'a RoleAssignment> {
        self.assignments
            .iter()
            .filter(|a| principals.get(&a.properties.principal_id).is_some())
            .filter(|a| !self.roles.contains_key(&a.role_guid().to_ascii_lowercase()))
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
