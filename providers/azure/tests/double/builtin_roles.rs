//! The built-in roles, with their real permissions (the test double's data file, copied from
//! Microsoft Learn), evaluated by the Key Vault path rules — and the role table in
//! `docs/azure-indirect-paths.md` checked against the result, so the docs stay true.

use closeout_azure::keyvault::{vault_access, Access, Reach, Vault};
use closeout_azure::object::ObjectType;
use closeout_azure::principal::{Principal, Principals};
use closeout_azure::rbac::{RoleAssignment, RoleDefinition};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const ROLES: &str =
    include_str!("../../../../tests/azure-double/data/builtin-role-definitions.json");
const DOC: &str = include_str!("../../../../docs/azure-indirect-paths.md");
const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";

fn builtin() -> (
    BTreeMap<String, RoleDefinition>,
    BTreeMap<String, Option<String>>,
) {
    let data: Value = serde_json::from_str(ROLES).expect("role data is JSON");
    let mut roles = BTreeMap::new();
    let mut conditions = BTreeMap::new();
    for r in data["roles"].as_array().expect("roles") {
        let guid = r["name"].as_str().expect("name").to_string();
        let def: RoleDefinition = serde_json::from_value(json!({
            "id": format!("/providers/Microsoft.Authorization/roleDefinitions/{guid}"),
            "name": guid,
            "properties": {"roleName": r["roleName"], "type": "BuiltInRole", "permissions": r["permissions"]}
        }))
        .expect("role definition");
        // The condition Microsoft recommends assigning the role with, if any.
        let condition = r["permissions"][0]["condition"].as_str().map(String::from);
        conditions.insert(def.role_name().to_string(), condition);
        roles.insert(guid, def);
    }
    (roles, conditions)
}

fn vault(rbac: bool) -> Vault {
    serde_json::from_value(json!({
        "id": format!("{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v"),
        "name": "v",
        "properties": {"tenantId": "t", "enableRbacAuthorization": rbac, "accessPolicies": []}
    }))
    .expect("vault")
}

fn verdict(accesses: &[Access]) -> String {
    if accesses.is_empty() {
        return "—".into();
    }
    let mut parts: Vec<String> = accesses
        .iter()
        .map(|a| match a.reach {
            Reach::CanGrantSelf => "can grant itself access".to_string(),
            Reach::CanRead => format!(
                "reads {}",
                a.objects
                    .iter()
                    .map(|o: &ObjectType| o.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
        .collect();
    parts.sort();
    parts.dedup();
    parts.join("; ")
}

/// Role name → (access-policy vault, RBAC vault) verdicts, the role assigned to the person at
/// the subscription (with its recommended condition, if it has one).
fn computed() -> BTreeMap<String, (String, String)> {
    let (roles, conditions) = builtin();
    let person = Principals {
        all: vec![Principal {
            object_id: "alice".into(),
            display: "user alice".into(),
            via_membership: None,
        }],
    };
    let mut out = BTreeMap::new();
    for role in roles.values() {
        let assignment: RoleAssignment = serde_json::from_value(json!({
            "id": format!("{SUB}/providers/Microsoft.Authorization/roleAssignments/a1"),
            "name": "a1",
            "properties": {
                "roleDefinitionId": role.id, "principalId": "alice", "principalType": "User",
                "scope": SUB, "condition": conditions[role.role_name()]
            }
        }))
        .expect("assignment");
        let mut verdicts = Vec::new();
        for rbac in [false, true] {
            let v = vault(rbac);
            let chain = vec![
                v.id.clone(),
                format!("{SUB}/resourceGroups/rg"),
                SUB.to_string(),
                "/".to_string(),
            ];
            verdicts.push(verdict(&vault_access(
                &v,
                &chain,
                &person,
                std::slice::from_ref(&assignment),
                &roles,
            )));
        }
        out.insert(
            role.role_name().to_string(),
            (verdicts[0].clone(), verdicts[1].clone()),
        );
    }
    out
}

/// The rows of the doc's role table: `| Role | access-policy vault | RBAC vault |`.
fn documented() -> BTreeMap<String, (String, String)> {
    let start = DOC
        .find("<!-- role-table -->")
        .expect("the doc marks its role table");
    DOC[start..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            (cells[0].clone(), (cells[1].clone(), cells[2].clone()))
        })
        .collect()
}

#[test]
fn the_docs_role_table_is_what_the_rules_compute() {
    let computed = computed();
    let documented = documented();
    if computed != documented {
        let mut table = String::new();
        for (role, (ap, rbac)) in &computed {
            table.push_str(&format!("| {role} | {ap} | {rbac} |\n"));
        }
        panic!("docs/azure-indirect-paths.md's role table is out of date; computed:\n{table}");
    }
}

#[test]
fn the_well_known_indirect_paths_hold() {
    let c = computed();
    let grant = "can grant itself access";
    let both = (grant.to_string(), grant.to_string());
    // Writing the vault: its access policies, or (RBAC) turning RBAC off first.
    assert_eq!(c["Key Vault Contributor"], both);
    assert_eq!(c["Contributor"], both);
    assert_eq!(c["Owner"], both);
    // Assigning roles: a data role (RBAC), or one that writes the vault (either model).
    assert_eq!(c["User Access Administrator"], both);
    assert_eq!(c["Role Based Access Control Administrator"], both);
    // Limited by its condition to Key Vault data roles: those do nothing in an access-policy
    // vault.
    assert_eq!(c["Key Vault Data Access Administrator"].0, "—");
    assert_eq!(c["Key Vault Data Access Administrator"].1, grant);
    assert!(c["Key Vault Certificate User"].1.contains("secrets"));
    assert_eq!(c["Reader"], ("—".to_string(), "—".to_string()));
}
