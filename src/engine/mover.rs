//! A mover's new attributes: which attributes `--to` (or a mover event) may change, and the
//! identity with them applied.

use super::error::EngineError;
use closeout_contract::Identity;
use std::collections::BTreeMap;

/// The attributes `--to` may change, as the source names them.
pub const MOVABLE_ATTRIBUTES: &[&str] = &[
    "department",
    "role",
    "location",
    "employment_type",
    "manager",
    "tags",
];

/// `identity` with a mover's new attributes applied. An empty value clears the attribute;
/// `tags` is a comma-separated list that replaces the tags.
pub fn moved(identity: &Identity, to: &BTreeMap<String, String>) -> Result<Identity, EngineError> {
    let mut moved = identity.clone();
    for (key, value) in to {
        let value = value.trim();
        let set = (!value.is_empty()).then(|| value.to_string());
        match key.as_str() {
            "department" => moved.department = set,
            "role" => moved.role = set,
            "location" => moved.location = set,
            "employment_type" => moved.employment_type = set,
            "manager" => moved.manager = set,
            "tags" => {
                moved.tags = value
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            other => {
                return Err(EngineError::BadAttribute(format!(
                    "`{other}`: a mover can change {}",
                    MOVABLE_ATTRIBUTES.join(", ")
                )))
            }
        }
    }
    Ok(moved)
}
