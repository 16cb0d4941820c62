//! Reading a playbook's YAML into a raw, position-carrying form, reporting every structural
//! problem (syntax, unknown or missing fields, wrong types, bad enum values, bad durations)
//! instead of stopping at the first. Semantic checks against the providers live in `validate`.

use super::model::{EntitlementStanding, HolderKind, Reach};
use crate::config::acceptance::Acceptance;
use crate::grace::Grace;
use crate::policy::yaml_doc::{
    boolean, enum_list, is_null, load_mapping, mapping, node_pos, number_in, string, string_list,
    Diags, Fields, Pos, Sp,
};
use crate::trigger::Trigger;
use closeout_contract::{Relation, State};
use marked_yaml::types::MarkedMappingNode;
use marked_yaml::Node;

pub(super) struct RawPlaybook {
    pub pos: Pos,
    pub name: Option<Sp<String>>,
    pub description: Option<String>,
    pub triggers: Vec<Sp<Trigger>>,
    pub max_actions: Option<Sp<u64>>,
    pub stages: Vec<RawStage>,
    /// Where `stages` is written; `None` when it is missing (already reported).
    pub stages_pos: Option<Pos>,
    /// How many entries the `stages` list has, readable or not.
    pub stages_written: usize,
    /// Gaps this playbook's runs accept by name (`accept_unverified:`).
    pub accept_unverified: Vec<Acceptance>,
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
    /// `approvals`: distinct approvers the step needs (implies `requires_approval`).
    pub approvals: Option<u32>,
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
    pub entitlement: Vec<EntitlementStanding>,
    pub reach: Option<Reach>,
    pub broken: bool,
}

const TOP_FIELDS: &[&str] = &[
    "name",
    "description",
    "triggers",
    "limits",
    "stages",
    "accept_unverified",
];
const ACCEPT_FIELDS: &[&str] = &["provider", "kind", "resource", "reason"];
const LIMIT_FIELDS: &[&str] = &["max_actions"];
const STAGE_FIELDS: &[&str] = &["name", "verify", "steps"];
const STEP_FIELDS: &[&str] = &[
    "name",
    "select",
    "action",
    "grace",
    "requires_approval",
    "approvals",
];
const SELECT_FIELDS: &[&str] = &[
    "provider",
    "kind",
    "relation",
    "state",
    "holder",
    "entitlement",
    "reach",
];

/// Read the YAML structure. `None` when the text is not YAML at all (the reason is reported).
pub(super) fn read(d: &mut Diags, text: &str) -> Option<RawPlaybook> {
    let map = load_mapping(d, text, "a playbook", "name, triggers, limits, stages")?;
    Some(read_playbook(d, &map))
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
            |s| Trigger::parse(s).ok(),
            &trigger_names(),
        )
        .unwrap_or_default(),
        None => {
            d.at(
                top,
                format!(
                    "missing field `triggers` (which events run this playbook: {})",
                    trigger_names().join(", ")
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
    let accept_unverified = match f.get("accept_unverified") {
        Some((_, Node::Sequence(seq))) => {
            seq.iter().filter_map(|n| read_acceptance(d, n)).collect()
        }
        Some((_, n)) => {
            d.at(
                node_pos(n),
                "`accept_unverified` must be a list of { kind, reason } (and optionally provider, resource)",
            );
            Vec::new()
        }
        None => Vec::new(),
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
        accept_unverified,
    }
}

/// One `accept_unverified` entry: a gap the playbook's runs accept, with the reason.
fn read_acceptance(d: &mut Diags, node: &Node) -> Option<Acceptance> {
    let map = mapping(d, node, "an `accept_unverified` entry")?;
    let f = Fields::read(d, map, "an `accept_unverified` entry", ACCEPT_FIELDS);
    let field = |d: &mut Diags, name: &str| f.get(name).and_then(|(_, n)| string(d, n, name));
    let (kind, reason) = (field(d, "kind"), field(d, "reason"));
    let (provider, resource) = (field(d, "provider"), field(d, "resource"));
    let Some(kind) = kind.filter(|k| !k.value.trim().is_empty()) else {
        d.at(
            f.pos,
            "an `accept_unverified` entry needs `kind`: the gap it accepts",
        );
        return None;
    };
    let Some(reason) = reason.filter(|r| !r.value.trim().is_empty()) else {
        d.at(
            f.pos,
            "an `accept_unverified` entry needs `reason`: why the gap is acceptable",
        );
        return None;
    };
    if let Some(p) = &provider {
        if crate::registry::capabilities(&p.value).is_none() {
            d.at(p.pos, format!("unknown provider `{}`", p.value));
            return None;
        }
    }
    Some(Acceptance {
        provider: provider.map(|p| p.value),
        kind: kind.value,
        resource: resource.map(|r| r.value),
        reason: reason.value,
    })
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
    let before = d.count();
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
                d.at(text.pos, e.to_string());
                None
            }
        }
    });
    let requires_approval = f
        .get("requires_approval")
        .and_then(|(_, n)| boolean(d, n, "requires_approval"))
        .is_some_and(|b| b.value);
    let approvals = f
        .get("approvals")
        .and_then(|(_, n)| number_in(d, n, "approvals", 1, 10))
        .map(|n| n.value);
    let broken = d.count() > before;
    Some(RawStep {
        pos: f.pos,
        name,
        select,
        action,
        grace,
        grace_written: f.get("grace").is_some(),
        requires_approval: requires_approval || approvals.is_some(),
        approvals,
        broken,
    })
}

fn read_select(d: &mut Diags, node: &Node) -> Option<RawSelect> {
    let map = mapping(d, node, "`select`")?;
    let before = d.count();
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
    let standing_names: Vec<&str> = EntitlementStanding::ALL
        .iter()
        .map(|e| e.as_str())
        .collect();
    let entitlement = f
        .get("entitlement")
        .and_then(|(_, n)| {
            enum_list(
                d,
                n,
                "entitlement",
                EntitlementStanding::parse,
                &standing_names,
            )
        })
        .map(|v| v.into_iter().map(|s| s.value).collect())
        .unwrap_or_default();
    let reach_names: Vec<&str> = Reach::ALL.iter().map(|r| r.as_str()).collect();
    let reach = f.get("reach").and_then(|(_, n)| {
        let s = string(d, n, "reach")?;
        let parsed = Reach::parse(&s.value);
        if parsed.is_none() {
            d.at(
                s.pos,
                format!(
                    "bad reach `{}`; expected one of: {}",
                    s.value,
                    reach_names.join(", ")
                ),
            );
        }
        parsed
    });
    Some(RawSelect {
        pos: f.pos,
        provider,
        kind,
        relation,
        state,
        holder,
        entitlement,
        reach,
        broken: d.count() > before,
    })
}

/// The names a playbook's `triggers` may list.
fn trigger_names() -> Vec<&'static str> {
    Trigger::ALL.iter().map(|t| t.as_str()).collect()
}
