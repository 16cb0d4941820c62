//! What a provider can resolve and do, as static tables: the kinds of finding it emits, the verbs
//! it applies to each, how an entitlement policy names its grants, which attributes carry a
//! credential's age and expiry, and the permissions each of its calls needs. Static, so
//! playbooks, policies and rotation rules are validated without I/O, and so every fact about a
//! provider lives in its own crate.

use crate::finding::State;

/// A verb a provider can apply to one kind of finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verb {
    /// The verb as playbooks write it (`deactivate`, `rotate`, ...).
    pub name: &'static str,
    /// The state the finding is in once the verb succeeded; verify checks it.
    pub leaves: State,
    /// Destroys something that cannot be brought back (a key, a certificate): the playbook must
    /// deactivate first and state a grace period.
    pub needs_grace: bool,
}

/// The verbs shared by every provider, so playbooks read the same everywhere.
pub mod verbs {
    use crate::capabilities::Verb;
    use crate::finding::State;

    /// Make a credential unusable while keeping it (an access key set inactive).
    pub const DEACTIVATE: Verb = Verb {
        name: "deactivate",
        leaves: State::Inactive,
        needs_grace: false,
    };
    /// Delete a credential for good (after a grace period).
    pub const DELETE: Verb = Verb {
        name: "delete",
        leaves: State::Deleted,
        needs_grace: true,
    };
    /// Delete something that has no inactive state and can be recreated (a login profile, an
    /// inline policy whose document the journal keeps).
    pub const REMOVE: Verb = Verb {
        name: "remove",
        leaves: State::Deleted,
        needs_grace: false,
    };
    /// Detach a managed policy from a principal (the policy itself stays).
    pub const DETACH: Verb = Verb {
        name: "detach",
        leaves: State::Deleted,
        needs_grace: false,
    };
    /// Block sign-in of an account (a user, an entity) without deleting it.
    pub const DISABLE: Verb = Verb {
        name: "disable",
        leaves: State::Disabled,
        needs_grace: false,
    };
    /// Replace a credential or shared secret with a new one and retire the old one.
    pub const ROTATE: Verb = Verb {
        name: "rotate",
        leaves: State::Rotated,
        needs_grace: false,
    };
    /// End the sessions issued before the run (STS sessions, sign-in sessions, tokens).
    pub const REVOKE_SESSIONS: Verb = Verb {
        name: "revoke-sessions",
        leaves: State::Revoked,
        needs_grace: false,
    };
    /// Revoke one token, lease or certificate.
    pub const REVOKE: Verb = Verb {
        name: "revoke",
        leaves: State::Revoked,
        needs_grace: false,
    };
    /// Grant an entitlement the policy requires (a mover's or joiner's new access). The finding
    /// is the one [`crate::provider::Provider::grant_finding`] built; it is active once granted.
    pub const GRANT: Verb = Verb {
        name: "grant",
        leaves: State::Active,
        needs_grace: false,
    };
    /// Hand a non-human identity the identity owns to a new owner (the leaver's manager).
    pub const REASSIGN_OWNER: Verb = Verb {
        name: "reassign-owner",
        leaves: State::Reassigned,
        needs_grace: false,
    };
}

/// One kind of finding a provider resolves, and the verbs it supports on it.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    /// The kind as findings and playbooks name it (`access-key`).
    pub kind: &'static str,
    /// One line for `closeout playbook check` and the docs.
    pub description: &'static str,
    /// The verbs a playbook may apply to findings of this kind.
    pub verbs: &'static [Verb],
}

/// How an entitlement policy writes a grant of one provider:
/// `{ provider: aws, group: NAME }` is the form with key `group` and kind `group-membership`.
#[derive(Debug, Clone, Copy)]
pub struct GrantForm {
    /// The policy key naming what is granted (`group`, `policy`, `role`).
    pub key: &'static str,
    /// The kind of the finding that holds the grant once made.
    pub kind: &'static str,
    /// Further keys this form requires (Azure's `scope` for a role).
    pub qualifiers: &'static [&'static str],
    /// The entitlement target from the key's value and the qualifiers' values (in the order of
    /// `qualifiers`), in the words the provider's live findings use; pure. An error names the
    /// field that is wrong.
    pub target: fn(value: &str, qualifiers: &[&str]) -> Result<String, GrantFieldError>,
}

/// A grant field an entitlement policy wrote wrongly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GrantFieldError {
    /// The policy key that is wrong (the form's key or one of its qualifiers).
    pub field: &'static str,
    /// What is wrong, and what to write instead.
    pub message: String,
}

/// The target as written, trimmed: the [`GrantForm::target`] of a form whose target needs no
/// normalising.
pub fn plain_target(value: &str, _qualifiers: &[&str]) -> Result<String, GrantFieldError> {
    Ok(value.trim().to_string())
}

/// Which finding attributes carry when the current version of a credential of one kind was
/// made and when it expires (RFC 3339 values), for scheduled rotation by age or expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeFacts {
    /// The finding kind.
    pub kind: &'static str,
    /// The attribute carrying the creation time of the current version; `None`: not reported.
    pub created: Option<&'static str>,
    /// The attribute carrying the expiry; `None`: not reported.
    pub expires: Option<&'static str>,
}

/// Which of a provider's calls a permission serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Resolving an identity and reading live state (every run, `resolve`, `verify`).
    Resolve,
    /// Applying `verb` to findings of `kind`.
    Act {
        /// The finding kind.
        kind: &'static str,
        /// The verb's name.
        verb: &'static str,
    },
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Operation::Resolve => f.write_str("resolve"),
            Operation::Act { kind, verb } => write!(f, "{verb} {kind}"),
        }
    }
}

/// A permission one operation of a provider needs, named as the provider's own authorization
/// system names it: an IAM action (`iam:UpdateAccessKey`), a Vault capability on a path
/// (`update auth/token/revoke-accessor`), an ARM operation
/// (`Microsoft.Authorization/roleAssignments/delete`) or a Microsoft Graph application
/// permission (`graph:User.ReadWrite.All`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// The operation that needs it.
    pub operation: Operation,
    /// The permission, in the provider's words.
    pub name: &'static str,
}

/// What a provider can resolve and do; static, so playbooks are validated without I/O.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// The provider's name in configuration, findings and playbooks.
    pub provider: &'static str,
    /// Every kind of finding it emits, with its verbs.
    pub kinds: &'static [KindSpec],
    /// How an entitlement policy names its grants (empty: it grants nothing).
    pub grant_forms: &'static [GrantForm],
    /// Where its findings carry age and expiry, for rotation policies.
    pub ages: &'static [AgeFacts],
    /// The permissions its calls need (`closeout doctor` checks them).
    pub permissions: &'static [Permission],
}

impl Capabilities {
    /// The spec of `kind`, if the provider emits it.
    pub fn kind(&self, kind: &str) -> Option<&'static KindSpec> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// The verb `verb` on `kind`, if the provider supports it.
    pub fn verb(&self, kind: &str, verb: &str) -> Option<&'static Verb> {
        self.kind(kind)?.verbs.iter().find(|v| v.name == verb)
    }

    /// The grant form written with `key`, if the provider has one.
    pub fn grant_form(&self, key: &str) -> Option<&'static GrantForm> {
        self.grant_forms.iter().find(|g| g.key == key)
    }

    /// Where findings of `kind` carry their age and expiry, if they do.
    pub fn ages_of(&self, kind: &str) -> Option<&'static AgeFacts> {
        self.ages.iter().find(|a| a.kind == kind)
    }

    /// The permissions `operation` needs.
    pub fn permissions_for(&self, operation: Operation) -> impl Iterator<Item = &'static str> {
        self.permissions
            .iter()
            .filter(move |p| p.operation == operation)
            .map(|p| p.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Capabilities = Capabilities {
        provider: "x",
        kinds: &[KindSpec {
            kind: "key",
            description: "a key",
            verbs: &[verbs::DEACTIVATE],
        }],
        grant_forms: &[GrantForm {
            key: "group",
            kind: "membership",
            qualifiers: &[],
            target: plain_target,
        }],
        ages: &[AgeFacts {
            kind: "key",
            created: Some("created"),
            expires: None,
        }],
        permissions: &[
            Permission {
                operation: Operation::Resolve,
                name: "x:List",
            },
            Permission {
                operation: Operation::Act {
                    kind: "key",
                    verb: "deactivate",
                },
                name: "x:Update",
            },
        ],
    };

    #[test]
    fn lookups_find_what_the_tables_say() {
        assert!(CAPS.verb("key", "deactivate").is_some());
        assert!(CAPS.verb("key", "delete").is_none());
        assert_eq!(CAPS.grant_form("group").map(|g| g.kind), Some("membership"));
        assert_eq!(CAPS.ages_of("key").and_then(|a| a.created), Some("created"));
        let act = Operation::Act {
            kind: "key",
            verb: "deactivate",
        };
        assert_eq!(CAPS.permissions_for(act).collect::<Vec<_>>(), ["x:Update"]);
        assert_eq!(act.to_string(), "deactivate key");
        assert_eq!((CAPS.grant_forms[0].target)(" g ", &[]).as_deref(), Ok("g"));
    }
}
