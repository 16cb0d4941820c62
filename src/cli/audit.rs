//! `closeout audit verify`: check the audit log's hash chain and, with `--public-key`, every
//! record's and the head's signature; `closeout audit keygen`: make a signing key pair. Needs only
//! the config's `[audit] path` (no provider section).

use super::global::{exit, Failure, GlobalArgs};
use super::output::print;
use crate::config::Config;
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
        AuditCommand::Keygen { out } => keygen(out),
    }
}

fn verify(global: &GlobalArgs, public_keys: &[PathBuf]) -> Result<i32, Failure> {
    let path = Config::audit_path(&global.config).map_err(|e| Failure::usage(e.to_string()))?;
    let result = if public_keys.is_empty() {
        crate::store::audit::verify(&path)
    } else {
        let ring = KeyRing::read(public_keys).map_err(|e| Failure::usage(e.to_string()))?;
        crate::store::audit::verify_signed(&path, &ring)
    };
    match result {
        Ok(report) => {
            print(&format!("{}: {}\n", path.display(), report));
            Ok(exit::OK)
        }
        Err(e) => Err(Failure::error(format!(
            "audit log {} failed verification: {e}",
            path.display()
        ))),
    }
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
