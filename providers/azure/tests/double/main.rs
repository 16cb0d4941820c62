//! The Azure provider's integration tests, in one binary: the provider against the Azure test
//! double (`tests/azure-double`: ARM, Graph and the Key Vault data plane, seeded through their
//! own write calls) and the built-in role table against the docs.
//!
//! Each test starts its own double: resolution surveys the whole tenant (every subscription,
//! every vault's objects), and several tests inject faults or read the double's call log, which
//! are per double — tests sharing one would see each other's worlds.

mod builtin_roles;
mod closure;
mod common;
mod contract;
mod data_plane;
mod directory;
mod entitlements;
mod entra_access;
mod health;
mod http;
mod keyvault_paths;
mod provider;
