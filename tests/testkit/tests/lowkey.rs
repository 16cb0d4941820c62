//! The testkit starts a real Lowkey Vault, and the official Azure SDK for Rust Key Vault crates
//! talk to it (a spike for the Azure provider; what it proves is written down in
//! tests/testkit/LOWKEY.md).
//!
//! The SDK is set up the way the provider will set it up, except for the credential:
//! - a `reqwest` client that maps `<vault>.lowkey-vault.local` to 127.0.0.1 and trusts only
//!   Lowkey's certificate, handed to the SDK as its `Transport`;
//! - `api_version` 7.6 (the crates default to 2025-07-01, which Lowkey 3.4 does not serve);
//! - challenge-resource verification left on: Lowkey announces `https://lowkey-vault.local`;
//! - a fixed bearer token (Lowkey accepts any); real code uses `azure_identity`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, RetryOptions, StatusCode, Transport};
use azure_core::time::{Duration, OffsetDateTime};
use closeout_testkit::lowkey::vault_host;
use closeout_testkit::LowkeyVaultServer;
use futures::TryStreamExt;

/// The Key Vault REST api-version Lowkey 3.4 serves (its newest).
const API_VERSION: &str = "7.6";

/// The scope the SDK derives from Lowkey's challenge (`resource="https://lowkey-vault.local"`).
const LOWKEY_SCOPE: &str = "https://lowkey-vault.local/.default";

/// A credential that hands out one fixed token and records the scopes it was asked for.
#[derive(Debug, Default)]
struct FixedToken {
    scopes: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl TokenCredential for FixedToken {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.scopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(scopes.iter().map(|s| s.to_string()));
        Ok(AccessToken::new(
            "lowkey-accepts-any-token",
            OffsetDateTime::now_utc() + Duration::hours(1),
        ))
    }
}

impl FixedToken {
    fn scopes(&self) -> Vec<String> {
        self.scopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The SDK's client options: our reqwest client as the transport, no retries (a failure here
/// should show at once, not after back-off).
fn client_options(lowkey: &LowkeyVaultServer, vaults: &[&str]) -> ClientOptions {
    let cert = reqwest::Certificate::from_der(lowkey.cert_der())
        .unwrap_or_else(|e| panic!("Lowkey's certificate is not DER: {e}"));
    let mut builder = reqwest::Client::builder().tls_certs_only([cert]);
    for vault in vaults {
        builder = builder.resolve(&vault_host(vault), lowkey.socket_addr());
    }
    let http = builder
        .build()
        .unwrap_or_else(|e| panic!("cannot build the reqwest client: {e}"));
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        retry: RetryOptions::none(),
        ..Default::default()
    }
}

fn tags(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[test]
fn lowkey_starts_serves_its_certificate_and_dies_with_its_handle() {
    let lowkey = LowkeyVaultServer::builder().vault("hr").start();
    assert_ne!(lowkey.port(), lowkey.token_port());
    assert_eq!(
        lowkey.vault_url("hr"),
        format!("https://hr.lowkey-vault.local:{}", lowkey.port())
    );
    let pem = lowkey.cert_pem();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
    assert!(!lowkey.cert_der().is_empty());

    // A vault added while the server runs is a second URL on the same port.
    let url = lowkey.create_vault("finance");
    assert_eq!(url, lowkey.vault_url("finance"));

    let port = lowkey.port();
    drop(lowkey);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "Lowkey still listens on {port} after its handle was dropped"
    );
}

#[tokio::test]
async fn secrets_round_trip_through_the_sdk() {
    use azure_security_keyvault_secrets::models::{
        SecretAttributes, SecretClientGetSecretOptions, SecretClientUpdateSecretPropertiesOptions,
        SetSecretParameters, UpdateSecretPropertiesParameters,
    };
    use azure_security_keyvault_secrets::{ResourceExt as _, SecretClient, SecretClientOptions};

    let lowkey = LowkeyVaultServer::builder().vault("hr").start();
    let credential = Arc::new(FixedToken::default());
    let client = SecretClient::new(
        &lowkey.vault_url("hr"),
        credential.clone(),
        Some(SecretClientOptions {
            api_version: API_VERSION.to_string(),
            client_options: client_options(&lowkey, &["hr"]),
            verify_challenge_resource: Some(true),
        }),
    )
    .expect("SecretClient::new");
    let fail = |what: &str, e: azure_core::Error| -> ! {
        panic!("{what}: {e:?}\nLowkey's output:\n{}", lowkey.output_tail())
    };

    // Set, then get.
    let first = SetSecretParameters {
        value: Some("first-value".into()),
        content_type: Some("text/plain".into()),
        tags: tags(&[("owner", "alice")]),
        ..Default::default()
    };
    let first = client
        .set_secret("db-password", first.try_into().expect("body"), None)
        .await
        .unwrap_or_else(|e| fail("set_secret", e))
        .into_model()
        .expect("Secret");
    let first_version = first
        .resource_id()
        .expect("secret id")
        .version
        .expect("a version in the id");
    assert!(
        first
            .id
            .as_deref()
            .unwrap_or_default()
            .starts_with(&lowkey.vault_url("hr")),
        "{:?}",
        first.id
    );
    let got = client
        .get_secret("db-password", None)
        .await
        .unwrap_or_else(|e| fail("get_secret", e))
        .into_model()
        .expect("Secret");
    assert_eq!(got.value.as_deref(), Some("first-value"));
    assert_eq!(
        credential.scopes().first().map(String::as_str),
        Some(LOWKEY_SCOPE)
    );

    // A new version.
    let second = SetSecretParameters {
        value: Some("second-value".into()),
        tags: tags(&[("owner", "alice"), ("rotated-by", "closeout")]),
        ..Default::default()
    };
    let second = client
        .set_secret("db-password", second.try_into().expect("body"), None)
        .await
        .unwrap_or_else(|e| fail("set_secret (new version)", e))
        .into_model()
        .expect("Secret");
    let second_version = second.resource_id().expect("id").version.expect("version");
    assert_ne!(first_version, second_version);

    let versions: Vec<_> = client
        .list_secret_properties_versions("db-password", None)
        .expect("pager")
        .try_collect()
        .await
        .unwrap_or_else(|e| fail("list_secret_properties_versions", e));
    let mut listed: Vec<String> = versions
        .iter()
        .map(|p| p.resource_id().expect("id").version.expect("version"))
        .collect();
    listed.sort();
    let mut expected = vec![first_version.clone(), second_version.clone()];
    expected.sort();
    assert_eq!(listed, expected);

    // Disable the old version (PATCH /secrets/{name}/{version}).
    let disable = UpdateSecretPropertiesParameters {
        secret_attributes: Some(SecretAttributes {
            enabled: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    let disabled = client
        .update_secret_properties(
            "db-password",
            disable.try_into().expect("body"),
            Some(SecretClientUpdateSecretPropertiesOptions {
                secret_version: Some(first_version.clone()),
                ..Default::default()
            }),
        )
        .await
        .unwrap_or_else(|e| fail("update_secret_properties (disable old version)", e))
        .into_model()
        .expect("Secret");
    assert_eq!(
        disabled.attributes.as_ref().and_then(|a| a.enabled),
        Some(false)
    );

    // Reading a disabled version fails: 404 from Lowkey (Azure answers 403 Forbidden).
    let err = client
        .get_secret(
            "db-password",
            Some(SecretClientGetSecretOptions {
                secret_version: Some(first_version.clone()),
                ..Default::default()
            }),
        )
        .await
        .expect_err("a disabled version must not be readable");
    assert!(
        matches!(
            err.http_status(),
            Some(StatusCode::NotFound) | Some(StatusCode::Forbidden)
        ),
        "reading a disabled version: {err:?}"
    );
    eprintln!(
        "lowkey: reading a disabled secret version answers {:?}",
        err.http_status()
    );

    // The latest version is still readable.
    let latest = client
        .get_secret("db-password", None)
        .await
        .unwrap_or_else(|e| fail("get_secret (latest)", e))
        .into_model()
        .expect("Secret");
    assert_eq!(latest.value.as_deref(), Some("second-value"));

    // List secrets with their tags (the latest version's).
    client
        .set_secret(
            "api-key",
            SetSecretParameters {
                value: Some("k".into()),
                tags: tags(&[("owner", "bob")]),
                ..Default::default()
            }
            .try_into()
            .expect("body"),
            None,
        )
        .await
        .unwrap_or_else(|e| fail("set_secret api-key", e));
    let secrets: Vec<_> = client
        .list_secret_properties(None)
        .expect("pager")
        .try_collect()
        .await
        .unwrap_or_else(|e| fail("list_secret_properties", e));
    let mut by_name: Vec<(String, Option<String>)> = secrets
        .iter()
        .map(|p| {
            (
                p.resource_id().expect("id").name,
                p.tags.as_ref().and_then(|t| t.get("owner").cloned()),
            )
        })
        .collect();
    by_name.sort();
    assert_eq!(
        by_name,
        [
            ("api-key".to_string(), Some("bob".to_string())),
            ("db-password".to_string(), Some("alice".to_string())),
        ]
    );
}

#[tokio::test]
async fn keys_create_and_rotate_through_the_sdk() {
    use azure_security_keyvault_keys::models::{CreateKeyParameters, KeyType};
    use azure_security_keyvault_keys::{KeyClient, KeyClientOptions, ResourceExt as _};

    let lowkey = LowkeyVaultServer::builder().vault("keys").start();
    let client = KeyClient::new(
        &lowkey.vault_url("keys"),
        Arc::new(FixedToken::default()),
        Some(KeyClientOptions {
            api_version: API_VERSION.to_string(),
            client_options: client_options(&lowkey, &["keys"]),
            verify_challenge_resource: Some(true),
        }),
    )
    .expect("KeyClient::new");
    let fail = |what: &str, e: azure_core::Error| -> ! {
        panic!("{what}: {e:?}\nLowkey's output:\n{}", lowkey.output_tail())
    };

    let params = || CreateKeyParameters {
        kty: Some(KeyType::Rsa),
        key_size: Some(2048),
        tags: tags(&[("owner", "alice")]),
        ..Default::default()
    };
    let first = client
        .create_key("signing", params().try_into().expect("body"), None)
        .await
        .unwrap_or_else(|e| fail("create_key", e))
        .into_model()
        .expect("Key");
    let first_version = first.resource_id().expect("kid").version.expect("version");

    let rotated = client
        .rotate_key("signing", None)
        .await
        .unwrap_or_else(|e| fail("rotate_key", e))
        .into_model()
        .expect("Key");
    let rotated_version = rotated
        .resource_id()
        .expect("kid")
        .version
        .expect("version");
    assert_ne!(first_version, rotated_version);

    // Creating the same name again is another way to make a new version.
    client
        .create_key("signing", params().try_into().expect("body"), None)
        .await
        .unwrap_or_else(|e| fail("create_key (new version)", e));

    let versions: Vec<_> = client
        .list_key_properties_versions("signing", None)
        .expect("pager")
        .try_collect()
        .await
        .unwrap_or_else(|e| fail("list_key_properties_versions", e));
    assert_eq!(versions.len(), 3, "{versions:?}");
}

#[tokio::test]
async fn certificates_create_self_signed_versions_through_the_sdk() {
    use azure_security_keyvault_certificates::models::{
        CertificatePolicy, CreateCertificateParameters, IssuerParameters, KeyProperties, KeyType,
        X509CertificateProperties,
    };
    use azure_security_keyvault_certificates::{
        CertificateClient, CertificateClientOptions, ResourceExt as _,
    };

    let lowkey = LowkeyVaultServer::builder().vault("certs").start();
    let client = CertificateClient::new(
        &lowkey.vault_url("certs"),
        Arc::new(FixedToken::default()),
        Some(CertificateClientOptions {
            api_version: API_VERSION.to_string(),
            client_options: client_options(&lowkey, &["certs"]),
            verify_challenge_resource: Some(true),
        }),
    )
    .expect("CertificateClient::new");
    let fail = |what: &str, e: azure_core::Error| -> ! {
        panic!("{what}: {e:?}\nLowkey's output:\n{}", lowkey.output_tail())
    };

    let params = || CreateCertificateParameters {
        certificate_policy: Some(CertificatePolicy {
            x509_certificate_properties: Some(X509CertificateProperties {
                subject: Some("CN=closeout-test".into()),
                validity_in_months: Some(12),
                ..Default::default()
            }),
            issuer_parameters: Some(IssuerParameters {
                name: Some("Self".into()),
                ..Default::default()
            }),
            key_properties: Some(KeyProperties {
                key_type: Some(KeyType::Rsa),
                key_size: Some(2048),
                exportable: Some(true),
                reuse_key: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        }),
        tags: tags(&[("owner", "alice")]),
        ..Default::default()
    };
    let first = client
        .begin_create_certificate("tls", params().try_into().expect("body"), None)
        .unwrap_or_else(|e| fail("begin_create_certificate", e))
        .await
        .unwrap_or_else(|e| fail("create certificate (poller)", e))
        .into_model()
        .expect("Certificate");
    let first_version = first.resource_id().expect("id").version.expect("version");
    assert!(
        first.cer.as_ref().is_some_and(|c| !c.is_empty()),
        "no DER in {first:?}"
    );

    let second = client
        .begin_create_certificate("tls", params().try_into().expect("body"), None)
        .unwrap_or_else(|e| fail("begin_create_certificate (new version)", e))
        .await
        .unwrap_or_else(|e| fail("create certificate (new version, poller)", e))
        .into_model()
        .expect("Certificate");
    let second_version = second.resource_id().expect("id").version.expect("version");
    assert_ne!(first_version, second_version);

    let versions: Vec<_> = client
        .list_certificate_properties_versions("tls", None)
        .expect("pager")
        .try_collect()
        .await
        .unwrap_or_else(|e| fail("list_certificate_properties_versions", e));
    assert_eq!(versions.len(), 2, "{versions:?}");
}
