//! The database secrets engine: what of it a person could know, and how it is made useless.
//!
//! - A **static role** (`<mount>static-roles/<name>`: one database user whose password Vault
//!   holds) whose credentials the person's policies may read (`read <mount>static-creds/<name>`)
//!   is a `database-static-role` finding; `rotate` is `POST <mount>rotate-role/<name>` (Vault
//!   sets a new password at the database and stores it). Its state is the role's
//!   `last_vault_rotation` against the cutoff, read back from the server.
//! - A **connection** (`<mount>config/<name>`) whose configuration the person may read is a
//!   `database-connection` finding; `rotate` is `POST <mount>rotate-root/<name>` (Vault sets a
//!   new password for its own database user, which nobody ever sees). Vault keeps no time of a
//!   root rotation, so Closeout records one (no secret: when and by which action) beside its KV
//!   v1 rotation records (`kv1_rotation_record_path` with `{path}` =
//!   `rotate-root/<mount>config/<name>`); the state is that record's time against the cutoff.
//! - **Dynamic credentials** are leases under `<mount>creds/<role>/`: the ones the person's
//!   requests obtained are `lease` findings (the audit log attributes them, `lease.rs`), shown
//!   with the role they come from; revoking the lease makes Vault drop the database user. A
//!   lease also dies with the token that obtained it, so revoking the person's tokens revokes
//!   them too.
//!
//! Only names, usernames and times are read; no password ever leaves Vault through Closeout.

use crate::capabilities::{gap_kinds, kinds, PROVIDER};
use crate::client::{seg, CallError, Data};
use crate::findings::{attrs, finding, gap, listed};
use crate::kv::{state_since, ROTATED_BY};
use crate::policy::{self, PathRule};
use crate::server::VaultProvider;
use chrono::{DateTime, Utc};
use closeout_contract::{
    ActionOutcome, ActionRequest, Finding, Holder, Path, ProviderError, Relation, Resolution, State,
};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `<mount>static-roles/<name>`.
#[derive(Debug, Deserialize)]
struct StaticRole {
    #[serde(default)]
    username: String,
    #[serde(default)]
    db_name: String,
    #[serde(default, deserialize_with = "crate::model::nullable")]
    last_vault_rotation: String,
}

impl StaticRole {
    fn rotated_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.last_vault_rotation)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// `<mount>config/<name>`: only the non-secret parts.
#[derive(Debug, Default, Deserialize)]
struct Connection {
    #[serde(default)]
    plugin_name: String,
    #[serde(default)]
    connection_details: ConnectionDetails,
}

#[derive(Debug, Default, Deserialize)]
struct ConnectionDetails {
    #[serde(default)]
    username: String,
}

/// Policies reaching the person: name -> every (path to it, entity id or "" for a token); the
/// same map `secrets` builds.
type PolicyPaths = BTreeMap<String, Vec<(Path, String)>>;

/// How a database object is the person's: the relation and the path that explains it.
type Reached = (Relation, Path);

fn permanent(message: impl Into<String>) -> ProviderError {
    ProviderError::Permanent {
        provider: PROVIDER,
        message: message.into(),
    }
}

fn attr<'a>(f: &'a Finding, key: &str) -> Result<&'a str, ProviderError> {
    f.attr(key)
        .ok_or_else(|| permanent(format!("finding {} lacks attribute {key}", f.id)))
}

/// The ways `path` is readable to the person: through a policy rule, or (any path) through a
/// grant-self.
fn readable(
    rules: &BTreeMap<String, Vec<PathRule>>,
    policy_paths: &PolicyPaths,
    grant_steps: &[(Path, String)],
    path: &str,
    what: &str,
) -> Vec<Reached> {
    let mut how = Vec::new();
    let set = rules.iter().map(|(n, r)| (n.as_str(), r.as_slice()));
    if let Some((caps, pattern, names)) = policy::effective(set, path) {
        if policy::allows_read(&caps) {
            for n in names {
                for (p, _) in policy_paths.get(&n).into_iter().flatten() {
                    how.push((
                        Relation::CanRead,
                        p.then(
                            "can-read",
                            format!("{what} (read {path}, path \"{pattern}\")"),
                        ),
                    ));
                }
            }
        }
    }
    for (p, label) in grant_steps {
        how.push((
            Relation::CanGrantSelf,
            p.then("can-grant-self", format!("{what} ({label})")),
        ));
    }
    how
}

/// Every (path to a policy allowing a write on the engine, its label): `policy P can <what>:
/// <caps> on <path> (path "<pattern>")`, as a grant-self step reads.
fn write_steps(
    writes: &[crate::reach::GrantSelf],
    policy_paths: &PolicyPaths,
) -> Vec<(Path, String)> {
    let mut out = Vec::new();
    for g in writes {
        for name in &g.policies {
            for (path, _) in policy_paths.get(name).into_iter().flatten() {
                out.push((
                    path.clone(),
                    format!(
                        "policy {name} can {}: {} on {} (path \"{}\")",
                        g.what, g.capabilities, g.path, g.pattern
                    ),
                ));
            }
        }
    }
    out
}

impl VaultProvider {
    async fn static_role(&self, mount: &str, name: &str) -> Result<Option<StaticRole>, CallError> {
        match self
            .client
            .get::<Data<StaticRole>>(&format!("{mount}static-roles/{}", seg(name)))
            .await
        {
            Ok(d) => Ok(d.map(|d| d.data)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn connection(&self, mount: &str, name: &str) -> Result<Option<Connection>, CallError> {
        match self
            .client
            .get::<Data<Connection>>(&format!("{mount}config/{}", seg(name)))
            .await
        {
            Ok(d) => Ok(d.map(|d| d.data)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The record of Closeout's last root rotation of a connection: `(mount, key)` of the KV v2
    /// record, and its metadata when there is one.
    async fn root_record(
        &self,
        mount: &str,
        name: &str,
    ) -> Result<(String, String, Option<crate::model::KvMetadata>), CallError> {
        let (rm, rk) = self
            .config
            .kv1_record(&format!("rotate-root/{mount}config/{name}"));
        let meta = self.kv_metadata(&rm, &rk).await?;
        Ok((rm, rk, meta))
    }

    async fn root_rotated_at(
        &self,
        mount: &str,
        name: &str,
    ) -> Result<Option<DateTime<Utc>>, CallError> {
        Ok(self
            .root_record(mount, name)
            .await?
            .2
            .filter(|m| m.custom_metadata.contains_key(ROTATED_BY))
            .and_then(|m| m.current_created()))
    }

    /// One database mount: the static roles whose credentials and the connections whose
    /// configuration the person could read.
    pub(crate) async fn resolve_database_mount(
        &self,
        cutoff: Option<DateTime<Utc>>,
        mount: &str,
        rules: &BTreeMap<String, Vec<PathRule>>,
        policy_paths: &PolicyPaths,
        grant_steps: &[(Path, String)],
        res: &mut Resolution,
    ) -> Result<(), ProviderError> {
        // Writing the engine's roles, static roles or connections is reach to every database
        // its connections reach: followed like a grant-self (every static role and connection
        // root of the mount is hers to rotate), and a gap for what rotation cannot undo.
        let writes = crate::reach::database_engine_writes(rules, mount);
        let write_steps = write_steps(&writes, policy_paths);
        let mut steps: Vec<(Path, String)> = grant_steps.to_vec();
        steps.extend(write_steps.iter().cloned());
        let grant_steps = steps.as_slice();
        if !write_steps.is_empty() {
            let mut whats: Vec<&str> = writes.iter().map(|g| g.what.as_str()).collect();
            whats.sort();
            whats.dedup();
            res.gaps.push(gap(
                gap_kinds::DATABASE_ENGINE_WRITE,
                mount,
                format!(
                    "the person could {} at database engine {mount}: every static role and \
                     connection root credential there is rotated, but database users or grants \
                     she may have created through a role's creation statements, and where a \
                     connection she rewrote pointed, cannot be read through Vault; check the \
                     databases, then accept this gap by kind {}",
                    whats.join("; "),
                    gap_kinds::DATABASE_ENGINE_WRITE
                ),
                write_steps
                    .iter()
                    .map(|(p, label)| p.then("can-grant-self", label.clone()))
                    .collect(),
            ));
        }
        let roles_path = format!("{mount}static-roles");
        let roles = listed(
            self.client.list(&roles_path).await,
            kinds::DATABASE_STATIC_ROLE,
            &roles_path,
            &mut res.gaps,
        )?;
        for name in roles {
            let creds = format!("{mount}static-creds/{name}");
            let what = format!("static role {name} at {mount}");
            let how = readable(rules, policy_paths, grant_steps, &creds, &what);
            if how.is_empty() {
                continue;
            }
            let Some(role) = self.static_role(mount, &name).await? else {
                continue;
            };
            let rotated = role.rotated_at();
            let attributes = attrs([
                ("mount", mount.to_string()),
                ("role", name.clone()),
                ("username", role.username.clone()),
                ("connection", role.db_name.clone()),
                ("last_vault_rotation", role.last_vault_rotation.clone()),
                (
                    "created_at",
                    rotated
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_default(),
                ),
            ]);
            let resource = format!("{mount}static-roles/{name}");
            for (relation, path) in how {
                res.findings.push(finding(
                    kinds::DATABASE_STATIC_ROLE,
                    &resource,
                    format!(
                        "database static role {name} at {mount} (user {} on connection {})",
                        role.username, role.db_name
                    ),
                    relation,
                    Holder::Shared,
                    state_since(cutoff, rotated),
                    path,
                    attributes.clone(),
                ));
            }
        }
        let config_path = format!("{mount}config");
        let connections = listed(
            self.client.list(&config_path).await,
            kinds::DATABASE_CONNECTION,
            &config_path,
            &mut res.gaps,
        )?;
        for name in connections {
            let config = format!("{mount}config/{name}");
            let what = format!("connection {name} at {mount}");
            let how = readable(rules, policy_paths, grant_steps, &config, &what);
            if how.is_empty() {
                continue;
            }
            let Some(conn) = self.connection(mount, &name).await? else {
                continue;
            };
            let rotated = self.root_rotated_at(mount, &name).await?;
            let attributes = attrs([
                ("mount", mount.to_string()),
                ("connection", name.clone()),
                ("plugin_name", conn.plugin_name.clone()),
                ("username", conn.connection_details.username.clone()),
            ]);
            for (relation, path) in how {
                res.findings.push(finding(
                    kinds::DATABASE_CONNECTION,
                    &config,
                    format!(
                        "database connection {name} at {mount} (root user {}, {})",
                        conn.connection_details.username, conn.plugin_name
                    ),
                    relation,
                    Holder::Shared,
                    state_since(cutoff, rotated),
                    path,
                    attributes.clone(),
                ));
            }
        }
        Ok(())
    }

    /// `rotate` of a static role: `rotate-role`, unless its password changed since it was
    /// resolved (by this action before a crash, or by Vault's own schedule).
    pub(crate) async fn rotate_static_role(
        &self,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let (mount, name) = (attr(f, "mount")?, attr(f, "role")?);
        let Some(role) = self.static_role(mount, name).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("static role {name} at {mount} no longer exists"),
            ));
        };
        let seen = f.attr("last_vault_rotation").unwrap_or_default();
        if role.last_vault_rotation != seen && role.rotated_at().is_some() {
            return Ok(ActionOutcome::already(
                State::Rotated,
                format!(
                    "static role {name} at {mount} already has a new password (rotated {})",
                    role.last_vault_rotation
                ),
            ));
        }
        self.client
            .write(
                &format!("{mount}rotate-role/{}", seg(name)),
                &serde_json::json!({}),
            )
            .await?;
        Ok(ActionOutcome::done(
            State::Rotated,
            format!(
                "rotated static role {name} at {mount}: Vault set a new password for database user {}",
                role.username
            ),
        ))
    }

    /// `rotate` of a connection's root credentials: `rotate-root`, then the record of it.
    pub(crate) async fn rotate_root(
        &self,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let (mount, name) = (attr(f, "mount")?, attr(f, "connection")?);
        let Some(conn) = self.connection(mount, name).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("connection {name} at {mount} no longer exists"),
            ));
        };
        let (rm, rk, record) = self.root_record(mount, name).await?;
        if record
            .as_ref()
            .is_some_and(|m| m.custom_metadata.get(ROTATED_BY) == Some(&action.idempotency_key))
        {
            return Ok(ActionOutcome::already(
                State::Rotated,
                format!("root credentials of connection {name} at {mount} already rotated"),
            ));
        }
        // Rotating again after a crash before the record is harmless: another new password.
        self.client
            .write(
                &format!("{mount}rotate-root/{}", seg(name)),
                &serde_json::json!({}),
            )
            .await?;
        let data = serde_json::json!({ "data": {
            "connection": format!("{mount}config/{name}"),
            "rotated_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "run": action.params.run_id,
        }});
        let record_path = format!("{rm}data/{rk}");
        self.client.write(&record_path, &data).await.map_err(|e| {
            permanent(format!(
                "the root credentials of connection {name} at {mount} were rotated, but the rotation could not be recorded at {record_path} (kv1_rotation_record_path must be on a KV v2 mount Closeout can write): {e}"
            ))
        })?;
        let mut custom = record.map(|m| m.custom_metadata).unwrap_or_default();
        custom.insert(ROTATED_BY.into(), action.idempotency_key.clone());
        self.set_custom_metadata(&rm, &rk, custom).await?;
        Ok(ActionOutcome::done(
            State::Rotated,
            format!(
                "rotated the root credentials of connection {name} at {mount}: Vault set a new password for database user {} that only Vault knows",
                conn.connection_details.username
            ),
        ))
    }

    pub(crate) async fn live_state_database(
        &self,
        f: &Finding,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<State, ProviderError> {
        let mount = attr(f, "mount")?;
        if f.kind == kinds::DATABASE_STATIC_ROLE {
            return Ok(match self.static_role(mount, attr(f, "role")?).await? {
                None => State::Deleted,
                Some(r) => state_since(cutoff, r.rotated_at()),
            });
        }
        let name = attr(f, "connection")?;
        if self.connection(mount, name).await?.is_none() {
            return Ok(State::Deleted);
        }
        Ok(state_since(
            cutoff,
            self.root_rotated_at(mount, name).await?,
        ))
    }
}

/// For a lease under a database mount's `creds/<role>/`: the mount and role.
pub(crate) fn dynamic_role<'a>(
    lease_id: &'a str,
    database_mounts: &[String],
) -> Option<(&'a str, &'a str)> {
    database_mounts.iter().find_map(|m| {
        let rest = lease_id.strip_prefix(m.as_str())?.strip_prefix("creds/")?;
        let (role, _) = rest.split_once('/')?;
        Some((&lease_id[..m.len()], role))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_under_creds_names_its_role() {
        let mounts = vec!["database/".to_string(), "pg/prod/".to_string()];
        assert_eq!(
            dynamic_role("database/creds/pay-dyn/AbC", &mounts),
            Some(("database/", "pay-dyn"))
        );
        assert_eq!(
            dynamic_role("pg/prod/creds/ro/x.ns1", &mounts),
            Some(("pg/prod/", "ro"))
        );
        assert_eq!(dynamic_role("database/static-creds/x", &mounts), None);
        assert_eq!(dynamic_role("secret/creds/x/y", &mounts), None);
    }

    #[test]
    fn a_static_role_reads_its_rotation_time() {
        let r: StaticRole = serde_json::from_value(serde_json::json!({
            "username": "pay", "db_name": "pay",
            "last_vault_rotation": "2026-12-07T08:15:22.38885567Z",
            "rotation_period": 86400
        }))
        .unwrap();
        assert_eq!(
            r.rotated_at().unwrap().to_rfc3339(),
            "2026-12-07T08:15:22.388855670+00:00"
        );
    }
}
