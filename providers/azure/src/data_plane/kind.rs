//! The one place the three kinds of object differ for reading and retiring: which SDK call lists
//! them, lists a name's versions, reads the current version and disables one version, and how
//! its model reads into a [`Row`]. Everything else (paging under the gate, summaries, the
//! current-version fallback, disabling old versions) is written once in `client` over
//! [`ObjectKind`].

use super::model::{tags_of, unix, Row};
use super::transport::VaultClients;
use crate::object::ObjectType;
use azure_core::http::pager::{PageIterator, PagerContinuation, PagerOptions};
use azure_core::http::Response;
use azure_security_keyvault_certificates::models::{
    CertificateAttributes, CertificateClientListCertificatePropertiesOptions,
    CertificateClientListCertificatePropertiesVersionsOptions,
    CertificateClientUpdateCertificatePropertiesOptions, CertificateProperties,
    ListCertificatePropertiesResult, UpdateCertificatePropertiesParameters,
};
use azure_security_keyvault_keys::models::{
    KeyAttributes, KeyClientListKeyPropertiesOptions, KeyClientListKeyPropertiesVersionsOptions,
    KeyClientUpdateKeyPropertiesOptions, KeyProperties, ListKeyPropertiesResult,
    UpdateKeyPropertiesParameters,
};
use azure_security_keyvault_secrets::models::{
    ListSecretPropertiesResult, SecretAttributes, SecretClientListSecretPropertiesOptions,
    SecretClientListSecretPropertiesVersionsOptions, SecretClientUpdateSecretPropertiesOptions,
    SecretProperties, UpdateSecretPropertiesParameters,
};
use std::collections::HashMap;
use std::future::Future;

/// Where a listing starts: `None` at its first page, else at the page a continuation (the
/// `nextLink` of the page before) names — to retry one failed page rather than the listing.
pub(super) type StartPage = Option<PagerContinuation>;

/// The pager options of a listing that starts at `from`.
fn starting_at(from: StartPage) -> PagerOptions<'static> {
    PagerOptions {
        continuation: from,
        ..PagerOptions::default()
    }
}

/// One kind of Key Vault object, as the SDK reads and retires it.
pub(super) trait ObjectKind: Send + Sync + 'static {
    /// The kind.
    const TYPE: ObjectType;
    /// Whether a current version Key Vault refuses to read (a disabled secret answers 403
    /// `SecretDisabled`; Lowkey answers 404) is taken from the versions list instead. Keys and
    /// certificates show a disabled current version.
    const CURRENT_FROM_VERSIONS_WHEN_UNREADABLE: bool;
    /// One page of a listing.
    type Page: Send + 'static;

    /// Every object's current version (`GET /{kind}`), page by page, from the page `from`
    /// links to (`None`: the first).
    fn list(
        c: &VaultClients,
        from: StartPage,
    ) -> azure_core::Result<PageIterator<Response<Self::Page>>>;
    /// Every version of `name` (`GET /{kind}/{name}/versions`), page by page, from `from`.
    fn versions(
        c: &VaultClients,
        name: &str,
        from: StartPage,
    ) -> azure_core::Result<PageIterator<Response<Self::Page>>>;
    /// The rows of one page.
    fn rows(page: Response<Self::Page>) -> azure_core::Result<Vec<Row>>;
    /// The current version of `name` (`GET /{kind}/{name}`); a secret's value is dropped unread.
    fn current(
        c: &VaultClients,
        name: &str,
    ) -> impl Future<Output = azure_core::Result<Row>> + Send;
    /// Disable one version (`PATCH /{kind}/{name}/{version}` with `enabled: false`).
    fn disable(
        c: &VaultClients,
        name: &str,
        version: &str,
    ) -> impl Future<Output = azure_core::Result<()>> + Send;
}

/// Secrets.
pub(super) struct Secrets;
/// Keys.
pub(super) struct Keys;
/// Certificates.
pub(super) struct Certificates;

type Tags = Option<HashMap<String, String>>;

fn secret_row(
    id: Option<String>,
    a: Option<SecretAttributes>,
    tags: Tags,
    managed: Option<bool>,
    content_type: Option<String>,
) -> Row {
    let a = a.unwrap_or_default();
    Row {
        id,
        enabled: a.enabled,
        created: unix(a.created),
        updated: unix(a.updated),
        expires: unix(a.expires),
        tags: tags_of(tags),
        managed: managed.unwrap_or(false),
        content_type,
    }
}

fn key_row(id: Option<String>, a: Option<KeyAttributes>, tags: Tags, managed: Option<bool>) -> Row {
    let a = a.unwrap_or_default();
    Row {
        id,
        enabled: a.enabled,
        created: unix(a.created),
        updated: unix(a.updated),
        expires: unix(a.expires),
        tags: tags_of(tags),
        managed: managed.unwrap_or(false),
        // Keys have no content type.
        content_type: None,
    }
}

fn certificate_row(id: Option<String>, a: Option<CertificateAttributes>, tags: Tags) -> Row {
    let a = a.unwrap_or_default();
    Row {
        id,
        enabled: a.enabled,
        created: unix(a.created),
        updated: unix(a.updated),
        expires: unix(a.expires),
        tags: tags_of(tags),
        // A certificate is never managed by another object.
        managed: false,
        content_type: None,
    }
}

impl ObjectKind for Secrets {
    const TYPE: ObjectType = ObjectType::Secrets;
    const CURRENT_FROM_VERSIONS_WHEN_UNREADABLE: bool = true;
    type Page = ListSecretPropertiesResult;

    fn list(
        c: &VaultClients,
        from: StartPage,
    ) -> azure_core::Result<PageIterator<Response<Self::Page>>> {
        let options = SecretClientListSecretPropertiesOptions {
            method_options: starting_at(from),
            ..Default::default()
        };
        Ok(c.secrets
            .list_secret_properties(Some(options))?
            .into_pages())
    }

    fn versions(
        c: &VaultClients,
        name: &str,
        from: StartPage,
    ) -> azure_core::Result<PageIterator<Response<Self::Page>>> {
        let options = SecretClientListSecretPropertiesVersionsOptions {
            method_options: starting_at(from),
            ..Default::default()
        };
        Ok(c.secrets
            .list_secret_properties_versions(name, Some(options))?
            .into_pages())
    }

    fn rows(page: Response<Self::Page>) -> azure_core::Result<Vec<Row>> {
        Ok(page
            .into_model()?
            .value
            .into_iter()
            .map(|p: SecretProperties| {
                secret_row(p.id, p.attributes, p.tags, p.managed, p.content_type)
            })
            .collect())
    }

    async fn current(c: &VaultClients, name: &str) -> azure_core::Result<Row> {
        let s = c.secrets.get_secret(name, None).await?.into_model()?;
        // The value is dropped here, unread.
        Ok(secret_row(
            s.id,
            s.attributes,
            s.tags,
            s.managed,
            s.content_type,
        ))
    }

    async fn disable(c: &VaultClients, name: &str, version: &str) -> azure_core::Result<()> {
        let body = UpdateSecretPropertiesParameters {
            secret_attributes: Some(SecretAttributes {
                enabled: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = SecretClientUpdateSecretPropertiesOptions {
            secret_version: Some(version.to_string()),
            ..Default::default()
        };
        c.secrets
            .update_secret_properties(name, body.try_into()?, Some(options))
            .await?;
        Ok(())
    }
}

impl ObjectKind for Keys {
    const TYPE: ObjectType = ObjectType::Keys;
    const CURRENT_FROM_VERSIONS_WHEN_UNREADABLE: bool = false;
    type Page = ListKeyPropertiesResult;

    fn list(
        c: &VaultClients,
        from: StartPage,
    ) -> azure_core::Result<PageIterator<Response<Self::Page>>> {
        let options = KeyClientListKeyPropertiesOptions {
            method_options: starting_at(from),
            ..Default::default()
        };
        Ok(c.keys.list_key_properties(Some(options))?.into_pages())
    }

    fn versions(
        c: &VaultClients,
        name: &str,
        from: StartPage,
    ) -> azure_core::Result<PageIterator<Response<Self::Page>>> {
        let options = KeyClientListKeyPropertiesVersionsOptions {
            method_options: starting_at(from),
            ..Default::default()
        };
        Ok(c.keys
            .list_key_properties_versions(name, Some(options))?
            .into_pages())
    }

    fn rows(page: Response<Self::Page>) -> azure_core::Result<Vec<Row>> {
        Ok(page
            .into_model()?
            .value
            .into_iter()
            .map(|p: KeyProperties| key_row(p.kid, p.attributes, p.tags, p.managed))
            .collect())
    }

    async fn current(c: &VaultClients, name: &str) -> azure_core::Result<Row> {
        let k = c.keys.get_key(name, None).await?.into_model()?;
        Ok(key_row(
            k.key.and_then(|j| j.kid),
            k.attributes,
            k.tags,
            k.managed,
        ))
    }

    async fn disable(c: &VaultClients, name: &str, version: &str) -> azure_core::Result<()> {
        let body = UpdateKeyPropertiesParameters {
            key_attributes: Some(KeyAttributes {
                enabled: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = KeyClientUpdateKeyPropertiesOptions {
            key_version: Some(version.to_string()),
            ..Default::default()
        };
        c.keys
            .update_key_properties(name, body.try_into()?, Some(options))
            .await?;
        Ok(())
    }
}

impl ObjectKind for Certificates {
    const TYPE: ObjectType = ObjectType::Certificates;
    const CURRENT_FROM_VERSIONS_WHEN_UNREADABLE: bool = false;
    type Page = ListCertificatePropertiesResult;

    fn list(
        c: &VaultClients,
        from: StartPage,
    ) -> azure_core::Result<PageIterator<Response<Self::Page>>> {
        let options = CertificateClientListCertificatePropertiesOptions {
            method_options: starting_at(from),
            ..Default::default()
        };
        Ok(c.certificates
            .list_certificate_properties(Some(options))?
            .into_pages())
    }

    fn versions(
        c: &VaultClients,
        name: &str,
        from: StartPage,
    ) -> azure_core::Result<PageIterator<Response<Self::Page>>> {
        let options = CertificateClientListCertificatePropertiesVersionsOptions {
            method_options: starting_at(from),
            ..Default::default()
        };
        Ok(c.certificates
            .list_certificate_properties_versions(name, Some(options))?
            .into_pages())
    }

    fn rows(page: Response<Self::Page>) -> azure_core::Result<Vec<Row>> {
        Ok(page
            .into_model()?
            .value
            .into_iter()
            .map(|p: CertificateProperties| certificate_row(p.id, p.attributes, p.tags))
            .collect())
    }

    async fn current(c: &VaultClients, name: &str) -> azure_core::Result<Row> {
        let cert = c
            .certificates
            .get_certificate(name, None)
            .await?
            .into_model()?;
        Ok(certificate_row(cert.id, cert.attributes, cert.tags))
    }

    async fn disable(c: &VaultClients, name: &str, version: &str) -> azure_core::Result<()> {
        let body = UpdateCertificatePropertiesParameters {
            certificate_attributes: Some(CertificateAttributes {
                enabled: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CertificateClientUpdateCertificatePropertiesOptions {
            certificate_version: Some(version.to_string()),
            ..Default::default()
        };
        c.certificates
            .update_certificate_properties(name, body.try_into()?, Some(options))
            .await?;
        Ok(())
    }
}
