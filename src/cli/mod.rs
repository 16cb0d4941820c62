//! Layer 7, the `closeout` command line (DESIGN.md §4): one module per command, each with its
//! arguments and one `run` function that opens the engine, calls it, and renders the result.
//!
//! Architecture invariant: a command parses, calls the engine (or a pure checker), and prints;
//! it holds no run logic. Stdout carries only the requested output (one JSON document with
//! `--format json`); logs, progress and prompts go to stderr.

pub mod apply;
pub mod approve;
pub mod attributes;
pub mod audit;
pub mod doctor;
pub mod evidence;
pub mod global;
pub mod output;
pub mod plan;
pub mod playbook;
pub mod policy;
pub mod prompt;
pub mod reconcile;
pub mod report;
pub mod resolve;
pub mod resume;
pub mod rotate;
pub mod runs;
pub mod serve;
pub mod source;
pub mod store;
pub mod timings;
pub mod verify;

pub use global::{exit, Failure, Format, GlobalArgs, ListFormat, LogFormat};

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "closeout",
    version,
    about = "Credential revocation and rotation orchestrator"
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve and show what the trigger's playbook would do. Changes nothing.
    Plan(plan::PlanArgs),
    /// Run the trigger's playbook for the identity, then verify closure.
    Apply(apply::ApplyArgs),
    /// Show everything bound to the identity, with explained paths.
    Resolve(resolve::ResolveArgs),
    /// Check from live state that nothing bound to the identity is still open.
    Verify(verify::VerifyArgs),
    /// List runs, or show one run's closure report.
    Runs(runs::RunsArgs),
    /// A finished run's closure report; `--format html` (the default) is one self-contained page.
    Report(report::ReportArgs),
    /// Finish an interrupted run without repeating finished actions.
    Resume(resume::ResumeArgs),
    /// Approve a run waiting for approval (audited) and finish it.
    Approve(approve::ApproveArgs),
    /// The hash-chained audit log.
    Audit {
        /// The audit subcommand.
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// A run's signed evidence bundle: export it, or verify one offline.
    Evidence {
        /// The evidence subcommand.
        #[command(subcommand)]
        command: evidence::EvidenceCommand,
    },
    /// Playbook tools.
    Playbook {
        /// The playbook subcommand.
        #[command(subcommand)]
        command: playbook::PlaybookCommand,
    },
    /// The entitlement policy (docs/entitlements.md).
    Policy {
        /// The policy subcommand.
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Authoritative-source tools.
    Source {
        /// The source subcommand.
        #[command(subcommand)]
        command: source::SourceCommand,
    },
    /// The store: `store migrate` copies a SQLite deployment into an empty PostgreSQL store.
    Store {
        /// The store subcommand.
        #[command(subcommand)]
        command: store::StoreCommand,
    },
    /// Look for drift without changing anything: terminated identities whose access is still
    /// usable, NHIs whose owner is gone, unclaimed accounts, policy drift. Exit 3 on drift.
    Reconcile(reconcile::ReconcileArgs),
    /// Scheduled rotation: list what the `[[rotation.policy]]` makes due (exit 3 when something
    /// is due), or with --apply rotate it, one run per identity.
    Rotate(rotate::RotateArgs),
    /// Check the configuration and playbooks, reach every provider, and name the permissions
    /// the playbooks need that the configured credentials lack.
    Doctor(doctor::DoctorArgs),
    /// Run as a service: HR webhooks and SCIM pushes in, playbooks run by workers, read and
    /// approval API, /healthz, /readyz, /metrics (configured by `[serve]`). Stops on SIGTERM.
    Serve,
}

impl Command {
    /// The format the command was asked to print in (for error output).
    pub fn format(&self) -> Format {
        let list = |f: ListFormat| match f {
            ListFormat::Json => Format::Json,
            ListFormat::Text => Format::Text,
        };
        match self {
            Command::Plan(a) => a.format,
            Command::Apply(a) => a.format,
            Command::Resolve(a) => a.format,
            Command::Verify(a) => a.format,
            Command::Runs(a) => a.format,
            Command::Resume(a) => a.format,
            Command::Approve(a) => a.format,
            Command::Reconcile(a) => a.format,
            Command::Policy { command } => command.format(),
            Command::Rotate(a) => list(a.format),
            Command::Doctor(a) => list(a.format),
            Command::Source { command } => list(command.format()),
            Command::Report(a) => match a.format {
                report::ReportFormat::Json => Format::Json,
                _ => Format::Text,
            },
            Command::Audit { .. }
            | Command::Evidence { .. }
            | Command::Playbook { .. }
            | Command::Store { .. }
            | Command::Serve => Format::Text,
        }
    }
}

/// Run one command; returns the exit code on success paths (0, 3, 4).
pub async fn run(cli: &Cli) -> Result<i32, Failure> {
    let global = &cli.global;
    match &cli.command {
        Command::Plan(args) => plan::run(global, args).await,
        Command::Apply(args) => apply::run(global, args).await,
        Command::Resolve(args) => resolve::run(global, args).await,
        Command::Verify(args) => verify::run(global, args).await,
        Command::Runs(args) => runs::run(global, args).await,
        Command::Resume(args) => resume::run(global, args).await,
        Command::Report(args) => report::run(global, args),
        Command::Approve(args) => approve::run(global, args).await,
        Command::Audit { command } => audit::run(global, command),
        Command::Evidence { command } => evidence::run(global, command).await,
        Command::Playbook { command } => Ok(playbook::run(command)),
        Command::Policy { command } => policy::run(global, command).await,
        Command::Source { command } => source::run(global, command),
        Command::Store { command } => store::run(global, command),
        Command::Reconcile(args) => reconcile::run(global, args).await,
        Command::Rotate(args) => rotate::run(global, args).await,
        Command::Doctor(args) => doctor::run(global, args).await,
        Command::Serve => serve::run(global).await,
    }
}
