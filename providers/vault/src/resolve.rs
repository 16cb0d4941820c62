//! Resolution: an identity's entity, aliases, groups, policies, tokens, userpass logins and owned
//! entities, then (through the area modules) the secrets it reaches, AppRole secret-ids, PKI
//! certificates and leases.

use crate::capabilities::{kinds, PROVIDER};
use crate::client::seg;
use crate::correlation::{auth_mount_path, login_names, own_entity_match, owned_by, OwnedNhiAlias};
use crate::database::dynamic_role;
use crate::findings::{
    attrs, entity_base, entity_policy_finding, entity_state, finding, membership_finding,
    nhi_entity_finding,
};
use crate::memory;
use crate::model::Entity;
use crate::policy::TemplateValues;
use crate::secrets::PolicyPaths;
use crate::server::VaultProvider;
use closeout_contract::reuse::Reuse;
use closeout_contract::{
    Account, Finding, Holder, Path, ProviderError, Relation, Resolution, ResolveContext, State,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A person's own entity, as resolved.
struct Own {
    entity: Entity,
    path: Path,
}

impl Own {
    /// The entity and its aliases, as findings.
    fn findings(&self) -> Vec<Finding> {
        let e = &self.entity;
        let state = entity_state(e);
        let mut out = vec![finding(
            kinds::ENTITY,
            &e.id,
            format!("entity {}", e.name),
            Relation::Owns,
            Holder::Account,
            state,
            self.path.clone(),
            attrs([("entity_id", e.id.clone()), ("name", e.name.clone())]),
        )];
        for a in &e.aliases {
            out.push(finding(
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
                self.path
                    .then("alias", format!("{} ({})", a.name, a.mount_path)),
                attrs([
                    ("entity_id", e.id.clone()),
                    ("mount_accessor", a.mount_accessor.clone()),
                    ("mount_type", a.mount_type.clone()),
                ]),
            ));
        }
        out
    }
}

/// The identity's own entity as an account.
fn own_account(entity: &Entity, matched_by: String) -> Account {
    Account {
        provider: PROVIDER.into(),
        resource: entity.id.clone(),
        display: format!("entity {}", entity.name),
        matched_by,
    }
}

impl VaultProvider {
    /// `resolve_accounts`: every entity read (only an entity carries the metadata that may name
    /// the identity, as in `resolve_impl`), the identity's own kept with their aliases, and the
    /// userpass logins of its names. No groups, policies, tokens or secrets: disabling the
    /// entity stops its tokens at once, and the whole resolution finds the rest.
    pub(crate) async fn resolve_accounts_impl(
        &self,
        ctx: &ResolveContext,
    ) -> Result<Option<Resolution>, ProviderError> {
        let (cfg, identity) = (&self.config, &ctx.identity);
        let mut res = Resolution::default();
        // Taken before anything is read, for the resolution these reads are handed to.
        let mark = cfg.audit_log.as_deref().and_then(memory::log_len);
        let by_rule = login_names(cfg, identity, &[]);
        let (entities, (_, logins)) = tokio::try_join!(
            async { Ok::<_, ProviderError>(self.all_entities().await?) },
            self.userpass_logins(&by_rule),
        )?;
        res.findings.extend(logins);
        let mut aliases = Vec::new();
        for entity in &entities {
            if let Some(matched) = own_entity_match(cfg, identity, entity) {
                res.accounts.push(own_account(entity, matched));
                aliases.extend(entity.aliases.iter().map(|a| a.name.clone()));
                let own = Own {
                    entity: entity.clone(),
                    path: entity_base(entity),
                };
                res.findings.extend(own.findings());
            }
        }
        self.ahead.put(&identity.id, (mark, entities));
        // A login named by an alias of the entity and by no rule: read once the entity is known.
        let more: Vec<String> = login_names(cfg, identity, &aliases)
            .into_iter()
            .filter(|n| !by_rule.contains(n))
            .collect();
        if !more.is_empty() {
            res.findings.extend(self.userpass_logins(&more).await?.1);
        }
        res.normalize();
        Ok(Some(res))
    }

    pub(crate) async fn resolve_impl(
        &self,
        ctx: &ResolveContext,
    ) -> Result<Resolution, ProviderError> {
        let identity = &ctx.identity;
        let cfg = &self.config;
        let mut res = Resolution::default();

        // 0. What may be taken from this run's earlier resolution (`memory.rs`): in a
        // verification's resolution, with a file audit log, what the log shows unchanged since
        // that resolution began. The mark is taken before anything is read.
        let reuse = closeout_contract::reuse::current() == Reuse::SinceLastRead;
        // What `resolve_accounts` read just before (as it was before containment), once; the
        // mark is then the one taken before those reads.
        let ahead = self.ahead.take(&identity.id);
        let mark = match &ahead {
            Some((mark, _)) => *mark,
            None => cfg.audit_log.as_deref().and_then(memory::log_len),
        };
        let prior: Option<memory::Reads> = if reuse {
            self.memory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .reads
                .clone()
        } else {
            None
        };
        // Only in the root namespace: a request in a child namespace may be logged with a path
        // relative to it, which the log's paths alone cannot tell from the root's.
        let log = match (&prior, &cfg.audit_log) {
            (Some(p), Some(log)) if cfg.namespace.is_none() => Some((log.clone(), p.mark)),
            _ => None,
        };

        // 1. Entities: the person's own, and those the person owns (NHIs). The person's own and
        // those naming her as owner are always read live. With a log to read, what it shows
        // changed since the mark (`written`, also used for the KV metadata below).
        let (entities, written) = match ahead {
            Some((_, entities)) => (entities, None),
            None => {
                self.entities_reusing(prior.as_ref().map(|p| &p.entities), log, |e| {
                    own_entity_match(cfg, identity, e).is_some()
                        || owned_by(cfg, identity, &e.metadata)
                })
                .await?
            }
        };
        let remembered_entities: BTreeMap<String, Entity> =
            entities.iter().map(|e| (e.id.clone(), e.clone())).collect();
        let mut own: Vec<Own> = Vec::new();
        // The person's NHI entities' aliases: an AppRole alias names the role (by role-id).
        let mut owned_nhi_aliases: Vec<OwnedNhiAlias> = Vec::new();
        for entity in entities {
            if let Some(matched) = own_entity_match(cfg, identity, &entity) {
                res.accounts.push(own_account(&entity, matched));
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
        let mut policy_paths: PolicyPaths = BTreeMap::new();
        let mut alias_names = Vec::new();
        // What identity templating in the policies is filled with, per own entity.
        let mut templates: Vec<TemplateValues> = Vec::new();

        for o in &own {
            let e = &o.entity;
            let state = entity_state(e);
            res.findings.extend(o.findings());
            alias_names.extend(e.aliases.iter().map(|a| a.name.clone()));
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
            let mut template = TemplateValues {
                entity_id: e.id.clone(),
                entity_name: e.name.clone(),
                metadata: e.metadata.clone(),
                aliases: e
                    .aliases
                    .iter()
                    .map(|a| (a.mount_accessor.clone(), (a.id.clone(), a.name.clone())))
                    .collect(),
                groups: BTreeMap::new(),
            };
            // Level by level: a level's groups are read at once (each level is one round trip,
            // not one per group); within a level the queue's order decides, as one at a time did.
            let mut read: BTreeMap<String, Option<crate::model::Group>> = BTreeMap::new();
            while let Some((gid, via, direct)) = queue.pop_front() {
                if !seen.insert(gid.clone()) {
                    continue;
                }
                if !read.contains_key(&gid) {
                    let level: Vec<String> = std::iter::once(gid.clone())
                        .chain(queue.iter().map(|(g, _, _)| g.clone()))
                        .filter(|g| !read.contains_key(g) && (*g == gid || !seen.contains(g)))
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    let groups =
                        futures::future::try_join_all(level.iter().map(|g| self.read_group(g)))
                            .await?;
                    read.extend(level.into_iter().zip(groups));
                }
                let Some(g) = read.get(&gid).cloned().flatten() else {
                    continue;
                };
                template.groups.insert(g.id.clone(), g.name.clone());
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
            templates.push(template);
        }

        // What needs only the entities runs at once: the token scan (bounded concurrent lookups
        // over the accessor list, only matches kept, and the orphans the audit log attributes to
        // the person), the auth mounts and userpass logins, PKI certificates, leases under the
        // configured prefixes and the database mounts. Each writes its own resolution, merged
        // below (resolutions are normalized, so the order of findings does not matter).
        let names = login_names(cfg, identity, &alias_names);
        let mut pki = Resolution::default();
        let mut leases = Resolution::default();
        let (mut scan, (auth, logins), (), (), database_mounts) = tokio::try_join!(
            self.resolve_tokens(identity, &own_ids),
            self.userpass_logins(&names),
            self.resolve_pki(identity, &mut pki),
            self.resolve_leases(identity, &mut leases),
            async {
                Ok::<_, ProviderError>(
                    self.mounts("sys/mounts")
                        .await?
                        .into_iter()
                        .filter(|(_, m)| m.mount_type == "database")
                        .map(|(k, _)| k)
                        .collect::<Vec<String>>(),
                )
            },
        )?;
        res.absorb(pki);
        res.absorb(leases);
        res.findings.extend(logins);
        res.warnings.append(&mut scan.warnings);
        res.gaps.append(&mut scan.gaps);
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

        // 4. The policies reaching the person (and those of the AppRole roles she can log in as),
        // what they let her grant herself, the KV secrets (v1 and v2) she owns, reads or could
        // grant herself, and the engines Closeout does not enumerate that she reaches (gaps);
        // 5. AppRole secret-ids the person owns (the auth mounts read above); 7. the leases the
        // audit log says the person's requests obtained. Independent of each other: at once.
        let mut secrets = Resolution::default();
        let mut approles = Resolution::default();
        let mut audit_leases = Resolution::default();
        let empty = BTreeMap::new();
        let mut kv = memory::KvSession {
            prior: prior.as_ref().map_or(&empty, |p| &p.kv),
            written: written.as_ref(),
            read: BTreeMap::new(),
        };
        tokio::try_join!(
            self.resolve_secrets(ctx, &auth, &policy_paths, &templates, &mut kv, &mut secrets),
            self.resolve_approle(ctx, &auth, &owned_nhi_aliases, &mut approles),
            self.resolve_audit_leases(&scan.leases, &mut audit_leases),
        )?;
        res.absorb(secrets);
        res.absorb(approles);
        res.absorb(audit_leases);
        // A lease under a database mount's `creds/<role>/` is a dynamic database credential:
        // named so, with its role (revoking the lease makes Vault drop the database user).
        if !database_mounts.is_empty() {
            for f in res.findings.iter_mut().filter(|f| f.kind == kinds::LEASE) {
                let Some((mount, role)) = f
                    .attr("lease_id")
                    .and_then(|id| dynamic_role(id, &database_mounts))
                    .map(|(m, r)| (m.to_string(), r.to_string()))
                else {
                    continue;
                };
                f.display = format!(
                    "dynamic database credentials of role {role} at {mount} ({})",
                    f.display
                );
                f.attributes.insert("database_mount".into(), mount);
                f.attributes.insert("database_role".into(), role);
            }
        }

        if own.is_empty() {
            res.warnings.push(format!(
                "no Vault entity correlates with identity {}",
                identity.id
            ));
        }
        // Remembered for a verification of this run: everything read (or reused, which the log
        // showed unchanged up to after this mark), as of the mark taken before reading.
        if let Some(mark) = mark {
            let kv = kv.read;
            self.memory.lock().unwrap_or_else(|p| p.into_inner()).reads = Some(memory::Reads {
                mark,
                entities: remembered_entities,
                kv,
            });
        }
        res.normalize();
        Ok(res)
    }

    /// The auth mounts, and the userpass logins among `names` on every userpass mount (each
    /// name and mount read at once).
    async fn userpass_logins(
        &self,
        names: &[String],
    ) -> Result<(BTreeMap<String, crate::model::Mount>, Vec<Finding>), ProviderError> {
        let auth = self.mounts("sys/auth").await?;
        let reads = auth
            .iter()
            .filter(|(_, m)| m.mount_type == "userpass")
            // A userpass name holds no `/`; vaultrs would read such a name as more segments.
            .flat_map(|(mount, m)| {
                names
                    .iter()
                    .filter(|n| !n.contains('/'))
                    .map(move |name| (mount, m, name))
            })
            .map(|(mount, m, name)| async move {
                let path = format!("auth/{mount}users/{}", seg(name));
                let user = self
                    .client
                    .read_data::<vaultrs::api::auth::userpass::responses::ReadUserResponse>(
                        "GET", &path, None,
                    )
                    .await;
                match user {
                    Ok(_) => Ok(Some(finding(
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
                    ))),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(ProviderError::from(e)),
                }
            });
        let found = futures::future::try_join_all(reads).await?;
        Ok((auth, found.into_iter().flatten().collect()))
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
