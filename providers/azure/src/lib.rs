//! Closeout's provider for Azure: Entra ID (Microsoft Graph), RBAC and Key Vault — including the
//! indirect paths (the right to add oneself an access policy or a data role).
//!
//! - [`AzureConfig`]: the `[providers.azure]` configuration, with a pure
//!   [`AzureConfig::validate`].
//! - [`AzureProvider::connect`]: reads the client secret and builds the clients (no network call).
//! - [`AzureProvider`] implements [`closeout_contract::Provider`]: `resolve` turns an identity into
//!   findings with explained paths (see [`CAPABILITIES`]), `execute` runs one action idempotently,
//!   `live_state` reads Azure again for verification.
//!
//! Module map, in layers (a module imports only from its own layer or lower ones; checked by
//! `scripts/check-layers.py`):
//!
//! layer 0: capabilities, object, principal, entra
//! layer 1: config, condition, error, rbac, state, limits, http
//! layer 2: keyvault, directory, data_plane, entra_access
//! layer 3: survey, arm, findings, access_findings
//! layer 4: client
//! layer 5: resolve, live, health, nhi, entitlements
//! layer 6: credentials, access_actions, actions
//! layer 7: provider
//!
//! - Vocabulary: `capabilities` (the provider's name, finding kinds, verbs, needed permissions,
//!   the marks Closeout leaves in Azure), [`object`] (the three kinds of Key Vault object and
//!   the data actions exposing each), [`principal`] (the person as RBAC sees them), [`entra`]
//!   (Graph's user, group, application and service principal objects; how the person's user is
//!   matched).
//! - Pure rules and shared helpers: `config` (configuration and its validation), [`condition`]
//!   (role-assignment conditions Closeout evaluates; anything else counts as allowing), `error`
//!   (the provider errors), [`rbac`] (role definitions and assignments, wildcard matching, scope
//!   inheritance), `state` (user and session states against the cutoff), [`http`] (typed ARM and
//!   Graph calls, `azure_identity` tokens, paging, throttling).
//! - Reading Azure: [`keyvault`] (pure: every way a person reaches a vault's objects, directly or
//!   by granting themselves access, each with its rule), [`directory`] (the person's user, groups
//!   and owned applications), [`entra_access`] (directory roles held and eligible through PIM,
//!   owned groups, app-role assignments, delegated grants, authentication methods; which
//!   directory roles reach the whole tenant), [`data_plane`] (Key Vault secrets, keys and
//!   certificates through the Azure SDK crates).
//! - The tenant and the findings: [`survey`] (pure: the scope tree, role definitions,
//!   assignments and vaults one resolution reads, and the paths to each vault), [`arm`] (reading
//!   them), `findings` (pure: the findings built from what was read), `access_findings` (pure:
//!   the findings of what `entra_access` read, and the tenant-wide exposure of a privileged
//!   directory role).
//! - `client`: [`AzureProvider`] itself and its clients.
//! - Serving the contract: `resolve` (resolution's I/O), `live` (live state for verification),
//!   `health` (the caller's permissions), `nhi` (a service identity's applications),
//!   [`entitlements`] (which findings are grants a policy names, the findings grants will be,
//!   the `grant` verb, users no identity claims).
//! - Changing Azure: `credentials` (application credential rotation), `access_actions`
//!   (removing directory roles, PIM eligibilities, app-role assignments, delegated grants and
//!   authentication methods, and their live state), `actions` (execute, dispatching every
//!   verb).
//! - `provider`: the `Provider` impl, delegating to the modules above; nothing imports it.
//!
//! Every call passes through the provider's one [`closeout_contract::CallGate`]. Secret values
//! (the client secret, new application credentials, rotated vault values) only travel inside
//! [`closeout_contract::SecretValue`] or straight from Azure into the next request.

mod access_actions;
mod access_findings;
mod actions;
pub mod arm;
mod capabilities;
mod client;
pub mod condition;
mod config;
mod credentials;
pub mod data_plane;
pub mod directory;
pub mod entitlements;
pub mod entra;
pub mod entra_access;
mod error;
mod findings;
mod health;
pub mod http;
pub mod keyvault;
pub mod limits;
mod live;
mod nhi;
pub mod object;
pub mod principal;
mod provider;
pub mod rbac;
mod resolve;
mod state;
pub mod survey;

pub use capabilities::{canonical_scope, kinds, CAPABILITIES, PROVIDER};
pub use client::AzureProvider;
pub use config::{AzureConfig, AzureError};
pub use entra::UserMatch;
