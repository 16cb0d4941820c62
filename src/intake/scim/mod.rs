//! The SCIM 2.0 intake of `closeout serve` (RFC 7643/7644): an axum [`Router`] serving `Users`
//! (core schema and enterprise extension) and the discovery endpoints, meant to be nested under
//! `/scim/v2`. Every kept change of a User that matters to the lifecycle becomes a
//! [`LifecycleEvent`] (see [`lifecycle`]); `docs/scim.md` describes the whole contract.
//!
//! # Order of a change
//!
//! In one store transaction ([`store::ScimStore::write`], SQLite or PostgreSQL): the User is read
//! and locked, the request's `If-Match` is checked against it, the new User is written, the event
//! is handed to the sink inside that same transaction, the transaction commits, and only then is
//! the request answered. In `closeout serve` the sink stores the event in the event queue of the
//! same store — on SQLite the same file, on PostgreSQL the same database, in the same
//! PostgreSQL transaction (the queue's PostgreSQL backend takes the caller's transaction,
//! `PgQueue::submit_in`) — so the User and its event are committed together or not at all: an
//! acknowledged change always produced its stored event, and no event is stored for a change that
//! was rolled back. No ordering of two commits is needed, so none was chosen. The sink failing
//! rolls the change back (503). A retried request produces the same event id (the version did
//! not advance, and a new User's id is derived from its userName), which the queue recognises as
//! a duplicate.
//!
//! Several replicas on one PostgreSQL store serve SCIM at once: the User is read `FOR UPDATE`
//! inside the change's transaction, so two changes of one User at two replicas serialise — the
//! second reads the first's committed version, checks its `If-Match` against it (412 when it
//! named the old version) and applies its change on top (never lost). See [`store`].

pub mod error;
pub mod lifecycle;
pub mod patch;
pub mod path;
pub mod response;
pub mod schema;
pub mod store;

use crate::config::StoreConfig;
use crate::event::{EventSource, LifecycleEvent};
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{SecondsFormat, Utc};
pub use error::ScimError;
use lifecycle::Mapping;
use response::scim_json;
use schema::{CORE_USER, ENTERPRISE_USER, LIST_RESPONSE, MAX_RESULTS};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
pub use store::ScimTx;
use store::{ScimStore, Selection, StoredUser};

/// Where events go: the durable queue. Called before the request is answered, inside the
/// User's transaction, which it is given (an event written through it is kept only if the User
/// is); an `Err` fails the request with 503 and the change is not kept.
pub type EventSink =
    Arc<dyn Fn(&mut ScimTx<'_>, LifecycleEvent) -> Result<(), SinkError> + Send + Sync>;

/// Called after a change whose event the sink accepted was committed (`closeout serve` wakes
/// its workers: on PostgreSQL they cannot see the event before the commit).
pub type Committed = Arc<dyn Fn() + Send + Sync>;

/// Why the sink did not keep an event (the queue's own error, or the service stopping).
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// What the SCIM router needs.
#[derive(Debug, Clone)]
pub struct ScimConfig {
    /// The store holding the Users: `[store] path`'s SQLite file (tables created if missing)
    /// or the PostgreSQL store `[store] url` names (migrated at open).
    pub store: StoreConfig,
    /// Accepted bearer tokens (one per IdP, or an old and a new one during rotation).
    pub tokens: Vec<String>,
    /// Where the location of lifecycle events is read, as a SCIM path (e.g.
    /// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division`); default: the
    /// work address's `locality`.
    pub location_attribute: Option<String>,
    /// The public URL the router is reached at (e.g. `https://closeout.example/scim/v2`), for
    /// `meta.location` and `Location`; default: `http://<Host><mount point>`.
    pub base_url: Option<String>,
}

/// Why the SCIM router cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ScimSetupError {
    /// The SCIM store cannot be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// `location_attribute` is not a path this server supports.
    #[error("scim location_attribute {path:?}: {source}")]
    LocationAttribute {
        /// The configured path.
        path: String,
        /// Why it is refused.
        #[source]
        source: ScimError,
    },
    /// No bearer token is configured: every request would be refused.
    #[error("scim: at least one non-empty bearer token is required")]
    NoToken,
}

/// The router's state: the store, the sink and the settings.
#[derive(Clone)]
pub struct ScimState {
    inner: Arc<Inner>,
}

struct Inner {
    store: ScimStore,
    sink: EventSink,
    committed: std::sync::OnceLock<Committed>,
    /// SHA-256 of each accepted token: compared in constant time, whatever their lengths.
    token_digests: Vec<[u8; 32]>,
    mapping: Mapping,
    base_url: Option<String>,
}

impl ScimState {
    /// Open (or create) the store and check the settings.
    pub fn open(config: &ScimConfig, sink: EventSink) -> Result<ScimState, ScimSetupError> {
        let token_digests: Vec<[u8; 32]> = config
            .tokens
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| Sha256::digest(t.as_bytes()).into())
            .collect();
        if token_digests.is_empty() {
            return Err(ScimSetupError::NoToken);
        }
        let location = config
            .location_attribute
            .as_deref()
            .map(|p| {
                path::AttrPath::parse(p).map_err(|source| ScimSetupError::LocationAttribute {
                    path: p.to_string(),
                    source,
                })
            })
            .transpose()?;
        let store = ScimStore::open_config(&config.store)?;
        Ok(ScimState {
            inner: Arc::new(Inner {
                store,
                sink,
                committed: std::sync::OnceLock::new(),
                token_digests,
                mapping: Mapping { location },
                base_url: config
                    .base_url
                    .as_ref()
                    .map(|b| b.trim_end_matches('/').to_string()),
            }),
        })
    }

    /// Call `committed` after each change whose event the sink accepted was committed (set
    /// once: a second call is ignored).
    pub fn on_commit(self, committed: Committed) -> ScimState {
        let _ = self.inner.committed.set(committed);
        self
    }

    /// Whether the Users are in the PostgreSQL store.
    pub fn is_postgres(&self) -> bool {
        self.inner.store.is_postgres()
    }

    /// Run `f` on a blocking thread (the store and the sink block).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, ScimError> + Send + 'static,
    ) -> Result<T, ScimError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| ScimError::internal(format!("SCIM worker failed: {e}")))?
    }
}

/// The SCIM router: mount it with `Router::nest("/scim/v2", scim::router(state))`.
pub fn router(state: ScimState) -> Router {
    Router::new()
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(resource_type))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema_by_id))
        .route("/Users", get(list_users).post(create_user))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/.search", post(not_implemented))
        .fallback(|| async { ScimError::not_found("no such SCIM endpoint") })
        .method_not_allowed_fallback(|| async {
            ScimError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                "method not allowed on this endpoint",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// The URL the router is reached at, computed once per request.
#[derive(Debug, Clone)]
struct Base(String);

/// Bearer-token check for every endpoint (discovery included), and the base URL.
async fn authenticate(State(state): State<ScimState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| Sha256::digest(token.trim().as_bytes()));
    let ok = presented.is_some_and(|p| {
        // Check every token without stopping early, and each byte without branching.
        state.inner.token_digests.iter().fold(false, |found, want| {
            let diff = want
                .iter()
                .zip(p.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            found | (diff == 0)
        })
    });
    if !ok {
        return ScimError::unauthorized().into_response();
    }
    let base = match &state.inner.base_url {
        Some(b) => b.clone(),
        None => {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost")
                .to_string();
            let seen = req.uri().path().to_string();
            let original = req
                .extensions()
                .get::<OriginalUri>()
                .map(|o| o.path().to_string())
                .unwrap_or_else(|| seen.clone());
            let mount = original.strip_suffix(seen.as_str()).unwrap_or_default();
            format!("http://{host}{}", mount.trim_end_matches('/'))
        }
    };
    req.extensions_mut().insert(Base(base));
    next.run(req).await
}

/// Parse a request body: `application/scim+json` or `application/json` (or no content type).
fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ScimError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        if !ct.contains("json") {
            return Err(ScimError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                "send application/scim+json (or application/json)",
            ));
        }
    }
    serde_json::from_slice(body)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not valid JSON: {e}")))
}

async fn not_implemented() -> ScimError {
    ScimError::new(
        StatusCode::NOT_IMPLEMENTED,
        None,
        "searching across resource types is not supported; use GET /Users?filter=",
    )
}

async fn service_provider_config(Extension(Base(base)): Extension<Base>) -> Response {
    scim_json(&schema::service_provider_config(&base))
}

fn list_response(resources: Vec<Value>, total: usize, start_index: usize) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "itemsPerPage": resources.len(),
        "startIndex": start_index,
        "Resources": resources,
    })
}

/// A discovery collection as one ListResponse page.
fn list_all(all: Vec<Value>) -> Response {
    let n = all.len();
    scim_json(&list_response(all, n, 1))
}

/// One item of a discovery collection by its `id`.
fn find_by_id(all: Vec<Value>, id: &str, noun: &str) -> Response {
    match all.into_iter().find(|r| r["id"] == id) {
        Some(r) => scim_json(&r),
        None => ScimError::not_found(format!("no {noun} {id:?}")).into_response(),
    }
}

async fn resource_types(Extension(Base(base)): Extension<Base>) -> Response {
    list_all(schema::resource_types(&base))
}

async fn resource_type(
    Extension(Base(base)): Extension<Base>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    find_by_id(schema::resource_types(&base), &id, "resource type")
}

async fn schemas(Extension(Base(base)): Extension<Base>) -> Response {
    list_all(schema::schemas(&base))
}

async fn schema_by_id(
    Extension(Base(base)): Extension<Base>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    find_by_id(schema::schemas(&base), &id, "schema")
}

/// The SCIM representation of a stored User.
fn render(user: &StoredUser, base: &str) -> Value {
    let mut out = Map::new();
    let mut schemas = vec![Value::from(CORE_USER)];
    if user.doc.contains_key(ENTERPRISE_USER) {
        schemas.push(Value::from(ENTERPRISE_USER));
    }
    out.insert("schemas".into(), Value::Array(schemas));
    out.insert("id".into(), Value::from(user.id.clone()));
    out.extend(user.doc.clone());
    out.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": user.created.to_rfc3339_opts(SecondsFormat::Millis, true),
            "lastModified": user.last_modified.to_rfc3339_opts(SecondsFormat::Millis, true),
            "location": format!("{base}/Users/{}", user.id),
            "version": user.etag(),
        }),
    );
    Value::Object(out)
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5): which attributes a response shows.
#[derive(Debug, Default)]
struct Projection {
    include: Option<Vec<String>>,
    exclude: Vec<String>,
}

impl Projection {
    fn from_query(q: &HashMap<String, String>) -> Projection {
        let split = |s: &String| {
            s.split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
        };
        Projection {
            include: q.get("attributes").map(split).filter(|v| !v.is_empty()),
            exclude: q.get("excludedAttributes").map(split).unwrap_or_default(),
        }
    }

    /// Apply to a rendered User. `id` and `schemas` are always returned; unknown names are
    /// ignored.
    fn apply(&self, rendered: Value) -> Value {
        let Value::Object(full) = rendered else {
            return rendered;
        };
        let mut out = match &self.include {
            None => full.clone(),
            Some(names) => {
                let mut out = Map::new();
                for k in ["schemas", "id"] {
                    if let Some(v) = full.get(k) {
                        out.insert(k.into(), v.clone());
                    }
                }
                for name in names {
                    copy_path(&full, &mut out, name);
                }
                out
            }
        };
        for name in &self.exclude {
            remove_path(&mut out, name);
        }
        Value::Object(out)
    }
}

/// (container key or None for top level, attribute, sub-attribute) of a projection name.
fn projection_target(name: &str) -> Option<(Option<&'static str>, String, Option<String>)> {
    if name.eq_ignore_ascii_case("meta") {
        return Some((None, "meta".into(), None));
    }
    if name.eq_ignore_ascii_case(ENTERPRISE_USER) {
        return Some((None, ENTERPRISE_USER.into(), None));
    }
    let p = path::AttrPath::parse(name).ok()?;
    let attr = p.attr?.name.to_string();
    let container = (p.schema == ENTERPRISE_USER).then_some(ENTERPRISE_USER);
    Some((container, attr, p.sub.map(|s| s.name.to_string())))
}

fn copy_path(full: &Map<String, Value>, out: &mut Map<String, Value>, name: &str) {
    let Some((container, attr, sub)) = projection_target(name) else {
        return;
    };
    let (src, dst) = match container {
        None => (Some(full), &mut *out),
        Some(c) => {
            let src = full.get(c).and_then(Value::as_object);
            let dst = out.entry(c.to_string()).or_insert_with(|| json!({}));
            match dst {
                Value::Object(d) => (src, d),
                _ => return,
            }
        }
    };
    let Some(value) = src.and_then(|s| s.get(&attr)) else {
        return;
    };
    match sub {
        None => {
            dst.insert(attr, value.clone());
        }
        Some(sub) => {
            if let Some(v) = value.get(&sub) {
                if let Value::Object(o) = dst.entry(attr).or_insert_with(|| json!({})) {
                    o.insert(sub, v.clone());
                }
            }
        }
    }
    patch::tidy(out);
}

fn remove_path(out: &mut Map<String, Value>, name: &str) {
    let Some((container, attr, sub)) = projection_target(name) else {
        return;
    };
    let target = match container {
        None => Some(out),
        Some(c) => out.get_mut(c).and_then(Value::as_object_mut),
    };
    if let Some(t) = target {
        match sub {
            None => {
                t.remove(&attr);
            }
            Some(sub) => {
                if let Some(Value::Object(o)) = t.get_mut(&attr) {
                    o.remove(&sub);
                }
            }
        }
    }
}

/// One User answered, with its ETag (and `Location` for a 201).
fn user_response(
    status: StatusCode,
    user: &StoredUser,
    base: &str,
    projection: &Projection,
) -> Response {
    let mut resp = (status, scim_json(&projection.apply(render(user, base)))).into_response();
    if let Ok(v) = HeaderValue::from_str(&user.etag()) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED {
        if let Ok(v) = HeaderValue::from_str(&format!("{base}/Users/{}", user.id)) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
    }
    resp
}

fn parse_index(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ScimError> {
    q.get(name)
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                ScimError::invalid_value(format!("{name} must be an integer, found {v:?}"))
            })
        })
        .transpose()
}

async fn list_users(
    State(state): State<ScimState>,
    Extension(Base(base)): Extension<Base>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let filter = q
        .get("filter")
        .map(|f| path::ListFilter::parse(f))
        .transpose()?;
    // RFC 7644 §3.4.2.4: startIndex below 1 is 1; a negative count is 0.
    let start_index = parse_index(&q, "startIndex")?.unwrap_or(1).max(1);
    let count = parse_index(&q, "count")?
        .unwrap_or(MAX_RESULTS as i64)
        .clamp(0, MAX_RESULTS as i64);
    let projection = Projection::from_query(&q);
    let (total, users) = state
        .blocking(move |inner| {
            let sel = match &filter {
                None => Selection::All,
                Some(path::ListFilter::UserName(u)) => Selection::UserName(u),
                Some(path::ListFilter::ExternalId(e)) => Selection::ExternalId(e),
                Some(path::ListFilter::Id(i)) => Selection::Id(i),
            };
            let start = usize::try_from(start_index - 1).unwrap_or(0);
            let count = usize::try_from(count).unwrap_or(0);
            inner
                .store
                .read(|tx| tx.list(sel, start, count).map_err(ScimError::from))
        })
        .await?;
    let resources = users
        .iter()
        .map(|u| projection.apply(render(u, &base)))
        .collect();
    Ok(scim_json(&list_response(
        resources,
        total,
        usize::try_from(start_index).unwrap_or(1),
    )))
}

impl From<store::StoreError> for ScimError {
    /// A unique index refusing the write is 409 (a concurrent change took the userName first);
    /// the database giving up a transaction for a concurrent one is 503 (retry); anything else
    /// is 500, detailed in the server log only.
    fn from(e: store::StoreError) -> ScimError {
        if e.is_unique_violation() {
            tracing::info!(error = %e, "a concurrent SCIM change took the userName first");
            return ScimError::uniqueness("userName is already taken");
        }
        if e.is_contention() {
            tracing::warn!(error = %e, "a SCIM change gave way to a concurrent one; answering 503");
            return ScimError::unavailable("a concurrent change of the same User; retry");
        }
        tracing::error!(error = %e, "SCIM store failure");
        ScimError::internal("the SCIM store failed; see the server log")
    }
}

async fn get_user(
    State(state): State<ScimState>,
    Extension(Base(base)): Extension<Base>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let user = state
        .blocking(move |inner| {
            inner
                .store
                .read(|tx| tx.get(&id).map_err(ScimError::from))?
                .ok_or_else(|| not_found(&id))
        })
        .await?;
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if etag_matches(inm, &user) {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
    }
    Ok(user_response(
        StatusCode::OK,
        &user,
        &base,
        &Projection::from_query(&q),
    ))
}

fn not_found(id: &str) -> ScimError {
    ScimError::not_found(format!("no User with id {id:?}"))
}

/// Whether an `If-Match`/`If-None-Match` list names the User's current version.
fn etag_matches(list: &str, user: &StoredUser) -> bool {
    let want = user.etag();
    list.split(',').map(str::trim).any(|t| {
        t == "*" || t == want || t.trim_start_matches("W/") == want.trim_start_matches("W/")
    })
}

fn check_if_match(headers: &HeaderMap, user: &StoredUser) -> Result<(), ScimError> {
    match headers
        .get(header::IF_MATCH)
        .map(|v| v.to_str().unwrap_or_default())
    {
        Some(list) if !etag_matches(list, user) => Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            format!("the User changed: its version is {}", user.etag()),
        )),
        _ => Ok(()),
    }
}

/// Write a change (or a deletion) in the caller's transaction and hand its event to the sink
/// in that same transaction (see the module documentation for why in this order); the caller
/// commits. `new` with an empty id is a new User: its id is made here.
fn write_change(
    tx: &mut ScimTx<'_>,
    inner: &Inner,
    old: Option<&StoredUser>,
    new: Option<StoredUser>,
) -> Result<(Option<StoredUser>, bool), ScimError> {
    let mut new = new;
    if let Some(n) = new.as_mut().filter(|n| n.id.is_empty()) {
        // On PostgreSQL this locks the userName's count: a concurrent POST of the same userName
        // waits here, then finds this one's User below.
        n.id = tx.new_id(n.user_name())?;
    }
    if let Some(n) = &new {
        if let Some(other) = tx.id_by_user_name(n.user_name())? {
            if other != n.id {
                return Err(ScimError::uniqueness(format!(
                    "userName {:?} is already taken",
                    n.user_name()
                )));
            }
        }
        tx.put(n)?;
    } else if let Some(o) = old {
        tx.delete(&o.id)?;
    }
    let event = {
        let tx = std::cell::RefCell::new(&mut *tx);
        let resolve_manager = |m: &str| -> Option<String> {
            tx.borrow_mut()
                .get(m)
                .ok()
                .flatten()
                .map(|u| lifecycle::identity(&u.doc))
        };
        inner.mapping.event(
            old.map(|u| &u.doc),
            new.as_ref().map(|u| &u.doc),
            &resolve_manager,
        )
    };
    let Some((kind, identity, attributes)) = event else {
        return Ok((new, false));
    };
    let (id, version) = match (&new, old) {
        (Some(n), _) => (n.id.clone(), n.version),
        (None, Some(o)) => (o.id.clone(), o.version + 1),
        (None, None) => return Err(ScimError::internal("a change without a User")),
    };
    let event = LifecycleEvent {
        source: EventSource::Scim,
        external_id: format!("scim:User:{id}:v{version}"),
        kind,
        identity,
        attributes,
        effective_at: Utc::now(),
    };
    (inner.sink)(tx, event).map_err(|e| {
        tracing::warn!(error = %e, "the event queue refused a SCIM change; answering 503");
        ScimError::unavailable(format!(
            "the change was not kept: the event queue is unavailable ({e})"
        ))
    })?;
    Ok((new, true))
}

/// Run `change` in one write transaction of the store and commit it; then tell
/// `committed` when an event was handed to the sink.
fn commit<T: Send>(
    inner: &Inner,
    change: impl FnOnce(&mut ScimTx<'_>) -> Result<(T, bool), ScimError> + Send,
) -> Result<T, ScimError> {
    let (value, evented) = inner.store.write(change)?;
    if evented {
        if let Some(committed) = inner.committed.get() {
            committed();
        }
    }
    Ok(value)
}

fn require_user_name(doc: &Map<String, Value>) -> Result<(), ScimError> {
    match doc.get("userName").and_then(Value::as_str) {
        Some(u) if !u.trim().is_empty() => Ok(()),
        _ => Err(ScimError::invalid_value("userName is required")),
    }
}

async fn create_user(
    State(state): State<ScimState>,
    Extension(Base(base)): Extension<Base>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let doc = patch::document(&parse_body(&headers, &body)?)?;
    require_user_name(&doc)?;
    let user = state
        .blocking(move |inner| {
            let now = Utc::now();
            let draft = StoredUser {
                id: String::new(),
                version: 1,
                created: now,
                last_modified: now,
                doc,
            };
            commit(inner, |tx| {
                let (user, evented) = write_change(tx, inner, None, Some(draft))?;
                let user =
                    user.ok_or_else(|| ScimError::internal("the new User was not returned"))?;
                Ok((user, evented))
            })
        })
        .await?;
    Ok(user_response(
        StatusCode::CREATED,
        &user,
        &base,
        &Projection::default(),
    ))
}

/// Load a User, let `change` compute its new document, and keep it if it differs (an unchanged
/// document keeps its version and produces no event: a retried request is a no-op).
async fn update_user(
    state: ScimState,
    id: String,
    headers: HeaderMap,
    change: impl FnOnce(&StoredUser) -> Result<Map<String, Value>, ScimError> + Send + 'static,
) -> Result<StoredUser, ScimError> {
    state
        .blocking(move |inner| {
            commit(inner, |tx| {
                // Locked: a concurrent change of this User (another replica's) waits for this
                // transaction, and this one read the last committed version.
                let old = tx.lock(&id)?.ok_or_else(|| not_found(&id))?;
                check_if_match(&headers, &old)?;
                let doc = change(&old)?;
                require_user_name(&doc)?;
                if doc == old.doc {
                    return Ok((old, false));
                }
                let new = StoredUser {
                    version: old.version + 1,
                    last_modified: Utc::now(),
                    doc,
                    ..old.clone()
                };
                let (user, evented) = write_change(tx, inner, Some(&old), Some(new))?;
                let user = user.ok_or_else(|| ScimError::internal("the User was not returned"))?;
                Ok((user, evented))
            })
        })
        .await
}

async fn replace_user(
    State(state): State<ScimState>,
    Extension(Base(base)): Extension<Base>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let doc = patch::document(&parse_body(&headers, &body)?)?;
    let user = update_user(state, id, headers, move |_| Ok(doc)).await?;
    Ok(user_response(
        StatusCode::OK,
        &user,
        &base,
        &Projection::default(),
    ))
}

async fn patch_user(
    State(state): State<ScimState>,
    Extension(Base(base)): Extension<Base>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let ops = patch::parse(&parse_body(&headers, &body)?)?;
    let user = update_user(state, id, headers, move |old| {
        let mut doc = old.doc.clone();
        patch::apply(&mut doc, &ops)?;
        Ok(doc)
    })
    .await?;
    Ok(user_response(
        StatusCode::OK,
        &user,
        &base,
        &Projection::default(),
    ))
}

async fn delete_user(
    State(state): State<ScimState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    state
        .blocking(move |inner| {
            commit(inner, |tx| {
                let old = tx.lock(&id)?.ok_or_else(|| not_found(&id))?;
                check_if_match(&headers, &old)?;
                let (_, evented) = write_change(tx, inner, Some(&old), None)?;
                Ok(((), evented))
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
