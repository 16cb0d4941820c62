//! Ed25519 keys of the audit log and the evidence bundle.
//!
//! # Key files
//!
//! - A **private key file** holds the 32-byte Ed25519 seed as 64 hex digits (surrounding
//!   whitespace ignored). `closeout audit keygen --out PREFIX` writes `PREFIX` (mode 0600) and
//!   `PREFIX.pub`.
//! - A **public key file** holds the 32-byte Ed25519 public key as 64 hex digits.
//! - The **key id** is the first 16 hex digits of the SHA-256 of the 32 public-key bytes. Every
//!   signed record and head names the key that signed it, so old public keys keep verifying old
//!   records after a rotation.
//!
//! Signatures are over a domain-separated message ([`Domain`]) so a signature made for one
//! purpose (a record) cannot be replayed as another (a head, a bundle manifest, an approval).
//!
//! No key type implements `Display` or `Serialize`, and `Debug` shows only the key id.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// What a signature is for: the first line of every signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// An audit record: the message is the record's `hash`.
    Record,
    /// The audit log's head file: `seq` and `hash`.
    Head,
    /// An evidence bundle's manifest: its canonical JSON.
    Manifest,
    /// An approver's approval of a run: `run` and approver name.
    Approval,
}

impl Domain {
    fn tag(self) -> &'static str {
        match self {
            Domain::Record => "closeout-audit-record-v1",
            Domain::Head => "closeout-audit-head-v1",
            Domain::Manifest => "closeout-evidence-manifest-v1",
            Domain::Approval => "closeout-approval-v1",
        }
    }

    /// The bytes signed for `body` in this domain: the tag, a newline, the body.
    pub fn message(self, body: &str) -> Vec<u8> {
        let mut m = Vec::with_capacity(self.tag().len() + 1 + body.len());
        m.extend_from_slice(self.tag().as_bytes());
        m.push(b'\n');
        m.extend_from_slice(body.as_bytes());
        m
    }
}

/// A key that cannot be read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file cannot be read.
    #[error("cannot read key file {path}: {kind}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (never the content).
        kind: std::io::ErrorKind,
    },
    /// The key file cannot be written.
    #[error("cannot write key file {path}: {kind}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        kind: std::io::ErrorKind,
    },
    /// The text is not 64 hex digits (a 32-byte key).
    #[error("{what} is not an Ed25519 key: expected 64 hex digits")]
    Malformed {
        /// Which key (a file name or an environment variable), never its content.
        what: String,
    },
    /// 32 bytes that are not a valid Ed25519 public key.
    #[error("{what} is not a valid Ed25519 public key")]
    InvalidPublic {
        /// Which key.
        what: String,
    },
}

fn parse_hex32(text: &str, what: &str) -> Result<[u8; 32], KeyError> {
    let malformed = || KeyError::Malformed {
        what: what.to_string(),
    };
    let bytes = hex::decode(text.trim()).map_err(|_| malformed())?;
    bytes.try_into().map_err(|_| malformed())
}

/// The key id of a public key: the first 16 hex digits of SHA-256 of its 32 bytes.
pub fn key_id(public: &VerifyingKey) -> String {
    let digest = Sha256::digest(public.as_bytes());
    hex::encode(digest)[..16].to_string()
}

/// A private signing key and its id.
#[derive(Clone)]
pub struct PrivateKey {
    key: SigningKey,
    id: String,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("id", &self.id).finish()
    }
}

impl PrivateKey {
    /// A key from its 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> PrivateKey {
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(&key.verifying_key());
        PrivateKey { key, id }
    }

    /// A new random key.
    pub fn generate() -> PrivateKey {
        PrivateKey::from_seed(rand::random::<[u8; 32]>())
    }

    /// Parse 64 hex digits; `what` names the source in errors.
    pub fn parse(text: &str, what: &str) -> Result<PrivateKey, KeyError> {
        Ok(PrivateKey::from_seed(parse_hex32(text, what)?))
    }

    /// Read a private key file.
    pub fn read(path: &Path) -> Result<PrivateKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::Read {
            path: path.to_path_buf(),
            kind: e.kind(),
        })?;
        PrivateKey::parse(&text, &path.display().to_string())
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
            id: self.id.clone(),
        }
    }

    /// Sign `body` in `domain`; the signature as 128 hex digits.
    pub fn sign(&self, domain: Domain, body: &str) -> String {
        hex::encode(self.key.sign(&domain.message(body)).to_bytes())
    }

    /// Write the private key to `path` (mode 0600 on Unix) and the public key to `path.pub`.
    pub fn write_pair(&self, path: &Path) -> Result<PathBuf, KeyError> {
        let write_err = |p: &Path| {
            let p = p.to_path_buf();
            move |e: std::io::Error| KeyError::Write {
                path: p,
                kind: e.kind(),
            }
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        use std::io::Write as _;
        let mut file = options.open(path).map_err(write_err(path))?;
        file.write_all(format!("{}\n", hex::encode(self.key.to_bytes())).as_bytes())
            .map_err(write_err(path))?;
        let mut public = path.as_os_str().to_os_string();
        public.push(".pub");
        let public = PathBuf::from(public);
        std::fs::write(&public, format!("{}\n", self.public().to_hex()))
            .map_err(write_err(&public))?;
        Ok(public)
    }
}

/// A public key and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: String,
}

impl PublicKey {
    /// Parse 64 hex digits; `what` names the source in errors.
    pub fn parse(text: &str, what: &str) -> Result<PublicKey, KeyError> {
        let bytes = parse_hex32(text, what)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidPublic {
            what: what.to_string(),
        })?;
        Ok(PublicKey {
            id: key_id(&key),
            key,
        })
    }

    /// Read a public key file.
    pub fn read(path: &Path) -> Result<PublicKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::Read {
            path: path.to_path_buf(),
            kind: e.kind(),
        })?;
        PublicKey::parse(&text, &path.display().to_string())
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }

    /// Whether `signature` (hex) is this key's signature of `body` in `domain` (strict
    /// verification: no malleable signatures).
    pub fn verifies(&self, domain: Domain, body: &str, signature: &str) -> bool {
        let Ok(bytes) = hex::decode(signature) else {
            return false;
        };
        let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
            return false;
        };
        let signature = Signature::from_bytes(&bytes);
        self.key
            .verify_strict(&domain.message(body), &signature)
            .is_ok()
    }
}

/// The public keys a verifier trusts, by key id (several during and after a key rotation).
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, PublicKey>,
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Valid, by this key id.
    Valid,
    /// Nothing signed it (no key id or no signature).
    Unsigned,
    /// Signed by a key id not in the ring.
    UnknownKey,
    /// The signature does not verify with the named key.
    Invalid,
}

impl KeyRing {
    /// A ring of these keys.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> KeyRing {
        KeyRing {
            keys: keys.into_iter().map(|k| (k.id.clone(), k)).collect(),
        }
    }

    /// Read each public key file.
    pub fn read(paths: &[PathBuf]) -> Result<KeyRing, KeyError> {
        Ok(KeyRing::new(
            paths
                .iter()
                .map(|p| PublicKey::read(p))
                .collect::<Result<Vec<_>, _>>()?,
        ))
    }

    /// No key at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&PublicKey> {
        self.keys.get(id)
    }

    /// Check a signature claimed by `key` over `body` in `domain`.
    pub fn check(
        &self,
        domain: Domain,
        body: &str,
        key: Option<&str>,
        signature: Option<&str>,
    ) -> SignatureCheck {
        let (Some(key), Some(signature)) = (key, signature) else {
            return SignatureCheck::Unsigned;
        };
        match self.keys.get(key) {
            None => SignatureCheck::UnknownKey,
            Some(public) if public.verifies(domain, body, signature) => SignatureCheck::Valid,
            Some(_) => SignatureCheck::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_domain_separation() {
        let key = PrivateKey::generate();
        let ring = KeyRing::new([key.public()]);
        let sig = key.sign(Domain::Record, "abc");
        assert_eq!(
            ring.check(Domain::Record, "abc", Some(key.id()), Some(&sig)),
            SignatureCheck::Valid
        );
        assert_eq!(
            ring.check(Domain::Head, "abc", Some(key.id()), Some(&sig)),
            SignatureCheck::Invalid
        );
        assert_eq!(
            ring.check(Domain::Record, "abd", Some(key.id()), Some(&sig)),
            SignatureCheck::Invalid
        );
        assert_eq!(
            ring.check(Domain::Record, "abc", Some("0000"), Some(&sig)),
            SignatureCheck::UnknownKey
        );
        assert_eq!(
            ring.check(Domain::Record, "abc", None, Some(&sig)),
            SignatureCheck::Unsigned
        );
        assert_eq!(key.id().len(), 16);
        assert!(!format!("{key:?}").contains(&hex::encode(key.key.to_bytes())));
    }

    #[test]
    fn key_files_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.key");
        let key = PrivateKey::generate();
        let public = key.write_pair(&path).expect("write");
        let again = PrivateKey::read(&path).expect("read private");
        assert_eq!(again.id(), key.id());
        let public = PublicKey::read(&public).expect("read public");
        assert_eq!(public, key.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(key.write_pair(&path).is_err(), "never overwrites a key");
        assert!(matches!(
            PrivateKey::parse("zz", "env"),
            Err(KeyError::Malformed { .. })
        ));
    }
}
