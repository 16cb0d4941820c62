//! Azure Resource Manager: management groups, subscriptions (created through
//! `Microsoft.Subscription/aliases`), resource groups and the Key Vault management plane. Role
//! definitions and assignments (`{scope}/providers/Microsoft.Authorization/...`) live in `rbac`.

use std::collections::{HashMap, HashSet};

use axum::http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::http::{json_response, no_content, now_arm, page, ApiError, ApiResult, Flavor, Req};
use crate::rbac::{self, RoleAssignment, RoleDefinition};
use crate::state::App;

pub const SUBSCRIPTIONS_API_VERSIONS: &[&str] = &["2022-12-01", "2021-01-01", "2020-01-01"];
pub const RESOURCE_GROUPS_API_VERSIONS: &[&str] = &["2021-04-01", "2022-09-01"];
pub const MANAGEMENT_GROUPS_API_VERSIONS: &[&str] = &["2023-04-01", "2021-04-01", "2020-05-01"];
pub const KEY_VAULT_API_VERSIONS: &[&str] = &["2023-07-01", "2024-11-01", "2022-07-01"];
pub const ALIAS_API_VERSIONS: &[&str] = &["2021-10-01"];

#[derive(Default)]
pub struct ArmState {
    /// The tenant root management group's name (the tenant id).
    pub root_mg: String,
    pub management_groups: Vec<ManagementGroup>,
    pub subscriptions: Vec<Subscription>,
    pub aliases: HashMap<String, String>,
    pub resource_groups: Vec<ResourceGroup>,
    pub vaults: Vec<Vault>,
    pub role_assignments: Vec<RoleAssignment>,
    pub custom_roles: Vec<RoleDefinition>,
}

pub struct ManagementGroup {
    pub name: String,
    pub display_name: String,
    /// `None` only for the tenant root group.
    pub parent: Option<String>,
    pub updated: String,
    pub updated_by: String,
}

pub struct Subscription {
    pub id: String,
    pub display_name: String,
    pub management_group: String,
    pub tags: Map<String, Value>,
}

pub struct ResourceGroup {
    pub subscription: String,
    pub name: String,
    pub location: String,
    pub tags: Map<String, Value>,
}

pub struct Vault {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub tags: Map<String, Value>,
    pub properties: VaultProperties,
    pub created: String,
    pub created_by: String,
    pub modified: String,
    pub modified_by: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    pub family: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Permissions {
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub certificates: Vec<String>,
    #[serde(default)]
    pub storage: Vec<String>,
}

impl Permissions {
    fn categories_mut(&mut self) -> [&mut Vec<String>; 4] {
        [
            &mut self.keys,
            &mut self.secrets,
            &mut self.certificates,
            &mut self.storage,
        ]
    }
    fn is_empty(&self) -> bool {
        self.keys.is_empty()
            && self.secrets.is_empty()
            && self.certificates.is_empty()
            && self.storage.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicy {
    pub tenant_id: String,
    pub object_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    #[serde(default)]
    pub permissions: Permissions,
}

impl AccessPolicy {
    fn same_identity(&self, other: &AccessPolicy) -> bool {
        self.tenant_id.eq_ignore_ascii_case(&other.tenant_id)
            && self.object_id.eq_ignore_ascii_case(&other.object_id)
            && match (&self.application_id, &other.application_id) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                (None, None) => true,
                _ => false,
            }
    }
}

#[derive(Debug, Clone)]
pub struct VaultProperties {
    pub tenant_id: String,
    pub sku: Sku,
    pub access_policies: Vec<AccessPolicy>,
    pub enable_rbac_authorization: bool,
    pub enable_soft_delete: bool,
    pub soft_delete_retention_in_days: u32,
    pub enable_purge_protection: Option<bool>,
    pub enabled_for_deployment: bool,
    pub enabled_for_disk_encryption: bool,
    pub enabled_for_template_deployment: bool,
    pub public_network_access: String,
}

impl ArmState {
    pub fn init_root(&mut self, tenant_id: &str) {
        self.root_mg = tenant_id.to_string();
        self.management_groups.push(ManagementGroup {
            name: tenant_id.to_string(),
            display_name: "Tenant Root Group".into(),
            parent: None,
            updated: now_arm(),
            updated_by: "azure-double".into(),
        });
    }

    fn mg(&self, name: &str) -> Option<&ManagementGroup> {
        self.management_groups
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
    }

    fn subscription(&self, id: &str) -> Option<&Subscription> {
        self.subscriptions
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(id))
    }

    fn resource_group(&self, sub: &str, name: &str) -> Option<&ResourceGroup> {
        self.resource_groups
            .iter()
            .find(|r| r.subscription.eq_ignore_ascii_case(sub) && r.name.eq_ignore_ascii_case(name))
    }

    fn vault_index(&self, sub: &str, rg: &str, name: &str) -> Option<usize> {
        self.vaults.iter().position(|v| {
            v.subscription.eq_ignore_ascii_case(sub)
                && v.resource_group.eq_ignore_ascii_case(rg)
                && v.name.eq_ignore_ascii_case(name)
        })
    }

    /// `mg` and its ancestors up to the tenant root, nearest first.
    fn mg_chain(&self, mg: &str) -> Vec<String> {
        let mut chain = Vec::new();
        let mut seen = HashSet::new();
        let mut current = Some(mg.to_string());
        while let Some(name) = current {
            let lower = name.to_ascii_lowercase();
            if !seen.insert(lower) {
                break;
            }
            current = self.mg(&name).and_then(|m| m.parent.clone());
            chain.push(name);
        }
        chain
    }
}

fn mg_id(name: &str) -> String {
    format!("/providers/Microsoft.Management/managementGroups/{name}")
}

/// A scope in comparable form: lowercase, one leading `/`, no trailing `/`; the tenant root is `/`.
pub fn normalize(scope: &str) -> String {
    let segs: Vec<String> = scope
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    format!("/{}", segs.join("/"))
}

/// `scope` itself and every scope above it (normalized): enclosing resource groups and
/// subscriptions, the subscription's management group chain, and the tenant root `/`.
pub fn ancestors(arm: &ArmState, scope: &str) -> Vec<String> {
    let segs: Vec<&str> = scope.split('/').filter(|s| !s.is_empty()).collect();
    let mut out = Vec::new();
    let is_mg = segs.len() >= 4
        && segs[0].eq_ignore_ascii_case("providers")
        && segs[1].eq_ignore_ascii_case("Microsoft.Management")
        && segs[2].eq_ignore_ascii_case("managementGroups");
    let mg_start = if is_mg {
        Some(segs[3].to_string())
    } else if segs.len() >= 2 && segs[0].eq_ignore_ascii_case("subscriptions") {
        for len in (2..=segs.len()).rev() {
            out.push(normalize(&segs[..len].join("/")));
        }
        Some(
            arm.subscription(segs[1])
                .map(|s| s.management_group.clone())
                .unwrap_or_else(|| arm.root_mg.clone()),
        )
    } else {
        for len in (1..=segs.len()).rev() {
            out.push(normalize(&segs[..len].join("/")));
        }
        None
    };
    if let Some(mg) = mg_start {
        for name in arm.mg_chain(&mg) {
            out.push(normalize(&mg_id(&name)));
        }
    }
    out.push("/".into());
    out.dedup();
    out
}

/// 404s in ARM's words when a scope names a subscription, resource group, management group or
/// key vault the double does not have. Other resource types are not checked.
/// The index of an existing vault; its subscription and resource group must exist too, and
/// each missing one is named in the error as ARM does.
fn existing_vault(arm: &ArmState, sub: &str, rg: &str, name: &str) -> Result<usize, ApiError> {
    check_scope_exists(arm, &format!("/subscriptions/{sub}/resourceGroups/{rg}"))?;
    arm.vault_index(sub, rg, name)
        .ok_or_else(|| vault_not_found(rg, name))
}

pub fn check_scope_exists(arm: &ArmState, scope: &str) -> Result<(), ApiError> {
    let segs: Vec<&str> = scope.split('/').filter(|s| !s.is_empty()).collect();
    let is = |i: usize, name: &str| segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case(name));
    if is(0, "providers") && is(1, "Microsoft.Management") && is(2, "managementGroups") {
        if let Some(mg) = segs.get(3) {
            if arm.mg(mg).is_none() {
                return Err(mg_not_found(mg));
            }
        }
        return Ok(());
    }
    if !is(0, "subscriptions") {
        return Ok(());
    }
    let Some(sub) = segs.get(1) else {
        return Ok(());
    };
    if arm.subscription(sub).is_none() {
        return Err(subscription_not_found(sub));
    }
    if is(2, "resourceGroups") {
        if let Some(rg) = segs.get(3) {
            if arm.resource_group(sub, rg).is_none() {
                return Err(resource_group_not_found(rg));
            }
            if is(4, "providers") && is(5, "Microsoft.KeyVault") && is(6, "vaults") {
                if let Some(name) = segs.get(7) {
                    if arm.vault_index(sub, rg, name).is_none() {
                        return Err(vault_not_found(rg, name));
                    }
                }
            }
        }
    }
    Ok(())
}

fn subscription_not_found(id: &str) -> ApiError {
    ApiError::arm(
        StatusCode::NOT_FOUND,
        "SubscriptionNotFound",
        format!("The subscription '{id}' could not be found."),
    )
}

fn resource_group_not_found(name: &str) -> ApiError {
    ApiError::arm(
        StatusCode::NOT_FOUND,
        "ResourceGroupNotFound",
        format!("Resource group '{name}' could not be found."),
    )
}

fn mg_not_found(name: &str) -> ApiError {
    ApiError::arm(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("The management group '{name}' was not found."),
    )
}

fn vault_not_found(rg: &str, name: &str) -> ApiError {
    ApiError::arm(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!("The Resource 'Microsoft.KeyVault/vaults/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"),
    )
}

pub fn no_route(req: &Req) -> ApiError {
    ApiError::arm(
        StatusCode::NOT_FOUND,
        "InvalidResourceType",
        format!("The double has no {} route for '{}'.", req.method, req.path),
    )
}

/// Every ARM route checks its `api-version` against the versions listed for it.
pub fn api_version(req: &Req, supported: &[&str]) -> Result<(), ApiError> {
    match req.query.iter().find(|(k, _)| k == "api-version") {
        None => Err(ApiError::arm(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )),
        Some((_, v)) if supported.contains(&v.as_str()) => Ok(()),
        Some((_, v)) => Err(ApiError::arm(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{v}' is invalid. The supported versions are '{}'.",
                supported.join(",")
            ),
        )),
    }
}

pub fn handle(app: &App, req: &Req) -> ApiResult {
    let segs = &req.segments;
    // `{scope}/providers/Microsoft.Authorization/...`: the last such pair splits scope and rest.
    if let Some(i) = (0..segs.len().saturating_sub(1)).rev().find(|&i| {
        segs[i].eq_ignore_ascii_case("providers")
            && segs[i + 1].eq_ignore_ascii_case("Microsoft.Authorization")
    }) {
        let scope = format!("/{}", segs[..i].join("/"));
        return rbac::handle(app, req, &scope, &segs[i + 2..]);
    }
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let s = |i: usize| segs[i].as_str();
    let m = &req.method;
    match (m, l.as_slice()) {
        (&Method::GET, ["subscriptions"]) => list_subscriptions(app, req),
        (&Method::GET, ["subscriptions", _]) => get_subscription(app, req, s(1)),
        (&Method::GET, ["subscriptions", _, "resourcegroups"]) => {
            list_resource_groups(app, req, s(1))
        }
        (&Method::PUT, ["subscriptions", _, "resourcegroups", _]) => {
            put_resource_group(app, req, s(1), s(3))
        }
        (&Method::HEAD, ["subscriptions", _, "resourcegroups", _]) => {
            resource_group_exists(app, req, s(1), s(3))
        }
        (&Method::GET, ["subscriptions", _, "resourcegroups", _]) => {
            get_resource_group(app, req, s(1), s(3))
        }
        (&Method::GET, ["subscriptions", _, "providers", "microsoft.keyvault", "vaults"]) => {
            list_vaults(app, req, s(1), None)
        }
        (
            &Method::GET,
            ["subscriptions", _, "resourcegroups", _, "providers", "microsoft.keyvault", "vaults"],
        ) => list_vaults(app, req, s(1), Some(s(3))),
        (
            &Method::PUT,
            ["subscriptions", _, "resourcegroups", _, "providers", "microsoft.keyvault", "vaults", _],
        ) => put_vault(app, req, s(1), s(3), s(7)),
        (
            &Method::GET,
            ["subscriptions", _, "resourcegroups", _, "providers", "microsoft.keyvault", "vaults", _],
        ) => get_vault(app, req, s(1), s(3), s(7)),
        (
            &Method::DELETE,
            ["subscriptions", _, "resourcegroups", _, "providers", "microsoft.keyvault", "vaults", _],
        ) => delete_vault(app, req, s(1), s(3), s(7)),
        (
            &Method::PUT,
            ["subscriptions", _, "resourcegroups", _, "providers", "microsoft.keyvault", "vaults", _, "accesspolicies", op],
        ) => update_access_policies(app, req, s(1), s(3), s(7), op),
        (&Method::GET, ["providers", "microsoft.management", "managementgroups"]) => {
            list_mgs(app, req)
        }
        (&Method::PUT, ["providers", "microsoft.management", "managementgroups", _]) => {
            put_mg(app, req, s(3))
        }
        (&Method::GET, ["providers", "microsoft.management", "managementgroups", _]) => {
            get_mg(app, req, s(3))
        }
        (
            &Method::PUT,
            ["providers", "microsoft.management", "managementgroups", _, "subscriptions", _],
        ) => move_subscription(app, req, s(3), s(5)),
        (
            &Method::GET,
            ["providers", "microsoft.management", "managementgroups", _, "subscriptions", _],
        ) => get_mg_subscription(app, req, s(3), s(5)),
        (
            &Method::DELETE,
            ["providers", "microsoft.management", "managementgroups", _, "subscriptions", _],
        ) => remove_mg_subscription(app, req, s(3), s(5)),
        (&Method::PUT, ["providers", "microsoft.subscription", "aliases", _]) => {
            put_alias(app, req, s(3))
        }
        (&Method::GET, ["providers", "microsoft.subscription", "aliases", _]) => {
            get_alias(app, req, s(3))
        }
        _ => Err(no_route(req)),
    }
}

fn ok(value: Value) -> ApiResult {
    Ok(json_response(StatusCode::OK, value))
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

fn subscription_json(tenant: &str, sub: &Subscription) -> Value {
    json!({
        "id": format!("/subscriptions/{}", sub.id),
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": sub.id,
        "tenantId": tenant,
        "displayName": sub.display_name,
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
        "tags": sub.tags,
    })
}

fn list_subscriptions(app: &App, req: &Req) -> ApiResult {
    api_version(req, SUBSCRIPTIONS_API_VERSIONS)?;
    let state = app.lock();
    let items = state
        .arm
        .subscriptions
        .iter()
        .map(|s| subscription_json(&app.config.tenant_id, s))
        .collect();
    drop(state);
    ok(page(app, req, items, Flavor::Arm, None)?)
}

fn get_subscription(app: &App, req: &Req, id: &str) -> ApiResult {
    api_version(req, SUBSCRIPTIONS_API_VERSIONS)?;
    let state = app.lock();
    let sub = state
        .arm
        .subscription(id)
        .ok_or_else(|| subscription_not_found(id))?;
    ok(subscription_json(&app.config.tenant_id, sub))
}

#[derive(Deserialize)]
struct AliasBody {
    properties: Option<AliasProperties>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AliasProperties {
    display_name: Option<String>,
    workload: Option<String>,
    billing_scope: Option<String>,
    subscription_id: Option<String>,
    additional_properties: Option<AliasAdditional>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AliasAdditional {
    management_group_id: Option<String>,
    #[serde(default)]
    tags: Map<String, Value>,
}

fn alias_json(alias: &str, sub: &Subscription, root: &str) -> Value {
    json!({
        "id": format!("/providers/Microsoft.Subscription/aliases/{alias}"),
        "name": alias,
        "type": "Microsoft.Subscription/aliases",
        "properties": {
            "subscriptionId": sub.id,
            "displayName": sub.display_name,
            "provisioningState": "Succeeded",
            "acceptOwnershipState": "Completed",
            "managementGroupId": if sub.management_group.eq_ignore_ascii_case(root) {
                Value::Null
            } else {
                Value::String(mg_id(&sub.management_group))
            },
            "tags": sub.tags,
        }
    })
}

/// `PUT /providers/Microsoft.Subscription/aliases/{alias}`: creates a subscription (double:
/// with `properties.subscriptionId` when given, so tests choose the id).
fn put_alias(app: &App, req: &Req, alias: &str) -> ApiResult {
    api_version(req, ALIAS_API_VERSIONS)?;
    let body: AliasBody = req.json(Flavor::Arm)?;
    let props = body.properties.ok_or_else(|| {
        ApiError::arm(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content is missing 'properties'.",
        )
    })?;
    let mut state = app.lock();
    let arm = &mut state.arm;
    if let Some(existing) = arm.aliases.get(&alias.to_ascii_lowercase()) {
        let sub = arm
            .subscription(existing)
            .ok_or_else(|| subscription_not_found(existing))?;
        return ok(alias_json(alias, sub, &arm.root_mg));
    }
    let (mg, tags) = match props.additional_properties {
        Some(extra) => (extra.management_group_id, extra.tags),
        None => (None, Map::new()),
    };
    let mg = match mg {
        Some(mg) => {
            let name = mg.rsplit('/').next().unwrap_or(&mg).to_string();
            let found = arm.mg(&name).ok_or_else(|| mg_not_found(&name))?;
            found.name.clone()
        }
        None => arm.root_mg.clone(),
    };
    let id = match props.subscription_id {
        Some(id) if !rbac::is_guid(&id) => {
            return Err(ApiError::arm(
                StatusCode::BAD_REQUEST,
                "InvalidSubscriptionId",
                format!("The subscription id '{id}' is not a GUID."),
            ))
        }
        Some(id) => id.to_ascii_lowercase(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let _ = (props.workload, props.billing_scope);
    if arm.subscription(&id).is_none() {
        let display_name = props.display_name.ok_or_else(|| {
            ApiError::arm(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                "'properties.displayName' is required to create a subscription.",
            )
        })?;
        arm.subscriptions.push(Subscription {
            id: id.clone(),
            display_name,
            management_group: mg,
            tags,
        });
    }
    arm.aliases.insert(alias.to_ascii_lowercase(), id.clone());
    let sub = arm
        .subscription(&id)
        .ok_or_else(|| subscription_not_found(&id))?;
    Ok(json_response(
        StatusCode::CREATED,
        alias_json(alias, sub, &arm.root_mg),
    ))
}

fn get_alias(app: &App, req: &Req, alias: &str) -> ApiResult {
    api_version(req, ALIAS_API_VERSIONS)?;
    let state = app.lock();
    let arm = &state.arm;
    let id = arm
        .aliases
        .get(&alias.to_ascii_lowercase())
        .ok_or_else(|| {
            ApiError::arm(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("The alias '{alias}' was not found."),
            )
        })?;
    let sub = arm
        .subscription(id)
        .ok_or_else(|| subscription_not_found(id))?;
    ok(alias_json(alias, sub, &arm.root_mg))
}

// ---------------------------------------------------------------------------------------------
// Management groups

fn mg_json(app: &App, arm: &ArmState, mg: &ManagementGroup, expand_children: bool) -> Value {
    let parent = mg.parent.as_ref().map(|p| {
        json!({
            "id": mg_id(p),
            "name": p,
            "displayName": arm.mg(p).map(|m| m.display_name.clone()),
        })
    });
    let mut properties = json!({
        "tenantId": app.config.tenant_id,
        "displayName": mg.display_name,
        "details": {
            "version": 1,
            "updatedTime": mg.updated,
            "updatedBy": mg.updated_by,
            "parent": parent,
        },
    });
    if expand_children {
        let mut children: Vec<Value> = arm
            .management_groups
            .iter()
            .filter(|c| {
                c.parent
                    .as_deref()
                    .is_some_and(|p| p.eq_ignore_ascii_case(&mg.name))
            })
            .map(|c| {
                json!({
                    "type": "Microsoft.Management/managementGroups",
                    "id": mg_id(&c.name),
                    "name": c.name,
                    "displayName": c.display_name,
                })
            })
            .collect();
        children.extend(
            arm.subscriptions
                .iter()
                .filter(|s| s.management_group.eq_ignore_ascii_case(&mg.name))
                .map(|s| {
                    json!({
                        "type": "/subscriptions",
                        "id": format!("/subscriptions/{}", s.id),
                        "name": s.id,
                        "displayName": s.display_name,
                    })
                }),
        );
        if let Some(map) = properties.as_object_mut() {
            map.insert("children".into(), Value::Array(children));
        }
    }
    json!({
        "id": mg_id(&mg.name),
        "type": "Microsoft.Management/managementGroups",
        "name": mg.name,
        "properties": properties,
    })
}

fn list_mgs(app: &App, req: &Req) -> ApiResult {
    api_version(req, MANAGEMENT_GROUPS_API_VERSIONS)?;
    let state = app.lock();
    let items = state
        .arm
        .management_groups
        .iter()
        .map(|m| {
            json!({
                "id": mg_id(&m.name),
                "type": "Microsoft.Management/managementGroups",
                "name": m.name,
                "properties": {"tenantId": app.config.tenant_id, "displayName": m.display_name},
            })
        })
        .collect();
    drop(state);
    ok(page(app, req, items, Flavor::Arm, None)?)
}

fn get_mg(app: &App, req: &Req, name: &str) -> ApiResult {
    api_version(req, MANAGEMENT_GROUPS_API_VERSIONS)?;
    let expand = req.q("$expand").is_some_and(|e| {
        e.split(',')
            .any(|x| x.trim().eq_ignore_ascii_case("children"))
    });
    let state = app.lock();
    let mg = state.arm.mg(name).ok_or_else(|| mg_not_found(name))?;
    ok(mg_json(app, &state.arm, mg, expand))
}

#[derive(Deserialize)]
struct MgBody {
    properties: Option<MgProperties>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MgProperties {
    display_name: Option<String>,
    details: Option<MgDetails>,
}

#[derive(Deserialize)]
struct MgDetails {
    parent: Option<MgParent>,
}

#[derive(Deserialize)]
struct MgParent {
    id: Option<String>,
}

fn put_mg(app: &App, req: &Req, name: &str) -> ApiResult {
    api_version(req, MANAGEMENT_GROUPS_API_VERSIONS)?;
    let body: MgBody = req.json(Flavor::Arm)?;
    let props = body.properties.unwrap_or(MgProperties {
        display_name: None,
        details: None,
    });
    let parent_id = props.details.and_then(|d| d.parent).and_then(|p| p.id);
    let mut state = app.lock();
    let arm = &mut state.arm;
    if name.eq_ignore_ascii_case(&arm.root_mg) {
        return Err(ApiError::arm(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The tenant root management group cannot be modified by the double.",
        ));
    }
    let parent = match parent_id {
        Some(id) => {
            let parent_name = id
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(&id)
                .to_string();
            let found = arm.mg(&parent_name).ok_or_else(|| {
                ApiError::arm(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("The parent management group '{parent_name}' was not found."),
                )
            })?;
            let parent_name = found.name.clone();
            if arm
                .mg_chain(&parent_name)
                .iter()
                .any(|m| m.eq_ignore_ascii_case(name))
            {
                return Err(ApiError::arm(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("Moving '{name}' under '{parent_name}' would create a cycle."),
                ));
            }
            parent_name
        }
        None => arm
            .mg(name)
            .and_then(|m| m.parent.clone())
            .unwrap_or_else(|| arm.root_mg.clone()),
    };
    let now = now_arm();
    match arm
        .management_groups
        .iter_mut()
        .find(|m| m.name.eq_ignore_ascii_case(name))
    {
        Some(existing) => {
            if let Some(d) = props.display_name {
                existing.display_name = d;
            }
            existing.parent = Some(parent);
            existing.updated = now;
            existing.updated_by = req.caller.clone();
        }
        None => {
            arm.management_groups.push(ManagementGroup {
                name: name.to_string(),
                display_name: props.display_name.unwrap_or_else(|| name.to_string()),
                parent: Some(parent),
                updated: now,
                updated_by: req.caller.clone(),
            });
        }
    }
    // ARM answers 200 (or 202 while it works asynchronously); the double is always done.
    let mg = arm.mg(name).ok_or_else(|| mg_not_found(name))?;
    ok(mg_json(app, arm, mg, false))
}

fn mg_subscription_json(app: &App, mg: &str, sub: &Subscription) -> Value {
    json!({
        "id": format!("{}/subscriptions/{}", mg_id(mg), sub.id),
        "type": "Microsoft.Management/managementGroups/subscriptions",
        "name": sub.id,
        "properties": {
            "commonName": sub.display_name,
            "displayName": sub.display_name,
            "parent": {"id": mg_id(&sub.management_group)},
            "state": "Active",
            "tenant": app.config.tenant_id,
        },
    })
}

fn move_subscription(app: &App, req: &Req, mg: &str, sub_id: &str) -> ApiResult {
    api_version(req, MANAGEMENT_GROUPS_API_VERSIONS)?;
    let mut state = app.lock();
    let arm = &mut state.arm;
    let mg_name = arm.mg(mg).ok_or_else(|| mg_not_found(mg))?.name.clone();
    let sub = arm
        .subscriptions
        .iter_mut()
        .find(|s| s.id.eq_ignore_ascii_case(sub_id))
        .ok_or_else(|| subscription_not_found(sub_id))?;
    sub.management_group = mg_name.clone();
    let sub = arm
        .subscription(sub_id)
        .ok_or_else(|| subscription_not_found(sub_id))?;
    ok(mg_subscription_json(app, &mg_name, sub))
}

fn get_mg_subscription(app: &App, req: &Req, mg: &str, sub_id: &str) -> ApiResult {
    api_version(req, MANAGEMENT_GROUPS_API_VERSIONS)?;
    let state = app.lock();
    let arm = &state.arm;
    let mg_name = arm.mg(mg).ok_or_else(|| mg_not_found(mg))?.name.clone();
    let sub = arm
        .subscription(sub_id)
        .filter(|s| s.management_group.eq_ignore_ascii_case(&mg_name))
        .ok_or_else(|| subscription_not_found(sub_id))?;
    ok(mg_subscription_json(app, &mg_name, sub))
}

fn remove_mg_subscription(app: &App, req: &Req, mg: &str, sub_id: &str) -> ApiResult {
    api_version(req, MANAGEMENT_GROUPS_API_VERSIONS)?;
    let mut state = app.lock();
    let arm = &mut state.arm;
    let root = arm.root_mg.clone();
    let mg_name = arm.mg(mg).ok_or_else(|| mg_not_found(mg))?.name.clone();
    match arm
        .subscriptions
        .iter_mut()
        .find(|s| s.id.eq_ignore_ascii_case(sub_id))
    {
        Some(sub) if sub.management_group.eq_ignore_ascii_case(&mg_name) => {
            sub.management_group = root;
            Ok(json_response(StatusCode::OK, json!({})))
        }
        _ => Ok(no_content()),
    }
}

// ---------------------------------------------------------------------------------------------
// Resource groups

fn rg_json(rg: &ResourceGroup) -> Value {
    json!({
        "id": format!("/subscriptions/{}/resourceGroups/{}", rg.subscription, rg.name),
        "name": rg.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": rg.location,
        "properties": {"provisioningState": "Succeeded"},
        "tags": rg.tags,
    })
}

#[derive(Deserialize)]
struct RgBody {
    location: Option<String>,
    #[serde(default)]
    tags: Map<String, Value>,
}

fn put_resource_group(app: &App, req: &Req, sub: &str, name: &str) -> ApiResult {
    api_version(req, RESOURCE_GROUPS_API_VERSIONS)?;
    let body: RgBody = req.json(Flavor::Arm)?;
    let location = body.location.filter(|l| !l.is_empty()).ok_or_else(|| {
        ApiError::arm(
            StatusCode::BAD_REQUEST,
            "LocationRequired",
            "The location property is required for this definition.",
        )
    })?;
    let mut state = app.lock();
    let arm = &mut state.arm;
    let sub_id = arm
        .subscription(sub)
        .ok_or_else(|| subscription_not_found(sub))?
        .id
        .clone();
    if let Some(existing) = arm
        .resource_groups
        .iter_mut()
        .find(|r| r.subscription.eq_ignore_ascii_case(sub) && r.name.eq_ignore_ascii_case(name))
    {
        if !existing.location.eq_ignore_ascii_case(&location) {
            return Err(ApiError::arm(
                StatusCode::CONFLICT,
                "InvalidResourceGroupLocation",
                format!(
                    "Invalid resource group location '{location}'. The Resource group already exists in location '{}'.",
                    existing.location
                ),
            ));
        }
        existing.tags = body.tags;
        return ok(rg_json(existing));
    }
    let rg = ResourceGroup {
        subscription: sub_id,
        name: name.to_string(),
        location,
        tags: body.tags,
    };
    let value = rg_json(&rg);
    arm.resource_groups.push(rg);
    Ok(json_response(StatusCode::CREATED, value))
}

fn get_resource_group(app: &App, req: &Req, sub: &str, name: &str) -> ApiResult {
    api_version(req, RESOURCE_GROUPS_API_VERSIONS)?;
    let state = app.lock();
    if state.arm.subscription(sub).is_none() {
        return Err(subscription_not_found(sub));
    }
    let rg = state
        .arm
        .resource_group(sub, name)
        .ok_or_else(|| resource_group_not_found(name))?;
    ok(rg_json(rg))
}

/// `HEAD .../resourcegroups/{rg}` (ResourceGroups_CheckExistence): 204 or 404, no body.
fn resource_group_exists(app: &App, req: &Req, sub: &str, name: &str) -> ApiResult {
    api_version(req, RESOURCE_GROUPS_API_VERSIONS)?;
    let state = app.lock();
    let status = if state.arm.resource_group(sub, name).is_some() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    };
    Ok(axum::response::IntoResponse::into_response(status))
}

fn list_resource_groups(app: &App, req: &Req, sub: &str) -> ApiResult {
    api_version(req, RESOURCE_GROUPS_API_VERSIONS)?;
    let state = app.lock();
    if state.arm.subscription(sub).is_none() {
        return Err(subscription_not_found(sub));
    }
    let items = state
        .arm
        .resource_groups
        .iter()
        .filter(|r| r.subscription.eq_ignore_ascii_case(sub))
        .map(rg_json)
        .collect();
    drop(state);
    ok(page(app, req, items, Flavor::Arm, None)?)
}

// ---------------------------------------------------------------------------------------------
// Key Vault management plane

fn vault_id(v: &Vault) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults/{}",
        v.subscription, v.resource_group, v.name
    )
}

fn vault_json(app: &App, v: &Vault) -> Value {
    let p = &v.properties;
    json!({
        "id": vault_id(v),
        "name": v.name,
        "type": "Microsoft.KeyVault/vaults",
        "location": v.location,
        "tags": v.tags,
        "systemData": {
            "createdBy": v.created_by,
            "createdByType": "Application",
            "createdAt": v.created,
            "lastModifiedBy": v.modified_by,
            "lastModifiedByType": "Application",
            "lastModifiedAt": v.modified,
        },
        "properties": {
            "sku": p.sku,
            "tenantId": p.tenant_id,
            "accessPolicies": p.access_policies,
            "enabledForDeployment": p.enabled_for_deployment,
            "enabledForDiskEncryption": p.enabled_for_disk_encryption,
            "enabledForTemplateDeployment": p.enabled_for_template_deployment,
            "enableSoftDelete": p.enable_soft_delete,
            "softDeleteRetentionInDays": p.soft_delete_retention_in_days,
            "enableRbacAuthorization": p.enable_rbac_authorization,
            "enablePurgeProtection": p.enable_purge_protection,
            "vaultUri": format!(
                "https://{}.{}:{}/",
                v.name.to_ascii_lowercase(),
                app.config.vault_dns_suffix,
                app.vault_port
            ),
            "provisioningState": "Succeeded",
            "publicNetworkAccess": p.public_network_access,
        }
    })
}

#[derive(Deserialize)]
struct VaultBody {
    location: Option<String>,
    #[serde(default)]
    tags: Map<String, Value>,
    properties: Option<VaultPropertiesInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VaultPropertiesInput {
    tenant_id: Option<String>,
    sku: Option<Sku>,
    access_policies: Option<Vec<AccessPolicy>>,
    enable_rbac_authorization: Option<bool>,
    enable_soft_delete: Option<bool>,
    soft_delete_retention_in_days: Option<u32>,
    enable_purge_protection: Option<bool>,
    enabled_for_deployment: Option<bool>,
    enabled_for_disk_encryption: Option<bool>,
    enabled_for_template_deployment: Option<bool>,
    public_network_access: Option<String>,
}

fn valid_vault_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=24).contains(&bytes.len())
        && bytes[0].is_ascii_alphabetic()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && !name.contains("--")
}

fn put_vault(app: &App, req: &Req, sub: &str, rg: &str, name: &str) -> ApiResult {
    api_version(req, KEY_VAULT_API_VERSIONS)?;
    let bad = |code: &str, message: String| ApiError::arm(StatusCode::BAD_REQUEST, code, message);
    if !valid_vault_name(name) {
        return Err(bad(
            "VaultNameNotValid",
            format!("The vault name '{name}' is invalid. A vault's name must be between 3-24 alphanumeric characters. The name must begin with a letter, end with a letter or digit, and not contain consecutive hyphens."),
        ));
    }
    let body: VaultBody = req.json(Flavor::Arm)?;
    let location = body.location.filter(|l| !l.is_empty()).ok_or_else(|| {
        bad(
            "LocationRequired",
            "The location property is required for this definition.".into(),
        )
    })?;
    let props = body.properties.ok_or_else(|| {
        bad(
            "InvalidRequestContent",
            "The request content is missing 'properties'.".into(),
        )
    })?;
    let tenant_id = props.tenant_id.ok_or_else(|| {
        bad(
            "BadRequest",
            "The 'properties.tenantId' property is required.".into(),
        )
    })?;
    let sku = props.sku.ok_or_else(|| {
        bad(
            "BadRequest",
            "The 'properties.sku' property is required.".into(),
        )
    })?;
    if !(sku.name.eq_ignore_ascii_case("standard") || sku.name.eq_ignore_ascii_case("premium"))
        || !sku.family.eq_ignore_ascii_case("A")
    {
        return Err(bad(
            "BadRequest",
            format!("Invalid sku: family '{}', name '{}'. Expected family 'A' and name 'standard' or 'premium'.", sku.family, sku.name),
        ));
    }
    if let Some(retention) = props.soft_delete_retention_in_days {
        if !(7..=90).contains(&retention) {
            return Err(bad(
                "BadRequest",
                format!("softDeleteRetentionInDays must be between 7 and 90, got {retention}."),
            ));
        }
    }
    let mut state = app.lock();
    let arm = &mut state.arm;
    let sub_id = arm
        .subscription(sub)
        .ok_or_else(|| subscription_not_found(sub))?
        .id
        .clone();
    let rg_name = arm
        .resource_group(sub, rg)
        .ok_or_else(|| resource_group_not_found(rg))?
        .name
        .clone();
    let now = now_arm();
    let existing = arm.vault_index(sub, rg, name);
    if existing.is_none() && arm.vaults.iter().any(|v| v.name.eq_ignore_ascii_case(name)) {
        return Err(ApiError::arm(
            StatusCode::CONFLICT,
            "VaultAlreadyExists",
            format!("The vault name '{name}' is already in use. Vault names are globally unique."),
        ));
    }
    let previous = existing.map(|i| arm.vaults[i].properties.clone());
    let properties = VaultProperties {
        tenant_id,
        sku,
        access_policies: props
            .access_policies
            .or_else(|| previous.as_ref().map(|p| p.access_policies.clone()))
            .unwrap_or_default(),
        enable_rbac_authorization: props
            .enable_rbac_authorization
            .or(previous.as_ref().map(|p| p.enable_rbac_authorization))
            .unwrap_or(false),
        enable_soft_delete: props.enable_soft_delete.unwrap_or(true),
        soft_delete_retention_in_days: props.soft_delete_retention_in_days.unwrap_or(90),
        enable_purge_protection: props.enable_purge_protection,
        enabled_for_deployment: props.enabled_for_deployment.unwrap_or(false),
        enabled_for_disk_encryption: props.enabled_for_disk_encryption.unwrap_or(false),
        enabled_for_template_deployment: props.enabled_for_template_deployment.unwrap_or(false),
        public_network_access: props
            .public_network_access
            .unwrap_or_else(|| "Enabled".into()),
    };
    let (status, index) = match existing {
        Some(i) => {
            let v = &mut arm.vaults[i];
            v.location = location;
            v.tags = body.tags;
            v.properties = properties;
            v.modified = now;
            v.modified_by = req.caller.clone();
            (StatusCode::OK, i)
        }
        None => {
            arm.vaults.push(Vault {
                subscription: sub_id,
                resource_group: rg_name,
                name: name.to_string(),
                location,
                tags: body.tags,
                properties,
                created: now.clone(),
                created_by: req.caller.clone(),
                modified: now,
                modified_by: req.caller.clone(),
            });
            (StatusCode::CREATED, arm.vaults.len() - 1)
        }
    };
    Ok(json_response(status, vault_json(app, &arm.vaults[index])))
}

fn get_vault(app: &App, req: &Req, sub: &str, rg: &str, name: &str) -> ApiResult {
    api_version(req, KEY_VAULT_API_VERSIONS)?;
    let state = app.lock();
    let i = existing_vault(&state.arm, sub, rg, name)?;
    ok(vault_json(app, &state.arm.vaults[i]))
}

fn delete_vault(app: &App, req: &Req, sub: &str, rg: &str, name: &str) -> ApiResult {
    api_version(req, KEY_VAULT_API_VERSIONS)?;
    let mut state = app.lock();
    check_scope_exists(
        &state.arm,
        &format!("/subscriptions/{sub}/resourceGroups/{rg}"),
    )?;
    match state.arm.vault_index(sub, rg, name) {
        Some(i) => {
            let removed = state.arm.vaults.remove(i);
            // Its secrets, keys and certificates go too (no soft-deleted vaults here).
            state.kv.remove(&removed.name.to_ascii_lowercase());
            let id = normalize(&vault_id(&removed));
            // Role assignments at (or below) a deleted resource go with it.
            state.arm.role_assignments.retain(|a| {
                let scope = normalize(&a.scope);
                scope != id && !scope.starts_with(&format!("{id}/"))
            });
            Ok(json_response(StatusCode::OK, json!({})))
        }
        None => Ok(no_content()),
    }
}

fn list_vaults(app: &App, req: &Req, sub: &str, rg: Option<&str>) -> ApiResult {
    api_version(req, KEY_VAULT_API_VERSIONS)?;
    let state = app.lock();
    let scope = match rg {
        Some(rg) => format!("/subscriptions/{sub}/resourceGroups/{rg}"),
        None => format!("/subscriptions/{sub}"),
    };
    check_scope_exists(&state.arm, &scope)?;
    let items = state
        .arm
        .vaults
        .iter()
        .filter(|v| {
            v.subscription.eq_ignore_ascii_case(sub)
                && rg.is_none_or(|rg| v.resource_group.eq_ignore_ascii_case(rg))
        })
        .map(|v| vault_json(app, v))
        .collect();
    drop(state);
    ok(page(app, req, items, Flavor::Arm, None)?)
}

#[derive(Deserialize)]
struct AccessPolicyBody {
    properties: Option<AccessPolicyList>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccessPolicyList {
    access_policies: Option<Vec<AccessPolicy>>,
}

fn contains_ci(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x.eq_ignore_ascii_case(item))
}

/// `PUT .../vaults/{name}/accessPolicies/{add|replace|remove}`.
fn update_access_policies(
    app: &App,
    req: &Req,
    sub: &str,
    rg: &str,
    name: &str,
    op: &str,
) -> ApiResult {
    api_version(req, KEY_VAULT_API_VERSIONS)?;
    let op = op.to_ascii_lowercase();
    if !matches!(op.as_str(), "add" | "replace" | "remove") {
        return Err(ApiError::arm(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "The access policy operation '{op}' is invalid. Use 'add', 'replace' or 'remove'."
            ),
        ));
    }
    let body: AccessPolicyBody = req.json(Flavor::Arm)?;
    let policies = body
        .properties
        .and_then(|p| p.access_policies)
        .ok_or_else(|| {
            ApiError::arm(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "The request must contain 'properties.accessPolicies'.",
            )
        })?;
    let mut state = app.lock();
    let i = existing_vault(&state.arm, sub, rg, name)?;
    let vault = &mut state.arm.vaults[i];
    let current = &mut vault.properties.access_policies;
    for policy in &policies {
        let existing = current.iter_mut().find(|p| p.same_identity(policy));
        match (op.as_str(), existing) {
            ("add", Some(existing)) => {
                let mut incoming = policy.permissions.clone();
                for (have, add) in existing
                    .permissions
                    .categories_mut()
                    .into_iter()
                    .zip(incoming.categories_mut())
                {
                    for p in add.iter() {
                        if !contains_ci(have, p) {
                            have.push(p.clone());
                        }
                    }
                }
            }
            ("replace", Some(existing)) => existing.permissions = policy.permissions.clone(),
            ("add" | "replace", None) => current.push(policy.clone()),
            ("remove", Some(existing)) => {
                let mut incoming = policy.permissions.clone();
                for (have, remove) in existing
                    .permissions
                    .categories_mut()
                    .into_iter()
                    .zip(incoming.categories_mut())
                {
                    have.retain(|p| !contains_ci(remove, p));
                }
            }
            _ => {}
        }
    }
    // A policy left without any permission is removed, as ARM does.
    current.retain(|p| !p.permissions.is_empty());
    vault.modified = now_arm();
    vault.modified_by = req.caller.clone();
    let id = format!("{}/accessPolicies/{op}", vault_id(vault));
    ok(json!({
        "id": id,
        "type": "Microsoft.KeyVault/vaults/accessPolicies",
        "properties": {"accessPolicies": policies},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm_with_hierarchy() -> ArmState {
        let mut arm = ArmState::default();
        arm.init_root("tenant");
        arm.management_groups.push(ManagementGroup {
            name: "corp".into(),
            display_name: "Corp".into(),
            parent: Some("tenant".into()),
            updated: String::new(),
            updated_by: String::new(),
        });
        arm.subscriptions.push(Subscription {
            id: "sub1".into(),
            display_name: "Sub".into(),
            management_group: "corp".into(),
            tags: Map::new(),
        });
        arm
    }

    #[test]
    fn ancestors_of_a_resource_reach_the_tenant_root_through_management_groups() {
        let arm = arm_with_hierarchy();
        let a = ancestors(
            &arm,
            "/subscriptions/SUB1/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
        );
        assert!(a.contains(&"/subscriptions/sub1/resourcegroups/rg".to_string()));
        assert!(a.contains(&"/subscriptions/sub1".to_string()));
        assert!(a.contains(&"/providers/microsoft.management/managementgroups/corp".to_string()));
        assert!(a.contains(&"/providers/microsoft.management/managementgroups/tenant".to_string()));
        assert_eq!(a.last().map(String::as_str), Some("/"));
    }

    #[test]
    fn vault_names_follow_the_rules() {
        assert!(valid_vault_name("kv-demo-1"));
        assert!(!valid_vault_name("1kv"));
        assert!(!valid_vault_name("kv--x"));
        assert!(!valid_vault_name("kv-"));
        assert!(!valid_vault_name("ab"));
    }
}
