//! `closeout audit verify`: check the audit log's hash chain and, with `--public-key`, every
//! record's and the head's signature; `closeout audit export`: print its records as JSON lines;
//! `closeout audit keygen`: make a signing key pair. Verify and export need only the config's
//! `[audit]` and `[store]` sections (no provider section): the log is the file at `[audit] path`,
//! or the PostgreSQL store's `audit_log` table when `[store] url` is set.

use super::global::{exit, Failure, GlobalArgs};
use super::output::print;
use crate::config::Config;
use crate::store::audit::AuditLog;
use crate::store::signing::{KeyRing, PrivateKey};
use clap::Subcommand;
use std::path::PathBuf;

/// The audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the chain: detects edited, reordered, deleted, appended or truncated records and,
    /// with --public-key, a re-chained log (hashes recomputed after an edit).
    Verify {
        /// A trusted Ed25519 public key file (64 hex digits); repeat for every key the log was
        /// signed with over time (key rotation). Without one, signatures are not checked.
        #[arg(long = "public-key", value_name = "FILE")]
        public_keys: Vec<PathBuf>,
    },
    /// Print every record, in order, as JSON lines exactly as stored (the file's lines, or the
    /// PostgreSQL table's rows): the same text `audit verify` checks and anyone can re-hash.
    Export,
    /// Make an Ed25519 key pair: FILE (the private key, mode 0600) and FILE.pub.
    Keygen {
        /// Where to write the private key; never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Run an audit subcommand.
pub fn run(global: &GlobalArgs, command: &AuditCommand) -> Result<i32, Failure> {
    match command {
        AuditCommand::Verify { public_keys } => verify(global, public_keys),
        AuditCommand::Export => export(global),
        AuditCommand::Keygen { out } => keygen(out),
    }
}

/// The configured log (file or table).
fn open(global: &GlobalArgs) -> Result<AuditLog, Failure> {
    let (audit, store) =
        Config::audit_and_store(&global.config).map_err(|e| Failure::usage(e.to_string()))?;
    AuditLog::for_store(&audit, &store).map_err(|e| Failure::error(e.to_string()))
}

fn verify(global: &GlobalArgs, public_keys: &[PathBuf]) -> Result<i32, Failure> {
    let ring = if public_keys.is_empty() {
        None
    } else {
        Some(KeyRing::read(public_keys).map_err(|e| Failure::usage(e.to_string()))?)
    };
    let log = open(global)?;
    match log.verify(ring.as_ref()) {
        Ok(report) => {
            print(&format!("{}: {}\n", log.name(), report));
            Ok(exit::OK)
        }
        Err(e) => Err(Failure::error(format!(
            "audit log {} failed verification: {e}",
            log.name()
        ))),
    }
}

fn export(global: &GlobalArgs) -> Result<i32, Failure> {
    let log = open(global)?;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    log.export(&mut out)
        .map_err(|e| Failure::error(e.to_string()))?;
    Ok(exit::OK)
}

fn keygen(out: &std::path::Path) -> Result<i32, Failure> {
    let key = PrivateKey::generate();
    let public = key
        .write_pair(out)
        .map_err(|e| Failure::error(e.to_string()))?;
    print(&format!(
        "key id {}\nprivate key: {} (keep it secret; [audit] signing_key_file)\npublic key:  {} (give it to auditors: audit verify --public-key)\n",
        key.id(),
        out.display(),
        public.display()
    ));
    Ok(exit::OK)
}
