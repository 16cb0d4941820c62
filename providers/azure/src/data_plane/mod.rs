//! The Key Vault data plane (secrets, keys, certificates) through the Azure SDK for Rust 1.x
//! Key Vault crates: listing what a vault holds, rotating it and disabling old versions.
//!
//! Setup (see docs/dependencies.md): one SDK client per vault URI and object type, cached;
//! `api_version` configurable (default `7.6`); `verify_challenge_resource` on (the SDK learns the
//! token scope from the vault's 401 challenge and checks the vault host ends with the challenge's
//! resource host); SDK retries off (the orchestrator retries, and a 429 must reach it as
//! [`CallError`](crate::http::CallError) with status 429 → `ProviderError::Throttled`); our own
//! `reqwest` transport, which can trust an extra root and map host suffixes to an address (tests:
//! `*.lowkey-vault.local` → 127.0.0.1). Every request goes through the provider's
//! [`CallGate`](closeout_contract::CallGate).
//!
//! Secret values never appear in errors, logs or `Debug` output: errors carry the method, the
//! path (no host), the service's error code and message, never a request or response body.
//!
//! - `model`: what the data plane reports ([`ObjectSummary`], [`VersionSummary`]) and the row
//!   every SDK model is read into first;
//! - `error`: SDK errors as `CallError`;
//! - `transport`: the HTTP client and the three SDK clients of a vault;
//! - `kind`: the one place the three kinds differ for reading and retiring (an `ObjectKind`
//!   trait, implemented for secrets, keys and certificates);
//! - `client`: [`KeyVaultData`] — listing, versions, the current version and disabling old
//!   versions, written once over `ObjectKind`;
//! - `rotate`: the rotations, which differ in substance per kind.

mod client;
mod error;
mod kind;
mod model;
mod rotate;
mod transport;

pub use client::KeyVaultData;
pub use model::{DataPlaneOptions, ObjectSummary, VersionSummary};
