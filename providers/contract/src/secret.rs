//! A secret value that cannot be printed, serialized or logged by accident.

use rand::distr::{Alphanumeric, SampleString};

/// A secret value (a password, a secret access key, a generated replacement).
///
/// Deliberately has no `Display`, no `Serialize`, and a `Debug` that prints `[redacted]`: the only
/// way to the value is [`SecretValue::expose`], which a reviewer can grep for.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// A new random value: 40 alphanumeric characters (about 238 bits) from the OS-seeded CSPRNG.
    pub fn generate() -> Self {
        Self(Alphanumeric.sample_string(&mut rand::rng(), 40))
    }

    /// The value itself, for the one call that must send it to a provider.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

/// A rotated replacement for `old`: when `old` is a JSON object, every key keeps its place and
/// gets a new random string (so consumers that parse the structure keep working); otherwise a new
/// random string.
pub fn replacement_for(old: &SecretValue) -> SecretValue {
    match serde_json::from_str::<serde_json::Value>(old.expose()) {
        Ok(serde_json::Value::Object(map)) if !map.is_empty() => {
            let rotated: serde_json::Map<String, serde_json::Value> = map
                .into_iter()
                .map(|(k, _)| (k, serde_json::Value::String(SecretValue::generate().0)))
                .collect();
            SecretValue(serde_json::Value::Object(rotated).to_string())
        }
        _ => SecretValue::generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretValue::new("canary-3f9a");
        assert!(!format!("{s:?}").contains("canary"));
    }

    #[test]
    fn generated_values_differ_and_are_long() {
        let (a, b) = (SecretValue::generate(), SecretValue::generate());
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 40);
    }

    #[test]
    fn json_structure_is_preserved_with_new_values() {
        let old = SecretValue::new(r#"{"username":"app","password":"canary"}"#);
        let new = replacement_for(&old);
        let v: serde_json::Value = serde_json::from_str(new.expose()).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 2);
        assert!(obj.contains_key("username") && obj.contains_key("password"));
        assert!(!new.expose().contains("canary"));
    }
}
