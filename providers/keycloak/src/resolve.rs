//! Resolution: correlate the identity with a user of the realm, then everything bound to it.

use crate::capabilities::{gap_kinds, kinds, PROVIDER};
use crate::client::CallError;
use crate::config::Correlation;
use crate::findings::{attrs, finding, id, millis, user_path};
use crate::model;
use crate::server::{KeycloakProvider, PAGE};
use closeout_contract::{
    Account, Finding, Gap, Holder, Identity, Path, ProviderError, Relation, Resolution,
    ResolveContext, State,
};
use std::collections::{BTreeMap, BTreeSet};

/// The attribute carrying when a client's secret was made (epoch seconds).
pub(crate) const SECRET_CREATED: &str = "client.secret.creation.time";

impl KeycloakProvider {
    /// The identity's user and the rule that found it; `Ok(None)` when no rule finds one.
    /// Several distinct users under one rule is an error (ambiguous correlation).
    pub(crate) async fn correlate(
        &self,
        identity: &Identity,
    ) -> Result<Option<(model::User, String)>, ProviderError> {
        for rule in &self.config.correlation {
            let mut found: BTreeMap<String, (model::User, String)> = BTreeMap::new();
            for (query, described) in queries(rule, identity) {
                let users: Vec<model::User> = self
                    .client
                    .admin(
                        "GET",
                        &format!("/users?{query}&exact=true&briefRepresentation=false"),
                        None,
                    )
                    .await?
                    .unwrap_or_default();
                for u in users {
                    if u.service_account_client_id.is_some() || !matches(rule, &u, identity) {
                        continue;
                    }
                    found.entry(u.id.clone()).or_insert((u, described.clone()));
                }
            }
            match found.len() {
                0 => continue,
                1 => return Ok(found.into_values().next()),
                n => {
                    return Err(ProviderError::Permanent {
                        provider: PROVIDER,
                        message: format!(
                            "{n} users of realm {} match identity {} by {} ({}): correlation is ambiguous",
                            self.realm(),
                            identity.id,
                            describe(rule),
                            found.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    })
                }
            }
        }
        Ok(None)
    }

    /// Every user of the realm (service-account users excepted) that none of `identities`
    /// correlates with by the configured rules; one paged listing.
    pub(crate) async fn unclaimed_impl(
        &self,
        identities: &[Identity],
    ) -> Result<Vec<closeout_contract::UnclaimedAccount>, ProviderError> {
        let realm = self.realm();
        let rules: Vec<String> = self.config.correlation.iter().map(describe).collect();
        let mut out = Vec::new();
        let mut first = 0;
        loop {
            let page: Vec<model::User> = self
                .client
                .admin(
                    "GET",
                    &format!("/users?first={first}&max={PAGE}&briefRepresentation=false"),
                    None,
                )
                .await?
                .unwrap_or_default();
            let n = page.len();
            first += n;
            for u in page {
                if u.service_account_client_id.is_some() {
                    continue;
                }
                let claimed = identities
                    .iter()
                    .any(|i| self.config.correlation.iter().any(|r| matches(r, &u, i)));
                if !claimed {
                    out.push(closeout_contract::UnclaimedAccount {
                        provider: PROVIDER.into(),
                        resource: format!("{realm}/{}", u.id),
                        display: format!("user {} in realm {realm}", u.username),
                        reason: format!(
                            "no active identity matches user {} by {}",
                            u.username,
                            rules.join(", ")
                        ),
                        enabled: u.enabled,
                    });
                }
            }
            if n < PAGE {
                return Ok(out);
            }
        }
    }

    pub(crate) async fn resolve_impl(
        &self,
        ctx: &ResolveContext,
    ) -> Result<Resolution, ProviderError> {
        let mut res = Resolution::default();
        let identity = &ctx.identity;
        let user = self.correlate(identity).await?;
        if let Some((user, matched_by)) = &user {
            res.accounts.push(Account {
                provider: PROVIDER.into(),
                resource: format!("{}/{}", self.realm(), user.id),
                display: format!("user {} in realm {}", user.username, self.realm()),
                matched_by: matched_by.clone(),
            });
            self.resolve_user(user, &mut res).await?;
        }
        self.resolve_owned_clients(ctx, &mut res).await?;
        res.normalize();
        Ok(res)
    }

    async fn resolve_user(
        &self,
        user: &model::User,
        res: &mut Resolution,
    ) -> Result<(), ProviderError> {
        let realm = self.realm();
        let uid = &user.id;
        let base = user_path(&user.username);
        let u_attrs = |extra: [(&str, String); 2]| {
            let mut a = attrs([
                ("user_id", uid.clone()),
                ("username", user.username.clone()),
            ]);
            a.extend(attrs(extra));
            a
        };
        res.findings.push(finding(
            id(kinds::USER, realm, uid),
            kinds::USER,
            Relation::Owns,
            Holder::Account,
            uid.clone(),
            format!("user {} in realm {realm}", user.username),
            if user.enabled {
                State::Active
            } else {
                State::Disabled
            },
            base.clone(),
            u_attrs([
                ("email", user.email.clone().unwrap_or_default()),
                (
                    "created",
                    user.created_timestamp.and_then(millis).unwrap_or_default(),
                ),
            ]),
        ));
        if let Some(link) = &user.federation_link {
            res.gaps.push(Gap {
                provider: PROVIDER.into(),
                kind: gap_kinds::USER_FEDERATION.into(),
                resource: format!("{realm}/{uid}"),
                reason: format!(
                    "the user is federated from user storage provider {link}: its password and directory groups live there and are not acted on by Closeout"
                ),
                paths: vec![base.clone()],
            });
        }

        // Online sessions.
        let sessions: Vec<model::Session> = self.user_list(uid, "sessions").await?;
        if !sessions.is_empty() {
            let clients: BTreeSet<&str> = sessions
                .iter()
                .flat_map(|s| s.clients.values().map(String::as_str))
                .collect();
            res.findings.push(finding(
                id(kinds::SESSIONS, realm, uid),
                kinds::SESSIONS,
                Relation::Owns,
                Holder::Account,
                uid.clone(),
                format!(
                    "{} sign-in session(s) of user {}",
                    sessions.len(),
                    user.username
                ),
                State::Active,
                base.then("has", "sign-in sessions"),
                u_attrs([
                    ("sessions", sessions.len().to_string()),
                    ("clients", clients.into_iter().collect::<Vec<_>>().join(",")),
                ]),
            ));
        }

        // Consents and offline tokens (the consents listing names the clients holding offline
        // tokens in `additionalGrants`).
        let consents: Vec<model::Consent> = self.user_list(uid, "consents").await?;
        for c in &consents {
            if !c.granted_client_scopes.is_empty() {
                let mut scopes = c.granted_client_scopes.clone();
                scopes.sort();
                let scopes = scopes.join(",");
                res.findings.push(finding(
                    id(kinds::CONSENT, realm, &format!("{uid}/{}", c.client_id)),
                    kinds::CONSENT,
                    Relation::Owns,
                    Holder::Account,
                    c.client_id.clone(),
                    format!(
                        "consent of user {} to client {} (scopes {scopes})",
                        user.username, c.client_id
                    ),
                    State::Active,
                    base.then("consented", format!("client {}", c.client_id)),
                    u_attrs([("client_id", c.client_id.clone()), ("scopes", scopes)]),
                ));
            }
            let offline_client = c.additional_grants.iter().find_map(|g| {
                (g.get("key").and_then(|k| k.as_str()) == Some("Offline Token"))
                    .then(|| g.get("client").and_then(|c| c.as_str()).map(str::to_string))
                    .flatten()
            });
            if let Some(client_uuid) = offline_client {
                let offline: Vec<model::Session> = self
                    .user_list(
                        uid,
                        &format!("offline-sessions/{}", urlencoding::encode(&client_uuid)),
                    )
                    .await?;
                let mut a = u_attrs([
                    ("client_id", c.client_id.clone()),
                    ("client_uuid", client_uuid.clone()),
                ]);
                a.insert("sessions".into(), offline.len().to_string());
                res.findings.push(finding(
                    id(
                        kinds::OFFLINE_SESSION,
                        realm,
                        &format!("{uid}/{}", c.client_id),
                    ),
                    kinds::OFFLINE_SESSION,
                    Relation::Owns,
                    Holder::Account,
                    c.client_id.clone(),
                    format!(
                        "offline tokens of user {} for client {}",
                        user.username, c.client_id
                    ),
                    if offline.is_empty() {
                        State::Revoked
                    } else {
                        State::Active
                    },
                    base.then("has", format!("offline session of client {}", c.client_id)),
                    a,
                ));
            }
        }

        // Credentials (metadata only).
        let creds: Vec<model::Credential> = self.user_list(uid, "credentials").await?;
        for c in creds {
            let mut a = u_attrs([("credential_id", c.id.clone()), ("type", c.kind.clone())]);
            if let Some(l) = &c.user_label {
                a.insert("label".into(), l.clone());
            }
            if let Some(t) = c.created_date.and_then(millis) {
                a.insert("created".into(), t);
            }
            res.findings.push(finding(
                id(kinds::CREDENTIAL, realm, &format!("{uid}/{}", c.id)),
                kinds::CREDENTIAL,
                Relation::Owns,
                Holder::Account,
                c.id.clone(),
                format!("{} credential of user {}", c.kind, user.username),
                State::Active,
                base.then("has", format!("{} credential", c.kind)),
                a,
            ));
        }

        // Federated identity links.
        let links: Vec<model::FederatedIdentity> =
            self.user_list(uid, "federated-identity").await?;
        for l in links {
            res.findings.push(finding(
                id(
                    kinds::FEDERATED_IDENTITY,
                    realm,
                    &format!("{uid}/{}", l.identity_provider),
                ),
                kinds::FEDERATED_IDENTITY,
                Relation::Owns,
                Holder::Account,
                l.identity_provider.clone(),
                format!(
                    "link of user {} to identity provider {}",
                    user.username, l.identity_provider
                ),
                State::Active,
                base.then(
                    "linked",
                    format!("identity provider {}", l.identity_provider),
                ),
                u_attrs([
                    ("identity_provider", l.identity_provider.clone()),
                    (
                        "external_user",
                        l.user_name.or(l.user_id).unwrap_or_default(),
                    ),
                ]),
            ));
        }

        // Direct role mappings.
        let mappings = self.user_mappings(uid).await?;
        for r in &mappings.realm_mappings {
            res.findings.push(role_finding(realm, user, &base, None, r));
        }
        for cm in mappings.client_mappings.values() {
            for r in &cm.mappings {
                res.findings
                    .push(role_finding(realm, user, &base, Some(cm), r));
            }
        }

        // Groups: direct memberships, the parents they nest in, and the roles of each.
        let groups = self.user_groups(uid).await?;
        // Parent path → its id (looked up once per resolution).
        let mut parent_ids: BTreeMap<String, Option<String>> = BTreeMap::new();
        for g in &groups {
            let gpath = base.then("member-of", format!("group {}", g.path));
            res.findings.push(finding(
                id(kinds::GROUP_MEMBERSHIP, realm, &format!("{uid}{}", g.path)),
                kinds::GROUP_MEMBERSHIP,
                Relation::MemberOf,
                Holder::Account,
                g.path.clone(),
                format!("membership of user {} in group {}", user.username, g.path),
                State::Active,
                gpath.clone(),
                u_attrs([("group_id", g.id.clone()), ("group_path", g.path.clone())]),
            ));
            self.group_roles(realm, user, &g.id, &g.path, &gpath, res)
                .await?;
            // Parents: /a/b/c is in /a/b, which is in /a.
            let mut chain = gpath.clone();
            for parent in parents(&g.path) {
                chain = chain.then("member-of", format!("group {parent}"));
                res.findings.push(finding(
                    id(kinds::INHERITED_GROUP, realm, &format!("{uid}{parent}")),
                    kinds::INHERITED_GROUP,
                    Relation::MemberOf,
                    Holder::Account,
                    parent.clone(),
                    format!("group {parent} (user {} through {})", user.username, g.path),
                    State::Active,
                    chain.clone(),
                    u_attrs([("group_path", parent.clone()), ("via", g.path.clone())]),
                ));
                let parent_id = match parent_ids.get(&parent) {
                    Some(id) => id.clone(),
                    None => {
                        let group: Option<model::Group> = match self
                            .client
                            .admin(
                                "GET",
                                &format!("/group-by-path{}", encode_path(&parent)),
                                None,
                            )
                            .await
                        {
                            Ok(gr) => gr,
                            Err(e) if e.is_not_found() => None,
                            Err(e) => return Err(e.into()),
                        };
                        let id = group.map(|g| g.id);
                        parent_ids.insert(parent.clone(), id.clone());
                        id
                    }
                };
                if let Some(pid) = parent_id {
                    self.group_roles(realm, user, &pid, &parent, &chain, res)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The roles mapped to one group, as `group-role` findings reached through `path`.
    async fn group_roles(
        &self,
        realm: &str,
        user: &model::User,
        group_id: &str,
        group_path: &str,
        path: &Path,
        res: &mut Resolution,
    ) -> Result<(), ProviderError> {
        let m: model::Mappings = match self
            .client
            .admin(
                "GET",
                &format!("/groups/{}/role-mappings", urlencoding::encode(group_id)),
                None,
            )
            .await
        {
            Ok(m) => m.unwrap_or_default(),
            Err(e) if e.is_not_found() => model::Mappings::default(),
            Err(e) => return Err(e.into()),
        };
        let mut roles: Vec<String> = m.realm_mappings.iter().map(|r| r.name.clone()).collect();
        for cm in m.client_mappings.values() {
            roles.extend(
                cm.mappings
                    .iter()
                    .map(|r| format!("{}/{}", cm.client, r.name)),
            );
        }
        for role in roles {
            res.findings.push(finding(
                id(
                    kinds::GROUP_ROLE,
                    realm,
                    &format!("{}{group_path}#{role}", user.id),
                ),
                kinds::GROUP_ROLE,
                Relation::MemberOf,
                Holder::Account,
                role.clone(),
                format!("role {role} of group {group_path} (user {})", user.username),
                State::Active,
                path.then("has-role", format!("role {role}")),
                attrs([
                    ("user_id", user.id.clone()),
                    ("group_path", group_path.to_string()),
                    ("role", role.clone()),
                ]),
            ));
        }
        Ok(())
    }

    /// Clients whose owner attribute names the identity, and their secrets.
    async fn resolve_owned_clients(
        &self,
        ctx: &ResolveContext,
        res: &mut Resolution,
    ) -> Result<(), ProviderError> {
        let realm = self.realm();
        let key = &self.config.owner_attribute;
        let clients = match self.clients().await {
            Ok(c) => c,
            Err(e) if e.status == Some(403) => {
                res.gaps.push(Gap {
                    provider: PROVIDER.into(),
                    kind: kinds::OWNED_CLIENT.into(),
                    resource: String::new(),
                    reason: format!("the clients of realm {realm} could not be listed: {e}"),
                    paths: Vec::new(),
                });
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        for c in clients {
            let Some(owner) = c.attributes.get(key) else {
                continue;
            };
            if !ctx.identity.is_named_by(owner) {
                continue;
            }
            let path = Path::new().then("owns", format!("client {}", c.client_id));
            let holder = Holder::Nhi(c.client_id.clone());
            res.findings.push(finding(
                id(kinds::OWNED_CLIENT, realm, &c.client_id),
                kinds::OWNED_CLIENT,
                Relation::Owns,
                holder.clone(),
                c.client_id.clone(),
                format!("client {} in realm {realm}", c.client_id),
                State::Active,
                path.clone(),
                attrs([
                    ("client_uuid", c.id.clone()),
                    ("owner", owner.clone()),
                    ("service_account", c.service_accounts_enabled.to_string()),
                ]),
            ));
            if c.has_secret() {
                let published = self.publish_path(&c.client_id);
                let state = match ctx.cutoff {
                    Some(cut) if secret_made_after(&c, cut, published.as_deref()) => State::Rotated,
                    _ => State::Active,
                };
                res.findings.push(finding(
                    id(kinds::CLIENT_SECRET, realm, &c.client_id),
                    kinds::CLIENT_SECRET,
                    Relation::Owns,
                    holder,
                    c.client_id.clone(),
                    format!("client secret of {} in realm {realm}", c.client_id),
                    state,
                    path.then("has", "client secret"),
                    attrs([
                        ("client_uuid", c.id.clone()),
                        (
                            "created",
                            secret_created(&c)
                                .map(|t| t.to_rfc3339())
                                .unwrap_or_default(),
                        ),
                        ("service_account", c.service_accounts_enabled.to_string()),
                    ]),
                ));
            }
        }
        Ok(())
    }
}

/// When the client's current secret was made, if Keycloak recorded it.
pub(crate) fn secret_created(c: &model::Client) -> Option<chrono::DateTime<chrono::Utc>> {
    let secs: i64 = c.attributes.get(SECRET_CREATED)?.trim().parse().ok()?;
    chrono::DateTime::from_timestamp(secs, 0)
}

/// Whether the client's current secret was made after `cut`. Keycloak records its creation in
/// whole seconds, so within the cutoff's own second it cannot say: then the secret counts as
/// made after `cut` only if Closeout published it (`published`, written by the rotation right
/// after regenerating) after `cut`. A close-out that rotates within a second of its start would
/// otherwise see its own new secret as the old one and stay open.
pub(crate) fn secret_made_after(
    c: &model::Client,
    cut: chrono::DateTime<chrono::Utc>,
    published: Option<&std::path::Path>,
) -> bool {
    let Some(created) = secret_created(c) else {
        return false;
    };
    if created.timestamp() != cut.timestamp() {
        return created > cut;
    }
    published
        .and_then(|p| std::fs::metadata(p).ok()?.modified().ok())
        .is_some_and(|m| chrono::DateTime::<chrono::Utc>::from(m) > cut)
}

fn role_finding(
    realm: &str,
    user: &model::User,
    base: &Path,
    client: Option<&model::ClientMappings>,
    r: &model::Role,
) -> Finding {
    let (kind, rest, target, mut a) = match client {
        None => (
            kinds::REALM_ROLE,
            format!("{}/{}", user.id, r.name),
            r.name.clone(),
            BTreeMap::new(),
        ),
        Some(cm) => (
            kinds::CLIENT_ROLE,
            format!("{}/{}/{}", user.id, cm.client, r.name),
            format!("{}/{}", cm.client, r.name),
            attrs([
                ("client_id", cm.client.clone()),
                ("client_uuid", cm.id.clone()),
            ]),
        ),
    };
    a.insert("user_id".into(), user.id.clone());
    a.insert("role_id".into(), r.id.clone());
    a.insert("role".into(), r.name.clone());
    a.insert("target".into(), target.clone());
    if r.composite {
        a.insert("composite".into(), "true".into());
    }
    finding(
        id(kind, realm, &rest),
        kind,
        Relation::MemberOf,
        Holder::Account,
        target.clone(),
        format!("role {target} of user {}", user.username),
        State::Active,
        base.then("has-role", format!("role {target}")),
        a,
    )
}

/// `/a/b/c` → `["/a/b", "/a"]`.
pub(crate) fn parents(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = path.trim_end_matches('/').to_string();
    while let Some(i) = p.rfind('/') {
        if i == 0 {
            break;
        }
        p.truncate(i);
        out.push(p.clone());
    }
    out
}

/// A group path for `group-by-path`: each segment percent-encoded, `/` kept.
pub(crate) fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|s| urlencoding::encode(s).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn describe(rule: &Correlation) -> String {
    match rule {
        Correlation::Attribute(a) => format!("attribute {a}"),
        Correlation::Username => "username".into(),
        Correlation::Email => "email".into(),
    }
}

/// The user searches one rule makes, each with how a match is described.
fn queries(rule: &Correlation, identity: &Identity) -> Vec<(String, String)> {
    let enc = |s: &str| urlencoding::encode(s).into_owned();
    let mut values: Vec<String> = vec![identity.id.clone(), identity.email.clone()];
    match rule {
        Correlation::Attribute(a) => values
            .into_iter()
            .filter(|v| !v.trim().is_empty() && !v.contains(' '))
            .map(|v| {
                (
                    format!("q={}", enc(&format!("{a}:{v}"))),
                    format!("attribute {a} = {v}"),
                )
            })
            .collect(),
        Correlation::Username => {
            values.extend(identity.email_local_part());
            values.sort();
            values.dedup();
            values
                .into_iter()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (format!("username={}", enc(&v)), format!("username = {v}")))
                .collect()
        }
        Correlation::Email => (!identity.email.trim().is_empty())
            .then(|| {
                (
                    format!("email={}", enc(&identity.email)),
                    format!("email = {}", identity.email),
                )
            })
            .into_iter()
            .collect(),
    }
}

/// Whether `u` really matches (the server's search is a filter, not the rule itself).
fn matches(rule: &Correlation, u: &model::User, identity: &Identity) -> bool {
    match rule {
        Correlation::Attribute(a) => u
            .attributes
            .get(a)
            .is_some_and(|vs| vs.iter().any(|v| identity.is_named_by(v))),
        Correlation::Username => {
            identity.is_named_by(&u.username)
                || identity
                    .email_local_part()
                    .is_some_and(|l| l.eq_ignore_ascii_case(&u.username))
        }
        Correlation::Email => u
            .email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(&identity.email)),
    }
}

impl From<&CallError> for ProviderError {
    fn from(e: &CallError) -> Self {
        e.clone().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_of_nested_paths() {
        assert_eq!(
            parents("/a/b/c"),
            vec!["/a/b".to_string(), "/a".to_string()]
        );
        assert!(parents("/a").is_empty());
        assert_eq!(encode_path("/eng/team one"), "/eng/team%20one");
    }

    #[test]
    fn a_secret_made_in_the_cutoffs_second_counts_only_when_published_after_it() {
        let client = |secs: i64| -> model::Client {
            serde_json::from_value(serde_json::json!({
                "id": "u", "clientId": "bot",
                "attributes": {SECRET_CREATED: secs.to_string()}
            }))
            .unwrap()
        };
        let cut = chrono::DateTime::from_timestamp(1_000, 500_000_000).unwrap();
        assert!(secret_made_after(&client(1_001), cut, None));
        assert!(!secret_made_after(&client(999), cut, None));
        // Same second: unknown from Keycloak alone, so not rotated...
        assert!(!secret_made_after(&client(1_000), cut, None));
        let dir = std::env::temp_dir().join(format!("closeout-kc-cut-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let published = dir.join("bot");
        std::fs::write(&published, "x").unwrap();
        // ...unless Closeout published it after the cutoff (the file is written now, long after
        // 1970), and never from a file written before it.
        assert!(secret_made_after(&client(1_000), cut, Some(&published)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(60);
        let now_second = client(later.timestamp());
        assert!(!secret_made_after(&now_second, later, Some(&published)));
        assert!(!secret_made_after(
            &client(1_000),
            cut,
            Some(&dir.join("none"))
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
