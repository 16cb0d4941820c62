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

/// The kind of object a Key Vault data action is on (`Microsoft.KeyVault/vaults/secrets/...`
/// is on secrets): at a scope below the vault (`…/secrets/{name}`) only the actions on that
/// kind apply.
pub fn data_action_object(operation: &str) -> Option<ObjectType> {
    let lower = operation.to_ascii_lowercase();
    let rest = lower.strip_prefix("microsoft.keyvault/vaults/")?;
    ObjectType::from_segment(rest.split('/').next()?)
}

/// The object a scope below `vault_id` names: `{vault_id}/secrets/{name}` is secret `name`
/// (case-insensitive, as ARM ids are). `None` for the vault itself, anything above it, and
/// anything else below it.
pub fn object_scope(vault_id: &str, scope: &str) -> Option<(ObjectType, String)> {
    let vault = vault_id.trim_end_matches('/');
    let scope = scope.trim_end_matches('/');
    if scope.len() <= vault.len() || !scope[..vault.len()].eq_ignore_ascii_case(vault) {
        return None;
    }
    let rest = scope[vault.len()..].strip_prefix('/')?;
    let (segment, name) = rest.split_once('/')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    Some((ObjectType::from_segment(segment)?, name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_below_a_vault_name_one_object() {
        let vault = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv";
        assert_eq!(
            object_scope(vault, &format!("{vault}/secrets/db")),
            Some((ObjectType::Secrets, "db".into()))
        );
        assert_eq!(
            object_scope(
                vault,
                "/SUBSCRIPTIONS/s/resourcegroups/RG/providers/microsoft.keyvault/vaults/KV/Keys/k1/"
            ),
            Some((ObjectType::Keys, "k1".into()))
        );
        assert_eq!(object_scope(vault, vault), None);
        assert_eq!(object_scope(vault, &format!("{vault}2/secrets/db")), None);
        assert_eq!(object_scope(vault, &format!("{vault}/secrets/db/v1")), None);
        assert_eq!(
            object_scope(vault, &format!("{vault}/accessPolicies/x")),
            None
        );
        assert_eq!(
            data_action_object("Microsoft.KeyVault/vaults/secrets/getSecret/action"),
            Some(ObjectType::Secrets)
        );
        assert_eq!(
            data_action_object("Microsoft.KeyVault/vaults/keys/decrypt/action"),
            Some(ObjectType::Keys)
        );
        assert_eq!(data_action_object("Microsoft.KeyVault/vaults/write"), None);
    }
}
