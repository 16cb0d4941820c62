//! The User schema this server supports: the attributes it stores, how incoming values are
//! checked and normalised against them, and the discovery documents (`/Schemas`,
//! `/ResourceTypes`, `/ServiceProviderConfig`) that describe exactly that subset.
//!
//! Conformance tools and IdPs build their model of the server from `/Schemas`, so publishing only
//! what is stored keeps the two in step.

use super::error::ScimError;
use serde_json::{json, Map, Value};

/// The core User schema URN (RFC 7643 §4.1).
pub const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The enterprise User extension URN (RFC 7643 §4.3): `employeeNumber`, `department`, ...
pub const ENTERPRISE_USER: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The schema URN of a list response (RFC 7644 §3.4.2).
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The schema URN a PATCH request body must declare (RFC 7644 §3.5.2).
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub use super::error::ERROR;

/// Largest page a list answers (ServiceProviderConfig `filter.maxResults`).
pub const MAX_RESULTS: usize = 200;

/// An attribute's data type (RFC 7643 §2.3), the subset used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string; compared case-insensitively unless the attribute is `case_exact`.
    String,
    /// A boolean; the strings `"true"` and `"false"` (any case) are accepted, as some IdPs send
    /// them.
    Boolean,
    /// An object with these sub-attributes; sub-attributes not listed are dropped.
    Complex(&'static [Attr]),
}

/// Whether a client may write an attribute (RFC 7643 §7 `mutability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    /// The client may set and change it.
    ReadWrite,
    /// Only the server sets it; a client's write is refused with `mutability`.
    ReadOnly,
}

/// One attribute definition (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// The attribute's name as in the schema (`userName`, `emails`, ...); matched
    /// case-insensitively.
    pub name: &'static str,
    /// The data type.
    pub kind: Kind,
    /// Multi-valued: an array of values of `kind`.
    pub multi: bool,
    /// A User without it is refused, and it cannot be removed.
    pub required: bool,
    /// Values are compared exactly (case-sensitively) in filters.
    pub case_exact: bool,
    /// Whether a client may write it.
    pub mutability: Mutability,
    /// No two Users may share a value (`uniqueness: server`, e.g. `userName`).
    pub unique: bool,
    /// The suggested values (`canonicalValues`), e.g. `work`, `home` for a `type`; published, not
    /// enforced.
    pub canonical: &'static [&'static str],
    /// The description published in `/Schemas`.
    pub description: &'static str,
}

const fn s(name: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        kind: Kind::String,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        unique: false,
        canonical: &[],
        description,
    }
}

const fn typ(canonical: &'static [&'static str]) -> Attr {
    let mut a = s("type", "A label indicating the attribute's function.");
    a.canonical = canonical;
    a
}

const fn primary() -> Attr {
    let mut a = s(
        "primary",
        "Whether this is the primary value; true appears at most once.",
    );
    a.kind = Kind::Boolean;
    a
}

const fn multi(name: &'static str, sub: &'static [Attr], description: &'static str) -> Attr {
    let mut a = s(name, description);
    a.kind = Kind::Complex(sub);
    a.multi = true;
    a
}

const fn complex(name: &'static str, sub: &'static [Attr], description: &'static str) -> Attr {
    let mut a = s(name, description);
    a.kind = Kind::Complex(sub);
    a
}

const USER_NAME: Attr = {
    let mut a = s(
        "userName",
        "Unique identifier for the User, compared case-insensitively.",
    );
    a.required = true;
    a.unique = true;
    a
};

const ACTIVE: Attr = {
    let mut a = s(
        "active",
        "Whether the account is active; false produces a leaver event.",
    );
    a.kind = Kind::Boolean;
    a
};

const NAME_SUB: &[Attr] = &[
    s("formatted", "The full name."),
    s("familyName", "The family name."),
    s("givenName", "The given name."),
    s("middleName", "The middle name."),
    s("honorificPrefix", "The honorific prefix."),
    s("honorificSuffix", "The honorific suffix."),
];

const EMAIL_SUB: &[Attr] = &[
    s("value", "The email address."),
    s("display", "A human-readable name."),
    typ(&["work", "home", "other"]),
    primary(),
];

const PHONE_SUB: &[Attr] = &[
    s("value", "The phone number."),
    s("display", "A human-readable name."),
    typ(&["work", "home", "mobile", "fax", "pager", "other"]),
    primary(),
];

const ADDRESS_SUB: &[Attr] = &[
    s("formatted", "The full mailing address."),
    s("streetAddress", "The street address."),
    s(
        "locality",
        "The city; the work address's locality is the location of lifecycle events.",
    ),
    s("region", "The state or region."),
    s("postalCode", "The postal code."),
    s("country", "The country."),
    typ(&["work", "home", "other"]),
    primary(),
];

/// The core User attributes supported (RFC 7643 §4.1), without the common `id`, `externalId`
/// and `meta`. No `password`: lifecycle events never carry a secret, so none is stored.
pub const USER_ATTRS: &[Attr] = &[
    USER_NAME,
    complex("name", NAME_SUB, "The components of the user's name."),
    s("displayName", "The name displayed to end users."),
    s("nickName", "The casual way to address the user."),
    s(
        "title",
        "The user's title; the role of lifecycle events (a change is a mover).",
    ),
    s(
        "userType",
        "The relationship to the organisation; the employment_type of lifecycle events.",
    ),
    s(
        "preferredLanguage",
        "The preferred written or spoken language.",
    ),
    s("locale", "The default location for localisation."),
    s("timezone", "The time zone, in IANA form."),
    ACTIVE,
    multi("emails", EMAIL_SUB, "Email addresses."),
    multi("phoneNumbers", PHONE_SUB, "Phone numbers."),
    multi("addresses", ADDRESS_SUB, "Physical mailing addresses."),
];

const MANAGER_SUB: &[Attr] = &[
    s(
        "value",
        "The id of the manager's User (or the manager's HR id or email).",
    ),
    s(
        "displayName",
        "The manager's name, as sent (stored, not derived).",
    ),
];

/// The enterprise extension attributes supported (RFC 7643 §4.3).
pub const ENTERPRISE_ATTRS: &[Attr] = &[
    s(
        "employeeNumber",
        "The HR id; the event identity when there is no externalId.",
    ),
    s("costCenter", "The cost center."),
    s("organization", "The organisation."),
    s("division", "The division."),
    s(
        "department",
        "The department; a change produces a mover event.",
    ),
    complex(
        "manager",
        MANAGER_SUB,
        "The user's manager; a change produces a mover event.",
    ),
];

/// Find an attribute by name, case-insensitively (RFC 7643 §2.1).
pub fn find(attrs: &'static [Attr], name: &str) -> Option<&'static Attr> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Check and normalise a value for `attr`: sub-attribute names take their canonical case,
/// unknown sub-attributes are dropped, `"True"`/`"False"` strings become booleans (Entra ID
/// sends them), a single value for a multi-valued attribute becomes a one-element array.
/// `None` means unassigned (`null`, `[]`, `{}` or only unknown sub-attributes).
pub fn normalise(attr: &Attr, value: Value) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if attr.multi {
        let items = match value {
            Value::Array(items) => items,
            single => vec![single],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = normalise_single(attr, item)? {
                out.push(v);
            }
        }
        return Ok(if out.is_empty() {
            None
        } else {
            Some(Value::Array(out))
        });
    }
    normalise_single(attr, value)
}

/// Normalise one value (an element, for a multi-valued attribute).
pub fn normalise_single(attr: &Attr, value: Value) -> Result<Option<Value>, ScimError> {
    match (attr.kind, value) {
        (_, Value::Null) => Ok(None),
        (Kind::String, Value::String(s)) => Ok(Some(Value::String(s))),
        (Kind::Boolean, Value::Bool(b)) => Ok(Some(Value::Bool(b))),
        (Kind::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => {
            Ok(Some(Value::Bool(true)))
        }
        (Kind::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Ok(Some(Value::Bool(false)))
        }
        (Kind::Complex(sub), Value::Object(map)) => {
            let mut out = Map::new();
            for (k, v) in map {
                if let Some(sa) = find(sub, &k) {
                    if let Some(v) = normalise_single(sa, v)? {
                        out.insert(sa.name.to_string(), v);
                    }
                }
            }
            Ok(if out.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            })
        }
        (kind, other) => Err(ScimError::invalid_value(format!(
            "{} must be {}, found {}",
            attr.name,
            match kind {
                Kind::String => "a string",
                Kind::Boolean => "a boolean",
                Kind::Complex(_) => "an object",
            },
            json_type(&other)
        ))),
    }
}

/// The JSON type of `v` as an error message names it (`a string`, `null`, ...).
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn attr_json(a: &Attr) -> Value {
    let mut o = json!({
        "name": a.name,
        "type": match a.kind {
            Kind::String => "string",
            Kind::Boolean => "boolean",
            Kind::Complex(_) => "complex",
        },
        "multiValued": a.multi,
        "description": a.description,
        "required": a.required,
        "mutability": match a.mutability {
            Mutability::ReadWrite => "readWrite",
            Mutability::ReadOnly => "readOnly",
        },
        "returned": "default",
    });
    if let Value::Object(m) = &mut o {
        if a.kind != Kind::Boolean {
            m.insert("caseExact".into(), Value::Bool(a.case_exact));
        }
        if !matches!(a.kind, Kind::Complex(_)) {
            m.insert(
                "uniqueness".into(),
                Value::from(if a.unique { "server" } else { "none" }),
            );
        }
        if !a.canonical.is_empty() {
            m.insert("canonicalValues".into(), json!(a.canonical));
        }
        if let Kind::Complex(sub) = a.kind {
            m.insert(
                "subAttributes".into(),
                Value::Array(sub.iter().map(attr_json).collect()),
            );
        }
    }
    o
}

/// The `/Schemas` resources, with `meta.location` under `base`.
pub fn schemas(base: &str) -> Vec<Value> {
    [
        (
            CORE_USER,
            "User",
            "User Account (the attributes this server stores)",
            USER_ATTRS,
        ),
        (
            ENTERPRISE_USER,
            "EnterpriseUser",
            "Enterprise User (the attributes this server stores)",
            ENTERPRISE_ATTRS,
        ),
    ]
    .into_iter()
    .map(|(id, name, description, attrs)| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": id,
            "name": name,
            "description": description,
            "attributes": attrs.iter().map(attr_json).collect::<Vec<_>>(),
            "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
        })
    })
    .collect()
}

/// The `/ResourceTypes` resources: Users only (no Groups).
pub fn resource_types(base: &str) -> Vec<Value> {
    vec![json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "User Account",
        "schema": CORE_USER,
        "schemaExtensions": [{"schema": ENTERPRISE_USER, "required": false}],
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
    })]
}

/// `/ServiceProviderConfig`: exactly what is implemented.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A static bearer token configured in Closeout, sent as `Authorization: Bearer <token>`.",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}
