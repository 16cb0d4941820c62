use closeout_contract::{
    ActionParams, ActionRequest, Entitlement, Identity, IdentityKind, IdentityStatus, Provider,
    ResolveContext, State,
};
use closeout_scim::{
    kinds, AppConfig, LeaverMode, MatchAttribute, ScimConfig, ScimProvider, CAPABILITIES,
};
use closeout_testkit::contract::{run_suite, Case};
use closeout_testkit::proxy::{Fault, FaultProxy, Rule, When};
use closeout_testkit::ScimApp;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const WIKI_TOKEN: &str = "wiki-token-canary-2b7e";
const CRM_TOKEN: &str = "crm-token-canary-9d41";

struct Seed {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Seed {
    fn new(app: &ScimApp) -> Seed {
        Seed {
            http: reqwest::Client::new(),
            base: app.base_url(),
            token: app.token().to_string(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let answer = req.send().await.expect("SCIM call");
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn user(&self, user_name: &str, external_id: &str, email: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/Users",
                Some(
                    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name, "externalId": external_id, "active": true,
                    "emails": [{"value": email, "primary": true}]}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    async fn group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let (status, body) = self
            .call(
                "POST",
                "/Groups",
                Some(
                    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": name, "members": members}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    async fn members(&self, group: &str) -> Vec<String> {
        let (_, g) = self.call("GET", &format!("/Groups/{group}"), None).await;
        g["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["value"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn token_file(name: &str, token: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("closeout-scim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, token).unwrap();
    path
}

fn app(name: &str, base: String, token: &str, m: MatchAttribute, leaver: LeaverMode) -> AppConfig {
    AppConfig {
        name: name.into(),
        base_url: base,
        token_env: None,
        token_file: Some(token_file(name, token)),
        match_attribute: m,
        match_value: None,
        leaver,
        page_size: 2,
    }
}

fn person(id: &str, email: &str) -> ResolveContext {
    ResolveContext {
        identity: Identity {
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
            tags: BTreeSet::new(),
        },
        cutoff: None,
    }
}

/// The wiki matches by externalId (the HR id) and deactivates; the CRM matches by email and
/// deletes. Pages of 2 make every listing page.
#[tokio::test(flavor = "multi_thread")]
async fn leaver_deprovisions_each_app_as_configured_and_leaves_colleagues_alone() {
    let wiki_app = ScimApp::start(WIKI_TOKEN);
    let crm_app = ScimApp::start(CRM_TOKEN);
    let (wiki, crm) = (Seed::new(&wiki_app), Seed::new(&crm_app));
    // In the wiki Alice's userName is not her email: only externalId finds her there. In the
    // CRM her externalId is some other system's number: only the email finds her.
    let w_alice = wiki.user("asmith", "E100", "alice@example.com").await;
    let w_bob = wiki.user("bjones", "E200", "bob@example.com").await;
    for i in 0..3 {
        wiki.user(
            &format!("filler{i}"),
            &format!("F{i}"),
            &format!("f{i}@example.com"),
        )
        .await;
    }
    let c_alice = crm
        .user("alice@example.com", "crm-77", "alice@example.com")
        .await;
    let c_bob = crm
        .user("bob@example.com", "crm-78", "bob@example.com")
        .await;
    let w_editors = wiki.group("editors", &[&w_alice, &w_bob]).await;
    let w_admins = wiki.group("admins", &[&w_alice]).await;
    let c_sales = crm.group("sales", &[&c_alice, &c_bob]).await;

    let provider = ScimProvider::connect(ScimConfig {
        apps: vec![
            app(
                "wiki",
                wiki_app.base_url(),
                WIKI_TOKEN,
                MatchAttribute::ExternalId,
                LeaverMode::Deactivate,
            ),
            app(
                "crm",
                crm_app.base_url(),
                CRM_TOKEN,
                MatchAttribute::Email,
                LeaverMode::Delete,
            ),
        ],
        ..Default::default()
    })
    .await
    .expect("connect");
    let alice = person("E100", "alice@example.com");

    let res = provider.resolve(&alice).await.expect("resolve");
    assert!(res.gaps.is_empty(), "{:?}", res.gaps);
    let ids: BTreeSet<String> = res.findings.iter().map(|f| f.id.clone()).collect();
    let want: BTreeSet<String> = [
        format!("scim:app-account:wiki/{w_alice}"),
        format!("scim:app-account:crm/{c_alice}"),
        format!("scim:app-group-membership:wiki/{w_alice}/{w_editors}"),
        format!("scim:app-group-membership:wiki/{w_alice}/{w_admins}"),
        format!("scim:app-group-membership:crm/{c_alice}/{c_sales}"),
    ]
    .into();
    assert_eq!(ids, want);

    let cases = vec![
        Case::new(
            format!("scim:app-group-membership:wiki/{w_alice}/{w_editors}"),
            "remove",
            State::Deleted,
        ),
        Case::new(
            format!("scim:app-group-membership:wiki/{w_alice}/{w_admins}"),
            "remove",
            State::Deleted,
        ),
        Case::new(
            format!("scim:app-group-membership:crm/{c_alice}/{c_sales}"),
            "remove",
            State::Deleted,
        ),
        Case::new(
            format!("scim:app-account:wiki/{w_alice}"),
            "disable",
            State::Disabled,
        ),
        Case::new(
            format!("scim:app-account:crm/{c_alice}"),
            "disable",
            State::Deleted,
        ),
    ];
    run_suite(&provider, &alice, &cases, &[WIKI_TOKEN, CRM_TOKEN]).await;

    // Read back: the wiki keeps an inactive account, the CRM has none; the groups lost only
    // Alice; Bob is untouched.
    let (_, u) = wiki.call("GET", &format!("/Users/{w_alice}"), None).await;
    assert_eq!(u["active"], false, "{u}");
    assert_eq!(
        crm.call("GET", &format!("/Users/{c_alice}"), None).await.0,
        404
    );
    assert_eq!(wiki.members(&w_editors).await, vec![w_bob.clone()]);
    assert!(wiki.members(&w_admins).await.is_empty());
    assert_eq!(crm.members(&c_sales).await, vec![c_bob.clone()]);
    let (_, b) = wiki.call("GET", &format!("/Users/{w_bob}"), None).await;
    assert_eq!(b["active"], true);
    assert_eq!(
        crm.call("GET", &format!("/Users/{c_bob}"), None).await.0,
        200
    );

    // Resolving again: nothing open.
    let after = provider.resolve(&alice).await.unwrap();
    assert!(
        after.findings.iter().all(|f| !f.state.is_open()),
        "{:#?}",
        after.findings
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_from_the_policy_and_throttled_reads() {
    let wiki_app = ScimApp::start(WIKI_TOKEN);
    let wiki = Seed::new(&wiki_app);
    let carol = wiki.user("carol", "E300", "carol@example.com").await;
    let reviewers = wiki.group("reviewers", &[]).await;
    // Every call goes through a proxy that answers the first read 429 Retry-After: 1.
    let proxy = FaultProxy::start(&wiki_app.base_url().replace("/v2", "")).await;
    proxy.set_rules(vec![Rule::new(
        When::Nth(1),
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
    )
    .reads_only()]);
    // Carol's userName is "carol": this app matches userName against the email's local part.
    let mut wiki_config = app(
        "wiki",
        format!("{}/v2", proxy.endpoint()),
        WIKI_TOKEN,
        MatchAttribute::UserName,
        LeaverMode::Deactivate,
    );
    wiki_config.match_value = Some(closeout_scim::MatchValue::EmailLocalPart);
    let provider = ScimProvider::connect(ScimConfig {
        apps: vec![wiki_config],
        ..Default::default()
    })
    .await
    .unwrap();
    let ctx = person("E300", "carol@example.com");
    let target =
        (CAPABILITIES.grant_form("group").unwrap().target)("reviewers", &["wiki"]).unwrap();
    let e = Entitlement::new("scim", kinds::APP_GROUP_MEMBERSHIP, target);
    let f = provider
        .grant_finding(&ctx, &e)
        .await
        .expect("grant finding");
    let report = proxy.retry_after_report();
    assert_eq!(
        (report.throttled, report.retried, report.honoured),
        (1, 1, 1),
        "{report:?}"
    );
    let req = ActionRequest {
        idempotency_key: "t/grant".into(),
        verb: "grant".into(),
        finding: f.clone(),
        params: ActionParams::default(),
    };
    assert_eq!(provider.execute(&req).await.unwrap().state, State::Active);
    assert!(provider.execute(&req).await.unwrap().already_done);
    assert_eq!(wiki.members(&reviewers).await, vec![carol.clone()]);
    let res = provider.resolve(&ctx).await.unwrap();
    let live = res
        .findings
        .iter()
        .find(|l| l.id == f.id)
        .expect("the grant is resolved under its id");
    assert_eq!(provider.entitlement(live), Some(e));

    // Reconcile: with Carol active nobody is unclaimed; without her, her account is.
    assert!(provider
        .unclaimed_accounts(std::slice::from_ref(&ctx.identity))
        .await
        .unwrap()
        .is_empty());
    let unclaimed = provider.unclaimed_accounts(&[]).await.unwrap();
    assert_eq!(unclaimed.len(), 1, "{unclaimed:?}");
    assert_eq!(unclaimed[0].resource, format!("wiki/{carol}"));
}

/// An app that refuses filtering (400 to the filtered query): the person is found by listing
/// every User page by page and matching here.
#[tokio::test(flavor = "multi_thread")]
async fn an_app_without_filtering_is_listed_and_matched_here() {
    let crm_app = ScimApp::start(CRM_TOKEN);
    let crm = Seed::new(&crm_app);
    for i in 0..4 {
        crm.user(
            &format!("u{i}@example.com"),
            &format!("x{i}"),
            &format!("u{i}@example.com"),
        )
        .await;
    }
    let dana = crm.user("dana@example.com", "x9", "Dana@Example.com").await;
    let proxy = FaultProxy::start(&crm_app.base_url().replace("/v2", "")).await;
    proxy.set_rules(vec![Rule::new(When::Nth(1), Fault::Status { status: 400 })]);
    let mut config = app(
        "crm",
        format!("{}/v2", proxy.endpoint()),
        CRM_TOKEN,
        MatchAttribute::Email,
        LeaverMode::Delete,
    );
    config.page_size = 2;
    let provider = ScimProvider::connect(ScimConfig {
        apps: vec![config],
        ..Default::default()
    })
    .await
    .unwrap();
    let res = provider
        .resolve(&person("E400", "dana@example.com"))
        .await
        .expect("resolve");
    assert!(res.gaps.is_empty(), "{:?}", res.gaps);
    assert!(
        res.findings
            .iter()
            .any(|f| f.id == format!("scim:app-account:crm/{dana}")),
        "{:#?}",
        res.findings
    );
    let log = proxy.log();
    assert_eq!(log[0].status, Some(400));
    // 5 Users in pages of 2: three unfiltered pages after the refused filter.
    let listings = log
        .iter()
        .filter(|e| e.method == "GET" && e.path.ends_with("/Users"))
        .count();
    assert!(listings >= 4, "{log:#?}");
}
