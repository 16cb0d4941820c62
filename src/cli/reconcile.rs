//! `closeout reconcile`: drift without changes — terminated identities whose access is still
//! usable, NHIs whose owner is gone, accounts no identity claims, policy drift. Exit 3 on drift.

use super::global::{exit, Failure, Format, GlobalArgs};
use super::output::{print, print_json};
use crate::engine::Engine;
use clap::Args;

/// Arguments of `reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Reconcile and print.
pub async fn run(global: &GlobalArgs, args: &ReconcileArgs) -> Result<i32, Failure> {
    let engine = Engine::open(&global.config)?;
    let report = crate::engine::reconcile::reconcile(&engine).await?;
    match args.format {
        Format::Json => print_json(&report),
        _ => print(&report.render_text()),
    }
    Ok(if report.drift.is_empty() {
        exit::OK
    } else {
        exit::OPEN
    })
}
