//! Pure evaluation of IAM policy documents: identity policies, role trust policies and resource
//! policies.
//!
//! This is deliberately a reachability analysis, not a full IAM evaluator. It answers "could this
//! principal do this action on this resource through this document", and errs towards *yes*:
//! - `Condition` blocks are not evaluated by the decisions here. An `Allow` with a condition
//!   counts as allowing (the result is flagged `conditional` so it can be noted); a `Deny` with a
//!   condition does not count as denying. Either way Closeout over-reports access rather than
//!   hiding it. The conditions are parsed ([`ConditionTest`]) and evaluated where the request's
//!   values are known: a federated trust policy's conditions against the person's claims
//!   ([`PolicyDocument::federated_allows`]), a session deny against a session's `aws:userid`
//!   ([`PolicyDocument::denies_session`]); a key with no known value is unknown, never false.
//! - Permission boundaries, SCPs and session policies are not considered.
//!
//! Supported: `Statement` as an object or a list; `Action`/`NotAction`, `Resource`/`NotResource`,
//! `Principal`/`NotPrincipal` as a string or a list (`AWS`, `Service` and `Federated` principals); `*` and
//! `?` wildcards (actions match case-insensitively, resources case-sensitively, as IAM does); the
//! policy variables `${aws:username}` and `${aws:userid}` (any other variable matches anything in
//! an `Allow`, and makes a `Deny` count as conditional, so it never hides access); documents that
//! arrive URL-encoded, as IAM returns them.

use serde_json::Value;
use std::borrow::Cow;

/// A statement's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// `Action`/`Resource` (the listed patterns) or `NotAction`/`NotResource` (everything else).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Patterns {
    Is(Vec<String>),
    Not(Vec<String>),
    Missing,
}

/// The `Principal` (or `NotPrincipal`) element of a resource or trust policy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PrincipalSpec {
    Missing,
    Is(Principals),
    Not(Principals),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Principals {
    /// `"Principal": "*"` or `{"AWS": "*"}`.
    everyone: bool,
    /// Values under `AWS`: ARNs, account ids, unique ids.
    aws: Vec<String>,
    /// Values under `Service`: service principals such as `ec2.amazonaws.com`.
    services: Vec<String>,
    /// Values under `Federated`: SAML or OIDC provider ARNs (or `cognito-identity.amazonaws.com`).
    federated: Vec<String>,
}

/// One statement of a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    action: Patterns,
    resource: Patterns,
    principal: PrincipalSpec,
    /// The statement has a `Condition` block (evaluated only where a caller asks, see
    /// [`ConditionTest::evaluate`]).
    pub conditional: bool,
    /// The tests of the `Condition` block, one per operator and key (all must hold). A block
    /// that could not be read gives one test with operator `?`, which evaluates as unknown.
    pub conditions: Vec<ConditionTest>,
}

/// One test of a `Condition` block: `"StringLike": {"aws:userid": ["AROA…:dana@example.com"]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionTest {
    /// As written, e.g. `StringEquals`, `ForAnyValue:StringLike`, `StringEqualsIfExists`.
    pub operator: String,
    /// The condition key as written, e.g. `saml:sub` (compared case-insensitively).
    pub key: String,
    /// The policy's values (booleans and numbers as their text).
    pub values: Vec<String>,
}

/// What a condition test (or a statement's conditions) comes to for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    /// Cannot be told: why (a key with no known value, an operator not evaluated).
    Unknown(String),
}

impl Truth {
    /// All of `tests` hold: false wins over unknown, unknown over true.
    pub fn all(tests: impl IntoIterator<Item = Truth>) -> Truth {
        let mut unknown: Vec<String> = Vec::new();
        for t in tests {
            match t {
                Truth::False => return Truth::False,
                Truth::Unknown(why) => unknown.push(why),
                Truth::True => {}
            }
        }
        if unknown.is_empty() {
            Truth::True
        } else {
            Truth::Unknown(unknown.join("; "))
        }
    }
}

impl ConditionTest {
    /// Evaluate against the request context `value_of`: `None` for a key whose value is not
    /// known at all (unknown), `Some(values)` for a known key (empty: the request has no value
    /// for it). String and date operators, their `Not` forms, `ForAnyValue:`/`ForAllValues:`,
    /// `…IfExists` and `Null` are evaluated; any other operator is unknown.
    pub fn evaluate(&self, value_of: &dyn Fn(&str) -> Option<Vec<String>>) -> Truth {
        let (set, rest) = match self.operator.split_once(':') {
            Some((set, rest)) => (Some(set.to_ascii_lowercase()), rest),
            None => (None, self.operator.as_str()),
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(b) => (b, true),
            None => (rest, false),
        };
        let Some(context) = value_of(&self.key) else {
            return Truth::Unknown(format!(
                "{} {} cannot be evaluated: the value of {} is not known",
                self.operator, self.key, self.key
            ));
        };
        if base == "Null" {
            let want_null = self.values.iter().any(|v| v.eq_ignore_ascii_case("true"));
            return bool_truth(context.is_empty() == want_null);
        }
        type Cmp = fn(&str, &str) -> bool;
        let (cmp, negated): (Cmp, bool) = match base {
            "StringEquals" => (|p, v| p == v, false),
            "StringNotEquals" => (|p, v| p == v, true),
            "StringEqualsIgnoreCase" => (|p, v| p.eq_ignore_ascii_case(v), false),
            "StringNotEqualsIgnoreCase" => (|p, v| p.eq_ignore_ascii_case(v), true),
            "StringLike" => (|p, v| glob_match(p, v, false), false),
            "StringNotLike" => (|p, v| glob_match(p, v, false), true),
            "DateLessThan" => (|p, v| date_cmp(v, p).is_some_and(|o| o.is_lt()), false),
            "DateLessThanEquals" => (|p, v| date_cmp(v, p).is_some_and(|o| o.is_le()), false),
            "DateGreaterThan" => (|p, v| date_cmp(v, p).is_some_and(|o| o.is_gt()), false),
            "DateGreaterThanEquals" => (|p, v| date_cmp(v, p).is_some_and(|o| o.is_ge()), false),
            _ => {
                return Truth::Unknown(format!(
                    "condition operator {} (on {}) is not evaluated",
                    self.operator, self.key
                ))
            }
        };
        if context.is_empty() {
            // No value: `…IfExists` holds; a negated operator holds; anything else does not.
            return bool_truth(if_exists || negated || set.as_deref() == Some("forallvalues"));
        }
        let matches = |v: &String| self.values.iter().any(|p| cmp(p, v));
        let hit = match set.as_deref() {
            Some("forallvalues") => context.iter().all(matches),
            _ => context.iter().any(matches),
        };
        bool_truth(hit != negated)
    }
}

fn bool_truth(b: bool) -> Truth {
    if b {
        Truth::True
    } else {
        Truth::False
    }
}

/// `value` compared with the policy's `pattern`, both policy dates.
fn date_cmp(value: &str, pattern: &str) -> Option<std::cmp::Ordering> {
    Some(parse_policy_time(value)?.cmp(&parse_policy_time(pattern)?))
}

/// An `Allow` of a trust policy to federated principals: who signs the callers in, and the
/// conditions that decide which of them may assume the role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedAllow<'a> {
    /// SAML or OIDC provider ARNs (or provider names such as `cognito-identity.amazonaws.com`).
    pub providers: &'a [String],
    /// The statement's conditions (all must hold).
    pub conditions: &'a [ConditionTest],
}

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    pub statements: Vec<Statement>,
    /// Statements that could not be understood (no valid `Effect`, no `Action`), skipped.
    pub skipped: usize,
}

/// Why a document could not be parsed. Never contains the document itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy document is not valid URL encoding")]
    Encoding,
    #[error("policy document is not valid JSON ({0})")]
    Json(String),
    #[error("policy document has no Statement")]
    NoStatement,
}

/// Values of the policy variables for the principal a document is evaluated for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars<'a> {
    /// `${aws:username}`: the IAM user's name (unset for roles).
    pub username: Option<&'a str>,
    /// `${aws:userid}`: the principal's unique id.
    pub userid: Option<&'a str>,
}

/// The principal a resource-based or trust policy is evaluated for.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// `arn:aws:iam::123456789012:user/alice` or `arn:aws:iam::123456789012:role/app`.
    pub arn: &'a str,
    /// The unique id (`AIDA...`, `AROA...`), which policies may name instead of the ARN.
    pub unique_id: Option<&'a str>,
    /// The 12-digit account id.
    pub account: &'a str,
}

/// How a resource or trust policy's `Principal` matched the caller. Ordered weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grantee {
    /// The caller's account (`arn:aws:iam::ACCT:root` or `ACCT`): access is delegated to the
    /// account's identity policies, which must allow it too.
    Account,
    /// Any principal (`*`).
    Everyone,
    /// The caller itself, by ARN or unique id.
    Named,
}

/// What one document says about one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    /// An `Allow` statement matches.
    pub allowed: bool,
    /// Every matching `Allow` statement has a `Condition` (not evaluated).
    pub conditional: bool,
    /// An unconditional `Deny` statement matches: this wins over every allow.
    pub denied: bool,
    /// A `Deny` statement with a `Condition` matches; not counted as denying.
    pub conditional_deny: bool,
    /// For resource and trust policies: the strongest principal match among matching allows.
    pub grantee: Option<Grantee>,
}

impl Decision {
    /// Allowed and not explicitly denied.
    pub fn grants(&self) -> bool {
        self.allowed && !self.denied
    }
}

/// How one action stands under identity policies for *any* resource: what a permission check
/// (`closeout doctor`) needs, where no single resource is in question.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionReach {
    /// An unconditional `Allow` matches the action on every resource (`*`).
    pub everywhere: bool,
    /// Some `Allow` matches the action (perhaps only on some resources or under a condition).
    pub somewhere: bool,
    /// An unconditional `Deny` matches the action on every resource.
    pub denied_everywhere: bool,
}

impl ActionReach {
    /// Combine what several documents of one principal say.
    pub fn merge(self, other: ActionReach) -> ActionReach {
        ActionReach {
            everywhere: self.everywhere || other.everywhere,
            somewhere: self.somewhere || other.somewhere,
            denied_everywhere: self.denied_everywhere || other.denied_everywhere,
        }
    }
}

impl PolicyDocument {
    /// Parse a document as IAM (URL-encoded) or Secrets Manager (plain JSON) returns it.
    pub fn parse(text: &str) -> Result<PolicyDocument, PolicyError> {
        let json = decode_document(text)?;
        let value: Value =
            serde_json::from_str(&json).map_err(|e| PolicyError::Json(e.to_string()))?;
        let statements = match value.get("Statement") {
            Some(Value::Array(list)) => list.iter().collect::<Vec<_>>(),
            Some(obj @ Value::Object(_)) => vec![obj],
            _ => return Err(PolicyError::NoStatement),
        };
        let mut doc = PolicyDocument {
            statements: Vec::new(),
            skipped: 0,
        };
        for s in statements {
            match parse_statement(s) {
                Some(st) => doc.statements.push(st),
                None => doc.skipped += 1,
            }
        }
        Ok(doc)
    }

    /// How `action` stands under this identity policy on any resource (see [`ActionReach`]).
    pub fn action_reach(&self, action: &str) -> ActionReach {
        let mut reach = ActionReach::default();
        for s in &self.statements {
            if !action_matches(&s.action, action) {
                continue;
            }
            let on_every_resource =
                matches!(&s.resource, Patterns::Is(list) if list.iter().any(|r| r == "*"));
            match s.effect {
                Effect::Allow => {
                    reach.somewhere = true;
                    reach.everywhere |= on_every_resource && !s.conditional;
                }
                Effect::Deny => reach.denied_everywhere |= on_every_resource && !s.conditional,
            }
        }
        reach
    }

    /// Evaluate as an identity policy (attached to the principal): does it allow `action` on
    /// `resource`? `Principal` elements are ignored.
    pub fn identity_decision(&self, action: &str, resource: &str, vars: Vars<'_>) -> Decision {
        let mut d = Decision::default();
        let mut unconditional_allow = false;
        for s in &self.statements {
            if !action_matches(&s.action, action) || !resource_matches(&s.resource, resource, vars)
            {
                continue;
            }
            if s.effect == Effect::Deny && has_unknown_variables(&s.resource, vars) {
                // An unknown variable matched as `*`: the deny may be narrower than it looks,
                // so it counts like a conditional one (never hides access).
                d.conditional_deny = true;
                continue;
            }
            record(&mut d, &mut unconditional_allow, s, None);
        }
        d.conditional = d.allowed && !unconditional_allow;
        d
    }

    /// Evaluate as a resource policy (a secret's policy): does it allow `caller` to do `action`
    /// on `resource`? Statements whose principal does not match the caller are ignored; an
    /// `Allow` that only names the caller's account sets `grantee: Account` (delegation).
    pub fn resource_decision(&self, caller: &Caller<'_>, action: &str, resource: &str) -> Decision {
        let vars = Vars::default();
        let mut d = Decision::default();
        let mut unconditional_allow = false;
        for s in &self.statements {
            if !action_matches(&s.action, action) {
                continue;
            }
            // A resource policy's statements may omit Resource: it is the resource itself.
            if s.resource != Patterns::Missing && !resource_matches(&s.resource, resource, vars) {
                continue;
            }
            let Some(grantee) = principal_match(&s.principal, caller) else {
                continue;
            };
            record(&mut d, &mut unconditional_allow, s, Some(grantee));
        }
        d.conditional = d.allowed && !unconditional_allow;
        d
    }

    /// Evaluate as a role's trust policy for an AWS service (`ec2.amazonaws.com`): may the
    /// service do `action` (`sts:AssumeRole`), so that compute launched with the role gets its
    /// credentials? `grantee` is `Named` when the service is listed, `Everyone` for `*`.
    pub fn service_trust_decision(&self, service: &str, action: &str) -> Decision {
        let mut d = Decision::default();
        let mut unconditional_allow = false;
        for s in &self.statements {
            if !action_matches(&s.action, action) {
                continue;
            }
            let Some(grantee) = service_match(&s.principal, service) else {
                continue;
            };
            record(&mut d, &mut unconditional_allow, s, Some(grantee));
        }
        d.conditional = d.allowed && !unconditional_allow;
        d
    }

    /// Evaluate as a role's trust policy: may `caller` do `action` (`sts:AssumeRole`)?
    pub fn trust_decision(&self, caller: &Caller<'_>, action: &str) -> Decision {
        let mut d = Decision::default();
        let mut unconditional_allow = false;
        for s in &self.statements {
            if !action_matches(&s.action, action) {
                continue;
            }
            let Some(grantee) = principal_match(&s.principal, caller) else {
                continue;
            };
            record(&mut d, &mut unconditional_allow, s, Some(grantee));
        }
        d.conditional = d.allowed && !unconditional_allow;
        d
    }

    /// The `Allow` statements of a trust policy that let federated principals (a SAML or OIDC
    /// provider's users) assume the role: `sts:AssumeRoleWithSAML`,
    /// `sts:AssumeRoleWithWebIdentity` (or a pattern matching them).
    pub fn federated_allows(&self) -> Vec<FederatedAllow<'_>> {
        self.statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .filter(|s| {
                action_matches(&s.action, "sts:AssumeRoleWithSAML")
                    || action_matches(&s.action, "sts:AssumeRoleWithWebIdentity")
            })
            .filter_map(|s| match &s.principal {
                PrincipalSpec::Is(p) if !p.federated.is_empty() => Some(FederatedAllow {
                    providers: &p.federated,
                    conditions: &s.conditions,
                }),
                _ => None,
            })
            .collect()
    }

    /// Whether this identity policy denies a request by the role session `userid`
    /// (`AROA…:session`) issued at `issued`: a `Deny` of every action (`"Action": "*"`) whose
    /// conditions (if any) hold for `aws:userid` and `aws:TokenIssueTime` (any other key: unknown,
    /// so not counted). For checking a session-revocation deny against the sessions it must (and must
    /// not) cut.
    pub fn denies_session(&self, userid: &str, issued: chrono::DateTime<chrono::Utc>) -> bool {
        let issued = issued.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let value_of = |key: &str| -> Option<Vec<String>> {
            if key.eq_ignore_ascii_case("aws:userid") {
                Some(vec![userid.to_string()])
            } else if key.eq_ignore_ascii_case("aws:TokenIssueTime") {
                Some(vec![issued.clone()])
            } else {
                None
            }
        };
        self.statements.iter().any(|s| {
            s.effect == Effect::Deny
                // A deny of every action (`"Action": "*"`), as a session deny is.
                && action_matches(&s.action, "*")
                && Truth::all(s.conditions.iter().map(|c| c.evaluate(&value_of))) == Truth::True
        })
    }

    /// The `DateLessThan` `aws:TokenIssueTime` value of the first `Deny` statement that has one:
    /// the cut-off of a session-revocation policy.
    pub fn token_issue_cutoff(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        let json = decode_document(text).ok()?;
        let value: Value = serde_json::from_str(&json).ok()?;
        let statements: Vec<&Value> = match value.get("Statement")? {
            Value::Array(list) => list.iter().collect(),
            obj @ Value::Object(_) => vec![obj],
            _ => return None,
        };
        statements
            .into_iter()
            .filter(|s| s.get("Effect").and_then(Value::as_str) == Some("Deny"))
            .filter_map(|s| {
                let cond = s.get("Condition")?.as_object()?;
                let (_, block) = cond
                    .iter()
                    .find(|(op, _)| op.eq_ignore_ascii_case("DateLessThan"))?;
                let (_, v) = block
                    .as_object()?
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("aws:TokenIssueTime"))?;
                let text = match v {
                    Value::String(s) => s.as_str(),
                    Value::Array(list) => list.first()?.as_str()?,
                    _ => return None,
                };
                parse_policy_time(text)
            })
            .min()
    }
}

/// Parse a policy date: RFC 3339, or a bare date-time without offset (taken as UTC).
pub fn parse_policy_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

fn record(d: &mut Decision, unconditional_allow: &mut bool, s: &Statement, g: Option<Grantee>) {
    match s.effect {
        Effect::Allow => {
            d.allowed = true;
            if !s.conditional {
                *unconditional_allow = true;
            }
            if let Some(g) = g {
                d.grantee = Some(d.grantee.map_or(g, |old| old.max(g)));
            }
        }
        Effect::Deny => {
            if s.conditional {
                d.conditional_deny = true;
            } else {
                d.denied = true;
            }
        }
    }
}

/// A policy document as JSON text: plain JSON passes through, anything else is URL-decoded.
pub fn decode_document(text: &str) -> Result<Cow<'_, str>, PolicyError> {
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        Ok(Cow::Borrowed(trimmed))
    } else {
        urlencoding::decode(trimmed).map_err(|_| PolicyError::Encoding)
    }
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(list) => list
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

fn patterns(s: &serde_json::Map<String, Value>, is: &str, not: &str) -> Option<Patterns> {
    match (s.get(is), s.get(not)) {
        (Some(v), None) => strings(v).map(Patterns::Is),
        (None, Some(v)) => strings(v).map(Patterns::Not),
        (None, None) => Some(Patterns::Missing),
        (Some(_), Some(_)) => None,
    }
}

fn principals(v: &Value) -> Option<Principals> {
    match v {
        Value::String(s) if s == "*" => Some(Principals {
            everyone: true,
            ..Default::default()
        }),
        Value::Object(map) => {
            let mut p = Principals::default();
            for (k, v) in map {
                let values = strings(v)?;
                if k == "AWS" {
                    for value in values {
                        if value == "*" {
                            p.everyone = true;
                        } else {
                            p.aws.push(value);
                        }
                    }
                } else if k == "Service" {
                    p.services.extend(values);
                } else if k == "Federated" {
                    p.federated.extend(values);
                }
                // CanonicalUser principals never name an IAM user, role or service.
            }
            Some(p)
        }
        _ => None,
    }
}

fn parse_statement(v: &Value) -> Option<Statement> {
    let s = v.as_object()?;
    let effect = match s.get("Effect")?.as_str()? {
        "Allow" => Effect::Allow,
        "Deny" => Effect::Deny,
        _ => return None,
    };
    let action = patterns(s, "Action", "NotAction")?;
    if action == Patterns::Missing {
        return None;
    }
    let resource = patterns(s, "Resource", "NotResource")?;
    let principal = match (s.get("Principal"), s.get("NotPrincipal")) {
        (Some(p), None) => PrincipalSpec::Is(principals(p)?),
        (None, Some(p)) => PrincipalSpec::Not(principals(p)?),
        (None, None) => PrincipalSpec::Missing,
        (Some(_), Some(_)) => return None,
    };
    let conditional = s
        .get("Condition")
        .is_some_and(|c| c.as_object().is_none_or(|m| !m.is_empty()));
    let conditions = s.get("Condition").map(conditions).unwrap_or_default();
    Some(Statement {
        sid: s.get("Sid").and_then(Value::as_str).map(str::to_string),
        effect,
        action,
        resource,
        principal,
        conditional,
        conditions,
    })
}

/// The tests of a `Condition` block; a block that is not `{operator: {key: value(s)}}` gives
/// one test with operator `?` (unknown, never taken as holding or failing).
fn conditions(v: &Value) -> Vec<ConditionTest> {
    let unreadable = || {
        vec![ConditionTest {
            operator: "?".into(),
            key: "?".into(),
            values: Vec::new(),
        }]
    };
    let Some(ops) = v.as_object() else {
        return unreadable();
    };
    let mut out = Vec::new();
    for (op, block) in ops {
        let Some(block) = block.as_object() else {
            return unreadable();
        };
        for (key, value) in block {
            let values = match value {
                Value::Array(list) => list.iter().map(scalar).collect::<Option<Vec<_>>>(),
                other => scalar(other).map(|v| vec![v]),
            };
            let Some(values) = values else {
                return unreadable();
            };
            out.push(ConditionTest {
                operator: op.clone(),
                key: key.clone(),
                values,
            });
        }
    }
    out
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn action_matches(p: &Patterns, action: &str) -> bool {
    match p {
        Patterns::Is(list) => list.iter().any(|pat| glob_match(pat, action, true)),
        Patterns::Not(list) => !list.iter().any(|pat| glob_match(pat, action, true)),
        Patterns::Missing => false,
    }
}

fn resource_matches(p: &Patterns, resource: &str, vars: Vars<'_>) -> bool {
    let hit = |pat: &String| glob_match(&substitute(pat, vars), resource, false);
    match p {
        Patterns::Is(list) => list.iter().any(hit),
        Patterns::Not(list) => !list.iter().any(hit),
        Patterns::Missing => false,
    }
}

/// Whether a pattern uses a policy variable [`substitute`] has no value for.
fn has_unknown_variables(p: &Patterns, vars: Vars<'_>) -> bool {
    let list = match p {
        Patterns::Is(list) | Patterns::Not(list) => list,
        Patterns::Missing => return false,
    };
    list.iter().any(|pat| {
        let mut rest = pat.as_str();
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return false;
            };
            let name = &after[..end];
            let known = (name.eq_ignore_ascii_case("aws:username") && vars.username.is_some())
                || (name.eq_ignore_ascii_case("aws:userid") && vars.userid.is_some());
            if !known {
                return true;
            }
            rest = &after[end + 1..];
        }
        false
    })
}

/// Replace policy variables; unknown variables become `*` (match anything).
fn substitute(pattern: &str, vars: Vars<'_>) -> String {
    if !pattern.contains("${") {
        return pattern.to_string();
    }
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        let value = if name.eq_ignore_ascii_case("aws:username") {
            vars.username
        } else if name.eq_ignore_ascii_case("aws:userid") {
            vars.userid
        } else {
            None
        };
        out.push_str(value.unwrap_or("*"));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn principal_match(spec: &PrincipalSpec, caller: &Caller<'_>) -> Option<Grantee> {
    match spec {
        PrincipalSpec::Missing => None,
        PrincipalSpec::Is(p) => strongest_match(p, caller),
        // NotPrincipal: everyone except the listed principals.
        PrincipalSpec::Not(p) => match strongest_match(p, caller) {
            Some(_) => None,
            None => Some(Grantee::Everyone),
        },
    }
}

fn service_match(spec: &PrincipalSpec, service: &str) -> Option<Grantee> {
    let listed = |p: &Principals| p.services.iter().any(|s| s.eq_ignore_ascii_case(service));
    match spec {
        PrincipalSpec::Missing => None,
        PrincipalSpec::Is(p) if listed(p) => Some(Grantee::Named),
        PrincipalSpec::Is(p) => p.everyone.then_some(Grantee::Everyone),
        PrincipalSpec::Not(p) => (!listed(p)).then_some(Grantee::Everyone),
    }
}

fn strongest_match(p: &Principals, caller: &Caller<'_>) -> Option<Grantee> {
    let mut best = p.everyone.then_some(Grantee::Everyone);
    for value in &p.aws {
        let m = if value == caller.arn || Some(value.as_str()) == caller.unique_id {
            Some(Grantee::Named)
        } else if value == caller.account || is_account_root(value, caller.account) {
            Some(Grantee::Account)
        } else {
            None
        };
        if let Some(m) = m {
            best = Some(best.map_or(m, |b| b.max(m)));
        }
    }
    best
}

/// `arn:<partition>:iam::<account>:root`.
fn is_account_root(value: &str, account: &str) -> bool {
    let parts: Vec<&str> = value.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4] == account
        && parts[5] == "root"
}

/// Match `text` against `pattern`, where `*` matches any run of characters (including `:` and
/// `/`) and `?` exactly one.
pub fn glob_match(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let same = |a: char, b: char| {
        if case_insensitive {
            a.to_lowercase().eq(b.to_lowercase())
        } else {
            a == b
        }
    };
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<usize> = None;
    let mut mark = 0usize;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || same(p[pi], t[ti])) {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ACCT: &str = "123456789012";
    const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
    const SECRET: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-pass-AbCdEf";
    const GET: &str = "secretsmanager:GetSecretValue";
    const ASSUME: &str = "sts:AssumeRole";

    fn doc(v: serde_json::Value) -> PolicyDocument {
        PolicyDocument::parse(&v.to_string()).unwrap()
    }

    fn alice() -> Caller<'static> {
        Caller {
            arn: ALICE,
            unique_id: Some("AIDAALICE"),
            account: ACCT,
        }
    }

    fn allows(d: &PolicyDocument, action: &str, resource: &str) -> bool {
        d.identity_decision(action, resource, Vars::default())
            .grants()
    }

    #[test]
    fn action_reach_tells_everywhere_from_somewhere_and_sees_denies() {
        let d = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": "iam:List*", "Resource": "*"},
            {"Effect": "Allow", "Action": "iam:UpdateAccessKey", "Resource": "arn:aws:iam::*:user/svc-*"},
            {"Effect": "Allow", "Action": "iam:TagUser", "Resource": "*", "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}},
            {"Effect": "Deny", "Action": "iam:ListMFADevices", "Resource": "*"}
        ]}));
        let all = d.action_reach("iam:ListAccessKeys");
        assert!(all.everywhere && all.somewhere && !all.denied_everywhere);
        let scoped = d.action_reach("iam:UpdateAccessKey");
        assert!(!scoped.everywhere && scoped.somewhere);
        let conditional = d.action_reach("iam:TagUser");
        assert!(!conditional.everywhere && conditional.somewhere);
        assert!(d.action_reach("iam:ListMFADevices").denied_everywhere);
        assert_eq!(d.action_reach("iam:DeleteUser"), ActionReach::default());
    }

    #[test]
    fn glob_wildcards() {
        assert!(glob_match("*", "", false));
        assert!(glob_match("*", "anything:at/all", false));
        assert!(glob_match("a?c", "abc", false));
        assert!(!glob_match("a?c", "ac", false));
        assert!(glob_match(
            "arn:aws:iam::*:role/app-*",
            "arn:aws:iam::1:role/app-x",
            false
        ));
        assert!(!glob_match(
            "arn:aws:iam::*:role/app-*",
            "arn:aws:iam::1:role/ops-x",
            false
        ));
        assert!(glob_match("*secret:db-*", SECRET, false));
        assert!(glob_match("*:db-pass-??????", SECRET, false));
        assert!(!glob_match("*:db-pass-?????", SECRET, false));
        assert!(glob_match("a*b*c", "aXXbYYbZZc", false));
        assert!(!glob_match("a*b*c", "aXXbYYbZZ", false));
        assert!(glob_match("SecretsManager:GetSecret*", GET, true));
        assert!(!glob_match("SecretsManager:GetSecret*", GET, false));
        assert!(glob_match("**", "x", false));
        assert!(!glob_match("", "x", false));
    }

    #[test]
    fn statement_as_object_or_list_and_action_forms() {
        let single = doc(json!({"Version": "2012-10-17", "Statement":
            {"Effect": "Allow", "Action": GET, "Resource": SECRET}}));
        assert!(allows(&single, GET, SECRET));
        let list = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "secretsmanager:GetSecret*"], "Resource": ["arn:x", "arn:aws:secretsmanager:*:*:secret:db-*"]}
        ]}));
        assert!(allows(&list, GET, SECRET));
        assert!(!allows(&list, "secretsmanager:PutSecretValue", SECRET));
        for action in [
            "*",
            "secretsmanager:*",
            "SECRETSMANAGER:getsecretvalue",
            "secretsmanager:Get*Value",
        ] {
            let d =
                doc(json!({"Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}));
            assert!(allows(&d, GET, SECRET), "{action}");
        }
    }

    #[test]
    fn resource_patterns() {
        let d = doc(json!({"Statement": [{"Effect": "Allow", "Action": GET,
            "Resource": "arn:aws:secretsmanager:us-east-1:123456789012:secret:other-*"}]}));
        assert!(!allows(&d, GET, SECRET));
        let d = doc(json!({"Statement": [{"Effect": "Allow", "Action": GET,
            "Resource": "arn:aws:secretsmanager:us-east-1:123456789012:secret:DB-*"}]}));
        assert!(
            !allows(&d, GET, SECRET),
            "resource ARNs match case-sensitively"
        );
        let d = doc(json!({"Statement": [{"Effect": "Allow", "Action": GET}]}));
        assert!(
            !allows(&d, GET, SECRET),
            "an identity statement without Resource grants nothing"
        );
    }

    #[test]
    fn explicit_deny_wins_and_conditional_deny_does_not() {
        let d = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "secretsmanager:*", "Resource": SECRET}
        ]}));
        let dec = d.identity_decision(GET, SECRET, Vars::default());
        assert!(dec.allowed && dec.denied && !dec.grants());
        assert!(allows(
            &d,
            GET,
            "arn:aws:secretsmanager:us-east-1:1:secret:other"
        ));

        let d = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "*", "Resource": "*",
             "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2024-01-01T00:00:00Z"}}}
        ]}));
        let dec = d.identity_decision(GET, SECRET, Vars::default());
        assert!(dec.grants() && dec.conditional_deny && !dec.conditional);
    }

    #[test]
    fn conditional_allow_counts_but_is_flagged() {
        let d = doc(
            json!({"Statement": [{"Effect": "Allow", "Action": GET, "Resource": "*",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}]}),
        );
        let dec = d.identity_decision(GET, SECRET, Vars::default());
        assert!(dec.grants() && dec.conditional);
    }

    #[test]
    fn not_action_and_not_resource() {
        let d =
            doc(json!({"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}));
        assert!(allows(&d, GET, SECRET));
        assert!(!allows(&d, "iam:CreateUser", "*"));
        let d = doc(
            json!({"Statement": [{"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:secretsmanager:*:*:secret:db-*"}]}),
        );
        assert!(!allows(&d, GET, SECRET));
        assert!(allows(
            &d,
            GET,
            "arn:aws:secretsmanager:us-east-1:1:secret:app-1"
        ));
    }

    #[test]
    fn policy_variables() {
        let d = doc(json!({"Statement": [{"Effect": "Allow", "Action": GET,
            "Resource": "arn:aws:secretsmanager:*:*:secret:${aws:username}/*"}]}));
        let alice = Vars {
            username: Some("alice"),
            userid: None,
        };
        let bob = Vars {
            username: Some("bob"),
            userid: None,
        };
        let s = "arn:aws:secretsmanager:us-east-1:1:secret:alice/db-x";
        assert!(d.identity_decision(GET, s, alice).grants());
        assert!(!d.identity_decision(GET, s, bob).grants());
        let d = doc(json!({"Statement": [{"Effect": "Allow", "Action": GET,
            "Resource": "arn:aws:secretsmanager:*:*:secret:${aws:PrincipalTag/team}/*"}]}));
        assert!(
            d.identity_decision(GET, s, bob).grants(),
            "unknown variables match anything"
        );
    }

    #[test]
    fn url_encoded_documents_parse() {
        let raw = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ASSUME, "Resource": "arn:aws:iam::*:role/app-*"}]}).to_string();
        let encoded = urlencoding::encode(&raw).into_owned();
        assert!(!encoded.starts_with('{'));
        let d = PolicyDocument::parse(&encoded).unwrap();
        assert!(allows(&d, ASSUME, "arn:aws:iam::123456789012:role/app-x"));
    }

    #[test]
    fn malformed_documents_are_errors_not_panics() {
        assert!(matches!(
            PolicyDocument::parse("%7Bnot json"),
            Err(PolicyError::Json(_))
        ));
        assert_eq!(PolicyDocument::parse("{}"), Err(PolicyError::NoStatement));
        assert_eq!(
            PolicyDocument::parse("%E0%A4%A"),
            Err(PolicyError::Encoding)
        );
        let d = doc(json!({"Statement": [
            {"Effect": "Maybe", "Action": "*", "Resource": "*"},
            {"Effect": "Allow", "Resource": "*"},
            {"Effect": "Allow", "Action": 5, "Resource": "*"},
            "not an object",
            {"Effect": "Allow", "Action": "*", "NotAction": "x", "Resource": "*"},
            {"Effect": "Allow", "Action": GET, "Resource": "*"}
        ]}));
        assert_eq!(d.statements.len(), 1);
        assert_eq!(d.skipped, 5);
    }

    #[test]
    fn trust_policy_principals() {
        let direct = doc(
            json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": ASSUME}]}),
        );
        assert_eq!(
            direct.trust_decision(&alice(), ASSUME).grantee,
            Some(Grantee::Named)
        );
        let by_list = doc(
            json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::123456789012:user/bob", ALICE]}, "Action": [ASSUME, "sts:TagSession"]}]}),
        );
        assert!(by_list.trust_decision(&alice(), ASSUME).grants());
        let root = doc(
            json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:*"}]}),
        );
        assert_eq!(
            root.trust_decision(&alice(), ASSUME).grantee,
            Some(Grantee::Account)
        );
        let bare = doc(
            json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCT}, "Action": "sts:Assume*"}]}),
        );
        assert_eq!(
            bare.trust_decision(&alice(), ASSUME).grantee,
            Some(Grantee::Account)
        );
        let other = doc(
            json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"}, "Action": ASSUME}]}),
        );
        assert!(!other.trust_decision(&alice(), ASSUME).allowed);
        let service = doc(
            json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": ASSUME}]}),
        );
        assert!(!service.trust_decision(&alice(), ASSUME).allowed);
        let everyone =
            doc(json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*"}]}));
        assert_eq!(
            everyone.trust_decision(&alice(), ASSUME).grantee,
            Some(Grantee::Everyone)
        );
        let by_id = doc(
            json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "AIDAALICE"}, "Action": ASSUME}]}),
        );
        assert_eq!(
            by_id.trust_decision(&alice(), ASSUME).grantee,
            Some(Grantee::Named)
        );
        let wrong_action = doc(
            json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "sts:AssumeRoleWithSAML"}]}),
        );
        assert!(!wrong_action.trust_decision(&alice(), ASSUME).allowed);
        let strongest = doc(json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ACCT}, "Action": ASSUME},
            {"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": ASSUME}
        ]}));
        assert_eq!(
            strongest.trust_decision(&alice(), ASSUME).grantee,
            Some(Grantee::Named)
        );
        let denied = doc(json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ACCT}, "Action": ASSUME},
            {"Effect": "Deny", "Principal": {"AWS": ALICE}, "Action": ASSUME}
        ]}));
        assert!(!denied.trust_decision(&alice(), ASSUME).grants());
        let not_principal = doc(
            json!({"Statement": [{"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::123456789012:user/bob"}, "Action": ASSUME}]}),
        );
        assert_eq!(
            not_principal.trust_decision(&alice(), ASSUME).grantee,
            Some(Grantee::Everyone)
        );
    }

    #[test]
    fn service_principals_in_trust_policies() {
        let ec2 = doc(
            json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": ["ec2.amazonaws.com", "lambda.amazonaws.com"]}, "Action": ASSUME}]}),
        );
        let d = ec2.service_trust_decision("ec2.amazonaws.com", ASSUME);
        assert!(d.grants() && d.grantee == Some(Grantee::Named));
        assert!(
            !ec2.service_trust_decision("ecs-tasks.amazonaws.com", ASSUME)
                .allowed
        );
        // A service principal never matches an IAM user.
        assert!(!ec2.trust_decision(&alice(), ASSUME).allowed);
        let anyone =
            doc(json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": ASSUME}]}));
        assert_eq!(
            anyone
                .service_trust_decision("ec2.amazonaws.com", ASSUME)
                .grantee,
            Some(Grantee::Everyone)
        );
        let user_only = doc(
            json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": ASSUME}]}),
        );
        assert!(
            !user_only
                .service_trust_decision("ec2.amazonaws.com", ASSUME)
                .allowed
        );
    }

    #[test]
    fn a_deny_with_an_unknown_variable_never_hides_access() {
        let d = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": GET, "Resource": "*"},
            {"Effect": "Deny", "Action": GET, "Resource": "arn:aws:secretsmanager:*:*:secret:${aws:PrincipalTag/team}-*"}
        ]}));
        let dec = d.identity_decision(GET, SECRET, Vars::default());
        assert!(dec.grants() && dec.conditional_deny, "{dec:?}");
        // A known variable is substituted and the deny applies.
        let d = doc(json!({"Statement": [
            {"Effect": "Allow", "Action": GET, "Resource": "*"},
            {"Effect": "Deny", "Action": GET, "Resource": "arn:aws:secretsmanager:*:*:secret:${aws:username}-*"}
        ]}));
        let vars = Vars {
            username: Some("db"),
            userid: None,
        };
        assert!(!d.identity_decision(GET, SECRET, vars).grants());
    }

    #[test]
    fn resource_policy_principals_and_resources() {
        let d = doc(
            json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}),
        );
        assert_eq!(
            d.resource_decision(&alice(), GET, SECRET).grantee,
            Some(Grantee::Named)
        );
        let bob = Caller {
            arn: "arn:aws:iam::123456789012:user/bob",
            unique_id: None,
            account: ACCT,
        };
        assert!(!d.resource_decision(&bob, GET, SECRET).allowed);
        let no_resource = doc(
            json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "secretsmanager:*"}]}),
        );
        assert!(no_resource
            .resource_decision(&alice(), GET, SECRET)
            .grants());
        let other_resource = doc(
            json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": ALICE}, "Action": "*", "Resource": "arn:aws:secretsmanager:*:*:secret:other-*"}]}),
        );
        assert!(
            !other_resource
                .resource_decision(&alice(), GET, SECRET)
                .allowed
        );
    }

    #[test]
    fn session_revocation_cutoff() {
        let text = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2025-03-04T05:06:07Z"}}}]}).to_string();
        let t = PolicyDocument::token_issue_cutoff(&text).unwrap();
        assert_eq!(t.to_rfc3339(), "2025-03-04T05:06:07+00:00");
        let encoded = urlencoding::encode(&text).into_owned();
        assert_eq!(PolicyDocument::token_issue_cutoff(&encoded), Some(t));
        let no_cond =
            json!({"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}).to_string();
        assert_eq!(PolicyDocument::token_issue_cutoff(&no_cond), None);
        let allow = json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2025-03-04T05:06:07Z"}}}})
        .to_string();
        assert_eq!(PolicyDocument::token_issue_cutoff(&allow), None);
        assert_eq!(parse_policy_time("2025-03-04T05:06:07"), Some(t));
        assert_eq!(parse_policy_time("2025-03-04T07:06:07+02:00"), Some(t));
        assert_eq!(parse_policy_time("yesterday"), None);
    }
}
