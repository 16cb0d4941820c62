//! The health check: who the token is (`auth/token/lookup-self`), and which needed ACL
//! capabilities it lacks, asked of Vault itself in one `sys/capabilities-self` call over concrete
//! paths (each `{kv}`, `{kv1}`, `{pki}`, `{userpass}`, `{approle}`, `{database}` placeholder filled with every mount of
//! that type, each `*` with a sample name). A need whose placeholder names a mount type the server
//! has none of is not asked: there is nothing of that kind to act on.

use crate::client::Data;
use crate::model::{Mount, TokenInfo};
use crate::server::VaultProvider;
use closeout_contract::{Health, ProviderError};
use std::collections::BTreeMap;

/// The name a `*` segment is checked with.
const SAMPLE: &str = "closeout-doctor-check";

/// One need made concrete: the capability and the path asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The need as the capability table writes it.
    pub need: &'static str,
    /// The capability (`read`, `update`, `list`, ...).
    pub capability: String,
    /// A concrete path.
    pub path: String,
}

/// The mount paths (without the trailing `/`) per placeholder.
pub fn placeholders(
    engines: &BTreeMap<String, Mount>,
    auths: &BTreeMap<String, Mount>,
) -> BTreeMap<&'static str, Vec<String>> {
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for (path, m) in engines {
        let key = match m.mount_type.as_str() {
            "kv" if m.options.get("version").map(String::as_str) == Some("2") => "{kv}",
            "kv" => "{kv1}",
            "pki" => "{pki}",
            "database" => "{database}",
            _ => continue,
        };
        out.entry(key)
            .or_default()
            .push(path.trim_end_matches('/').to_string());
    }
    for (path, m) in auths {
        let key = match m.mount_type.as_str() {
            "userpass" => "{userpass}",
            "approle" => "{approle}",
            _ => continue,
        };
        out.entry(key)
            .or_default()
            .push(format!("auth/{}", path.trim_end_matches('/')));
    }
    out
}

/// Every concrete `(capability, path)` to ask about for `needs`.
pub fn probes(needs: &[&'static str], mounts: &BTreeMap<&'static str, Vec<String>>) -> Vec<Probe> {
    let mut out = Vec::new();
    for need in needs {
        let Some((capability, pattern)) = need.split_once(' ') else {
            continue;
        };
        let pattern = pattern.replace('*', SAMPLE);
        let placeholder = [
            "{kv1}",
            "{kv}",
            "{pki}",
            "{userpass}",
            "{approle}",
            "{database}",
        ]
        .into_iter()
        .find(|p| pattern.contains(p));
        let paths = match placeholder {
            Some(p) => mounts
                .get(p)
                .map(|list| list.iter().map(|m| pattern.replace(p, m)).collect())
                .unwrap_or_default(),
            None => vec![pattern],
        };
        out.extend(paths.into_iter().map(|path| Probe {
            need,
            capability: capability.to_string(),
            path,
        }));
    }
    out
}

/// Whether `granted` (what Vault answered for a path) includes `capability`.
pub fn grants(granted: &[String], capability: &str) -> bool {
    granted.iter().any(|c| c == "root" || c == capability)
}

impl VaultProvider {
    /// `lookup-self`, then `sys/capabilities-self` over the needs made concrete.
    pub(crate) async fn health_impl(
        &self,
        needs: &[&'static str],
    ) -> Result<Health, ProviderError> {
        let me: Option<Data<TokenInfo>> = self.client.get("auth/token/lookup-self").await?;
        let me = me.map(|d| d.data);
        let principal = match &me {
            Some(t) if !t.display_name.is_empty() => format!(
                "token {} (policies {})",
                t.display_name,
                t.policies.join(", ")
            ),
            _ => "token (no display name)".to_string(),
        };
        let mut health = Health {
            principal,
            ..Health::default()
        };
        if needs.is_empty() {
            return Ok(health);
        }
        let (engines, auths) =
            futures::try_join!(self.mounts("sys/mounts"), self.mounts("sys/auth"))?;
        let probes = probes(needs, &placeholders(&engines, &auths));
        if probes.is_empty() {
            return Ok(health);
        }
        let paths: Vec<&str> = probes.iter().map(|p| p.path.as_str()).collect();
        let answer: Option<Data<BTreeMap<String, serde_json::Value>>> = self
            .client
            .post(
                "sys/capabilities-self",
                &serde_json::json!({ "paths": paths }),
            )
            .await?;
        let answer = answer.map(|d| d.data).unwrap_or_default();
        for probe in &probes {
            let granted: Vec<String> = answer
                .get(&probe.path)
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            if !grants(&granted, &probe.capability) {
                let named = format!("{} {}", probe.capability, probe.path.replace(SAMPLE, "*"));
                if !health.missing.contains(&named) {
                    health.missing.push(named);
                }
            }
        }
        Ok(health)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(t: &str) -> Mount {
        Mount {
            mount_type: t.into(),
            accessor: String::new(),
            options: BTreeMap::new(),
        }
    }

    #[test]
    fn placeholders_expand_to_every_mount_of_their_type_and_stars_to_a_sample() {
        let kv2 = || Mount {
            options: BTreeMap::from([("version".to_string(), "2".to_string())]),
            ..mount("kv")
        };
        let engines = BTreeMap::from([
            ("secret/".to_string(), kv2()),
            ("team-kv/".to_string(), kv2()),
            ("legacy/".to_string(), mount("kv")),
            ("sys/".to_string(), mount("system")),
        ]);
        let auths = BTreeMap::from([("userpass/".to_string(), mount("userpass"))]);
        let m = placeholders(&engines, &auths);
        let p = probes(
            &[
                "update {kv}/data/*",
                "list {kv1}/*",
                "delete {userpass}/users/*",
                "update {pki}/revoke",
                "update auth/token/revoke-accessor",
            ],
            &m,
        );
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "secret/data/closeout-doctor-check",
                "team-kv/data/closeout-doctor-check",
                "legacy/closeout-doctor-check",
                "auth/userpass/users/closeout-doctor-check",
                "auth/token/revoke-accessor",
            ]
        );
        assert_eq!(p[3].capability, "delete");
    }

    #[test]
    fn root_grants_everything_and_others_only_what_they_list() {
        assert!(grants(&["root".into()], "update"));
        assert!(grants(&["read".into(), "update".into()], "update"));
        assert!(!grants(&["read".into()], "update"));
        assert!(!grants(&["deny".into()], "read"));
    }
}
