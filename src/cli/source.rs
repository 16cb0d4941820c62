//! `closeout source diff OLD NEW [--submit]`: two HR exports as joiner, mover and leaver events;
//! with `--submit`, stored in the durable queue (the only write).

use super::global::{exit, Failure, GlobalArgs, ListFormat};
use super::output::{print, print_json};
use crate::config::Config;
use crate::engine::EngineError;
use crate::store::queue::EventQueue;
use clap::Subcommand;
use std::path::{Path, PathBuf};

/// The source subcommands.
#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Diff two HR exports into joiner, mover and leaver events (docs/serve.md, "Intake").
    /// Writes nothing unless --submit.
    Diff {
        /// The earlier export (.csv or .json).
        old: PathBuf,
        /// The later export (.csv or .json).
        new: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
        /// Enqueue the events in the durable queue at the config's [store] path; a second
        /// submit of the same diff stores nothing (duplicates).
        #[arg(long)]
        submit: bool,
    },
}

impl SourceCommand {
    /// The output format asked for.
    pub fn format(&self) -> ListFormat {
        match self {
            SourceCommand::Diff { format, .. } => *format,
        }
    }
}

/// Run a source subcommand.
pub fn run(global: &GlobalArgs, command: &SourceCommand) -> Result<i32, Failure> {
    match command {
        SourceCommand::Diff {
            old,
            new,
            format,
            submit,
        } => diff(global, old, new, *format, *submit),
    }
}

fn diff(
    global: &GlobalArgs,
    old: &Path,
    new: &Path,
    format: ListFormat,
    submit: bool,
) -> Result<i32, Failure> {
    let now = chrono::Utc::now();
    let diff = crate::intake::diff::diff_files(old, new, now)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let mut submitted = None;
    if submit {
        // Loading the config is pure: no provider is contacted for a diff.
        let config = Config::load(&global.config).map_err(EngineError::from)?;
        let events: Vec<_> = diff.events.iter().map(|e| e.event.clone()).collect();
        let store = &config.store;
        // The PostgreSQL client blocks on a runtime of its own: not on this command's thread.
        let counts = crate::store::blocking::on_plain_thread(move || {
            EventQueue::open_config(store)?.submit_all(&events, now)
        })
        .map_err(|e| Failure::error(e.to_string()))?;
        submitted = Some((counts, config.store.location()));
    }
    match format {
        ListFormat::Json => {
            let mut doc = serde_json::json!({
                "old": old,
                "new": new,
                "new_sha256": diff.new_sha256,
                "events": diff.events,
                "warnings": diff.warnings,
            });
            if let Some((c, path)) = &submitted {
                doc["submitted"] =
                    serde_json::json!({"new": c.new, "duplicates": c.duplicates, "store": path});
            }
            print_json(&doc);
        }
        ListFormat::Text => {
            let mut out = diff.render_text();
            if let Some((c, path)) = &submitted {
                out.push_str(&format!(
                    "submitted {} event(s) to {}: {} new, {} duplicate(s)\n",
                    diff.events.len(),
                    path,
                    c.new,
                    c.duplicates
                ));
            }
            print(&out);
        }
    }
    Ok(exit::OK)
}
