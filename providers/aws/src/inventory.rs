//! Reading IAM and Secrets Manager into plain data the resolver analyses.
//!
//! IAM users (with tags, groups, attached and inline policies), groups, roles (with trust
//! policies) and customer-managed policies come from `GetAccountAuthorizationDetails`, a few
//! paged calls instead of one call per item. moto 5.2 returns all of it, tags included (checked
//! against moto 5.2.5). AWS-managed policies are not requested there (the account-wide list is
//! large): the few attached to the principals that matter are read one by one
//! (`GetPolicy` + `GetPolicyVersion`, bounded concurrency).

use crate::capabilities::kinds;
use crate::client::AwsProvider;
use crate::error::{CallError, CallFailure};
use crate::policy::PolicyDocument;
use aws_sdk_iam::types::EntityType;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;

/// A policy attached by ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedRef {
    pub name: String,
    pub arn: String,
}

/// An inline policy with its (decoded) document.
#[derive(Debug, Clone)]
pub struct InlinePolicy {
    pub name: String,
    /// The JSON text, URL-decoded.
    pub text: String,
    pub doc: Option<PolicyDocument>,
    /// Why the document could not be read in full (see [`Readable`]).
    pub problem: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IamUser {
    pub name: String,
    pub arn: String,
    pub id: String,
    pub tags: Vec<(String, String)>,
    pub groups: Vec<String>,
    pub attached: Vec<AttachedRef>,
    pub inline: Vec<InlinePolicy>,
}

#[derive(Debug, Clone)]
pub struct IamGroup {
    pub arn: String,
    pub attached: Vec<AttachedRef>,
    pub inline: Vec<InlinePolicy>,
}

#[derive(Debug, Clone)]
pub struct IamRole {
    pub name: String,
    pub arn: String,
    pub id: String,
    pub trust: Option<PolicyDocument>,
    /// Why the trust policy could not be read in full.
    pub trust_problem: Option<String>,
    pub attached: Vec<AttachedRef>,
    pub inline: Vec<InlinePolicy>,
    pub tags: Vec<(String, String)>,
}

/// A managed policy's default version.
#[derive(Debug, Clone)]
pub struct ManagedPolicy {
    pub doc: Option<PolicyDocument>,
    /// Why the document could not be read in full (unparsable, statements skipped, not found).
    pub problem: Option<String>,
}

/// Everything IAM says about the account's principals and policies.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub users: Vec<IamUser>,
    pub groups: BTreeMap<String, IamGroup>,
    pub roles: Vec<IamRole>,
    /// Managed policies by ARN (customer-managed from GAAD, AWS-managed fetched on demand).
    pub managed: BTreeMap<String, ManagedPolicy>,
    pub warnings: Vec<String>,
}

/// Look a tag up by key (IAM tag keys are case-insensitive).
pub fn tag<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// The account id in an ARN (`arn:aws:iam::123456789012:user/x`).
pub fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

pub fn to_utc(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// RFC 3339 with seconds, UTC: `2025-03-04T05:06:07Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A parsed document, and why it could not be read in full: unparsable (no document) or with
/// statements not understood. The problem is also a warning; resolution turns the problems of
/// documents that matter to the identity into gaps.
pub type Readable = (Option<PolicyDocument>, Option<String>);

fn parse_doc(what: &str, text: &str, warnings: &mut Vec<String>) -> Readable {
    match PolicyDocument::parse(text) {
        Ok(doc) => {
            let problem = (doc.skipped > 0).then(|| {
                format!(
                    "{} statement(s) of {what} not understood and ignored",
                    doc.skipped
                )
            });
            if let Some(p) = &problem {
                warnings.push(p.clone());
            }
            (Some(doc), problem)
        }
        Err(e) => {
            let problem = format!("{what}: {e}");
            warnings.push(format!("{problem}; its statements are ignored"));
            (None, Some(problem))
        }
    }
}

fn inline(
    owner: &str,
    list: &[aws_sdk_iam::types::PolicyDetail],
    warnings: &mut Vec<String>,
) -> Vec<InlinePolicy> {
    list.iter()
        .filter_map(|p| {
            let name = p.policy_name()?.to_string();
            let raw = p.policy_document().unwrap_or_default();
            let text = crate::policy::decode_document(raw)
                .map(|t| t.into_owned())
                .unwrap_or_default();
            let (doc, problem) =
                parse_doc(&format!("inline policy {name} of {owner}"), raw, warnings);
            Some(InlinePolicy {
                name,
                text,
                doc,
                problem,
            })
        })
        .collect()
}

fn attached(list: &[aws_sdk_iam::types::AttachedPolicy]) -> Vec<AttachedRef> {
    list.iter()
        .filter_map(|p| {
            Some(AttachedRef {
                name: p.policy_name().unwrap_or_default().to_string(),
                arn: p.policy_arn()?.to_string(),
            })
        })
        .collect()
}

/// IAM tags as (key, value) pairs.
pub(crate) fn iam_tags(list: &[aws_sdk_iam::types::Tag]) -> Vec<(String, String)> {
    list.iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

impl AwsProvider {
    /// Users, groups, roles and customer-managed policies, from
    /// `GetAccountAuthorizationDetails` (every page).
    pub(crate) async fn load_inventory(&self) -> Result<Inventory, CallError> {
        let mut inv = Inventory::default();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .call(
                    "GetAccountAuthorizationDetails",
                    self.iam
                        .get_account_authorization_details()
                        .filter(EntityType::User)
                        .filter(EntityType::Group)
                        .filter(EntityType::Role)
                        .filter(EntityType::LocalManagedPolicy)
                        // The most a page may hold (the default is 100): fewer round trips in a row.
                        .max_items(1000)
                        .set_marker(marker.take())
                        .send(),
                )
                .await?;
            let w = &mut inv.warnings;
            for u in page.user_detail_list() {
                let (Some(name), Some(arn)) = (u.user_name(), u.arn()) else {
                    continue;
                };
                inv.users.push(IamUser {
                    name: name.to_string(),
                    arn: arn.to_string(),
                    id: u.user_id().unwrap_or_default().to_string(),
                    tags: iam_tags(u.tags()),
                    groups: u.group_list().to_vec(),
                    attached: attached(u.attached_managed_policies()),
                    inline: inline(&format!("iam user {name}"), u.user_policy_list(), w),
                });
            }
            for g in page.group_detail_list() {
                let (Some(name), Some(arn)) = (g.group_name(), g.arn()) else {
                    continue;
                };
                inv.groups.insert(
                    name.to_string(),
                    IamGroup {
                        arn: arn.to_string(),
                        attached: attached(g.attached_managed_policies()),
                        inline: inline(&format!("group {name}"), g.group_policy_list(), w),
                    },
                );
            }
            for r in page.role_detail_list() {
                let (Some(name), Some(arn)) = (r.role_name(), r.arn()) else {
                    continue;
                };
                let (trust, trust_problem) = match r.assume_role_policy_document() {
                    Some(t) => parse_doc(&format!("trust policy of role {name}"), t, w),
                    None => (None, None),
                };
                inv.roles.push(IamRole {
                    name: name.to_string(),
                    arn: arn.to_string(),
                    id: r.role_id().unwrap_or_default().to_string(),
                    trust,
                    trust_problem,
                    attached: attached(r.attached_managed_policies()),
                    inline: inline(&format!("role {name}"), r.role_policy_list(), w),
                    tags: iam_tags(r.tags()),
                });
            }
            for p in page.policies() {
                let (Some(arn), Some(name)) = (p.arn(), p.policy_name()) else {
                    continue;
                };
                let default = p.default_version_id();
                let version = p
                    .policy_version_list()
                    .iter()
                    .find(|v| v.is_default_version() || v.version_id() == default);
                let what = format!("managed policy {name}");
                let (doc, problem) = match version.and_then(|v| v.document()) {
                    Some(d) => parse_doc(&what, d, w),
                    None => (None, Some(format!("{what}: no default version listed"))),
                };
                inv.managed
                    .insert(arn.to_string(), ManagedPolicy { doc, problem });
            }
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        inv.users.sort_by(|a, b| a.name.cmp(&b.name));
        inv.roles.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(inv)
    }

    /// Read the default version of every managed policy in `arns` not already in the inventory
    /// (AWS-managed policies), with bounded concurrency.
    pub(crate) async fn load_managed(
        &self,
        inv: &mut Inventory,
        arns: Vec<String>,
    ) -> Result<(), CallError> {
        let missing: Vec<String> = arns
            .into_iter()
            .filter(|a| !inv.managed.contains_key(a))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        // (policy ARN, (name, document) when found, or why it could not be read)
        type Fetched = Result<(String, Result<Option<(String, String)>, String>), CallError>;
        let fetched: Vec<Fetched> = stream::iter(missing)
            .map(|arn| async move {
                let policy = match self
                    .call("GetPolicy", self.iam.get_policy().policy_arn(&arn).send())
                    .await
                {
                    Ok(out) => out,
                    Err(e) if e.is_not_found() => return Ok((arn, Ok(None))),
                    Err(e) if e.is_access_denied() => return Ok((arn, Err(e.to_string()))),
                    Err(e) => return Err(e),
                };
                let Some(p) = policy.policy() else {
                    return Ok((arn, Ok(None)));
                };
                let name = p.policy_name().unwrap_or_default().to_string();
                let Some(version) = p.default_version_id() else {
                    return Ok((arn, Ok(None)));
                };
                let v = match self
                    .call(
                        "GetPolicyVersion",
                        self.iam
                            .get_policy_version()
                            .policy_arn(&arn)
                            .version_id(version)
                            .send(),
                    )
                    .await
                {
                    Ok(v) => v,
                    Err(e) if e.is_access_denied() => return Ok((arn, Err(e.to_string()))),
                    Err(e) => return Err(e),
                };
                let text = v
                    .policy_version()
                    .and_then(|v| v.document())
                    .unwrap_or_default()
                    .to_string();
                Ok((arn, Ok(Some((name, text)))))
            })
            .buffer_unordered(self.gate.limits().max_in_flight)
            .collect()
            .await;
        for r in fetched {
            let (arn, found) = r?;
            match found {
                Err(why) => {
                    let problem = format!("managed policy {arn}: could not be read ({why})");
                    inv.warnings
                        .push(format!("{problem}; its statements are ignored"));
                    inv.managed.insert(
                        arn,
                        ManagedPolicy {
                            doc: None,
                            problem: Some(problem),
                        },
                    );
                }
                Ok(Some((name, text))) => {
                    let (doc, problem) =
                        parse_doc(&format!("managed policy {name}"), &text, &mut inv.warnings);
                    inv.managed.insert(arn, ManagedPolicy { doc, problem });
                }
                Ok(None) => {
                    let problem = format!("managed policy {arn}: not found");
                    inv.warnings
                        .push(format!("{problem}; its statements are ignored"));
                    inv.managed.insert(
                        arn,
                        ManagedPolicy {
                            doc: None,
                            problem: Some(problem),
                        },
                    );
                }
            }
        }
        Ok(())
    }
}

/// An access key's metadata and last use.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub id: String,
    pub active: bool,
    pub created: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
    pub last_used_service: Option<String>,
    pub last_used_region: Option<String>,
}

/// A credential with an id and an Active/Inactive status (SSH key, signing certificate,
/// service-specific credential).
#[derive(Debug, Clone)]
pub struct StatusCred {
    pub id: String,
    pub active: bool,
    pub created: Option<DateTime<Utc>>,
    /// Extra non-secret facts (service name, service user name).
    pub extra: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone)]
pub struct MfaInfo {
    pub serial: String,
    pub enabled: Option<DateTime<Utc>>,
}

/// The credentials of one IAM user that GAAD does not list.
#[derive(Debug, Clone, Default)]
pub struct UserCredentials {
    pub login_profile: Option<Option<DateTime<Utc>>>,
    pub keys: Vec<KeyInfo>,
    pub ssh_keys: Vec<StatusCred>,
    pub certificates: Vec<StatusCred>,
    pub service_credentials: Vec<StatusCred>,
    pub mfa: Vec<MfaInfo>,
    pub warnings: Vec<String>,
    /// Credential kinds that could not be listed (finding kind, why): unknown, so gaps.
    pub unlisted: Vec<(&'static str, String)>,
}

/// A listing's result, or `None` with why it is unknown when the caller may not list it (a
/// 403 is not an empty list).
pub(crate) fn listed<T>(
    r: Result<T, CallError>,
    kind: &'static str,
    user: &str,
    unlisted: &mut Vec<(&'static str, String)>,
) -> Result<Option<T>, CallError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_access_denied() => {
            unlisted.push((
                kind,
                format!("{} for iam user {user} was refused ({e})", e.op),
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn is_active(s: &aws_sdk_iam::types::StatusType) -> bool {
    matches!(s, aws_sdk_iam::types::StatusType::Active)
}

impl AwsProvider {
    /// Every access key of `user` (all pages). `Ok(None)` when the user does not exist.
    pub(crate) async fn list_keys_raw(
        &self,
        user: &str,
    ) -> Result<Option<Vec<(String, bool, Option<DateTime<Utc>>)>>, CallError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = match self
                .call(
                    "ListAccessKeys",
                    self.iam
                        .list_access_keys()
                        .user_name(user)
                        .set_marker(marker.take())
                        .send(),
                )
                .await
            {
                Ok(p) => p,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            };
            for k in page.access_key_metadata() {
                if let Some(id) = k.access_key_id() {
                    out.push((
                        id.to_string(),
                        k.status().is_some_and(is_active),
                        k.create_date().and_then(to_utc),
                    ));
                }
            }
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(Some(out))
    }

    /// Access keys of `user` with their last use (one `GetAccessKeyLastUsed` each, bounded).
    pub(crate) async fn list_keys(&self, user: &str) -> Result<Vec<KeyInfo>, CallError> {
        let raw = self.list_keys_raw(user).await?.unwrap_or_default();
        let keys: Vec<Result<KeyInfo, CallError>> = stream::iter(raw)
            .map(|(id, active, created)| async move {
                let mut info = KeyInfo {
                    id,
                    active,
                    created,
                    last_used: None,
                    last_used_service: None,
                    last_used_region: None,
                };
                match self
                    .call(
                        "GetAccessKeyLastUsed",
                        self.iam
                            .get_access_key_last_used()
                            .access_key_id(&info.id)
                            .send(),
                    )
                    .await
                {
                    Ok(out) => {
                        if let Some(lu) = out.access_key_last_used() {
                            info.last_used = lu.last_used_date().and_then(to_utc);
                            // AWS says N/A for a key never used; kept as AWS says it.
                            let known = |s: &str| (!s.is_empty()).then(|| s.to_string());
                            info.last_used_service = known(lu.service_name());
                            info.last_used_region = known(lu.region());
                        }
                    }
                    // Deleted between the two calls: report it without last use.
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
                Ok(info)
            })
            .buffer_unordered(self.gate.limits().max_in_flight)
            .collect()
            .await;
        let mut keys = keys.into_iter().collect::<Result<Vec<_>, _>>()?;
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(keys)
    }

    /// `Some(created)` when `user` has a login profile.
    pub(crate) async fn login_profile(
        &self,
        user: &str,
    ) -> Result<Option<Option<DateTime<Utc>>>, CallError> {
        match self
            .call(
                "GetLoginProfile",
                self.iam.get_login_profile().user_name(user).send(),
            )
            .await
        {
            Ok(out) => Ok(Some(
                out.login_profile().and_then(|lp| to_utc(lp.create_date())),
            )),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn list_ssh_keys(&self, user: &str) -> Result<Vec<StatusCred>, CallError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .call(
                    "ListSSHPublicKeys",
                    self.iam
                        .list_ssh_public_keys()
                        .user_name(user)
                        .set_marker(marker.take())
                        .send(),
                )
                .await?;
            for k in page.ssh_public_keys() {
                out.push(StatusCred {
                    id: k.ssh_public_key_id().to_string(),
                    active: is_active(k.status()),
                    created: to_utc(k.upload_date()),
                    extra: Vec::new(),
                });
            }
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    pub(crate) async fn list_certificates(&self, user: &str) -> Result<Vec<StatusCred>, CallError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .call(
                    "ListSigningCertificates",
                    self.iam
                        .list_signing_certificates()
                        .user_name(user)
                        .set_marker(marker.take())
                        .send(),
                )
                .await?;
            for c in page.certificates() {
                out.push(StatusCred {
                    id: c.certificate_id().to_string(),
                    active: is_active(c.status()),
                    created: c.upload_date().and_then(to_utc),
                    extra: Vec::new(),
                });
            }
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Service-specific credentials. `Ok(None)` when the endpoint does not implement the call
    /// (moto answers HTTP 500 with an HTML page).
    ///
    /// The first page is asked for without the SDK's retries, so an endpoint that does not
    /// implement the call costs one request instead of several backed-off ones; a 5xx that does
    /// carry an AWS error code (a real transient failure) is asked again with retries.
    pub(crate) async fn list_service_credentials(
        &self,
        user: &str,
    ) -> Result<Option<Vec<StatusCred>>, CallError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        let mut first = true;
        loop {
            let request = self
                .iam
                .list_service_specific_credentials()
                .user_name(user)
                .set_marker(marker.take());
            let page = if first {
                first = false;
                let once = request.clone().customize().config_override(
                    aws_sdk_iam::config::Builder::default()
                        .retry_config(aws_sdk_iam::config::retry::RetryConfig::disabled()),
                );
                match self
                    .call("ListServiceSpecificCredentials", once.send())
                    .await
                {
                    Ok(p) => p,
                    Err(e) if e.is_unimplemented() => return Ok(None),
                    // A 5xx with an AWS code, a throttle, or no answer at all (a reset
                    // connection, a timeout: issue 14 saw one end the apply): the probe ran
                    // without the SDK's retry, so ask again with it.
                    Err(e)
                        if matches!(e.status, Some(500..=599))
                            || e.is_throttling()
                            || matches!(
                                e.failure,
                                CallFailure::Dispatch | CallFailure::Timeout
                            ) =>
                    {
                        // Wait as a throttled answer asked before the retried call. The probe
                        // ran without the SDK's retry classifier, which tells the gate of every
                        // throttle: tell it here, so the provider's other calls wait too.
                        if e.is_throttling() {
                            self.gate.throttled(e.retry_after);
                        }
                        if let Some(wait) = e.retry_after {
                            tokio::time::sleep(wait).await;
                        }
                        // The probe's failure may have hidden an endpoint that does not implement
                        // the call at all: its retried answer says so just the same.
                        match self
                            .call("ListServiceSpecificCredentials", request.send())
                            .await
                        {
                            Ok(p) => p,
                            Err(e) if e.is_unimplemented() => return Ok(None),
                            Err(e) => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                }
            } else {
                self.call("ListServiceSpecificCredentials", request.send())
                    .await?
            };
            for c in page.service_specific_credentials() {
                out.push(StatusCred {
                    id: c.service_specific_credential_id().to_string(),
                    active: is_active(c.status()),
                    created: to_utc(c.create_date()),
                    extra: vec![
                        ("service", c.service_name().to_string()),
                        ("service_user_name", c.service_user_name().to_string()),
                    ],
                });
            }
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(Some(out))
    }

    pub(crate) async fn list_mfa(&self, user: &str) -> Result<Vec<MfaInfo>, CallError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .call(
                    "ListMFADevices",
                    self.iam
                        .list_mfa_devices()
                        .user_name(user)
                        .set_marker(marker.take())
                        .send(),
                )
                .await?;
            for d in page.mfa_devices() {
                out.push(MfaInfo {
                    serial: d.serial_number().to_string(),
                    enabled: to_utc(d.enable_date()),
                });
            }
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Everything credential-like of the person's user that GAAD does not list, concurrently.
    pub(crate) async fn user_credentials(&self, user: &str) -> Result<UserCredentials, CallError> {
        let (login, keys, ssh, certs, svc, mfa) = futures::join!(
            self.login_profile(user),
            self.list_keys(user),
            self.list_ssh_keys(user),
            self.list_certificates(user),
            self.list_service_credentials(user),
            self.list_mfa(user),
        );
        let mut u = Vec::new();
        let mut creds = UserCredentials {
            login_profile: listed(login, kinds::LOGIN_PROFILE, user, &mut u)?.flatten(),
            keys: listed(keys, kinds::ACCESS_KEY, user, &mut u)?.unwrap_or_default(),
            ssh_keys: listed(ssh, kinds::SSH_KEY, user, &mut u)?.unwrap_or_default(),
            certificates: listed(certs, kinds::SIGNING_CERTIFICATE, user, &mut u)?
                .unwrap_or_default(),
            mfa: listed(mfa, kinds::MFA_DEVICE, user, &mut u)?.unwrap_or_default(),
            ..Default::default()
        };
        match listed(svc, kinds::SERVICE_CREDENTIAL, user, &mut u)? {
            Some(Some(list)) => creds.service_credentials = list,
            Some(None) => {
                // Kept as a warning too: it is what people grep for; the gap is what counts.
                creds.warnings.push(
                    "service-specific credentials: endpoint does not implement ListServiceSpecificCredentials"
                        .into(),
                );
                u.push((
                    kinds::SERVICE_CREDENTIAL,
                    format!(
                        "the endpoint does not implement ListServiceSpecificCredentials: iam user {user}'s service-specific credentials (CodeCommit, Keyspaces, Bedrock) cannot be listed"
                    ),
                ));
            }
            None => {}
        }
        creds.unlisted = u;
        Ok(creds)
    }
}

/// A secret from `ListSecrets`, with its resource policy.
#[derive(Debug, Clone)]
pub struct SecretInfo {
    pub arn: String,
    pub name: String,
    pub tags: Vec<(String, String)>,
    pub policy: Option<PolicyDocument>,
    /// Why the resource policy could not be read in full (unparsable, or the read was refused).
    pub policy_problem: Option<String>,
    pub rotation_enabled: bool,
    /// When the secret last changed: the later of `LastChangedDate` (any modification, a new
    /// version included) and `LastRotatedDate` (see [`last_changed`]).
    pub last_changed: Option<DateTime<Utc>>,
}

/// What `load_secrets` read.
#[derive(Debug, Clone, Default)]
pub struct SecretListing {
    pub secrets: Vec<SecretInfo>,
    pub warnings: Vec<String>,
    /// Why the secrets could not be listed at all (`ListSecrets` refused): every secret unknown.
    pub refused: Option<String>,
}

/// The later of a secret's `LastChangedDate` and `LastRotatedDate`. On AWS both are at or after
/// the current version's creation, so either bounds it from above; moto 5.2 leaves
/// `LastChangedDate` alone on `RotateSecret` and sets only `LastRotatedDate`.
pub fn last_changed(
    changed: Option<&aws_smithy_types::DateTime>,
    rotated: Option<&aws_smithy_types::DateTime>,
) -> Option<DateTime<Utc>> {
    match (changed.and_then(to_utc), rotated.and_then(to_utc)) {
        (Some(c), Some(r)) => Some(c.max(r)),
        (c, r) => c.or(r),
    }
}

/// The staging label of a secret's current version.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The staging label of the version a rotation replaced.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";
/// The staging label of a version being rotated in.
pub const AWSPENDING: &str = "AWSPENDING";

/// One version of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub id: String,
    pub stages: Vec<String>,
    pub created: Option<DateTime<Utc>>,
}

impl Version {
    pub fn has(&self, stage: &str) -> bool {
        self.stages.iter().any(|s| s == stage)
    }
}

/// The versions of one secret.
#[derive(Debug, Clone, Default)]
pub struct SecretVersions {
    pub versions: Vec<Version>,
    /// The secret's `LastChangedDate` or later `LastRotatedDate`, which bounds every version's
    /// creation date from above.
    pub last_changed: Option<DateTime<Utc>>,
}

impl SecretVersions {
    /// When the `AWSCURRENT` version was created.
    ///
    /// moto 5.2 reports the time of the request as every version's `CreatedDate` in
    /// `ListSecretVersionIds` (AWS reports the real one). A secret's `LastChangedDate` is updated
    /// by every new version (and `LastRotatedDate` when a rotation finishes), so the later of
    /// them is never earlier than the current version's creation on AWS; taking the earlier of
    /// that and `CreatedDate` is exact on AWS and corrects moto.
    pub fn current_created(&self) -> Option<DateTime<Utc>> {
        let created = self.with_stage(AWSCURRENT)?.created;
        match (created, self.last_changed) {
            (Some(c), Some(l)) => Some(c.min(l)),
            (c, l) => c.or(l),
        }
    }

    pub fn with_stage(&self, stage: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.has(stage))
    }

    pub fn by_id(&self, id: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.id == id)
    }
}

impl AwsProvider {
    /// Every secret (all pages; `ListSecrets` returns the tags) and, when `policies`, per secret
    /// its resource policy (`GetResourcePolicy`, which the list does not include; bounded
    /// concurrency). Without `policies` no resource policy is read: the caller knows none can
    /// matter (nothing of the identity's is a principal a policy could name).
    pub(crate) async fn load_secrets(&self, policies: bool) -> Result<SecretListing, CallError> {
        let mut secrets = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = match self
                .call(
                    "ListSecrets",
                    self.sm.list_secrets().set_next_token(token.take()).send(),
                )
                .await
            {
                Ok(page) => page,
                Err(e) if e.is_access_denied() => {
                    return Ok(SecretListing {
                        refused: Some(format!("ListSecrets was refused ({e})")),
                        ..Default::default()
                    })
                }
                Err(e) => return Err(e),
            };
            for s in page.secret_list() {
                let (Some(arn), Some(name)) = (s.arn(), s.name()) else {
                    continue;
                };
                if s.deleted_date().is_some() {
                    continue;
                }
                secrets.push(SecretInfo {
                    arn: arn.to_string(),
                    name: name.to_string(),
                    tags: s
                        .tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                        .collect(),
                    policy: None,
                    policy_problem: None,
                    rotation_enabled: s.rotation_enabled().unwrap_or(false),
                    last_changed: last_changed(s.last_changed_date(), s.last_rotated_date()),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        // (secret index, the policy text, or why it could not be read)
        type PolicyRead = Result<(usize, Result<Option<String>, String>), CallError>;
        let to_read: Vec<(usize, String)> = if policies {
            secrets.iter().map(|s| s.arn.clone()).enumerate().collect()
        } else {
            Vec::new()
        };
        let policies: Vec<PolicyRead> = stream::iter(to_read)
            .map(|(i, arn)| async move {
                match self
                    .call(
                        "GetResourcePolicy",
                        self.sm.get_resource_policy().secret_id(arn).send(),
                    )
                    .await
                {
                    Ok(out) => Ok((i, Ok(out.resource_policy().map(str::to_string)))),
                    Err(e) if e.is_not_found() => Ok((i, Ok(None))),
                    Err(e) if e.is_access_denied() => {
                        Ok((i, Err(format!("GetResourcePolicy was refused ({e})"))))
                    }
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(self.gates.of("GetResourcePolicy").limits().max_in_flight)
            .collect()
            .await;
        let mut warnings = Vec::new();
        for r in policies {
            let (i, text) = r?;
            let what = format!("resource policy of secret {}", secrets[i].name);
            match text {
                Ok(Some(text)) if !text.trim().is_empty() => {
                    (secrets[i].policy, secrets[i].policy_problem) =
                        parse_doc(&what, &text, &mut warnings);
                }
                Ok(_) => {}
                Err(why) => {
                    warnings.push(format!("{what}: {why}"));
                    secrets[i].policy_problem = Some(format!("{what}: {why}"));
                }
            }
        }
        secrets.sort_by(|a, b| a.arn.cmp(&b.arn));
        Ok(SecretListing {
            secrets,
            warnings,
            refused: None,
        })
    }

    /// The shape of a secret's `AWSCURRENT` value (plain, binary, a JSON object's field names),
    /// so the plan can say which rotation strategy it gets; the value itself is dropped here.
    /// `Ok(None)` when the secret or its current version does not exist.
    pub(crate) async fn secret_shape(
        &self,
        secret: &str,
    ) -> Result<Option<closeout_contract::Shape>, CallError> {
        let out = match self
            .call(
                "GetSecretValue",
                self.sm
                    .get_secret_value()
                    .secret_id(secret)
                    .version_stage(crate::inventory::AWSCURRENT)
                    .send(),
            )
            .await
        {
            Ok(o) => o,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(match out.secret_string() {
            Some(s) => closeout_contract::Shape::of(s),
            None => closeout_contract::Shape::Binary,
        }))
    }

    /// The value of `secret` at `stage` (or version `id`); `None` when there is none.
    pub(crate) async fn secret_value_at(
        &self,
        secret: &str,
        stage: Option<&str>,
        id: Option<&str>,
    ) -> Result<Option<closeout_contract::SecretValue>, CallError> {
        let got = self
            .call(
                "GetSecretValue",
                self.sm
                    .get_secret_value()
                    .secret_id(secret)
                    .set_version_stage(stage.map(str::to_string))
                    .set_version_id(id.map(str::to_string))
                    .send(),
            )
            .await;
        match got {
            Ok(v) => Ok(v.secret_string().map(closeout_contract::SecretValue::new)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The versions of a secret (all pages). `Ok(None)` when the secret does not exist.
    pub(crate) async fn secret_versions(
        &self,
        secret: &str,
    ) -> Result<Option<SecretVersions>, CallError> {
        let mut out = SecretVersions::default();
        let mut token: Option<String> = None;
        loop {
            let page = match self
                .call(
                    "ListSecretVersionIds",
                    self.sm
                        .list_secret_version_ids()
                        .secret_id(secret)
                        .set_next_token(token.take())
                        .send(),
                )
                .await
            {
                Ok(p) => p,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            };
            for v in page.versions() {
                if let Some(id) = v.version_id() {
                    out.versions.push(Version {
                        id: id.to_string(),
                        stages: v.version_stages().to_vec(),
                        created: v.created_date().and_then(to_utc),
                    });
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(Some(out))
    }
}
