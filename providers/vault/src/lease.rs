//! Leases under the configured `lease_prefixes` (with `{id}`, `{email}`, `{local}` replaced by the
//! identity's id, email and email local part), and the leases the audit log says the person's
//! requests obtained: resolved through `sys/leases/lookup`, revoked by id.

use crate::audit_trail::LeaseGrant;
use crate::capabilities::{kinds, PROVIDER};
use crate::client::{CallError, Data};
use crate::findings::{finding, listed};
use crate::server::VaultProvider;
use closeout_contract::{
    ActionOutcome, ActionRequest, Finding, Holder, Identity, Path, ProviderError, Relation,
    Resolution, State,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct LeaseInfo {
    #[serde(default)]
    issue_time: String,
    #[serde(default, deserialize_with = "crate::model::nullable")]
    expire_time: String,
}

/// `prefix` with the identity's placeholders filled; `None` when a placeholder has no value.
pub fn expand_prefix(prefix: &str, identity: &Identity) -> Option<String> {
    let mut out = prefix.replace("{id}", &identity.id);
    out = out.replace("{email}", &identity.email);
    if out.contains("{local}") {
        out = out.replace("{local}", &identity.email_local_part()?);
    }
    Some(out)
}

// vaultrs has no `sys/leases` functions: lookup, LIST and revoke are typed calls.
impl VaultProvider {
    async fn lookup_lease(&self, id: &str) -> Result<Option<LeaseInfo>, CallError> {
        match self
            .client
            .post::<Data<LeaseInfo>>("sys/leases/lookup", &serde_json::json!({ "lease_id": id }))
            .await
        {
            Ok(d) => Ok(d.map(|d| d.data)),
            Err(e) if e.is_not_found() || e.errors.iter().any(|m| m.contains("invalid lease")) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn resolve_leases(
        &self,
        identity: &Identity,
        res: &mut Resolution,
    ) -> Result<(), ProviderError> {
        for configured in &self.config.lease_prefixes {
            let Some(prefix) = expand_prefix(configured, identity) else {
                continue;
            };
            let mut stack = vec![prefix.clone()];
            while let Some(p) = stack.pop() {
                let path = format!("sys/leases/lookup/{p}");
                let keys = listed(
                    self.client.list(&path).await,
                    kinds::LEASE,
                    &path,
                    &mut res.gaps,
                )?;
                for k in keys {
                    let full = format!("{p}{k}");
                    if k.ends_with('/') {
                        stack.push(full);
                        continue;
                    }
                    let Some(info) = self.lookup_lease(&full).await? else {
                        continue;
                    };
                    let attributes = [
                        ("lease_id", full.clone()),
                        ("prefix", configured.clone()),
                        ("issued", info.issue_time),
                        ("expires", info.expire_time),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                    res.findings.push(finding(
                        kinds::LEASE,
                        &full,
                        format!("lease {full}"),
                        Relation::Owns,
                        Holder::Account,
                        State::Active,
                        Path::new()
                            .then("lease-prefix", prefix.clone())
                            .then("lease", full.clone()),
                        attributes,
                    ));
                }
            }
        }
        Ok(())
    }

    /// The audit log's lease grants that are still live (a lease dies with the token that
    /// obtained it, so most are gone once the tokens are revoked).
    pub(crate) async fn resolve_audit_leases(
        &self,
        grants: &[LeaseGrant],
        res: &mut Resolution,
    ) -> Result<(), ProviderError> {
        let mut seen = std::collections::BTreeSet::new();
        for g in grants {
            if !seen.insert(g.lease_id.as_str()) {
                continue;
            }
            let Some(info) = self.lookup_lease(&g.lease_id).await? else {
                continue;
            };
            let attributes = [
                ("lease_id", g.lease_id.clone()),
                ("found_by", "audit-log".to_string()),
                ("issued", info.issue_time),
                ("expires", info.expire_time),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            res.findings.push(finding(
                kinds::LEASE,
                &g.lease_id,
                format!("lease {}", g.lease_id),
                Relation::Owns,
                Holder::Account,
                State::Active,
                Path::new().then(
                    "obtained",
                    format!(
                        "lease {} ({} at {} by {}, per the audit log)",
                        g.lease_id,
                        g.path,
                        g.time.to_rfc3339(),
                        g.by
                    ),
                ),
                attributes,
            ));
        }
        Ok(())
    }

    pub(crate) async fn execute_lease(
        &self,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        let id = lease_id(&action.finding)?;
        if self.lookup_lease(id).await?.is_none() {
            return Ok(ActionOutcome::already(
                State::Revoked,
                format!("lease {id} already revoked or expired"),
            ));
        }
        self.client
            .write("sys/leases/revoke", &serde_json::json!({ "lease_id": id }))
            .await?;
        Ok(ActionOutcome::done(
            State::Revoked,
            format!("revoked lease {id}"),
        ))
    }

    pub(crate) async fn live_state_lease(&self, f: &Finding) -> Result<State, ProviderError> {
        Ok(match self.lookup_lease(lease_id(f)?).await? {
            None => State::Deleted,
            Some(_) => State::Active,
        })
    }
}

fn lease_id(f: &Finding) -> Result<&str, ProviderError> {
    f.attr("lease_id").ok_or_else(|| ProviderError::Permanent {
        provider: PROVIDER,
        message: format!("finding {} lacks attribute lease_id", f.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeout_contract::{IdentityKind, IdentityStatus};

    #[test]
    fn placeholders_are_filled() {
        let a = Identity {
            id: "E100".into(),
            email: "alice.smith@example.com".into(),
            name: "Alice".into(),
            kind: IdentityKind::Human,
            status: IdentityStatus::Active,
            manager: None,
            department: None,
            role: None,
            location: None,
            employment_type: None,
            tags: Default::default(),
        };
        assert_eq!(
            expand_prefix("database/creds/{local}/", &a).unwrap(),
            "database/creds/alice.smith/"
        );
        assert_eq!(
            expand_prefix("x/{id}/{email}", &a).unwrap(),
            "x/E100/alice.smith@example.com"
        );
        let mut nobody = a.clone();
        nobody.email = String::new();
        assert!(expand_prefix("x/{local}/", &nobody).is_none());
    }
}
