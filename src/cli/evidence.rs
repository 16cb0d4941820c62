//! `closeout evidence export RUN -o DIR|FILE.tar.gz`: a finished run's signed evidence bundle;
//! `closeout evidence verify BUNDLE --public-key FILE`: check one offline (no configuration, no
//! provider, no database: only the bundle and the public keys).

use super::global::{exit, Failure, GlobalArgs, ListFormat};
use super::output::{print, print_json};
use crate::engine::Engine;
use crate::pipeline::evidence::{self, Bundle};
use crate::store::signing::KeyRing;
use clap::Subcommand;
use std::path::PathBuf;

/// The evidence subcommands.
#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Write a finished run's evidence bundle, its manifest signed with the audit key.
    Export {
        /// The run id.
        run: String,
        /// A new directory, or FILE.tar.gz.
        #[arg(short = 'o', long = "out", value_name = "DIR|FILE.tar.gz")]
        out: PathBuf,
    },
    /// Check a bundle offline and explain every mismatch (exit 1 when it does not verify).
    Verify {
        /// The bundle: a directory or a .tar.gz.
        bundle: PathBuf,
        /// A trusted audit public key file; repeat for several (key rotation).
        #[arg(long = "public-key", value_name = "FILE", required = true)]
        public_keys: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
}

/// Run an evidence subcommand.
pub async fn run(global: &GlobalArgs, command: &EvidenceCommand) -> Result<i32, Failure> {
    match command {
        EvidenceCommand::Export { run, out } => {
            let engine = Engine::open(&global.config)?;
            let bundle = engine.evidence(run).await?;
            bundle
                .write(out)
                .map_err(|e| Failure::usage(e.to_string()))?;
            print(&format!(
                "evidence bundle of run {run}: {} ({} files)\n",
                out.display(),
                bundle.names().len()
            ));
            Ok(exit::OK)
        }
        EvidenceCommand::Verify {
            bundle,
            public_keys,
            format,
        } => {
            let keys = KeyRing::read(public_keys).map_err(|e| Failure::usage(e.to_string()))?;
            let read = Bundle::read(bundle).map_err(|e| Failure::usage(e.to_string()))?;
            let verdict = evidence::verify(&read, &keys);
            match format {
                ListFormat::Json => print_json(&serde_json::json!({
                    "bundle": bundle,
                    "run": verdict.run,
                    "valid": verdict.is_valid(),
                    "checks": verdict.checks,
                })),
                ListFormat::Text => print(&verdict.render_text()),
            }
            Ok(if verdict.is_valid() {
                exit::OK
            } else {
                exit::ERROR
            })
        }
    }
}
