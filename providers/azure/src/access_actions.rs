//! Removing what [`crate::entra_access`] reads: a directory role (DELETE, or an `adminRemove`
//! schedule request for an active PIM assignment), a PIM eligibility (`adminRemove`), an
//! app-role assignment, a delegated permission grant and an authentication method. Each treats
//! "it is not there any more" as already done, so a re-run repeats nothing.

use crate::capabilities::PROVIDER;
use crate::client::AzureProvider;
use crate::directory::object_path;
use crate::entra_access::roles_path;
use crate::error::attr;
use crate::http::{Api, CallError};
use closeout_contract::{ActionOutcome, Finding, ProviderError, State};
use serde_json::json;

/// Graph's answer to an `adminRemove` of a grant that does not exist.
fn does_not_exist(e: &CallError) -> bool {
    e.status == Some(400)
        && (e.code == "RoleAssignmentDoesNotExist" || e.message.contains("does not exist"))
}

fn done(f: &Finding, how: &str) -> ActionOutcome {
    ActionOutcome::done(State::Deleted, format!("removed {} ({how})", f.display))
}

fn already(f: &Finding) -> ActionOutcome {
    ActionOutcome::already(State::Deleted, format!("{} was already removed", f.display))
}

impl AzureProvider {
    /// DELETE `path`; a 404 is already done.
    async fn delete_graph(
        &self,
        f: &Finding,
        path: &str,
        how: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        match self
            .http
            .call::<serde_json::Value>(Api::Graph, "DELETE", path, None)
            .await
        {
            Ok(_) => Ok(done(f, how)),
            Err(e) if e.is_not_found() => Ok(already(f)),
            Err(e) => Err(e.into()),
        }
    }

    /// An `adminRemove` request on `collection` (`roleAssignmentScheduleRequests`,
    /// `roleEligibilityScheduleRequests`) for the finding's principal, role and scope.
    async fn admin_remove(
        &self,
        f: &Finding,
        collection: &str,
    ) -> Result<ActionOutcome, ProviderError> {
        let body = json!({
            "action": "adminRemove",
            "principalId": attr(f, "principal_id")?,
            "roleDefinitionId": attr(f, "role_definition_id")?,
            "directoryScopeId": attr(f, "directory_scope_id")?,
            "justification": "Closeout: access of a departing or moving person removed",
        });
        match self
            .http
            .call::<serde_json::Value>(Api::Graph, "POST", &roles_path(collection), Some(&body))
            .await
        {
            Ok(_) => Ok(done(f, &format!("{collection} adminRemove"))),
            Err(e) if does_not_exist(&e) || e.is_not_found() => Ok(already(f)),
            Err(e) => Err(e.into()),
        }
    }

    /// A directory role: an active PIM assignment ends with an `adminRemove` request, a direct
    /// assignment is deleted.
    pub(crate) async fn remove_directory_role(
        &self,
        f: &Finding,
    ) -> Result<ActionOutcome, ProviderError> {
        if f.attr("removal") == Some("schedule-request") {
            return self.admin_remove(f, "roleAssignmentScheduleRequests").await;
        }
        let path = format!(
            "{}/{}",
            roles_path("roleAssignments"),
            urlencoding::encode(&f.resource)
        );
        self.delete_graph(f, &path, "roleAssignments DELETE").await
    }

    /// A PIM eligibility ends with an `adminRemove` request.
    pub(crate) async fn remove_eligibility(
        &self,
        f: &Finding,
    ) -> Result<ActionOutcome, ProviderError> {
        self.admin_remove(f, "roleEligibilityScheduleRequests")
            .await
    }

    pub(crate) async fn remove_app_role_assignment(
        &self,
        f: &Finding,
    ) -> Result<ActionOutcome, ProviderError> {
        let path = format!(
            "{}/appRoleAssignments/{}",
            object_path("users", attr(f, "user_id")?),
            urlencoding::encode(&f.resource)
        );
        self.delete_graph(f, &path, "appRoleAssignments DELETE")
            .await
    }

    pub(crate) async fn remove_permission_grant(
        &self,
        f: &Finding,
    ) -> Result<ActionOutcome, ProviderError> {
        let path = format!(
            "/v1.0/oauth2PermissionGrants/{}",
            urlencoding::encode(&f.resource)
        );
        self.delete_graph(f, &path, "oauth2PermissionGrants DELETE")
            .await
    }

    pub(crate) async fn remove_auth_method(
        &self,
        f: &Finding,
    ) -> Result<ActionOutcome, ProviderError> {
        let collection = attr(f, "collection")?;
        if !collection.ends_with("Methods") || collection == "passwordMethods" {
            return Err(ProviderError::Unsupported {
                provider: PROVIDER,
                message: format!("removing authentication methods of collection {collection}"),
            });
        }
        let path = format!(
            "{}/authentication/{collection}/{}",
            object_path("users", attr(f, "user_id")?),
            urlencoding::encode(attr(f, "method_id")?)
        );
        self.delete_graph(f, &path, &format!("{collection} DELETE"))
            .await
    }
}
