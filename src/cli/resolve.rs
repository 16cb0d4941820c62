//! `closeout resolve --identity ID`: everything bound to the identity, with explained paths.

use super::global::{exit, Failure, Format, GlobalArgs};
use super::output::{print, print_json, render_graph};
use crate::engine::Engine;
use clap::Args;

/// Arguments of `resolve`.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The identity's id or email in the source.
    #[arg(long)]
    pub identity: String,
    /// Output format (`dot` for Graphviz).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Resolve and print.
pub async fn run(global: &GlobalArgs, args: &ResolveArgs) -> Result<i32, Failure> {
    let engine = Engine::open(&global.config)?;
    let graph = engine.resolve(&args.identity).await?;
    match args.format {
        Format::Json => print_json(&graph),
        Format::Dot => print(&graph.to_dot()),
        _ => print(&render_graph(&graph)),
    }
    Ok(exit::OK)
}
