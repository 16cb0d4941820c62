//! Semantic validation of a read playbook against the providers' capability tables: names,
//! providers, kinds, verbs, grace periods, the ordering rules of DESIGN.md §2, contradictions and
//! the verify stage. Every problem is reported; nothing stops at the first.

use super::model::{EntitlementStanding, HolderKind, Playbook, Selector, Stage, Step};
use super::yaml::{RawPlaybook, RawSelect, RawStage, RawStep};
use crate::policy::yaml_doc::{Diags, Pos, Sp};
use closeout_contract::{verbs, Capabilities, State, Verb};
use std::collections::{BTreeMap, BTreeSet};

/// The selector's state list when the playbook does not write one.
pub(super) const DEFAULT_STATE: [State; 1] = [State::Active];

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_name(d: &mut Diags, what: &str, pos: Pos, name: &str) {
    if !valid_name(name) {
        d.at(
            pos,
            format!("{what} name `{name}` may hold only letters, digits, `-`, `_` and `.`"),
        );
    }
}

fn list(items: &[&str]) -> String {
    items.join(", ")
}

/// A step's selector and verb, resolved against the capability tables.
struct Resolved {
    stage: usize,
    name: String,
    pos: Pos,
    action: String,
    /// (provider, kind) → verb, for every combination that exists and supports the action.
    verbs: BTreeMap<(String, String), Verb>,
    states: BTreeSet<State>,
    relations: BTreeSet<closeout_contract::Relation>,
    holders: BTreeSet<HolderKind>,
}

impl Resolved {
    /// The states a finding this step acted on can be in afterwards.
    fn leaves(&self) -> BTreeSet<State> {
        self.verbs.values().map(|v| v.leaves).collect()
    }
}

/// Resolve one step's (provider, kind) combinations and verb; report unknown ones.
fn resolve_step(
    d: &mut Diags,
    step: &RawStep,
    select: &RawSelect,
    caps: &[&'static Capabilities],
) -> BTreeMap<(String, String), Verb> {
    let mut verbs = BTreeMap::new();
    let known: Vec<&'static Capabilities> = select
        .provider
        .iter()
        .filter_map(|p| match caps.iter().find(|c| c.provider == p.value) {
            Some(c) => Some(*c),
            None => {
                let names: Vec<&str> = caps.iter().map(|c| c.provider).collect();
                d.at(
                    p.pos,
                    format!(
                        "unknown provider `{}`; known providers: {}",
                        p.value,
                        if names.is_empty() {
                            "(none)".to_string()
                        } else {
                            list(&names)
                        }
                    ),
                );
                None
            }
        })
        .collect();
    if known.is_empty() {
        return verbs;
    }
    for kind in &select.kind {
        let owners: Vec<&&'static Capabilities> = known
            .iter()
            .filter(|c| c.kind(&kind.value).is_some())
            .collect();
        if owners.is_empty() {
            let message = if let [only] = known.as_slice() {
                let kinds: Vec<&str> = only.kinds.iter().map(|k| k.kind).collect();
                format!(
                    "kind `{}` is not a kind of provider {}; its kinds are: {}",
                    kind.value,
                    only.provider,
                    list(&kinds)
                )
            } else {
                let names: Vec<&str> = known.iter().map(|c| c.provider).collect();
                format!(
                    "kind `{}` is not a kind of any of the providers {}",
                    kind.value,
                    list(&names)
                )
            };
            d.at(kind.pos, message);
            continue;
        }
        let Some(action) = &step.action else { continue };
        for cap in owners {
            let spec = cap.kind(&kind.value).expect("filtered above");
            match cap.verb(&kind.value, &action.value) {
                Some(verb) => {
                    verbs.insert((cap.provider.to_string(), kind.value.clone()), *verb);
                }
                None => {
                    let supported: Vec<&str> = spec.verbs.iter().map(|v| v.name).collect();
                    let message = if supported.is_empty() {
                        format!(
                            "action `{}` is not supported for kind `{}` of provider {}: it supports no actions",
                            action.value, kind.value, cap.provider
                        )
                    } else {
                        format!(
                            "action `{}` is not supported for kind `{}` of provider {}; it supports: {}",
                            action.value,
                            kind.value,
                            cap.provider,
                            list(&supported)
                        )
                    };
                    d.at(action.pos, message);
                }
            }
        }
    }
    verbs
}

/// Validate a raw playbook against the providers' capabilities: every problem becomes a
/// diagnostic; a playbook is returned only when there is none.
pub(super) fn validate(
    d: &mut Diags,
    raw: RawPlaybook,
    caps: &[&'static Capabilities],
) -> Option<Playbook> {
    if let Some(name) = &raw.name {
        check_name(d, "playbook", name.pos, &name.value);
    }
    if let Some(pos) = raw.stages_pos {
        if raw.stages_written == 0 {
            d.at(pos, "`stages` must list at least one stage");
        }
    }
    check_stages(d, &raw);
    let (steps_out, resolved, complete) = check_steps(d, &raw, caps);
    check_contradictions(d, &raw.stages, &resolved);
    assemble(raw, steps_out, complete)
}

/// Stage names are unique; exactly one verify stage, the last, without steps; every other
/// stage has steps.
fn check_stages(d: &mut Diags, raw: &RawPlaybook) {
    // Stage names, verify stages, steps present.
    let mut stage_names: BTreeMap<String, Pos> = BTreeMap::new();
    let mut verify_stages: Vec<(usize, &RawStage)> = Vec::new();
    for (i, stage) in raw.stages.iter().enumerate() {
        let label = stage
            .name
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_else(|| format!("#{}", i + 1));
        if let Some(name) = &stage.name {
            check_name(d, "stage", name.pos, &name.value);
            if let Some(first) = stage_names.get(&name.value) {
                d.at(
                    name.pos,
                    format!(
                        "duplicate stage name `{}` (first used at line {})",
                        name.value, first.line
                    ),
                );
            } else {
                stage_names.insert(name.value.clone(), name.pos);
            }
        }
        let is_verify = stage.verify.as_ref().is_some_and(|v| v.value);
        let written = stage.steps_field.map(|(_, n)| n).unwrap_or(0);
        if is_verify {
            verify_stages.push((i, stage));
            if written > 0 {
                let pos = stage.steps_field.map(|(p, _)| p).unwrap_or(stage.pos);
                d.at(
                    pos,
                    format!(
                        "verify stage `{label}` must not have steps: it re-resolves every provider and probes old credentials"
                    ),
                );
            }
        } else if written == 0 {
            let pos = stage.steps_field.map(|(p, _)| p).unwrap_or(stage.pos);
            d.at(
                pos,
                format!("stage `{label}` has no steps (only the `verify: true` stage has none)"),
            );
        }
    }
    match verify_stages.as_slice() {
        [] => {
            if raw.stages_written > 0 {
                d.at(
                    raw.stages_pos.unwrap_or(raw.pos),
                    "no verify stage: end the playbook with a stage that has `verify: true` (closure is proven by checking the providers again)",
                );
            }
        }
        [first, rest @ ..] => {
            for (_, extra) in rest {
                d.at(
                    extra.pos,
                    format!(
                        "more than one verify stage (the first is at line {}); keep one, as the last stage",
                        first.1.pos.line
                    ),
                );
            }
            let (index, stage) = first;
            if *index + 1 != raw.stages.len() && rest.is_empty() {
                d.at(
                    stage.pos,
                    "the verify stage must be the last stage: verify proves closure after every change",
                );
            }
        }
    }
}

/// Each step: its name, what it selects, its verb on every (provider, kind) it can select, and
/// the rules for destructive verbs. Returns the steps per stage, what each resolved to, and
/// whether every step could be read completely.
fn check_steps(
    d: &mut Diags,
    raw: &RawPlaybook,
    caps: &[&'static Capabilities],
) -> (Vec<Vec<Step>>, Vec<Resolved>, bool) {
    // Steps: names, providers, kinds, verbs, grace.
    let mut step_names: BTreeMap<String, Pos> = BTreeMap::new();
    let mut resolved: Vec<Resolved> = Vec::new();
    let mut steps_out: Vec<Vec<Step>> = vec![Vec::new(); raw.stages.len()];
    let mut complete = true;
    for (si, stage) in raw.stages.iter().enumerate() {
        for step in &stage.steps {
            if let Some(name) = &step.name {
                check_name(d, "step", name.pos, &name.value);
                if let Some(first) = step_names.get(&name.value) {
                    d.at(
                        name.pos,
                        format!(
                            "duplicate step name `{}` (first used at line {})",
                            name.value, first.line
                        ),
                    );
                } else {
                    step_names.insert(name.value.clone(), name.pos);
                }
            }
            let Some(select) = &step.select else {
                complete = false;
                continue;
            };
            let verbs = resolve_step(d, step, select, caps);
            let (Some(name), Some(action)) = (&step.name, &step.action) else {
                complete = false;
                continue;
            };
            if step.broken || select.broken {
                complete = false;
            }
            let states: BTreeSet<State> = match &select.state {
                Some(states) => states.iter().map(|s| s.value).collect(),
                // A missing entitlement is planned as a finding not held yet (deleted).
                None if select.entitlement.contains(&EntitlementStanding::Missing) => {
                    [State::Deleted].into_iter().collect()
                }
                None => DEFAULT_STATE.into_iter().collect(),
            };

            if verbs.values().any(|v| v.needs_grace) {
                check_destructive(
                    d, si, step, select, name, action, &verbs, &states, &resolved,
                );
            }

            resolved.push(Resolved {
                stage: si,
                name: name.value.clone(),
                pos: step.pos,
                action: action.value.clone(),
                verbs: verbs.clone(),
                states: states.clone(),
                relations: select.relation.iter().copied().collect(),
                holders: select.holder.iter().copied().collect(),
            });
            steps_out[si].push(Step {
                name: name.value.clone(),
                select: Selector {
                    provider: select.provider.iter().map(|p| p.value.clone()).collect(),
                    kind: select.kind.iter().map(|k| k.value.clone()).collect(),
                    relation: select.relation.clone(),
                    state: states.into_iter().collect(),
                    holder: select.holder.clone(),
                    entitlement: select.entitlement.clone(),
                    reach: select.reach,
                },
                action: action.value.clone(),
                grace: step.grace.as_ref().map(|g| g.value),
                requires_approval: step.requires_approval,
                approvals: step.approvals.unwrap_or(1),
                line: step.pos.line,
                verbs,
            });
        }
    }

    (steps_out, resolved, complete)
}

/// Destructive verbs (delete, destroy): a grace period, only findings that are no longer open,
/// and an earlier stage that moves the kind into a state this step selects.
#[allow(clippy::too_many_arguments)]
fn check_destructive(
    d: &mut Diags,
    si: usize,
    step: &RawStep,
    select: &RawSelect,
    name: &Sp<String>,
    action: &Sp<String>,
    verbs: &BTreeMap<(String, String), Verb>,
    states: &BTreeSet<State>,
    resolved: &[Resolved],
) {
    let destructive: Vec<(&(String, String), &Verb)> =
        verbs.iter().filter(|(_, v)| v.needs_grace).collect();
    {
        if !step.grace_written {
            d.at(
                action.pos,
                format!(
                    "action `{}` destroys what cannot be brought back: state a `grace` period (e.g. `grace: 7d`), counted from when the finding was deactivated",
                    action.value
                ),
            );
        }
        let open: Vec<&str> = states
            .iter()
            .filter(|s| s.is_open())
            .map(|s| s.as_str())
            .collect();
        if !open.is_empty() {
            let pos = select
                .state
                .as_ref()
                .and_then(|s| s.first().map(|s| s.pos))
                .unwrap_or(select.pos);
            d.at(
                pos,
                format!(
                    "step `{}` would {} findings that are still {} (deactivate before delete): select `state: inactive`{}",
                    name.value,
                    action.value,
                    open.join("/"),
                    if select.state.is_none() { "; the default state is active" } else { "" }
                ),
            );
        }
        // An earlier stage must bring the kind into a state this step selects:
        // deactivate before delete, rotate before destroying old versions.
        let prepared_states: BTreeSet<State> =
            states.iter().copied().filter(|s| !s.is_open()).collect();
        for ((provider, kind), _) in &destructive {
            let key = (provider.clone(), kind.clone());
            let prepared = resolved.iter().any(|r| {
                r.stage < si
                    && r.verbs
                        .get(&key)
                        .is_some_and(|v| prepared_states.contains(&v.leaves))
            });
            if prepared {
                continue;
            }
            let message = if prepared_states.is_empty()
                || prepared_states.contains(&State::Inactive)
            {
                format!(
                    "deactivate before delete: no earlier stage deactivates kind `{kind}` of provider {provider}; add a `{}` step for it in an earlier stage",
                    verbs::DEACTIVATE.name
                )
            } else {
                let wanted: Vec<&str> = prepared_states.iter().map(|s| s.as_str()).collect();
                format!(
                    "`{}` needs an earlier stage that leaves kind `{kind}` of provider {provider} {}; add one (e.g. a `rotate` step)",
                    action.value,
                    wanted.join("/")
                )
            };
            d.at(action.pos, message);
        }
    }
}

/// The playbook, when every part of it was read and nothing is missing.
fn assemble(raw: RawPlaybook, steps_out: Vec<Vec<Step>>, complete: bool) -> Option<Playbook> {
    let name = raw.name?;
    let max_actions = raw.max_actions?;
    if !complete || raw.triggers.is_empty() {
        return None;
    }
    let stages = raw
        .stages
        .into_iter()
        .zip(steps_out)
        .map(|(stage, steps)| {
            Some(Stage {
                name: stage.name?.value,
                verify: stage.verify.is_some_and(|v| v.value),
                steps,
                line: stage.pos.line,
            })
        })
        .collect::<Option<Vec<Stage>>>()?;
    Some(Playbook {
        file: String::new(),
        name: name.value,
        description: raw.description,
        triggers: raw.triggers.into_iter().map(|t| t.value).collect(),
        max_actions: usize::try_from(max_actions.value).unwrap_or(usize::MAX),
        stages,
        digest: String::new(),
        accept_unverified: raw.accept_unverified,
    })
}

/// Two selector dimensions can meet: either is "any" (empty) or they share a value.
fn meets<T: Ord>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> bool {
    a.is_empty() || b.is_empty() || !a.is_disjoint(b)
}

/// Two steps of one stage whose selections can meet, with different verbs: a stage's actions run
/// concurrently, so they would race on the same finding.
fn check_contradictions(d: &mut Diags, stages: &[RawStage], resolved: &[Resolved]) {
    for (j, later) in resolved.iter().enumerate() {
        for earlier in &resolved[..j] {
            if earlier.stage != later.stage || earlier.action == later.action {
                continue;
            }
            let shared: Vec<&(String, String)> = later
                .verbs
                .keys()
                .filter(|k| earlier.verbs.contains_key(*k))
                .collect();
            if shared.is_empty() {
                continue;
            }
            // The later step sees the earlier step's results: its projected states.
            let reachable: BTreeSet<State> =
                earlier.states.union(&earlier.leaves()).copied().collect();
            if !(meets(&earlier.relations, &later.relations)
                && meets(&earlier.holders, &later.holders)
                && !later.states.is_disjoint(&reachable))
            {
                continue;
            }
            let what: Vec<String> = shared.iter().map(|(p, k)| format!("{p} {k}")).collect();
            let stage = stages[later.stage]
                .name
                .as_ref()
                .map(|n| n.value.as_str())
                .unwrap_or("?");
            d.at(
                later.pos,
                format!(
                    "contradictory steps: `{}` (line {}) and `{}` in stage `{stage}` can both act on the same {} findings with different actions ({}, {}); a stage's actions run concurrently: narrow them apart by holder, relation or state, or move one to another stage",
                    earlier.name,
                    earlier.pos.line,
                    later.name,
                    what.join(", "),
                    earlier.action,
                    later.action
                ),
            );
        }
    }
}
