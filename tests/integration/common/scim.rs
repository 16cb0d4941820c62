//! An in-process SCIM server for the tests: the router nested under `/scim/v2` on a free
//! loopback port, a temporary store (an SQLite file, or a new database on the shared PostgreSQL
//! cluster), and a sink that records events (or fails on demand).

use closeout::config::StoreConfig;
use closeout::event::LifecycleEvent;
use closeout::intake::scim::{router, EventSink, ScimConfig, ScimState, ScimTx};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub const TOKEN: &str = "test-token-0123456789";

pub struct Server {
    /// The SCIM root, e.g. `http://127.0.0.1:PORT/scim/v2`.
    pub base: String,
    pub events: Arc<Mutex<Vec<LifecycleEvent>>>,
    /// While true, the sink refuses every event.
    pub fail_sink: Arc<AtomicBool>,
    pub dir: tempfile::TempDir,
    /// The store the Users are in.
    pub store: StoreConfig,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// On an SQLite file in a new directory.
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = StoreConfig::sqlite(dir.path().join("scim.db"));
        Server::start_in(dir, store).await
    }

    /// On a new PostgreSQL database.
    pub async fn start_postgres() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _, _) = super::new_postgres_database(dir.path());
        Server::start_in(dir, store).await
    }

    /// On the SQLite file or the PostgreSQL database, as `postgres` says.
    pub async fn start_on(postgres: bool) -> Server {
        if postgres {
            Server::start_postgres().await
        } else {
            Server::start().await
        }
    }

    /// Start on an existing directory and store (to test a restart).
    pub async fn start_in(dir: tempfile::TempDir, store: StoreConfig) -> Server {
        let events: Arc<Mutex<Vec<LifecycleEvent>>> = Arc::default();
        let fail_sink = Arc::new(AtomicBool::new(false));
        let (ev, fail) = (events.clone(), fail_sink.clone());
        let sink: EventSink = Arc::new(move |_tx: &mut ScimTx<'_>, e| {
            if fail.load(Ordering::SeqCst) {
                return Err("queue down (test)".into());
            }
            ev.lock().expect("events lock").push(e);
            Ok(())
        });
        let config = ScimConfig {
            store: store.clone(),
            tokens: vec![TOKEN.to_string()],
            location_attribute: None,
            base_url: None,
        };
        let state = ScimState::open(&config, sink).expect("open the SCIM state");
        let app = axum::Router::new().nest("/scim/v2", router(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Server {
            base: format!("http://{addr}/scim/v2"),
            events,
            fail_sink,
            dir,
            store,
            task,
        }
    }

    /// Stop serving and hand back the directory and the store (the database stays).
    pub async fn stop(self) -> (tempfile::TempDir, StoreConfig) {
        self.task.abort();
        let _ = self.task.await;
        (self.dir, self.store)
    }

    pub fn events(&self) -> Vec<LifecycleEvent> {
        self.events.lock().expect("events lock").clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}
