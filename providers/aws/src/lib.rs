//! Closeout's provider for AWS IAM, STS and Secrets Manager.
//!
//! - [`AwsConfig`]: the `[providers.aws]` configuration, with a pure [`AwsConfig::validate`].
//! - [`AwsProvider::connect`]: builds the SDK clients (no network call).
//! - [`AwsProvider`] implements [`closeout_contract::Provider`]: `resolve` turns an identity into
//!   findings with explained paths (see [`CAPABILITIES`] for the kinds and verbs), `execute` runs
//!   one action idempotently, `live_state` and `probe` read the provider for verification;
//!   `entitlement`, `grant_finding`, `unclaimed_accounts` and `nhi_findings` serve movers,
//!   joiners and reconcile.
//!
//! Module map, in layers (a module imports only from its own layer or lower ones; checked by
//! `scripts/check-layers.py`):
//!
//! layer 0: capabilities, config, error, limits, policy, receipts, retry
//! layer 1: client
//! layer 2: inventory, principal, sso
//! layer 3: correlation, state, reach, findings, nhi, federation
//! layer 4: resolve, entitlements, health, live
//! layer 5: iam_verbs, sso_verbs, secret_rotation, nhi_key_rotation
//! layer 6: actions
//! layer 7: provider
//!
//! - Vocabulary: `capabilities` (the provider's name, finding kinds, verbs, needed permissions),
//!   `config` (configuration and its validation), `error` (SDK error classification), `policy`
//!   (pure IAM policy evaluation, public).
//! - `client`: [`AwsProvider`] itself, the SDK clients and the gate every call passes.
//! - Reading AWS: `inventory` (the account's principals, policies, credentials and secrets),
//!   `principal` (live reads of one user, group or role).
//! - Pure analysis: `correlation` (whose IAM principal is whose), `state` (states against the
//!   cutoff), `reach` (to a fixpoint: the principals the identity can assume, act as or grant
//!   itself, the secrets it can read or grant itself, and the gaps met, with paths), `findings`
//!   (the finding builders), `nhi` (owned NHIs and a service identity's principals).
//! - Serving the contract: `resolve` (resolution's I/O), `entitlements` (entitlements, grants,
//!   unclaimed users), `health` (the caller's permissions), `live` (live state and probes).
//! - Changing AWS: `iam_verbs`, `secret_rotation`, `nhi_key_rotation`, dispatched by `actions`.
//! - `provider`: the `Provider` impl, delegating to the modules above; nothing imports it.
//!
//! Every AWS call passes through the provider's [`closeout_contract::CallGate`] (bounded
//! in-flight calls and a token-bucket rate). Secret values only ever travel inside
//! [`closeout_contract::SecretValue`].

mod actions;
mod capabilities;
mod client;
mod config;
mod correlation;
mod entitlements;
mod error;
mod federation;
mod findings;
mod health;
mod iam_verbs;
mod inventory;
pub mod limits;
mod live;
mod nhi;
mod nhi_key_rotation;
pub mod policy;
mod principal;
mod provider;
mod reach;
mod receipts;
mod resolve;
mod retry;
mod secret_rotation;
/// The `ClientRequestToken` (and so the version id) a rotation puts its new secret version
/// under, derived from the action's idempotency key.
pub use secret_rotation::request_token;
mod sso;
mod sso_verbs;
mod state;
#[cfg(test)]
mod tests;

pub use capabilities::{kinds, CAPABILITIES, PROVIDER};
pub use client::AwsProvider;
pub use config::{AwsConfig, AwsError, UserNameRule};
