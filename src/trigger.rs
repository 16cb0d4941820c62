//! Triggers (DESIGN.md §1): why a run happens, and everything that follows from it — which
//! playbook it runs, whether it takes a mover's new attributes, what "closed" means for it,
//! where its cutoff lies, and whether outside systems may send it. Every module asks the
//! [`Trigger`] instead of comparing trigger names.
//!
//! `reconcile` is not a trigger: drift is reported by `closeout reconcile` and the service's
//! reconcile cadence, and never runs a playbook.
//!
//! Architecture invariant: layer 0, vocabulary; imports nothing from the crate.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a run happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Someone new: grant the policy's baseline, record who owns the NHIs made for them.
    Joiner,
    /// Someone changed role: remove what the new role does not justify, then grant.
    Mover,
    /// Someone left: contain, revoke, rotate everything they could reach.
    Leaver,
    /// Someone is compromised: contain and rotate everything reachable now.
    Incident,
    /// A scheduled rotation of what the rotation policy made due.
    Rotation,
}

/// What a run of a trigger must show to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closure {
    /// Nothing bound to the identity is open or unknown (leaver, incident).
    NothingOpen,
    /// The identity's live entitlements match the entitlement policy, and every action left
    /// its finding in the state it promised (mover, joiner): the rest of their access stays.
    MatchesPolicy,
    /// Every finding the run acted on is in the state the action promised (rotation): the
    /// identity keeps its other access.
    ActedOn,
}

impl Trigger {
    /// Every trigger, in the order the CLI lists them.
    pub const ALL: [Trigger; 5] = [
        Trigger::Leaver,
        Trigger::Mover,
        Trigger::Joiner,
        Trigger::Incident,
        Trigger::Rotation,
    ];

    /// The name the CLI, playbooks, events and the journal use.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Joiner => "joiner",
            Trigger::Mover => "mover",
            Trigger::Leaver => "leaver",
            Trigger::Incident => "incident",
            Trigger::Rotation => "rotation",
        }
    }

    /// The trigger called `name`.
    pub fn parse(name: &str) -> Result<Trigger, UnknownTrigger> {
        Trigger::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| UnknownTrigger(name.to_string()))
    }

    /// The stem of the playbook file it runs (`<playbook_dir>/<stem>.yaml`).
    pub fn playbook(self) -> &'static str {
        self.as_str()
    }

    /// Whether runs take new attributes (`--to KEY=VALUE`, a mover event's attributes).
    pub fn takes_new_attributes(self) -> bool {
        self == Trigger::Mover
    }

    /// What "closed" means for its runs.
    pub fn closure(self) -> Closure {
        match self {
            Trigger::Leaver | Trigger::Incident => Closure::NothingOpen,
            Trigger::Mover | Trigger::Joiner => Closure::MatchesPolicy,
            Trigger::Rotation => Closure::ActedOn,
        }
    }

    /// Whether it is planned from the entitlement policy (which must then be configured).
    pub fn needs_policy(self) -> bool {
        self.closure() == Closure::MatchesPolicy
    }

    /// Whether its plan records the identity as owner of the NHIs made for it.
    pub fn records_nhi_owners(self) -> bool {
        self == Trigger::Joiner
    }

    /// Whether a run's cutoff (what counts as rotated or revoked) is the run's own start,
    /// rather than the identity's first containment: a scheduled rotation is not a loss of
    /// access, so a version it creates counts as rotated.
    pub fn cutoff_is_run_start(self) -> bool {
        self == Trigger::Rotation
    }

    /// Whether its runs end the identity's access: the cutoff of its latest run is when
    /// everything the identity could reach had to be rotated or revoked after.
    pub fn ends_access(self) -> bool {
        matches!(self, Trigger::Leaver | Trigger::Incident)
    }

    /// Whether its runs start the identity's access afresh, superseding an earlier cutoff (a
    /// rehire).
    pub fn starts_access(self) -> bool {
        self == Trigger::Joiner
    }

    /// Whether outside systems (HR webhooks, SCIM) may send it; rotations come only from the
    /// scheduler and the CLI.
    pub fn accepted_from_outside(self) -> bool {
        self != Trigger::Rotation
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Trigger {
    type Err = UnknownTrigger;

    fn from_str(s: &str) -> Result<Trigger, UnknownTrigger> {
        Trigger::parse(s)
    }
}

/// A name that is no trigger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trigger {0:?}: expected one of leaver, mover, joiner, incident, rotation")]
pub struct UnknownTrigger(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reconcile_is_not_a_trigger() {
        for t in Trigger::ALL {
            assert_eq!(Trigger::parse(t.as_str()), Ok(t));
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
        assert!(Trigger::parse("reconcile").is_err());
        assert!(Trigger::parse("Leaver").is_err());
    }

    #[test]
    fn behaviour_follows_the_trigger() {
        assert!(Trigger::Mover.takes_new_attributes());
        assert!(!Trigger::Leaver.takes_new_attributes());
        assert_eq!(Trigger::Leaver.closure(), Closure::NothingOpen);
        assert_eq!(Trigger::Incident.closure(), Closure::NothingOpen);
        assert!(Trigger::Joiner.needs_policy() && Trigger::Mover.needs_policy());
        assert_eq!(Trigger::Rotation.closure(), Closure::ActedOn);
        assert!(Trigger::Rotation.cutoff_is_run_start());
        assert!(!Trigger::Rotation.accepted_from_outside());
        assert!(Trigger::Joiner.records_nhi_owners());
    }
}
