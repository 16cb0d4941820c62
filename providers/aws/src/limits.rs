//! The call limits of each AWS API family and the gates that enforce them. IAM, STS, Secrets
//! Manager and IAM Identity Center are throttled by different services with different budgets,
//! so each family has a gate of its own (all named `aws` in spans and `--timings`); a throttle
//! from one slows only that family.
//!
//! | family | documented quota | default here |
//! |---|---|---|
//! | IAM | none published: "IAM and AWS STS quotas" lists object counts and sizes only, and AWS's throttling guide says only that calls count against an account-wide rate | 20 calls/s, 16 in flight |
//! | STS | none published for AWS STS's request rate in that guide | 20 calls/s, 16 in flight |
//! | Secrets Manager reads | per account and region: `ListSecrets` 100/s, `BatchGetSecretValue` 100/s, `GetSecretValue` 10,000/s, `DescribeSecret` 40,000/s ("AWS Secrets Manager quotas") | 100 calls/s, 32 in flight |
//! | Secrets Manager resource policies | `GetResourcePolicy`, `PutResourcePolicy`, `DeleteResourcePolicy`, `ValidateResourcePolicy` combined 50/s | 25 calls/s, 16 in flight |
//! | Secrets Manager writes | `PutSecretValue`, `UpdateSecret`, `UpdateSecretVersionStage` (and replication calls) combined 50/s; `RotateSecret` 50/s; `TagResource`/`UntagResource` 50/s | 25 calls/s, 16 in flight |
//! | IAM Identity Center | not published for the Identity Store and SSO admin APIs | 20 calls/s, 16 in flight |
//!
//! Secrets Manager's combined budgets are shared with the account's own tooling (deploy
//! pipelines, rotation functions), so Closeout takes half of each; its lowest read quota
//! (`ListSecrets`) is a read Closeout alone makes at scale. Where AWS publishes no rate, the
//! default stays the 20 calls/s this provider shipped with, and the gate adapts: a throttle
//! (`Throttling`, 429) halves the family's rate and waits out `Retry-After`
//! (`closeout_contract::CallGate::throttled`), recovering over 20 s. `max_in_flight` and
//! `requests_per_second` in `[providers.aws]`, when set, replace the limits of every family.

use crate::config::AwsConfig;
use closeout_contract::{CallGate, Limits};

/// IAM's default limits (see the module documentation).
pub const IAM: (usize, f64) = (16, 20.0);
/// STS's default limits.
pub const STS: (usize, f64) = (16, 20.0);
/// Secrets Manager reads (list, describe, get value, list versions).
pub const SECRETS_READ: (usize, f64) = (32, 100.0);
/// Secrets Manager resource-policy calls.
pub const SECRETS_POLICY: (usize, f64) = (16, 25.0);
/// Secrets Manager writes (values, version stages, creation, rotation, tags).
pub const SECRETS_WRITE: (usize, f64) = (16, 25.0);
/// IAM Identity Center (Identity Store and SSO admin).
pub const IDENTITY_CENTER: (usize, f64) = (16, 20.0);

/// The API family of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IAM.
    Iam,
    /// STS.
    Sts,
    /// Secrets Manager reads.
    SecretsRead,
    /// Secrets Manager resource-policy calls.
    SecretsPolicy,
    /// Secrets Manager writes.
    SecretsWrite,
    /// IAM Identity Center.
    IdentityCenter,
}

impl Family {
    /// The family of the operation Closeout names `op` (the API's action name). Names shared by
    /// two services are the IAM one; the other service's calls use a name of their own.
    pub fn of(op: &str) -> Family {
        match op {
            "GetCallerIdentity" | "AssumeRole" | "GetSessionToken" => Family::Sts,
            "ListSecrets"
            | "DescribeSecret"
            | "GetSecretValue"
            | "BatchGetSecretValue"
            | "ListSecretVersionIds" => Family::SecretsRead,
            "GetResourcePolicy"
            | "PutResourcePolicy"
            | "DeleteResourcePolicy"
            | "ValidateResourcePolicy" => Family::SecretsPolicy,
            "PutSecretValue"
            | "UpdateSecret"
            | "UpdateSecretVersionStage"
            | "CreateSecret"
            | "RotateSecret"
            | "CancelRotateSecret"
            | "TagResource"
            | "UntagResource"
            | "DeleteSecret"
            | "RestoreSecret" => Family::SecretsWrite,
            "DescribeUser"
            | "DescribeGroup"
            | "DescribeGroupMembership"
            | "GetUserId"
            | "ListGroupMemberships"
            | "ListGroupMembershipsForMember"
            | "DeleteGroupMembership"
            | "ListInstances"
            | "ListAccountAssignmentsForPrincipal"
            | "DescribePermissionSet"
            | "DeleteAccountAssignment"
            | "DescribeAccountAssignmentDeletionStatus"
            | "ListAccountAssignments"
            | "ListPermissionSets" => Family::IdentityCenter,
            _ => Family::Iam,
        }
    }
}

/// One gate per API family.
#[derive(Debug, Clone)]
pub struct Gates {
    /// IAM.
    pub iam: CallGate,
    /// STS.
    pub sts: CallGate,
    /// Secrets Manager reads.
    pub secrets_read: CallGate,
    /// Secrets Manager resource-policy calls.
    pub secrets_policy: CallGate,
    /// Secrets Manager writes.
    pub secrets_write: CallGate,
    /// IAM Identity Center.
    pub identity_center: CallGate,
}

impl Gates {
    /// The gates `config` asks for: the documented defaults, or its overrides for every family.
    pub fn from_config(config: &AwsConfig) -> Gates {
        let limits = |(in_flight, rate): (usize, f64)| {
            CallGate::named(
                "aws",
                Limits::configured(
                    config.max_in_flight.unwrap_or(in_flight),
                    config.requests_per_second.unwrap_or(rate),
                ),
            )
        };
        Gates {
            iam: limits(IAM),
            sts: limits(STS),
            secrets_read: limits(SECRETS_READ),
            secrets_policy: limits(SECRETS_POLICY),
            secrets_write: limits(SECRETS_WRITE),
            identity_center: limits(IDENTITY_CENTER),
        }
    }

    /// The gate of `op`'s family.
    pub fn of(&self, op: &str) -> &CallGate {
        match Family::of(op) {
            Family::Iam => &self.iam,
            Family::Sts => &self.sts,
            Family::SecretsRead => &self.secrets_read,
            Family::SecretsPolicy => &self.secrets_policy,
            Family::SecretsWrite => &self.secrets_write,
            Family::IdentityCenter => &self.identity_center,
        }
    }

    /// The gates a throttle answered by Secrets Manager tells: its retry classifier sees the
    /// answer, not which family the call was, so every Secrets Manager family slows.
    pub fn secrets_manager(&self) -> Vec<CallGate> {
        vec![
            self.secrets_read.clone(),
            self.secrets_policy.clone(),
            self.secrets_write.clone(),
        ]
    }

    /// What the provider as a whole allows: the widest family (bounds how many actions the
    /// executor runs at once for this provider).
    pub fn widest(&self) -> Limits {
        Limits::widest([
            &self.iam,
            &self.sts,
            &self.secrets_read,
            &self.secrets_policy,
            &self.secrets_write,
            &self.identity_center,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_has_its_documented_default_unless_the_config_overrides_all() {
        let gates = Gates::from_config(&AwsConfig::default());
        assert_eq!(gates.iam.limits().requests_per_second, 20.0);
        assert_eq!(gates.secrets_read.limits().requests_per_second, 100.0);
        assert_eq!(gates.secrets_read.limits().max_in_flight, 32);
        assert_eq!(gates.secrets_policy.limits().requests_per_second, 25.0);
        assert_eq!(gates.widest().max_in_flight, 32);
        let overridden = Gates::from_config(&AwsConfig {
            max_in_flight: Some(4),
            requests_per_second: Some(7.0),
            ..AwsConfig::default()
        });
        for gate in [
            &overridden.iam,
            &overridden.sts,
            &overridden.secrets_read,
            &overridden.secrets_policy,
            &overridden.secrets_write,
            &overridden.identity_center,
        ] {
            assert_eq!(gate.limits().max_in_flight, 4);
            assert_eq!(gate.limits().requests_per_second, 7.0);
        }
    }

    #[test]
    fn operations_go_to_their_service_family() {
        assert_eq!(Family::of("ListAccessKeys"), Family::Iam);
        assert_eq!(Family::of("GetCallerIdentity"), Family::Sts);
        assert_eq!(Family::of("ListSecrets"), Family::SecretsRead);
        assert_eq!(Family::of("GetResourcePolicy"), Family::SecretsPolicy);
        assert_eq!(Family::of("UpdateSecretVersionStage"), Family::SecretsWrite);
        assert_eq!(
            Family::of("DeleteAccountAssignment"),
            Family::IdentityCenter
        );
    }
}
