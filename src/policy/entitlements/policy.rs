//! The entitlement policy file: rules that map source attributes to the entitlements an identity
//! should hold in each provider (format in `docs/entitlements.md`).
//!
//! [`parse`] reads the YAML with positions and reports every problem as a [`Diagnostic`], like a
//! playbook. A [`EntitlementPolicy`] that exists is valid: rule names are unique, every grant
//! names a provider Closeout has and a kind that provider can grant.

use crate::grace::Grace;
use crate::policy::yaml_doc::{
    is_null, load_mapping, mapping, node_pos, string, string_list, Diagnostic, Diags, Fields, Pos,
};
use closeout_contract::{
    verbs, Capabilities, Entitlement, GrantForm, Identity, IdentityKind, IdentityStatus,
};
use marked_yaml::Node;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// A policy that could not be loaded: every diagnostic, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// Every problem found, in file order; never empty.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.diagnostics.iter().map(|d| d.to_string()).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// A source attribute a rule can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Attribute {
    /// `department` in the source.
    Department,
    /// `role` (the job title) in the source.
    Role,
    /// `location` in the source.
    Location,
    /// `employment_type` in the source (employee, contractor, ...).
    EmploymentType,
    /// `human` or `service`: the identity's kind.
    Kind,
}

impl Attribute {
    /// Every attribute, in the order the documentation lists them.
    pub const ALL: [Attribute; 5] = [
        Attribute::Department,
        Attribute::Role,
        Attribute::Location,
        Attribute::EmploymentType,
        Attribute::Kind,
    ];

    /// The name a policy writes under `when:` (the HR export's column name).
    pub fn as_str(self) -> &'static str {
        match self {
            Attribute::Department => "department",
            Attribute::Role => "role",
            Attribute::Location => "location",
            Attribute::EmploymentType => "employment_type",
            Attribute::Kind => "kind",
        }
    }

    /// The attribute named by `s` (as [`Attribute::as_str`] writes it), or `None`.
    pub fn parse(s: &str) -> Option<Attribute> {
        Attribute::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The identity's value of this attribute.
    pub fn value_of(self, identity: &Identity) -> Option<String> {
        match self {
            Attribute::Department => identity.department.clone(),
            Attribute::Role => identity.role.clone(),
            Attribute::Location => identity.location.clone(),
            Attribute::EmploymentType => identity.employment_type.clone(),
            Attribute::Kind => Some(
                match identity.kind {
                    IdentityKind::Human => "human",
                    IdentityKind::Service => "service",
                }
                .to_string(),
            ),
        }
    }
}

/// When a rule applies: every listed attribute has one of its listed values (compared without
/// regard to case) and the identity carries every listed tag. Empty: every active identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// Attribute → the values it may have; an identity without the attribute does not match.
    pub attributes: BTreeMap<Attribute, Vec<String>>,
    /// Tags the identity must all carry, compared exactly (the source lower-cases its tags).
    pub tags: BTreeSet<String>,
}

impl Conditions {
    /// Whether `identity` meets every condition.
    pub fn matches(&self, identity: &Identity) -> bool {
        self.attributes.iter().all(|(attr, values)| {
            attr.value_of(identity).is_some_and(|v| {
                values
                    .iter()
                    .any(|w| w.trim().eq_ignore_ascii_case(v.trim()))
            })
        }) && self.tags.iter().all(|t| identity.tags.contains(t))
    }

    /// `department in [Engineering], tags [oncall]`, for explanations.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .attributes
            .iter()
            .map(|(a, v)| format!("{} = {}", a.as_str(), v.join(" | ")))
            .collect();
        if !self.tags.is_empty() {
            let tags: Vec<&str> = self.tags.iter().map(String::as_str).collect();
            parts.push(format!("tags {}", tags.join(", ")));
        }
        if parts.is_empty() {
            "every active identity".into()
        } else {
            parts.join(", ")
        }
    }
}

/// One rule: identities matching `when` should hold `grants`, for `duration` when it is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule's name, unique in the policy; explanations and the grant ledger cite it.
    pub name: String,
    /// Free text for a reader.
    pub description: Option<String>,
    /// Which identities the rule applies to.
    pub when: Conditions,
    /// The entitlements those identities should hold.
    pub grants: Vec<Entitlement>,
    /// Time-bound (elevated) grants expire this long after they were granted.
    pub duration: Option<Grace>,
    /// The line where the rule starts in the file.
    pub line: usize,
}

/// Why an identity should hold one entitlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The rules that grant it, in file order.
    pub rules: Vec<String>,
    /// `None` when some rule grants it without a time bound; else the longest duration.
    pub duration: Option<Grace>,
}

/// A validated entitlement policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitlementPolicy {
    /// The file it was read from.
    pub file: String,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
}

impl EntitlementPolicy {
    /// The entitlements `identity` should hold, each with the rules that require it. A
    /// terminated or suspended identity should hold none.
    pub fn required(&self, identity: &Identity) -> BTreeMap<Entitlement, Requirement> {
        let mut out: BTreeMap<Entitlement, Requirement> = BTreeMap::new();
        if identity.status != IdentityStatus::Active {
            return out;
        }
        for rule in self.rules.iter().filter(|r| r.when.matches(identity)) {
            for grant in &rule.grants {
                match out.get_mut(grant) {
                    Some(req) => {
                        req.rules.push(rule.name.clone());
                        req.duration = match (req.duration, rule.duration) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            _ => None,
                        };
                    }
                    None => {
                        out.insert(
                            grant.clone(),
                            Requirement {
                                rules: vec![rule.name.clone()],
                                duration: rule.duration,
                            },
                        );
                    }
                }
            }
        }
        out
    }

    /// The rule called `name`.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Every provider a grant names.
    pub fn providers(&self) -> BTreeSet<&str> {
        self.rules
            .iter()
            .flat_map(|r| r.grants.iter().map(|g| g.provider.as_str()))
            .collect()
    }
}

const TOP_FIELDS: &[&str] = &["rules"];
const RULE_FIELDS: &[&str] = &["name", "description", "when", "grants", "duration"];
const WHEN_FIELDS: &[&str] = &[
    "department",
    "role",
    "location",
    "employment_type",
    "kind",
    "tags",
];

/// Read and validate a policy file.
pub fn load(path: &Path, caps: &[&'static Capabilities]) -> Result<EntitlementPolicy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
        diagnostics: vec![Diagnostic {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read entitlement policy: {e}"),
        }],
    })?;
    parse(&path.display().to_string(), &text, caps)
        .map_err(|diagnostics| PolicyError { diagnostics })
}

/// Parse and validate policy `text` (named `file` in diagnostics). Pure. Every diagnostic,
/// sorted by position.
pub fn parse(
    file: &str,
    text: &str,
    caps: &[&'static Capabilities],
) -> Result<EntitlementPolicy, Vec<Diagnostic>> {
    let mut d = Diags::new(file);
    let rules = load_mapping(&mut d, text, "an entitlement policy", "rules")
        .map(|map| read_policy(&mut d, &map, caps))
        .unwrap_or_default();
    let mut list = d.into_list();
    if list.is_empty() {
        return Ok(EntitlementPolicy {
            file: file.to_string(),
            rules,
        });
    }
    list.sort();
    list.dedup();
    Err(list)
}

fn read_policy(
    d: &mut Diags,
    map: &marked_yaml::types::MarkedMappingNode,
    caps: &[&'static Capabilities],
) -> Vec<Rule> {
    let f = Fields::read(d, map, "the entitlement policy", TOP_FIELDS);
    let Some((pos, node)) = f.get("rules") else {
        d.at(
            Pos { line: 1, column: 1 },
            "missing field `rules` (the list of rules)",
        );
        return Vec::new();
    };
    let Node::Sequence(seq) = node else {
        d.at(pos, "`rules` must be a list of rules");
        return Vec::new();
    };
    let mut rules: Vec<Rule> = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for item in seq.iter() {
        if let Some(rule) = read_rule(d, item, caps) {
            if let Some(first) = names.get(&rule.name) {
                d.at(
                    node_pos(item),
                    format!(
                        "duplicate rule name `{}` (first used at line {first})",
                        rule.name
                    ),
                );
                continue;
            }
            names.insert(rule.name.clone(), rule.line);
            rules.push(rule);
        }
    }
    rules
}

fn read_rule(d: &mut Diags, node: &Node, caps: &[&'static Capabilities]) -> Option<Rule> {
    let map = mapping(d, node, "a rule")?;
    let f = Fields::read(d, map, "a rule", RULE_FIELDS);
    let before = d.count();
    let name = match f.get("name") {
        Some((_, n)) => string(d, n, "name").map(|s| s.value),
        None => {
            d.at(f.pos, "missing field `name` (the rule's name)");
            None
        }
    };
    let description = f.get("description").and_then(|(_, n)| match n.as_scalar() {
        Some(s) if is_null(s) => None,
        _ => string(d, n, "description").map(|s| s.value),
    });
    let when = match f.get("when") {
        Some((_, n)) => read_when(d, n),
        None => Conditions::default(),
    };
    let grants = match f.get("grants") {
        Some((pos, Node::Sequence(seq))) if seq.is_empty() => {
            d.at(pos, "`grants` must list at least one entitlement");
            Vec::new()
        }
        Some((_, Node::Sequence(seq))) => {
            seq.iter().filter_map(|g| read_grant(d, g, caps)).collect()
        }
        Some((pos, _)) => {
            d.at(pos, "`grants` must be a list of entitlements");
            Vec::new()
        }
        None => {
            d.at(
                f.pos,
                "missing field `grants` (the entitlements the rule gives)",
            );
            Vec::new()
        }
    };
    let duration = f.get("duration").and_then(|(_, n)| {
        let s = string(d, n, "duration")?;
        match Grace::parse(&s.value) {
            Ok(g) if g.seconds() == 0 => {
                d.at(s.pos, "`duration` must be longer than zero");
                None
            }
            Ok(g) => Some(g),
            Err(e) => {
                d.at(s.pos, e.to_string());
                None
            }
        }
    });
    if d.count() > before {
        return None;
    }
    Some(Rule {
        name: name?,
        description,
        when,
        grants,
        duration,
        line: f.pos.line,
    })
}

fn read_when(d: &mut Diags, node: &Node) -> Conditions {
    let mut c = Conditions::default();
    if let Node::Scalar(s) = node {
        if is_null(s) {
            return c;
        }
    }
    let Some(map) = mapping(d, node, "`when`") else {
        return c;
    };
    let f = Fields::read(d, map, "`when`", WHEN_FIELDS);
    for field in WHEN_FIELDS {
        let Some((_, n)) = f.get(field) else { continue };
        let Some(values) = string_list(d, n, field) else {
            continue;
        };
        if *field == "tags" {
            c.tags.extend(values.into_iter().map(|v| v.value));
            continue;
        }
        let Some(attr) = Attribute::parse(field) else {
            continue;
        };
        if attr == Attribute::Kind {
            for v in &values {
                if !matches!(v.value.as_str(), "human" | "service") {
                    d.at(
                        v.pos,
                        format!("bad kind `{}`; expected human or service", v.value),
                    );
                }
            }
        }
        c.attributes
            .insert(attr, values.into_iter().map(|v| v.value).collect());
    }
    c
}

/// Every field a grant may have: `provider`, and each provider's grant keys and qualifiers.
fn grant_fields(caps: &[&'static Capabilities]) -> Vec<&'static str> {
    let mut fields = vec!["provider"];
    for form in caps.iter().flat_map(|c| c.grant_forms) {
        for f in std::iter::once(&form.key).chain(form.qualifiers) {
            if !fields.contains(f) {
                fields.push(f);
            }
        }
    }
    fields
}

fn read_grant(d: &mut Diags, node: &Node, caps: &[&'static Capabilities]) -> Option<Entitlement> {
    let map = mapping(d, node, "a grant")?;
    let fields = grant_fields(caps);
    let f = Fields::read(d, map, "a grant", &fields);
    let granting: Vec<&str> = caps
        .iter()
        .filter(|c| !c.grant_forms.is_empty())
        .map(|c| c.provider)
        .collect();
    let provider = match f.get("provider") {
        Some((_, n)) => string(d, n, "provider")?,
        None => {
            d.at(
                f.pos,
                format!(
                    "missing field `provider` ({}) in a grant",
                    granting.join(", ")
                ),
            );
            return None;
        }
    };
    let Some(cap) = caps
        .iter()
        .find(|c| c.provider == provider.value && !c.grant_forms.is_empty())
    else {
        d.at(
            provider.pos,
            format!(
                "unknown provider `{}` in a grant; expected one of: {}",
                provider.value,
                granting.join(", ")
            ),
        );
        return None;
    };
    let forms = cap.grant_forms;
    let written: Vec<&GrantForm> = forms.iter().filter(|g| f.get(g.key).is_some()).collect();
    let keys: Vec<&str> = forms.iter().map(|g| g.key).collect();
    let form = match written.as_slice() {
        [one] => *one,
        [] => {
            d.at(
                f.pos,
                format!(
                    "a {} grant names one of: {}",
                    provider.value,
                    keys.join(", ")
                ),
            );
            return None;
        }
        _ => {
            d.at(
                f.pos,
                format!(
                    "a grant names one entitlement; write one of {} per grant",
                    keys.join(", ")
                ),
            );
            return None;
        }
    };
    // Fields of other providers' forms, or qualifiers this form does not take.
    let mut stray = false;
    for field in fields.iter().filter(|f| **f != "provider") {
        let own = *field == form.key || form.qualifiers.contains(field);
        if own {
            continue;
        }
        if let Some((pos, _)) = f.get(field) {
            if keys.contains(field) {
                continue; // reported above: a grant names one entitlement
            }
            let owner = caps
                .iter()
                .flat_map(|c| c.grant_forms.iter().map(move |g| (c.provider, g)))
                .find(|(_, g)| g.qualifiers.contains(field))
                .map(|(p, g)| format!("{p} {} grant", g.key));
            match owner {
                Some(owner) => d.at(pos, format!("`{field}` belongs to an {owner} only")),
                None => d.at(
                    pos,
                    format!("`{field}` is not a {} grant field", provider.value),
                ),
            }
            stray = true;
        }
    }
    if stray {
        return None;
    }
    let (pos, n) = f.get(form.key)?;
    let target = string(d, n, form.key)?;
    if target.value.trim().is_empty() {
        d.at(pos, format!("`{}` must not be empty", form.key));
        return None;
    }
    let mut qualifiers = Vec::new();
    for q in form.qualifiers {
        let Some((_, qn)) = f.get(q) else {
            d.at(
                f.pos,
                format!("the {} {} grant needs a `{q}`", provider.value, form.key),
            );
            return None;
        };
        qualifiers.push(string(d, qn, q)?);
    }
    let values: Vec<&str> = qualifiers.iter().map(|q| q.value.as_str()).collect();
    let target = match (form.target)(&target.value, &values) {
        Ok(t) => t,
        Err(e) => {
            let at = qualifiers
                .iter()
                .zip(form.qualifiers)
                .find(|(_, name)| **name == e.field)
                .map(|(q, _)| q.pos)
                .unwrap_or(target.pos);
            d.at(at, e.message);
            return None;
        }
    };
    let kind = form.kind;
    if cap.verb(kind, verbs::GRANT.name).is_none() {
        d.at(
            pos,
            format!(
                "provider {} cannot grant {kind} in this build of Closeout",
                provider.value
            ),
        );
        return None;
    }
    Some(Entitlement::new(provider.value, kind, target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeout_contract::{KindSpec, Verb};

    const GRANTABLE: &[Verb] = &[verbs::REMOVE, verbs::GRANT];
    const AWS: Capabilities = Capabilities {
        provider: "aws",
        kinds: &[
            KindSpec {
                kind: "group-membership",
                description: "",
                verbs: GRANTABLE,
            },
            KindSpec {
                kind: "attached-policy",
                description: "",
                verbs: GRANTABLE,
            },
        ],
        grant_forms: closeout_aws::CAPABILITIES.grant_forms,
        ages: &[],
        permissions: &[],
    };
    const AZURE: Capabilities = Capabilities {
        provider: "azure",
        kinds: &[
            KindSpec {
                kind: "group-membership",
                description: "",
                verbs: GRANTABLE,
            },
            KindSpec {
                kind: "role-assignment",
                description: "",
                verbs: &[verbs::REMOVE],
            },
        ],
        grant_forms: closeout_azure::CAPABILITIES.grant_forms,
        ages: &[],
        permissions: &[],
    };
    const CAPS: &[&Capabilities] = &[&AWS, &AZURE];

    fn person(department: &str, role: &str) -> Identity {
        Identity {
            id: "E1".into(),
            email: "a@example.com".into(),
            name: "A".into(),
            kind: IdentityKind::Human,
            status: IdentityStatus::Active,
            manager: None,
            department: Some(department.into()),
            role: Some(role.into()),
            location: None,
            employment_type: None,
            tags: BTreeSet::new(),
        }
    }

    const GOOD: &str = r#"
rules:
  - name: everyone
    grants:
      - { provider: aws, group: staff }
  - name: engineering
    when: { department: [Engineering, Platform] }
    grants:
      - { provider: aws, group: developers }
      - { provider: aws, policy: "arn:aws:iam::aws:policy/ReadOnlyAccess" }
      - { provider: azure, group: Engineers }
  - name: oncall
    when: { department: engineering, role: SRE }
    duration: 8h
    grants:
      - { provider: aws, group: developers }
      - { provider: aws, group: breakglass }
"#;

    #[test]
    fn rules_match_attributes_without_regard_to_case_and_merge_requirements() {
        let p = parse("p.yaml", GOOD, CAPS).unwrap();
        let req = p.required(&person("ENGINEERING", "sre"));
        let dev = req
            .get(&Entitlement::new("aws", "group-membership", "developers"))
            .unwrap();
        assert_eq!(dev.rules, vec!["engineering", "oncall"]);
        assert_eq!(
            dev.duration, None,
            "a permanent rule outweighs a time bound"
        );
        let bg = req
            .get(&Entitlement::new("aws", "group-membership", "breakglass"))
            .unwrap();
        assert_eq!(bg.duration, Some(Grace::parse("8h").unwrap()));
        assert_eq!(req.len(), 5);
        let finance = p.required(&person("Finance", "Analyst"));
        assert_eq!(finance.len(), 1, "only the baseline: {finance:?}");
        let mut gone = person("Engineering", "SRE");
        gone.status = IdentityStatus::Terminated;
        assert!(p.required(&gone).is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let bad = r#"
rules:
  - name: a
    when: { departmnet: x, kind: robot }
    grants:
      - { provider: gcp, group: x }
      - { provider: aws, group: x, policy: y }
      - { provider: aws, policy: ReadOnly }
      - { provider: azure, role: Reader }
      - { provider: azure, role: Reader, scope: subscriptions/1 }
  - name: a
    grants: []
  - name: b
    duration: 0s
    grants:
      - { provider: aws, group: x, scope: /x }
"#;
        let errs = parse("p.yaml", bad, CAPS).unwrap_err();
        let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        let all = text.join("\n");
        for needle in [
            "p.yaml:4:13: unknown field `departmnet`",
            "bad kind `robot`",
            "unknown provider `gcp`",
            "a grant names one entitlement",
            "name it by its ARN",
            "needs a `scope`",
            "bad scope `subscriptions/1`",
            "at least one entitlement",
            "longer than zero",
            "`scope` belongs to an azure role grant only",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn a_kind_the_provider_cannot_grant_is_refused() {
        let text = "rules:\n  - name: r\n    grants:\n      - { provider: azure, role: Reader, scope: /subscriptions/S/ }\n";
        let errs = parse("p.yaml", text, CAPS).unwrap_err();
        assert!(
            errs[0].message.contains("cannot grant role-assignment"),
            "{errs:?}"
        );
        let role = closeout_azure::CAPABILITIES.grant_form("role").unwrap();
        assert_eq!(
            (role.target)("Reader", &["/Subscriptions/S/"]).unwrap(),
            "Reader@/subscriptions/s"
        );
    }

    #[test]
    fn yaml_errors_and_missing_rules_are_diagnostics() {
        assert!(parse("p.yaml", "rules: [", CAPS).is_err());
        let e = parse("p.yaml", "other: 1\n", CAPS).unwrap_err();
        assert!(e
            .iter()
            .any(|d| d.message.contains("missing field `rules`")));
    }
}

/// Properties over generated policy text (docs/fuzzing.md; the fuzz target `policy_yaml` drives
/// [`parse`] with coverage-guided input).
#[cfg(test)]
mod properties {
    use super::*;
    use crate::test_edit::{edited, snippet};
    use proptest::prelude::*;

    const DEMO: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/entitlements.yaml"
    ));

    fn caps() -> &'static [&'static Capabilities] {
        crate::registry::CAPABILITIES
    }

    fn check_refusal(text: &str, diags: &[Diagnostic]) -> Result<(), TestCaseError> {
        prop_assert!(!diags.is_empty());
        let lines = text.lines().count() + 1;
        for d in diags {
            prop_assert_eq!(d.file.as_str(), "p.yaml");
            prop_assert!(!d.message.is_empty());
            prop_assert!(d.line <= lines, "line {} of {}: {}", d.line, lines, d);
        }
        Ok(())
    }

    /// Rules built from parts: unique names, a department condition, AWS groups, a duration.
    fn generated() -> impl Strategy<Value = (String, Vec<(String, usize, Option<Grace>)>)> {
        prop::collection::btree_map(
            "[a-z][a-z0-9-]{0,12}",
            (
                "[A-Za-z][A-Za-z0-9]{0,10}",
                prop::collection::btree_set("[a-z][a-z0-9-]{0,10}", 1..4),
                prop::option::of((1u64..=3650 * 86_400).prop_map(Grace::from_seconds)),
            ),
            1..5,
        )
        .prop_map(|rules| {
            let mut text = String::from("rules:\n");
            let mut parts = Vec::new();
            for (name, (department, groups, duration)) in rules {
                text.push_str(&format!(
                    "  - name: {name}\n    when: {{ department: {department} }}\n"
                ));
                if let Some(d) = duration {
                    text.push_str(&format!("    duration: {d}\n"));
                }
                text.push_str("    grants:\n");
                for g in &groups {
                    text.push_str(&format!("      - {{ provider: aws, group: {g} }}\n"));
                }
                parts.push((name, groups.len(), duration));
            }
            (text, parts)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any text: a policy or diagnostics, never a panic.
        #[test]
        fn any_text_is_parsed_or_refused(text in "[\\PC\n\t]{0,200}") {
            if let Err(diags) = parse("p.yaml", &text, caps()) {
                check_refusal(&text, &diags)?;
            }
        }

        /// An edit of the demo policy: a policy or diagnostics.
        #[test]
        fn edited_policies_are_parsed_or_refused(
            at in any::<prop::sample::Index>(),
            len in 0usize..40,
            kind in any::<u8>(),
            snippet in snippet(),
        ) {
            let text = edited(DEMO, at, len, kind, &snippet);
            if let Err(diags) = parse("p.yaml", &text, caps()) {
                check_refusal(&text, &diags)?;
            }
        }

        /// A generated valid policy parses to the rules it was written with, in order.
        #[test]
        fn a_generated_policy_parses_to_its_rules((text, parts) in generated()) {
            let policy = parse("p.yaml", &text, caps());
            prop_assert!(policy.is_ok(), "{:?}\n{}", policy.err(), text);
            let got: Vec<(String, usize, Option<Grace>)> = policy
                .unwrap()
                .rules
                .into_iter()
                .map(|r| (r.name, r.grants.len(), r.duration))
                .collect();
            prop_assert_eq!(got, parts);
        }
    }
}
