//! Layer 2, the store: everything Closeout keeps durably — the run journal (runs, actions,
//! observations), the grant ledger, the event queue, the per-identity leases, the HR export's
//! last snapshot and the audit log; and the copy of a SQLite deployment into PostgreSQL
//! (`migrate`).
//!
//! Architecture invariant: the store knows records, not the pipeline: it imports only the
//! vocabulary (layer 0), never a playbook, a plan or a provider. Nothing outside the store
//! touches its SQL; tests use its API too.

pub mod audit;
pub mod blocking;
pub mod grants;
pub mod group_commit;
pub mod journal;
pub mod lease;
pub mod migrate;
pub mod observations;
pub mod pg;
pub mod presence;
pub mod queue;
pub mod signing;
pub mod snapshot;
pub mod sqlite;
