//! Rotation strategies: how a shared secret's new value is made, chosen per secret.
//!
//! Rotating a secret exists to make the copy a leaver took useless without breaking the
//! consumers that read it. A new random value in *every* field of a structured secret does the
//! opposite: an RDS-style secret's `username` and `host` get scrambled while the database
//! password the leaver copied keeps working. So a secret is rotated by a named strategy:
//!
//! - `random`: a plain string (or binary) secret gets a new random value. A JSON object with
//!   exactly one field that holds a secret (the Vault idiom `{"password": "..."}`) counts as
//!   plain: only that field's value changes.
//! - `template:<field>[,<field>...]`: only the named fields of a JSON object get new random
//!   values; every other field is kept byte for byte.
//! - `postgresql-single-user` / `postgresql-alternating-users`: the password is changed at the
//!   database too (`ALTER ROLE ... PASSWORD`), in four phases; see `docs/rotation.md`.
//!
//! The strategy comes from the secret itself — the tag (AWS, Key Vault) or KV v2 custom
//! metadata [`TAG`] — or from a configuration rule, and travels on the finding as the
//! attribute [`ATTR`]. Providers record the value's shape ([`SHAPE_ATTR`], [`FIELDS_ATTR`]; field
//! names only, never values) at resolve time, so the plan can say which strategy each secret
//! gets. A structured secret with no strategy is **not** rotated: [`choose`] answers
//! [`Choice::Needs`], the plan names it "needs a rotation strategy", and it stays open.
//!
//! Pure: no I/O. The providers read and write values; this module decides what the new value is.

use crate::finding::Finding;
use crate::secret::SecretValue;
use serde_json::{Map, Value};
use std::fmt;

/// The tag (AWS Secrets Manager, Key Vault) or KV v2 custom-metadata key naming a secret's
/// rotation strategy.
pub const TAG: &str = "closeout:rotation";

/// The finding attribute carrying the strategy as written (from [`TAG`] or a config rule).
pub const ATTR: &str = "rotation";

/// The finding attribute saying where [`ATTR`] came from (`tag`, `custom-metadata`, `config`).
pub const SOURCE_ATTR: &str = "rotation_source";

/// The finding attribute with the current value's [`Shape`] (`plain`, `binary`, `json-object`,
/// `json`), recorded by the provider at resolve time.
pub const SHAPE_ATTR: &str = "value_shape";

/// The finding attribute with a JSON object's field names, comma-separated and sorted (names
/// only; never a value).
pub const FIELDS_ATTR: &str = "value_fields";

/// The wording the plan and the closure report use for a secret no strategy covers.
pub const NEEDS: &str = "needs a rotation strategy";

/// Field names that identify or locate a credential rather than being one: a single-field
/// secret holding one of these is not a plain secret, so `random` is never chosen for it by
/// default.
const IDENTIFYING_FIELDS: &[&str] = &[
    "account",
    "client_id",
    "database",
    "dbname",
    "email",
    "endpoint",
    "engine",
    "host",
    "hostname",
    "id",
    "login",
    "name",
    "port",
    "region",
    "server",
    "uri",
    "url",
    "user",
    "username",
];

/// A rotation strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// A new random value (plain or binary secret, or the one secret field of a JSON object).
    Random,
    /// New random values in exactly these JSON fields; the others are kept.
    Template(Vec<String>),
    /// PostgreSQL, one user: the secret's own role gets the new password.
    PostgresSingleUser,
    /// PostgreSQL, two users (`<user>` and `<user>_clone`): the secret switches between them, the
    /// one not in use gets the new password.
    PostgresAlternatingUsers,
}

impl Strategy {
    /// The strategy written `s` (`random`, `template:password,api_key`,
    /// `postgresql-single-user`, `postgresql-alternating-users`).
    pub fn parse(s: &str) -> Result<Strategy, StrategyError> {
        let s = s.trim();
        match s {
            "random" => Ok(Strategy::Random),
            "postgresql-single-user" => Ok(Strategy::PostgresSingleUser),
            "postgresql-alternating-users" => Ok(Strategy::PostgresAlternatingUsers),
            _ => {
                if let Some(fields) = s.strip_prefix("template:") {
                    let fields: Vec<String> = fields
                        .split(',')
                        .map(str::trim)
                        .filter(|f| !f.is_empty())
                        .map(String::from)
                        .collect();
                    if fields.is_empty() {
                        return Err(StrategyError::Unknown(s.to_string()));
                    }
                    Ok(Strategy::Template(fields))
                } else {
                    Err(StrategyError::Unknown(s.to_string()))
                }
            }
        }
    }

    /// True for the strategies that change the password at a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(
            self,
            Strategy::PostgresSingleUser | Strategy::PostgresAlternatingUsers
        )
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Random => f.write_str("random"),
            Strategy::Template(fields) => write!(f, "template:{}", fields.join(",")),
            Strategy::PostgresSingleUser => f.write_str("postgresql-single-user"),
            Strategy::PostgresAlternatingUsers => f.write_str("postgresql-alternating-users"),
        }
    }
}

/// Why a strategy cannot be used on a secret. Messages name fields, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    /// The tag or rule names no strategy Closeout has.
    #[error("`{0}` is not a rotation strategy (random, template:<fields>, postgresql-single-user, postgresql-alternating-users)")]
    Unknown(String),
    /// `random` on a structured value: it would scramble fields that are not secrets.
    #[error("strategy `random` needs a plain value, but the secret is a JSON value with fields [{0}]; name the fields to change with template:<fields>")]
    NotPlain(String),
    /// `template` on a value that is not a JSON object.
    #[error("strategy `{0}` needs a JSON object, but the secret's value is not one")]
    NotObject(String),
    /// `template` names a field the secret lacks.
    #[error("strategy `{strategy}` names field `{field}`, which the secret does not have (its fields: [{fields}])")]
    MissingField {
        /// The strategy as written.
        strategy: String,
        /// The missing field.
        field: String,
        /// The fields the secret has.
        fields: String,
    },
    /// A strategy that works at a database, asked for a plain value.
    #[error("strategy `{0}` changes the password at the database; it has no value-only form")]
    NeedsDatabase(String),
    /// A structured secret no strategy covers.
    #[error("{NEEDS}: {0}")]
    Needed(String),
}

/// The shape of a secret's current value, as the plan needs to know it (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A string that is not a JSON object or array.
    Plain,
    /// Bytes, not text.
    Binary,
    /// A JSON object with these field names (sorted).
    Object(Vec<String>),
    /// JSON, but an array: no field names to keep or change.
    OtherJson,
}

impl Shape {
    /// The shape of `value`.
    pub fn of(value: &str) -> Shape {
        match serde_json::from_str::<Value>(value) {
            Ok(Value::Object(map)) => {
                let mut fields: Vec<String> = map.keys().cloned().collect();
                fields.sort();
                Shape::Object(fields)
            }
            Ok(Value::Array(_)) => Shape::OtherJson,
            _ => Shape::Plain,
        }
    }

    /// The value of [`SHAPE_ATTR`].
    pub fn as_str(&self) -> &'static str {
        match self {
            Shape::Plain => "plain",
            Shape::Binary => "binary",
            Shape::Object(_) => "json-object",
            Shape::OtherJson => "json",
        }
    }

    /// The shape recorded on `f` by its provider, if any.
    pub fn of_finding(f: &Finding) -> Option<Shape> {
        Some(match f.attr(SHAPE_ATTR)? {
            "plain" => Shape::Plain,
            "binary" => Shape::Binary,
            "json" => Shape::OtherJson,
            "json-object" => Shape::Object(
                f.attr(FIELDS_ATTR)
                    .unwrap_or_default()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            ),
            _ => return None,
        })
    }

    /// Record this shape on `attributes` (the provider's resolve does this).
    pub fn record(&self, attributes: &mut std::collections::BTreeMap<String, String>) {
        attributes.insert(SHAPE_ATTR.into(), self.as_str().into());
        if let Shape::Object(fields) = self {
            attributes.insert(FIELDS_ATTR.into(), fields.join(","));
        }
    }

    /// The strategy a secret of this shape gets when nothing names one: `random` for a plain
    /// or binary value and for a JSON object whose only field holds a secret; `None` (needs a
    /// strategy) for everything structured.
    pub fn default_strategy(&self) -> Option<Strategy> {
        match self {
            Shape::Plain | Shape::Binary => Some(Strategy::Random),
            Shape::Object(fields) if fields.len() == 1 && !is_identifying(&fields[0]) => {
                Some(Strategy::Random)
            }
            Shape::Object(_) | Shape::OtherJson => None,
        }
    }
}

fn is_identifying(field: &str) -> bool {
    IDENTIFYING_FIELDS.contains(&field.to_ascii_lowercase().as_str())
}

/// The strategy chosen for a secret finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Rotate with this strategy; `named`: a tag, metadata or rule named it (not the default
    /// for the shape).
    Use {
        /// The strategy.
        strategy: Strategy,
        /// Named by the secret or configuration rather than defaulted from the shape.
        named: bool,
    },
    /// Not rotated: the reason, for the plan and the closure report.
    Needs(String),
}

/// The strategy for a secret finding: the one named by [`ATTR`] (a tag, custom metadata or a
/// config rule), else the default for its recorded [`Shape`]. `None` when the finding carries
/// neither (not a secret whose value Closeout generates).
pub fn choose(f: &Finding) -> Option<Choice> {
    if let Some(named) = f.attr(ATTR) {
        return Some(match Strategy::parse(named) {
            Ok(strategy) => match check_shape(&strategy, Shape::of_finding(f).as_ref()) {
                Ok(()) => Choice::Use {
                    strategy,
                    named: true,
                },
                Err(e) => Choice::Needs(e.to_string()),
            },
            Err(e) => Choice::Needs(e.to_string()),
        });
    }
    let shape = Shape::of_finding(f)?;
    Some(match shape.default_strategy() {
        Some(strategy) => Choice::Use {
            strategy,
            named: false,
        },
        None => Choice::Needs(needs_reason(&shape)),
    })
}

/// The reason a structured secret with no strategy is not rotated.
fn needs_reason(shape: &Shape) -> String {
    match shape {
        Shape::Object(fields) => format!(
            "its value is a JSON object with fields [{}]; rotating every field would scramble the ones that are not secrets. Name a strategy with the tag or metadata `{TAG}` (random, template:<fields>, postgresql-single-user, postgresql-alternating-users) or a [[rotation.strategy]] rule",
            fields.join(",")
        ),
        _ => format!(
            "its value is structured JSON; name a strategy with the tag or metadata `{TAG}` or a [[rotation.strategy]] rule"
        ),
    }
}

/// The reason `f` is not rotated, when no strategy covers it.
pub fn needs_strategy(f: &Finding) -> Option<String> {
    match choose(f)? {
        Choice::Needs(reason) => Some(reason),
        Choice::Use { .. } => None,
    }
}

/// Whether `strategy` can rotate a value of `shape` (unknown shape: assume it can; the value is
/// checked again when rotated).
fn check_shape(strategy: &Strategy, shape: Option<&Shape>) -> Result<(), StrategyError> {
    let Some(shape) = shape else { return Ok(()) };
    match (strategy, shape) {
        (Strategy::Random, Shape::Plain | Shape::Binary) => Ok(()),
        (Strategy::Random, Shape::Object(fields)) if fields.len() == 1 => Ok(()),
        (Strategy::Random, Shape::Object(fields)) => Err(StrategyError::NotPlain(fields.join(","))),
        (Strategy::Random, Shape::OtherJson) => Err(StrategyError::NotPlain(String::new())),
        (Strategy::Template(want), Shape::Object(fields)) => {
            match want.iter().find(|w| !fields.contains(w)) {
                Some(missing) => Err(StrategyError::MissingField {
                    strategy: strategy.to_string(),
                    field: missing.clone(),
                    fields: fields.join(","),
                }),
                None => Ok(()),
            }
        }
        (Strategy::Template(_), _) => Err(StrategyError::NotObject(strategy.to_string())),
        (s, Shape::Object(fields)) if s.is_postgres() => {
            for need in ["username", "password"] {
                if !fields.iter().any(|f| f == need) {
                    return Err(StrategyError::MissingField {
                        strategy: strategy.to_string(),
                        field: need.into(),
                        fields: fields.join(","),
                    });
                }
            }
            Ok(())
        }
        (s, _) => Err(StrategyError::NotObject(s.to_string())),
    }
}

/// The new value for `old` under a value-only strategy (`random`, `template`). Every field
/// the strategy does not name keeps its value; a database strategy is refused here (its new
/// password must be set at the database, see `docs/rotation.md`).
pub fn rotate_value(strategy: &Strategy, old: &SecretValue) -> Result<SecretValue, StrategyError> {
    let shape = Shape::of(old.expose());
    check_shape(strategy, Some(&shape))?;
    match strategy {
        Strategy::Random => match shape {
            Shape::Object(fields) => {
                let map = object_of(old)?;
                replace_fields(map, &fields)
            }
            _ => Ok(SecretValue::generate()),
        },
        Strategy::Template(fields) => {
            let map = object_of(old)?;
            replace_fields(map, fields)
        }
        s => Err(StrategyError::NeedsDatabase(s.to_string())),
    }
}

/// The new value for `old` when the secret names no strategy: the default for its shape, or
/// [`StrategyError::Needed`] for a structured value (never scrambled).
pub fn rotate_by_default(old: &SecretValue) -> Result<SecretValue, StrategyError> {
    let shape = Shape::of(old.expose());
    match shape.default_strategy() {
        Some(s) => rotate_value(&s, old),
        None => Err(StrategyError::Needed(needs_reason(&shape))),
    }
}

/// The new value for `old` under the strategy the finding names (`ATTR`), else the default for
/// the value's shape. Providers call this for value-only rotation.
pub fn rotate_for(f: &Finding, old: &SecretValue) -> Result<SecretValue, StrategyError> {
    rotate_named(f.attr(ATTR), old)
}

/// The new value for `old` under the strategy `named` (as a tag or rule writes it), else the
/// default for the value's shape.
pub fn rotate_named(named: Option<&str>, old: &SecretValue) -> Result<SecretValue, StrategyError> {
    match named {
        Some(named) => rotate_value(&Strategy::parse(named)?, old),
        None => rotate_by_default(old),
    }
}

fn object_of(v: &SecretValue) -> Result<Map<String, Value>, StrategyError> {
    match serde_json::from_str::<Value>(v.expose()) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(StrategyError::NotObject("template".into())),
    }
}

/// `map` with a new random string in each of `fields`, every other field unchanged and in its
/// place (serde_json keeps insertion order only with `preserve_order`; without it keys are
/// sorted, which JSON consumers do not depend on).
fn replace_fields(
    mut map: Map<String, Value>,
    fields: &[String],
) -> Result<SecretValue, StrategyError> {
    for f in fields {
        match map.get_mut(f) {
            Some(slot) => *slot = Value::String(SecretValue::generate().expose().to_string()),
            None => {
                return Err(StrategyError::MissingField {
                    strategy: format!("template:{}", fields.join(",")),
                    field: f.clone(),
                    fields: map.keys().cloned().collect::<Vec<_>>().join(","),
                })
            }
        }
    }
    Ok(SecretValue::new(Value::Object(map).to_string()))
}

/// The strategy tag's value among `tags`, if the secret has one.
pub fn from_tags<'a, I>(tags: I) -> Option<String>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    tags.into_iter()
        .find(|(k, _)| *k == TAG)
        .map(|(_, v)| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Holder, Relation, State};
    use std::collections::BTreeMap;

    fn finding(attrs: &[(&str, &str)]) -> Finding {
        Finding {
            id: "s".into(),
            provider: "p".into(),
            kind: "secret".into(),
            relation: Relation::CanRead,
            holder: Holder::Shared,
            resource: "s".into(),
            display: "secret s".into(),
            state: State::Active,
            paths: vec![],
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    const RDS: &str = r#"{"engine":"postgres","host":"db.internal","port":5432,"username":"payments","password":"canary-1","dbname":"pay"}"#;

    #[test]
    fn strategies_parse_and_print_back() {
        for s in [
            "random",
            "template:password",
            "template:password,api_key",
            "postgresql-single-user",
            "postgresql-alternating-users",
        ] {
            assert_eq!(Strategy::parse(s).unwrap().to_string(), s);
        }
        assert!(Strategy::parse("template:").is_err());
        assert!(Strategy::parse("scramble").is_err());
    }

    #[test]
    fn a_json_secret_without_a_strategy_is_not_rotated() {
        let old = SecretValue::new(RDS);
        let err = rotate_by_default(&old).unwrap_err();
        assert!(err.to_string().contains(NEEDS), "{err}");
        assert!(!err.to_string().contains("canary"), "{err}");
        let mut attrs = BTreeMap::new();
        Shape::of(RDS).record(&mut attrs);
        let f = finding(&[
            (SHAPE_ATTR, &attrs[SHAPE_ATTR]),
            (FIELDS_ATTR, &attrs[FIELDS_ATTR]),
        ]);
        let reason = needs_strategy(&f).expect("needs a strategy");
        assert!(
            reason.contains("dbname,engine,host,password,port,username"),
            "{reason}"
        );
    }

    #[test]
    fn template_changes_only_the_named_fields() {
        let old = SecretValue::new(RDS);
        let new = rotate_value(&Strategy::parse("template:password").unwrap(), &old).unwrap();
        let (a, b): (Value, Value) = (
            serde_json::from_str(RDS).unwrap(),
            serde_json::from_str(new.expose()).unwrap(),
        );
        for k in ["engine", "host", "port", "username", "dbname"] {
            assert_eq!(a[k], b[k], "{k} kept");
        }
        assert_ne!(a["password"], b["password"]);
        assert!(b["password"].as_str().unwrap().len() >= 32);
        let missing = rotate_value(&Strategy::parse("template:secret").unwrap(), &old);
        assert!(matches!(missing, Err(StrategyError::MissingField { .. })));
    }

    #[test]
    fn random_changes_a_plain_value_or_the_one_secret_field() {
        let plain = SecretValue::new("initial-value");
        assert_ne!(rotate_by_default(&plain).unwrap(), plain);
        let one = SecretValue::new(r#"{"password":"x"}"#);
        let new = rotate_by_default(&one).unwrap();
        let v: Value = serde_json::from_str(new.expose()).unwrap();
        assert_ne!(v["password"], "x");
        // One identifying field, or several fields: never rotated by default.
        assert!(rotate_by_default(&SecretValue::new(r#"{"username":"u"}"#)).is_err());
        assert!(rotate_by_default(&SecretValue::new(r#"["a","b"]"#)).is_err());
        // `random` named on a multi-field object is refused, not applied to every field.
        assert!(matches!(
            rotate_value(&Strategy::Random, &SecretValue::new(RDS)),
            Err(StrategyError::NotPlain(_))
        ));
    }

    #[test]
    fn a_named_strategy_that_does_not_fit_the_shape_needs_a_strategy() {
        let f = finding(&[
            (ATTR, "template:token"),
            (SHAPE_ATTR, "json-object"),
            (FIELDS_ATTR, "password,username"),
        ]);
        assert!(needs_strategy(&f).unwrap().contains("token"));
        let f = finding(&[
            (ATTR, "postgresql-single-user"),
            (SHAPE_ATTR, "json-object"),
            (FIELDS_ATTR, "host,password,username"),
        ]);
        assert_eq!(
            choose(&f),
            Some(Choice::Use {
                strategy: Strategy::PostgresSingleUser,
                named: true
            })
        );
        assert_eq!(choose(&finding(&[])), None);
    }
}
