//! The finding builders: one function per finding shape that several modules (or resolution and
//! a grant) must build identically, with the provider's id scheme `vault:<kind>:<resource>`.

use crate::capabilities::{kinds, PROVIDER};
use crate::client::CallError;
use crate::config::VaultConfig;
use crate::model::{Entity, Group};
use closeout_contract::{Finding, Gap, Holder, Path, Relation, State};
use std::collections::BTreeMap;

/// Build a finding with the provider's id scheme `vault:<kind>:<resource>`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finding(
    kind: &str,
    resource: &str,
    display: String,
    relation: Relation,
    holder: Holder,
    state: State,
    path: Path,
    attributes: BTreeMap<String, String>,
) -> Finding {
    Finding {
        id: format!("{PROVIDER}:{kind}:{resource}"),
        provider: PROVIDER.into(),
        kind: kind.into(),
        relation,
        holder,
        resource: resource.into(),
        display,
        state,
        paths: vec![path],
        attributes,
    }
}

pub(crate) fn attrs<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The first step of every path through the person's entity.
pub(crate) fn entity_base(entity: &Entity) -> Path {
    Path::new().then("account", format!("entity {}", entity.name))
}

/// What the entity's state does to everything held through it: disabled blocks it all.
pub(crate) fn entity_state(entity: &Entity) -> State {
    if entity.disabled {
        State::Disabled
    } else {
        State::Active
    }
}

/// The entity's membership in `group` (a direct `group-membership`, or an `inherited-group`
/// reached by `path`), as `resolve` reports it and `grant_finding` promises it.
pub(crate) fn membership_finding(
    kind: &str,
    e: &Entity,
    g: &Group,
    path: Path,
    state: State,
) -> Finding {
    finding(
        kind,
        &format!("{}/{}", g.id, e.id),
        format!("membership of entity {} in group {}", e.name, g.name),
        Relation::MemberOf,
        Holder::Account,
        state,
        path,
        attrs([
            ("entity_id", e.id.clone()),
            ("group_id", g.id.clone()),
            ("group", g.name.clone()),
            ("group_type", g.group_type.clone()),
        ]),
    )
}

/// A policy set directly on the entity's `policies`; its path is the prefix of the paths of the
/// secrets and policy findings reached through it. Shared by `resolve` and `grant_finding`.
pub(crate) fn entity_policy_finding(e: &Entity, policy: &str, state: State) -> Finding {
    finding(
        kinds::ENTITY_POLICY,
        &format!("{}/{policy}", e.id),
        format!("policy {policy} set on entity {}", e.name),
        Relation::MemberOf,
        Holder::Account,
        state,
        entity_base(e).then("attached", format!("policy {policy}")),
        attrs([
            ("entity_id", e.id.clone()),
            ("entity", e.name.clone()),
            ("policy", policy.to_string()),
        ]),
    )
}

/// The `nhi-entity` finding of an entity, as its owner's resolution reports it and
/// `nhi_findings` returns it for the service identity the entity correlates with: one builder,
/// so a joiner's `reassign-owner` acts on the finding the owner later resolves (same id).
/// `owner` is the owner record, absent when the entity has none yet.
pub(crate) fn nhi_entity_finding(config: &VaultConfig, entity: &Entity) -> Finding {
    let mut attributes = attrs([("entity_id", entity.id.clone())]);
    if let Some(owner) = entity.metadata.get(&config.owner_key) {
        attributes.insert("owner".into(), owner.clone());
    }
    finding(
        kinds::NHI_ENTITY,
        &entity.id,
        format!("entity {} owned by the person", entity.name),
        Relation::Owns,
        Holder::Nhi(entity.name.clone()),
        State::Active,
        Path::new().then("owns", format!("entity {}", entity.name)),
        attributes,
    )
}

/// A gap: what resolution could not list, read or evaluate (open unless the site accepts it by
/// `kind`).
pub(crate) fn gap(kind: &str, resource: &str, reason: String, paths: Vec<Path>) -> Gap {
    Gap {
        provider: PROVIDER.into(),
        kind: kind.into(),
        resource: resource.into(),
        reason,
        paths,
    }
}

/// The gap of a listing Vault refused (HTTP 403): what it would have found is unknown.
pub(crate) fn refused_listing(kind: &str, path: &str, error: &impl std::fmt::Display) -> Gap {
    gap(
        kind,
        path,
        format!("listing {path} was refused ({error}): the {kind} findings under it are unknown"),
        Vec::new(),
    )
}

/// A LIST's keys: empty when the path holds nothing (404); empty with a gap (in `gaps`) when
/// Vault refused it (403), since the `kind` findings under `path` are then unknown.
pub(crate) fn listed(
    r: Result<Vec<String>, CallError>,
    kind: &str,
    path: &str,
    gaps: &mut Vec<Gap>,
) -> Result<Vec<String>, CallError> {
    match r {
        Ok(keys) => Ok(keys),
        Err(e) if e.is_not_found() => Ok(Vec::new()),
        Err(e) if e.is_refused() => {
            gaps.push(refused_listing(kind, path, &e));
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}
