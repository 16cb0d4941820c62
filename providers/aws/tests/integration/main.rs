//! The AWS provider's integration tests against moto, as one test binary
//! (`cargo test -p closeout-aws --test integration`): the AWS SDK stack is linked once.
//!
//! Every test starts its own moto server on a free loopback port (`common::Moto`): the provider
//! reaches moto with one fixed set of credentials and no account header, so tests sharing a
//! server would see each other's users and secrets.
//!
//! - `contract`: the provider contract suite (`closeout_testkit::contract`) on every verb and
//!   kind, with the AWS-specific effects read back with the SDK.
//! - `moto_actions`: action behaviour beyond the contract (crash recovery, refusals, errors).
//! - `moto_entitlements`: grants, unclaimed accounts, NHI findings of service identities.
//! - `moto_resolve`: resolution of every kind with its explained paths, correlation.
//! - `postgres_rotation`: rotation strategies, PostgreSQL passwords changed at a real database.
//! - `reach_moto`: reach to a fixpoint, one test per class of path, and the authenticating probe.
//! - `sdk_environment`: the SDK's standard environment, in a child process.

mod common;

mod contract;
mod moto_actions;
mod moto_entitlements;
mod moto_resolve;
mod postgres_rotation;
mod reach_moto;
mod sdk_environment;
