//! Read-modify-write edits of one Vault object taken in turn within this process.
//!
//! Vault replaces a group's `member_entity_ids` and an entity's `policies` whole, with no
//! check-and-set: two runs editing one group at once (two leavers of one team, handled by two
//! `closeout serve` workers) would each write the list they read, and the later write would put
//! back the member the earlier one removed. Runs connect a provider of their own, so the lock
//! is per process, keyed by server, namespace and object.
//!
//! Two processes (replicas, or a shell beside the service) editing one object at once are not
//! serialised here. A membership removal therefore reads the group back after writing and
//! removes the entity again when another process's stale write put it back
//! (`VaultProvider::remove_membership`); a stale write landing after that read-back is left to
//! verification, which reads the live state again and reports the member as still there (open,
//! not closed) so a re-run removes it.

use closeout_contract::edit_lock::{edit, EditGuard};

impl crate::server::VaultProvider {
    /// Wait until no other edit of the object at `path` of this server and namespace runs in
    /// this process; hold the guard until the edit is written.
    pub(crate) async fn edit_lock(&self, path: &str) -> EditGuard {
        edit(format!(
            "{} {} {path}",
            self.client.address(),
            self.config.namespace.as_deref().unwrap_or("")
        ))
        .await
    }
}
