//! `closeout verify --identity ID`: closure from live state, without a run.

use super::global::{exit, Failure, Format, GlobalArgs};
use super::output::{print, print_json, render_verification};
use crate::engine::Engine;
use clap::Args;

/// Arguments of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The identity's id or email in the source.
    #[arg(long)]
    pub identity: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Verify and print; exit 3 when anything is open.
pub async fn run(global: &GlobalArgs, args: &VerifyArgs) -> Result<i32, Failure> {
    let engine = Engine::open(&global.config)?;
    let v = engine.verify_identity(&args.identity).await?;
    match args.format {
        Format::Json => print_json(&serde_json::json!({
            "identity": args.identity,
            "status": if v.is_closed() { "closed" } else { "open" },
            "open": v.open,
            "accepted": v.accepted,
        })),
        _ => print(&render_verification(&args.identity, &v)),
    }
    Ok(if v.is_closed() { exit::OK } else { exit::OPEN })
}
