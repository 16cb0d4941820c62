//! Resolution: the person's Entra user, groups, owned applications and their credentials, the
//! service principals they can act as, the role assignments reaching them, the access policies
//! naming them, and every Key Vault object they (or a service principal they can act as) own,
//! can read or can grant themselves — each finding with the paths that explain it. What cannot
//! be listed or read becomes a gap (open until read or accepted), never a warning only. This
//! module does the reading; `findings` builds the findings from what was read.

use crate::access_findings::{
    entra_access_findings, tenant_credentials_gap, tenant_exposure, TenantReach,
};
use crate::capabilities::{kinds, PROVIDER};
use crate::client::AzureProvider;
use crate::config::credential_secret_name;
use crate::directory::{self, user_principal};
use crate::findings::{
    access_policy_findings, acted_as_path, acts_as_finding, assignment_findings, gap_of, held_by,
    membership_findings, owned_findings, user_findings, vault_exposure, vault_object_finding,
    vault_paths, Reached, VaultObject,
};
use crate::http::Unread;
use crate::keyvault::{Access, Reach, Vault, Via};
use crate::object::ObjectType;
use crate::principal::Principals;
use crate::survey::Survey;
use closeout_contract::{
    Account, Finding, Gap, Path, ProviderError, Resolution, ResolveContext, State,
};
use futures::{stream, StreamExt, TryStreamExt};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The gap an assignment condition Closeout cannot parse is: what it allows is unknown.
pub const GAP_ROLE_ASSIGNMENT_CONDITION: &str = "role-assignment-condition";

/// How many vault listings run at once (each still passes the provider's gate).
const VAULT_LISTING_CONCURRENCY: usize = 4;

/// One vault's listing of one object type: its objects, or the gap it left.
enum Listing {
    Objects(Vec<VaultObject>),
    Unread(Gap),
}

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

        let principals = match directory::principals(&self.http, &user).await {
            Ok(p) => p,
            Err(e) => {
                let unread = Unread::of(
                    kinds::GROUP_MEMBERSHIP,
                    user.id.clone(),
                    format!("the groups of {upn}"),
                    e,
                )?;
                out.gaps.push(gap_of(&unread, Vec::new()));
                Principals {
                    all: vec![user_principal(&user)],
                }
            }
        };
        membership_findings(&principals, &mut out);

        let owned = match directory::owned_objects(&self.http, &user.id).await {
            Ok(o) => o,
            Err(e) => {
                let unread = Unread::of(
                    kinds::OWNED_APPLICATION,
                    user.id.clone(),
                    format!("the applications and service principals {upn} owns"),
                    e,
                )?;
                out.gaps.push(gap_of(&unread, Vec::new()));
                Vec::new()
            }
        };
        for o in &owned {
            owned_findings(o, &upn, &mut out);
        }
        // Owning an application or service principal is acting as it: its reach is theirs.
        let acting =
            directory::acted_as(&self.http, kinds::ACTS_AS_SERVICE_PRINCIPAL, &owned).await?;
        out.gaps
            .extend(acting.unread.iter().map(|u| gap_of(u, Vec::new())));
        out.findings.extend(
            acting
                .reached
                .iter()
                .filter(|a| !a.owned_directly)
                .map(acts_as_finding),
        );

        // Directory roles (held and eligible), owned groups, app roles, delegated grants and
        // authentication methods; a privileged directory role reaches the whole tenant.
        let access = crate::entra_access::read(
            &self.http,
            &user.id,
            &upn,
            principals.all.get(1..).unwrap_or_default(),
        )
        .await?;
        let me = principals
            .all
            .first()
            .cloned()
            .unwrap_or_else(|| user_principal(&user));
        let tenant_reach = entra_access_findings(&access, &upn, &me, &mut out);
        out.exposures
            .extend(tenant_exposure(&tenant_reach, &self.config.tenant_id));
        out.gaps.extend(tenant_credentials_gap(
            &tenant_reach,
            &self.config.tenant_id,
        ));

        let survey = crate::arm::survey(&self.http).await?;
        out.gaps
            .extend(survey.unread.iter().map(|u| gap_of(u, Vec::new())));
        assignment_findings(&survey, &principals, &user.id, &mut out);
        access_policy_findings(&survey, &principals, &mut out);

        // Whose reach is the person's: theirs, and every service principal they can act as.
        let mut reachers: Vec<(Path, &Principals)> = vec![(Path::new(), &principals)];
        reachers.extend(
            acting
                .reached
                .iter()
                .map(|a| (acted_as_path(a), &a.principals)),
        );
        for (from, who) in &reachers {
            for a in survey.unknown_roles(who) {
                out.gaps.push(Gap {
                    provider: PROVIDER.into(),
                    kind: "role-definition".into(),
                    resource: a.id.clone(),
                    reason: format!(
                        "role assignment {} names role definition {}, which could not be read: what it grants is unknown, so not closed",
                        a.name,
                        a.role_guid()
                    ),
                    paths: vec![from.clone()],
                });
            }
        }
        // The credentials published for applications whose credentials this resolution
        // rotates anyway (the person owns them): rotating the application credential publishes
        // a new version and removes the old credential from the application, so the secret is
        // not rotated on its own (that would overwrite a working credential with a random
        // value).
        let rotated_apps: Vec<(&str, &str, &str)> = owned
            .iter()
            .filter_map(|o| {
                let app_id = o.app_id.as_deref().filter(|a| !a.is_empty())?;
                Some((
                    o.display_name.as_deref().unwrap_or(&o.id),
                    app_id,
                    o.id.as_str(),
                ))
            })
            .collect();
        self.vault_object_findings(
            &survey,
            &reachers,
            &tenant_reach,
            &rotated_apps,
            ctx,
            &mut out,
        )
        .await?;
        for f in &mut out.findings {
            held_by(f, &user.id);
            // Where a rotation publishes this credential: the plan refuses two objects'
            // credentials published to one secret name.
            if self.config.credential_vault.is_some()
                && (f.kind == kinds::APP_PASSWORD || f.kind == kinds::APP_CERTIFICATE)
            {
                let name = crate::config::publish_secret_name(&self.config, f);
                let object = f.attr("object_id").unwrap_or(&f.resource).to_string();
                f.attributes
                    .insert(closeout_contract::action::PUBLISH_SECRET_ATTR.into(), name);
                f.attributes
                    .insert(closeout_contract::action::PUBLISH_FOR_ATTR.into(), object);
            }
        }
        out.normalize();
        Ok(out)
    }

    /// Key Vault objects: everything in a vault the person (or a service principal they can
    /// act as) reaches, per object type and name the path exposes, and everything anywhere
    /// tagged as theirs. One paged list per vault and type; a vault whose objects cannot be
    /// listed is a gap. A vault the person can grant themselves everything in is an exposure.
    async fn vault_object_findings(
        &self,
        survey: &Survey,
        reachers: &[(Path, &Principals)],
        tenant_reach: &[TenantReach],
        rotated_apps: &[(&str, &str, &str)],
        ctx: &ResolveContext,
        out: &mut Resolution,
    ) -> Result<(), ProviderError> {
        let mut reached: BTreeMap<String, Vec<Reached>> = BTreeMap::new();
        for (from, principals) in reachers {
            for (vault, accesses) in survey.key_vault_paths(principals) {
                reached
                    .entry(vault.id.to_ascii_lowercase())
                    .or_default()
                    .extend(accesses.into_iter().map(|access| Reached {
                        from: from.clone(),
                        access,
                    }));
            }
        }
        // A directory role reaching the whole tenant grants the person every vault's objects.
        for vault in &survey.vaults {
            for r in tenant_reach {
                reached
                    .entry(vault.id.to_ascii_lowercase())
                    .or_default()
                    .push(Reached {
                        from: Path::new(),
                        access: Access {
                            vault_id: vault.id.clone(),
                            reach: Reach::CanGrantSelf,
                            objects: ObjectType::ALL.into_iter().collect(),
                            only: None,
                            via: Via::DirectoryRole {
                                edge: r.edge.clone(),
                                node: r.node.clone(),
                            },
                            principal: r.principal.clone(),
                            rule: r.why.clone(),
                            condition: None,
                            condition_error: None,
                        },
                    });
            }
        }
        let reached_of = |vault: &Vault| -> &[Reached] {
            reached
                .get(&vault.id.to_ascii_lowercase())
                .map(Vec::as_slice)
                .unwrap_or_default()
        };
        for vault in &survey.vaults {
            out.exposures
                .extend(vault_exposure(vault, reached_of(vault)));
        }
        out.gaps
            .extend(unparsed_conditions(&survey.vaults, &reached));
        // Owned (not borrowed) inputs: the futures below must not depend on local lifetimes.
        let mut listings: Vec<(Arc<Vault>, ObjectType, Vec<Path>)> = Vec::new();
        for vault in &survey.vaults {
            let paths = vault_paths(vault, reached_of(vault));
            if vault.properties.vault_uri.is_none() {
                // Its objects cannot be listed: unknown, whoever reaches it.
                out.gaps.extend(ObjectType::ALL.map(|t| Gap {
                    provider: PROVIDER.into(),
                    kind: t.finding_kind().into(),
                    resource: vault.id.clone(),
                    reason: format!(
                        "vault {} has no vaultUri: its {} could not be listed, so not closed",
                        vault.name,
                        t.as_str()
                    ),
                    paths: paths.clone(),
                }));
                continue;
            }
            let v = Arc::new(vault.clone());
            for t in ObjectType::ALL {
                listings.push((v.clone(), t, paths.clone()));
            }
        }
        let listed: Vec<Listing> = stream::iter(listings)
            .map(|(vault, t, paths)| async move {
                let uri = vault.properties.vault_uri.clone().unwrap_or_default();
                match self.data.list(&uri, t).await {
                    Ok(listed) => Ok(Listing::Objects(
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
                    )),
                    Err(e) => {
                        let unread = Unread::of(
                            t.finding_kind(),
                            vault.id.clone(),
                            format!("the {} of vault {}", t.as_str(), vault.name),
                            e,
                        )?;
                        Ok::<_, ProviderError>(Listing::Unread(gap_of(&unread, paths)))
                    }
                }
            })
            .buffer_unordered(VAULT_LISTING_CONCURRENCY)
            .try_collect()
            .await?;
        let mut objects = Vec::new();
        for listing in listed {
            match listing {
                Listing::Objects(o) => objects.extend(o),
                Listing::Unread(gap) => out.gaps.push(gap),
            }
        }

        let identity = &ctx.identity;
        let candidates: Vec<(VaultObject, Vec<Reached>, Option<String>)> = objects
            .into_iter()
            .filter(|object| !self.published_credential_of(object, rotated_apps))
            .filter_map(|object| {
                let access: Vec<Reached> = reached_of(&object.vault)
                    .iter()
                    .filter(|r| r.access.exposes(object.object_type, &object.summary.name))
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
        let found: Vec<(Finding, Option<Gap>)> = stream::iter(candidates)
            .map(|(object, access, owner)| async move {
                let mut f = vault_object_finding(
                    &object,
                    &access,
                    owner.as_deref(),
                    &self.config.owner_tag,
                );
                let uri = object.vault.properties.vault_uri.as_deref().unwrap_or("");
                let name = &object.summary.name;
                let state = self
                    .object_state(uri, object.object_type, name, ctx.cutoff)
                    .await;
                let gap = match state {
                    Ok(state) => {
                        f.state = state;
                        // The shape of an open secret's value (never the value), for the
                        // plan's rotation strategy. Unreadable: the strategy is decided when
                        // the value is read to rotate it (a structured value is refused then).
                        if state.is_open() && object.object_type == ObjectType::Secrets {
                            if let Ok(Some(shape)) = self.data.secret_shape(uri, name).await {
                                shape.record(&mut f.attributes);
                            }
                        }
                        None
                    }
                    Err(e) => {
                        let unread = Unread::of(
                            object.object_type.finding_kind(),
                            f.resource.clone(),
                            format!("the versions of {}", f.display),
                            e,
                        )?;
                        f.state = State::Unknown;
                        Some(gap_of(&unread, f.paths.clone()))
                    }
                };
                Ok::<_, ProviderError>((f, gap))
            })
            .buffer_unordered(VAULT_LISTING_CONCURRENCY)
            .try_collect()
            .await?;
        for (f, gap) in found {
            out.findings.push(f);
            out.gaps.extend(gap);
        }
        Ok(())
    }
}

/// One gap per role assignment whose condition Closeout cannot parse and that reaches a vault:
/// the access counts as allowing (its objects are found and acted on), but what the condition
/// allows is unknown, so closure is not claimed unless the site accepts the gap.
/// `reached` is keyed by lower-case vault id.
fn unparsed_conditions(vaults: &[Vault], reached: &BTreeMap<String, Vec<Reached>>) -> Vec<Gap> {
    let mut gaps: BTreeMap<String, Gap> = BTreeMap::new();
    for vault in vaults {
        let Some(reached) = reached.get(&vault.id.to_ascii_lowercase()) else {
            continue;
        };
        for r in reached {
            let (
                Some(error),
                Via::Assignment {
                    assignment_id,
                    role,
                    scope,
                },
            ) = (&r.access.condition_error, &r.access.via)
            else {
                continue;
            };
            gaps.entry(assignment_id.to_ascii_lowercase())
                .or_insert_with(|| Gap {
                    provider: PROVIDER.into(),
                    kind: GAP_ROLE_ASSIGNMENT_CONDITION.into(),
                    resource: assignment_id.clone(),
                    reason: format!(
                        "role assignment {} (role {role} at {scope}) has a condition Closeout cannot parse ({error}): it counts as allowing, but what it allows is unknown, so not closed",
                        crate::rbac::last_segment(assignment_id)
                    ),
                    paths: Vec::new(),
                })
                .paths
                .extend(vault_paths(vault, std::slice::from_ref(r)));
        }
    }
    gaps.into_values().collect()
}

impl AzureProvider {
    /// Whether `object` is the published credential of one of `apps` (display name, appId,
    /// object id): a
    /// secret of the credential vault named as `credential_secret_name` names that
    /// application's (or its `-certificate` variant), or tagged `application` = its appId as
    /// the credential rotation tags what it publishes.
    fn published_credential_of(&self, object: &VaultObject, apps: &[(&str, &str, &str)]) -> bool {
        let Some(credential_vault) = self.config.credential_vault.as_deref() else {
            return false;
        };
        let same_vault = object
            .vault
            .properties
            .vault_uri
            .as_deref()
            .is_some_and(|uri| {
                uri.trim_end_matches('/')
                    .eq_ignore_ascii_case(credential_vault.trim_end_matches('/'))
            });
        if !same_vault || object.object_type != ObjectType::Secrets {
            return false;
        }
        let name = &object.summary.name;
        let tagged = object.summary.tags.get("application");
        apps.iter().any(|(app_name, app_id, object_id)| {
            let published = credential_secret_name(
                &self.config.credential_secret_name,
                app_name,
                app_id,
                object_id,
            );
            name.eq_ignore_ascii_case(&published)
                || name.eq_ignore_ascii_case(&format!("{published}-certificate"))
                || tagged.is_some_and(|t| t.eq_ignore_ascii_case(app_id))
        })
    }
}
