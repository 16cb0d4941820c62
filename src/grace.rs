//! Durations as Closeout's files write them (`30s`, `7d`, `1d12h`): a playbook step's grace
//! period (how long a finding must have been in its current state before the step may act on
//! it, e.g. delete an access key only 7 days after it was deactivated), a rotation policy's age
//! or expiry window, a time-bound grant's duration.
//!
//! Architecture invariant: layer 0, vocabulary; imports nothing from the crate.

use std::fmt;

/// The longest grace period a playbook may state (10 years); guards date arithmetic.
const MAX_SECONDS: u64 = 3650 * 86_400;

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// A non-negative duration written as number-unit pairs: `30s`, `15m`, `12h`, `7d`, `1d12h`, `0s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grace {
    seconds: u64,
}

impl Grace {
    /// No wait at all (`0s`): the step may act as soon as the finding is in the required state.
    pub const ZERO: Grace = Grace { seconds: 0 };

    /// A duration of `seconds`, capped at the 10-year maximum a playbook may state, so date
    /// arithmetic on it cannot overflow.
    pub fn from_seconds(seconds: u64) -> Grace {
        Grace {
            seconds: seconds.min(MAX_SECONDS),
        }
    }

    /// The duration in whole seconds.
    pub fn seconds(self) -> u64 {
        self.seconds
    }

    /// The same duration as a [`chrono::Duration`], for arithmetic on timestamps.
    pub fn to_chrono(self) -> chrono::Duration {
        // MAX_SECONDS fits comfortably in an i64.
        chrono::Duration::seconds(self.seconds as i64)
    }

    /// Parse `30s`, `15m`, `12h`, `7d`, or a sequence of them from the largest unit down
    /// (`1d12h`). A unit is required, even for zero (`0s`).
    pub fn parse(text: &str) -> Result<Grace, BadDuration> {
        let bad = |why: &str| BadDuration {
            text: text.to_string(),
            why: why.to_string(),
        };
        let t = text.trim();
        if t.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        let mut last_unit: Option<usize> = None;
        for c in t.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let Some(idx) = UNITS.iter().position(|(u, _)| *u == c) else {
                return Err(bad(&format!("unexpected `{c}`")));
            };
            if digits.is_empty() {
                return Err(bad(&format!("`{c}` has no number before it")));
            }
            if last_unit.is_some_and(|l| l >= idx) {
                return Err(bad(
                    "units must go from largest to smallest, each at most once",
                ));
            }
            last_unit = Some(idx);
            let n: u64 = digits.parse().map_err(|_| bad("the number is too large"))?;
            digits.clear();
            total = n
                .checked_mul(UNITS[idx].1)
                .and_then(|s| total.checked_add(s))
                .ok_or_else(|| bad("it is too long"))?;
        }
        if !digits.is_empty() {
            return Err(bad(&format!("`{digits}` has no unit")));
        }
        if total > MAX_SECONDS {
            return Err(bad("it is longer than 3650d"));
        }
        Ok(Grace { seconds: total })
    }
}

/// A duration that could not be read: the text and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad duration `{text}`: {why}; write a number and a unit (s, m, h, d), e.g. 30s, 15m, 12h, 7d"
)]
pub struct BadDuration {
    /// The text as written.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

impl fmt::Display for Grace {
    /// The canonical form: `0s`, `7d`, `1d12h`, `90s` → `1m30s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seconds == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.seconds;
        for (unit, size) in UNITS {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_combined_units() {
        assert_eq!(Grace::parse("30s").unwrap().seconds(), 30);
        assert_eq!(Grace::parse("15m").unwrap().seconds(), 900);
        assert_eq!(Grace::parse("12h").unwrap().seconds(), 43_200);
        assert_eq!(Grace::parse("7d").unwrap().seconds(), 604_800);
        assert_eq!(Grace::parse("0s").unwrap(), Grace::ZERO);
        assert_eq!(Grace::parse("1d12h").unwrap().seconds(), 129_600);
        assert_eq!(Grace::parse(" 2h30m ").unwrap().seconds(), 9_000);
    }

    #[test]
    fn rejects_malformed_durations_with_a_reason() {
        for bad in [
            "",
            "7",
            "d",
            "7w",
            "7 d",
            "-1d",
            "1.5h",
            "12h1d",
            "1h1h",
            "3651d",
            "99999999999999999999d",
        ] {
            let err = Grace::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("bad duration"), "{bad}: {err}");
            assert!(err.contains("e.g. 30s, 15m, 12h, 7d"), "{bad}: {err}");
        }
        assert!(Grace::parse("7")
            .unwrap_err()
            .to_string()
            .contains("`7` has no unit"));
    }

    #[test]
    fn displays_canonically() {
        for (text, shown) in [
            ("0s", "0s"),
            ("7d", "7d"),
            ("90s", "1m30s"),
            ("36h", "1d12h"),
        ] {
            assert_eq!(Grace::parse(text).unwrap().to_string(), shown);
        }
        assert_eq!(
            Grace::parse("7d").unwrap().to_chrono(),
            chrono::Duration::days(7)
        );
    }
}

/// Properties of the duration syntax, read from playbooks and the config file (docs/fuzzing.md).
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The canonical form reads back to the same duration.
        #[test]
        fn display_round_trips(seconds in 0..=MAX_SECONDS) {
            let g = Grace::from_seconds(seconds);
            prop_assert_eq!(Grace::parse(&g.to_string()), Ok(g));
        }

        /// Any text: a duration within the bound, or a typed refusal naming the text.
        #[test]
        fn any_text_is_read_or_refused(text in "[0-9smhd \\PC]{0,24}") {
            match Grace::parse(&text) {
                Ok(g) => prop_assert!(g.seconds() <= MAX_SECONDS),
                Err(e) => {
                    prop_assert_eq!(&e.text, &text);
                    prop_assert!(!e.why.is_empty());
                }
            }
        }
    }
}
