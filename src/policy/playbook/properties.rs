//! Property tests of [`super::parse`]: arbitrary text, edits of the shipped playbooks, and generated
//! valid playbooks.

use super::test_caps::ALL;
use super::*;
use crate::grace::Grace;
use crate::test_edit::{edited, snippet};
use proptest::prelude::*;

const SHIPPED: &[&str] = &[
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/leaver.yaml"
    )),
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/incident.yaml"
    )),
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/joiner.yaml"
    )),
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks/mover.yaml")),
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/rotation.yaml"
    )),
];

/// What a refusal must carry: at least one diagnostic, each naming the file, with a message, at
/// a line inside the text (or 0: no position).
fn check_refusal(text: &str, diags: &[Diagnostic]) -> Result<(), TestCaseError> {
    prop_assert!(!diags.is_empty());
    let lines = text.lines().count() + 1;
    for d in diags {
        prop_assert_eq!(d.file.as_str(), "t.yaml");
        prop_assert!(!d.message.is_empty());
        prop_assert!(d.line <= lines, "line {} of {}: {}", d.line, lines, d);
    }
    Ok(())
}

/// A valid playbook built from parts, and the parts it must parse to.
fn generated() -> impl Strategy<Value = (String, String, usize, Grace)> {
    (
        "[a-z][a-z0-9-]{0,20}",
        1usize..100_000,
        0u64..=3650 * 86_400,
    )
        .prop_map(|(name, max, grace)| {
            let grace = Grace::from_seconds(grace);
            let text = format!(
                "name: {name}\n\
                 triggers: [leaver]\n\
                 limits: {{ max_actions: {max} }}\n\
                 stages:\n\
                 \x20 - name: contain\n\
                 \x20   steps:\n\
                 \x20     - name: deactivate-tokens\n\
                 \x20       select: {{ provider: fake, kind: token }}\n\
                 \x20       action: deactivate\n\
                 \x20 - name: retire\n\
                 \x20   steps:\n\
                 \x20     - name: delete-tokens\n\
                 \x20       select: {{ provider: fake, kind: token, state: inactive }}\n\
                 \x20       action: delete\n\
                 \x20       grace: {grace}\n\
                 \x20 - name: verify\n\
                 \x20   verify: true\n"
            );
            (text, name, max, grace)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any text: a playbook or diagnostics, never a panic.
    #[test]
    fn any_text_is_parsed_or_refused(text in "[\\PC\n\t]{0,200}") {
        if let Err(diags) = parse("t.yaml", &text, &ALL) {
            check_refusal(&text, &diags)?;
        }
    }

    /// An edit of a shipped playbook: a playbook (whose digest is its text's) or diagnostics.
    #[test]
    fn edited_shipped_playbooks_are_parsed_or_refused(
        which in prop::sample::select(SHIPPED),
        at in any::<prop::sample::Index>(),
        len in 0usize..40,
        kind in any::<u8>(),
        snippet in snippet(),
    ) {
        let text = edited(which, at, len, kind, &snippet);
        match parse("t.yaml", &text, &ALL) {
            Ok(book) => prop_assert_eq!(
                book.digest(),
                hex::encode(Sha256::digest(text.as_bytes()))
            ),
            Err(diags) => check_refusal(&text, &diags)?,
        }
    }

    /// A generated valid playbook parses to the values it was written with.
    #[test]
    fn a_generated_playbook_parses_to_its_parts((text, name, max, grace) in generated()) {
        let book = parse("t.yaml", &text, &ALL);
        prop_assert!(book.is_ok(), "{:?}\n{}", book.err(), text);
        let book = book.unwrap();
        prop_assert_eq!(&book.name, &name);
        prop_assert_eq!(book.max_actions, max);
        prop_assert_eq!(&book.triggers, &vec![Trigger::Leaver]);
        let graces: Vec<Option<Grace>> = book.steps().map(|(_, s)| s.grace).collect();
        prop_assert_eq!(graces, vec![None, Some(grace)]);
    }
}
