//! What the Azure provider resolves and does: its finding kinds, verbs, grant forms, age facts
//! and the ARM operations and Graph permissions each call needs.

use closeout_contract::{
    plain_target, verbs, AgeFacts, Capabilities, GrantFieldError, GrantForm, KindSpec, Operation,
    Permission,
};

/// Disable every version of a Key Vault key but the current one. Not part of `rotate`: data
/// encrypted or wrapped under an old version can then no longer be decrypted or unwrapped, so a
/// playbook asks for it explicitly (after the data is re-encrypted).
pub const DISABLE_OLD_VERSIONS: closeout_contract::Verb = closeout_contract::Verb {
    name: "disable-old-versions",
    leaves: closeout_contract::State::Rotated,
    needs_grace: false,
};

/// The provider's name in findings, playbooks and configuration.
pub const PROVIDER: &str = "azure";

/// Tag a rotation puts on the new version of a Key Vault object: which run made it (so a retry
/// recognises its own version instead of making another).
pub(crate) const ROTATED_BY_RUN_TAG: &str = "closeout-run";

/// The display-name prefix of application credentials Closeout adds (`{prefix} {run} {old key
/// id}`): a retry recognises its own, verification recognises a replaced one.
pub(crate) const CREDENTIAL_DISPLAY_PREFIX: &str = "closeout rotation";

/// The finding kinds this provider emits.
pub mod kinds {
    /// The person's Entra user.
    pub const USER: &str = "user";
    /// The user's sign-in sessions (refresh tokens and session cookies).
    pub const SIGN_IN_SESSIONS: &str = "sign-in-sessions";
    /// Direct membership of the user in a group.
    pub const GROUP_MEMBERSHIP: &str = "group-membership";
    /// A group reached through nested groups (closes with the direct membership).
    pub const INHERITED_GROUP: &str = "inherited-group";
    /// A role assignment whose principal is the user.
    pub const ROLE_ASSIGNMENT: &str = "role-assignment";
    /// A role assignment whose principal is one of the user's groups (closes with the
    /// membership; the assignment itself serves the rest of the group and stays).
    pub const GROUP_ROLE_ASSIGNMENT: &str = "group-role-assignment";
    /// A Key Vault access policy naming the user.
    pub const ACCESS_POLICY: &str = "access-policy";
    /// A Key Vault access policy naming one of the user's groups (closes with the membership).
    pub const GROUP_ACCESS_POLICY: &str = "group-access-policy";
    /// An application registration the user owns (a non-human identity).
    pub const OWNED_APPLICATION: &str = "owned-application";
    /// A service principal the user owns.
    pub const OWNED_SERVICE_PRINCIPAL: &str = "owned-service-principal";
    /// A service principal the user can act as without owning it: that of an application they
    /// own (an owner can add a credential and sign in as it), or one reached the same way from
    /// such a principal. Its reach is the user's; it closes with the ownership.
    pub const ACTS_AS_SERVICE_PRINCIPAL: &str = "acts-as-service-principal";
    /// A client secret of an owned application or service principal.
    pub const APP_PASSWORD: &str = "app-password";
    /// A certificate credential of an owned application or service principal.
    pub const APP_CERTIFICATE: &str = "app-certificate";
    /// An active Microsoft Entra directory role assignment of the user (directly assigned, or
    /// an active PIM assignment).
    pub const DIRECTORY_ROLE: &str = "directory-role";
    /// A PIM eligibility of the user for a directory role (they can activate it themselves).
    pub const DIRECTORY_ROLE_ELIGIBILITY: &str = "directory-role-eligibility";
    /// A directory role held or eligible (PIM) by a role-assignable group the user is in
    /// (closes with the membership; the group keeps it).
    pub const GROUP_DIRECTORY_ROLE: &str = "group-directory-role";
    /// A group the user owns (an owner can add herself back as a member).
    pub const OWNED_GROUP: &str = "owned-group";
    /// An app role of an enterprise application assigned to the user.
    pub const APP_ROLE_ASSIGNMENT: &str = "app-role-assignment";
    /// A delegated OAuth2 permission grant the user consented to (an app acting as them).
    pub const OAUTH2_GRANT: &str = "oauth2-grant";
    /// An authentication method of the user (FIDO2 key, phone, Authenticator, temporary
    /// access pass, software OATH token, email, Windows Hello).
    pub const AUTH_METHOD: &str = "auth-method";
    /// A Key Vault secret the user owns (tag), can read, or can grant themselves.
    pub const KV_SECRET: &str = "kv-secret";
    /// A Key Vault key the user owns, can use, or can grant themselves.
    pub const KV_KEY: &str = "kv-key";
    /// A Key Vault certificate the user owns, can read (its private key), or can grant themselves.
    pub const KV_CERTIFICATE: &str = "kv-certificate";
}

/// What the Azure provider resolves and which verbs it supports on each kind.
pub const CAPABILITIES: Capabilities = Capabilities {
    provider: PROVIDER,
    kinds: &[
        KindSpec {
            kind: kinds::USER,
            description: "the person's Entra user; disable sets accountEnabled to false",
            verbs: &[verbs::DISABLE],
        },
        KindSpec {
            kind: kinds::SIGN_IN_SESSIONS,
            description: "the user's sign-in sessions; revoke-sessions calls revokeSignInSessions (refresh tokens and browser sessions stop working)",
            verbs: &[verbs::REVOKE_SESSIONS],
        },
        KindSpec {
            kind: kinds::GROUP_MEMBERSHIP,
            description: "direct membership of the user in an Entra group; remove deletes the membership (and with it everything the group and the groups above it grant); grant adds it (members/$ref)",
            verbs: &[verbs::REMOVE, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::INHERITED_GROUP,
            description: "group reached through nested groups (closes with the direct membership)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::ROLE_ASSIGNMENT,
            description: "Azure role assignment whose principal is the user, at any scope; remove deletes it; grant PUTs it under a name derived from user, role and scope",
            verbs: &[verbs::REMOVE, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::GROUP_ROLE_ASSIGNMENT,
            description: "Azure role assignment of one of the user's groups (closes with the membership; the group keeps it)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::ACCESS_POLICY,
            description: "Key Vault access policy naming the user; remove takes it out with accessPolicies/remove",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::GROUP_ACCESS_POLICY,
            description: "Key Vault access policy naming one of the user's groups (closes with the membership)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::OWNED_APPLICATION,
            description: "application registration the user owns; reassign-owner adds the manager as owner, then removes the user",
            verbs: &[verbs::REASSIGN_OWNER],
        },
        KindSpec {
            kind: kinds::OWNED_SERVICE_PRINCIPAL,
            description: "service principal the user owns; reassign-owner adds the manager as owner, then removes the user",
            verbs: &[verbs::REASSIGN_OWNER],
        },
        KindSpec {
            kind: kinds::ACTS_AS_SERVICE_PRINCIPAL,
            description: "service principal the user can act as (of an application they own, or owned by one they can act as): everything it reaches is theirs; closes with the reassign-owner of the owned object its path starts with",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::APP_PASSWORD,
            description: "client secret of an owned application or service principal; rotate adds a new one, publishes it to the credential vault, tests it, then removes the old one",
            verbs: &[verbs::ROTATE],
        },
        KindSpec {
            kind: kinds::APP_CERTIFICATE,
            description: "certificate credential of an owned application or service principal; rotate adds a new rcgen certificate, publishes it (PEM with its key) to the credential vault, then removes the old one",
            verbs: &[verbs::ROTATE],
        },
        KindSpec {
            kind: kinds::DIRECTORY_ROLE,
            description: "active Entra directory role assignment of the user (roleManagement/directory/roleAssignments); remove deletes it, or ends an active PIM assignment with a roleAssignmentScheduleRequests adminRemove; a privileged role (Global Administrator, Privileged Role Administrator, Privileged Authentication Administrator, Application Administrator, Cloud Application Administrator) is tenant-wide reach: every Key Vault object is rotated",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::DIRECTORY_ROLE_ELIGIBILITY,
            description: "PIM eligibility of the user for an Entra directory role (roleEligibilitySchedules); remove ends it with a roleEligibilityScheduleRequests adminRemove; an eligible privileged role is tenant-wide reach like an active one",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::GROUP_DIRECTORY_ROLE,
            description: "Entra directory role held or eligible (PIM) by a role-assignable group the user is in (closes with the membership; the group keeps it); a privileged one is tenant-wide reach like the user's own",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::OWNED_GROUP,
            description: "Entra group the user owns (an owner can add herself back); reassign-owner adds the manager as owner, then removes the user; with no manager the action fails and the finding stays open",
            verbs: &[verbs::REASSIGN_OWNER],
        },
        KindSpec {
            kind: kinds::APP_ROLE_ASSIGNMENT,
            description: "app role of an enterprise application assigned to the user (users/{id}/appRoleAssignments); remove deletes it",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::OAUTH2_GRANT,
            description: "delegated OAuth2 permission grant the user consented to (oauth2PermissionGrants, consentType Principal); remove deletes it",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::AUTH_METHOD,
            description: "authentication method of the user (FIDO2, phone, Microsoft Authenticator, temporary access pass, software OATH, email, Windows Hello); remove deletes it from its typed collection so a re-enabled account cannot be taken over; the password method cannot be deleted and is not listed",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::KV_SECRET,
            description: "Key Vault secret the user owns (tag), can read, or can grant themselves; rotate writes a new version by the secret's rotation strategy (tag closeout:rotation or a config rule; a plain value gets a new random one, a structured value with no strategy is refused) and disables the old versions; a PostgreSQL strategy changes the password at the database (pending value in <name>-closeout-pending) and keeps the old versions",
            verbs: &[verbs::ROTATE],
        },
        KindSpec {
            kind: kinds::KV_KEY,
            description: "Key Vault key the user owns, can use, or can grant themselves; rotate creates a new version of the same type and leaves the old versions enabled (data encrypted or wrapped under them must stay decryptable); disable-old-versions disables them when the playbook asks",
            verbs: &[verbs::ROTATE, DISABLE_OLD_VERSIONS],
        },
        KindSpec {
            kind: kinds::KV_CERTIFICATE,
            description: "Key Vault certificate the user owns, can read, or can grant themselves; rotate creates a new version from its policy and disables the old versions",
            verbs: &[verbs::ROTATE],
        },
    ],
    grant_forms: &[
        GrantForm {
            key: "group",
            kind: kinds::GROUP_MEMBERSHIP,
            qualifiers: &[],
            target: plain_target,
        },
        GrantForm {
            key: "role",
            kind: kinds::ROLE_ASSIGNMENT,
            qualifiers: &["scope"],
            target: role_grant_target,
        },
    ],
    ages: &[
        AgeFacts {
            kind: kinds::APP_PASSWORD,
            created: None,
            expires: Some("expires"),
        },
        AgeFacts {
            kind: kinds::APP_CERTIFICATE,
            created: None,
            expires: Some("expires"),
        },
        AgeFacts {
            kind: kinds::KV_SECRET,
            created: Some("created_at"),
            expires: Some("expires"),
        },
        AgeFacts {
            kind: kinds::KV_KEY,
            created: Some("created_at"),
            expires: Some("expires"),
        },
        AgeFacts {
            kind: kinds::KV_CERTIFICATE,
            created: Some("created_at"),
            expires: Some("expires"),
        },
    ],
    permissions: PERMISSIONS,
};

/// A scope as entitlement targets name it: lower-cased, no trailing slash (so the tenant root
/// is empty). ARM compares scopes without regard to case.
pub fn canonical_scope(scope: &str) -> String {
    scope.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The target of a role grant `{ provider: azure, role: ROLE, scope: SCOPE }`: `ROLE@SCOPE`,
/// as live role-assignment findings name it.
fn role_grant_target(role: &str, qualifiers: &[&str]) -> Result<String, GrantFieldError> {
    let scope = qualifiers.first().copied().unwrap_or_default().trim();
    if !scope.starts_with('/') {
        return Err(GrantFieldError {
            field: "scope",
            message: format!(
                "bad scope `{scope}`: an ARM scope starts with `/`, e.g. /subscriptions/ID"
            ),
        });
    }
    Ok(format!("{}@{}", role.trim(), canonical_scope(scope)))
}

const fn resolve(name: &'static str) -> Permission {
    Permission {
        operation: Operation::Resolve,
        name,
    }
}

const fn act(kind: &'static str, verb: &'static str, name: &'static str) -> Permission {
    Permission {
        operation: Operation::Act { kind, verb },
        name,
    }
}

/// The ARM operations (and Key Vault data actions) and Microsoft Graph application permissions
/// (`graph:` prefix) each call needs.
const PERMISSIONS: &[Permission] = &[
    resolve("graph:User.Read.All"),
    resolve("graph:GroupMember.Read.All"),
    resolve("graph:Application.Read.All"),
    resolve("graph:RoleManagement.Read.Directory"),
    resolve("graph:DelegatedPermissionGrant.Read.All"),
    resolve("graph:UserAuthenticationMethod.Read.All"),
    resolve("Microsoft.Resources/subscriptions/read"),
    resolve("Microsoft.Management/managementGroups/read"),
    resolve("Microsoft.Authorization/roleDefinitions/read"),
    resolve("Microsoft.Authorization/roleAssignments/read"),
    resolve("Microsoft.KeyVault/vaults/read"),
    resolve("Microsoft.KeyVault/vaults/secrets/readMetadata/action"),
    resolve("Microsoft.KeyVault/vaults/keys/read"),
    resolve("Microsoft.KeyVault/vaults/certificates/read"),
    act(kinds::USER, "disable", "graph:User.ReadWrite.All"),
    act(
        kinds::SIGN_IN_SESSIONS,
        "revoke-sessions",
        "graph:User.RevokeSessions.All",
    ),
    act(
        kinds::GROUP_MEMBERSHIP,
        "remove",
        "graph:GroupMember.ReadWrite.All",
    ),
    act(
        kinds::GROUP_MEMBERSHIP,
        "grant",
        "graph:GroupMember.ReadWrite.All",
    ),
    act(
        kinds::ROLE_ASSIGNMENT,
        "remove",
        "Microsoft.Authorization/roleAssignments/delete",
    ),
    act(
        kinds::ROLE_ASSIGNMENT,
        "grant",
        "Microsoft.Authorization/roleAssignments/write",
    ),
    act(
        kinds::ACCESS_POLICY,
        "remove",
        "Microsoft.KeyVault/vaults/accessPolicies/write",
    ),
    act(
        kinds::OWNED_APPLICATION,
        "reassign-owner",
        "graph:Application.ReadWrite.All",
    ),
    act(
        kinds::OWNED_SERVICE_PRINCIPAL,
        "reassign-owner",
        "graph:Application.ReadWrite.All",
    ),
    act(
        kinds::DIRECTORY_ROLE,
        "remove",
        "graph:RoleManagement.ReadWrite.Directory",
    ),
    act(
        kinds::DIRECTORY_ROLE_ELIGIBILITY,
        "remove",
        "graph:RoleManagement.ReadWrite.Directory",
    ),
    act(
        kinds::OWNED_GROUP,
        "reassign-owner",
        "graph:Group.ReadWrite.All",
    ),
    act(
        kinds::APP_ROLE_ASSIGNMENT,
        "remove",
        "graph:AppRoleAssignment.ReadWrite.All",
    ),
    act(
        kinds::OAUTH2_GRANT,
        "remove",
        "graph:DelegatedPermissionGrant.ReadWrite.All",
    ),
    act(
        kinds::AUTH_METHOD,
        "remove",
        "graph:UserAuthenticationMethod.ReadWrite.All",
    ),
    act(
        kinds::APP_PASSWORD,
        "rotate",
        "graph:Application.ReadWrite.All",
    ),
    act(
        kinds::APP_PASSWORD,
        "rotate",
        "Microsoft.KeyVault/vaults/secrets/setSecret/action",
    ),
    act(
        kinds::APP_CERTIFICATE,
        "rotate",
        "graph:Application.ReadWrite.All",
    ),
    act(
        kinds::APP_CERTIFICATE,
        "rotate",
        "Microsoft.KeyVault/vaults/secrets/setSecret/action",
    ),
    act(
        kinds::KV_SECRET,
        "rotate",
        "Microsoft.KeyVault/vaults/secrets/setSecret/action",
    ),
    act(
        kinds::KV_SECRET,
        "rotate",
        "Microsoft.KeyVault/vaults/secrets/update/action",
    ),
    act(
        kinds::KV_KEY,
        "rotate",
        "Microsoft.KeyVault/vaults/keys/create/action",
    ),
    act(
        kinds::KV_KEY,
        "rotate",
        "Microsoft.KeyVault/vaults/keys/update/action",
    ),
    act(
        kinds::KV_KEY,
        "disable-old-versions",
        "Microsoft.KeyVault/vaults/keys/update/action",
    ),
    act(
        kinds::KV_CERTIFICATE,
        "rotate",
        "Microsoft.KeyVault/vaults/certificates/create/action",
    ),
    act(
        kinds::KV_CERTIFICATE,
        "rotate",
        "Microsoft.KeyVault/vaults/certificates/update/action",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_list_every_kind_once() {
        let mut kinds: Vec<_> = CAPABILITIES.kinds.iter().map(|k| k.kind).collect();
        let n = kinds.len();
        kinds.sort();
        kinds.dedup();
        assert_eq!(n, kinds.len());
        assert!(CAPABILITIES.verb("user", "disable").is_some());
        assert!(CAPABILITIES
            .verb("sign-in-sessions", "revoke-sessions")
            .is_some());
        assert!(CAPABILITIES.verb("role-assignment", "remove").is_some());
        assert!(CAPABILITIES
            .verb("group-role-assignment", "remove")
            .is_none());
        assert!(CAPABILITIES.verb("kv-secret", "rotate").is_some());
        assert!(CAPABILITIES.verb("group-membership", "grant").is_some());
        assert!(CAPABILITIES.verb("role-assignment", "grant").is_some());
        assert!(CAPABILITIES.verb("access-policy", "grant").is_none());
    }
}
