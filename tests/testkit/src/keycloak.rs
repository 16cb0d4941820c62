//! A Keycloak server (an OpenID Connect identity provider) for the Keycloak provider's
//! integration tests and the SCIM-app scenarios that sign in through it.
//!
//! Keycloak 26.7.3 is unpacked by `scripts/setup.sh` into `<venv>/keycloak-26.7.3` (and built
//! once there) and runs on the Java 21+ at `$KEYCLOAK_JAVA_HOME` (default
//! `/usr/lib/jvm/temurin-25-jdk-amd64`) as
//! `kc.sh start-dev --http-port=P --http-host=127.0.0.1` with an in-memory H2 database (so
//! servers of concurrent test binaries share nothing) and the bootstrap admin
//! [`ADMIN_USERNAME`] / [`ADMIN_PASSWORD`]. A start takes about a minute on 2 cores, so a test
//! binary shares one server ([`KeycloakServer::shared`]) and each test makes its own realm.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{drain, free_port, http_status, tail_text, venv_dir};

/// The Keycloak version `scripts/setup.sh` installs.
pub const VERSION: &str = "26.7.3";
/// The bootstrap admin of the master realm.
pub const ADMIN_USERNAME: &str = "admin";
/// Its password: a fixed, public value for a throwaway in-memory server on loopback.
pub const ADMIN_PASSWORD: &str = "closeout-test-admin";
/// How long a start may take (about a minute on 2 cores; two when start-dev must augment first,
/// which `scripts/setup.sh` makes it do once).
pub const KEYCLOAK_START_TIMEOUT: Duration = Duration::from_secs(300);

/// A Keycloak dev server on a free port of 127.0.0.1, stopped (SIGTERM) when dropped.
pub struct KeycloakServer {
    child: Child,
    port: u16,
    output: Arc<Mutex<VecDeque<String>>>,
}

/// `<venv>/keycloak-26.7.3`.
pub fn home() -> PathBuf {
    venv_dir().join(format!("keycloak-{VERSION}"))
}

fn java_home() -> PathBuf {
    std::env::var_os("KEYCLOAK_JAVA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/jvm/temurin-25-jdk-amd64"))
}

/// SIGTERM to `pid` (kc.sh forwards it to the JVM; a SIGKILL would orphan the JVM).
fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl KeycloakServer {
    /// Start a server; panics with what to do when it cannot.
    ///
    /// # Panics
    /// When Keycloak or Java is missing, the server exits during start-up, or it does not
    /// serve the master realm's discovery document within [`KEYCLOAK_START_TIMEOUT`].
    pub fn start() -> KeycloakServer {
        let home = home();
        let kc = home.join("bin/kc.sh");
        if !kc.is_file() {
            panic!(
                "Keycloak not found at {}: run scripts/setup.sh, which fetches \
                 org.keycloak:keycloak-quarkus-dist:{VERSION} from Maven Central into the \
                 virtualenv (or set CLOSEOUT_VENV)",
                home.display()
            );
        }
        let java = java_home();
        if !java.join("bin/java").is_file() {
            panic!(
                "no Java at {} (Keycloak needs Java 21+): install it or set KEYCLOAK_JAVA_HOME",
                java.display()
            );
        }
        let port = free_port();
        let mut child = Command::new(&kc)
            .args([
                "start-dev".to_string(),
                format!("--http-port={port}"),
                "--http-host=127.0.0.1".to_string(),
                format!("--db-url=jdbc:h2:mem:closeout-{port};NON_KEYWORDS=VALUE"),
            ])
            .env("JAVA_HOME", &java)
            .env("KC_BOOTSTRAP_ADMIN_USERNAME", ADMIN_USERNAME)
            .env("KC_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", kc.display()));
        let output = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(out) = child.stdout.take() {
            drain(out, Arc::clone(&output));
        }
        if let Some(err) = child.stderr.take() {
            drain(err, Arc::clone(&output));
        }
        let server = KeycloakServer {
            child,
            port,
            output,
        };
        let deadline = Instant::now() + KEYCLOAK_START_TIMEOUT;
        let mut server = server;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "Keycloak ({}) exited during start-up on port {port} ({status}); its output:\n{}",
                    kc.display(),
                    server.output_tail()
                );
            }
            if http_status(port, "/realms/master/.well-known/openid-configuration") == Some(200) {
                return server;
            }
            if Instant::now() >= deadline {
                let tail = server.output_tail();
                drop(server);
                panic!(
                    "Keycloak did not serve http://127.0.0.1:{port}/realms/master within \
                     {KEYCLOAK_START_TIMEOUT:?}; its output:\n{tail}"
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// One server for the whole test binary, started on first use; each test makes its own
    /// realm. A watchdog `sh` reading a pipe this process holds stops the server when the
    /// process exits, however it exits.
    pub fn shared() -> &'static KeycloakServer {
        static SHARED: OnceLock<(KeycloakServer, Child)> = OnceLock::new();
        &SHARED
            .get_or_init(|| {
                let server = KeycloakServer::start();
                let watchdog = Command::new("sh")
                    .args([
                        "-c",
                        "read line; kill -TERM \"$0\" 2>/dev/null",
                        &server.child.id().to_string(),
                    ])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start the Keycloak watchdog (sh): {e}"));
                (server, watchdog)
            })
            .0
    }

    /// `http://127.0.0.1:<port>`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The last lines the server wrote, for assertion messages.
    pub fn output_tail(&self) -> String {
        tail_text(&self.output)
    }
}

impl Drop for KeycloakServer {
    fn drop(&mut self) {
        terminate(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for KeycloakServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeycloakServer")
            .field("pid", &self.child.id())
            .field("port", &self.port)
            .finish()
    }
}
