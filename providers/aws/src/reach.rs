//! Reachability: the roles a person's IAM user can assume and the secrets it (or such a role)
//! can read, each with every path that explains it. Pure: evaluates the policies of an
//! [`Inventory`] with [`crate::policy`].

use crate::config::AwsConfig;
use crate::inventory::{
    account_of, tag, AttachedRef, IamRole, IamUser, InlinePolicy, Inventory, SecretInfo,
};
use crate::policy::{Caller, Grantee, PolicyDocument, Vars};
use closeout_contract::{Identity, Path};

/// The IAM action that assumes a role.
pub const ASSUME_ROLE: &str = "sts:AssumeRole";
/// The IAM action that reads a secret's value.
pub const GET_SECRET_VALUE: &str = "secretsmanager:GetSecretValue";

/// One identity policy of a principal, and the steps from the principal to it.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub steps: Vec<(String, String)>,
    pub doc: &'a PolicyDocument,
}

fn push_sources<'a>(
    inv: &'a Inventory,
    out: &mut Vec<Source<'a>>,
    prefix: &[(String, String)],
    attached: &'a [AttachedRef],
    inline: &'a [InlinePolicy],
) {
    for p in inline {
        if let Some(doc) = &p.doc {
            let mut steps = prefix.to_vec();
            steps.push(("inline".into(), format!("inline policy {}", p.name)));
            out.push(Source { steps, doc });
        }
    }
    for a in attached {
        if let Some(doc) = inv.managed.get(&a.arn).and_then(|m| m.doc.as_ref()) {
            let mut steps = prefix.to_vec();
            steps.push(("attached".into(), format!("policy {}", a.name)));
            out.push(Source { steps, doc });
        }
    }
}

/// The identity policies of a user: its own inline and attached ones, then its groups'.
pub fn user_sources<'a>(inv: &'a Inventory, user: &'a IamUser) -> Vec<Source<'a>> {
    let mut out = Vec::new();
    push_sources(inv, &mut out, &[], &user.attached, &user.inline);
    for g in &user.groups {
        if let Some(group) = inv.groups.get(g) {
            let prefix = [("member-of".to_string(), format!("group {g}"))];
            push_sources(inv, &mut out, &prefix, &group.attached, &group.inline);
        }
    }
    out
}

pub fn role_sources<'a>(inv: &'a Inventory, role: &'a IamRole) -> Vec<Source<'a>> {
    let mut out = Vec::new();
    push_sources(inv, &mut out, &[], &role.attached, &role.inline);
    out
}

/// Managed policy ARNs attached to a user and its groups.
pub fn user_policy_arns(inv: &Inventory, user: &IamUser) -> Vec<String> {
    let mut arns: Vec<String> = user.attached.iter().map(|a| a.arn.clone()).collect();
    for g in &user.groups {
        if let Some(group) = inv.groups.get(g) {
            arns.extend(group.attached.iter().map(|a| a.arn.clone()));
        }
    }
    arns
}

fn extend(base: &Path, steps: &[(String, String)]) -> Path {
    steps.iter().fold(base.clone(), |p, (edge, node)| {
        p.then(edge.clone(), node.clone())
    })
}

/// Which of `sources` allow `action` on `resource`, and whether any explicitly denies it.
struct Grants<'s, 'a> {
    via: Vec<&'s Source<'a>>,
    denied: bool,
    conditional: bool,
}

fn grants<'s, 'a>(
    sources: &'s [Source<'a>],
    action: &str,
    resource: &str,
    vars: Vars<'_>,
) -> Grants<'s, 'a> {
    let mut g = Grants {
        via: Vec::new(),
        denied: false,
        conditional: true,
    };
    for s in sources {
        let d = s.doc.identity_decision(action, resource, vars);
        if d.denied {
            g.denied = true;
        }
        if d.allowed {
            g.via.push(s);
            if !d.conditional {
                g.conditional = false;
            }
        }
    }
    g
}

/// The person's IAM user as the analysis needs it.
pub struct Person<'a> {
    pub user: &'a IamUser,
    pub base: Path,
    pub account: String,
    pub sources: Vec<Source<'a>>,
}

impl<'a> Person<'a> {
    pub fn new(inv: &'a Inventory, user: &'a IamUser) -> Person<'a> {
        Person {
            user,
            base: user_base(&user.name),
            account: account_of(&user.arn).unwrap_or_default().to_string(),
            sources: user_sources(inv, user),
        }
    }

    fn caller(&self) -> Caller<'_> {
        Caller {
            arn: &self.user.arn,
            unique_id: Some(&self.user.id)
                .filter(|i| !i.is_empty())
                .map(|s| s.as_str()),
            account: &self.account,
        }
    }

    fn vars(&self) -> Vars<'_> {
        Vars {
            username: Some(&self.user.name),
            userid: Some(&self.user.id),
        }
    }
}

/// A role the person can assume, with every path that lets it.
#[derive(Debug, Clone)]
pub struct RoleReach {
    pub idx: usize,
    pub paths: Vec<Path>,
    /// Every way in depends on a `Condition` that was not evaluated.
    pub conditional: bool,
    /// `user` when the trust policy names the user (or anyone), `account` when it delegates to
    /// the account and an identity policy allows it.
    pub trust: &'static str,
}

/// Roles the person can assume: a trust policy that names the user (or `*`), or names the
/// account while one of the user's or its groups' identity policies allows `sts:AssumeRole` on
/// the role. An explicit deny in those identity policies (or the trust policy) wins.
pub fn assumable_roles(inv: &Inventory, person: &Person<'_>) -> Vec<RoleReach> {
    let caller = person.caller();
    let mut out = Vec::new();
    for (idx, role) in inv.roles.iter().enumerate() {
        let Some(trust) = &role.trust else { continue };
        let t = trust.trust_decision(&caller, ASSUME_ROLE);
        if !t.grants() {
            continue;
        }
        let g = grants(&person.sources, ASSUME_ROLE, &role.arn, person.vars());
        if g.denied {
            continue;
        }
        let (paths, conditional, how) = match t.grantee {
            Some(Grantee::Named) => (
                vec![person.base.then(
                    "can-assume",
                    format!(
                        "role {} (trust policy names iam user {})",
                        role.name, person.user.name
                    ),
                )],
                t.conditional,
                "user",
            ),
            Some(Grantee::Everyone) => (
                vec![person.base.then(
                    "can-assume",
                    format!("role {} (trust policy allows any principal)", role.name),
                )],
                t.conditional,
                "user",
            ),
            Some(Grantee::Account) => (
                g.via
                    .iter()
                    .map(|s| {
                        extend(&person.base, &s.steps).then(
                            "can-assume",
                            format!(
                                "role {} (trust policy trusts account {})",
                                role.name, person.account
                            ),
                        )
                    })
                    .collect(),
                t.conditional || g.conditional,
                "account",
            ),
            None => continue,
        };
        if paths.is_empty() {
            continue;
        }
        out.push(RoleReach {
            idx,
            paths,
            conditional,
            trust: how,
        });
    }
    out
}

/// How the person reaches one secret.
#[derive(Debug, Clone, Default)]
pub struct SecretReach {
    /// The owner tag's value when it names the identity.
    pub owner: Option<String>,
    pub paths: Vec<Path>,
    pub conditional: bool,
}

/// Paths from the identity to `secret`: ownership by tag, the person's (and its groups')
/// identity policies, the identity policies of roles it can assume, and the secret's resource
/// policy naming the user or such a role.
pub fn secret_reach(
    inv: &Inventory,
    person: Option<&Person<'_>>,
    roles: &[(&RoleReach, Vec<Source<'_>>)],
    secret: &SecretInfo,
    identity: &Identity,
    config: &AwsConfig,
) -> SecretReach {
    let mut r = SecretReach {
        conditional: true,
        ..Default::default()
    };
    let node = format!("secret {}", secret.name);
    if let Some(v) = tag(&secret.tags, &config.owner_tag) {
        if identity.is_named_by(v) {
            r.owner = Some(v.to_string());
            r.conditional = false;
            r.paths.push(Path::new().then(
                "owns",
                format!("secret {} (tag {} = {})", secret.name, config.owner_tag, v),
            ));
        }
    }
    let Some(person) = person else { return r };
    let policy = secret.policy.as_ref();
    // Through the person's own and its groups' identity policies, and the resource policy.
    {
        let caller = person.caller();
        let g = grants(
            &person.sources,
            GET_SECRET_VALUE,
            &secret.arn,
            person.vars(),
        );
        let rp = policy.map(|p| p.resource_decision(&caller, GET_SECRET_VALUE, &secret.arn));
        let denied = g.denied || rp.is_some_and(|d| d.denied);
        if !denied {
            for s in &g.via {
                r.paths
                    .push(extend(&person.base, &s.steps).then("can-read", node.clone()));
            }
            if !g.via.is_empty() && !g.conditional {
                r.conditional = false;
            }
            if let Some(d) = rp.filter(|d| d.grants()) {
                let why = match d.grantee {
                    Some(Grantee::Named) => Some(format!(
                        "(resource policy names iam user {})",
                        person.user.name
                    )),
                    Some(Grantee::Everyone) => {
                        Some("(resource policy allows any principal)".into())
                    }
                    _ => None,
                };
                if let Some(why) = why {
                    r.paths
                        .push(person.base.then("can-read", format!("{node} {why}")));
                    if !d.conditional {
                        r.conditional = false;
                    }
                }
            }
        }
    }
    // Through the roles the person can assume.
    for (reach, sources) in roles {
        let role = &inv.roles[reach.idx];
        let caller = Caller {
            arn: &role.arn,
            unique_id: Some(role.id.as_str()).filter(|i| !i.is_empty()),
            account: &person.account,
        };
        let vars = Vars {
            username: None,
            userid: Some(&role.id),
        };
        let g = grants(sources, GET_SECRET_VALUE, &secret.arn, vars);
        let rp = policy.map(|p| p.resource_decision(&caller, GET_SECRET_VALUE, &secret.arn));
        if g.denied || rp.is_some_and(|d| d.denied) {
            continue;
        }
        let named = rp.filter(|d| d.grants() && d.grantee == Some(Grantee::Named));
        for base in &reach.paths {
            for s in &g.via {
                r.paths
                    .push(extend(base, &s.steps).then("can-read", node.clone()));
            }
            if named.is_some() {
                r.paths.push(base.then(
                    "can-read",
                    format!("{node} (resource policy names role {})", role.name),
                ));
            }
        }
        let unconditional_here =
            (!g.via.is_empty() && !g.conditional) || named.is_some_and(|d| !d.conditional);
        if unconditional_here && !reach.conditional {
            r.conditional = false;
        }
    }
    r
}

/// The first step of every path through the person's IAM user `user`.
pub fn user_base(user: &str) -> Path {
    Path::new().then("account", format!("iam user {user}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{identity, inline, render, sample, secret, ACCT};
    use serde_json::json;
    #[test]
    fn roles_assumable_by_trust_or_by_account_trust_plus_identity_policy() {
        let inv = sample();
        let p = Person::new(&inv, &inv.users[0]);
        let reaches = assumable_roles(&inv, &p);
        let names: Vec<&str> = reaches
            .iter()
            .map(|r| inv.roles[r.idx].name.as_str())
            .collect();
        assert_eq!(names, vec!["direct-role", "app-deploy"]);
        assert_eq!(
            render(&reaches[0].paths),
            vec!["alice -account-> iam user alice -can-assume-> role direct-role (trust policy names iam user alice)"]
        );
        assert_eq!(
            render(&reaches[1].paths),
            vec!["alice -account-> iam user alice -attached-> policy assume-app -can-assume-> role app-deploy (trust policy trusts account 123456789012)"]
        );
        assert_eq!(reaches[1].trust, "account");
    }

    #[test]
    fn explicit_deny_blocks_an_assumable_role() {
        let mut inv = sample();
        inv.users[0].inline.push(inline(
            "deny-app",
            json!({"Statement": [{"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": "arn:aws:iam::*:role/app-deploy"}]}),
        ));
        let p = Person::new(&inv, &inv.users[0]);
        let names: Vec<String> = assumable_roles(&inv, &p)
            .iter()
            .map(|r| inv.roles[r.idx].name.clone())
            .collect();
        assert_eq!(names, vec!["direct-role"]);
    }

    #[test]
    fn secrets_reached_every_way_and_not_otherwise() {
        let inv = sample();
        let cfg = AwsConfig::default();
        let alice = identity("E100", "alice@example.com");
        let p = Person::new(&inv, &inv.users[0]);
        let reaches = assumable_roles(&inv, &p);
        let roles: Vec<_> = reaches
            .iter()
            .map(|r| (r, role_sources(&inv, &inv.roles[r.idx])))
            .collect();
        let reach = |s: &SecretInfo| secret_reach(&inv, Some(&p), &roles, s, &alice, &cfg);

        let owned = secret("owned", &[("owner", "alice@example.com")], None);
        let r = reach(&owned);
        assert_eq!(r.owner.as_deref(), Some("alice@example.com"));
        assert_eq!(
            render(&r.paths),
            vec!["alice -owns-> secret owned (tag owner = alice@example.com)"]
        );

        let r = reach(&secret("user-db", &[], None));
        assert_eq!(
            render(&r.paths),
            vec!["alice -account-> iam user alice -inline-> inline policy read-user-secret -can-read-> secret user-db"]
        );
        let r = reach(&secret("group-db", &[], None));
        assert_eq!(
            render(&r.paths),
            vec!["alice -account-> iam user alice -member-of-> group devs -inline-> inline policy group-read -can-read-> secret group-db"]
        );
        let r = reach(&secret("role-db", &[], None));
        assert_eq!(
            render(&r.paths),
            vec!["alice -account-> iam user alice -can-assume-> role direct-role (trust policy names iam user alice) -inline-> inline policy r -can-read-> secret role-db"]
        );
        let rp = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:role/app-deploy")}, "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]});
        let r = reach(&secret("rp-role", &[], Some(rp)));
        assert_eq!(
            render(&r.paths),
            vec!["alice -account-> iam user alice -attached-> policy assume-app -can-assume-> role app-deploy (trust policy trusts account 123456789012) -can-read-> secret rp-role (resource policy names role app-deploy)"]
        );
        let rp = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:user/alice")}, "Action": "secretsmanager:*", "Resource": "*"}]});
        let r = reach(&secret("rp-user", &[], Some(rp)));
        assert_eq!(
            render(&r.paths),
            vec!["alice -account-> iam user alice -can-read-> secret rp-user (resource policy names iam user alice)"]
        );
        assert!(!r.conditional);

        // Nobody's path: bob can read everything, but bob is not alice.
        assert!(reach(&secret(
            "unreachable",
            &[("owner", "bob@example.com")],
            None
        ))
        .paths
        .is_empty());
        // A resource policy naming only bob.
        let rp = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:user/bob")}, "Action": "*", "Resource": "*"}]});
        assert!(reach(&secret("bobs", &[], Some(rp))).paths.is_empty());
        // A resource policy deny beats the identity policy.
        let rp = json!({"Statement": [{"Effect": "Deny", "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:user/alice")}, "Action": "*", "Resource": "*"}]});
        assert!(reach(&secret("user-denied", &[], Some(rp)))
            .paths
            .is_empty());
    }

    #[test]
    fn without_an_account_only_owned_secrets_are_reached() {
        let inv = sample();
        let cfg = AwsConfig::default();
        let alice = identity("E100", "alice@example.com");
        let r = secret_reach(&inv, None, &[], &secret("user-db", &[], None), &alice, &cfg);
        assert!(r.paths.is_empty());
        let r = secret_reach(
            &inv,
            None,
            &[],
            &secret("o", &[("owner", "E100")], None),
            &alice,
            &cfg,
        );
        assert_eq!(r.paths.len(), 1);
    }
}
