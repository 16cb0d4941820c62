//! Receipts: what a provider's server answered to each call made while executing an action —
//! the operation, the HTTP status and the server's request id — so an evidence bundle can name,
//! for every action, the calls an auditor can look up in the provider's own logs.
//!
//! The orchestrator runs a provider's `execute` inside [`collect`]; a provider calls [`record`]
//! at the one place its calls go through (an SDK interceptor, its HTTP client's send). The
//! provider needs no parameter for it and knows nothing of who collects. Outside a [`collect`]
//! scope (resolution, verification, tests) [`record`] does nothing.
//!
//! The scope is a tokio task-local: calls made by tasks *spawned* inside `execute` are not seen
//! unless the spawned future is itself wrapped with [`scoped`]. A receipt never holds a secret
//! value: operations are names and paths (as error messages already show them), request ids are
//! the server's.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::{Arc, Mutex};

/// One call to a provider's server, as answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderCall {
    /// What was called: an API operation (`iam:DeleteAccessKey`) or a method and path without
    /// the query (`POST /v1/auth/token/revoke-accessor`); never a body.
    pub operation: String,
    /// The HTTP status of the answer; `None` when no answer came, or the protocol has none
    /// (PostgreSQL).
    pub status: Option<u16>,
    /// The server's id for the request (`x-amzn-RequestId`, `x-ms-request-id`, Vault's
    /// `request_id`), when it gave one.
    pub request_id: Option<String>,
    /// When the answer (or the failure) came.
    pub at: DateTime<Utc>,
}

impl ProviderCall {
    /// A call answered now with `status` and `request_id`.
    pub fn new(
        operation: impl Into<String>,
        status: Option<u16>,
        request_id: Option<String>,
    ) -> ProviderCall {
        ProviderCall {
            operation: operation.into(),
            status,
            request_id: request_id.filter(|id| !id.trim().is_empty()),
            at: Utc::now(),
        }
    }
}

type Sink = Arc<Mutex<Vec<ProviderCall>>>;

tokio::task_local! {
    static SINK: Sink;
}

/// Run `f`, collecting every call [`record`]ed while it runs (in this task); returns its output
/// and the calls in the order they were recorded. Nested scopes collect separately: a call goes
/// to the innermost one.
pub async fn collect<F: Future>(f: F) -> (F::Output, Vec<ProviderCall>) {
    let sink: Sink = Arc::default();
    let output = SINK.scope(sink.clone(), f).await;
    let calls = std::mem::take(&mut *sink.lock().unwrap_or_else(|p| p.into_inner()));
    (output, calls)
}

/// `f` recording into the current [`collect`] scope even when it runs on another task (wrap a
/// future before `tokio::spawn`ing it). Outside a scope, `f` as it is.
pub fn scoped<F: Future>(f: F) -> impl Future<Output = F::Output> {
    let sink = SINK.try_with(Sink::clone).ok();
    async move {
        match sink {
            Some(sink) => SINK.scope(sink, f).await,
            None => f.await,
        }
    }
}

/// Record one call in the current [`collect`] scope; nothing outside one.
pub fn record(call: ProviderCall) {
    let _ = SINK.try_with(|sink| {
        sink.lock().unwrap_or_else(|p| p.into_inner()).push(call);
    });
}

/// Whether a [`collect`] scope is active (a provider may skip work that only feeds receipts).
pub fn is_collecting() -> bool {
    SINK.try_with(|_| ()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: &str) -> ProviderCall {
        ProviderCall::new(op, Some(200), Some(format!("id-{op}")))
    }

    #[tokio::test]
    async fn calls_recorded_in_the_scope_are_collected_in_order() {
        let (out, calls) = collect(async {
            record(call("a"));
            tokio::task::yield_now().await;
            record(call("b"));
            7
        })
        .await;
        assert_eq!(out, 7);
        let ops: Vec<_> = calls.iter().map(|c| c.operation.as_str()).collect();
        assert_eq!(ops, ["a", "b"]);
        assert_eq!(calls[0].request_id.as_deref(), Some("id-a"));
    }

    #[tokio::test]
    async fn outside_a_scope_record_does_nothing_and_failures_are_collected_too() {
        record(call("nowhere"));
        assert!(!is_collecting());
        let (out, calls) = collect(async {
            assert!(is_collecting());
            record(ProviderCall::new("x", Some(500), None));
            Err::<(), &str>("failed")
        })
        .await;
        assert!(out.is_err());
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].status, Some(500));
    }

    #[tokio::test]
    async fn concurrent_scopes_do_not_see_each_others_calls() {
        let one = collect(async {
            for _ in 0..3 {
                record(call("one"));
                tokio::task::yield_now().await;
            }
        });
        let two = collect(async {
            for _ in 0..2 {
                record(call("two"));
                tokio::task::yield_now().await;
            }
        });
        let ((_, a), (_, b)) = tokio::join!(one, two);
        assert!(a.len() == 3 && a.iter().all(|c| c.operation == "one"));
        assert!(b.len() == 2 && b.iter().all(|c| c.operation == "two"));
    }

    #[tokio::test]
    async fn spawned_tasks_are_seen_only_when_scoped_and_inner_scopes_keep_their_own() {
        let ((), calls) = collect(async {
            tokio::spawn(async { record(call("unseen")) })
                .await
                .unwrap();
            tokio::spawn(scoped(async { record(call("seen")) }))
                .await
                .unwrap();
            let ((), inner) = collect(async { record(call("inner")) }).await;
            assert_eq!(inner.len(), 1);
        })
        .await;
        let ops: Vec<_> = calls.iter().map(|c| c.operation.as_str()).collect();
        assert_eq!(ops, ["seen"]);
    }

    #[test]
    fn a_blank_request_id_is_none_and_the_call_serializes_flat() {
        let c = ProviderCall::new("op", None, Some("  ".into()));
        assert_eq!(c.request_id, None);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["operation"], "op");
        assert!(v["status"].is_null() && v["request_id"].is_null());
        assert!(v["at"].is_string());
    }
}
