//! Azure RBAC, evaluated the way Azure Resource Manager does: role definitions with wildcard
//! `actions` minus `notActions` (and `dataActions` minus `notDataActions`), per permission block;
//! role assignments applying at their scope and every scope below it.
//!
//! Pure: the types mirror the ARM JSON (`Microsoft.Authorization/roleDefinitions` and
//! `roleAssignments`, api-version 2022-04-01) and nothing here does I/O.

use serde::Deserialize;

/// `Microsoft.Authorization/roleDefinitions` as ARM returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct RoleDefinition {
    /// Full resource id, `.../providers/Microsoft.Authorization/roleDefinitions/<guid>`.
    pub id: String,
    /// The GUID.
    pub name: String,
    pub properties: RoleDefinitionProperties,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinitionProperties {
    #[serde(default)]
    pub role_name: String,
    /// `BuiltInRole` or `CustomRole`.
    #[serde(default, rename = "type")]
    pub role_type: String,
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

/// One permission block: what it grants is `actions` minus `notActions`, and `dataActions`
/// minus `notDataActions`; blocks add up.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub not_actions: Vec<String>,
    #[serde(default)]
    pub data_actions: Vec<String>,
    #[serde(default)]
    pub not_data_actions: Vec<String>,
}

/// `Microsoft.Authorization/roleAssignments` as ARM returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct RoleAssignment {
    pub id: String,
    pub name: String,
    pub properties: RoleAssignmentProperties,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentProperties {
    pub role_definition_id: String,
    pub principal_id: String,
    #[serde(default)]
    pub principal_type: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub condition_version: Option<String>,
}

impl RoleAssignment {
    /// The GUID of the assigned role definition (the last segment of `roleDefinitionId`).
    pub fn role_guid(&self) -> &str {
        last_segment(&self.properties.role_definition_id)
    }

    /// The scope the assignment is made at: `properties.scope`, or derived from the id.
    pub fn scope(&self) -> &str {
        if !self.properties.scope.is_empty() {
            return &self.properties.scope;
        }
        let lower = self.id.to_ascii_lowercase();
        match lower.find("/providers/microsoft.authorization/roleassignments/") {
            Some(0) => "/",
            Some(i) => &self.id[..i],
            None => &self.id,
        }
    }

    /// The condition, if the assignment has a non-empty one.
    pub fn condition(&self) -> Option<&str> {
        self.properties
            .condition
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
    }
}

/// The last `/`-separated segment of an id (a GUID for role definitions).
pub fn last_segment(id: &str) -> &str {
    id.trim_end_matches('/').rsplit('/').next().unwrap_or(id)
}

/// Azure operation matching: case-insensitive, `*` matches any run of characters (including
/// `/`), anywhere in the pattern.
pub fn operation_matches(pattern: &str, operation: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let o: Vec<char> = operation.to_ascii_lowercase().chars().collect();
    // Iterative glob with backtracking to the last `*`.
    let (mut pi, mut oi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while oi < o.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, oi));
            pi += 1;
        } else if pi < p.len() && p[pi] == o[oi] {
            pi += 1;
            oi += 1;
        } else if let Some((sp, so)) = star {
            pi = sp + 1;
            oi = so + 1;
            star = Some((sp, so + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn any_matches(patterns: &[String], operation: &str) -> bool {
    patterns.iter().any(|p| operation_matches(p, operation))
}

/// What a role grants for one operation: the pattern of the first block that grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The `actions`/`dataActions` entry that matched.
    pub pattern: String,
}

impl RoleDefinition {
    pub fn role_name(&self) -> &str {
        &self.properties.role_name
    }

    /// Does the role grant the control-plane `operation`?
    pub fn grants_action(&self, operation: &str) -> Option<Grant> {
        self.properties.permissions.iter().find_map(|p| {
            if any_matches(&p.not_actions, operation) {
                return None;
            }
            p.actions
                .iter()
                .find(|a| operation_matches(a, operation))
                .map(|a| Grant { pattern: a.clone() })
        })
    }

    /// Does the role grant the data-plane `operation`?
    pub fn grants_data_action(&self, operation: &str) -> Option<Grant> {
        self.properties.permissions.iter().find_map(|p| {
            if any_matches(&p.not_data_actions, operation) {
                return None;
            }
            p.data_actions
                .iter()
                .find(|a| operation_matches(a, operation))
                .map(|a| Grant { pattern: a.clone() })
        })
    }

    /// True when the role has any data action on Key Vault secrets, keys or certificates.
    pub fn has_key_vault_data_actions(&self) -> bool {
        crate::object::DATA_READS
            .iter()
            .any(|(op, _)| self.grants_data_action(op).is_some())
    }
}

/// True when an assignment made at `assignment_scope` applies at a resource whose scope chain
/// (itself, its resource group, subscription, management groups up to the root, and `/`) is
/// `chain`. Case-insensitive, as ARM ids are.
pub fn applies_at(assignment_scope: &str, chain: &[String]) -> bool {
    let s = assignment_scope.trim_end_matches('/');
    let s = if s.is_empty() { "/" } else { s };
    chain.iter().any(|c| c.eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, actions: &[&str], not_actions: &[&str], data: &[&str]) -> RoleDefinition {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        RoleDefinition {
            id: format!("/providers/Microsoft.Authorization/roleDefinitions/{name}"),
            name: name.into(),
            properties: RoleDefinitionProperties {
                role_name: name.into(),
                role_type: "BuiltInRole".into(),
                permissions: vec![Permission {
                    actions: v(actions),
                    not_actions: v(not_actions),
                    data_actions: v(data),
                    not_data_actions: vec![],
                }],
            },
        }
    }

    #[test]
    fn wildcards_match_anywhere_and_case_insensitively() {
        assert!(operation_matches("*", "Microsoft.KeyVault/vaults/write"));
        assert!(operation_matches(
            "Microsoft.KeyVault/*",
            "microsoft.keyvault/vaults/accessPolicies/write"
        ));
        assert!(operation_matches(
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/roleAssignments/write"
        ));
        assert!(operation_matches(
            "*/read",
            "Microsoft.KeyVault/vaults/read"
        ));
        assert!(!operation_matches(
            "*/read",
            "Microsoft.KeyVault/vaults/write"
        ));
        assert!(!operation_matches(
            "Microsoft.KeyVault/vaults/secrets/*",
            "Microsoft.KeyVault/vaults/write"
        ));
        assert!(operation_matches("a*b*c", "axxbyyc"));
        assert!(!operation_matches("a*b*c", "axxbyy"));
    }

    #[test]
    fn not_actions_subtract_within_their_block() {
        let contributor = role(
            "Contributor",
            &["*"],
            &[
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
            ],
            &[],
        );
        assert!(contributor
            .grants_action("Microsoft.KeyVault/vaults/write")
            .is_some());
        assert!(contributor
            .grants_action("Microsoft.Authorization/roleAssignments/write")
            .is_none());
        // A second block can grant what the first one's notActions removed.
        let mut two = contributor.clone();
        two.properties.permissions.push(Permission {
            actions: vec!["Microsoft.Authorization/roleAssignments/write".into()],
            ..Permission::default()
        });
        assert_eq!(
            two.grants_action("Microsoft.Authorization/roleAssignments/write"),
            Some(Grant {
                pattern: "Microsoft.Authorization/roleAssignments/write".into()
            })
        );
    }

    #[test]
    fn data_actions_are_separate_from_actions() {
        let secrets_user = role(
            "Key Vault Secrets User",
            &[],
            &[],
            &[
                "Microsoft.KeyVault/vaults/secrets/getSecret/action",
                "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
            ],
        );
        assert!(secrets_user
            .grants_data_action("Microsoft.KeyVault/vaults/secrets/getSecret/action")
            .is_some());
        assert!(secrets_user.has_key_vault_data_actions());
        let owner = role("Owner", &["*"], &[], &[]);
        assert!(owner
            .grants_data_action("Microsoft.KeyVault/vaults/secrets/getSecret/action")
            .is_none());
        assert!(!owner.has_key_vault_data_actions());
    }

    #[test]
    fn scopes_apply_downwards() {
        let chain: Vec<String> = [
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v",
            "/subscriptions/s1/resourceGroups/rg",
            "/subscriptions/s1",
            "/providers/Microsoft.Management/managementGroups/child",
            "/providers/Microsoft.Management/managementGroups/root",
            "/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!(applies_at("/subscriptions/S1/resourcegroups/RG", &chain));
        assert!(applies_at(
            "/providers/Microsoft.Management/managementGroups/root",
            &chain
        ));
        assert!(applies_at("/", &chain));
        assert!(!applies_at("/subscriptions/s2", &chain));
        assert!(!applies_at(
            "/subscriptions/s1/resourceGroups/other",
            &chain
        ));
    }

    #[test]
    fn assignment_scope_and_role_guid_come_from_the_ids() {
        let a: RoleAssignment = serde_json::from_value(serde_json::json!({
            "id": "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/a1",
            "name": "a1",
            "properties": {
                "roleDefinitionId": "/subscriptions/s1/providers/Microsoft.Authorization/roleDefinitions/f25e0fa2-a7c8-4377-a976-54943a77a395",
                "principalId": "p1",
                "principalType": "Group"
            }
        }))
        .unwrap();
        assert_eq!(a.scope(), "/subscriptions/s1/resourceGroups/rg");
        assert_eq!(a.role_guid(), "f25e0fa2-a7c8-4377-a976-54943a77a395");
        assert_eq!(a.condition(), None);
    }
}
