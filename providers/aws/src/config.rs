//! The AWS provider's configuration (`[providers.aws]`) and its pure validation.

use closeout_contract::{Identity, RetryPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Configuration of the AWS provider (IAM, STS and Secrets Manager).
///
/// Every field is optional. Unset `region` and `endpoint_url` leave the AWS SDK's standard
/// configuration in charge (`AWS_REGION`, `AWS_ENDPOINT_URL`, profiles, the default credentials
/// chain); set, they override it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// AWS region, e.g. `us-east-1`. Overrides `AWS_REGION` and the profile's region.
    pub region: Option<String>,
    /// Endpoint URL for every AWS service this provider calls, e.g. `http://127.0.0.1:5000` for a
    /// local moto server. Overrides `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// Tag key on an IAM user that names the identity (by id or email) the user belongs to.
    pub identity_tag: String,
    /// Tag key on IAM users, roles and secrets that names their owner (by id or email).
    pub owner_tag: String,
    /// Which forms of the identity's name an IAM user name is compared with (case-insensitively)
    /// when no `identity_tag` matches, in order of preference.
    pub match_user_name: Vec<UserNameRule>,
    /// Name of the Secrets Manager secret a rotated non-human identity's new access key is
    /// published to; `{name}` is replaced by the IAM user's name.
    pub nhi_key_secret: String,
    /// Name of the inline policy Closeout puts on users and roles to revoke their sessions (a
    /// deny on `aws:TokenIssueTime`). Closeout recognises it and never reports it as a finding.
    pub session_revoke_policy: String,
    /// How many AWS calls of one API family may be in flight at once; unset: the family's
    /// default (`crate::limits`).
    pub max_in_flight: Option<usize>,
    /// How many AWS calls of one API family may start per second (token bucket); unset: the
    /// family's default, from AWS's documented quota where there is one (`crate::limits`).
    pub requests_per_second: Option<f64>,
    /// Attempts per AWS call made by the SDK's own retry (throttling, 5xx, connection errors).
    /// It is the attempts of [`AwsConfig::retry_policy`]: `retry.max_attempts` is not read.
    pub max_attempts: u32,
    /// Backoff of the SDK's retry (`[providers.aws.retry]`): `base_ms` doubling up to `cap_ms`
    /// with full jitter, a server's `Retry-After` honoured (up to `cap_ms`), and no call —
    /// retries included — running past `deadline_ms`.
    pub retry: RetryPolicy,
    /// IAM Identity Center (`[providers.aws.identity_center]`).
    pub identity_center: IdentityCenterConfig,
    /// SAML and OIDC federated roles (`[providers.aws.federation]`): how the person's claims
    /// follow from the source's attributes. Unset: a role trusting a SAML or OIDC provider is a
    /// gap (who may assume it is unknown), never silently nobody.
    pub federation: Option<FederationConfig>,
}

/// IAM Identity Center: where the person's Identity Store user, group memberships and account
/// assignments are read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityCenterConfig {
    /// Read Identity Center at all. Off: the person's SSO access is not looked at (say so with
    /// care: access through it is then not closed out).
    pub enabled: bool,
    /// The instance's ARN (`arn:aws:sso:::instance/ssoins-…`); unset: the one `ListInstances`
    /// returns.
    pub instance_arn: Option<String>,
    /// The Identity Store's id (`d-…`); unset: the instance's.
    pub identity_store_id: Option<String>,
}

impl Default for IdentityCenterConfig {
    fn default() -> Self {
        IdentityCenterConfig {
            enabled: true,
            instance_arn: None,
            identity_store_id: None,
        }
    }
}

/// How the person appears to AWS when signed in through a SAML or OIDC identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// Condition keys as trust policies write them (`saml:sub`, `saml:aud`,
    /// `aws:PrincipalTag/department`, `saml:groups`, `accounts.google.com:sub`) and where the
    /// person's value comes from. A key not listed here is unknown: a trust condition on it is
    /// assumed to hold, and the role's finding says why.
    pub claims: BTreeMap<String, ClaimSource>,
    /// What the identity provider sends as the role session name (`RoleSessionName`, most SAML
    /// setups: the email), so a session deny can name the person alone; unset: the person cannot
    /// be told apart from colleagues on the same role, and the role-wide deny is used.
    pub session_name: Option<IdentityField>,
    /// The SAML/OIDC providers that sign people in, by ARN or by name (`okta`,
    /// `token.actions.githubusercontent.com`); empty: every provider a trust policy names. A role
    /// trusting only providers not listed (a CI system's OIDC provider) is nobody's person access.
    pub providers: Vec<String>,
}

/// Where one claim's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum ClaimSource {
    /// An attribute of the identity from the source.
    Field(IdentityField),
    /// The same value for everyone (`saml:aud` = `https://signin.aws.amazon.com/saml`).
    Value(String),
}

/// An attribute of the identity from the authoritative source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityField {
    Id,
    Email,
    EmailLocalPart,
    Name,
    Department,
    Role,
    Location,
    EmploymentType,
    /// Every tag (a multi-valued claim such as group names).
    Tags,
}

impl IdentityField {
    /// The identity's values of this field (none when it has none).
    pub fn values(self, identity: &Identity) -> Vec<String> {
        let one = |v: Option<&str>| {
            v.map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| vec![v.to_string()])
                .unwrap_or_default()
        };
        match self {
            IdentityField::Id => one(Some(&identity.id)),
            IdentityField::Email => one(Some(&identity.email)),
            IdentityField::EmailLocalPart => one(identity.email.split('@').next()),
            IdentityField::Name => one(Some(&identity.name)),
            IdentityField::Department => one(identity.department.as_deref()),
            IdentityField::Role => one(identity.role.as_deref()),
            IdentityField::Location => one(identity.location.as_deref()),
            IdentityField::EmploymentType => one(identity.employment_type.as_deref()),
            IdentityField::Tags => identity.tags.iter().cloned().collect(),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            IdentityField::Id => "id",
            IdentityField::Email => "email",
            IdentityField::EmailLocalPart => "email-local-part",
            IdentityField::Name => "name",
            IdentityField::Department => "department",
            IdentityField::Role => "role",
            IdentityField::Location => "location",
            IdentityField::EmploymentType => "employment-type",
            IdentityField::Tags => "tags",
        }
    }
}

impl FederationConfig {
    /// Whether provider `arn` (`arn:aws:iam::1:saml-provider/okta`) signs people in.
    pub fn signs_in_people(&self, arn: &str) -> bool {
        let name = arn.rsplit('/').next().unwrap_or(arn);
        self.providers.is_empty() || self.providers.iter().any(|p| p == arn || p == name)
    }

    /// The person's values of claim `key` (compared case-insensitively, as condition keys are):
    /// `None` when the key is not mapped (unknown).
    pub fn claim(&self, key: &str, identity: &Identity) -> Option<Vec<String>> {
        self.claims
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, source)| match source {
                ClaimSource::Field(f) => f.values(identity),
                ClaimSource::Value(v) => vec![v.clone()],
            })
    }
}

/// A form of the identity's name that an IAM user name may equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserNameRule {
    /// The identity's id from the authoritative source.
    Id,
    /// The identity's full email address.
    Email,
    /// The part of the email before `@`.
    EmailLocalPart,
}

/// The form of the identity's name a user-name rule compares with, lower-cased (IAM user names
/// compare case-insensitively).
pub fn rule_form(rule: UserNameRule, identity: &Identity) -> Option<String> {
    let form = match rule {
        UserNameRule::Id => Some(identity.id.trim().to_ascii_lowercase()),
        UserNameRule::Email => Some(identity.email.trim().to_ascii_lowercase()),
        UserNameRule::EmailLocalPart => identity.email_local_part(),
    };
    form.filter(|f| !f.is_empty())
}

impl UserNameRule {
    pub fn describe(self) -> &'static str {
        match self {
            UserNameRule::Id => "id",
            UserNameRule::Email => "email",
            UserNameRule::EmailLocalPart => "email local part",
        }
    }
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            region: None,
            endpoint_url: None,
            identity_tag: "identity".into(),
            owner_tag: "owner".into(),
            match_user_name: vec![
                UserNameRule::Id,
                UserNameRule::Email,
                UserNameRule::EmailLocalPart,
            ],
            nhi_key_secret: "closeout/nhi/{name}/access-key".into(),
            session_revoke_policy: "closeout-revoke-sessions".into(),
            max_in_flight: None,
            requests_per_second: None,
            max_attempts: 5,
            retry: RetryPolicy::default(),
            identity_center: IdentityCenterConfig::default(),
            federation: None,
        }
    }
}

/// Errors building the AWS provider from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// A configuration field has a value the provider cannot use.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Neither the configuration nor the SDK's standard sources name a region.
    #[error(
        "no AWS region: set `region` in the aws provider configuration, or AWS_REGION in the environment"
    )]
    NoRegion,
}

impl From<AwsError> for closeout_contract::ProviderError {
    fn from(e: AwsError) -> Self {
        closeout_contract::ProviderError::Config {
            provider: crate::capabilities::PROVIDER,
            message: e.to_string(),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> AwsError {
    AwsError::Invalid {
        field,
        message: message.into(),
    }
}

impl AwsConfig {
    /// Check every field without any I/O.
    pub fn validate(&self) -> Result<(), AwsError> {
        if let Some(region) = &self.region {
            let ok = !region.is_empty()
                && region
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(invalid(
                    "region",
                    format!("{region:?} is not a region name such as us-east-1"),
                ));
            }
        }
        if let Some(url) = &self.endpoint_url {
            validate_endpoint(url)?;
        }
        validate_tag_key("identity_tag", &self.identity_tag)?;
        validate_tag_key("owner_tag", &self.owner_tag)?;
        validate_nhi_key_secret(&self.nhi_key_secret)?;
        let name = &self.session_revoke_policy;
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
        if !ok {
            return Err(invalid(
                "session_revoke_policy",
                format!("{name:?} is not a valid IAM policy name (1-128 of A-Z a-z 0-9 +=,.@_-)"),
            ));
        }
        if self.max_in_flight == Some(0) {
            return Err(invalid("max_in_flight", "must be at least 1"));
        }
        if let Some(rate) = self.requests_per_second {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(invalid("requests_per_second", "must be a number above 0"));
            }
        }
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts", "must be at least 1"));
        }
        self.retry
            .validate()
            .map_err(|e| invalid("retry", e.to_string()))?;
        if let Some(arn) = &self.identity_center.instance_arn {
            if !arn.starts_with("arn:") || !arn.contains(":instance/") {
                return Err(invalid(
                    "identity_center.instance_arn",
                    format!("{arn:?} is not an instance ARN (arn:aws:sso:::instance/ssoins-…)"),
                ));
            }
        }
        if let Some(id) = &self.identity_center.identity_store_id {
            if id.trim().is_empty() || id.chars().any(char::is_whitespace) {
                return Err(invalid(
                    "identity_center.identity_store_id",
                    format!("{id:?} is not an Identity Store id (d-…)"),
                ));
            }
        }
        if let Some(f) = &self.federation {
            if let Some(k) = f
                .claims
                .keys()
                .find(|k| k.trim().is_empty() || !k.contains(':'))
            {
                return Err(invalid(
                    "federation.claims",
                    format!("{k:?} is not a condition key (saml:sub, aws:PrincipalTag/team, …)"),
                ));
            }
        }
        Ok(())
    }

    /// The retry policy of every AWS call: `retry` with `max_attempts` as its attempts.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            ..self.retry
        }
    }

    /// The name of the secret a rotated key of NHI user `user` is published to.
    pub fn nhi_secret_name(&self, user: &str) -> String {
        self.nhi_key_secret.replace("{name}", user)
    }
}

fn validate_endpoint(url: &str) -> Result<(), AwsError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            invalid(
                "endpoint_url",
                format!("{url:?} is not an http:// or https:// URL"),
            )
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_string();
    let (host, port) = if host.starts_with('[') {
        // An IPv6 literal, e.g. [::1]:5000.
        match host.find(']') {
            Some(end) => (
                host[..=end].to_string(),
                host[end + 1..].strip_prefix(':').map(str::to_string),
            ),
            None => {
                return Err(invalid(
                    "endpoint_url",
                    format!("{url:?} has an unterminated IPv6 address"),
                ))
            }
        }
    } else {
        match host.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.to_string())),
            None => (host.clone(), None),
        }
    };
    if host.is_empty() || url.chars().any(char::is_whitespace) {
        return Err(invalid(
            "endpoint_url",
            format!("{url:?} has no host or contains spaces"),
        ));
    }
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err(invalid(
                "endpoint_url",
                format!("{url:?} has an invalid port {port:?}"),
            ));
        }
    }
    Ok(())
}

fn validate_tag_key(field: &'static str, key: &str) -> Result<(), AwsError> {
    if key.trim().is_empty() || key.len() > 128 {
        return Err(invalid(field, "must be a tag key of 1 to 128 characters"));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(invalid(
            field,
            "tag keys starting with aws: are reserved by AWS",
        ));
    }
    Ok(())
}

fn validate_nhi_key_secret(template: &str) -> Result<(), AwsError> {
    const FIELD: &str = "nhi_key_secret";
    if !template.contains("{name}") {
        return Err(invalid(
            FIELD,
            format!("{template:?} must contain {{name}} (replaced by the NHI user's name)"),
        ));
    }
    let rest = template.replace("{name}", "");
    if rest.contains('{') || rest.contains('}') {
        return Err(invalid(
            FIELD,
            format!("{template:?}: the only placeholder allowed is {{name}}"),
        ));
    }
    // Secrets Manager names: 1-512 of A-Z a-z 0-9 /_+=.@-. IAM user names use a subset of these.
    if let Some(c) = rest
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)))
    {
        return Err(invalid(
            FIELD,
            format!("{template:?}: {c:?} is not allowed in a Secrets Manager secret name"),
        ));
    }
    if template.len() + 64 > 512 {
        return Err(invalid(
            FIELD,
            "is too long for a Secrets Manager secret name",
        ));
    }
    Ok(())
}

impl closeout_contract::ProviderConfig for AwsConfig {
    type Error = AwsError;

    fn validate(&self) -> Result<(), AwsError> {
        AwsConfig::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = AwsConfig::default();
        c.validate().unwrap();
        assert_eq!(c.identity_tag, "identity");
        assert_eq!(c.owner_tag, "owner");
        assert_eq!(
            c.nhi_secret_name("svc-ci"),
            "closeout/nhi/svc-ci/access-key"
        );
        assert_eq!(c.max_in_flight, None);
        assert_eq!(c.max_attempts, 5);
    }

    #[test]
    fn deserializes_partial_config_with_defaults() {
        let c: AwsConfig = serde_json::from_value(serde_json::json!({
            "endpoint_url": "http://127.0.0.1:5000",
            "match_user_name": ["email-local-part"],
        }))
        .unwrap();
        assert_eq!(c.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.match_user_name, vec![UserNameRule::EmailLocalPart]);
        assert_eq!(c.owner_tag, "owner");
        c.validate().unwrap();
    }

    #[test]
    fn federation_and_identity_center_sections_deserialize_typed() {
        let c: AwsConfig = serde_json::from_value(serde_json::json!({
            "identity_center": {"instance_arn": "arn:aws:sso:::instance/ssoins-1"},
            "federation": {
                "session_name": "email",
                "claims": {
                    "saml:sub": {"field": "email"},
                    "SAML:aud": {"value": "https://signin.aws.amazon.com/saml"},
                    "saml:groups": {"field": "tags"}
                },
                "providers": ["okta"]
            }
        }))
        .unwrap();
        c.validate().unwrap();
        assert!(c.identity_center.enabled);
        let f = c.federation.as_ref().unwrap();
        assert_eq!(f.session_name, Some(IdentityField::Email));
        let mut who = crate::tests::identity("E1", "dana@example.com");
        who.tags.insert("eng".into());
        assert_eq!(
            f.claim("SAML:SUB", &who),
            Some(vec!["dana@example.com".into()])
        );
        assert_eq!(
            f.claim("saml:aud", &who),
            Some(vec!["https://signin.aws.amazon.com/saml".into()])
        );
        assert_eq!(f.claim("saml:groups", &who), Some(vec!["eng".into()]));
        assert_eq!(f.claim("saml:eduPersonAffiliation", &who), None);
        assert!(f.signs_in_people("arn:aws:iam::1:saml-provider/okta"));
        assert!(
            !f.signs_in_people("arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com")
        );
        let bad = serde_json::from_value::<AwsConfig>(serde_json::json!({
            "federation": {"claims": {"saml:sub": {"attribute": "email"}}}
        }));
        assert!(bad.is_err());
        let bad = AwsConfig {
            identity_center: IdentityCenterConfig {
                instance_arn: Some("ssoins-1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("identity_center.instance_arn"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_value::<AwsConfig>(serde_json::json!({"endpoint": "x"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases: Vec<(AwsConfig, &str)> = vec![
            (
                AwsConfig {
                    nhi_key_secret: "closeout/nhi/key".into(),
                    ..Default::default()
                },
                "nhi_key_secret",
            ),
            (
                AwsConfig {
                    nhi_key_secret: "closeout/{name}/{other}".into(),
                    ..Default::default()
                },
                "nhi_key_secret",
            ),
            (
                AwsConfig {
                    max_in_flight: Some(0),
                    ..Default::default()
                },
                "max_in_flight",
            ),
            (
                AwsConfig {
                    requests_per_second: Some(0.0),
                    ..Default::default()
                },
                "requests_per_second",
            ),
            (
                AwsConfig {
                    requests_per_second: Some(f64::NAN),
                    ..Default::default()
                },
                "requests_per_second",
            ),
            (
                AwsConfig {
                    max_attempts: 0,
                    ..Default::default()
                },
                "max_attempts",
            ),
            (
                AwsConfig {
                    endpoint_url: Some("127.0.0.1:5000".into()),
                    ..Default::default()
                },
                "endpoint_url",
            ),
            (
                AwsConfig {
                    endpoint_url: Some("http://".into()),
                    ..Default::default()
                },
                "endpoint_url",
            ),
            (
                AwsConfig {
                    endpoint_url: Some("http://localhost:99999".into()),
                    ..Default::default()
                },
                "endpoint_url",
            ),
            (
                AwsConfig {
                    region: Some("US East".into()),
                    ..Default::default()
                },
                "region",
            ),
            (
                AwsConfig {
                    owner_tag: "".into(),
                    ..Default::default()
                },
                "owner_tag",
            ),
            (
                AwsConfig {
                    session_revoke_policy: "bad name".into(),
                    ..Default::default()
                },
                "session_revoke_policy",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{field}: {err}");
        }
    }

    #[test]
    fn endpoint_forms_accepted() {
        for url in [
            "http://127.0.0.1:5000",
            "https://iam.amazonaws.com",
            "http://localhost:4566/",
            "http://[::1]:5000",
        ] {
            AwsConfig {
                endpoint_url: Some(url.into()),
                ..Default::default()
            }
            .validate()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }
}
