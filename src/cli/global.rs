//! The options every command takes, and what a command's failure prints.

use crate::engine::EngineError;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Options before or after any command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
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
    /// When the command ends, print on stderr where its time went: per phase and provider, the
    /// calls made, the time with a call in flight, the calls' summed time and throttled answers.
    #[arg(long, global = true)]
    pub timings: bool,
}

/// How logs are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How a command prints its result on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// Exactly one JSON document.
    Json,
    /// A Markdown document (closure reports).
    Markdown,
    /// Graphviz DOT (`resolve`).
    Dot,
}

/// The two formats of commands that print lists (`source diff`, `rotate`, `doctor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// For people.
    Text,
    /// Exactly one JSON document.
    Json,
}

/// Exit codes (DESIGN.md §4).
pub mod exit {
    /// Done, and closed.
    pub const OK: i32 = 0;
    /// An error.
    pub const ERROR: i32 = 1;
    /// Bad usage or bad input.
    pub const USAGE: i32 = 2;
    /// Ran, but closure is not verified (open findings remain).
    pub const OPEN: i32 = 3;
    /// Waiting for approval.
    pub const WAITING: i32 = 4;

    /// The more serious of two exit codes: an error, then bad usage, then waiting, then open.
    pub fn worst(a: i32, b: i32) -> i32 {
        let rank = |c: i32| match c {
            OK => 0,
            OPEN => 1,
            WAITING => 2,
            USAGE => 3,
            _ => 4,
        };
        if rank(b) > rank(a) {
            b
        } else {
            a
        }
    }
}

/// A command's failure: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: i32,
    /// The message (on stderr, and as `error` in JSON output).
    pub message: String,
}

impl Failure {
    /// Bad usage or bad input.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::USAGE,
            message: message.into(),
        }
    }

    /// An error.
    pub fn error(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::ERROR,
            message: message.into(),
        }
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}
