//! What the Keycloak provider resolves and does: its finding kinds, verbs, grant forms, age
//! facts and the admin roles (of the `realm-management` client) each call needs.

use closeout_contract::{
    plain_target, verbs, AgeFacts, Capabilities, GrantFieldError, GrantForm, KindSpec, Operation,
    Permission,
};

/// The provider's name in findings, playbooks and configuration.
pub const PROVIDER: &str = "keycloak";

/// The finding kinds this provider emits.
pub mod kinds {
    /// The person's user in the configured realm.
    pub const USER: &str = "user";
    /// The user's browser / SSO sessions (every client's online session).
    pub const SESSIONS: &str = "sign-in-sessions";
    /// The user's offline sessions (offline tokens) of one client.
    pub const OFFLINE_SESSION: &str = "offline-session";
    /// A consent the user gave one client (granted scopes).
    pub const CONSENT: &str = "consent";
    /// A credential of the user (password, OTP, WebAuthn, ...).
    pub const CREDENTIAL: &str = "credential";
    /// A link of the user to an identity at an external identity provider.
    pub const FEDERATED_IDENTITY: &str = "federated-identity";
    /// Direct membership of the user in a group.
    pub const GROUP_MEMBERSHIP: &str = "group-membership";
    /// A parent group reached through a nested membership (closes with the direct one).
    pub const INHERITED_GROUP: &str = "inherited-group";
    /// A realm role mapped directly to the user.
    pub const REALM_ROLE: &str = "realm-role";
    /// A client role mapped directly to the user.
    pub const CLIENT_ROLE: &str = "client-role";
    /// A realm or client role reaching the user through a group (closes with the membership).
    pub const GROUP_ROLE: &str = "group-role";
    /// A client whose owner attribute names the person (a non-human identity).
    pub const OWNED_CLIENT: &str = "owned-client";
    /// The client secret of a confidential client the person owns.
    pub const CLIENT_SECRET: &str = "client-secret";
}

/// The kinds of the gaps this provider reports besides listings of finding kinds it could not
/// make (those carry the finding kind).
pub mod gap_kinds {
    /// A user federated from LDAP / Kerberos (`federationLink`): its password and groups may
    /// live in the directory, which Closeout does not act on.
    pub const USER_FEDERATION: &str = "user-federation";
    /// A fine-grained permission or client policy Closeout does not evaluate.
    pub const AUTHORIZATION: &str = "client-authorization";
}

/// `clientId/role` for a client role: the form live findings and policies use.
fn client_role_target(value: &str, qualifiers: &[&str]) -> Result<String, GrantFieldError> {
    let role = value.trim();
    let client = qualifiers.first().map(|c| c.trim()).unwrap_or_default();
    if client.is_empty() {
        return Err(GrantFieldError {
            field: "client",
            message: "a client role needs `client: CLIENT_ID`".into(),
        });
    }
    if role.is_empty() {
        return Err(GrantFieldError {
            field: "client-role",
            message: "the role name is empty".into(),
        });
    }
    Ok(format!("{client}/{role}"))
}

/// A group path with a leading `/` (`engineering/platform` → `/engineering/platform`).
fn group_target(value: &str, _qualifiers: &[&str]) -> Result<String, GrantFieldError> {
    let v = value.trim().trim_end_matches('/');
    if v.is_empty() {
        return Err(GrantFieldError {
            field: "group",
            message: "the group path is empty".into(),
        });
    }
    Ok(if v.starts_with('/') {
        v.to_string()
    } else {
        format!("/{v}")
    })
}

/// What the Keycloak provider resolves and which verbs it supports on each kind.
pub const CAPABILITIES: Capabilities = Capabilities {
    provider: PROVIDER,
    kinds: &[
        KindSpec {
            kind: kinds::USER,
            description: "the person's user in the realm; disable sets enabled=false (no new sign-in, no refresh)",
            verbs: &[verbs::DISABLE],
        },
        KindSpec {
            kind: kinds::SESSIONS,
            description: "the user's online SSO sessions in every client; revoke-sessions logs the user out (POST users/{id}/logout: sessions removed, not-before set so older refresh tokens are refused)",
            verbs: &[verbs::REVOKE_SESSIONS],
        },
        KindSpec {
            kind: kinds::OFFLINE_SESSION,
            description: "the user's offline sessions (offline tokens) of one client; revoke deletes the client's grants (DELETE users/{id}/consents/{client})",
            verbs: &[verbs::REVOKE],
        },
        KindSpec {
            kind: kinds::CONSENT,
            description: "the scopes the user consented to for one client; revoke deletes the consent and the client's offline tokens",
            verbs: &[verbs::REVOKE],
        },
        KindSpec {
            kind: kinds::CREDENTIAL,
            description: "a credential of the user (password, otp, webauthn, ...); remove deletes it",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::FEDERATED_IDENTITY,
            description: "the user's link to an external identity provider; remove unlinks it",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::GROUP_MEMBERSHIP,
            description: "direct membership of the user in a group; entitlement target: the group path (/parent/child)",
            verbs: &[verbs::REMOVE, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::INHERITED_GROUP,
            description: "parent group reached through a nested membership (closes with the direct membership)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::REALM_ROLE,
            description: "realm role mapped directly to the user; entitlement target: the role name",
            verbs: &[verbs::REMOVE, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::CLIENT_ROLE,
            description: "client role mapped directly to the user; entitlement target: CLIENT_ID/ROLE",
            verbs: &[verbs::REMOVE, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::GROUP_ROLE,
            description: "realm or client role mapped to a group the user is in, directly or through a parent (closes with the membership)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::OWNED_CLIENT,
            description: "client whose owner attribute names the person; reassign-owner writes the new owner",
            verbs: &[verbs::REASSIGN_OWNER],
        },
        KindSpec {
            kind: kinds::CLIENT_SECRET,
            description: "secret of a confidential client the person owns; rotate regenerates it, publishes the new one, proves a client-credentials grant with the new one works and with the old one is refused",
            verbs: &[verbs::ROTATE],
        },
    ],
    grant_forms: &[
        GrantForm {
            key: "group",
            kind: kinds::GROUP_MEMBERSHIP,
            qualifiers: &[],
            target: group_target,
        },
        GrantForm {
            key: "realm-role",
            kind: kinds::REALM_ROLE,
            qualifiers: &[],
            target: plain_target,
        },
        GrantForm {
            key: "client-role",
            kind: kinds::CLIENT_ROLE,
            qualifiers: &["client"],
            target: client_role_target,
        },
    ],
    ages: &[AgeFacts {
        kind: kinds::CLIENT_SECRET,
        created: Some("created"),
        expires: None,
    }],
    permissions: PERMISSIONS,
};

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

/// The roles of the realm's `realm-management` client each call needs.
const PERMISSIONS: &[Permission] = &[
    resolve("realm-management:view-users"),
    resolve("realm-management:view-clients"),
    resolve("realm-management:query-groups"),
    act(kinds::USER, "disable", "realm-management:manage-users"),
    act(
        kinds::SESSIONS,
        "revoke-sessions",
        "realm-management:manage-users",
    ),
    act(
        kinds::OFFLINE_SESSION,
        "revoke",
        "realm-management:manage-users",
    ),
    act(kinds::CONSENT, "revoke", "realm-management:manage-users"),
    act(kinds::CREDENTIAL, "remove", "realm-management:manage-users"),
    act(
        kinds::FEDERATED_IDENTITY,
        "remove",
        "realm-management:manage-users",
    ),
    act(
        kinds::GROUP_MEMBERSHIP,
        "remove",
        "realm-management:manage-users",
    ),
    act(
        kinds::GROUP_MEMBERSHIP,
        "grant",
        "realm-management:manage-users",
    ),
    act(kinds::REALM_ROLE, "remove", "realm-management:manage-users"),
    act(kinds::REALM_ROLE, "grant", "realm-management:manage-users"),
    act(
        kinds::CLIENT_ROLE,
        "remove",
        "realm-management:manage-users",
    ),
    act(kinds::CLIENT_ROLE, "grant", "realm-management:manage-users"),
    act(
        kinds::OWNED_CLIENT,
        "reassign-owner",
        "realm-management:manage-clients",
    ),
    act(
        kinds::CLIENT_SECRET,
        "rotate",
        "realm-management:manage-clients",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_unique_and_grant_targets_normalise() {
        let mut k: Vec<_> = CAPABILITIES.kinds.iter().map(|k| k.kind).collect();
        let n = k.len();
        k.sort();
        k.dedup();
        assert_eq!(n, k.len());
        assert_eq!(group_target("eng/platform", &[]).unwrap(), "/eng/platform");
        assert_eq!(group_target("/eng/", &[]).unwrap(), "/eng");
        assert!(group_target(" ", &[]).is_err());
        assert_eq!(
            client_role_target("admin", &["billing"]).unwrap(),
            "billing/admin"
        );
        assert_eq!(
            client_role_target("admin", &[]).unwrap_err().field,
            "client"
        );
        for p in CAPABILITIES.permissions {
            if let Operation::Act { kind, verb } = p.operation {
                assert!(CAPABILITIES.verb(kind, verb).is_some(), "{kind} {verb}");
            }
        }
    }
}
