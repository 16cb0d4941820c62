//! `evidence export`: assemble a finished run's evidence bundle from the journal, the playbook
//! and the audit log, and seal it with the audit signing key (see
//! [`crate::pipeline::evidence`] for the layout and the offline verification).

use super::base::Engine;
use super::error::EngineError;
pub use super::error::ExportError;
use crate::pipeline::evidence::{sha256_hex, Bundle};
use crate::pipeline::report::ClosureReport;
use crate::store::journal::ActionStatus;
use crate::store::signing::KeyRing;
use serde_json::{json, Value};

const README: &str = "Closeout evidence bundle (format closeout-evidence-v1).

Verify it offline, with only the audit public key (no provider access, no Closeout database):

    closeout evidence verify THIS_BUNDLE --public-key audit.pub

What is checked: manifest.sig is an Ed25519 signature of manifest.json by the audit key;
every file's SHA-256 matches the manifest and no file was added or removed; every record of
audit.jsonl has an intact hash and a valid signature; plan.json, report.json and playbook.yaml
have the SHA-256 that the signed run.started (or run.planned, for a run that
contained ahead of discovery) and run.finished records name.
Hash and signature algorithms: docs/audit.md.
";

fn parse(run: &str, what: &'static str, text: &str) -> Result<Value, ExportError> {
    serde_json::from_str(text).map_err(|e| ExportError::Stored {
        run: run.to_string(),
        what,
        message: e.to_string(),
    })
}

impl Engine {
    /// A finished run's closure report as one self-contained HTML page, measured against the
    /// configuration's `[report]` targets. Contacts no provider.
    pub fn html_report(&self, run_id: &str) -> Result<String, EngineError> {
        let (run, report) = self.run_report(run_id)?;
        let report = report.ok_or(ExportError::Unfinished(run.id))?;
        let (containment, closure) = self.config.report.targets();
        Ok(crate::pipeline::report_html::render(
            &report,
            &crate::pipeline::report_html::Targets {
                containment,
                closure,
            },
        ))
    }

    /// The sealed evidence bundle of a finished run. Contacts no provider; checks the audit
    /// log's chain and the run's records signed with the current key first
    /// ([`crate::store::audit::AuditLog::run_slice`]).
    pub async fn evidence(&self, run_id: &str) -> Result<Bundle, EngineError> {
        let key = self
            .audit
            .signer()
            .cloned()
            .ok_or(ExportError::NoSigningKey)?;
        let run = self.stored_run(run_id).await?;
        let report_json = run
            .report_json
            .clone()
            .ok_or_else(|| ExportError::Unfinished(run.id.clone()))?;
        let report: ClosureReport =
            serde_json::from_str(&report_json).map_err(|e| ExportError::Stored {
                run: run.id.clone(),
                what: "report",
                message: e.to_string(),
            })?;
        let id = run.id.clone();
        let (actions, approvals, before, after) = self
            .journal
            .call(move |j| {
                Ok((
                    j.actions(&id)?,
                    j.approvals(&id)?,
                    j.graph(&id, "before")?,
                    j.graph(&id, "after")?,
                ))
            })
            .await?;
        let ring = KeyRing::new([key.public()]);
        let (log, run_for_slice) = (self.audit.clone(), run.id.clone());
        let slice =
            crate::store::blocking::off_runtime(move || log.run_slice(&run_for_slice, &ring))
                .await?;

        let mut bundle = Bundle::new();
        bundle.add("README.txt", README);

        // The playbook: included only when the file is still the text the run recorded.
        let playbook_path = crate::policy::playbook::find(&self.config.playbook_dir, run.trigger);
        let playbook_note = match std::fs::read_to_string(&playbook_path) {
            Ok(text) if sha256_hex(text.as_bytes()) == run.playbook_digest => {
                bundle.add("playbook.yaml", text);
                "included: the file has the SHA-256 the run recorded".to_string()
            }
            Ok(text) => format!(
                "not included: {} has changed since the run (SHA-256 {} now)",
                playbook_path.display(),
                sha256_hex(text.as_bytes())
            ),
            Err(e) => format!(
                "not included: {} cannot be read ({})",
                playbook_path.display(),
                e.kind()
            ),
        };
        let mut graphs = Vec::new();
        for (name, graph) in [("graph-before.json", &before), ("graph-after.json", &after)] {
            match graph {
                Some(text) => bundle.add_json(name, &parse(&run.id, "graph", text)?),
                None => graphs.push(name),
            }
        }
        bundle.add_json(
            "run.json",
            &json!({
                "run": run.id,
                "identity": report.identity,
                "trigger": run.trigger,
                "status": run.status.as_str(),
                "playbook": {
                    "name": run.playbook,
                    "sha256": run.playbook_digest,
                    "file": playbook_note,
                },
                "created_at": run.created_at,
                "effective_at": run.effective_at,
                "cutoff": run.cutoff,
                "contained_at": run.contained_at,
                "finished_at": run.finished_at,
                "time_to_containment_seconds": report.time_to_containment_seconds,
                "time_to_closure_seconds": report.time_to_closure_seconds,
                "override_protected": run.override_protected,
                "started_by": run.started_by,
                "started_os_user": run.started_os_user,
                "approved_by": run.approved_by,
                "approvals": approvals,
                "graphs_not_recorded": graphs,
            }),
        );
        // The plan and report verbatim: their SHA-256 is in the signed audit records.
        bundle.add("plan.json", run.plan_json.clone());
        bundle.add("report.json", report_json);
        bundle.add_json(
            "actions.json",
            &json!({
                "note": "status and detail are the provider's answer as journaled; provider_calls are the calls to the provider's server every attempt of the action made, each with the HTTP status and the server's request id when it gave one (docs/audit.md says what each provider records)",
                "actions": actions.iter().map(|a| json!({
                    "key": a.key,
                    "stage": a.stage,
                    "step": a.step,
                    "finding": a.finding_id,
                    "provider": a.provider,
                    "verb": a.verb,
                    "status": match a.status {
                        ActionStatus::Done => "done",
                        ActionStatus::AlreadyDone => "already-done",
                        ActionStatus::Failed => "failed",
                        ActionStatus::Started => "started",
                    },
                    "provider_detail": a.detail,
                    "provider_error": a.error,
                    "state_after": a.state,
                    "attempts": a.attempts,
                    "started_at": a.started_at,
                    "finished_at": a.finished_at,
                    "provider_calls": a.provider_calls,
                })).collect::<Vec<_>>(),
            }),
        );
        bundle.add_json("probes.json", &json!({ "probes": report.probes }));
        let mut audit = slice.join("\n");
        if !audit.is_empty() {
            audit.push('\n');
        }
        bundle.add("audit.jsonl", audit);
        bundle.seal(
            json!({
                "run": run.id,
                "identity": run.identity,
                "exported_at": chrono::Utc::now(),
                "exported_by": self.actor,
                "audit_records": slice.len(),
            }),
            &key,
        );
        Ok(bundle)
    }
}
