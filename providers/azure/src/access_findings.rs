//! The findings of what [`crate::entra_access`] read (pure): directory roles held and
//! eligible, owned groups, app-role assignments, delegated grants and authentication methods,
//! each with its path; and the tenant-wide reach of a privileged directory role, which makes
//! every Key Vault object in the tenant the person's to rotate.

use crate::capabilities::{kinds, PROVIDER};
use crate::entra_access::{
    method_collection, tenant_reach_role, EntraAccess, RoleGrant, PASSWORD_METHOD_TYPE,
};
use crate::findings::{attrs, finding, gap_of, path_to};
use crate::principal::Principal;
use closeout_contract::{Exposure, Gap, Holder, Path, Relation, Resolution};

/// A directory role that reaches everything the tenant holds: the path of its finding (the
/// prefix of every path it opens), its name and why.
#[derive(Debug, Clone)]
pub(crate) struct TenantReach {
    /// Who holds the role: the user, or a group they are in (its path is the membership's).
    pub principal: Principal,
    /// The edge of the role's path (`assigned`, `eligible-for`).
    pub edge: String,
    /// The node of the role's path.
    pub node: String,
    /// Why the role reaches everything.
    pub why: String,
}

impl TenantReach {
    pub fn path(&self) -> Path {
        path_to(&self.principal).then(self.edge.clone(), self.node.clone())
    }
}

fn display_directory_scope(scope: &str) -> String {
    if scope == "/" {
        "the tenant".to_string()
    } else {
        format!("scope {scope}")
    }
}

/// Adds the findings (and the gaps of what was not read) to `out`; returns the roles that reach
/// the whole tenant. `me` is the person's user as a principal.
pub(crate) fn entra_access_findings(
    access: &EntraAccess,
    upn: &str,
    me: &Principal,
    out: &mut Resolution,
) -> Vec<TenantReach> {
    out.gaps
        .extend(access.unread.iter().map(|u| gap_of(u, Vec::new())));
    let mut reach = Vec::new();
    let mut role_finding = |g: &RoleGrant,
                            kind: &str,
                            edge: &str,
                            schedule: Option<&RoleGrant>,
                            holder: &Principal| {
        let eligible = edge == "eligible-for";
        let name = access.role_name(&g.role_definition_id);
        let scope = display_directory_scope(g.scope());
        let held = if eligible {
            "eligible through PIM"
        } else if schedule.is_some() {
            "active PIM assignment"
        } else {
            "assigned"
        };
        let node = format!(
            "directory role {name} at {scope} ({} {})",
            if eligible {
                "eligibility"
            } else {
                "assignment"
            },
            g.id
        );
        let template = access.template_of(&g.role_definition_id).to_string();
        let privileged = tenant_reach_role(&template);
        let mut facts = attrs([
            ("role", name.as_str()),
            ("role_definition_id", g.role_definition_id.as_str()),
            ("directory_scope_id", g.scope()),
            ("principal_id", g.principal_id.as_str()),
            ("upn", upn),
        ]);
        if let Some(s) = schedule {
            facts.insert("removal".into(), "schedule-request".into());
            facts.insert("schedule_id".into(), s.id.clone());
        }
        if privileged.is_some() && g.scope() == "/" {
            facts.insert("tenant_reach".into(), "true".into());
        }
        let mut display = format!("Entra directory role {name} at {scope} ({held})");
        if holder.via_membership.is_some() {
            let group = holder.display.trim_start_matches("group ");
            facts.insert("group".into(), group.to_string());
            let listing = if eligible {
                "roleEligibilitySchedules"
            } else {
                "roleAssignments"
            };
            facts.insert("listing".into(), listing.into());
            display = format!("Entra directory role {name} at {scope} of group {group} ({held})");
        }
        out.findings.push(finding(
            kind,
            g.id.clone(),
            display,
            Relation::MemberOf,
            Holder::Account,
            vec![path_to(holder).then(edge, node.clone())],
            facts,
        ));
        if let (Some((_, why)), "/") = (privileged, g.scope()) {
            reach.push(TenantReach {
                principal: holder.clone(),
                edge: edge.to_string(),
                node,
                why: if eligible {
                    format!("eligible for {name}, which it can activate itself: {why}")
                } else {
                    format!("{name} {why}")
                },
            });
        }
    };
    for g in &access.roles {
        let schedule = access.active_schedules.iter().find(|s| s.same_grant(g));
        role_finding(g, kinds::DIRECTORY_ROLE, "assigned", schedule, me);
    }
    // An active schedule whose assignment was not listed (read apart): still held.
    for s in &access.active_schedules {
        if !access.roles.iter().any(|g| g.same_grant(s)) {
            role_finding(s, kinds::DIRECTORY_ROLE, "assigned", Some(s), me);
        }
    }
    for g in &access.eligible {
        role_finding(
            g,
            kinds::DIRECTORY_ROLE_ELIGIBILITY,
            "eligible-for",
            None,
            me,
        );
    }
    for r in &access.group_roles {
        let edge = if r.eligible {
            "eligible-for"
        } else {
            "assigned"
        };
        role_finding(&r.grant, kinds::GROUP_DIRECTORY_ROLE, edge, None, &r.group);
    }

    for group in &access.owned_groups {
        let name = group.display_name.clone().unwrap_or(group.id.clone());
        out.findings.push(finding(
            kinds::OWNED_GROUP,
            group.id.clone(),
            format!("Entra group {name} (owned: an owner can add herself back)"),
            Relation::Owns,
            Holder::Account,
            vec![Path::new().then("owns", format!("group {name}"))],
            attrs([
                ("object_id", group.id.as_str()),
                ("collection", "groups"),
                ("group", name.as_str()),
            ]),
        ));
    }

    for a in &access.app_roles {
        let app = a
            .resource_display_name
            .clone()
            .unwrap_or(a.resource_id.clone());
        let role = if a.app_role_id == "00000000-0000-0000-0000-000000000000" {
            "default access".to_string()
        } else {
            format!("app role {}", a.app_role_id)
        };
        out.findings.push(finding(
            kinds::APP_ROLE_ASSIGNMENT,
            a.id.clone(),
            format!("{role} of enterprise application {app}"),
            Relation::MemberOf,
            Holder::Account,
            vec![Path::new().then(
                "assigned",
                format!("{role} of application {app} (assignment {})", a.id),
            )],
            attrs([
                ("resource_id", a.resource_id.as_str()),
                ("resource_name", app.as_str()),
                ("app_role_id", a.app_role_id.as_str()),
            ]),
        ));
    }

    for g in &access.grants {
        let scope = g.scope.as_deref().unwrap_or("").trim().to_string();
        let client = access.name_of(&g.client_id);
        let resource = access.name_of(&g.resource_id);
        out.findings.push(finding(
            kinds::OAUTH2_GRANT,
            g.id.clone(),
            format!(
                "delegated permissions '{scope}' of {resource} granted to application {client}"
            ),
            Relation::Owns,
            Holder::Account,
            vec![Path::new().then(
                "consented",
                format!("delegated grant to application {client} ({scope} of {resource})"),
            )],
            attrs([
                ("client_id", g.client_id.as_str()),
                ("client_name", client.as_str()),
                ("resource_id", g.resource_id.as_str()),
                ("resource_name", resource.as_str()),
                ("scope", scope.as_str()),
            ]),
        ));
    }

    for m in &access.methods {
        if m.odata_type == PASSWORD_METHOD_TYPE {
            continue;
        }
        let Some((collection, noun)) = method_collection(&m.odata_type) else {
            out.gaps.push(Gap {
                provider: PROVIDER.into(),
                kind: kinds::AUTH_METHOD.into(),
                resource: m.id.clone(),
                reason: format!(
                    "authentication method {} of {upn} has type {}, which Closeout cannot remove: whoever holds it may still sign in, so not closed",
                    m.id, m.odata_type
                ),
                paths: vec![Path::new().then("has", format!("authentication method {}", m.id))],
            });
            continue;
        };
        let label = m
            .display_name
            .clone()
            .or_else(|| m.phone_type.clone())
            .unwrap_or(m.id.clone());
        let user = access_user(out);
        out.findings.push(finding(
            kinds::AUTH_METHOD,
            format!("{user}/{collection}/{}", m.id),
            format!("{noun} authentication method {label} of {upn}"),
            Relation::Owns,
            Holder::Account,
            vec![Path::new()
                .then("account", format!("Entra user {upn}"))
                .then("has", format!("{noun} authentication method {label}"))],
            attrs([
                ("collection", collection),
                ("method_id", m.id.as_str()),
                ("method_type", m.odata_type.as_str()),
            ]),
        ));
    }
    reach
}

/// The person's user object id: the account resolution found (pushed before these findings).
fn access_user(out: &Resolution) -> String {
    out.accounts
        .first()
        .map(|a| a.resource.clone())
        .unwrap_or_default()
}

/// What a role reaching the whole tenant leaves unknown: it could add a client secret or
/// certificate to any application or service principal, and Graph does not say who added a
/// credential, so the ones the person added cannot be told from the others and are not rotated.
/// A gap (open, exit 3) until the site accepts it by name (`tenant-application-credentials`)
/// having reviewed the tenant's application credentials another way; `None` without such a role.
pub(crate) fn tenant_credentials_gap(reach: &[TenantReach], tenant: &str) -> Option<Gap> {
    if reach.is_empty() {
        return None;
    }
    let whys: Vec<&str> = reach.iter().map(|r| r.why.as_str()).collect();
    Some(Gap {
        provider: PROVIDER.into(),
        kind: TENANT_APPLICATION_CREDENTIALS.into(),
        resource: format!("tenant {tenant}"),
        reason: format!(
            "{}: could add a client secret or certificate to any application or service principal of the tenant; Graph does not say who added a credential, so those the person may have added are not known and not rotated",
            whys.join("; ")
        ),
        paths: reach.iter().map(|r| r.path()).collect(),
    })
}

/// The gap kind of [`tenant_credentials_gap`].
pub const TENANT_APPLICATION_CREDENTIALS: &str = "tenant-application-credentials";

/// The one exposure line of the roles that reach the whole tenant; `None` without one.
pub(crate) fn tenant_exposure(reach: &[TenantReach], tenant: &str) -> Option<Exposure> {
    if reach.is_empty() {
        return None;
    }
    let whys: Vec<&str> = reach.iter().map(|r| r.why.as_str()).collect();
    Some(Exposure {
        provider: PROVIDER.into(),
        scope: format!("tenant {tenant}"),
        what: format!(
            "{}: reaches everything the tenant holds; every Key Vault secret, key and certificate in it is rotated",
            whys.join("; ")
        ),
        paths: reach
            .iter()
            .map(|r| {
                r.path()
                    .then("rule", r.why.clone())
                    .then(Relation::CanGrantSelf.as_str(), format!("tenant {tenant}"))
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entra_access::{AuthMethod, RoleGrant};
    use closeout_contract::Account;

    const GA: &str = "62e90394-69f5-4237-9190-012177145e10";
    const HELPDESK: &str = "729827e3-9c14-49f7-bb1b-9608f156bbb8";

    fn grant(id: &str, role: &str, scope: &str) -> RoleGrant {
        RoleGrant {
            id: id.into(),
            principal_id: "u1".into(),
            role_definition_id: role.into(),
            directory_scope_id: Some(scope.into()),
        }
    }

    fn me() -> Principal {
        Principal {
            object_id: "u1".into(),
            display: "user a@example.com".into(),
            via_membership: None,
        }
    }

    fn resolution() -> Resolution {
        Resolution {
            accounts: vec![Account {
                provider: PROVIDER.into(),
                resource: "u1".into(),
                display: "Entra user a@example.com".into(),
                matched_by: "upn".into(),
            }],
            ..Resolution::default()
        }
    }

    #[test]
    fn a_privileged_role_reaches_the_tenant_only_at_the_tenant_scope() {
        let access = EntraAccess {
            roles: vec![
                grant("r1", GA, "/"),
                grant("r2", GA, "/administrativeUnits/au1"),
            ],
            eligible: vec![grant("e1", HELPDESK, "/")],
            ..EntraAccess::default()
        };
        let mut out = resolution();
        let reach = entra_access_findings(&access, "a@example.com", &me(), &mut out);
        assert_eq!(reach.len(), 1, "{reach:#?}");
        assert!(reach[0]
            .why
            .starts_with("Global Administrator can do anything"));
        assert_eq!(reach[0].path().steps[0].edge, "assigned");
        let tenant: Vec<_> = out
            .findings
            .iter()
            .filter(|f| f.attr("tenant_reach").is_some())
            .map(|f| f.resource.as_str())
            .collect();
        assert_eq!(tenant, ["r1"]);
        let e = tenant_exposure(&reach, "t1").expect("exposure");
        assert_eq!(e.scope, "tenant t1");
        assert!(e.paths[0].steps.starts_with(&reach[0].path().steps));
        assert!(tenant_exposure(&[], "t1").is_none());
    }

    #[test]
    fn an_eligible_privileged_role_is_reach_and_an_active_schedule_is_removed_by_request() {
        let access = EntraAccess {
            roles: vec![grant("a1", HELPDESK, "/")],
            active_schedules: vec![grant("a1", HELPDESK, "/")],
            eligible: vec![grant("e1", GA, "/")],
            ..EntraAccess::default()
        };
        let mut out = resolution();
        let reach = entra_access_findings(&access, "a@example.com", &me(), &mut out);
        assert_eq!(reach.len(), 1);
        assert_eq!(reach[0].edge, "eligible-for");
        assert!(reach[0].why.contains("can activate itself"));
        let active = out
            .findings
            .iter()
            .find(|f| f.kind == kinds::DIRECTORY_ROLE)
            .expect("active role");
        assert_eq!(active.attr("removal"), Some("schedule-request"));
        assert_eq!(
            out.findings.len(),
            2,
            "one finding per grant: {:#?}",
            out.findings
        );
    }

    #[test]
    fn a_groups_privileged_role_reaches_the_tenant_through_the_membership() {
        let group = Principal {
            object_id: "g1".into(),
            display: "group tier0".into(),
            via_membership: Some(("g1".into(), "tier0".into())),
        };
        let access = EntraAccess {
            group_roles: vec![crate::entra_access::GroupRole {
                group: group.clone(),
                eligible: true,
                grant: RoleGrant {
                    principal_id: "g1".into(),
                    ..grant("e9", GA, "/")
                },
            }],
            ..EntraAccess::default()
        };
        let mut out = resolution();
        let reach = entra_access_findings(&access, "a@example.com", &me(), &mut out);
        assert_eq!(reach.len(), 1);
        let path = reach[0].path();
        let steps: Vec<&str> = path.steps.iter().map(|s| s.edge.as_str()).collect();
        assert_eq!(steps, ["member-of", "eligible-for"]);
        let f = &out.findings[0];
        assert_eq!(f.kind, kinds::GROUP_DIRECTORY_ROLE);
        assert_eq!(f.attr("group"), Some("tier0"));
        assert_eq!(f.attr("listing"), Some("roleEligibilitySchedules"));
        assert_eq!(f.paths[0], reach[0].path());
    }

    #[test]
    fn the_password_method_is_skipped_and_an_unknown_method_is_a_gap() {
        let method = |t: &str, id: &str| AuthMethod {
            odata_type: format!("#microsoft.graph.{t}"),
            id: id.into(),
            display_name: None,
            phone_type: None,
        };
        let access = EntraAccess {
            methods: vec![
                method("passwordAuthenticationMethod", "p"),
                method("fido2AuthenticationMethod", "k1"),
                method("quantumAuthenticationMethod", "q1"),
            ],
            ..EntraAccess::default()
        };
        let mut out = resolution();
        entra_access_findings(&access, "a@example.com", &me(), &mut out);
        let ids: Vec<_> = out.findings.iter().map(|f| f.resource.as_str()).collect();
        assert_eq!(ids, ["u1/fido2Methods/k1"]);
        assert_eq!(out.gaps.len(), 1);
        assert_eq!(out.gaps[0].kind, kinds::AUTH_METHOD);
        assert!(out.gaps[0].reason.contains("cannot remove"));
    }
}
