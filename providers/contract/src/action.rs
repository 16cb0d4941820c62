//! Actions: one change to one finding, executed idempotently by its provider.

use crate::finding::{Finding, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The finding attribute naming the secret a rotated credential is published to (an NHI's
/// access key, an application's client secret or certificate).
pub const PUBLISH_SECRET_ATTR: &str = "publish_secret";

/// The finding attribute naming the object whose credential is published (a user's ARN, an
/// application's or service principal's object id). Two objects whose rotated credentials would
/// be published to one secret would overwrite each other: the plan refuses that.
pub const PUBLISH_FOR_ATTR: &str = "publish_for";

/// One action for a provider to execute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRequest {
    /// Derived from run, step and finding; the same key always means the same change.
    pub idempotency_key: String,
    /// One of the verbs the provider lists for the finding's kind.
    pub verb: String,
    /// The finding to act on.
    pub finding: Finding,
    /// What the verb needs beyond the finding.
    pub params: ActionParams,
}

/// Inputs an action may need beyond the finding itself. The orchestrator fills them; a provider
/// reads only what its verb needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionParams {
    /// For `revoke-sessions`: sessions issued before this instant stop working.
    pub sessions_issued_before: Option<DateTime<Utc>>,
    /// For `reassign-owner`: the new owner, already written in the form the old owner record used.
    pub new_owner: Option<String>,
    /// The run on whose behalf the action runs (written into tags/descriptions for audit).
    pub run_id: String,
}

/// What an executed action did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionOutcome {
    /// True when nothing needed changing (the idempotent success).
    pub already_done: bool,
    /// Non-secret description: `deactivated access key AKIA...`, `new version v2 is AWSCURRENT`.
    pub detail: String,
    /// The finding's state after the action.
    pub state: State,
}

impl ActionOutcome {
    /// The action changed something and left the finding in `state`.
    pub fn done(state: State, detail: impl Into<String>) -> Self {
        ActionOutcome {
            already_done: false,
            detail: detail.into(),
            state,
        }
    }

    /// The finding was already in `state`: nothing was changed (the idempotent success).
    pub fn already(state: State, detail: impl Into<String>) -> Self {
        ActionOutcome {
            already_done: true,
            detail: detail.into(),
            state,
        }
    }
}
