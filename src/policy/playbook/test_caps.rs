//! Capability tables for tests: the AWS provider's real table, and a small fake provider.

use closeout_contract::verbs::*;
use closeout_contract::{Capabilities, KindSpec};

/// The AWS provider's real table: the shipped playbooks are checked against what it publishes.
pub(crate) static AWS: &Capabilities = &closeout_aws::CAPABILITIES;

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
    grant_forms: &[],
    ages: &[],
    permissions: &[],
};

pub(crate) static ALL: [&Capabilities; 2] = [AWS, &FAKE];
