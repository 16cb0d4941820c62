//! The [`Engine`]: what every command and worker opens — the configuration, the source
//! directory, the journal and the audit log — and the lookups every operation shares (the
//! identity, its playbook, the entitlement policy, the providers). Opening contacts no provider.

use super::error::EngineError;
use super::mover::moved;
use crate::config::Config;
use crate::intake::source::Directory;
use crate::pipeline::report::ClosureReport;
use crate::pipeline::resolve::{resolve, Graph};
use crate::pipeline::spans;
use crate::policy::entitlements::policy as entitlement_policy;
use crate::policy::entitlements::EntitlementPolicy;
use crate::policy::playbook::{self, Playbook};
use crate::registry::Providers;
use crate::store::audit::{AuditEntry, AuditLog};
use crate::store::journal::JournalError;
use crate::store::journal::{Journal, RunRecord};
use crate::store::lease::Leases;
use crate::store::pg::PgStore;
use crate::store::signing::PrivateKey;
use crate::trigger::Trigger;
use closeout_contract::{Identity, ResolveContext};
use std::collections::BTreeMap;
use std::path::Path;
use tracing::Instrument;

/// An opened Closeout: configuration, source, journal and audit log.
pub struct Engine {
    /// The validated configuration.
    pub config: Config,
    /// The authoritative source's identities.
    pub directory: Directory,
    /// The run journal.
    pub journal: Journal,
    /// The append-only audit log.
    pub audit: AuditLog,
    /// Who runs Closeout (recorded in the audit log).
    pub actor: String,
    /// The operating-system user behind a person's command ([`os_user`]); `None` for the
    /// service, which acts for events rather than for a person.
    pub os_user: Option<String>,
    /// The per-identity leases: one process acts for an identity at a time.
    pub leases: Leases,
}

/// How long an identity's lease lasts without renewal; a run renews it every third of that.
pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl Engine {
    /// Load the config, the source, the journal and the audit log. No provider is contacted.
    pub fn open(config_path: &Path) -> Result<Engine, EngineError> {
        let config = Config::load(config_path)?;
        let directory = Directory::load(&config.source.path)?;
        // The journal, the leases and (on PostgreSQL) the audit log are in the store; on
        // SQLite the audit log is the file at [audit] path (docs/serve.md, "Deployment").
        let (journal, leases) = if config.store.url.is_none() {
            (
                Journal::open(&config.store.path)?,
                Leases::new(&config.store.path, LEASE_TTL),
            )
        } else {
            let store = PgStore::open(&config.store).map_err(JournalError::from)?;
            (
                Journal::open_postgres(&store),
                Leases::postgres(&store, LEASE_TTL),
            )
        };
        let mut audit = AuditLog::for_store(&config.audit, &config.store)?;
        if let Some(key) = audit_signing_key(&config.audit)? {
            audit = audit.with_signer(key);
        }
        Ok(Engine {
            config,
            directory,
            journal,
            audit,
            actor: current_actor(),
            os_user: Some(os_user()),
            leases,
        })
    }

    /// [`Engine::open`] off the async runtime: opening reads the configuration and the source and
    /// opens the journal's SQLite file, which waits while another connection writes.
    pub async fn open_async(config_path: &Path) -> Result<Engine, EngineError> {
        let path = config_path.to_path_buf();
        tokio::task::spawn_blocking(move || Engine::open(&path)).await?
    }

    /// The identity with this id or email in the source.
    pub fn identity(&self, id: &str) -> Result<Identity, EngineError> {
        self.directory
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::UnknownIdentity {
                id: id.to_string(),
                source_path: self.config.source.path.clone(),
            })
    }

    /// The playbook for `trigger`, validated, with at least one provider it names configured.
    pub fn playbook(&self, trigger: Trigger) -> Result<Playbook, EngineError> {
        let path = playbook::find(&self.config.playbook_dir, trigger);
        if !path.exists() {
            return Err(EngineError::NoPlaybook { trigger, path });
        }
        let book = playbook::load(&path, crate::registry::CAPABILITIES)?;
        // The shipped playbooks cover every provider; a site runs them on the providers it
        // configures. Steps for the others select nothing (no findings come from them), which
        // is said out loud; a playbook none of whose providers is configured is refused.
        let configured = self.config.providers.configured();
        let (usable, missing): (Vec<String>, Vec<String>) = book
            .providers()
            .into_iter()
            .partition(|p| configured.contains(&p.as_str()));
        if usable.is_empty() {
            if let Some(provider) = missing.first() {
                return Err(EngineError::ProviderNotConfigured {
                    playbook: path.display().to_string(),
                    provider: provider.to_string(),
                    configured: configured.join(", "),
                });
            }
        }
        for provider in &missing {
            tracing::warn!(
                playbook = %path.display(),
                "the steps for provider {provider} are skipped: [providers.{provider}] is not configured"
            );
        }
        Ok(book)
    }

    /// The entitlement policy, validated against the providers' capabilities; `needed_by`
    /// names what needs it, for the error when none is configured.
    pub fn policy(&self, needed_by: &str) -> Result<EntitlementPolicy, EngineError> {
        let path =
            self.config
                .policy
                .entitlements
                .as_ref()
                .ok_or_else(|| EngineError::NoPolicy {
                    trigger: needed_by.to_string(),
                })?;
        Ok(entitlement_policy::load(
            path,
            crate::registry::CAPABILITIES,
        )?)
    }

    /// The identity a run of `trigger` acts for: a mover's with its new attributes.
    pub fn subject(
        &self,
        trigger: Trigger,
        id: &str,
        to: &BTreeMap<String, String>,
    ) -> Result<Identity, EngineError> {
        let identity = self.identity(id)?;
        if to.is_empty() {
            return Ok(identity);
        }
        if !trigger.takes_new_attributes() {
            return Err(EngineError::ToNotForTrigger(trigger));
        }
        moved(&identity, to)
    }

    /// Connect every configured provider (no call is made yet).
    pub async fn providers(&self) -> Result<Providers, EngineError> {
        Ok(Providers::connect(&self.config.providers).await?)
    }

    /// What a provider needs to resolve `identity` now: its cutoff from the journal.
    pub async fn context(&self, identity: &Identity) -> Result<ResolveContext, EngineError> {
        self.context_before(identity, "").await
    }

    /// The context run `run_id` is planned with: the cutoff as it was before the run existed
    /// (a run containing ahead of discovery exists while it is planned, and may be planned
    /// again when resumed).
    pub async fn context_before(
        &self,
        identity: &Identity,
        run_id: &str,
    ) -> Result<ResolveContext, EngineError> {
        let (id, run) = (identity.id.clone(), run_id.to_string());
        Ok(ResolveContext {
            identity: identity.clone(),
            cutoff: self
                .journal
                .call(move |j| j.containment_cutoff_except(&id, &run))
                .await?,
        })
    }

    /// Resolve the identity in every provider.
    pub async fn resolve(&self, id: &str) -> Result<Graph, EngineError> {
        let identity = self.identity(id)?;
        let providers = self.providers().await?;
        let ctx = self.context(&identity).await?;
        Ok(resolve(&providers, &ctx)
            .instrument(spans::phase("resolve"))
            .await?)
    }

    /// The report of a finished run, or its journaled state.
    pub fn run_report(
        &self,
        run_id: &str,
    ) -> Result<(RunRecord, Option<ClosureReport>), EngineError> {
        let run = self
            .journal
            .run(run_id)?
            .ok_or_else(|| EngineError::NoSuchRun(run_id.to_string()))?;
        let report = run
            .report_json
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok());
        Ok((run, report))
    }

    /// Append one audit record by this engine's actor (off the async runtime: it fsyncs).
    pub(crate) async fn audit_event(
        &self,
        event: &str,
        run: Option<&str>,
        identity: &Identity,
        details: serde_json::Value,
    ) -> Result<(), EngineError> {
        self.audit
            .append_async(AuditEntry {
                actor: self.actor.clone(),
                event: event.to_string(),
                run: run.map(str::to_string),
                identity: Some(identity.id.clone()),
                details,
            })
            .await?;
        Ok(())
    }
}

/// The audit signing key: `[audit] signing_key_file`, else `$CLOSEOUT_AUDIT_KEY_FILE`, else the
/// hex key in `$CLOSEOUT_AUDIT_KEY`; `None` when none is set (records are then unsigned).
pub fn audit_signing_key(
    config: &crate::config::AuditConfig,
) -> Result<Option<PrivateKey>, EngineError> {
    if let Some(path) = &config.signing_key_file {
        return Ok(Some(PrivateKey::read(path)?));
    }
    if let Some(path) = std::env::var_os("CLOSEOUT_AUDIT_KEY_FILE").filter(|p| !p.is_empty()) {
        return Ok(Some(PrivateKey::read(Path::new(&path))?));
    }
    match std::env::var("CLOSEOUT_AUDIT_KEY") {
        Ok(hex) if !hex.trim().is_empty() => {
            Ok(Some(PrivateKey::parse(&hex, "$CLOSEOUT_AUDIT_KEY")?))
        }
        _ => Ok(None),
    }
}

/// Who is running Closeout: `$CLOSEOUT_ACTOR`, else the OS user (`$USER`, `$LOGNAME`, else the
/// process's uid looked up in `/etc/passwd`, else `uid:N`). Never empty, never "unknown".
pub fn current_actor() -> String {
    let named = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    named("CLOSEOUT_ACTOR")
        .or_else(|| named("USER"))
        .or_else(|| named("LOGNAME"))
        .unwrap_or_else(os_user)
}

/// The OS user this process runs as, from its uid (Unix); the executable's owner elsewhere.
pub fn os_user() -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        // `/proc/self` belongs to the process's (effective) user.
        let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
        if let Some(uid) = uid {
            let name = std::fs::read_to_string("/etc/passwd")
                .ok()
                .and_then(|text| {
                    text.lines().find_map(|line| {
                        let mut fields = line.split(':');
                        let name = fields.next()?;
                        let id = fields.nth(1)?;
                        (id.parse::<u32>().ok() == Some(uid)).then(|| name.to_string())
                    })
                });
            return name.unwrap_or_else(|| format!("uid:{uid}"));
        }
    }
    format!("process:{}", std::process::id())
}
