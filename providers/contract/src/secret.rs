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
}
