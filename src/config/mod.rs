//! The one TOML configuration file: providers, playbook directory, store, audit log, source and
//! execution limits. Secrets never live here: provider credentials come from each SDK's own
//! environment/file chain.

pub mod acceptance;
pub mod rotation;
pub mod serve;

use crate::registry::ProvidersConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Errors reading or validating the configuration. All are bad input (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable).
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The I/O error reading it.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema (an unknown key, a wrong type).
    #[error("config {path}: {message}")]
    Parse {
        /// The configuration file.
        path: PathBuf,
        /// The TOML parser's message, which names the offending key and line.
        message: String,
    },
    /// The file parses but a check across its values fails (no provider configured, backoff
    /// bounds reversed, an invalid rotation policy...).
    #[error("config {path}: {message}")]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong, naming the section.
        message: String,
    },
}

/// The whole configuration file. Relative paths are relative to the working directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory holding `<trigger>.yaml` playbooks.
    #[serde(default = "default_playbook_dir")]
    pub playbook_dir: PathBuf,
    /// The authoritative source (HR export).
    pub source: SourceConfig,
    /// `[store]`: where the SQLite database lives (run journal, grant ledger, event queue).
    #[serde(default)]
    pub store: StoreConfig,
    /// `[audit]`: where the audit log lives.
    #[serde(default)]
    pub audit: AuditConfig,
    /// `[execution]`: retries and backoff of provider calls.
    #[serde(default)]
    pub execution: ExecutionConfig,
    /// `[providers.<name>]`: the providers this site uses; at least one must be configured.
    #[serde(default)]
    pub providers: ProvidersConfig,
    /// The entitlement policy movers, joiners and policy drift are computed from.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// `closeout serve` (optional; defaults apply when absent).
    #[serde(default)]
    pub serve: serve::ServeConfig,
    /// `[[rotation.policy]]`: what scheduled rotation makes due (see `crate::policy::rotation`).
    #[serde(default)]
    pub rotation: rotation::RotationConfig,
    /// `[[accept_unverified]]`: gaps (what a provider cannot list, read or evaluate) this site
    /// accepts by name, each with its reason; every other gap keeps closure open.
    #[serde(default)]
    pub accept_unverified: Vec<acceptance::Acceptance>,
    /// `[[approvals.approver]]`: who may approve runs and how each is authenticated.
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// `[report]`: the targets the HTML report measures runs against.
    #[serde(default)]
    pub report: ReportConfig,
}

/// `[report]`: time-to-containment and time-to-closure targets (durations such as `15m`, `4h`),
/// counted from the event's effective time; the HTML report shows each run against them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Target time to containment (sign-in and sessions stopped).
    pub containment_target: Option<String>,
    /// Target time to verified closure.
    pub closure_target: Option<String>,
}

impl ReportConfig {
    /// The targets, parsed (validation has already checked them).
    pub fn targets(&self) -> (Option<crate::grace::Grace>, Option<crate::grace::Grace>) {
        let parse = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| crate::grace::Grace::parse(t).ok())
        };
        (parse(&self.containment_target), parse(&self.closure_target))
    }

    fn validate(&self) -> Result<(), String> {
        for (field, value) in [
            ("containment_target", &self.containment_target),
            ("closure_target", &self.closure_target),
        ] {
            if let Some(v) = value {
                crate::grace::Grace::parse(v).map_err(|e| format!("[report] {field}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// `[approvals]`: the people who may approve approval-gated runs. With none configured, a CLI
/// approval is by the operating-system user and the API refuses approvals.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// `[[approvals.approver]]`, one per person.
    #[serde(default)]
    pub approver: Vec<ApproverConfig>,
}

/// One approver: a name and at least one way to authenticate them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverConfig {
    /// The approver's name as audited; compared with who started a run (`$CLOSEOUT_ACTOR` or the
    /// OS user), who may not approve it.
    pub name: String,
    /// A file holding this approver's own bearer token for `POST /v1/runs/{id}/approve`.
    pub token_file: Option<PathBuf>,
    /// This approver's Ed25519 public key (64 hex digits): `closeout approve RUN --key FILE`
    /// signs the approval with the private half.
    pub public_key_file: Option<PathBuf>,
}

impl ApprovalsConfig {
    /// Pure checks: names non-empty and unique, each approver authenticated some way.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for a in &self.approver {
            if a.name.trim().is_empty() || a.name.len() > 128 {
                return Err("[[approvals.approver]] name must be 1 to 128 characters".into());
            }
            if !seen.insert(a.name.as_str()) {
                return Err(format!(
                    "[[approvals.approver]] name {:?} appears twice",
                    a.name
                ));
            }
            if a.token_file.is_none() && a.public_key_file.is_none() {
                return Err(format!(
                    "[[approvals.approver]] {:?} needs token_file or public_key_file",
                    a.name
                ));
            }
        }
        Ok(())
    }
}

/// `[source]`: the authoritative source of identities (the HR export).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// An HR export, `.csv` or `.json`.
    pub path: PathBuf,
}

/// `[policy]`: where the entitlement policy lives (`docs/entitlements.md`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The entitlement policy YAML; movers, joiners and `policy` commands need it.
    pub entitlements: Option<PathBuf>,
}

/// `[store]`: the durable store: one SQLite file (`path`, the default), or a PostgreSQL database
/// (`url`) that several `closeout serve` replicas share (docs/serve.md, "Deployment").
///
/// Invariant: the password of a PostgreSQL store is never in the configuration file, the URL, a
/// log or an error: it comes from the environment (`password_env`) or a file (`password_file`).
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawStoreConfig")]
pub struct StoreConfig {
    /// The SQLite journal (runs, actions, events).
    pub path: PathBuf,
    /// Whether `path` was written in the file (not the default).
    path_set: bool,
    /// `postgres://user@host:port/database`: the PostgreSQL store; no password in it.
    pub url: Option<String>,
    /// The environment variable holding the PostgreSQL password.
    pub password_env: Option<String>,
    /// The file holding the PostgreSQL password (its first line).
    pub password_file: Option<PathBuf>,
    /// How long a worker's claim on a PostgreSQL queue event lasts without its heartbeat (every
    /// third of it): a replica that dies has its events taken over after this.
    pub claim_ttl_secs: u64,
}

/// `[store]` as written: `path` optional so that setting it beside `url` can be refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStoreConfig {
    path: Option<PathBuf>,
    url: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    claim_ttl_secs: Option<u64>,
}

impl From<RawStoreConfig> for StoreConfig {
    fn from(raw: RawStoreConfig) -> Self {
        StoreConfig {
            path_set: raw.path.is_some(),
            path: raw.path.unwrap_or_else(default_store_path),
            url: raw.url,
            password_env: raw.password_env,
            password_file: raw.password_file,
            claim_ttl_secs: raw.claim_ttl_secs.unwrap_or(DEFAULT_CLAIM_TTL_SECS),
        }
    }
}

/// `[store] claim_ttl_secs` unless set.
pub const DEFAULT_CLAIM_TTL_SECS: u64 = 60;

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: default_store_path(),
            path_set: false,
            url: None,
            password_env: None,
            password_file: None,
            claim_ttl_secs: DEFAULT_CLAIM_TTL_SECS,
        }
    }
}

/// Where the PostgreSQL password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// None: the server trusts the connection (peer or trust authentication).
    None,
    /// This environment variable.
    Env(String),
    /// The first line of this file.
    File(PathBuf),
}

/// The store a configuration names.
#[derive(Debug, Clone)]
pub enum StoreBackend {
    /// The embedded SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres {
        /// The parsed URL (no password in it).
        target: Box<postgres::Config>,
        /// Where the password comes from.
        password: PasswordSource,
    },
}

impl StoreConfig {
    /// The SQLite store at `path` (`url` unset).
    pub fn sqlite(path: PathBuf) -> StoreConfig {
        StoreConfig {
            path,
            path_set: true,
            ..StoreConfig::default()
        }
    }

    /// The PostgreSQL store at `url`, its password from `password`.
    pub fn postgres(url: &str, password: PasswordSource) -> StoreConfig {
        let (password_env, password_file) = match password {
            PasswordSource::None => (None, None),
            PasswordSource::Env(v) => (Some(v), None),
            PasswordSource::File(f) => (None, Some(f)),
        };
        StoreConfig {
            url: Some(url.to_string()),
            password_env,
            password_file,
            ..StoreConfig::default()
        }
    }

    /// Which backend, checked: `path` and `url` are exclusive, a password source only goes with
    /// `url` and only one of them, the URL parses and carries no password. Messages never repeat
    /// the URL (it could hold a password by mistake).
    pub fn backend(&self) -> Result<StoreBackend, String> {
        let Some(url) = &self.url else {
            if self.password_env.is_some() || self.password_file.is_some() {
                return Err(
                    "[store] password_env and password_file go with url (PostgreSQL); \
                            the SQLite store (path) has no password"
                        .into(),
                );
            }
            return Ok(StoreBackend::Sqlite(self.path.clone()));
        };
        if self.path_set {
            return Err(
                "[store] sets both path (SQLite) and url (PostgreSQL): set one of them".into(),
            );
        }
        if self.claim_ttl_secs < 3 {
            return Err("[store] claim_ttl_secs must be at least 3".into());
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(
                "[store] url must be a postgres:// URL (postgres://user@host:port/database)".into(),
            );
        }
        let target: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            // The parser's message does not quote the URL.
            format!("[store] url is not a valid PostgreSQL URL: {e}")
        })?;
        if target.get_password().is_some() {
            return Err(
                "[store] url must not hold the password: set password_env or \
                        password_file instead (and change that password, it was written in the \
                        configuration)"
                    .into(),
            );
        }
        if target.get_user().is_none() {
            return Err("[store] url names no user (postgres://user@host:port/database)".into());
        }
        if target.get_dbname().is_none() {
            return Err(
                "[store] url names no database (postgres://user@host:port/database)".into(),
            );
        }
        let password = match (&self.password_env, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err("[store] sets both password_env and password_file: set one".into())
            }
            (Some(v), None) if v.is_empty() => {
                return Err("[store] password_env is empty: name an environment variable".into())
            }
            (Some(v), None) => PasswordSource::Env(v.clone()),
            (None, Some(f)) => PasswordSource::File(f.clone()),
            (None, None) => PasswordSource::None,
        };
        Ok(StoreBackend::Postgres {
            target: Box::new(target),
            password,
        })
    }

    /// Where the store is, for people: the SQLite file, or `postgres user@host:port/database`
    /// (never a password).
    pub fn location(&self) -> String {
        match (&self.url, self.backend()) {
            (None, _) => self.path.display().to_string(),
            (Some(_), Ok(StoreBackend::Postgres { target, .. })) => {
                let host = match target.get_hosts().first() {
                    Some(postgres::config::Host::Tcp(h)) => h.clone(),
                    Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
                    None => "localhost".into(),
                };
                format!(
                    "postgres {}@{host}:{}/{}",
                    target.get_user().unwrap_or("?"),
                    target.get_ports().first().copied().unwrap_or(5432),
                    target.get_dbname().unwrap_or("?")
                )
            }
            (Some(_), _) => "postgres (invalid [store] url)".into(),
        }
    }
}

/// `[audit]`: the audit log, a hash-chained JSON-lines file kept apart from the SQLite database,
/// or the PostgreSQL store's `audit_log` table when `[store] url` is set (see
/// [`crate::store::audit`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The append-only, hash-chained audit log (JSON lines); unused on a PostgreSQL store.
    #[serde(default = "default_audit_path")]
    pub path: PathBuf,
    /// The Ed25519 private key (64 hex digits, `closeout audit keygen`) that signs every record,
    /// the head and evidence manifests. Unset: `$CLOSEOUT_AUDIT_KEY_FILE`, else the key itself in
    /// `$CLOSEOUT_AUDIT_KEY`; with none, records are unsigned (docs/audit.md).
    pub signing_key_file: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            path: default_audit_path(),
            signing_key_file: None,
        }
    }
}

/// How actions are executed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutionConfig {
    /// Attempts per action for retryable and throttled errors (1 = no retry).
    pub max_attempts: u32,
    /// First backoff; doubles per attempt, with full jitter.
    pub base_backoff_ms: u64,
    /// Upper bound of one backoff (a provider's `Retry-After` may be longer and is honoured).
    pub max_backoff_ms: u64,
    /// An action whose previous start was interrupted mid-flight (the process died) is not run
    /// again until this long after that start: a request it had sent may still be being served
    /// (a Key Vault key create takes no idempotency key, so a retry that reads before it lands
    /// would make a second version). 0 disables the wait.
    pub interrupted_settle_secs: u64,
    /// Contain the identity's own accounts as soon as the providers name them, while the whole
    /// resolution goes on (docs/containment.md). Off: nothing is done before the whole plan is
    /// made, and a plan above the blast-radius limit stops with nothing done.
    pub contain_ahead: bool,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            max_attempts: 5,
            base_backoff_ms: 200,
            max_backoff_ms: 20_000,
            interrupted_settle_secs: 20,
            contain_ahead: true,
        }
    }
}

fn default_playbook_dir() -> PathBuf {
    PathBuf::from("playbooks")
}

fn default_store_path() -> PathBuf {
    PathBuf::from(".closeout/closeout.db")
}

fn default_audit_path() -> PathBuf {
    PathBuf::from(".closeout/audit.jsonl")
}

impl Config {
    /// `[audit]` and `[store]` from the file at `path`, reading only those sections: where the
    /// audit log lives (the file, or the PostgreSQL store when `[store] url` is set) needs
    /// neither providers nor a valid source section.
    pub fn audit_and_store(path: &Path) -> Result<(AuditConfig, StoreConfig), ConfigError> {
        #[derive(Deserialize)]
        struct AuditAndStore {
            #[serde(default)]
            audit: AuditConfig,
            #[serde(default)]
            store: StoreConfig,
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let parsed: AuditAndStore = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        parsed
            .store
            .backend()
            .map_err(|message| ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            })?;
        Ok((parsed.audit, parsed.store))
    }

    /// Read, parse and validate (pure checks only; no provider is contacted).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Parse and validate `text` as the configuration file at `path` (`path` only names the file in
    /// errors); [`Config::load`] without the read.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if self.providers.configured().is_empty() {
            let sections: Vec<String> = crate::registry::known()
                .iter()
                .map(|p| format!("[providers.{p}]"))
                .collect();
            return Err(invalid(format!(
                "no provider is configured: add one of the sections {}",
                sections.join(", ")
            )));
        }
        self.providers
            .validate()
            .map_err(|e| invalid(e.to_string()))?;
        self.serve.validate().map_err(|e| invalid(e.to_string()))?;
        self.store.backend().map_err(invalid)?;
        self.rotation
            .policies()
            .map_err(|e| invalid(e.to_string()))?;
        self.rotation
            .validate_strategies()
            .map_err(|e| invalid(e.to_string()))?;
        acceptance::validate(&self.accept_unverified).map_err(|e| invalid(e.to_string()))?;
        self.approvals.validate().map_err(invalid)?;
        self.report.validate().map_err(invalid)?;
        if self.execution.max_attempts == 0 {
            return Err(invalid(
                "[execution] max_attempts must be at least 1".into(),
            ));
        }
        if self.execution.interrupted_settle_secs > 3600 {
            return Err(invalid(
                "[execution] interrupted_settle_secs must be at most 3600".into(),
            ));
        }
        if self.execution.base_backoff_ms > self.execution.max_backoff_ms {
            return Err(invalid(
                "[execution] base_backoff_ms must not exceed max_backoff_ms".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("closeout.toml"), text)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse("[source]\npath = \"hr.csv\"\n[providers.aws]\n").unwrap();
        assert_eq!(c.playbook_dir, PathBuf::from("playbooks"));
        assert_eq!(c.store.path, PathBuf::from(".closeout/closeout.db"));
        assert_eq!(c.execution.max_attempts, 5);
        assert_eq!(c.providers.configured(), vec!["aws"]);
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let err = parse("[source]\npath = \"hr.csv\"\nfoo = 1\n[providers.aws]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("closeout.toml") && err.contains("foo"),
            "{err}"
        );
    }

    #[test]
    fn no_provider_is_an_error() {
        let err = parse("[source]\npath = \"hr.csv\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no provider is configured"), "{err}");
    }

    #[test]
    fn the_store_is_sqlite_or_postgres_never_both_and_never_a_password_in_the_url() {
        let base = "[source]\npath = \"hr.csv\"\n[providers.aws]\n[store]\n";
        let c = parse(&format!("{base}path = \"x/state.db\"\n")).unwrap();
        assert!(
            matches!(c.store.backend(), Ok(StoreBackend::Sqlite(p)) if p == Path::new("x/state.db"))
        );
        let c = parse(&format!(
            "{base}url = \"postgres://closeout@127.0.0.1:5432/closeout\"\npassword_env = \"PGPW\"\n"
        ))
        .unwrap();
        match c.store.backend() {
            Ok(StoreBackend::Postgres { target, password }) => {
                assert_eq!(target.get_user(), Some("closeout"));
                assert_eq!(target.get_dbname(), Some("closeout"));
                assert_eq!(password, PasswordSource::Env("PGPW".into()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.store.claim_ttl_secs, DEFAULT_CLAIM_TTL_SECS);
        for (extra, expected) in [
            (
                "path = \"a.db\"\nurl = \"postgres://u@h/d\"\n",
                "both path (SQLite) and url",
            ),
            (
                "url = \"postgres://u:s3cret-pw@h/d\"\n",
                "must not hold the password",
            ),
            (
                "url = \"postgres://u@h/d\"\npassword_env = \"A\"\npassword_file = \"f\"\n",
                "both password_env and password_file",
            ),
            ("password_env = \"A\"\n", "go with url"),
            ("url = \"mysql://u@h/d\"\n", "postgres:// URL"),
            ("url = \"postgres://h/d\"\n", "no user"),
            (
                "url = \"postgres://u@h/d\"\nclaim_ttl_secs = 1\n",
                "claim_ttl_secs must be at least 3",
            ),
        ] {
            let err = parse(&format!("{base}{extra}")).unwrap_err().to_string();
            assert!(err.contains(expected), "{extra}: {err}");
            assert!(!err.contains("s3cret-pw"), "the password leaked: {err}");
        }
    }

    #[test]
    fn malformed_toml_names_the_file() {
        let err = parse("[source\n").unwrap_err().to_string();
        assert!(err.starts_with("config closeout.toml:"), "{err}");
    }
}

/// Properties over generated configuration text (docs/fuzzing.md; the fuzz target `config_toml`
/// drives [`Config::parse`] with coverage-guided input).
#[cfg(test)]
mod properties {
    use super::*;
    use crate::test_edit::{edited, snippet};
    use proptest::prelude::*;

    const DEMO: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/closeout.toml"
    ));

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("closeout.toml"), text)
    }

    /// A refusal names the file and says what is wrong.
    fn check_refusal(e: &ConfigError) -> Result<(), TestCaseError> {
        let shown = e.to_string();
        prop_assert!(shown.contains("closeout.toml"), "{}", shown);
        prop_assert!(
            matches!(e, ConfigError::Parse { .. } | ConfigError::Invalid { .. }),
            "{:?}",
            e
        );
        Ok(())
    }

    /// An accepted config means the same after TOML re-serialises it (another layout, quoting and
    /// key order): its meaning does not hang on formatting.
    fn check_reformatted(text: &str, config: &Config) -> Result<(), TestCaseError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = toml::to_string(&table).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let reparsed = parse(&again);
        prop_assert!(reparsed.is_ok(), "{:?}\n{}", reparsed.err(), again);
        prop_assert_eq!(format!("{:?}", reparsed.unwrap()), format!("{config:?}"));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any text: a config or a typed error naming the file, never a panic.
        #[test]
        fn any_text_is_parsed_or_refused(text in "[\\PC\n\t]{0,200}") {
            match parse(&text) {
                Ok(config) => check_reformatted(&text, &config)?,
                Err(e) => check_refusal(&e)?,
            }
        }

        /// An edit of the demo config: accepted (and stable under re-serialising) or refused.
        #[test]
        fn edited_configs_are_parsed_or_refused(
            at in any::<prop::sample::Index>(),
            len in 0usize..40,
            kind in any::<u8>(),
            snippet in snippet(),
        ) {
            let text = edited(DEMO, at, len, kind, &snippet);
            match parse(&text) {
                Ok(config) => check_reformatted(&text, &config)?,
                Err(e) => check_refusal(&e)?,
            }
        }

        /// Generated execution limits are accepted exactly when they are consistent, and read back
        /// as written.
        #[test]
        fn execution_limits_read_back(
            attempts in 0u32..20,
            base in 0u64..100_000,
            max in 0u64..100_000,
            dir in "[a-z][a-z0-9/_-]{0,20}",
        ) {
            let text = format!(
                "playbook_dir = {dir:?}\n[source]\npath = \"hr.csv\"\n[providers.aws]\n\
                 [execution]\nmax_attempts = {attempts}\nbase_backoff_ms = {base}\nmax_backoff_ms = {max}\n"
            );
            match parse(&text) {
                Ok(c) => {
                    prop_assert!(attempts >= 1 && base <= max);
                    prop_assert_eq!(c.execution.max_attempts, attempts);
                    prop_assert_eq!(c.execution.base_backoff_ms, base);
                    prop_assert_eq!(c.execution.max_backoff_ms, max);
                    prop_assert_eq!(c.playbook_dir, PathBuf::from(dir));
                    check_reformatted(&text, &parse(&text).unwrap())?;
                }
                Err(e) => {
                    prop_assert!(attempts == 0 || base > max, "{}", e);
                    prop_assert!(matches!(e, ConfigError::Invalid { .. }), "{:?}", e);
                }
            }
        }
    }
}
