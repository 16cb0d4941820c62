//! Lowkey Vault (a test double of the Azure Key Vault data plane) for the Azure provider's
//! integration tests.
//!
//! The server is the runnable jar `com.github.nagyesta.lowkey-vault:lowkey-vault-app`
//! ([`LOWKEY_VERSION`]), which `scripts/setup.sh` fetches with Maven into
//! `<workspace>/.emulators/lib/` (or `$CLOSEOUT_LOWKEY_JAR`). It runs as `java -jar` on two free
//! loopback ports and dies with the handle:
//!
//! - the HTTPS port ([`LowkeyVaultServer::port`]) serves the Key Vault API and Lowkey's management
//!   API (`/management/vault`), with Lowkey's bundled self-signed certificate;
//! - the plain HTTP port ([`LowkeyVaultServer::token_port`], Lowkey's `app.token.port`) serves
//!   `/ping`, a managed-identity token endpoint and `/metadata/default-cert/lowkey-vault.p12`.
//!
//! Every vault is `https://<name>.lowkey-vault.local:<port>` ([`LowkeyVaultServer::vault_url`]):
//! the client maps those host names to 127.0.0.1 (reqwest's `resolve`), nothing touches
//! `/etc/hosts`. The server runs with `LOWKEY_AUTH_RESOURCE=lowkey-vault.local`, so its
//! authentication challenge names the resource `https://lowkey-vault.local`, which the Azure SDK's
//! challenge verification accepts for hosts under `.lowkey-vault.local`. Lowkey accepts any bearer
//! token. Vaults are created through the management API, at start ([`LowkeyVaultBuilder::vault`])
//! or later ([`LowkeyVaultServer::create_vault`]); Lowkey's own default vaults are switched off
//! (`LOWKEY_VAULT_NAMES=-`).
//!
//! The certificate ([`LowkeyVaultServer::cert_pem`]) is taken from the TLS handshake with the
//! server just started (trust on first use), not from the PKCS#12 file on the HTTP port: that
//! needs no PKCS#12 decoding and works whatever keystore format a Lowkey release ships.
//!
//! See `tests/testkit/LOWKEY.md` for the options, ports and quirks.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use crate::{drain, free_port, http_status, tail_text, workspace_root, PORT_ATTEMPTS, TAIL_LINES};

/// The Lowkey Vault release the tests run: the same version `scripts/setup.sh` fetches.
pub const LOWKEY_VERSION: &str = "3.4.23";

/// The domain every test vault lives under, and the challenge resource Lowkey announces.
pub const VAULT_DOMAIN: &str = "lowkey-vault.local";

/// The password of Lowkey's bundled keystore (`/metadata/default-cert/lowkey-vault.p12`).
pub const KEYSTORE_PASSWORD: &str = "changeit";

/// How long Lowkey (a Spring Boot application in a fresh JVM) may take to start.
pub const LOWKEY_START_TIMEOUT: Duration = Duration::from_secs(120);

/// The Lowkey Vault jar: `$CLOSEOUT_LOWKEY_JAR`, else
/// `<workspace>/.emulators/lib/lowkey-vault-app-<LOWKEY_VERSION>.jar`.
pub fn lowkey_jar() -> PathBuf {
    std::env::var_os("CLOSEOUT_LOWKEY_JAR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root()
                .join(".emulators/lib")
                .join(format!("lowkey-vault-app-{LOWKEY_VERSION}.jar"))
        })
}

/// `<name>.lowkey-vault.local`: the host name of a test vault.
pub fn vault_host(name: &str) -> String {
    format!("{name}.{VAULT_DOMAIN}")
}

/// A Lowkey Vault server on free ports of 127.0.0.1, killed when dropped.
pub struct LowkeyVaultServer {
    child: Child,
    port: u16,
    token_port: u16,
    output: Arc<Mutex<VecDeque<String>>>,
    cert_der: Vec<u8>,
    jar: PathBuf,
}

impl LowkeyVaultServer {
    /// Start Lowkey with one vault, `closeout`; panics if it cannot start.
    pub fn start() -> LowkeyVaultServer {
        LowkeyVaultServer::builder().vault("closeout").start()
    }

    /// A builder to name the vaults (and pass other options) first.
    pub fn builder() -> LowkeyVaultBuilder {
        LowkeyVaultBuilder::default()
    }

    /// The HTTPS port: the Key Vault API and the management API.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The plain HTTP port (`app.token.port`): `/ping`, `/metadata/...`.
    pub fn token_port(&self) -> u16 {
        self.token_port
    }

    /// `https://<name>.lowkey-vault.local:<port>`: the vault URL a Key Vault client uses.
    pub fn vault_url(&self, name: &str) -> String {
        format!("https://{}:{}", vault_host(name), self.port)
    }

    /// The address every vault host name must resolve to (127.0.0.1 and the HTTPS port).
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The server's certificate (DER), to trust as the only root.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The server's certificate as PEM (`-----BEGIN CERTIFICATE-----`).
    pub fn cert_pem(&self) -> String {
        pem_certificate(&self.cert_der)
    }

    /// The last lines the server wrote, for assertion messages.
    pub fn output_tail(&self) -> String {
        tail_text(&self.output)
    }

    /// Create the vault `https://<name>.lowkey-vault.local:<port>` (soft delete with purge
    /// allowed, 90 days, like a new Azure vault) and return its URL.
    ///
    /// # Panics
    /// On a name that is not a DNS label, or when Lowkey does not answer 200.
    pub fn create_vault(&self, name: &str) -> String {
        check_vault_name(name);
        let url = self.vault_url(name);
        let body = format!(
            r#"{{"baseUri":"{url}","recoveryLevel":"Recoverable+Purgeable","recoverableDays":90}}"#
        );
        match https_request(
            self.port,
            &self.cert_der,
            "POST",
            "/management/vault",
            Some(&body),
        ) {
            Ok((200, _)) => url,
            Ok((status, answer)) => panic!(
                "Lowkey Vault ({}) refused to create vault {url}: HTTP {status}\n{answer}\n\
                 its output:\n{}",
                self.jar.display(),
                self.output_tail()
            ),
            Err(e) => panic!(
                "cannot reach Lowkey Vault's management API on https://127.0.0.1:{} to create \
                 {url}: {e}\nits output:\n{}",
                self.port,
                self.output_tail()
            ),
        }
    }
}

impl Drop for LowkeyVaultServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for LowkeyVaultServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LowkeyVaultServer")
            .field("pid", &self.child.id())
            .field("port", &self.port)
            .field("token_port", &self.token_port)
            .finish()
    }
}

/// Options for [`LowkeyVaultServer`]; finish with [`LowkeyVaultBuilder::start`].
#[derive(Debug, Clone)]
pub struct LowkeyVaultBuilder {
    jar: Option<PathBuf>,
    java: PathBuf,
    vaults: Vec<String>,
    args: Vec<String>,
    timeout: Duration,
}

impl Default for LowkeyVaultBuilder {
    fn default() -> Self {
        LowkeyVaultBuilder {
            jar: None,
            java: PathBuf::from("java"),
            vaults: Vec::new(),
            args: Vec::new(),
            timeout: LOWKEY_START_TIMEOUT,
        }
    }
}

impl LowkeyVaultBuilder {
    /// Create the vault `https://<name>.lowkey-vault.local:<port>` once the server is up.
    pub fn vault(mut self, name: impl Into<String>) -> Self {
        self.vaults.push(name.into());
        self
    }

    /// Pass another option to Lowkey, e.g. `--LOWKEY_DEBUG_REQUEST_LOG=true`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Run this jar instead of [`lowkey_jar`].
    pub fn jar(mut self, jar: impl Into<PathBuf>) -> Self {
        self.jar = Some(jar.into());
        self
    }

    /// Run this `java` instead of the one on `PATH`.
    pub fn java(mut self, java: impl Into<PathBuf>) -> Self {
        self.java = java.into();
        self
    }

    /// How long to wait for the server (default [`LOWKEY_START_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Start the server, wait until it answers on both ports, read its certificate and create
    /// the vaults.
    ///
    /// # Panics
    /// When the jar or `java` is missing (with what to run), when a vault name is not a DNS
    /// label, when the server exits during start-up or does not answer within the timeout (with
    /// the tail of its output), or when a vault cannot be created.
    pub fn start(self) -> LowkeyVaultServer {
        for name in &self.vaults {
            check_vault_name(name);
        }
        let jar = self.jar.clone().unwrap_or_else(lowkey_jar);
        if !jar.is_file() {
            panic!(
                "Lowkey Vault jar not found at {}: run scripts/setup.sh, which fetches \
                 com.github.nagyesta.lowkey-vault:lowkey-vault-app:{LOWKEY_VERSION} from Maven \
                 Central with `mvn` (needs Java 17+), or set CLOSEOUT_LOWKEY_JAR to the jar",
                jar.display()
            );
        }
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let token_port = free_port();
            match self.try_start(&jar, port, token_port) {
                Ok(server) => {
                    for name in &self.vaults {
                        server.create_vault(name);
                    }
                    return server;
                }
                Err(Failure::PortTaken(tail)) => last = tail,
                Err(Failure::Exited(status, tail)) => panic!(
                    "Lowkey Vault ({}) exited during start-up on ports {port}/{token_port} \
                     ({status}); its output:\n{tail}",
                    jar.display()
                ),
                Err(Failure::Timeout(what, tail)) => panic!(
                    "Lowkey Vault ({}) did not come up within {:?} ({what}); its output:\n{tail}",
                    jar.display(),
                    self.timeout
                ),
            }
        }
        panic!(
            "Lowkey Vault ({}) could not bind its ports after {PORT_ATTEMPTS} attempts; \
             its output:\n{last}",
            jar.display()
        )
    }

    fn try_start(
        &self,
        jar: &Path,
        port: u16,
        token_port: u16,
    ) -> Result<LowkeyVaultServer, Failure> {
        let mut command = Command::new(&self.java);
        command
            // A quick start and a small heap: tests start many short-lived servers.
            .args([
                "-XX:TieredStopAtLevel=1",
                "-XX:+UseSerialGC",
                "-Xmx512m",
                "-jar",
            ])
            .arg(jar)
            .args([
                format!("--server.port={port}"),
                "--server.address=127.0.0.1".to_string(),
                format!("--app.token.port={token_port}"),
                "--LOWKEY_VAULT_NAMES=-".to_string(),
                format!("--LOWKEY_AUTH_RESOURCE={VAULT_DOMAIN}"),
            ])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run {} to start Lowkey Vault: {e}; install a Java 17+ runtime \
                 (scripts/setup.sh checks for one)",
                self.java.display()
            )
        });
        let output = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        if let Some(out) = child.stdout.take() {
            drain(out, Arc::clone(&output));
        }
        if let Some(err) = child.stderr.take() {
            drain(err, Arc::clone(&output));
        }
        let mut server = LowkeyVaultServer {
            child,
            port,
            token_port,
            output,
            cert_der: Vec::new(),
            jar: jar.to_path_buf(),
        };

        let deadline = Instant::now() + self.timeout;
        let mut waiting_for = format!("GET http://127.0.0.1:{token_port}/ping never answered 200");
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                let tail = server.output_tail();
                return Err(if tail.contains("already in use") {
                    Failure::PortTaken(tail)
                } else {
                    Failure::Exited(status, tail)
                });
            }
            if http_status(token_port, "/ping") == Some(200) {
                match server_certificate(port) {
                    Ok(der) => {
                        server.cert_der = der;
                        return Ok(server);
                    }
                    Err(e) => {
                        waiting_for = format!("no TLS handshake on 127.0.0.1:{port}: {e}");
                    }
                }
            }
            if Instant::now() >= deadline {
                let tail = server.output_tail();
                drop(server);
                return Err(Failure::Timeout(waiting_for, tail));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

enum Failure {
    PortTaken(String),
    Exited(ExitStatus, String),
    Timeout(String, String),
}

/// Vault names become DNS labels: lowercase letters, digits and inner hyphens.
fn check_vault_name(name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        panic!("vault name {name:?} is not a DNS label (lowercase letters, digits, inner hyphens)");
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The end-entity certificate the server on 127.0.0.1:`port` presents.
fn server_certificate(port: u16) -> io::Result<Vec<u8>> {
    let capture = Arc::new(CaptureCertificate {
        provider: provider(),
        seen: Mutex::new(None),
    });
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let mut conn =
        ClientConnection::new(Arc::new(config), server_name()).map_err(io::Error::other)?;
    let mut stream = connect(port)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut stream)?;
    }
    let seen = capture
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    seen.ok_or_else(|| io::Error::other("the server presented no certificate"))
}

/// One HTTPS request to the server on 127.0.0.1:`port`, trusting only `cert_der`:
/// `(status, body)` (the body as sent, possibly chunked: for messages only).
fn https_request(
    port: u16,
    cert_der: &[u8],
    method: &str,
    path: &str,
    body: Option<&str>,
) -> io::Result<(u16, String)> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert_der.to_vec()))
        .map_err(io::Error::other)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = ClientConnection::new(Arc::new(config), server_name()).map_err(io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, connect(port)?);
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Ok(_) => {}
        // Some servers close without a TLS close_notify; what arrived is the whole answer.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e),
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP answer: {answer:?}")))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The name the management calls present: Lowkey's certificate covers `localhost`.
fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("localhost is a valid server name")
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

/// A verifier that accepts any certificate and records the one presented (signatures are still
/// checked). Used once, against the server this process just started.
#[derive(Debug)]
struct CaptureCertificate {
    provider: Arc<CryptoProvider>,
    seen: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for CaptureCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// DER → PEM, 64 base64 characters a line.
fn pem_certificate(der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_wraps_base64_at_64_characters() {
        let der: Vec<u8> = (0..100).collect();
        let pem = pem_certificate(&der);
        let lines: Vec<&str> = pem.lines().collect();
        // 100 bytes are 136 base64 characters: 64 + 64 + 8.
        let widths: Vec<usize> = lines.iter().map(|l| l.len()).collect();
        assert_eq!(widths[1..4], [64, 64, 8]);
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[4], "-----END CERTIFICATE-----");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(lines[1..4].concat())
            .expect("base64");
        assert_eq!(decoded, der);
    }

    #[test]
    fn vault_urls_live_under_the_challenge_domain() {
        assert_eq!(vault_host("hr"), "hr.lowkey-vault.local");
    }

    #[test]
    #[should_panic(expected = "is not a DNS label")]
    fn vault_names_must_be_dns_labels() {
        check_vault_name("Bad_Name");
    }

    #[test]
    fn missing_jar_names_the_install_step() {
        let err = std::panic::catch_unwind(|| {
            LowkeyVaultServer::builder()
                .jar("/nonexistent/lowkey-vault-app.jar")
                .start()
        })
        .expect_err("a missing jar must panic");
        let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("scripts/setup.sh"), "{message}");
        assert!(message.contains("CLOSEOUT_LOWKEY_JAR"), "{message}");
    }
}
