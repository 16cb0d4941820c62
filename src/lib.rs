#![warn(missing_docs)]
//! Closeout: resolve every credential and entitlement bound to an identity, run ordered playbooks
//! that contain, revoke and rotate them, and prove closure by reading the providers again.
//!
//! The pipeline is `trigger -> resolve -> plan -> apply -> verify -> report`. The crate is built
//! in layers; a module imports only from its own layer or the ones below it (checked by
//! `scripts/check-layers.py`, which reads the lines below):
//!
//! layer 0: trigger, event, grace, registry, metrics, test_edit
//! layer 1: config
//! layer 2: store
//! layer 3: intake
//! layer 4: policy
//! layer 5: pipeline
//! layer 6: engine
//! layer 7: cli, serve
//!
//! - layer 0, the vocabulary every layer shares: the [`trigger::Trigger`], the
//!   [`event::LifecycleEvent`] every intake produces and the queue stores, the closed list of
//!   providers ([`registry`]), process metrics.
//! - [`config`]: the TOML configuration, validated without I/O.
//! - [`store`]: everything durable (run journal, grant ledger, event queue, audit log).
//! - [`intake`]: where events come from (the HR source and its diff, webhooks, SCIM).
//! - [`policy`]: the declarative documents and their pure evaluation (playbooks, the
//!   entitlement policy, rotation policies).
//! - [`pipeline`]: the stages of a run (resolve, plan, apply, verify, report).
//! - [`engine`]: the run lifecycle over the pipeline, with its safety rules.
//! - the faces: [`cli`] and [`serve`].
//!
//! See `docs/ARCHITECTURE.md` for the code map and the invariants.

pub mod cli;
pub mod config;
pub mod engine;
pub mod event;
pub mod grace;
pub mod intake;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod registry;
pub mod serve;
pub mod store;
#[cfg(test)]
pub(crate) mod test_edit;
pub mod trigger;
