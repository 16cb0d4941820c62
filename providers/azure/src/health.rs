//! The health check: ARM and Graph answer with the configured application's credentials, and
//! which needed permissions the application lacks:
//!
//! - ARM operations and Key Vault data actions, from what ARM says the caller may do in each
//!   subscription (`GET /subscriptions/{id}/providers/Microsoft.Authorization/permissions`,
//!   the caller's effective `actions`/`notActions`/`dataActions`/`notDataActions`);
//! - Microsoft Graph application permissions (`graph:` names), from the application's
//!   app-role assignments to the Microsoft Graph service principal
//!   (`servicePrincipals(appId=...)/appRoleAssignments`), named through Graph's own `appRoles`.
//!
//! A permission granted only below a subscription (on one resource group or vault) is reported
//! missing at the subscription: Closeout acts wherever the person's access is.

use crate::client::AzureProvider;
use crate::http::{Api, AzureHttp, CallError};
use crate::rbac::{operation_matches, Permission};
use closeout_contract::{Health, ProviderError};
use serde::Deserialize;
use std::collections::BTreeSet;

/// Microsoft Graph's application id, the same in every tenant.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// The api-version of the ARM permissions API.
const PERMISSIONS_API: &str = "2022-04-01";

/// Whether `operation` is a data action (the Key Vault data plane) rather than a control-plane
/// action: ARM grants them in separate lists.
pub fn is_data_action(operation: &str) -> bool {
    let op = operation.to_ascii_lowercase();
    ["/vaults/secrets/", "/vaults/keys/", "/vaults/certificates/"]
        .iter()
        .any(|p| op.contains(p))
}

/// Whether the caller's permission blocks allow `operation`: some block grants it and does not
/// exclude it (blocks add up, as in a role definition).
pub fn blocks_allow(blocks: &[Permission], operation: &str) -> bool {
    let data = is_data_action(operation);
    blocks.iter().any(|b| {
        let (allow, deny) = if data {
            (&b.data_actions, &b.not_data_actions)
        } else {
            (&b.actions, &b.not_actions)
        };
        allow.iter().any(|p| operation_matches(p, operation))
            && !deny.iter().any(|p| operation_matches(p, operation))
    })
}

/// The Graph application permissions that include `name` (itself, and the broader ones Graph
/// documents as sufficient for the same calls).
pub fn graph_permissions_covering(name: &str) -> Vec<String> {
    let mut out = vec![name.to_string()];
    if let Some(resource) = name.strip_suffix(".Read.All") {
        out.push(format!("{resource}.ReadWrite.All"));
    }
    if let Some(resource) = name.strip_suffix(".Read.Directory") {
        out.push(format!("{resource}.ReadWrite.Directory"));
    }
    let directory_read = [
        "User.Read.All",
        "GroupMember.Read.All",
        "Application.Read.All",
    ];
    if directory_read.contains(&name) {
        out.push("Directory.Read.All".into());
        out.push("Directory.ReadWrite.All".into());
    }
    match name {
        "User.ReadWrite.All" | "GroupMember.ReadWrite.All" => {
            out.push("Directory.ReadWrite.All".into())
        }
        "User.RevokeSessions.All" => {
            out.push("User.ReadWrite.All".into());
            out.push("Directory.ReadWrite.All".into());
        }
        "GroupMember.Read.All" => out.push("Group.Read.All".into()),
        // Directory roles and PIM schedules; delegated grants: Directory.Read.All reads them.
        "RoleManagement.Read.Directory" | "DelegatedPermissionGrant.Read.All" => {
            out.push("Directory.Read.All".into());
            out.push("Directory.ReadWrite.All".into());
        }
        _ => {}
    }
    if name == "GroupMember.ReadWrite.All" || name == "GroupMember.Read.All" {
        out.push("Group.ReadWrite.All".into());
    }
    out
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppRoleAssignment {
    app_role_id: String,
    resource_id: String,
}

#[derive(Debug, Deserialize)]
struct ServicePrincipal {
    id: String,
    #[serde(default, rename = "appRoles")]
    app_roles: Vec<AppRole>,
}

#[derive(Debug, Deserialize)]
struct AppRole {
    id: String,
    #[serde(default)]
    value: String,
}

/// The Graph application permissions granted to application `client_id`, by name.
async fn graph_permissions(
    http: &AzureHttp,
    client_id: &str,
) -> Result<BTreeSet<String>, CallError> {
    let graph: Option<ServicePrincipal> = http
        .call(
            Api::Graph,
            "GET",
            &format!("/v1.0/servicePrincipals(appId='{GRAPH_APP_ID}')?$select=id,appRoles"),
            None,
        )
        .await?;
    let Some(graph) = graph else {
        return Ok(BTreeSet::new());
    };
    let assigned: Vec<AppRoleAssignment> = http
        .list(
            Api::Graph,
            &format!("/v1.0/servicePrincipals(appId='{client_id}')/appRoleAssignments"),
        )
        .await?;
    Ok(assigned
        .iter()
        .filter(|a| a.resource_id.eq_ignore_ascii_case(&graph.id))
        .filter_map(|a| {
            graph
                .app_roles
                .iter()
                .find(|r| r.id.eq_ignore_ascii_case(&a.app_role_id))
                .map(|r| r.value.clone())
        })
        .collect())
}

impl AzureProvider {
    /// Reach ARM and Graph, then check `needs` against what each says the application holds.
    pub(crate) async fn health_impl(
        &self,
        needs: &[&'static str],
    ) -> Result<Health, ProviderError> {
        let subscriptions = crate::arm::subscriptions(&self.http).await?;
        let client_id = &self.config.client_id;
        let mut health = Health {
            principal: format!("application {client_id}"),
            ..Health::default()
        };
        let (graph_needs, arm_needs): (Vec<&str>, Vec<&str>) =
            needs.iter().partition(|n| n.starts_with("graph:"));
        if !graph_needs.is_empty() {
            let held = graph_permissions(&self.http, client_id).await?;
            for need in graph_needs {
                let name = need.trim_start_matches("graph:");
                if !graph_permissions_covering(name)
                    .iter()
                    .any(|p| held.contains(p))
                {
                    health.missing.push(need.to_string());
                }
            }
        }
        if !arm_needs.is_empty() && subscriptions.is_empty() {
            health.unchecked.extend(arm_needs.iter().map(|n| {
                (
                    n.to_string(),
                    "the application sees no subscription to check it in".to_string(),
                )
            }));
        }
        for sub in &subscriptions {
            let blocks: Vec<Permission> = self
                .http
                .list(
                    Api::Arm,
                    &format!(
                        "/subscriptions/{}/providers/Microsoft.Authorization/permissions?api-version={PERMISSIONS_API}",
                        sub.subscription_id
                    ),
                )
                .await?;
            for need in &arm_needs {
                if !blocks_allow(&blocks, need) {
                    health
                        .missing
                        .push(format!("{need} at /subscriptions/{}", sub.subscription_id));
                }
            }
        }
        Ok(health)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(actions: &[&str], not: &[&str], data: &[&str]) -> Permission {
        Permission {
            actions: actions.iter().map(|s| s.to_string()).collect(),
            not_actions: not.iter().map(|s| s.to_string()).collect(),
            data_actions: data.iter().map(|s| s.to_string()).collect(),
            not_data_actions: Vec::new(),
        }
    }

    #[test]
    fn actions_and_data_actions_are_checked_in_their_own_lists() {
        let reader = [block(&["*/read"], &[], &[])];
        assert!(blocks_allow(&reader, "Microsoft.KeyVault/vaults/read"));
        assert!(!blocks_allow(
            &reader,
            "Microsoft.Authorization/roleAssignments/delete"
        ));
        assert!(!blocks_allow(
            &reader,
            "Microsoft.KeyVault/vaults/keys/read"
        ));
        let owner_minus = [block(
            &["*"],
            &["Microsoft.Authorization/*/Delete"],
            &["Microsoft.KeyVault/vaults/*"],
        )];
        assert!(!blocks_allow(
            &owner_minus,
            "Microsoft.Authorization/roleAssignments/delete"
        ));
        assert!(blocks_allow(
            &owner_minus,
            "Microsoft.KeyVault/vaults/secrets/setSecret/action"
        ));
    }

    #[test]
    fn broader_graph_permissions_cover_narrower_ones() {
        assert!(graph_permissions_covering("User.Read.All").contains(&"Directory.Read.All".into()));
        assert!(graph_permissions_covering("User.Read.All").contains(&"User.ReadWrite.All".into()));
        assert!(graph_permissions_covering("User.RevokeSessions.All")
            .contains(&"User.ReadWrite.All".into()));
        assert!(!graph_permissions_covering("Application.ReadWrite.All")
            .contains(&"Directory.ReadWrite.All".into()));
    }
}
