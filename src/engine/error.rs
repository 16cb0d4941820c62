//! What can go wrong in the engine, and the exit code each error means (DESIGN.md §4).

use crate::config::ConfigError;
use crate::intake::source::SourceError;
use crate::pipeline::apply::ExecutorError;
use crate::pipeline::plan::PlanError;
use crate::policy::entitlements::PolicyError;
use crate::policy::playbook::PlaybookError;
use crate::registry::RegistryError;
use crate::store::audit::AuditError;
use crate::store::journal::JournalError;
use crate::store::lease::LeaseError;
use crate::trigger::{Trigger, UnknownTrigger};
use closeout_contract::ProviderError;
use std::path::PathBuf;

/// Everything an engine operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Playbook(#[from] PlaybookError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(
        "unknown identity {id:?}: no identity with that id or email in the source {source_path}"
    )]
    UnknownIdentity { id: String, source_path: PathBuf },
    #[error(transparent)]
    UnknownTrigger(#[from] UnknownTrigger),
    #[error("no playbook for trigger {trigger:?}: {path} does not exist")]
    NoPlaybook { trigger: Trigger, path: PathBuf },
    #[error("playbook {playbook} uses provider {provider:?}, and none of its providers is configured (configured: {configured}); add a [providers.{provider}] section to the config")]
    ProviderNotConfigured {
        playbook: String,
        provider: String,
        configured: String,
    },
    #[error("identity {0} is protected (tag `protected`); refusing to act without --override-protected (the override is audited)")]
    Protected(String),
    #[error("the plan has {actions} actions, more than the playbook's blast-radius limit of {limit}; review the plan and re-run with --confirm-actions {actions}")]
    BlastRadius { actions: usize, limit: usize },
    #[error("refusing to apply without --yes: stdin is not a terminal to ask on")]
    NotInteractive,
    #[error("apply cancelled: nothing was changed")]
    Declined,
    #[error("run {0} not found in the journal")]
    NoSuchRun(String),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    #[error("run {run} waits for approval before stage {stage}: `closeout approve {run}` releases it (the approver is audited)")]
    WaitingApproval { run: String, stage: String },
    #[error("run {run} is {status}; only a run waiting for approval can be approved")]
    NotWaiting { run: String, status: String },
    #[error("trigger {trigger} needs the entitlement policy: set `[policy] entitlements = \"PATH\"` in the config (format in docs/entitlements.md)")]
    NoPolicy { trigger: String },
    #[error("entitlement policy:\n{0}")]
    Policy(#[from] PolicyError),
    #[error("bad --to {0}")]
    BadAttribute(String),
    #[error("--to is for the mover trigger only: trigger {0} acts on the source's attributes")]
    ToNotForTrigger(Trigger),
    #[error("stored plan of run {run} cannot be read: {message}")]
    StoredPlan { run: String, message: String },
    /// Another process acts for the identity, or this one lost its lease.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// A blocking store task did not finish (the runtime is shutting down).
    #[error("a store task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl EngineError {
    /// The process exit code (DESIGN.md §4): 2 for bad usage or input, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Config(_)
            | EngineError::Source(_)
            | EngineError::Playbook(_)
            | EngineError::Plan(_)
            | EngineError::UnknownIdentity { .. }
            | EngineError::UnknownTrigger(_)
            | EngineError::NoPlaybook { .. }
            | EngineError::ProviderNotConfigured { .. }
            | EngineError::Protected(_)
            | EngineError::BlastRadius { .. }
            | EngineError::NotInteractive
            | EngineError::NoSuchRun(_)
            | EngineError::NoPolicy { .. }
            | EngineError::Policy(_)
            | EngineError::BadAttribute(_)
            | EngineError::ToNotForTrigger(_)
            | EngineError::Registry(_) => 2,
            EngineError::Provider(ProviderError::Config { .. })
            | EngineError::NotWaiting { .. } => 2,
            EngineError::WaitingApproval { .. } => 4,
            _ => 1,
        }
    }
}
