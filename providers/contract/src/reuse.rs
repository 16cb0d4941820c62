//! Reuse within a run: whether a resolution may take what the same provider instance already
//! read in this run (its account-wide listings) instead of reading it again.
//!
//! A run resolves the identity twice with the same providers: to plan, and to verify. The second
//! resolution needs the live state of everything the person reaches and of everything the run
//! acted on, but re-reading every object of the account (each entity, each KV key's metadata,
//! each token) only to find again that it is not the person's makes the run's calls grow with
//! the account. The orchestrator runs verification's resolution inside
//! [`scope`]`(`[`Reuse::SinceLastRead`]`, ..)`; a provider that can tell *exactly* which of
//! the objects it remembers changed since it read them (and only such a provider) reads those
//! again live and takes the rest from its memory. What each provider re-reads, and why that is
//! enough, is stated in its README. Everything else — no scope, [`Reuse::Fresh`],
//! [`Reuse::Never`] (`--thorough`) — reads everything.
//!
//! The scope is a tokio task-local: a future *spawned* inside it does not see it and reads
//! everything (the safe side).

use std::future::Future;

/// How a resolution may use what the provider already read in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reuse {
    /// Read everything (and remember it for a later resolution of this run). The default.
    #[default]
    Fresh,
    /// Re-read live what the person reaches, what changed since the last resolution (as the
    /// provider can prove), and what is new; take the rest from that resolution's reads.
    SinceLastRead,
    /// Read everything, even where a verification would reuse (`--thorough`).
    Never,
}

tokio::task_local! {
    static REUSE: Reuse;
}

/// Run `f` with `reuse` as the current mode.
pub async fn scope<F: Future>(reuse: Reuse, f: F) -> F::Output {
    REUSE.scope(reuse, f).await
}

/// The current mode: [`Reuse::Fresh`] outside any [`scope`].
pub fn current() -> Reuse {
    REUSE.try_with(|r| *r).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_mode_is_the_innermost_scope_and_fresh_outside_one() {
        assert_eq!(current(), Reuse::Fresh);
        scope(Reuse::SinceLastRead, async {
            assert_eq!(current(), Reuse::SinceLastRead);
            scope(Reuse::Never, async { assert_eq!(current(), Reuse::Never) }).await;
            assert_eq!(current(), Reuse::SinceLastRead);
            // A spawned task does not inherit the scope: it reads everything.
            let spawned = tokio::spawn(async { current() }).await.expect("task");
            assert_eq!(spawned, Reuse::Fresh);
        })
        .await;
        assert_eq!(current(), Reuse::Fresh);
    }
}
