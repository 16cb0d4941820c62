//! Reachability, to a fixpoint: every IAM principal the identity can become (its own IAM user,
//! the IAM users it owns, the roles they can assume at any depth, the users they can create
//! credentials for, the roles they can pass to compute), what each of them can grant itself,
//! and the secrets all of them can read or open up — each with every path that explains it.
//! Pure: evaluates the policies of an [`Inventory`] with [`crate::policy`], no AWS call.
//!
//! Relations followed (the README lists them, and the ones not followed):
//! - can-assume: a role whose trust policy names a reached principal (or anyone), or trusts the
//!   account while an identity policy of that principal allows `sts:AssumeRole` on it.
//! - can-act-as: an IAM user on which a reached principal may create an access key or a console
//!   password ([`ACT_AS_USER`]); a role it may pass (`iam:PassRole`) to compute it may launch
//!   ([`LAUNCHES`]) whose trust policy lets that compute service assume it.
//! - can-grant-self: an IAM write that lets a reached principal give itself any permission
//!   ([`SELF_GRANTS`]) exposes the whole account; `secretsmanager:PutResourcePolicy` on a secret
//!   exposes that secret.
//! - can-read: `secretsmanager:GetSecretValue` through the identity policies of any reached
//!   principal, or a secret's resource policy naming it.

use crate::config::AwsConfig;
use crate::inventory::{
    account_of, tag, AttachedRef, IamRole, IamUser, InlinePolicy, Inventory, SecretInfo,
};
use crate::policy::{Caller, Grantee, PolicyDocument, Vars};
use closeout_contract::{Gap, Identity, Path, Relation};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::capabilities::PROVIDER;

/// The IAM action that assumes a role.
pub const ASSUME_ROLE: &str = "sts:AssumeRole";
/// The IAM action that reads a secret's value.
pub const GET_SECRET_VALUE: &str = "secretsmanager:GetSecretValue";
/// The action that replaces a secret's resource policy (and so can grant anyone read access).
pub const PUT_RESOURCE_POLICY: &str = "secretsmanager:PutResourcePolicy";
/// The action that hands a role to an AWS service.
pub const PASS_ROLE: &str = "iam:PassRole";

/// Actions on another IAM user that give the caller a credential of that user, in the order
/// paths name them.
pub const ACT_AS_USER: &[&str] = &[
    "iam:CreateAccessKey",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
];

/// Compute launches that run code with a passed role: the launch action and the service
/// principal the role's trust policy must admit for the compute to get the role's credentials.
pub const LAUNCHES: &[(&str, &str)] = &[
    ("ec2:RunInstances", "ec2.amazonaws.com"),
    ("ec2:AssociateIamInstanceProfile", "ec2.amazonaws.com"),
    (
        "ec2:ReplaceIamInstanceProfileAssociation",
        "ec2.amazonaws.com",
    ),
    ("lambda:CreateFunction", "lambda.amazonaws.com"),
    ("lambda:UpdateFunctionConfiguration", "lambda.amazonaws.com"),
    ("ecs:RunTask", "ecs-tasks.amazonaws.com"),
    ("ecs:StartTask", "ecs-tasks.amazonaws.com"),
    ("glue:CreateDevEndpoint", "glue.amazonaws.com"),
    ("glue:CreateJob", "glue.amazonaws.com"),
    ("cloudformation:CreateStack", "cloudformation.amazonaws.com"),
    ("cloudformation:UpdateStack", "cloudformation.amazonaws.com"),
    ("codebuild:CreateProject", "codebuild.amazonaws.com"),
    (
        "sagemaker:CreateNotebookInstance",
        "sagemaker.amazonaws.com",
    ),
    ("sagemaker:CreateTrainingJob", "sagemaker.amazonaws.com"),
    ("states:CreateStateMachine", "states.amazonaws.com"),
    ("datapipeline:CreatePipeline", "datapipeline.amazonaws.com"),
];

/// What an IAM write that grants permissions must be allowed on for the writer to grant
/// itself anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantTarget {
    /// A reached IAM user (the person's own, an owned one, one it can act as).
    ReachedUser,
    /// A group a reached IAM user is in.
    GroupOfReachedUser,
    /// Any group of the account (the writer can add itself to it).
    AnyGroup,
    /// A customer-managed policy attached to a reached principal or its groups.
    PolicyOfReached,
    /// A reached role.
    ReachedRole,
    /// Any role of the account (the writer can rewrite its trust policy to name itself).
    AnyRole,
}

/// IAM writes that let a principal grant itself any permission in the account.
pub const SELF_GRANTS: &[(&str, GrantTarget)] = &[
    ("iam:PutUserPolicy", GrantTarget::ReachedUser),
    ("iam:AttachUserPolicy", GrantTarget::ReachedUser),
    ("iam:PutGroupPolicy", GrantTarget::GroupOfReachedUser),
    ("iam:AttachGroupPolicy", GrantTarget::GroupOfReachedUser),
    ("iam:AddUserToGroup", GrantTarget::AnyGroup),
    ("iam:CreatePolicyVersion", GrantTarget::PolicyOfReached),
    ("iam:SetDefaultPolicyVersion", GrantTarget::PolicyOfReached),
    ("iam:PutRolePolicy", GrantTarget::ReachedRole),
    ("iam:AttachRolePolicy", GrantTarget::ReachedRole),
    ("iam:UpdateAssumeRolePolicy", GrantTarget::AnyRole),
];

/// At most this many paths are kept per principal (the shortest are found first); more only
/// repeat the explanation and grow the report.
pub const MAX_TRAILS: usize = 8;

/// At most this many account-wide self-grant paths are kept: each exposed secret carries them.
pub const MAX_SELF_GRANT_PATHS: usize = 8;

/// Gap kind: a policy document that matters to the identity's reach could not be read in full.
pub const GAP_POLICY_DOCUMENT: &str = "policy-document";
/// Gap kind: a user the identity could create credentials for; credentials created that way
/// cannot be told apart from the user's own.
pub const GAP_ACT_AS_CREDENTIAL: &str = "act-as-credential";
/// Gap kind: a role the identity could pass to compute; compute launched with it is not read.
pub const GAP_PASSED_ROLE_COMPUTE: &str = "passed-role-compute";
/// Gap kind: the secrets of the account could not be listed.
pub const GAP_SECRET_LIST: &str = "secret";
/// Gap kind: the account's users, groups, roles and policies could not be listed
/// (`GetAccountAuthorizationDetails` refused): nothing about the identity is known.
pub const GAP_IAM_INVENTORY: &str = "iam-inventory";
/// Gap kind: a secret's versions could not be listed (`ListSecretVersionIds` refused): whether
/// it was rotated since the cutoff is unknown.
pub const GAP_SECRET_VERSIONS: &str = "secret-versions";

/// One identity policy of a principal, and the steps from the principal to it.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub steps: Vec<(String, String)>,
    pub doc: &'a PolicyDocument,
}

fn push_sources<'a>(
    inv: &'a Inventory,
    out: &mut Vec<Source<'a>>,
    prefix: &[(String, String)],
    attached: &'a [AttachedRef],
    inline: &'a [InlinePolicy],
) {
    for p in inline {
        if let Some(doc) = &p.doc {
            let mut steps = prefix.to_vec();
            steps.push(("inline".into(), format!("inline policy {}", p.name)));
            out.push(Source { steps, doc });
        }
    }
    for a in attached {
        if let Some(doc) = inv.managed.get(&a.arn).and_then(|m| m.doc.as_ref()) {
            let mut steps = prefix.to_vec();
            steps.push(("attached".into(), format!("policy {}", a.name)));
            out.push(Source { steps, doc });
        }
    }
}

/// The identity policies of a user: its own inline and attached ones, then its groups'.
pub fn user_sources<'a>(inv: &'a Inventory, user: &'a IamUser) -> Vec<Source<'a>> {
    let mut out = Vec::new();
    push_sources(inv, &mut out, &[], &user.attached, &user.inline);
    for g in &user.groups {
        if let Some(group) = inv.groups.get(g) {
            let prefix = [("member-of".to_string(), format!("group {g}"))];
            push_sources(inv, &mut out, &prefix, &group.attached, &group.inline);
        }
    }
    out
}

/// The identity policies of a role: its inline and attached ones.
pub fn role_sources<'a>(inv: &'a Inventory, role: &'a IamRole) -> Vec<Source<'a>> {
    let mut out = Vec::new();
    push_sources(inv, &mut out, &[], &role.attached, &role.inline);
    out
}

/// Managed policy ARNs attached to a user and its groups.
pub fn user_policy_arns(inv: &Inventory, user: &IamUser) -> Vec<String> {
    let mut arns: Vec<String> = user.attached.iter().map(|a| a.arn.clone()).collect();
    for g in &user.groups {
        if let Some(group) = inv.groups.get(g) {
            arns.extend(group.attached.iter().map(|a| a.arn.clone()));
        }
    }
    arns
}

fn extend(base: &Path, steps: &[(String, String)]) -> Path {
    steps.iter().fold(base.clone(), |p, (edge, node)| {
        p.then(edge.clone(), node.clone())
    })
}

/// Which of `sources` allow `action` on `resource`, and whether any explicitly denies it.
struct Grants<'s, 'a> {
    via: Vec<&'s Source<'a>>,
    denied: bool,
    conditional: bool,
}

impl Grants<'_, '_> {
    fn grants(&self) -> bool {
        !self.via.is_empty() && !self.denied
    }
}

fn grants<'s, 'a>(
    sources: &'s [Source<'a>],
    action: &str,
    resource: &str,
    vars: Vars<'_>,
) -> Grants<'s, 'a> {
    let mut g = Grants {
        via: Vec::new(),
        denied: false,
        conditional: true,
    };
    for s in sources {
        let d = s.doc.identity_decision(action, resource, vars);
        if d.denied {
            g.denied = true;
        }
        if d.allowed {
            g.via.push(s);
            if !d.conditional {
                g.conditional = false;
            }
        }
    }
    g
}

/// The person's IAM user as the findings of its own account need it.
pub struct Person<'a> {
    pub user: &'a IamUser,
    pub base: Path,
}

impl<'a> Person<'a> {
    pub fn new(user: &'a IamUser) -> Person<'a> {
        Person {
            user,
            base: user_base(&user.name),
        }
    }
}

/// An IAM principal of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// `inv.users[i]`.
    User(usize),
    /// `inv.roles[i]`.
    Role(usize),
}

impl Node {
    fn arn(self, inv: &Inventory) -> &str {
        match self {
            Node::User(i) => &inv.users[i].arn,
            Node::Role(i) => &inv.roles[i].arn,
        }
    }

    fn id(self, inv: &Inventory) -> &str {
        match self {
            Node::User(i) => &inv.users[i].id,
            Node::Role(i) => &inv.roles[i].id,
        }
    }

    /// `iam user alice`, `role app-deploy`.
    fn describe(self, inv: &Inventory) -> String {
        match self {
            Node::User(i) => format!("iam user {}", inv.users[i].name),
            Node::Role(i) => format!("role {}", inv.roles[i].name),
        }
    }

    fn sources(self, inv: &Inventory) -> Vec<Source<'_>> {
        match self {
            Node::User(i) => user_sources(inv, &inv.users[i]),
            Node::Role(i) => role_sources(inv, &inv.roles[i]),
        }
    }

    fn caller<'i>(self, inv: &'i Inventory, account: &'i str) -> Caller<'i> {
        Caller {
            arn: self.arn(inv),
            unique_id: Some(self.id(inv)).filter(|i| !i.is_empty()),
            account,
        }
    }

    fn vars(self, inv: &Inventory) -> Vars<'_> {
        match self {
            Node::User(i) => Vars {
                username: Some(&inv.users[i].name),
                userid: Some(&inv.users[i].id),
            },
            Node::Role(i) => Vars {
                username: None,
                userid: Some(&inv.roles[i].id),
            },
        }
    }
}

/// One way to a principal: the path, the principals on it (no path visits one twice), and
/// whether it depends on a `Condition` that was not evaluated.
#[derive(Debug, Clone)]
pub struct Trail {
    pub path: Path,
    nodes: Vec<Node>,
    pub conditional: bool,
}

/// How a principal was entered by its first way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A start: the person's own IAM user, or an IAM user it owns.
    Start,
    /// Assumed; `trust` says how the trust policy admits it (`user`, `role`, `account`).
    Assume { trust: &'static str },
    /// A credential created for it (`iam:CreateAccessKey`, ...).
    ActAs { permission: &'static str },
    /// Passed to compute (`iam:PassRole` with the launch action).
    Passed { launch: &'static str },
}

/// A principal the identity can become, with every path (up to [`MAX_TRAILS`]) to it.
#[derive(Debug, Clone)]
pub struct Reached<'a> {
    pub node: Node,
    pub trails: Vec<Trail>,
    pub sources: Vec<Source<'a>>,
    /// Every kind of edge it was entered by (first one first).
    pub entries: Vec<Entry>,
}

impl Reached<'_> {
    /// Every way in depends on a `Condition` that was not evaluated.
    pub fn conditional(&self) -> bool {
        self.trails.iter().all(|t| t.conditional)
    }
}

/// One way to grant oneself anything in the account.
#[derive(Debug, Clone)]
pub struct SelfGrant {
    /// From the identity to the policy that allows the write.
    pub path: Path,
    /// `iam:PutUserPolicy on iam user alice`.
    pub permission: String,
    pub conditional: bool,
}

/// Everything the identity can become, and the account-wide self-grants.
#[derive(Debug, Clone, Default)]
pub struct Reach<'a> {
    /// The account the principals are in.
    pub account: String,
    /// In discovery order: the starts first.
    pub reached: Vec<Reached<'a>>,
    pub self_grants: Vec<SelfGrant>,
    /// What could not be evaluated on the way.
    pub gaps: Vec<Gap>,
}

/// One edge out of a principal, as computed once per principal.
struct Edge {
    to: Node,
    steps: Vec<(String, String)>,
    conditional: bool,
    entry: Entry,
}

fn assume_edges(inv: &Inventory, account: &str, from: Node, sources: &[Source<'_>]) -> Vec<Edge> {
    let caller = from.caller(inv, account);
    let mut out = Vec::new();
    for (idx, role) in inv.roles.iter().enumerate() {
        if from == Node::Role(idx) {
            continue;
        }
        let Some(trust) = &role.trust else { continue };
        let t = trust.trust_decision(&caller, ASSUME_ROLE);
        if !t.grants() {
            continue;
        }
        let g = grants(sources, ASSUME_ROLE, &role.arn, from.vars(inv));
        if g.denied {
            continue;
        }
        let named = |why: String, trust: &'static str| Edge {
            to: Node::Role(idx),
            steps: vec![("can-assume".into(), format!("role {} ({why})", role.name))],
            conditional: t.conditional,
            entry: Entry::Assume { trust },
        };
        match t.grantee {
            Some(Grantee::Named) => out.push(named(
                format!("trust policy names {}", from.describe(inv)),
                match from {
                    Node::User(_) => "user",
                    Node::Role(_) => "role",
                },
            )),
            Some(Grantee::Everyone) => out.push(named(
                "trust policy allows any principal".to_string(),
                "user",
            )),
            Some(Grantee::Account) => {
                for s in &g.via {
                    let mut steps = s.steps.clone();
                    steps.push((
                        "can-assume".into(),
                        format!("role {} (trust policy trusts account {account})", role.name),
                    ));
                    out.push(Edge {
                        to: Node::Role(idx),
                        steps,
                        conditional: t.conditional || g.conditional,
                        entry: Entry::Assume { trust: "account" },
                    });
                }
            }
            None => {}
        }
    }
    out
}

fn act_as_edges(inv: &Inventory, from: Node, sources: &[Source<'_>]) -> Vec<Edge> {
    let mut out = Vec::new();
    for (idx, user) in inv.users.iter().enumerate() {
        if from == Node::User(idx) {
            continue;
        }
        for permission in ACT_AS_USER {
            let g = grants(sources, permission, &user.arn, from.vars(inv));
            if !g.grants() {
                continue;
            }
            for s in &g.via {
                let mut steps = s.steps.clone();
                steps.push((
                    "can-act-as".into(),
                    format!("iam user {} ({permission})", user.name),
                ));
                out.push(Edge {
                    to: Node::User(idx),
                    steps,
                    conditional: g.conditional,
                    entry: Entry::ActAs { permission },
                });
            }
            break;
        }
    }
    out
}

fn pass_role_edges(inv: &Inventory, from: Node, sources: &[Source<'_>]) -> Vec<Edge> {
    // The launches this principal may perform somewhere (on some resource).
    let launches: Vec<(&'static str, &'static str)> = LAUNCHES
        .iter()
        .copied()
        .filter(|(action, _)| {
            let r = sources
                .iter()
                .map(|s| s.doc.action_reach(action))
                .fold(Default::default(), crate::policy::ActionReach::merge);
            r.somewhere && !r.denied_everywhere
        })
        .collect();
    if launches.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (idx, role) in inv.roles.iter().enumerate() {
        if from == Node::Role(idx) {
            continue;
        }
        let Some(trust) = &role.trust else { continue };
        let Some((launch, service)) = launches
            .iter()
            .find(|(_, service)| trust.service_trust_decision(service, ASSUME_ROLE).grants())
        else {
            continue;
        };
        let g = grants(sources, PASS_ROLE, &role.arn, from.vars(inv));
        if !g.grants() {
            continue;
        }
        for s in &g.via {
            let mut steps = s.steps.clone();
            steps.push((
                "can-act-as".into(),
                format!(
                    "role {} ({PASS_ROLE} to {service} with {launch})",
                    role.name
                ),
            ));
            out.push(Edge {
                to: Node::Role(idx),
                steps,
                conditional: g.conditional,
                entry: Entry::Passed { launch },
            });
        }
    }
    out
}

/// Every principal the `starts` can become, to a fixpoint: a worklist of principals whose new
/// paths have not yet been followed, until no principal gains a path. A path never visits a
/// principal twice, so cycles (roles trusting each other) end; each principal keeps at most
/// [`MAX_TRAILS`] paths, so the work is bounded by the principals reached.
pub fn reach<'a>(inv: &'a Inventory, starts: &[(Node, Path)]) -> Reach<'a> {
    let account = starts
        .iter()
        .find_map(|(n, _)| account_of(n.arn(inv)))
        .unwrap_or_default()
        .to_string();
    let mut out = Reach {
        account: account.clone(),
        ..Default::default()
    };
    let mut index: BTreeMap<Node, usize> = BTreeMap::new();
    let mut followed: Vec<usize> = Vec::new();
    let mut edges: Vec<Option<Vec<Edge>>> = Vec::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    for (node, path) in starts {
        if index.contains_key(node) {
            continue;
        }
        index.insert(*node, out.reached.len());
        out.reached.push(Reached {
            node: *node,
            trails: vec![Trail {
                path: path.clone(),
                nodes: vec![*node],
                conditional: false,
            }],
            sources: node.sources(inv),
            entries: vec![Entry::Start],
        });
        followed.push(0);
        edges.push(None);
        queue.push_back(out.reached.len() - 1);
    }
    while let Some(i) = queue.pop_front() {
        if edges[i].is_none() {
            let from = out.reached[i].node;
            let sources = &out.reached[i].sources;
            let mut list = assume_edges(inv, &account, from, sources);
            list.extend(act_as_edges(inv, from, sources));
            list.extend(pass_role_edges(inv, from, sources));
            edges[i] = Some(list);
        }
        let fresh: Vec<Trail> = out.reached[i].trails[followed[i]..].to_vec();
        followed[i] = out.reached[i].trails.len();
        // Taken out while new principals are appended, put back below.
        let list = edges[i].take().unwrap_or_default();
        let mut grown = BTreeSet::new();
        for e in &list {
            let j = match index.get(&e.to) {
                Some(j) => *j,
                None => {
                    index.insert(e.to, out.reached.len());
                    out.reached.push(Reached {
                        node: e.to,
                        trails: Vec::new(),
                        sources: e.to.sources(inv),
                        entries: Vec::new(),
                    });
                    followed.push(0);
                    edges.push(None);
                    out.reached.len() - 1
                }
            };
            for t in &fresh {
                let target = &mut out.reached[j];
                if t.nodes.contains(&e.to) || target.trails.len() >= MAX_TRAILS {
                    continue;
                }
                let path = extend(&t.path, &e.steps);
                if target.trails.iter().any(|x| x.path == path) {
                    continue;
                }
                let mut nodes = t.nodes.clone();
                nodes.push(e.to);
                target.trails.push(Trail {
                    path,
                    nodes,
                    conditional: t.conditional || e.conditional,
                });
                if !target.entries.contains(&e.entry) {
                    target.entries.push(e.entry);
                }
                grown.insert(j);
            }
        }
        edges[i] = Some(list);
        for j in grown {
            if !queue.contains(&j) {
                queue.push_back(j);
            }
        }
    }
    // A principal entered only by paths that would revisit it has no trail: drop it.
    out.reached.retain(|r| !r.trails.is_empty());
    out.self_grants = self_grants(inv, &out);
    out.gaps = reach_gaps(inv, &out);
    out
}

/// The targets of one self-grant kind, as (ARN, description), among what `reach` reached.
fn grant_targets(inv: &Inventory, reach: &Reach<'_>, target: GrantTarget) -> Vec<(String, String)> {
    let users = || {
        reach.reached.iter().filter_map(|r| match r.node {
            Node::User(i) => Some(&inv.users[i]),
            Node::Role(_) => None,
        })
    };
    let roles = || {
        reach.reached.iter().filter_map(|r| match r.node {
            Node::Role(i) => Some(&inv.roles[i]),
            Node::User(_) => None,
        })
    };
    let mut out: Vec<(String, String)> = match target {
        GrantTarget::ReachedUser => users()
            .map(|u| (u.arn.clone(), format!("iam user {}", u.name)))
            .collect(),
        GrantTarget::GroupOfReachedUser => users()
            .flat_map(|u| u.groups.iter())
            .filter_map(|g| {
                inv.groups
                    .get(g)
                    .map(|x| (x.arn.clone(), format!("group {g}")))
            })
            .collect(),
        GrantTarget::AnyGroup => inv
            .groups
            .iter()
            .map(|(g, x)| (x.arn.clone(), format!("group {g}")))
            .collect(),
        GrantTarget::PolicyOfReached => {
            let mut attached: Vec<&AttachedRef> = Vec::new();
            for u in users() {
                attached.extend(&u.attached);
                for g in &u.groups {
                    if let Some(group) = inv.groups.get(g) {
                        attached.extend(&group.attached);
                    }
                }
            }
            for r in roles() {
                attached.extend(&r.attached);
            }
            attached
                .into_iter()
                // AWS-managed policies cannot be changed by anyone in the account.
                .filter(|a| !a.arn.starts_with("arn:aws:iam::aws:"))
                .map(|a| (a.arn.clone(), format!("policy {}", a.name)))
                .collect()
        }
        GrantTarget::ReachedRole => roles()
            .map(|r| (r.arn.clone(), format!("role {}", r.name)))
            .collect(),
        GrantTarget::AnyRole => inv
            .roles
            .iter()
            .map(|r| (r.arn.clone(), format!("role {}", r.name)))
            .collect(),
    };
    let mut seen = BTreeSet::new();
    out.retain(|(arn, _)| seen.insert(arn.clone()));
    out
}

/// The IAM writes (from [`SELF_GRANTS`]) any reached principal may make on a target that lets it
/// grant itself anything, with the paths to the policies that allow them.
fn self_grants(inv: &Inventory, reach: &Reach<'_>) -> Vec<SelfGrant> {
    let mut out = Vec::new();
    let targets: Vec<Vec<(String, String)>> = SELF_GRANTS
        .iter()
        .map(|(_, t)| grant_targets(inv, reach, *t))
        .collect();
    for r in &reach.reached {
        let vars = r.node.vars(inv);
        for ((action, _), targets) in SELF_GRANTS.iter().zip(&targets) {
            let hit = targets.iter().find_map(|(arn, what)| {
                let g = grants(&r.sources, action, arn, vars);
                g.grants().then_some((g, what))
            });
            let Some((g, what)) = hit else { continue };
            for t in &r.trails {
                for s in &g.via {
                    if out.len() >= MAX_SELF_GRANT_PATHS {
                        return out;
                    }
                    out.push(SelfGrant {
                        path: extend(&t.path, &s.steps),
                        permission: format!("{action} on {what}"),
                        conditional: t.conditional || g.conditional,
                    });
                }
            }
        }
    }
    out
}

/// Gaps met on the way: policies of reached principals that could not be read in full, trust
/// policies that could not be read (whether the identity can assume those roles is unknown),
/// users it can create credentials for and roles it can pass to compute.
fn reach_gaps(inv: &Inventory, reach: &Reach<'_>) -> Vec<Gap> {
    let mut gaps = Vec::new();
    let gap = |kind: &str, resource: String, reason: String, paths: Vec<Path>| Gap {
        provider: PROVIDER.to_string(),
        kind: kind.to_string(),
        resource,
        reason,
        paths,
    };
    for r in &reach.reached {
        let trails: Vec<&Path> = r.trails.iter().map(|t| &t.path).collect();
        let mut unreadable = |prefix: &[(String, String)],
                              owner_arn: &str,
                              attached: &[AttachedRef],
                              inline: &[InlinePolicy]| {
            for p in inline {
                if p.doc.is_none() || p.problem.is_some() {
                    let mut steps = prefix.to_vec();
                    steps.push(("inline".into(), format!("inline policy {}", p.name)));
                    gaps.push(gap(
                        GAP_POLICY_DOCUMENT,
                        format!("{owner_arn}/{}", p.name),
                        format!(
                            "{}: what it allows is unknown",
                            p.problem
                                .as_deref()
                                .unwrap_or("the document could not be read")
                        ),
                        trails.iter().map(|t| extend(t, &steps)).collect(),
                    ));
                }
            }
            for a in attached {
                let problem = match inv.managed.get(&a.arn) {
                    None => Some("the document was not read".to_string()),
                    Some(m) if m.doc.is_none() || m.problem.is_some() => Some(
                        m.problem
                            .clone()
                            .unwrap_or_else(|| "the document could not be read".into()),
                    ),
                    Some(_) => None,
                };
                if let Some(problem) = problem {
                    let mut steps = prefix.to_vec();
                    steps.push(("attached".into(), format!("policy {}", a.name)));
                    gaps.push(gap(
                        GAP_POLICY_DOCUMENT,
                        a.arn.clone(),
                        format!(
                            "managed policy {}: {problem}: what it allows is unknown",
                            a.name
                        ),
                        trails.iter().map(|t| extend(t, &steps)).collect(),
                    ));
                }
            }
        };
        match r.node {
            Node::User(i) => {
                let u = &inv.users[i];
                unreadable(&[], &u.arn, &u.attached, &u.inline);
                for g in &u.groups {
                    if let Some(group) = inv.groups.get(g) {
                        let prefix = [("member-of".to_string(), format!("group {g}"))];
                        unreadable(&prefix, &group.arn, &group.attached, &group.inline);
                    }
                }
            }
            Node::Role(i) => {
                let role = &inv.roles[i];
                unreadable(&[], &role.arn, &role.attached, &role.inline);
            }
        }
        for entry in &r.entries {
            match (entry, r.node) {
                (Entry::ActAs { permission }, Node::User(i)) => gaps.push(gap(
                    GAP_ACT_AS_CREDENTIAL,
                    inv.users[i].name.clone(),
                    format!(
                        "the identity could create credentials for iam user {} ({permission}); an access key or console password made that way cannot be told apart from the user's own (CloudTrail is not read): rotate the user's credentials or accept the gap",
                        inv.users[i].name
                    ),
                    trails.iter().map(|t| (*t).clone()).collect(),
                )),
                (Entry::Passed { launch }, Node::Role(i)) => gaps.push(gap(
                    GAP_PASSED_ROLE_COMPUTE,
                    inv.roles[i].name.clone(),
                    format!(
                        "the identity could launch compute with role {} ({PASS_ROLE}, {launch}); compute still running with it is not inventoried (EC2, Lambda, ECS ... are not read), and it gets fresh credentials after the session deny",
                        inv.roles[i].name
                    ),
                    trails.iter().map(|t| (*t).clone()).collect(),
                )),
                _ => {}
            }
        }
    }
    if !reach.reached.is_empty() {
        for role in &inv.roles {
            if role.trust.is_none() || role.trust_problem.is_some() {
                gaps.push(gap(
                    GAP_POLICY_DOCUMENT,
                    role.arn.clone(),
                    format!(
                        "{}: whether the identity can assume role {} is unknown",
                        role.trust_problem
                            .as_deref()
                            .unwrap_or("the trust policy could not be read"),
                        role.name
                    ),
                    Vec::new(),
                ));
            }
        }
    }
    gaps
}

/// The roles `reach` reached, as role findings need them.
#[derive(Debug, Clone)]
pub struct RoleReach {
    pub idx: usize,
    pub paths: Vec<Path>,
    /// Every way in depends on a `Condition` that was not evaluated.
    pub conditional: bool,
    /// How the first way in is admitted: `user` when the trust policy names the user (or
    /// anyone), `role` when it names a role the identity reached, `account` when it delegates to
    /// the account and an identity policy allows it, `service` when the role is passed to
    /// compute.
    pub trust: &'static str,
    /// `can-assume` when any way in assumes it, else `can-act-as` (passed to compute).
    pub relation: Relation,
    /// Every way in is a start (a federated sign-in), none an assumption from another principal.
    pub only_started: bool,
}

impl Reach<'_> {
    /// Every reached role.
    pub fn roles(&self) -> Vec<RoleReach> {
        self.reached
            .iter()
            .filter_map(|r| {
                let Node::Role(idx) = r.node else { return None };
                let trust = match r.entries.first() {
                    Some(Entry::Assume { trust }) => trust,
                    Some(Entry::Passed { .. }) => "service",
                    _ => "user",
                };
                let assumed = r.entries.iter().any(|e| matches!(e, Entry::Assume { .. }));
                Some(RoleReach {
                    idx,
                    paths: r.trails.iter().map(|t| t.path.clone()).collect(),
                    conditional: r.conditional(),
                    trust,
                    relation: if assumed {
                        Relation::CanAssume
                    } else {
                        Relation::CanActAs
                    },
                    only_started: r.entries.iter().all(|e| *e == Entry::Start),
                })
            })
            .collect()
    }

    /// Managed policy ARNs attached to reached principals (and their groups): what must be
    /// read before the reach is complete.
    pub fn attached_arns(&self, inv: &Inventory) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.reached {
            match r.node {
                Node::User(i) => out.extend(user_policy_arns(inv, &inv.users[i])),
                Node::Role(i) => out.extend(inv.roles[i].attached.iter().map(|a| a.arn.clone())),
            }
        }
        out
    }

    /// The account-wide exposure: one line for the account, with every self-grant path.
    pub fn exposure(&self) -> Option<closeout_contract::Exposure> {
        if self.self_grants.is_empty() {
            return None;
        }
        let mut how: Vec<&str> = self
            .self_grants
            .iter()
            .map(|g| g.permission.as_str())
            .collect();
        how.sort();
        how.dedup();
        let scope = format!("account {}", self.account);
        Some(closeout_contract::Exposure {
            provider: PROVIDER.to_string(),
            what: format!(
                "can grant itself any permission, so every secret of the account ({})",
                how.join("; ")
            ),
            paths: self
                .self_grants
                .iter()
                .map(|g| {
                    g.path
                        .then("can-grant-self", format!("{scope} ({})", g.permission))
                })
                .collect(),
            scope,
        })
    }
}

/// How the identity reaches one secret.
#[derive(Debug, Clone, Default)]
pub struct SecretReach {
    /// The owner tag's value when it names the identity.
    pub owner: Option<String>,
    pub paths: Vec<Path>,
    pub conditional: bool,
    /// Some path reads it (owns or can-read); otherwise it can only be granted (can-grant-self).
    pub readable: bool,
}

/// Paths from the identity to `secret`: ownership by tag; reading it through the identity
/// policies of any reached principal or a resource policy naming it; granting oneself read
/// access through `secretsmanager:PutResourcePolicy` on it, or through an account-wide
/// self-grant.
pub fn secret_reach(
    reach: &Reach<'_>,
    inv: &Inventory,
    secret: &SecretInfo,
    identity: &Identity,
    config: &AwsConfig,
) -> SecretReach {
    let mut r = SecretReach {
        conditional: true,
        ..Default::default()
    };
    let node = format!("secret {}", secret.name);
    if let Some(v) = tag(&secret.tags, &config.owner_tag) {
        if identity.is_named_by(v) {
            r.owner = Some(v.to_string());
            r.conditional = false;
            r.readable = true;
            r.paths.push(Path::new().then(
                "owns",
                format!("secret {} (tag {} = {})", secret.name, config.owner_tag, v),
            ));
        }
    }
    let policy = secret.policy.as_ref();
    let add = |r: &mut SecretReach, path: Path, conditional: bool, reads: bool| {
        r.paths.push(path);
        r.readable |= reads;
        if !conditional {
            r.conditional = false;
        }
    };
    for p in &reach.reached {
        let caller = p.node.caller(inv, &reach.account);
        let vars = p.node.vars(inv);
        let is_user = matches!(p.node, Node::User(_));
        let who = p.node.describe(inv);
        let before = r.paths.len();
        for (action, reads) in [(GET_SECRET_VALUE, true), (PUT_RESOURCE_POLICY, false)] {
            if !reads && r.paths.len() > before {
                // This principal reads it already: granting itself access adds nothing.
                continue;
            }
            let g = grants(&p.sources, action, &secret.arn, vars);
            let rp = policy.map(|d| d.resource_decision(&caller, action, &secret.arn));
            if g.denied || rp.is_some_and(|d| d.denied) {
                continue;
            }
            let (edge, leaf) = if reads {
                ("can-read", node.clone())
            } else {
                ("can-grant-self", format!("{node} ({PUT_RESOURCE_POLICY})"))
            };
            let by_policy = rp.filter(|d| d.grants()).and_then(|d| {
                let why = match d.grantee {
                    Some(Grantee::Named) if reads => format!("(resource policy names {who})"),
                    Some(Grantee::Named) => {
                        format!("(resource policy lets {who} use {PUT_RESOURCE_POLICY})")
                    }
                    // Anyone: said once, on the users' paths.
                    Some(Grantee::Everyone) if is_user && reads => {
                        "(resource policy allows any principal)".to_string()
                    }
                    Some(Grantee::Everyone) if is_user => {
                        format!("(resource policy lets any principal use {PUT_RESOURCE_POLICY})")
                    }
                    _ => return None,
                };
                Some((format!("{node} {why}"), d.conditional))
            });
            for t in &p.trails {
                for s in &g.via {
                    add(
                        &mut r,
                        extend(&t.path, &s.steps).then(edge, leaf.clone()),
                        t.conditional || g.conditional,
                        reads,
                    );
                }
                if let Some((leaf, conditional)) = &by_policy {
                    add(
                        &mut r,
                        t.path.then(edge, leaf.clone()),
                        t.conditional || *conditional,
                        reads,
                    );
                }
            }
        }
    }
    for g in &reach.self_grants {
        add(
            &mut r,
            g.path
                .then("can-grant-self", format!("{node} ({})", g.permission)),
            g.conditional,
            false,
        );
    }
    if r.paths.is_empty() {
        r.conditional = false;
    }
    r
}

/// The gap a secret's unreadable resource policy is, when something of the identity could be
/// named by it (any reached principal): whether it grants the identity access is unknown.
pub fn secret_policy_gap(reach: &Reach<'_>, secret: &SecretInfo) -> Option<Gap> {
    let problem = secret.policy_problem.as_ref()?;
    if reach.reached.is_empty() {
        return None;
    }
    Some(Gap {
        provider: PROVIDER.to_string(),
        kind: GAP_POLICY_DOCUMENT.to_string(),
        resource: secret.arn.clone(),
        reason: format!(
            "{problem}: whether it lets the identity read secret {} is unknown",
            secret.name
        ),
        paths: Vec::new(),
    })
}

/// The first step of every path through the person's IAM user `user`.
pub fn user_base(user: &str) -> Path {
    Path::new().then("account", format!("iam user {user}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::ManagedPolicy;
    use crate::tests::{allow, identity, inline, render, role, sample, secret, trust, user, ACCT};
    use serde_json::json;

    /// Reach from alice (`inv.users[0]`).
    fn from_alice(inv: &Inventory) -> Reach<'_> {
        reach(inv, &[(Node::User(0), user_base("alice"))])
    }

    fn role_names(inv: &Inventory, r: &Reach<'_>) -> Vec<String> {
        r.roles()
            .iter()
            .map(|x| inv.roles[x.idx].name.clone())
            .collect()
    }

    fn secret_of(inv: &Inventory, r: &Reach<'_>, s: &SecretInfo) -> SecretReach {
        let alice = identity("E100", "alice@example.com");
        secret_reach(r, inv, s, &alice, &AwsConfig::default())
    }

    fn arn(kind: &str, name: &str) -> String {
        format!("arn:aws:iam::{ACCT}:{kind}/{name}")
    }

    #[test]
    fn roles_assumable_by_trust_or_by_account_trust_plus_identity_policy() {
        let inv = sample();
        let r = from_alice(&inv);
        let reaches = r.roles();
        assert_eq!(role_names(&inv, &r), vec!["direct-role", "app-deploy"]);
        assert_eq!(
            render(&reaches[0].paths),
            vec!["alice -account-> iam user alice -can-assume-> role direct-role (trust policy names iam user alice)"]
        );
        assert_eq!(
            render(&reaches[1].paths),
            vec!["alice -account-> iam user alice -attached-> policy assume-app -can-assume-> role app-deploy (trust policy trusts account 123456789012)"]
        );
        assert_eq!(reaches[0].trust, "user");
        assert_eq!(reaches[1].trust, "account");
        assert!(reaches.iter().all(|x| x.relation == Relation::CanAssume));
        assert!(r.self_grants.is_empty() && r.gaps.is_empty());
    }

    #[test]
    fn explicit_deny_blocks_an_assumable_role() {
        let mut inv = sample();
        inv.users[0].inline.push(inline(
            "deny-app",
            json!({"Statement": [{"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": "arn:aws:iam::*:role/app-deploy"}]}),
        ));
        assert_eq!(role_names(&inv, &from_alice(&inv)), vec!["direct-role"]);
    }

    #[test]
    fn secrets_reached_every_way_and_not_otherwise() {
        let inv = sample();
        let r = from_alice(&inv);
        let reach = |s: &SecretInfo| secret_of(&inv, &r, s);

        let owned = secret("owned", &[("owner", "alice@example.com")], None);
        let x = reach(&owned);
        assert_eq!(x.owner.as_deref(), Some("alice@example.com"));
        assert_eq!(
            render(&x.paths),
            vec!["alice -owns-> secret owned (tag owner = alice@example.com)"]
        );

        let x = reach(&secret("user-db", &[], None));
        assert_eq!(
            render(&x.paths),
            vec!["alice -account-> iam user alice -inline-> inline policy read-user-secret -can-read-> secret user-db"]
        );
        let x = reach(&secret("group-db", &[], None));
        assert_eq!(
            render(&x.paths),
            vec!["alice -account-> iam user alice -member-of-> group devs -inline-> inline policy group-read -can-read-> secret group-db"]
        );
        // direct-role has secretsmanager:* on role-*: it reads them (that it could also rewrite
        // their resource policies adds nothing).
        let x = reach(&secret("role-db", &[], None));
        assert_eq!(
            render(&x.paths),
            vec!["alice -account-> iam user alice -can-assume-> role direct-role (trust policy names iam user alice) -inline-> inline policy r -can-read-> secret role-db"]
        );
        assert!(x.readable);
        let rp = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:role/app-deploy")}, "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]});
        let x = reach(&secret("rp-role", &[], Some(rp)));
        assert_eq!(
            render(&x.paths),
            vec!["alice -account-> iam user alice -attached-> policy assume-app -can-assume-> role app-deploy (trust policy trusts account 123456789012) -can-read-> secret rp-role (resource policy names role app-deploy)"]
        );
        let rp = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:user/alice")}, "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]});
        let x = reach(&secret("rp-user", &[], Some(rp)));
        assert_eq!(
            render(&x.paths),
            vec!["alice -account-> iam user alice -can-read-> secret rp-user (resource policy names iam user alice)"]
        );
        assert!(!x.conditional);

        // Nobody's path: bob can read everything, but bob is not alice.
        assert!(reach(&secret(
            "unreachable",
            &[("owner", "bob@example.com")],
            None
        ))
        .paths
        .is_empty());
        // A resource policy naming only bob.
        let rp = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:user/bob")}, "Action": "*", "Resource": "*"}]});
        assert!(reach(&secret("bobs", &[], Some(rp))).paths.is_empty());
        // A resource policy deny beats the identity policy.
        let rp = json!({"Statement": [{"Effect": "Deny", "Principal": {"AWS": format!("arn:aws:iam::{ACCT}:user/alice")}, "Action": "*", "Resource": "*"}]});
        assert!(reach(&secret("user-denied", &[], Some(rp)))
            .paths
            .is_empty());
    }

    #[test]
    fn without_an_account_only_owned_secrets_are_reached() {
        let inv = sample();
        let r = reach(&inv, &[]);
        assert!(r.reached.is_empty() && r.gaps.is_empty());
        assert!(secret_of(&inv, &r, &secret("user-db", &[], None))
            .paths
            .is_empty());
        let x = secret_of(&inv, &r, &secret("o", &[("owner", "E100")], None));
        assert_eq!(x.paths.len(), 1);
    }

    /// alice -> direct-role -> hop1 (trust names direct-role) -> hop2 (trusts the account, hop1's
    /// policy allows it); hop2 and hop1 trust each other (a cycle).
    fn chained() -> Inventory {
        let mut inv = sample();
        let mut hop1 = role(
            "hop1",
            json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": [arn("role", "direct-role"), arn("role", "hop2")]}, "Action": "sts:AssumeRole"}]}),
        );
        hop1.inline = vec![inline(
            "next",
            allow("sts:AssumeRole", &arn("role", "hop2")),
        )];
        let mut hop2 = role("hop2", trust(ACCT));
        hop2.inline = vec![inline(
            "read",
            allow(GET_SECRET_VALUE, "arn:aws:secretsmanager:*:*:secret:deep-*"),
        )];
        inv.roles.push(hop1);
        inv.roles.push(hop2);
        inv
    }

    #[test]
    fn chained_roles_are_reached_at_any_depth_and_cycles_end() {
        let inv = chained();
        let r = from_alice(&inv);
        assert_eq!(
            role_names(&inv, &r),
            vec!["direct-role", "app-deploy", "hop1", "hop2"]
        );
        let roles = r.roles();
        assert_eq!(
            render(&roles[2].paths),
            vec!["alice -account-> iam user alice -can-assume-> role direct-role (trust policy names iam user alice) -can-assume-> role hop1 (trust policy names role direct-role)"]
        );
        assert_eq!(roles[2].trust, "role");
        assert_eq!(
            render(&roles[3].paths),
            vec!["alice -account-> iam user alice -can-assume-> role direct-role (trust policy names iam user alice) -can-assume-> role hop1 (trust policy names role direct-role) -inline-> inline policy next -can-assume-> role hop2 (trust policy trusts account 123456789012)"]
        );
        assert_eq!(roles[3].trust, "account");
        let x = secret_of(&inv, &r, &secret("deep-db", &[], None));
        assert_eq!(
            render(&x.paths),
            vec!["alice -account-> iam user alice -can-assume-> role direct-role (trust policy names iam user alice) -can-assume-> role hop1 (trust policy names role direct-role) -inline-> inline policy next -can-assume-> role hop2 (trust policy trusts account 123456789012) -inline-> inline policy read -can-read-> secret deep-db"]
        );
        // The cycle hop2 -> hop1 adds no path: hop1 is already on it.
        assert_eq!(roles[2].paths.len(), 1);
    }

    #[test]
    fn trails_per_principal_are_capped() {
        let mut inv = sample();
        // Many policies each allowing app-deploy: one path each, up to the cap.
        for i in 0..(MAX_TRAILS + 4) {
            inv.users[0].inline.push(inline(
                &format!("assume-{i:02}"),
                allow(ASSUME_ROLE, "arn:aws:iam::*:role/app-*"),
            ));
        }
        let r = from_alice(&inv);
        let app = r
            .roles()
            .into_iter()
            .find(|x| inv.roles[x.idx].name == "app-deploy")
            .unwrap();
        assert_eq!(app.paths.len(), MAX_TRAILS);
    }

    #[test]
    fn creating_credentials_for_another_user_makes_its_reach_hers() {
        let mut inv = sample();
        let mut carol = user("carol", &[]);
        carol.inline = vec![inline(
            "carol-read",
            allow(
                GET_SECRET_VALUE,
                "arn:aws:secretsmanager:*:*:secret:carol-*",
            ),
        )];
        inv.users.push(carol);
        inv.roles
            .push(role("carol-role", trust(&arn("user", "carol"))));
        inv.users[0].inline.push(inline(
            "keys",
            allow("iam:CreateAccessKey", &arn("user", "carol")),
        ));
        let r = from_alice(&inv);
        let x = secret_of(&inv, &r, &secret("carol-db", &[], None));
        assert_eq!(
            render(&x.paths),
            vec!["alice -account-> iam user alice -inline-> inline policy keys -can-act-as-> iam user carol (iam:CreateAccessKey) -inline-> inline policy carol-read -can-read-> secret carol-db"]
        );
        assert!(role_names(&inv, &r).contains(&"carol-role".to_string()));
        let gap = r
            .gaps
            .iter()
            .find(|g| g.kind == GAP_ACT_AS_CREDENTIAL)
            .expect("act-as gap");
        assert_eq!(gap.resource, "carol");
        // bob reads everything, and alice cannot act as bob: none of it is hers.
        assert!(secret_of(&inv, &r, &secret("bob-stuff", &[], None))
            .paths
            .is_empty());
        // A login profile works the same way; a deny on the user stops it.
        inv.users[0].inline.pop();
        inv.users[0].inline.push(inline(
            "pw",
            allow("iam:UpdateLoginProfile", "arn:aws:iam::*:user/*"),
        ));
        inv.users[0].inline.push(inline(
            "no-bob",
            json!({"Statement": [{"Effect": "Deny", "Action": "iam:*LoginProfile", "Resource": arn("user", "bob")}]}),
        ));
        let r = from_alice(&inv);
        let users: Vec<Node> = r.reached.iter().map(|x| x.node).collect();
        assert!(users.contains(&Node::User(2)), "carol: {users:?}");
        assert!(!users.contains(&Node::User(1)), "bob is denied: {users:?}");
        // bob not reached: his `*` gives alice no exposure.
        assert!(r.self_grants.is_empty());
    }

    #[test]
    fn a_role_passed_to_compute_she_can_launch_is_hers() {
        let mut inv = sample();
        let mut worker = role(
            "worker",
            json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}),
        );
        worker.inline = vec![inline(
            "read",
            allow(
                GET_SECRET_VALUE,
                "arn:aws:secretsmanager:*:*:secret:worker-*",
            ),
        )];
        inv.roles.push(worker);
        // Trusts Lambda only: passing it to EC2 gives nothing.
        inv.roles.push(role(
            "fn-role",
            json!({"Statement": [{"Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com"]}, "Action": "sts:AssumeRole"}]}),
        ));
        inv.users[0].inline.push(inline(
            "launch",
            json!({"Statement": [
                {"Effect": "Allow", "Action": "iam:PassRole", "Resource": ["arn:aws:iam::*:role/worker", "arn:aws:iam::*:role/fn-role"]},
                {"Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "arn:aws:ec2:*:*:instance/*"}
            ]}),
        ));
        let r = from_alice(&inv);
        let roles = r.roles();
        let worker = roles
            .iter()
            .find(|x| inv.roles[x.idx].name == "worker")
            .expect("worker reached");
        assert_eq!(worker.relation, Relation::CanActAs);
        assert_eq!(worker.trust, "service");
        assert_eq!(
            render(&worker.paths),
            vec!["alice -account-> iam user alice -inline-> inline policy launch -can-act-as-> role worker (iam:PassRole to ec2.amazonaws.com with ec2:RunInstances)"]
        );
        assert!(!role_names(&inv, &r).contains(&"fn-role".to_string()));
        let x = secret_of(&inv, &r, &secret("worker-db", &[], None));
        assert_eq!(x.paths.len(), 1);
        assert!(r
            .gaps
            .iter()
            .any(|g| g.kind == GAP_PASSED_ROLE_COMPUTE && g.resource == "worker"));

        // PassRole without any launch permission reaches nothing.
        let mut inv2 = inv.clone();
        inv2.users[0].inline.pop();
        inv2.users[0].inline.push(inline(
            "pass-only",
            allow("iam:PassRole", "arn:aws:iam::*:role/worker"),
        ));
        assert!(!role_names(&inv2, &from_alice(&inv2)).contains(&"worker".to_string()));
    }

    /// Each self-grant on a target alice reaches exposes the account; the same write on
    /// something she does not reach does not.
    #[test]
    fn self_grants_expose_the_account_only_on_reached_targets() {
        let devs = arn("group", "devs");
        let ops = arn("group", "ops");
        let assume_app = arn("policy", "assume-app");
        let direct = arn("role", "direct-role");
        let ops_admin = arn("role", "ops-admin");
        let cases: Vec<(&str, String, bool)> = vec![
            ("iam:PutUserPolicy", arn("user", "alice"), true),
            (
                "iam:AttachUserPolicy",
                "arn:aws:iam::*:user/${aws:username}".into(),
                true,
            ),
            ("iam:PutUserPolicy", arn("user", "bob"), false),
            ("iam:PutGroupPolicy", devs.clone(), true),
            ("iam:AttachGroupPolicy", devs, true),
            ("iam:PutGroupPolicy", ops.clone(), false),
            ("iam:AddUserToGroup", ops, true),
            ("iam:CreatePolicyVersion", assume_app.clone(), true),
            ("iam:SetDefaultPolicyVersion", assume_app, true),
            (
                "iam:CreatePolicyVersion",
                arn("policy", "unattached"),
                false,
            ),
            (
                "iam:CreatePolicyVersion",
                "arn:aws:iam::aws:policy/*".into(),
                false,
            ),
            ("iam:PutRolePolicy", direct.clone(), true),
            ("iam:AttachRolePolicy", direct, true),
            ("iam:PutRolePolicy", ops_admin.clone(), false),
            ("iam:UpdateAssumeRolePolicy", ops_admin, true),
            ("iam:*", arn("user", "alice"), true),
            ("iam:GetUserPolicy", "*".into(), false),
        ];
        for (action, resource, exposes) in cases {
            let mut inv = sample();
            inv.groups.insert(
                "ops".into(),
                crate::inventory::IamGroup {
                    arn: arn("group", "ops"),
                    attached: vec![],
                    inline: vec![],
                },
            );
            inv.users[0]
                .inline
                .push(inline("grant", allow(action, &resource)));
            let r = from_alice(&inv);
            assert_eq!(
                !r.self_grants.is_empty(),
                exposes,
                "{action} on {resource}: {:?}",
                r.self_grants
            );
            if !exposes {
                continue;
            }
            let e = r.exposure().expect("exposure");
            assert_eq!(e.scope, format!("account {ACCT}"));
            assert!(e.what.contains(action.trim_end_matches('*')), "{}", e.what);
            // Every secret of the account, even one nothing reads, with a path naming the
            // permission and the principal.
            let x = secret_of(&inv, &r, &secret("nobody-reads", &[], None));
            assert!(!x.readable);
            assert!(!x.paths.is_empty());
            for p in render(&x.paths) {
                assert!(
                    p.starts_with("alice -account-> iam user alice -inline-> inline policy grant -can-grant-self-> secret nobody-reads (iam:"),
                    "{p}"
                );
            }
        }
    }

    #[test]
    fn a_self_grant_through_a_chained_role_names_the_role() {
        let mut inv = chained();
        let hop2 = inv.roles.iter_mut().find(|r| r.name == "hop2").unwrap();
        hop2.inline.push(inline(
            "admin",
            allow("iam:AttachUserPolicy", "arn:aws:iam::*:user/*"),
        ));
        let r = from_alice(&inv);
        let e = r.exposure().expect("exposure");
        assert_eq!(
            render(&e.paths),
            vec!["alice -account-> iam user alice -can-assume-> role direct-role (trust policy names iam user alice) -can-assume-> role hop1 (trust policy names role direct-role) -inline-> inline policy next -can-assume-> role hop2 (trust policy trusts account 123456789012) -inline-> inline policy admin -can-grant-self-> account 123456789012 (iam:AttachUserPolicy on iam user alice)"]
        );
    }

    #[test]
    fn put_resource_policy_on_one_secret_exposes_that_secret_only() {
        let mut inv = sample();
        inv.users[0].inline.push(inline(
            "rp",
            allow(
                PUT_RESOURCE_POLICY,
                "arn:aws:secretsmanager:*:*:secret:pay-*",
            ),
        ));
        let r = from_alice(&inv);
        assert!(r.self_grants.is_empty());
        let x = secret_of(&inv, &r, &secret("pay-db", &[], None));
        assert!(!x.readable);
        assert_eq!(
            render(&x.paths),
            vec!["alice -account-> iam user alice -inline-> inline policy rp -can-grant-self-> secret pay-db (secretsmanager:PutResourcePolicy)"]
        );
        assert!(secret_of(&inv, &r, &secret("other-db", &[], None))
            .paths
            .is_empty());
        // Through the secret's own resource policy too.
        let rp = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": arn("role", "app-deploy")}, "Action": "secretsmanager:PutResourcePolicy", "Resource": "*"}]});
        let x = secret_of(&inv, &r, &secret("team-db", &[], Some(rp)));
        assert_eq!(
            render(&x.paths),
            vec!["alice -account-> iam user alice -attached-> policy assume-app -can-assume-> role app-deploy (trust policy trusts account 123456789012) -can-grant-self-> secret team-db (resource policy lets role app-deploy use secretsmanager:PutResourcePolicy)"]
        );
    }

    #[test]
    fn unreadable_documents_of_reached_principals_are_gaps() {
        let mut inv = chained();
        let hop2 = inv.roles.iter_mut().find(|r| r.name == "hop2").unwrap();
        hop2.inline.push(InlinePolicy {
            name: "broken".into(),
            text: "{not json".into(),
            doc: None,
            problem: Some("inline policy broken of role hop2: not JSON".into()),
        });
        let missing = arn("policy", "gone");
        inv.users[0].attached.push(AttachedRef {
            name: "gone".into(),
            arn: missing.clone(),
        });
        inv.managed.insert(
            missing.clone(),
            ManagedPolicy {
                doc: None,
                problem: Some("managed policy gone: not found".into()),
            },
        );
        // bob is not reached: his broken policy is no gap of alice's.
        inv.users[1].inline.push(InlinePolicy {
            name: "bob-broken".into(),
            text: String::new(),
            doc: None,
            problem: Some("x".into()),
        });
        // A trust policy nobody can read: any role might trust alice.
        let mut opaque = role("opaque", trust(ACCT));
        opaque.trust = None;
        opaque.trust_problem = Some("trust policy of role opaque: not JSON".into());
        inv.roles.push(opaque);

        let r = from_alice(&inv);
        let mut kinds: Vec<(String, String)> = r
            .gaps
            .iter()
            .map(|g| (g.kind.clone(), g.resource.clone()))
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            vec![
                ("policy-document".to_string(), missing),
                (
                    "policy-document".to_string(),
                    arn("role", "hop2") + "/broken"
                ),
                ("policy-document".to_string(), arn("role", "opaque")),
            ]
        );
        let broken = r
            .gaps
            .iter()
            .find(|g| g.resource.ends_with("/broken"))
            .unwrap();
        assert!(render(&broken.paths)[0].ends_with("-can-assume-> role hop2 (trust policy trusts account 123456789012) -inline-> inline policy broken"));
        assert!(broken.reason.contains("what it allows is unknown"));

        // A secret resource policy that could not be read is a gap once anything is reached.
        let mut s = secret("locked", &[], None);
        s.policy_problem =
            Some("resource policy of secret locked: GetResourcePolicy was refused".into());
        assert!(secret_policy_gap(&r, &s).is_some());
        assert!(secret_policy_gap(&reach(&inv, &[]), &s).is_none());
    }

    #[test]
    fn owned_users_start_reach_too() {
        let mut inv = sample();
        let mut svc = user("svc-ci", &[("owner", "E100")]);
        svc.inline = vec![inline(
            "ci",
            allow(GET_SECRET_VALUE, "arn:aws:secretsmanager:*:*:secret:ci-*"),
        )];
        inv.users.push(svc);
        let nhi = Path::new().then("owns", "iam user svc-ci (tag owner = E100)");
        let r = reach(
            &inv,
            &[(Node::User(0), user_base("alice")), (Node::User(2), nhi)],
        );
        let x = secret_of(&inv, &r, &secret("ci-token", &[], None));
        assert_eq!(
            render(&x.paths),
            vec!["alice -owns-> iam user svc-ci (tag owner = E100) -inline-> inline policy ci -can-read-> secret ci-token"]
        );
    }
}
