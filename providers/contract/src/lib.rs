#![warn(missing_docs)]
//! The model every Closeout component shares, and the contract a provider implements.
//!
//! A provider (AWS, Vault, Azure, ...) turns an [`Identity`] from the authoritative source into
//! [`Finding`]s, each explained by one or more [`Path`]s, executes one [`ActionRequest`] at a time
//! idempotently, and reports the live [`State`] of one finding. Providers know nothing of
//! playbooks, the journal or the CLI; those live in the `closeout` crate.
//!
//! Secret values travel only inside [`SecretValue`], which has no `Display`, no `Serialize` and a
//! redacting `Debug`, so they cannot leak into logs, reports, the journal or errors by accident.

pub mod action;
pub mod capabilities;
pub mod edit_lock;
pub mod entitlement;
pub mod error;
pub mod finding;
pub mod gate;
pub mod handoff;
pub mod identity;
pub mod provider;
pub mod receipt;
pub mod retry;
pub mod reuse;
pub mod rotation_strategy;
pub mod secret;
pub mod telemetry;

pub use action::{ActionOutcome, ActionParams, ActionRequest};
pub use capabilities::{
    plain_target, verbs, AgeFacts, Capabilities, GrantFieldError, GrantForm, KindSpec, Operation,
    Permission, Verb,
};
pub use entitlement::{Entitlement, UnclaimedAccount};
pub use error::{with_causes, ErrorClass, ProviderError};
pub use finding::{
    Account, Exposure, Finding, Gap, Holder, HolderKind, Path, PathStep, Relation, Resolution,
    State, NEVER_EXPIRES,
};
pub use gate::{CallGate, Limits};
pub use identity::{Identity, IdentityKind, IdentityStatus};
pub use provider::{Health, ProbeOutcome, Provider, ProviderConfig, ResolveContext};
pub use receipt::ProviderCall;
pub use retry::{RetryPolicy, RetryPolicyError};
pub use rotation_strategy::{Choice, Shape, Strategy, StrategyError};
pub use secret::SecretValue;
