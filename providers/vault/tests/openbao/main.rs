//! The Vault provider against a real OpenBao dev server: seeded through the HTTP API, every
//! action read back through the API.
//!
//! One server serves the whole binary ([`closeout_testkit::OpenBaoServer::shared`]). The leaver
//! test keeps the root namespace (the audit device, and so `sys/audit-hash`, exists only there);
//! every other test works in a namespace of its own, so the tests can run concurrently and none
//! sees another's entities, policies or secrets.

mod act_as;
mod api;
mod approle_probe;
mod contract;
mod database_engine;
mod entitlements;
mod faults;
mod gaps;
mod grant_self;
mod kv_v1;
mod leaver;
mod postgres_rotation;
mod reuse;
mod shared_objects;
