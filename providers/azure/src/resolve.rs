//! Resolution: the person's Entra user, groups, owned applications and their credentials, the
//! role assignments reaching them, the access policies naming them, and every Key Vault object
//! they own, can read or can grant themselves — each finding with the paths that explain it.
//! This module does the reading; `findings` builds the findings from what was read.

use crate::capabilities::PROVIDER;
use crate::client::AzureProvider;
use crate::directory;
use crate::findings::{
    access_policy_findings, assignment_findings, held_by, membership_findings, owned_findings,
    user_findings, vault_object_finding, VaultObject,
};
use crate::keyvault::{Access, Vault};
use crate::object::ObjectType;
use crate::principal::Principals;
use crate::survey::Survey;
use closeout_contract::{Account, Finding, ProviderError, Resolution, ResolveContext};
use futures::{stream, StreamExt, TryStreamExt};
use std::sync::Arc;

/// How many vault listings run at once (each still passes the provider's gate).
const VAULT_LISTING_CONCURRENCY: usize = 4;

impl AzureProvider {
    pub(crate) async fn resolve_impl(
        &self,
        ctx: &ResolveContext,
    ) -> Result<Resolution, ProviderError> {
        let mut out = Resolution::default();
        let Some((user, matched_by)) =
            directory::find_user(&self.http, &ctx.identity, &self.config.user_match).await?
        else {
            out.warnings.push(format!(
                "azure: no Entra user matches {} ({})",
                ctx.identity.id, ctx.identity.email
            ));
            out.normalize();
            return Ok(out);
        };
        let upn = user.user_principal_name.clone().unwrap_or(user.id.clone());
        out.accounts.push(Account {
            provider: PROVIDER.into(),
            resource: user.id.clone(),
            display: format!("Entra user {upn}"),
            matched_by,
        });
        user_findings(&user, &upn, ctx.cutoff, &mut out);

        let principals = directory::principals(&self.http, &user).await?;
        membership_findings(&principals, &mut out);

        for owned in directory::owned_objects(&self.http, &user.id).await? {
            owned_findings(&owned, &upn, &mut out);
        }

        let survey = crate::arm::survey(&self.http, &user.id).await?;
        assignment_findings(&survey, &principals, &user.id, &mut out);
        access_policy_findings(&survey, &principals, &mut out);
        self.vault_object_findings(&survey, &principals, ctx, &mut out)
            .await?;
        for f in &mut out.findings {
            held_by(f, &user.id);
        }
        out.normalize();
        Ok(out)
    }

    /// Key Vault objects: everything in a vault the person reaches (per object type the path
    /// exposes), and everything anywhere tagged as theirs. One paged list per vault and type.
    async fn vault_object_findings(
        &self,
        survey: &Survey,
        principals: &Principals,
        ctx: &ResolveContext,
        out: &mut Resolution,
    ) -> Result<(), ProviderError> {
        let paths = survey.key_vault_paths(principals);
        // Owned (not borrowed) inputs: the futures below must not depend on local lifetimes.
        let listings: Vec<(Arc<Vault>, ObjectType)> = survey
            .vaults
            .iter()
            .filter(|v| v.properties.vault_uri.is_some())
            .flat_map(|v| {
                let v = Arc::new(v.clone());
                ObjectType::ALL.map(|t| (v.clone(), t))
            })
            .collect();
        let objects: Vec<Vec<VaultObject>> = stream::iter(listings)
            .map(|(vault, t)| async move {
                let uri = vault.properties.vault_uri.clone().unwrap_or_default();
                let listed = self.data.list(&uri, t).await?;
                Ok::<_, ProviderError>(
                    listed
                        .into_iter()
                        // A certificate's backing secret and key are covered by the
                        // certificate finding (and cannot be rotated on their own).
                        .filter(|s| !s.managed)
                        .map(|summary| VaultObject {
                            vault: vault.clone(),
                            object_type: t,
                            summary,
                        })
                        .collect(),
                )
            })
            .buffer_unordered(VAULT_LISTING_CONCURRENCY)
            .try_collect()
            .await?;

        let identity = &ctx.identity;
        let candidates: Vec<(VaultObject, Vec<Access>, Option<String>)> = objects
            .into_iter()
            .flatten()
            .filter_map(|object| {
                let access: Vec<Access> = paths
                    .iter()
                    .filter(|(v, _)| v.id == object.vault.id)
                    .flat_map(|(_, a)| a.iter())
                    .filter(|a| a.objects.contains(&object.object_type))
                    .cloned()
                    .collect();
                let owner = object
                    .summary
                    .tags
                    .get(&self.config.owner_tag)
                    .filter(|o| identity.is_named_by(o))
                    .cloned();
                (!access.is_empty() || owner.is_some()).then_some((object, access, owner))
            })
            .collect();
        let findings: Vec<Finding> = stream::iter(candidates)
            .map(|(object, access, owner)| async move {
                let mut f = vault_object_finding(
                    &object,
                    &access,
                    owner.as_deref(),
                    &self.config.owner_tag,
                );
                let uri = object.vault.properties.vault_uri.as_deref().unwrap_or("");
                f.state = self
                    .object_state(uri, object.object_type, &object.summary.name, ctx.cutoff)
                    .await?;
                Ok::<_, ProviderError>(f)
            })
            .buffer_unordered(VAULT_LISTING_CONCURRENCY)
            .try_collect()
            .await?;
        out.findings.extend(findings);
        Ok(())
    }
}
