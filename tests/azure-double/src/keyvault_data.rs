//! The Key Vault data plane (secrets, keys, certificates; REST api-version 7.x), served for
//! requests whose `Host` is `{vault}.{vault_dns_suffix}` (any port), for the ARM vault named
//! `{vault}`. Shapes follow the Key Vault 7.6 REST reference; what differs from real Key Vault is
//! listed in README.md.
//!
//! Authentication works like Key Vault's (401 + `WWW-Authenticate` challenge naming the
//! resource, then a bearer token for `https://{vault_dns_suffix}` or `https://vault.azure.net`);
//! authorization of the caller (access policies, data roles) is not modelled.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, RsaKeySize, SerialNumber,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha1::{Digest, Sha1};

use crate::http::{json_response, Req};
use crate::state::App;

/// The api-versions the data plane accepts (the Rust SDK 1.0 crates default to `2025-07-01`).
pub const API_VERSIONS: &[&str] = &["7.6", "7.5", "7.4", "2025-07-01"];

/// Key Vault's largest page (`maxresults` is 1..=25).
const MAX_RESULTS: usize = 25;

/// Request bodies above this are refused (Key Vault's own limit is far below it for secrets).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// One vault's secrets, keys and certificates, by lower-case name (names are case-insensitive).
#[derive(Default)]
pub struct VaultData {
    secrets: BTreeMap<String, Object<SecretVersion>>,
    keys: BTreeMap<String, Object<KeyVersion>>,
    certificates: BTreeMap<String, CertObject>,
}

/// A named object and its versions, oldest first; the last one is the current version.
struct Object<V> {
    name: String,
    versions: Vec<V>,
}

#[derive(Clone)]
struct Attrs {
    enabled: bool,
    created: i64,
    updated: i64,
    nbf: Option<i64>,
    exp: Option<i64>,
}

impl Attrs {
    fn new(input: Option<&AttrsIn>) -> Attrs {
        let now = now();
        Attrs {
            enabled: input.and_then(|a| a.enabled).unwrap_or(true),
            created: now,
            updated: now,
            nbf: input.and_then(|a| a.nbf),
            exp: input.and_then(|a| a.exp),
        }
    }

    fn apply(&mut self, input: &AttrsIn) {
        if let Some(enabled) = input.enabled {
            self.enabled = enabled;
        }
        if input.nbf.is_some() {
            self.nbf = input.nbf;
        }
        if input.exp.is_some() {
            self.exp = input.exp;
        }
        self.updated = now();
    }
}

struct SecretVersion {
    version: String,
    value: String,
    content_type: Option<String>,
    tags: BTreeMap<String, String>,
    attrs: Attrs,
    /// Backing secret of a certificate: `managed: true` and `kid` in every answer.
    managed: bool,
}

struct KeyVersion {
    version: String,
    kty: String,
    size: Option<u32>,
    crv: Option<String>,
    key_ops: Vec<String>,
    /// The public JWK members (`n`, `e` or `crv`, `x`, `y`), base64url.
    public: Map<String, Value>,
    /// The private key as PKCS#8 DER (RSA and EC P-256/384/521; none for `oct` and P-256K):
    /// kept so that every version, old ones included, can decrypt and unwrap.
    private_pkcs8: Option<Vec<u8>>,
    tags: BTreeMap<String, String>,
    attrs: Attrs,
    managed: bool,
}

struct CertObject {
    name: String,
    policy: Policy,
    policy_created: i64,
    policy_updated: i64,
    versions: Vec<CertVersion>,
    /// The last create operation (`GET /certificates/{name}/pending`).
    pending: Option<Pending>,
    /// Create operations accepted and not yet complete: `GET .../pending` answers `inProgress`
    /// and the current version is still the old one, as on Key Vault, where a new version
    /// appears only when its operation completes.
    creating: u32,
}

struct CertVersion {
    version: String,
    cer: Vec<u8>,
    x5t: String,
    tags: BTreeMap<String, String>,
    attrs: Attrs,
}

struct Pending {
    csr: Vec<u8>,
    request_id: String,
}

/// A certificate policy, with Key Vault's defaults filled in.
#[derive(Clone)]
struct Policy {
    kty: String,
    key_size: Option<u32>,
    crv: Option<String>,
    exportable: bool,
    reuse_key: bool,
    content_type: String,
    subject: String,
    dns_names: Vec<String>,
    ekus: Vec<String>,
    key_usage: Vec<String>,
    validity_months: u32,
    lifetime_actions: Value,
}

#[derive(Deserialize, Default)]
struct AttrsIn {
    enabled: Option<bool>,
    nbf: Option<i64>,
    exp: Option<i64>,
}

/// An error in Key Vault's shape: `{"error":{"code","message","innererror"?}}`.
#[derive(Debug)]
struct KvError {
    status: StatusCode,
    code: String,
    message: String,
    inner: Option<&'static str>,
}

impl KvError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> KvError {
        KvError {
            status,
            code: code.to_string(),
            message: message.into(),
            inner: None,
        }
    }

    fn bad(message: impl Into<String>) -> KvError {
        KvError::new(StatusCode::BAD_REQUEST, "BadParameter", message)
    }

    fn not_found(kind: Kind, name: &str, version: Option<&str>) -> KvError {
        let what = match version {
            Some(v) => format!("(name/id) {name}/{v}"),
            None => format!("(name/id) {name}"),
        };
        KvError::new(
            StatusCode::NOT_FOUND,
            kind.not_found_code(),
            format!(
                "A {} with {what} was not found in this key vault. If you recently deleted this {} you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
                kind.singular(),
                kind.singular()
            ),
        )
    }

    fn managed(kind: Kind, operation: &str) -> KvError {
        KvError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "Operation {operation} is not allowed on a managed {}: it belongs to a certificate; change the certificate instead.",
                kind.singular()
            ),
        )
    }

    fn internal(message: impl Into<String>) -> KvError {
        KvError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }
}

impl IntoResponse for KvError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(inner) = self.inner {
            error["innererror"] = json!({"code": inner});
        }
        json_response(self.status, json!({ "error": error }))
    }
}

impl From<rcgen::Error> for KvError {
    fn from(e: rcgen::Error) -> Self {
        KvError::bad(format!("cannot make the key or certificate: {e}"))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Secret,
    Key,
    Certificate,
}

impl Kind {
    fn singular(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Key => "key",
            Kind::Certificate => "certificate",
        }
    }

    fn not_found_code(self) -> &'static str {
        match self {
            Kind::Secret => "SecretNotFound",
            Kind::Key => "KeyNotFound",
            Kind::Certificate => "CertificateNotFound",
        }
    }
}

/// What every handler needs: the vault, the base of ids (`https://{host}:{port}`, as the client
/// addressed it) and the recovery level the vault's settings imply.
struct Ctx<'a> {
    app: &'a App,
    vault: String,
    base: String,
    recovery_level: &'static str,
    recoverable_days: u32,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn new_version() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The lower-case `{vault}.{suffix}` host of a data-plane request (port dropped), or `None` for
/// ARM, Graph and the token endpoint.
pub fn vault_host(app: &App, headers: &HeaderMap) -> Option<String> {
    let host = headers.get("host")?.to_str().ok()?;
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let suffix = app
        .config
        .vault_dns_suffix
        .trim_matches('.')
        .to_ascii_lowercase();
    if suffix.is_empty() {
        return None;
    }
    let vault = host.strip_suffix(&suffix)?.strip_suffix('.')?;
    (!vault.is_empty() && !vault.contains('.')).then(|| host.clone())
}

/// Middleware: requests to a vault host go to the data plane; everything else goes on to ARM,
/// Graph and the token endpoint. Sits inside the call log and fault layer, so data-plane calls
/// are recorded and can be faulted like the others.
pub async fn by_host(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/_double") {
        return next.run(request).await;
    }
    let Some(host) = vault_host(&app, request.headers()) else {
        return next.run(request).await;
    };
    let authority = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or(&host)
        .to_ascii_lowercase();
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            return KvError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestBodyTooLarge",
                "The request body is too large or could not be read.",
            )
            .into_response()
        }
    };
    let vault = host.split('.').next().unwrap_or_default().to_string();
    handle(
        &app,
        vault,
        format!("https://{authority}"),
        parts.method,
        &parts.uri,
        &parts.headers,
        body,
    )
}

fn handle(
    app: &App,
    vault: String,
    base: String,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    // A vault that ARM does not have is not there at all (real Azure: no DNS name).
    let settings = {
        let state = app.lock();
        state
            .arm
            .vaults
            .iter()
            .find(|v| v.name.eq_ignore_ascii_case(&vault))
            .map(|v| {
                (
                    v.properties.enable_purge_protection == Some(true),
                    v.properties.soft_delete_retention_in_days,
                )
            })
    };
    let Some((purge_protection, retention_days)) = settings else {
        return KvError::new(
            StatusCode::NOT_FOUND,
            "VaultNotFound",
            format!("No vault named '{vault}' exists. The double serves the data plane of vaults created through ARM."),
        )
        .into_response();
    };
    let caller = match crate::auth::authenticate_vault(app, headers) {
        Ok(caller) => caller,
        Err(err) => return err.into_response(),
    };
    let req = match Req::new(method, uri, body, caller) {
        Ok(req) => req,
        Err(message) => return KvError::bad(message).into_response(),
    };
    let ctx = Ctx {
        app,
        vault: vault.to_ascii_lowercase(),
        base,
        recovery_level: if purge_protection {
            "Recoverable"
        } else {
            "Recoverable+Purgeable"
        },
        recoverable_days: retention_days,
    };
    api_version(&req)
        .and_then(|()| route(&ctx, &req))
        .unwrap_or_else(IntoResponse::into_response)
}

fn api_version(req: &Req) -> Result<(), KvError> {
    match req.q("api-version") {
        None => Err(KvError::bad("Missing required query parameter: api-version")),
        Some(v) if API_VERSIONS.contains(&v) => Ok(()),
        Some(v) => Err(KvError::bad(format!(
            "The specified version ({v}) is not recognized. Consider using the latest supported version (7.6). Supported: {}.",
            API_VERSIONS.join(", ")
        ))),
    }
}

fn valid_name(name: &str) -> Result<(), KvError> {
    let ok = (1..=127).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(KvError::bad(format!(
            "The request URI contains an invalid name: {name}. Names are 1-127 characters of 0-9, a-z, A-Z and -."
        )))
    }
}

fn route(ctx: &Ctx, req: &Req) -> Result<Response, KvError> {
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let lower: Vec<String> = req
        .segments
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let fixed: Vec<&str> = lower.iter().map(String::as_str).collect();
    if let Some(name) = segs.get(1) {
        valid_name(name)?;
    }
    let m = &req.method;
    match (fixed.as_slice(), segs.as_slice()) {
        (["secrets"], _) if m == Method::GET => list_secrets(ctx, req),
        (["secrets", _, "versions"], [_, name, _]) if m == Method::GET => {
            secret_versions(ctx, req, name)
        }
        (["secrets", _], [_, name]) if m == Method::PUT => set_secret(ctx, req, name),
        (["secrets", _], [_, name]) if m == Method::GET => get_secret(ctx, name, None),
        (["secrets", _, _], [_, name, version]) if m == Method::GET => {
            get_secret(ctx, name, Some(version))
        }
        (["secrets", _], [_, name]) if m == Method::PATCH => update_secret(ctx, req, name, None),
        (["secrets", _, _], [_, name, version]) if m == Method::PATCH => {
            update_secret(ctx, req, name, Some(version))
        }
        (["keys"], _) if m == Method::GET => list_keys(ctx, req),
        (["keys", _, "versions"], [_, name, _]) if m == Method::GET => key_versions(ctx, req, name),
        (["keys", _, "create"], [_, name, _]) if m == Method::POST => create_key(ctx, req, name),
        (["keys", _, "rotate"], [_, name, _]) if m == Method::POST => rotate_key(ctx, name),
        (["keys", _, op], [_, name, _]) if m == Method::POST && KeyOp::parse(op).is_some() => {
            key_operation(ctx, req, name, None, op)
        }
        (["keys", _, _, op], [_, name, version, _])
            if m == Method::POST && KeyOp::parse(op).is_some() =>
        {
            key_operation(ctx, req, name, Some(version), op)
        }
        (["keys", _], [_, name]) if m == Method::GET => get_key(ctx, name, None),
        (["keys", _, _], [_, name, version]) if m == Method::GET => {
            get_key(ctx, name, Some(version))
        }
        (["keys", _], [_, name]) if m == Method::PATCH => update_key(ctx, req, name, None),
        (["keys", _, _], [_, name, version]) if m == Method::PATCH => {
            update_key(ctx, req, name, Some(version))
        }
        (["certificates"], _) if m == Method::GET => list_certificates(ctx, req),
        (["certificates", _, "versions"], [_, name, _]) if m == Method::GET => {
            certificate_versions(ctx, req, name)
        }
        (["certificates", _, "create"], [_, name, _]) if m == Method::POST => {
            create_certificate(ctx, req, name)
        }
        (["certificates", _, "pending"], [_, name, _]) if m == Method::GET => {
            get_pending(ctx, name)
        }
        (["certificates", _, "policy"], [_, name, _]) if m == Method::GET => get_policy(ctx, name),
        (["certificates", _], [_, name]) if m == Method::GET => get_certificate(ctx, name, None),
        (["certificates", _, _], [_, name, version]) if m == Method::GET => {
            get_certificate(ctx, name, Some(version))
        }
        (["certificates", _], [_, name]) if m == Method::PATCH => {
            update_certificate(ctx, req, name, None)
        }
        (["certificates", _, _], [_, name, version]) if m == Method::PATCH => {
            update_certificate(ctx, req, name, Some(version))
        }
        _ => Err(KvError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "The double's Key Vault data plane has no route {} {}.",
                req.method, req.path
            ),
        )),
    }
}

fn body<T: serde::de::DeserializeOwned>(req: &Req) -> Result<T, KvError> {
    let bytes: &[u8] = if req.body.is_empty() {
        b"{}"
    } else {
        &req.body
    };
    // The message names the JSON problem, never the body (a secret value may be in it).
    serde_json::from_slice(bytes).map_err(|e| {
        KvError::bad(format!(
            "The request body is not valid JSON for this operation (line {}, column {}).",
            e.line(),
            e.column()
        ))
    })
}

/// One page of `items` (`maxresults`, `$skiptoken`), with an absolute `nextLink` that repeats
/// the query, `api-version` included.
fn page(ctx: &Ctx, req: &Req, items: Vec<Value>) -> Result<Response, KvError> {
    let size = match req.q("maxresults") {
        Some(m) => match m.parse::<usize>() {
            Ok(n) if (1..=MAX_RESULTS).contains(&n) => n,
            _ => {
                return Err(KvError::bad(format!(
                    "Invalid value '{m}' for maxresults: it must be between 1 and {MAX_RESULTS}."
                )))
            }
        },
        None => ctx.app.config.page_size,
    };
    let offset = match req.q("$skiptoken") {
        Some(token) => token
            .strip_prefix("dbl-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| KvError::bad(format!("Invalid $skiptoken '{token}'.")))?,
        None => 0,
    };
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(offset).take(size).collect();
    let next = if offset + size < total {
        let mut pairs: Vec<(String, String)> = req
            .query
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken"))
            .cloned()
            .collect();
        pairs.push(("$skiptoken".into(), format!("dbl-{}", offset + size)));
        let query =
            serde_urlencoded::to_string(&pairs).map_err(|e| KvError::internal(e.to_string()))?;
        Value::String(format!("{}{}?{}", ctx.base, req.path, query))
    } else {
        Value::Null
    };
    Ok(json_response(
        StatusCode::OK,
        json!({"value": value, "nextLink": next}),
    ))
}

fn attrs_json(ctx: &Ctx, a: &Attrs) -> Value {
    let mut v = json!({
        "enabled": a.enabled,
        "created": a.created,
        "updated": a.updated,
        "recoveryLevel": ctx.recovery_level,
        "recoverableDays": ctx.recoverable_days,
    });
    if let Some(nbf) = a.nbf {
        v["nbf"] = json!(nbf);
    }
    if let Some(exp) = a.exp {
        v["exp"] = json!(exp);
    }
    v
}

fn put_tags(v: &mut Value, tags: &BTreeMap<String, String>) {
    if !tags.is_empty() {
        v["tags"] = json!(tags);
    }
}

/// The version asked for, or the current (newest) one.
fn pick<'a, V>(
    versions: &'a [V],
    version_of: impl Fn(&V) -> &str,
    version: Option<&str>,
) -> Option<&'a V> {
    match version {
        None => versions.last(),
        Some(v) => versions
            .iter()
            .find(|x| version_of(x).eq_ignore_ascii_case(v)),
    }
}

fn pick_mut<'a, V>(
    versions: &'a mut [V],
    version_of: impl Fn(&V) -> &str,
    version: Option<&str>,
) -> Option<&'a mut V> {
    match version {
        None => versions.last_mut(),
        Some(v) => versions
            .iter_mut()
            .find(|x| version_of(x).eq_ignore_ascii_case(v)),
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetSecretIn {
    value: Option<String>,
    content_type: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    attributes: Option<AttrsIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateSecretIn {
    content_type: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    attributes: Option<AttrsIn>,
}

/// A secret as Key Vault renders it. `id_version` false gives the versionless id of list items.
fn secret_json(
    ctx: &Ctx,
    name: &str,
    v: &SecretVersion,
    with_value: bool,
    id_version: bool,
) -> Value {
    let id = if id_version {
        format!("{}/secrets/{name}/{}", ctx.base, v.version)
    } else {
        format!("{}/secrets/{name}", ctx.base)
    };
    let mut out = json!({"id": id, "attributes": attrs_json(ctx, &v.attrs)});
    if with_value {
        out["value"] = json!(v.value);
    }
    if let Some(ct) = &v.content_type {
        out["contentType"] = json!(ct);
    }
    put_tags(&mut out, &v.tags);
    if v.managed {
        out["managed"] = json!(true);
        out["kid"] = json!(format!("{}/keys/{name}/{}", ctx.base, v.version));
    }
    out
}

fn set_secret(ctx: &Ctx, req: &Req, name: &str) -> Result<Response, KvError> {
    let input: SetSecretIn = body(req)?;
    let value = input
        .value
        .ok_or_else(|| KvError::bad("The parameter 'value' is required."))?;
    let mut state = ctx.app.lock();
    let data = state.kv.entry(ctx.vault.clone()).or_default();
    let object = data
        .secrets
        .entry(name.to_ascii_lowercase())
        .or_insert_with(|| Object {
            name: name.to_string(),
            versions: Vec::new(),
        });
    if object.versions.iter().any(|v| v.managed) {
        return Err(KvError::managed(Kind::Secret, "set"));
    }
    object.versions.push(SecretVersion {
        version: new_version(),
        value,
        content_type: input.content_type,
        tags: input.tags.unwrap_or_default(),
        attrs: Attrs::new(input.attributes.as_ref()),
        managed: false,
    });
    let name = object.name.clone();
    let latest = object
        .versions
        .last()
        .ok_or_else(|| KvError::internal("no version after set"))?;
    Ok(json_response(
        StatusCode::OK,
        secret_json(ctx, &name, latest, true, true),
    ))
}

fn list_secrets(ctx: &Ctx, req: &Req) -> Result<Response, KvError> {
    let items: Vec<Value> = {
        let state = ctx.app.lock();
        state
            .kv
            .get(&ctx.vault)
            .map(|d| {
                d.secrets
                    .values()
                    .filter_map(|o| {
                        o.versions
                            .last()
                            .map(|v| secret_json(ctx, &o.name, v, false, false))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    page(ctx, req, items)
}

fn secret_versions(ctx: &Ctx, req: &Req, name: &str) -> Result<Response, KvError> {
    let items: Vec<Value> = {
        let state = ctx.app.lock();
        let object = state
            .kv
            .get(&ctx.vault)
            .and_then(|d| d.secrets.get(&name.to_ascii_lowercase()))
            .ok_or_else(|| KvError::not_found(Kind::Secret, name, None))?;
        object
            .versions
            .iter()
            .map(|v| secret_json(ctx, &object.name, v, false, true))
            .collect()
    };
    page(ctx, req, items)
}

fn get_secret(ctx: &Ctx, name: &str, version: Option<&str>) -> Result<Response, KvError> {
    let state = ctx.app.lock();
    let object = state
        .kv
        .get(&ctx.vault)
        .and_then(|d| d.secrets.get(&name.to_ascii_lowercase()))
        .ok_or_else(|| KvError::not_found(Kind::Secret, name, version))?;
    let v = pick(&object.versions, |v| v.version.as_str(), version)
        .ok_or_else(|| KvError::not_found(Kind::Secret, name, version))?;
    if !v.attrs.enabled {
        return Err(KvError {
            status: StatusCode::FORBIDDEN,
            code: "Forbidden".into(),
            message: "Operation get is not allowed on a disabled secret.".into(),
            inner: Some("SecretDisabled"),
        });
    }
    Ok(json_response(
        StatusCode::OK,
        secret_json(ctx, &object.name, v, true, true),
    ))
}

fn update_secret(
    ctx: &Ctx,
    req: &Req,
    name: &str,
    version: Option<&str>,
) -> Result<Response, KvError> {
    let input: UpdateSecretIn = body(req)?;
    let mut state = ctx.app.lock();
    let object = state
        .kv
        .get_mut(&ctx.vault)
        .and_then(|d| d.secrets.get_mut(&name.to_ascii_lowercase()))
        .ok_or_else(|| KvError::not_found(Kind::Secret, name, version))?;
    let object_name = object.name.clone();
    let v = pick_mut(&mut object.versions, |v| v.version.as_str(), version)
        .ok_or_else(|| KvError::not_found(Kind::Secret, name, version))?;
    if v.managed {
        return Err(KvError::managed(Kind::Secret, "update"));
    }
    if let Some(a) = &input.attributes {
        v.attrs.apply(a);
    }
    if let Some(tags) = input.tags {
        v.tags = tags;
    }
    if input.content_type.is_some() {
        v.content_type = input.content_type;
    }
    v.attrs.updated = now();
    Ok(json_response(
        StatusCode::OK,
        secret_json(ctx, &object_name, v, false, true),
    ))
}

// ---------------------------------------------------------------------------------------------
// Keys

#[derive(Deserialize)]
struct CreateKeyIn {
    kty: Option<String>,
    key_size: Option<u32>,
    crv: Option<String>,
    key_ops: Option<Vec<String>>,
    tags: Option<BTreeMap<String, String>>,
    attributes: Option<AttrsIn>,
}

#[derive(Deserialize)]
struct UpdateKeyIn {
    key_ops: Option<Vec<String>>,
    tags: Option<BTreeMap<String, String>>,
    attributes: Option<AttrsIn>,
}

const KEY_OPS: &[&str] = &[
    "encrypt",
    "decrypt",
    "sign",
    "verify",
    "wrapKey",
    "unwrapKey",
    "import",
    "export",
];

/// Fresh key material: the public JWK members, and the key pair when a certificate needs it.
struct NewKey {
    kty: String,
    size: Option<u32>,
    crv: Option<String>,
    public: Map<String, Value>,
    pair: Option<KeyPair>,
}

fn family(kty: &str) -> &'static str {
    match kty {
        "RSA" | "RSA-HSM" => "RSA",
        "EC" | "EC-HSM" => "EC",
        _ => "oct",
    }
}

fn default_key_ops(kty: &str) -> Vec<String> {
    let ops: &[&str] = match family(kty) {
        "RSA" => &[
            "encrypt",
            "decrypt",
            "sign",
            "verify",
            "wrapKey",
            "unwrapKey",
        ],
        "EC" => &["sign", "verify"],
        _ => &["encrypt", "decrypt", "wrapKey", "unwrapKey"],
    };
    ops.iter().map(|s| s.to_string()).collect()
}

/// Makes a real RSA or EC key pair (rcgen on aws-lc-rs); `oct` keys get no public part. P-256K
/// has no rcgen support: its point is random bytes of the right length (not on the curve).
fn generate_key(kty: &str, size: Option<u32>, crv: Option<&str>) -> Result<NewKey, KvError> {
    let mut public = Map::new();
    public.insert("kty".into(), json!(kty));
    match family(kty) {
        "RSA" => {
            let size = size.unwrap_or(2048);
            let rsa = match size {
                2048 => RsaKeySize::_2048,
                3072 => RsaKeySize::_3072,
                4096 => RsaKeySize::_4096,
                _ => {
                    return Err(KvError::bad(format!(
                        "Invalid key size {size} for RSA: use 2048, 3072 or 4096."
                    )))
                }
            };
            let pair = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rsa)?;
            let (n, e) = rsa_public_parts(pair.public_key_raw())
                .ok_or_else(|| KvError::internal("cannot read the generated RSA public key"))?;
            public.insert("n".into(), json!(URL_SAFE_NO_PAD.encode(n)));
            public.insert("e".into(), json!(URL_SAFE_NO_PAD.encode(e)));
            Ok(NewKey {
                kty: kty.into(),
                size: Some(size),
                crv: None,
                public,
                pair: Some(pair),
            })
        }
        "EC" => {
            let crv = crv.unwrap_or("P-256");
            let (alg, len) = match crv {
                "P-256" => (Some(&rcgen::PKCS_ECDSA_P256_SHA256), 32),
                "P-384" => (Some(&rcgen::PKCS_ECDSA_P384_SHA384), 48),
                "P-521" => (Some(&rcgen::PKCS_ECDSA_P521_SHA512), 66),
                "P-256K" => (None, 32),
                _ => {
                    return Err(KvError::bad(format!(
                        "Invalid curve {crv}: use P-256, P-384, P-521 or P-256K."
                    )))
                }
            };
            let (x, y, pair) = match alg {
                Some(alg) => {
                    let pair = KeyPair::generate_for(alg)?;
                    let raw = pair.public_key_raw();
                    // Uncompressed point: 0x04 || X || Y.
                    if raw.len() != 1 + 2 * len || raw.first() != Some(&4) {
                        return Err(KvError::internal("unexpected EC public key encoding"));
                    }
                    (
                        raw[1..1 + len].to_vec(),
                        raw[1 + len..].to_vec(),
                        Some(pair),
                    )
                }
                None => {
                    let x: [u8; 32] = rand::random();
                    let y: [u8; 32] = rand::random();
                    (x.to_vec(), y.to_vec(), None)
                }
            };
            public.insert("crv".into(), json!(crv));
            public.insert("x".into(), json!(URL_SAFE_NO_PAD.encode(x)));
            public.insert("y".into(), json!(URL_SAFE_NO_PAD.encode(y)));
            Ok(NewKey {
                kty: kty.into(),
                size: None,
                crv: Some(crv.into()),
                public,
                pair,
            })
        }
        _ => {
            let size = size.unwrap_or(256);
            if ![128, 192, 256].contains(&size) {
                return Err(KvError::bad(format!(
                    "Invalid key size {size} for oct: use 128, 192 or 256."
                )));
            }
            Ok(NewKey {
                kty: kty.into(),
                size: Some(size),
                crv: None,
                public,
                pair: None,
            })
        }
    }
}

/// `n` and `e` from a DER `RSAPublicKey` (`SEQUENCE { INTEGER n, INTEGER e }`), without the
/// leading zero byte of the positive integers.
fn rsa_public_parts(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    fn tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = input.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let len = rest[..count]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[count..])
        };
        if rest.len() < len {
            return None;
        }
        Some((&rest[..len], &rest[len..]))
    }
    let strip = |v: &[u8]| -> Vec<u8> {
        let mut v = v;
        while v.len() > 1 && v[0] == 0 {
            v = &v[1..];
        }
        v.to_vec()
    };
    let (seq, _) = tlv(der, 0x30)?;
    let (n, rest) = tlv(seq, 0x02)?;
    let (e, _) = tlv(rest, 0x02)?;
    Some((strip(n), strip(e)))
}

fn key_json(ctx: &Ctx, name: &str, v: &KeyVersion, bundle: bool, id_version: bool) -> Value {
    let kid = if id_version {
        format!("{}/keys/{name}/{}", ctx.base, v.version)
    } else {
        format!("{}/keys/{name}", ctx.base)
    };
    let mut attributes = attrs_json(ctx, &v.attrs);
    attributes["exportable"] = json!(false);
    let mut out = if bundle {
        let mut key = v.public.clone();
        key.insert("kid".into(), json!(kid));
        key.insert("key_ops".into(), json!(v.key_ops));
        json!({"key": key, "attributes": attributes})
    } else {
        json!({"kid": kid, "attributes": attributes})
    };
    put_tags(&mut out, &v.tags);
    if v.managed {
        out["managed"] = json!(true);
    }
    out
}

fn insert_key_version(
    ctx: &Ctx,
    name: &str,
    version: KeyVersion,
    refuse_managed: bool,
) -> Result<Response, KvError> {
    let mut state = ctx.app.lock();
    let data = state.kv.entry(ctx.vault.clone()).or_default();
    let object = data
        .keys
        .entry(name.to_ascii_lowercase())
        .or_insert_with(|| Object {
            name: name.to_string(),
            versions: Vec::new(),
        });
    if refuse_managed && object.versions.iter().any(|v| v.managed) {
        return Err(KvError::managed(Kind::Key, "create"));
    }
    object.versions.push(version);
    let latest = object
        .versions
        .last()
        .ok_or_else(|| KvError::internal("no version after create"))?;
    Ok(json_response(
        StatusCode::OK,
        key_json(ctx, &object.name, latest, true, true),
    ))
}

fn create_key(ctx: &Ctx, req: &Req, name: &str) -> Result<Response, KvError> {
    let input: CreateKeyIn = body(req)?;
    let kty = input
        .kty
        .ok_or_else(|| KvError::bad("The parameter 'kty' is required."))?;
    if !["RSA", "RSA-HSM", "EC", "EC-HSM", "oct", "oct-HSM"].contains(&kty.as_str()) {
        return Err(KvError::bad(format!(
            "Invalid kty {kty}: use RSA, RSA-HSM, EC, EC-HSM, oct or oct-HSM."
        )));
    }
    let key_ops = match input.key_ops {
        Some(ops) => {
            if let Some(bad) = ops.iter().find(|o| !KEY_OPS.contains(&o.as_str())) {
                return Err(KvError::bad(format!("Invalid key operation {bad}.")));
            }
            ops
        }
        None => default_key_ops(&kty),
    };
    let key = generate_key(&kty, input.key_size, input.crv.as_deref())?;
    // A slow create (the double's `create_delay`): the old version stays current meanwhile, as
    // while any create is being served.
    let delay = ctx.app.create_delay();
    if !delay.is_zero() {
        tokio::task::block_in_place(|| std::thread::sleep(delay));
    }
    let version = KeyVersion {
        version: new_version(),
        kty: key.kty,
        size: key.size,
        crv: key.crv,
        key_ops,
        private_pkcs8: key.pair.as_ref().map(KeyPair::serialize_der),
        public: key.public,
        tags: input.tags.unwrap_or_default(),
        attrs: Attrs::new(input.attributes.as_ref()),
        managed: false,
    };
    insert_key_version(ctx, name, version, true)
}

/// `POST /keys/{name}/rotate`: a new version with the current one's type, size, curve,
/// operations and tags.
fn rotate_key(ctx: &Ctx, name: &str) -> Result<Response, KvError> {
    let (kty, size, crv, key_ops, tags) = {
        let state = ctx.app.lock();
        let object = state
            .kv
            .get(&ctx.vault)
            .and_then(|d| d.keys.get(&name.to_ascii_lowercase()))
            .ok_or_else(|| KvError::not_found(Kind::Key, name, None))?;
        let v = object
            .versions
            .last()
            .ok_or_else(|| KvError::not_found(Kind::Key, name, None))?;
        if v.managed {
            return Err(KvError::managed(Kind::Key, "rotate"));
        }
        (
            v.kty.clone(),
            v.size,
            v.crv.clone(),
            v.key_ops.clone(),
            v.tags.clone(),
        )
    };
    let key = generate_key(&kty, size, crv.as_deref())?;
    let version = KeyVersion {
        version: new_version(),
        kty: key.kty,
        size: key.size,
        crv: key.crv,
        key_ops,
        private_pkcs8: key.pair.as_ref().map(KeyPair::serialize_der),
        public: key.public,
        tags,
        attrs: Attrs::new(None),
        managed: false,
    };
    insert_key_version(ctx, name, version, true)
}

fn list_keys(ctx: &Ctx, req: &Req) -> Result<Response, KvError> {
    let items: Vec<Value> = {
        let state = ctx.app.lock();
        state
            .kv
            .get(&ctx.vault)
            .map(|d| {
                d.keys
                    .values()
                    .filter_map(|o| {
                        o.versions
                            .last()
                            .map(|v| key_json(ctx, &o.name, v, false, false))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    page(ctx, req, items)
}

fn key_versions(ctx: &Ctx, req: &Req, name: &str) -> Result<Response, KvError> {
    let items: Vec<Value> = {
        let state = ctx.app.lock();
        let object = state
            .kv
            .get(&ctx.vault)
            .and_then(|d| d.keys.get(&name.to_ascii_lowercase()))
            .ok_or_else(|| KvError::not_found(Kind::Key, name, None))?;
        object
            .versions
            .iter()
            .map(|v| key_json(ctx, &object.name, v, false, true))
            .collect()
    };
    page(ctx, req, items)
}

fn get_key(ctx: &Ctx, name: &str, version: Option<&str>) -> Result<Response, KvError> {
    let state = ctx.app.lock();
    let object = state
        .kv
        .get(&ctx.vault)
        .and_then(|d| d.keys.get(&name.to_ascii_lowercase()))
        .ok_or_else(|| KvError::not_found(Kind::Key, name, version))?;
    let v = pick(&object.versions, |v| v.version.as_str(), version)
        .ok_or_else(|| KvError::not_found(Kind::Key, name, version))?;
    Ok(json_response(
        StatusCode::OK,
        key_json(ctx, &object.name, v, true, true),
    ))
}

fn update_key(
    ctx: &Ctx,
    req: &Req,
    name: &str,
    version: Option<&str>,
) -> Result<Response, KvError> {
    let input: UpdateKeyIn = body(req)?;
    let mut state = ctx.app.lock();
    let object = state
        .kv
        .get_mut(&ctx.vault)
        .and_then(|d| d.keys.get_mut(&name.to_ascii_lowercase()))
        .ok_or_else(|| KvError::not_found(Kind::Key, name, version))?;
    let object_name = object.name.clone();
    let v = pick_mut(&mut object.versions, |v| v.version.as_str(), version)
        .ok_or_else(|| KvError::not_found(Kind::Key, name, version))?;
    if v.managed {
        return Err(KvError::managed(Kind::Key, "update"));
    }
    if let Some(ops) = input.key_ops {
        if let Some(bad) = ops.iter().find(|o| !KEY_OPS.contains(&o.as_str())) {
            return Err(KvError::bad(format!("Invalid key operation {bad}.")));
        }
        v.key_ops = ops;
    }
    if let Some(a) = &input.attributes {
        v.attrs.apply(a);
    }
    if let Some(tags) = input.tags {
        v.tags = tags;
    }
    v.attrs.updated = now();
    Ok(json_response(
        StatusCode::OK,
        key_json(ctx, &object_name, v, true, true),
    ))
}

/// The cryptographic operations of the keys data plane, by their URL segment (lower case).
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyOp {
    Encrypt,
    Decrypt,
    WrapKey,
    UnwrapKey,
}

impl KeyOp {
    fn parse(segment: &str) -> Option<KeyOp> {
        match segment {
            "encrypt" => Some(KeyOp::Encrypt),
            "decrypt" => Some(KeyOp::Decrypt),
            "wrapkey" => Some(KeyOp::WrapKey),
            "unwrapkey" => Some(KeyOp::UnwrapKey),
            _ => None,
        }
    }

    /// The name in `key_ops` and in Key Vault's error messages.
    fn name(self) -> &'static str {
        match self {
            KeyOp::Encrypt => "encrypt",
            KeyOp::Decrypt => "decrypt",
            KeyOp::WrapKey => "wrapKey",
            KeyOp::UnwrapKey => "unwrapKey",
        }
    }

    /// Decrypt and unwrap use the private key; Key Vault refuses them on a disabled version.
    /// Encrypt and wrap use the public key only (the SDKs do them locally when they hold it).
    fn private(self) -> bool {
        matches!(self, KeyOp::Decrypt | KeyOp::UnwrapKey)
    }
}

/// `KeyOperationsParameters`: `alg` and `value` (base64url). `iv`, `aad` and `tag` belong to
/// the AES algorithms, which the double does not serve.
#[derive(Deserialize)]
struct KeyOperationIn {
    alg: Option<String>,
    value: Option<String>,
}

/// `POST /keys/{name}[/{version}]/{encrypt|decrypt|wrapkey|unwrapkey}` with an RSA key:
/// `RSA-OAEP` (SHA-1), `RSA-OAEP-256` or `RSA1_5`, on aws-lc-rs with the version's own private
/// key. Answers a `KeyOperationResult`: `kid` (with the version) and `value` (base64url).
fn key_operation(
    ctx: &Ctx,
    req: &Req,
    name: &str,
    version: Option<&str>,
    segment: &str,
) -> Result<Response, KvError> {
    let op = KeyOp::parse(segment)
        .ok_or_else(|| KvError::bad(format!("Unknown key operation {segment}.")))?;
    let input: KeyOperationIn = body(req)?;
    let alg = input
        .alg
        .ok_or_else(|| KvError::bad("The parameter 'alg' is required."))?;
    let value = input
        .value
        .ok_or_else(|| KvError::bad("The parameter 'value' is required."))?;
    let value = URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| KvError::bad("The parameter 'value' is not valid base64url."))?;
    let (kid, family, private) = {
        let state = ctx.app.lock();
        let object = state
            .kv
            .get(&ctx.vault)
            .and_then(|d| d.keys.get(&name.to_ascii_lowercase()))
            .ok_or_else(|| KvError::not_found(Kind::Key, name, version))?;
        let v = pick(&object.versions, |v| v.version.as_str(), version)
            .ok_or_else(|| KvError::not_found(Kind::Key, name, version))?;
        if op.private() && !v.attrs.enabled {
            let mut e = KvError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("Operation {} is not allowed on a disabled key.", op.name()),
            );
            e.inner = Some("KeyDisabled");
            return Err(e);
        }
        if !v.key_ops.iter().any(|o| o == op.name()) {
            let mut e = KvError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("Operation {} is not permitted on this key.", op.name()),
            );
            e.inner = Some("KeyOperationForbidden");
            return Err(e);
        }
        (
            format!("{}/keys/{}/{}", ctx.base, object.name, v.version),
            family(&v.kty),
            v.private_pkcs8.clone(),
        )
    };
    if family != "RSA" {
        return Err(KvError::bad(format!(
            "The double serves {} with RSA keys only (this key is {family}).",
            op.name()
        )));
    }
    let private = private.ok_or_else(|| KvError::internal("the key version has no private key"))?;
    let out = rsa_operation(op, &alg, &private, &value)?;
    Ok(json_response(
        StatusCode::OK,
        json!({"kid": kid, "value": URL_SAFE_NO_PAD.encode(out)}),
    ))
}

/// One RSA encryption or decryption. A ciphertext that does not decrypt is Key Vault's
/// `BadParameter` (the message names no byte of it).
fn rsa_operation(op: KeyOp, alg: &str, pkcs8: &[u8], value: &[u8]) -> Result<Vec<u8>, KvError> {
    use aws_lc_rs::rsa::{
        OaepPrivateDecryptingKey, OaepPublicEncryptingKey, Pkcs1PrivateDecryptingKey,
        Pkcs1PublicEncryptingKey, PrivateDecryptingKey, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
    };
    let key = PrivateDecryptingKey::from_pkcs8(pkcs8)
        .map_err(|_| KvError::internal("cannot load the key version's private key"))?;
    let size = key.key_size_bytes();
    let refused = || {
        KvError::bad(format!("The {alg} {} operation failed: the value does not fit the key or was not made with it.", op.name()))
    };
    let mut out = vec![0u8; size];
    let oaep = match alg {
        "RSA-OAEP" => Some(&OAEP_SHA1_MGF1SHA1),
        "RSA-OAEP-256" => Some(&OAEP_SHA256_MGF1SHA256),
        "RSA1_5" => None,
        _ => {
            return Err(KvError::bad(format!(
                "Invalid algorithm {alg} for an RSA key: use RSA-OAEP, RSA-OAEP-256 or RSA1_5."
            )))
        }
    };
    let written = match (op.private(), oaep) {
        (false, Some(alg)) => OaepPublicEncryptingKey::new(key.public_key())
            .map_err(|_| refused())?
            .encrypt(alg, value, &mut out, None)
            .map_err(|_| refused())?
            .len(),
        (false, None) => Pkcs1PublicEncryptingKey::new(key.public_key())
            .map_err(|_| refused())?
            .encrypt(value, &mut out)
            .map_err(|_| refused())?
            .len(),
        (true, Some(alg)) => OaepPrivateDecryptingKey::new(key)
            .map_err(|_| refused())?
            .decrypt(alg, value, &mut out, None)
            .map_err(|_| refused())?
            .len(),
        (true, None) => Pkcs1PrivateDecryptingKey::new(key)
            .map_err(|_| refused())?
            .decrypt(value, &mut out)
            .map_err(|_| refused())?
            .len(),
    };
    out.truncate(written);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Certificates

#[derive(Deserialize)]
struct CreateCertificateIn {
    policy: Option<PolicyIn>,
    attributes: Option<AttrsIn>,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct UpdateCertificateIn {
    attributes: Option<AttrsIn>,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct PolicyIn {
    key_props: Option<KeyPropsIn>,
    secret_props: Option<SecretPropsIn>,
    x509_props: Option<X509PropsIn>,
    issuer: Option<IssuerIn>,
    lifetime_actions: Option<Value>,
}

#[derive(Deserialize, Default)]
struct KeyPropsIn {
    kty: Option<String>,
    key_size: Option<u32>,
    crv: Option<String>,
    exportable: Option<bool>,
    reuse_key: Option<bool>,
}

#[derive(Deserialize, Default)]
struct SecretPropsIn {
    #[serde(rename = "contentType")]
    content_type: Option<String>,
}

#[derive(Deserialize, Default)]
struct X509PropsIn {
    subject: Option<String>,
    sans: Option<SansIn>,
    ekus: Option<Vec<String>>,
    key_usage: Option<Vec<String>>,
    validity_months: Option<u32>,
}

#[derive(Deserialize, Default)]
struct SansIn {
    dns_names: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
struct IssuerIn {
    name: Option<String>,
}

const PEM: &str = "application/x-pem-file";
const PKCS12: &str = "application/x-pkcs12";

impl Policy {
    fn from_input(input: PolicyIn) -> Result<Policy, KvError> {
        let issuer = input.issuer.and_then(|i| i.name).unwrap_or_default();
        if !issuer.eq_ignore_ascii_case("Self") {
            return Err(KvError::bad(format!(
                "Issuer '{issuer}' is not supported by the double: only 'Self' (self-signed)."
            )));
        }
        let x509 = input.x509_props.unwrap_or_default();
        let subject = x509
            .subject
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| KvError::bad("The policy's x509_props.subject is required."))?;
        let key = input.key_props.unwrap_or_default();
        let kty = key.kty.unwrap_or_else(|| "RSA".into());
        if !["RSA", "RSA-HSM", "EC", "EC-HSM"].contains(&kty.as_str()) {
            return Err(KvError::bad(format!(
                "Invalid key type {kty} for a certificate: use RSA, RSA-HSM, EC or EC-HSM."
            )));
        }
        let content_type = input
            .secret_props
            .and_then(|s| s.content_type)
            .unwrap_or_else(|| PKCS12.into());
        if content_type != PEM && content_type != PKCS12 {
            return Err(KvError::bad(format!(
                "Invalid secret content type {content_type}: use {PKCS12} or {PEM}."
            )));
        }
        let validity_months = x509.validity_months.unwrap_or(12);
        if !(1..=1200).contains(&validity_months) {
            return Err(KvError::bad("validity_months must be between 1 and 1200."));
        }
        let is_rsa = family(&kty) == "RSA";
        Ok(Policy {
            key_size: if is_rsa {
                Some(key.key_size.unwrap_or(2048))
            } else {
                None
            },
            crv: if is_rsa {
                None
            } else {
                Some(key.crv.unwrap_or_else(|| "P-256".into()))
            },
            kty,
            exportable: key.exportable.unwrap_or(true),
            reuse_key: key.reuse_key.unwrap_or(false),
            content_type,
            subject,
            dns_names: x509.sans.and_then(|s| s.dns_names).unwrap_or_default(),
            ekus: x509
                .ekus
                .unwrap_or_else(|| vec!["1.3.6.1.5.5.7.3.1".into(), "1.3.6.1.5.5.7.3.2".into()]),
            key_usage: x509
                .key_usage
                .unwrap_or_else(|| vec!["digitalSignature".into(), "keyEncipherment".into()]),
            validity_months,
            lifetime_actions: input.lifetime_actions.unwrap_or_else(|| {
                json!([{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "EmailContacts"}}])
            }),
        })
    }
}

fn policy_json(ctx: &Ctx, name: &str, c: &CertObject) -> Value {
    let p = &c.policy;
    let mut key_props = json!({"exportable": p.exportable, "kty": p.kty, "reuse_key": p.reuse_key});
    if let Some(size) = p.key_size {
        key_props["key_size"] = json!(size);
    }
    if let Some(crv) = &p.crv {
        key_props["crv"] = json!(crv);
    }
    let mut x509 = json!({
        "subject": p.subject,
        "ekus": p.ekus,
        "key_usage": p.key_usage,
        "validity_months": p.validity_months,
        "basic_constraints": {"ca": false},
    });
    if !p.dns_names.is_empty() {
        x509["sans"] = json!({"dns_names": p.dns_names});
    }
    json!({
        "id": format!("{}/certificates/{name}/policy", ctx.base),
        "key_props": key_props,
        "secret_props": {"contentType": p.content_type},
        "x509_props": x509,
        "lifetime_actions": p.lifetime_actions,
        "issuer": {"name": "Self"},
        "attributes": {"enabled": true, "created": c.policy_created, "updated": c.policy_updated},
    })
}

fn certificate_json(
    ctx: &Ctx,
    c: &CertObject,
    v: &CertVersion,
    bundle: bool,
    id_version: bool,
) -> Value {
    let name = &c.name;
    let id = if id_version {
        format!("{}/certificates/{name}/{}", ctx.base, v.version)
    } else {
        format!("{}/certificates/{name}", ctx.base)
    };
    let mut out = json!({"id": id, "x5t": v.x5t, "attributes": attrs_json(ctx, &v.attrs)});
    if bundle {
        out["kid"] = json!(format!("{}/keys/{name}/{}", ctx.base, v.version));
        out["sid"] = json!(format!("{}/secrets/{name}/{}", ctx.base, v.version));
        out["cer"] = json!(STANDARD.encode(&v.cer));
        out["policy"] = policy_json(ctx, name, c);
    }
    put_tags(&mut out, &v.tags);
    out
}

fn pending_json(ctx: &Ctx, name: &str, p: &Pending, completed: bool) -> Value {
    let mut out = json!({
        "id": format!("{}/certificates/{name}/pending", ctx.base),
        "issuer": {"name": "Self"},
        "csr": STANDARD.encode(&p.csr),
        "cancellation_requested": false,
        "request_id": p.request_id,
    });
    if completed {
        out["status"] = json!("completed");
        out["target"] = json!(format!("{}/certificates/{name}", ctx.base));
    } else {
        out["status"] = json!("inProgress");
        out["status_details"] = json!("Pending certificate created. Certificate request is in progress. This may take some time based on the issuer provider. Please check again later.");
    }
    out
}

/// `DnType`s of the RDNs Key Vault subjects use (`CN=a, O=b, ...`).
fn subject_dn(subject: &str) -> Result<DistinguishedName, KvError> {
    let mut dn = DistinguishedName::new();
    for part in subject
        .split([',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| KvError::bad(format!("Invalid subject '{subject}'.")))?;
        let ty = match k.trim().to_ascii_uppercase().as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "C" => DnType::CountryName,
            "L" => DnType::LocalityName,
            "ST" | "S" => DnType::StateOrProvinceName,
            other => {
                return Err(KvError::bad(format!(
                    "Subject attribute '{other}' is not supported by the double."
                )))
            }
        };
        dn.push(ty, v.trim());
    }
    Ok(dn)
}

/// Sets the validity from chrono times, to the second (rcgen takes `time` values).
fn set_validity(
    params: &mut CertificateParams,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) {
    use chrono::{Datelike, Timelike};
    let at = |t: chrono::DateTime<chrono::Utc>| {
        // Month and day always fit in u8.
        let month = u8::try_from(t.month()).unwrap_or(1);
        let day = u8::try_from(t.day()).unwrap_or(1);
        rcgen::date_time_ymd(t.year(), month, day)
            + std::time::Duration::from_secs(u64::from(t.num_seconds_from_midnight()))
    };
    params.not_before = at(from);
    params.not_after = at(to);
}

/// Everything one certificate version adds: the certificate, its backing key and secret.
struct Issued {
    cert: CertVersion,
    key: KeyVersion,
    secret: SecretVersion,
    pending: Pending,
}

/// Issues a self-signed certificate for `policy` (a new key pair each time), with the backing
/// key and secret sharing its version id, as Key Vault does.
fn issue(
    policy: &Policy,
    attributes: Option<&AttrsIn>,
    tags: BTreeMap<String, String>,
) -> Result<Issued, KvError> {
    let key = generate_key(&policy.kty, policy.key_size, policy.crv.as_deref())?;
    let pair = key.pair.ok_or_else(|| {
        KvError::bad(format!(
            "The double cannot sign with a {} {} key.",
            policy.kty,
            policy.crv.as_deref().unwrap_or("")
        ))
    })?;
    let mut params = CertificateParams::new(policy.dns_names.clone())?;
    params.distinguished_name = subject_dn(&policy.subject)?;
    let serial: [u8; 16] = rand::random();
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let from = chrono::Utc::now();
    let to = from
        .checked_add_months(chrono::Months::new(policy.validity_months))
        .ok_or_else(|| KvError::bad("validity_months is too large."))?;
    set_validity(&mut params, from, to);
    params.key_usages = policy
        .key_usage
        .iter()
        .filter_map(|u| match u.as_str() {
            "digitalSignature" => Some(KeyUsagePurpose::DigitalSignature),
            "nonRepudiation" => Some(KeyUsagePurpose::ContentCommitment),
            "keyEncipherment" => Some(KeyUsagePurpose::KeyEncipherment),
            "dataEncipherment" => Some(KeyUsagePurpose::DataEncipherment),
            "keyAgreement" => Some(KeyUsagePurpose::KeyAgreement),
            "keyCertSign" => Some(KeyUsagePurpose::KeyCertSign),
            "cRLSign" => Some(KeyUsagePurpose::CrlSign),
            "encipherOnly" => Some(KeyUsagePurpose::EncipherOnly),
            "decipherOnly" => Some(KeyUsagePurpose::DecipherOnly),
            _ => None,
        })
        .collect();
    params.extended_key_usages = policy
        .ekus
        .iter()
        .filter_map(|e| match e.as_str() {
            "1.3.6.1.5.5.7.3.1" => Some(ExtendedKeyUsagePurpose::ServerAuth),
            "1.3.6.1.5.5.7.3.2" => Some(ExtendedKeyUsagePurpose::ClientAuth),
            "1.3.6.1.5.5.7.3.3" => Some(ExtendedKeyUsagePurpose::CodeSigning),
            "1.3.6.1.5.5.7.3.4" => Some(ExtendedKeyUsagePurpose::EmailProtection),
            _ => None,
        })
        .collect();
    // A CSR takes only the subject and names (no serial, validity or usages).
    let mut csr_params = CertificateParams::new(policy.dns_names.clone())?;
    csr_params.distinguished_name = params.distinguished_name.clone();
    let csr = csr_params.serialize_request(&pair)?.der().to_vec();
    let cert = params.self_signed(&pair)?;
    let der = cert.der().to_vec();
    let x5t = URL_SAFE_NO_PAD.encode(Sha1::digest(&der));
    let pem = format!("{}{}", pair.serialize_pem(), cert.pem());
    // x-pkcs12: real Key Vault stores base64 PKCS#12; the double stores base64 of the PEM bundle.
    let value = if policy.content_type == PEM {
        pem
    } else {
        STANDARD.encode(pem.as_bytes())
    };
    let mut attrs = Attrs::new(attributes);
    attrs.nbf = Some(from.timestamp());
    attrs.exp = Some(to.timestamp());
    let version = new_version();
    let key_ops: Vec<String> = if family(&policy.kty) == "RSA" {
        default_key_ops("RSA")
    } else {
        default_key_ops("EC")
    };
    Ok(Issued {
        cert: CertVersion {
            version: version.clone(),
            cer: der,
            x5t,
            tags: tags.clone(),
            attrs: attrs.clone(),
        },
        key: KeyVersion {
            version: version.clone(),
            kty: key.kty,
            size: key.size,
            crv: key.crv,
            key_ops,
            private_pkcs8: Some(pair.serialize_der()),
            public: key.public,
            tags: tags.clone(),
            attrs: attrs.clone(),
            managed: true,
        },
        secret: SecretVersion {
            version,
            value,
            content_type: Some(policy.content_type.clone()),
            tags,
            attrs,
            managed: true,
        },
        pending: Pending {
            csr,
            request_id: uuid::Uuid::new_v4().simple().to_string(),
        },
    })
}

/// `POST /certificates/{name}/create`: issues the new version at once and answers 202 with the
/// operation `inProgress`; `GET .../pending` then reports `completed` (real Key Vault takes a
/// few seconds for a self-signed certificate). No `Retry-After`: clients poll at their own pace.
fn create_certificate(ctx: &Ctx, req: &Req, name: &str) -> Result<Response, KvError> {
    let input: CreateCertificateIn = body(req)?;
    let key = name.to_ascii_lowercase();
    let policy = match input.policy {
        Some(p) => Policy::from_input(p)?,
        None => {
            let state = ctx.app.lock();
            state
                .kv
                .get(&ctx.vault)
                .and_then(|d| d.certificates.get(&key))
                .map(|c| c.policy.clone())
                .ok_or_else(|| {
                    KvError::bad("The parameter 'policy' is required for a new certificate.")
                })?
        }
    };
    // An existing certificate's operation is in progress from now until its version is
    // published (a slow issuer: the double's `create_delay`).
    let existing = {
        let mut state = ctx.app.lock();
        match state
            .kv
            .get_mut(&ctx.vault)
            .and_then(|d| d.certificates.get_mut(&key))
        {
            Some(c) => {
                c.creating += 1;
                true
            }
            None => false,
        }
    };
    let unmark = || {
        if existing {
            let mut state = ctx.app.lock();
            if let Some(c) = state
                .kv
                .get_mut(&ctx.vault)
                .and_then(|d| d.certificates.get_mut(&key))
            {
                c.creating = c.creating.saturating_sub(1);
            }
        }
    };
    let issued = match issue(
        &policy,
        input.attributes.as_ref(),
        input.tags.unwrap_or_default(),
    ) {
        Ok(issued) => issued,
        Err(e) => {
            unmark();
            return Err(e);
        }
    };
    let delay = ctx.app.create_delay();
    if !delay.is_zero() {
        // The handler is synchronous; keep the runtime's other tasks running meanwhile.
        tokio::task::block_in_place(|| std::thread::sleep(delay));
    }
    let mut state = ctx.app.lock();
    let data = state.kv.entry(ctx.vault.clone()).or_default();
    let unmanaged = |managed: Option<bool>| managed == Some(false);
    if unmanaged(
        data.secrets
            .get(&key)
            .and_then(|o| o.versions.last())
            .map(|v| v.managed),
    ) || unmanaged(
        data.keys
            .get(&key)
            .and_then(|o| o.versions.last())
            .map(|v| v.managed),
    ) {
        if let Some(c) = data.certificates.get_mut(&key).filter(|_| existing) {
            c.creating = c.creating.saturating_sub(1);
        }
        return Err(KvError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "A secret or key named {name} already exists and is not managed by a certificate."
            ),
        ));
    }
    let now = now();
    let cert = data
        .certificates
        .entry(key.clone())
        .or_insert_with(|| CertObject {
            name: name.to_string(),
            policy: policy.clone(),
            policy_created: now,
            policy_updated: now,
            versions: Vec::new(),
            pending: None,
            creating: 0,
        });
    cert.policy = policy;
    cert.policy_updated = now;
    cert.versions.push(issued.cert);
    let object_name = cert.name.clone();
    let answer = pending_json(ctx, &object_name, &issued.pending, false);
    cert.pending = Some(issued.pending);
    // Published under the same lock: no reader sees the operation done without its version.
    if existing {
        cert.creating = cert.creating.saturating_sub(1);
    }
    data.keys
        .entry(key.clone())
        .or_insert_with(|| Object {
            name: object_name.clone(),
            versions: Vec::new(),
        })
        .versions
        .push(issued.key);
    data.secrets
        .entry(key)
        .or_insert_with(|| Object {
            name: object_name.clone(),
            versions: Vec::new(),
        })
        .versions
        .push(issued.secret);
    let mut response = json_response(StatusCode::ACCEPTED, answer);
    let location = format!(
        "{}/certificates/{object_name}/pending?api-version={}",
        ctx.base,
        req.q("api-version").unwrap_or("7.6")
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert("location", v);
    }
    Ok(response)
}

fn with_certificate<T>(
    ctx: &Ctx,
    name: &str,
    version: Option<&str>,
    f: impl FnOnce(&CertObject) -> Result<T, KvError>,
) -> Result<T, KvError> {
    let state = ctx.app.lock();
    let c = state
        .kv
        .get(&ctx.vault)
        .and_then(|d| d.certificates.get(&name.to_ascii_lowercase()))
        .ok_or_else(|| KvError::not_found(Kind::Certificate, name, version))?;
    f(c)
}

fn get_pending(ctx: &Ctx, name: &str) -> Result<Response, KvError> {
    with_certificate(ctx, name, None, |c| {
        let p = c.pending.as_ref().ok_or_else(|| {
            KvError::new(
                StatusCode::NOT_FOUND,
                "PendingCertificateNotFound",
                format!("Pending certificate not found: {name}"),
            )
        })?;
        // The last operation's record; `inProgress` while a later one is not complete.
        Ok(json_response(
            StatusCode::OK,
            pending_json(ctx, &c.name, p, c.creating == 0),
        ))
    })
}

fn get_policy(ctx: &Ctx, name: &str) -> Result<Response, KvError> {
    with_certificate(ctx, name, None, |c| {
        Ok(json_response(StatusCode::OK, policy_json(ctx, &c.name, c)))
    })
}

fn get_certificate(ctx: &Ctx, name: &str, version: Option<&str>) -> Result<Response, KvError> {
    with_certificate(ctx, name, version, |c| {
        let v = pick(&c.versions, |v| v.version.as_str(), version)
            .ok_or_else(|| KvError::not_found(Kind::Certificate, name, version))?;
        Ok(json_response(
            StatusCode::OK,
            certificate_json(ctx, c, v, true, true),
        ))
    })
}

fn list_certificates(ctx: &Ctx, req: &Req) -> Result<Response, KvError> {
    let items: Vec<Value> = {
        let state = ctx.app.lock();
        state
            .kv
            .get(&ctx.vault)
            .map(|d| {
                d.certificates
                    .values()
                    .filter_map(|c| {
                        c.versions
                            .last()
                            .map(|v| certificate_json(ctx, c, v, false, false))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    page(ctx, req, items)
}

fn certificate_versions(ctx: &Ctx, req: &Req, name: &str) -> Result<Response, KvError> {
    let items = with_certificate(ctx, name, None, |c| {
        Ok(c.versions
            .iter()
            .map(|v| certificate_json(ctx, c, v, false, true))
            .collect::<Vec<_>>())
    })?;
    page(ctx, req, items)
}

/// `PATCH /certificates/{name}/{version}`: `attributes` and `tags`. The `enabled` attribute is
/// mirrored to the backing key and secret of that version, as Key Vault does.
fn update_certificate(
    ctx: &Ctx,
    req: &Req,
    name: &str,
    version: Option<&str>,
) -> Result<Response, KvError> {
    let input: UpdateCertificateIn = body(req)?;
    let key = name.to_ascii_lowercase();
    let mut state = ctx.app.lock();
    let data = state
        .kv
        .get_mut(&ctx.vault)
        .ok_or_else(|| KvError::not_found(Kind::Certificate, name, version))?;
    let cert = data
        .certificates
        .get_mut(&key)
        .ok_or_else(|| KvError::not_found(Kind::Certificate, name, version))?;
    let v = pick_mut(&mut cert.versions, |v| v.version.as_str(), version)
        .ok_or_else(|| KvError::not_found(Kind::Certificate, name, version))?;
    if let Some(a) = &input.attributes {
        v.attrs.apply(a);
    }
    if let Some(tags) = input.tags {
        v.tags = tags;
    }
    v.attrs.updated = now();
    let (id, enabled) = (v.version.clone(), v.attrs.enabled);
    let answer = {
        let cert = data
            .certificates
            .get(&key)
            .ok_or_else(|| KvError::internal("certificate vanished"))?;
        let v = pick(&cert.versions, |v| v.version.as_str(), Some(&id))
            .ok_or_else(|| KvError::internal("version vanished"))?;
        certificate_json(ctx, cert, v, true, true)
    };
    if let Some(k) = data
        .keys
        .get_mut(&key)
        .and_then(|o| pick_mut(&mut o.versions, |v| v.version.as_str(), Some(&id)))
    {
        k.attrs.enabled = enabled;
        k.attrs.updated = now();
    }
    if let Some(s) = data
        .secrets
        .get_mut(&key)
        .and_then(|o| pick_mut(&mut o.versions, |v| v.version.as_str(), Some(&id)))
    {
        s.attrs.enabled = enabled;
        s.attrs.updated = now();
    }
    Ok(json_response(StatusCode::OK, answer))
}
