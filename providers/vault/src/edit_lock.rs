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

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// One lock per edited object, created on first use.
static LOCKS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// Held while one object is edited; dropping it lets the next edit of the object in.
pub(crate) struct EditGuard {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// Wait until no other edit of `object` runs in this process.
pub(crate) async fn edit(object: String) -> EditGuard {
    let lock = {
        let mut locks = LOCKS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Forget locks nobody holds or waits for, so the map stays as small as the edits in
        // flight.
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(object).or_default().clone()
    };
    EditGuard {
        _guard: lock.lock_owned().await,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn edits_of_one_object_take_turns_and_of_two_objects_do_not() {
        let first = edit("a".into()).await;
        let other = tokio::time::timeout(Duration::from_millis(50), edit("b".into())).await;
        assert!(other.is_ok(), "another object's edit waits for nothing");
        let same = tokio::time::timeout(Duration::from_millis(50), edit("a".into())).await;
        assert!(same.is_err(), "the same object's edit waits");
        drop(first);
        let same = tokio::time::timeout(Duration::from_millis(500), edit("a".into())).await;
        assert!(same.is_ok(), "and gets in once the first is done");
    }
}
