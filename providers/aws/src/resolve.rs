//! Resolution's I/O: gather from AWS what the pure modules analyse (the inventory, the AWS-managed
//! policies that matter, the person's credentials, the owned NHIs' keys, the secrets and their
//! versions), concurrently and through the gate, and assemble the [`Resolution`]. Also serves
//! `nhi_findings` from the same inventory.

use crate::capabilities::{kinds, PROVIDER};
use crate::client::AwsProvider;
use crate::correlation::correlate;
use crate::error::CallError;
use crate::federation::{
    federated_role_finding, federated_roles, identity_center, inventory_account, session_denies,
    FedRole, Federated, GAP_IDENTITY_CENTER,
};
use crate::findings::{apply_versions, person_findings, role_finding, secret_finding};
use crate::inventory::SecretVersions;
use crate::nhi::{
    nhi_role_finding, nhi_user_finding, nhi_user_findings, owned_nhis, service_nhi_findings,
};
use crate::reach::{
    reach, secret_policy_gap, secret_reach, user_base, Node, Person, GAP_IAM_INVENTORY,
    GAP_SECRET_LIST, GAP_SECRET_VERSIONS,
};
use chrono::{DateTime, Utc};
use closeout_contract::{Account, Finding, Gap, Path, ProviderError, Resolution, ResolveContext};
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::BTreeMap;

/// What `resolve_accounts` read, handed to the `resolve` that follows it: the inventory, and
/// the person's IAM user name with its credentials when one correlates.
struct AccountsRead {
    inventory: crate::inventory::Inventory,
    person: Option<(String, crate::inventory::UserCredentials)>,
}

impl AwsProvider {
    /// Identity Center (when enabled) and the SAML/OIDC roles, for `identity`: the findings and
    /// gaps go into `res`, the roles come back for reach. Identity Center refused (or not served)
    /// is a gap: the person's SSO access is unknown, never taken for none.
    async fn federated(
        &self,
        inv: &crate::inventory::Inventory,
        identity: &closeout_contract::Identity,
        res: &mut Resolution,
    ) -> Result<Federated, ProviderError> {
        let mut fed = Federated::default();
        if self.config.identity_center.enabled {
            match self.load_sso(identity).await {
                Ok(Some(access)) => {
                    let account = match inventory_account(inv) {
                        Some(a) => a.to_string(),
                        None if access.user.is_some() => self
                            .call("GetCallerIdentity", self.sts.get_caller_identity().send())
                            .await?
                            .account()
                            .unwrap_or_default()
                            .to_string(),
                        None => String::new(),
                    };
                    fed = identity_center(inv, &access, &account);
                }
                Ok(None) => {}
                Err(e) if e.is_access_denied() || e.is_unimplemented() => {
                    res.gaps.push(Gap {
                        provider: PROVIDER.to_string(),
                        kind: GAP_IDENTITY_CENTER.to_string(),
                        resource: String::new(),
                        reason: format!(
                            "{} was refused ({e}): the identity's IAM Identity Center user, groups, account assignments and the roles they give are unknown",
                            e.op
                        ),
                        paths: Vec::new(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        let saml = federated_roles(inv, identity, &self.config);
        fed.roles.extend(saml.roles);
        fed.gaps.extend(saml.gaps);
        res.warnings.append(&mut fed.warnings);
        res.gaps.append(&mut fed.gaps);
        res.findings.append(&mut fed.findings);
        if let Some((user_id, user_name, matched_by)) = &fed.sso_user {
            res.accounts.push(Account {
                provider: PROVIDER.to_string(),
                resource: user_id.clone(),
                display: format!("identity center user {user_name}"),
                matched_by: matched_by.clone(),
            });
        }
        Ok(fed)
    }

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

    /// `resolve_accounts`: the inventory (to correlate), then the person's own credentials; the
    /// findings of the IAM user and what it holds, as `resolve_impl` builds them. No federation,
    /// policies, roles or secrets: those wait for the whole resolution. `None` when the
    /// inventory cannot be read (`resolve_impl` makes that a gap).
    pub(crate) async fn resolve_accounts_impl(
        &self,
        ctx: &ResolveContext,
    ) -> Result<Option<Resolution>, ProviderError> {
        let inv = match self.load_inventory().await {
            Ok(inv) => inv,
            Err(e) if e.is_access_denied() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut res = Resolution::default();
        let correlation = correlate(&inv.users, &ctx.identity, &self.config);
        let mut person_read = None;
        if let Some((i, matched_by)) = &correlation.account {
            let person = Person::new(&inv.users[*i]);
            let creds = self.user_credentials(&person.user.name).await?;
            self.person_account(&inv, &person, matched_by, &creds, ctx, &mut res);
            person_read = Some((person.user.name.clone(), creds));
        }
        res.normalize();
        self.ahead.put(
            &ctx.identity.id,
            Box::new(AccountsRead {
                inventory: inv,
                person: person_read,
            }),
        );
        Ok(Some(res))
    }

    /// The person's IAM user as an account, and its findings; what could not be listed of its
    /// credentials is a gap.
    fn person_account(
        &self,
        inv: &crate::inventory::Inventory,
        p: &Person<'_>,
        matched_by: &str,
        creds: &crate::inventory::UserCredentials,
        ctx: &ResolveContext,
        res: &mut Resolution,
    ) {
        res.accounts.push(Account {
            provider: PROVIDER.to_string(),
            resource: p.user.arn.clone(),
            display: format!("iam user {}", p.user.name),
            matched_by: matched_by.to_string(),
        });
        res.warnings.extend(creds.warnings.iter().cloned());
        for (kind, reason) in &creds.unlisted {
            res.gaps.push(Gap {
                provider: PROVIDER.to_string(),
                kind: kind.to_string(),
                resource: p.user.name.clone(),
                reason: reason.clone(),
                paths: vec![p.base.then("has", format!("{kind} (not listed)"))],
            });
        }
        res.findings.extend(person_findings(
            inv,
            p,
            matched_by,
            creds,
            ctx,
            &self.config,
        ));
    }

    pub(crate) async fn resolve_impl(
        &self,
        ctx: &ResolveContext,
    ) -> Result<Resolution, ProviderError> {
        let config = &self.config;
        let identity = &ctx.identity;
        let mut res = Resolution::default();
        // What `resolve_accounts` read just before (as it was before containment acted), once.
        let ahead = self
            .ahead
            .take(&identity.id)
            .and_then(|read| read.downcast::<AccountsRead>().ok());
        let (loaded, mut person_read) = match ahead {
            Some(read) => (Ok(read.inventory), read.person),
            None => (self.load_inventory().await, None),
        };
        let mut inv = match loaded {
            Ok(inv) => inv,
            // Without the inventory nothing of the identity can be told: not even its user.
            // Unknown, so open, with the reason — not a failed resolution that hides why.
            Err(e) if e.is_access_denied() => {
                res.gaps.push(Gap {
                    provider: PROVIDER.to_string(),
                    kind: GAP_IAM_INVENTORY.to_string(),
                    resource: String::new(),
                    reason: format!(
                        "{} was refused ({e}): the identity's IAM user, groups, roles, policies and what they reach are unknown",
                        e.op
                    ),
                    paths: Vec::new(),
                });
                return Ok(res);
            }
            Err(e) => return Err(e.into()),
        };

        let correlation = correlate(&inv.users, identity, config);
        res.warnings.extend(correlation.warnings.iter().cloned());
        let person_idx = correlation.account.as_ref().map(|(i, _)| *i);
        let (nhi_users, nhi_roles) = owned_nhis(&inv, person_idx, identity, config);

        // Federated access: Identity Center's roles and the SAML/OIDC roles the person signs in
        // to; they are starts of reach like the person's own IAM user.
        let fed = self.federated(&inv, identity, &mut res).await?;
        let fed_by_role: BTreeMap<usize, &FedRole> = fed.roles.iter().map(|r| (r.idx, r)).collect();

        // Where reach starts: the person's own IAM user, and the IAM users it owns (their keys
        // are the person's to use until rotated, so what they reach is the person's too).
        let starts: Vec<(Node, Path)> = person_idx
            .map(|i| (Node::User(i), user_base(&inv.users[i].name)))
            .into_iter()
            .chain(nhi_users.iter().map(|i| {
                let path = nhi_user_finding(&inv.users[*i], config).paths[0].clone();
                (Node::User(*i), path)
            }))
            .chain(
                fed.roles
                    .iter()
                    .filter_map(|r| r.paths.first().map(|p| (Node::Role(r.idx), p.clone()))),
            )
            .collect();
        // The AWS-managed policies of every principal reached, read until reach stops growing:
        // a policy read can open a new edge, whose principal has policies of its own.
        loop {
            let missing: Vec<String> = reach(&inv, &starts)
                .attached_arns(&inv)
                .into_iter()
                .filter(|a| !inv.managed.contains_key(a))
                .collect();
            if missing.is_empty() {
                break;
            }
            self.load_managed(&mut inv, missing).await?;
        }
        res.warnings.append(&mut inv.warnings);
        let inventory = inv;
        let inv = &inventory;

        let person = person_idx.map(|i| Person::new(&inv.users[i]));
        let reached = reach(inv, &starts);
        res.gaps.extend(reached.gaps.iter().cloned());
        res.exposures.extend(reached.exposure());

        let read_ahead = person
            .as_ref()
            .and_then(|p| person_read.take().filter(|(name, _)| *name == p.user.name))
            .map(|(_, creds)| creds);
        let creds = async {
            match (&person, read_ahead) {
                (Some(_), Some(creds)) => Ok(Some(creds)),
                (Some(p), None) => self.user_credentials(&p.user.name).await.map(Some),
                (None, _) => Ok(None),
            }
        };
        let nhi_keys = stream::iter(nhi_users.iter().copied())
            .map(|i| async move {
                match self.list_keys(&inv.users[i].name).await {
                    Ok(k) => Ok((i, Some(k))),
                    Err(e) if e.is_access_denied() => Ok((i, None)),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(self.gate.limits().max_in_flight)
            .try_collect::<Vec<_>>();
        // A resource policy can only matter through a principal the identity reaches
        // (`secret_reach` and `secret_policy_gap` look at no policy otherwise): an identity
        // with no IAM user, owned NHI or federated role here costs no `GetResourcePolicy`.
        let policies_matter = !reached.reached.is_empty();
        let (creds, nhi_keys, listing) =
            futures::try_join!(creds, nhi_keys, self.load_secrets(policies_matter))?;
        res.warnings.extend(listing.warnings);
        let secrets = listing.secrets;
        if let Some(why) = listing.refused {
            res.gaps.push(Gap {
                provider: PROVIDER.to_string(),
                kind: GAP_SECRET_LIST.to_string(),
                resource: String::new(),
                reason: format!(
                    "{why}: which secrets the identity owns, reads or can grant itself is unknown"
                ),
                paths: Vec::new(),
            });
        }

        if let (Some(p), Some((_, matched_by)), Some(creds)) =
            (&person, &correlation.account, &creds)
        {
            self.person_account(inv, p, matched_by, creds, ctx, &mut res);
        }
        for r in &reached.roles() {
            let mut f = role_finding(inv, r, ctx, config);
            if let Some(fr) = fed_by_role.get(&r.idx) {
                federated_role_finding(
                    &mut f,
                    fr,
                    r.only_started,
                    inv,
                    identity,
                    config,
                    ctx.cutoff,
                );
            }
            res.findings.push(f);
        }
        res.findings
            .extend(session_denies(inv, identity, config, Utc::now()));
        for (i, keys) in &nhi_keys {
            let user = &inv.users[*i];
            match keys {
                Some(keys) => res
                    .findings
                    .extend(nhi_user_findings(user, keys, ctx, config)),
                None => {
                    let nhi = nhi_user_finding(user, config);
                    res.gaps.push(Gap {
                        provider: PROVIDER.to_string(),
                        kind: kinds::ACCESS_KEY.to_string(),
                        resource: user.name.clone(),
                        reason: format!(
                            "ListAccessKeys for iam user {} was refused: its access keys are unknown",
                            user.name
                        ),
                        paths: vec![nhi.paths[0].then("has", "access keys (not listed)")],
                    });
                    res.findings.push(nhi);
                }
            }
        }
        for i in &nhi_roles {
            res.findings.push(nhi_role_finding(&inv.roles[*i], config));
        }

        res.gaps.extend(
            secrets
                .iter()
                .filter_map(|s| secret_policy_gap(&reached, s)),
        );
        let mut secret_findings: Vec<Finding> = secrets
            .iter()
            .filter_map(|s| {
                let reach = secret_reach(&reached, inv, s, identity, config);
                (!reach.paths.is_empty()).then(|| secret_finding(s, reach))
            })
            .collect();
        let last_changed: BTreeMap<&str, Option<DateTime<Utc>>> = secrets
            .iter()
            .map(|s| (s.arn.as_str(), s.last_changed))
            .collect();
        let versions: Vec<(usize, Result<Option<SecretVersions>, CallError>)> = stream::iter(
            secret_findings
                .iter()
                .map(|f| f.resource.clone())
                .enumerate()
                .collect::<Vec<_>>(),
        )
        .map(|(i, arn)| async move {
            match self.secret_versions(&arn).await {
                Ok(v) => Ok((i, Ok(v))),
                Err(e) if e.is_access_denied() => Ok((i, Err(e))),
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(self.gates.of("ListSecretVersionIds").limits().max_in_flight)
        .try_collect()
        .await?;
        let mut gone = Vec::new();
        for (i, v) in versions {
            match v {
                Ok(Some(mut v)) => {
                    let f = &mut secret_findings[i];
                    v.last_changed = last_changed.get(f.resource.as_str()).copied().flatten();
                    apply_versions(f, &v, ctx.cutoff)
                }
                Ok(None) => gone.push(i),
                // The secret is reached, so it stays a finding (and is acted on as usual);
                // whether it was rotated since the cutoff is unknown, so it is a gap too.
                Err(e) => {
                    let f = &secret_findings[i];
                    res.gaps.push(Gap {
                        provider: PROVIDER.to_string(),
                        kind: GAP_SECRET_VERSIONS.to_string(),
                        resource: f.resource.clone(),
                        reason: format!(
                            "{} for {} was refused ({e}): whether it was rotated since the cutoff is unknown",
                            e.op, f.display
                        ),
                        paths: f.paths.clone(),
                    });
                }
            }
        }
        // The shape of each open secret's current value (never the value), for the plan's
        // rotation strategy; a secret with a rotation function is rotated by it, not by value.
        let shapes: Vec<(usize, Option<closeout_contract::Shape>)> = stream::iter(
            secret_findings
                .iter()
                .enumerate()
                .filter(|(i, f)| {
                    !gone.contains(i)
                        && f.state.is_open()
                        && f.attr("rotation_enabled") != Some("true")
                })
                .map(|(i, f)| (i, f.resource.clone()))
                .collect::<Vec<_>>(),
        )
        .map(|(i, arn)| async move {
            match self.secret_shape(&arn).await {
                Ok(s) => Ok((i, s)),
                // Closeout may list a secret it cannot read: the strategy is then decided when
                // the value is read to rotate it.
                Err(e) if e.is_access_denied() => Ok((i, None)),
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(self.gates.of("GetSecretValue").limits().max_in_flight)
        .try_collect()
        .await?;
        for (i, shape) in shapes {
            if let Some(shape) = shape {
                shape.record(&mut secret_findings[i].attributes);
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
