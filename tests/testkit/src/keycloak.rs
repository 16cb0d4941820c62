//! A Keycloak server (an OpenID Connect identity provider) for the Keycloak provider's
//! integration tests and the SCIM-app scenarios that sign in through it.
//!
//! Keycloak 26.7.3 is unpacked by `scripts/setup.sh` into `<venv>/keycloak-26.7.3` (and built
//! once there) and runs on the Java 21+ at `$KEYCLOAK_JAVA_HOME` (default
//! `/usr/lib/jvm/temurin-25-jdk-amd64`) as
//! `kc.sh start-dev --http-port=P --http-host=127.0.0.1` with an in-memory H2 database (so
//! servers of concurrent test binaries share nothing) and the bootstrap admin
//! [`ADMIN_USERNAME`] / [`ADMIN_PASSWORD`]. A start takes about a minute on 2 cores, so a test
//! binary shares one server ([`KeycloakServer::shared`]) and each test makes its own realm
//! ([`KeycloakRealm`], which seeds it through the admin REST API and signs people in through
//! the OIDC endpoints).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

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

/// What a token endpoint answered: the tokens, or the OAuth error code (`invalid_grant`).
pub type Grant = Result<serde_json::Value, String>;

/// A realm of its own on the binary's shared server ([`KeycloakServer::shared`]), seeded only
/// through the admin REST API (signing in as the master realm's bootstrap admin), and the OIDC
/// endpoints an application would use to sign people in to it. Every admin call panics on a
/// non-2xx answer with the method, URL and body: these are test fixtures.
pub struct KeycloakRealm {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// The realm's name, `<prefix>-<n>-<pid>`.
    pub name: String,
    http: reqwest::Client,
}

impl KeycloakRealm {
    /// A new realm named `<prefix>-<n>-<pid>` on the shared server (started on first use), with
    /// unmanaged user attributes enabled (the provider correlates people by attribute).
    pub async fn new(prefix: &str) -> KeycloakRealm {
        static N: AtomicUsize = AtomicUsize::new(0);
        let server = tokio::task::spawn_blocking(KeycloakServer::shared)
            .await
            .expect("the Keycloak start-up thread panicked");
        let realm = KeycloakRealm {
            base: server.base_url(),
            name: format!(
                "{prefix}-{}-{}",
                N.fetch_add(1, Ordering::SeqCst),
                std::process::id()
            ),
            http: reqwest::Client::new(),
        };
        realm
            .admin(
                "POST",
                "",
                Some(json!({"realm": realm.name, "enabled": true})),
            )
            .await;
        let mut profile = realm.admin("GET", "/users/profile", None).await;
        profile["unmanagedAttributePolicy"] = json!("ENABLED");
        realm.admin("PUT", "/users/profile", Some(profile)).await;
        realm
    }

    async fn admin_token(&self) -> String {
        let answer: Value = self
            .http
            .post(format!(
                "{}/realms/master/protocol/openid-connect/token",
                self.base
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", ADMIN_USERNAME),
                ("password", ADMIN_PASSWORD),
            ])
            .send()
            .await
            .expect("admin sign-in")
            .json()
            .await
            .expect("admin token JSON");
        answer["access_token"]
            .as_str()
            .expect("admin access_token")
            .to_string()
    }

    /// One admin call under `/admin/realms/<realm>` (`""` with POST creates the realm);
    /// panics on a non-2xx answer. Returns the JSON answer, `Null` when empty.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path.is_empty() && method == "POST" {
            format!("{}/admin/realms", self.base)
        } else {
            format!("{}/admin/realms/{}{path}", self.base, self.name)
        };
        let mut req = self
            .http
            .request(method.parse().expect("method"), &url)
            .bearer_auth(self.admin_token().await);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let answer = req.send().await.expect("admin call");
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {url}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Create an enabled user with a verified email, a password and attributes; returns its id.
    pub async fn user(&self, username: &str, email: &str, password: &str, attrs: Value) -> String {
        self.admin(
            "POST",
            "/users",
            Some(json!({
                "username": username, "email": email, "emailVerified": true, "enabled": true,
                "firstName": username, "lastName": "Test", "attributes": attrs,
                "credentials": [{"type": "password", "value": password, "temporary": false}]
            })),
        )
        .await;
        self.user_id(username).await
    }

    /// Import one user representation through `POST partialImport`, which (unlike the
    /// credential endpoints of the admin API, which can only list, relabel and delete) stores
    /// credentials of any type from their `secretData` and `credentialData` JSON: an OTP
    /// ([`otp_credential`]) or a WebAuthn key ([`webauthn_credential`]). Returns the user's id.
    pub async fn import_user(&self, user: Value) -> String {
        let answer = self
            .admin(
                "POST",
                "/partialImport",
                Some(json!({"ifResourceExists": "FAIL", "users": [user]})),
            )
            .await;
        assert_eq!(answer["added"], 1, "partialImport: {answer}");
        answer["results"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("partialImport named no user id: {answer}"))
            .to_string()
    }

    pub async fn user_id(&self, username: &str) -> String {
        let found = self
            .admin(
                "GET",
                &format!("/users?username={username}&exact=true"),
                None,
            )
            .await;
        found[0]["id"].as_str().expect("user id").to_string()
    }

    /// Create a confidential client (direct access grants on, standard flow off unless
    /// `extra` says otherwise); returns its UUID.
    pub async fn client(&self, client_id: &str, secret: &str, extra: Value) -> String {
        let mut rep = json!({
            "clientId": client_id, "publicClient": false, "secret": secret,
            "directAccessGrantsEnabled": true, "standardFlowEnabled": false
        });
        if let (Some(r), Some(e)) = (rep.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        self.admin("POST", "/clients", Some(rep)).await;
        let found = self
            .admin("GET", &format!("/clients?clientId={client_id}"), None)
            .await;
        found[0]["id"].as_str().expect("client uuid").to_string()
    }

    fn endpoint(&self, what: &str) -> String {
        format!(
            "{}/realms/{}/protocol/openid-connect/{what}",
            self.base, self.name
        )
    }

    /// A POST to the realm's token endpoint.
    pub async fn token(&self, form: &[(&str, &str)]) -> Grant {
        let answer = self
            .http
            .post(self.endpoint("token"))
            .form(form)
            .send()
            .await
            .expect("token endpoint");
        let ok = answer.status().is_success();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        if ok {
            Ok(body)
        } else {
            Err(body["error"]
                .as_str()
                .unwrap_or("no error code")
                .to_string())
        }
    }

    /// Sign `username` in to `client` with its password (`offline`: ask for an offline
    /// token); returns the refresh (or offline) token.
    pub async fn sign_in(
        &self,
        client: &str,
        secret: &str,
        username: &str,
        password: &str,
        offline: bool,
    ) -> String {
        let scope = if offline {
            "openid offline_access"
        } else {
            "openid"
        };
        let answer = self
            .token(&[
                ("grant_type", "password"),
                ("client_id", client),
                ("client_secret", secret),
                ("username", username),
                ("password", password),
                ("scope", scope),
            ])
            .await
            .unwrap_or_else(|e| panic!("{username} could not sign in to {client}: {e}"));
        answer["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_string()
    }

    /// Use a refresh (or offline) token.
    pub async fn refresh(&self, client: &str, secret: &str, refresh_token: &str) -> Grant {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", client),
            ("client_secret", secret),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    pub async fn client_credentials(&self, client: &str, secret: &str) -> Grant {
        self.token(&[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
        ])
        .await
    }

    /// The authorization-code flow a browser goes through, driven over HTTP: GET the
    /// authorization endpoint, POST `username`/`password` to the login form's action, POST
    /// "accept" to the consent form (a client with `consentRequired`), then exchange the code
    /// the last redirect carries for tokens, which are returned. Cookies are kept by hand
    /// (Keycloak marks them `Secure` even on plain-HTTP loopback, which a browser-like cookie
    /// store would then withhold) and redirects are followed by hand up to `redirect_uri`.
    ///
    /// # Panics
    /// On a page that is neither the login nor the consent form (its text is in the message),
    /// or a code Keycloak will not exchange.
    pub async fn sign_in_with_consent(
        &self,
        client: &str,
        secret: &str,
        redirect_uri: &str,
        scope: &str,
        username: &str,
        password: &str,
    ) -> Value {
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        let mut cookies: Vec<(String, String)> = Vec::new();
        let start = reqwest::Url::parse_with_params(
            &self.endpoint("auth"),
            [
                ("client_id", client),
                ("response_type", "code"),
                ("redirect_uri", redirect_uri),
                ("scope", scope),
                ("state", "closeout-test"),
            ],
        )
        .expect("authorization URL");
        let mut next: (String, Option<Vec<(&str, String)>>) = (start.to_string(), None);
        for _ in 0..10 {
            let (url, form) = next;
            let mut req = match &form {
                Some(f) => browser.post(&url).form(f),
                None => browser.get(&url),
            };
            if !cookies.is_empty() {
                let header: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
                req = req.header("cookie", header.join("; "));
            }
            let answer = req.send().await.expect("authorization flow");
            for set in answer.headers().get_all("set-cookie") {
                let pair = set.to_str().unwrap_or("").split(';').next().unwrap_or("");
                if let Some((k, v)) = pair.split_once('=') {
                    cookies.retain(|(name, _)| name != k);
                    cookies.push((k.to_string(), v.to_string()));
                }
            }
            let status = answer.status();
            if status.is_redirection() {
                let location = header_text(&answer, "location")
                    .unwrap_or_else(|| panic!("{url}: a redirect without a location"));
                if location.starts_with(redirect_uri) {
                    let back = reqwest::Url::parse(&location).expect("redirect URL");
                    let code = back
                        .query_pairs()
                        .find(|(k, _)| k == "code")
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_else(|| panic!("no code in {location}"));
                    return self
                        .token(&[
                            ("grant_type", "authorization_code"),
                            ("client_id", client),
                            ("client_secret", secret),
                            ("code", &code),
                            ("redirect_uri", redirect_uri),
                        ])
                        .await
                        .unwrap_or_else(|e| panic!("the code was not exchanged: {e}"));
                }
                next = (self.absolute(&location), None);
                continue;
            }
            let page = answer.text().await.unwrap_or_default();
            assert!(status.is_success(), "{url}: {status}: {page}");
            if let Some(action) = form_action(&page, "id=\"kc-form-login\"") {
                let form = vec![
                    ("username", username.to_string()),
                    ("password", password.to_string()),
                    ("credentialId", String::new()),
                ];
                next = (self.absolute(&action), Some(form));
            } else if let Some(action) = form_action(&page, "login-actions/consent") {
                let code = hidden_value(&page, "code")
                    .unwrap_or_else(|| panic!("no code on the consent page: {page}"));
                next = (
                    self.absolute(&action),
                    Some(vec![("code", code), ("accept", "Yes".to_string())]),
                );
            } else {
                panic!("{username} signing in to {client}: neither a login nor a consent form at {url}:\n{page}");
            }
        }
        panic!("{username} signing in to {client}: more than 10 steps without a code");
    }

    /// A form action or redirect location made absolute against the server.
    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_string()
        }
    }
}

fn header_text(answer: &reqwest::Response, name: &str) -> Option<String> {
    answer
        .headers()
        .get(name)?
        .to_str()
        .ok()
        .map(str::to_string)
}

/// The `action` of the first `<form ...>` tag whose text contains `marker`, HTML-unescaped.
fn form_action(page: &str, marker: &str) -> Option<String> {
    page.split("<form").skip(1).find_map(|rest| {
        let tag = &rest[..rest.find('>')?];
        if !tag.contains(marker) {
            return None;
        }
        let start = tag.find("action=\"")? + "action=\"".len();
        let end = start + tag[start..].find('"')?;
        Some(tag[start..end].replace("&amp;", "&"))
    })
}

/// The value of the hidden input `name` on a page.
fn hidden_value(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = start + page[start..].find('"')?;
    Some(page[start..end].replace("&amp;", "&"))
}

/// An OTP credential for [`KeycloakRealm::import_user`]: a time-based one with `seed` as its
/// shared secret (base32), 6 digits, 30 s, HMAC-SHA1 (`OTPCredentialModel`).
pub fn otp_credential(label: &str, seed: &str) -> Value {
    json!({
        "type": "otp",
        "userLabel": label,
        "secretData": json!({"value": seed}).to_string(),
        "credentialData": json!({
            "subType": "totp", "digits": 6, "counter": 0, "period": 30, "algorithm": "HmacSHA1"
        }).to_string(),
    })
}

/// A WebAuthn (security key, second factor) credential for [`KeycloakRealm::import_user`]:
/// `WebAuthnCredentialModel`'s credential data with `credential_id` and a placeholder public
/// key (Keycloak stores it as given; nothing here signs in with it), no secret data.
pub fn webauthn_credential(label: &str, credential_id: &str) -> Value {
    json!({
        "type": "webauthn",
        "userLabel": label,
        "secretData": "{}",
        "credentialData": json!({
            "aaguid": "00000000-0000-0000-0000-000000000000",
            "credentialId": credential_id,
            "counter": 0,
            "attestationStatement": null,
            "credentialPublicKey": "cGxhY2Vob2xkZXItY29zZS1rZXk",
            "attestationStatementFormat": "none",
            "transports": ["usb"],
        }).to_string(),
    })
}
