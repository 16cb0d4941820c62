//! `closeout policy check [FILE]` and `closeout policy explain --identity ID [--to K=V...]`.

use super::attributes::parse_to;
use super::global::{exit, Failure, Format, GlobalArgs};
use super::output::{print, print_json};
use crate::config::Config;
use crate::engine::{Engine, EngineError};
use clap::Subcommand;
use std::path::{Path, PathBuf};

/// The policy subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate an entitlement policy file (default: the config's `[policy] entitlements`);
    /// errors name the file, line and problem.
    Check {
        /// The policy file.
        file: Option<PathBuf>,
    },
    /// For each entitlement the identity should hold, the rule that grants it; for each live
    /// entitlement, the rule that justifies it or "none". Exit 3 when they differ.
    Explain {
        /// The identity's id or email in the source.
        #[arg(long)]
        identity: String,
        /// Explain for a mover's new attributes (KEY=VALUE).
        #[arg(long = "to")]
        to: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

impl PolicyCommand {
    /// The output format asked for.
    pub fn format(&self) -> Format {
        match self {
            PolicyCommand::Explain { format, .. } => *format,
            PolicyCommand::Check { .. } => Format::Text,
        }
    }
}

/// Run a policy subcommand.
pub async fn run(global: &GlobalArgs, command: &PolicyCommand) -> Result<i32, Failure> {
    match command {
        PolicyCommand::Check { file } => check(global, file.as_deref()),
        PolicyCommand::Explain {
            identity,
            to,
            format,
        } => explain(global, identity, to, *format).await,
    }
}

/// The file given, else the config's; every diagnostic on stderr.
fn check(global: &GlobalArgs, file: Option<&Path>) -> Result<i32, Failure> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => {
            let config = Config::load(&global.config).map_err(EngineError::from)?;
            config.policy.entitlements.ok_or_else(|| {
                Failure::usage(format!(
                    "no policy file given and {} has no `[policy] entitlements`",
                    global.config.display()
                ))
            })?
        }
    };
    match crate::policy::entitlements::policy::load(&path, crate::registry::CAPABILITIES) {
        Ok(policy) => {
            let grants: usize = policy.rules.iter().map(|r| r.grants.len()).sum();
            print(&format!(
                "{}: ok ({} rules, {grants} grants)",
                path.display(),
                policy.rules.len()
            ));
            Ok(exit::OK)
        }
        Err(e) => Err(Failure::usage(e.to_string())),
    }
}

async fn explain(
    global: &GlobalArgs,
    identity: &str,
    to: &[String],
    format: Format,
) -> Result<i32, Failure> {
    let to = parse_to(to)?;
    let engine = Engine::open(&global.config)?;
    let explanation = engine.explain(identity, &to).await?;
    match format {
        Format::Json => print_json(&explanation),
        _ => print(&explanation.render_text()),
    }
    Ok(if explanation.conforms() {
        exit::OK
    } else {
        exit::OPEN
    })
}
