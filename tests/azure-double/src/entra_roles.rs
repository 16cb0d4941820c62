//! Microsoft Entra role management under `/v1.0/roleManagement/directory` (directory roles,
//! PIM eligibility and active PIM assignments) and delegated permission grants under
//! `/v1.0/oauth2PermissionGrants`, in the shapes Microsoft Graph v1.0 documents:
//!
//! - `GET .../roleDefinitions` (`$filter` on `displayName`, `templateId`, `id`), `GET .../roleDefinitions/{id}`:
//!   the built-in roles of [`BUILTIN_ROLES`] (id = template id, as for built-in roles).
//! - `GET/POST .../roleAssignments`, `GET/DELETE .../roleAssignments/{id}`: POST
//!   `{"principalId","roleDefinitionId","directoryScopeId"}` → 201 `unifiedRoleAssignment`.
//! - `POST .../roleEligibilityScheduleRequests` and `POST .../roleAssignmentScheduleRequests`
//!   `{"action": "adminAssign"|"adminRemove", "principalId", "roleDefinitionId",
//!   "directoryScopeId", "justification", "scheduleInfo"}` → 201 with the request (`status`
//!   `Provisioned`, or `Revoked` for `adminRemove`); `GET` lists them.
//! - `GET .../roleEligibilitySchedules`, `.../roleEligibilityScheduleInstances`,
//!   `.../roleAssignmentSchedules`, `.../roleAssignmentScheduleInstances` (and `/{id}`), all with
//!   `$filter` (`principalId`, `roleDefinitionId`, `directoryScopeId` with `eq`, joined by `and`).
//!   An active PIM assignment (`roleAssignmentScheduleRequests` `adminAssign`) is also a
//!   `roleAssignment` (same id); `adminRemove` ends both.
//! - `GET/POST /v1.0/oauth2PermissionGrants` (`$filter` on `clientId`, `principalId`,
//!   `resourceId`, `consentType`), `GET/PATCH/DELETE /v1.0/oauth2PermissionGrants/{id}`, and
//!   `GET /v1.0/users/{id}/oauth2PermissionGrants`. POST `{"clientId","consentType","principalId",
//!   "resourceId","scope"}`.

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{json_response, no_content, now_graph, page, ApiError, ApiResult, Flavor, Req};
use crate::state::App;

/// Built-in Microsoft Entra roles the double knows: (template id, display name, description).
pub const BUILTIN_ROLES: &[(&str, &str, &str)] = &[
    ("62e90394-69f5-4237-9190-012177145e10", "Global Administrator", "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities."),
    ("e8611ab8-c189-46e8-94e1-60213ab1f814", "Privileged Role Administrator", "Can manage role assignments in Microsoft Entra ID, and all aspects of Privileged Identity Management."),
    ("7be44c8a-adaf-4e2a-84d6-ab2649e08a13", "Privileged Authentication Administrator", "Can access to view, set and reset authentication method information for any user (admin or non-admin)."),
    ("9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3", "Application Administrator", "Can create and manage all aspects of app registrations and enterprise apps."),
    ("158c047a-c907-4556-b7ef-446551a6b5f7", "Cloud Application Administrator", "Can create and manage all aspects of app registrations and enterprise apps except App Proxy."),
    ("fe930be7-5e62-47db-91af-98c3a49a38b1", "User Administrator", "Can manage all aspects of users and groups, including resetting passwords for limited admins."),
    ("729827e3-9c14-49f7-bb1b-9608f156bbb8", "Helpdesk Administrator", "Can reset passwords for non-administrators and Helpdesk Administrators."),
    ("c4e39bd9-1100-46d3-8c65-fb160da0071f", "Authentication Administrator", "Can access to view, set and reset authentication method information for any non-admin user."),
    ("fdd7a751-b60b-444a-984c-02652fe8fa1c", "Groups Administrator", "Members of this role can create/manage groups, create/manage groups settings like naming and expiration policies, and view groups activity and audit reports."),
    ("194ae4cb-b126-40b2-bd5b-6091b380977d", "Security Administrator", "Can read security information and reports, and manage configuration in Microsoft Entra ID and Office 365."),
    ("f2ef992c-3afb-46b9-b7cf-a126ee74c451", "Global Reader", "Can read everything that a Global Administrator can, but not update anything."),
    ("5d6b6bb7-de71-4623-b4af-96380a352509", "Security Reader", "Can read security information and reports in Microsoft Entra ID and Office 365."),
];

/// One role held or eligible: a direct assignment, an active PIM schedule or an eligibility.
#[derive(Debug, Clone)]
pub struct RoleGrant {
    pub id: String,
    pub principal_id: String,
    pub role_definition_id: String,
    pub directory_scope_id: String,
    pub created: String,
    /// The request's `scheduleInfo` (schedules only; echoed back).
    pub schedule_info: Value,
}

/// A delegated permission grant (`oAuth2PermissionGrant`).
#[derive(Debug, Clone)]
pub struct PermissionGrant {
    pub id: String,
    pub client_id: String,
    pub consent_type: String,
    pub principal_id: Option<String>,
    pub resource_id: String,
    pub scope: String,
}

/// A schedule request as it was answered.
#[derive(Debug, Clone)]
struct ScheduleRequest {
    body: Value,
}

#[derive(Default)]
pub struct EntraRolesState {
    /// Active assignments (`roleAssignments`), including those an active PIM schedule made.
    assignments: Vec<RoleGrant>,
    /// Active PIM schedules (`roleAssignmentSchedules`); each has an assignment with its id.
    active_schedules: Vec<RoleGrant>,
    /// Eligibilities (`roleEligibilitySchedules`).
    eligibilities: Vec<RoleGrant>,
    assignment_requests: Vec<ScheduleRequest>,
    eligibility_requests: Vec<ScheduleRequest>,
    grants: Vec<PermissionGrant>,
}

fn role_definition_json(id: &str, name: &str, description: &str) -> Value {
    json!({
        "id": id,
        "description": description,
        "displayName": name,
        "isBuiltIn": true,
        "isEnabled": true,
        "resourceScopes": ["/"],
        "templateId": id,
        "version": "1",
        "rolePermissions": [],
    })
}

fn role_definition(id: &str) -> Option<(&'static str, &'static str, &'static str)> {
    BUILTIN_ROLES
        .iter()
        .copied()
        .find(|(rid, _, _)| rid.eq_ignore_ascii_case(id))
}

/// `prop eq 'value'` clauses joined by `and`, for the listed properties.
fn parse_filter(filter: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let Some(filter) = filter else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for clause in filter.split(" and ") {
        let mut parts = clause.trim().splitn(3, ' ');
        let (Some(prop), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ApiError::graph_bad_request(format!(
                "Invalid filter clause '{clause}'."
            )));
        };
        if !op.eq_ignore_ascii_case("eq") {
            return Err(ApiError::graph_bad_request(format!(
                "Unsupported operator '{op}' in the double (only eq)."
            )));
        }
        let Some(allowed_prop) = allowed.iter().find(|a| a.eq_ignore_ascii_case(prop)) else {
            return Err(ApiError::graph_bad_request(format!(
                "Unsupported or invalid query filter clause specified for property '{prop}'."
            )));
        };
        let value = value
            .trim()
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .ok_or_else(|| ApiError::graph_bad_request(format!("Invalid filter value '{value}'.")))?
            .replace("''", "'");
        out.push((allowed_prop.to_string(), value));
    }
    Ok(out)
}

fn matches(item: &Value, clauses: &[(String, String)]) -> bool {
    clauses.iter().all(|(prop, value)| {
        item.get(prop)
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case(value))
    })
}

fn grant_json(g: &RoleGrant) -> Value {
    json!({
        "id": g.id,
        "principalId": g.principal_id,
        "roleDefinitionId": g.role_definition_id,
        "directoryScopeId": g.directory_scope_id,
        "appScopeId": null,
        "condition": null,
    })
}

fn assignment_schedule_json(g: &RoleGrant) -> Value {
    let mut v = grant_json(g);
    if let Value::Object(m) = &mut v {
        m.insert("createdDateTime".into(), json!(g.created));
        m.insert("modifiedDateTime".into(), json!(g.created));
        m.insert("createdUsing".into(), json!(g.id));
        m.insert("status".into(), json!("Provisioned"));
        m.insert("memberType".into(), json!("Direct"));
        m.insert("assignmentType".into(), json!("Assigned"));
        m.insert("scheduleInfo".into(), g.schedule_info.clone());
    }
    v
}

fn eligibility_schedule_json(g: &RoleGrant) -> Value {
    let mut v = assignment_schedule_json(g);
    if let Value::Object(m) = &mut v {
        m.remove("assignmentType");
    }
    v
}

fn instance_json(g: &RoleGrant, schedule_key: &str) -> Value {
    let start = g
        .schedule_info
        .get("startDateTime")
        .cloned()
        .unwrap_or_else(|| json!(g.created));
    let end = g
        .schedule_info
        .pointer("/expiration/endDateTime")
        .cloned()
        .unwrap_or(Value::Null);
    let mut v = json!({
        "id": g.id,
        "principalId": g.principal_id,
        "roleDefinitionId": g.role_definition_id,
        "directoryScopeId": g.directory_scope_id,
        "appScopeId": null,
        "startDateTime": start,
        "endDateTime": end,
        "memberType": "Direct",
    });
    if let Value::Object(m) = &mut v {
        m.insert(schedule_key.to_string(), json!(g.id));
    }
    v
}

/// Graph's ids for role assignments: base64url of random bytes, with a `-1` suffix.
fn new_assignment_id() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{}-1",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

const GRANT_FILTER: &[&str] = &["principalId", "roleDefinitionId", "directoryScopeId", "id"];

fn list_values(
    app: &App,
    req: &Req,
    items: Vec<Value>,
    allowed: &[&str],
    context: &str,
) -> ApiResult {
    let clauses = parse_filter(req.q("$filter"), allowed)?;
    let items: Vec<Value> = items.into_iter().filter(|i| matches(i, &clauses)).collect();
    let body = page(app, req, items, Flavor::Graph, Some(context))?;
    Ok(json_response(StatusCode::OK, body))
}

fn one(app: &App, value: Option<Value>, id: &str, context: &str) -> ApiResult {
    let mut value = value.ok_or_else(|| ApiError::graph_not_found(id))?;
    if let Value::Object(m) = &mut value {
        m.insert(
            "@odata.context".into(),
            json!(format!("{}/v1.0/$metadata#{context}/$entity", app.base_url)),
        );
    }
    Ok(json_response(StatusCode::OK, value))
}

/// `/v1.0/roleManagement/directory/...`: `rest` starts after `directory`.
pub fn role_management(app: &App, req: &Req, rest: &[&str]) -> ApiResult {
    let is = |s: &str, name: &str| s.eq_ignore_ascii_case(name);
    let m = &req.method;
    match (m, rest) {
        (&Method::GET, [c]) if is(c, "roleDefinitions") => {
            let items = BUILTIN_ROLES
                .iter()
                .map(|(id, n, d)| role_definition_json(id, n, d))
                .collect();
            list_values(
                app,
                req,
                items,
                &["displayName", "templateId", "id"],
                "roleManagement/directory/roleDefinitions",
            )
        }
        (&Method::GET, [c, id]) if is(c, "roleDefinitions") => one(
            app,
            role_definition(id).map(|(i, n, d)| role_definition_json(i, n, d)),
            id,
            "roleManagement/directory/roleDefinitions",
        ),
        (&Method::GET, [c]) if is(c, "roleAssignments") => {
            let items = app
                .lock()
                .entra_roles
                .assignments
                .iter()
                .map(grant_json)
                .collect();
            list_values(
                app,
                req,
                items,
                GRANT_FILTER,
                "roleManagement/directory/roleAssignments",
            )
        }
        (&Method::POST, [c]) if is(c, "roleAssignments") => create_assignment(app, req),
        (&Method::GET, [c, id]) if is(c, "roleAssignments") => {
            let found = app
                .lock()
                .entra_roles
                .assignments
                .iter()
                .find(|g| g.id == *id)
                .map(grant_json);
            one(app, found, id, "roleManagement/directory/roleAssignments")
        }
        (&Method::DELETE, [c, id]) if is(c, "roleAssignments") => {
            let mut state = app.lock();
            let roles = &mut state.entra_roles;
            let before = roles.assignments.len();
            roles.assignments.retain(|g| g.id != *id);
            if roles.assignments.len() == before {
                return Err(ApiError::graph_not_found(id));
            }
            roles.active_schedules.retain(|g| g.id != *id);
            Ok(no_content())
        }
        (&Method::POST, [c]) if is(c, "roleEligibilityScheduleRequests") => {
            schedule_request(app, req, true)
        }
        (&Method::POST, [c]) if is(c, "roleAssignmentScheduleRequests") => {
            schedule_request(app, req, false)
        }
        (&Method::GET, [c]) if is(c, "roleEligibilityScheduleRequests") => {
            let items = app
                .lock()
                .entra_roles
                .eligibility_requests
                .iter()
                .map(|r| r.body.clone())
                .collect();
            list_values(
                app,
                req,
                items,
                &["principalId", "roleDefinitionId", "action", "status", "id"],
                "roleManagement/directory/roleEligibilityScheduleRequests",
            )
        }
        (&Method::GET, [c]) if is(c, "roleAssignmentScheduleRequests") => {
            let items = app
                .lock()
                .entra_roles
                .assignment_requests
                .iter()
                .map(|r| r.body.clone())
                .collect();
            list_values(
                app,
                req,
                items,
                &["principalId", "roleDefinitionId", "action", "status", "id"],
                "roleManagement/directory/roleAssignmentScheduleRequests",
            )
        }
        (&Method::GET, [c, tail @ ..]) if tail.len() <= 1 => {
            let (render, context): (fn(&RoleGrant) -> Value, &str) =
                if is(c, "roleEligibilitySchedules") {
                    (
                        eligibility_schedule_json,
                        "roleManagement/directory/roleEligibilitySchedules",
                    )
                } else if is(c, "roleEligibilityScheduleInstances") {
                    (
                        |g| instance_json(g, "roleEligibilityScheduleId"),
                        "roleManagement/directory/roleEligibilityScheduleInstances",
                    )
                } else if is(c, "roleAssignmentSchedules") {
                    (
                        assignment_schedule_json,
                        "roleManagement/directory/roleAssignmentSchedules",
                    )
                } else if is(c, "roleAssignmentScheduleInstances") {
                    (
                        |g| {
                            let mut v = instance_json(g, "roleAssignmentScheduleId");
                            if let Value::Object(m) = &mut v {
                                m.insert("assignmentType".into(), json!("Assigned"));
                                m.insert("roleAssignmentOriginId".into(), json!(g.id));
                            }
                            v
                        },
                        "roleManagement/directory/roleAssignmentScheduleInstances",
                    )
                } else {
                    return Err(unknown(req));
                };
            let eligible = c.to_ascii_lowercase().starts_with("roleeligibility");
            let state = app.lock();
            let source = if eligible {
                &state.entra_roles.eligibilities
            } else {
                &state.entra_roles.active_schedules
            };
            match tail {
                [] => {
                    let items: Vec<Value> = source.iter().map(render).collect();
                    drop(state);
                    list_values(app, req, items, GRANT_FILTER, context)
                }
                [id] => {
                    let found = source.iter().find(|g| g.id == *id).map(render);
                    drop(state);
                    one(app, found, id, context)
                }
                _ => Err(unknown(req)),
            }
        }
        _ => Err(unknown(req)),
    }
}

fn unknown(req: &Req) -> ApiError {
    ApiError::graph(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!(
            "Resource not found for the segment '{}' (method {}).",
            req.segments.last().map(String::as_str).unwrap_or(""),
            req.method
        ),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleBody {
    action: Option<String>,
    principal_id: Option<String>,
    role_definition_id: Option<String>,
    directory_scope_id: Option<String>,
    justification: Option<String>,
    schedule_info: Option<Value>,
}

/// The principal, role and scope of a role body, checked as Graph checks them.
fn checked(
    app: &App,
    body: &RoleBody,
    resource: &str,
) -> Result<(String, String, String), ApiError> {
    let required = |v: &Option<String>, name: &str| {
        v.clone().filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::graph_bad_request(format!(
                "Invalid value specified for property '{name}' of resource '{resource}'."
            ))
        })
    };
    let principal = required(&body.principal_id, "principalId")?;
    let role = required(&body.role_definition_id, "roleDefinitionId")?;
    let scope = body
        .directory_scope_id
        .clone()
        .unwrap_or_else(|| "/".to_string());
    if app.lock().graph.principal_kind(&principal).is_none() {
        return Err(ApiError::graph_not_found(&principal));
    }
    let role = role_definition(&role)
        .map(|(id, _, _)| id.to_string())
        .ok_or_else(|| ApiError::graph_not_found(&role))?;
    Ok((principal, role, scope))
}

fn same(g: &RoleGrant, principal: &str, role: &str, scope: &str) -> bool {
    g.principal_id.eq_ignore_ascii_case(principal)
        && g.role_definition_id.eq_ignore_ascii_case(role)
        && g.directory_scope_id.eq_ignore_ascii_case(scope)
}

fn create_assignment(app: &App, req: &Req) -> ApiResult {
    let body: RoleBody = req.json(Flavor::Graph)?;
    let (principal, role, scope) = checked(app, &body, "UnifiedRoleAssignment")?;
    let mut state = app.lock();
    let roles = &mut state.entra_roles;
    if roles
        .assignments
        .iter()
        .any(|g| same(g, &principal, &role, &scope))
    {
        return Err(ApiError::graph_bad_request(
            "A conflicting object with one or more of the specified property values is present in the directory.",
        ));
    }
    let grant = RoleGrant {
        id: new_assignment_id(),
        principal_id: principal,
        role_definition_id: role,
        directory_scope_id: scope,
        created: now_graph(),
        schedule_info: Value::Null,
    };
    let mut value = grant_json(&grant);
    roles.assignments.push(grant);
    if let Value::Object(m) = &mut value {
        m.insert(
            "@odata.context".into(),
            json!(format!(
                "{}/v1.0/$metadata#roleManagement/directory/roleAssignments/$entity",
                app.base_url
            )),
        );
    }
    Ok(json_response(StatusCode::CREATED, value))
}

/// `POST roleEligibilityScheduleRequests` (`eligible`) or `roleAssignmentScheduleRequests`.
fn schedule_request(app: &App, req: &Req, eligible: bool) -> ApiResult {
    let resource = if eligible {
        "UnifiedRoleEligibilityScheduleRequest"
    } else {
        "UnifiedRoleAssignmentScheduleRequest"
    };
    let body: RoleBody = req.json(Flavor::Graph)?;
    let action = body.action.clone().unwrap_or_default();
    let (principal, role, scope) = checked(app, &body, resource)?;
    let schedule_info = body.schedule_info.clone().unwrap_or_else(|| {
        json!({"startDateTime": now_graph(), "recurrence": null,
               "expiration": {"type": "noExpiration", "endDateTime": null, "duration": null}})
    });
    let mut state = app.lock();
    let roles = &mut state.entra_roles;
    let (status, target) = match action.as_str() {
        "adminAssign" => {
            let exists = if eligible {
                roles
                    .eligibilities
                    .iter()
                    .any(|g| same(g, &principal, &role, &scope))
            } else {
                roles
                    .assignments
                    .iter()
                    .any(|g| same(g, &principal, &role, &scope))
            };
            if exists {
                return Err(ApiError::graph(
                    StatusCode::BAD_REQUEST,
                    "RoleAssignmentExists",
                    "The Role assignment already exists.",
                ));
            }
            let grant = RoleGrant {
                id: new_assignment_id(),
                principal_id: principal.clone(),
                role_definition_id: role.clone(),
                directory_scope_id: scope.clone(),
                created: now_graph(),
                schedule_info: schedule_info.clone(),
            };
            let id = grant.id.clone();
            if eligible {
                roles.eligibilities.push(grant);
            } else {
                roles.assignments.push(grant.clone());
                roles.active_schedules.push(grant);
            }
            ("Provisioned", id)
        }
        "adminRemove" => {
            let list = if eligible {
                &mut roles.eligibilities
            } else {
                &mut roles.active_schedules
            };
            let Some(pos) = list.iter().position(|g| same(g, &principal, &role, &scope)) else {
                return Err(ApiError::graph(
                    StatusCode::BAD_REQUEST,
                    "RoleAssignmentDoesNotExist",
                    "The Role assignment does not exist.",
                ));
            };
            let removed = list.remove(pos);
            if !eligible {
                roles.assignments.retain(|g| g.id != removed.id);
            }
            ("Revoked", removed.id)
        }
        "adminUpdate" | "adminExtend" | "adminRenew" | "selfActivate" | "selfDeactivate"
        | "selfExtend" | "selfRenew" => {
            return Err(ApiError::graph_bad_request(format!(
                "The double does not serve action '{action}' (only adminAssign and adminRemove)."
            )))
        }
        other => {
            return Err(ApiError::graph_bad_request(format!(
                "Invalid value specified for property 'action' of resource '{resource}': '{other}'."
            )))
        }
    };
    let now = now_graph();
    let value = json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "status": status,
        "createdDateTime": now,
        "completedDateTime": now,
        "approvalId": null,
        "customData": null,
        "action": action,
        "principalId": principal,
        "roleDefinitionId": role,
        "directoryScopeId": scope,
        "appScopeId": null,
        "isValidationOnly": false,
        "targetScheduleId": target,
        "justification": body.justification,
        "createdBy": {"application": {"id": req.caller}, "device": null, "user": null},
        "scheduleInfo": schedule_info,
        "ticketInfo": {"ticketNumber": null, "ticketSystem": null},
    });
    let request = ScheduleRequest {
        body: value.clone(),
    };
    if eligible {
        roles.eligibility_requests.push(request);
    } else {
        roles.assignment_requests.push(request);
    }
    let mut value = value;
    if let Value::Object(m) = &mut value {
        m.insert(
            "@odata.context".into(),
            json!(format!(
                "{}/v1.0/$metadata#roleManagement/directory/{}/$entity",
                app.base_url,
                if eligible {
                    "roleEligibilityScheduleRequests"
                } else {
                    "roleAssignmentScheduleRequests"
                }
            )),
        );
    }
    Ok(json_response(StatusCode::CREATED, value))
}

// ---------------------------------------------------------------------------------------------
// oauth2PermissionGrants

fn permission_grant_json(g: &PermissionGrant) -> Value {
    json!({
        "id": g.id,
        "clientId": g.client_id,
        "consentType": g.consent_type,
        "principalId": g.principal_id,
        "resourceId": g.resource_id,
        "scope": g.scope,
    })
}

const PERMISSION_GRANT_FILTER: &[&str] =
    &["clientId", "principalId", "resourceId", "consentType", "id"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrantBody {
    client_id: Option<String>,
    consent_type: Option<String>,
    principal_id: Option<String>,
    resource_id: Option<String>,
    scope: Option<String>,
}

/// `/v1.0/oauth2PermissionGrants[/{id}]`: `rest` is what follows the collection.
pub fn permission_grants(app: &App, req: &Req, rest: &[&str]) -> ApiResult {
    match (&req.method, rest) {
        (&Method::GET, []) => {
            let items = app
                .lock()
                .entra_roles
                .grants
                .iter()
                .map(permission_grant_json)
                .collect();
            list_values(
                app,
                req,
                items,
                PERMISSION_GRANT_FILTER,
                "oauth2PermissionGrants",
            )
        }
        (&Method::POST, []) => create_permission_grant(app, req),
        (&Method::GET, [id]) => {
            let found = app
                .lock()
                .entra_roles
                .grants
                .iter()
                .find(|g| g.id == *id)
                .map(permission_grant_json);
            one(app, found, id, "oauth2PermissionGrants")
        }
        (&Method::PATCH, [id]) => {
            let body: GrantBody = req.json(Flavor::Graph)?;
            let mut state = app.lock();
            let g = state
                .entra_roles
                .grants
                .iter_mut()
                .find(|g| g.id == *id)
                .ok_or_else(|| ApiError::graph_not_found(id))?;
            if let Some(scope) = body.scope {
                g.scope = scope;
            }
            Ok(no_content())
        }
        (&Method::DELETE, [id]) => {
            let mut state = app.lock();
            let grants = &mut state.entra_roles.grants;
            let before = grants.len();
            grants.retain(|g| g.id != *id);
            if grants.len() == before {
                return Err(ApiError::graph_not_found(id));
            }
            Ok(no_content())
        }
        _ => Err(unknown(req)),
    }
}

/// `GET /v1.0/users/{id}/oauth2PermissionGrants`: the grants whose principal is the user.
pub fn user_permission_grants(app: &App, req: &Req, user_id: &str) -> ApiResult {
    let items = app
        .lock()
        .entra_roles
        .grants
        .iter()
        .filter(|g| g.principal_id.as_deref() == Some(user_id))
        .map(permission_grant_json)
        .collect();
    list_values(
        app,
        req,
        items,
        PERMISSION_GRANT_FILTER,
        "oauth2PermissionGrants",
    )
}

fn create_permission_grant(app: &App, req: &Req) -> ApiResult {
    let body: GrantBody = req.json(Flavor::Graph)?;
    let invalid = |name: &str| {
        ApiError::graph_bad_request(format!(
            "Invalid value specified for property '{name}' of resource 'OAuth2PermissionGrant'."
        ))
    };
    let client = body
        .client_id
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid("clientId"))?;
    let resource = body
        .resource_id
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid("resourceId"))?;
    let consent = body
        .consent_type
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid("consentType"))?;
    let principal = body.principal_id.filter(|v| !v.is_empty());
    match (consent.as_str(), &principal) {
        ("Principal", Some(_)) | ("AllPrincipals", None) => {}
        _ => return Err(invalid("principalId")),
    }
    let mut state = app.lock();
    for sp in [&client, &resource] {
        if state.graph.service_principal(sp).is_none() {
            return Err(ApiError::graph_not_found(sp));
        }
    }
    if let Some(p) = &principal {
        if state.graph.principal_kind(p) != Some("User") {
            return Err(ApiError::graph_not_found(p));
        }
    }
    if state
        .entra_roles
        .grants
        .iter()
        .any(|g| g.client_id == client && g.resource_id == resource && g.principal_id == principal)
    {
        return Err(ApiError::graph(
            StatusCode::CONFLICT,
            "Request_MultipleObjectsWithSameKeyValue",
            "Permission entry already exists.",
        ));
    }
    let bytes: [u8; 33] = rand::random();
    let grant = PermissionGrant {
        id: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        client_id: client,
        consent_type: consent,
        principal_id: principal,
        resource_id: resource,
        scope: body.scope.unwrap_or_default(),
    };
    let mut value = permission_grant_json(&grant);
    state.entra_roles.grants.push(grant);
    if let Value::Object(m) = &mut value {
        m.insert(
            "@odata.context".into(),
            json!(format!(
                "{}/v1.0/$metadata#oauth2PermissionGrants/$entity",
                app.base_url
            )),
        );
    }
    Ok(json_response(StatusCode::CREATED, value))
}

impl EntraRolesState {
    /// Drops everything naming a deleted directory object.
    pub fn forget(&mut self, id: &str) {
        self.assignments.retain(|g| g.principal_id != id);
        self.active_schedules.retain(|g| g.principal_id != id);
        self.eligibilities.retain(|g| g.principal_id != id);
        self.grants.retain(|g| {
            g.client_id != id && g.resource_id != id && g.principal_id.as_deref() != Some(id)
        });
    }
}
