//! `closeout policy explain`: for each entitlement the identity should hold, the rule that grants
//! it and whether it is held; for each live entitlement, the rule that justifies it or "none".

use super::review::{Review, Standing};
use chrono::{DateTime, Utc};
use closeout_contract::{Entitlement, Identity};
use serde::Serialize;
use std::fmt::Write as _;

/// One entitlement the policy says the identity should hold.
#[derive(Debug, Clone, Serialize)]
pub struct RequiredLine {
    /// The entitlement, as its provider names it.
    pub entitlement: Entitlement,
    /// The rules that grant it, in file order.
    pub rules: Vec<String>,
    /// Whether the identity holds it now.
    pub held: bool,
    /// When a time-bound grant ends: its recorded expiry, or when a grant made now would end.
    /// `None` without a time bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// One entitlement the identity holds now.
#[derive(Debug, Clone, Serialize)]
pub struct LiveLine {
    /// The live finding's id.
    pub finding: String,
    /// How the finding is shown to a person.
    pub display: String,
    /// The entitlement, as its provider names it.
    pub entitlement: Entitlement,
    /// The rules that justify it; empty: none does.
    pub justified_by: Vec<String>,
    /// `justified`, `unjustified` or `expired`.
    pub standing: &'static str,
    /// When its time-bound grant ends or ended; `None` without a time bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The explanation of one identity's entitlements.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The identity explained.
    pub identity: Identity,
    /// The entitlement policy file the explanation is against.
    pub policy: String,
    /// What the identity should hold, sorted by entitlement.
    pub required: Vec<RequiredLine>,
    /// What it holds, each with the rule that justifies it or its standing.
    pub live: Vec<LiveLine>,
    /// Required entitlements of providers that are not configured (not checked).
    pub unchecked: Vec<Entitlement>,
}

impl Explanation {
    /// Explain `identity`'s entitlements from its `review` against the policy in `policy_file`;
    /// `unchecked` are the required entitlements of providers that are not configured.
    pub fn new(
        identity: &Identity,
        policy_file: &str,
        review: &Review,
        unchecked: Vec<Entitlement>,
    ) -> Explanation {
        let mut required: Vec<RequiredLine> = Vec::new();
        for l in &review.live {
            if let Standing::Justified { rules, expires_at } = &l.standing {
                required.push(RequiredLine {
                    entitlement: l.entitlement.clone(),
                    rules: rules.clone(),
                    held: true,
                    expires_at: *expires_at,
                });
            }
        }
        for m in &review.missing {
            required.push(RequiredLine {
                entitlement: m.entitlement.clone(),
                rules: m.rules.clone(),
                held: false,
                expires_at: m.expires_at,
            });
        }
        required.sort_by(|a, b| a.entitlement.cmp(&b.entitlement));
        required.dedup_by(|a, b| a.entitlement == b.entitlement);
        let live = review
            .live
            .iter()
            .map(|l| {
                let (standing, justified_by, expires_at) = match &l.standing {
                    Standing::Justified { rules, expires_at } => {
                        ("justified", rules.clone(), *expires_at)
                    }
                    Standing::Unjustified => ("unjustified", Vec::new(), None),
                    Standing::Expired { expires_at, .. } => {
                        ("expired", Vec::new(), Some(*expires_at))
                    }
                };
                LiveLine {
                    finding: l.finding.id.clone(),
                    display: l.finding.display.clone(),
                    entitlement: l.entitlement.clone(),
                    justified_by,
                    standing,
                    expires_at,
                }
            })
            .collect();
        Explanation {
            identity: identity.clone(),
            policy: policy_file.to_string(),
            required,
            live,
            unchecked,
        }
    }

    /// True when the live entitlements equal the policy's.
    pub fn conforms(&self) -> bool {
        self.required.iter().all(|r| r.held) && self.live.iter().all(|l| l.standing == "justified")
    }

    /// The explanation as `closeout policy explain` prints it.
    pub fn render_text(&self) -> String {
        let i = &self.identity;
        let mut out = String::new();
        let attrs: Vec<String> = [
            ("department", &i.department),
            ("role", &i.role),
            ("location", &i.location),
            ("employment_type", &i.employment_type),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
        let _ = writeln!(
            out,
            "Entitlements of {} <{}> ({}) under {}",
            i.id,
            i.email,
            attrs.join(", "),
            self.policy
        );
        let _ = writeln!(out, "\nShould hold ({}):", self.required.len());
        if self.required.is_empty() {
            let _ = writeln!(out, "  nothing: no rule matches");
        }
        for r in &self.required {
            let until = r
                .expires_at
                .map(|t| format!(", until {}", t.format("%Y-%m-%d %H:%M UTC")))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} {:<40} rule {}{until}",
                if r.held { "held   " } else { "MISSING" },
                r.entitlement.to_string(),
                r.rules.join(", ")
            );
        }
        let _ = writeln!(out, "\nHolds ({}):", self.live.len());
        for l in &self.live {
            let why = match l.standing {
                "justified" => format!("rule {}", l.justified_by.join(", ")),
                "expired" => format!(
                    "none: its time-bound grant expired{}",
                    l.expires_at
                        .map(|t| format!(" {}", t.format("%Y-%m-%d %H:%M UTC")))
                        .unwrap_or_default()
                ),
                _ => "none".into(),
            };
            let _ = writeln!(out, "  {:<48} {why}", l.entitlement.to_string());
        }
        for e in &self.unchecked {
            let _ = writeln!(
                out,
                "  not checked: {e} ([providers.{}] is not configured)",
                e.provider
            );
        }
        let _ = writeln!(
            out,
            "\n{}",
            if self.conforms() {
                "Live entitlements equal the policy."
            } else {
                "Live entitlements differ from the policy: a mover run (`closeout apply mover --identity ID`) converges them."
            }
        );
        out
    }
}
