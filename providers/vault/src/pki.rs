//! PKI certificates issued to the person, in every `pki` mount: matched on the subject CN, a SAN
//! email or a SAN URI, parsed from the PEM; revoked by serial, then the CRL is rotated; the probe
//! reads the CRL and looks for the serial.

use crate::capabilities::{kinds, PROVIDER};
use crate::client::{found, seg, CallError};
use crate::config::VaultConfig;
use crate::findings::{finding, listed};
use crate::server::VaultProvider;
use closeout_contract::{
    ActionOutcome, ActionRequest, Finding, Holder, Identity, Path, ProbeOutcome, ProviderError,
    Relation, Resolution, State,
};
use futures::stream::{self, StreamExt, TryStreamExt};
use vaultrs::api::pki::responses::{ReadCertificateResponse, RotateCRLsResponse};
use x509_parser::extensions::GeneralName;

/// `<mount>/cert/<serial>` and `<mount>/cert/crl`: the fields Closeout reads.
#[derive(Debug)]
struct CertData {
    certificate: String,
    revocation_time: i64,
}

impl From<vaultrs::api::pki::responses::ReadCertificateResponse> for CertData {
    fn from(r: vaultrs::api::pki::responses::ReadCertificateResponse) -> Self {
        CertData {
            certificate: r.certificate,
            revocation_time: r.revocation_time,
        }
    }
}

/// What Closeout reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub common_name: Vec<String>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
    /// Unix seconds.
    pub not_after: i64,
    /// Lower-case hex, `:`-separated (Vault's form).
    pub serial: String,
}

/// Parse one PEM certificate.
pub fn cert_facts(pem: &str) -> Option<CertFacts> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    let (mut emails, mut uris) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::RFC822Name(e) => emails.push(e.to_string()),
                GeneralName::URI(u) => uris.push(u.to_string()),
                _ => {}
            }
        }
    }
    Some(CertFacts {
        common_name,
        emails,
        uris,
        not_after: cert.validity().not_after.timestamp(),
        serial: hex_serial(cert.raw_serial()),
    })
}

/// Vault's form of a serial: the integer's bytes without leading zeros (a DER INTEGER gains a
/// `00` when its top bit is set; Vault prints `big.Int` bytes), `:`-separated lower-case hex.
fn hex_serial(raw: &[u8]) -> String {
    let first = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    raw[first..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Why a certificate was issued to the identity, if it was.
pub fn issued_to(config: &VaultConfig, identity: &Identity, facts: &CertFacts) -> Option<String> {
    let names: Vec<String> = config
        .match_entity_name
        .iter()
        .chain(&config.match_alias_name)
        .filter_map(|r| r.value(identity))
        .collect();
    if let Some(cn) = facts
        .common_name
        .iter()
        .find(|cn| names.iter().any(|n| n.eq_ignore_ascii_case(cn)))
    {
        return Some(format!("subject CN {cn}"));
    }
    if let Some(e) = facts
        .emails
        .iter()
        .find(|e| e.eq_ignore_ascii_case(&identity.email))
    {
        return Some(format!("SAN email {e}"));
    }
    facts
        .uris
        .iter()
        .find(|u| {
            let last = u.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            u.eq_ignore_ascii_case(&format!("mailto:{}", identity.email))
                || names.iter().any(|n| n.eq_ignore_ascii_case(last))
        })
        .map(|u| format!("SAN URI {u}"))
}

fn permanent(message: impl Into<String>) -> ProviderError {
    ProviderError::Permanent {
        provider: PROVIDER,
        message: message.into(),
    }
}

impl VaultProvider {
    /// `<mount>/cert/<serial>`.
    async fn read_cert(&self, mount: &str, serial: &str) -> Result<Option<CertData>, CallError> {
        let path = format!("{mount}cert/{}", seg(serial));
        let r = self
            .client
            .read_data::<ReadCertificateResponse>("GET", &path, None);
        Ok(found(r.await)?.map(CertData::from))
    }

    pub(crate) async fn resolve_pki(
        &self,
        identity: &Identity,
        res: &mut Resolution,
    ) -> Result<(), ProviderError> {
        let conc = self.config.max_in_flight.max(1);
        let mounts = self.mounts("sys/mounts").await?;
        for (mount, _) in mounts.iter().filter(|(_, m)| m.mount_type == "pki") {
            let certs_path = format!("{mount}certs");
            let serials = self.client.list_keys(&certs_path).await;
            let serials = listed(serials, kinds::PKI_CERTIFICATE, &certs_path, &mut res.gaps)?;
            let found: Vec<(String, CertFacts, i64, String)> = stream::iter(serials)
                .map(|serial| async move {
                    let c = self.read_cert(mount, &serial).await?;
                    Ok::<_, CallError>(c.map(|c| (serial, c)))
                })
                .buffer_unordered(conc)
                .try_filter_map(|x| async move {
                    Ok(x.and_then(|(serial, c)| {
                        let facts = cert_facts(&c.certificate)?;
                        let why = issued_to(&self.config, identity, &facts)?;
                        Some((serial, facts, c.revocation_time, why))
                    }))
                })
                .try_collect()
                .await?;
            for (serial, facts, revoked, why) in found {
                let expiry = chrono::DateTime::from_timestamp(facts.not_after, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                let attributes = [
                    ("mount", mount.clone()),
                    ("serial", serial.clone()),
                    ("expires", expiry),
                    ("matched", why.clone()),
                    ("common_name", facts.common_name.join(",")),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
                res.findings.push(finding(
                    kinds::PKI_CERTIFICATE,
                    &format!("{mount}cert/{serial}"),
                    format!("certificate {serial} from {mount} ({why})"),
                    Relation::Owns,
                    Holder::Account,
                    if revoked > 0 {
                        State::Revoked
                    } else {
                        State::Active
                    },
                    Path::new().then(
                        "issued",
                        format!("certificate {serial} from {mount} ({why})"),
                    ),
                    attributes,
                ));
            }
        }
        Ok(())
    }

    pub(crate) async fn execute_pki(
        &self,
        action: &ActionRequest,
    ) -> Result<ActionOutcome, ProviderError> {
        let f = &action.finding;
        let (mount, serial) = pki_attrs(f)?;
        let Some(cert) = self.read_cert(mount, serial).await? else {
            return Ok(ActionOutcome::already(
                State::Deleted,
                format!("certificate {serial} no longer stored in {mount}"),
            ));
        };
        let already = cert.revocation_time > 0;
        if !already {
            self.client
                .write_json(
                    "POST",
                    &format!("{mount}revoke"),
                    &serde_json::json!({ "serial_number": serial }),
                )
                .await?;
        }
        // Rotate the CRL either way, so a crash between revoke and rotate heals on rerun.
        self.client
            .read_data::<RotateCRLsResponse>("GET", &format!("{mount}crl/rotate"), None)
            .await?;
        Ok(if already {
            ActionOutcome::already(
                State::Revoked,
                format!("certificate {serial} of {mount} already revoked; CRL rotated"),
            )
        } else {
            ActionOutcome::done(
                State::Revoked,
                format!("revoked certificate {serial} of {mount} and rotated the CRL"),
            )
        })
    }

    pub(crate) async fn live_state_pki(&self, f: &Finding) -> Result<State, ProviderError> {
        let (mount, serial) = pki_attrs(f)?;
        Ok(match self.read_cert(mount, serial).await? {
            None => State::Deleted,
            Some(c) if c.revocation_time > 0 => State::Revoked,
            Some(_) => State::Active,
        })
    }

    /// Dead when the certificate shows a revocation time and its serial is in the mount's CRL.
    pub(crate) async fn probe_pki(&self, f: &Finding) -> Result<ProbeOutcome, ProviderError> {
        let (mount, serial) = pki_attrs(f)?;
        let revoked = self
            .read_cert(mount, serial)
            .await?
            .is_some_and(|c| c.revocation_time > 0);
        let crl = self
            .client
            .read_data::<ReadCertificateResponse>("GET", &format!("{mount}cert/crl"), None)
            .await?;
        let want = serial.replace('-', ":").to_ascii_lowercase();
        let in_crl = crl_serials(&crl.certificate).contains(&want);
        Ok(ProbeOutcome {
            probe: format!("read {mount}cert/{serial} and {mount}cert/crl"),
            dead: revoked && in_crl,
            detail: format!("revocation time set: {revoked}; listed in the CRL: {in_crl}"),
        })
    }
}

fn pki_attrs(f: &Finding) -> Result<(&str, &str), ProviderError> {
    match (f.attr("mount"), f.attr("serial")) {
        (Some(m), Some(s)) => Ok((m, s)),
        _ => Err(permanent(format!("finding {} lacks mount/serial", f.id))),
    }
}

/// The serials (Vault's `:`-separated lower-case hex) listed in a PEM CRL.
pub fn crl_serials(pem: &str) -> Vec<String> {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else {
        return Vec::new();
    };
    let Ok((_, crl)) = x509_parser::parse_x509_crl(&pem.contents) else {
        return Vec::new();
    };
    crl.iter_revoked_certificates()
        .map(|r| hex_serial(r.raw_serial()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use closeout_contract::{IdentityKind, IdentityStatus};

    fn facts(cn: &str, emails: &[&str], uris: &[&str]) -> CertFacts {
        CertFacts {
            common_name: vec![cn.into()],
            emails: emails.iter().map(|s| s.to_string()).collect(),
            uris: uris.iter().map(|s| s.to_string()).collect(),
            not_after: 0,
            serial: "01".into(),
        }
    }

    #[test]
    fn issued_by_cn_san_email_or_uri() {
        let c = VaultConfig::default();
        let a = Identity {
            id: "E100".into(),
            email: "alice.smith@example.com".into(),
            name: "Alice".into(),
            kind: IdentityKind::Human,
            status: IdentityStatus::Active,
            manager: None,
            department: None,
            role: None,
            location: None,
            employment_type: None,
            tags: Default::default(),
        };
        assert_eq!(
            issued_to(&c, &a, &facts("Alice.Smith", &[], &[])).unwrap(),
            "subject CN Alice.Smith"
        );
        assert!(
            issued_to(&c, &a, &facts("x", &["alice.smith@example.com"], &[]))
                .unwrap()
                .starts_with("SAN email")
        );
        assert!(
            issued_to(&c, &a, &facts("x", &[], &["spiffe://corp/user/E100"]))
                .unwrap()
                .starts_with("SAN URI")
        );
        assert!(issued_to(
            &c,
            &a,
            &facts("bob", &["bob@example.com"], &["spiffe://corp/user/E1000"])
        )
        .is_none());
        assert_eq!(hex_serial(&[0x0a, 0xff]), "0a:ff");
        // DER pads a serial whose top bit is set; a 20-byte serial starting 00 prints as 19.
        assert_eq!(hex_serial(&[0x00, 0xc9, 0xdf]), "c9:df");
        assert_eq!(hex_serial(&[0x00]), "00");
        assert!(crl_serials("not a pem").is_empty());
        assert!(cert_facts("not a pem").is_none());
    }
}
