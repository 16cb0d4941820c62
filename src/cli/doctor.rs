//! `closeout doctor`: check the configuration and playbooks, reach every provider, and name
//! the permissions the playbooks need that the configured credentials lack.
//!
//! Exit codes: 0 all good; 1 a provider is unreachable; 2 bad configuration or playbook; 3
//! reachable, but some needed permission is missing or could not be checked.

use super::global::{exit, Failure, GlobalArgs, ListFormat};
use super::output::{print, print_json};
use crate::engine::Engine;
use clap::Args;

/// Arguments of `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

/// Check and print.
pub async fn run(global: &GlobalArgs, args: &DoctorArgs) -> Result<i32, Failure> {
    let engine = Engine::open(&global.config)?;
    let report = engine.doctor().await?;
    match args.format {
        ListFormat::Json => print_json(&report),
        ListFormat::Text => print(&report.render_text()),
    }
    Ok(if report.unreachable() {
        exit::ERROR
    } else if report.all_good() {
        exit::OK
    } else {
        exit::OPEN
    })
}
