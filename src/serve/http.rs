//! The service's routes. Intake (`POST /v1/events`, `/scim/v2`) answers only after the event is
//! committed to the store; errors are JSON `{"error": "...", "code": "..."}` with a status that
//! says what is wrong.

use super::AppState;
use crate::event::LifecycleEvent;
use crate::store::queue::{EventQueue, PgQueue, Submitted};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

type Shared = Arc<AppState>;

/// A JSON error answer.
pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": message.into(), "code": code })),
    )
        .into_response()
}

pub(crate) fn router(state: Shared, scim_token: Option<String>) -> Router {
    let max_body = state.config.serve.max_body_bytes;
    let api = Router::new()
        .route("/v1/events", post(post_event))
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/approve", post(approve_run))
        .route("/runs/{id}/report", get(run_report_html))
        .route("/v1/identities/{id}/graph", get(identity_graph))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    let scim = match scim_token {
        Some(token) => {
            let config = crate::intake::scim::ScimConfig {
                store: state.config.store.clone(),
                tokens: vec![token],
                location_attribute: None,
                base_url: None,
            };
            match crate::intake::scim::ScimState::open(&config, scim_sink(state.clone())) {
                Ok(scim) => {
                    let woken = state.clone();
                    crate::intake::scim::router(
                        scim.on_commit(Arc::new(move || woken.wake.notify_waiters())),
                    )
                }
                Err(e) => {
                    tracing::error!(error = %e, "SCIM is unavailable");
                    scim_unavailable(format!("SCIM is unavailable: {e}"))
                }
            }
        }
        None => scim_unavailable(
            "no SCIM bearer token is configured (scim_token_file or CLOSEOUT_SCIM_TOKEN)".into(),
        ),
    };
    api.nest("/scim/v2", scim)
        .layer(DefaultBodyLimit::max(max_body))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not-found", "no such route") })
}

/// `/scim/v2` when SCIM cannot serve: 401 in the SCIM error form for every request.
fn scim_unavailable(detail: String) -> Router {
    Router::new().fallback(move || {
        let detail = detail.clone();
        async move {
            (
                StatusCode::UNAUTHORIZED,
                [
                    (axum::http::header::WWW_AUTHENTICATE, "Bearer"),
                    (axum::http::header::CONTENT_TYPE, "application/scim+json"),
                ],
                Json(json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                    "status": "401",
                    "detail": detail,
                })),
            )
                .into_response()
        }
    })
}

/// SCIM changes become events in the same store as webhooks, written in the SCIM change's own
/// transaction: the SCIM Users are in the store's SQLite file or PostgreSQL database, as the
/// queue is. The workers are woken before the commit (on SQLite a woken worker's claim takes the
/// write lock, so it waits for this transaction and then sees the event) and again after it (on
/// PostgreSQL a claim does not wait: it sees the event only once committed).
fn scim_sink(state: Shared) -> crate::intake::scim::EventSink {
    Arc::new(
        move |tx: &mut crate::intake::scim::ScimTx<'_>, event: LifecycleEvent| {
            if state.stopping.load(Ordering::SeqCst) {
                return Err("the service is stopping".into());
            }
            let kind = event.kind.as_str();
            let now = chrono::Utc::now();
            let submitted = match tx {
                crate::intake::scim::ScimTx::Sqlite(tx) => EventQueue::submit_in(tx, &event, now),
                crate::intake::scim::ScimTx::Postgres(tx) => PgQueue::submit_in(tx, &event, now),
            };
            match submitted {
                Ok(Submitted::New { .. }) => {
                    crate::metrics::global().event(kind, "accepted");
                    state.wake.notify_waiters();
                    Ok(())
                }
                Ok(Submitted::Duplicate { .. }) => {
                    crate::metrics::global().event(kind, "duplicate");
                    Ok(())
                }
                Err(e) => Err(Box::new(e)),
            }
        },
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn post_event(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let metrics = crate::metrics::global();
    if state.stopping.load(Ordering::SeqCst) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the service is stopping; retry later",
        );
    }
    let Some(secrets) = &state.webhook_secrets else {
        metrics.event("unknown", "rejected-signature");
        return error(
            StatusCode::UNAUTHORIZED,
            "no-secret-configured",
            "no webhook signing secret is configured",
        );
    };
    let id = header(&headers, "webhook-id");
    if let Err(e) = secrets.verify(
        id,
        header(&headers, "webhook-timestamp"),
        header(&headers, "webhook-signature"),
        &body,
        chrono::Utc::now(),
    ) {
        metrics.event("unknown", "rejected-signature");
        // Unauthenticated either way (401); the code says whether the headers were unreadable
        // or the signature simply did not verify.
        let code = if e.is_malformed() {
            "malformed-signature-headers"
        } else {
            "signature-rejected"
        };
        return error(StatusCode::UNAUTHORIZED, code, e.to_string());
    }
    // verify() refuses a request without an id.
    let id = id.unwrap_or_default();
    let event = match crate::intake::webhook::parse_event(&body, id, chrono::Utc::now()) {
        Ok(e) => e,
        Err(e) => {
            let (status, code) = match e {
                crate::intake::webhook::EventError::Malformed(_) => {
                    (StatusCode::BAD_REQUEST, "malformed")
                }
                crate::intake::webhook::EventError::UnknownType(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "unknown-type")
                }
                _ => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-event"),
            };
            metrics.event("unknown", "rejected-body");
            return error(status, code, e.to_string());
        }
    };
    let kind = event.kind.as_str();
    // Stored (committed with the events that arrived meanwhile) before the answer.
    let stored = state.intake.submit(event, chrono::Utc::now()).await;
    match stored {
        Ok(Submitted::New { seq }) => {
            metrics.event(kind, "accepted");
            state.wake.notify_waiters();
            (
                StatusCode::ACCEPTED,
                Json(json!({ "status": "accepted", "seq": seq, "type": kind })),
            )
                .into_response()
        }
        Ok(Submitted::Duplicate { seq, status }) => {
            metrics.event(kind, "duplicate");
            (
                StatusCode::OK,
                Json(json!({
                    "status": "duplicate",
                    "seq": seq,
                    "event_status": status,
                    "message": "this webhook-id was accepted before; it is not processed again",
                })),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store an event");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "the event could not be stored; retry",
            )
        }
    }
}

/// The read and approval API takes the configured bearer token.
/// `Some(answer)` when the request lacks the API token.
fn unauthorized(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = &state.api_token else {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "no-token-configured",
            "no API token is configured (api_token_file or CLOSEOUT_API_TOKEN)",
        ));
    };
    let given = header(headers, "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    use subtle::ConstantTimeEq as _;
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        None
    } else {
        Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        ))
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list_runs(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Some(r) = unauthorized(&state, &headers) {
        return r;
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    match state.journal.call(move |j| j.runs(limit)).await {
        Ok(runs) => Json(json!({
            "runs": runs.iter().map(|r| json!({
                "run": r.id,
                "identity": r.identity,
                "trigger": r.trigger,
                "playbook": r.playbook,
                "status": r.status.as_str(),
                "created_at": r.created_at,
                "effective_at": r.effective_at,
                "contained_at": r.contained_at,
                "finished_at": r.finished_at,
                "approved_by": r.approved_by,
            })).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "journal", e.to_string()),
    }
}

async fn get_run(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = unauthorized(&state, &headers) {
        return r;
    }
    let wanted = id.clone();
    match state.journal.call(move |j| j.run(&wanted)).await {
        Ok(Some(run)) => match run.report_json.as_deref() {
            Some(report) => (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                report.to_string(),
            )
                .into_response(),
            None => Json(json!({
                "run": run.id,
                "identity": run.identity,
                "trigger": run.trigger,
                "status": run.status.as_str(),
                "message": "the run has no closure report yet",
            }))
            .into_response(),
        },
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "no-such-run",
            format!("run {id} not found"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "journal", e.to_string()),
    }
}

/// `POST /v1/runs/{id}/approve`: the bearer token must be one approver's own token
/// (`[[approvals.approver]] token_file`); the approver is who the token belongs to, never a name
/// in the body. The shared API token does not approve.
async fn approve_run(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let given = header(&headers, "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let engine = match crate::engine::Engine::open_async(&state.config_path).await {
        Ok(e) => e,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "engine", e.to_string()),
    };
    let approver =
        match engine.token_approver(&given) {
            Ok(Some(a)) if !given.is_empty() => a,
            Ok(_) => return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an approver's own bearer token is required ([[approvals.approver]] token_file)",
            ),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "engine", e.to_string()),
        };
    let outcome = match engine.record_approval(&id, &approver).await {
        Ok((_, outcome)) => outcome,
        Err(crate::engine::EngineError::NoSuchRun(_)) => {
            return error(
                StatusCode::NOT_FOUND,
                "no-such-run",
                format!("run {id} not found"),
            )
        }
        Err(e @ crate::engine::EngineError::NotWaiting { .. }) => {
            return error(StatusCode::CONFLICT, "not-waiting", e.to_string())
        }
        Err(e @ crate::engine::EngineError::Approval(_)) => {
            return error(StatusCode::FORBIDDEN, "approval-refused", e.to_string())
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "engine", e.to_string()),
    };
    let approvers = match outcome {
        crate::engine::ApprovalOutcome::Pending {
            approvers,
            required,
        } => {
            return (
                StatusCode::ACCEPTED,
                Json(json!({
                    "status": "approval-recorded",
                    "run": id,
                    "approver": approver.name,
                    "approvers": approvers,
                    "required": required,
                })),
            )
                .into_response()
        }
        crate::engine::ApprovalOutcome::Released { approvers } => approvers,
    };
    let run = id.clone();
    match state.queue.call(move |q| q.approve_waiting(&run)).await {
        Ok(seq) => {
            state.wake.notify_waiters();
            (
                StatusCode::ACCEPTED,
                Json(json!({
                    "status": "approved",
                    "run": id,
                    "approver": approver.name,
                    "approvers": approvers,
                    "event": seq,
                })),
            )
                .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "queue", e.to_string()),
    }
}

/// `GET /runs/{id}/report`: the run's self-contained HTML report. API token.
async fn run_report_html(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = unauthorized(&state, &headers) {
        return r;
    }
    let engine = match crate::engine::Engine::open_async(&state.config_path).await {
        Ok(e) => e,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "engine", e.to_string()),
    };
    let run = id.clone();
    let rendered = tokio::task::spawn_blocking(move || engine.html_report(&run)).await;
    match rendered {
        Ok(Ok(html)) => (
            [
                (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (
                    axum::http::header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:",
                ),
            ],
            html,
        )
            .into_response(),
        Ok(Err(e @ crate::engine::EngineError::NoSuchRun(_))) => {
            error(StatusCode::NOT_FOUND, "no-such-run", e.to_string())
        }
        Ok(Err(e @ crate::engine::EngineError::Export(_))) => {
            error(StatusCode::CONFLICT, "no-report", e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "engine", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "engine", e.to_string()),
    }
}

#[derive(Deserialize)]
struct GraphQuery {
    format: Option<String>,
}

async fn identity_graph(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<GraphQuery>,
) -> Response {
    if let Some(r) = unauthorized(&state, &headers) {
        return r;
    }
    let engine = match crate::engine::Engine::open_async(&state.config_path).await {
        Ok(e) => e,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "engine", e.to_string()),
    };
    match engine.resolve(&id).await {
        Ok(graph) => match q.format.as_deref() {
            Some("dot") => (
                [(axum::http::header::CONTENT_TYPE, "text/vnd.graphviz")],
                graph.to_dot(),
            )
                .into_response(),
            None | Some("json") => Json(graph).into_response(),
            Some(other) => error(
                StatusCode::BAD_REQUEST,
                "bad-format",
                format!("format {other:?}: expected json or dot"),
            ),
        },
        Err(e @ crate::engine::EngineError::UnknownIdentity { .. }) => {
            error(StatusCode::NOT_FOUND, "unknown-identity", e.to_string())
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, "resolve", e.to_string()),
    }
}

async fn readyz(State(state): State<Shared>) -> Response {
    if state.stopping.load(Ordering::SeqCst) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the service is stopping",
        );
    }
    match state.status.call(|q| q.depth()).await {
        Ok(_) => "ready\n".into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
    }
}

async fn metrics(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if state.config.serve.metrics_auth == crate::config::serve::MetricsAuth::Token {
        if let Some(r) = unauthorized(&state, &headers) {
            return r;
        }
    }
    let m = crate::metrics::global();
    if let Ok(depth) = state.status.call(|q| q.depth()).await {
        m.queue_depth.set(depth as i64);
    }
    if let Ok(counts) = state.status.call(|q| q.counts()).await {
        for (status, n) in counts {
            m.queue_events
                .get_or_create(&vec![("status", status.as_str().to_string())])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    if let Ok(counts) = state.journal.call(|j| j.runs_by_status()).await {
        for (status, n) in counts {
            m.runs
                .get_or_create(&vec![("status", status)])
                .set(n as i64);
        }
    }
    if let Ok(open) = state.journal.call(open_findings).await {
        m.open_findings.set(open as i64);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

/// Findings still open after the newest finished run of each identity (among the newest
/// [`OPEN_FINDINGS_WINDOW`] runs).
const OPEN_FINDINGS_WINDOW: usize = 1000;

fn open_findings(
    journal: &crate::store::journal::Journal,
) -> Result<u64, crate::store::journal::JournalError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut open = 0u64;
    for run in journal.runs(OPEN_FINDINGS_WINDOW)? {
        let Some(report) = run.report_json.as_deref() else {
            continue;
        };
        if !seen.insert(run.identity.clone()) {
            continue;
        }
        if let Ok(report) = serde_json::from_str::<crate::pipeline::report::ClosureReport>(report) {
            open += report.summary.open as u64;
        }
    }
    Ok(open)
}
