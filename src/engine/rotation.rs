//! Scheduled rotation over the source: which findings the rotation policies make due across the
//! active identities ([`due`]: resolves, changes nothing), and one `rotation` run per identity
//! that acts on exactly those ([`Engine::rotate_due`]). Used by `closeout rotate --due` and the
//! serve scheduler.

use super::base::Engine;
use super::error::EngineError;
use super::run::ApplyOptions;
use crate::pipeline::plan::Plan;
use crate::pipeline::progress::Progress;
use crate::pipeline::report::ClosureReport;
use crate::pipeline::spans;
use crate::policy::rotation::{select_due, DueReport};
use crate::trigger::Trigger;
use chrono::Utc;
use closeout_contract::{Identity, IdentityStatus};
use tracing::Instrument;

/// Resolve every active identity in the source (or the one given) and select what is due.
/// Changes nothing.
pub async fn due(engine: &Engine, only: Option<&str>) -> Result<DueReport, EngineError> {
    let policies = engine
        .config
        .rotation
        .policies()
        // Validated when the config was loaded; kept as an error, not a panic.
        .map_err(|e| crate::config::ConfigError::Invalid {
            path: std::path::PathBuf::from("[rotation]"),
            message: e.to_string(),
        })?;
    let identities: Vec<Identity> = match only {
        Some(id) => vec![engine.identity(id)?],
        None => engine
            .directory
            .identities()
            .iter()
            .filter(|i| i.status == IdentityStatus::Active)
            .cloned()
            .collect(),
    };
    if policies.is_empty() {
        return Ok(DueReport {
            checked: identities.len(),
            identities: Vec::new(),
        });
    }
    let providers = engine.providers().await?;
    let mut resolved = Vec::with_capacity(identities.len());
    // One identity at a time: each resolution already fans out across the providers.
    for identity in &identities {
        let graph = crate::pipeline::resolve::resolve(&providers, &engine.context(identity).await?)
            .instrument(spans::phase("resolve"))
            .await?;
        let mut findings = graph.findings;
        findings.dedup_by(|a, b| a.id == b.id);
        resolved.push((identity.id.clone(), findings));
    }
    Ok(select_due(&policies, &resolved, Utc::now()))
}

/// One identity's rotation run, or why it did not run.
pub struct RotationRun {
    /// The identity.
    pub identity: String,
    /// Its run's report, or the refusal or failure (one identity's does not stop the others).
    pub result: Result<ClosureReport, EngineError>,
}

impl Engine {
    /// Rotate what `due` lists: one journaled, audited `rotation` run per identity with due
    /// findings, acting only on those findings.
    pub async fn rotate_due(
        &self,
        due: &DueReport,
        yes: bool,
        confirm: &mut (dyn FnMut(&Plan) -> Result<bool, EngineError> + Send),
        progress: &Progress,
    ) -> Vec<RotationRun> {
        let mut runs = Vec::new();
        for i in due.identities.iter().filter(|i| !i.due.is_empty()) {
            let options = ApplyOptions {
                yes,
                only_findings: Some(i.ids()),
                ..ApplyOptions::default()
            };
            let result = self
                .apply(Trigger::Rotation, &i.identity, &options, confirm, progress)
                .await;
            runs.push(RotationRun {
                identity: i.identity.clone(),
                result,
            });
        }
        runs
    }
}
