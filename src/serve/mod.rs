//! `closeout serve`: lifecycle events in (signed HR webhooks, SCIM pushes), stored durably
//! before they are acknowledged, processed by a pool of workers (in order per identity, never
//! two runs for one identity at once), with a read and approval API, health and metrics.
//!
//! - [`crate::config::serve`]: the `[serve]` section.
//! - [`http`]: the routes.
//! - [`listen`]: the listener (connection limit, header-read and idle timeouts).
//! - [`worker`]: claiming events and running their playbook.
//!
//! Shutdown: SIGTERM (or Ctrl-C) stops intake at once (new connections are refused, `/readyz`
//! answers 503), workers take no new event, runs in flight get `shutdown_grace_secs` to finish,
//! then the process exits. An event whose run did not finish stays `processing` in the store and
//! is resumed — not restarted — by the next `closeout serve`.

mod http;
mod listen;
mod schedule;
mod worker;

use crate::config::Config;
use crate::intake::webhook::WebhookSecrets;
use crate::store::blocking::off_runtime;
use crate::store::queue::EventQueue;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why `closeout serve` cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration file is unreadable or invalid (exit 2).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A secret file (webhook secrets, SCIM or API token) cannot be read or is empty (exit 2).
    #[error("[serve] {0}")]
    SecretFile(#[from] crate::config::serve::SecretFileError),
    /// A webhook signing secret is not a valid `whsec_` secret (exit 2).
    #[error("[serve] webhook secrets: {0}")]
    WebhookSecrets(#[from] crate::intake::webhook::SecretError),
    /// The event queue cannot be opened or recovered at start-up (exit 1).
    #[error(transparent)]
    Queue(#[from] crate::store::queue::QueueError),
    /// The run journal cannot be opened (exit 1).
    #[error(transparent)]
    Journal(#[from] crate::store::journal::JournalError),
    /// The listen address cannot be bound (in use, or not permitted) (exit 1).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Another `closeout serve` runs on the same SQLite store (exit 1).
    #[error(transparent)]
    Presence(#[from] crate::store::presence::PresenceError),
    /// An I/O error at start-up (the store's directory cannot be made) or while serving (exit 1).
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
}

impl ServeError {
    /// Bad configuration is bad input (2); anything else is an error (1).
    pub fn exit_code(&self) -> i32 {
        match self {
            ServeError::Config(_) | ServeError::SecretFile(_) | ServeError::WebhookSecrets(_) => 2,
            _ => 1,
        }
    }
}

/// What every route and worker shares.
pub(crate) struct AppState {
    pub config_path: PathBuf,
    pub config: Config,
    /// Intake's and the schedulers' connection to the queue (each worker opens its own, so a
    /// worker waiting on the store never holds this one).
    pub queue: Arc<EventQueue>,
    /// Webhook intake's submissions, committed in groups on `queue`'s connection.
    pub intake: crate::store::group_commit::GroupCommit,
    /// A connection for `/readyz` and `/metrics` only: they read while writers wait.
    pub status: EventQueue,
    pub journal: crate::store::journal::Journal,
    pub webhook_secrets: Option<WebhookSecrets>,
    pub api_token: Option<String>,
    pub stopping: AtomicBool,
    /// Wakes idle workers when an event is stored or approved.
    pub wake: tokio::sync::Notify,
    /// The PostgreSQL store (`[store] url`), shared by every replica; `None` for SQLite.
    pub postgres: Option<Arc<crate::store::pg::PgStore>>,
    /// On PostgreSQL, the leader lease the schedulers run under, with this process's holder and
    /// whether it led at the last look; `None` for SQLite (one process: it always leads).
    pub leader: Option<Leader>,
}

/// The schedulers' leader lease: on PostgreSQL one replica at a time runs them.
pub(crate) struct Leader {
    pub leases: crate::store::lease::Leases,
    pub holder: crate::store::lease::Holder,
    pub leading: AtomicBool,
}

/// The leader lease's role name.
const SCHEDULERS: &str = "schedulers";

/// How long the schedulers' leader lease lasts without renewal (each pass renews it; a pass
/// is at most this often... a leader that stops is replaced after this).
const LEADER_TTL: Duration = Duration::from_secs(30);

impl AppState {
    /// Whether this process runs the schedulers now: always on SQLite; on PostgreSQL when it
    /// holds (or takes, or renews) the leader lease. Leader changes are logged and counted.
    pub(crate) async fn leads(&self) -> bool {
        let Some(leader) = &self.leader else {
            return true;
        };
        let (leases, holder) = (leader.leases.clone(), leader.holder.clone());
        let now = off_runtime(move || leases.lead(SCHEDULERS, &holder)).await;
        let leading = match now {
            Ok(l) => l.leading,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the schedulers' leader lease");
                false
            }
        };
        if leader.leading.swap(leading, Ordering::SeqCst) != leading {
            crate::metrics::global().leader_changes.inc();
            if leading {
                tracing::info!("this replica now runs the schedulers (leader lease taken)");
            } else {
                tracing::info!("another replica runs the schedulers now");
            }
        }
        leading
    }

    /// On a clean stop, once this process runs no scheduler pass any more: give the leader
    /// lease up (if it holds it) so another replica leads at its next pass, not after
    /// [`LEADER_TTL`].
    pub(crate) async fn resign(&self) {
        let Some(leader) = &self.leader else {
            return;
        };
        if !leader.leading.load(Ordering::SeqCst) {
            return;
        }
        let (leases, holder) = (leader.leases.clone(), leader.holder.clone());
        match off_runtime(move || leases.resign(SCHEDULERS, &holder)).await {
            Ok(()) => {
                leader.leading.store(false, Ordering::SeqCst);
                crate::metrics::global().leader_changes.inc();
                tracing::info!(
                    "resigned the schedulers' leader lease: another replica takes them over at once"
                );
            }
            Err(e) => tracing::warn!(
                error = %e,
                "cannot resign the schedulers' leader lease; another replica takes them over once it expires"
            ),
        }
    }
}

/// Run the service until SIGTERM or Ctrl-C.
pub async fn run(config_path: &Path) -> Result<(), ServeError> {
    let config = Config::load(config_path)?;
    let serve = config.serve.clone();
    let secrets = crate::config::serve::read_secrets(
        serve.webhook_secrets_file.as_ref(),
        "CLOSEOUT_WEBHOOK_SECRETS",
    )?;
    let webhook_secrets = if secrets.is_empty() {
        tracing::warn!("no webhook signing secret: POST /v1/events answers 401 to everything");
        None
    } else {
        Some(WebhookSecrets::parse(&secrets)?.with_tolerance(serve.webhook_tolerance_secs as i64))
    };
    let api_token =
        crate::config::serve::read_secret(serve.api_token_file.as_ref(), "CLOSEOUT_API_TOKEN")?;
    let scim_token =
        crate::config::serve::read_secret(serve.scim_token_file.as_ref(), "CLOSEOUT_SCIM_TOKEN")?;
    let postgres = match &config.store.url {
        None => None,
        Some(_) => {
            let store = config.store.clone();
            let opened = off_runtime(move || {
                crate::store::pg::PgStore::open(&store)
                    .map_err(crate::store::queue::QueueError::from)
            });
            Some(opened.await?)
        }
    };
    if postgres.is_none() {
        if let Some(parent) = config
            .store
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)?;
        }
    }
    // One `serve` per SQLite store, held until this function returns: a second one would put
    // this one's in-flight events back to pending and run them again.
    let _presence = match &postgres {
        None => Some(crate::store::presence::lock_for_serve(&config.store.path)?),
        Some(_) => None,
    };
    // Opening waits while another process writes to the store: off the async runtime.
    let (queue, status, journal) = match &postgres {
        Some(store) => (
            Arc::new(EventQueue::open_postgres(store, claim_ttl(&config))),
            EventQueue::open_postgres(store, claim_ttl(&config)),
            crate::store::journal::Journal::open_postgres(store),
        ),
        None => {
            let path = config.store.path.clone();
            let queue = Arc::new(off_runtime(move || EventQueue::open(&path)).await?);
            let path = config.store.path.clone();
            let status = off_runtime(move || EventQueue::open(&path)).await?;
            let path = config.store.path.clone();
            let journal = off_runtime(move || crate::store::journal::Journal::open(&path)).await?;
            (queue, status, journal)
        }
    };
    let leader = postgres.as_ref().map(|store| Leader {
        leases: crate::store::lease::Leases::postgres(store, LEADER_TTL),
        holder: crate::store::lease::Holder::this_process(),
        leading: AtomicBool::new(false),
    });
    let state = Arc::new(AppState {
        config_path: config_path.to_path_buf(),
        config,
        intake: crate::store::group_commit::GroupCommit::start(EventQueue::clone(&queue)),
        queue,
        status,
        journal,
        webhook_secrets,
        api_token,
        stopping: AtomicBool::new(false),
        wake: tokio::sync::Notify::new(),
        postgres,
        leader,
    });

    let recovered = state.queue.call(|q| q.recover()).await?;
    if !recovered.is_empty() {
        tracing::warn!(
            events = recovered.len(),
            "events were in flight when the service last stopped; their runs are resumed"
        );
    }

    let listener = tokio::net::TcpListener::bind(serve.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: serve.listen,
            source,
        })?;
    let local = listener.local_addr()?;
    // One line on stdout that scripts and tests wait for.
    println!("listening on http://{local}");
    tracing::info!(%local, workers = serve.workers, "closeout serve started");

    let router = http::router(state.clone(), scim_token);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Each worker and each scheduler runs on its own thread with its own single-threaded
    // runtime: the engine's futures borrow across awaits and are not `Send`, so they cannot be
    // spawned on the shared runtime, and a thread of their own means a slow provider call, store
    // write or fsync in one never holds up another, nor the listener.
    let mut loops: Vec<Background> = Vec::new();
    for n in 0..serve.workers {
        let (state, stop) = (state.clone(), stop_rx.clone());
        loops.push(Background::spawn(format!("worker-{n}"), move || {
            worker::run(state, n, stop)
        })?);
    }
    // The schedulers: on PostgreSQL they run only while this replica holds the leader lease.
    let mut schedulers: Vec<Background> = Vec::new();
    let every = |secs: u64| (secs > 0).then(|| Duration::from_secs(secs));
    if let Some(every) = every(serve.source_poll_secs) {
        let (state, stop) = (state.clone(), stop_rx.clone());
        schedulers.push(Background::spawn("file-source".into(), move || {
            schedule::file_source(state, every, stop)
        })?);
    }
    if let Some(every) = every(serve.reconcile_every_secs) {
        let (state, stop) = (state.clone(), stop_rx.clone());
        schedulers.push(Background::spawn("reconcile".into(), move || {
            schedule::reconcile(state, every, stop)
        })?);
    }
    if let Some(every) = every(serve.rotation_every_secs) {
        let (state, stop) = (state.clone(), stop_rx.clone());
        schedulers.push(Background::spawn("rotation".into(), move || {
            schedule::rotation(state, every, stop)
        })?);
    }
    if let Some(every) = every(serve.expiry_every_secs) {
        let (state, stop) = (state.clone(), stop_rx.clone());
        schedulers.push(Background::spawn("expiry".into(), move || {
            schedule::expiry(state, every, stop)
        })?);
    }

    let shutdown_state = state.clone();
    let limits = listen::Limits {
        header_read: Duration::from_secs(serve.header_read_timeout_secs),
        idle: Duration::from_secs(serve.idle_timeout_secs),
        max_connections: serve.max_connections,
    };
    listen::serve(listener, router, limits, async move {
        shutdown_signal().await;
        tracing::info!("stopping: intake closed, in-flight runs may finish");
        shutdown_state.stopping.store(true, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        shutdown_state.wake.notify_waiters();
    })
    .await;

    // The loops saw the stop signal with the listener; runs in flight get the grace period.
    // Once no scheduler pass runs here any more, the leader lease is resigned so another
    // replica takes the schedulers over at once rather than when the lease expires.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(serve.shutdown_grace_secs);
    let passes = futures::future::join_all(schedulers.into_iter().map(Background::finished));
    if tokio::time::timeout_at(deadline, passes).await.is_ok() {
        state.resign().await;
    }
    let all = futures::future::join_all(loops.into_iter().map(Background::finished));
    if tokio::time::timeout_at(deadline, all).await.is_err() {
        tracing::warn!(
            grace_secs = serve.shutdown_grace_secs,
            "runs still in flight after the grace period; they resume on the next start"
        );
    }
    Ok(())
}

/// How long a worker's claim on the PostgreSQL queue lasts without a heartbeat.
pub(crate) fn claim_ttl(config: &Config) -> Duration {
    Duration::from_secs(config.store.claim_ttl_secs)
}

/// A worker or scheduler loop on a thread of its own, with a single-threaded runtime.
struct Background {
    name: String,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Background {
    /// Start `make()`'s future on a new thread named `name`.
    fn spawn<F, Fut>(name: String, make: F) -> Result<Background, ServeError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let (tx, done) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                runtime.block_on(make());
                // The receiver is gone only when the service stopped waiting.
                let _ = tx.send(());
            })?;
        Ok(Background { name, done })
    }

    /// Wait until the loop has returned (it returns after the stop signal, once its current
    /// event or pass is finished).
    async fn finished(self) {
        if self.done.await.is_err() {
            tracing::error!(thread = %self.name, "a worker thread ended abnormally");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
