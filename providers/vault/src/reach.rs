//! What a person's ACL rules reach beyond reading a KV secret: the ways they let her grant
//! herself any policy (rewrite a policy she holds, write identity groups or entities, auth roles
//! or users, mint tokens with any policy), and which secrets engines they reach at all. Pure:
//! evaluated over the policy set resolution already read, never per path on the server.
//!
//! A rule is checked on concrete *witness* paths: a sensitive endpoint (`identity/group/+/+`)
//! unified with the rule's own pattern (`identity/group/id/g1` for a rule on that group, a sample
//! name where both are wildcards), so a rule naming one group counts as well as `identity/*`.
//! The witness is then evaluated with every rule (Vault's priority order, `deny` wins), so a more
//! specific `deny` still takes the capability away.

use crate::policy::{self, PathRule};
use std::collections::{BTreeMap, BTreeSet};

/// The name a wildcard segment is filled with when both sides are wildcards.
const SAMPLE: &str = "closeout-sample";

/// Capabilities that let a caller write (or do anything, `root`).
const WRITE: &[&str] = &["create", "update", "patch", "sudo", "root"];

/// The policy set a person holds: policy name -> its rules.
pub type Rules = BTreeMap<String, Vec<PathRule>>;

/// One way the rules let their holder grant itself any policy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GrantSelf {
    /// What it allows, in a phrase: `rewrite policy team-read, which it holds`.
    pub what: String,
    /// The concrete path the capability was found on.
    pub path: String,
    /// The capabilities granted there, comma-separated.
    pub capabilities: String,
    /// The pattern that decided.
    pub pattern: String,
    /// The policies holding that pattern.
    pub policies: Vec<String>,
}

/// An endpoint family whose write lets the writer grant itself any policy.
struct Family {
    /// What writing it allows, for the finding's path.
    what: &'static str,
    /// Its paths, `+` for one segment of any name.
    templates: &'static [&'static str],
}

const FAMILIES: &[Family] = &[
    Family {
        what: "write identity groups (join one, or set its policies)",
        templates: &[
            "identity/group",
            "identity/group/+",
            "identity/group/+/+",
            "identity/group-alias",
            "identity/group-alias/+",
            "identity/group-alias/+/+",
        ],
    },
    Family {
        what: "write identity entities or aliases (set an entity's policies, or log in as it)",
        templates: &[
            "identity/entity",
            "identity/entity/+",
            "identity/entity/+/+",
            "identity/entity-alias",
            "identity/entity-alias/+",
            "identity/entity-alias/+/+",
        ],
    },
    Family {
        what:
            "write auth method roles, users or groups (their token policies, or a user's password)",
        templates: &[
            "auth/+/role/+",
            "auth/+/roles/+",
            "auth/+/users/+",
            "auth/+/users/+/+",
            "auth/+/groups/+",
            "auth/+/certs/+",
        ],
    },
];

/// Token creation paths where `sudo` lifts the "subset of the parent's policies" rule.
const TOKEN_CREATE: &[&str] = &["auth/token/create", "auth/token/create-orphan"];

fn has_any(caps: &BTreeSet<String>, wanted: &[&str]) -> bool {
    !caps.contains("deny") && wanted.iter().any(|c| caps.contains(*c))
}

fn joined(caps: &BTreeSet<String>) -> String {
    caps.iter().cloned().collect::<Vec<_>>().join(",")
}

fn set(rules: &Rules) -> impl Iterator<Item = (&str, &[PathRule])> {
    rules.iter().map(|(n, r)| (n.as_str(), r.as_slice()))
}

/// One segment of a pattern and of a template made concrete, if they can meet.
fn meet(p: &str, t: &str) -> Option<String> {
    match (p, t) {
        ("+", "+") => Some(SAMPLE.to_string()),
        ("+", t) => Some(t.to_string()),
        (p, "+") if !p.is_empty() => Some(p.to_string()),
        (p, t) if p == t => Some(p.to_string()),
        _ => None,
    }
}

/// A concrete path both `pattern` (a policy pattern: `+` segments, a trailing `*`) and
/// `template` (literal segments and `+`) match, if there is one.
pub fn witness(pattern: &str, template: &str) -> Option<String> {
    let (pat, prefix) = match pattern.strip_suffix('*') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let psegs: Vec<&str> = pat.split('/').collect();
    let tsegs: Vec<&str> = template.split('/').collect();
    let mut out = Vec::with_capacity(tsegs.len());
    if !prefix {
        if psegs.len() != tsegs.len() {
            return None;
        }
        for (p, t) in psegs.iter().zip(&tsegs) {
            out.push(meet(p, t)?);
        }
    } else {
        let m = psegs.len();
        if tsegs.len() < m {
            return None;
        }
        for k in 0..m - 1 {
            out.push(meet(psegs[k], tsegs[k])?);
        }
        // The last pattern segment is a prefix of the path's segment.
        let last = psegs[m - 1];
        out.push(match tsegs[m - 1] {
            "+" if last.is_empty() => SAMPLE.to_string(),
            "+" => last.to_string(),
            t if t.starts_with(last) => t.to_string(),
            _ => return None,
        });
        for t in &tsegs[m..] {
            out.push(if *t == "+" {
                SAMPLE.to_string()
            } else {
                t.to_string()
            });
        }
    }
    let w = out.join("/");
    // The `+` of a pattern never matches an empty segment: keep only real matches.
    policy::glob_match(pattern, &w).then_some(w)
}

/// Every way `rules` let their holder grant itself any policy. `held` are the policies it
/// holds (`default` is added: every token carries it unless created without it).
pub fn grant_self(rules: &Rules, held: &BTreeSet<String>) -> Vec<GrantSelf> {
    let mut out: Vec<GrantSelf> = Vec::new();
    let mut push = |g: GrantSelf| {
        if !out
            .iter()
            .any(|o| o.pattern == g.pattern && o.policies == g.policies && o.what == g.what)
        {
            out.push(g);
        }
    };
    // 1. Rewriting a policy it holds: the new text is in force for it at once.
    let mut names: BTreeSet<&str> = held.iter().map(String::as_str).collect();
    names.insert("default");
    names.remove("root");
    for name in names {
        for prefix in ["sys/policies/acl/", "sys/policy/"] {
            let path = format!("{prefix}{name}");
            if let Some((caps, pattern, policies)) = policy::effective(set(rules), &path) {
                if has_any(&caps, &["create", "update", "sudo", "root"]) {
                    push(GrantSelf {
                        what: format!("rewrite policy {name}, which it holds"),
                        capabilities: joined(&caps),
                        path,
                        pattern,
                        policies,
                    });
                }
            }
        }
    }
    // 2. Writing identity groups or entities, auth roles or users: each witness a rule offers.
    for family in FAMILIES {
        for template in family.templates {
            for rule in rules.values().flatten() {
                if !has_any(&rule.capabilities, WRITE) {
                    continue;
                }
                let Some(path) = witness(&rule.pattern, template) else {
                    continue;
                };
                if let Some((caps, pattern, policies)) = policy::effective(set(rules), &path) {
                    if has_any(&caps, WRITE) {
                        push(GrantSelf {
                            what: family.what.to_string(),
                            capabilities: joined(&caps),
                            path,
                            pattern,
                            policies,
                        });
                    }
                }
            }
        }
    }
    // 3. `sudo` on token creation: tokens with any policy but root.
    for path in TOKEN_CREATE {
        if let Some((caps, pattern, policies)) = policy::effective(set(rules), path) {
            let sudo = caps.contains("root")
                || (caps.contains("sudo") && has_any(&caps, &["create", "update"]));
            if sudo && !caps.contains("deny") {
                push(GrantSelf {
                    what: "create tokens with any policy (sudo on token creation)".to_string(),
                    capabilities: joined(&caps),
                    path: path.to_string(),
                    pattern,
                    policies,
                });
            }
        }
    }
    out.sort();
    out
}

/// Whether `rules` let their holder call `auth/token/create/<role>` for some role: worth
/// reading the token roles only then.
pub fn may_use_token_roles(rules: &Rules) -> bool {
    rules.values().flatten().any(|rule| {
        has_any(&rule.capabilities, &["create", "update", "root"])
            && witness(&rule.pattern, "auth/token/create/+").is_some()
    })
}

/// The capabilities on `path`, and the pattern and policies deciding them, when they allow
/// `update` (or `create`, or everything).
pub fn allows_update(rules: &Rules, path: &str) -> Option<(String, String, Vec<String>)> {
    let (caps, pattern, policies) = policy::effective(set(rules), path)?;
    has_any(&caps, &["create", "update", "root"]).then(|| (joined(&caps), pattern, policies))
}

/// The endpoints of a database secrets engine whose write gives the writer every database the
/// engine's connections reach: a role (`roles/<r>`: credentials with any creation statements,
/// so any grants), a static role (`static-roles/<r>`: take over any database user's password),
/// a connection (`config/<c>`: repoint it at a server of hers, and Vault sends the root
/// credentials there; or change its allowed roles).
const DATABASE_WRITES: &[(&str, &str)] = &[
    (
        "roles/+",
        "write a dynamic role (credentials with any grants at every database of the engine)",
    ),
    (
        "static-roles/+",
        "write a static role (take over any user at every database of the engine)",
    ),
    (
        "config/+",
        "write a connection (repoint it, and Vault sends it the root credentials)",
    ),
];

/// Every way `rules` let their holder write the roles, static roles or connections of the
/// database engine at `mount` (`database/`): each is reach to every database its connections
/// reach, as a grant-self is to every secret.
pub fn database_engine_writes(rules: &Rules, mount: &str) -> Vec<GrantSelf> {
    let mut out: Vec<GrantSelf> = Vec::new();
    for (template, what) in DATABASE_WRITES {
        let template = format!("{mount}{template}");
        for rule in rules.values().flatten() {
            if !has_any(&rule.capabilities, &["create", "update", "root"]) {
                continue;
            }
            let Some(path) = witness(&rule.pattern, &template) else {
                continue;
            };
            let Some((caps, pattern, policies)) = allows_update(rules, &path) else {
                continue;
            };
            if !out
                .iter()
                .any(|o| o.pattern == pattern && o.policies == policies && o.what == *what)
            {
                out.push(GrantSelf {
                    what: (*what).to_string(),
                    path,
                    capabilities: caps,
                    pattern,
                    policies,
                });
            }
        }
    }
    out.sort();
    out
}

/// The endpoints under an AppRole role that mint a new secret-id for it.
const SECRET_ID_ENDPOINTS: &[&str] = &["secret-id", "custom-secret-id"];

/// Whether some rule may let its holder mint a secret-id for a role of the AppRole mount
/// `mount` (`approle/`): worth listing the mount's roles only then.
pub fn may_mint_secret_ids(rules: &Rules, mount: &str) -> bool {
    rules.values().flatten().any(|rule| {
        has_any(&rule.capabilities, &["create", "update", "root"])
            && SECRET_ID_ENDPOINTS
                .iter()
                .any(|e| witness(&rule.pattern, &format!("auth/{mount}role/+/{e}")).is_some())
    })
}

/// Whether `rules` let their holder mint a secret-id for AppRole role `role` of mount `mount`
/// (`approle/`) — and so log in as that role (a role-id names the role, it is no secret):
/// the endpoint, the capabilities there, and the pattern and policies that decide.
pub fn mints_secret_id(
    rules: &Rules,
    mount: &str,
    role: &str,
) -> Option<(String, String, String, Vec<String>)> {
    SECRET_ID_ENDPOINTS.iter().find_map(|e| {
        let path = format!("auth/{mount}role/{role}/{e}");
        allows_update(rules, &path).map(|(caps, pattern, policies)| (path, caps, pattern, policies))
    })
}

/// How `rules` reach a path under `mount` (`transit/`): the first rule (in the rules' order)
/// that grants any capability there once every rule is weighed, with the pattern and policies
/// that decide. `None` when nothing under the mount is reachable.
pub fn reach_under(rules: &Rules, mount: &str) -> Option<(String, String, Vec<String>)> {
    let mount_segs: Vec<&str> = mount.trim_end_matches('/').split('/').collect();
    for rule in rules.values().flatten() {
        if rule.capabilities.is_empty() || rule.capabilities.contains("deny") {
            continue;
        }
        let pattern_segs = rule.pattern.trim_end_matches('*').split('/').count();
        let depth = pattern_segs.max(mount_segs.len() + 1);
        let mut template: Vec<&str> = mount_segs.clone();
        template.resize(depth, "+");
        let Some(path) = witness(&rule.pattern, &template.join("/")) else {
            continue;
        };
        if let Some((caps, pattern, policies)) = policy::effective(set(rules), &path) {
            if !caps.contains("deny") && !caps.is_empty() {
                return Some((joined(&caps), pattern, policies));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(policies: &[(&str, &str)]) -> Rules {
        policies
            .iter()
            .map(|(n, text)| (n.to_string(), policy::parse(text).unwrap()))
            .collect()
    }

    fn held(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn witnesses_meet_pattern_and_template() {
        assert_eq!(
            witness("identity/*", "identity/group/+/+").as_deref(),
            Some("identity/group/closeout-sample/closeout-sample")
        );
        assert_eq!(
            witness("identity/group/id/g1", "identity/group/+/+").as_deref(),
            Some("identity/group/id/g1")
        );
        assert_eq!(
            witness("auth/+/role/*", "auth/+/role/+").as_deref(),
            Some("auth/closeout-sample/role/closeout-sample")
        );
        assert_eq!(
            witness("auth/approle/role/ci", "auth/+/role/+").as_deref(),
            Some("auth/approle/role/ci")
        );
        assert_eq!(
            witness("*", "identity/entity").as_deref(),
            Some("identity/entity")
        );
        assert_eq!(witness("identity/group/*", "identity/group"), None);
        assert_eq!(witness("identity/group/id/g1", "identity/entity/+/+"), None);
        assert_eq!(witness("secret/data/*", "auth/+/role/+"), None);
        assert_eq!(
            witness("auth/approle/role/ci/secret-id", "auth/+/role/+"),
            None,
            "generating a secret-id is not writing the role"
        );
    }

    #[test]
    fn each_family_is_found_with_its_policy_and_pattern() {
        let cases = [
            (
                r#"path "sys/policies/acl/*" { capabilities = ["update"] }"#,
                "rewrite policy",
            ),
            (
                r#"path "sys/policy/mine" { capabilities = ["create"] }"#,
                "rewrite policy mine",
            ),
            (
                r#"path "identity/group/id/*" { capabilities = ["update"] }"#,
                "identity groups",
            ),
            (
                r#"path "identity/group" { capabilities = ["create"] }"#,
                "identity groups",
            ),
            (
                r#"path "identity/entity-alias" { capabilities = ["create"] }"#,
                "identity entities",
            ),
            (
                r#"path "auth/approle/role/+" { capabilities = ["create", "update"] }"#,
                "auth method roles",
            ),
            (
                r#"path "auth/userpass/users/*" { capabilities = ["update"] }"#,
                "auth method roles",
            ),
            (
                r#"path "auth/token/roles/ci" { capabilities = ["update"] }"#,
                "auth method roles",
            ),
            (
                r#"path "auth/token/create" { capabilities = ["update", "sudo"] }"#,
                "any policy",
            ),
            (
                r#"path "*" { capabilities = ["sudo", "update"] }"#,
                "rewrite policy",
            ),
        ];
        for (text, what) in cases {
            let r = rules(&[("mine", text)]);
            let found = grant_self(&r, &held(&["mine"]));
            let hit = found.iter().find(|g| g.what.contains(what));
            let g = hit.unwrap_or_else(|| panic!("{text}: {found:#?}"));
            assert_eq!(g.policies, vec!["mine"], "{text}");
            assert!(policy::glob_match(&g.pattern, &g.path), "{g:?}");
        }
    }

    #[test]
    fn reading_writing_elsewhere_or_a_deny_is_no_grant() {
        let none = [
            r#"path "sys/policies/acl/*" { capabilities = ["read", "list"] }"#,
            r#"path "sys/policies/acl/other" { capabilities = ["update"] }"#,
            r#"path "secret/data/*" { capabilities = ["create", "update"] }"#,
            r#"path "auth/token/create" { capabilities = ["update"] }"#,
            r#"path "auth/approle/role/ci/secret-id" { capabilities = ["update"] }"#,
            r#"path "identity/*" { capabilities = ["update"] }
               path "identity/group*" { capabilities = ["deny"] }
               path "identity/entity*" { capabilities = ["deny"] }"#,
        ];
        for text in none {
            let r = rules(&[("mine", text)]);
            let found = grant_self(&r, &held(&["mine"]));
            assert!(found.is_empty(), "{text}: {found:#?}");
        }
    }

    #[test]
    fn minting_a_secret_id_for_a_role_is_found_and_a_deny_wins() {
        let r = rules(&[(
            "p",
            r#"path "auth/approle/role/+/secret-id" { capabilities = ["update"] }
               path "auth/approle/role/vault-admin/secret-id" { capabilities = ["deny"] }"#,
        )]);
        assert!(may_mint_secret_ids(&r, "approle/"));
        assert!(!may_mint_secret_ids(&r, "other/"));
        let (path, caps, pattern, names) = mints_secret_id(&r, "approle/", "ci").unwrap();
        assert_eq!(path, "auth/approle/role/ci/secret-id");
        assert_eq!(
            (caps.as_str(), pattern.as_str()),
            ("update", "auth/approle/role/+/secret-id")
        );
        assert_eq!(names, vec!["p"]);
        assert!(mints_secret_id(&r, "approle/", "vault-admin").is_none());
        let read_only = rules(&[(
            "p",
            r#"path "auth/approle/role/*" { capabilities = ["read", "list"] }"#,
        )]);
        assert!(mints_secret_id(&read_only, "approle/", "ci").is_none());
    }

    #[test]
    fn the_root_policy_grants_everything() {
        let mut r = Rules::new();
        r.insert(
            "root".into(),
            vec![PathRule {
                pattern: "*".into(),
                capabilities: ["root".to_string()].into(),
            }],
        );
        assert!(!grant_self(&r, &held(&["root"])).is_empty());
        assert!(reach_under(&r, "transit/").is_some());
    }

    #[test]
    fn engines_are_reached_by_globs_plus_segments_and_exact_paths() {
        let r = rules(&[(
            "p",
            r#"path "transit/encrypt/app" { capabilities = ["update"] }
               path "+/creds/ro" { capabilities = ["read"] }
               path "ssh/*" { capabilities = ["deny"] }
               path "aws*" { capabilities = ["read"] }"#,
        )]);
        let (caps, pattern, names) = reach_under(&r, "transit/").unwrap();
        assert_eq!(
            (caps.as_str(), pattern.as_str()),
            ("update", "transit/encrypt/app")
        );
        assert_eq!(names, vec!["p"]);
        assert_eq!(reach_under(&r, "database/").unwrap().1, "+/creds/ro");
        assert_eq!(reach_under(&r, "aws-prod/").unwrap().1, "aws*");
        assert!(reach_under(&r, "ssh/").is_none(), "denied");
        assert_eq!(reach_under(&r, "totp/").unwrap().1, "+/creds/ro");
        assert!(reach_under(&r, "team/totp/").is_none());
        assert!(may_use_token_roles(&rules(&[(
            "p",
            r#"path "auth/token/create/*" { capabilities = ["update"] }"#
        )])));
        assert!(!may_use_token_roles(&r));
    }

    #[test]
    fn writing_database_engine_roles_or_connections_is_reach() {
        let mut rules = Rules::new();
        rules.insert(
            "dba".into(),
            policy::parse(
                r#"path "database/roles/*" { capabilities = ["create", "update"] }
                   path "database/config/payments" { capabilities = ["update"] }
                   path "database/static-roles/*" { capabilities = ["read", "list"] }
                   path "other/roles/*" { capabilities = ["create"] }"#,
            )
            .expect("policy"),
        );
        let writes = database_engine_writes(&rules, "database/");
        let paths: Vec<&str> = writes.iter().map(|g| g.path.as_str()).collect();
        assert_eq!(
            paths,
            ["database/config/payments", "database/roles/closeout-sample"],
            "{writes:#?}"
        );
        // A deny on the one path takes it away; reading alone is no write.
        rules.insert(
            "deny".into(),
            policy::parse(r#"path "database/config/payments" { capabilities = ["deny"] }"#)
                .expect("policy"),
        );
        assert_eq!(database_engine_writes(&rules, "database/").len(), 1);
        assert!(database_engine_writes(&rules, "db2/").is_empty());
    }
}
