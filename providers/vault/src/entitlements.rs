//! Entitlements: direct identity-group memberships and entity policies as grants a policy can
//! name, granting and removing them, and the entities no identity claims.
//!
//! A granted finding is built by the functions `resolve` uses ([`membership_finding`],
//! [`entity_policy_finding`]), so once granted it re-resolves with the same id and paths.

use crate::capabilities::{kinds, PROVIDER};
use crate::client::{found, seg, CallError, Data};
use crate::config::{NameRule, VaultConfig};
use crate::correlation::own_entity_match;
use crate::findings::{entity_base, entity_policy_finding, entity_state, membership_finding};
use crate::model::{Alias, Entity, Group};
use crate::server::VaultProvider;
use closeout_contract::{
    ActionOutcome, Entitlement, Finding, Holder, Identity, ProviderError, ResolveContext, State,
    UnclaimedAccount,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// How many times a group membership removal is written when another process's stale write
/// keeps putting the entity back ([`VaultProvider::remove_membership`]).
const REMOVAL_TRIES: u32 = 3;

/// Refuse a membership edit of an external group: its members come from the auth method.
fn internal(g: &Group) -> Result<(), ProviderError> {
    if g.group_type == "external" {
        return Err(permanent(format!(
            "group {} is external: its membership comes from the auth method, not Vault",
            g.name
        )));
    }
    Ok(())
}

/// The entitlement a finding is: a direct group membership (target: the group name) or a
/// policy set on the person's own entity (the policy name).
pub fn entitlement(f: &Finding) -> Option<Entitlement> {
    if f.provider != PROVIDER || f.holder != Holder::Account {
        return None;
    }
    let target = match f.kind.as_str() {
        kinds::GROUP_MEMBERSHIP => f.attr("group"),
        kinds::ENTITY_POLICY => f.attr("policy"),
        _ => None,
    }?;
    (!target.is_empty()).then(|| Entitlement::new(PROVIDER, f.kind.clone(), target))
}

/// Whether `session` still carries the access the removed membership or entity policy gave:
/// identity policies apply to every token bound to the entity and to no other token, so a token
/// carries it when it is bound to that entity. Other findings, or a finding that does not say:
/// yes (the safe answer).
pub fn session_carries(session: &Finding, removed: &Finding) -> bool {
    if session.kind != kinds::TOKEN {
        return true;
    }
    match (session.attr("entity_id"), removed.attr("entity_id")) {
        (Some(bound_to), Some(entity)) if !entity.is_empty() => bound_to == entity,
        _ => true,
    }
}

fn config_error(message: impl Into<String>) -> ProviderError {
    ProviderError::Config {
        provider: PROVIDER,
        message: message.into(),
    }
}

fn permanent(message: impl Into<String>) -> ProviderError {
    ProviderError::Permanent {
        provider: PROVIDER,
        message: message.into(),
    }
}

fn attr<'a>(f: &'a Finding, key: &str) -> Result<&'a str, ProviderError> {
    f.attr(key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| permanent(format!("finding {} lacks attribute {key}", f.id)))
}

/// One entry of `LIST identity/entity/id`'s `key_info`: the name and aliases, no metadata.
#[derive(Debug, Deserialize)]
struct ListedEntity {
    #[serde(default)]
    name: String,
    #[serde(default, deserialize_with = "crate::model::nullable")]
    aliases: Vec<Alias>,
}

#[derive(Debug, Deserialize)]
struct EntityList {
    #[serde(default, deserialize_with = "crate::model::nullable")]
    keys: Vec<String>,
    #[serde(default, deserialize_with = "crate::model::nullable")]
    key_info: BTreeMap<String, ListedEntity>,
}

/// The identities indexed by every form the correlation rules compare, so matching the
/// entities costs one lookup each instead of identities × entities calls of
/// [`own_entity_match`] (whose rules it mirrors).
struct Claims {
    entity_names: BTreeSet<String>,
    alias_names: BTreeSet<String>,
    ids: BTreeSet<String>,
    emails: BTreeSet<String>,
}

impl Claims {
    fn new(config: &VaultConfig, identities: &[Identity]) -> Claims {
        let forms = |rules: &[NameRule]| -> BTreeSet<String> {
            identities
                .iter()
                .flat_map(|i| rules.iter().filter_map(|r| r.value(i)))
                .map(|v| v.to_ascii_lowercase())
                .collect()
        };
        Claims {
            entity_names: forms(&config.match_entity_name),
            alias_names: forms(&config.match_alias_name),
            ids: identities.iter().map(|i| i.id.clone()).collect(),
            emails: identities
                .iter()
                .map(|i| i.email.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Claimed by the entity's name or an alias name (what `key_info` tells).
    fn by_name(&self, name: &str, aliases: &[Alias]) -> bool {
        self.entity_names.contains(&name.to_ascii_lowercase())
            || aliases
                .iter()
                .any(|a| self.alias_names.contains(&a.name.to_ascii_lowercase()))
    }

    /// Whether a metadata value names an identity (as `Identity::is_named_by`).
    fn named(&self, value: &str) -> bool {
        let v = value.trim();
        !v.is_empty() && (self.ids.contains(v) || self.emails.contains(&v.to_ascii_lowercase()))
    }
}

/// The entities of `listed` (id, name, aliases) no identity claims, given the full entity for
/// those not claimed by name (`read`); owner-tagged entities (NHIs) are left out.
fn unclaimed(
    config: &VaultConfig,
    claims: &Claims,
    unmatched: &[(String, ListedEntity)],
    read: &BTreeMap<String, Entity>,
) -> Vec<UnclaimedAccount> {
    let mut out = Vec::new();
    for (id, listed) in unmatched {
        // Deleted between the list and the read: nothing to report.
        let Some(e) = read.get(id) else { continue };
        let identity_value = e
            .metadata
            .get(&config.identity_key)
            .filter(|v| !v.trim().is_empty());
        if identity_value.is_some_and(|v| claims.named(v)) {
            continue;
        }
        if e.metadata
            .get(&config.owner_key)
            .is_some_and(|v| !v.trim().is_empty())
        {
            continue;
        }
        let aliases: Vec<String> = listed
            .aliases
            .iter()
            .map(|a| format!("{} under {}", a.name, a.mount_path))
            .collect();
        let reason = match identity_value {
            Some(v) => format!(
                "no identity matches metadata {} = {}",
                config.identity_key,
                v.trim()
            ),
            None if aliases.is_empty() => format!(
                "entity name {} matches no identity and no metadata {}",
                e.name, config.identity_key
            ),
            None => format!(
                "entity name {} and aliases {} match no identity, no metadata {}",
                e.name,
                aliases.join(", "),
                config.identity_key
            ),
        };
        out.push(UnclaimedAccount {
            provider: PROVIDER.to_string(),
            resource: e.id.clone(),
            display: format!("entity {}", e.name),
            reason,
            enabled: !e.disabled,
        });
    }
    out.sort_by(|a, b| (&a.display, &a.resource).cmp(&(&b.display, &b.resource)));
    out
}

impl VaultProvider {
    /// An internal group by name; `None` when there is none.
    async fn group_by_name(&self, name: &str) -> Result<Option<Group>, CallError> {
        let path = format!("identity/group/name/{}", seg(name));
        Ok(found(self.client.get::<Data<Group>>(&path).await)?
            .flatten()
            .map(|d| d.data))
    }

    async fn policy_exists(&self, name: &str) -> Result<bool, CallError> {
        let path = format!("sys/policies/acl/{}", seg(name));
        Ok(
            found(self.client.get::<Data<serde_json::Value>>(&path).await)?
                .flatten()
                .is_some(),
        )
    }

    /// The finding `ent` will be once granted to the identity's entity (state `Deleted`). When
    /// several entities correlate (resolve reports them all), the first by id gets the grant.
    pub(crate) async fn grant_finding_impl(
        &self,
        ctx: &ResolveContext,
        ent: &Entitlement,
    ) -> Result<Finding, ProviderError> {
        if ent.provider != PROVIDER {
            return Err(config_error(format!(
                "entitlement {ent} is not for provider {PROVIDER}"
            )));
        }
        let target = ent.target.as_str();
        // Check the target before the (costlier) entity scan.
        let group = match ent.kind.as_str() {
            kinds::GROUP_MEMBERSHIP => {
                let g = self
                    .group_by_name(target)
                    .await?
                    .ok_or_else(|| config_error(format!("Vault group {target} does not exist")))?;
                if g.group_type == "external" {
                    return Err(config_error(format!(
                        "Vault group {target} is external: its members come from the auth method"
                    )));
                }
                Some(g)
            }
            kinds::ENTITY_POLICY => {
                if !self.policy_exists(target).await? {
                    return Err(config_error(format!(
                        "Vault policy {target} does not exist"
                    )));
                }
                None
            }
            _ => {
                return Err(config_error(format!(
                    "entitlement {ent}: only {} and {} can be granted",
                    kinds::GROUP_MEMBERSHIP,
                    kinds::ENTITY_POLICY
                )))
            }
        };
        let mut own: Vec<Entity> = self
            .all_entities()
            .await?
            .into_iter()
            .filter(|e| own_entity_match(&self.config, &ctx.identity, e).is_some())
            .collect();
        own.sort_by(|a, b| a.id.cmp(&b.id));
        let Some(e) = own.first() else {
            return Err(config_error(format!(
                "cannot grant {ent}: identity {} has no Vault entity",
                ctx.identity.id
            )));
        };
        let state = State::Deleted;
        Ok(match group {
            Some(g) => {
                let path = entity_base(e).then("member-of", format!("group {}", g.name));
                membership_finding(kinds::GROUP_MEMBERSHIP, e, &g, path, state)
            }
            None => entity_policy_finding(e, target, state),
        })
    }

    /// Add the entity to the group's `member_entity_ids`: Vault replaces the whole list, so it is
    /// read, extended and written back; the other fields are not sent and stay as they are.
    /// Vault has no check-and-set for groups, so edits of one group take turns in this process
    /// (`edit_lock.rs`, which says what that does not cover).
    pub(crate) async fn grant_membership(
        &self,
        f: &Finding,
    ) -> Result<ActionOutcome, ProviderError> {
        let gid = attr(f, "group_id")?;
        let eid = attr(f, "entity_id")?;
        let _edit = self.edit_lock(&format!("identity/group/id/{gid}")).await;
        let Some(g) = self.read_group(gid).await? else {
            return Err(permanent(format!("group {gid} no longer exists")));
        };
        internal(&g)?;
        if g.member_entity_ids.iter().any(|m| m == eid) {
            return Ok(ActionOutcome::already(
                State::Active,
                format!("entity {eid} is already a member of group {}", g.name),
            ));
        }
        if self.read_entity(eid).await?.is_none() {
            return Err(permanent(format!("entity {eid} no longer exists")));
        }
        let mut members = g.member_entity_ids.clone();
        members.push(eid.to_string());
        self.set_group_members(gid, members).await?;
        Ok(ActionOutcome::done(
            State::Active,
            format!("added entity {eid} to group {}", g.name),
        ))
    }

    /// Take the entity out of the group's `member_entity_ids` (read, filter, write back), then
    /// read the group again: another process's edit that read the list before this write and
    /// wrote after it puts the entity back, and the removal is then made again (up to
    /// [`REMOVAL_TRIES`] times). Edits in this process take turns (`edit_lock.rs`); a stale
    /// write landing after the read-back is left to verification, which reads live state.
    pub(crate) async fn remove_membership(
        &self,
        f: &Finding,
    ) -> Result<ActionOutcome, ProviderError> {
        let gid = attr(f, "group_id")?;
        let eid = attr(f, "entity_id")?;
        let _edit = self.edit_lock(&format!("identity/group/id/{gid}")).await;
        let mut removed = false;
        for tries in 0..=REMOVAL_TRIES {
            let Some(g) = self.read_group(gid).await? else {
                return Ok(ActionOutcome::already(
                    State::Deleted,
                    format!("group {gid} no longer exists"),
                ));
            };
            internal(&g)?;
            if !g.member_entity_ids.iter().any(|m| m == eid) {
                return Ok(if removed {
                    ActionOutcome::done(
                        State::Deleted,
                        format!("removed entity {eid} from group {}", g.name),
                    )
                } else {
                    ActionOutcome::already(
                        State::Deleted,
                        format!("entity {eid} is not a member of group {}", g.name),
                    )
                });
            }
            if tries == REMOVAL_TRIES {
                break;
            }
            if removed {
                tracing::info!(group = %g.name, entity = eid, "another writer put the entity back in the group; removing it again");
            }
            let members: Vec<String> = g
                .member_entity_ids
                .iter()
                .filter(|m| *m != eid)
                .cloned()
                .collect();
            self.set_group_members(gid, members).await?;
            removed = true;
        }
        Err(ProviderError::Transient {
            provider: PROVIDER,
            message: format!(
                "entity {eid} was put back in group {gid} by another writer after each of {REMOVAL_TRIES} removals"
            ),
        })
    }

    /// `POST identity/group/id/<id>` with only `member_entity_ids`.
    pub(crate) async fn set_group_members(
        &self,
        gid: &str,
        members: Vec<String>,
    ) -> Result<(), CallError> {
        let path = format!("identity/group/id/{}", seg(gid));
        self.client
            .write_json(
                "POST",
                &path,
                &serde_json::json!({ "member_entity_ids": members }),
            )
            .await
    }

    /// Grant (`add`) or remove a policy on the entity's `policies`, read-modify-write.
    pub(crate) async fn edit_entity_policy(
        &self,
        f: &Finding,
        add: bool,
    ) -> Result<ActionOutcome, ProviderError> {
        let eid = attr(f, "entity_id")?;
        let policy = attr(f, "policy")?;
        let _edit = self.edit_lock(&format!("identity/entity/id/{eid}")).await;
        let Some(e) = self.read_entity(eid).await? else {
            return if add {
                Err(permanent(format!("entity {eid} no longer exists")))
            } else {
                Ok(ActionOutcome::already(
                    State::Deleted,
                    format!("entity {eid} no longer exists"),
                ))
            };
        };
        let held = e.policies.iter().any(|p| p == policy);
        let (state, verb) = if add {
            (State::Active, "set")
        } else {
            (State::Deleted, "removed")
        };
        if held == add {
            let how = if add { "already has" } else { "does not have" };
            return Ok(ActionOutcome::already(
                state,
                format!("entity {} {how} policy {policy}", e.name),
            ));
        }
        let policies: Vec<String> = if add {
            e.policies
                .iter()
                .cloned()
                .chain([policy.to_string()])
                .collect()
        } else {
            e.policies
                .iter()
                .filter(|p| *p != policy)
                .cloned()
                .collect()
        };
        self.update_entity(eid, |b| {
            b.policies(policies);
        })
        .await?;
        Ok(ActionOutcome::done(
            state,
            format!("{verb} policy {policy} on entity {}", e.name),
        ))
    }

    /// Live state of an entity policy: held and the entity enabled is active.
    pub(crate) async fn live_state_entity_policy(
        &self,
        f: &Finding,
    ) -> Result<State, ProviderError> {
        let policy = attr(f, "policy")?;
        Ok(match self.read_entity(attr(f, "entity_id")?).await? {
            Some(e) if e.policies.iter().any(|p| p == policy) => entity_state(&e),
            _ => State::Deleted,
        })
    }

    /// Entities no identity claims: one `LIST identity/entity/id` whose `key_info` gives names
    /// and aliases. Entities claimed by name or alias need nothing more; the others must be read
    /// one by one (bounded, through the gate), because only the entity itself carries the
    /// metadata (identity and owner records) and the disabled flag.
    pub(crate) async fn unclaimed_accounts_impl(
        &self,
        identities: &[Identity],
    ) -> Result<Vec<UnclaimedAccount>, ProviderError> {
        let listed = match self
            .client
            .call::<Data<EntityList>>("LIST", "identity/entity/id", None)
            .await
        {
            Ok(Some(d)) => d.data,
            Ok(None) => return Ok(Vec::new()),
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let claims = Claims::new(&self.config, identities);
        let mut info = listed.key_info;
        let unmatched: Vec<(String, ListedEntity)> = listed
            .keys
            .into_iter()
            .filter_map(|id| {
                let l = info.remove(&id).unwrap_or(ListedEntity {
                    name: String::new(),
                    aliases: Vec::new(),
                });
                (!claims.by_name(&l.name, &l.aliases)).then_some((id, l))
            })
            .collect();
        let ids: Vec<String> = unmatched.iter().map(|(id, _)| id.clone()).collect();
        let read: BTreeMap<String, Entity> = stream::iter(ids)
            .map(|id| async move { self.read_entity(&id).await })
            .buffer_unordered(self.config.max_in_flight.max(1))
            .try_filter_map(|e| async move { Ok(e.map(|e| (e.id.clone(), e))) })
            .try_collect()
            .await?;
        Ok(unclaimed(&self.config, &claims, &unmatched, &read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeout_contract::{IdentityKind, IdentityStatus};

    fn person(id: &str, email: &str) -> Identity {
        Identity {
            id: id.into(),
            email: email.into(),
            name: id.into(),
            kind: IdentityKind::Human,
            status: IdentityStatus::Active,
            manager: None,
            department: None,
            role: None,
            location: None,
            employment_type: None,
            tags: Default::default(),
        }
    }

    fn entity(name: &str, meta: &[(&str, &str)], aliases: &[&str], disabled: bool) -> Entity {
        Entity {
            id: format!("id-{name}"),
            name: name.into(),
            disabled,
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            aliases: aliases
                .iter()
                .map(|a| Alias {
                    id: format!("al-{a}"),
                    name: a.to_string(),
                    mount_accessor: "auth_userpass_1".into(),
                    mount_path: "auth/userpass/".into(),
                    mount_type: "userpass".into(),
                })
                .collect(),
            direct_group_ids: vec![],
            group_ids: vec![],
            policies: vec!["p1".into()],
        }
    }

    #[test]
    fn a_token_carries_a_removed_entitlement_only_when_bound_to_its_entity() {
        let e = entity("alice", &[], &[], false);
        let removed = entity_policy_finding(&e, "p1", State::Active);
        let token = |entity_id: &str| {
            let mut t = removed.clone();
            t.kind = kinds::TOKEN.into();
            t.attributes = [("entity_id".to_string(), entity_id.to_string())].into();
            t
        };
        assert!(session_carries(&token("id-alice"), &removed));
        assert!(!session_carries(&token(""), &removed), "bound to no entity");
        assert!(!session_carries(&token("id-bob"), &removed));
        let mut silent = token("x");
        silent.attributes.clear();
        assert!(session_carries(&silent, &removed), "cannot tell: yes");
        let mut lease = token("");
        lease.kind = kinds::LEASE.into();
        assert!(session_carries(&lease, &removed));
    }

    #[test]
    fn entitlements_of_direct_memberships_and_entity_policies_only() {
        let e = entity("alice", &[], &[], false);
        let p = entity_policy_finding(&e, "p1", State::Active);
        assert_eq!(
            entitlement(&p),
            Some(Entitlement::new("vault", "entity-policy", "p1"))
        );
        assert_eq!(p.id, "vault:entity-policy:id-alice/p1");
        let g = Group {
            id: "g1".into(),
            name: "devs".into(),
            group_type: "internal".into(),
            policies: vec![],
            parent_group_ids: vec![],
            member_entity_ids: vec![],
        };
        let path = entity_base(&e).then("member-of", "group devs");
        let m = membership_finding(kinds::GROUP_MEMBERSHIP, &e, &g, path.clone(), State::Active);
        assert_eq!(entitlement(&m).unwrap().target, "devs");
        let inherited = membership_finding(kinds::INHERITED_GROUP, &e, &g, path, State::Active);
        assert_eq!(entitlement(&inherited), None);
    }

    #[test]
    fn unclaimed_entities_follow_correlation() {
        let cfg = VaultConfig::default();
        let people = [
            person("E100", "alice.smith@example.com"),
            person("E200", "carol@example.com"),
        ];
        let claims = Claims::new(&cfg, &people);
        let all = [
            entity("alice.smith", &[], &[], false),
            entity("x1", &[], &["carol"], false),
            entity("svc", &[("identity", "E200")], &[], false),
            entity("bob", &[], &["bob"], true),
            entity("ghost", &[("identity", "E404")], &[], false),
            entity("batch", &[("owner", "E100")], &[], false),
        ];
        let unmatched: Vec<(String, ListedEntity)> = all
            .iter()
            .map(|e| {
                (
                    e.id.clone(),
                    ListedEntity {
                        name: e.name.clone(),
                        aliases: e.aliases.clone(),
                    },
                )
            })
            .filter(|(_, l)| !claims.by_name(&l.name, &l.aliases))
            .collect();
        assert_eq!(
            unmatched.len(),
            4,
            "alice.smith and x1 are claimed by name/alias"
        );
        let read = all.iter().map(|e| (e.id.clone(), e.clone())).collect();
        let out = unclaimed(&cfg, &claims, &unmatched, &read);
        let got: Vec<(&str, &str, bool)> = out
            .iter()
            .map(|u| (u.display.as_str(), u.reason.as_str(), u.enabled))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "entity bob",
                    "entity name bob and aliases bob under auth/userpass/ match no identity, no metadata identity",
                    false
                ),
                (
                    "entity ghost",
                    "no identity matches metadata identity = E404",
                    true
                ),
            ]
        );
        // The index agrees with the correlation resolve uses.
        for e in &all {
            let claimed = people
                .iter()
                .any(|p| own_entity_match(&cfg, p, e).is_some());
            let listed = out.iter().any(|u| u.resource == e.id);
            let nhi = e.metadata.contains_key("owner");
            assert_eq!(claimed || nhi, !listed, "{}", e.name);
        }
    }
}
