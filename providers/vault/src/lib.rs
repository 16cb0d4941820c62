//! Closeout's provider for HashiCorp Vault and OpenBao.
//!
//! - [`VaultConfig`]: the `[providers.vault]` configuration, with a pure [`VaultConfig::validate`].
//! - [`VaultProvider::connect`]: reads the token (environment or `token_file`) and builds the HTTP
//!   client (no network call).
//! - [`VaultProvider`] implements [`closeout_contract::Provider`]: `resolve` turns an identity into
//!   findings with explained paths (see [`CAPABILITIES`]), `execute` runs one action idempotently,
//!   `live_state` and `probe` read the server for verification; `entitlement`, `grant_finding`,
//!   `unclaimed_accounts` and `nhi_findings` serve movers, joiners and reconcile.
//!
//! Module map, in layers (a module imports only from its own layer or lower ones; checked by
//! `scripts/check-layers.py`):
//!
//! layer 0: capabilities, config, model, policy, audit_trail
//! layer 1: client, findings, correlation, reach, memory
//! layer 2: server
//! layer 3: edit_lock, tokens, lease, pki, approle, health, entitlements, kv, database
//! layer 4: secrets
//! layer 5: resolve, actions
//! layer 6: provider
//!
//! - Vocabulary and pure readers: `capabilities` (the provider's name, finding kinds, verbs,
//!   needed ACL capabilities), `config` (configuration and its validation), `model` (typed API
//!   responses), `policy` (pure ACL policy parser and evaluation, public), `audit_trail` (pure
//!   reader of a file audit device's log).
//! - `client`: HTTP (vaultrs and typed calls), the gate, error classification. `findings`: the
//!   finding builders several modules share. `correlation`: whose entity, token or secret is
//!   whose. `reach`: the ways a policy set lets its holder grant itself any policy, and the
//!   mounts it reaches (pure).
//! - `server`: [`VaultProvider`] itself, `connect`, and the reads and writes of the server the
//!   modules above share (entities, groups, token lookups, mounts, KV v2 metadata).
//! - One area each: `tokens` (the accessor scan and audit-log attribution of orphan tokens),
//!   `lease`, `pki`, `approle` (resolve, act, live state), `health` (the caller's capabilities),
//!   `entitlements` (grants, unclaimed entities), `kv` (KV v1 and v2: listing, state, rotation,
//!   live state), `database` (the database engine: static roles and connections the person
//!   could read, rotate-role and rotate-root, dynamic credentials' leases named by role),
//!   `edit_lock` (read-modify-write edits of one group or entity take turns in the process).
//! - `secrets`: the policies reaching the person, what they let her grant herself (exposures),
//!   the KV secrets they reach, and what stays unknown (gaps: engines Closeout does not
//!   enumerate, unreadable policies, refused listings).
//! - `resolve` (correlation and reachability, calling the areas), `actions` (execute, live
//!   state and probes, dispatching to the areas).
//! - `provider`: the `Provider` impl, delegating to the modules above; nothing imports it.
//!
//! Every Vault call passes through the provider's [`closeout_contract::CallGate`]. Secret values
//! (the token, KV data) only ever travel inside [`closeout_contract::SecretValue`] or straight
//! from one Vault response into the next request.

mod actions;
mod approle;
mod audit_trail;
mod capabilities;
mod client;
mod config;
mod correlation;
mod database;
mod edit_lock;
mod entitlements;
mod findings;
mod health;
mod kv;
mod lease;
mod memory;
mod model;
mod pki;
pub mod policy;
mod provider;
mod reach;
mod resolve;
mod secrets;
mod server;
mod tokens;

pub use capabilities::{gap_kinds, kinds, CAPABILITIES, DESTROY_OLD_VERSIONS, PROVIDER};
pub use config::{NameRule, VaultConfig, VaultError};
pub use server::VaultProvider;
