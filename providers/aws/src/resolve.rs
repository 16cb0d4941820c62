//! Resolution's I/O: gather from AWS what the pure modules analyse (the inventory, the AWS-managed
//! policies that matter, the person's credentials, the owned NHIs' keys, the secrets and their
//! versions), concurrently and through the gate, and assemble the [`Resolution`]. Also serves
//! `nhi_findings` from the same inventory.

use crate::capabilities::PROVIDER;
use crate::client::AwsProvider;
use crate::correlation::correlate;
use crate::findings::{apply_versions, person_findings, role_finding, secret_finding};
use crate::inventory::SecretVersions;
use crate::nhi::{nhi_role_finding, nhi_user_findings, owned_nhis, service_nhi_findings};
use crate::reach::{
    assumable_roles, role_sources, secret_reach, user_policy_arns, Person, RoleReach, Source,
};
use chrono::{DateTime, Utc};
use closeout_contract::{Account, Finding, ProviderError, Resolution, ResolveContext};
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::BTreeMap;

impl AwsProvider {
    /// `nhi_findings`: one paged inventory listing, no per-user call.
    pub(crate) async fn nhi_findings_impl(
        &self,
        ctx: &ResolveContext,
    ) -> Result<Vec<Finding>, ProviderError> {
        let inv = self.load_inventory().await?;
        let (found, warnings) = service_nhi_findings(&inv, &ctx.identity, &self.config);
        for w in warnings {
            tracing::warn!(identity = %ctx.identity.id, "{w}");
        }
        Ok(found)
    }

    pub(crate) async fn resolve_impl(
        &self,
        ctx: &ResolveContext,
    ) -> Result<Resolution, ProviderError> {
        let config = &self.config;
        let identity = &ctx.identity;
        let mut res = Resolution::default();
        let mut inv = self.load_inventory().await?;

        let correlation = correlate(&inv.users, identity, config);
        res.warnings.extend(correlation.warnings.iter().cloned());
        let person_idx = correlation.account.as_ref().map(|(i, _)| *i);

        // AWS-managed policies of the person, its groups, then of the roles it can assume.
        if let Some(i) = person_idx {
            let arns = user_policy_arns(&inv, &inv.users[i]);
            self.load_managed(&mut inv, arns).await?;
        }
        let role_idxs: Vec<usize> = match person_idx {
            Some(i) => assumable_roles(&inv, &Person::new(&inv, &inv.users[i]))
                .iter()
                .map(|r| r.idx)
                .collect(),
            None => Vec::new(),
        };
        let role_arns: Vec<String> = role_idxs
            .iter()
            .flat_map(|i| inv.roles[*i].attached.iter().map(|a| a.arn.clone()))
            .collect();
        self.load_managed(&mut inv, role_arns).await?;
        res.warnings.append(&mut inv.warnings);
        let inventory = inv;
        let inv = &inventory;

        let person = person_idx.map(|i| Person::new(inv, &inv.users[i]));
        let reaches = person
            .as_ref()
            .map(|p| assumable_roles(inv, p))
            .unwrap_or_default();
        let (nhi_users, nhi_roles) = owned_nhis(inv, person_idx, identity, config);

        let creds = async {
            match &person {
                Some(p) => self.user_credentials(&p.user.name).await.map(Some),
                None => Ok(None),
            }
        };
        let nhi_keys = stream::iter(nhi_users.iter().copied())
            .map(|i| async move { self.list_keys(&inv.users[i].name).await.map(|k| (i, k)) })
            .buffer_unordered(self.gate.limits().max_in_flight)
            .try_collect::<Vec<_>>();
        let (creds, nhi_keys, (secrets, secret_warnings)) =
            futures::try_join!(creds, nhi_keys, self.load_secrets())?;
        res.warnings.extend(secret_warnings);

        if let (Some(p), Some((_, matched_by))) = (&person, &correlation.account) {
            res.accounts.push(Account {
                provider: PROVIDER.to_string(),
                resource: p.user.arn.clone(),
                display: format!("iam user {}", p.user.name),
                matched_by: matched_by.clone(),
            });
            if let Some(creds) = &creds {
                res.warnings.extend(creds.warnings.iter().cloned());
                res.findings
                    .extend(person_findings(inv, p, matched_by, creds, ctx, config));
            }
        }
        for r in &reaches {
            res.findings.push(role_finding(inv, r, ctx, config));
        }
        for (i, keys) in &nhi_keys {
            res.findings
                .extend(nhi_user_findings(&inv.users[*i], keys, ctx, config));
        }
        for i in &nhi_roles {
            res.findings.push(nhi_role_finding(&inv.roles[*i], config));
        }

        let role_sources: Vec<(&RoleReach, Vec<Source<'_>>)> = reaches
            .iter()
            .map(|r| (r, role_sources(inv, &inv.roles[r.idx])))
            .collect();
        let mut secret_findings: Vec<Finding> = secrets
            .iter()
            .filter_map(|s| {
                let reach = secret_reach(inv, person.as_ref(), &role_sources, s, identity, config);
                (!reach.paths.is_empty()).then(|| secret_finding(s, reach))
            })
            .collect();
        let last_changed: BTreeMap<&str, Option<DateTime<Utc>>> = secrets
            .iter()
            .map(|s| (s.arn.as_str(), s.last_changed))
            .collect();
        let versions: Vec<(usize, Option<SecretVersions>)> = stream::iter(
            secret_findings
                .iter()
                .map(|f| f.resource.clone())
                .enumerate()
                .collect::<Vec<_>>(),
        )
        .map(|(i, arn)| async move { self.secret_versions(&arn).await.map(|v| (i, v)) })
        .buffer_unordered(self.gate.limits().max_in_flight)
        .try_collect()
        .await?;
        let mut gone = Vec::new();
        for (i, v) in versions {
            match v {
                Some(mut v) => {
                    let f = &mut secret_findings[i];
                    v.last_changed = last_changed.get(f.resource.as_str()).copied().flatten();
                    apply_versions(f, &v, ctx.cutoff)
                }
                None => gone.push(i),
            }
        }
        res.findings.extend(
            secret_findings
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !gone.contains(i))
                .map(|(_, f)| f),
        );
        res.normalize();
        Ok(res)
    }
}
