//! `closeout plan TRIGGER --identity ID [--to K=V...]`: what the trigger's playbook would do.
//! Changes nothing.

use super::attributes::parse_to;
use super::global::{exit, Failure, Format, GlobalArgs};
use super::output::{print, print_json};
use crate::engine::Engine;
use crate::trigger::Trigger;
use clap::Args;

/// Arguments of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// leaver, mover, joiner, incident or rotation.
    pub trigger: Trigger,
    /// The identity's id or email in the source.
    #[arg(long)]
    pub identity: String,
    /// New attributes for a mover (KEY=VALUE).
    #[arg(long = "to")]
    pub to: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Resolve, plan and print.
pub async fn run(global: &GlobalArgs, args: &PlanArgs) -> Result<i32, Failure> {
    let to = parse_to(&args.to)?;
    let engine = Engine::open(&global.config)?;
    let planned = engine.plan(args.trigger, &args.identity, &to).await?;
    if planned.plan.identity.is_protected() {
        eprintln!(
            "note: {} is protected; `apply` refuses it without --override-protected (audited)",
            planned.plan.identity.id
        );
    }
    match args.format {
        Format::Json => print_json(&planned.plan),
        _ => print(&planned.plan.render_text()),
    }
    Ok(exit::OK)
}
