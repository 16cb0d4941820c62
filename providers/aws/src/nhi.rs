//! Non-human identities: the IAM users and roles a person owns (owner tag), and the principals
//! of a service identity, which a joiner gives an owner. One builder per kind serves both, so the
//! finding a joiner reassigns is the one its owner later resolves.

use crate::capabilities::kinds;
use crate::config::AwsConfig;
use crate::correlation::{correlate, principal_match};
use crate::findings::{access_key_draft, Draft};
use crate::inventory::{tag, IamRole, IamUser, Inventory, KeyInfo};
use crate::state::key_state;
use closeout_contract::{Finding, Holder, Identity, Path, ResolveContext};

/// IAM users and roles (other than the person's own user) whose owner tag names the identity.
pub fn owned_nhis(
    inv: &Inventory,
    person_user: Option<usize>,
    identity: &Identity,
    config: &AwsConfig,
) -> (Vec<usize>, Vec<usize>) {
    let owned = |tags: &[(String, String)]| {
        tag(tags, &config.owner_tag).is_some_and(|v| identity.is_named_by(v))
    };
    let users = inv
        .users
        .iter()
        .enumerate()
        .filter(|(i, u)| Some(*i) != person_user && owned(&u.tags))
        .map(|(i, _)| i)
        .collect();
    let roles = inv
        .roles
        .iter()
        .enumerate()
        .filter(|(_, r)| owned(&r.tags))
        .map(|(i, _)| i)
        .collect();
    (users, roles)
}

/// The path to an owned NHI: `owns -> iam user svc (tag owner = E100)`. Untagged (a service
/// identity's principal before a joiner records its owner): `(no tag owner)`.
fn nhi_path(what: &str, name: &str, owner_tag: &str, owner: Option<&str>) -> Path {
    let why = match owner {
        Some(v) => format!("tag {owner_tag} = {v}"),
        None => format!("no tag {owner_tag}"),
    };
    Path::new().then("owns", format!("{what} {name} ({why})"))
}

/// The owner tag's value, if set and not blank.
fn owner_of<'a>(tags: &'a [(String, String)], config: &AwsConfig) -> Option<&'a str> {
    tag(tags, &config.owner_tag).filter(|v| !v.trim().is_empty())
}

/// The `nhi-user` finding of an IAM user, as its owner's resolution reports it and
/// `nhi_findings` returns it for the service identity the user correlates with: one builder, so
/// a joiner's `reassign-owner` acts on the finding the owner later resolves (same id).
pub fn nhi_user_finding(user: &IamUser, config: &AwsConfig) -> Finding {
    let owner = owner_of(&user.tags, config);
    let mut d = Draft::new(kinds::NHI_USER, user.name.clone(), user.arn.clone())
        .attr("user", user.name.clone())
        .attr("arn", user.arn.clone())
        .attr("owner", owner.unwrap_or_default());
    d.holder = Holder::Nhi(user.name.clone());
    d.display = format!("iam user {} (non-human, owned)", user.name);
    d.paths = vec![nhi_path("iam user", &user.name, &config.owner_tag, owner)];
    d.build()
}

/// An owned IAM user and its access keys.
pub fn nhi_user_findings(
    user: &IamUser,
    keys: &[KeyInfo],
    ctx: &ResolveContext,
    config: &AwsConfig,
) -> Vec<Finding> {
    let nhi = nhi_user_finding(user, config);
    let path = nhi.paths[0].clone();
    let holder = nhi.holder.clone();
    let mut out = vec![nhi];
    for k in keys {
        let mut d = access_key_draft(&user.name, k)
            .attr("publish_secret", config.nhi_secret_name(&user.name))
            .attr(
                closeout_contract::action::PUBLISH_FOR_ATTR,
                user.arn.clone(),
            );
        d.holder = holder.clone();
        d.display = format!("access key {} of iam user {} (non-human)", k.id, user.name);
        d.state = key_state(k.active, true, k.created, ctx.cutoff);
        d.paths = vec![path.then("has", format!("access key {}", k.id))];
        out.push(d.build());
    }
    out
}

pub fn nhi_role_finding(role: &IamRole, config: &AwsConfig) -> Finding {
    let owner = owner_of(&role.tags, config);
    let mut d = Draft::new(kinds::NHI_ROLE, role.name.clone(), role.arn.clone())
        .attr("role", role.name.clone())
        .attr("arn", role.arn.clone())
        .attr("owner", owner.unwrap_or_default());
    d.holder = Holder::Nhi(role.name.clone());
    d.display = format!("iam role {} (non-human, owned)", role.name);
    d.paths = vec![nhi_path("iam role", &role.name, &config.owner_tag, owner)];
    d.build()
}

/// The principals of a service identity: the IAM user it correlates with by the rules of
/// [`correlate`] (identity tag, then user-name rules; several candidates: the one `correlate`
/// picks, plus its warning) as an `nhi-user`, and every IAM role made for it as an `nhi-role`
/// (see [`service_roles`]).
pub fn service_nhi_findings(
    inv: &Inventory,
    identity: &Identity,
    config: &AwsConfig,
) -> (Vec<Finding>, Vec<String>) {
    let c = correlate(&inv.users, identity, config);
    let mut found: Vec<Finding> = c
        .account
        .map(|(i, _)| nhi_user_finding(&inv.users[i], config))
        .into_iter()
        .collect();
    found.extend(
        service_roles(&inv.roles, identity, config)
            .into_iter()
            .map(|r| nhi_role_finding(r, config)),
    );
    (found, c.warnings)
}

/// The IAM roles of a service identity: every role [`principal_match`] names as its (tagged
/// `identity_tag` with its id or email, or untagged and named by a `match_user_name` form).
pub fn service_roles<'a>(
    roles: &'a [IamRole],
    identity: &Identity,
    config: &AwsConfig,
) -> Vec<&'a IamRole> {
    roles
        .iter()
        .filter(|r| principal_match(&r.tags, &r.name, identity, config).is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{identity, render, role, sample, trust, user};
    use closeout_contract::State;
    #[test]
    fn service_roles_are_matched_by_identity_tag_or_name_never_against_a_foreign_tag() {
        let etl = identity("S3001", "svc-etl@example.com");
        let tagged = |name: &str, value: &str| IamRole {
            tags: vec![("identity".into(), value.into())],
            ..role(name, trust("arn:aws:iam::123456789012:root"))
        };
        let roles = vec![
            role("svc-etl", trust("arn:aws:iam::123456789012:root")),
            tagged("etl-runner", "S3001"),
            tagged("svc-etl-2", "svc-etl@example.com"),
            tagged("S3001", "S9999"),
            role("svc-other", trust("arn:aws:iam::123456789012:root")),
        ];
        let names: Vec<&str> = service_roles(&roles, &etl, &AwsConfig::default())
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["svc-etl", "etl-runner", "svc-etl-2"]);
    }

    #[test]
    fn owned_nhis_are_tagged_with_the_owner_and_never_the_persons_own_user() {
        let inv = sample();
        let cfg = AwsConfig::default();
        let alice = identity("E100", "alice@example.com");
        let (users, roles) = owned_nhis(&inv, None, &alice, &cfg);
        assert_eq!(users, vec![1]);
        assert_eq!(roles, vec![0]);
        // The person's own user is never its own NHI.
        let (users, _) = owned_nhis(&inv, Some(1), &alice, &cfg);
        assert!(users.is_empty());
    }

    #[test]
    fn a_service_identitys_user_is_the_nhi_user_its_owner_resolves() {
        let mut inv = sample();
        inv.users.push(user("svc-ci", &[]));
        let cfg = AwsConfig::default();
        let svc = identity("svc-ci", "svc-ci@example.com");
        let (found, warnings) = service_nhi_findings(&inv, &svc, &cfg);
        assert!(warnings.is_empty());
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!(f.id, "aws:nhi-user:svc-ci");
        assert_eq!(f.holder, Holder::Nhi("svc-ci".into()));
        assert_eq!(f.state, State::Active);
        assert_eq!(f.attr("owner"), None);
        assert_eq!(
            render(&f.paths),
            vec!["alice -owns-> iam user svc-ci (no tag owner)"]
        );

        // Once tagged, the owner resolves the same finding from the same builder.
        let i = inv.users.iter().position(|u| u.name == "svc-ci").unwrap();
        inv.users[i].tags = vec![("owner".into(), "alice@example.com".into())];
        let alice = identity("E100", "alice@example.com");
        let (owned, _) = owned_nhis(&inv, Some(0), &alice, &cfg);
        assert!(owned.contains(&i));
        let resolved = &nhi_user_findings(
            &inv.users[i],
            &[],
            &ResolveContext {
                identity: alice,
                cutoff: None,
            },
            &cfg,
        )[0];
        let (again, _) = service_nhi_findings(&inv, &svc, &cfg);
        assert_eq!(&again[0], resolved);
        assert_eq!(resolved.attr("owner"), Some("alice@example.com"));

        // A service identity without IAM user: nothing.
        let (none, _) = service_nhi_findings(&inv, &identity("svc-x", "svc-x@example.com"), &cfg);
        assert!(none.is_empty());
    }
}
