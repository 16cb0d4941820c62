//! A head start's reads, handed to the resolution that follows it.
//!
//! [`crate::Provider::resolve_accounts`] reads the identity's accounts before containment acts
//! on them; the orchestrator then starts the whole [`crate::Provider::resolve`] while containment
//! runs. A provider keeps what the head start read here, and that resolution takes it: it plans
//! from the accounts as they were before containment changed them (a disabled entity would
//! make its group memberships look closed and leave them in place), and does not read them
//! again.
//!
//! Invariant: taken at most once, only for the identity it was read for, only while fresh, and
//! only by a resolution that reads everything else live ([`crate::reuse::Reuse::Fresh`]): a
//! verification's resolution never sees it.

use crate::reuse::{self, Reuse};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a head start's reads stay usable: the whole resolution starts right after them.
pub const MAX_AGE: Duration = Duration::from_secs(120);

/// One head start's reads, waiting for the resolution that follows it.
#[derive(Debug)]
pub struct Handoff<T> {
    slot: Mutex<Option<(Instant, String, T)>>,
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Handoff {
            slot: Mutex::new(None),
        }
    }
}

impl<T> Handoff<T> {
    /// Keep `reads`, read for `identity` (replacing any earlier ones).
    pub fn put(&self, identity: &str, reads: T) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), identity.to_string(), reads));
    }

    /// The reads kept for `identity`, if fresh and the current resolution reads live; gone
    /// from here either way once asked for by a live resolution of that identity.
    pub fn take(&self, identity: &str) -> Option<T> {
        if reuse::current() != Reuse::Fresh {
            return None;
        }
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some((_, kept_for, _)) if kept_for == identity => {}
            _ => return None,
        }
        let (at, _, reads) = slot.take()?;
        (at.elapsed() <= MAX_AGE).then_some(reads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn taken_once_for_its_identity_and_never_by_a_verification() {
        let h = Handoff::default();
        h.put("E1", 7);
        assert_eq!(h.take("E2"), None);
        let in_verification = reuse::scope(Reuse::SinceLastRead, async { h.take("E1") }).await;
        assert_eq!(in_verification, None);
        assert_eq!(h.take("E1"), Some(7));
        assert_eq!(h.take("E1"), None);
    }
}
