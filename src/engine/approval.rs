//! Approvals of approval-gated runs: the approver is authenticated (their own API token, a
//! signature with their own key, or — with no approvers configured — the operating-system user
//! running `closeout approve`), may not be who started the run, and a run is released only when
//! as many distinct approvers as its plan requires (`approvals: N` on a step) have approved.
//! Every approval is an audit record (signed, like every record, when the log has a key).

use super::base::{os_user, Engine};
pub use super::error::ApprovalError;
use super::error::EngineError;
use crate::config::ApproverConfig;
use crate::store::journal::RunStatus;
use crate::store::signing::{Domain, PrivateKey, PublicKey};
use std::path::Path;

/// How an approver was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproverProof {
    /// Their own bearer token (`token_file` of `[[approvals.approver]]`) on the API.
    ApiToken,
    /// Their Ed25519 signature of the approval (see [`approval_body`]) by their configured key.
    Signed {
        /// The approver key's id.
        key: String,
        /// The signature (hex).
        signature: String,
    },
    /// The operating-system user running the CLI (no approvers configured).
    OsUser,
}

/// An authenticated approver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    /// The name audited and compared with who started the run.
    pub name: String,
    /// How they were authenticated.
    pub proof: ApproverProof,
}

impl Approver {
    /// The method as journaled and audited: `api-token`, `signed` or `os-user`.
    pub fn method(&self) -> &'static str {
        match self.proof {
            ApproverProof::ApiToken => "api-token",
            ApproverProof::Signed { .. } => "signed",
            ApproverProof::OsUser => "os-user",
        }
    }
}

/// What an approval did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// Enough distinct approvers: the run is released.
    Released {
        /// Every approver, oldest first.
        approvers: Vec<String>,
    },
    /// Recorded; more approvers are needed.
    Pending {
        /// The approvers so far.
        approvers: Vec<String>,
        /// How many distinct approvers the run needs.
        required: u32,
    },
}

/// What an approver signs: `<run id>\n<approver name>` in the approval domain.
pub fn approval_body(run: &str, approver: &str) -> String {
    format!("{run}\n{approver}")
}

fn approver_key(a: &ApproverConfig) -> Result<Option<PublicKey>, ApprovalError> {
    a.public_key_file
        .as_ref()
        .map(|p| PublicKey::read(p))
        .transpose()
        .map_err(|e| ApprovalError::ApproverFile {
            name: a.name.clone(),
            message: e.to_string(),
        })
}

impl Engine {
    /// The approver behind a CLI `approve`: with approvers configured, the one whose public key
    /// matches the private `key` given (the approval is signed with it); with none configured,
    /// the operating-system user (not `$CLOSEOUT_ACTOR`, which anyone can set).
    pub fn cli_approver(&self, run: &str, key: Option<&Path>) -> Result<Approver, EngineError> {
        let approvers = &self.config.approvals.approver;
        let Some(key) = key else {
            if approvers.is_empty() {
                return Ok(Approver {
                    name: os_user(),
                    proof: ApproverProof::OsUser,
                });
            }
            return Err(ApprovalError::KeyRequired.into());
        };
        if approvers.is_empty() {
            return Err(ApprovalError::NoApprovers.into());
        }
        let private = PrivateKey::read(key)?;
        for a in approvers {
            if approver_key(a)?.is_some_and(|k| k.id() == private.id()) {
                let signature = private.sign(Domain::Approval, &approval_body(run, &a.name));
                return Ok(Approver {
                    name: a.name.clone(),
                    proof: ApproverProof::Signed {
                        key: private.id().to_string(),
                        signature,
                    },
                });
            }
        }
        Err(ApprovalError::NotAnApprover {
            key: private.id().to_string(),
        }
        .into())
    }

    /// The configured approver whose own API token `token` is (compared in constant time with
    /// every approver's), if any.
    pub fn token_approver(&self, token: &str) -> Result<Option<Approver>, EngineError> {
        use subtle::ConstantTimeEq as _;
        let mut found = None;
        for a in &self.config.approvals.approver {
            let Some(file) = &a.token_file else { continue };
            let expected = crate::config::serve::read_secret(Some(file), "").map_err(|e| {
                ApprovalError::ApproverFile {
                    name: a.name.clone(),
                    message: e.to_string(),
                }
            })?;
            let Some(expected) = expected else { continue };
            if bool::from(token.as_bytes().ct_eq(expected.as_bytes())) && found.is_none() {
                found = Some(Approver {
                    name: a.name.clone(),
                    proof: ApproverProof::ApiToken,
                });
            }
        }
        Ok(found)
    }

    /// Record an approval of a run waiting for one (audited) without running it. Refuses the
    /// run's starter and an approval whose signature does not verify; releases the run once as
    /// many distinct approvers as its plan requires have approved. Returns the run's identity
    /// and what the approval did.
    pub async fn record_approval(
        &self,
        run_id: &str,
        approver: &Approver,
    ) -> Result<(String, ApprovalOutcome), EngineError> {
        let run = self.stored_run(run_id).await?;
        if run.status != RunStatus::WaitingApproval {
            return Err(EngineError::NotWaiting {
                run: run.id,
                status: run.status.as_str().to_string(),
            });
        }
        let starters = [run.started_by.as_deref(), run.started_os_user.as_deref()];
        if starters.contains(&Some(approver.name.as_str())) {
            return Err(ApprovalError::SelfApproval {
                run: run.id,
                approver: approver.name.clone(),
            }
            .into());
        }
        if let ApproverProof::Signed { key, signature } = &approver.proof {
            let configured = self
                .config
                .approvals
                .approver
                .iter()
                .find(|a| a.name == approver.name);
            let public = match configured {
                Some(a) => approver_key(a)?,
                None => None,
            };
            let valid = public.is_some_and(|p| {
                p.id() == key
                    && p.verifies(
                        Domain::Approval,
                        &approval_body(&run.id, &approver.name),
                        signature,
                    )
            });
            if !valid {
                return Err(ApprovalError::BadSignature {
                    run: run.id,
                    approver: approver.name.clone(),
                }
                .into());
            }
        }
        let plan: crate::pipeline::plan::Plan =
            serde_json::from_str(&run.plan_json).map_err(|e| EngineError::StoredPlan {
                run: run.id.clone(),
                message: e.to_string(),
            })?;
        let required = plan.approvals_required().max(1);
        let identity = self.identity(&run.identity)?;
        let (id, who, method) = (
            run.id.clone(),
            approver.name.clone(),
            approver.method().to_string(),
        );
        let approvals = self
            .journal
            .call(move |j| j.add_approval(&id, &who, &method))
            .await?;
        let approvers: Vec<String> = approvals.into_iter().map(|a| a.approver).collect();
        let released = approvers.len() as u64 >= u64::from(required);
        if released {
            let (id, all) = (run.id.clone(), approvers.join(", "));
            self.journal.call(move |j| j.approve(&id, &all)).await?;
        }
        let mut details = serde_json::json!({
            "approver": approver.name,
            "method": approver.method(),
            "approvers": approvers,
            "required": required,
            "released": released,
        });
        if let ApproverProof::Signed { key, signature } = &approver.proof {
            details["approver_key"] = serde_json::Value::from(key.clone());
            details["approver_signature"] = serde_json::Value::from(signature.clone());
        }
        self.audit_event("run.approved", Some(&run.id), &identity, details)
            .await?;
        let outcome = if released {
            ApprovalOutcome::Released { approvers }
        } else {
            ApprovalOutcome::Pending {
                approvers,
                required,
            }
        };
        Ok((run.identity, outcome))
    }
}
