//! What the Vault provider resolves and does: its finding kinds, verbs, grant forms, age facts
//! and the ACL capabilities each call needs.

use closeout_contract::{
    plain_target, verbs, AgeFacts, Capabilities, GrantForm, KindSpec, Operation, Permission, State,
};

/// Destroy every KV v2 version older than the current one (after a rotation, once its grace
/// period has passed: the old values are what the person knew; keeping them for a while allows
/// a rollback).
pub const DESTROY_OLD_VERSIONS: closeout_contract::Verb = closeout_contract::Verb {
    name: "destroy-old-versions",
    leaves: State::Rotated,
    needs_grace: true,
};

/// The provider's name in findings, playbooks and configuration.
pub const PROVIDER: &str = "vault";

/// The finding kinds this provider emits.
pub mod kinds {
    /// The person's own identity entity.
    pub const ENTITY: &str = "entity";
    /// An alias of the person's entity under an auth mount.
    pub const ENTITY_ALIAS: &str = "entity-alias";
    /// Direct membership of the person's entity in an internal identity group.
    pub const GROUP_MEMBERSHIP: &str = "group-membership";
    /// Membership through a parent group (closes with the direct membership).
    pub const INHERITED_GROUP: &str = "inherited-group";
    /// An ACL policy reaching the person through the entity, a group or a token.
    pub const POLICY: &str = "policy";
    /// A policy set directly on the person's entity (`policies`): an entitlement.
    pub const ENTITY_POLICY: &str = "entity-policy";
    /// A token bound to the entity or whose metadata names the person as owner.
    pub const TOKEN: &str = "token";
    /// A userpass login of the person.
    pub const PASSWORD_LOGIN: &str = "password-login";
    /// A KV v2 secret the person owns or can read.
    pub const KV_SECRET: &str = "kv-secret";
    /// An entity (a non-human identity) whose metadata names the person as owner.
    pub const NHI_ENTITY: &str = "nhi-entity";
    /// An AppRole secret-id whose metadata names the person as owner.
    pub const APPROLE_SECRET_ID: &str = "approle-secret-id";
    /// A PKI certificate issued to the person (subject CN, SAN email or SAN URI).
    pub const PKI_CERTIFICATE: &str = "pki-certificate";
    /// A lease under one of the configured `lease_prefixes`, or one the audit log says the
    /// person's requests obtained (a database engine's dynamic credentials among them).
    pub const LEASE: &str = "lease";
    /// A database engine static role whose credentials the person could read.
    pub const DATABASE_STATIC_ROLE: &str = "database-static-role";
    /// A database engine connection whose configuration the person could read.
    pub const DATABASE_CONNECTION: &str = "database-connection";
}

/// The kinds of the gaps this provider reports besides listings of finding kinds it could not
/// make (those carry the finding kind: `kv-secret`, `token`, ...). A site accepts a gap by kind.
pub mod gap_kinds {
    /// A secrets engine the person reaches whose content Closeout does not enumerate.
    pub const SECRETS_ENGINE: &str = "secrets-engine";
    /// A policy Closeout could not read or parse.
    pub const POLICY_DOCUMENT: &str = "policy-document";
    /// Token roles Closeout could not list or read.
    pub const TOKEN_ROLE: &str = "token-role";
    /// AppRole roles Closeout could not list or read where the person may mint secret-ids.
    pub const APPROLE_ROLE: &str = "approle-role";
    /// A child namespace of the configured one: Closeout does not follow it, so what in it
    /// reaches the person is unknown.
    pub const NAMESPACE: &str = "namespace";
    /// A database secrets engine whose roles, static roles or connections the person could
    /// write: what she may have created at its databases (users, grants) is unknown.
    pub const DATABASE_ENGINE_WRITE: &str = "database-engine-write";
}

/// What the Vault provider resolves and which verbs it supports on each kind.
pub const CAPABILITIES: Capabilities = Capabilities {
    provider: PROVIDER,
    kinds: &[
        KindSpec {
            kind: kinds::ENTITY,
            description: "the person's identity entity; disabling it blocks every token bound to it",
            verbs: &[verbs::DISABLE],
        },
        KindSpec {
            kind: kinds::ENTITY_ALIAS,
            description: "alias of the person's entity under an auth mount (closes with the entity)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::GROUP_MEMBERSHIP,
            description: "direct membership of the person's entity in an internal identity group; entitlement target: the group name (grant adds the entity to member_entity_ids)",
            verbs: &[verbs::REMOVE, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::INHERITED_GROUP,
            description: "identity group reached through a parent-group chain (closes with the direct membership or the entity)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::POLICY,
            description: "ACL policy reaching the person from the entity, a group or a token (closes with the entity)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::ENTITY_POLICY,
            description: "policy set directly on the person's entity; entitlement target: the policy name (closes with the entity; remove/grant edit the entity's policies)",
            verbs: &[verbs::REMOVE, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::TOKEN,
            description: "token bound to the person's entity or whose metadata names the person; revoke-accessor revokes its children too",
            verbs: &[verbs::REVOKE],
        },
        KindSpec {
            kind: kinds::PASSWORD_LOGIN,
            description: "userpass login of the person under any userpass auth mount",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::KV_SECRET,
            description: "KV secret (v2 or v1) the person owns (v2 custom metadata), can read through a policy, or could grant herself (a policy write, see the exposure); rotate writes new random values for every key (v2: a new version, check-and-set; v1: in place, recorded at kv1_rotation_record_path); destroy-old-versions (v2) destroys the versions she knew, a v1 secret keeps none",
            verbs: &[verbs::ROTATE, DESTROY_OLD_VERSIONS],
        },
        KindSpec {
            kind: kinds::NHI_ENTITY,
            description: "identity entity (non-human) whose metadata names the person as owner",
            verbs: &[verbs::REASSIGN_OWNER],
        },
        KindSpec {
            kind: kinds::APPROLE_SECRET_ID,
            description: "AppRole secret-id whose metadata names the person as owner; revoke destroys it by accessor, rotate issues a new one, publishes it to nhi_secret_id_path, then destroys the old one",
            verbs: &[verbs::REVOKE, verbs::ROTATE],
        },
        KindSpec {
            kind: kinds::PKI_CERTIFICATE,
            description: "certificate issued to the person by any pki mount (subject CN, SAN email or URI); revoke revokes it by serial and rotates the CRL",
            verbs: &[verbs::REVOKE],
        },
        KindSpec {
            kind: kinds::LEASE,
            description: "lease under a configured lease prefix ({id}, {email}, {local} filled in), or obtained by the person's requests per the audit log (a database engine's dynamic credentials: revoking the lease drops the database user); revoke revokes it by id",
            verbs: &[verbs::REVOKE],
        },
        KindSpec {
            kind: kinds::DATABASE_STATIC_ROLE,
            description: "database engine static role whose credentials (static-creds) the person could read, or could grant herself; rotate is rotate-role: Vault sets a new password at the database (state: last_vault_rotation against the cutoff)",
            verbs: &[verbs::ROTATE],
        },
        KindSpec {
            kind: kinds::DATABASE_CONNECTION,
            description: "database engine connection whose configuration the person could read, or could grant herself; rotate is rotate-root: Vault sets a new password for its own database user (recorded beside the KV v1 rotation records)",
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
            key: "policy",
            kind: kinds::ENTITY_POLICY,
            qualifiers: &[],
            target: plain_target,
        },
    ],
    ages: &[
        AgeFacts {
            kind: kinds::KV_SECRET,
            created: Some("created_at"),
            expires: None,
        },
        AgeFacts {
            kind: kinds::DATABASE_STATIC_ROLE,
            created: Some("created_at"),
            expires: None,
        },
        AgeFacts {
            kind: kinds::APPROLE_SECRET_ID,
            created: Some("created"),
            expires: Some("expires"),
        },
    ],
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

/// The ACL capabilities each call needs, as `CAPABILITY PATH`. `{kv}` (KV v2), `{kv1}` (KV v1),
/// `{pki}`, `{userpass}`, `{approle}` and `{database}` stand for every mount of that type; `*` for any one
/// name.
const PERMISSIONS: &[Permission] = &[
    resolve("read auth/token/lookup-self"),
    resolve("read sys/mounts"),
    resolve("read sys/auth"),
    resolve("list identity/entity/id"),
    resolve("read identity/entity/id/*"),
    resolve("list identity/group/id"),
    resolve("read identity/group/id/*"),
    resolve("list sys/policies/acl"),
    resolve("read sys/policies/acl/*"),
    resolve("list auth/token/accessors"),
    resolve("update auth/token/lookup-accessor"),
    resolve("update sys/audit-hash/*"),
    resolve("list sys/leases/lookup/*"),
    resolve("list auth/token/roles"),
    resolve("read auth/token/roles/*"),
    resolve("list sys/namespaces"),
    resolve("list {kv}/metadata/*"),
    resolve("read {kv}/metadata/*"),
    resolve("list {kv1}/*"),
    resolve("list {userpass}/users"),
    resolve("list {approle}/role"),
    resolve("read {approle}/role/*"),
    resolve("list {approle}/role/*/secret-id"),
    resolve("update {approle}/role/*/secret-id-accessor/lookup"),
    resolve("list {pki}/certs"),
    resolve("list {database}/static-roles"),
    resolve("read {database}/static-roles/*"),
    resolve("list {database}/config"),
    resolve("read {database}/config/*"),
    resolve("read {pki}/cert/*"),
    act(kinds::ENTITY, "disable", "update identity/entity/id/*"),
    act(
        kinds::GROUP_MEMBERSHIP,
        "remove",
        "update identity/group/id/*",
    ),
    act(
        kinds::GROUP_MEMBERSHIP,
        "grant",
        "update identity/group/id/*",
    ),
    act(
        kinds::ENTITY_POLICY,
        "remove",
        "update identity/entity/id/*",
    ),
    act(kinds::ENTITY_POLICY, "grant", "update identity/entity/id/*"),
    act(kinds::TOKEN, "revoke", "update auth/token/revoke-accessor"),
    act(kinds::PASSWORD_LOGIN, "remove", "delete {userpass}/users/*"),
    act(kinds::KV_SECRET, "rotate", "read {kv}/data/*"),
    act(kinds::KV_SECRET, "rotate", "update {kv}/data/*"),
    act(kinds::KV_SECRET, "rotate", "update {kv}/metadata/*"),
    act(kinds::KV_SECRET, "rotate", "read {kv1}/*"),
    act(kinds::KV_SECRET, "rotate", "update {kv1}/*"),
    act(
        kinds::KV_SECRET,
        "destroy-old-versions",
        "update {kv}/destroy/*",
    ),
    act(
        kinds::NHI_ENTITY,
        "reassign-owner",
        "update identity/entity/id/*",
    ),
    act(
        kinds::APPROLE_SECRET_ID,
        "revoke",
        "update {approle}/role/*/secret-id-accessor/destroy",
    ),
    act(
        kinds::APPROLE_SECRET_ID,
        "rotate",
        "update {approle}/role/*/secret-id",
    ),
    act(
        kinds::APPROLE_SECRET_ID,
        "rotate",
        "update {approle}/role/*/secret-id-accessor/destroy",
    ),
    act(kinds::APPROLE_SECRET_ID, "rotate", "update {kv}/data/*"),
    act(kinds::PKI_CERTIFICATE, "revoke", "update {pki}/revoke"),
    act(kinds::PKI_CERTIFICATE, "revoke", "read {pki}/crl/rotate"),
    act(kinds::LEASE, "revoke", "update sys/leases/revoke"),
    act(
        kinds::DATABASE_STATIC_ROLE,
        "rotate",
        "update {database}/rotate-role/*",
    ),
    act(
        kinds::DATABASE_CONNECTION,
        "rotate",
        "update {database}/rotate-root/*",
    ),
    act(kinds::DATABASE_CONNECTION, "rotate", "update {kv}/data/*"),
    act(
        kinds::DATABASE_CONNECTION,
        "rotate",
        "update {kv}/metadata/*",
    ),
];
