//! Typed admin REST API representations (only the fields Closeout reads; unknown ones ignored).

use serde::Deserialize;
use std::collections::BTreeMap;

/// `UserRepresentation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub federation_link: Option<String>,
    #[serde(default)]
    pub service_account_client_id: Option<String>,
    #[serde(default)]
    pub created_timestamp: Option<i64>,
}

/// `UserSessionRepresentation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// Client UUID → clientId.
    #[serde(default)]
    pub clients: BTreeMap<String, String>,
}

/// `UserConsentRepresentation` (also lists the clients holding offline tokens).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    pub client_id: String,
    #[serde(default)]
    pub granted_client_scopes: Vec<String>,
    #[serde(default)]
    pub additional_grants: Vec<serde_json::Value>,
}

/// `CredentialRepresentation` (metadata only: the admin API never returns secret data).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub user_label: Option<String>,
    #[serde(default)]
    pub created_date: Option<i64>,
}

/// `FederatedIdentityRepresentation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedIdentity {
    pub identity_provider: String,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
}

/// `GroupRepresentation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: String,
    #[serde(default)]
    pub path: String,
}

/// `RoleRepresentation`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub composite: bool,
    #[serde(default)]
    pub client_role: bool,
    #[serde(default)]
    pub container_id: Option<String>,
}

/// `MappingsRepresentation` of `role-mappings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mappings {
    #[serde(default)]
    pub realm_mappings: Vec<Role>,
    /// clientId → the client's mapped roles.
    #[serde(default)]
    pub client_mappings: BTreeMap<String, ClientMappings>,
}

/// One client's part of [`Mappings`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientMappings {
    /// The client's UUID.
    pub id: String,
    /// The clientId.
    pub client: String,
    #[serde(default)]
    pub mappings: Vec<Role>,
}

/// `ClientRepresentation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Client {
    pub id: String,
    pub client_id: String,
    #[serde(default)]
    pub public_client: bool,
    #[serde(default)]
    pub bearer_only: bool,
    #[serde(default)]
    pub service_accounts_enabled: bool,
    #[serde(default)]
    pub client_authenticator_type: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Client {
    /// A confidential client authenticating with a client secret.
    pub fn has_secret(&self) -> bool {
        !self.public_client
            && !self.bearer_only
            && self
                .client_authenticator_type
                .as_deref()
                .unwrap_or("client-secret")
                == "client-secret"
    }
}

/// `CredentialRepresentation` of `client-secret`.
#[derive(Deserialize)]
pub struct ClientSecret {
    #[serde(default)]
    pub value: Option<String>,
}
