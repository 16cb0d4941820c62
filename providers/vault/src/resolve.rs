//! Correlation and reachability: an identity's entity, aliases, groups, policies, tokens,
//! userpass logins, owned entities and the KV v2 secrets it owns or can read.

use crate::capabilities::{kinds, PROVIDER};
use crate::client::{bare_mount, keys, seg, CallError, Data};
use crate::correlation::{auth_mount_path, login_names, own_entity_match, owned_by, OwnedNhiAlias};
use crate::findings::{
    attrs, entity_base, entity_policy_finding, entity_state, finding, membership_finding,
    nhi_entity_finding,
};
use crate::model::{Entity, KvMetadata};
use crate::policy::{self, PathRule};
use crate::server::VaultProvider;
use closeout_contract::{
    Account, Finding, Holder, Path, ProviderError, Relation, Resolution, ResolveContext, State,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A person's own entity, as resolved.
struct Own {
    entity: Entity,
    path: Path,
}

impl VaultProvider {
    pub(crate) async fn resolve_impl(
        &self,
        ctx: &ResolveContext,
    ) -> Result<Resolution, ProviderError> {
        let identity = &ctx.identity;
        let cfg = &self.config;
        let conc = cfg.max_in_flight.max(1);
        let mut res = Resolution::default();

        // 1. Entities: the person's own, and those the person owns (NHIs).
        let entities = self.all_entities().await?;
        let mut own: Vec<Own> = Vec::new();
        // The person's NHI entities' aliases: an AppRole alias names the role (by role-id).
        let mut owned_nhi_aliases: Vec<OwnedNhiAlias> = Vec::new();
        for entity in entities {
            if let Some(matched) = own_entity_match(cfg, identity, &entity) {
                res.accounts.push(Account {
                    provider: PROVIDER.into(),
                    resource: entity.id.clone(),
                    display: format!("entity {}", entity.name),
                    matched_by: matched,
                });
                let path = entity_base(&entity);
                own.push(Own { entity, path });
            } else if owned_by(cfg, identity, &entity.metadata) {
                owned_nhi_aliases.extend(entity.aliases.iter().map(|a| OwnedNhiAlias {
                    mount_accessor: a.mount_accessor.clone(),
                    name: a.name.clone(),
                    entity: entity.name.clone(),
                    owner: entity.metadata[&cfg.owner_key].clone(),
                }));
                res.findings.push(nhi_entity_finding(cfg, &entity));
            }
        }
        own.sort_by(|a, b| a.entity.id.cmp(&b.entity.id));
        let own_ids: BTreeSet<String> = own.iter().map(|o| o.entity.id.clone()).collect();

        // Policies reaching the person: name -> paths.
        let mut policy_paths: BTreeMap<String, Vec<(Path, String)>> = BTreeMap::new();
        let mut alias_names = Vec::new();

        for o in &own {
            let e = &o.entity;
            let state = entity_state(e);
            res.findings.push(finding(
                kinds::ENTITY,
                &e.id,
                format!("entity {}", e.name),
                Relation::Owns,
                Holder::Account,
                state,
                o.path.clone(),
                attrs([("entity_id", e.id.clone()), ("name", e.name.clone())]),
            ));
            for a in &e.aliases {
                alias_names.push(a.name.clone());
                res.findings.push(finding(
                    kinds::ENTITY_ALIAS,
                    &a.id,
                    format!(
                        "alias {} of entity {} under {}",
                        a.name,
                        e.name,
                        auth_mount_path(&a.mount_path)
                    ),
                    Relation::Owns,
                    Holder::Account,
                    state,
                    o.path
                        .then("alias", format!("{} ({})", a.name, a.mount_path)),
                    attrs([
                        ("entity_id", e.id.clone()),
                        ("mount_accessor", a.mount_accessor.clone()),
                        ("mount_type", a.mount_type.clone()),
                    ]),
                ));
            }
            for p in &e.policies {
                let f = entity_policy_finding(e, p, state);
                // The entitlement's path is the prefix of everything reached through it.
                let path = f.paths[0].clone();
                res.findings.push(f);
                policy_paths
                    .entry(p.clone())
                    .or_default()
                    .push((path, e.id.clone()));
            }
            // Groups: breadth-first from the direct ones through parent groups.
            let mut queue: VecDeque<(String, Path, bool)> = e
                .direct_group_ids
                .iter()
                .map(|g| (g.clone(), o.path.clone(), true))
                .collect();
            let mut seen = BTreeSet::new();
            while let Some((gid, via, direct)) = queue.pop_front() {
                if !seen.insert(gid.clone()) {
                    continue;
                }
                let Some(g) = self.read_group(&gid).await? else {
                    continue;
                };
                let path = via.then("member-of", format!("group {}", g.name));
                let kind = if direct {
                    kinds::GROUP_MEMBERSHIP
                } else {
                    kinds::INHERITED_GROUP
                };
                res.findings
                    .push(membership_finding(kind, e, &g, path.clone(), state));
                for p in &g.policies {
                    policy_paths
                        .entry(p.clone())
                        .or_default()
                        .push((path.then("attached", format!("policy {p}")), e.id.clone()));
                }
                for parent in &g.parent_group_ids {
                    queue.push_back((parent.clone(), path.clone(), false));
                }
            }
        }

        // 2. Tokens: bounded concurrent lookups over the accessor list (only matches are kept),
        // and the orphans the audit log attributes to the person.
        let mut scan = self.resolve_tokens(identity, &own_ids).await?;
        res.warnings.append(&mut scan.warnings);
        scan.tokens
            .sort_by(|a, b| a.info.accessor.cmp(&b.info.accessor));
        for pt in &scan.tokens {
            let t = &pt.info;
            let base = match own.iter().find(|o| o.entity.id == t.entity_id) {
                Some(o) => o.path.clone(),
                None => Path::new(),
            };
            let path = match &pt.created {
                Some(c) => base.then(
                    "created",
                    format!(
                        "token {} ({} at {} by {}, per the audit log)",
                        t.accessor,
                        c.path,
                        c.time.to_rfc3339(),
                        c.by
                    ),
                ),
                None if own_ids.contains(&t.entity_id) => base.then(
                    "token",
                    format!("token {} ({})", t.accessor, t.display_name),
                ),
                None => base.then("owns", format!("token {} ({})", t.accessor, t.display_name)),
            };
            let mut attributes = attrs([
                ("accessor", t.accessor.clone()),
                ("entity_id", t.entity_id.clone()),
                ("display_name", t.display_name.clone()),
                ("policies", t.policies.join(",")),
                ("orphan", t.orphan.to_string()),
                ("created_by_path", t.path.clone()),
                ("created", t.creation_time.to_string()),
                ("expire_time", t.expire_time.clone()),
            ]);
            if let Some(c) = &pt.created {
                attributes.insert("found_by".into(), "audit-log".into());
                attributes.insert("created_by".into(), c.by.clone());
            }
            res.findings.push(finding(
                kinds::TOKEN,
                &t.accessor,
                format!("token {} ({})", t.accessor, t.display_name),
                Relation::Owns,
                Holder::Account,
                State::Active,
                path.clone(),
                attributes,
            ));
            for p in &t.policies {
                if p != "default" {
                    policy_paths.entry(p.clone()).or_default().push((
                        path.then("attached", format!("policy {p}")),
                        t.entity_id.clone(),
                    ));
                }
            }
        }

        // Policy findings.
        for (name, paths) in &policy_paths {
            for (path, entity_id) in paths {
                let mut f = finding(
                    kinds::POLICY,
                    &format!("{name}@{}", entity_id_or_token(entity_id, path)),
                    format!("policy {name}"),
                    Relation::MemberOf,
                    Holder::Account,
                    State::Active,
                    path.clone(),
                    attrs([("policy", name.clone()), ("entity_id", entity_id.clone())]),
                );
                if entity_id.is_empty() {
                    // Reached through an entity-less token: closes when that token dies.
                    if let Some(acc) = token_accessor_in(path) {
                        f.attributes.insert("accessor".into(), acc);
                    }
                }
                if let Some(o) = own.iter().find(|o| &o.entity.id == entity_id) {
                    if o.entity.disabled {
                        f.state = State::Disabled;
                    }
                }
                res.findings.push(f);
            }
        }

        // 3. Userpass logins.
        let auth = self.mounts("sys/auth").await?;
        let names = login_names(cfg, identity, &alias_names);
        for (mount, m) in auth.iter().filter(|(_, m)| m.mount_type == "userpass") {
            // A userpass name holds no `/`; vaultrs would read such a name as more segments.
            for name in names.iter().filter(|n| !n.contains('/')) {
                let path = format!("auth/{mount}users/{}", seg(name));
                let user = self.client.sdk("GET", &path, |c| {
                    vaultrs::auth::userpass::user::read(c, bare_mount(mount), name)
                });
                match user.await {
                    Ok(_) => res.findings.push(finding(
                        kinds::PASSWORD_LOGIN,
                        &path,
                        format!("userpass login {name} (auth/{mount})"),
                        Relation::Owns,
                        Holder::Account,
                        State::Active,
                        Path::new().then("login", format!("userpass {name} at auth/{mount}")),
                        attrs([
                            ("mount", mount.clone()),
                            ("mount_accessor", m.accessor.clone()),
                            ("user", name.clone()),
                        ]),
                    )),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }

        // 4. KV v2 secrets: owned (custom metadata) or readable through a reaching policy.
        let mut rules: BTreeMap<String, Vec<PathRule>> = BTreeMap::new();
        for name in policy_paths.keys() {
            if name == "root" {
                rules.insert(
                    name.clone(),
                    vec![PathRule {
                        pattern: "*".into(),
                        capabilities: ["root".to_string()].into(),
                    }],
                );
                continue;
            }
            // vaultrs's `sys::policy::read` uses the legacy `sys/policy/<name>`, which needs
            // another ACL grant than `sys/policies/acl/<name>`: a typed call keeps the grant.
            match self
                .client
                .get::<Data<serde_json::Value>>(&format!("sys/policies/acl/{}", seg(name)))
                .await
            {
                Ok(Some(d)) => {
                    let text = d.data.get("policy").and_then(|p| p.as_str()).unwrap_or("");
                    match policy::parse(text) {
                        Ok(r) => {
                            rules.insert(name.clone(), r);
                        }
                        Err(e) => res.warnings.push(format!("policy {name}: {e}")),
                    }
                }
                Ok(None) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mounts = self.mounts("sys/mounts").await?;
        for (mount, _) in mounts.iter().filter(|(_, m)| {
            m.mount_type == "kv" && m.options.get("version").map(String::as_str) == Some("2")
        }) {
            let keys = self.kv_keys(mount).await?;
            let metas: Vec<(String, Option<KvMetadata>)> = stream::iter(keys)
                .map(|k| async move {
                    let m = self.kv_metadata(mount, &k).await?;
                    Ok::<_, CallError>((k, m))
                })
                .buffer_unordered(conc)
                .try_collect()
                .await?;
            let mut metas = metas;
            metas.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, meta) in metas {
                let Some(meta) = meta else { continue };
                if meta.current_version == 0 {
                    continue;
                }
                let data_path = format!("{mount}data/{key}");
                let state = match (ctx.cutoff, meta.current_created()) {
                    (Some(cutoff), Some(created)) if created > cutoff => State::Rotated,
                    _ => State::Active,
                };
                // `created_at`: when the current version was written (the rotation policy's age).
                let created_at = meta
                    .current_created()
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default();
                let a = || {
                    attrs([
                        ("mount", mount.clone()),
                        ("key", key.clone()),
                        ("current_version", meta.current_version.to_string()),
                        ("created_at", created_at.clone()),
                    ])
                };
                let display = format!("KV secret {data_path}");
                if owned_by(cfg, identity, &meta.custom_metadata) {
                    res.findings.push(finding(
                        kinds::KV_SECRET,
                        &data_path,
                        display.clone(),
                        Relation::Owns,
                        Holder::Shared,
                        state,
                        Path::new().then("owns", format!("secret {data_path}")),
                        a(),
                    ));
                }
                let set = rules.iter().map(|(n, r)| (n.as_str(), r.as_slice()));
                if let Some((caps, pattern, names)) = policy::effective(set, &data_path) {
                    if policy::allows_read(&caps) {
                        for n in names {
                            for (path, _) in policy_paths.get(&n).into_iter().flatten() {
                                res.findings.push(finding(
                                    kinds::KV_SECRET,
                                    &data_path,
                                    display.clone(),
                                    Relation::CanRead,
                                    Holder::Shared,
                                    state,
                                    path.then(
                                        "can-read",
                                        format!("secret {data_path} (path \"{pattern}\")"),
                                    ),
                                    a(),
                                ));
                            }
                        }
                    }
                }
            }
        }

        // 5. AppRole secret-ids the person owns (the auth mounts read for the logins above).
        self.resolve_approle(ctx, &auth, &owned_nhi_aliases, &mut res)
            .await?;
        // 6. PKI certificates issued to the person.
        self.resolve_pki(identity, &mut res).await?;
        // 7. Leases under the configured prefixes, and those the audit log says the person's
        // requests obtained.
        self.resolve_leases(identity, &mut res).await?;
        self.resolve_audit_leases(&scan.leases, &mut res).await?;

        if own.is_empty() {
            res.warnings.push(format!(
                "no Vault entity correlates with identity {}",
                identity.id
            ));
        }
        res.normalize();
        Ok(res)
    }

    /// `nhi_findings`: the entities a service identity correlates with (the rules of
    /// [`own_entity_match`], as `resolve` finds a person's own entities), as `nhi-entity`
    /// findings. Reads every entity, as `resolve` does: only the entity carries its metadata.
    pub(crate) async fn nhi_findings_impl(
        &self,
        ctx: &ResolveContext,
    ) -> Result<Vec<Finding>, ProviderError> {
        let mut found: Vec<Finding> = self
            .all_entities()
            .await?
            .iter()
            .filter(|e| own_entity_match(&self.config, &ctx.identity, e).is_some())
            .map(|e| nhi_entity_finding(&self.config, e))
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    /// Every secret key of a KV v2 mount, depth-first.
    async fn kv_keys(&self, mount: &str) -> Result<Vec<String>, CallError> {
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(prefix) = stack.pop() {
            let path = format!("{mount}metadata/{prefix}");
            let r = self.client.sdk("LIST", &path, |c| {
                vaultrs::kv2::list(c, bare_mount(mount), &prefix)
            });
            for k in keys(r.await)? {
                let full = format!("{prefix}{k}");
                if k.ends_with('/') {
                    stack.push(full);
                } else {
                    out.push(full);
                }
            }
        }
        Ok(out)
    }
}

/// The accessor of the last token on a path (nodes read `token <accessor> (<display name>)`).
fn token_accessor_in(path: &Path) -> Option<String> {
    path.steps
        .iter()
        .rev()
        .find_map(|s| s.node.strip_prefix("token "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
}

/// Policies reached through a token without entity are keyed by the token's accessor.
fn entity_id_or_token(entity_id: &str, path: &Path) -> String {
    if !entity_id.is_empty() {
        return entity_id.to_string();
    }
    path.steps
        .iter()
        .rev()
        .find(|s| s.node.starts_with("token "))
        .map(|s| s.node.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessor_is_read_back_from_a_token_path() {
        let p = Path::new()
            .then("owns", "token abc123 (token-ci)")
            .then("attached", "policy ci");
        assert_eq!(token_accessor_in(&p).as_deref(), Some("abc123"));
        assert_eq!(
            token_accessor_in(&Path::new().then("account", "entity a")),
            None
        );
    }
}
