//! Layer 5, the pipeline: the stages of one run — [`resolve`] (the identity's graph from every
//! provider), [`plan`] (playbook × graph → ordered actions), [`apply`] (one stage of actions,
//! journaled), [`verify`] (live state and probes), [`report`] (the closure report) — and the
//! live entitlement review movers and joiners plan and verify with ([`entitlements`]).
//!
//! Architecture invariant: each stage is a function of its inputs; none decides which trigger
//! is running or what comes next (that is the engine's job).

pub mod apply;
pub mod entitlements;
pub mod evidence;
pub mod plan;
pub mod progress;
pub mod report;
pub mod report_html;
pub mod resolve;
pub mod spans;
pub mod verify;
