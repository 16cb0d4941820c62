//! Playbooks: the declarative, ordered stages and steps that turn a resolved graph into actions.
//!
//! A playbook is one YAML document (format in `docs/playbooks.md`). [`parse`] reads it with line
//! and column positions and validates it — purely, without I/O — against the providers'
//! [`Capabilities`] tables: every problem found is reported as a [`Diagnostic`]
//! (`FILE:LINE:COL: message`), not just the first. A [`Playbook`] that exists is valid: its
//! providers, kinds and verbs exist, destructive verbs state a grace period and come after a
//! deactivation, no two steps of a stage contradict each other, and the last stage verifies.
//!
//! [`crate::pipeline::plan`] walks a playbook's stages and steps over the findings; [`Step::selects`] is the
//! selector it uses.

mod model;
mod validate;
mod yaml;

#[cfg(test)]
pub(crate) mod test_caps;
#[cfg(test)]
mod tests;

pub use model::{
    Diagnostic, EntitlementStanding, Grace, HolderKind, Playbook, PlaybookError, Reach,
    SelectionFacts, Selector, Stage, Step,
};

use crate::trigger::Trigger;
use closeout_contract::Capabilities;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Load the playbook for `trigger` from `dir` (`DIR/TRIGGER.yaml`, see [`find`]) and check
/// that it lists the trigger.
pub fn for_trigger(
    dir: &Path,
    trigger: Trigger,
    caps: &[&'static Capabilities],
) -> Result<Playbook, PlaybookError> {
    let path = find(dir, trigger);
    let book = load(&path, caps)?;
    if !book.handles(trigger) {
        let listed: Vec<&str> = book.triggers.iter().map(|t| t.as_str()).collect();
        return Err(PlaybookError::one(
            &path,
            format!(
                "playbook `{}` does not list trigger `{trigger}` in its triggers ({})",
                book.name,
                listed.join(", ")
            ),
        ));
    }
    Ok(book)
}

/// The file of the playbook for `trigger`: `DIR/TRIGGER.yaml` (`leaver` → `DIR/leaver.yaml`).
pub fn find(dir: &Path, trigger: Trigger) -> PathBuf {
    dir.join(format!("{}.yaml", trigger.playbook()))
}

/// Read and validate a playbook file.
pub fn load(path: &Path, caps: &[&'static Capabilities]) -> Result<Playbook, PlaybookError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PlaybookError::one(path, format!("cannot read playbook: {e}")))?;
    parse(&path.display().to_string(), &text, caps)
        .map_err(|diagnostics| PlaybookError { diagnostics })
}

/// Parse and validate playbook `text` (named `file_name` in diagnostics) against the providers'
/// capability tables. Pure: no I/O. Returns every diagnostic, sorted by position.
pub fn parse(
    file_name: &str,
    text: &str,
    caps: &[&'static Capabilities],
) -> Result<Playbook, Vec<Diagnostic>> {
    let mut diags = crate::policy::yaml_doc::Diags::new(file_name);
    let raw = yaml::read(&mut diags, text);
    let book = raw.and_then(|raw| validate::validate(&mut diags, raw, caps));
    let mut list = diags.into_list();
    match book {
        Some(mut book) if list.is_empty() => {
            book.file = file_name.to_string();
            book.digest = hex::encode(Sha256::digest(text.as_bytes()));
            Ok(book)
        }
        _ => {
            if list.is_empty() {
                // Defensive: validation refused without saying why.
                list.push(Diagnostic {
                    file: file_name.to_string(),
                    line: 1,
                    column: 1,
                    message: "invalid playbook".into(),
                });
            }
            list.sort();
            list.dedup();
            Err(list)
        }
    }
}

/// Validate playbook files (for `closeout playbook check FILE...`): every diagnostic of every
/// file, in file order; empty when all are valid.
pub fn check_files<P: AsRef<Path>>(paths: &[P], caps: &[&'static Capabilities]) -> Vec<Diagnostic> {
    paths
        .iter()
        .flat_map(|p| match load(p.as_ref(), caps) {
            Ok(_) => Vec::new(),
            Err(e) => e.diagnostics,
        })
        .collect()
}

/// Properties over generated playbook text (docs/fuzzing.md; the fuzz target `playbook_yaml`
/// drives [`parse`] with coverage-guided input).
#[cfg(test)]
mod properties;
