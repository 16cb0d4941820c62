//! Microsoft.Authorization (api-version 2022-04-01): role definitions (built-in ones from
//! `data/builtin-role-definitions.json`, plus custom ones) and role assignments at any scope,
//! listed with ARM's inheritance semantics.

use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::arm::{self, api_version, ArmState};
use crate::http::{json_response, no_content, now_arm, page, ApiError, ApiResult, Flavor, Req};
use crate::state::App;

pub const AUTHORIZATION_API_VERSIONS: &[&str] = &["2022-04-01"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub not_actions: Vec<String>,
    #[serde(default)]
    pub data_actions: Vec<String>,
    #[serde(default)]
    pub not_data_actions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_version: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RoleDefinition {
    /// The GUID.
    pub name: String,
    pub role_name: String,
    pub description: String,
    /// `BuiltInRole` or `CustomRole`.
    pub role_type: String,
    pub assignable_scopes: Vec<String>,
    pub permissions: Vec<Permission>,
    pub created_on: String,
    pub updated_on: String,
    pub created_by: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BuiltinFile {
    roles: Vec<BuiltinRole>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BuiltinRole {
    name: String,
    role_name: String,
    description: String,
    assignable_scopes: Vec<String>,
    permissions: Vec<Permission>,
}

const BUILTIN_JSON: &str = include_str!("../data/builtin-role-definitions.json");

/// The built-in roles shipped in `data/builtin-role-definitions.json`.
pub fn builtin_roles() -> Vec<RoleDefinition> {
    // The file is part of the crate and checked by a unit test; a parse failure is a bug in
    // the crate, not bad input.
    let file: BuiltinFile = serde_json::from_str(BUILTIN_JSON)
        .expect("data/builtin-role-definitions.json is valid (see the unit test)");
    file.roles
        .into_iter()
        .map(|r| RoleDefinition {
            name: r.name,
            role_name: r.role_name,
            description: r.description,
            role_type: "BuiltInRole".into(),
            assignable_scopes: r.assignable_scopes,
            permissions: r.permissions,
            created_on: "2015-02-02T21:55:09.8806423Z".into(),
            updated_on: "2024-01-01T00:00:00.0000000Z".into(),
            created_by: None,
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct RoleAssignment {
    /// The scope as the caller wrote it (`/subscriptions/...`, `/` for the tenant root).
    pub scope: String,
    pub name: String,
    pub role_definition_id: String,
    pub principal_id: String,
    pub principal_type: String,
    pub description: Option<String>,
    pub condition: Option<String>,
    pub condition_version: Option<String>,
    pub created_on: String,
    pub updated_on: String,
    pub created_by: String,
}

fn join_scope(scope: &str, rest: &str) -> String {
    if scope == "/" {
        rest.to_string()
    } else {
        format!("{scope}{rest}")
    }
}

impl RoleAssignment {
    fn id(&self) -> String {
        join_scope(
            &self.scope,
            &format!(
                "/providers/Microsoft.Authorization/roleAssignments/{}",
                self.name
            ),
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id(),
            "type": "Microsoft.Authorization/roleAssignments",
            "name": self.name,
            "properties": {
                "roleDefinitionId": self.role_definition_id,
                "principalId": self.principal_id,
                "principalType": self.principal_type,
                "scope": self.scope,
                "condition": self.condition,
                "conditionVersion": self.condition_version,
                "description": self.description,
                "createdOn": self.created_on,
                "updatedOn": self.updated_on,
                "createdBy": self.created_by,
                "updatedBy": self.created_by,
                "delegatedManagedIdentityResourceId": null,
            }
        })
    }
}

/// The prefix ARM puts before `/providers/Microsoft.Authorization/roleDefinitions/{id}` when
/// a definition is read at `scope`: `/subscriptions/{id}` inside a subscription, empty elsewhere.
fn definition_prefix(scope: &str) -> String {
    let segs: Vec<&str> = scope.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        [first, sub, ..] if first.eq_ignore_ascii_case("subscriptions") => {
            format!("/subscriptions/{sub}")
        }
        _ => String::new(),
    }
}

fn definition_json(def: &RoleDefinition, scope: &str) -> Value {
    json!({
        "id": format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions/{}",
            definition_prefix(scope),
            def.name
        ),
        "type": "Microsoft.Authorization/roleDefinitions",
        "name": def.name,
        "properties": {
            "roleName": def.role_name,
            "type": def.role_type,
            "description": def.description,
            "assignableScopes": def.assignable_scopes,
            "permissions": def.permissions,
            "createdOn": def.created_on,
            "updatedOn": def.updated_on,
            "createdBy": def.created_by,
            "updatedBy": def.created_by,
        }
    })
}

/// The GUID at the end of a role definition id (or the bare GUID).
pub fn definition_guid(role_definition_id: &str) -> &str {
    role_definition_id
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(role_definition_id)
}

pub fn is_guid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

fn find_definition<'a>(app: &'a App, arm: &'a ArmState, guid: &str) -> Option<&'a RoleDefinition> {
    app.builtin_roles
        .iter()
        .chain(arm.custom_roles.iter())
        .find(|d| d.name.eq_ignore_ascii_case(guid))
}

/// Entry point for `{scope}/providers/Microsoft.Authorization/{rest...}`.
pub fn handle(app: &App, req: &Req, scope: &str, rest: &[String]) -> ApiResult {
    api_version(req, AUTHORIZATION_API_VERSIONS)?;
    let is = |s: &String, name: &str| s.eq_ignore_ascii_case(name);
    match (&req.method, rest) {
        (&Method::GET, [kind]) if is(kind, "roleAssignments") => list_assignments(app, req, scope),
        (&Method::GET, [kind, name]) if is(kind, "roleAssignments") => {
            get_assignment(app, scope, name)
        }
        (&Method::PUT, [kind, name]) if is(kind, "roleAssignments") => {
            put_assignment(app, req, scope, name)
        }
        (&Method::DELETE, [kind, name]) if is(kind, "roleAssignments") => {
            delete_assignment(app, scope, name)
        }
        (&Method::GET, [kind]) if is(kind, "roleDefinitions") => list_definitions(app, req, scope),
        (&Method::GET, [kind]) if is(kind, "permissions") => list_permissions(app, req, scope),
        (&Method::GET, [kind, id]) if is(kind, "roleDefinitions") => get_definition(app, scope, id),
        (&Method::PUT, [kind, id]) if is(kind, "roleDefinitions") => {
            put_definition(app, req, scope, id)
        }
        (&Method::DELETE, [kind, id]) if is(kind, "roleDefinitions") => {
            delete_definition(app, scope, id)
        }
        _ => Err(arm::no_route(req)),
    }
}

// ---------------------------------------------------------------------------------------------
// Role assignments

#[derive(Deserialize)]
struct AssignmentBody {
    properties: Option<AssignmentProperties>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentProperties {
    role_definition_id: Option<String>,
    principal_id: Option<String>,
    principal_type: Option<String>,
    description: Option<String>,
    condition: Option<String>,
    condition_version: Option<String>,
}

fn assignment_not_found(name: &str) -> ApiError {
    ApiError::arm(
        StatusCode::NOT_FOUND,
        "RoleAssignmentNotFound",
        format!("The role assignment '{name}' is not found."),
    )
}

fn same_scope(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

fn get_assignment(app: &App, scope: &str, name: &str) -> ApiResult {
    let state = app.lock();
    let assignment = state
        .arm
        .role_assignments
        .iter()
        .find(|a| same_scope(&a.scope, scope) && a.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| assignment_not_found(name))?;
    Ok(json_response(StatusCode::OK, assignment.to_json()))
}

fn put_assignment(app: &App, req: &Req, scope: &str, name: &str) -> ApiResult {
    if !is_guid(name) {
        return Err(ApiError::arm(
            StatusCode::BAD_REQUEST,
            "InvalidRoleAssignmentId",
            format!("The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."),
        ));
    }
    let body: AssignmentBody = req.json(Flavor::Arm)?;
    let missing = |property: &str| {
        ApiError::arm(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            format!(
                "The request content is missing the required property 'properties.{property}'."
            ),
        )
    };
    let props = body.properties.ok_or_else(|| missing("roleDefinitionId"))?;
    let role_definition_id = props
        .role_definition_id
        .ok_or_else(|| missing("roleDefinitionId"))?;
    let principal_id = props.principal_id.ok_or_else(|| missing("principalId"))?;
    let mut state = app.lock();
    arm::check_scope_exists(&state.arm, scope)?;
    let guid = definition_guid(&role_definition_id).to_string();
    if find_definition(app, &state.arm, &guid).is_none() {
        return Err(ApiError::arm(
            StatusCode::BAD_REQUEST,
            "RoleDefinitionDoesNotExist",
            format!("The specified role definition with ID '{guid}' does not exist."),
        ));
    }
    let actual_type = state.graph.principal_kind(&principal_id).ok_or_else(|| {
        ApiError::arm(
            StatusCode::BAD_REQUEST,
            "PrincipalNotFound",
            format!(
                "Principal {principal_id} does not exist in the directory {}. Check that you have the correct principal ID.",
                app.config.tenant_id
            ),
        )
    })?;
    let principal_type = props
        .principal_type
        .unwrap_or_else(|| actual_type.to_string());
    if !principal_type.eq_ignore_ascii_case(actual_type) {
        return Err(ApiError::arm(
            StatusCode::BAD_REQUEST,
            "UnmatchedPrincipalType",
            format!("The PrincipalId '{principal_id}' has type '{actual_type}' , which is different from specified PrincipalType '{principal_type}'."),
        ));
    }
    let condition_version = match (&props.condition, props.condition_version) {
        (Some(_), None) => Some("2.0".to_string()),
        (Some(_), Some(v)) if v != "2.0" => {
            return Err(ApiError::arm(
                StatusCode::BAD_REQUEST,
                "InvalidConditionVersion",
                format!("The condition version '{v}' is not supported. Supported version: '2.0'."),
            ))
        }
        (_, v) => v,
    };
    let now = now_arm();
    let assignments = &mut state.arm.role_assignments;
    if let Some(existing) = assignments
        .iter_mut()
        .find(|a| same_scope(&a.scope, scope) && a.name.eq_ignore_ascii_case(name))
    {
        let same = definition_guid(&existing.role_definition_id).eq_ignore_ascii_case(&guid)
            && existing.principal_id.eq_ignore_ascii_case(&principal_id);
        if !same {
            return Err(ApiError::arm(
                StatusCode::CONFLICT,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            ));
        }
        existing.condition = props.condition;
        existing.condition_version = condition_version;
        existing.description = props.description;
        existing.updated_on = now;
        return Ok(json_response(StatusCode::OK, existing.to_json()));
    }
    if assignments.iter().any(|a| {
        same_scope(&a.scope, scope)
            && a.principal_id.eq_ignore_ascii_case(&principal_id)
            && definition_guid(&a.role_definition_id).eq_ignore_ascii_case(&guid)
    }) {
        return Err(ApiError::arm(
            StatusCode::CONFLICT,
            "RoleAssignmentExists",
            "The role assignment already exists.",
        ));
    }
    let assignment = RoleAssignment {
        scope: scope.to_string(),
        name: name.to_ascii_lowercase(),
        role_definition_id,
        principal_id,
        principal_type,
        description: props.description,
        condition: props.condition,
        condition_version,
        created_on: now.clone(),
        updated_on: now,
        created_by: req.caller.clone(),
    };
    let body = assignment.to_json();
    assignments.push(assignment);
    Ok(json_response(StatusCode::CREATED, body))
}

fn delete_assignment(app: &App, scope: &str, name: &str) -> ApiResult {
    let mut state = app.lock();
    let assignments = &mut state.arm.role_assignments;
    let Some(pos) = assignments
        .iter()
        .position(|a| same_scope(&a.scope, scope) && a.name.eq_ignore_ascii_case(name))
    else {
        return Ok(no_content());
    };
    let removed = assignments.remove(pos);
    Ok(json_response(StatusCode::OK, removed.to_json()))
}

/// The parsed `$filter` of a role assignment list.
#[derive(Default)]
struct AssignmentFilter {
    at_scope: bool,
    principal_id: Option<String>,
    assigned_to: Option<String>,
}

fn parse_assignment_filter(filter: &str) -> Result<AssignmentFilter, ApiError> {
    let bad = || {
        ApiError::arm(
            StatusCode::BAD_REQUEST,
            "UnsupportedQuery",
            format!("The filter '{filter}' is not supported. Supported filters are atScope(), principalId eq '{{id}}', assignedTo('{{id}}') and atScope() and assignedTo('{{id}}')."),
        )
    };
    let mut out = AssignmentFilter::default();
    for clause in filter.split(" and ").map(str::trim) {
        if clause.eq_ignore_ascii_case("atScope()") {
            out.at_scope = true;
        } else if let Some(rest) = clause
            .strip_prefix("principalId eq ")
            .or_else(|| clause.strip_prefix("principalId  eq "))
        {
            let id = rest.trim().trim_matches('\'');
            if id.is_empty() {
                return Err(bad());
            }
            out.principal_id = Some(id.to_string());
        } else if let Some(rest) = clause.strip_prefix("assignedTo(") {
            let id = rest
                .strip_suffix(')')
                .ok_or_else(bad)?
                .trim()
                .trim_matches('\'');
            if id.is_empty() {
                return Err(bad());
            }
            out.assigned_to = Some(id.to_string());
        } else {
            return Err(bad());
        }
    }
    Ok(out)
}

/// `GET {scope}/providers/Microsoft.Authorization/roleAssignments`: without `atScope()`,
/// assignments at, above (inherited) and below the scope; with it, at and above only.
fn list_assignments(app: &App, req: &Req, scope: &str) -> ApiResult {
    let filter = match req.q("$filter") {
        Some(f) if !f.trim().is_empty() => parse_assignment_filter(f)?,
        _ => AssignmentFilter::default(),
    };
    let state = app.lock();
    arm::check_scope_exists(&state.arm, scope)?;
    let principals: Option<Vec<String>> = match (&filter.principal_id, &filter.assigned_to) {
        (Some(id), _) => Some(vec![id.clone()]),
        (None, Some(id)) => {
            if state.graph.is_group(id) {
                return Err(ApiError::arm(
                    StatusCode::BAD_REQUEST,
                    "UnsupportedQuery",
                    "The assignedTo() filter only accepts the object ID of a user or a service principal, not a group.",
                ));
            }
            let mut ids = vec![id.clone()];
            ids.extend(state.graph.transitive_group_ids(id));
            Some(ids)
        }
        (None, None) => None,
    };
    let above = arm::ancestors(&state.arm, scope);
    let items: Vec<Value> = state
        .arm
        .role_assignments
        .iter()
        .filter(|a| {
            let at_or_above = above.contains(&arm::normalize(&a.scope));
            let below = !at_or_above && {
                let normalized = arm::normalize(scope);
                arm::ancestors(&state.arm, &a.scope).contains(&normalized)
            };
            (at_or_above || (!filter.at_scope && below))
                && principals
                    .as_ref()
                    .is_none_or(|ids| ids.iter().any(|p| p.eq_ignore_ascii_case(&a.principal_id)))
        })
        .map(RoleAssignment::to_json)
        .collect();
    drop(state);
    let body = page(app, req, items, Flavor::Arm, None)?;
    Ok(json_response(StatusCode::OK, body))
}

// ---------------------------------------------------------------------------------------------
// The caller's permissions

/// `GET {scope}/providers/Microsoft.Authorization/permissions`: what the caller may do at
/// `scope` — one permission block (`actions`, `notActions`, `dataActions`, `notDataActions`) per
/// block of each role assigned at or above the scope to the caller's service principal or a
/// group it is in (transitively). The caller is the service principal of the token's client
/// (application) id; one with no service principal in the directory holds nothing.
fn list_permissions(app: &App, req: &Req, scope: &str) -> ApiResult {
    let state = app.lock();
    arm::check_scope_exists(&state.arm, scope)?;
    let mut principals: Vec<String> = Vec::new();
    if let Some(sp) = state.graph.service_principal_id(&req.caller) {
        principals.extend(state.graph.transitive_group_ids(&sp));
        principals.push(sp);
    }
    let above = arm::ancestors(&state.arm, scope);
    let mut items: Vec<Value> = Vec::new();
    for a in &state.arm.role_assignments {
        let applies = above.contains(&arm::normalize(&a.scope))
            && principals
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&a.principal_id));
        if !applies {
            continue;
        }
        let Some(def) = find_definition(app, &state.arm, definition_guid(&a.role_definition_id))
        else {
            continue;
        };
        for p in &def.permissions {
            let mut block = json!({
                "actions": p.actions,
                "notActions": p.not_actions,
                "dataActions": p.data_actions,
                "notDataActions": p.not_data_actions,
            });
            if let (Some(condition), Value::Object(map)) = (&a.condition, &mut block) {
                map.insert("condition".into(), json!(condition));
                map.insert("conditionVersion".into(), json!(a.condition_version));
            }
            items.push(block);
        }
    }
    drop(state);
    let body = page(app, req, items, Flavor::Arm, None)?;
    Ok(json_response(StatusCode::OK, body))
}

// ---------------------------------------------------------------------------------------------
// Role definitions

fn definition_not_found(id: &str) -> ApiError {
    ApiError::arm(
        StatusCode::NOT_FOUND,
        "RoleDefinitionDoesNotExist",
        format!("The specified role definition with ID '{id}' does not exist."),
    )
}

fn get_definition(app: &App, scope: &str, id: &str) -> ApiResult {
    let state = app.lock();
    let def = find_definition(app, &state.arm, id).ok_or_else(|| definition_not_found(id))?;
    Ok(json_response(StatusCode::OK, definition_json(def, scope)))
}

fn list_definitions(app: &App, req: &Req, scope: &str) -> ApiResult {
    let mut role_name: Option<String> = None;
    let mut role_type: Option<String> = None;
    if let Some(filter) = req.q("$filter").filter(|f| !f.trim().is_empty()) {
        for clause in filter.split(" and ").map(str::trim) {
            let value = |prefix: &str| {
                clause
                    .strip_prefix(prefix)
                    .map(|v| v.trim().trim_matches('\'').replace("''", "'"))
            };
            if let Some(v) = value("roleName eq ") {
                role_name = Some(v);
            } else if let Some(v) = value("type eq ") {
                role_type = Some(v);
            } else {
                return Err(ApiError::arm(
                    StatusCode::BAD_REQUEST,
                    "UnsupportedQuery",
                    format!("The filter '{filter}' is not supported. Supported filters are roleName eq '{{name}}' and type eq 'BuiltInRole'|'CustomRole'."),
                ));
            }
        }
    }
    let state = app.lock();
    arm::check_scope_exists(&state.arm, scope)?;
    let above = arm::ancestors(&state.arm, scope);
    let items: Vec<Value> = app
        .builtin_roles
        .iter()
        .chain(state.arm.custom_roles.iter().filter(|d| {
            d.assignable_scopes
                .iter()
                .any(|s| above.contains(&arm::normalize(s)))
        }))
        .filter(|d| {
            role_name
                .as_ref()
                .is_none_or(|n| d.role_name.eq_ignore_ascii_case(n))
                && role_type
                    .as_ref()
                    .is_none_or(|t| d.role_type.eq_ignore_ascii_case(t))
        })
        .map(|d| definition_json(d, scope))
        .collect();
    drop(state);
    let body = page(app, req, items, Flavor::Arm, None)?;
    Ok(json_response(StatusCode::OK, body))
}

#[derive(Deserialize)]
struct DefinitionBody {
    properties: Option<DefinitionProperties>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefinitionProperties {
    role_name: Option<String>,
    description: Option<String>,
    #[serde(rename = "type")]
    role_type: Option<String>,
    #[serde(default)]
    permissions: Vec<Permission>,
    #[serde(default)]
    assignable_scopes: Vec<String>,
}

fn put_definition(app: &App, req: &Req, scope: &str, id: &str) -> ApiResult {
    let bad = |code: &str, message: String| ApiError::arm(StatusCode::BAD_REQUEST, code, message);
    if !is_guid(id) {
        return Err(bad(
            "InvalidRoleDefinitionId",
            format!("The role definition ID '{id}' is not valid. It must be a GUID."),
        ));
    }
    let body: DefinitionBody = req.json(Flavor::Arm)?;
    let props = body.properties.ok_or_else(|| {
        bad(
            "InvalidRequestContent",
            "The request content is missing 'properties'.".into(),
        )
    })?;
    let role_name = props
        .role_name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            bad(
                "InvalidRequestContent",
                "The role definition must have a 'roleName'.".into(),
            )
        })?;
    if props
        .role_type
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("CustomRole"))
    {
        return Err(bad(
            "InvalidRoleDefinitionType",
            "Only role definitions of type 'CustomRole' can be created or updated.".into(),
        ));
    }
    if props.assignable_scopes.is_empty() {
        return Err(bad(
            "InvalidAssignableScopes",
            "The role definition must have at least one assignable scope.".into(),
        ));
    }
    if props.permissions.is_empty() {
        return Err(bad(
            "InvalidPermissions",
            "The role definition must have at least one permission.".into(),
        ));
    }
    let mut state = app.lock();
    arm::check_scope_exists(&state.arm, scope)?;
    for s in &props.assignable_scopes {
        arm::check_scope_exists(&state.arm, s)?;
    }
    if app
        .builtin_roles
        .iter()
        .any(|d| d.name.eq_ignore_ascii_case(id))
    {
        return Err(ApiError::arm(
            StatusCode::FORBIDDEN,
            "RoleDefinitionUpdateNotPermitted",
            format!("The built-in role definition '{id}' cannot be updated."),
        ));
    }
    let name_taken = app
        .builtin_roles
        .iter()
        .chain(state.arm.custom_roles.iter())
        .any(|d| d.role_name.eq_ignore_ascii_case(&role_name) && !d.name.eq_ignore_ascii_case(id));
    if name_taken {
        return Err(ApiError::arm(
            StatusCode::CONFLICT,
            "RoleDefinitionWithSameNameExists",
            format!("A role definition cannot be updated with a name that already exists: '{role_name}'."),
        ));
    }
    let now = now_arm();
    let created_on = state
        .arm
        .custom_roles
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(id))
        .map(|d| d.created_on.clone())
        .unwrap_or_else(|| now.clone());
    state
        .arm
        .custom_roles
        .retain(|d| !d.name.eq_ignore_ascii_case(id));
    let def = RoleDefinition {
        name: id.to_ascii_lowercase(),
        role_name,
        description: props.description.unwrap_or_default(),
        role_type: "CustomRole".into(),
        assignable_scopes: props.assignable_scopes,
        permissions: props.permissions,
        created_on,
        updated_on: now,
        created_by: Some(req.caller.clone()),
    };
    let body = definition_json(&def, scope);
    state.arm.custom_roles.push(def);
    Ok(json_response(StatusCode::CREATED, body))
}

fn delete_definition(app: &App, scope: &str, id: &str) -> ApiResult {
    let mut state = app.lock();
    if app
        .builtin_roles
        .iter()
        .any(|d| d.name.eq_ignore_ascii_case(id))
    {
        return Err(ApiError::arm(
            StatusCode::FORBIDDEN,
            "RoleDefinitionDeleteNotPermitted",
            format!("The built-in role definition '{id}' cannot be deleted."),
        ));
    }
    let in_use = state
        .arm
        .role_assignments
        .iter()
        .any(|a| definition_guid(&a.role_definition_id).eq_ignore_ascii_case(id));
    if in_use {
        return Err(ApiError::arm(
            StatusCode::BAD_REQUEST,
            "RoleDefinitionHasAssignments",
            "There are existing role assignments referencing role definition; delete them first.",
        ));
    }
    let Some(pos) = state
        .arm
        .custom_roles
        .iter()
        .position(|d| d.name.eq_ignore_ascii_case(id))
    else {
        return Ok(no_content());
    };
    let removed = state.arm.custom_roles.remove(pos);
    Ok(json_response(
        StatusCode::OK,
        definition_json(&removed, scope),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_file_parses_with_the_expected_roles() {
        let roles = builtin_roles();
        assert_eq!(roles.len(), 15);
        let kv = roles
            .iter()
            .find(|r| r.role_name == "Key Vault Contributor")
            .expect("Key Vault Contributor");
        assert_eq!(kv.name, "f25e0fa2-a7c8-4377-a976-54943a77a395");
        assert!(kv.permissions[0]
            .actions
            .contains(&"Microsoft.KeyVault/*".to_string()));
        for r in &roles {
            assert!(is_guid(&r.name), "{} has a GUID id", r.role_name);
        }
    }

    #[test]
    fn assignment_filters_parse() {
        let f = parse_assignment_filter("atScope() and assignedTo('abc')").expect("parses");
        assert!(f.at_scope);
        assert_eq!(f.assigned_to.as_deref(), Some("abc"));
        let f = parse_assignment_filter("principalId eq 'x'").expect("parses");
        assert_eq!(f.principal_id.as_deref(), Some("x"));
        assert!(parse_assignment_filter("roleName eq 'x'").is_err());
    }
}
