//! Entitlements as policy-as-code (DESIGN.md §1: joiner, mover): the policy file that maps source
//! attributes to the entitlements an identity should hold in each provider ([`policy`]), and the
//! review that compares it with what the identity holds live ([`review`]).
//!
//! Movers and joiners plan from a [`Review`]: live entitlements no rule justifies (or whose
//! time-bound grant expired) are removed first, what could be reached only through them is
//! rotated or has its sessions revoked, then the missing ones are granted.

pub mod explain;
pub mod policy;
pub mod review;

pub use policy::{EntitlementPolicy, PolicyError, Requirement, Rule};
pub use review::{
    only_through, review, GrantRecord, LiveEntitlement, MissingEntitlement, Review, Standing,
};
