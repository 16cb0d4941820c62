//! `closeout apply TRIGGER --identity ID`: show the plan, ask (unless `--yes`), run it, verify,
//! print the closure report.

use super::attributes::parse_to;
use super::global::{Failure, Format, GlobalArgs};
use super::output::{print_report, report_code};
use super::prompt::ask_to_apply;
use crate::engine::{ApplyOptions, Engine};
use crate::pipeline::plan::Plan;
use crate::pipeline::progress::Progress;
use crate::trigger::Trigger;
use clap::Args;
use closeout_contract::reuse::{self, Reuse};

/// Arguments of `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// leaver, mover, joiner, incident or rotation.
    pub trigger: Trigger,
    /// The identity's id or email in the source.
    #[arg(long)]
    pub identity: String,
    /// New attributes for a mover (KEY=VALUE).
    #[arg(long = "to")]
    pub to: Vec<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Act on an identity tagged `protected` (audited).
    #[arg(long)]
    pub override_protected: bool,
    /// Confirm a plan larger than the playbook's blast-radius limit: the exact action count.
    #[arg(long)]
    pub confirm_actions: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Verify by reading every object of every provider again, as a first resolution does,
    /// instead of reusing what the run's resolution read where a provider can prove it
    /// unchanged (what each provider re-reads: its README, e.g. providers/vault/README.md,
    /// "What a verification reads again").
    #[arg(long)]
    pub thorough: bool,
}

/// Apply and print the report; the exit code is the report's.
pub async fn run(global: &GlobalArgs, args: &ApplyArgs) -> Result<i32, Failure> {
    let to = parse_to(&args.to)?;
    let engine = Engine::open(&global.config)?;
    let options = ApplyOptions {
        yes: args.yes,
        override_protected: args.override_protected,
        confirm_actions: args.confirm_actions,
        to,
        ..ApplyOptions::default()
    };
    let mut confirm = |plan: &Plan| ask_to_apply(plan);
    let mode = if args.thorough {
        Reuse::Never
    } else {
        Reuse::Fresh
    };
    let report = reuse::scope(
        mode,
        engine.apply(
            args.trigger,
            &args.identity,
            &options,
            &mut confirm,
            &Progress::auto(),
        ),
    )
    .await?;
    print_report(&report, args.format);
    Ok(report_code(&report))
}
