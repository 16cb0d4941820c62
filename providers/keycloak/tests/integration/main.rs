//! The Keycloak provider against a real Keycloak 26.7.3 (`closeout_testkit::KeycloakServer`,
//! one server per test binary, one realm per test), seeded only through its admin REST API.
//!
//! `cargo test -p closeout-keycloak --test integration`

mod common;
mod contract;
mod entitlements;
mod factors_consents;
mod rotation_resume;
