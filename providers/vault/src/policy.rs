//! A small, pure reader of Vault ACL policies (the HCL `path "..." { capabilities = [...] }`
//! rules) and the evaluation of "can this set of policies read this API path".
//!
//! Matching follows Vault's rules: `+` matches exactly one path segment, a trailing `*` matches
//! any suffix; when several rules match a path, the most specific pattern wins (Vault's priority
//! order), the capabilities of every policy's rule for that same pattern are merged, and `deny`
//! in the merged set wins over everything.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// One `path` rule of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pub pattern: String,
    pub capabilities: BTreeSet<String>,
}

/// A policy text that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Ident(String),
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Eq,
    Comma,
}

fn tokenize(text: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                loop {
                    match chars.next() {
                        None => {
                            return Err(ParseError {
                                line,
                                message: "unterminated comment".into(),
                            })
                        }
                        Some('\n') => line += 1,
                        Some('/') if prev == '*' => break,
                        Some(c) => prev = c,
                    }
                    if prev == '\n' {
                        prev = ' ';
                    }
                }
            }
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None | Some('\n') => {
                            return Err(ParseError {
                                line,
                                message: "unterminated string".into(),
                            })
                        }
                        Some('\\') => match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(c) => s.push(c),
                            None => {
                                return Err(ParseError {
                                    line,
                                    message: "unterminated string".into(),
                                })
                            }
                        },
                        Some('"') => break,
                        Some(c) => s.push(c),
                    }
                }
                out.push((Tok::Str(s), line));
            }
            '{' => out.push((Tok::LBrace, line)),
            '}' => out.push((Tok::RBrace, line)),
            '[' => out.push((Tok::LBracket, line)),
            ']' => out.push((Tok::RBracket, line)),
            '=' => out.push((Tok::Eq, line)),
            ',' => out.push((Tok::Comma, line)),
            c if c.is_alphanumeric() || c == '_' || c == '-' || c == '.' => {
                let mut s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_alphanumeric() || n == '_' || n == '-' || n == '.' {
                        s.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push((Tok::Ident(s), line));
            }
            other => {
                return Err(ParseError {
                    line,
                    message: format!("unexpected character {other:?}"),
                })
            }
        }
    }
    Ok(out)
}

/// Read the `path` rules of a policy. Other blocks and attributes (`min_wrapping_ttl`,
/// `allowed_parameters`, ...) are skipped; a rule without `capabilities` (e.g. the old `policy =
/// "read"` form) is read through its `policy` attribute.
pub fn parse(text: &str) -> Result<Vec<PathRule>, ParseError> {
    let toks = tokenize(text)?;
    let mut rules = Vec::new();
    let mut i = 0;
    let err = |i: usize, message: &str| ParseError {
        line: toks.get(i).or(toks.last()).map(|t| t.1).unwrap_or(1),
        message: message.into(),
    };
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Ident(kw) if kw == "path" => {
                let Some((Tok::Str(pattern), _)) = toks.get(i + 1) else {
                    return Err(err(i, "expected a quoted path after `path`"));
                };
                if toks.get(i + 2).map(|t| &t.0) != Some(&Tok::LBrace) {
                    return Err(err(i + 1, "expected `{` after the path"));
                }
                let (caps, next) = parse_body(&toks, i + 3).map_err(|(j, m)| err(j, &m))?;
                rules.push(PathRule {
                    pattern: pattern.trim_start_matches('/').to_string(),
                    capabilities: caps,
                });
                i = next;
            }
            Tok::Ident(_) => {
                // Some other top-level block or attribute: skip it.
                i = skip_item(&toks, i + 1).map_err(|(j, m)| err(j, &m))?;
            }
            _ => return Err(err(i, "expected `path`")),
        }
    }
    Ok(rules)
}

/// Parse a rule body after `{`; returns the capabilities and the index after the closing `}`.
fn parse_body(
    toks: &[(Tok, usize)],
    mut i: usize,
) -> Result<(BTreeSet<String>, usize), (usize, String)> {
    let mut caps = BTreeSet::new();
    loop {
        match toks.get(i).map(|t| &t.0) {
            None => return Err((i, "unterminated path block".into())),
            Some(Tok::RBrace) => return Ok((caps, i + 1)),
            Some(Tok::Ident(name)) if name == "capabilities" => {
                if toks.get(i + 1).map(|t| &t.0) != Some(&Tok::Eq)
                    || toks.get(i + 2).map(|t| &t.0) != Some(&Tok::LBracket)
                {
                    return Err((i, "expected `capabilities = [...]`".into()));
                }
                i += 3;
                loop {
                    match toks.get(i).map(|t| &t.0) {
                        Some(Tok::Str(c)) => {
                            caps.insert(c.to_ascii_lowercase());
                        }
                        Some(Tok::Comma) => {}
                        Some(Tok::RBracket) => {
                            i += 1;
                            break;
                        }
                        _ => return Err((i, "expected a quoted capability or `]`".into())),
                    }
                    i += 1;
                }
            }
            Some(Tok::Ident(name)) if name == "policy" => {
                // Legacy form: policy = "read" | "write" | "deny" | "sudo".
                if let (Some(Tok::Eq), Some(Tok::Str(p))) =
                    (toks.get(i + 1).map(|t| &t.0), toks.get(i + 2).map(|t| &t.0))
                {
                    let expanded: &[&str] = match p.as_str() {
                        "deny" => &["deny"],
                        "read" => &["read", "list"],
                        "write" => &["create", "read", "update", "delete", "list"],
                        "sudo" => &["create", "read", "update", "delete", "list", "sudo"],
                        _ => &[],
                    };
                    caps.extend(expanded.iter().map(|s| s.to_string()));
                    i += 3;
                } else {
                    return Err((i, "expected `policy = \"...\"`".into()));
                }
            }
            Some(Tok::Ident(_)) => i = skip_item(toks, i + 1)?,
            Some(_) => return Err((i, "unexpected token in path block".into())),
        }
    }
}

/// Skip one attribute (`= value`) or block (`{ ... }`, possibly labelled) starting after its name.
fn skip_item(toks: &[(Tok, usize)], mut i: usize) -> Result<usize, (usize, String)> {
    while let Some((Tok::Str(_), _)) = toks.get(i) {
        i += 1; // block labels
    }
    match toks.get(i).map(|t| &t.0) {
        Some(Tok::Eq) => skip_value(toks, i + 1),
        Some(Tok::LBrace) => skip_balanced(toks, i),
        _ => Err((i, "expected `=` or `{`".into())),
    }
}

fn skip_value(toks: &[(Tok, usize)], i: usize) -> Result<usize, (usize, String)> {
    match toks.get(i).map(|t| &t.0) {
        Some(Tok::Str(_)) | Some(Tok::Ident(_)) => Ok(i + 1),
        Some(Tok::LBracket) | Some(Tok::LBrace) => skip_balanced(toks, i),
        _ => Err((i, "expected a value".into())),
    }
}

fn skip_balanced(toks: &[(Tok, usize)], mut i: usize) -> Result<usize, (usize, String)> {
    let mut depth = 0usize;
    while let Some((t, _)) = toks.get(i) {
        match t {
            Tok::LBrace | Tok::LBracket => depth += 1,
            Tok::RBrace | Tok::RBracket => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err((i, "unbalanced brackets".into()))
}

/// True when `pattern` matches the API path `path` (no leading `/`).
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let (pattern, prefix) = match pattern.strip_suffix('*') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    if !pattern.contains('+') {
        return if prefix {
            path.starts_with(pattern)
        } else {
            path == pattern
        };
    }
    // Segment-wise: `+` is one whole segment; the last pattern segment may be a prefix.
    let psegs: Vec<&str> = pattern.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    if segs.len() < psegs.len() {
        return false;
    }
    for (k, p) in psegs.iter().enumerate() {
        let last = k == psegs.len() - 1;
        let s = segs[k];
        if *p == "+" {
            if s.is_empty() && !(last && prefix) {
                return false;
            }
            continue;
        }
        if last && prefix {
            if !s.starts_with(p) {
                return false;
            }
        } else if s != *p {
            return false;
        }
    }
    if prefix {
        true
    } else {
        segs.len() == psegs.len()
    }
}

/// Vault's priority of two matching patterns: `Greater` when `a` is more specific than `b`.
pub fn priority(a: &str, b: &str) -> Ordering {
    let first_wild = |p: &str| p.find(['+', '*']).unwrap_or(usize::MAX);
    let plus = |p: &str| p.split('/').filter(|s| *s == "+").count();
    // 1. A wildcard earlier in the path is lower priority.
    first_wild(a)
        .cmp(&first_wild(b))
        // 2. Ending in `*` is lower priority.
        .then_with(|| b.ends_with('*').cmp(&a.ends_with('*')))
        // 3. More `+` segments is lower priority.
        .then_with(|| plus(b).cmp(&plus(a)))
        // 4. Shorter is lower priority.
        .then_with(|| a.len().cmp(&b.len()))
        // 5. Lexicographically smaller is lower priority.
        .then_with(|| a.cmp(b))
}

/// The effective capabilities a set of named policies grants on `path`, and the pattern that
/// decided them with the policies that hold it. `None` when no rule matches.
pub fn effective<'a>(
    policies: impl IntoIterator<Item = (&'a str, &'a [PathRule])>,
    path: &str,
) -> Option<(BTreeSet<String>, String, Vec<String>)> {
    let mut best: Option<(String, BTreeSet<String>, Vec<String>)> = None;
    for (name, rules) in policies {
        for rule in rules.iter().filter(|r| glob_match(&r.pattern, path)) {
            match &mut best {
                Some((pattern, caps, names)) if *pattern == rule.pattern => {
                    caps.extend(rule.capabilities.iter().cloned());
                    if !names.iter().any(|n| n == name) {
                        names.push(name.to_string());
                    }
                }
                Some((pattern, _, _)) if priority(&rule.pattern, pattern) != Ordering::Greater => {}
                _ => {
                    best = Some((
                        rule.pattern.clone(),
                        rule.capabilities.clone(),
                        vec![name.to_string()],
                    ))
                }
            }
        }
    }
    best.map(|(pattern, caps, mut names)| {
        names.sort();
        (caps, pattern, names)
    })
}

/// True when the capabilities allow reading (and `deny` is not among them).
pub fn allows_read(caps: &BTreeSet<String>) -> bool {
    !caps.contains("deny") && (caps.contains("read") || caps.contains("root"))
}

/// What identity templating (`{{identity.entity.name}}` ...) in a policy path is filled with,
/// for one entity of the person's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateValues {
    pub entity_id: String,
    pub entity_name: String,
    pub metadata: BTreeMap<String, String>,
    /// Alias per mount accessor: (alias id, alias name).
    pub aliases: BTreeMap<String, (String, String)>,
    /// The entity's groups (direct and inherited): id -> name.
    pub groups: BTreeMap<String, String>,
}

/// `pattern` with its identity templates filled from `v`. `Ok(None)` when a template names a
/// value the entity does not have (Vault then skips the rule); `Err` for a template Closeout
/// does not evaluate (alias or group metadata, or another parameter), naming it.
pub fn expand(pattern: &str, v: &TemplateValues) -> Result<Option<String>, String> {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unterminated template in {pattern:?}"))?;
        let name = after[..end].trim();
        let parts: Vec<&str> = name.split('.').collect();
        let value = match parts.as_slice() {
            ["identity", "entity", "id"] => Some(v.entity_id.clone()),
            ["identity", "entity", "name"] => Some(v.entity_name.clone()),
            ["identity", "entity", "metadata", key] => v.metadata.get(*key).cloned(),
            ["identity", "entity", "aliases", accessor, "id"] => {
                v.aliases.get(*accessor).map(|a| a.0.clone())
            }
            ["identity", "entity", "aliases", accessor, "name"] => {
                v.aliases.get(*accessor).map(|a| a.1.clone())
            }
            ["identity", "groups", "ids", id, "name"] => v.groups.get(*id).cloned(),
            ["identity", "groups", "names", group, "id"] => v
                .groups
                .iter()
                .find(|(_, n)| n == group)
                .map(|(id, _)| id.clone()),
            _ => {
                return Err(format!(
                    "template {{{{{name}}}}} is not evaluated by Closeout"
                ))
            }
        };
        match value.filter(|x| !x.is_empty()) {
            Some(x) => out.push_str(&x),
            None => return Ok(None),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// `rules` with templated patterns filled for each of `entities` (a rule per entity whose
/// template resolves; none when the person has no entity, as Vault skips them for entity-less
/// tokens). `Err` names the first template Closeout does not evaluate.
pub fn expand_rules(
    rules: Vec<PathRule>,
    entities: &[TemplateValues],
) -> Result<Vec<PathRule>, String> {
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        if !rule.pattern.contains("{{") {
            out.push(rule);
            continue;
        }
        for v in entities {
            if let Some(pattern) = expand(&rule.pattern, v)? {
                out.push(PathRule {
                    pattern,
                    capabilities: rule.capabilities.clone(),
                });
            }
        }
        if entities.is_empty() {
            // Still check the template is one Closeout evaluates.
            expand(&rule.pattern, &TemplateValues::default())?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
# Team policy
path "secret/data/team/*" {
  capabilities = ["read", "list"]
}
path "secret/data/team/private" { capabilities = ["deny"] }
// comment
path "secret/data/+/shared" {
  capabilities = ["read"]
  allowed_parameters = { "foo" = [] }
}
/* block
   comment */
path "/sys/leases/lookup" { policy = "write" }
"#;

    #[test]
    fn parses_rules_comments_and_legacy_form() {
        let rules = parse(POLICY).unwrap();
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[0].pattern, "secret/data/team/*");
        assert!(rules[0].capabilities.contains("list"));
        assert_eq!(rules[2].capabilities.len(), 1);
        assert_eq!(rules[3].pattern, "sys/leases/lookup");
        assert!(rules[3].capabilities.contains("update"));
    }

    #[test]
    fn bad_policies_name_their_line() {
        let err = parse("path \"a\" {\n capabilities = [read]\n}").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(parse("path \"a\" { capabilities = [\"read\"]").is_err());
        assert!(parse("path \"unterminated").is_err());
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn globs() {
        assert!(glob_match("secret/data/a", "secret/data/a"));
        assert!(!glob_match("secret/data/a", "secret/data/ab"));
        assert!(glob_match("secret/data/a*", "secret/data/ab/c"));
        assert!(glob_match("secret/*", "secret/"));
        assert!(glob_match("secret/data/+/x", "secret/data/team/x"));
        assert!(!glob_match("secret/data/+/x", "secret/data/team/y/x"));
        assert!(!glob_match("secret/data/+/x", "secret/data//x"));
        assert!(glob_match("secret/+/team/*", "secret/data/team/a/b"));
        assert!(glob_match("secret/data/+", "secret/data/a"));
        assert!(!glob_match("secret/data/+", "secret/data/a/b"));
    }

    #[test]
    fn most_specific_rule_wins_and_deny_wins_within_it() {
        let team = parse(POLICY).unwrap();
        let other =
            parse(r#"path "secret/data/team/private" { capabilities = ["read"] }"#).unwrap();
        let set = [("team", team.as_slice()), ("other", other.as_slice())];
        let (caps, pattern, names) = effective(set, "secret/data/team/app").unwrap();
        assert!(allows_read(&caps));
        assert_eq!(pattern, "secret/data/team/*");
        assert_eq!(names, vec!["team"]);
        // The exact rule beats the glob; deny merged from `team` beats `other`'s read.
        let (caps, pattern, names) = effective(set, "secret/data/team/private").unwrap();
        assert!(!allows_read(&caps));
        assert_eq!(pattern, "secret/data/team/private");
        assert_eq!(names, vec!["other", "team"]);
        // `+` rule reaches another team's shared secret.
        let (caps, _, _) = effective(set, "secret/data/ops/shared").unwrap();
        assert!(allows_read(&caps));
        assert!(effective(set, "secret/data/ops/db").is_none());
    }

    #[test]
    fn identity_templates_are_filled_skipped_or_refused() {
        let v = TemplateValues {
            entity_id: "e-1".into(),
            entity_name: "alice.smith".into(),
            metadata: [("team".to_string(), "pay".to_string())].into(),
            aliases: [(
                "auth_userpass_1".to_string(),
                ("al-1".to_string(), "alice".to_string()),
            )]
            .into(),
            groups: [("g-1".to_string(), "devs".to_string())].into(),
        };
        let e = |p: &str| expand(p, &v);
        assert_eq!(
            e("secret/data/{{identity.entity.name}}/*")
                .unwrap()
                .as_deref(),
            Some("secret/data/alice.smith/*")
        );
        assert_eq!(
            e("x/{{ identity.entity.id }}/{{identity.entity.metadata.team}}")
                .unwrap()
                .as_deref(),
            Some("x/e-1/pay")
        );
        assert_eq!(
            e("u/{{identity.entity.aliases.auth_userpass_1.name}}")
                .unwrap()
                .as_deref(),
            Some("u/alice")
        );
        assert_eq!(
            e("g/{{identity.groups.names.devs.id}}/{{identity.groups.ids.g-1.name}}")
                .unwrap()
                .as_deref(),
            Some("g/g-1/devs")
        );
        assert_eq!(e("x/{{identity.entity.metadata.missing}}").unwrap(), None);
        assert!(e("x/{{identity.entity.aliases.a.metadata.k}}").is_err());
        assert!(e("x/{{identity.entity.name").is_err());
        let rules = parse(
            r#"path "secret/data/{{identity.entity.name}}/*" { capabilities = ["read"] }
               path "secret/data/shared" { capabilities = ["read"] }"#,
        )
        .unwrap();
        let two = [
            v.clone(),
            TemplateValues {
                entity_name: "a2".into(),
                ..v.clone()
            },
        ];
        let patterns: Vec<String> = expand_rules(rules.clone(), &two)
            .unwrap()
            .into_iter()
            .map(|r| r.pattern)
            .collect();
        assert_eq!(
            patterns,
            [
                "secret/data/alice.smith/*",
                "secret/data/a2/*",
                "secret/data/shared"
            ]
        );
        assert_eq!(expand_rules(rules, &[]).unwrap().len(), 1);
    }

    #[test]
    fn priority_follows_vault_rules() {
        assert_eq!(
            priority("secret/data/a", "secret/data/*"),
            Ordering::Greater
        );
        assert_eq!(
            priority("secret/data/+/x", "secret/+/a/x"),
            Ordering::Greater
        );
        assert_eq!(
            priority("secret/data/ab*", "secret/data/a*"),
            Ordering::Greater
        );
        assert_eq!(
            priority("secret/data/+/x", "secret/data/+/*"),
            Ordering::Greater
        );
    }
}
