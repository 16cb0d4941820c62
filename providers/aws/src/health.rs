//! The health check: who the configured credentials are (STS `GetCallerIdentity`), and which
//! needed IAM actions their identity policies do not allow, evaluated with this crate's own
//! policy evaluator over the one `GetAccountAuthorizationDetails` listing resolution uses (so it
//! works where `SimulatePrincipalPolicy` is not served).
//!
//! What it does not see, and so reports as unchecked rather than held: permissions boundaries,
//! service control policies and session policies; allows limited to some resources or under a
//! condition.

use crate::client::AwsProvider;
use crate::policy::{ActionReach, PolicyDocument};
use crate::reach::{role_sources, user_policy_arns, user_sources};
use closeout_contract::{Health, ProviderError};

/// The principal an STS caller ARN names, as IAM knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerPrincipal {
    /// `arn:aws:iam::ACCOUNT:root`: the account's root user holds every permission.
    Root,
    /// `arn:aws:iam::ACCOUNT:user/PATH/NAME`.
    User(String),
    /// `arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION`.
    Role(String),
    /// Anything else (a federated user, a principal of another kind).
    Other,
}

/// Read the caller ARN `GetCallerIdentity` returned.
pub fn caller_principal(arn: &str) -> CallerPrincipal {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or_default();
    if resource == "root" {
        return CallerPrincipal::Root;
    }
    if let Some(rest) = resource.strip_prefix("assumed-role/") {
        if let Some(role) = rest.split('/').next().filter(|r| !r.is_empty()) {
            return CallerPrincipal::Role(role.to_string());
        }
    }
    if arn.contains(":iam::") && resource.starts_with("user/") {
        return CallerPrincipal::User(arn.to_string());
    }
    CallerPrincipal::Other
}

/// Sort `needs` into held, missing and unchecked under the principal's identity policies.
pub fn assess(principal: &str, docs: &[&PolicyDocument], needs: &[&'static str]) -> Health {
    let mut health = Health {
        principal: principal.to_string(),
        ..Health::default()
    };
    for need in needs {
        let reach = docs
            .iter()
            .map(|d| d.action_reach(need))
            .fold(ActionReach::default(), ActionReach::merge);
        if reach.denied_everywhere || !reach.somewhere {
            health.missing.push(need.to_string());
        } else if !reach.everywhere {
            health.unchecked.push((
                need.to_string(),
                "allowed only on some resources or under a condition".into(),
            ));
        }
    }
    health
}

impl AwsProvider {
    /// `GetCallerIdentity`, then the caller's identity policies against `needs`.
    pub(crate) async fn health_impl(
        &self,
        needs: &[&'static str],
    ) -> Result<Health, ProviderError> {
        let out = self
            .call("GetCallerIdentity", self.sts.get_caller_identity().send())
            .await?;
        let arn = out.arn().unwrap_or_default().to_string();
        tracing::debug!(arn, "aws health");
        let principal = caller_principal(&arn);
        if needs.is_empty() || principal == CallerPrincipal::Root {
            return Ok(Health {
                principal: arn,
                ..Health::default()
            });
        }
        let mut inventory = self.load_inventory().await?;
        let unknown = |why: String| Health {
            principal: arn.clone(),
            missing: Vec::new(),
            unchecked: needs.iter().map(|n| (n.to_string(), why.clone())).collect(),
        };
        let docs = match &principal {
            CallerPrincipal::User(user_arn) => {
                let Some(user) = inventory.users.iter().find(|u| &u.arn == user_arn).cloned()
                else {
                    return Ok(unknown(format!(
                        "{arn} is not an IAM user of the account: its policies cannot be read"
                    )));
                };
                let arns = user_policy_arns(&inventory, &user);
                self.load_managed(&mut inventory, arns).await?;
                let docs: Vec<PolicyDocument> = user_sources(&inventory, &user)
                    .into_iter()
                    .map(|s| s.doc.clone())
                    .collect();
                docs
            }
            CallerPrincipal::Role(name) => {
                let Some(role) = inventory.roles.iter().find(|r| &r.name == name).cloned() else {
                    return Ok(unknown(format!(
                        "role {name} of {arn} is not in the account: its policies cannot be read"
                    )));
                };
                let arns = role.attached.iter().map(|a| a.arn.clone()).collect();
                self.load_managed(&mut inventory, arns).await?;
                let docs: Vec<PolicyDocument> = role_sources(&inventory, &role)
                    .into_iter()
                    .map(|s| s.doc.clone())
                    .collect();
                docs
            }
            CallerPrincipal::Root | CallerPrincipal::Other => {
                return Ok(unknown(format!(
                    "{arn} is neither an IAM user nor an assumed role: its permissions cannot be evaluated"
                )));
            }
        };
        let refs: Vec<&PolicyDocument> = docs.iter().collect();
        Ok(assess(&arn, &refs, needs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_arns_name_their_principal() {
        assert_eq!(
            caller_principal("arn:aws:iam::123456789012:root"),
            CallerPrincipal::Root
        );
        assert_eq!(
            caller_principal("arn:aws:iam::123456789012:user/ops/closeout"),
            CallerPrincipal::User("arn:aws:iam::123456789012:user/ops/closeout".into())
        );
        assert_eq!(
            caller_principal("arn:aws:sts::123456789012:assumed-role/closeout/run-1"),
            CallerPrincipal::Role("closeout".into())
        );
        // moto's default caller: an STS user ARN no IAM listing holds.
        assert_eq!(
            caller_principal("arn:aws:sts::123456789012:user/moto"),
            CallerPrincipal::Other
        );
    }

    #[test]
    fn needs_are_held_missing_or_unchecked() {
        let doc = PolicyDocument::parse(
            &serde_json::json!({"Statement": [
                {"Effect": "Allow", "Action": ["iam:Get*", "iam:List*"], "Resource": "*"},
                {"Effect": "Allow", "Action": "iam:UpdateAccessKey", "Resource": "arn:aws:iam::*:user/x"}
            ]})
            .to_string(),
        )
        .unwrap();
        let h = assess(
            "arn:aws:iam::1:user/c",
            &[&doc],
            &["iam:GetUser", "iam:DeleteAccessKey", "iam:UpdateAccessKey"],
        );
        assert_eq!(h.missing, ["iam:DeleteAccessKey"]);
        assert_eq!(h.unchecked.len(), 1);
        assert_eq!(h.unchecked[0].0, "iam:UpdateAccessKey");
    }
}
