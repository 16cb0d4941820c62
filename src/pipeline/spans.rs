//! The tracing spans a run opens, so that logs and the `--timings` summary see the same
//! structure: a [`run`] span around a whole apply or resume, a [`phase`] span around each part
//! of it (`resolve`, each playbook stage, `verify`; field `phase`), an [`action`] span around each action, and
//! inside those the providers' own call spans (`closeout_contract::telemetry`).
//!
//! Run, phase and action spans are at `INFO`: a service's default log prints their closing with
//! durations when JSON logs are asked for; a command's default log (`warn`) does not.

/// The name of the span around one phase of a run.
pub const PHASE_SPAN: &str = "phase";

/// The name of the span around one action.
pub const ACTION_SPAN: &str = "action";

/// The span around an apply or resume of a run for `identity`; the run's id is recorded in its
/// `run_id` field once known.
pub fn run(trigger: &str, identity: &str) -> tracing::Span {
    tracing::info_span!("run", trigger, identity, run_id = tracing::field::Empty)
}

/// The span around one phase: `resolve`, a playbook stage's name, `verify` (field `phase`:
/// a field called `name` would collide with the span's own name in JSON logs).
pub fn phase(phase: &str) -> tracing::Span {
    tracing::info_span!("phase", phase)
}

/// The span around one action; `provider` lets a throttled retry of the action be counted
/// against its provider.
pub fn action(key: &str, verb: &str, provider: &str) -> tracing::Span {
    tracing::info_span!("action", key, verb, provider)
}
