//! The `closeout` command line (DESIGN.md §4). Parsing and output only: the work is done by
//! [`crate::engine::Engine`].

use crate::engine::{ApplyOptions, Engine, EngineError};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::report::ClosureReport;
use clap::{Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "closeout",
    version,
    about = "Credential revocation and rotation orchestrator"
)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(
        long,
        short,
        global = true,
        env = "CLOSEOUT_CONFIG",
        default_value = "closeout.toml"
    )]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
    Dot,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve and show what the trigger's playbook would do. Changes nothing.
    Plan {
        trigger: String,
        #[arg(long)]
        identity: String,
        /// New attributes for a mover (KEY=VALUE).
        #[arg(long = "to")]
        to: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run the trigger's playbook for the identity, then verify closure.
    Apply {
        trigger: String,
        #[arg(long)]
        identity: String,
        #[arg(long = "to")]
        to: Vec<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Act on an identity tagged `protected` (audited).
        #[arg(long)]
        override_protected: bool,
        /// Confirm a plan larger than the playbook's blast-radius limit: the exact action count.
        #[arg(long)]
        confirm_actions: Option<usize>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show everything bound to the identity, with explained paths.
    Resolve {
        #[arg(long)]
        identity: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Check from live state that nothing bound to the identity is still open.
    Verify {
        #[arg(long)]
        identity: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List runs, or show one run's closure report.
    Runs {
        #[command(subcommand)]
        command: Option<RunsCommand>,
        #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
        format: Format,
    },
    /// Finish an interrupted run without repeating finished actions.
    Resume {
        run: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Approve a run waiting for approval (audited) and finish it.
    Approve {
        run: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The hash-chained audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Playbook tools.
    Playbook {
        #[command(subcommand)]
        command: PlaybookCommand,
    },
    /// The entitlement policy (docs/entitlements.md).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Authoritative-source tools.
    Source {
        #[command(subcommand)]
        command: SourceCommand,
    },
    /// Look for drift without changing anything: terminated identities whose access is still
    /// usable, NHIs whose owner is gone. Exit 3 when drift is found.
    Reconcile {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Scheduled rotation: list what the `[[rotation.policy]]` makes due (exit 3 when something
    /// is due), or with --apply run the `rotation` playbook on it, one run per identity.
    Rotate {
        /// Required: select what the rotation policy makes due.
        #[arg(long, required = true)]
        due: bool,
        /// Only this identity (default: every active identity in the source).
        #[arg(long)]
        identity: Option<String>,
        /// Rotate what is due (a journaled, audited `rotation` run per identity).
        #[arg(long)]
        apply: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
        format: DiffFormat,
    },
    /// Run as a service: HR webhooks and SCIM pushes in, playbooks run by workers, read and
    /// approval API, /healthz, /readyz, /metrics (configured by `[serve]`). Stops on SIGTERM.
    Serve,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate an entitlement policy file (default: the config's `[policy] entitlements`);
    /// errors name the file, line and problem.
    Check { file: Option<PathBuf> },
    /// For each entitlement the identity should hold, the rule that grants it; for each live
    /// entitlement, the rule that justifies it or "none". Exit 3 when they differ.
    Explain {
        #[arg(long)]
        identity: String,
        /// Explain for a mover's new attributes (KEY=VALUE).
        #[arg(long = "to")]
        to: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Diff two HR exports into joiner, mover and leaver events (docs/serve.md, "Intake").
    /// Writes nothing unless --submit.
    Diff {
        /// The earlier export (.csv or .json).
        old: PathBuf,
        /// The later export (.csv or .json).
        new: PathBuf,
        #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
        format: DiffFormat,
        /// Enqueue the events in the durable queue at the config's [store] path; a second
        /// submit of the same diff stores nothing (duplicates).
        #[arg(long)]
        submit: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// The most recent runs.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One run's closure report.
    Show { run: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the chain: detects edited, reordered or deleted records.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum PlaybookCommand {
    /// Validate playbook files; errors name the file, line and problem.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// A command's failure: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

/// Exit codes (DESIGN.md §4).
pub mod exit {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const OPEN: i32 = 3;
    pub const WAITING: i32 = 4;
}

/// The format a command was asked to print in, for error output.
pub fn format_of(command: &Command) -> Format {
    match command {
        Command::Plan { format, .. }
        | Command::Apply { format, .. }
        | Command::Resolve { format, .. }
        | Command::Verify { format, .. }
        | Command::Runs { format, .. }
        | Command::Resume { format, .. }
        | Command::Approve { format, .. }
        | Command::Reconcile { format }
        | Command::Policy {
            command: PolicyCommand::Explain { format, .. },
        } => *format,
        Command::Rotate {
            format: DiffFormat::Json,
            ..
        } => Format::Json,
        Command::Source {
            command:
                SourceCommand::Diff {
                    format: DiffFormat::Json,
                    ..
                },
        } => Format::Json,
        Command::Audit { .. }
        | Command::Policy { .. }
        | Command::Playbook { .. }
        | Command::Source { .. }
        | Command::Rotate { .. }
        | Command::Serve => Format::Text,
    }
}

/// Run one command; returns the exit code on success paths (0, 3, 4).
pub async fn run(cli: &Cli) -> Result<i32, Failure> {
    match &cli.command {
        Command::Playbook {
            command: PlaybookCommand::Check { files },
        } => Ok(playbook_check(files)),
        Command::Audit {
            command: AuditCommand::Verify,
        } => audit_verify(cli),
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => policy_check(cli, file.as_deref()),
        Command::Policy {
            command:
                PolicyCommand::Explain {
                    identity,
                    to,
                    format,
                },
        } => {
            let to = parse_to(to)?;
            let engine = Engine::open(&cli.config)?;
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
        Command::Source {
            command:
                SourceCommand::Diff {
                    old,
                    new,
                    format,
                    submit,
                },
        } => source_diff(cli, old, new, *format, *submit),
        Command::Plan {
            trigger,
            identity,
            to,
            format,
        } => {
            let to = parse_to(to)?;
            let engine = Engine::open(&cli.config)?;
            let planned = engine.plan(trigger, identity, &to).await?;
            if planned.plan.identity.is_protected() {
                eprintln!(
                    "note: {} is protected; `apply` refuses it without --override-protected (audited)",
                    planned.plan.identity.id
                );
            }
            match format {
                Format::Json => print_json(&planned.plan),
                _ => print(&planned.plan.render_text()),
            }
            Ok(exit::OK)
        }
        Command::Apply {
            trigger,
            identity,
            to,
            yes,
            override_protected,
            confirm_actions,
            format,
        } => {
            let to = parse_to(to)?;
            let engine = Engine::open(&cli.config)?;
            let options = ApplyOptions {
                yes: *yes,
                override_protected: *override_protected,
                confirm_actions: *confirm_actions,
                effective_at: None,
                require_approval: false,
                to,
                only_findings: None,
            };
            let progress = Progress::auto();
            let mut confirm = |plan: &Plan| ask_to_apply(plan);
            let report = engine
                .apply(trigger, identity, &options, &mut confirm, &progress)
                .await?;
            print_report(&report, *format);
            Ok(report_code(&report))
        }
        Command::Rotate {
            due: _,
            identity,
            apply,
            yes,
            format,
        } => rotate_due(cli, identity.as_deref(), *apply, *yes, *format).await,
        Command::Resume { run, format } => {
            let engine = Engine::open(&cli.config)?;
            let report = engine.resume(run, &Progress::auto()).await?;
            print_report(&report, *format);
            Ok(report_code(&report))
        }
        Command::Serve => match crate::serve::run(&cli.config).await {
            Ok(()) => Ok(exit::OK),
            Err(e) => Err(Failure {
                code: e.exit_code(),
                message: e.to_string(),
            }),
        },
        Command::Approve { run, format } => {
            let engine = Engine::open(&cli.config)?;
            let report = engine.approve(run, &Progress::auto()).await?;
            // A run the service created waits in its queue too: let it see the run is done.
            if let Ok(queue) = crate::queue::EventQueue::open(&engine.config.store.path) {
                if let Err(e) = queue.approve_waiting(run) {
                    tracing::warn!(error = %e, "cannot update the service's event queue");
                }
            }
            print_report(&report, *format);
            Ok(report_code(&report))
        }
        Command::Resolve { identity, format } => {
            let engine = Engine::open(&cli.config)?;
            let graph = engine.resolve(identity).await?;
            match format {
                Format::Json => print_json(&graph),
                Format::Dot => print(&graph.to_dot()),
                _ => print(&render_graph(&graph)),
            }
            Ok(exit::OK)
        }
        Command::Reconcile { format } => {
            let engine = Engine::open(&cli.config)?;
            let report = crate::reconcile::reconcile(&engine).await?;
            match format {
                Format::Json => print_json(&report),
                _ => print(&report.render_text()),
            }
            Ok(if report.drift.is_empty() {
                exit::OK
            } else {
                exit::OPEN
            })
        }
        Command::Verify { identity, format } => {
            let engine = Engine::open(&cli.config)?;
            let v = engine.verify_identity(identity).await?;
            match format {
                Format::Json => print_json(&serde_json::json!({
                    "identity": identity,
                    "status": if v.is_closed() { "closed" } else { "open" },
                    "open": v.open,
                })),
                _ => {
                    let mut out = format!(
                        "{}: {}\n",
                        identity,
                        if v.is_closed() { "closed" } else { "OPEN" }
                    );
                    for o in &v.open {
                        out.push_str(&format!(
                            "  {} [{}] {} — {}\n",
                            o.id, o.state, o.display, o.reason
                        ));
                    }
                    print(&out);
                }
            }
            Ok(if v.is_closed() { exit::OK } else { exit::OPEN })
        }
        Command::Runs { command, format } => {
            let engine = Engine::open(&cli.config)?;
            match command {
                None | Some(RunsCommand::List { .. }) => {
                    let limit = match command {
                        Some(RunsCommand::List { limit }) => *limit,
                        _ => 50,
                    };
                    let runs = engine.journal.runs(limit).map_err(EngineError::from)?;
                    match format {
                        Format::Json => {
                            print_json(&runs.iter().map(run_summary).collect::<Vec<_>>())
                        }
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
                Some(RunsCommand::Show { run }) => {
                    let (record, report) = engine.run_report(run)?;
                    match report {
                        Some(report) => {
                            print_report(&report, *format);
                            Ok(report_code(&report))
                        }
                        None => {
                            match format {
                                Format::Json => print_json(&run_summary(&record)),
                                _ => print(&format!(
                                    "run {}: {} (no closure report yet; `closeout resume {}` finishes it)\n",
                                    record.id,
                                    record.status.as_str(),
                                    record.id
                                )),
                            }
                            Ok(exit::ERROR)
                        }
                    }
                }
            }
        }
    }
}

/// `--to KEY=VALUE...` as a map; a key given twice or without `=` is bad usage.
fn parse_to(to: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let usage = |message: String| Failure {
        code: exit::USAGE,
        message,
    };
    let mut out = BTreeMap::new();
    for pair in to {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(usage(format!(
                "bad --to {pair:?}: write KEY=VALUE, e.g. --to department=Finance"
            )));
        };
        let key = key.trim().to_string();
        if !crate::engine::MOVABLE_ATTRIBUTES.contains(&key.as_str()) {
            return Err(usage(format!(
                "bad --to {pair:?}: a mover can change {}",
                crate::engine::MOVABLE_ATTRIBUTES.join(", ")
            )));
        }
        if out.insert(key.clone(), value.to_string()).is_some() {
            return Err(usage(format!("--to {key} is given twice")));
        }
    }
    Ok(out)
}

/// `closeout rotate --due`: list, or with `--apply` rotate, what the rotation policy makes due.
async fn rotate_due(
    cli: &Cli,
    identity: Option<&str>,
    apply: bool,
    yes: bool,
    format: DiffFormat,
) -> Result<i32, Failure> {
    let engine = Engine::open(&cli.config)?;
    let due = crate::rotation::due(&engine, identity).await?;
    if !apply {
        match format {
            DiffFormat::Json => print_json(&due),
            DiffFormat::Text => print(&due.render_text()),
        }
        return Ok(if due.due_count() > 0 {
            exit::OPEN
        } else {
            exit::OK
        });
    }
    if format == DiffFormat::Text {
        print(&due.render_text());
    }
    let progress = Progress::auto();
    let mut code = exit::OK;
    let mut runs = Vec::new();
    for i in due.identities.iter().filter(|i| !i.due.is_empty()) {
        let options = ApplyOptions {
            yes,
            only_findings: Some(i.ids()),
            ..ApplyOptions::default()
        };
        let mut confirm = |plan: &Plan| ask_to_apply(plan);
        let result = engine
            .apply(
                crate::engine::ROTATION,
                &i.identity,
                &options,
                &mut confirm,
                &progress,
            )
            .await;
        // One identity's refusal (protected, blast radius) or failure does not stop the others;
        // the exit code is the worst seen.
        let (this, entry) = match result {
            Ok(report) => {
                if format == DiffFormat::Text {
                    print(&format!(
                        "{}: run {} {}\n",
                        i.identity, report.run, report.status
                    ));
                }
                (
                    report_code(&report),
                    serde_json::json!({"identity": i.identity, "run": report.run, "status": report.status}),
                )
            }
            Err(e) => {
                eprintln!("error: {}: {e}", i.identity);
                (
                    e.exit_code(),
                    serde_json::json!({"identity": i.identity, "error": e.to_string()}),
                )
            }
        };
        runs.push(entry);
        code = worst(code, this);
    }
    if format == DiffFormat::Json {
        print_json(&serde_json::json!({ "due": due, "runs": runs }));
    }
    Ok(code)
}

/// The more serious of two exit codes: an error, then bad usage, then waiting, then open.
fn worst(a: i32, b: i32) -> i32 {
    let rank = |c: i32| match c {
        exit::OK => 0,
        exit::OPEN => 1,
        exit::WAITING => 2,
        exit::USAGE => 3,
        _ => 4,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

fn run_summary(r: &crate::journal::RunRecord) -> serde_json::Value {
    serde_json::json!({
        "run": r.id,
        "identity": r.identity,
        "trigger": r.trigger,
        "playbook": r.playbook,
        "status": r.status.as_str(),
        "created_at": r.created_at,
        "finished_at": r.finished_at,
    })
}

fn report_code(report: &ClosureReport) -> i32 {
    match report.status.as_str() {
        "closed" => exit::OK,
        "open" => exit::OPEN,
        "waiting-approval" => exit::WAITING,
        _ => exit::ERROR,
    }
}

fn print_report(report: &ClosureReport, format: Format) {
    match format {
        Format::Json => print_json(report),
        Format::Markdown => print(&report.render_markdown()),
        _ => print(&report.render_text()),
    }
}

fn render_graph(graph: &crate::resolve::Graph) -> String {
    let origin = graph.origin();
    let mut out = format!("{origin}\n");
    for a in &graph.accounts {
        out.push_str(&format!(
            "  account [{}] {} (matched by {})\n",
            a.provider, a.display, a.matched_by
        ));
    }
    for f in &graph.findings {
        out.push_str(&format!(
            "  [{}] {} {} — {}\n",
            f.provider, f.kind, f.display, f.state
        ));
        for p in &f.paths {
            out.push_str(&format!("      {}\n", p.render(&origin)));
        }
    }
    for w in &graph.warnings {
        out.push_str(&format!("  warning: {w}\n"));
    }
    out
}

/// Show the plan on stderr and ask on the terminal.
fn ask_to_apply(plan: &Plan) -> Result<bool, EngineError> {
    if !std::io::stdin().is_terminal() {
        return Err(EngineError::NotInteractive);
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "{}\nApply {} action(s)? Type 'yes' to continue: ",
        plan.render_text(),
        plan.action_count()
    );
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|_| EngineError::NotInteractive)?;
    Ok(answer.trim() == "yes")
}

/// `policy check [FILE]`: the file given, else the config's; every diagnostic on stderr.
fn policy_check(cli: &Cli, file: Option<&std::path::Path>) -> Result<i32, Failure> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => {
            let config = crate::config::Config::load(&cli.config).map_err(EngineError::from)?;
            config.policy.entitlements.ok_or_else(|| Failure {
                code: exit::USAGE,
                message: format!(
                    "no policy file given and {} has no `[policy] entitlements`",
                    cli.config.display()
                ),
            })?
        }
    };
    match crate::entitlements::policy::load(&path, crate::registry::CAPABILITIES) {
        Ok(policy) => {
            let grants: usize = policy.rules.iter().map(|r| r.grants.len()).sum();
            print(&format!(
                "{}: ok ({} rules, {grants} grants)",
                path.display(),
                policy.rules.len()
            ));
            Ok(exit::OK)
        }
        Err(e) => Err(Failure {
            code: exit::USAGE,
            message: e.to_string(),
        }),
    }
}

fn playbook_check(files: &[PathBuf]) -> i32 {
    let diagnostics = crate::playbook::check_files(files, crate::registry::CAPABILITIES);
    if diagnostics.is_empty() {
        for f in files {
            print(&format!("{}: ok\n", f.display()));
        }
        exit::OK
    } else {
        for d in &diagnostics {
            eprintln!("{d}");
        }
        exit::USAGE
    }
}

/// `source diff`: print the events; with `--submit`, enqueue them (the only write).
fn source_diff(
    cli: &Cli,
    old: &std::path::Path,
    new: &std::path::Path,
    format: DiffFormat,
    submit: bool,
) -> Result<i32, Failure> {
    let now = chrono::Utc::now();
    let diff = crate::diff::diff_files(old, new, now).map_err(|e| Failure {
        code: exit::USAGE,
        message: e.to_string(),
    })?;
    let mut submitted = None;
    if submit {
        // Loading the config is pure: no provider is contacted for a diff.
        let config = crate::config::Config::load(&cli.config).map_err(EngineError::from)?;
        let queue_failure = |e: crate::queue::QueueError| Failure {
            code: exit::ERROR,
            message: e.to_string(),
        };
        let queue = crate::queue::EventQueue::open(&config.store.path).map_err(queue_failure)?;
        let (mut new_events, mut duplicates) = (0u64, 0u64);
        for entry in &diff.events {
            match queue.submit(&entry.event, now).map_err(queue_failure)? {
                crate::queue::Submitted::New { .. } => new_events += 1,
                crate::queue::Submitted::Duplicate { .. } => duplicates += 1,
            }
        }
        submitted = Some((new_events, duplicates, config.store.path));
    }
    match format {
        DiffFormat::Json => {
            let mut doc = serde_json::json!({
                "old": old,
                "new": new,
                "new_sha256": diff.new_sha256,
                "events": diff.events,
                "warnings": diff.warnings,
            });
            if let Some((n, d, path)) = &submitted {
                doc["submitted"] = serde_json::json!({"new": n, "duplicates": d, "store": path});
            }
            print_json(&doc);
        }
        DiffFormat::Text => {
            let mut out = diff.render_text();
            if let Some((n, d, path)) = &submitted {
                out.push_str(&format!(
                    "submitted {} event(s) to {}: {n} new, {d} duplicate(s)\n",
                    diff.events.len(),
                    path.display()
                ));
            }
            print(&out);
        }
    }
    Ok(exit::OK)
}

fn audit_verify(cli: &Cli) -> Result<i32, Failure> {
    let config = crate::config::Config::load(&cli.config).map_err(EngineError::from)?;
    match crate::audit::verify(&config.audit.path) {
        Ok(report) => {
            print(&format!("{}: {}\n", config.audit.path.display(), report));
            Ok(exit::OK)
        }
        Err(e) => Err(Failure {
            code: exit::ERROR,
            message: format!(
                "audit log {} failed verification: {e}",
                config.audit.path.display()
            ),
        }),
    }
}

fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

pub fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => print(&format!("{s}\n")),
        Err(e) => eprintln!("error: cannot serialize output: {e}"),
    }
}
