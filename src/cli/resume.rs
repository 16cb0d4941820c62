//! `closeout resume RUN`: finish an interrupted run without repeating finished actions.

use super::global::{Failure, Format, GlobalArgs};
use super::output::{print_report, report_code};
use crate::engine::Engine;
use crate::pipeline::progress::Progress;
use clap::Args;

/// Arguments of `resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run id.
    pub run: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Resume and print the report.
pub async fn run(global: &GlobalArgs, args: &ResumeArgs) -> Result<i32, Failure> {
    let engine = Engine::open(&global.config)?;
    let report = engine.resume(&args.run, &Progress::auto()).await?;
    print_report(&report, args.format);
    Ok(report_code(&report))
}
