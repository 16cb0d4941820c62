//! Microsoft Graph v1.0 under `/v1.0`: users, groups (nested), applications and service
//! principals, with their relationships (manager, members, memberOf, transitive closures,
//! owners, ownedObjects), password credentials and sign-in session revocation. Role management
//! and delegated grants are routed to `entra_roles`, a user's authentication methods to
//! `auth_methods`, app-role assignments to `app_roles`.

use std::collections::{HashMap, HashSet, VecDeque};

use axum::http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::app_roles::{self, AppRole, AppRoleAssignment, Side, GRAPH_APP_ID};
use crate::auth::SecretCheck;
use crate::http::{json_response, no_content, now_graph, page, ApiError, ApiResult, Flavor, Req};
use crate::state::App;

#[derive(Default)]
pub struct GraphState {
    objects: HashMap<String, DirObject>,
    /// Creation order, so lists are stable.
    order: Vec<String>,
    /// Service principals granted app roles of other service principals (application
    /// permissions, e.g. Microsoft Graph's).
    pub app_role_assignments: Vec<AppRoleAssignment>,
}

enum DirObject {
    User(User),
    Group(Group),
    Application(Application),
    ServicePrincipal(ServicePrincipal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    User,
    Group,
    Application,
    ServicePrincipal,
}

impl Kind {
    fn odata_type(self) -> &'static str {
        match self {
            Kind::User => "#microsoft.graph.user",
            Kind::Group => "#microsoft.graph.group",
            Kind::Application => "#microsoft.graph.application",
            Kind::ServicePrincipal => "#microsoft.graph.servicePrincipal",
        }
    }
    fn entity_set(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Group => "groups",
            Kind::Application => "applications",
            Kind::ServicePrincipal => "servicePrincipals",
        }
    }
    fn resource_name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
            Kind::Application => "Application",
            Kind::ServicePrincipal => "ServicePrincipal",
        }
    }
    /// Properties `$filter` supports in the double.
    fn filterable(self) -> &'static [&'static str] {
        match self {
            Kind::User => &[
                "id",
                "mail",
                "userPrincipalName",
                "employeeId",
                "displayName",
                "accountEnabled",
                "mailNickname",
            ],
            Kind::Group => &["id", "displayName", "mailNickname", "securityEnabled"],
            Kind::Application | Kind::ServicePrincipal => &["id", "appId", "displayName"],
        }
    }
    /// Properties returned without `$select` (Graph's default set).
    fn default_properties(self) -> Option<&'static [&'static str]> {
        match self {
            Kind::User => Some(&[
                "businessPhones",
                "displayName",
                "givenName",
                "jobTitle",
                "mail",
                "mobilePhone",
                "officeLocation",
                "preferredLanguage",
                "surname",
                "userPrincipalName",
                "id",
            ]),
            _ => None,
        }
    }
}

struct User {
    id: String,
    user_principal_name: String,
    display_name: String,
    mail_nickname: String,
    mail: Option<String>,
    given_name: Option<String>,
    surname: Option<String>,
    job_title: Option<String>,
    department: Option<String>,
    employee_id: Option<String>,
    account_enabled: bool,
    created: String,
    sign_in_sessions_valid_from: String,
    manager: Option<String>,
}

struct Group {
    id: String,
    display_name: String,
    description: Option<String>,
    mail_enabled: bool,
    mail_nickname: String,
    security_enabled: bool,
    group_types: Vec<String>,
    created: String,
    members: Vec<String>,
    owners: Vec<String>,
}

struct PasswordCredential {
    key_id: String,
    display_name: Option<String>,
    hint: String,
    start: String,
    end: String,
    /// Kept only so the token endpoint can check it; never returned after `addPassword`.
    secret: String,
}

#[derive(Clone)]
struct KeyCredential {
    key_id: String,
    display_name: Option<String>,
    custom_key_identifier: Option<String>,
    key_type: String,
    usage: String,
    start: String,
    end: String,
    key: Option<String>,
}

struct Application {
    id: String,
    app_id: String,
    display_name: String,
    description: Option<String>,
    sign_in_audience: String,
    created: String,
    passwords: Vec<PasswordCredential>,
    keys: Vec<KeyCredential>,
    owners: Vec<String>,
}

pub struct ServicePrincipal {
    pub id: String,
    pub app_id: String,
    pub display_name: String,
    account_enabled: bool,
    passwords: Vec<PasswordCredential>,
    keys: Vec<KeyCredential>,
    owners: Vec<String>,
    /// The app roles it offers (Microsoft Graph's application permissions; empty for the
    /// tenant's own applications).
    pub app_roles: Vec<AppRole>,
    /// The tenant of its application: this one, or Microsoft's for Microsoft Graph.
    app_owner_tenant: Option<String>,
}

impl DirObject {
    fn kind(&self) -> Kind {
        match self {
            DirObject::User(_) => Kind::User,
            DirObject::Group(_) => Kind::Group,
            DirObject::Application(_) => Kind::Application,
            DirObject::ServicePrincipal(_) => Kind::ServicePrincipal,
        }
    }
    fn owners(&self) -> Option<&Vec<String>> {
        match self {
            DirObject::Group(g) => Some(&g.owners),
            DirObject::Application(a) => Some(&a.owners),
            DirObject::ServicePrincipal(s) => Some(&s.owners),
            DirObject::User(_) => None,
        }
    }
    fn owners_mut(&mut self) -> Option<&mut Vec<String>> {
        match self {
            DirObject::Group(g) => Some(&mut g.owners),
            DirObject::Application(a) => Some(&mut a.owners),
            DirObject::ServicePrincipal(s) => Some(&mut s.owners),
            DirObject::User(_) => None,
        }
    }
}

fn password_json(p: &PasswordCredential, secret: Option<&str>) -> Value {
    json!({
        "customKeyIdentifier": null,
        "displayName": p.display_name,
        "endDateTime": p.end,
        "hint": p.hint,
        "keyId": p.key_id,
        "secretText": secret,
        "startDateTime": p.start,
    })
}

fn key_json(k: &KeyCredential, with_key: bool) -> Value {
    json!({
        "customKeyIdentifier": k.custom_key_identifier,
        "displayName": k.display_name,
        "endDateTime": k.end,
        "key": if with_key { k.key.clone() } else { None },
        "keyId": k.key_id,
        "startDateTime": k.start,
        "type": k.key_type,
        "usage": k.usage,
    })
}

impl GraphState {
    /// What every tenant has before anyone writes to it: Microsoft Graph's service principal
    /// (with its application permissions as app roles), and an application with a service
    /// principal for each configured client (application id = the client id), holding no role
    /// and no app role until they are granted through ARM and Graph.
    pub fn init(&mut self, client_ids: &[&str]) {
        let now = now_graph();
        let graph_id = uuid::Uuid::new_v4().to_string();
        self.insert(
            graph_id.clone(),
            DirObject::ServicePrincipal(ServicePrincipal {
                id: graph_id,
                app_id: GRAPH_APP_ID.to_string(),
                display_name: "Microsoft Graph".into(),
                account_enabled: true,
                passwords: Vec::new(),
                keys: Vec::new(),
                owners: Vec::new(),
                app_roles: app_roles::graph_app_roles(),
                app_owner_tenant: Some(app_roles::MICROSOFT_TENANT_ID.into()),
            }),
        );
        for client in client_ids {
            let app_object = uuid::Uuid::new_v4().to_string();
            self.insert(
                app_object.clone(),
                DirObject::Application(Application {
                    id: app_object,
                    app_id: client.to_string(),
                    display_name: client.to_string(),
                    description: None,
                    sign_in_audience: "AzureADMyOrg".into(),
                    created: now.clone(),
                    passwords: Vec::new(),
                    keys: Vec::new(),
                    owners: Vec::new(),
                }),
            );
            let sp = uuid::Uuid::new_v4().to_string();
            self.insert(
                sp.clone(),
                DirObject::ServicePrincipal(ServicePrincipal {
                    id: sp,
                    app_id: client.to_string(),
                    display_name: client.to_string(),
                    account_enabled: true,
                    passwords: Vec::new(),
                    keys: Vec::new(),
                    owners: Vec::new(),
                    app_roles: Vec::new(),
                    app_owner_tenant: None,
                }),
            );
        }
    }

    /// The service principal with object id `key`.
    pub fn service_principal(&self, key: &str) -> Option<&ServicePrincipal> {
        match self.objects.get(key) {
            Some(DirObject::ServicePrincipal(s)) => Some(s),
            _ => None,
        }
    }

    /// The object id of the service principal of application `app_id` (a token's client).
    pub fn service_principal_id(&self, app_id: &str) -> Option<String> {
        self.find_sp_by_app_id(app_id).map(|s| s.id.clone())
    }

    fn insert(&mut self, id: String, object: DirObject) {
        self.order.push(id.clone());
        self.objects.insert(id, object);
    }

    /// Every property of an object, as Graph names them.
    fn full_json(&self, tenant: &str, object: &DirObject, with_key: bool) -> Value {
        match object {
            DirObject::User(u) => json!({
                "id": u.id,
                "businessPhones": [],
                "displayName": u.display_name,
                "givenName": u.given_name,
                "jobTitle": u.job_title,
                "mail": u.mail,
                "mobilePhone": null,
                "officeLocation": null,
                "preferredLanguage": null,
                "surname": u.surname,
                "userPrincipalName": u.user_principal_name,
                "accountEnabled": u.account_enabled,
                "createdDateTime": u.created,
                "department": u.department,
                "employeeId": u.employee_id,
                "mailNickname": u.mail_nickname,
                "signInSessionsValidFromDateTime": u.sign_in_sessions_valid_from,
                "userType": "Member",
            }),
            DirObject::Group(g) => json!({
                "id": g.id,
                "createdDateTime": g.created,
                "deletedDateTime": null,
                "description": g.description,
                "displayName": g.display_name,
                "groupTypes": g.group_types,
                "mail": null,
                "mailEnabled": g.mail_enabled,
                "mailNickname": g.mail_nickname,
                "securityEnabled": g.security_enabled,
                "visibility": null,
            }),
            DirObject::Application(a) => json!({
                "id": a.id,
                "appId": a.app_id,
                "createdDateTime": a.created,
                "deletedDateTime": null,
                "description": a.description,
                "displayName": a.display_name,
                "identifierUris": [],
                "signInAudience": a.sign_in_audience,
                "tags": [],
                "keyCredentials": a.keys.iter().map(|k| key_json(k, with_key)).collect::<Vec<_>>(),
                "passwordCredentials": a.passwords.iter().map(|p| password_json(p, None)).collect::<Vec<_>>(),
            }),
            DirObject::ServicePrincipal(s) => {
                let app_name = self
                    .find_app_by_app_id(&s.app_id)
                    .map(|a| a.display_name.clone());
                json!({
                    "id": s.id,
                    "accountEnabled": s.account_enabled,
                    "appDisplayName": app_name,
                    "appId": s.app_id,
                    "appOwnerOrganizationId": s.app_owner_tenant.as_deref().unwrap_or(tenant),
                    "appRoles": s.app_roles.iter().map(AppRole::to_json).collect::<Vec<_>>(),
                    "deletedDateTime": null,
                    "displayName": s.display_name,
                    "servicePrincipalNames": [s.app_id],
                    "servicePrincipalType": "Application",
                    "tags": [],
                    "keyCredentials": s.keys.iter().map(|k| key_json(k, with_key)).collect::<Vec<_>>(),
                    "passwordCredentials": s.passwords.iter().map(|p| password_json(p, None)).collect::<Vec<_>>(),
                })
            }
        }
    }

    fn find_app_by_app_id(&self, app_id: &str) -> Option<&Application> {
        self.objects.values().find_map(|o| match o {
            DirObject::Application(a) if a.app_id.eq_ignore_ascii_case(app_id) => Some(a),
            _ => None,
        })
    }

    fn find_sp_by_app_id(&self, app_id: &str) -> Option<&ServicePrincipal> {
        self.objects.values().find_map(|o| match o {
            DirObject::ServicePrincipal(s) if s.app_id.eq_ignore_ascii_case(app_id) => Some(s),
            _ => None,
        })
    }

    /// A user by object id or userPrincipalName.
    fn user_id(&self, key: &str) -> Option<String> {
        if let Some(DirObject::User(u)) = self.objects.get(key) {
            return Some(u.id.clone());
        }
        self.objects.values().find_map(|o| match o {
            DirObject::User(u) if u.user_principal_name.eq_ignore_ascii_case(key) => {
                Some(u.id.clone())
            }
            _ => None,
        })
    }

    fn object_of_kind(&self, kind: Kind, key: &str) -> Option<String> {
        if kind == Kind::User {
            return self.user_id(key);
        }
        self.objects
            .get(key)
            .filter(|o| o.kind() == kind)
            .map(|_| key.to_string())
    }

    /// Groups that directly contain `id`.
    fn direct_parents(&self, id: &str) -> Vec<String> {
        self.order
            .iter()
            .filter(|gid| match self.objects.get(*gid) {
                Some(DirObject::Group(g)) => g.members.iter().any(|m| m == id),
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// Groups that contain `id` directly or through nested groups.
    fn transitive_parents(&self, id: &str) -> Vec<String> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut queue: VecDeque<String> = VecDeque::from([id.to_string()]);
        let mut out = Vec::new();
        while let Some(current) = queue.pop_front() {
            for parent in self.direct_parents(&current) {
                if seen.insert(parent.clone()) {
                    out.push(parent.clone());
                    queue.push_back(parent);
                }
            }
        }
        out
    }

    /// Groups `principal` is in, directly or transitively (for ARM's `assignedTo()`).
    pub fn transitive_group_ids(&self, principal: &str) -> Vec<String> {
        self.transitive_parents(principal)
    }

    pub fn is_group(&self, id: &str) -> bool {
        matches!(self.objects.get(id), Some(DirObject::Group(_)))
    }

    /// The object id of the user with object id or userPrincipalName `key`.
    pub fn user_object_id(&self, key: &str) -> Option<String> {
        self.user_id(key)
    }

    /// The display name of a user, group, application or service principal.
    pub fn display_name(&self, id: &str) -> Option<String> {
        Some(match self.objects.get(id)? {
            DirObject::User(u) => u.display_name.clone(),
            DirObject::Group(g) => g.display_name.clone(),
            DirObject::Application(a) => a.display_name.clone(),
            DirObject::ServicePrincipal(s) => s.display_name.clone(),
        })
    }

    /// Whether `id` is a user, group or service principal (a principal ARM can assign roles to).
    pub fn principal_kind(&self, id: &str) -> Option<&'static str> {
        match self.objects.get(id)? {
            DirObject::User(_) => Some("User"),
            DirObject::Group(_) => Some("Group"),
            DirObject::ServicePrincipal(_) => Some("ServicePrincipal"),
            DirObject::Application(_) => None,
        }
    }

    fn transitive_members(&self, group: &str) -> Vec<String> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut queue: VecDeque<String> = VecDeque::from([group.to_string()]);
        let mut out = Vec::new();
        while let Some(current) = queue.pop_front() {
            if let Some(DirObject::Group(g)) = self.objects.get(&current) {
                for member in &g.members {
                    if member != group && seen.insert(member.clone()) {
                        out.push(member.clone());
                        queue.push_back(member.clone());
                    }
                }
            }
        }
        out
    }

    fn owned_objects(&self, owner: &str) -> Vec<String> {
        self.order
            .iter()
            .filter(|id| {
                self.objects
                    .get(*id)
                    .and_then(DirObject::owners)
                    .is_some_and(|owners| owners.iter().any(|o| o == owner))
            })
            .cloned()
            .collect()
    }

    /// Used by the token endpoint: checks a client secret against the passwords of the
    /// application and of its service principal (Entra accepts both for client credentials; a
    /// service principal of another tenant's application has only its own).
    pub fn check_app_secret(&self, app_id: &str, secret: &str) -> SecretCheck {
        let Some(sp) = self.find_sp_by_app_id(app_id) else {
            return SecretCheck::UnknownApp;
        };
        let app_passwords = self
            .find_app_by_app_id(app_id)
            .map(|a| a.passwords.as_slice())
            .unwrap_or_default();
        let Some(password) = app_passwords
            .iter()
            .chain(&sp.passwords)
            .find(|p| p.secret == secret)
        else {
            return SecretCheck::Wrong;
        };
        if !sp.account_enabled {
            return SecretCheck::Disabled;
        }
        let expired = chrono::DateTime::parse_from_rfc3339(&password.end)
            .map(|end| end < chrono::Utc::now())
            .unwrap_or(false);
        if expired {
            SecretCheck::Expired
        } else {
            SecretCheck::Valid
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Query options

/// One `prop eq value` clause.
struct Clause {
    property: String,
    value: Value,
}

fn unsupported_filter(kind: Kind, detail: &str) -> ApiError {
    ApiError::graph(
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
        format!(
            "Unsupported or invalid query filter clause specified for resource '{}': {detail}",
            kind.resource_name()
        ),
    )
}

/// Parses `a eq 'x' and b eq true` (the subset the double supports).
fn parse_filter(kind: Kind, filter: &str) -> Result<Vec<Clause>, ApiError> {
    let mut clauses = Vec::new();
    let mut rest = filter.trim();
    loop {
        let (property, after) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| unsupported_filter(kind, filter))?;
        let after = after.trim_start();
        let after = after
            .strip_prefix("eq ")
            .or_else(|| after.strip_prefix("EQ "))
            .ok_or_else(|| unsupported_filter(kind, "only 'eq' comparisons are supported"))?
            .trim_start();
        let property = kind
            .filterable()
            .iter()
            .find(|p| p.eq_ignore_ascii_case(property))
            .ok_or_else(|| {
                unsupported_filter(kind, &format!("property '{property}' cannot be filtered"))
            })?
            .to_string();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('\'') {
            // OData escapes a quote inside a string by doubling it.
            let mut value = String::new();
            let mut chars = quoted.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                        value.push('\'');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    value.push(c);
                }
            }
            let end = end.ok_or_else(|| unsupported_filter(kind, "unterminated string literal"))?;
            (Value::String(value), &quoted[end..])
        } else {
            let (word, remaining) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
            let value = match word {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                other => {
                    return Err(unsupported_filter(
                        kind,
                        &format!("literal '{other}' is not supported"),
                    ))
                }
            };
            (value, remaining)
        };
        clauses.push(Clause { property, value });
        let remaining = remaining.trim();
        if remaining.is_empty() {
            return Ok(clauses);
        }
        rest = remaining
            .strip_prefix("and ")
            .ok_or_else(|| unsupported_filter(kind, "only 'and' can join clauses"))?
            .trim_start();
    }
}

fn matches(object: &Value, clauses: &[Clause]) -> bool {
    clauses.iter().all(|c| {
        let actual = object.get(&c.property).unwrap_or(&Value::Null);
        match (actual, &c.value) {
            (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        }
    })
}

/// Applies `$select` (or the type's default property set) to one object's full JSON.
fn project(kind: Kind, full: Value, select: Option<&str>) -> Result<Value, ApiError> {
    let Value::Object(map) = full else {
        return Ok(full);
    };
    let wanted: Vec<String> = match select {
        Some(select) => {
            let mut wanted = Vec::new();
            for name in select.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let key = map.keys().find(|k| k.eq_ignore_ascii_case(name)).ok_or_else(|| {
                    ApiError::graph(
                        StatusCode::BAD_REQUEST,
                        "Request_BadRequest",
                        format!(
                            "Could not find a property named '{name}' on type 'microsoft.graph.{}'.",
                            kind.entity_set().trim_end_matches('s')
                        ),
                    )
                })?;
                wanted.push(key.clone());
            }
            wanted
        }
        None => match kind.default_properties() {
            Some(defaults) => defaults.iter().map(|s| s.to_string()).collect(),
            None => return Ok(Value::Object(map)),
        },
    };
    let mut out = Map::new();
    for key in wanted {
        if let Some(v) = map.get(&key) {
            out.insert(key, v.clone());
        }
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------------------------
// Request bodies

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateUser {
    account_enabled: Option<bool>,
    display_name: Option<String>,
    mail_nickname: Option<String>,
    user_principal_name: Option<String>,
    password_profile: Option<Value>,
    mail: Option<String>,
    given_name: Option<String>,
    surname: Option<String>,
    job_title: Option<String>,
    department: Option<String>,
    employee_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateUser {
    account_enabled: Option<bool>,
    display_name: Option<String>,
    user_principal_name: Option<String>,
    mail: Option<String>,
    given_name: Option<String>,
    surname: Option<String>,
    job_title: Option<String>,
    department: Option<String>,
    employee_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateGroup {
    display_name: Option<String>,
    mail_enabled: Option<bool>,
    mail_nickname: Option<String>,
    security_enabled: Option<bool>,
    description: Option<String>,
    #[serde(default)]
    group_types: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateGroup {
    display_name: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateApplication {
    display_name: Option<String>,
    description: Option<String>,
    sign_in_audience: Option<String>,
    key_credentials: Option<Vec<KeyCredentialInput>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateApplication {
    display_name: Option<String>,
    description: Option<String>,
    key_credentials: Option<Vec<KeyCredentialInput>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyCredentialInput {
    key_id: Option<String>,
    display_name: Option<String>,
    custom_key_identifier: Option<String>,
    #[serde(rename = "type")]
    key_type: Option<String>,
    usage: Option<String>,
    start_date_time: Option<String>,
    end_date_time: Option<String>,
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateServicePrincipal {
    app_id: Option<String>,
    display_name: Option<String>,
    account_enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateServicePrincipal {
    account_enabled: Option<bool>,
    display_name: Option<String>,
    key_credentials: Option<Vec<KeyCredentialInput>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddPassword {
    password_credential: Option<PasswordInput>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PasswordInput {
    display_name: Option<String>,
    start_date_time: Option<String>,
    end_date_time: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemovePassword {
    key_id: Option<String>,
}

#[derive(Deserialize)]
struct Reference {
    #[serde(rename = "@odata.id")]
    odata_id: Option<String>,
}

fn required<T>(value: Option<T>, property: &str, kind: Kind) -> Result<T, ApiError> {
    value.ok_or_else(|| {
        ApiError::graph_bad_request(format!(
            "Property '{property}' is required when creating a {}.",
            kind.resource_name()
        ))
    })
}

fn check_datetime(value: &str, property: &str) -> Result<(), ApiError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|_| ())
        .map_err(|_| {
            ApiError::graph_bad_request(format!(
                "Invalid value specified for property '{property}': '{value}' is not a valid DateTimeOffset."
            ))
        })
}

fn key_credentials(inputs: Vec<KeyCredentialInput>) -> Result<Vec<KeyCredential>, ApiError> {
    let now = chrono::Utc::now();
    inputs
        .into_iter()
        .map(|k| {
            let key_type = required(k.key_type, "keyCredentials.type", Kind::Application)?;
            let usage = required(k.usage, "keyCredentials.usage", Kind::Application)?;
            if k.key.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::graph_bad_request(
                    "Property 'keyCredentials.key' is required: the Base64 encoded certificate.",
                ));
            }
            let start = k
                .start_date_time
                .unwrap_or_else(|| now.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            let end = k.end_date_time.unwrap_or_else(|| {
                (now + chrono::Duration::days(365))
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
            });
            check_datetime(&start, "keyCredentials.startDateTime")?;
            check_datetime(&end, "keyCredentials.endDateTime")?;
            Ok(KeyCredential {
                key_id: k.key_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                display_name: k.display_name,
                custom_key_identifier: k.custom_key_identifier,
                key_type,
                usage,
                start,
                end,
                key: k.key,
            })
        })
        .collect()
}

fn new_secret() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    let bytes: [u8; 37] = rand::random();
    let body: String = bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    // Real secrets carry a `~` at position 4 (for example `abc8Q~...`).
    format!("{}8Q~{}", &body[..3], &body[3..])
}

fn reference_id(req: &Req) -> Result<String, ApiError> {
    let reference: Reference = req.json(Flavor::Graph)?;
    let url = reference
        .odata_id
        .ok_or_else(|| ApiError::graph_bad_request("The request body must contain '@odata.id'."))?;
    let id = url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::graph_bad_request(format!("Invalid '@odata.id' value '{url}'."))
        })?;
    Ok(id.to_string())
}

// ---------------------------------------------------------------------------------------------
// Routing

/// Rewrites Graph's alternate key `applications(appId='{appId}')` (and the same on
/// `servicePrincipals`) into `applications/{id}`.
fn resolve_app_id_key(app: &App, segments: &[String]) -> Result<Vec<String>, ApiError> {
    let Some(first) = segments.first() else {
        return Ok(Vec::new());
    };
    let Some((set, rest)) = first.split_once("(appId=") else {
        return Ok(segments.to_vec());
    };
    let app_id = rest
        .strip_suffix(')')
        .map(|v| v.trim_matches('\''))
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::graph_bad_request(format!("Invalid key segment '{first}'.")))?;
    let state = app.lock();
    let graph = &state.graph;
    let id = if set.eq_ignore_ascii_case("applications") {
        graph.find_app_by_app_id(app_id).map(|a| a.id.clone())
    } else if set.eq_ignore_ascii_case("servicePrincipals") {
        graph.find_sp_by_app_id(app_id).map(|s| s.id.clone())
    } else {
        return Err(ApiError::graph_bad_request(format!(
            "The alternate key appId is not supported on '{set}'."
        )));
    }
    .ok_or_else(|| ApiError::graph_not_found(app_id))?;
    let mut out = vec![set.to_string(), id];
    out.extend(segments[1..].iter().cloned());
    Ok(out)
}

pub fn handle(app: &App, req: &Req) -> ApiResult {
    let resolved = resolve_app_id_key(app, req.segments.get(1..).unwrap_or_default())?;
    let segs: Vec<&str> = resolved.iter().map(String::as_str).collect();
    let m = &req.method;
    let kind = match segs.first().map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("users") => Kind::User,
        Some("groups") => Kind::Group,
        Some("applications") => Kind::Application,
        Some("serviceprincipals") => Kind::ServicePrincipal,
        Some("rolemanagement") => {
            return match segs.get(1) {
                Some(d) if d.eq_ignore_ascii_case("directory") => {
                    crate::entra_roles::role_management(app, req, &segs[2..])
                }
                _ => Err(unknown_segment(req)),
            }
        }
        Some("oauth2permissiongrants") => {
            return crate::entra_roles::permission_grants(app, req, &segs[1..])
        }
        Some("directoryobjects") => {
            return match (m, segs.as_slice()) {
                (&Method::GET, [_, id]) => get_directory_object(app, req, id),
                _ => Err(unknown_segment(req)),
            }
        }
        _ => return Err(unknown_segment(req)),
    };
    if kind == Kind::ServicePrincipal {
        if let [_, id, rel, rest @ ..] = segs.as_slice() {
            if let Some(side) = app_role_side(rel) {
                return match (m, rest) {
                    (&Method::GET, []) => app_roles::list(app, req, id, side),
                    (&Method::POST, []) => app_roles::create(app, req, id, side),
                    (&Method::DELETE, [assignment]) => app_roles::delete(app, id, side, assignment),
                    _ => Err(unknown_segment(req)),
                };
            }
        }
    }
    if kind == Kind::User {
        if let [_, key, rel, rest @ ..] = segs.as_slice() {
            let lower = rel.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "authentication" | "approleassignments" | "oauth2permissiongrants"
            ) {
                let id = app
                    .lock()
                    .graph
                    .user_id(key)
                    .ok_or_else(|| ApiError::graph_not_found(key))?;
                return match (lower.as_str(), m, rest) {
                    ("authentication", _, rest) => crate::auth_methods::handle(app, req, &id, rest),
                    ("oauth2permissiongrants", &Method::GET, []) => {
                        crate::entra_roles::user_permission_grants(app, req, &id)
                    }
                    ("approleassignments", &Method::GET, []) => {
                        app_roles::list(app, req, &id, Side::User)
                    }
                    ("approleassignments", &Method::POST, []) => {
                        app_roles::create(app, req, &id, Side::User)
                    }
                    ("approleassignments", &Method::DELETE, [assignment]) => {
                        app_roles::delete(app, &id, Side::User, assignment)
                    }
                    _ => Err(unknown_segment(req)),
                };
            }
        }
    }
    let is = |s: &str, name: &str| s.eq_ignore_ascii_case(name);
    match (m, segs.as_slice()) {
        (&Method::GET, [_]) => list(app, req, kind),
        (&Method::POST, [_]) => create(app, req, kind),
        (&Method::GET, [_, id]) => get_one(app, req, kind, id),
        (&Method::PATCH, [_, id]) => update(app, req, kind, id),
        (&Method::DELETE, [_, id]) => delete(app, kind, id),
        (&Method::POST, [_, id, action])
            if kind == Kind::User && is(action, "revokeSignInSessions") =>
        {
            revoke_sessions(app, id)
        }
        (&Method::GET, [_, id, rel]) if kind == Kind::User && is(rel, "manager") => {
            get_manager(app, req, id)
        }
        (&Method::PUT, [_, id, rel, r])
            if kind == Kind::User && is(rel, "manager") && is(r, "$ref") =>
        {
            set_manager(app, req, id)
        }
        (&Method::DELETE, [_, id, rel, r])
            if kind == Kind::User && is(rel, "manager") && is(r, "$ref") =>
        {
            remove_manager(app, id)
        }
        (&Method::POST, [_, id, action])
            if matches!(kind, Kind::Application | Kind::ServicePrincipal)
                && is(action, "addPassword") =>
        {
            add_password(app, req, kind, id)
        }
        (&Method::POST, [_, id, action])
            if matches!(kind, Kind::Application | Kind::ServicePrincipal)
                && is(action, "removePassword") =>
        {
            remove_password(app, req, kind, id)
        }
        (&Method::GET, [_, id, rel]) => relationship(app, req, kind, id, rel, None),
        (&Method::GET, [_, id, rel, cast]) if cast_kind(cast).is_some() => {
            relationship(app, req, kind, id, rel, cast_kind(cast))
        }
        (&Method::POST, [_, id, rel, r]) if is(r, "$ref") => add_reference(app, req, kind, id, rel),
        (&Method::DELETE, [_, id, rel, target, r]) if is(r, "$ref") => {
            remove_reference(app, kind, id, rel, target)
        }
        _ => Err(unknown_segment(req)),
    }
}

/// Which end of app role assignments a service principal relationship segment lists.
fn app_role_side(segment: &str) -> Option<Side> {
    if segment.eq_ignore_ascii_case("appRoleAssignments") {
        Some(Side::Principal)
    } else if segment.eq_ignore_ascii_case("appRoleAssignedTo") {
        Some(Side::Resource)
    } else {
        None
    }
}

fn unknown_segment(req: &Req) -> ApiError {
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

fn entity_response(app: &App, kind: Kind, value: Value, status: StatusCode) -> ApiResult {
    let mut value = value;
    if let Value::Object(map) = &mut value {
        map.insert(
            "@odata.context".into(),
            Value::String(format!(
                "{}/v1.0/$metadata#{}/$entity",
                app.base_url,
                kind.entity_set()
            )),
        );
    }
    Ok(json_response(status, value))
}

fn list(app: &App, req: &Req, kind: Kind) -> ApiResult {
    let clauses = match req.q("$filter") {
        Some(f) => parse_filter(kind, f)?,
        None => Vec::new(),
    };
    let state = app.lock();
    let graph = &state.graph;
    let mut items = Vec::new();
    for id in &graph.order {
        let Some(object) = graph.objects.get(id) else {
            continue;
        };
        if object.kind() != kind {
            continue;
        }
        let full = graph.full_json(&app.config.tenant_id, object, false);
        if matches(&full, &clauses) {
            items.push(project(kind, full, req.q("$select"))?);
        }
    }
    drop(state);
    let body = page(app, req, items, Flavor::Graph, Some(kind.entity_set()))?;
    Ok(json_response(StatusCode::OK, body))
}

fn get_one(app: &App, req: &Req, kind: Kind, key: &str) -> ApiResult {
    let state = app.lock();
    let graph = &state.graph;
    let id = graph
        .object_of_kind(kind, key)
        .ok_or_else(|| ApiError::graph_not_found(key))?;
    let object = graph
        .objects
        .get(&id)
        .ok_or_else(|| ApiError::graph_not_found(key))?;
    let select = req.q("$select");
    let with_key = select.is_some_and(|s| {
        s.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("keyCredentials"))
    });
    let full = graph.full_json(&app.config.tenant_id, object, with_key);
    let value = project(kind, full, select)?;
    entity_response(app, kind, value, StatusCode::OK)
}

fn get_directory_object(app: &App, req: &Req, id: &str) -> ApiResult {
    let state = app.lock();
    let graph = &state.graph;
    let object = graph
        .objects
        .get(id)
        .ok_or_else(|| ApiError::graph_not_found(id))?;
    let kind = object.kind();
    let mut value = project(
        kind,
        graph.full_json(&app.config.tenant_id, object, false),
        req.q("$select"),
    )?;
    if let Value::Object(map) = &mut value {
        map.insert(
            "@odata.type".into(),
            Value::String(kind.odata_type().into()),
        );
    }
    entity_response(app, kind, value, StatusCode::OK)
}

fn create(app: &App, req: &Req, kind: Kind) -> ApiResult {
    let now = now_graph();
    let id = uuid::Uuid::new_v4().to_string();
    let object = match kind {
        Kind::User => {
            let body: CreateUser = req.json(Flavor::Graph)?;
            let upn = required(body.user_principal_name, "userPrincipalName", kind)?;
            required(body.password_profile, "passwordProfile", kind)?;
            if !upn.contains('@') {
                return Err(ApiError::graph_bad_request(format!(
                    "Invalid value specified for property 'userPrincipalName' of resource 'User': '{upn}'."
                )));
            }
            let state = app.lock();
            if state.graph.user_id(&upn).is_some() {
                return Err(ApiError::graph_bad_request(
                    "Another object with the same value for property userPrincipalName already exists.",
                ));
            }
            drop(state);
            DirObject::User(User {
                id: id.clone(),
                user_principal_name: upn,
                display_name: required(body.display_name, "displayName", kind)?,
                mail_nickname: required(body.mail_nickname, "mailNickname", kind)?,
                account_enabled: required(body.account_enabled, "accountEnabled", kind)?,
                mail: body.mail,
                given_name: body.given_name,
                surname: body.surname,
                job_title: body.job_title,
                department: body.department,
                employee_id: body.employee_id,
                created: now.clone(),
                sign_in_sessions_valid_from: now,
                manager: None,
            })
        }
        Kind::Group => {
            let body: CreateGroup = req.json(Flavor::Graph)?;
            DirObject::Group(Group {
                id: id.clone(),
                display_name: required(body.display_name, "displayName", kind)?,
                mail_enabled: required(body.mail_enabled, "mailEnabled", kind)?,
                mail_nickname: required(body.mail_nickname, "mailNickname", kind)?,
                security_enabled: required(body.security_enabled, "securityEnabled", kind)?,
                description: body.description,
                group_types: body.group_types,
                created: now,
                members: Vec::new(),
                owners: Vec::new(),
            })
        }
        Kind::Application => {
            let body: CreateApplication = req.json(Flavor::Graph)?;
            DirObject::Application(Application {
                id: id.clone(),
                app_id: uuid::Uuid::new_v4().to_string(),
                display_name: required(body.display_name, "displayName", kind)?,
                description: body.description,
                sign_in_audience: body
                    .sign_in_audience
                    .unwrap_or_else(|| "AzureADMyOrg".to_string()),
                created: now,
                passwords: Vec::new(),
                keys: key_credentials(body.key_credentials.unwrap_or_default())?,
                owners: Vec::new(),
            })
        }
        Kind::ServicePrincipal => {
            let body: CreateServicePrincipal = req.json(Flavor::Graph)?;
            let app_id = required(body.app_id, "appId", kind)?;
            let state = app.lock();
            let application = state.graph.find_app_by_app_id(&app_id).ok_or_else(|| {
                ApiError::graph_bad_request(format!(
                    "The appId '{app_id}' of the service principal does not reference a valid application object."
                ))
            })?;
            if state.graph.find_sp_by_app_id(&app_id).is_some() {
                return Err(ApiError::graph(
                    StatusCode::CONFLICT,
                    "Request_MultipleObjectsWithSameKeyValue",
                    "The service principal cannot be created, updated, or restored because the service principal name is already in use.",
                ));
            }
            let display_name = body
                .display_name
                .unwrap_or_else(|| application.display_name.clone());
            let app_id = application.app_id.clone();
            drop(state);
            DirObject::ServicePrincipal(ServicePrincipal {
                id: id.clone(),
                app_id,
                display_name,
                account_enabled: body.account_enabled.unwrap_or(true),
                passwords: Vec::new(),
                keys: Vec::new(),
                owners: Vec::new(),
                app_roles: Vec::new(),
                app_owner_tenant: None,
            })
        }
    };
    let mut state = app.lock();
    let full = state.graph.full_json(&app.config.tenant_id, &object, false);
    state.graph.insert(id, object);
    entity_response(app, kind, full, StatusCode::CREATED)
}

fn update(app: &App, req: &Req, kind: Kind, key: &str) -> ApiResult {
    let mut state = app.lock();
    let graph = &mut state.graph;
    let id = graph
        .object_of_kind(kind, key)
        .ok_or_else(|| ApiError::graph_not_found(key))?;
    match kind {
        Kind::User => {
            let body: UpdateUser = req.json(Flavor::Graph)?;
            if let Some(upn) = &body.user_principal_name {
                if graph.user_id(upn).is_some_and(|other| other != id) {
                    return Err(ApiError::graph_bad_request(
                        "Another object with the same value for property userPrincipalName already exists.",
                    ));
                }
            }
            let Some(DirObject::User(u)) = graph.objects.get_mut(&id) else {
                return Err(ApiError::graph_not_found(key));
            };
            if let Some(v) = body.account_enabled {
                u.account_enabled = v;
            }
            if let Some(v) = body.display_name {
                u.display_name = v;
            }
            if let Some(v) = body.user_principal_name {
                u.user_principal_name = v;
            }
            if body.mail.is_some() {
                u.mail = body.mail;
            }
            if body.given_name.is_some() {
                u.given_name = body.given_name;
            }
            if body.surname.is_some() {
                u.surname = body.surname;
            }
            if body.job_title.is_some() {
                u.job_title = body.job_title;
            }
            if body.department.is_some() {
                u.department = body.department;
            }
            if body.employee_id.is_some() {
                u.employee_id = body.employee_id;
            }
        }
        Kind::Group => {
            let body: UpdateGroup = req.json(Flavor::Graph)?;
            let Some(DirObject::Group(g)) = graph.objects.get_mut(&id) else {
                return Err(ApiError::graph_not_found(key));
            };
            if let Some(v) = body.display_name {
                g.display_name = v;
            }
            if body.description.is_some() {
                g.description = body.description;
            }
        }
        Kind::Application => {
            let body: UpdateApplication = req.json(Flavor::Graph)?;
            let keys = body.key_credentials.map(key_credentials).transpose()?;
            let Some(DirObject::Application(a)) = graph.objects.get_mut(&id) else {
                return Err(ApiError::graph_not_found(key));
            };
            if let Some(v) = body.display_name {
                a.display_name = v;
            }
            if body.description.is_some() {
                a.description = body.description;
            }
            if let Some(keys) = keys {
                // Graph replaces the whole collection on PATCH.
                a.keys = keys;
            }
        }
        Kind::ServicePrincipal => {
            let body: UpdateServicePrincipal = req.json(Flavor::Graph)?;
            let keys = body.key_credentials.map(key_credentials).transpose()?;
            let Some(DirObject::ServicePrincipal(s)) = graph.objects.get_mut(&id) else {
                return Err(ApiError::graph_not_found(key));
            };
            if let Some(v) = body.account_enabled {
                s.account_enabled = v;
            }
            if let Some(v) = body.display_name {
                s.display_name = v;
            }
            if let Some(keys) = keys {
                s.keys = keys;
            }
        }
    }
    Ok(no_content())
}

/// `DELETE /{set}/{id}`: removes the object and every reference to it (memberships,
/// ownerships, manager links). Deleting an application deletes its service principal too.
fn delete(app: &App, kind: Kind, key: &str) -> ApiResult {
    let mut state = app.lock();
    let graph = &mut state.graph;
    let id = graph
        .object_of_kind(kind, key)
        .ok_or_else(|| ApiError::graph_not_found(key))?;
    let mut doomed = vec![id.clone()];
    if let Some(DirObject::Application(a)) = graph.objects.get(&id) {
        if let Some(sp) = graph.find_sp_by_app_id(&a.app_id) {
            doomed.push(sp.id.clone());
        }
    }
    for gone in &doomed {
        graph.objects.remove(gone);
        graph.order.retain(|o| o != gone);
    }
    graph
        .app_role_assignments
        .retain(|a| !doomed.contains(&a.principal_id) && !doomed.contains(&a.resource_id));
    for object in graph.objects.values_mut() {
        match object {
            DirObject::Group(g) => {
                g.members.retain(|m| !doomed.contains(m));
                g.owners.retain(|m| !doomed.contains(m));
            }
            DirObject::Application(a) => a.owners.retain(|m| !doomed.contains(m)),
            DirObject::ServicePrincipal(s) => s.owners.retain(|m| !doomed.contains(m)),
            DirObject::User(u) => {
                if u.manager.as_ref().is_some_and(|m| doomed.contains(m)) {
                    u.manager = None;
                }
            }
        }
    }
    for gone in &doomed {
        state.entra_roles.forget(gone);
        state.auth_methods.forget(gone);
    }
    Ok(no_content())
}

fn revoke_sessions(app: &App, key: &str) -> ApiResult {
    let mut state = app.lock();
    let id = state
        .graph
        .user_id(key)
        .ok_or_else(|| ApiError::graph_not_found(key))?;
    if let Some(DirObject::User(u)) = state.graph.objects.get_mut(&id) {
        u.sign_in_sessions_valid_from = now_graph();
    }
    Ok(json_response(
        StatusCode::OK,
        json!({
            "@odata.context": format!("{}/v1.0/$metadata#Edm.Boolean", app.base_url),
            "value": true,
        }),
    ))
}

fn get_manager(app: &App, req: &Req, key: &str) -> ApiResult {
    let state = app.lock();
    let graph = &state.graph;
    let id = graph
        .user_id(key)
        .ok_or_else(|| ApiError::graph_not_found(key))?;
    let manager = match graph.objects.get(&id) {
        Some(DirObject::User(u)) => u.manager.clone(),
        _ => None,
    }
    .ok_or_else(|| ApiError::graph_not_found("manager"))?;
    let object = graph
        .objects
        .get(&manager)
        .ok_or_else(|| ApiError::graph_not_found("manager"))?;
    let mut value = project(
        object.kind(),
        graph.full_json(&app.config.tenant_id, object, false),
        req.q("$select"),
    )?;
    if let Value::Object(map) = &mut value {
        map.insert(
            "@odata.context".into(),
            Value::String(format!(
                "{}/v1.0/$metadata#directoryObjects/$entity",
                app.base_url
            )),
        );
        map.insert(
            "@odata.type".into(),
            Value::String(object.kind().odata_type().into()),
        );
    }
    Ok(json_response(StatusCode::OK, value))
}

fn set_manager(app: &App, req: &Req, key: &str) -> ApiResult {
    let manager_id = reference_id(req)?;
    let mut state = app.lock();
    let graph = &mut state.graph;
    let id = graph
        .user_id(key)
        .ok_or_else(|| ApiError::graph_not_found(key))?;
    let manager = graph
        .user_id(&manager_id)
        .ok_or_else(|| ApiError::graph_not_found(&manager_id))?;
    if manager == id {
        return Err(ApiError::graph_bad_request(
            "A user cannot be their own manager.",
        ));
    }
    if let Some(DirObject::User(u)) = graph.objects.get_mut(&id) {
        u.manager = Some(manager);
    }
    Ok(no_content())
}

fn remove_manager(app: &App, key: &str) -> ApiResult {
    let mut state = app.lock();
    let graph = &mut state.graph;
    let id = graph
        .user_id(key)
        .ok_or_else(|| ApiError::graph_not_found(key))?;
    match graph.objects.get_mut(&id) {
        Some(DirObject::User(u)) if u.manager.is_some() => {
            u.manager = None;
            Ok(no_content())
        }
        _ => Err(ApiError::graph_not_found("manager")),
    }
}

fn add_password(app: &App, req: &Req, kind: Kind, key: &str) -> ApiResult {
    let body: AddPassword = req.json(Flavor::Graph)?;
    let input = body.password_credential.unwrap_or_default();
    let now = chrono::Utc::now();
    let start = input
        .start_date_time
        .unwrap_or_else(|| now.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    let end = input.end_date_time.unwrap_or_else(|| {
        (now + chrono::Duration::days(730))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    });
    check_datetime(&start, "startDateTime")?;
    check_datetime(&end, "endDateTime")?;
    let secret = new_secret();
    let credential = PasswordCredential {
        key_id: uuid::Uuid::new_v4().to_string(),
        display_name: input.display_name,
        hint: secret.chars().take(3).collect(),
        start,
        end,
        secret: secret.clone(),
    };
    let mut response = password_json(&credential, Some(&secret));
    if let Value::Object(map) = &mut response {
        map.insert(
            "@odata.context".into(),
            Value::String(format!(
                "{}/v1.0/$metadata#microsoft.graph.passwordCredential",
                app.base_url
            )),
        );
    }
    let mut state = app.lock();
    let graph = &mut state.graph;
    let id = graph
        .object_of_kind(kind, key)
        .ok_or_else(|| ApiError::graph_not_found(key))?;
    match graph.objects.get_mut(&id) {
        Some(DirObject::Application(a)) => a.passwords.push(credential),
        Some(DirObject::ServicePrincipal(s)) => s.passwords.push(credential),
        _ => return Err(ApiError::graph_not_found(key)),
    }
    Ok(json_response(StatusCode::OK, response))
}

fn remove_password(app: &App, req: &Req, kind: Kind, key: &str) -> ApiResult {
    let body: RemovePassword = req.json(Flavor::Graph)?;
    let key_id = body
        .key_id
        .ok_or_else(|| ApiError::graph_bad_request("The request body must contain 'keyId'."))?;
    let mut state = app.lock();
    let graph = &mut state.graph;
    let id = graph
        .object_of_kind(kind, key)
        .ok_or_else(|| ApiError::graph_not_found(key))?;
    let passwords = match graph.objects.get_mut(&id) {
        Some(DirObject::Application(a)) => &mut a.passwords,
        Some(DirObject::ServicePrincipal(s)) => &mut s.passwords,
        _ => return Err(ApiError::graph_not_found(key)),
    };
    let before = passwords.len();
    passwords.retain(|p| !p.key_id.eq_ignore_ascii_case(&key_id));
    if passwords.len() == before {
        return Err(ApiError::graph_bad_request(format!(
            "No password credential found with keyId '{key_id}'."
        )));
    }
    Ok(no_content())
}

/// The type of an OData cast segment such as `microsoft.graph.group`.
fn cast_kind(segment: &str) -> Option<Kind> {
    match segment.to_ascii_lowercase().as_str() {
        "microsoft.graph.user" => Some(Kind::User),
        "microsoft.graph.group" => Some(Kind::Group),
        "microsoft.graph.application" => Some(Kind::Application),
        "microsoft.graph.serviceprincipal" => Some(Kind::ServicePrincipal),
        _ => None,
    }
}

/// `GET /{set}/{id}/{relationship}[/microsoft.graph.{type}]`: collections of directory objects
/// with `@odata.type`, optionally cast to one type.
fn relationship(
    app: &App,
    req: &Req,
    kind: Kind,
    key: &str,
    rel: &str,
    cast: Option<Kind>,
) -> ApiResult {
    let state = app.lock();
    let graph = &state.graph;
    let id = graph
        .object_of_kind(kind, key)
        .ok_or_else(|| ApiError::graph_not_found(key))?;
    let rel_lower = rel.to_ascii_lowercase();
    let ids: Vec<String> = match (kind, rel_lower.as_str()) {
        (Kind::User | Kind::Group | Kind::ServicePrincipal, "memberof") => {
            graph.direct_parents(&id)
        }
        (Kind::User | Kind::Group | Kind::ServicePrincipal, "transitivememberof") => {
            graph.transitive_parents(&id)
        }
        (Kind::User | Kind::ServicePrincipal, "ownedobjects") => graph.owned_objects(&id),
        (Kind::Group, "members") => match graph.objects.get(&id) {
            Some(DirObject::Group(g)) => g.members.clone(),
            _ => Vec::new(),
        },
        (Kind::Group, "transitivemembers") => graph.transitive_members(&id),
        (Kind::Group | Kind::Application | Kind::ServicePrincipal, "owners") => graph
            .objects
            .get(&id)
            .and_then(DirObject::owners)
            .cloned()
            .unwrap_or_default(),
        _ => return Err(unknown_segment(req)),
    };
    let mut items = Vec::new();
    for member in ids {
        let Some(object) = graph.objects.get(&member) else {
            continue;
        };
        if cast.is_some_and(|c| c != object.kind()) {
            continue;
        }
        let mut value = project(
            object.kind(),
            graph.full_json(&app.config.tenant_id, object, false),
            req.q("$select"),
        )?;
        if let Value::Object(map) = &mut value {
            map.insert(
                "@odata.type".into(),
                Value::String(object.kind().odata_type().into()),
            );
        }
        items.push(value);
    }
    drop(state);
    let body = page(app, req, items, Flavor::Graph, Some("directoryObjects"))?;
    Ok(json_response(StatusCode::OK, body))
}

/// `POST /{set}/{id}/{members|owners}/$ref` with `{"@odata.id": ".../directoryObjects/{id}"}`.
fn add_reference(app: &App, req: &Req, kind: Kind, key: &str, rel: &str) -> ApiResult {
    let target = reference_id(req)?;
    let mut state = app.lock();
    let graph = &mut state.graph;
    let id = graph
        .object_of_kind(kind, key)
        .ok_or_else(|| ApiError::graph_not_found(key))?;
    let target_kind = graph
        .objects
        .get(&target)
        .map(DirObject::kind)
        .ok_or_else(|| ApiError::graph_not_found(&target))?;
    let already = |property: &str| {
        ApiError::graph_bad_request(format!(
            "One or more added object references already exist for the following modified properties: '{property}'."
        ))
    };
    match (kind, rel.to_ascii_lowercase().as_str()) {
        (Kind::Group, "members") => {
            if target == id {
                return Err(ApiError::graph_bad_request(
                    "A group cannot be a member of itself.",
                ));
            }
            if target_kind == Kind::Application {
                return Err(ApiError::graph_bad_request(
                    "An application cannot be a group member; add its service principal.",
                ));
            }
            let Some(DirObject::Group(g)) = graph.objects.get_mut(&id) else {
                return Err(ApiError::graph_not_found(key));
            };
            if g.members.contains(&target) {
                return Err(already("members"));
            }
            g.members.push(target);
        }
        (Kind::Group | Kind::Application | Kind::ServicePrincipal, "owners") => {
            if !matches!(target_kind, Kind::User | Kind::ServicePrincipal) {
                return Err(ApiError::graph_bad_request(
                    "Owners must be users or service principals.",
                ));
            }
            let owners = graph
                .objects
                .get_mut(&id)
                .and_then(DirObject::owners_mut)
                .ok_or_else(|| ApiError::graph_not_found(key))?;
            if owners.contains(&target) {
                return Err(already("owners"));
            }
            owners.push(target);
        }
        _ => return Err(unknown_segment(req)),
    }
    Ok(no_content())
}

/// `DELETE /{set}/{id}/{members|owners}/{target}/$ref`.
fn remove_reference(app: &App, kind: Kind, key: &str, rel: &str, target: &str) -> ApiResult {
    let mut state = app.lock();
    let graph = &mut state.graph;
    let id = graph
        .object_of_kind(kind, key)
        .ok_or_else(|| ApiError::graph_not_found(key))?;
    let list = match (kind, rel.to_ascii_lowercase().as_str()) {
        (Kind::Group, "members") => match graph.objects.get_mut(&id) {
            Some(DirObject::Group(g)) => &mut g.members,
            _ => return Err(ApiError::graph_not_found(key)),
        },
        (Kind::Group | Kind::Application | Kind::ServicePrincipal, "owners") => graph
            .objects
            .get_mut(&id)
            .and_then(DirObject::owners_mut)
            .ok_or_else(|| ApiError::graph_not_found(key))?,
        _ => {
            return Err(ApiError::graph(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("Resource not found for the segment '{rel}'."),
            ))
        }
    };
    let before = list.len();
    list.retain(|m| m != target);
    if list.len() == before {
        return Err(ApiError::graph_not_found(target));
    }
    Ok(no_content())
}
