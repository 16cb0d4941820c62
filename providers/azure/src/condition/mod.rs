//! Role-assignment conditions (ABAC, `conditionVersion` 2.0) on assignments that can write role
//! assignments: which roles, and to which principals, the holder may assign.
//!
//! The whole condition language is parsed ([`parse`]) and evaluated with three truth values
//! ([`eval`]) against the request the holder would make to grant itself data access: the action
//! `Microsoft.Authorization/roleAssignments/write`, the role definition GUID and the principal
//! id(s) it would assign to. For example the portal's "constrain roles" form:
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
//! Any other attribute (`@Principal[...]`, `@Resource[...]`, principal type), operator or shape
//! is unknown, and an unknown result counts as allowing; a condition that does not parse allows
//! everything and says why. A condition Closeout does not understand never hides a path.
//!
//! Conditions on assignments of Key Vault data roles ([`data_access`]) go through the same
//! evaluator, per object: the request is the data action that reads it
//! (`Microsoft.KeyVault/vaults/secrets/getSecret/action`, …) with the object's name as
//! `@Resource[Microsoft.KeyVault/vaults/{secrets|keys|certificates}:name]`. An object the
//! condition excludes is not exposed; one it cannot decide counts as exposed, and says so.

mod eval;
mod parse;

use crate::object::{data_action_object, ObjectType};

pub use eval::Truth;
use eval::{evaluate, Request};
pub use parse::ParseError;
use parse::{parse, Expr};

const WRITE_ACTION: &str = "Microsoft.Authorization/roleAssignments/write";
const ROLE_ATTRIBUTE: &str = "@request[microsoft.authorization/roleassignments:roledefinitionid]";
const PRINCIPAL_ATTRIBUTE: &str = "@request[microsoft.authorization/roleassignments:principalid]";

/// What a condition on a role-assignment writer allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteConstraint {
    /// The parsed condition; `None` when there is none (everything allowed). A condition that
    /// does not parse is kept as its error.
    condition: Option<Result<Expr, ParseError>>,
    /// False when some clause of the condition cannot be evaluated (or it does not parse):
    /// where that clause decides, Closeout counts it as allowing.
    pub evaluated: bool,
}

impl WriteConstraint {
    /// No condition: any role to any principal.
    pub const UNCONSTRAINED: WriteConstraint = WriteConstraint {
        condition: None,
        evaluated: true,
    };

    /// Does the condition let the holder assign role `role_guid` to one of `principals`?
    /// True for some principal wins; otherwise unknown if unknown for some; otherwise false.
    pub fn verdict(&self, role_guid: &str, principals: &[&str]) -> Truth {
        let expr = match &self.condition {
            None => return Truth::True,
            Some(Err(_)) => return Truth::Unknown,
            Some(Ok(expr)) => expr,
        };
        if principals.is_empty() {
            return evaluate(expr, &write_request(role_guid, None));
        }
        Truth::any(
            principals
                .iter()
                .map(|p| evaluate(expr, &write_request(role_guid, Some(p)))),
        )
    }

    /// May the holder assign role `role_guid` to one of `principals`? Unknown counts as yes.
    pub fn allows(&self, role_guid: &str, principals: &[&str]) -> bool {
        self.verdict(role_guid, principals) != Truth::False
    }

    /// Why the condition could not be parsed, if it could not.
    pub fn parse_error(&self) -> Option<&ParseError> {
        match &self.condition {
            Some(Err(e)) => Some(e),
            _ => None,
        }
    }

    /// A phrase for paths: whether the condition was evaluated, and if not why.
    pub fn describe(&self) -> String {
        match &self.condition {
            None => "no condition".into(),
            Some(Err(e)) => {
                format!("condition not evaluated ({e}): counts as allowing every role")
            }
            Some(Ok(_)) if self.evaluated => "condition evaluated".into(),
            Some(Ok(_)) => "condition partly not evaluated (it tests attributes Closeout does not \
                 know for this request): counts as allowing where they decide"
                .into(),
        }
    }
}

/// The role-assignment write the holder would make: role `role_guid`, to `principal` when known.
fn write_request(role_guid: &str, principal: Option<&str>) -> Request {
    let request = Request::new(WRITE_ACTION).with(ROLE_ATTRIBUTE, vec![role_guid.to_string()]);
    match principal {
        Some(p) => request.with(PRINCIPAL_ATTRIBUTE, vec![p.to_string()]),
        None => request,
    }
}

/// What `condition` (of an assignment whose role can write role assignments) allows.
pub fn role_assignment_write(condition: Option<&str>) -> WriteConstraint {
    let Some(text) = condition.map(str::trim).filter(|c| !c.is_empty()) else {
        return WriteConstraint::UNCONSTRAINED;
    };
    match parse(text) {
        Ok(expr) => WriteConstraint {
            evaluated: fully_evaluable(&expr),
            condition: Some(Ok(expr)),
        },
        Err(e) => WriteConstraint {
            condition: Some(Err(e)),
            evaluated: false,
        },
    }
}

/// What can be told of a sub-expression for every role-assignment write, before knowing the
/// role and principals: a constant (an `ActionMatches` on the write action), evaluable (only
/// attributes and operators Closeout knows), or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Always(bool),
    Evaluable,
    Unknowable,
}

/// True when the condition can be evaluated for every role-assignment write: each clause is
/// one Closeout evaluates, or is decided by a constant beside it (a delete clause guarded by
/// `!ActionMatches{'…/delete'}` is true for a write, whatever it tests).
fn fully_evaluable(expr: &Expr) -> bool {
    shape(expr) != Shape::Unknowable
}

fn shape(expr: &Expr) -> Shape {
    match expr {
        Expr::ActionMatches(_) => {
            Shape::Always(evaluate(expr, &Request::new(WRITE_ACTION)) == Truth::True)
        }
        Expr::Not(inner) => match shape(inner) {
            Shape::Always(b) => Shape::Always(!b),
            other => other,
        },
        Expr::And(a, b) => match (shape(a), shape(b)) {
            (Shape::Always(false), _) | (_, Shape::Always(false)) => Shape::Always(false),
            (Shape::Always(true), other) | (other, Shape::Always(true)) => other,
            (Shape::Unknowable, _) | (_, Shape::Unknowable) => Shape::Unknowable,
            _ => Shape::Evaluable,
        },
        Expr::Or(a, b) => match (shape(a), shape(b)) {
            (Shape::Always(true), _) | (_, Shape::Always(true)) => Shape::Always(true),
            (Shape::Always(false), other) | (other, Shape::Always(false)) => other,
            (Shape::Unknowable, _) | (_, Shape::Unknowable) => Shape::Unknowable,
            _ => Shape::Evaluable,
        },
        // A leaf is evaluable when the evaluator decides it for a write whose role and
        // principal are known: the same attributes, operators and shapes `verdict` evaluates.
        leaf => {
            const ANY_GUID: &str = "00000000-0000-0000-0000-000000000000";
            match evaluate(leaf, &write_request(ANY_GUID, Some(ANY_GUID))) {
                Truth::Unknown => Shape::Unknowable,
                _ => Shape::Evaluable,
            }
        }
    }
}

/// A condition on an assignment of a role with Key Vault data actions: which objects those
/// actions apply to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataCondition {
    /// The parsed condition, or why it does not parse.
    condition: Result<Expr, ParseError>,
}

/// What `condition` (of an assignment of a role with Key Vault data actions) allows; `None`
/// when there is none (every object the role reads).
pub fn data_access(condition: Option<&str>) -> Option<DataCondition> {
    let text = condition.map(str::trim).filter(|c| !c.is_empty())?;
    Some(DataCondition {
        condition: parse(text),
    })
}

impl DataCondition {
    /// Does the condition let data action `action` apply to the object `name`? The object's
    /// kind (and so its `name` attribute) is the action's (`…/vaults/secrets/getSecret/action`:
    /// a secret, also for a certificate's backing secret). Unknown when the condition does not
    /// parse or tests what Closeout does not know for the request.
    pub fn verdict(&self, action: &str, name: &str) -> Truth {
        let Ok(expr) = &self.condition else {
            return Truth::Unknown;
        };
        let mut request = Request::new(action);
        if let Some(kind) = data_action_object(action) {
            request = request.with(&name_attribute(kind), vec![name.to_string()]);
        }
        evaluate(expr, &request)
    }

    /// Why the condition could not be parsed, if it could not.
    pub fn parse_error(&self) -> Option<&ParseError> {
        self.condition.as_ref().err()
    }
}

/// True when one is true; unknown when none is true and one is unknown; false otherwise
/// (also for none at all).
pub fn any(items: impl IntoIterator<Item = Truth>) -> Truth {
    Truth::any(items)
}

/// `@Resource[Microsoft.KeyVault/vaults/secrets:name]` for secrets, and so on, as the parser
/// writes attributes (lower case).
fn name_attribute(kind: ObjectType) -> String {
    format!(
        "@resource[microsoft.keyvault/vaults/{}:name]",
        kind.as_str()
    )
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
        assert_eq!(c.describe(), "condition evaluated");
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

    #[test]
    fn an_or_between_role_tests_is_evaluated_whole() {
        // Read as its first clause only, this hid the Owner path.
        let c = role_assignment_write(Some(&format!(
            "((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/write'}})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] GuidEquals {SECRETS_USER} OR @Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] GuidEquals {OWNER}))"
        )));
        assert!(c.evaluated);
        assert_eq!(c.verdict(OWNER, &["me"]), Truth::True);
        assert_eq!(c.verdict(SECRETS_USER, &["me"]), Truth::True);
        assert_eq!(
            c.verdict("00000000-0000-0000-0000-000000000001", &["me"]),
            Truth::False
        );
    }

    #[test]
    fn an_unparsable_condition_allows_and_says_why() {
        let c = role_assignment_write(Some("((ActionMatches{'x'}"));
        assert!(!c.evaluated);
        assert!(c.parse_error().is_some());
        assert_eq!(c.verdict(OWNER, &["me"]), Truth::Unknown);
        assert!(c.allows(OWNER, &["me"]));
        assert!(c.describe().starts_with("condition not evaluated ("));
    }

    #[test]
    fn an_unknown_clause_only_matters_where_it_decides() {
        let c = role_assignment_write(Some(&format!(
            "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{SECRETS_USER}}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] StringEqualsIgnoreCase 'ServicePrincipal'"
        )));
        assert!(!c.evaluated);
        assert_eq!(c.verdict(OWNER, &["me"]), Truth::False);
        assert_eq!(c.verdict(SECRETS_USER, &["me"]), Truth::Unknown);
        assert!(c.describe().contains("partly not evaluated"));
    }

    const GET_SECRET: &str = "Microsoft.KeyVault/vaults/secrets/getSecret/action";
    const DECRYPT: &str = "Microsoft.KeyVault/vaults/keys/decrypt/action";

    #[test]
    fn a_data_condition_on_the_object_name_is_evaluated_per_object() {
        let c = data_access(Some(
            "((!(ActionMatches{'Microsoft.KeyVault/vaults/secrets/getSecret/action'})) OR (@Resource[Microsoft.KeyVault/vaults/secrets:name] StringEquals 'db'))",
        ))
        .expect("a condition");
        assert_eq!(c.verdict(GET_SECRET, "db"), Truth::True);
        assert_eq!(c.verdict(GET_SECRET, "api"), Truth::False);
        // Another action is not what the condition restricts.
        assert_eq!(c.verdict(DECRYPT, "signing"), Truth::True);
        assert!(c.parse_error().is_none());
        assert_eq!(data_access(Some("  ")), None);
    }

    #[test]
    fn a_data_condition_closeout_cannot_decide_counts_as_allowing() {
        let tags = data_access(Some(
            "@Resource[Microsoft.KeyVault/vaults/secrets:tags] StringEquals 'x'",
        ))
        .expect("a condition");
        assert_eq!(tags.verdict(GET_SECRET, "db"), Truth::Unknown);
        let broken = data_access(Some("((@Resource[x")).expect("a condition");
        assert!(broken.parse_error().is_some());
        assert_eq!(broken.verdict(GET_SECRET, "db"), Truth::Unknown);
    }
}
