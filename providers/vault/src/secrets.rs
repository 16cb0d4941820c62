//! The secrets a person reaches through the policies she holds: every KV secret (v1 and v2) she
//! owns, can read, or could grant herself; the ways she could grant herself any policy (an
//! exposure of the whole Vault); and the secrets engines she reaches that Closeout does not
//! enumerate (gaps). One read of each policy reaching her, one listing of the mounts and of each
//! KV mount, the metadata of each v2 secret (as before), the token roles only when her policies
//! may use them: nothing per principal.

use crate::capabilities::{gap_kinds, kinds, PROVIDER};
use crate::client::{seg, CallError, Data};
use crate::findings::{attrs, finding, gap, listed, refused_listing};
use crate::kv::state_since;
use crate::model::{KvMetadata, Mount};
use crate::policy::{self, PathRule, TemplateValues};
use crate::reach::{self, GrantSelf, Rules};
use crate::server::VaultProvider;
use closeout_contract::rotation_strategy;
use closeout_contract::{
    Exposure, Holder, Path, ProviderError, Relation, Resolution, ResolveContext, Shape, State,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Policies reaching the person: name -> every (path to it, entity id or "" for a token).
pub(crate) type PolicyPaths = BTreeMap<String, Vec<(Path, String)>>;

/// Secrets engine types Closeout covers: KV (here), PKI (`pki`), database (`database`: static
/// roles, connections, and dynamic credentials as leases), and the per-namespace system,
/// identity and cubbyhole mounts (identity is resolved as entities and groups; a cubbyhole dies
/// with its token).
const COVERED_ENGINES: &[&str] = &[
    "kv",
    "pki",
    "database",
    "system",
    "ns_system",
    "identity",
    "ns_identity",
    "cubbyhole",
    "ns_cubbyhole",
];

/// How a secret is the person's: the relation and the path that explains it.
type Reached = (Relation, Path);

/// `auth/<approle mount>/role/<name>`: the policies its tokens carry.
#[derive(Debug, Default, Deserialize)]
struct AppRoleRole {
    #[serde(default, deserialize_with = "crate::model::nullable")]
    token_policies: Vec<String>,
    /// The pre-`token_policies` name of the same list, still returned by some servers.
    #[serde(default, deserialize_with = "crate::model::nullable")]
    policies: Vec<String>,
}

/// An AppRole role the person can log in as (she may mint a secret-id for it): the policies
/// its tokens carry, and the paths from her to the role.
struct ActedAs {
    role: String,
    policies: BTreeSet<String>,
    paths: Vec<Path>,
}

/// `auth/token/roles/<name>`: which policies tokens created from it may carry.
#[derive(Debug, Default, Deserialize)]
struct TokenRole {
    #[serde(default, deserialize_with = "crate::model::nullable")]
    allowed_policies: Vec<String>,
    #[serde(default, deserialize_with = "crate::model::nullable")]
    allowed_policies_glob: Vec<String>,
    #[serde(default, deserialize_with = "crate::model::nullable")]
    disallowed_policies: Vec<String>,
    #[serde(default, deserialize_with = "crate::model::nullable")]
    disallowed_policies_glob: Vec<String>,
}

impl TokenRole {
    /// The policies a token from this role may carry beyond `held` (and `default`), as a
    /// phrase; `None` when only held ones (a role with no allow list and no deny list keeps the
    /// parent's subset rule).
    fn beyond(&self, held: &BTreeSet<String>) -> Option<String> {
        let extra: Vec<&str> = self
            .allowed_policies
            .iter()
            .map(String::as_str)
            .filter(|p| *p != "default" && !held.contains(*p))
            .collect();
        if !extra.is_empty() {
            return Some(format!("policies {}", extra.join(", ")));
        }
        if !self.allowed_policies_glob.is_empty() {
            return Some(format!(
                "policies matching {}",
                self.allowed_policies_glob.join(", ")
            ));
        }
        let denies_only = self.allowed_policies.is_empty()
            && (!self.disallowed_policies.is_empty() || !self.disallowed_policies_glob.is_empty());
        denies_only.then(|| "any policy not disallowed".to_string())
    }
}

/// A way to grant herself any policy, as the step a path shows: `policy P can <what>: <caps>
/// on <path> (path "<pattern>")`.
fn grant_label(g: &GrantSelf, policy: &str) -> String {
    format!(
        "policy {policy} can {}: {} on {} (path \"{}\")",
        g.what, g.capabilities, g.path, g.pattern
    )
}

/// Every (path to a policy giving a grant-self, its label).
fn grant_steps(grants: &[GrantSelf], policy_paths: &PolicyPaths) -> Vec<(Path, String)> {
    let mut out = Vec::new();
    for g in grants {
        for name in &g.policies {
            for (path, _) in policy_paths.get(name).into_iter().flatten() {
                out.push((path.clone(), grant_label(g, name)));
            }
        }
    }
    out
}

impl VaultProvider {
    /// The scope an exposure names: the server, and the namespace when one is configured.
    fn scope(&self) -> String {
        match &self.config.namespace {
            Some(ns) => format!("vault {} namespace {ns}", self.client.address()),
            None => format!("vault {}", self.client.address()),
        }
    }

    /// The rules of every policy reaching the person. A policy Vault refuses to show (403) or
    /// the parser cannot read is a `policy-document` gap: what it grants is unknown.
    async fn read_policies(
        &self,
        policy_paths: &PolicyPaths,
        templates: &[TemplateValues],
        res: &mut Resolution,
    ) -> Result<Rules, ProviderError> {
        let mut rules: Rules = BTreeMap::new();
        for (name, paths) in policy_paths {
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
            let unknown = |reason: String| {
                gap(
                    gap_kinds::POLICY_DOCUMENT,
                    name,
                    reason,
                    paths.iter().map(|(p, _)| p.clone()).collect(),
                )
            };
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
                        Ok(r) => match policy::expand_rules(r, templates) {
                            Ok(r) => {
                                rules.insert(name.clone(), r);
                            }
                            Err(e) => res.gaps.push(unknown(format!(
                                "policy {name}: {e}, so what it grants is unknown"
                            ))),
                        },
                        Err(e) => res.gaps.push(unknown(format!(
                            "policy {name} could not be read ({e}; Closeout reads HCL path rules, not JSON policies): what it grants is unknown"
                        ))),
                    }
                }
                Ok(None) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) if e.is_refused() => res.gaps.push(unknown(format!(
                    "reading policy {name} was refused ({e}): what it grants is unknown"
                ))),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(rules)
    }

    /// The AppRole roles (not yet in `acted`) that `rules` let the person mint a secret-id for,
    /// with the policies of their tokens. A mount's roles are listed only when some rule may
    /// mint a secret-id there, and a role is read only when the rules do for it.
    async fn approles_acted_as(
        &self,
        rules: &Rules,
        auth: &BTreeMap<String, Mount>,
        acted: &BTreeSet<String>,
        policy_paths: &PolicyPaths,
        res: &mut Resolution,
    ) -> Result<Vec<ActedAs>, ProviderError> {
        let mut out = Vec::new();
        for (mount, _) in auth.iter().filter(|(_, m)| m.mount_type == "approle") {
            if !reach::may_mint_secret_ids(rules, mount) {
                continue;
            }
            let roles_path = format!("auth/{mount}role");
            let roles = listed(
                self.client.list(&roles_path).await,
                gap_kinds::APPROLE_ROLE,
                &roles_path,
                &mut res.gaps,
            )?;
            for role in roles {
                let role_path = format!("auth/{mount}role/{role}");
                if acted.contains(&role_path) {
                    continue;
                }
                let Some((endpoint, caps, pattern, names)) =
                    reach::mints_secret_id(rules, mount, &role)
                else {
                    continue;
                };
                let mut paths: Vec<Path> = Vec::new();
                for n in &names {
                    let label = format!(
                        "approle role {role} at auth/{mount} (policy {n} can mint a secret-id and log in as it: {caps} on {endpoint} (path \"{pattern}\"))"
                    );
                    for (p, _) in policy_paths.get(n).into_iter().flatten() {
                        paths.push(p.then("can-act-as", label.clone()));
                    }
                }
                let read = self
                    .client
                    .get::<Data<AppRoleRole>>(&format!("auth/{mount}role/{}", seg(&role)))
                    .await;
                let read = match read {
                    Ok(Some(d)) => d.data,
                    Ok(None) => continue,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) if e.is_refused() => {
                        res.gaps.push(gap(
                            gap_kinds::APPROLE_ROLE,
                            &role_path,
                            format!(
                                "reading {role_path} was refused ({e}): the person can log in as it (she may mint its secret-ids), but which policies its tokens carry is unknown"
                            ),
                            paths,
                        ));
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let policies = read
                    .token_policies
                    .into_iter()
                    .chain(read.policies)
                    .filter(|p| p != "default")
                    .collect();
                out.push(ActedAs {
                    role: role_path,
                    policies,
                    paths,
                });
            }
        }
        Ok(out)
    }

    /// A gap per child namespace of the configured one (of the root namespace when none is
    /// configured). Closeout reads one namespace; groups, policies and secrets in a child can
    /// still reach the person (a child's group may hold her entity, her policies may name a
    /// child's paths), so each one it does not follow is unknown, never silently left out.
    async fn namespace_gaps(&self, res: &mut Resolution) -> Result<(), ProviderError> {
        let here = self.config.namespace.as_deref().map_or_else(
            || "the root namespace".to_string(),
            |ns| format!("namespace {ns}"),
        );
        match self.client.list("sys/namespaces").await {
            Ok(children) => {
                for child in children {
                    res.gaps.push(gap(
                        gap_kinds::NAMESPACE,
                        &child,
                        format!(
                            "{here} has a child namespace {child}, which Closeout does not follow: groups, policies, tokens and secrets in it that may reach the person are unknown"
                        ),
                        Vec::new(),
                    ));
                }
            }
            Err(e) if e.is_refused() => res.gaps.push(gap(
                gap_kinds::NAMESPACE,
                "",
                format!(
                    "listing the child namespaces of {here} was refused ({e}): whether namespaces Closeout does not follow reach the person is unknown"
                ),
                Vec::new(),
            )),
            // A server without namespaces (Vault Community) does not serve the path.
            Err(e) if e.status.is_some_and(|s| s == 400 || s == 405) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Token roles the person may create tokens from that carry policies she does not hold.
    /// Read only when her rules may use a token role at all.
    async fn token_role_grants(
        &self,
        rules: &Rules,
        held: &BTreeSet<String>,
        res: &mut Resolution,
    ) -> Result<Vec<GrantSelf>, ProviderError> {
        if !reach::may_use_token_roles(rules) {
            return Ok(Vec::new());
        }
        let refused = |path: &str, e: &CallError| {
            gap(
                gap_kinds::TOKEN_ROLE,
                path,
                format!(
                    "reading {path} was refused ({e}): whether the person can create tokens with policies she does not hold is unknown"
                ),
                Vec::new(),
            )
        };
        let names = match self.client.list("auth/token/roles").await {
            Ok(n) => n,
            Err(e) if e.is_refused() => {
                res.gaps.push(refused("auth/token/roles", &e));
                return Ok(Vec::new());
            }
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for name in names {
            let create = format!("auth/token/create/{name}");
            let Some((capabilities, pattern, policies)) = reach::allows_update(rules, &create)
            else {
                continue;
            };
            let path = format!("auth/token/roles/{}", seg(&name));
            let role = match self.client.get::<Data<TokenRole>>(&path).await {
                Ok(r) => r.map(|d| d.data).unwrap_or_default(),
                Err(e) if e.is_not_found() => continue,
                Err(e) if e.is_refused() => {
                    res.gaps.push(refused(&path, &e));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(beyond) = role.beyond(held) {
                out.push(GrantSelf {
                    what: format!("create tokens from token role {name}, which allows {beyond}"),
                    path: create,
                    capabilities,
                    pattern,
                    policies,
                });
            }
        }
        Ok(out)
    }

    /// Step 4 of resolution: policies (identity templates filled from `templates`, one per own
    /// entity), grant-self, KV secrets, other engines.
    pub(crate) async fn resolve_secrets(
        &self,
        ctx: &ResolveContext,
        auth: &BTreeMap<String, Mount>,
        policy_paths: &PolicyPaths,
        templates: &[TemplateValues],
        kv: &mut crate::memory::KvSession<'_>,
        res: &mut Resolution,
    ) -> Result<(), ProviderError> {
        let mut policy_paths = policy_paths.clone();
        let mut rules = self.read_policies(&policy_paths, templates, res).await?;
        // AppRole roles she can mint a secret-id for are roles she can log in as: the policies
        // of their tokens are hers, followed until nothing new is found (those policies may
        // mint secret-ids for further roles).
        let mut acted: BTreeSet<String> = BTreeSet::new();
        loop {
            let found = self
                .approles_acted_as(&rules, auth, &acted, &policy_paths, res)
                .await?;
            if found.is_empty() {
                break;
            }
            let mut added: PolicyPaths = BTreeMap::new();
            for a in found {
                acted.insert(a.role);
                for p in &a.policies {
                    for path in &a.paths {
                        added
                            .entry(p.clone())
                            .or_default()
                            .push((path.then("attached", format!("policy {p}")), String::new()));
                    }
                }
            }
            let unread: PolicyPaths = added
                .iter()
                .filter(|(name, _)| !policy_paths.contains_key(*name))
                .map(|(name, paths)| (name.clone(), paths.clone()))
                .collect();
            rules.extend(self.read_policies(&unread, templates, res).await?);
            for (name, paths) in added {
                policy_paths.entry(name).or_default().extend(paths);
            }
        }
        self.namespace_gaps(res).await?;
        let policy_paths = &policy_paths;
        let held: BTreeSet<String> = policy_paths.keys().cloned().collect();
        let mut grants = reach::grant_self(&rules, &held);
        grants.extend(self.token_role_grants(&rules, &held, res).await?);
        let steps = grant_steps(&grants, policy_paths);
        if !grants.is_empty() {
            let mut whats: Vec<&str> = grants.iter().map(|g| g.what.as_str()).collect();
            whats.sort();
            whats.dedup();
            res.exposures.push(Exposure {
                provider: PROVIDER.into(),
                scope: self.scope(),
                what: format!(
                    "can grant itself any policy, and so every secret here: {}",
                    whats.join("; ")
                ),
                paths: steps
                    .iter()
                    .map(|(p, label)| p.then("can-grant-self", label.clone()))
                    .collect(),
            });
        }
        let mounts = self.mounts("sys/mounts").await?;
        for (mount, m) in &mounts {
            if m.mount_type == "kv" {
                self.resolve_kv_mount(ctx, mount, m, &rules, policy_paths, &steps, kv, res)
                    .await?;
            } else if m.mount_type == "database" {
                self.resolve_database_mount(ctx.cutoff, mount, &rules, policy_paths, &steps, res)
                    .await?;
            } else if !COVERED_ENGINES.contains(&m.mount_type.as_str()) {
                res.gaps
                    .extend(engine_gap(mount, m, &rules, policy_paths, &steps));
            }
        }
        Ok(())
    }

    /// One KV mount: every secret the person owns (v2 custom metadata), can read, or could
    /// grant herself, with its state against the cutoff.
    #[allow(clippy::too_many_arguments)]
    async fn resolve_kv_mount(
        &self,
        ctx: &ResolveContext,
        mount: &str,
        m: &Mount,
        rules: &Rules,
        policy_paths: &PolicyPaths,
        grant_steps: &[(Path, String)],
        kv: &mut crate::memory::KvSession<'_>,
        res: &mut Resolution,
    ) -> Result<(), ProviderError> {
        let conc = self.config.max_in_flight.max(1);
        let v1 = m.options.get("version").map(String::as_str) != Some("2");
        let listing = self.kv_keys(mount, v1).await?;
        for (path, e) in &listing.refused {
            res.gaps.push(refused_listing(kinds::KV_SECRET, path, e));
        }
        // Closeout's own records of KV v1 rotations hold no secret.
        let record_prefix = self.config.kv1_record_prefix();
        let data_path = |key: &str| {
            if v1 {
                format!("{mount}{key}")
            } else {
                format!("{mount}data/{key}")
            }
        };
        let keys: Vec<String> = listing
            .keys
            .into_iter()
            .filter(|k| !data_path(k).starts_with(record_prefix))
            .collect();
        let set = || rules.iter().map(|(n, r)| (n.as_str(), r.as_slice()));
        // v2: every secret's metadata (its owner record and current version's time). In a
        // verification's resolution (`memory.rs`), a key's remembered metadata is reused when
        // the audit log shows no request on it since, the person could not grant herself every
        // secret, no rule of her policies matches the key, and it does not name her as owner:
        // such a key is no finding, and stays none. Every other key is read live.
        let metas: BTreeMap<String, KvMetadata> = if v1 {
            BTreeMap::new()
        } else {
            let mut metas = BTreeMap::new();
            let mut to_read = Vec::new();
            for k in &keys {
                let reused = kv.reusable(mount, k).filter(|m| {
                    grant_steps.is_empty()
                        && policy::effective(set(), &data_path(k)).is_none()
                        && !crate::correlation::owned_by(
                            &self.config,
                            &ctx.identity,
                            &m.custom_metadata,
                        )
                });
                match reused {
                    Some(m) => {
                        metas.insert(k.clone(), m.clone());
                    }
                    None => to_read.push(k.clone()),
                }
            }
            let read: Vec<(String, KvMetadata)> = stream::iter(to_read)
                .map(|k| async move {
                    let m = self.kv_metadata(mount, &k).await?;
                    Ok::<_, CallError>(m.map(|m| (k, m)))
                })
                .buffer_unordered(conc)
                .try_filter_map(|x| async move { Ok(x) })
                .try_collect()
                .await?;
            metas.extend(read);
            kv.read.extend(
                metas
                    .iter()
                    .map(|(k, m)| (format!("{mount}metadata/{k}"), m.clone())),
            );
            metas
        };
        // The secrets that are findings, before their state is known.
        let mut found: Vec<(String, String, Vec<Reached>)> = Vec::new();
        for key in keys {
            let dp = data_path(&key);
            let meta = metas.get(&key);
            if !v1 && meta.is_none_or(|m| m.current_version == 0) {
                continue;
            }
            let mut how: Vec<Reached> = Vec::new();
            if meta.is_some_and(|m| {
                crate::correlation::owned_by(&self.config, &ctx.identity, &m.custom_metadata)
            }) {
                how.push((
                    Relation::Owns,
                    Path::new().then("owns", format!("secret {dp}")),
                ));
            }
            if let Some((caps, pattern, names)) = policy::effective(set(), &dp) {
                if policy::allows_read(&caps) {
                    for n in names {
                        for (path, _) in policy_paths.get(&n).into_iter().flatten() {
                            how.push((
                                Relation::CanRead,
                                path.then("can-read", format!("secret {dp} (path \"{pattern}\")")),
                            ));
                        }
                    }
                }
            }
            for (path, label) in grant_steps {
                how.push((
                    Relation::CanGrantSelf,
                    path.then("can-grant-self", format!("secret {dp} ({label})")),
                ));
            }
            if !how.is_empty() {
                found.push((key, dp, how));
            }
        }
        // v1: the state comes from Closeout's rotation record, read for the findings only.
        let v1_keys: Vec<String> = if v1 {
            found.iter().map(|(k, _, _)| k.clone()).collect()
        } else {
            Vec::new()
        };
        let v1_states: BTreeMap<String, (State, Option<chrono::DateTime<chrono::Utc>>)> = if v1 {
            stream::iter(v1_keys)
                .map(|k| async move {
                    let s = self.kv1_state(mount, &k, ctx.cutoff).await?;
                    Ok::<_, CallError>((k, s))
                })
                .buffer_unordered(conc)
                .try_collect()
                .await?
        } else {
            BTreeMap::new()
        };
        // The field names of each open secret's value (never the values): the plan says which
        // rotation strategy it gets, or that it needs one.
        let open_keys: Vec<String> = found
            .iter()
            .filter(|(k, _, _)| match metas.get(k) {
                Some(meta) => state_since(ctx.cutoff, meta.current_created()).is_open(),
                None => v1_states.get(k).is_none_or(|(s, _)| s.is_open()),
            })
            .map(|(k, _, _)| k.clone())
            .collect();
        let fields: BTreeMap<String, Vec<String>> = stream::iter(open_keys)
            .map(|k| async move {
                let f = self.kv_fields(mount, &k, v1).await?;
                Ok::<_, CallError>(f.map(|f| (k, f)))
            })
            .buffer_unordered(conc)
            .try_filter_map(|x| async move { Ok(x) })
            .try_collect()
            .await?;
        for (key, dp, how) in found {
            let (state, written, version) = match metas.get(&key) {
                Some(meta) => (
                    state_since(ctx.cutoff, meta.current_created()),
                    meta.current_created(),
                    meta.current_version.to_string(),
                ),
                None => {
                    let (s, w) = v1_states
                        .get(&key)
                        .copied()
                        .unwrap_or((State::Active, None));
                    (s, w, String::new())
                }
            };
            // `created_at`: when the current value was written (the rotation policy's age);
            // unknown for a v1 secret Closeout never rotated.
            let created_at = written
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            let mut attributes = attrs([
                ("mount", mount.to_string()),
                ("key", key.clone()),
                ("kv_version", if v1 { "1" } else { "2" }.to_string()),
                ("created_at", created_at),
            ]);
            if !v1 {
                attributes.insert("current_version".into(), version);
            }
            if let Some(strategy) = metas
                .get(&key)
                .and_then(|m| m.custom_metadata.get(rotation_strategy::TAG))
            {
                attributes.insert(rotation_strategy::ATTR.into(), strategy.trim().to_string());
                attributes.insert(
                    rotation_strategy::SOURCE_ATTR.into(),
                    "custom-metadata".into(),
                );
            }
            if let Some(fields) = fields.get(&key) {
                Shape::Object(fields.clone()).record(&mut attributes);
            }
            let display = if v1 {
                format!("KV v1 secret {dp}")
            } else {
                format!("KV secret {dp}")
            };
            for (relation, path) in how {
                res.findings.push(finding(
                    kinds::KV_SECRET,
                    &dp,
                    display.clone(),
                    relation,
                    Holder::Shared,
                    state,
                    path,
                    attributes.clone(),
                ));
            }
        }
        Ok(())
    }
}

/// The gap of a secrets engine Closeout does not enumerate, when the person reaches it: through
/// a rule of her policies, or (any engine) through a grant-self.
fn engine_gap(
    mount: &str,
    m: &Mount,
    rules: &Rules,
    policy_paths: &PolicyPaths,
    grant_steps: &[(Path, String)],
) -> Option<closeout_contract::Gap> {
    let kind = &m.mount_type;
    let unknown = format!(
        "Closeout does not enumerate what a {kind} engine holds or issues, so whether the person still holds a credential or secret from it is unknown"
    );
    if let Some((caps, pattern, names)) = reach::reach_under(rules, mount) {
        let paths = names
            .iter()
            .flat_map(|n| policy_paths.get(n).into_iter().flatten())
            .map(|(p, _)| {
                p.then(
                    "can-reach",
                    format!("engine {mount} ({kind}; {caps} on path \"{pattern}\")"),
                )
            })
            .collect();
        return Some(gap(
            gap_kinds::SECRETS_ENGINE,
            mount,
            format!(
                "the person's policies reach the {kind} engine at {mount} ({caps} through policy {}, path \"{pattern}\"); {unknown}",
                names.join(", ")
            ),
            paths,
        ));
    }
    if grant_steps.is_empty() {
        return None;
    }
    Some(gap(
        gap_kinds::SECRETS_ENGINE,
        mount,
        format!(
            "the person could grant herself any policy (see the exposure), so the {kind} engine at {mount} is within reach; {unknown}"
        ),
        grant_steps
            .iter()
            .map(|(p, label)| p.then("can-grant-self", format!("engine {mount} ({label})")))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_roles_beyond_the_held_policies() {
        let held: BTreeSet<String> = ["a".to_string()].into();
        let role = |allowed: &[&str], glob: &[&str], disallowed: &[&str]| TokenRole {
            allowed_policies: allowed.iter().map(|s| s.to_string()).collect(),
            allowed_policies_glob: glob.iter().map(|s| s.to_string()).collect(),
            disallowed_policies: disallowed.iter().map(|s| s.to_string()).collect(),
            disallowed_policies_glob: Vec::new(),
        };
        assert_eq!(role(&["a", "default"], &[], &[]).beyond(&held), None);
        assert_eq!(role(&[], &[], &[]).beyond(&held), None, "subset rule");
        assert_eq!(
            role(&["a", "b"], &[], &[]).beyond(&held).as_deref(),
            Some("policies b")
        );
        assert!(role(&[], &["team-*"], &[]).beyond(&held).is_some());
        assert_eq!(
            role(&[], &[], &["root"]).beyond(&held).as_deref(),
            Some("any policy not disallowed")
        );
    }
}
