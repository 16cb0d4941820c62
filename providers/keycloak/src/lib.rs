//! Closeout's provider for Keycloak, an OpenID Connect identity provider: the person's user,
//! their sign-in sessions, offline tokens, consents, credentials, federated identity links,
//! group memberships (nested) and role mappings, and the clients they own with their secrets.
//!
//! - [`KeycloakConfig`]: the `[providers.keycloak]` configuration, with a pure validation.
//! - [`KeycloakProvider::connect`]: reads the admin credential (file or environment) and builds
//!   the HTTP client (no network call).
//! - [`KeycloakProvider`] implements [`closeout_contract::Provider`].
//!
//! Module map, in layers (a module imports only from its own layer or lower ones; checked by
//! `scripts/check-layers.py`):
//!
//! layer 0: capabilities, config, model
//! layer 1: client, findings
//! layer 2: server
//! layer 3: resolve, rotation
//! layer 4: actions
//! layer 5: provider
//!
//! - `capabilities` (kinds, verbs, grant forms, the admin roles each call needs), `config`,
//!   `model` (typed admin REST representations).
//! - `client`: the admin REST API with Closeout's own admin token (renewed before it expires and
//!   on a 401), the token and introspection endpoints, the gate, retries of reads, error
//!   classification. `findings`: ids and builders.
//! - `server`: [`KeycloakProvider`], `connect`, shared reads (users, groups, mappings, clients).
//! - `resolve`: correlation and everything bound to the user; `rotation`: client-secret
//!   rotation and the retired-secret probe; `actions`: execute, live state and probes.
//! - `provider`: the `Provider` impl, health and grants; nothing imports it.

mod actions;
mod capabilities;
mod client;
mod config;
mod findings;
mod model;
mod provider;
mod resolve;
mod rotation;
mod server;

pub use capabilities::{gap_kinds, kinds, CAPABILITIES, PROVIDER};
pub use config::{AdminAuth, Correlation, KeycloakConfig, KeycloakError};
pub use server::KeycloakProvider;
