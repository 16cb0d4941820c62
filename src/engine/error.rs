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
    /// The configuration file is unreadable or invalid (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HR export is unreadable or invalid; nothing is done on a partial source (exit 2).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The trigger's playbook does not parse or validate; every problem is listed (exit 2).
    #[error(transparent)]
    Playbook(#[from] PlaybookError),
    /// No plan can be made (no manager to reassign to, a playbook without the trigger) (exit 2).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// No identity in the source has this id or email (exit 2).
    #[error(
        "unknown identity {id:?}: no identity with that id or email in the source {source_path}"
    )]
    UnknownIdentity {
        /// The id or email asked for.
        id: String,
        /// The source file searched.
        source_path: PathBuf,
    },
    /// The trigger name is not one Closeout knows (exit 2).
    #[error(transparent)]
    UnknownTrigger(#[from] UnknownTrigger),
    /// The playbook directory has no `<trigger>.yaml` (exit 2).
    #[error("no playbook for trigger {trigger:?}: {path} does not exist")]
    NoPlaybook {
        /// The trigger.
        trigger: Trigger,
        /// The playbook file expected.
        path: PathBuf,
    },
    /// None of the providers the playbook names is configured, so it could do nothing (exit 2).
    #[error("playbook {playbook} uses provider {provider:?}, and none of its providers is configured (configured: {configured}); add a [providers.{provider}] section to the config")]
    ProviderNotConfigured {
        /// The playbook's name.
        playbook: String,
        /// The first provider it names.
        provider: String,
        /// The providers configured, comma-separated.
        configured: String,
    },
    /// The identity is tagged `protected` (e.g. break-glass) and `--override-protected` was not
    /// given; the value is its id (exit 2).
    #[error("identity {0} is protected (tag `protected`); refusing to act without --override-protected (the override is audited)")]
    Protected(String),
    /// The plan takes more actions than the playbook's `max_actions`; nothing was done. Re-run
    /// with `--confirm-actions N` after reviewing it (exit 2).
    #[error("the plan has {actions} actions, more than the playbook's blast-radius limit of {limit}; review the plan and re-run with --confirm-actions {actions}")]
    BlastRadius {
        /// Actions the plan takes.
        actions: usize,
        /// The playbook's limit.
        limit: usize,
    },
    /// Confirmation is needed but there is no terminal to ask on; use `--yes` (exit 2).
    #[error("refusing to apply without --yes: stdin is not a terminal to ask on")]
    NotInteractive,
    /// The operator answered no at the confirmation; nothing was changed (exit 1).
    #[error("apply cancelled: nothing was changed")]
    Declined,
    /// No run with this id in the journal (exit 2).
    #[error("run {0} not found in the journal")]
    NoSuchRun(String),
    /// A provider failed while resolving or verifying (exit 2 when its configuration is wrong,
    /// else 1).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A `[providers.NAME]` section is invalid or the provider cannot be built (exit 2).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The run journal cannot be read or written (exit 1).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The audit log cannot be appended to, or is not intact; the engine stops rather than act
    /// unaudited (exit 1).
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// An approval was refused: not an authenticated approver, or the run's own starter (exit 2).
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    /// The approval was recorded but the run needs more distinct approvers (exit 4).
    #[error(
        "run {run} has {have} of {required} approvals ({approvers}): it waits for another approver"
    )]
    NeedsMoreApprovals {
        /// The run.
        run: String,
        /// The approvers so far, comma-separated.
        approvers: String,
        /// How many approvals it has.
        have: usize,
        /// How many distinct approvers it needs.
        required: u32,
    },
    /// An evidence bundle cannot be made (exit 1; 2 for a run that is unfinished or an output
    /// that exists).
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The audit signing key cannot be read or is not a key (exit 2).
    #[error("audit signing key: {0}")]
    AuditKey(#[from] crate::store::signing::KeyError),
    /// A stage could not run: journal, audit log, or a provider no longer configured (exit 1).
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    /// The run stopped at a stage with approval-gated steps; `closeout approve RUN` releases it.
    /// Not a failure (exit 4).
    #[error("run {run} waits for approval before stage {stage}: `closeout approve {run}` releases it (the approver is audited)")]
    WaitingApproval {
        /// The run waiting.
        run: String,
        /// The stage it waits before.
        stage: String,
    },
    /// `approve` of a run that is not waiting for approval (exit 2).
    #[error("run {run} is {status}; only a run waiting for approval can be approved")]
    NotWaiting {
        /// The run.
        run: String,
        /// Its current status.
        status: String,
    },
    /// A trigger whose closure is measured against the entitlement policy (mover, joiner), or a
    /// policy command, with no `[policy] entitlements` in the configuration (exit 2).
    #[error("trigger {trigger} needs the entitlement policy: set `[policy] entitlements = \"PATH\"` in the config (format in docs/entitlements.md)")]
    NoPolicy {
        /// The trigger that needs it.
        trigger: String,
    },
    /// The entitlement policy does not parse or validate; every problem is listed (exit 2).
    #[error("entitlement policy:\n{0}")]
    Policy(#[from] PolicyError),
    /// A `--to` attribute a mover cannot change; the message lists those it can (exit 2).
    #[error("bad --to {0}")]
    BadAttribute(String),
    /// `--to` given for a trigger other than mover (exit 2).
    #[error("--to is for the mover trigger only: trigger {0} acts on the source's attributes")]
    ToNotForTrigger(Trigger),
    /// The plan stored with a run cannot be read or written as JSON (a journal from an
    /// incompatible version) (exit 1).
    #[error("stored plan of run {run} cannot be read: {message}")]
    StoredPlan {
        /// The run.
        run: String,
        /// The JSON error.
        message: String,
    },
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
            | EngineError::Registry(_)
            | EngineError::AuditKey(_)
            | EngineError::Approval(_) => 2,
            EngineError::Provider(ProviderError::Config { .. })
            | EngineError::NotWaiting { .. } => 2,
            EngineError::WaitingApproval { .. } | EngineError::NeedsMoreApprovals { .. } => 4,
            _ => 1,
        }
    }
}

/// Why an approval was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// Approvers are configured, so a CLI approval must be signed with one's key.
    #[error("approvers are configured ([[approvals.approver]]): sign the approval with your key: closeout approve RUN --key FILE")]
    KeyRequired,
    /// The key given belongs to no configured approver.
    #[error("key {key} is not the key of any configured approver ([[approvals.approver]] public_key_file)")]
    NotAnApprover {
        /// The key id.
        key: String,
    },
    /// `--key` without any approver configured to check it against.
    #[error(
        "--key needs [[approvals.approver]] entries with public_key_file to check the key against"
    )]
    NoApprovers,
    /// An approver's key or token file cannot be read.
    #[error("approver {name}: {message}")]
    ApproverFile {
        /// The approver.
        name: String,
        /// What failed (never a secret).
        message: String,
    },
    /// The approver started the run.
    #[error("{approver} started run {run} and may not approve it: another approver must")]
    SelfApproval {
        /// The run.
        run: String,
        /// The approver.
        approver: String,
    },
    /// The approval's signature does not verify with the approver's configured key.
    #[error("the approval of run {run} by {approver} is not signed by their configured key")]
    BadSignature {
        /// The run.
        run: String,
        /// The approver.
        approver: String,
    },
}

/// Why a bundle cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Without the audit signing key the manifest cannot be signed.
    #[error("no audit signing key is configured ([audit] signing_key_file, CLOSEOUT_AUDIT_KEY_FILE or CLOSEOUT_AUDIT_KEY): the bundle's manifest must be signed")]
    NoSigningKey,
    /// The run has no closure report yet.
    #[error("run {0} has no closure report yet (it is unfinished): finish it first")]
    Unfinished(String),
    /// A stored document is not the JSON it should be.
    #[error("run {run}: stored {what} is not valid JSON: {message}")]
    Stored {
        /// The run.
        run: String,
        /// Which document.
        what: &'static str,
        /// The parser's message.
        message: String,
    },
    /// Reading or writing the bundle failed.
    #[error(transparent)]
    Bundle(#[from] crate::pipeline::evidence::EvidenceError),
}
