//! The three kinds of object a Key Vault holds, and the facts about each that the rest of the
//! crate shares: its URL segment, its noun, its finding kind, and which data actions expose it.

use crate::capabilities::kinds;

/// A kind of Key Vault object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectType {
    /// Secrets (`/secrets/{name}`).
    Secrets,
    /// Keys (`/keys/{name}`).
    Keys,
    /// Certificates (`/certificates/{name}`).
    Certificates,
}

impl ObjectType {
    /// Every kind, in the order listings run.
    pub const ALL: [ObjectType; 3] = [
        ObjectType::Secrets,
        ObjectType::Keys,
        ObjectType::Certificates,
    ];

    /// The URL and scope segment: `secrets`, `keys`, `certificates`.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Secrets => "secrets",
            ObjectType::Keys => "keys",
            ObjectType::Certificates => "certificates",
        }
    }

    /// One object of the kind, for paths and messages: `secret`, `key`, `certificate`.
    pub fn noun(self) -> &'static str {
        match self {
            ObjectType::Secrets => "secret",
            ObjectType::Keys => "key",
            ObjectType::Certificates => "certificate",
        }
    }

    /// The finding kind of an object of this kind.
    pub fn finding_kind(self) -> &'static str {
        match self {
            ObjectType::Secrets => kinds::KV_SECRET,
            ObjectType::Keys => kinds::KV_KEY,
            ObjectType::Certificates => kinds::KV_CERTIFICATE,
        }
    }

    /// The kind whose URL and scope segment is `segment` (case-insensitive).
    pub fn from_segment(segment: &str) -> Option<ObjectType> {
        ObjectType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(segment))
    }
}

/// Data actions that expose what a vault protects, and which object types they expose. A
/// certificate's private key is read through its backing secret (`getSecret`), so that action
/// exposes certificates too; `certificates/read` and `keys/read` only show public parts and do
/// not count. Keys count when the private key can be used.
pub const DATA_READS: &[(&str, &[ObjectType])] = &[
    (
        "Microsoft.KeyVault/vaults/secrets/getSecret/action",
        &[ObjectType::Secrets, ObjectType::Certificates],
    ),
    (
        "Microsoft.KeyVault/vaults/keys/decrypt/action",
        &[ObjectType::Keys],
    ),
    (
        "Microsoft.KeyVault/vaults/keys/unwrap/action",
        &[ObjectType::Keys],
    ),
    (
        "Microsoft.KeyVault/vaults/keys/sign/action",
        &[ObjectType::Keys],
    ),
];
