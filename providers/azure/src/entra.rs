//! Entra ID objects as Microsoft Graph v1.0 returns them (the fields Closeout reads), and the
//! rules that find the person's user among them.
//!
//! Graph never returns a credential's secret after creation; the types here have no field for
//! one.

use closeout_contract::Identity;
use serde::{Deserialize, Serialize};

/// A way to find the person's Entra user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserMatch {
    /// The identity's id is the user's object id.
    ObjectId,
    /// The identity's email is the user principal name.
    Upn,
    /// The identity's email is the user's `mail`.
    Mail,
    /// The identity's id is the user's `employeeId`.
    EmployeeId,
}

impl UserMatch {
    pub const DEFAULTS: [UserMatch; 4] = [
        UserMatch::ObjectId,
        UserMatch::Upn,
        UserMatch::Mail,
        UserMatch::EmployeeId,
    ];

    /// The name of the user's property this rule compares.
    pub fn property(self) -> &'static str {
        match self {
            UserMatch::ObjectId => "object id",
            UserMatch::Upn => "userPrincipalName",
            UserMatch::Mail => "mail",
            UserMatch::EmployeeId => "employeeId",
        }
    }

    /// The identity's value this rule compares (its id or its email).
    fn identity_value(self, identity: &Identity) -> &str {
        match self {
            UserMatch::ObjectId | UserMatch::EmployeeId => &identity.id,
            UserMatch::Upn | UserMatch::Mail => &identity.email,
        }
    }

    /// The user's value this rule compares.
    pub fn user_value(self, user: &User) -> Option<&str> {
        match self {
            UserMatch::ObjectId => Some(&user.id),
            UserMatch::Upn => user.user_principal_name.as_deref(),
            UserMatch::Mail => user.mail.as_deref(),
            UserMatch::EmployeeId => user.employee_id.as_deref(),
        }
    }

    /// What this rule compares for `identity`, e.g. `mail = alice@example.com` (the account's
    /// `matched_by`).
    pub fn describe(self, identity: &Identity) -> String {
        format!("{} = {}", self.property(), self.identity_value(identity))
    }

    /// Whether `user` is `identity`'s by this rule, compared locally the way Graph's `eq`
    /// compares (case-insensitively): for a listing of every user, where asking Graph once per
    /// identity would be a call each.
    pub fn matches(self, identity: &Identity, user: &User) -> bool {
        let mine = self.identity_value(identity);
        !mine.is_empty()
            && self
                .user_value(user)
                .is_some_and(|theirs| mine.eq_ignore_ascii_case(theirs))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(default)]
    pub employee_id: Option<String>,
    #[serde(default)]
    pub account_enabled: Option<bool>,
    #[serde(default)]
    pub sign_in_sessions_valid_from_date_time: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A password credential as Graph lists it (no secret).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordCredential {
    pub key_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub end_date_time: Option<String>,
    #[serde(default)]
    pub hint: Option<String>,
}

/// A certificate credential as Graph lists it (public part only).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyCredential {
    pub key_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub end_date_time: Option<String>,
    #[serde(default, rename = "type")]
    pub key_type: Option<String>,
}

/// An application or service principal the person owns.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnedObject {
    #[serde(rename = "@odata.type", default)]
    pub odata_type: String,
    pub id: String,
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub password_credentials: Vec<PasswordCredential>,
    #[serde(default)]
    pub key_credentials: Vec<KeyCredential>,
}

/// The `@odata.type` of an application.
pub const APPLICATION_TYPE: &str = "#microsoft.graph.application";
/// The `@odata.type` of a service principal.
pub const SERVICE_PRINCIPAL_TYPE: &str = "#microsoft.graph.servicePrincipal";

impl OwnedObject {
    /// An application registration.
    pub fn is_application(&self) -> bool {
        self.odata_type == APPLICATION_TYPE
    }

    /// A service principal.
    pub fn is_service_principal(&self) -> bool {
        self.odata_type == SERVICE_PRINCIPAL_TYPE
    }
}
