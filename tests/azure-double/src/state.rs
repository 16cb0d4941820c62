//! The double's in-memory state: one `App` per server, everything behind one mutex. Handlers
//! take the lock, do their work synchronously and release it; nothing awaits while holding it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use axum::http::Method;
use serde::Serialize;

use crate::arm::ArmState;
use crate::graph::GraphState;
use crate::rbac::{self, RoleDefinition};
use crate::Config;

pub struct App {
    pub config: Config,
    pub base_url: String,
    /// The port in `vaultUri` (the double's own port unless `Config::vault_port` says otherwise).
    pub vault_port: u16,
    pub builtin_roles: Vec<RoleDefinition>,
    state: Mutex<State>,
    /// How long a key or certificate create takes (`/_double/create-delay`).
    create_delay_ms: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
pub struct State {
    pub tokens: HashMap<String, IssuedToken>,
    pub faults: Vec<Fault>,
    pub calls: Vec<CallRecord>,
    pub graph: GraphState,
    /// Directory roles, PIM schedules and delegated permission grants.
    pub entra_roles: crate::entra_roles::EntraRolesState,
    /// Users' authentication methods.
    pub auth_methods: crate::auth_methods::AuthMethodsState,
    pub arm: ArmState,
    /// Key Vault data-plane contents, by lower-case vault name.
    pub kv: HashMap<String, crate::keyvault_data::VaultData>,
}

/// A token the double issued.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The resource the token is for (`https://management.azure.com`, `https://graph.microsoft.com`, ...).
    pub audience: String,
    /// The client id that obtained it.
    pub client_id: String,
    pub expires: Instant,
}

/// An injected fault: the next `remaining` calls whose path starts with `path_prefix` (and
/// whose method matches, when given; on the data plane of vault `vault`, when given) answer
/// `status` (and whose query contains `query_contains`, when given): 429 with
/// `Retry-After: retry_after_seconds`, or an error in the API's own shape
/// (403 as a permission denied, 404 as an API the endpoint lacks, ...).
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub path_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    /// Only calls whose query string contains this (e.g. `$skiptoken`: a listing's later pages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_contains: Option<String>,
    pub status: u16,
    pub remaining: u32,
    pub retry_after_seconds: u64,
    /// The call is carried out and only its answer replaced by the fault: an answer lost after
    /// the service acted (a client must not act twice when it retries).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub after_effect: bool,
}

/// One logged call. Bodies are never recorded.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub method: String,
    /// The vault host (`{vault}.{suffix}`) of a Key Vault data-plane call; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub status: u16,
    /// The id sent back in `x-ms-request-id` (ARM, Key Vault) or `request-id` (Graph).
    pub request_id: String,
}

impl App {
    pub fn new(config: Config, base_url: String, vault_port: u16) -> Self {
        let mut state = State::default();
        state.arm.init_root(&config.tenant_id);
        let clients: Vec<&str> = config
            .clients
            .iter()
            .map(|c| c.client_id.as_str())
            .collect();
        state.graph.init(&clients);
        Self {
            config,
            base_url,
            vault_port,
            builtin_roles: rbac::builtin_roles(),
            state: Mutex::new(state),
            create_delay_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How long a key or certificate create takes (a slow HSM or issuer).
    pub fn create_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.create_delay_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    pub fn set_create_delay(&self, delay: std::time::Duration) {
        self.create_delay_ms.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A handler never panics while holding the lock on request data; if one did, the state
        // is still consistent enough for a test double.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Consumes one matching fault. `query` is the request's query string, `vault_host` its data-plane host
    /// (`{vault}.{suffix}`), if it is one.
    pub fn take_fault(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        vault_host: Option<&str>,
    ) -> Option<Fault> {
        let mut state = self.lock();
        let lower = path.to_ascii_lowercase();
        let vault = vault_host
            .and_then(|h| h.split('.').next())
            .map(str::to_ascii_lowercase);
        let fault = state.faults.iter_mut().find(|f| {
            f.remaining > 0
                && lower.starts_with(&f.path_prefix.to_ascii_lowercase())
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
                && f.vault
                    .as_deref()
                    .is_none_or(|v| vault.as_deref() == Some(v.to_ascii_lowercase().as_str()))
                && f.query_contains
                    .as_deref()
                    .is_none_or(|q| query.is_some_and(|query| query.contains(q)))
        })?;
        fault.remaining -= 1;
        let taken = fault.clone();
        state.faults.retain(|f| f.remaining > 0);
        Some(taken)
    }

    pub fn record_call(&self, call: CallRecord) {
        self.lock().calls.push(call);
    }
}
