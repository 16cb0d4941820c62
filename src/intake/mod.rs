//! Layer 3, intake: where lifecycle events come from — the authoritative HR source and the diff
//! of two exports, signed HR webhooks, SCIM 2.0 pushes.
//!
//! Architecture invariant: an intake turns outside input into a validated
//! [`crate::event::LifecycleEvent`] or a typed error naming the problem; it never runs a
//! playbook or calls a provider.

pub mod diff;
pub mod scim;
pub mod source;
pub mod webhook;
