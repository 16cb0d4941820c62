//! Role-assignment conditions (ABAC, `conditionVersion` 2.0) on assignments that can write role
//! assignments: which roles, and to which principals, the holder may assign.
//!
//! Closeout recognises the forms the Azure portal writes for "constrain roles" and "constrain
//! roles and principals":
//!
//! ```text
//! ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR
//!  (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId]
//!     ForAnyOfAnyValues:GuidEquals {4633458b-..., b86a8fe4-...}
//!   AND @Request[Microsoft.Authorization/roleAssignments:PrincipalId]
//!     ForAnyOfAnyValues:GuidEquals {...}))
//! AND ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR (...))
//! ```
//!
//! plus `ForAnyOfAllValues:GuidNotEquals {...}` ("any role except"). Anything else it cannot
//! evaluate counts as allowing every role and principal: a condition Closeout does not
//! understand must not hide a path.

use std::collections::BTreeSet;

const ROLE_ATTRIBUTE: &str = "@request[microsoft.authorization/roleassignments:roledefinitionid]";
const PRINCIPAL_ATTRIBUTE: &str = "@request[microsoft.authorization/roleassignments:principalid]";

/// Which role definitions (by GUID, lower case) a condition lets the holder assign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roles {
    Any,
    Only(BTreeSet<String>),
    AllBut(BTreeSet<String>),
}

/// What a condition on a role-assignment writer allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteConstraint {
    pub roles: Roles,
    /// `None`: any principal.
    pub principals: Option<BTreeSet<String>>,
    /// False when a condition was present but not understood (then everything is allowed).
    pub evaluated: bool,
}

impl WriteConstraint {
    pub const UNCONSTRAINED: WriteConstraint = WriteConstraint {
        roles: Roles::Any,
        principals: None,
        evaluated: true,
    };

    /// May the holder assign role `role_guid` to one of `principals`?
    pub fn allows(&self, role_guid: &str, principals: &[&str]) -> bool {
        let role = role_guid.to_ascii_lowercase();
        let role_ok = match &self.roles {
            Roles::Any => true,
            Roles::Only(set) => set.contains(&role),
            Roles::AllBut(set) => !set.contains(&role),
        };
        let principal_ok = match &self.principals {
            None => true,
            Some(set) => principals
                .iter()
                .any(|p| set.contains(&p.to_ascii_lowercase())),
        };
        role_ok && principal_ok
    }

    /// A phrase for paths: what the condition allows.
    pub fn describe(&self) -> String {
        if !self.evaluated {
            return "condition not evaluated: counts as allowing every role".into();
        }
        let roles = match &self.roles {
            Roles::Any => "any role".to_string(),
            Roles::Only(s) => format!("only roles {}", join(s)),
            Roles::AllBut(s) => format!("any role but {}", join(s)),
        };
        match &self.principals {
            None => format!("condition allows {roles}"),
            Some(p) => format!("condition allows {roles} to principals {}", join(p)),
        }
    }
}

fn join(s: &BTreeSet<String>) -> String {
    s.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// What `condition` (of an assignment whose role can write role assignments) allows.
pub fn role_assignment_write(condition: Option<&str>) -> WriteConstraint {
    let Some(condition) = condition.map(str::trim).filter(|c| !c.is_empty()) else {
        return WriteConstraint::UNCONSTRAINED;
    };
    let lower = condition.to_ascii_lowercase();
    let not_understood = WriteConstraint {
        evaluated: false,
        ..WriteConstraint::UNCONSTRAINED
    };
    // Only the portal's shape: a write clause guarded by ActionMatches, attributes compared
    // with GUID sets. Anything more (OR between attribute tests, other operators) is not
    // evaluated.
    if !lower.contains("actionmatches{'microsoft.authorization/roleassignments/write'}") {
        return not_understood;
    }
    let Some(roles) = guid_test(&lower, ROLE_ATTRIBUTE) else {
        return not_understood;
    };
    let roles = match roles {
        Test::AnyOf(set) => Roles::Only(set),
        Test::NoneOf(set) => Roles::AllBut(set),
        Test::Absent => Roles::Any,
    };
    let principals = match guid_test(&lower, PRINCIPAL_ATTRIBUTE) {
        Some(Test::AnyOf(set)) => Some(set),
        Some(Test::Absent) => None,
        // An exclusion list of principals, or an unknown operator: allow (conservative).
        Some(Test::NoneOf(_)) | None => None,
    };
    WriteConstraint {
        roles,
        principals,
        evaluated: true,
    }
}

enum Test {
    Absent,
    AnyOf(BTreeSet<String>),
    NoneOf(BTreeSet<String>),
}

/// The GUID-set test on `attribute` in the (lower-cased) condition; `None` when the attribute
/// appears with an operator Closeout does not evaluate, or more than once.
fn guid_test(lower: &str, attribute: &str) -> Option<Test> {
    let mut found = lower.match_indices(attribute);
    let Some((at, _)) = found.next() else {
        return Some(Test::Absent);
    };
    if found.next().is_some() {
        return None;
    }
    let rest = lower[at + attribute.len()..].trim_start();
    let (positive, rest) = if let Some(r) = rest.strip_prefix("foranyofanyvalues:guidequals") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix("foranyofallvalues:guidnotequals") {
        (false, r)
    } else if let Some(r) = rest.strip_prefix("guidequals") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix("guidnotequals") {
        (false, r)
    } else {
        return None;
    };
    let rest = rest.trim_start();
    let set: BTreeSet<String> = if let Some(r) = rest.strip_prefix('{') {
        let end = r.find('}')?;
        r[..end]
            .split(',')
            .map(|g| g.trim().trim_matches('\'').to_string())
            .filter(|g| !g.is_empty())
            .collect()
    } else {
        let token: String = rest
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
            .collect();
        if token.is_empty() {
            return None;
        }
        [token].into()
    };
    if set.is_empty() {
        return None;
    }
    Some(if positive {
        Test::AnyOf(set)
    } else {
        Test::NoneOf(set)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
    const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";

    fn portal(roles: &str, principals: Option<&str>) -> String {
        let principal_test = principals
            .map(|p| {
                format!(
                    " AND @Request[Microsoft.Authorization/roleAssignments:PrincipalId] ForAnyOfAnyValues:GuidEquals {{{p}}}"
                )
            })
            .unwrap_or_default();
        format!(
            "((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/write'}})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{roles}}}{principal_test})) AND ((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/delete'}})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{roles}}}))"
        )
    }

    #[test]
    fn no_condition_allows_everything() {
        let c = role_assignment_write(None);
        assert!(c.allows(OWNER, &["me"]));
        assert!(c.evaluated);
        assert_eq!(role_assignment_write(Some("  ")), c);
    }

    #[test]
    fn constrained_roles_are_read_from_the_portal_form() {
        let c = role_assignment_write(Some(&portal(SECRETS_USER, None)));
        assert!(c.evaluated);
        assert!(c.allows(SECRETS_USER, &["me"]));
        assert!(c.allows(&SECRETS_USER.to_uppercase(), &["me"]));
        assert!(!c.allows(OWNER, &["me"]));
        assert!(c.describe().contains("only roles"));
    }

    #[test]
    fn constrained_principals_exclude_the_person() {
        let c = role_assignment_write(Some(&portal(
            &format!("{SECRETS_USER}, {OWNER}"),
            Some("11111111-1111-1111-1111-111111111111"),
        )));
        assert!(!c.allows(SECRETS_USER, &["22222222-2222-2222-2222-222222222222"]));
        assert!(c.allows(SECRETS_USER, &["11111111-1111-1111-1111-111111111111"]));
    }

    #[test]
    fn all_but_and_unknown_forms() {
        let all_but = format!(
            "((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/write'}})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAllValues:GuidNotEquals {{{OWNER}}}))"
        );
        let c = role_assignment_write(Some(&all_but));
        assert!(c.allows(SECRETS_USER, &["me"]));
        assert!(!c.allows(OWNER, &["me"]));
        // Not understood: allows everything, and says so.
        for weird in [
            "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals 'x'",
            "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] StringLike '*'))",
        ] {
            let c = role_assignment_write(Some(weird));
            assert!(!c.evaluated, "{weird}");
            assert!(c.allows(OWNER, &["me"]));
            assert!(c.describe().contains("not evaluated"));
        }
    }
}
