//! `closeout approve RUN`: approve a run waiting for approval (audited) and finish it.

use super::global::{Failure, Format, GlobalArgs};
use super::output::{print_report, report_code};
use crate::engine::Engine;
use crate::pipeline::progress::Progress;
use clap::Args;

/// Arguments of `approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The run id.
    pub run: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Approve, finish and print the report.
pub async fn run(global: &GlobalArgs, args: &ApproveArgs) -> Result<i32, Failure> {
    let engine = Engine::open(&global.config)?;
    let report = engine.approve(&args.run, &Progress::auto()).await?;
    print_report(&report, args.format);
    Ok(report_code(&report))
}
