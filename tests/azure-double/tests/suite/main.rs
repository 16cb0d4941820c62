//! The double's own tests, in one binary: its ARM, Graph and identity routes (`api`) and its Key
//! Vault data plane (`keyvault_data`), each driven over HTTPS as a client would.

mod api;
mod common;
mod keyvault_data;
mod permissions;
