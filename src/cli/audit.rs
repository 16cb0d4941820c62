//! `closeout audit verify`: check the audit log's hash chain. Needs only the config's
//! `[audit] path` (no provider section).

use super::global::{exit, Failure, GlobalArgs};
use super::output::print;
use crate::config::Config;
use clap::Subcommand;

/// The audit subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the chain: detects edited, reordered or deleted records.
    Verify,
}

/// Run an audit subcommand.
pub fn run(global: &GlobalArgs, command: &AuditCommand) -> Result<i32, Failure> {
    match command {
        AuditCommand::Verify => verify(global),
    }
}

fn verify(global: &GlobalArgs) -> Result<i32, Failure> {
    let path = Config::audit_path(&global.config).map_err(|e| Failure::usage(e.to_string()))?;
    match crate::store::audit::verify(&path) {
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
