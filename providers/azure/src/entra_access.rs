//! What the person holds in Entra beyond groups and owned applications, read through Microsoft
//! Graph v1.0: directory role assignments (`roleManagement/directory/roleAssignments`), PIM
//! eligibilities (`roleEligibilitySchedules`) and active PIM schedules
//! (`roleAssignmentSchedules`), the groups they own, their app-role assignments, the delegated
//! permission grants they consented to, and their authentication methods. Each listing that is
//! refused or missing is recorded as unread (a gap), and the rest goes on.

use crate::directory::{object_path, odata_literal};
use crate::entra::Group;
use crate::http::{Api, AzureHttp, CallError, Unread};
use crate::principal::Principal;
use serde::Deserialize;

/// The finding kinds this module reads (the gap of an unread listing names one).
pub mod kinds {
    pub use crate::capabilities::kinds::{
        APP_ROLE_ASSIGNMENT, AUTH_METHOD, DIRECTORY_ROLE, DIRECTORY_ROLE_ELIGIBILITY,
        GROUP_DIRECTORY_ROLE, OAUTH2_GRANT, OWNED_GROUP,
    };
}

/// A directory role assignment, eligibility or active schedule (`unifiedRoleAssignment`,
/// `unifiedRoleEligibilitySchedule`, `unifiedRoleAssignmentSchedule`: the same fields).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleGrant {
    pub id: String,
    pub principal_id: String,
    pub role_definition_id: String,
    #[serde(default)]
    pub directory_scope_id: Option<String>,
}

impl RoleGrant {
    /// The directory scope (`/` for the whole tenant when absent).
    pub fn scope(&self) -> &str {
        self.directory_scope_id.as_deref().unwrap_or("/")
    }

    /// Same principal, role and scope.
    pub fn same_grant(&self, other: &RoleGrant) -> bool {
        self.principal_id.eq_ignore_ascii_case(&other.principal_id)
            && self
                .role_definition_id
                .eq_ignore_ascii_case(&other.role_definition_id)
            && self.scope().eq_ignore_ascii_case(other.scope())
    }
}

/// A directory role definition (`unifiedRoleDefinition`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinition {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub template_id: Option<String>,
}

/// An app role assigned to the user (`appRoleAssignment`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRoleAssignment {
    pub id: String,
    #[serde(default)]
    pub app_role_id: String,
    #[serde(default)]
    pub resource_id: String,
    #[serde(default)]
    pub resource_display_name: Option<String>,
}

/// A delegated permission grant (`oAuth2PermissionGrant`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionGrant {
    pub id: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub resource_id: String,
    #[serde(default)]
    pub scope: Option<String>,
}

/// An authentication method as `authentication/methods` lists it (the fields Closeout shows;
/// never a secret: a temporary access pass is only ever returned when it is created).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthMethod {
    #[serde(rename = "@odata.type", default)]
    pub odata_type: String,
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub phone_type: Option<String>,
}

/// The `@odata.type` of the password method, which cannot be deleted (disabling the user and
/// revoking its sessions is what closes it).
pub const PASSWORD_METHOD_TYPE: &str = "#microsoft.graph.passwordAuthenticationMethod";

/// The typed collection under `users/{id}/authentication/` a method of `odata_type` is deleted
/// from, and its noun; `None` for the password method and for types Closeout does not know.
pub fn method_collection(odata_type: &str) -> Option<(&'static str, &'static str)> {
    let t = odata_type.trim_start_matches("#microsoft.graph.");
    Some(match t {
        "phoneAuthenticationMethod" => ("phoneMethods", "phone"),
        "emailAuthenticationMethod" => ("emailMethods", "email"),
        "fido2AuthenticationMethod" => ("fido2Methods", "FIDO2 security key"),
        "microsoftAuthenticatorAuthenticationMethod" => {
            ("microsoftAuthenticatorMethods", "Microsoft Authenticator")
        }
        "temporaryAccessPassAuthenticationMethod" => {
            ("temporaryAccessPassMethods", "temporary access pass")
        }
        "softwareOathAuthenticationMethod" => ("softwareOathMethods", "software OATH token"),
        "windowsHelloForBusinessAuthenticationMethod" => (
            "windowsHelloForBusinessMethods",
            "Windows Hello for Business",
        ),
        "platformCredentialAuthenticationMethod" => {
            ("platformCredentialMethods", "platform credential")
        }
        _ => return None,
    })
}

/// Directory roles that reach everything the tenant holds: whoever holds one (or can activate
/// one) can grant themselves any access. (template id, name, why).
pub const TENANT_REACH_ROLES: &[(&str, &str, &str)] = &[
    (
        "62e90394-69f5-4237-9190-012177145e10",
        "Global Administrator",
        "can do anything in the tenant and elevate itself to User Access Administrator at the root of every subscription",
    ),
    (
        "e8611ab8-c189-46e8-94e1-60213ab1f814",
        "Privileged Role Administrator",
        "can assign itself any directory role, Global Administrator included",
    ),
    (
        "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
        "Privileged Authentication Administrator",
        "can reset the password and authentication methods of any user, Global Administrators included, and sign in as them",
    ),
    (
        "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
        "Application Administrator",
        "can add a credential to any application and act as it, including applications granted tenant-wide permissions",
    ),
    (
        "158c047a-c907-4556-b7ef-446551a6b5f7",
        "Cloud Application Administrator",
        "can add a credential to any application and act as it, including applications granted tenant-wide permissions",
    ),
];

/// The role of [`TENANT_REACH_ROLES`] with template id `id`: (name, why).
pub fn tenant_reach_role(id: &str) -> Option<(&'static str, &'static str)> {
    TENANT_REACH_ROLES
        .iter()
        .find(|(t, _, _)| t.eq_ignore_ascii_case(id))
        .map(|(_, n, w)| (*n, *w))
}

/// A directory role held (or eligible) by a group the person is in.
#[derive(Debug, Clone)]
pub struct GroupRole {
    /// The group, with the direct membership that puts the person in it.
    pub group: Principal,
    /// Eligible through PIM (else held).
    pub eligible: bool,
    pub grant: RoleGrant,
}

/// Everything [`read`] found, and what it could not read.
#[derive(Debug, Default)]
pub struct EntraAccess {
    /// Active directory role assignments of the user.
    pub roles: Vec<RoleGrant>,
    /// Active PIM schedules of the user (each also an active assignment, removed through
    /// `roleAssignmentScheduleRequests`).
    pub active_schedules: Vec<RoleGrant>,
    /// PIM eligibilities of the user.
    pub eligible: Vec<RoleGrant>,
    /// Directory roles held or eligible by the groups the user is in.
    pub group_roles: Vec<GroupRole>,
    /// Role definitions by id (lower-case), for names and templates.
    pub definitions: Vec<RoleDefinition>,
    pub owned_groups: Vec<Group>,
    pub app_roles: Vec<AppRoleAssignment>,
    pub grants: Vec<PermissionGrant>,
    pub methods: Vec<AuthMethod>,
    /// Display names of the service principals the grants name (client and resource), by id.
    pub names: Vec<(String, String)>,
    pub unread: Vec<Unread>,
}

impl EntraAccess {
    /// The name of role definition `id`, or the id when it could not be read.
    pub fn role_name(&self, id: &str) -> String {
        self.definitions
            .iter()
            .find(|d| d.id.eq_ignore_ascii_case(id))
            .and_then(|d| d.display_name.clone())
            .or_else(|| tenant_reach_role(id).map(|(n, _)| n.to_string()))
            .unwrap_or_else(|| id.to_string())
    }

    /// The display name of service principal `id` as read, or the id.
    pub fn name_of(&self, id: &str) -> String {
        self.names
            .iter()
            .find(|(i, _)| i.eq_ignore_ascii_case(id))
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// The template id of role definition `id` (built-in roles: the id itself).
    pub fn template_of<'a>(&'a self, id: &'a str) -> &'a str {
        self.definitions
            .iter()
            .find(|d| d.id.eq_ignore_ascii_case(id))
            .and_then(|d| d.template_id.as_deref())
            .unwrap_or(id)
    }
}

/// `principalId eq '{id}'`, encoded for a query string.
pub(crate) fn principal_filter(user_id: &str) -> String {
    format!("$filter=principalId%20eq%20'{}'", odata_literal(user_id))
}

const ROLES: &str = "/v1.0/roleManagement/directory";

/// Collects one listing into `into`, or its refusal into `unread`.
async fn listing<T: serde::de::DeserializeOwned>(
    http: &AzureHttp,
    path: &str,
    kind: &'static str,
    user_id: &str,
    what: String,
    unread: &mut Vec<Unread>,
) -> Result<Vec<T>, CallError> {
    match http.list(Api::Graph, path).await {
        Ok(v) => Ok(v),
        Err(e) => {
            unread.push(Unread::of(kind, user_id.to_string(), what, e)?);
            Ok(Vec::new())
        }
    }
}

/// Reads everything this module covers for the user `user_id` (`upn` for the words of a gap):
/// one paged list each, plus the role definitions when a role was found.
pub async fn read(
    http: &AzureHttp,
    user_id: &str,
    upn: &str,
    groups: &[Principal],
) -> Result<EntraAccess, CallError> {
    let mut out = EntraAccess::default();
    let by_principal = principal_filter(user_id);
    // Directory roles of the groups the person is in (role-assignable groups): held or eligible
    // by the group, the person's through the membership.
    for group in groups {
        for (collection, what) in [
            ("roleAssignments", "directory role assignments"),
            ("roleEligibilitySchedules", "PIM role eligibilities"),
        ] {
            let found: Vec<RoleGrant> = listing(
                http,
                &format!(
                    "{ROLES}/{collection}?{}",
                    principal_filter(&group.object_id)
                ),
                kinds::GROUP_DIRECTORY_ROLE,
                &group.object_id,
                format!("the {what} of {}", group.display),
                &mut out.unread,
            )
            .await?;
            out.group_roles.extend(found.into_iter().map(|g| GroupRole {
                group: group.clone(),
                eligible: collection == "roleEligibilitySchedules",
                grant: g,
            }));
        }
    }
    let unread = &mut out.unread;
    out.roles = listing(
        http,
        &format!("{ROLES}/roleAssignments?{by_principal}"),
        kinds::DIRECTORY_ROLE,
        user_id,
        format!("the directory role assignments of {upn}"),
        unread,
    )
    .await?;
    out.active_schedules = listing(
        http,
        &format!("{ROLES}/roleAssignmentSchedules?{by_principal}"),
        kinds::DIRECTORY_ROLE,
        user_id,
        format!("the active PIM role assignments of {upn}"),
        unread,
    )
    .await?;
    out.eligible = listing(
        http,
        &format!("{ROLES}/roleEligibilitySchedules?{by_principal}"),
        kinds::DIRECTORY_ROLE_ELIGIBILITY,
        user_id,
        format!("the PIM role eligibilities of {upn}"),
        unread,
    )
    .await?;
    if !(out.roles.is_empty()
        && out.eligible.is_empty()
        && out.active_schedules.is_empty()
        && out.group_roles.is_empty())
    {
        out.definitions = listing(
            http,
            &format!("{ROLES}/roleDefinitions?$select=id,displayName,templateId"),
            kinds::DIRECTORY_ROLE,
            user_id,
            "the directory role definitions (what each role of the person allows)".to_string(),
            unread,
        )
        .await?;
    }
    out.owned_groups = listing(
        http,
        &format!(
            "{}/ownedObjects/microsoft.graph.group?$select=id,displayName",
            object_path("users", user_id)
        ),
        kinds::OWNED_GROUP,
        user_id,
        format!("the groups {upn} owns"),
        unread,
    )
    .await?;
    out.app_roles = listing(
        http,
        &format!("{}/appRoleAssignments", object_path("users", user_id)),
        kinds::APP_ROLE_ASSIGNMENT,
        user_id,
        format!("the app-role assignments of {upn}"),
        unread,
    )
    .await?;
    out.grants = listing(
        http,
        &format!("/v1.0/oauth2PermissionGrants?{by_principal}"),
        kinds::OAUTH2_GRANT,
        user_id,
        format!("the delegated permission grants {upn} consented to"),
        unread,
    )
    .await?;
    // The names of the applications the grants name, for the plan's words only: a name that
    // cannot be read leaves the id.
    let mut wanted: Vec<&str> = out
        .grants
        .iter()
        .flat_map(|g| [g.client_id.as_str(), g.resource_id.as_str()])
        .filter(|id| !id.is_empty())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    for id in wanted {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Named {
            #[serde(default)]
            display_name: Option<String>,
        }
        let path = format!(
            "{}?$select=displayName",
            object_path("servicePrincipals", id)
        );
        match http.call::<Named>(Api::Graph, "GET", &path, None).await {
            Ok(Some(Named {
                display_name: Some(name),
            })) => out.names.push((id.to_string(), name)),
            Ok(_) => {}
            Err(e) if e.refused_or_missing() => {}
            Err(e) => return Err(e),
        }
    }
    let unread = &mut out.unread;
    out.methods = listing(
        http,
        &format!("{}/authentication/methods", object_path("users", user_id)),
        kinds::AUTH_METHOD,
        user_id,
        format!("the authentication methods of {upn}"),
        unread,
    )
    .await?;
    Ok(out)
}

/// The user's grants (`roleAssignments`, `roleAssignmentSchedules` or
/// `roleEligibilitySchedules`) with `role` at `scope`, read again (for live state).
pub async fn grants_of(
    http: &AzureHttp,
    collection: &str,
    user_id: &str,
    role: &str,
    scope: &str,
) -> Result<Vec<RoleGrant>, CallError> {
    let all: Vec<RoleGrant> = http
        .list(
            Api::Graph,
            &format!("{ROLES}/{collection}?{}", principal_filter(user_id)),
        )
        .await?;
    Ok(all
        .into_iter()
        .filter(|g| {
            g.role_definition_id.eq_ignore_ascii_case(role) && g.scope().eq_ignore_ascii_case(scope)
        })
        .collect())
}

/// The path of role management collection `collection`.
pub(crate) fn roles_path(collection: &str) -> String {
    format!("{ROLES}/{collection}")
}
