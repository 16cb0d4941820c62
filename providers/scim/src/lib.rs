//! Closeout's provider for downstream applications over SCIM 2.0 (RFC 7643 / 7644): for each
//! configured app, the person's User (matched by `externalId`, `userName` or an email, per app)
//! and their Group memberships; the leaver deactivates (`PATCH active=false`) or deletes the User
//! as the app is configured and removes the memberships; movers and joiners change memberships
//! through the entitlement policy.
//!
//! layer 0: capabilities, config
//! layer 1: app
//! layer 2: provider
//!
//! - `capabilities`, `config`: vocabulary and the `[providers.scim]` section.
//! - `app`: one app's endpoint: bearer token, gate, paging, filters, ETags (`If-Match`),
//!   `Retry-After`, error classification.
//! - `provider`: [`ScimProvider`], resolution across apps, actions, live state, the
//!   `Provider` impl.

mod app;
mod capabilities;
mod config;
mod provider;

pub use capabilities::{gap_kinds, kinds, CAPABILITIES, PROVIDER};
pub use config::{AppConfig, LeaverMode, MatchAttribute, MatchValue, ScimConfig, ScimError};
pub use provider::ScimProvider;
