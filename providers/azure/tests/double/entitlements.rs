//! Entitlements against the Azure double, as the orchestrator drives them: `entitlement()` of
//! resolved findings, `grant_finding` then `execute(grant)` for a group membership and a role
//! assignment (read back over Graph and ARM, repeated as "already done", resolved again with
//! the planned id, a throttled write surfaced), the Config errors of a missing or ambiguous group, and the Entra users no
//! identity claims (one paged listing).

use crate::common;

use closeout_azure::http::Api::{Arm, Graph};
use closeout_azure::http::AzureHttp;
use closeout_azure::AzureProvider;
use closeout_azure_double::{AzureDouble, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID};
use closeout_contract::{
    ActionOutcome, ActionParams, ActionRequest, Entitlement, Finding, Identity, IdentityKind,
    IdentityStatus, Provider, ProviderError, ResolveContext, State,
};
use serde_json::{json, Value};

const SUB: &str = "88888888-8888-4888-8888-888888888888";
/// Key Vault Secrets User (built in).
const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
/// Reader (built in).
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

fn person(id: &str, email: &str) -> Identity {
    Identity {
        id: id.into(),
        email: email.into(),
        name: id.into(),
        kind: IdentityKind::Human,
        status: IdentityStatus::Active,
        manager: None,
        department: None,
        role: None,
        location: None,
        employment_type: None,
        tags: Default::default(),
    }
}

/// Calls to seed and read the double directly (not through the provider under test).
struct Seed {
    http: AzureHttp,
}

impl Seed {
    async fn call(
        &self,
        method: &'static str,
        api: closeout_azure::http::Api,
        path: &str,
        body: Value,
    ) -> Value {
        let body = (!body.is_null()).then_some(body);
        self.http
            .call::<Value>(api, method, path, body.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
            .unwrap_or(Value::Null)
    }

    async fn user(&self, upn: &str, employee: &str, enabled: bool) -> String {
        let u = self
            .call(
                "POST",
                Graph,
                "/v1.0/users",
                json!({"accountEnabled": enabled,
                "displayName": upn, "userPrincipalName": upn, "mail": upn,
                "employeeId": employee, "mailNickname": employee,
                "passwordProfile": {"password": "Not-Printed-1"}}),
            )
            .await;
        u["id"].as_str().expect("user id").to_string()
    }

    async fn group(&self, name: &str) -> String {
        let g = self
            .call(
                "POST",
                Graph,
                "/v1.0/groups",
                json!({"displayName": name,
                "mailEnabled": false, "mailNickname": name.replace(' ', "-"),
                "securityEnabled": true}),
            )
            .await;
        g["id"].as_str().expect("group id").to_string()
    }

    async fn add_member(&self, group: &str, member: &str) {
        self.call(
            "POST",
            Graph,
            &format!("/v1.0/groups/{group}/members/$ref"),
            json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{member}")}),
        )
        .await;
    }

    async fn assign(&self, scope: &str, name: &str, role: &str, principal: &str, kind: &str) {
        self.call(
            "PUT",
            Arm,
            &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version=2022-04-01"),
            json!({"properties": {
                "roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}"),
                "principalId": principal, "principalType": kind}}),
        )
        .await;
    }
}

/// The directory: alice (E1001) directly in `oncall`, which is in `platform`; `platform` reads
/// the secrets of vault `kv-rbac`; alice is Reader on the subscription and named in the
/// access policy of `kv-legacy`. Groups `payments` (to grant) and two named `dup`. Bob and a
/// disabled carol have no identity.
struct World {
    double: AzureDouble,
    seed: Seed,
    alice: String,
    payments: String,
    dir: std::path::PathBuf,
}

async fn world(tag: &str) -> World {
    let double = common::double().await;
    let seed = Seed {
        http: common::client(&double, DEFAULT_CLIENT_SECRET),
    };
    let alice = seed.user("alice@example.com", "E1001", true).await;
    seed.user("bob@example.com", "E2002", true).await;
    seed.user("carol@example.com", "E3003", false).await;
    let oncall = seed.group("oncall").await;
    let platform = seed.group("platform").await;
    let payments = seed.group("payments").await;
    seed.group("dup").await;
    seed.group("dup").await;
    seed.add_member(&oncall, &alice).await;
    seed.add_member(&platform, &oncall).await;
    seed.call(
        "PUT",
        Arm,
        &format!("/providers/Microsoft.Subscription/aliases/a-{SUB}?api-version=2021-10-01"),
        json!({"properties": {"displayName": "prod", "workload": "Production",
               "billingScope": "/billingAccounts/x", "subscriptionId": SUB}}),
    )
    .await;
    seed.call(
        "PUT",
        Arm,
        &format!("/subscriptions/{SUB}/resourcegroups/rg?api-version=2021-04-01"),
        json!({"location": "westeurope"}),
    )
    .await;
    let vault = |rbac: bool, policies: Value| {
        json!({"location": "westeurope", "properties": {"tenantId": DEFAULT_TENANT_ID,
               "sku": {"family": "A", "name": "standard"}, "enableRbacAuthorization": rbac,
               "accessPolicies": policies}})
    };
    let vaults =
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults");
    seed.call(
        "PUT",
        Arm,
        &format!("{vaults}/kv-rbac?api-version=2023-07-01"),
        vault(true, json!([])),
    )
    .await;
    seed.call(
        "PUT",
        Arm,
        &format!("{vaults}/kv-legacy?api-version=2023-07-01"),
        vault(
            false,
            json!([{"tenantId": DEFAULT_TENANT_ID, "objectId": alice,
                    "permissions": {"secrets": ["get", "list"]}}]),
        ),
    )
    .await;
    seed.assign(
        &format!("{vaults}/kv-rbac"),
        "11111111-1111-4111-8111-111111111111",
        SECRETS_USER,
        &platform,
        "Group",
    )
    .await;
    seed.assign(
        &format!("/subscriptions/{SUB}"),
        "22222222-2222-4222-8222-222222222222",
        READER,
        &alice,
        "User",
    )
    .await;
    let dir = std::env::temp_dir().join(format!(
        "closeout-azure-entitlements-{tag}-{}",
        std::process::id()
    ));
    World {
        double,
        seed,
        alice,
        payments,
        dir,
    }
}

impl World {
    async fn provider(&self) -> AzureProvider {
        AzureProvider::connect(common::provider_config(&self.double, &self.dir))
            .await
            .expect("connect")
    }

    async fn finish(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        self.double.shutdown().await;
    }
}

fn ctx() -> ResolveContext {
    ResolveContext {
        identity: person("E1001", "alice@example.com"),
        cutoff: None,
    }
}

fn grant(finding: &Finding) -> ActionRequest {
    ActionRequest {
        idempotency_key: format!("grant-{}", finding.id),
        verb: "grant".into(),
        finding: finding.clone(),
        params: ActionParams {
            run_id: "run-grant".into(),
            ..Default::default()
        },
    }
}

fn ent(kind: &str, target: &str) -> Entitlement {
    Entitlement::new("azure", kind, target)
}

async fn execute(provider: &AzureProvider, finding: &Finding) -> ActionOutcome {
    provider
        .execute(&grant(finding))
        .await
        .unwrap_or_else(|e| panic!("grant {}: {e}", finding.id))
}

/// `finding` as resolution gives it now.
async fn resolved(provider: &AzureProvider, id: &str) -> Option<Finding> {
    provider
        .resolve(&ctx())
        .await
        .expect("resolve")
        .findings
        .into_iter()
        .find(|f| f.id == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entitlements_of_resolved_findings_name_groups_roles_at_scopes_and_vaults() {
    let w = world("live").await;
    let provider = w.provider().await;
    let resolution = provider.resolve(&ctx()).await.expect("resolve");
    let mut ents: Vec<Entitlement> = resolution
        .findings
        .iter()
        .filter_map(|f| provider.entitlement(f))
        .collect();
    ents.sort();
    assert_eq!(
        ents,
        vec![
            ent("access-policy", "kv-legacy"),
            ent("group-membership", "oncall"),
            ent("role-assignment", &format!("Reader@/subscriptions/{SUB}")),
        ],
        "only direct grants are entitlements: {:#?}",
        resolution.findings
    );
    // Reached through the membership, not entitlements of their own.
    for kind in ["inherited-group", "group-role-assignment"] {
        let f = resolution
            .findings
            .iter()
            .find(|f| f.kind == kind)
            .unwrap_or_else(|| panic!("alice has a {kind}"));
        assert_eq!(provider.entitlement(f), None, "{kind}");
    }
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_group_membership_is_read_back_and_resolves_with_the_planned_id() {
    let w = world("group").await;
    let provider = w.provider().await;
    let wanted = ent("group-membership", "payments");
    let planned = provider
        .grant_finding(&ctx(), &wanted)
        .await
        .expect("grant_finding");
    assert_eq!(planned.state, State::Deleted);
    assert_eq!(planned.resource, w.payments);
    assert_eq!(planned.attr("user_id"), Some(w.alice.as_str()));
    assert_eq!(
        provider.live_state(&planned, &ctx()).await.unwrap(),
        State::Deleted
    );

    // A throttled write was not done (Graph throttles before acting): the client sends it
    // again after Azure's Retry-After, and the grant succeeds in one execute.
    w.seed
        .call(
            "POST",
            Graph,
            "/_double/faults",
            json!({"path_prefix": format!("/v1.0/groups/{}/members", w.payments),
                   "method": "POST", "count": 1, "retry_after_seconds": 1}),
        )
        .await;
    let outcome = execute(&provider, &planned).await;
    assert!(!outcome.already_done, "{outcome:?}");
    assert_eq!(outcome.state, State::Active);
    let members = w
        .seed
        .call(
            "GET",
            Graph,
            &format!("/v1.0/groups/{}/members?$select=id", w.payments),
            Value::Null,
        )
        .await;
    assert!(
        members["value"]
            .as_array()
            .expect("members")
            .iter()
            .any(|m| m["id"] == w.alice.as_str()),
        "Graph lists alice in payments: {members}"
    );
    let again = execute(&provider, &planned).await;
    assert!(again.already_done, "{again:?}");
    assert_eq!(
        provider.live_state(&planned, &ctx()).await.unwrap(),
        State::Active
    );

    let now = resolved(&provider, &planned.id)
        .await
        .unwrap_or_else(|| panic!("resolve lists {} after the grant", planned.id));
    assert_eq!(now.state, State::Active);
    assert_eq!(
        Finding {
            state: State::Deleted,
            ..now.clone()
        },
        planned,
        "the planned finding is the resolved one"
    );
    assert_eq!(provider.entitlement(&now), Some(wanted));
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_role_assignment_is_read_back_and_resolves_with_the_planned_id() {
    let w = world("role").await;
    let provider = w.provider().await;
    // Any case and a trailing slash name the same scope.
    let wanted = ent(
        "role-assignment",
        &format!("Key Vault Secrets User@/subscriptions/{SUB}/resourceGroups/RG/"),
    );
    let planned = provider
        .grant_finding(&ctx(), &wanted)
        .await
        .expect("grant_finding");
    assert_eq!(planned.state, State::Deleted);
    assert_eq!(planned.kind, "role-assignment");
    let again_planned = provider.grant_finding(&ctx(), &wanted).await.unwrap();
    assert_eq!(
        again_planned.id, planned.id,
        "the assignment's name is deterministic"
    );

    let outcome = execute(&provider, &planned).await;
    assert!(!outcome.already_done, "{outcome:?}");
    let read = w
        .seed
        .call(
            "GET",
            Arm,
            &format!("{}?api-version=2022-04-01", planned.resource),
            Value::Null,
        )
        .await;
    assert_eq!(
        read["properties"]["principalId"],
        w.alice.as_str(),
        "{read}"
    );
    assert!(
        read["properties"]["roleDefinitionId"]
            .as_str()
            .is_some_and(|r| r.ends_with(SECRETS_USER)),
        "{read}"
    );
    let again = execute(&provider, &planned).await;
    assert!(again.already_done, "{again:?}");
    assert_eq!(
        provider.live_state(&planned, &ctx()).await.unwrap(),
        State::Active
    );

    let now = resolved(&provider, &planned.id)
        .await
        .unwrap_or_else(|| panic!("resolve lists {} after the grant", planned.id));
    assert_eq!(now.state, State::Active);
    assert_eq!(
        Finding {
            state: State::Deleted,
            ..now.clone()
        },
        planned,
        "the planned finding is the resolved one"
    );
    assert_eq!(
        provider.entitlement(&now),
        Some(ent(
            "role-assignment",
            &format!("Key Vault Secrets User@/subscriptions/{SUB}/resourcegroups/rg")
        ))
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_already_held_under_another_assignment_is_already_done() {
    let w = world("exists").await;
    let provider = w.provider().await;
    let scope = format!("/subscriptions/{SUB}/resourcegroups/rg");
    w.seed
        .assign(
            &scope,
            "33333333-3333-4333-8333-333333333333",
            SECRETS_USER,
            &w.alice,
            "User",
        )
        .await;
    let planned = provider
        .grant_finding(
            &ctx(),
            &ent(
                "role-assignment",
                &format!("Key Vault Secrets User@{scope}"),
            ),
        )
        .await
        .expect("grant_finding");
    assert!(!planned
        .resource
        .ends_with("33333333-3333-4333-8333-333333333333"));
    let outcome = execute(&provider, &planned).await;
    assert!(
        outcome.already_done,
        "ARM's RoleAssignmentExists: {outcome:?}"
    );
    assert_eq!(outcome.state, State::Active);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_ambiguous_targets_are_configuration_errors() {
    let w = world("errors").await;
    let provider = w.provider().await;
    let config_message = |r: Result<Finding, ProviderError>| match r {
        Err(ProviderError::Config { message, .. }) => message,
        other => panic!("expected a Config error, got {other:?}"),
    };
    let missing = config_message(
        provider
            .grant_finding(&ctx(), &ent("group-membership", "no-such-group"))
            .await,
    );
    assert_eq!(missing, "no Entra group named no-such-group");
    let dup = config_message(
        provider
            .grant_finding(&ctx(), &ent("group-membership", "dup"))
            .await,
    );
    assert_eq!(
        dup,
        "2 groups are named dup: name it by a unique display name"
    );
    let role = config_message(
        provider
            .grant_finding(
                &ctx(),
                &ent(
                    "role-assignment",
                    &format!("No Such Role@/subscriptions/{SUB}"),
                ),
            )
            .await,
    );
    assert!(role.contains("No Such Role"), "{role}");
    let nobody = ResolveContext {
        identity: person("E9999", "nobody@example.com"),
        cutoff: None,
    };
    let no_user = config_message(
        provider
            .grant_finding(&nobody, &ent("group-membership", "payments"))
            .await,
    );
    assert!(no_user.contains("no Entra user matches E9999"), "{no_user}");
    match provider
        .grant_finding(&ctx(), &ent("access-policy", "kv-legacy"))
        .await
    {
        Err(ProviderError::Unsupported { .. }) => {}
        other => panic!("access policies are removable only: {other:?}"),
    }
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_no_identity_claims_come_from_one_paged_listing() {
    let w = world("unclaimed").await;
    let provider = w.provider().await;
    // Alice by employee id only (the email differs), so the rule order is exercised.
    let identities = [person("E1001", "alice.other@example.com")];
    w.seed
        .call("DELETE", Graph, "/_double/calls", Value::Null)
        .await;
    let unclaimed = provider
        .unclaimed_accounts(&identities)
        .await
        .expect("unclaimed_accounts");
    let calls = w
        .seed
        .call("GET", Graph, "/_double/calls", Value::Null)
        .await;

    let mut by_display: Vec<(&str, bool)> = unclaimed
        .iter()
        .map(|u| (u.display.as_str(), u.enabled))
        .collect();
    by_display.sort();
    assert_eq!(
        by_display,
        [
            ("Entra user bob@example.com", true),
            ("Entra user carol@example.com", false)
        ],
        "alice is claimed by her employee id: {unclaimed:#?}"
    );
    assert_eq!(unclaimed.len(), 2, "{unclaimed:#?}");
    let bob = unclaimed
        .iter()
        .find(|u| u.display == "Entra user bob@example.com")
        .expect("bob is unclaimed");
    assert!(bob.enabled);
    assert!(
        bob.reason.contains("mail = bob@example.com") && bob.reason.contains("employeeId = E2002"),
        "{}",
        bob.reason
    );
    let carol = unclaimed
        .iter()
        .find(|u| u.display == "Entra user carol@example.com")
        .expect("carol is unclaimed");
    assert!(!carol.enabled, "carol's sign-in is blocked");

    // Only user listings (three users, pages of two): no per-user lookups.
    let graph: Vec<&Value> = calls["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .filter(|c| c["path"].as_str().is_some_and(|p| p.starts_with("/v1.0/")))
        .collect();
    assert!(graph.len() >= 2, "the listing was paged: {calls}");
    assert!(
        graph
            .iter()
            .all(|c| c["method"] == "GET" && c["path"] == "/v1.0/users"),
        "{calls}"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_at_the_tenant_root_is_named_with_an_empty_scope() {
    let w = world("root").await;
    let provider = w.provider().await;
    let wanted = ent("role-assignment", "Key Vault Secrets User@");
    let planned = provider
        .grant_finding(&ctx(), &wanted)
        .await
        .expect("grant_finding");
    assert!(
        planned
            .resource
            .starts_with("/providers/Microsoft.Authorization/roleAssignments/"),
        "{}",
        planned.resource
    );
    let outcome = execute(&provider, &planned).await;
    assert!(!outcome.already_done, "{outcome:?}");
    let now = resolved(&provider, &planned.id)
        .await
        .unwrap_or_else(|| panic!("resolve lists {} after the grant", planned.id));
    assert_eq!(
        Finding {
            state: State::Deleted,
            ..now.clone()
        },
        planned
    );
    assert_eq!(provider.entitlement(&now), Some(wanted));
    w.finish().await;
}
