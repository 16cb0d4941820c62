//! `closeout runs [list | show RUN]`: the journal's runs, or one run's closure report.

use super::global::{exit, Failure, Format, GlobalArgs};
use super::output::{
    print, print_json, print_report, render_verification, report_code, run_summary,
};
use crate::engine::{Engine, EngineError};
use clap::{Args, Subcommand};

/// Arguments of `runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// `list` (the default) or `show RUN`.
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    pub format: Format,
}

/// What `runs` shows.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// The most recent runs.
    List {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One run's closure report.
    Show {
        /// The run id.
        run: String,
    },
}

/// List runs or show one.
pub async fn run(global: &GlobalArgs, args: &RunsArgs) -> Result<i32, Failure> {
    let engine = Engine::open(&global.config)?;
    match &args.command {
        None => list(&engine, 50, args.format),
        Some(RunsCommand::List { limit }) => list(&engine, *limit, args.format),
        Some(RunsCommand::Show { run }) => show(&engine, run, args.format).await,
    }
}

fn list(engine: &Engine, limit: usize, format: Format) -> Result<i32, Failure> {
    let runs = engine.journal.runs(limit).map_err(EngineError::from)?;
    match format {
        Format::Json => print_json(&runs.iter().map(run_summary).collect::<Vec<_>>()),
        _ => {
            let mut out = String::new();
            for r in &runs {
                out.push_str(&format!(
                    "{}  {:<9} {:<10} {:<17} {}\n",
                    r.id,
                    r.trigger,
                    r.identity,
                    r.status.as_str(),
                    r.created_at.to_rfc3339()
                ));
            }
            print(&out);
        }
    }
    Ok(exit::OK)
}

/// A finished run's closure report; for an unfinished one, its closure verified live now (the
/// same verification the report will hold), which is never "closed" while the run is unfinished.
async fn show(engine: &Engine, run: &str, format: Format) -> Result<i32, Failure> {
    let (record, report) = engine.run_report(run)?;
    if let Some(report) = report {
        print_report(&report, format);
        return Ok(report_code(&report));
    }
    let v = engine.verify_run(run).await?;
    match format {
        Format::Json => {
            let mut doc = run_summary(&record);
            doc["live"] = serde_json::json!({
                "status": if v.is_closed() { "closed" } else { "open" },
                "open": v.open,
                "accepted": v.accepted,
            });
            print_json(&doc);
        }
        _ => print(&format!(
            "run {}: {} — no closure report yet (`closeout resume {}` finishes it); live now:\n{}",
            record.id,
            record.status.as_str(),
            record.id,
            render_verification(&record.identity, &v)
        )),
    }
    Ok(exit::OPEN)
}
