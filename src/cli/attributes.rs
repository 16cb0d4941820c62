//! `--to KEY=VALUE ...`: a mover's new attributes, checked before anything is opened.

use super::global::Failure;
use crate::engine::MOVABLE_ATTRIBUTES;
use std::collections::BTreeMap;

/// `--to KEY=VALUE...` as a map; a key given twice, without `=`, or not movable is bad usage.
pub fn parse_to(to: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for pair in to {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Failure::usage(format!(
                "bad --to {pair:?}: write KEY=VALUE, e.g. --to department=Finance"
            )));
        };
        let key = key.trim().to_string();
        if !MOVABLE_ATTRIBUTES.contains(&key.as_str()) {
            return Err(Failure::usage(format!(
                "bad --to {pair:?}: a mover can change {}",
                MOVABLE_ATTRIBUTES.join(", ")
            )));
        }
        if out.insert(key.clone(), value.to_string()).is_some() {
            return Err(Failure::usage(format!("--to {key} is given twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_parsed_and_bad_ones_are_usage_errors() {
        let to = parse_to(&["department=Finance".into(), "role=".into()]).unwrap();
        assert_eq!(to["department"], "Finance");
        assert_eq!(to["role"], "");
        for bad in [
            vec!["department".to_string()],
            vec!["salary=1".to_string()],
            vec!["role=a".to_string(), "role=b".to_string()],
        ] {
            assert_eq!(parse_to(&bad).unwrap_err().code, 2, "{bad:?}");
        }
    }
}
