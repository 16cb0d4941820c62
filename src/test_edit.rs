//! Random edits of text for the property tests of the file parsers (playbooks, entitlement
//! policies, the TOML config): a valid file with one cut, insertion or duplicated line reaches far more of the
//! validation than random text does.

use proptest::prelude::*;

/// One edit of a text: cut a range, insert a snippet, or duplicate a line, at a char boundary.
pub(crate) fn edited(
    text: &str,
    at: prop::sample::Index,
    len: usize,
    kind: u8,
    snippet: &str,
) -> String {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let start = bounds[at.index(bounds.len())];
    let end = bounds
        .iter()
        .copied()
        .find(|&b| b >= start + len)
        .unwrap_or(text.len());
    match kind % 3 {
        0 => format!("{}{}", &text[..start], &text[end..]),
        1 => format!("{}{snippet}{}", &text[..start], &text[start..]),
        _ => {
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[start..]
                .find('\n')
                .map_or(text.len(), |i| start + i + 1);
            let line = &text[line_start..line_end];
            format!("{}{line}{}", &text[..line_end], &text[line_end..])
        }
    }
}

/// Snippets that mean something to YAML or TOML, or to a playbook or the config.
pub(crate) fn snippet() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            ": ",
            "- ",
            "\n",
            "  ",
            "{",
            "}",
            "[",
            "]",
            "&a ",
            "*a",
            "!!str ",
            "'",
            "\"",
            "#",
            "~",
            "|\n",
            ">\n",
            "? ",
            "grace: 1d",
            "grace: -1s",
            "state: [deleted]",
            "verify: true",
            "max_actions: 0",
            "max_actions: 99999999999999999999",
            "<<: *a",
            "---\n",
            "...\n",
            "[[",
            "]]",
            " = ",
            "[providers.aws]\n",
            "max_attempts = 0\n",
            "\"\"\"",
            "'''",
            "1979-05-27T07:32:00Z",
            "inf",
            "0x7f",
        ])
        .prop_map(str::to_string),
        "\\PC{0,6}",
    ]
}
