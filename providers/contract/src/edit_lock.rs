//! Edits of one provider object taken in turn within this process.
//!
//! Some provider objects are edited read-modify-write with no check-and-set (a Vault group's
//! member list), or by a protocol of several calls that two runs must not interleave (an owned
//! NHI's access-key rotation). Two runs of one process (two `closeout serve` workers) editing
//! one such object at once would undo each other's work. Runs connect providers of their own,
//! so the lock is process-wide, keyed by a name the provider chooses (its server and the
//! object). Two processes are not serialised here: each provider says how it copes with them.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// One lock per edited object, created on first use.
static LOCKS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// Held while one object is edited; dropping it lets the next edit of the object in.
pub struct EditGuard {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// Wait until no other edit of `object` runs in this process.
pub async fn edit(object: String) -> EditGuard {
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
