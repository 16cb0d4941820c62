//! Test support for Closeout's integration tests: start the real emulators, and fail loudly when
//! they cannot start; and the provider contract suite ([`contract`]) every provider runs against
//! its emulator.
//!
//! A test that needs an emulator starts its own, on a free loopback port, and the emulator dies
//! with the handle (or, for OpenBao, shares one per test binary: [`OpenBaoServer::shared`], which
//! dies with the process). Nothing here ever skips a test: a missing virtualenv or a server that does
//! not come up is a panic with a message that says what to do (usually: run `scripts/setup.sh`).
//!
//! ```no_run
//! # async fn demo() {
//! let moto = closeout_testkit::MotoServer::start();
//! let sdk = closeout_testkit::aws_sdk_config(&moto.endpoint()).await;
//! let iam = aws_sdk_iam::Client::new(&sdk);
//! # let _ = iam;
//! # }
//! ```
//!
//! The Python virtualenv holding `moto_server` (and `bao`) is `$CLOSEOUT_VENV`, or `.venv` at the
//! workspace root (where `scripts/setup.sh` creates it). The Azure double (`tests/azure-double`)
//! runs in the test process; `docs/keyvault-data-plane.md` says why Key Vault is tested against it.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod contract;
pub mod keycloak;
pub mod openbao;
pub mod postgres;
pub mod proxy;
pub mod scim_app;
pub use keycloak::{KeycloakRealm, KeycloakServer};
pub use openbao::OpenBaoServer;
pub use postgres::PostgresServer;
pub use scim_app::ScimApp;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

/// How long an emulator may take to answer before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of the server's output kept for error messages.
const TAIL_LINES: usize = 40;

/// Attempts to start on a fresh port when the chosen one turns out to be taken.
const PORT_ATTEMPTS: usize = 3;

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// The Python virtualenv with the emulators: `$CLOSEOUT_VENV`, else `<workspace>/.venv`.
pub fn venv_dir() -> PathBuf {
    std::env::var_os("CLOSEOUT_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"))
}

/// A free TCP port on 127.0.0.1. Never returns the same port twice within one process, so
/// concurrent tests in one test binary cannot race each other for a port.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind a free port on 127.0.0.1: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cannot read the bound port: {e}"))
            .port();
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 after 100 attempts");
}

/// An AWS SDK configuration for an emulator at `endpoint`: static credentials
/// `testing`/`testing`, region `us-east-1`, and the endpoint for every service.
pub async fn aws_sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "closeout-testkit",
        ))
        .load()
        .await
}

/// A `moto_server` (AWS IAM, STS, Secrets Manager, ...) on a free port of 127.0.0.1, killed when
/// dropped.
///
/// AWS managed policies are not loaded (`MOTO_IAM_LOAD_MANAGED_POLICIES=false`) unless the
/// builder sets that variable.
pub struct MotoServer {
    child: Child,
    port: u16,
    output: Arc<Mutex<VecDeque<String>>>,
}

impl MotoServer {
    /// Start moto with default settings; panics if it cannot start (see the module docs).
    pub fn start() -> MotoServer {
        MotoServer::builder().start()
    }

    /// A builder to set environment variables (e.g. `INITIAL_NO_AUTH_ACTION_COUNT`) first.
    pub fn builder() -> MotoServerBuilder {
        MotoServerBuilder::default()
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The last lines the server wrote (stdout and stderr), for assertion messages.
    pub fn output_tail(&self) -> String {
        tail_text(&self.output)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for MotoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoServer")
            .field("pid", &self.child.id())
            .field("port", &self.port)
            .finish()
    }
}

/// Options for [`MotoServer`]; finish with [`MotoServerBuilder::start`].
#[derive(Debug, Clone)]
pub struct MotoServerBuilder {
    venv: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
}

impl Default for MotoServerBuilder {
    fn default() -> Self {
        MotoServerBuilder {
            venv: None,
            env: Vec::new(),
            timeout: START_TIMEOUT,
        }
    }
}

impl MotoServerBuilder {
    /// Set an environment variable for the server, e.g. `INITIAL_NO_AUTH_ACTION_COUNT`.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Use this virtualenv instead of [`venv_dir`].
    pub fn venv(mut self, dir: impl Into<PathBuf>) -> Self {
        self.venv = Some(dir.into());
        self
    }

    /// How long to wait for the server to answer (default [`START_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Start the server and wait until it answers HTTP.
    ///
    /// # Panics
    /// When `moto_server` is not in the virtualenv, when it exits during start-up, or when it
    /// does not answer within the timeout; the message includes the tail of its output.
    pub fn start(self) -> MotoServer {
        let binary = self
            .venv
            .clone()
            .unwrap_or_else(venv_dir)
            .join("bin/moto_server");
        if !binary.is_file() {
            panic!(
                "moto_server not found at {}: run scripts/setup.sh (or set CLOSEOUT_VENV)",
                binary.display()
            );
        }
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            match self.try_start(&binary, port) {
                Ok(server) => return server,
                Err(Failure::PortTaken(_)) if attempt < PORT_ATTEMPTS => continue,
                Err(Failure::PortTaken(tail)) => panic!(
                    "moto_server ({}) could not bind 127.0.0.1:{port} (address in use, \
                     {PORT_ATTEMPTS} ports tried); its output:\n{tail}",
                    binary.display()
                ),
                Err(Failure::Exited(status, tail)) => panic!(
                    "moto_server ({}) exited during start-up on port {port} ({status}); \
                     its output:\n{tail}",
                    binary.display()
                ),
                Err(Failure::Timeout(tail)) => panic!(
                    "moto_server ({}) did not answer on http://127.0.0.1:{port} within {:?}; \
                     its output:\n{tail}",
                    binary.display(),
                    self.timeout
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn try_start(&self, binary: &Path, port: u16) -> Result<MotoServer, Failure> {
        let mut command = Command::new(binary);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "false")
            .env("PYTHONUNBUFFERED", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));

        // Drain both pipes continuously (moto logs every request; a full pipe would block it)
        // and keep the last lines for error messages.
        let output = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        if let Some(out) = child.stdout.take() {
            drain(out, Arc::clone(&output));
        }
        if let Some(err) = child.stderr.take() {
            drain(err, Arc::clone(&output));
        }
        let mut server = MotoServer {
            child,
            port,
            output,
        };

        let deadline = Instant::now() + self.timeout;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                // Give the reader threads a moment to collect the last words.
                std::thread::sleep(Duration::from_millis(100));
                let tail = server.output_tail();
                return Err(if tail.contains("Address already in use") {
                    Failure::PortTaken(tail)
                } else {
                    Failure::Exited(status, tail)
                });
            }
            if http_status(port, "/moto-api/").is_some() {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                // Dropping the server kills and reaps the child.
                let tail = server.output_tail();
                drop(server);
                return Err(Failure::Timeout(tail));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

enum Failure {
    PortTaken(String),
    Exited(ExitStatus, String),
    Timeout(String),
}

fn drain(pipe: impl Read + Send + 'static, sink: Arc<Mutex<VecDeque<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut tail = sink.lock().unwrap_or_else(|e| e.into_inner());
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });
}

fn tail_text(output: &Mutex<VecDeque<String>>) -> String {
    let tail = output.lock().unwrap_or_else(|e| e.into_inner());
    if tail.is_empty() {
        "(no output)".to_string()
    } else {
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// The status code of a plain-HTTP `GET path` to 127.0.0.1:`port`, or `None` when nothing
/// answers HTTP there within a couple of seconds. The readiness probe every server here uses.
pub(crate) fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    // "HTTP/1.1 200"
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    if !head.starts_with(b"HTTP/") {
        return None;
    }
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
