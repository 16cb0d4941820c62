//! Reading a playbook's YAML into a raw, position-carrying form, reporting every structural
//! problem (syntax, unknown or missing fields, wrong types, bad enum values, bad durations)
//! instead of stopping at the first. Semantic checks against the providers live in `validate`.

use super::grace::Grace;
use super::{Diagnostic, HolderKind, TRIGGERS};
use closeout_contract::{Relation, State};
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Node, Span};

/// A line and column (both from 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sp<T> {
    pub pos: Pos,
    pub value: T,
}

/// The diagnostics collected for one file.
pub(super) struct Diags {
    file: String,
    list: Vec<Diagnostic>,
}

impl Diags {
    pub fn new(file: &str) -> Self {
        Diags {
            file: file.to_string(),
            list: Vec::new(),
        }
    }

    pub fn at(&mut self, pos: Pos, message: impl Into<String>) {
        self.list.push(Diagnostic {
            file: self.file.clone(),
            line: pos.line.max(1),
            column: pos.column.max(1),
            message: message.into(),
        });
    }

    pub fn into_list(self) -> Vec<Diagnostic> {
        self.list
    }
}

pub(super) struct RawPlaybook {
    pub pos: Pos,
    pub name: Option<Sp<String>>,
    pub description: Option<String>,
    pub triggers: Vec<Sp<String>>,
    pub max_actions: Option<Sp<u64>>,
    pub stages: Vec<RawStage>,
    /// Where `stages` is written; `None` when it is missing (already reported).
    pub stages_pos: Option<Pos>,
    /// How many entries the `stages` list has, readable or not.
    pub stages_written: usize,
}

pub(super) struct RawStage {
    pub pos: Pos,
    pub name: Option<Sp<String>>,
    pub verify: Option<Sp<bool>>,
    /// The readable steps.
    pub steps: Vec<RawStep>,
    /// Where `steps` is written, and how many entries it has, readable or not.
    pub steps_field: Option<(Pos, usize)>,
}

pub(super) struct RawStep {
    pub pos: Pos,
    pub name: Option<Sp<String>>,
    pub select: Option<RawSelect>,
    pub action: Option<Sp<String>>,
    pub grace: Option<Sp<Grace>>,
    /// `grace` is written (even if it could not be read).
    pub grace_written: bool,
    pub requires_approval: bool,
    /// A field of the step could not be read; semantic checks would only repeat the problem.
    pub broken: bool,
}

pub(super) struct RawSelect {
    pub pos: Pos,
    pub provider: Vec<Sp<String>>,
    pub kind: Vec<Sp<String>>,
    pub relation: Vec<Relation>,
    /// `None`: not written (defaults to `[active]`).
    pub state: Option<Vec<Sp<State>>>,
    pub holder: Vec<HolderKind>,
    pub broken: bool,
}

const TOP_FIELDS: &[&str] = &["name", "description", "triggers", "limits", "stages"];
const LIMIT_FIELDS: &[&str] = &["max_actions"];
const STAGE_FIELDS: &[&str] = &["name", "verify", "steps"];
const STEP_FIELDS: &[&str] = &["name", "select", "action", "grace", "requires_approval"];
const SELECT_FIELDS: &[&str] = &["provider", "kind", "relation", "state", "holder"];

fn span_pos(span: &Span) -> Pos {
    span.start()
        .map(|m| Pos {
            line: m.line(),
            column: m.column(),
        })
        .unwrap_or_default()
}

/// Where a node starts. A block mapping's own span starts one column late, so use its first key.
fn node_pos(node: &Node) -> Pos {
    match node {
        Node::Mapping(m) => map_pos(m),
        other => span_pos(other.span()),
    }
}

fn map_pos(m: &MarkedMappingNode) -> Pos {
    m.keys()
        .map(|k| span_pos(k.span()))
        .min()
        .unwrap_or_else(|| span_pos(m.span()))
}

fn is_null(s: &MarkedScalarNode) -> bool {
    matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

/// The fields of one mapping, after reporting the ones not in `allowed`.
struct Fields<'n> {
    pos: Pos,
    found: Vec<(&'static str, Pos, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn read(
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

    fn get(&self, name: &str) -> Option<(Pos, &'n Node)> {
        self.found
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, pos, node)| (*pos, *node))
    }
}

fn mapping<'n>(d: &mut Diags, node: &'n Node, what: &str) -> Option<&'n MarkedMappingNode> {
    match node {
        Node::Mapping(m) => Some(m),
        _ => {
            d.at(node_pos(node), format!("{what} must be a mapping"));
            None
        }
    }
}

/// A non-empty string value. Reports a null or non-scalar value.
fn string(d: &mut Diags, node: &Node, field: &str) -> Option<Sp<String>> {
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

fn boolean(d: &mut Diags, node: &Node, field: &str) -> Option<Sp<bool>> {
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

/// A string or a list of strings; at least one. `None` after reporting a problem.
fn string_list(d: &mut Diags, node: &Node, field: &str) -> Option<Vec<Sp<String>>> {
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
fn enum_list<T>(
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
fn load_error(d: &mut Diags, e: &LoadError) {
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
            "a playbook must be a YAML mapping (name, triggers, limits, stages)",
        ),
        LoadError::UnexpectedAnchor(m) => d.at(
            pos(m),
            "YAML anchors and aliases are not allowed in a playbook",
        ),
        LoadError::MappingKeyMustBeScalar(m) => d.at(pos(m), "mapping keys must be plain strings"),
        LoadError::UnexpectedTag(m) => {
            d.at(pos(m), "YAML tags (`!tag`) are not allowed in a playbook")
        }
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
fn second_document(text: &str) -> Option<Pos> {
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

/// Read the YAML structure. `None` when the text is not YAML at all (the reason is reported).
pub(super) fn read(d: &mut Diags, text: &str) -> Option<RawPlaybook> {
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    // The loader is not expected to panic on any input; a panic must still not take the caller
    // (a `playbook check` of many files, the service) down with it.
    let loaded =
        std::panic::catch_unwind(|| marked_yaml::parse_yaml_with_options(0, text, options));
    let root = match loaded {
        Ok(Ok(root)) => root,
        Ok(Err(e)) => {
            load_error(d, &e);
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
        d.at(pos, "a playbook file holds one YAML document, and a second one starts here: remove it or split the file");
    }
    let map = root.as_mapping()?;
    Some(read_playbook(d, map))
}

fn read_playbook(d: &mut Diags, map: &MarkedMappingNode) -> RawPlaybook {
    let f = Fields::read(d, map, "the playbook", TOP_FIELDS);
    let top = Pos { line: 1, column: 1 };
    let name = match f.get("name") {
        Some((_, n)) => string(d, n, "name"),
        None => {
            d.at(top, "missing field `name` (the playbook's name)");
            None
        }
    };
    let description = f
        .get("description")
        .and_then(|(_, n)| match n.as_scalar() {
            Some(s) if is_null(s) => None,
            _ => string(d, n, "description"),
        })
        .map(|s| s.value);
    let triggers = match f.get("triggers") {
        Some((_, n)) => enum_list(
            d,
            n,
            "trigger",
            |s| TRIGGERS.contains(&s).then(|| s.to_string()),
            &TRIGGERS,
        )
        .unwrap_or_default(),
        None => {
            d.at(
                top,
                format!(
                    "missing field `triggers` (which events run this playbook: {})",
                    TRIGGERS.join(", ")
                ),
            );
            Vec::new()
        }
    };
    let max_actions = match f.get("limits") {
        Some((_, n)) => read_limits(d, n),
        None => {
            d.at(
                top,
                "missing field `limits` with `max_actions` (the blast-radius limit: a run needing more actions stops for confirmation)",
            );
            None
        }
    };
    let (stages, stages_pos, stages_written) = match f.get("stages") {
        Some((key_pos, n)) => match n {
            Node::Sequence(seq) => (
                seq.iter().filter_map(|s| read_stage(d, s)).collect(),
                Some(key_pos),
                seq.len(),
            ),
            Node::Scalar(s) if is_null(s) => (Vec::new(), Some(key_pos), 0),
            _ => {
                d.at(node_pos(n), "`stages` must be a list of stages");
                (Vec::new(), None, 0)
            }
        },
        None => {
            d.at(top, "missing field `stages`");
            (Vec::new(), None, 0)
        }
    };
    RawPlaybook {
        pos: f.pos,
        name,
        description,
        triggers,
        max_actions,
        stages,
        stages_pos,
        stages_written,
    }
}

fn read_limits(d: &mut Diags, node: &Node) -> Option<Sp<u64>> {
    let map = mapping(d, node, "`limits`")?;
    let f = Fields::read(d, map, "`limits`", LIMIT_FIELDS);
    let Some((_, n)) = f.get("max_actions") else {
        d.at(f.pos, "missing field `max_actions` in `limits`");
        return None;
    };
    match n.as_scalar().and_then(|s| s.as_u64()) {
        Some(v) if v >= 1 => Some(Sp {
            pos: node_pos(n),
            value: v,
        }),
        _ => {
            d.at(
                node_pos(n),
                "`max_actions` must be a whole number of at least 1",
            );
            None
        }
    }
}

fn read_stage(d: &mut Diags, node: &Node) -> Option<RawStage> {
    let map = mapping(d, node, "a stage")?;
    let f = Fields::read(d, map, "a stage", STAGE_FIELDS);
    let name = match f.get("name") {
        Some((_, n)) => string(d, n, "name"),
        None => {
            d.at(f.pos, "missing field `name` in stage");
            None
        }
    };
    let verify = f.get("verify").and_then(|(_, n)| boolean(d, n, "verify"));
    let (steps, steps_field) = match f.get("steps") {
        Some((key_pos, n)) => match n {
            Node::Sequence(seq) => (
                seq.iter().filter_map(|s| read_step(d, s)).collect(),
                Some((key_pos, seq.len())),
            ),
            Node::Scalar(s) if is_null(s) => (Vec::new(), Some((key_pos, 0))),
            _ => {
                d.at(node_pos(n), "`steps` must be a list of steps");
                // Counted as written so that no "has no steps" follows.
                (Vec::new(), Some((key_pos, 1)))
            }
        },
        None => (Vec::new(), None),
    };
    Some(RawStage {
        pos: f.pos,
        name,
        verify,
        steps,
        steps_field,
    })
}

fn read_step(d: &mut Diags, node: &Node) -> Option<RawStep> {
    let map = mapping(d, node, "a step")?;
    let before = d.list.len();
    let f = Fields::read(d, map, "a step", STEP_FIELDS);
    let name = match f.get("name") {
        Some((_, n)) => string(d, n, "name"),
        None => {
            d.at(f.pos, "missing field `name` in step");
            None
        }
    };
    let select = match f.get("select") {
        Some((_, n)) => read_select(d, n),
        None => {
            d.at(
                f.pos,
                "missing field `select` in step (which findings it acts on)",
            );
            None
        }
    };
    let action = match f.get("action") {
        Some((_, n)) => string(d, n, "action"),
        None => {
            d.at(f.pos, "missing field `action` in step (the verb to apply)");
            None
        }
    };
    let grace = f.get("grace").and_then(|(_, n)| {
        let text = string(d, n, "grace")?;
        match Grace::parse(&text.value) {
            Ok(g) => Some(Sp {
                pos: text.pos,
                value: g,
            }),
            Err(e) => {
                d.at(text.pos, e);
                None
            }
        }
    });
    let requires_approval = f
        .get("requires_approval")
        .and_then(|(_, n)| boolean(d, n, "requires_approval"))
        .is_some_and(|b| b.value);
    let broken = d.list.len() > before;
    Some(RawStep {
        pos: f.pos,
        name,
        select,
        action,
        grace,
        grace_written: f.get("grace").is_some(),
        requires_approval,
        broken,
    })
}

fn read_select(d: &mut Diags, node: &Node) -> Option<RawSelect> {
    let map = mapping(d, node, "`select`")?;
    let before = d.list.len();
    let f = Fields::read(d, map, "`select`", SELECT_FIELDS);
    let provider = match f.get("provider") {
        Some((_, n)) => string_list(d, n, "provider").unwrap_or_default(),
        None => {
            d.at(f.pos, "missing field `provider` in `select`");
            Vec::new()
        }
    };
    let kind = match f.get("kind") {
        Some((_, n)) => string_list(d, n, "kind").unwrap_or_default(),
        None => {
            d.at(f.pos, "missing field `kind` in `select`");
            Vec::new()
        }
    };
    let relation_names: Vec<&str> = Relation::ALL.iter().map(|r| r.as_str()).collect();
    let relation = f
        .get("relation")
        .and_then(|(_, n)| enum_list(d, n, "relation", Relation::parse, &relation_names))
        .map(|v| v.into_iter().map(|s| s.value).collect())
        .unwrap_or_default();
    let state_names: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
    let state = f
        .get("state")
        .map(|(_, n)| enum_list(d, n, "state", State::parse, &state_names).unwrap_or_default());
    let holder_names: Vec<&str> = HolderKind::ALL.iter().map(|h| h.as_str()).collect();
    let holder = f
        .get("holder")
        .and_then(|(_, n)| enum_list(d, n, "holder", HolderKind::parse, &holder_names))
        .map(|v| v.into_iter().map(|s| s.value).collect())
        .unwrap_or_default();
    Some(RawSelect {
        pos: f.pos,
        provider,
        kind,
        relation,
        state,
        holder,
        broken: d.list.len() > before,
    })
}
