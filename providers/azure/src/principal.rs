//! The person as RBAC and access policies see them: their user and every group they are in,
//! each with the direct membership that puts them there.

/// One of the person's principals: their user, or a group they are in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The Entra object id.
    pub object_id: String,
    /// For paths: `user alice@example.com`, `group platform`.
    pub display: String,
    /// For a group: the direct membership that puts the person in it (group id, name); removing
    /// that membership removes the access. `None` for the user itself.
    pub via_membership: Option<(String, String)>,
}

/// The person as RBAC and access policies see them.
#[derive(Debug, Clone, Default)]
pub struct Principals {
    /// The user's object id first, then the groups (transitively).
    pub all: Vec<Principal>,
}

impl Principals {
    /// The principal with `object_id` (case-insensitive), if it is one of the person's.
    pub fn get(&self, object_id: &str) -> Option<&Principal> {
        self.all
            .iter()
            .find(|p| p.object_id.eq_ignore_ascii_case(object_id))
    }

    /// The user's own object id.
    pub fn user_id(&self) -> Option<&str> {
        self.all.first().map(|p| p.object_id.as_str())
    }
}
