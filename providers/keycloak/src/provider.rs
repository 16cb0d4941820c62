//! The [`Provider`] impl: each contract method delegates to the module that implements it,
//! plus `health` and the entitlement hooks. Nothing imports this module.

use crate::capabilities::{kinds, CAPABILITIES, PROVIDER};
use crate::config::{KeycloakConfig, KeycloakError};
use crate::findings::{attrs, finding, id, user_path};
use crate::model;
use crate::resolve::encode_path;
use crate::server::KeycloakProvider;
use closeout_contract::{
    ActionOutcome, ActionRequest, Capabilities, Entitlement, Finding, Health, Holder, Identity,
    Limits, ProbeOutcome, Provider, ProviderError, Relation, Resolution, ResolveContext, State,
    UnclaimedAccount,
};
use std::future::Future;

/// The entitlement a live finding is (a direct group membership or role mapping); the realm's
/// default roles (`default-roles-REALM`, given to every user) are not entitlements a policy names.
pub(crate) fn entitlement(f: &Finding) -> Option<Entitlement> {
    let target = match f.kind.as_str() {
        kinds::GROUP_MEMBERSHIP => f.attr("group_path")?.to_string(),
        kinds::REALM_ROLE => {
            let role = f.attr("role")?;
            if role.starts_with("default-roles-") {
                return None;
            }
            role.to_string()
        }
        kinds::CLIENT_ROLE => f.attr("target")?.to_string(),
        _ => return None,
    };
    Some(Entitlement::new(PROVIDER, f.kind.clone(), target))
}

fn config_error(message: String) -> ProviderError {
    ProviderError::Config {
        provider: PROVIDER,
        message,
    }
}

impl KeycloakProvider {
    async fn health_impl(&self, needs: &[&'static str]) -> Result<Health, ProviderError> {
        // Reading one user and one client proves the sign-in and the view roles.
        let _: Option<Vec<model::User>> = self.client.admin("GET", "/users?max=1", None).await?;
        let _: Option<Vec<model::Client>> =
            self.client.admin("GET", "/clients?max=1", None).await?;
        let mut health = Health {
            principal: self.client.principal(),
            missing: Vec::new(),
            unchecked: Vec::new(),
        };
        match self.own_roles().await {
            Ok(held) => {
                for n in needs {
                    let role = n.strip_prefix("realm-management:").unwrap_or(n);
                    if !held.iter().any(|h| h == role) {
                        health.missing.push(n.to_string());
                    }
                }
            }
            Err(reason) => {
                health.unchecked = needs
                    .iter()
                    .map(|n| (n.to_string(), reason.clone()))
                    .collect();
            }
        }
        Ok(health)
    }

    /// The realm-management roles Closeout's own principal holds for the configured realm
    /// (composites expanded): every one for a master-realm `admin`; otherwise the roles of the
    /// realm's management client (`{realm}-realm` in master, `realm-management` in the realm
    /// itself). `Err` says why they could not be read.
    async fn own_roles(&self) -> Result<Vec<String>, String> {
        let auth_realm = self.client.auth_realm().to_string();
        let enc = |s: &str| urlencoding::encode(s).into_owned();
        // Closeout's own user in the realm it signs in to: the admin user, or the service
        // account of its client (admin-cli's lightweight tokens name no subject).
        let sub = match self.client.admin_identity() {
            (Some(username), _) => {
                let users: Vec<model::User> = self
                    .client
                    .admin_get_in(
                        &auth_realm,
                        &format!("/users?username={}&exact=true", enc(username)),
                    )
                    .await
                    .map_err(|e| format!("Closeout's own user could not be read: {e}"))?
                    .unwrap_or_default();
                users
                    .into_iter()
                    .find(|u| u.username.eq_ignore_ascii_case(username))
                    .map(|u| u.id)
                    .ok_or(format!("user {username} not found in realm {auth_realm}"))?
            }
            (None, client_id) => {
                let clients: Vec<model::Client> = self
                    .client
                    .admin_get_in(
                        &auth_realm,
                        &format!("/clients?clientId={}", enc(client_id)),
                    )
                    .await
                    .map_err(|e| format!("Closeout's own client could not be read: {e}"))?
                    .unwrap_or_default();
                let client = clients
                    .into_iter()
                    .find(|c| c.client_id == client_id)
                    .ok_or(format!(
                        "client {client_id} not found in realm {auth_realm}"
                    ))?;
                let user: Option<model::User> = self
                    .client
                    .admin_get_in(
                        &auth_realm,
                        &format!("/clients/{}/service-account-user", enc(&client.id)),
                    )
                    .await
                    .map_err(|e| {
                        format!("the service account of {client_id} could not be read: {e}")
                    })?;
                user.map(|u| u.id)
                    .ok_or(format!("client {client_id} has no service account"))?
            }
        };
        let realm_roles: Vec<model::Role> = self
            .client
            .admin_get_in(
                &auth_realm,
                &format!("/users/{}/role-mappings/realm/composite", enc(&sub)),
            )
            .await
            .map_err(|e| format!("Closeout's own role mappings could not be read: {e}"))?
            .unwrap_or_default();
        const ALL: [&str; 3] = ["view-users", "view-clients", "query-groups"];
        const MANAGE: [&str; 2] = ["manage-users", "manage-clients"];
        if auth_realm == "master" && realm_roles.iter().any(|r| r.name == "admin") {
            return Ok(ALL
                .iter()
                .chain(MANAGE.iter())
                .map(|s| s.to_string())
                .collect());
        }
        let management = if auth_realm == "master" {
            format!("{}-realm", self.realm())
        } else {
            "realm-management".to_string()
        };
        let clients: Vec<model::Client> = self
            .client
            .admin_get_in(
                &auth_realm,
                &format!("/clients?clientId={}", enc(&management)),
            )
            .await
            .map_err(|e| format!("client {management} could not be read: {e}"))?
            .unwrap_or_default();
        let client = clients
            .into_iter()
            .find(|c| c.client_id == management)
            .ok_or(format!("realm {auth_realm} has no client {management}"))?;
        let roles: Vec<model::Role> = self
            .client
            .admin_get_in(
                &auth_realm,
                &format!(
                    "/users/{}/role-mappings/clients/{}/composite",
                    enc(&sub),
                    enc(&client.id)
                ),
            )
            .await
            .map_err(|e| format!("Closeout's own roles of {management} could not be read: {e}"))?
            .unwrap_or_default();
        Ok(roles.into_iter().map(|r| r.name).collect())
    }

    async fn grant_finding_impl(
        &self,
        ctx: &ResolveContext,
        e: &Entitlement,
    ) -> Result<Finding, ProviderError> {
        let (user, _) = self.correlate(&ctx.identity).await?.ok_or_else(|| {
            config_error(format!(
                "identity {} has no user in realm {} to grant {e} to",
                ctx.identity.id,
                self.realm()
            ))
        })?;
        let realm = self.realm();
        let uid = user.id.clone();
        let base = user_path(&user.username);
        let u = |extra: Vec<(&str, String)>| {
            let mut a = attrs([
                ("user_id", uid.clone()),
                ("username", user.username.clone()),
            ]);
            a.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
            a
        };
        match e.kind.as_str() {
            kinds::GROUP_MEMBERSHIP => {
                let g: model::Group = match self
                    .client
                    .admin(
                        "GET",
                        &format!("/group-by-path{}", encode_path(&e.target)),
                        None,
                    )
                    .await
                {
                    Ok(Some(g)) => g,
                    Ok(None) => {
                        return Err(config_error(format!("group {} does not exist", e.target)))
                    }
                    Err(err) if err.is_not_found() => {
                        return Err(config_error(format!(
                            "group {} does not exist in realm {realm}",
                            e.target
                        )))
                    }
                    Err(err) => return Err(err.into()),
                };
                Ok(finding(
                    id(kinds::GROUP_MEMBERSHIP, realm, &format!("{uid}{}", g.path)),
                    kinds::GROUP_MEMBERSHIP,
                    Relation::MemberOf,
                    Holder::Account,
                    g.path.clone(),
                    format!("membership of user {} in group {}", user.username, g.path),
                    State::Deleted,
                    base.then("member-of", format!("group {}", g.path)),
                    u(vec![
                        ("group_id", g.id.clone()),
                        ("group_path", g.path.clone()),
                    ]),
                ))
            }
            kinds::REALM_ROLE | kinds::CLIENT_ROLE => {
                let (role_path, client, rest, role_name) = if e.kind == kinds::REALM_ROLE {
                    (
                        format!("/roles/{}", urlencoding::encode(&e.target)),
                        None,
                        format!("{uid}/{}", e.target),
                        e.target.clone(),
                    )
                } else {
                    let (client_id, role) = e.target.split_once('/').ok_or_else(|| {
                        config_error(format!("client role {} is not CLIENT_ID/ROLE", e.target))
                    })?;
                    let c = self.client_by_client_id(client_id).await?.ok_or_else(|| {
                        config_error(format!(
                            "client {client_id} does not exist in realm {realm}"
                        ))
                    })?;
                    (
                        format!(
                            "/clients/{}/roles/{}",
                            urlencoding::encode(&c.id),
                            urlencoding::encode(role)
                        ),
                        Some(c),
                        format!("{uid}/{client_id}/{role}"),
                        role.to_string(),
                    )
                };
                let r: model::Role = match self.client.admin("GET", &role_path, None).await {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        return Err(config_error(format!("role {} does not exist", e.target)))
                    }
                    Err(err) if err.is_not_found() => {
                        return Err(config_error(format!(
                            "role {} does not exist in realm {realm}",
                            e.target
                        )))
                    }
                    Err(err) => return Err(err.into()),
                };
                let mut extra = vec![
                    ("role_id", r.id.clone()),
                    ("role", role_name),
                    ("target", e.target.clone()),
                ];
                if let Some(c) = &client {
                    extra.push(("client_id", c.client_id.clone()));
                    extra.push(("client_uuid", c.id.clone()));
                }
                Ok(finding(
                    id(&e.kind, realm, &rest),
                    &e.kind,
                    Relation::MemberOf,
                    Holder::Account,
                    e.target.clone(),
                    format!("role {} of user {}", e.target, user.username),
                    State::Deleted,
                    base.then("has-role", format!("role {}", e.target)),
                    u(extra),
                ))
            }
            _ => Err(ProviderError::Unsupported {
                provider: PROVIDER,
                message: format!("cannot grant {e}"),
            }),
        }
    }
}

impl Provider for KeycloakProvider {
    type Config = KeycloakConfig;
    const CAPABILITIES: &'static Capabilities = &CAPABILITIES;

    fn connect(
        config: KeycloakConfig,
    ) -> impl Future<Output = Result<KeycloakProvider, KeycloakError>> + Send {
        KeycloakProvider::connect(config)
    }

    fn limits(&self) -> Limits {
        self.client.limits()
    }

    fn health(
        &self,
        needs: &[&'static str],
    ) -> impl Future<Output = Result<Health, ProviderError>> + Send {
        Box::pin(self.health_impl(needs))
    }

    fn resolve(
        &self,
        ctx: &ResolveContext,
    ) -> impl Future<Output = Result<Resolution, ProviderError>> + Send {
        Box::pin(self.resolve_impl(ctx))
    }

    fn execute(
        &self,
        action: &ActionRequest,
    ) -> impl Future<Output = Result<ActionOutcome, ProviderError>> + Send {
        Box::pin(self.execute_impl(action))
    }

    fn live_state(
        &self,
        finding: &Finding,
        ctx: &ResolveContext,
    ) -> impl Future<Output = Result<State, ProviderError>> + Send {
        Box::pin(self.live_state_impl(finding, ctx))
    }

    fn probe(
        &self,
        finding: &Finding,
    ) -> impl Future<Output = Result<Option<ProbeOutcome>, ProviderError>> + Send {
        Box::pin(self.probe_impl(finding))
    }

    fn entitlement(&self, finding: &Finding) -> Option<Entitlement> {
        entitlement(finding)
    }

    fn grant_finding(
        &self,
        ctx: &ResolveContext,
        entitlement: &Entitlement,
    ) -> impl Future<Output = Result<Finding, ProviderError>> + Send {
        Box::pin(self.grant_finding_impl(ctx, entitlement))
    }

    fn unclaimed_accounts(
        &self,
        identities: &[Identity],
    ) -> impl Future<Output = Result<Vec<UnclaimedAccount>, ProviderError>> + Send {
        Box::pin(self.unclaimed_impl(identities))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_needs_a_credential_and_never_shows_it() {
        let dir = std::env::temp_dir().join(format!("closeout-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cred");
        std::fs::write(&file, "canary-secret\n").unwrap();
        let config = KeycloakConfig {
            base_url: "http://127.0.0.1:1".into(),
            realm: "acme".into(),
            credential_file: Some(file.clone()),
            ..Default::default()
        };
        let p = KeycloakProvider::connect(config.clone()).await.unwrap();
        assert!(!format!("{p:?}").contains("canary"));
        let err = p.health_impl(&[]).await.unwrap_err();
        assert!(err.is_unreachable(), "{err}");
        assert!(!err.to_string().contains("canary"));
        std::fs::write(&file, "").unwrap();
        let err = KeycloakProvider::connect(config).await.unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn default_roles_are_not_entitlements() {
        let mut f = finding(
            "x".into(),
            kinds::REALM_ROLE,
            Relation::MemberOf,
            Holder::Account,
            "r".into(),
            "r".into(),
            State::Active,
            closeout_contract::Path::new(),
            attrs([("role", "default-roles-acme".to_string())]),
        );
        assert_eq!(entitlement(&f), None);
        f.attributes.insert("role".into(), "auditor".into());
        assert_eq!(entitlement(&f).unwrap().target, "auditor");
    }
}
