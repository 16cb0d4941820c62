//! Capability tables for tests: the AWS provider's kinds and verbs as the playbooks rely on them
//! (the provider crate publishes the real table), and a small fake provider.

use closeout_contract::verbs::*;
use closeout_contract::{Capabilities, KindSpec};

/// The AWS provider's kinds and verbs, as the shipped playbooks expect them.
pub(crate) static AWS: Capabilities = Capabilities {
    provider: "aws",
    kinds: &[
        KindSpec {
            kind: "user",
            description: "the person's IAM user",
            verbs: &[REVOKE_SESSIONS],
        },
        KindSpec {
            kind: "login-profile",
            description: "console password",
            verbs: &[REMOVE],
        },
        KindSpec {
            kind: "access-key",
            description: "IAM access key (rotate only for holder nhi)",
            verbs: &[DEACTIVATE, DELETE, ROTATE],
        },
        KindSpec {
            kind: "ssh-key",
            description: "SSH public key for CodeCommit",
            verbs: &[DEACTIVATE, DELETE],
        },
        KindSpec {
            kind: "signing-certificate",
            description: "X.509 signing certificate",
            verbs: &[DEACTIVATE, DELETE],
        },
        KindSpec {
            kind: "service-credential",
            description: "service-specific credential",
            verbs: &[DEACTIVATE, DELETE],
        },
        KindSpec {
            kind: "mfa-device",
            description: "MFA device",
            verbs: &[DEACTIVATE],
        },
        KindSpec {
            kind: "group-membership",
            description: "membership of an IAM group",
            verbs: &[REMOVE],
        },
        KindSpec {
            kind: "attached-policy",
            description: "managed policy attached to the user",
            verbs: &[DETACH],
        },
        KindSpec {
            kind: "inline-policy",
            description: "inline policy of the user",
            verbs: &[REMOVE],
        },
        KindSpec {
            kind: "group-policy",
            description: "policy reached through a group; closes when the membership goes",
            verbs: &[],
        },
        KindSpec {
            kind: "assumable-role",
            description: "a role the user can assume",
            verbs: &[REVOKE_SESSIONS],
        },
        KindSpec {
            kind: "secret",
            description: "Secrets Manager secret owned or readable",
            verbs: &[ROTATE],
        },
        KindSpec {
            kind: "nhi-user",
            description: "IAM user the person owns",
            verbs: &[REASSIGN_OWNER],
        },
        KindSpec {
            kind: "nhi-role",
            description: "IAM role the person owns",
            verbs: &[REASSIGN_OWNER],
        },
    ],
};

/// A second, made-up provider for multi-provider tests.
pub(crate) static FAKE: Capabilities = Capabilities {
    provider: "fake",
    kinds: &[
        KindSpec {
            kind: "token",
            description: "an API token",
            verbs: &[DEACTIVATE, DELETE, REVOKE],
        },
        KindSpec {
            kind: "secret",
            description: "a shared secret",
            verbs: &[ROTATE],
        },
        KindSpec {
            kind: "user",
            description: "an account",
            verbs: &[DISABLE, REVOKE_SESSIONS],
        },
        KindSpec {
            kind: "service",
            description: "an owned service account",
            verbs: &[REASSIGN_OWNER],
        },
    ],
};

pub(crate) static ALL: [&Capabilities; 2] = [&AWS, &FAKE];
