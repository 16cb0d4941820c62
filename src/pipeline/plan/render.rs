//! The text rendering of a [`Plan`], in the manner of `terraform plan`. Attribute values whose
//! key mentions a secret, password or value are never printed.

use super::{Deferred, Plan};
use crate::trigger::Closure;
use closeout_contract::rotation_strategy::{self, NEEDS};
use closeout_contract::Choice;
use std::fmt::Write as _;

/// Attribute keys never printed, whatever their value.
fn is_sensitive_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "password", "value"]
        .iter()
        .any(|w| k.contains(w))
}

/// `verb` as a terraform-like change marker.
fn marker(verb: &str) -> &'static str {
    match verb {
        "delete" | "remove" | "detach" => "-",
        "rotate" => "+/-",
        "grant" => "+",
        _ => "~",
    }
}

impl Plan {
    /// A human summary in the manner of `terraform plan`: per stage and step, each action with
    /// the finding's first path; deferred actions with their due time; untouched open findings;
    /// counts; the blast-radius warning. Attribute values whose key mentions a secret, password
    /// or value are never printed.
    pub fn render_text(&self) -> String {
        let origin = format!("{} <{}>", self.identity.id, self.identity.email);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Plan: {} for {} {} <{}>",
            self.trigger, self.identity.id, self.identity.name, self.identity.email
        );
        let _ = writeln!(
            out,
            "  playbook {} (sha256 {}), run {}, planned at {}",
            self.playbook,
            self.playbook_digest
                .get(..12)
                .unwrap_or(&self.playbook_digest),
            self.run_id,
            self.created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let total = self.stages.len();
        for (i, stage) in self.stages.iter().enumerate() {
            let _ = writeln!(out);
            if stage.verify {
                let _ = writeln!(
                    out,
                    "Stage {}/{total} {}: re-resolve every provider from live state and probe old credentials (verify)",
                    i + 1,
                    stage.name
                );
                continue;
            }
            let stage_deferred: Vec<&Deferred> = self
                .deferred
                .iter()
                .filter(|d| d.stage == stage.name)
                .collect();
            let _ = write!(
                out,
                "Stage {}/{total} {}: {} action{}",
                i + 1,
                stage.name,
                stage.actions.len(),
                if stage.actions.len() == 1 { "" } else { "s" }
            );
            if !stage_deferred.is_empty() {
                let _ = write!(out, ", {} deferred", stage_deferred.len());
            }
            let _ = writeln!(out);
            // Steps in the order their actions or deferrals appear.
            let mut steps: Vec<&str> = Vec::new();
            for s in stage
                .actions
                .iter()
                .map(|a| a.step.as_str())
                .chain(stage_deferred.iter().map(|d| d.step.as_str()))
            {
                if !steps.contains(&s) {
                    steps.push(s);
                }
            }
            if steps.is_empty() {
                let _ = writeln!(out, "  (nothing to do)");
            }
            for step in steps {
                let _ = writeln!(out, "  step {step}");
                for a in stage.actions.iter().filter(|a| a.step == step) {
                    let _ = writeln!(
                        out,
                        "    {:<3} {} {}{}",
                        marker(&a.verb),
                        a.verb,
                        a.finding.display,
                        if a.requires_approval {
                            "  [requires approval]"
                        } else {
                            ""
                        }
                    );
                    if let Some(path) = a.finding.paths.first() {
                        let _ = writeln!(out, "          via {}", path.render(&origin));
                    }
                    if a.verb == closeout_contract::verbs::ROTATE.name {
                        if let Some(Choice::Use { strategy, named }) =
                            rotation_strategy::choose(&a.finding)
                        {
                            let from = if named {
                                a.finding
                                    .attr(rotation_strategy::SOURCE_ATTR)
                                    .unwrap_or("named")
                                    .to_string()
                            } else {
                                format!(
                                    "default for a {} value",
                                    a.finding
                                        .attr(rotation_strategy::SHAPE_ATTR)
                                        .unwrap_or("plain")
                                )
                            };
                            let _ =
                                writeln!(out, "          rotation strategy: {strategy} ({from})");
                        }
                    }
                    let attrs: Vec<String> = a
                        .finding
                        .attributes
                        .iter()
                        .filter(|(k, _)| !is_sensitive_key(k))
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    if !attrs.is_empty() {
                        let _ = writeln!(out, "          ({})", attrs.join(", "));
                    }
                }
                for d in stage_deferred.iter().filter(|d| d.step == step) {
                    let _ = writeln!(
                        out,
                        "    ... {} {} deferred until {} (grace period from {}){}",
                        d.verb,
                        d.display,
                        d.due_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        d.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        d.note
                            .as_ref()
                            .map(|n| format!("; {n}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        // A mover or joiner verifies against the entitlement policy, not "everything closed":
        // what it does not act on (the shared baseline, roles and secrets still reached) stays.
        let policy_verified = self.trigger.closure() == Closure::MatchesPolicy;
        if !self.untouched.is_empty() {
            let _ = writeln!(
                out,
                "{}",
                if policy_verified {
                    format!(
                        "\nOpen findings no step acts on ({}); they stay as they are (verify compares the live entitlements with the policy):",
                        self.untouched.len()
                    )
                } else {
                    format!(
                        "\nOpen findings no step acts on ({}); verify will report them open unless they close on their own:",
                        self.untouched.len()
                    )
                }
            );
            for id in &self.untouched {
                let _ = writeln!(out, "    ! {id}");
            }
        }
        if !self.needs_strategy.is_empty() {
            let _ = writeln!(
                out,
                "\nNot rotated, {NEEDS} ({}): each stays open until one is configured:",
                self.needs_strategy.len()
            );
            for n in &self.needs_strategy {
                let _ = writeln!(out, "    ! {} ({}): {}", n.display, n.finding_id, n.reason);
            }
        }
        for e in &self.exposures {
            let _ = writeln!(
                out,
                "\nEXPOSURE [{}] {}: {} — everything there is treated as reachable",
                e.provider, e.scope, e.what
            );
        }
        let unverified: Vec<&str> = self
            .untouched
            .iter()
            .filter(|id| id.contains(":unverified:"))
            .map(String::as_str)
            .collect();
        if !unverified.is_empty() {
            let _ = writeln!(
                out,
                "\nNot verifiable ({}): closure stays open unless each gap is fixed or accepted by name (accept_unverified):",
                unverified.len()
            );
            for id in unverified {
                let _ = writeln!(out, "    ? {id}");
            }
        }
        let _ = writeln!(out);
        let approvals = self.approval_count();
        let _ = writeln!(
            out,
            "Plan: {} action{}{}, {} deferred, {} {} finding{}.",
            self.action_count(),
            if self.action_count() == 1 { "" } else { "s" },
            if approvals > 0 {
                format!(" ({approvals} requiring approval)")
            } else {
                String::new()
            },
            self.deferred.len(),
            self.untouched.len(),
            if policy_verified {
                "kept open"
            } else {
                "untouched open"
            },
            if self.untouched.len() == 1 { "" } else { "s" },
        );
        if self.exceeds_limit() {
            let _ = writeln!(
                out,
                "WARNING: {} actions exceeds blast-radius limit {}: apply stops for explicit confirmation.",
                self.action_count(),
                self.max_actions.unwrap_or_default()
            );
        }
        out
    }
}
