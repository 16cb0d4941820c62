//! Correlation: which entities are the identity's own, which records name it as owner, which
//! userpass names it may log in with. Pure functions over what the server returned.

use crate::config::VaultConfig;
use crate::model::Entity;
use closeout_contract::Identity;
use std::collections::{BTreeMap, BTreeSet};

/// Why an entity is the identity's own: the first correlation rule that matches, if any.
pub(crate) fn own_entity_match(
    config: &VaultConfig,
    identity: &Identity,
    entity: &Entity,
) -> Option<String> {
    for rule in &config.match_entity_name {
        if let Some(v) = rule.value(identity) {
            if entity.name.eq_ignore_ascii_case(&v) {
                return Some(format!("entity name = {v} ({})", rule.describe()));
            }
        }
    }
    if let Some(v) = entity.metadata.get(&config.identity_key) {
        if identity.is_named_by(v) {
            return Some(format!("metadata {} = {v}", config.identity_key));
        }
    }
    for alias in &entity.aliases {
        for rule in &config.match_alias_name {
            if let Some(v) = rule.value(identity) {
                if alias.name.eq_ignore_ascii_case(&v) {
                    return Some(format!(
                        "alias {} under {} = {v} ({})",
                        alias.name,
                        auth_mount_path(&alias.mount_path),
                        rule.describe()
                    ));
                }
            }
        }
    }
    None
}

/// An alias's mount path as `auth/<mount>/` (OpenBao reports it with the `auth/` prefix, older
/// Vault servers without).
pub(crate) fn auth_mount_path(mount_path: &str) -> String {
    if mount_path.starts_with("auth/") {
        mount_path.to_string()
    } else {
        format!("auth/{mount_path}")
    }
}

/// True when an owner record (`owner_key` metadata) names the identity.
pub(crate) fn owned_by(
    config: &VaultConfig,
    identity: &Identity,
    meta: &BTreeMap<String, String>,
) -> bool {
    meta.get(&config.owner_key)
        .is_some_and(|v| identity.is_named_by(v))
}

/// The userpass user names the identity may have, lower-cased (userpass lower-cases names).
pub(crate) fn login_names(
    config: &VaultConfig,
    identity: &Identity,
    aliases: &[String],
) -> Vec<String> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    for rule in config
        .match_alias_name
        .iter()
        .chain(&config.match_entity_name)
    {
        if let Some(v) = rule.value(identity) {
            names.insert(v.to_ascii_lowercase());
        }
    }
    names.extend(aliases.iter().map(|a| a.to_ascii_lowercase()));
    names.into_iter().collect()
}

/// An alias of an entity the person owns (an NHI): under an AppRole mount its name is the
/// role-id, so the role's secret-ids are the NHI's credentials.
pub(crate) struct OwnedNhiAlias {
    pub mount_accessor: String,
    pub name: String,
    pub entity: String,
    pub owner: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::nhi_entity_finding;
    use crate::model::Alias;
    use closeout_contract::{Holder, State};
    use closeout_contract::{IdentityKind, IdentityStatus};

    fn alice() -> Identity {
        Identity {
            id: "E100".into(),
            email: "Alice.Smith@example.com".into(),
            name: "Alice".into(),
            kind: IdentityKind::Human,
            status: IdentityStatus::Terminated,
            manager: None,
            department: None,
            role: None,
            location: None,
            employment_type: None,
            tags: Default::default(),
        }
    }

    fn entity(name: &str, meta: &[(&str, &str)], aliases: &[&str]) -> Entity {
        Entity {
            id: format!("id-{name}"),
            name: name.into(),
            disabled: false,
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
                    mount_path: "userpass/".into(),
                    mount_type: "userpass".into(),
                })
                .collect(),
            direct_group_ids: vec![],
            group_ids: vec![],
            policies: vec![],
        }
    }

    #[test]
    fn correlation_by_name_metadata_and_alias() {
        let c = VaultConfig::default();
        let a = alice();
        let m = |e: &Entity| own_entity_match(&c, &a, e);
        assert_eq!(
            m(&entity("E100", &[], &[])).unwrap(),
            "entity name = E100 (id)"
        );
        assert!(m(&entity("alice.smith", &[], &[]))
            .unwrap()
            .contains("email local part"));
        assert!(m(&entity("ALICE.SMITH@example.com", &[], &[])).is_some());
        assert_eq!(
            m(&entity(
                "svc",
                &[("identity", "alice.smith@example.com")],
                &[]
            ))
            .unwrap(),
            "metadata identity = alice.smith@example.com"
        );
        assert!(m(&entity("x", &[], &["alice.smith"]))
            .unwrap()
            .starts_with("alias alice.smith"));
        assert!(m(&entity("bob", &[("owner", "E100")], &["bob"])).is_none());
        assert!(m(&entity("alice", &[], &[])).is_none());
        let only_id = VaultConfig {
            match_entity_name: vec![crate::config::NameRule::Id],
            match_alias_name: vec![],
            ..Default::default()
        };
        assert!(
            own_entity_match(&only_id, &a, &entity("alice.smith", &[], &["alice.smith"])).is_none()
        );
    }

    #[test]
    fn nhi_entity_finding_carries_the_owner_record_when_there_is_one() {
        let c = VaultConfig::default();
        let bare = nhi_entity_finding(&c, &entity("svc-ci", &[], &[]));
        assert_eq!(bare.id, "vault:nhi-entity:id-svc-ci");
        assert_eq!(bare.holder, Holder::Nhi("svc-ci".into()));
        assert_eq!(bare.state, State::Active);
        assert_eq!(bare.attr("owner"), None);
        assert_eq!(bare.attr("entity_id"), Some("id-svc-ci"));
        let owned = nhi_entity_finding(&c, &entity("svc-ci", &[("owner", "a@example.com")], &[]));
        assert_eq!(owned.attr("owner"), Some("a@example.com"));
        assert_eq!(owned.paths, bare.paths);
    }

    #[test]
    fn ownership_and_login_names() {
        let c = VaultConfig::default();
        let a = alice();
        let meta = |v: &str| [("owner".to_string(), v.to_string())].into();
        assert!(owned_by(&c, &a, &meta("E100")));
        assert!(owned_by(&c, &a, &meta("alice.smith@EXAMPLE.com")));
        assert!(!owned_by(&c, &a, &meta("E1000")));
        assert_eq!(
            login_names(&c, &a, &["AliceS".into()]),
            vec!["alice.smith", "alice.smith@example.com", "alices", "e100"]
        );
    }
}
