//! Layer 6, the engine: the run lifecycle over the pipeline — resolve, plan, apply stage by
//! stage, verify, report — with the safety rules of DESIGN.md §5 (plan changes nothing,
//! protected identities need an audited override, the blast-radius limit needs explicit
//! confirmation, approvals gate stages) and resumption of interrupted runs.
//!
//! - [`base`]: the [`Engine`] (config, source, journal, audit log) and shared lookups;
//! - [`planning`]: resolve and plan (changes nothing);
//! - `ahead`: containment ahead of discovery (the identity's own accounts contained while the
//!   whole resolution goes on);
//! - [`run`]: apply, resume, approve, verify as the trigger's closure says, report;
//! - [`evidence`]: a finished run's signed evidence bundle;
//! - [`approval`]: authenticated approvers, never the run's starter, N distinct approvers;
//! - `lease`: one process acts for an identity at a time (the store's per-identity lease);
//! - [`mover`]: a mover's new attributes;
//! - [`rotation`]: what the rotation policies make due;
//! - [`reconcile`]: drift without changes;
//! - [`doctor`]: is the installation ready (config, playbooks, provider reach and permissions).
//!
//! Architecture invariant: the engine is the only place that decides what a trigger does next;
//! it asks the [`crate::trigger::Trigger`], never compares trigger names. Faces (CLI, service)
//! call the engine and render; they hold no run logic.

mod ahead;
pub mod approval;
pub mod base;
pub mod doctor;
pub mod error;
pub mod evidence;
mod lease;
pub mod mover;
pub mod planning;
pub mod reconcile;
pub mod rotation;
pub mod run;

#[cfg(test)]
mod tests;

pub use approval::{ApprovalOutcome, Approver, ApproverProof};
pub use base::{current_actor, os_user, Engine};
pub use error::EngineError;
pub use mover::{moved, MOVABLE_ATTRIBUTES};
pub use planning::Planned;
pub use run::ApplyOptions;
