//! Layer 4, policy: the declarative documents that say what should happen, and their pure
//! evaluation — playbooks, the entitlement policy (and the review of live entitlements against
//! it), rotation policies.
//!
//! Architecture invariant: policy is pure. Nothing here does I/O beyond reading its own files,
//! calls a provider, or touches the store.

pub mod entitlements;
pub mod playbook;
pub mod rotation;
pub mod yaml_doc;
