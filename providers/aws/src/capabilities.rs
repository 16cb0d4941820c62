//! What the AWS provider resolves and does: its finding kinds, verbs, grant forms, age facts
//! and the IAM actions each call needs.

use closeout_contract::{
    plain_target, verbs, AgeFacts, Capabilities, GrantFieldError, GrantForm, KindSpec, Operation,
    Permission,
};

/// The provider's name in findings, playbooks and configuration.
pub const PROVIDER: &str = "aws";

/// The finding kinds this provider emits.
pub mod kinds {
    /// The person's own IAM user.
    pub const USER: &str = "user";
    pub const LOGIN_PROFILE: &str = "login-profile";
    pub const ACCESS_KEY: &str = "access-key";
    pub const SSH_KEY: &str = "ssh-key";
    pub const SIGNING_CERTIFICATE: &str = "signing-certificate";
    pub const SERVICE_CREDENTIAL: &str = "service-credential";
    pub const MFA_DEVICE: &str = "mfa-device";
    pub const GROUP_MEMBERSHIP: &str = "group-membership";
    pub const ATTACHED_POLICY: &str = "attached-policy";
    pub const INLINE_POLICY: &str = "inline-policy";
    pub const GROUP_POLICY: &str = "group-policy";
    pub const ASSUMABLE_ROLE: &str = "assumable-role";
    pub const SECRET: &str = "secret";
    pub const NHI_USER: &str = "nhi-user";
    pub const NHI_ROLE: &str = "nhi-role";
    /// The person's IAM Identity Center (Identity Store) user.
    pub const SSO_USER: &str = "sso-user";
    /// Membership of the person's Identity Store user in a group.
    pub const SSO_GROUP_MEMBERSHIP: &str = "sso-group-membership";
    /// A permission set assigned in an account to the person's Identity Store user.
    pub const SSO_ACCOUNT_ASSIGNMENT: &str = "sso-account-assignment";
    /// A permission set assigned in an account to a group the person is in.
    pub const SSO_GROUP_ASSIGNMENT: &str = "sso-group-assignment";
    /// An inline deny Closeout put on a role for the person's sessions alone.
    pub const SESSION_DENY: &str = "session-deny";
}

/// What the AWS provider resolves and which verbs it supports on each kind.
pub const CAPABILITIES: Capabilities = Capabilities {
    provider: PROVIDER,
    kinds: &[
        KindSpec {
            kind: kinds::USER,
            description: "the person's own IAM user; revoke-sessions puts an inline deny on aws:TokenIssueTime",
            verbs: &[verbs::REVOKE_SESSIONS],
        },
        KindSpec {
            kind: kinds::LOGIN_PROFILE,
            description: "console password of the person's IAM user",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::ACCESS_KEY,
            description: "access key of the person's IAM user, or of an IAM user the person owns (rotate: owned users only)",
            verbs: &[verbs::DEACTIVATE, verbs::DELETE, verbs::ROTATE],
        },
        KindSpec {
            kind: kinds::SSH_KEY,
            description: "SSH public key (CodeCommit) of the person's IAM user",
            verbs: &[verbs::DEACTIVATE, verbs::DELETE],
        },
        KindSpec {
            kind: kinds::SIGNING_CERTIFICATE,
            description: "X.509 signing certificate of the person's IAM user",
            verbs: &[verbs::DEACTIVATE, verbs::DELETE],
        },
        KindSpec {
            kind: kinds::SERVICE_CREDENTIAL,
            description: "service-specific credential (CodeCommit, Keyspaces, Bedrock) of the person's IAM user",
            verbs: &[verbs::DEACTIVATE, verbs::DELETE],
        },
        KindSpec {
            kind: kinds::MFA_DEVICE,
            description: "MFA device enabled for the person's IAM user",
            verbs: &[verbs::DEACTIVATE],
        },
        KindSpec {
            kind: kinds::GROUP_MEMBERSHIP,
            description: "membership of the person's IAM user in an IAM group; entitlement target: the group name (grant adds the user)",
            verbs: &[verbs::REMOVE, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::ATTACHED_POLICY,
            description: "managed policy attached to the person's IAM user; entitlement target: the policy ARN (grant attaches it)",
            verbs: &[verbs::DETACH, verbs::GRANT],
        },
        KindSpec {
            kind: kinds::INLINE_POLICY,
            description: "inline policy of the person's IAM user; entitlement target: the policy name (removable, never granted)",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::GROUP_POLICY,
            description: "managed or inline policy of a group the person is in (closes with the membership)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::ASSUMABLE_ROLE,
            description: "IAM role the person can assume at any depth (trust policy names the user or a role it reached, or names the account and an identity policy allows it), pass to compute it can launch, or sign in to through IAM Identity Center or a SAML/OIDC provider; revoke-sessions denies the person's own sessions (aws:userid = role id:session name) when the person can be told apart, else every session of the role",
            verbs: &[verbs::REVOKE_SESSIONS],
        },
        KindSpec {
            kind: kinds::SECRET,
            description: "Secrets Manager secret the person owns (owner tag), can read (identity, group, role or resource policy of anything it reaches) or can grant itself (PutResourcePolicy, or an IAM write exposing the account)",
            verbs: &[verbs::ROTATE],
        },
        KindSpec {
            kind: kinds::NHI_USER,
            description: "IAM user whose owner tag names the person",
            verbs: &[verbs::REASSIGN_OWNER],
        },
        KindSpec {
            kind: kinds::NHI_ROLE,
            description: "IAM role whose owner tag names the person",
            verbs: &[verbs::REASSIGN_OWNER],
        },
        KindSpec {
            kind: kinds::SSO_USER,
            description: "the person's IAM Identity Center user (matched by external id, user name or email); remove deletes it (the Identity Store API has no disable)",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::SSO_GROUP_MEMBERSHIP,
            description: "membership of the person's Identity Center user in an Identity Store group",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::SSO_ACCOUNT_ASSIGNMENT,
            description: "permission set assigned in an account to the person's Identity Center user",
            verbs: &[verbs::REMOVE],
        },
        KindSpec {
            kind: kinds::SSO_GROUP_ASSIGNMENT,
            description: "permission set assigned in an account to an Identity Center group the person is in (closes with the membership)",
            verbs: &[],
        },
        KindSpec {
            kind: kinds::SESSION_DENY,
            description: "a deny Closeout put on a role for the person's sessions alone: revoked while sessions it cuts may live, inactive once their maximum lifetime has passed; remove deletes an inactive one",
            verbs: &[verbs::REMOVE],
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
            kind: kinds::ATTACHED_POLICY,
            qualifiers: &[],
            target: managed_policy_target,
        },
    ],
    ages: &[
        AgeFacts {
            kind: kinds::ACCESS_KEY,
            created: Some("created"),
            expires: None,
        },
        AgeFacts {
            kind: kinds::SECRET,
            created: Some("current_version_created"),
            expires: None,
        },
    ],
    permissions: PERMISSIONS,
};

/// A managed policy grant names the policy by its ARN, as live attached-policy findings do.
fn managed_policy_target(value: &str, _: &[&str]) -> Result<String, GrantFieldError> {
    let value = value.trim();
    if !value.starts_with("arn:") {
        return Err(GrantFieldError {
            field: "policy",
            message: format!(
                "bad managed policy `{value}`: name it by its ARN (arn:aws:iam::ACCOUNT:policy/NAME)"
            ),
        });
    }
    Ok(value.to_string())
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

/// The IAM actions each call needs (the calls are named in this crate's README).
const PERMISSIONS: &[Permission] = &[
    resolve("sts:GetCallerIdentity"),
    resolve("iam:GetAccountAuthorizationDetails"),
    resolve("iam:GetUser"),
    resolve("iam:GetRole"),
    resolve("iam:GetPolicy"),
    resolve("iam:GetPolicyVersion"),
    resolve("iam:GetUserPolicy"),
    resolve("iam:GetRolePolicy"),
    resolve("iam:GetGroupPolicy"),
    resolve("iam:ListUserTags"),
    resolve("iam:ListRoleTags"),
    resolve("iam:ListGroupsForUser"),
    resolve("iam:ListAttachedUserPolicies"),
    resolve("iam:ListAttachedGroupPolicies"),
    resolve("iam:GetLoginProfile"),
    resolve("iam:ListAccessKeys"),
    resolve("iam:GetAccessKeyLastUsed"),
    resolve("iam:ListSSHPublicKeys"),
    resolve("iam:ListSigningCertificates"),
    resolve("iam:ListServiceSpecificCredentials"),
    resolve("iam:ListMFADevices"),
    resolve("secretsmanager:ListSecrets"),
    resolve("secretsmanager:DescribeSecret"),
    resolve("secretsmanager:GetResourcePolicy"),
    resolve("secretsmanager:ListSecretVersionIds"),
    resolve("sso:ListInstances"),
    resolve("sso:ListAccountAssignmentsForPrincipal"),
    resolve("sso:DescribePermissionSet"),
    resolve("identitystore:ListUsers"),
    resolve("identitystore:ListGroupMembershipsForMember"),
    resolve("identitystore:DescribeGroup"),
    resolve("identitystore:DescribeUser"),
    resolve("identitystore:DescribeGroupMembership"),
    act(kinds::USER, "revoke-sessions", "iam:PutUserPolicy"),
    act(
        kinds::ASSUMABLE_ROLE,
        "revoke-sessions",
        "iam:PutRolePolicy",
    ),
    act(kinds::LOGIN_PROFILE, "remove", "iam:DeleteLoginProfile"),
    act(kinds::ACCESS_KEY, "deactivate", "iam:UpdateAccessKey"),
    act(kinds::ACCESS_KEY, "delete", "iam:DeleteAccessKey"),
    act(kinds::ACCESS_KEY, "rotate", "iam:CreateAccessKey"),
    act(kinds::ACCESS_KEY, "rotate", "iam:UpdateAccessKey"),
    act(kinds::ACCESS_KEY, "rotate", "iam:DeleteAccessKey"),
    act(kinds::ACCESS_KEY, "rotate", "iam:TagUser"),
    act(kinds::ACCESS_KEY, "rotate", "iam:UntagUser"),
    act(kinds::ACCESS_KEY, "rotate", "iam:ListUserTags"),
    act(kinds::ACCESS_KEY, "rotate", "secretsmanager:CreateSecret"),
    act(kinds::ACCESS_KEY, "rotate", "secretsmanager:GetSecretValue"),
    act(kinds::ACCESS_KEY, "rotate", "secretsmanager:PutSecretValue"),
    act(kinds::SSH_KEY, "deactivate", "iam:UpdateSSHPublicKey"),
    act(kinds::SSH_KEY, "delete", "iam:DeleteSSHPublicKey"),
    act(
        kinds::SIGNING_CERTIFICATE,
        "deactivate",
        "iam:UpdateSigningCertificate",
    ),
    act(
        kinds::SIGNING_CERTIFICATE,
        "delete",
        "iam:DeleteSigningCertificate",
    ),
    act(
        kinds::SERVICE_CREDENTIAL,
        "deactivate",
        "iam:UpdateServiceSpecificCredential",
    ),
    act(
        kinds::SERVICE_CREDENTIAL,
        "delete",
        "iam:DeleteServiceSpecificCredential",
    ),
    act(kinds::MFA_DEVICE, "deactivate", "iam:DeactivateMFADevice"),
    act(kinds::GROUP_MEMBERSHIP, "remove", "iam:RemoveUserFromGroup"),
    act(kinds::GROUP_MEMBERSHIP, "grant", "iam:GetGroup"),
    act(kinds::GROUP_MEMBERSHIP, "grant", "iam:AddUserToGroup"),
    act(kinds::ATTACHED_POLICY, "detach", "iam:DetachUserPolicy"),
    act(kinds::ATTACHED_POLICY, "grant", "iam:AttachUserPolicy"),
    act(kinds::INLINE_POLICY, "remove", "iam:DeleteUserPolicy"),
    act(kinds::SECRET, "rotate", "secretsmanager:GetSecretValue"),
    act(kinds::SECRET, "rotate", "secretsmanager:PutSecretValue"),
    act(
        kinds::SECRET,
        "rotate",
        "secretsmanager:UpdateSecretVersionStage",
    ),
    act(kinds::SECRET, "rotate", "secretsmanager:RotateSecret"),
    act(kinds::NHI_USER, "reassign-owner", "iam:TagUser"),
    act(kinds::NHI_ROLE, "reassign-owner", "iam:TagRole"),
    act(kinds::ASSUMABLE_ROLE, "revoke-sessions", "iam:GetRole"),
    act(kinds::SSO_USER, "remove", "identitystore:DeleteUser"),
    act(
        kinds::SSO_GROUP_MEMBERSHIP,
        "remove",
        "identitystore:DeleteGroupMembership",
    ),
    act(
        kinds::SSO_ACCOUNT_ASSIGNMENT,
        "remove",
        "sso:DeleteAccountAssignment",
    ),
    act(kinds::SESSION_DENY, "remove", "iam:DeleteRolePolicy"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_list_every_kind_once_with_the_documented_verbs() {
        let mut kinds: Vec<_> = CAPABILITIES.kinds.iter().map(|k| k.kind).collect();
        let n = kinds.len();
        kinds.sort();
        kinds.dedup();
        assert_eq!(n, kinds.len());
        assert_eq!(n, 20);
        assert!(CAPABILITIES.verb("access-key", "rotate").is_some());
        assert!(CAPABILITIES.verb("user", "revoke-sessions").is_some());
        assert!(CAPABILITIES.verb("secret", "rotate").is_some());
        assert!(CAPABILITIES.verb("group-policy", "remove").is_none());
        assert!(CAPABILITIES.verb("mfa-device", "delete").is_none());
        assert!(CAPABILITIES.verb("nhi-role", "reassign-owner").is_some());
        assert!(CAPABILITIES.verb("group-membership", "grant").is_some());
        assert!(CAPABILITIES.verb("attached-policy", "grant").is_some());
        assert!(CAPABILITIES.verb("inline-policy", "grant").is_none());
        assert!(CAPABILITIES
            .verb("sso-account-assignment", "remove")
            .is_some());
        assert!(CAPABILITIES
            .verb("sso-group-assignment", "remove")
            .is_none());
        assert!(CAPABILITIES.verb("session-deny", "remove").is_some());
        let granted: Vec<&str> = CAPABILITIES
            .kinds
            .iter()
            .filter(|k| k.verbs.contains(&verbs::GRANT))
            .map(|k| k.kind)
            .collect();
        assert_eq!(granted, vec!["group-membership", "attached-policy"]);
    }
}
