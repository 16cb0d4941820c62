//! Who can reach a Key Vault's secrets, keys and certificates — directly, or indirectly by
//! granting themselves access — per the vault's permission model.
//!
//! - **Access-policy vaults** (`enableRbacAuthorization` false or absent): data access comes from
//!   access policies naming the person or one of their groups. Anyone allowed
//!   `Microsoft.KeyVault/vaults/write` or `Microsoft.KeyVault/vaults/accessPolicies/write` on the
//!   vault (Contributor, Key Vault Contributor, Owner, ...) can add a policy for themselves; anyone
//!   allowed `Microsoft.Authorization/roleAssignments/write` there can assign themselves such a
//!   role first (User Access Administrator, Role Based Access Control Administrator, ...): both
//!   indirect paths.
//! - **RBAC vaults**: data access comes from role assignments with Key Vault data actions at the
//!   vault or above, or at one object below it (`…/secrets/{name}`: that object only, and only
//!   the data actions on its kind). Anyone allowed `Microsoft.Authorization/roleAssignments/write`
//!   there, with no condition or with one that lets them assign themselves a role with Key Vault
//!   data actions (exposing what that role reads) or one that may write the vault, can grant
//!   themselves access; anyone allowed `Microsoft.KeyVault/vaults/write` can turn
//!   `enableRbacAuthorization` off and add an access policy for themselves: indirect paths.
//!
//! Pure: given the vault, its scope chain, the person's principals, the role assignments reaching
//! the vault and the role definitions, it lists every [`Access`] with the rule that makes it.

use crate::condition::{self, DataCondition, Truth, WriteConstraint};
use crate::object::{data_action_object, object_scope, ObjectType, DATA_READS};
use crate::principal::{Principal, Principals};
use crate::rbac::{applies_at, RoleAssignment, RoleDefinition};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Management operations that let the holder add an access policy for itself.
pub const ACCESS_POLICY_WRITES: &[&str] = &[
    "Microsoft.KeyVault/vaults/write",
    "Microsoft.KeyVault/vaults/accessPolicies/write",
];

/// The operation that lets the holder assign roles (in an RBAC vault: itself a data role).
pub const ROLE_ASSIGNMENT_WRITE: &str = "Microsoft.Authorization/roleAssignments/write";

/// `Microsoft.KeyVault/vaults` as ARM returns it (the fields Closeout reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Vault {
    pub id: String,
    pub name: String,
    pub properties: VaultProperties,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultProperties {
    #[serde(default)]
    pub tenant_id: String,
    #[serde(default)]
    pub access_policies: Vec<AccessPolicy>,
    #[serde(default)]
    pub enable_rbac_authorization: Option<bool>,
    #[serde(default)]
    pub vault_uri: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicy {
    #[serde(default)]
    pub tenant_id: String,
    pub object_id: String,
    #[serde(default)]
    pub application_id: Option<String>,
    #[serde(default)]
    pub permissions: PolicyPermissions,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PolicyPermissions {
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub certificates: Vec<String>,
    #[serde(default)]
    pub storage: Vec<String>,
}

impl Vault {
    /// True when the vault uses Azure RBAC for its data plane.
    pub fn is_rbac(&self) -> bool {
        self.properties.enable_rbac_authorization == Some(true)
    }
}

impl PolicyPermissions {
    /// The object types whose values this policy exposes.
    pub fn reads(&self) -> BTreeSet<ObjectType> {
        let has = |perms: &[String], wanted: &[&str]| {
            perms
                .iter()
                .any(|p| wanted.iter().any(|w| p.eq_ignore_ascii_case(w)))
        };
        // Same rule as the data actions: secret values (and certificate private keys, which
        // are read as secrets), and keys whose private key can be used.
        let mut out = BTreeSet::new();
        if has(&self.secrets, &["get", "all"]) {
            out.insert(ObjectType::Secrets);
            out.insert(ObjectType::Certificates);
        }
        if has(&self.keys, &["decrypt", "unwrapKey", "sign", "all"]) {
            out.insert(ObjectType::Keys);
        }
        out
    }
}

/// How the access arises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An access policy naming the principal.
    AccessPolicy { object_id: String },
    /// A role assignment (data role, or the right to grant oneself one).
    Assignment {
        assignment_id: String,
        role: String,
        scope: String,
    },
    /// A directory role that reaches everything the tenant holds (held, or eligible through
    /// PIM): the edge (`assigned`, `eligible-for`) and node of the role's own finding path.
    DirectoryRole { edge: String, node: String },
}

/// Whether the access is held now or can be granted by the person to themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    CanRead,
    CanGrantSelf,
}

/// Key Vault data actions a role grants that read objects, each with the object kinds it
/// exposes (a subset of [`DATA_READS`]).
pub type DataReads = Vec<(&'static str, &'static [ObjectType])>;

/// One way the person reaches a vault's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub vault_id: String,
    pub reach: Reach,
    /// Object types exposed (for grant-self: everything the self-granted access could read).
    pub objects: BTreeSet<ObjectType>,
    /// `Some(name)`: only the objects of those types called `name` (an assignment at a scope
    /// below the vault, `…/secrets/{name}`, `…/keys/{name}` or `…/certificates/{name}`);
    /// `None`: every object of those types in the vault.
    pub only: Option<String>,
    pub via: Via,
    /// The principal the policy or assignment names (the user, or one of their groups).
    pub principal: Principal,
    /// The rule that makes it, for the path: e.g. `action Microsoft.KeyVault/* grants
    /// Microsoft.KeyVault/vaults/write in an access-policy vault`.
    pub rule: String,
    /// Direct data access through an assignment with a condition: the condition, and the
    /// Key Vault data actions the role grants that read objects (each with the kinds it
    /// exposes). Each object is exposed only when the condition does not exclude it for one of
    /// those actions.
    pub condition: Option<(DataCondition, DataReads)>,
    /// The assignment's condition could not be parsed (why): what it allows is unknown, so the
    /// access counts as allowing and is also a gap.
    pub condition_error: Option<String>,
}

impl Access {
    /// Whether this access exposes the object of type `t` called `name`.
    pub fn exposes(&self, t: ObjectType, name: &str) -> bool {
        self.objects.contains(&t)
            && self
                .only
                .as_deref()
                .is_none_or(|only| only.eq_ignore_ascii_case(name))
            && self.condition_verdict(t, name) != Truth::False
    }

    /// What the assignment's condition says about the object of type `t` called `name`: true
    /// for one of the role's data actions that read it wins; unknown when none is true and one
    /// is unknown (counts as exposed). True when there is no condition.
    pub fn condition_verdict(&self, t: ObjectType, name: &str) -> Truth {
        let Some((condition, reads)) = &self.condition else {
            return Truth::True;
        };
        condition::any(
            reads
                .iter()
                .filter(|(_, exposed)| exposed.contains(&t))
                .map(|(op, _)| condition.verdict(op, name)),
        )
    }

    /// The rule for the path to the object of type `t` called `name`: [`Access::rule`], with
    /// what the assignment's condition says about that object when there is one.
    pub fn rule_for(&self, t: ObjectType, name: &str) -> String {
        if self.condition.is_none() {
            return self.rule.clone();
        }
        let note = match (self.condition_verdict(t, name), &self.condition_error) {
            (_, Some(e)) => {
                format!("assignment condition not evaluated ({e}): counts as allowing")
            }
            (Truth::Unknown, None) => "assignment condition not evaluated for this object (it \
                 tests what Closeout does not know): counts as allowing"
                .to_string(),
            (_, None) => "assignment condition evaluated: allows it".to_string(),
        };
        format!("{} ({note})", self.rule)
    }

    /// Whether this is the right to grant oneself every object of the vault.
    pub fn grants_whole_vault(&self) -> bool {
        self.reach == Reach::CanGrantSelf && self.only.is_none()
    }
}

/// The management operation that lets the holder switch an RBAC vault to access policies
/// (`enableRbacAuthorization: false`, on the API versions that allow it) and then write itself
/// one.
pub const VAULT_WRITE: &str = "Microsoft.KeyVault/vaults/write";

fn all_objects() -> BTreeSet<ObjectType> {
    ObjectType::ALL.into()
}

fn kinds(objects: &BTreeSet<ObjectType>) -> String {
    objects
        .iter()
        .map(|o| o.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The object types `role`'s data actions read, and the `pattern grants operation` phrases
/// saying why. At an object scope (`scope_kind`) only the actions on that kind of object apply.
fn data_reads(
    role: &RoleDefinition,
    scope_kind: Option<ObjectType>,
) -> (BTreeSet<ObjectType>, BTreeSet<String>) {
    let mut objects = BTreeSet::new();
    let mut patterns = BTreeSet::new();
    for (op, exposed) in DATA_READS {
        if scope_kind.is_some_and(|k| data_action_object(op) != Some(k)) {
            continue;
        }
        if let Some(g) = role.grants_data_action(op) {
            objects.extend(exposed.iter().copied());
            patterns.insert(format!("{} grants {op}", g.pattern));
        }
    }
    (objects, patterns)
}

/// The management operations that let the holder give itself data access to the whole vault:
/// in an access-policy vault writing its access policies, in an RBAC vault writing the vault
/// (switching it to access policies).
fn vault_writes(vault: &Vault) -> &'static [&'static str] {
    if vault.is_rbac() {
        &[VAULT_WRITE]
    } else {
        ACCESS_POLICY_WRITES
    }
}

/// What assigning oneself `role` (at the assignment's scope: the vault or above, or the
/// object `scope_kind` names) would expose: the objects its data actions read (RBAC vaults
/// only), or every object when it may write the vault's permissions (at the vault or above).
fn self_grant_exposes(
    vault: &Vault,
    role: &RoleDefinition,
    scope_kind: Option<ObjectType>,
) -> BTreeSet<ObjectType> {
    if scope_kind.is_none()
        && vault_writes(vault)
            .iter()
            .any(|op| role.grants_action(op).is_some())
    {
        return all_objects();
    }
    if vault.is_rbac() {
        data_reads(role, scope_kind).0
    } else {
        BTreeSet::new()
    }
}

/// Every way `principals` reach `vault`. `chain` is the vault's scope chain (the vault id, its
/// resource group, subscription, management groups, `/`); `assignments` may include assignments
/// elsewhere (filtered here; those at a scope below the vault reach the one object they name);
/// `roles` is keyed by lower-case role GUID. An assignment whose role is not in `roles` is
/// skipped: the caller reports it as unknown.
pub fn vault_access(
    vault: &Vault,
    chain: &[String],
    principals: &Principals,
    assignments: &[RoleAssignment],
    roles: &BTreeMap<String, RoleDefinition>,
) -> Vec<Access> {
    let mut out = Vec::new();
    let principal_ids: Vec<&str> = principals
        .all
        .iter()
        .map(|p| p.object_id.as_str())
        .collect();

    if !vault.is_rbac() {
        for policy in &vault.properties.access_policies {
            let Some(principal) = principals.get(&policy.object_id) else {
                continue;
            };
            let objects = policy.permissions.reads();
            if objects.is_empty() {
                continue;
            }
            out.push(Access {
                vault_id: vault.id.clone(),
                reach: Reach::CanRead,
                objects: objects.clone(),
                only: None,
                via: Via::AccessPolicy {
                    object_id: policy.object_id.clone(),
                },
                principal: principal.clone(),
                rule: format!(
                    "access policy for {} grants {}",
                    principal.display,
                    kinds(&objects)
                ),
                condition: None,
                condition_error: None,
            });
        }
    }

    for a in assignments {
        let Some(principal) = principals.get(&a.properties.principal_id) else {
            continue;
        };
        // At the vault or above it (`None`), or at one object below it.
        let object = if applies_at(a.scope(), chain) {
            None
        } else {
            match object_scope(&vault.id, a.scope()) {
                Some(object) => Some(object),
                None => continue,
            }
        };
        let Some(role) = roles.get(&a.role_guid().to_ascii_lowercase()) else {
            continue;
        };
        let scope_kind = object.as_ref().map(|(t, _)| *t);
        let only = object.as_ref().map(|(_, name)| name.clone());
        let at = match &object {
            None => String::new(),
            Some((t, name)) => format!(" on {} {name}", t.noun()),
        };
        // A condition that does not parse allows everything (unknown is not excluded), and
        // every access through the assignment carries why, so resolution reports it as a gap.
        let data_condition = condition::data_access(a.condition());
        let condition_error = data_condition
            .as_ref()
            .and_then(DataCondition::parse_error)
            .map(ToString::to_string);
        let access = |reach, objects, rule| Access {
            vault_id: vault.id.clone(),
            reach,
            objects,
            only: only.clone(),
            via: Via::Assignment {
                assignment_id: a.id.clone(),
                role: role.role_name().to_string(),
                scope: a.scope().to_string(),
            },
            principal: principal.clone(),
            rule,
            condition: None,
            condition_error: condition_error.clone(),
        };
        let condition_note = a
            .condition()
            .map(|_| " (assignment condition not evaluated: counts as allowing)")
            .unwrap_or("");

        // Direct data access (RBAC vaults only: access-policy vaults ignore data roles). A
        // condition on the assignment is evaluated per object (see [`Access::exposes`]).
        if vault.is_rbac() {
            let (objects, patterns) = data_reads(role, scope_kind);
            if !objects.is_empty() {
                let mut direct = access(
                    Reach::CanRead,
                    objects,
                    format!(
                        "data action {}{at}",
                        patterns.into_iter().collect::<Vec<_>>().join("; ")
                    ),
                );
                direct.condition = data_condition.clone().map(|c| {
                    let reads = DATA_READS
                        .iter()
                        .filter(|(op, _)| {
                            scope_kind.is_none_or(|k| data_action_object(op) == Some(k))
                                && role.grants_data_action(op).is_some()
                        })
                        .map(|(op, exposed)| (*op, *exposed))
                        .collect();
                    (c, reads)
                });
                out.push(direct);
            }
        }

        // Indirect: the right to assign roles, here to oneself — a data role (RBAC vault), or
        // a role that may write the vault's permissions (either model).
        if let Some(g) = role.grants_action(ROLE_ASSIGNMENT_WRITE) {
            let constraint: WriteConstraint = condition::role_assignment_write(a.condition());
            let mut objects = BTreeSet::new();
            let mut names = Vec::new();
            for r in roles
                .values()
                .filter(|r| constraint.allows(&r.name, &principal_ids))
            {
                let exposed = self_grant_exposes(vault, r, scope_kind);
                if !exposed.is_empty() {
                    objects.extend(exposed);
                    names.push(r.role_name());
                }
            }
            if !objects.is_empty() {
                names.sort();
                let model = if vault.is_rbac() {
                    "an RBAC vault"
                } else {
                    "an access-policy vault"
                };
                out.push(access(
                    Reach::CanGrantSelf,
                    objects,
                    format!(
                        "action {} grants {ROLE_ASSIGNMENT_WRITE}{at} in {model}; {}; it could assign itself {}",
                        g.pattern,
                        constraint.describe(),
                        names.join(", ")
                    ),
                ));
            }
        }

        // Indirect: writing the vault's permissions (at the vault or above).
        if object.is_none() {
            let write = vault_writes(vault)
                .iter()
                .find_map(|op| role.grants_action(op).map(|g| (op, g)));
            if let Some((op, g)) = write {
                let how = if vault.is_rbac() {
                    "in an RBAC vault: it could turn enableRbacAuthorization off and add an access policy for itself"
                } else {
                    "in an access-policy vault: it could add an access policy for itself"
                };
                out.push(access(
                    Reach::CanGrantSelf,
                    all_objects(),
                    format!("action {} grants {op} {how}{condition_note}", g.pattern),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";

    fn role(guid: &str, name: &str, perms: serde_json::Value) -> RoleDefinition {
        serde_json::from_value(json!({
            "id": format!("/providers/Microsoft.Authorization/roleDefinitions/{guid}"),
            "name": guid,
            "properties": {"roleName": name, "type": "BuiltInRole", "permissions": [perms]}
        }))
        .unwrap()
    }

    fn roles() -> BTreeMap<String, RoleDefinition> {
        [
            role("kvc", "Key Vault Contributor", json!({"actions": ["Microsoft.Authorization/*/read", "Microsoft.KeyVault/*"], "notActions": ["Microsoft.KeyVault/locations/deletedVaults/purge/action", "Microsoft.KeyVault/hsmPools/*", "Microsoft.KeyVault/managedHsms/*"]})),
            role("contrib", "Contributor", json!({"actions": ["*"], "notActions": ["Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write", "Microsoft.Authorization/elevateAccess/Action"]})),
            role("reader", "Reader", json!({"actions": ["*/read"]})),
            role("rbacadmin", "Role Based Access Control Administrator", json!({"actions": ["Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/roleAssignments/delete", "*/read"]})),
            role("secretsuser", "Key Vault Secrets User", json!({"dataActions": ["Microsoft.KeyVault/vaults/secrets/getSecret/action", "Microsoft.KeyVault/vaults/secrets/readMetadata/action"]})),
            role("certuser", "Key Vault Certificate User", json!({"dataActions": ["Microsoft.KeyVault/vaults/certificates/read", "Microsoft.KeyVault/vaults/secrets/getSecret/action", "Microsoft.KeyVault/vaults/secrets/readMetadata/action", "Microsoft.KeyVault/vaults/keys/read"]})),
        ]
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect()
    }

    fn vault(name: &str, rbac: Option<bool>, policies: serde_json::Value) -> Vault {
        serde_json::from_value(json!({
            "id": format!("{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/{name}"),
            "name": name,
            "properties": {"tenantId": "t", "enableRbacAuthorization": rbac, "accessPolicies": policies}
        }))
        .unwrap()
    }

    fn chain(v: &Vault) -> Vec<String> {
        vec![
            v.id.clone(),
            format!("{SUB}/resourceGroups/rg"),
            SUB.to_string(),
            "/providers/Microsoft.Management/managementGroups/root".into(),
            "/".into(),
        ]
    }

    fn assignment(
        id: &str,
        scope: &str,
        role: &str,
        principal: &str,
        condition: Option<&str>,
    ) -> RoleAssignment {
        serde_json::from_value(json!({
            "id": format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{id}"),
            "name": id,
            "properties": {
                "roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{role}"),
                "principalId": principal, "principalType": "User", "scope": scope, "condition": condition
            }
        }))
        .unwrap()
    }

    fn alice() -> Principals {
        Principals {
            all: vec![
                Principal {
                    object_id: "alice".into(),
                    display: "user alice".into(),
                    via_membership: None,
                },
                Principal {
                    object_id: "eng".into(),
                    display: "group eng".into(),
                    via_membership: Some(("platform".into(), "platform".into())),
                },
            ],
        }
    }

    #[test]
    fn access_policies_and_vault_writers_in_an_access_policy_vault() {
        let v = vault(
            "ap",
            None,
            json!([
                {"tenantId": "t", "objectId": "eng", "permissions": {"secrets": ["Get", "List"]}},
                {"tenantId": "t", "objectId": "bob", "permissions": {"secrets": ["all"]}},
                {"tenantId": "t", "objectId": "alice", "permissions": {"secrets": ["list"]}}
            ]),
        );
        let assignments = [
            assignment("a1", SUB, "kvc", "alice", None),
            assignment(
                "a2",
                &format!("{SUB}/resourceGroups/rg"),
                "reader",
                "alice",
                None,
            ),
            assignment(
                "a3",
                &format!("{SUB}/resourceGroups/rg"),
                "secretsuser",
                "eng",
                None,
            ),
            assignment("a4", "/subscriptions/other", "contrib", "alice", None),
        ];
        let got = vault_access(&v, &chain(&v), &alice(), &assignments, &roles());
        assert_eq!(got.len(), 2, "{got:#?}");
        let policy = &got[0];
        assert_eq!(policy.reach, Reach::CanRead);
        assert_eq!(policy.principal.object_id, "eng");
        assert_eq!(
            policy.objects,
            [ObjectType::Secrets, ObjectType::Certificates].into()
        );
        let indirect = &got[1];
        assert_eq!(indirect.reach, Reach::CanGrantSelf);
        assert!(
            indirect
                .rule
                .contains("Microsoft.KeyVault/* grants Microsoft.KeyVault/vaults/write"),
            "{}",
            indirect.rule
        );
        // The data role is ignored in an access-policy vault; a list-only policy reads nothing.
    }

    #[test]
    fn data_roles_and_role_writers_in_an_rbac_vault() {
        let v = vault("rbac", Some(true), json!([]));
        let constrained = "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {certuser}))";
        let only_reader = "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {reader}))";
        let assignments = [
            assignment("a1", &v.id, "certuser", "alice", None),
            assignment(
                "a2",
                "/providers/Microsoft.Management/managementGroups/root",
                "rbacadmin",
                "eng",
                Some(constrained),
            ),
            assignment("a3", SUB, "rbacadmin", "alice", Some(only_reader)),
            assignment("a4", SUB, "kvc", "alice", None),
        ];
        let got = vault_access(&v, &chain(&v), &alice(), &assignments, &roles());
        assert_eq!(got.len(), 3, "{got:#?}");
        // Key Vault Certificate User reads secret values (and so certificate private keys).
        assert_eq!(got[0].reach, Reach::CanRead);
        assert!(got[0].objects.contains(&ObjectType::Secrets));
        assert!(got[0].objects.contains(&ObjectType::Certificates));
        // The conditioned writer may assign Certificate User: a path to what that role reads,
        // not to keys. The one limited to Reader is not a path.
        assert_eq!(got[1].reach, Reach::CanGrantSelf);
        assert_eq!(got[1].principal.object_id, "eng");
        assert_eq!(
            got[1].objects,
            [ObjectType::Secrets, ObjectType::Certificates].into()
        );
        assert!(
            got[1].rule.contains("Key Vault Certificate User"),
            "{}",
            got[1].rule
        );
        // Key Vault Contributor cannot write role assignments, but may write the vault: turn
        // RBAC off and add itself an access policy.
        assert_eq!(got[2].reach, Reach::CanGrantSelf);
        assert_eq!(got[2].objects, ObjectType::ALL.into());
        assert!(
            got[2].rule.contains("enableRbacAuthorization off"),
            "{}",
            got[2].rule
        );
    }

    #[test]
    fn an_assignment_below_the_vault_reaches_that_object_with_its_kind_only() {
        let v = vault("rbac", Some(true), json!([]));
        let at = |what: &str| format!("{}/{what}", v.id);
        let assignments = [
            assignment("a1", &at("secrets/db"), "secretsuser", "alice", None),
            // A secrets role on a key or a certificate reads nothing.
            assignment("a2", &at("keys/signing"), "secretsuser", "alice", None),
            assignment("a3", &at("certificates/tls"), "secretsuser", "alice", None),
            // Elsewhere: not this vault.
            assignment(
                "a4",
                &format!(
                    "{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/other/secrets/db"
                ),
                "secretsuser",
                "alice",
                None,
            ),
            // The right to assign roles on one secret: a path to that secret only.
            assignment("a5", &at("secrets/api"), "rbacadmin", "alice", None),
        ];
        let got = vault_access(&v, &chain(&v), &alice(), &assignments, &roles());
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(got[0].reach, Reach::CanRead);
        assert_eq!(got[0].only.as_deref(), Some("db"));
        assert!(got[0].exposes(ObjectType::Secrets, "DB"));
        assert!(!got[0].exposes(ObjectType::Secrets, "other"));
        assert!(!got[0].exposes(ObjectType::Keys, "db"));
        assert!(got[0].rule.contains("on secret db"), "{}", got[0].rule);
        assert_eq!(got[1].reach, Reach::CanGrantSelf);
        assert_eq!(got[1].only.as_deref(), Some("api"));
        assert!(!got[1].grants_whole_vault());
        assert!(!got[1].objects.contains(&ObjectType::Keys));
    }

    #[test]
    fn assigning_roles_reaches_an_access_policy_vault_through_a_vault_writer_role() {
        let v = vault("ap", None, json!([]));
        let only_secrets_user = "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {secretsuser}))";
        let unconstrained = [assignment("a1", SUB, "rbacadmin", "alice", None)];
        let got = vault_access(&v, &chain(&v), &alice(), &unconstrained, &roles());
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].grants_whole_vault());
        assert!(
            got[0].rule.contains("Key Vault Contributor"),
            "it could assign itself a role that writes access policies: {}",
            got[0].rule
        );
        // Limited to a data role: data roles do nothing in an access-policy vault.
        let constrained = [assignment(
            "a1",
            SUB,
            "rbacadmin",
            "alice",
            Some(only_secrets_user),
        )];
        assert!(vault_access(&v, &chain(&v), &alice(), &constrained, &roles()).is_empty());
    }

    #[test]
    fn an_unevaluated_condition_counts_as_allowing() {
        let v = vault("rbac", Some(true), json!([]));
        let assignments = [assignment(
            "a1",
            SUB,
            "rbacadmin",
            "alice",
            Some("@Request[Something] StringLike 'x*'"),
        )];
        let got = vault_access(&v, &chain(&v), &alice(), &assignments, &roles());
        assert_eq!(got.len(), 1);
        assert!(got[0].rule.contains("not evaluated"));
    }
}
