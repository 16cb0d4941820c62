//! Store calls from async code: SQLite commits (`synchronous=FULL`) and the audit log's fsyncs
//! block their thread, for as long as a lock is held by another connection (up to the busy
//! timeout) or the disk takes. Async code runs them on tokio's blocking pool through
//! [`off_runtime`], so a slow write holds one blocking thread, never a runtime thread (and with
//! it every task scheduled there).

/// A store call that never ran: the runtime shut down before it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the store call did not run: the runtime is shutting down")]
pub struct Interrupted;

/// Run the blocking store call `f` on tokio's blocking pool and wait for it. A panic in `f` is
/// resumed here, as if `f` had been called directly.
pub async fn off_runtime<R, E>(f: impl FnOnce() -> Result<R, E> + Send + 'static) -> Result<R, E>
where
    R: Send + 'static,
    E: From<Interrupted> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(Interrupted.into()),
        },
    }
}

/// Run the blocking store call `f` on a plain thread of its own and wait for it: for synchronous
/// code that may itself run on an async runtime's thread (a CLI command), where the PostgreSQL
/// client cannot block (it drives its own runtime). A panic in `f` is resumed here.
pub fn on_plain_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}
