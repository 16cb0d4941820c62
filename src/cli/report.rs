//! `closeout report RUN [--format html|json|text|markdown] [-o FILE]`: a finished run's closure
//! report; `html` is one self-contained page (inline styles, script and SVG graphs; no network
//! fetch) to open in a browser.

use super::global::{exit, Failure, GlobalArgs};
use super::output::print;
use crate::engine::Engine;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// The report's formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One self-contained HTML page.
    Html,
    /// The stored JSON report.
    Json,
    /// Text for a terminal.
    Text,
    /// Markdown.
    Markdown,
}

/// Arguments of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run id.
    pub run: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Render and print (or write) the report.
pub fn run(global: &GlobalArgs, args: &ReportArgs) -> Result<i32, Failure> {
    let engine = Engine::open(&global.config)?;
    let text = match args.format {
        ReportFormat::Html => engine.html_report(&args.run)?,
        other => {
            let (_, report) = engine.run_report(&args.run)?;
            let report = report.ok_or_else(|| {
                Failure::usage(format!(
                    "run {} has no closure report yet (it is unfinished)",
                    args.run
                ))
            })?;
            match other {
                ReportFormat::Json => {
                    let mut t = serde_json::to_string_pretty(&report)
                        .map_err(|e| Failure::error(e.to_string()))?;
                    t.push('\n');
                    t
                }
                ReportFormat::Markdown => report.render_markdown(),
                _ => report.render_text(),
            }
        }
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| {
                Failure::error(format!("cannot write {}: {}", path.display(), e.kind()))
            })?;
            eprintln!("report of run {} written to {}", args.run, path.display());
        }
        None => print(&text),
    }
    Ok(exit::OK)
}
