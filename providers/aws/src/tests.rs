//! Fixtures shared by the unit tests of the pure analysis (correlation, reach, findings,
//! NHIs, entitlements): identities, IAM users and roles, policies, secrets, and a sample account
//! with every way to reach a role and a secret.

use crate::inventory::{
    AttachedRef, IamGroup, IamRole, IamUser, InlinePolicy, Inventory, ManagedPolicy, SecretInfo,
};
use crate::policy::PolicyDocument;
use crate::reach::GET_SECRET_VALUE;
use closeout_contract::{Identity, IdentityKind, IdentityStatus, Path};
use serde_json::json;

pub const ACCT: &str = "123456789012";

pub fn identity(id: &str, email: &str) -> Identity {
    Identity {
        id: id.into(),
        email: email.into(),
        name: id.into(),
        kind: IdentityKind::Human,
        status: IdentityStatus::Terminated,
        manager: None,
        department: None,
        role: None,
        location: None,
        employment_type: None,
        tags: Default::default(),
    }
}

pub fn user(name: &str, tags: &[(&str, &str)]) -> IamUser {
    IamUser {
        name: name.into(),
        arn: format!("arn:aws:iam::{ACCT}:user/{name}"),
        id: format!("AIDA{}", name.to_uppercase()),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        groups: Vec::new(),
        attached: Vec::new(),
        inline: Vec::new(),
    }
}

pub fn inline(name: &str, v: serde_json::Value) -> InlinePolicy {
    let text = v.to_string();
    InlinePolicy {
        name: name.into(),
        doc: Some(PolicyDocument::parse(&text).unwrap()),
        text,
        problem: None,
    }
}

pub fn role(name: &str, trust: serde_json::Value) -> IamRole {
    IamRole {
        name: name.into(),
        arn: format!("arn:aws:iam::{ACCT}:role/{name}"),
        id: format!("AROA{}", name.to_uppercase()),
        trust: Some(PolicyDocument::parse(&trust.to_string()).unwrap()),
        trust_problem: None,
        attached: Vec::new(),
        inline: Vec::new(),
        tags: Vec::new(),
    }
}

pub fn allow(action: &str, resource: &str) -> serde_json::Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]})
}

pub fn trust(principal: &str) -> serde_json::Value {
    json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]})
}

pub fn secret(name: &str, tags: &[(&str, &str)], policy: Option<serde_json::Value>) -> SecretInfo {
    SecretInfo {
        arn: format!("arn:aws:secretsmanager:us-east-1:{ACCT}:secret:{name}-AbCdEf"),
        name: name.into(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        policy: policy.map(|p| PolicyDocument::parse(&p.to_string()).unwrap()),
        policy_problem: None,
        rotation_enabled: false,
        last_changed: None,
    }
}

pub fn render(paths: &[Path]) -> Vec<String> {
    paths.iter().map(|p| p.render("alice")).collect()
}

/// An account with every way to reach a role and a secret.
pub fn sample() -> Inventory {
    let mut inv = Inventory::default();
    let mut alice = user("alice", &[("identity", "E100")]);
    alice.groups = vec!["devs".into()];
    alice.inline = vec![
        inline(
            "read-user-secret",
            allow(GET_SECRET_VALUE, "arn:aws:secretsmanager:*:*:secret:user-*"),
        ),
        inline(
            "closeout-revoke-sessions",
            json!({"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"DateLessThan": {"aws:TokenIssueTime": "2030-01-01T00:00:00Z"}}}]}),
        ),
    ];
    alice.attached = vec![AttachedRef {
        name: "assume-app".into(),
        arn: format!("arn:aws:iam::{ACCT}:policy/assume-app"),
    }];
    inv.managed.insert(
        format!("arn:aws:iam::{ACCT}:policy/assume-app"),
        ManagedPolicy {
            doc: Some(
                PolicyDocument::parse(
                    &allow("sts:Assume*", "arn:aws:iam::*:role/app-*").to_string(),
                )
                .unwrap(),
            ),
            problem: None,
        },
    );
    inv.groups.insert(
        "devs".into(),
        IamGroup {
            arn: format!("arn:aws:iam::{ACCT}:group/devs"),
            attached: vec![],
            inline: vec![inline(
                "group-read",
                allow(
                    "secretsmanager:GetSecret*",
                    "arn:aws:secretsmanager:us-east-1:*:secret:group-*",
                ),
            )],
        },
    );
    inv.users.push(alice);
    let mut bob = user("bob", &[("owner", "alice@example.com")]);
    bob.inline = vec![inline("bob-read", allow("*", "*"))];
    inv.users.push(bob);

    let mut direct = role(
        "direct-role",
        trust(&format!("arn:aws:iam::{ACCT}:user/alice")),
    );
    direct.inline = vec![inline(
        "r",
        allow(
            "secretsmanager:*",
            "arn:aws:secretsmanager:*:*:secret:role-*",
        ),
    )];
    direct.tags = vec![("owner".into(), "E100".into())];
    inv.roles.push(direct);
    inv.roles.push(role(
        "app-deploy",
        trust(&format!("arn:aws:iam::{ACCT}:root")),
    ));
    // Trusts the account, but no identity policy of alice allows it.
    inv.roles.push(role("ops-admin", trust(ACCT)));
    // Trusts somebody else.
    inv.roles.push(role(
        "app-bob",
        trust(&format!("arn:aws:iam::{ACCT}:user/bob")),
    ));
    inv
}
