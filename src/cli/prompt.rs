//! Asking before `apply` changes anything: the plan on stderr, then `yes` typed on the terminal.

use crate::engine::EngineError;
use crate::pipeline::plan::Plan;
use std::io::{BufRead, IsTerminal, Write};

/// Show the plan on stderr and ask on the terminal; refuse when stdin is not a terminal.
pub fn ask_to_apply(plan: &Plan) -> Result<bool, EngineError> {
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
