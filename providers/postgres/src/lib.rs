#![warn(missing_docs)]
//! PostgreSQL credential rotation for Closeout's providers, in one place.
//!
//! A secret rotated by `postgresql-single-user` or `postgresql-alternating-users`
//! (`closeout_contract::rotation_strategy`) holds a database login as JSON (`host`, `port`,
//! `username`, `password`, optionally `dbname`/`database`; every other field is kept). Rotating
//! it changes the password *at the database*, so the copy a leaver took stops working, in the
//! four phases AWS's rotation functions use:
//!
//! 1. **create** — the new value is made (same fields, a new `password`; for alternating users
//!    also the other `username`) and stored as the secret's *pending* value (AWS `AWSPENDING`, a
//!    pending version elsewhere), where consumers reading the current value do not see it.
//! 2. **set** — the database gets the new password: `ALTER ROLE ... PASSWORD`. Single user: logged
//!    in as the role itself with the current (else previous) value. Alternating users: logged in
//!    with the admin login the secret names (`admin_secret`, or AWS's `masterarn`), which
//!    creates the clone `<user>_clone` (a member of `<user>`, so it has the same grants) the
//!    first time.
//! 3. **test** — log in with the pending value; `current_user` must be its user.
//! 4. **finish** — promote the pending value to current. Alternating users then retire the user
//!    the secret no longer names: its password becomes a random value nobody stores, so the old
//!    value (the one a leaver copied) is refused too.
//!
//! Each phase checks before it acts, so a run killed between any two resumes to the same end:
//! a pending value already stored is reused (never a second one), a password already set is
//! seen by logging in with it, a promotion already made is not repeated. Closeout itself is
//! never locked out: at every point one of the current, pending or previous values logs in.
//! Between *set* and *finish* of a single-user rotation, consumers that read the current value
//! hold a password the database no longer takes (the inherent window of that strategy, as on
//! AWS); alternating users has no such window.
//!
//! Providers supply the secret store ([`SecretStore`]); this crate knows nothing of playbooks
//! or the journal.

use closeout_contract::{ProviderError, SecretValue, Strategy};
use serde_json::{Map, Value};
use std::future::Future;
use std::time::Duration;

/// How long a login may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The suffix of the clone user of alternating-users rotation.
pub const CLONE_SUFFIX: &str = "_clone";

/// The secret fields that name the admin login of alternating-users rotation: Closeout's own
/// name, and AWS's (`masterarn`, as its rotation functions read it).
pub const ADMIN_FIELDS: [&str; 2] = ["admin_secret", "masterarn"];

/// A failure talking to PostgreSQL or reading a login. Never holds a password.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The secret does not hold a usable login.
    #[error("the secret is not a PostgreSQL login: {0}")]
    NotALogin(String),
    /// PostgreSQL refused the password.
    #[error("PostgreSQL refused the login of role {0}")]
    Refused(String),
    /// The database could not be reached (or the login timed out).
    #[error("cannot reach PostgreSQL at {endpoint}: {message}")]
    Unreachable {
        /// `host:port`.
        endpoint: String,
        /// Why.
        message: String,
    },
    /// A statement failed.
    #[error("PostgreSQL: {0}")]
    Sql(String),
}

impl PgError {
    /// As the provider `provider` reports it: unreachable is retryable; the rest is permanent.
    pub fn into_provider(self, provider: &'static str, what: &str) -> ProviderError {
        match self {
            PgError::Unreachable { endpoint, message } => ProviderError::Unreachable {
                provider,
                endpoint,
                message: format!("{what}: {message}"),
            },
            e => ProviderError::Permanent {
                provider,
                message: format!("{what}: {e}"),
            },
        }
    }
}

/// A PostgreSQL login read from a secret's JSON.
pub struct Login {
    /// The database host.
    pub host: String,
    /// Its port (5432 when the secret does not say).
    pub port: u16,
    /// The role.
    pub user: String,
    /// Its password.
    pub password: SecretValue,
    /// The database to connect to (`postgres` when the secret does not say).
    pub dbname: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Login({}@{}:{}/{})",
            self.user, self.host, self.port, self.dbname
        )
    }
}

fn object(v: &SecretValue) -> Result<Map<String, Value>, PgError> {
    match serde_json::from_str::<Value>(v.expose()) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(PgError::NotALogin("its value is not a JSON object".into())),
    }
}

fn text(m: &Map<String, Value>, field: &str) -> Option<String> {
    match m.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Login {
    /// The login a secret's value holds.
    pub fn of(v: &SecretValue) -> Result<Login, PgError> {
        let m = object(v)?;
        let need = |f: &str| {
            text(&m, f).ok_or_else(|| PgError::NotALogin(format!("it has no `{f}` field")))
        };
        let port = match text(&m, "port") {
            None => 5432,
            Some(p) => p
                .parse()
                .map_err(|_| PgError::NotALogin("its `port` is not a port number".into()))?,
        };
        Ok(Login {
            host: need("host")?,
            port,
            user: need("username")?,
            password: SecretValue::new(need("password")?),
            dbname: text(&m, "dbname")
                .or_else(|| text(&m, "database"))
                .unwrap_or_else(|| "postgres".into()),
        })
    }

    fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Log in; the connection runs on a task that ends when the client is dropped.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, PgError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(self.password.expose())
            .dbname(&self.dbname)
            .application_name("closeout")
            .connect_timeout(CONNECT_TIMEOUT);
        let connected =
            tokio::time::timeout(CONNECT_TIMEOUT, config.connect(tokio_postgres::NoTls))
                .await
                .map_err(|_| PgError::Unreachable {
                    endpoint: self.endpoint(),
                    message: "login timed out".into(),
                })?;
        match connected {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "postgres connection ended");
                    }
                });
                Ok(client)
            }
            Err(e) => Err(self.classify(e)),
        }
    }

    fn classify(&self, e: tokio_postgres::Error) -> PgError {
        use tokio_postgres::error::SqlState;
        match e.code() {
            Some(c)
                if *c == SqlState::INVALID_PASSWORD
                    || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                PgError::Refused(self.user.clone())
            }
            Some(_) => PgError::Sql(e.to_string()),
            None => PgError::Unreachable {
                endpoint: self.endpoint(),
                message: closeout_contract::with_causes("connection failed", &e),
            },
        }
    }

    /// Whether PostgreSQL takes this login: `Ok(false)` when it refuses the password.
    pub async fn works(&self) -> Result<bool, PgError> {
        match self.connect().await {
            Ok(client) => {
                let row = client
                    .query_one("SELECT current_user::text", &[])
                    .await
                    .map_err(|e| PgError::Sql(e.to_string()))?;
                let user: String = row.get(0);
                Ok(user == self.user)
            }
            Err(PgError::Refused(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// `name` as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `value` as a SQL string literal (`standard_conforming_strings` is on since PostgreSQL 9.1).
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `ALTER ROLE <role> WITH PASSWORD ...`, as `by` (the role itself, or an admin).
async fn set_password(by: &Login, role: &str, password: &SecretValue) -> Result<(), PgError> {
    let client = by.connect().await?;
    // ALTER ROLE takes no bind parameters; the literal is quoted. The password itself never
    // crosses the wire: the statement carries its SCRAM-SHA-256 verifier (fresh salt, 4096
    // iterations; PostgreSQL stores a verifier as given), so neither an unencrypted connection
    // nor PostgreSQL's statement log shows it. The session still turns log_statement off where
    // allowed (a superuser).
    let _ = client.batch_execute("SET log_statement = 'none'").await;
    let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
    let done = client
        .batch_execute(&format!(
            "ALTER ROLE {} WITH PASSWORD {}",
            quote_ident(role),
            quote_literal(&verifier)
        ))
        .await;
    record(by, &format!("ALTER ROLE {} PASSWORD", quote_ident(role)));
    done.map_err(|e| {
        PgError::Sql(format!(
            "ALTER ROLE {role} PASSWORD failed: {}",
            sql_message(&e)
        ))
    })
}

/// Record a statement in the current action's receipts: what it did (never its text, which
/// holds a password verifier) and where. PostgreSQL has no HTTP status and no request id.
fn record(at: &Login, what: &str) {
    closeout_contract::receipt::record(closeout_contract::ProviderCall::new(
        format!("{what} on {}/{}", at.endpoint(), at.dbname),
        None,
        None,
    ));
}

fn sql_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// Create `clone` (LOGIN, a member of `base`: the same grants) unless it exists.
async fn ensure_clone(admin: &Login, base: &str, clone: &str) -> Result<(), PgError> {
    let client = admin.connect().await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&clone])
        .await
        .map_err(|e| PgError::Sql(sql_message(&e)))?
        .is_some();
    if !exists {
        let done = client
            .batch_execute(&format!(
                "CREATE ROLE {} WITH LOGIN IN ROLE {}",
                quote_ident(clone),
                quote_ident(base)
            ))
            .await;
        record(admin, &format!("CREATE ROLE {}", quote_ident(clone)));
        done.map_err(|e| PgError::Sql(format!("CREATE ROLE {clone} failed: {}", sql_message(&e))))?;
    }
    Ok(())
}

/// The user of an alternating pair that `user` is not: `<base>_clone` for `<base>`, `<base>`
/// for `<base>_clone`.
pub fn other_user(user: &str) -> String {
    match user.strip_suffix(CLONE_SUFFIX) {
        Some(base) => base.to_string(),
        None => format!("{user}{CLONE_SUFFIX}"),
    }
}

/// Where this rotation's value is in the secret store.
pub enum Staged {
    /// Not stored yet.
    None,
    /// Stored as the pending value, not yet current.
    Pending(SecretValue),
    /// Promoted: it is the current value.
    Current(SecretValue),
    /// Promoted earlier and superseded by a later value since: nothing to do.
    Superseded,
}

/// A provider's store of one secret, as one rotation (one idempotency key) sees it.
pub trait SecretStore: Send + Sync {
    /// Where this rotation's value is.
    fn staged(&self) -> impl Future<Output = Result<Staged, ProviderError>> + Send;
    /// The current value.
    fn current(&self) -> impl Future<Output = Result<SecretValue, ProviderError>> + Send;
    /// The value before the current one, if the store keeps it.
    fn previous(&self) -> impl Future<Output = Result<Option<SecretValue>, ProviderError>> + Send;
    /// Store `value` as this rotation's pending value (not seen by consumers of the current one).
    fn stage(&self, value: &SecretValue) -> impl Future<Output = Result<(), ProviderError>> + Send;
    /// Make this rotation's pending value current.
    fn promote(&self) -> impl Future<Output = Result<(), ProviderError>> + Send;
    /// The current value of another secret of the same store (the admin login), named as the
    /// rotated secret's `admin_secret` / `masterarn` field names it.
    fn other(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<SecretValue, ProviderError>> + Send;
}

/// What a rotation did, for the action's detail (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// False when an earlier attempt had already finished it.
    pub changed: bool,
    /// A sentence for people.
    pub detail: String,
}

/// The next value of `current` under `strategy`: every field kept but `password` (new) and,
/// alternating, `username` (the other user of the pair).
fn next_value(strategy: &Strategy, current: &SecretValue) -> Result<SecretValue, PgError> {
    let mut m = object(current)?;
    let user = text(&m, "username")
        .ok_or_else(|| PgError::NotALogin("it has no `username` field".into()))?;
    if *strategy == Strategy::PostgresAlternatingUsers {
        m.insert("username".into(), Value::String(other_user(&user)));
    }
    m.insert(
        "password".into(),
        Value::String(SecretValue::generate().expose().to_string()),
    );
    Ok(SecretValue::new(Value::Object(m).to_string()))
}

fn admin_reference(v: &SecretValue) -> Option<String> {
    let m = object(v).ok()?;
    ADMIN_FIELDS.iter().find_map(|f| text(&m, f))
}

/// Rotate one secret by a PostgreSQL strategy: create, set, test, finish (see the crate docs).
/// `provider` names the provider in errors; `name` the secret.
pub async fn rotate<S: SecretStore>(
    provider: &'static str,
    name: &str,
    strategy: &Strategy,
    store: &S,
) -> Result<Rotated, ProviderError> {
    let pg = |what: &str| {
        let what = format!("secret {name}: {what}");
        move |e: PgError| e.into_provider(provider, &what)
    };
    // 1. create (or find the pending value an earlier attempt stored).
    let pending = match store.staged().await? {
        Staged::Superseded => {
            return Ok(Rotated {
                changed: false,
                detail: format!(
                    "this rotation of secret {name} finished earlier and has been superseded"
                ),
            })
        }
        Staged::Current(v) => {
            // Promoted already; an alternating rotation may still have to retire the old user.
            finish_alternating(provider, name, strategy, store, &v).await?;
            return Ok(Rotated {
                changed: false,
                detail: format!("secret {name} already holds this rotation's value ({strategy})"),
            });
        }
        Staged::Pending(v) => v,
        Staged::None => {
            let current = store.current().await?;
            let next = next_value(strategy, &current).map_err(pg("create"))?;
            store.stage(&next).await?;
            next
        }
    };
    let new = Login::of(&pending).map_err(pg("pending value"))?;
    // 2. set, unless an earlier attempt did (the new password already logs in).
    if !new.works().await.map_err(pg("test the pending password"))? {
        match strategy {
            Strategy::PostgresAlternatingUsers => {
                let current = store.current().await?;
                let reference = admin_reference(&current).ok_or_else(|| ProviderError::Config {
                    provider,
                    message: format!(
                        "secret {name}: postgresql-alternating-users needs an admin login: name its secret in the field `admin_secret` (or `masterarn`)"
                    ),
                })?;
                let admin =
                    Login::of(&store.other(&reference).await?).map_err(pg("admin login"))?;
                let base = new
                    .user
                    .strip_suffix(CLONE_SUFFIX)
                    .unwrap_or(&new.user)
                    .to_string();
                ensure_clone(&admin, &base, &format!("{base}{CLONE_SUFFIX}"))
                    .await
                    .map_err(pg("create the clone user"))?;
                set_password(&admin, &new.user, &new.password)
                    .await
                    .map_err(pg("set the new password"))?;
            }
            _ => {
                // The role changes its own password, logged in with the current value, else the
                // previous one (a value promoted by hand since, say).
                let mut candidates = vec![store.current().await?];
                candidates.extend(store.previous().await?);
                let mut done = false;
                for c in candidates {
                    let Ok(login) = Login::of(&c) else { continue };
                    if login.user != new.user {
                        continue;
                    }
                    match set_password(&login, &new.user, &new.password).await {
                        Ok(()) => {
                            done = true;
                            break;
                        }
                        Err(PgError::Refused(_)) => continue,
                        Err(e) => return Err(pg("set the new password")(e)),
                    }
                }
                if !done {
                    return Err(ProviderError::Permanent {
                        provider,
                        message: format!(
                            "secret {name}: neither its current nor its previous value logs in as {}, so the new password cannot be set (fix the secret, or use postgresql-alternating-users with an admin login)",
                            new.user
                        ),
                    });
                }
            }
        }
    }
    // 3. test.
    if !new.works().await.map_err(pg("test the new password"))? {
        return Err(ProviderError::Permanent {
            provider,
            message: format!(
                "secret {name}: PostgreSQL refuses the new password of {} after it was set; the pending value was not promoted",
                new.user
            ),
        });
    }
    // 4. finish.
    store.promote().await?;
    finish_alternating(provider, name, strategy, store, &pending).await?;
    Ok(Rotated {
        changed: true,
        detail: format!(
            "secret {name}: new password of PostgreSQL role {} set, tested and promoted ({strategy})",
            new.user
        ),
    })
}

/// Alternating users, after promotion: the user the secret no longer names gets a random
/// password nobody stores, so the value it had (the one a leaver may have copied) is refused.
async fn finish_alternating<S: SecretStore>(
    provider: &'static str,
    name: &str,
    strategy: &Strategy,
    store: &S,
    now_current: &SecretValue,
) -> Result<(), ProviderError> {
    if *strategy != Strategy::PostgresAlternatingUsers {
        return Ok(());
    }
    let pg = |what: &'static str| {
        move |e: PgError| e.into_provider(provider, &format!("secret {name}: {what}"))
    };
    let Some(reference) = admin_reference(now_current) else {
        return Ok(());
    };
    let current = Login::of(now_current).map_err(pg("current value"))?;
    let admin = Login::of(&store.other(&reference).await?).map_err(pg("admin login"))?;
    let retired = other_user(&current.user);
    set_password(&admin, &retired, &SecretValue::generate())
        .await
        .map_err(pg("retire the previous user's password"))
}

/// The login probe: the old value must be refused by PostgreSQL and the current one must log in.
/// Returns `(dead, detail)`.
pub async fn probe(old: &SecretValue, current: &SecretValue) -> Result<(bool, String), PgError> {
    let old = Login::of(old)?;
    let new = Login::of(current)?;
    let old_works = old.works().await?;
    let new_works = new.works().await?;
    let detail = format!(
        "logging in to PostgreSQL {}:{} with the previous value as {} was {}; with the current value as {} was {}",
        old.host,
        old.port,
        old.user,
        if old_works { "accepted" } else { "refused" },
        new.user,
        if new_works { "accepted" } else { "refused" },
    );
    Ok((!old_works && new_works, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_values_keep_every_field_but_the_password_and_the_alternating_user() {
        let cur = SecretValue::new(
            r#"{"engine":"postgres","host":"h","port":5432,"username":"pay","password":"old","dbname":"d"}"#,
        );
        let single = next_value(&Strategy::PostgresSingleUser, &cur).unwrap();
        let (a, b): (Value, Value) = (
            serde_json::from_str(cur.expose()).unwrap(),
            serde_json::from_str(single.expose()).unwrap(),
        );
        for k in ["engine", "host", "port", "username", "dbname"] {
            assert_eq!(a[k], b[k]);
        }
        assert_ne!(a["password"], b["password"]);
        let alt = next_value(&Strategy::PostgresAlternatingUsers, &cur).unwrap();
        let c: Value = serde_json::from_str(alt.expose()).unwrap();
        assert_eq!(c["username"], "pay_clone");
        assert_eq!(other_user("pay_clone"), "pay");
    }

    #[test]
    fn logins_parse_and_never_print_the_password() {
        let l = Login::of(&SecretValue::new(
            r#"{"host":"h","port":"5433","username":"u","password":"canary"}"#,
        ))
        .unwrap();
        assert_eq!((l.port, l.dbname.as_str()), (5433, "postgres"));
        assert!(!format!("{l:?}").contains("canary"));
        assert!(Login::of(&SecretValue::new("plain")).is_err());
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
