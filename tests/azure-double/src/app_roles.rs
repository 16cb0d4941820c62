//! Application permissions in Microsoft Graph: the app roles a resource service principal
//! offers (Microsoft Graph's own, from `data/microsoft-graph-app-roles.json`, seeded at start),
//! and app role assignments — a client service principal granted one of them:
//!
//! - `GET/POST /v1.0/servicePrincipals/{client}/appRoleAssignments`,
//!   `DELETE .../appRoleAssignments/{assignment id}`;
//! - `GET/POST /v1.0/servicePrincipals/{resource}/appRoleAssignedTo`,
//!   `DELETE .../appRoleAssignedTo/{assignment id}`;
//! - `GET/POST /v1.0/users/{user}/appRoleAssignments`, `DELETE .../appRoleAssignments/{id}`.
//!
//! POST takes `{"principalId","resourceId","appRoleId"}` and checks, as Graph does: the
//! principal is the service principal or user in the path (or the resource, for
//! `appRoleAssignedTo`; its principal may be a user, group or service principal),
//! the resource is a service principal offering that app role, and the assignment is new.

use axum::http::StatusCode;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::graph::GraphState;
use crate::http::{json_response, no_content, now_graph, page, ApiError, ApiResult, Flavor, Req};
use crate::state::App;

/// Microsoft Graph's application id, the same in every tenant.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// The tenant that owns Microsoft's first-party applications.
pub const MICROSOFT_TENANT_ID: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";

/// An app role a service principal offers.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRole {
    pub id: String,
    pub value: String,
    pub display_name: String,
    pub description: String,
}

impl AppRole {
    pub fn to_json(&self) -> Value {
        json!({
            "allowedMemberTypes": ["Application"],
            "description": self.description,
            "displayName": self.display_name,
            "id": self.id,
            "isEnabled": true,
            "origin": "Application",
            "value": self.value,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppRolesFile {
    app_roles: Vec<AppRole>,
}

const GRAPH_APP_ROLES_JSON: &str = include_str!("../data/microsoft-graph-app-roles.json");

/// Microsoft Graph's application permissions.
pub fn graph_app_roles() -> Vec<AppRole> {
    // The file is part of the crate and checked by a unit test; a parse failure is a bug in
    // the crate, not bad input.
    let file: AppRolesFile = serde_json::from_str(GRAPH_APP_ROLES_JSON)
        .expect("data/microsoft-graph-app-roles.json is valid (see the unit test)");
    file.app_roles
}

/// One service principal granted one app role of a resource service principal.
#[derive(Debug, Clone)]
pub struct AppRoleAssignment {
    pub id: String,
    pub principal_id: String,
    pub resource_id: String,
    pub app_role_id: String,
    pub created: String,
}

impl AppRoleAssignment {
    fn to_json(&self, graph: &GraphState) -> Value {
        let name = |id: &str| graph.display_name(id);
        json!({
            "id": self.id,
            "deletedDateTime": null,
            "appRoleId": self.app_role_id,
            "createdDateTime": self.created,
            "principalDisplayName": name(&self.principal_id),
            "principalId": self.principal_id,
            "principalType": graph.principal_kind(&self.principal_id),
            "resourceDisplayName": name(&self.resource_id),
            "resourceId": self.resource_id,
        })
    }
}

/// Which end of the assignments the path's service principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `.../appRoleAssignments`: the client granted the roles.
    Principal,
    /// `.../appRoleAssignedTo`: the resource whose roles are granted.
    Resource,
    /// `users/{id}/appRoleAssignments`: the user granted the roles.
    User,
}

impl Side {
    fn matches(self, a: &AppRoleAssignment, id: &str) -> bool {
        match self {
            Side::Principal | Side::User => a.principal_id == id,
            Side::Resource => a.resource_id == id,
        }
    }
}

/// Graph's ids for app role assignments are 43 base64url characters.
fn new_assignment_id() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The object in the path: a service principal, or a user (its object id, already resolved).
fn existing_owner(graph: &GraphState, key: &str, side: Side) -> Result<String, ApiError> {
    match side {
        Side::User => (graph.principal_kind(key) == Some("User"))
            .then(|| key.to_string())
            .ok_or_else(|| ApiError::graph_not_found(key)),
        _ => existing_sp(graph, key),
    }
}

fn existing_sp(graph: &GraphState, key: &str) -> Result<String, ApiError> {
    graph
        .service_principal(key)
        .map(|s| s.id.clone())
        .ok_or_else(|| ApiError::graph_not_found(key))
}

pub fn list(app: &App, req: &Req, key: &str, side: Side) -> ApiResult {
    let state = app.lock();
    let graph = &state.graph;
    let id = existing_owner(graph, key, side)?;
    let items: Vec<Value> = graph
        .app_role_assignments
        .iter()
        .filter(|a| side.matches(a, &id))
        .map(|a| a.to_json(graph))
        .collect();
    drop(state);
    let body = page(app, req, items, Flavor::Graph, Some("appRoleAssignments"))?;
    Ok(json_response(StatusCode::OK, body))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateAssignment {
    principal_id: Option<String>,
    resource_id: Option<String>,
    app_role_id: Option<String>,
}

pub fn create(app: &App, req: &Req, key: &str, side: Side) -> ApiResult {
    let body: CreateAssignment = req.json(Flavor::Graph)?;
    let required = |v: Option<String>, name: &str| {
        v.filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::graph_bad_request(format!(
                "Invalid value specified for property '{name}' of resource 'AppRoleAssignment'."
            ))
        })
    };
    let principal_id = required(body.principal_id, "principalId")?;
    let resource_id = required(body.resource_id, "resourceId")?;
    let app_role_id = required(body.app_role_id, "appRoleId")?;
    let mut state = app.lock();
    let graph = &mut state.graph;
    let id = existing_owner(graph, key, side)?;
    let in_path = match side {
        Side::Principal | Side::User => &principal_id,
        Side::Resource => &resource_id,
    };
    if !in_path.eq_ignore_ascii_case(&id) {
        return Err(ApiError::graph_bad_request(format!(
            "The {} in the request body must be the {} in the URL ('{id}').",
            match side {
                Side::Principal | Side::User => "principalId",
                Side::Resource => "resourceId",
            },
            match side {
                Side::User => "user",
                _ => "service principal",
            }
        )));
    }
    // Users, groups and service principals can be granted app roles.
    let principal = graph
        .principal_kind(&principal_id)
        .map(|_| principal_id.clone())
        .ok_or_else(|| ApiError::graph_not_found(&principal_id))?;
    let resource = graph
        .service_principal(&resource_id)
        .ok_or_else(|| ApiError::graph_not_found(&resource_id))?;
    let offered = app_role_id.eq_ignore_ascii_case("00000000-0000-0000-0000-000000000000")
        || resource
            .app_roles
            .iter()
            .any(|r| r.id.eq_ignore_ascii_case(&app_role_id));
    if !offered {
        return Err(ApiError::graph_bad_request(format!(
            "Permission being assigned was not found on application '{}'.",
            resource.app_id
        )));
    }
    let resource = resource.id.clone();
    if graph.app_role_assignments.iter().any(|a| {
        a.principal_id == principal
            && a.resource_id == resource
            && a.app_role_id.eq_ignore_ascii_case(&app_role_id)
    }) {
        return Err(ApiError::graph_bad_request(
            "Permission being assigned already exists on the object",
        ));
    }
    let assignment = AppRoleAssignment {
        id: new_assignment_id(),
        principal_id: principal,
        resource_id: resource,
        app_role_id: app_role_id.to_ascii_lowercase(),
        created: now_graph(),
    };
    let mut value = assignment.to_json(graph);
    graph.app_role_assignments.push(assignment);
    if let Value::Object(map) = &mut value {
        map.insert(
            "@odata.context".into(),
            Value::String(format!(
                "{}/v1.0/$metadata#{}('{id}')/{}/$entity",
                app.base_url,
                match side {
                    Side::User => "users",
                    _ => "servicePrincipals",
                },
                match side {
                    Side::Principal | Side::User => "appRoleAssignments",
                    Side::Resource => "appRoleAssignedTo",
                }
            )),
        );
    }
    Ok(json_response(StatusCode::CREATED, value))
}

pub fn delete(app: &App, key: &str, side: Side, assignment_id: &str) -> ApiResult {
    let mut state = app.lock();
    let graph = &mut state.graph;
    let id = existing_owner(graph, key, side)?;
    let before = graph.app_role_assignments.len();
    graph
        .app_role_assignments
        .retain(|a| !(a.id == assignment_id && side.matches(a, &id)));
    if graph.app_role_assignments.len() == before {
        return Err(ApiError::graph_not_found(assignment_id));
    }
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_app_roles_parse_with_unique_ids_and_values() {
        let roles = graph_app_roles();
        assert!(roles
            .iter()
            .any(|r| r.value == "User.Read.All" && r.id == "df021288-bdef-4463-88db-98f22de89214"));
        let mut ids: Vec<_> = roles.iter().map(|r| r.id.as_str()).collect();
        let mut values: Vec<_> = roles.iter().map(|r| r.value.as_str()).collect();
        ids.sort();
        ids.dedup();
        values.sort();
        values.dedup();
        assert_eq!(ids.len(), roles.len());
        assert_eq!(values.len(), roles.len());
    }
}
