//! The findings resolution builds, from what was read: pure functions of the user, the
//! principals, the owned objects, the survey and the vault listings. Each finding carries the
//! paths that explain it; a path through an entitlement (membership, assignment, access
//! policy) starts with that entitlement's own path, which is how the orchestrator finds what a
//! removal cuts off.

use crate::capabilities::{kinds, PROVIDER};
use crate::data_plane::ObjectSummary;
use crate::directory::ActedAs;
use crate::entra::{OwnedObject, User};
use crate::http::Unread;
use crate::keyvault::{Access, Reach, Vault, Via};
use crate::object::ObjectType;
use crate::principal::{Principal, Principals};
use crate::rbac::RoleAssignment;
use crate::state::{sessions_state, user_state};
use crate::survey::Survey;
use chrono::{DateTime, Utc};
use closeout_contract::{Exposure, Finding, Gap, Holder, Path, Relation, Resolution, State};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A finding's id: `azure:{kind}:{resource}`.
pub(crate) fn finding_id(kind: &str, resource: &str) -> String {
    format!("{PROVIDER}:{kind}:{resource}")
}

/// An active finding; callers that know better set `state` afterwards.
pub(crate) fn finding(
    kind: &str,
    resource: String,
    display: String,
    relation: Relation,
    holder: Holder,
    paths: Vec<Path>,
    attributes: BTreeMap<String, String>,
) -> Finding {
    Finding {
        id: finding_id(kind, &resource),
        provider: PROVIDER.into(),
        kind: kind.into(),
        relation,
        holder,
        resource,
        display,
        state: State::Active,
        paths,
        attributes,
    }
}

/// Attributes from pairs, the empty values left out.
pub(crate) fn attrs<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The path from the person to a principal: nothing for the user, else the direct membership
/// and (when different) the group reached through it.
pub(crate) fn path_to(principal: &Principal) -> Path {
    path_from(&Path::new(), principal)
}

/// The path to a principal from where `from` ends (the person, or a service principal they
/// can act as): the direct membership and (when different) the group reached through it.
fn path_from(from: &Path, principal: &Principal) -> Path {
    let mut path = from.clone();
    if let Some((direct_id, direct_name)) = &principal.via_membership {
        path = path.then("member-of", format!("group {direct_name}"));
        if !direct_id.eq_ignore_ascii_case(&principal.object_id) {
            path = path.then("member-of", principal.display.clone());
        }
    }
    path
}

/// Actions on memberships and owned objects need the person's object id: every finding of a
/// person carries it.
pub(crate) fn held_by(f: &mut Finding, user_id: &str) {
    f.attributes.insert("user_id".into(), user_id.to_string());
}

/// The resource of a vault object finding: `{vault name}/{secrets|keys|certificates}/{name}`.
pub(crate) fn object_resource(vault: &str, t: ObjectType, name: &str) -> String {
    format!("{vault}/{}/{name}", t.as_str())
}

/// The `user` and `sign-in-sessions` findings of the person's user.
pub(crate) fn user_findings(
    user: &User,
    upn: &str,
    cutoff: Option<DateTime<Utc>>,
    out: &mut Resolution,
) {
    let facts = attrs([
        ("upn", upn),
        ("mail", user.mail.as_deref().unwrap_or("")),
        ("employee_id", user.employee_id.as_deref().unwrap_or("")),
    ]);
    out.findings.push(finding(
        kinds::USER,
        user.id.clone(),
        format!("Entra user {upn}"),
        Relation::Owns,
        Holder::Account,
        vec![Path::new().then("account", format!("Entra user {upn}"))],
        facts.clone(),
    ));
    if let Some(f) = out.findings.last_mut() {
        f.state = user_state(user);
    }
    let mut session_facts = facts;
    if let Some(from) = &user.sign_in_sessions_valid_from_date_time {
        session_facts.insert("sessions_valid_from".into(), from.clone());
    }
    out.findings.push(finding(
        kinds::SIGN_IN_SESSIONS,
        user.id.clone(),
        format!("sign-in sessions of {upn}"),
        Relation::Owns,
        Holder::Account,
        vec![Path::new()
            .then("account", format!("Entra user {upn}"))
            .then("has", "sign-in sessions")],
        session_facts,
    ));
    if let Some(f) = out.findings.last_mut() {
        f.state = sessions_state(user, cutoff);
    }
}

/// One listed vault object with the vault it lives in.
pub(crate) struct VaultObject {
    pub vault: Arc<Vault>,
    pub object_type: ObjectType,
    pub summary: ObjectSummary,
}

/// One way the person reaches a vault: an access of theirs (`from` empty), or of a service
/// principal they can act as (`from` is the path to it).
#[derive(Debug, Clone)]
pub(crate) struct Reached {
    pub from: Path,
    pub access: Access,
}

/// The finding of one vault object the person reaches through `access` or owns by the
/// `owner_tag` tag (`owner`: the tag's value naming them); in state `Active` (the caller reads
/// the real state).
pub(crate) fn vault_object_finding(
    object: &VaultObject,
    access: &[Reached],
    owner: Option<&str>,
    owner_tag: &str,
) -> Finding {
    let t = object.object_type;
    let vault = &object.vault.name;
    let name = &object.summary.name;
    let node = format!("{} {vault}/{name}", t.noun());
    let mut paths = Vec::new();
    let mut relation = Relation::CanGrantSelf;
    if let Some(owner) = owner {
        relation = Relation::Owns;
        paths.push(Path::new().then("owns", format!("{node} (tag {owner_tag}={owner})")));
    }
    for r in access {
        let rule = r.access.rule_for(t, name);
        let (edge, path) = object_path(&r.from, &r.access, &object.vault, &node, &rule);
        relation = relation.min(edge);
        paths.push(path);
    }
    let uri = object.vault.properties.vault_uri.as_deref().unwrap_or("");
    let mut facts = attrs([
        ("vault", vault.as_str()),
        ("vault_uri", uri),
        ("vault_id", object.vault.id.as_str()),
        ("name", name.as_str()),
        ("object_type", t.as_str()),
        ("owner", owner.unwrap_or("")),
    ]);
    if let Some(updated) = object
        .summary
        .updated
        .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
    {
        facts.insert("updated".into(), updated.to_rfc3339());
    }
    // `created_at`: when the current version was made (the rotation policy's age).
    if let Some(created) = object
        .summary
        .created
        .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
    {
        facts.insert(
            "created_at".into(),
            created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }
    // `expires`: when the current version stops being valid (a certificate's notAfter, an
    // object's `exp`), or "never": the rotation policy's `expires_within`.
    let expires = object
        .summary
        .expires
        .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
        .map_or_else(
            || closeout_contract::NEVER_EXPIRES.to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    facts.insert("expires".into(), expires);
    if t == ObjectType::Secrets {
        if let Some(strategy) = closeout_contract::rotation_strategy::from_tags(
            object
                .summary
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        ) {
            facts.insert(closeout_contract::rotation_strategy::ATTR.into(), strategy);
            facts.insert(
                closeout_contract::rotation_strategy::SOURCE_ATTR.into(),
                "tag".into(),
            );
        }
    }
    finding(
        t.finding_kind(),
        object_resource(vault, t, name),
        format!("Key Vault {node}"),
        relation,
        Holder::Shared,
        paths,
        facts,
    )
}

/// The path from the person to a vault object (`node`) through one access (of a principal
/// reached by `from`) and the `rule` that makes it reach that object, and the relation it gives.
pub(crate) fn object_path(
    from: &Path,
    a: &Access,
    vault: &Vault,
    node: &str,
    rule: &str,
) -> (Relation, Path) {
    let edge = match a.reach {
        Reach::CanRead => Relation::CanRead,
        Reach::CanGrantSelf => Relation::CanGrantSelf,
    };
    let path = access_path(from, a, vault)
        .then("rule", rule)
        .then(edge.as_str(), node);
    (edge, path)
}

/// The path from the person to a vault through one access: how the principal is reached (the
/// membership chain, after `from`), then the access policy or role assignment.
fn access_path(from: &Path, a: &Access, vault: &Vault) -> Path {
    let path = path_from(from, &a.principal);
    match &a.via {
        Via::AccessPolicy { .. } => path.then("named-in", policy_node(&vault.name, &a.principal)),
        Via::DirectoryRole { edge, node } => path.then(edge.clone(), node.clone()),
        Via::Assignment {
            assignment_id,
            role,
            scope,
        } => path.then(
            "assigned",
            format!(
                "role {role} at {} (assignment {})",
                display_scope(scope),
                crate::rbac::last_segment(assignment_id)
            ),
        ),
    }
}

/// The node of an access policy: the same in the policy's finding and in the paths of the
/// objects it opens, so the policy's path is a prefix of theirs.
fn policy_node(vault: &str, principal: &Principal) -> String {
    format!("access policy of vault {vault} for {}", principal.display)
}

/// A scope for people: the tenant root is `/`.
pub(crate) fn display_scope(scope: &str) -> &str {
    if scope.is_empty() {
        "/"
    } else {
        scope
    }
}

/// The membership findings of every group principal.
pub(crate) fn membership_findings(principals: &Principals, out: &mut Resolution) {
    out.findings
        .extend(principals.all.iter().skip(1).filter_map(membership_finding));
}

/// The membership finding of a group principal: `group-membership` when the group is the
/// direct membership itself, `inherited-group` when reached through it. `None` for the user.
pub(crate) fn membership_finding(p: &Principal) -> Option<Finding> {
    let (direct_id, _) = p.via_membership.as_ref()?;
    let direct = direct_id.eq_ignore_ascii_case(&p.object_id);
    let kind = if direct {
        kinds::GROUP_MEMBERSHIP
    } else {
        kinds::INHERITED_GROUP
    };
    let name = p.display.trim_start_matches("group ");
    Some(finding(
        kind,
        p.object_id.clone(),
        format!("membership in Entra {}", p.display),
        Relation::MemberOf,
        Holder::Account,
        vec![path_to(p)],
        attrs([
            ("group", name),
            ("group_id", &p.object_id),
            ("direct_group_id", direct_id),
        ]),
    ))
}

/// The finding of an application or service principal as an NHI: `owner` names who owns it
/// (omitted for one found for a service identity, whose owner a joiner is about to record).
pub(crate) fn owned_object_finding(owned: &OwnedObject, owner: Option<&str>) -> Finding {
    let (kind, noun, collection) = owned_noun(owned);
    let name = owned.display_name.clone().unwrap_or(owned.id.clone());
    let node = format!("{noun} {name}");
    let mut facts = attrs([
        ("object_id", owned.id.as_str()),
        ("collection", collection),
        ("app_id", owned.app_id.as_deref().unwrap_or("")),
        ("app_name", name.as_str()),
    ]);
    if let Some(owner) = owner {
        facts.insert("owner".into(), owner.into());
    }
    finding(
        kind,
        owned.id.clone(),
        format!("Entra {node}"),
        Relation::Owns,
        Holder::Nhi(name),
        vec![Path::new().then("owns", node)],
        facts,
    )
}

/// (kind, noun, Graph collection) of an owned object.
fn owned_noun(owned: &OwnedObject) -> (&'static str, &'static str, &'static str) {
    if owned.is_application() {
        (kinds::OWNED_APPLICATION, "application", "applications")
    } else {
        (
            kinds::OWNED_SERVICE_PRINCIPAL,
            "service principal",
            "servicePrincipals",
        )
    }
}

/// The findings of an owned application or service principal and of its credentials.
pub(crate) fn owned_findings(owned: &OwnedObject, owner: &str, out: &mut Resolution) {
    let object = owned_object_finding(owned, Some(owner));
    let (_, noun, _) = owned_noun(owned);
    let node = format!("{noun} {}", object.attr("app_name").unwrap_or(&owned.id));
    let holder = object.holder.clone();
    let owns = object.paths[0].clone();
    let base = object.attributes.clone();
    out.findings.push(object);
    for p in &owned.password_credentials {
        let mut facts = base.clone();
        facts.insert("key_id".into(), p.key_id.clone());
        if let Some(end) = &p.end_date_time {
            facts.insert("expires".into(), end.clone());
        }
        if let Some(hint) = &p.hint {
            facts.insert("hint".into(), hint.clone());
        }
        out.findings.push(finding(
            kinds::APP_PASSWORD,
            format!("{}/{}", owned.id, p.key_id),
            format!(
                "client secret {} of {node}",
                p.display_name.as_deref().unwrap_or(&p.key_id)
            ),
            Relation::Owns,
            holder.clone(),
            vec![owns.then("has", format!("client secret {}", p.key_id))],
            facts,
        ));
    }
    for k in &owned.key_credentials {
        let mut facts = base.clone();
        facts.insert("key_id".into(), k.key_id.clone());
        if let Some(end) = &k.end_date_time {
            facts.insert("expires".into(), end.clone());
        }
        out.findings.push(finding(
            kinds::APP_CERTIFICATE,
            format!("{}/{}", owned.id, k.key_id),
            format!(
                "certificate {} of {node}",
                k.display_name.as_deref().unwrap_or(&k.key_id)
            ),
            Relation::Owns,
            holder.clone(),
            vec![owns.then("has", format!("certificate {}", k.key_id))],
            facts,
        ));
    }
}

/// The findings of every role assignment naming one of the person's principals.
pub(crate) fn assignment_findings(
    survey: &Survey,
    principals: &Principals,
    user_id: &str,
    out: &mut Resolution,
) {
    for a in &survey.assignments {
        let Some(principal) = principals.get(&a.properties.principal_id) else {
            continue;
        };
        let role = survey
            .roles
            .get(&a.role_guid().to_ascii_lowercase())
            .map(|r| r.role_name().to_string())
            .unwrap_or_else(|| a.role_guid().to_string());
        out.findings
            .push(assignment_finding(a, &role, principal, user_id));
    }
}

/// The finding of one role assignment reaching the person: `role-assignment` when its
/// principal is the user (`user_id`), `group-role-assignment` when one of their groups.
pub(crate) fn assignment_finding(
    a: &RoleAssignment,
    role: &str,
    principal: &Principal,
    user_id: &str,
) -> Finding {
    let own = principal.object_id.eq_ignore_ascii_case(user_id);
    let scope = display_scope(a.scope());
    let node = format!("role {role} at {scope} (assignment {})", a.name);
    let mut facts = attrs([
        ("role", role),
        ("scope", scope),
        ("principal_id", principal.object_id.as_str()),
        // A grant PUTs it again; the role's name alone would need another lookup.
        (
            "role_definition_id",
            a.properties.role_definition_id.as_str(),
        ),
        ("condition", a.condition().unwrap_or("")),
    ]);
    if !own {
        facts.insert("group".into(), principal.display.clone());
    }
    finding(
        if own {
            kinds::ROLE_ASSIGNMENT
        } else {
            kinds::GROUP_ROLE_ASSIGNMENT
        },
        a.id.clone(),
        format!("Azure {node}"),
        Relation::MemberOf,
        Holder::Account,
        vec![path_to(principal).then("assigned", node)],
        facts,
    )
}

/// The findings of every access policy naming one of the person's principals.
pub(crate) fn access_policy_findings(
    survey: &Survey,
    principals: &Principals,
    out: &mut Resolution,
) {
    for vault in &survey.vaults {
        for policy in &vault.properties.access_policies {
            let Some(principal) = principals.get(&policy.object_id) else {
                continue;
            };
            let own = principals
                .user_id()
                .is_some_and(|u| u.eq_ignore_ascii_case(&policy.object_id));
            let node = policy_node(&vault.name, principal);
            let p = &policy.permissions;
            let mut facts = attrs([
                ("vault", vault.name.as_str()),
                ("vault_id", vault.id.as_str()),
                ("object_id", policy.object_id.as_str()),
                ("secrets", &p.secrets.join(",")),
                ("keys", &p.keys.join(",")),
                ("certificates", &p.certificates.join(",")),
            ]);
            if vault.is_rbac() {
                // Dormant while the vault uses RBAC, live again if it switches back.
                facts.insert("dormant".into(), "the vault uses Azure RBAC".into());
            }
            out.findings.push(finding(
                if own {
                    kinds::ACCESS_POLICY
                } else {
                    kinds::GROUP_ACCESS_POLICY
                },
                format!("{}/{}", vault.id, policy.object_id),
                node.clone(),
                Relation::MemberOf,
                Holder::Account,
                vec![path_to(principal).then("named-in", node)],
                facts,
            ));
        }
    }
}

/// The one line a plan shows for a vault the person can grant themselves everything in (or
/// every object of some kinds): `None` when no access does that.
pub(crate) fn vault_exposure(vault: &Vault, reached: &[Reached]) -> Option<Exposure> {
    let whole: Vec<&Reached> = reached
        .iter()
        .filter(|r| r.access.grants_whole_vault())
        .collect();
    if whole.is_empty() {
        return None;
    }
    let kinds: std::collections::BTreeSet<ObjectType> = whole
        .iter()
        .flat_map(|r| r.access.objects.iter().copied())
        .collect();
    let what = if kinds.len() == ObjectType::ALL.len() {
        "every secret, key and certificate".to_string()
    } else {
        format!(
            "every {}",
            kinds
                .iter()
                .map(|k| k.noun())
                .collect::<Vec<_>>()
                .join(" and every ")
        )
    };
    let node = format!("vault {}", vault.name);
    Some(Exposure {
        provider: PROVIDER.into(),
        scope: node.clone(),
        what: format!("can grant itself {what} in {node}: all of them are rotated"),
        paths: whole
            .iter()
            .map(|r| {
                access_path(&r.from, &r.access, vault)
                    .then("rule", r.access.rule.clone())
                    .then(Relation::CanGrantSelf.as_str(), node.clone())
            })
            .collect(),
    })
}

/// The paths from the person to `vault` itself through each of `reached` (for a gap about the
/// vault: what it could not list is what these paths reach).
pub(crate) fn vault_paths(vault: &Vault, reached: &[Reached]) -> Vec<Path> {
    reached
        .iter()
        .map(|r| {
            let edge = match r.access.reach {
                Reach::CanRead => Relation::CanRead,
                Reach::CanGrantSelf => Relation::CanGrantSelf,
            };
            access_path(&r.from, &r.access, vault)
                .then("rule", r.access.rule.clone())
                .then(edge.as_str(), format!("vault {}", vault.name))
        })
        .collect()
}

/// The path to a service principal the person can act as, from the steps of [`ActedAs`].
pub(crate) fn acted_as_path(acted: &ActedAs) -> Path {
    acted.steps.iter().fold(Path::new(), |p, (edge, node)| {
        p.then(edge.clone(), node.clone())
    })
}

/// The finding of a service principal the person can act as without owning it (the service
/// principal of an application they own, or one reached through such a principal): closes
/// with the ownership of the object at the start of its path.
pub(crate) fn acts_as_finding(acted: &ActedAs) -> Finding {
    let sp = &acted.service_principal;
    let name = sp.display_name.clone().unwrap_or(sp.id.clone());
    let (owned_collection, owned_id) = &acted.owned;
    finding(
        kinds::ACTS_AS_SERVICE_PRINCIPAL,
        sp.id.clone(),
        format!("Entra service principal {name} (the person can act as it)"),
        Relation::CanActAs,
        Holder::Nhi(name.clone()),
        vec![acted_as_path(acted)],
        attrs([
            ("object_id", sp.id.as_str()),
            ("collection", "servicePrincipals"),
            ("app_id", sp.app_id.as_deref().unwrap_or("")),
            ("app_name", name.as_str()),
            ("owned_collection", owned_collection.as_str()),
            ("owned_object_id", owned_id.as_str()),
        ]),
    )
}

/// The gap an unread listing leaves: open until read, or accepted by kind.
pub(crate) fn gap_of(unread: &Unread, paths: Vec<Path>) -> Gap {
    Gap {
        provider: PROVIDER.into(),
        kind: unread.kind.to_string(),
        resource: unread.resource.clone(),
        reason: format!(
            "could not read {}: {}; what it holds is unknown, so not closed",
            unread.what, unread.error
        ),
        paths,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str, name: &str, via: Option<(&str, &str)>) -> Principal {
        Principal {
            object_id: id.into(),
            display: format!("group {name}"),
            via_membership: via.map(|(a, b)| (a.into(), b.into())),
        }
    }

    #[test]
    fn memberships_split_into_direct_and_inherited_with_their_chain() {
        let principals = Principals {
            all: vec![
                Principal {
                    object_id: "u".into(),
                    display: "user alice".into(),
                    via_membership: None,
                },
                group("g1", "oncall", Some(("g1", "oncall"))),
                group("g2", "platform", Some(("g1", "oncall"))),
            ],
        };
        let mut out = Resolution::default();
        membership_findings(&principals, &mut out);
        assert_eq!(out.findings.len(), 2);
        assert_eq!(out.findings[0].kind, kinds::GROUP_MEMBERSHIP);
        assert_eq!(out.findings[1].kind, kinds::INHERITED_GROUP);
        assert_eq!(
            out.findings[1].paths[0].render("alice"),
            "alice -member-of-> group oncall -member-of-> group platform"
        );
    }

    /// The orchestrator's rule: an object is reachable through an entitlement finding when one
    /// of its paths starts with one of the entitlement's. Membership → the group's (nested)
    /// role assignment → a secret it reads; the user's own assignment and access policy → the
    /// secrets they open.
    #[test]
    fn entitlement_paths_are_prefixes_of_what_they_reach() {
        use serde_json::json;
        let sub = "/subscriptions/00000000-0000-4000-8000-000000000001";
        let vault_id = format!("{sub}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv");
        let role = |guid: &str, name: &str, data: &[&str]| {
            serde_json::from_value::<crate::rbac::RoleDefinition>(json!({
                "id": format!("/providers/Microsoft.Authorization/roleDefinitions/{guid}"),
                "name": guid,
                "properties": {"roleName": name, "permissions": [{"dataActions": data}]}
            }))
            .unwrap()
        };
        let assignment = |name: &str, principal: &str| {
            serde_json::from_value::<RoleAssignment>(json!({
                "id": format!("{vault_id}/providers/Microsoft.Authorization/roleAssignments/{name}"),
                "name": name,
                "properties": {
                    "roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/secretsuser",
                    "principalId": principal, "scope": vault_id
                }
            }))
            .unwrap()
        };
        let vault = |rbac: bool| {
            serde_json::from_value::<Vault>(json!({
                "id": vault_id, "name": "kv",
                "properties": {"tenantId": "t", "enableRbacAuthorization": rbac,
                    "accessPolicies": [{"tenantId": "t", "objectId": "u",
                        "permissions": {"secrets": ["get"]}}]}
            }))
            .unwrap()
        };
        let principals = Principals {
            all: vec![
                Principal {
                    object_id: "u".into(),
                    display: "user alice".into(),
                    via_membership: None,
                },
                group("g1", "oncall", Some(("g1", "oncall"))),
                group("g2", "platform", Some(("g1", "oncall"))),
            ],
        };
        let mut survey = Survey::default();
        survey.roles.insert(
            "secretsuser".into(),
            role(
                "secretsuser",
                "Key Vault Secrets User",
                &["Microsoft.KeyVault/vaults/secrets/getSecret/action"],
            ),
        );
        survey.assignments = vec![assignment("a-group", "g2"), assignment("a-own", "u")];
        let mut out = Resolution::default();
        membership_findings(&principals, &mut out);
        assignment_findings(&survey, &principals, "u", &mut out);
        survey.vaults = vec![vault(false)];
        access_policy_findings(&survey, &principals, &mut out);
        let of = |kind: &str| -> Vec<&Finding> {
            out.findings.iter().filter(|f| f.kind == kind).collect()
        };
        let starts = |long: &Path, short: &Path| long.steps.starts_with(&short.steps);
        let reaches = |through: &Finding, reached: &[Path]| {
            through
                .paths
                .iter()
                .any(|e| reached.iter().any(|p| starts(p, e)))
        };
        let membership = of(kinds::GROUP_MEMBERSHIP)[0];
        assert!(reaches(membership, &of(kinds::INHERITED_GROUP)[0].paths));
        let group_assignment = of(kinds::GROUP_ROLE_ASSIGNMENT)[0];
        assert!(reaches(membership, &group_assignment.paths));
        let own_assignment = of(kinds::ROLE_ASSIGNMENT)[0];
        assert!(!reaches(membership, &own_assignment.paths));
        let own_policy = of(kinds::ACCESS_POLICY)[0];

        // The secret's paths, as object_finding builds them, on an RBAC vault (assignments)
        // and on an access-policy vault.
        let node = "secret kv/db";
        let mut secret_paths = |rbac: bool| -> Vec<Path> {
            survey.vaults = vec![vault(rbac)];
            survey
                .key_vault_paths(&principals)
                .into_iter()
                .flat_map(|(v, access)| {
                    access
                        .iter()
                        .map(|a| object_path(&Path::new(), a, v, node, &a.rule).1)
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let via_rbac = secret_paths(true);
        assert_eq!(via_rbac.len(), 2, "{via_rbac:?}");
        assert!(reaches(membership, &via_rbac));
        assert!(reaches(group_assignment, &via_rbac));
        assert!(reaches(own_assignment, &via_rbac));
        let via_policy = secret_paths(false);
        assert!(reaches(own_policy, &via_policy), "{via_policy:?}");
        assert!(!reaches(membership, &via_policy));
    }
}
