//! The root crate's integration tests, as one test binary (`cargo test --test integration`).
//!
//! One binary instead of one per file: the AWS SDK stack, the Azure double and the `closeout`
//! library are linked once, and `cargo test` starts one process. Each module is one area;
//! run one with a name filter, e.g. `cargo test --test integration leaver_vault::`.
//!
//! Every test builds its own world (a temporary directory with its config, journal and audit
//! log, and its own emulator on a free loopback port, see [`common`]), so tests stay
//! independent and run in parallel. The emulators are started per test rather than shared: the
//! `closeout` binary, the demo seed scripts and the providers reach moto and OpenBao with one
//! fixed set of credentials and no account or namespace header, so two tests sharing a server
//! would see each other's users, secrets and audit log. The shared helpers, including the
//! store's read API wrappers, are in [`common`]. Tests read Closeout's state through the store's
//! public API (`closeout::store`), never its SQL.

mod common;

mod chaos;
mod cli_approval;
mod cli_doctor;
mod cli_evidence;
mod cli_lease;
mod cli_policy;
mod cli_reconcile;
mod cli_resume;
mod cli_safety;
mod cli_source_diff;
mod cli_timings;
mod contain_ahead;
mod deleted_key_probe;
mod leaver_aws;
mod leaver_aws_reach;
mod leaver_aws_refused;
mod leaver_aws_sso;
mod leaver_azure;
mod leaver_azure_closed;
mod leaver_azure_entra;
mod leaver_idp;
mod leaver_vault;
mod leaver_vault_closed;
mod mover_aws;
mod mover_azure;
mod mover_idp;
mod mover_vault;
mod report_html;
mod rerun_after_failure;
mod rotation_aws;
mod rotation_azure;
mod rotation_strategy;
mod rotation_vault;
mod scim_conformance;
mod scim_users;
mod serve_internals;
mod serve_lifecycle;
mod serve_movers;
mod serve_replicas;
mod serve_replicas_aws;
mod serve_scim;
mod store_migrate;
