//! `closeout approve RUN`: approve a run waiting for approval (audited) and, once it has as many
//! distinct approvers as it requires, finish it. With `[[approvals.approver]]` configured the
//! approval is signed with the approver's own key (`--key`); without, the approver is the
//! operating-system user. Nobody approves a run they started.

use super::global::{Failure, Format, GlobalArgs};
use super::output::{print_report, report_code};
use crate::engine::Engine;
use crate::pipeline::progress::Progress;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The run id.
    pub run: String,
    /// The approver's Ed25519 private key (64 hex digits): signs the approval; its public half
    /// must be an approver's `public_key_file`.
    #[arg(long, value_name = "FILE", env = "CLOSEOUT_APPROVER_KEY_FILE")]
    pub key: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Approve, finish and print the report.
pub async fn run(global: &GlobalArgs, args: &ApproveArgs) -> Result<i32, Failure> {
    let engine = Engine::open(&global.config)?;
    let approver = engine.cli_approver(&args.run, args.key.as_deref())?;
    let report = engine
        .approve(&args.run, &approver, &Progress::auto())
        .await?;
    print_report(&report, args.format);
    Ok(report_code(&report))
}
