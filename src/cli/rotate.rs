//! `closeout rotate`: with `--due`, list what the `[[rotation.policy]]` entries make due (exit 3
//! when something is due), or with `--apply` rotate it (one `rotation` run per identity); with
//! `--identity ID` and no `--due`, rotate on demand everything the rotation playbook selects for
//! that identity.

use super::global::{exit, Failure, Format, GlobalArgs, ListFormat};
use super::output::{print, print_json, report_code};
use super::prompt::ask_to_apply;
use crate::engine::{ApplyOptions, Engine};
use crate::pipeline::plan::Plan;
use crate::pipeline::progress::Progress;
use crate::trigger::Trigger;
use clap::Args;

/// Arguments of `rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Select what the rotation policy makes due (by age or expiry).
    #[arg(long)]
    pub due: bool,
    /// Only this identity (with `--due`: default every active identity; without `--due`:
    /// rotate everything the rotation playbook selects for it, due or not).
    #[arg(long)]
    pub identity: Option<String>,
    /// Rotate (journaled, audited `rotation` runs); without it, only list.
    #[arg(long)]
    pub apply: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

/// List or rotate; the exit code is the worst seen.
pub async fn run(global: &GlobalArgs, args: &RotateArgs) -> Result<i32, Failure> {
    let engine = Engine::open(&global.config)?;
    match (args.due, &args.identity) {
        (true, identity) => due(&engine, identity.as_deref(), args).await,
        (false, Some(identity)) => on_demand(&engine, identity, args).await,
        (false, None) => Err(Failure::usage(
            "say what to rotate: --due (what the rotation policy makes due) or --identity ID (everything the rotation playbook selects for one identity)",
        )),
    }
}

async fn due(engine: &Engine, identity: Option<&str>, args: &RotateArgs) -> Result<i32, Failure> {
    let due = crate::engine::rotation::due(engine, identity).await?;
    if !args.apply {
        match args.format {
            ListFormat::Json => print_json(&due),
            ListFormat::Text => print(&due.render_text()),
        }
        return Ok(if due.due_count() > 0 {
            exit::OPEN
        } else {
            exit::OK
        });
    }
    if args.format == ListFormat::Text {
        print(&due.render_text());
    }
    let mut confirm = |plan: &Plan| ask_to_apply(plan);
    let runs = engine
        .rotate_due(&due, args.yes, &mut confirm, &Progress::auto())
        .await;
    let mut code = exit::OK;
    let mut entries = Vec::new();
    for run in runs {
        let (this, entry) = match run.result {
            Ok(report) => {
                if args.format == ListFormat::Text {
                    print(&format!(
                        "{}: run {} {}\n",
                        run.identity, report.run, report.status
                    ));
                }
                (
                    report_code(&report),
                    serde_json::json!({"identity": run.identity, "run": report.run, "status": report.status}),
                )
            }
            Err(e) => {
                eprintln!("error: {}: {e}", run.identity);
                (
                    e.exit_code(),
                    serde_json::json!({"identity": run.identity, "error": e.to_string()}),
                )
            }
        };
        entries.push(entry);
        code = exit::worst(code, this);
    }
    if args.format == ListFormat::Json {
        print_json(&serde_json::json!({ "due": due, "runs": entries }));
    }
    Ok(code)
}

async fn on_demand(engine: &Engine, identity: &str, args: &RotateArgs) -> Result<i32, Failure> {
    let format = match args.format {
        ListFormat::Json => Format::Json,
        ListFormat::Text => Format::Text,
    };
    if !args.apply {
        let planned = engine
            .plan(Trigger::Rotation, identity, &Default::default())
            .await?;
        match format {
            Format::Json => print_json(&planned.plan),
            _ => print(&planned.plan.render_text()),
        }
        return Ok(exit::OK);
    }
    let options = ApplyOptions {
        yes: args.yes,
        ..ApplyOptions::default()
    };
    let mut confirm = |plan: &Plan| ask_to_apply(plan);
    let report = engine
        .apply(
            Trigger::Rotation,
            identity,
            &options,
            &mut confirm,
            &Progress::auto(),
        )
        .await?;
    super::output::print_report(&report, format);
    Ok(report_code(&report))
}
