//! Standard Webhooks verification (<https://www.standardwebhooks.com>, symmetric `v1` scheme) for
//! `POST /v1/events`.
//!
//! The sender signs `{webhook-id}.{webhook-timestamp}.{raw body}` with HMAC-SHA256, keyed with the
//! base64-decoded bytes of a `whsec_...` secret, and sends `webhook-signature: v1,<base64>` (several
//! space-separated entries while it rotates secrets). We accept the request when any `v1` entry
//! matches any configured secret and the timestamp is within the tolerance of our clock (both
//! directions: an old timestamp is a replay, a future one a replay prepared in advance). The
//! `webhook-id` is the idempotency key the durable queue deduplicates on, so a replay inside the
//! window is stored once.
//!
//! Errors say what is wrong with the request and never contain a secret or the expected MAC.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of a symmetric Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The spec's minimum secret size (192 bits): shorter keys are refused, not weakened silently.
pub const MIN_SECRET_BYTES: usize = 24;
/// The spec's maximum secret size.
pub const MAX_SECRET_BYTES: usize = 512;
/// Default tolerance between `webhook-timestamp` and our clock, either way.
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;
/// Longest `webhook-id` accepted (it is stored as the event's external id).
pub const MAX_ID_LEN: usize = 256;
/// Most signature entries looked at: bounds the HMAC work an unauthenticated request can cause.
pub const MAX_SIGNATURES: usize = 16;
/// Bytes of an HMAC-SHA256 output.
const MAC_LEN: usize = 32;

/// Why a configured secret is refused. The value itself is never repeated (it is a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The list of secrets is empty: no request could ever be accepted.
    #[error("no webhook secret is configured")]
    None,
    /// A secret is not in the `whsec_<base64>` form.
    #[error("webhook secret #{index} does not start with `whsec_`")]
    MissingPrefix {
        /// The secret's position in the configured list, from 1.
        index: usize,
    },
    /// The part after `whsec_` is not standard base64.
    #[error("webhook secret #{index} is not valid base64 after `whsec_`")]
    BadBase64 {
        /// The secret's position in the configured list, from 1.
        index: usize,
    },
    /// The decoded key is shorter or longer than Standard Webhooks allows.
    #[error("webhook secret #{index} is {len} bytes; Standard Webhooks requires {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES}")]
    BadLength {
        /// The secret's position in the configured list, from 1.
        index: usize,
        /// The decoded key's length in bytes.
        len: usize,
    },
}

/// Why a request is refused (each becomes a 401, or 400 for a malformed header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// A required header is absent (400); the value names it.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// `webhook-id` is empty, too long, or contains `.`, whitespace or a control character (400).
    #[error("webhook-id must be 1 to {MAX_ID_LEN} characters without '.' or whitespace")]
    InvalidId,
    /// `webhook-timestamp` is not plain decimal digits (400).
    #[error("webhook-timestamp is not a number of seconds since the epoch")]
    InvalidTimestamp,
    /// The timestamp is older than the tolerance: a replay, or a sender whose clock is behind
    /// (401).
    #[error("webhook-timestamp is {age_secs} s old, more than the {tolerance_secs} s tolerance")]
    TimestampTooOld {
        /// How old the timestamp is, in seconds.
        age_secs: i64,
        /// The configured tolerance, in seconds.
        tolerance_secs: i64,
    },
    /// The timestamp is further ahead than the tolerance: a request prepared for a later replay,
    /// or a sender whose clock is ahead (401).
    #[error("webhook-timestamp is {ahead_secs} s in the future, more than the {tolerance_secs} s tolerance")]
    TimestampInFuture {
        /// How far ahead the timestamp is, in seconds.
        ahead_secs: i64,
        /// The configured tolerance, in seconds.
        tolerance_secs: i64,
    },
    /// `webhook-signature` has no entry, or its only `v1` entries are empty (401).
    #[error("webhook-signature is empty")]
    EmptySignature,
    /// `webhook-signature` has entries, none of them `v1,...` (401).
    #[error("webhook-signature has no v1 signature")]
    NoV1Signature,
    /// More than [`MAX_SIGNATURES`] entries; refused before any HMAC is computed (401).
    #[error("webhook-signature has more than {MAX_SIGNATURES} entries")]
    TooManySignatures,
    /// A `v1` signature is not valid base64 (401).
    #[error("webhook-signature: a v1 signature is not valid base64")]
    MalformedSignature,
    /// A `v1` signature decodes to the wrong number of bytes; the value is that number (401).
    #[error("webhook-signature: a v1 signature is {0} bytes, not 32 (truncated?)")]
    SignatureLength(usize),
    /// Well-formed, but no `v1` signature matches any configured secret: wrong secret, or the
    /// id, timestamp or body differ from what was signed (401).
    #[error("webhook-signature does not match")]
    Mismatch,
}

impl WebhookError {
    /// A malformed request (400) rather than a failed authentication (401).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            WebhookError::MissingHeader(_)
                | WebhookError::InvalidId
                | WebhookError::InvalidTimestamp
        )
    }
}

/// One decoded `whsec_` secret. `Debug` does not show the key.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecret({} bytes, redacted)", self.key.len())
    }
}

impl WebhookSecret {
    /// Parse `whsec_<base64>`; `index` only numbers the secret in errors, counting from 1 as the
    /// documentation and the operator do.
    fn parse_at(text: &str, index: usize) -> Result<WebhookSecret, SecretError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix { index })?;
        let key = B64
            .decode(encoded)
            .map_err(|_| SecretError::BadBase64 { index })?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError::BadLength {
                index,
                len: key.len(),
            });
        }
        Ok(WebhookSecret { key })
    }

    /// Parse one `whsec_<base64>` secret.
    pub fn parse(text: &str) -> Result<WebhookSecret, SecretError> {
        WebhookSecret::parse_at(text, 1)
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        // HMAC is defined for keys of any length, so this cannot fail; the fallback keeps the
        // function total without a panic path.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// Sign a message as a Standard Webhooks sender does: returns the `webhook-signature` value
/// `v1,<base64>`. For tests and the load benchmark.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = secret
        .mac(id, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("v1,{}", B64.encode(tag))
}

/// The secrets a webhook may be signed with (several during a rotation) and the clock tolerance.
#[derive(Debug, Clone)]
pub struct WebhookSecrets {
    secrets: Vec<WebhookSecret>,
    tolerance_secs: i64,
}

impl WebhookSecrets {
    /// Parse the configured secrets; at least one is required.
    pub fn parse(secrets: &[String]) -> Result<WebhookSecrets, SecretError> {
        if secrets.is_empty() {
            return Err(SecretError::None);
        }
        let secrets = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| WebhookSecret::parse_at(s, i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WebhookSecrets {
            secrets,
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        })
    }

    /// Use another timestamp tolerance (seconds, either direction).
    pub fn with_tolerance(mut self, tolerance_secs: i64) -> WebhookSecrets {
        self.tolerance_secs = tolerance_secs.max(0);
        self
    }

    /// The accepted difference between `webhook-timestamp` and our clock, in seconds, either
    /// way.
    pub fn tolerance_secs(&self) -> i64 {
        self.tolerance_secs
    }

    /// Verify one request from its three headers (`None` when absent) and its raw body.
    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signature_header: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), WebhookError> {
        let id = id.ok_or(WebhookError::MissingHeader("webhook-id"))?;
        let timestamp = timestamp.ok_or(WebhookError::MissingHeader("webhook-timestamp"))?;
        let header = signature_header.ok_or(WebhookError::MissingHeader("webhook-signature"))?;
        // A '.' in the id would make the signed content ambiguous (the spec forbids it).
        if id.is_empty()
            || id.len() > MAX_ID_LEN
            || id
                .chars()
                .any(|c| c == '.' || c.is_whitespace() || c.is_control())
        {
            return Err(WebhookError::InvalidId);
        }
        self.check_timestamp(timestamp, now)?;
        let entries: Vec<&str> = header.split_whitespace().collect();
        if entries.is_empty() {
            return Err(WebhookError::EmptySignature);
        }
        if entries.len() > MAX_SIGNATURES {
            return Err(WebhookError::TooManySignatures);
        }
        // Other versions (`v1a`, future ones) are ignored, as the spec asks.
        let v1: Vec<&str> = entries
            .iter()
            .filter_map(|e| e.strip_prefix("v1,"))
            .collect();
        if v1.is_empty() {
            return Err(WebhookError::NoV1Signature);
        }
        // Report the most specific failure: a well-formed mismatch over a wrong length over bad
        // base64 over an empty value, so a sender sees its real problem when one of several
        // entries is broken.
        let rank = |e: &WebhookError| match e {
            WebhookError::Mismatch => 3,
            WebhookError::SignatureLength(_) => 2,
            WebhookError::MalformedSignature => 1,
            _ => 0,
        };
        let mut failure = WebhookError::EmptySignature;
        for encoded in v1 {
            let this = if encoded.is_empty() {
                WebhookError::EmptySignature
            } else {
                match B64.decode(encoded) {
                    Err(_) => WebhookError::MalformedSignature,
                    Ok(given) if given.len() != MAC_LEN => {
                        WebhookError::SignatureLength(given.len())
                    }
                    Ok(given) => {
                        // `verify_slice` compares the full tag in constant time.
                        if self
                            .secrets
                            .iter()
                            .any(|s| s.mac(id, timestamp, body).verify_slice(&given).is_ok())
                        {
                            return Ok(());
                        }
                        WebhookError::Mismatch
                    }
                }
            };
            if rank(&this) > rank(&failure) {
                failure = this;
            }
        }
        Err(failure)
    }

    fn check_timestamp(&self, timestamp: &str, now: DateTime<Utc>) -> Result<(), WebhookError> {
        // Digits only: `+5` or ` 5` would parse but are not what was signed by a conforming sender.
        if timestamp.is_empty()
            || timestamp.len() > 18
            || !timestamp.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(WebhookError::InvalidTimestamp);
        }
        let sent: i64 = timestamp
            .parse()
            .map_err(|_| WebhookError::InvalidTimestamp)?;
        let now = now.timestamp();
        let tolerance_secs = self.tolerance_secs;
        if now.saturating_sub(sent) > tolerance_secs {
            return Err(WebhookError::TimestampTooOld {
                age_secs: now.saturating_sub(sent),
                tolerance_secs,
            });
        }
        if sent.saturating_sub(now) > tolerance_secs {
            return Err(WebhookError::TimestampInFuture {
                ahead_secs: sent.saturating_sub(now),
                tolerance_secs,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: &str = "1649367553";
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("valid time")
    }

    fn now() -> DateTime<Utc> {
        at(1649367553)
    }

    fn secrets() -> WebhookSecrets {
        WebhookSecrets::parse(&[SECRET.to_string()]).expect("reference secret")
    }

    fn verify(sig: Option<&str>) -> Result<(), WebhookError> {
        secrets().verify(Some(ID), Some(TS), sig, BODY, now())
    }

    #[test]
    fn the_reference_vector_verifies_and_signs() {
        assert_eq!(verify(Some(SIG)), Ok(()));
        let secret = WebhookSecret::parse(SECRET).expect("secret");
        assert_eq!(sign(&secret, ID, 1649367553, BODY), SIG);
    }

    #[test]
    fn other_versions_and_rotation_entries_are_tolerated() {
        let other = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=";
        assert_eq!(verify(Some(&format!("v1a,abcd {other} {SIG}"))), Ok(()));
        assert_eq!(verify(Some(&format!("  {SIG}  "))), Ok(()));
        // A second configured secret (rotation): the old one still verifies.
        let new = format!("whsec_{}", B64.encode([7u8; 32]));
        let both = WebhookSecrets::parse(&[new.clone(), SECRET.to_string()]).expect("secrets");
        assert_eq!(
            both.verify(Some(ID), Some(TS), Some(SIG), BODY, now()),
            Ok(())
        );
        let signed_new = sign(
            &WebhookSecret::parse(&new).expect("secret"),
            ID,
            1649367553,
            BODY,
        );
        assert_eq!(
            both.verify(Some(ID), Some(TS), Some(&signed_new), BODY, now()),
            Ok(())
        );
        assert_eq!(verify(Some(&signed_new)), Err(WebhookError::Mismatch));
    }

    #[test]
    fn missing_headers_are_named() {
        let s = secrets();
        assert_eq!(
            s.verify(None, Some(TS), Some(SIG), BODY, now()),
            Err(WebhookError::MissingHeader("webhook-id"))
        );
        assert_eq!(
            s.verify(Some(ID), None, Some(SIG), BODY, now()),
            Err(WebhookError::MissingHeader("webhook-timestamp"))
        );
        assert_eq!(
            verify(None),
            Err(WebhookError::MissingHeader("webhook-signature"))
        );
    }

    #[test]
    fn empty_and_unversioned_signatures_fail() {
        assert_eq!(verify(Some("")), Err(WebhookError::EmptySignature));
        assert_eq!(verify(Some("   ")), Err(WebhookError::EmptySignature));
        assert_eq!(verify(Some("v1,")), Err(WebhookError::EmptySignature));
        assert_eq!(verify(Some("v1, v1,")), Err(WebhookError::EmptySignature));
        assert_eq!(
            verify(Some("v1a,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=")),
            Err(WebhookError::NoV1Signature)
        );
        assert_eq!(
            verify(Some("tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=")),
            Err(WebhookError::NoV1Signature)
        );
        let many = vec![SIG; MAX_SIGNATURES + 1].join(" ");
        assert_eq!(verify(Some(&many)), Err(WebhookError::TooManySignatures));
    }

    #[test]
    fn every_prefix_of_the_valid_signature_fails() {
        for end in 4..SIG.len() {
            let prefix = &SIG[..end];
            let err = verify(Some(prefix)).expect_err(prefix);
            assert!(
                matches!(
                    err,
                    WebhookError::MalformedSignature | WebhookError::SignatureLength(_)
                ),
                "{prefix}: {err:?}"
            );
        }
        // Truncated to a whole number of base64 quanta: decodes, but is short.
        assert_eq!(
            verify(Some("v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+")),
            Err(WebhookError::SignatureLength(27))
        );
        assert_eq!(
            verify(Some("v1,not base64!")),
            Err(WebhookError::MalformedSignature)
        );
    }

    #[test]
    fn a_changed_body_id_or_timestamp_fails() {
        let s = secrets();
        assert_eq!(
            s.verify(Some(ID), Some(TS), Some(SIG), b"{}", now()),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            s.verify(Some("msg_other"), Some(TS), Some(SIG), BODY, now()),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            s.verify(Some(ID), Some("1649367554"), Some(SIG), BODY, now()),
            Err(WebhookError::Mismatch)
        );
        // One flipped bit in the MAC.
        let mut mac = B64.decode(&SIG[3..]).expect("b64");
        mac[31] ^= 1;
        let flipped = format!("v1,{}", B64.encode(mac));
        assert_eq!(verify(Some(&flipped)), Err(WebhookError::Mismatch));
    }

    #[test]
    fn timestamps_are_checked_both_ways() {
        let s = secrets();
        let check = |now: DateTime<Utc>| s.verify(Some(ID), Some(TS), Some(SIG), BODY, now);
        assert_eq!(check(at(1649367553 + 300)), Ok(()));
        assert_eq!(check(at(1649367553 - 300)), Ok(()));
        assert_eq!(
            check(at(1649367553 + 301)),
            Err(WebhookError::TimestampTooOld {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            check(at(1649367553 - 301)),
            Err(WebhookError::TimestampInFuture {
                ahead_secs: 301,
                tolerance_secs: 300
            })
        );
        let strict = secrets().with_tolerance(10);
        assert!(matches!(
            strict.verify(Some(ID), Some(TS), Some(SIG), BODY, at(1649367553 + 11)),
            Err(WebhookError::TimestampTooOld { .. })
        ));
        for bad in [
            "",
            "abc",
            "16493675.3",
            "+1649367553",
            " 1649367553",
            "-5",
            "9999999999999999999999",
        ] {
            assert_eq!(
                s.verify(Some(ID), Some(bad), Some(SIG), BODY, now()),
                Err(WebhookError::InvalidTimestamp),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_ids_are_refused() {
        let s = secrets();
        for bad in ["", "msg.1", "msg 1", &"m".repeat(MAX_ID_LEN + 1)] {
            assert_eq!(
                s.verify(Some(bad), Some(TS), Some(SIG), BODY, now()),
                Err(WebhookError::InvalidId)
            );
        }
    }

    #[test]
    fn bad_secrets_are_refused_without_echoing_them() {
        assert_eq!(WebhookSecrets::parse(&[]).unwrap_err(), SecretError::None);
        let raw = "C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let err = WebhookSecrets::parse(&[SECRET.into(), raw.into()]).unwrap_err();
        // Positions count from 1, as the docs and the operator count: the second secret is #2.
        assert_eq!(err, SecretError::MissingPrefix { index: 2 });
        assert!(err.to_string().contains("#2"), "{err}");
        assert!(!err.to_string().contains(raw));
        let err = WebhookSecrets::parse(&["whsec_%%%notbase64".into()]).unwrap_err();
        assert_eq!(err, SecretError::BadBase64 { index: 1 });
        assert!(!err.to_string().contains("notbase64"));
        let short = format!("whsec_{}", B64.encode([1u8; 8]));
        assert_eq!(
            WebhookSecrets::parse(&[short]).unwrap_err(),
            SecretError::BadLength { index: 1, len: 8 }
        );
        let debug = format!("{:?}", secrets());
        assert!(
            !debug.contains(raw) && debug.contains("redacted"),
            "{debug}"
        );
    }

    #[test]
    fn errors_never_contain_the_expected_signature() {
        let errors = [
            verify(Some("v1,AAAA")),
            verify(Some("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
            verify(Some("v1,@@")),
        ];
        for e in errors {
            let text = e.expect_err("fails").to_string();
            assert!(!text.contains(&SIG[3..13]), "{text}");
        }
    }
}
