//! Live reads of one IAM user, group or role: which groups a user is in, which managed policies
//! are attached, an inline policy's document, the tags. Each is read from AWS at the moment it is
//! needed (never from the resolution's inventory), because these are the checks an idempotent
//! action, a grant and a live state start from.

use crate::client::{next_marker, AwsProvider};
use crate::error::{found, CallError};
use crate::inventory::iam_tags;
use crate::policy::decode_document;

/// An IAM user or role, by name: whose sessions to revoke, whose owner to reassign, whose
/// inline policy or tags to read.
#[derive(Clone, Copy)]
pub(crate) enum Principal<'a> {
    User(&'a str),
    Role(&'a str),
}

impl Principal<'_> {
    pub(crate) fn describe(&self) -> String {
        match self {
            Principal::User(u) => format!("iam user {u}"),
            Principal::Role(r) => format!("role {r}"),
        }
    }
}

fn policy_arns(attached: &[aws_sdk_iam::types::AttachedPolicy]) -> Vec<String> {
    attached
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect()
}

impl AwsProvider {
    /// Names of the groups `user` is in (all pages).
    pub(crate) async fn groups_for_user(&self, user: &str) -> Result<Vec<String>, CallError> {
        self.all_pages(
            "ListGroupsForUser",
            |m| {
                self.iam
                    .list_groups_for_user()
                    .user_name(user)
                    .set_marker(m)
                    .send()
            },
            |p: &aws_sdk_iam::operation::list_groups_for_user::ListGroupsForUserOutput| {
                (
                    p.groups()
                        .iter()
                        .map(|g| g.group_name().to_string())
                        .collect(),
                    next_marker(p.is_truncated(), p.marker()),
                )
            },
        )
        .await
    }

    /// ARNs of the managed policies attached to `user` (all pages).
    pub(crate) async fn attached_user_policies(
        &self,
        user: &str,
    ) -> Result<Vec<String>, CallError> {
        self.all_pages(
            "ListAttachedUserPolicies",
            |m| {
                self.iam
                    .list_attached_user_policies()
                    .user_name(user)
                    .set_marker(m)
                    .send()
            },
            |p: &aws_sdk_iam::operation::list_attached_user_policies::ListAttachedUserPoliciesOutput| {
                (
                    policy_arns(p.attached_policies()),
                    next_marker(p.is_truncated(), p.marker()),
                )
            },
        )
        .await
    }

    /// ARNs of the managed policies attached to `group` (all pages).
    pub(crate) async fn attached_group_policies(
        &self,
        group: &str,
    ) -> Result<Vec<String>, CallError> {
        self.all_pages(
            "ListAttachedGroupPolicies",
            |m| {
                self.iam
                    .list_attached_group_policies()
                    .group_name(group)
                    .set_marker(m)
                    .send()
            },
            |p: &aws_sdk_iam::operation::list_attached_group_policies::ListAttachedGroupPoliciesOutput| {
                (
                    policy_arns(p.attached_policies()),
                    next_marker(p.is_truncated(), p.marker()),
                )
            },
        )
        .await
    }

    /// The tags of a user or role (all pages); `None` when it does not exist.
    pub(crate) async fn principal_tags(
        &self,
        target: Principal<'_>,
    ) -> Result<Option<Vec<(String, String)>>, CallError> {
        let listed = match target {
            Principal::User(u) => {
                self.all_pages(
                    "ListUserTags",
                    |m| self.iam.list_user_tags().user_name(u).set_marker(m).send(),
                    |p: &aws_sdk_iam::operation::list_user_tags::ListUserTagsOutput| {
                        (
                            iam_tags(p.tags()),
                            next_marker(p.is_truncated(), p.marker()),
                        )
                    },
                )
                .await
            }
            Principal::Role(r) => {
                self.all_pages(
                    "ListRoleTags",
                    |m| self.iam.list_role_tags().role_name(r).set_marker(m).send(),
                    |p: &aws_sdk_iam::operation::list_role_tags::ListRoleTagsOutput| {
                        (
                            iam_tags(p.tags()),
                            next_marker(p.is_truncated(), p.marker()),
                        )
                    },
                )
                .await
            }
        };
        found(listed)
    }

    /// The document of an inline policy; `None` when it (or its user/role) does not exist.
    pub(crate) async fn inline_policy_text(
        &self,
        target: Principal<'_>,
        name: &str,
    ) -> Result<Option<String>, CallError> {
        let result = match target {
            Principal::User(u) => self
                .call(
                    "GetUserPolicy",
                    self.iam
                        .get_user_policy()
                        .user_name(u)
                        .policy_name(name)
                        .send(),
                )
                .await
                .map(|o| o.policy_document().to_string()),
            Principal::Role(r) => self
                .call(
                    "GetRolePolicy",
                    self.iam
                        .get_role_policy()
                        .role_name(r)
                        .policy_name(name)
                        .send(),
                )
                .await
                .map(|o| o.policy_document().to_string()),
        };
        // IAM returns policy documents URL-encoded; a text that does not decode is kept as sent.
        Ok(found(result)?.map(|text| {
            decode_document(&text)
                .map(|t| t.into_owned())
                .unwrap_or(text)
        }))
    }
}
