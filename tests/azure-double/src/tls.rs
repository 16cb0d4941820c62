//! The double's certificates: a CA generated at start and a server certificate it signs, whose
//! SANs cover `localhost`, `127.0.0.1`, `::1`, `azure-double.local`, `*.azure-double.local`, and
//! the vault DNS suffix and `*.` of it (vault hosts `{vault}.{suffix}` for the data plane).

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::DoubleError;

/// The certificates of one running double.
#[derive(Clone)]
pub struct CertBundle {
    /// The CA certificate (PEM): what clients trust.
    pub ca_pem: String,
    /// The server certificate (PEM).
    pub leaf_pem: String,
    ca_der: Vec<u8>,
    leaf_der: Vec<u8>,
    leaf_key_der: Vec<u8>,
}

impl std::fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertBundle").finish_non_exhaustive()
    }
}

/// Names the server certificate is valid for.
pub const SUBJECT_ALT_NAMES: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "::1",
    "azure-double.local",
    "*.azure-double.local",
];

pub fn generate(vault_dns_suffix: &str) -> Result<CertBundle, DoubleError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let mut ca_dn = DistinguishedName::new();
    ca_dn.push(DnType::CommonName, "Closeout Azure double test CA");
    ca_dn.push(DnType::OrganizationName, "Closeout tests");
    ca_params.distinguished_name = ca_dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut names: Vec<String> = SUBJECT_ALT_NAMES.iter().map(|s| s.to_string()).collect();
    let suffix = vault_dns_suffix.trim_matches('.').to_ascii_lowercase();
    if !suffix.is_empty() {
        names.push(format!("*.{suffix}"));
        names.push(suffix);
    }
    let mut leaf_params = CertificateParams::new(names)?;
    let mut leaf_dn = DistinguishedName::new();
    leaf_dn.push(DnType::CommonName, "azure-double.local");
    leaf_params.distinguished_name = leaf_dn;
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

    Ok(CertBundle {
        ca_pem: ca_cert.pem(),
        leaf_pem: leaf_cert.pem(),
        ca_der: ca_cert.der().to_vec(),
        leaf_der: leaf_cert.der().to_vec(),
        leaf_key_der: leaf_key.serialize_der(),
    })
}

pub fn acceptor(certs: &CertBundle) -> Result<tokio_rustls::TlsAcceptor, DoubleError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = vec![
        CertificateDer::from(certs.leaf_der.clone()),
        CertificateDer::from(certs.ca_der.clone()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certs.leaf_key_der.clone()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
