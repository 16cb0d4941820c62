//! Entitlements (DESIGN.md §1): which live findings are grants a policy can name, the finding a
//! grant will be once made (with the id `resolve` gives it), the `grant` verb, and the Entra
//! users no identity claims.
//!
//! Targets: a `group-membership` is the group's display name; a `role-assignment` is
//! `ROLE@SCOPE` (the role definition's `roleName`, the scope lower-cased without a trailing
//! slash: empty for the tenant root, as the policy file writes it); an `access-policy` is the
//! vault's name (removable only).

use crate::arm::AUTHORIZATION_API;
use crate::capabilities::{canonical_scope, kinds, PROVIDER};
use crate::client::AzureProvider;
use crate::directory::{self, object_path, odata_ref};
use crate::entra::{User, UserMatch};
use crate::error::{attr, config_error, permanent};
use crate::findings::{assignment_finding, held_by, membership_finding};
use crate::http::{Api, CallError};
use crate::rbac::{last_segment, RoleAssignment, RoleAssignmentProperties};
use closeout_contract::{
    ActionOutcome, Entitlement, Finding, Identity, ProviderError, ResolveContext, State,
    UnclaimedAccount,
};
use serde_json::json;
use uuid::Uuid;

/// The namespace of role-assignment names Closeout makes (UUID v5). Fixed for good: changing it
/// would change the id of every grant planned but not yet made.
const ASSIGNMENT_NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_0a2e_5b7d_4e39_9a41_c105_e0a7_2a55);

/// The target of a role assignment: `ROLE@SCOPE`.
pub fn assignment_target(role: &str, scope: &str) -> String {
    format!("{role}@{}", canonical_scope(scope))
}

/// `ROLE@SCOPE` split at the `@` before the scope's leading `/`, or a final `@` for the root
/// (a role name may hold an `@`; a scope always starts with `/`).
fn parse_assignment_target(target: &str) -> Option<(&str, String)> {
    let (role, scope) = match target.strip_suffix('@') {
        Some(role) => (role, String::new()),
        None => {
            let (role, rest) = target.split_once("@/")?;
            (role, canonical_scope(&format!("/{rest}")))
        }
    };
    let role = role.trim();
    (!role.is_empty()).then_some((role, scope))
}

/// The name of the assignment Closeout makes for `principal_id` with the role
/// `role_definition_id` at `scope`: deterministic (UUID v5), so the id is known before the
/// assignment exists and a repeated grant PUTs the same one.
pub fn assignment_name(principal_id: &str, role_definition_id: &str, scope: &str) -> Uuid {
    let name = format!(
        "{}|{}|{}",
        principal_id.to_ascii_lowercase(),
        last_segment(role_definition_id).to_ascii_lowercase(),
        canonical_scope(scope)
    );
    Uuid::new_v5(&ASSIGNMENT_NAMESPACE, name.as_bytes())
}

/// The entitlement a live finding is; pure (kind and attributes only).
pub(crate) fn entitlement_of(f: &Finding) -> Option<Entitlement> {
    if f.provider != PROVIDER {
        return None;
    }
    let target = match f.kind.as_str() {
        kinds::GROUP_MEMBERSHIP => f.attr("group")?.to_string(),
        kinds::ROLE_ASSIGNMENT => assignment_target(f.attr("role")?, f.attr("scope")?),
        kinds::ACCESS_POLICY => f.attr("vault")?.to_string(),
        _ => return None,
    };
    Some(Entitlement::new(PROVIDER, f.kind.clone(), target))
}

/// A lookup the target names that Azure refuses (an unknown scope): the plan's mistake, not a
/// transient failure.
fn lookup_error(what: &str, e: CallError) -> ProviderError {
    match e.status {
        Some(400 | 404) => config_error(format!("{what}: {e}")),
        _ => e.into(),
    }
}

impl AzureProvider {
    pub(crate) async fn grant_finding_impl(
        &self,
        ctx: &ResolveContext,
        ent: &Entitlement,
    ) -> Result<Finding, ProviderError> {
        let unsupported = |why: &str| ProviderError::Unsupported {
            provider: PROVIDER,
            message: format!("cannot grant {ent}: {why}"),
        };
        if ent.provider != PROVIDER {
            return Err(unsupported("not an Azure entitlement"));
        }
        if ent.kind == kinds::ACCESS_POLICY {
            return Err(unsupported(
                "access policies are removable only; grant a group or a role instead",
            ));
        }
        if ent.kind != kinds::GROUP_MEMBERSHIP && ent.kind != kinds::ROLE_ASSIGNMENT {
            return Err(unsupported("only group-membership and role-assignment"));
        }
        let identity = &ctx.identity;
        let Some((user, _)) =
            directory::find_user(&self.http, identity, &self.config.user_match).await?
        else {
            return Err(config_error(format!(
                "cannot grant {ent}: no Entra user matches {} ({})",
                identity.id, identity.email
            )));
        };
        let mut f = if ent.kind == kinds::GROUP_MEMBERSHIP {
            self.membership_to_grant(&ent.target).await?
        } else {
            self.assignment_to_grant(&user, &ent.target).await?
        };
        held_by(&mut f, &user.id);
        f.state = State::Deleted;
        Ok(f)
    }

    /// The `group-membership` finding of the one group displayed as `name`.
    async fn membership_to_grant(&self, name: &str) -> Result<Finding, ProviderError> {
        let mut groups = directory::groups_named(&self.http, name).await?;
        let group = match groups.len() {
            0 => return Err(config_error(format!("no Entra group named {name}"))),
            1 => groups.remove(0),
            n => {
                return Err(config_error(format!(
                    "{n} groups are named {name}: name it by a unique display name"
                )))
            }
        };
        let display = group.display_name.unwrap_or_else(|| group.id.clone());
        membership_finding(&directory::direct_group_principal(&group.id, &display))
            .ok_or_else(|| permanent(format!("group {name} is not a direct membership")))
    }

    /// The `role-assignment` finding of `ROLE@SCOPE` for `user`, named by [`assignment_name`].
    async fn assignment_to_grant(
        &self,
        user: &User,
        target: &str,
    ) -> Result<Finding, ProviderError> {
        let (role_name, scope) = parse_assignment_target(target)
            .ok_or_else(|| config_error(format!("role assignment {target} is not ROLE@SCOPE")))?;
        let mut defs = crate::arm::role_definitions_named(&self.http, &scope, role_name)
            .await
            .map_err(|e| lookup_error(&format!("role {role_name} at {scope}"), e))?;
        let def = match defs.len() {
            0 => {
                return Err(config_error(format!(
                    "no Azure role named {role_name} is assignable at {scope}"
                )))
            }
            1 => defs.remove(0),
            n => {
                return Err(config_error(format!(
                    "{n} Azure roles are named {role_name} at {scope}"
                )))
            }
        };
        let name = assignment_name(&user.id, &def.id, &scope).to_string();
        let assignment = RoleAssignment {
            id: format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
            name,
            properties: RoleAssignmentProperties {
                role_definition_id: def.id.clone(),
                principal_id: user.id.clone(),
                principal_type: "User".into(),
                // ARM's `properties.scope` of a root assignment is `/`.
                scope: if scope.is_empty() {
                    "/".into()
                } else {
                    scope.clone()
                },
                condition: None,
                condition_version: None,
            },
        };
        Ok(assignment_finding(
            &assignment,
            def.role_name(),
            &directory::user_principal(user),
            &user.id,
        ))
    }

    /// `grant` on a `group-membership`: add the user as a member unless they are one.
    pub(crate) async fn grant_membership(
        &self,
        f: &Finding,
    ) -> Result<ActionOutcome, ProviderError> {
        let user = attr(f, "user_id")?;
        if self.in_group_id(f, &f.resource, false).await? == State::Active {
            return Ok(ActionOutcome::already(
                State::Active,
                format!("{} is already held", f.display),
            ));
        }
        let path = format!("{}/members/$ref", object_path("groups", &f.resource));
        let body = odata_ref(&self.config.graph_endpoint, user);
        match self
            .http
            .call::<serde_json::Value>(Api::Graph, "POST", &path, Some(&body))
            .await
        {
            Ok(_) => Ok(ActionOutcome::done(
                State::Active,
                format!("granted {}", f.display),
            )),
            // Added between our read and this call (a concurrent run).
            Err(CallError {
                status: Some(400),
                ref message,
                ..
            }) if message.contains("already exist") => Ok(ActionOutcome::already(
                State::Active,
                format!("{} is already held", f.display),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// `grant` on a `role-assignment`: PUT the assignment under its planned name unless it
    /// exists; ARM's `RoleAssignmentExists` (the same role, principal and scope under another
    /// name) also counts as held.
    pub(crate) async fn grant_assignment(
        &self,
        f: &Finding,
    ) -> Result<ActionOutcome, ProviderError> {
        if self.assignment_state(f).await? == State::Active {
            return Ok(ActionOutcome::already(
                State::Active,
                format!("{} already exists", f.display),
            ));
        }
        let body = json!({ "properties": {
            "roleDefinitionId": attr(f, "role_definition_id")?,
            "principalId": attr(f, "principal_id")?,
            "principalType": "User",
        }});
        let path = format!("{}?api-version={AUTHORIZATION_API}", f.resource);
        match self
            .http
            .call::<serde_json::Value>(Api::Arm, "PUT", &path, Some(&body))
            .await
        {
            Ok(_) => Ok(ActionOutcome::done(
                State::Active,
                format!("granted {}", f.display),
            )),
            Err(CallError {
                status: Some(409),
                ref code,
                ..
            }) if code == "RoleAssignmentExists" => Ok(ActionOutcome::already(
                State::Active,
                format!(
                    "the user already holds role {} at {} under another assignment",
                    f.attr("role").unwrap_or("?"),
                    f.attr("scope").unwrap_or("?")
                ),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Every Entra user none of `identities` correlates with under `user_match`: one paged
    /// listing, matched locally.
    pub(crate) async fn unclaimed_impl(
        &self,
        identities: &[Identity],
    ) -> Result<Vec<UnclaimedAccount>, ProviderError> {
        let rules = &self.config.user_match;
        let users = directory::all_users(&self.http).await?;
        let mut out: Vec<UnclaimedAccount> = users
            .into_iter()
            .filter(|u| {
                !identities
                    .iter()
                    .any(|i| rules.iter().any(|r| r.matches(i, u)))
            })
            .map(|u| {
                let upn = u.user_principal_name.clone().unwrap_or(u.id.clone());
                UnclaimedAccount {
                    provider: PROVIDER.into(),
                    reason: unclaimed_reason(rules, &u),
                    display: format!("Entra user {upn}"),
                    enabled: u.account_enabled != Some(false),
                    resource: u.id,
                }
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// What was tried: each rule with the user's value, e.g. `no identity matches mail =
/// bob@example.com or employeeId = E2002`.
fn unclaimed_reason(rules: &[UserMatch], user: &User) -> String {
    let tried: Vec<String> = rules
        .iter()
        .filter_map(|r| {
            let value = r.user_value(user).filter(|v| !v.is_empty())?;
            Some(format!("{} = {value}", r.property()))
        })
        .collect();
    if tried.is_empty() {
        "no identity matches: the user has none of the properties user_match compares".into()
    } else {
        format!("no identity matches {}", tried.join(" or "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_the_scope_one_way() {
        assert_eq!(
            assignment_target(
                "Key Vault Secrets User",
                "/subscriptions/S1/resourceGroups/RG/"
            ),
            "Key Vault Secrets User@/subscriptions/s1/resourcegroups/rg"
        );
        assert_eq!(assignment_target("Owner", "/"), "Owner@");
        assert_eq!(
            parse_assignment_target("a@b role@/Subscriptions/S1/"),
            Some(("a@b role", "/subscriptions/s1".to_string()))
        );
        assert_eq!(
            parse_assignment_target("Owner@/"),
            Some(("Owner", String::new()))
        );
        assert_eq!(
            parse_assignment_target("Owner@"),
            Some(("Owner", String::new()))
        );
        assert_eq!(parse_assignment_target("Owner"), None);
        assert_eq!(parse_assignment_target("@/subscriptions/s1"), None);
    }

    #[test]
    fn assignment_names_are_stable_and_ignore_case_and_id_form() {
        let a = assignment_name(
            "AAAAAAAA-0000-4000-8000-000000000001",
            "/subscriptions/s1/providers/Microsoft.Authorization/roleDefinitions/4633458B-17DE-408A-B874-0445C86B69E6",
            "/subscriptions/S1/",
        );
        let b = assignment_name(
            "aaaaaaaa-0000-4000-8000-000000000001",
            "/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6",
            "/subscriptions/s1",
        );
        assert_eq!(a, b);
        assert_eq!(a.get_version_num(), 5);
        let other_scope = assignment_name(
            "aaaaaaaa-0000-4000-8000-000000000001",
            "4633458b-17de-408a-b874-0445c86b69e6",
            "/subscriptions/s2",
        );
        assert_ne!(a, other_scope);
    }
}
