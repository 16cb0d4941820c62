//! What the SCIM provider resolves and does: its kinds, verbs, grant form and permissions.

use closeout_contract::{
    verbs, Capabilities, GrantFieldError, GrantForm, KindSpec, Operation, Permission,
};

/// The provider's name in findings, playbooks and configuration.
pub const PROVIDER: &str = "scim";

/// The finding kinds this provider emits.
pub mod kinds {
    /// The person's User in one downstream app.
    pub const APP_ACCOUNT: &str = "app-account";
    /// The person's membership in one Group of one app.
    pub const APP_GROUP_MEMBERSHIP: &str = "app-group-membership";
}

/// The kinds of the gaps this provider reports.
pub mod gap_kinds {
    /// An app that could not be read (unreachable, refused, not SCIM): the person's account
    /// there is unknown.
    pub const APP: &str = "scim-app";
}

/// `APP/GROUP` from `{ provider: scim, group: GROUP, app: APP }`.
fn group_target(value: &str, qualifiers: &[&str]) -> Result<String, GrantFieldError> {
    let app = qualifiers.first().map(|a| a.trim()).unwrap_or_default();
    if app.is_empty() || app.contains('/') {
        return Err(GrantFieldError {
            field: "app",
            message: "a SCIM group needs `app: NAME` (the app's configured name)".into(),
        });
    }
    let group = value.trim();
    if group.is_empty() {
        return Err(GrantFieldError {
            field: "group",
            message: "the group's displayName is empty".into(),
        });
    }
    Ok(format!("{app}/{group}"))
}

/// What the SCIM provider resolves and which verbs it supports.
pub const CAPABILITIES: Capabilities = Capabilities {
    provider: PROVIDER,
    kinds: &[
        KindSpec {
            kind: kinds::APP_ACCOUNT,
            description: "the person's User in one configured app; disable deprovisions as the app is configured (PATCH active=false, or DELETE), remove always DELETEs",
            verbs: &[verbs::DISABLE, verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::APP_GROUP_MEMBERSHIP,
            description: "the person's membership in one Group of one app (PATCH of the group's members); entitlement target: APP/GROUP (displayName)",
            verbs: &[verbs::REMOVE, verbs::GRANT],
        },
    ],
    grant_forms: &[GrantForm {
        key: "group",
        kind: kinds::APP_GROUP_MEMBERSHIP,
        qualifiers: &["app"],
        target: group_target,
    }],
    ages: &[],
    permissions: &[
        Permission { operation: Operation::Resolve, name: "GET /Users (filter or paging)" },
        Permission { operation: Operation::Resolve, name: "GET /Groups (filter or paging)" },
        Permission { operation: Operation::Act { kind: kinds::APP_ACCOUNT, verb: "disable" }, name: "PATCH /Users/{id} or DELETE /Users/{id}" },
        Permission { operation: Operation::Act { kind: kinds::APP_ACCOUNT, verb: "remove" }, name: "DELETE /Users/{id}" },
        Permission { operation: Operation::Act { kind: kinds::APP_GROUP_MEMBERSHIP, verb: "remove" }, name: "PATCH /Groups/{id}" },
        Permission { operation: Operation::Act { kind: kinds::APP_GROUP_MEMBERSHIP, verb: "grant" }, name: "PATCH /Groups/{id}" },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_target_needs_the_app() {
        assert_eq!(
            group_target(" editors ", &["wiki"]).unwrap(),
            "wiki/editors"
        );
        assert_eq!(group_target("editors", &[]).unwrap_err().field, "app");
        assert_eq!(group_target("", &["wiki"]).unwrap_err().field, "group");
        assert!(CAPABILITIES.verb(kinds::APP_ACCOUNT, "disable").is_some());
    }
}
