//! Progress of a run: a progress bar on an interactive terminal, plain lines otherwise. Always
//! on stderr, so stdout carries only the plan, the report or the one JSON document.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

/// Where a run reports its progress: a bar, plain lines, or nowhere (the service). Shared by the
/// concurrent actions of a stage.
pub struct Progress {
    mode: Mode,
    bar: Mutex<Option<ProgressBar>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bar,
    Lines,
    Silent,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn auto() -> Progress {
        let mode = if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        };
        Progress::with_mode(mode)
    }

    /// Report nothing (the workers of `closeout serve`, tests).
    pub fn silent() -> Progress {
        Progress::with_mode(Mode::Silent)
    }

    fn with_mode(mode: Mode) -> Progress {
        Progress {
            mode,
            bar: Mutex::new(None),
        }
    }

    fn bar(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.bar.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A stage starts with `actions` actions (a new bar replaces the previous stage's).
    pub fn stage(&self, name: &str, actions: usize) {
        match self.mode {
            Mode::Silent => {}
            Mode::Lines => line(&format!("stage {name}: {actions} action(s)")),
            Mode::Bar => {
                let bar = ProgressBar::new(actions as u64);
                let style =
                    ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(name.to_string());
                if let Some(old) = self.bar().replace(bar) {
                    old.finish();
                }
            }
        }
    }

    /// One action ended: its verb, the finding as displayed, and how it ended.
    pub fn action_finished(&self, verb: &str, what: &str, outcome: &str) {
        match self.mode {
            Mode::Silent => {}
            Mode::Lines => line(&format!("  {verb} {what}: {outcome}")),
            Mode::Bar => {
                if let Some(bar) = self.bar().as_ref() {
                    bar.set_message(format!("{verb} {what}: {outcome}"));
                    bar.inc(1);
                }
            }
        }
    }

    /// A free-form line (resuming, verifying, a stage stopped), printed above the bar if there is
    /// one.
    pub fn message(&self, text: &str) {
        match self.mode {
            Mode::Silent => {}
            Mode::Lines => line(text),
            Mode::Bar => match self.bar().as_ref() {
                Some(bar) => bar.println(text),
                None => line(text),
            },
        }
    }

    /// The stage ended: close its bar.
    pub fn finish(&self) {
        if let Some(bar) = self.bar().take() {
            bar.finish();
        }
    }
}

fn line(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}
