//! `closeout playbook check FILE...`: validate playbooks; every problem as FILE:LINE:COL.

use super::global::exit;
use super::output::print;
use clap::Subcommand;
use std::path::PathBuf;

/// The playbook subcommands.
#[derive(Debug, Subcommand)]
pub enum PlaybookCommand {
    /// Validate playbook files; errors name the file, line and problem.
    Check {
        /// The playbook files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Run a playbook subcommand.
pub fn run(command: &PlaybookCommand) -> i32 {
    match command {
        PlaybookCommand::Check { files } => check(files),
    }
}

fn check(files: &[PathBuf]) -> i32 {
    let diagnostics = crate::policy::playbook::check_files(files, crate::registry::CAPABILITIES);
    if diagnostics.is_empty() {
        for f in files {
            print(&format!("{}: ok\n", f.display()));
        }
        exit::OK
    } else {
        for d in &diagnostics {
            eprintln!("{d}");
        }
        exit::USAGE
    }
}
