//! Closeout: resolve every credential and entitlement bound to an identity, run ordered playbooks
//! that contain, revoke and rotate them, and prove closure by reading the providers again.
//!
//! The pipeline is `trigger -> resolve -> plan -> apply -> verify -> report`; see
//! `docs/ARCHITECTURE.md` for where each stage lives.

pub mod audit;
pub mod cli;
pub mod config;
pub mod diff;
pub mod engine;
pub mod entitlements;
pub mod event;
pub mod executor;
pub mod journal;
pub mod metrics;
pub mod plan;
pub mod playbook;
pub mod progress;
pub mod queue;
pub mod reconcile;
pub mod registry;
pub mod report;
pub mod resolve;
pub mod rotation;
pub mod scim;
pub mod serve;
pub mod source;
pub mod verify;
pub mod webhook;
pub mod yaml_doc;
