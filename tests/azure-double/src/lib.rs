//! A test double for Azure Resource Manager authorization, the Key Vault management and data
//! planes and Microsoft Graph v1.0, served over TLS on 127.0.0.1. The data plane answers requests
//! whose `Host` is `{vault}.{vault_dns_suffix}` (map that name to 127.0.0.1 in the client).
//!
//! Azure has no server that can run locally for these APIs, so this crate speaks their real REST
//! shapes (paths, `api-version`s, JSON bodies, `nextLink` paging, 429 with `Retry-After`) and
//! accepts the same write calls real Azure does, so any client can seed and read it. It is test
//! code and never ships in the `closeout` binary. See `README.md` for the routes and the known
//! differences from real Azure.
//!
//! ```no_run
//! # async fn demo() -> Result<(), closeout_azure_double::DoubleError> {
//! let double = closeout_azure_double::AzureDouble::start(Default::default()).await?;
//! let base = double.base_url(); // https://127.0.0.1:PORT
//! let ca_pem = double.ca_pem(); // trust this as a root
//! # let _ = (base, ca_pem);
//! double.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod app_roles;
mod arm;
mod auth;
mod auth_methods;
mod control;
mod entra_roles;
mod graph;
mod http;
mod keyvault_data;
mod rbac;
mod server;
mod state;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

pub use tls::CertBundle;

/// A client allowed to obtain tokens with the client-credentials grant.
#[derive(Debug, Clone)]
pub struct ClientCredential {
    pub client_id: String,
    pub client_secret: String,
}

/// How the double is configured. `Default` gives a fixed tenant, one client
/// (`closeout-test-client` / `closeout-test-secret`) and a page size of 3.
#[derive(Debug, Clone)]
pub struct Config {
    /// The one tenant the double serves (`/{tenant}/oauth2/v2.0/token`, `tenantId` fields).
    pub tenant_id: String,
    /// Clients accepted at the token endpoint, besides applications with a password added
    /// through Graph `addPassword`. Each is also in the directory from the start, as an
    /// application and a service principal whose appId is the client id, granted nothing until
    /// roles and app roles are assigned to it (what `closeout doctor` reads).
    pub clients: Vec<ClientCredential>,
    /// Page size of every list when the caller sends no `$top`.
    pub page_size: usize,
    /// Port to listen on (0 = any free port).
    pub port: u16,
    /// DNS suffix of `vaultUri`: `https://{name}.{suffix}:{vault_port}/`.
    pub vault_dns_suffix: String,
    /// Port in `vaultUri`. 0 (the default) means the double's own port: the double then serves
    /// the Key Vault data plane itself (requests whose `Host` is `{vault}.{vault_dns_suffix}`).
    /// Another value points vaults at an outside data-plane server (Lowkey Vault), or at a
    /// proxy in front of the double (it still serves requests whose `Host` is a vault host).
    pub vault_port: u16,
    /// Port in the absolute links the double writes (`nextLink`, `@odata.context`, the token
    /// endpoint in its OpenID configuration). 0 (the default) means its own port; a proxy in
    /// front of the double (the chaos bench's fault proxy) sets its own port here so that
    /// clients following links keep going through it.
    pub public_port: u16,
}

/// The tenant id the double uses by default.
pub const DEFAULT_TENANT_ID: &str = "72f988bf-0000-4000-8000-00000000c105";
/// The client id accepted by default.
pub const DEFAULT_CLIENT_ID: &str = "closeout-test-client";
/// The client secret accepted by default.
pub const DEFAULT_CLIENT_SECRET: &str = "closeout-test-secret";

impl Default for Config {
    fn default() -> Self {
        Self {
            tenant_id: DEFAULT_TENANT_ID.to_string(),
            clients: vec![ClientCredential {
                client_id: DEFAULT_CLIENT_ID.to_string(),
                client_secret: DEFAULT_CLIENT_SECRET.to_string(),
            }],
            page_size: 3,
            port: 0,
            vault_dns_suffix: "lowkey-vault.local".to_string(),
            vault_port: 0,
            public_port: 0,
        }
    }
}

/// Why the double could not start.
#[derive(Debug, thiserror::Error)]
pub enum DoubleError {
    #[error("cannot generate the TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot configure TLS: {0}")]
    Tls(#[from] tokio_rustls::rustls::Error),
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A running double. Dropping it does not stop the server; call [`AzureDouble::shutdown`].
pub struct AzureDouble {
    addr: SocketAddr,
    certs: CertBundle,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl AzureDouble {
    /// Generates the certificate, binds 127.0.0.1 and serves in a background task.
    pub async fn start(config: Config) -> Result<Self, DoubleError> {
        if config.page_size == 0 {
            return Err(DoubleError::Config("page_size must be at least 1".into()));
        }
        if config.tenant_id.trim().is_empty() {
            return Err(DoubleError::Config("tenant_id must not be empty".into()));
        }
        let certs = tls::generate(&config.vault_dns_suffix)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(|source| DoubleError::Bind {
                port: config.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| DoubleError::Bind {
            port: config.port,
            source,
        })?;
        let public_port = if config.public_port == 0 {
            addr.port()
        } else {
            config.public_port
        };
        let base_url = format!("https://127.0.0.1:{public_port}");
        let vault_port = if config.vault_port == 0 {
            addr.port()
        } else {
            config.vault_port
        };
        let app = Arc::new(state::App::new(config, base_url, vault_port));
        let acceptor = tls::acceptor(&certs)?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(server::serve(listener, acceptor, app, rx));
        Ok(Self {
            addr,
            certs,
            shutdown: tx,
            task,
        })
    }

    /// `https://127.0.0.1:PORT`, the base of every route (ARM, Graph under `/v1.0`, the token
    /// endpoint and the double-only `/_double` routes).
    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the CA certificate that signed the server's certificate: add it as a trusted root.
    pub fn ca_pem(&self) -> &str {
        &self.certs.ca_pem
    }

    /// A TLS acceptor presenting the double's own certificate (signed by [`Self::ca_pem`]), for
    /// a proxy that terminates TLS in front of the double, so clients keep verifying it
    /// against the same CA.
    pub fn tls_acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, DoubleError> {
        tls::acceptor(&self.certs)
    }

    /// PEM of the server (leaf) certificate.
    pub fn leaf_pem(&self) -> &str {
        &self.certs.leaf_pem
    }

    /// Stops accepting connections and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}
