//! `closeout store migrate --to-url postgres://user@host:port/db [--password-env VAR |
//! --password-file PATH]`: copy the config's SQLite store (`[store] path`), its audit log file
//! (`[audit] path`) and the HR export's last snapshot into an empty PostgreSQL store, in one
//! transaction (`crate::store::migrate`); docs/serve.md, "Migrating from SQLite".

use super::global::{exit, Failure, GlobalArgs};
use super::output::print;
use crate::config::{Config, PasswordSource, StoreConfig};
use crate::store::migrate::{migrate as copy_store, SnapshotFile};
use crate::store::pg::PgStore;
use crate::store::snapshot::SourceSnapshot;
use clap::{ArgGroup, Subcommand};
use std::path::PathBuf;

/// The store subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy this config's SQLite store and audit log file into an empty PostgreSQL store, all
    /// or nothing; refuses a non-empty target and a store in use (stop `serve` first).
    #[command(group(ArgGroup::new("password").args(["password_env", "password_file"])))]
    Migrate {
        /// The PostgreSQL store: postgres://user@host:port/database (no password in it).
        #[arg(long, value_name = "URL")]
        to_url: String,
        /// The environment variable holding the PostgreSQL password.
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
        /// The file holding the PostgreSQL password (its first line).
        #[arg(long, value_name = "PATH")]
        password_file: Option<PathBuf>,
    },
}

/// Run a store subcommand.
pub fn run(global: &GlobalArgs, command: &StoreCommand) -> Result<i32, Failure> {
    match command {
        StoreCommand::Migrate {
            to_url,
            password_env,
            password_file,
        } => {
            let password = match (password_env, password_file) {
                (Some(var), _) => PasswordSource::Env(var.clone()),
                (None, Some(file)) => PasswordSource::File(file.clone()),
                (None, None) => PasswordSource::None,
            };
            migrate(global, to_url, password)
        }
    }
}

/// `store migrate`: refuse a config already on PostgreSQL, open (and so migrate) the target,
/// copy, and print what was copied and what to do next.
fn migrate(global: &GlobalArgs, to_url: &str, password: PasswordSource) -> Result<i32, Failure> {
    let config = Config::load(&global.config).map_err(|e| Failure::usage(e.to_string()))?;
    if config.store.url.is_some() {
        return Err(Failure::usage(
            "this config's [store] is already PostgreSQL (url): `store migrate` copies from the \
             SQLite store at [store] path",
        ));
    }
    let target = StoreConfig::postgres(to_url, password);
    target
        .backend()
        .map_err(|e| Failure::usage(format!("--to-url: {e}")))?;
    let snapshot = match SourceSnapshot::beside(&config.store.path, &config.source.path) {
        SourceSnapshot::File(path) => Some(SnapshotFile {
            path,
            name: config
                .source
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| config.source.path.display().to_string()),
        }),
        SourceSnapshot::Postgres { .. } => None,
    };
    let (sqlite, audit) = (config.store.path.clone(), config.audit.path.clone());
    let result = crate::store::blocking::on_plain_thread(|| {
        let store = PgStore::open(&target).map_err(|e| Failure::usage(e.to_string()))?;
        copy_store(&sqlite, &audit, snapshot.as_ref(), &store).map_err(|e| {
            let message = format!("store migrate: nothing was copied: {e}");
            if e.is_refusal() {
                Failure::usage(message)
            } else {
                Failure::error(message)
            }
        })
    })?;
    let mut out = format!(
        "copied {} (SQLite) and {} (audit log) into PostgreSQL {} in one transaction:\n",
        sqlite.display(),
        audit.display(),
        result.target
    );
    for (table, rows) in &result.tables {
        out.push_str(&format!("  {table:<16} {rows} row(s)\n"));
    }
    out.push_str(&format!(
        "  {:<16} {} record(s), the chain verified in PostgreSQL before commit\n",
        "audit_log", result.audit_records
    ));
    if result.snapshot {
        out.push_str(&format!(
            "  {:<16} the HR export's last snapshot\n",
            "source_snapshot"
        ));
    }
    out.push_str(&format!(
        "\nThe SQLite file and the audit log file are left in place, unchanged: keep them as an \
         archive and do not run Closeout on them again.\nNext steps:\n  1. in {}, replace \
         [store] path with url = \"{to_url}\" and password_env or password_file\n  2. check: \
         closeout audit verify (reads the chain from PostgreSQL now)\n  3. start closeout serve, \
         on as many replicas as you need (docs/serve.md, \"Deployment\")\n",
        global.config.display()
    ));
    print(&out);
    Ok(exit::OK)
}
