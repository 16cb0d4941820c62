//! Reading a YAML document with positions, reporting every structural problem (syntax, unknown or
//! missing fields, wrong types, bad enum values) as a [`Diagnostic`] instead of stopping at the
//! first. Shared by the playbook and the entitlement policy readers.

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Node, Span};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One problem in a YAML file, rendered `FILE:LINE:COL: message` (`FILE: message` when it has
/// no position, e.g. the file cannot be read). Lines and columns count from 1.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Diagnostic {
    /// The file as named to the user (the path given, or a display name).
    pub file: String,
    /// The line, from 1; 0 when the problem has no position (then not shown).
    pub line: usize,
    /// The column, from 1; meaningless when `line` is 0.
    pub column: usize,
    /// What is wrong, and where possible how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

/// Parse `text` as one YAML document whose top level is a mapping. `None` after reporting why
/// not. `document` names it in messages ("a playbook"), `shape` lists its top-level fields.
pub fn load_mapping(
    d: &mut Diags,
    text: &str,
    document: &str,
    shape: &str,
) -> Option<MarkedMappingNode> {
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    // The loader is not expected to panic on any input; a panic must still not take the caller
    // (a check of many files, the service) down with it.
    let loaded =
        std::panic::catch_unwind(|| marked_yaml::parse_yaml_with_options(0, text, options));
    let root = match loaded {
        Ok(Ok(root)) => root,
        Ok(Err(e)) => {
            load_error(d, &e, document, shape);
            return None;
        }
        Err(_) => {
            d.at(
                Pos::default(),
                "YAML syntax error: the document cannot be read",
            );
            return None;
        }
    };
    if let Some(pos) = second_document(text) {
        d.at(pos, format!("{document} file holds one YAML document, and a second one starts here: remove it or split the file"));
    }
    root.as_mapping().cloned()
}

/// A line and column (both from 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// The line, from 1 (0: unknown).
    pub line: usize,
    /// The column, from 1 (0: unknown).
    pub column: usize,
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sp<T> {
    /// Where the value starts in the file.
    pub pos: Pos,
    /// The value.
    pub value: T,
}

/// The diagnostics collected for one file.
pub struct Diags {
    file: String,
    list: Vec<Diagnostic>,
}

impl Diags {
    /// An empty collection for the file named `file` in every diagnostic.
    pub fn new(file: &str) -> Self {
        Diags {
            file: file.to_string(),
            list: Vec::new(),
        }
    }

    /// Report a problem at `pos` (an unknown position is shown as line 1, column 1).
    pub fn at(&mut self, pos: Pos, message: impl Into<String>) {
        self.list.push(Diagnostic {
            file: self.file.clone(),
            line: pos.line.max(1),
            column: pos.column.max(1),
            message: message.into(),
        });
    }

    /// How many problems were reported so far.
    pub fn count(&self) -> usize {
        self.list.len()
    }

    /// Every problem reported, in the order reported.
    pub fn into_list(self) -> Vec<Diagnostic> {
        self.list
    }
}

/// The start of a marked-YAML span as a [`Pos`] (unknown: 0, 0).
pub fn span_pos(span: &Span) -> Pos {
    span.start()
        .map(|m| Pos {
            line: m.line(),
            column: m.column(),
        })
        .unwrap_or_default()
}

/// Where a node starts. A block mapping's own span starts one column late, so use its first key.
pub fn node_pos(node: &Node) -> Pos {
    match node {
        Node::Mapping(m) => map_pos(m),
        other => span_pos(other.span()),
    }
}

/// Where a mapping starts: its first key (see [`node_pos`]).
pub fn map_pos(m: &MarkedMappingNode) -> Pos {
    m.keys()
        .map(|k| span_pos(k.span()))
        .min()
        .unwrap_or_else(|| span_pos(m.span()))
}

/// Whether a scalar is YAML null (empty, `~`, `null`): a field written without a value.
pub fn is_null(s: &MarkedScalarNode) -> bool {
    matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

/// The fields of one mapping, after reporting the ones not in `allowed`.
pub struct Fields<'n> {
    /// Where the mapping starts.
    pub pos: Pos,
    found: Vec<(&'static str, Pos, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// Read `map`'s fields, reporting each key not in `allowed` as unknown in `what` (e.g. "a
    /// step").
    pub fn read(
        d: &mut Diags,
        map: &'n MarkedMappingNode,
        what: &str,
        allowed: &[&'static str],
    ) -> Self {
        let mut found = Vec::new();
        for (key, value) in map.iter() {
            let pos = span_pos(key.span());
            match allowed.iter().find(|a| **a == key.as_str()) {
                Some(name) => found.push((*name, pos, value)),
                None => d.at(
                    pos,
                    format!(
                        "unknown field `{}` in {what}; expected one of: {}",
                        key.as_str(),
                        allowed.join(", ")
                    ),
                ),
            }
        }
        Fields {
            pos: map_pos(map),
            found,
        }
    }

    /// The field `name`, with where its key is, if it was written (and allowed).
    pub fn get(&self, name: &str) -> Option<(Pos, &'n Node)> {
        self.found
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, pos, node)| (*pos, *node))
    }
}

/// `node` as a mapping, or `None` after reporting that `what` must be one.
pub fn mapping<'n>(d: &mut Diags, node: &'n Node, what: &str) -> Option<&'n MarkedMappingNode> {
    match node {
        Node::Mapping(m) => Some(m),
        _ => {
            d.at(node_pos(node), format!("{what} must be a mapping"));
            None
        }
    }
}

/// A non-empty string value. Reports a null or non-scalar value.
pub fn string(d: &mut Diags, node: &Node, field: &str) -> Option<Sp<String>> {
    match node {
        Node::Scalar(s) if is_null(s) => {
            d.at(node_pos(node), format!("`{field}` has no value"));
            None
        }
        Node::Scalar(s) => Some(Sp {
            pos: span_pos(s.span()),
            value: s.as_str().to_string(),
        }),
        _ => {
            d.at(node_pos(node), format!("`{field}` must be a string"));
            None
        }
    }
}

/// A boolean value (`true`/`false`); `None` after reporting anything else.
pub fn boolean(d: &mut Diags, node: &Node, field: &str) -> Option<Sp<bool>> {
    match node.as_scalar().and_then(|s| s.as_bool()) {
        Some(b) => Some(Sp {
            pos: node_pos(node),
            value: b,
        }),
        None => {
            d.at(node_pos(node), format!("`{field}` must be true or false"));
            None
        }
    }
}

/// A whole number in `min..=max`; `None` after reporting anything else.
pub fn number_in(d: &mut Diags, node: &Node, field: &str, min: u32, max: u32) -> Option<Sp<u32>> {
    match node
        .as_scalar()
        .and_then(|s| s.as_str().parse::<u32>().ok())
        .filter(|n| (min..=max).contains(n))
    {
        Some(n) => Some(Sp {
            pos: node_pos(node),
            value: n,
        }),
        None => {
            d.at(
                node_pos(node),
                format!("`{field}` must be a whole number from {min} to {max}"),
            );
            None
        }
    }
}

/// A string or a list of strings; at least one. `None` after reporting a problem.
pub fn string_list(d: &mut Diags, node: &Node, field: &str) -> Option<Vec<Sp<String>>> {
    let items: Vec<&Node> = match node {
        Node::Scalar(s) if is_null(s) => Vec::new(),
        Node::Scalar(_) => vec![node],
        Node::Sequence(seq) => seq.iter().collect(),
        Node::Mapping(_) => {
            d.at(
                node_pos(node),
                format!("`{field}` must be a string or a list of strings"),
            );
            return None;
        }
    };
    if items.is_empty() {
        d.at(node_pos(node), format!("`{field}` must not be empty"));
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        match item {
            Node::Scalar(s) if !is_null(s) => out.push(Sp {
                pos: span_pos(s.span()),
                value: s.as_str().to_string(),
            }),
            _ => {
                d.at(node_pos(item), format!("each `{field}` must be a string"));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// A string or a list of strings, each one of `allowed`.
pub fn enum_list<T>(
    d: &mut Diags,
    node: &Node,
    field: &str,
    parse: impl Fn(&str) -> Option<T>,
    allowed: &[&str],
) -> Option<Vec<Sp<T>>> {
    let items = string_list(d, node, field)?;
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        match parse(&item.value) {
            Some(value) => out.push(Sp {
                pos: item.pos,
                value,
            }),
            None => {
                d.at(
                    item.pos,
                    format!(
                        "bad {field} `{}`; expected one of: {}",
                        item.value,
                        allowed.join(", ")
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// The one position a load error has.
pub fn load_error(d: &mut Diags, e: &LoadError, document: &str, shape: &str) {
    let pos = |m: &marked_yaml::Marker| Pos {
        line: m.line(),
        column: m.column(),
    };
    match e {
        LoadError::ScanError(m, scan) => {
            // yaml-rust's message without its own position prefix.
            let text = scan.to_string();
            let info = text.split(" at byte ").next().unwrap_or(&text).to_string();
            d.at(pos(m), format!("YAML syntax error: {info}"));
        }
        LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => d.at(
            pos(m),
            format!("{document} must be a YAML mapping ({shape})"),
        ),
        LoadError::UnexpectedAnchor(m) => d.at(
            pos(m),
            format!("YAML anchors and aliases are not allowed in {document}"),
        ),
        LoadError::MappingKeyMustBeScalar(m) => d.at(pos(m), "mapping keys must be plain strings"),
        LoadError::UnexpectedTag(m) => d.at(
            pos(m),
            format!("YAML tags (`!tag`) are not allowed in {document}"),
        ),
        LoadError::DuplicateKey(inner) => {
            let first = span_pos(inner.prev_key.span());
            d.at(
                span_pos(inner.key.span()),
                format!(
                    "duplicate key `{}` (first written at line {})",
                    inner.key.as_str(),
                    first.line
                ),
            );
        }
    }
}

/// A second YAML document (`---` after content) would be silently ignored by the loader: refuse it.
pub fn second_document(text: &str) -> Option<Pos> {
    let mut content_seen = false;
    let mut ended = false;
    for (i, line) in text.lines().enumerate() {
        let pos = Pos {
            line: i + 1,
            column: 1,
        };
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            if content_seen {
                return Some(pos);
            }
            continue;
        }
        if trimmed == "..." || trimmed.starts_with("... ") {
            ended = content_seen;
            continue;
        }
        let t = trimmed.trim_start();
        if !t.is_empty() && !t.starts_with('#') && !t.starts_with('%') {
            if ended {
                return Some(pos);
            }
            content_seen = true;
        }
    }
    None
}
