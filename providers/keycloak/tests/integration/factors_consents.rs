//! The credentials beyond a password and the consents a person gave, against a real Keycloak:
//! an OTP and a WebAuthn key stored through `partialImport` (the admin API has no call that
//! creates one), and a consent with scopes obtained through the authorization-code flow with its
//! consent screen. Each is resolved as a finding, the leaver's action removes it, the admin API
//! reads back none left, and a colleague's stays.

use crate::common::{ctx, person, provider, Realm};
use closeout_contract::{Finding, Provider, Resolution, State};
use closeout_keycloak::kinds;
use closeout_testkit::contract::{run_suite, Case};
use closeout_testkit::keycloak::{otp_credential, webauthn_credential};
use serde_json::{json, Value};

const ALICE_PW: &str = "alice-pw-canary-2f81";
const BOB_PW: &str = "bob-pw-canary-d04c";
const ALICE_OTP_SEED: &str = "JBSWY3DPEHPK3PXPALICECANARYQWZX";
const BOB_OTP_SEED: &str = "KRUGKIDROVUWG2ZAMJZG653OEBTG66BA";
const CRM_SECRET: &str = "crm-secret-canary-6b2e";
const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// `(id, type)` of every credential the admin API lists for `user`.
async fn credentials(realm: &Realm, user: &str) -> Vec<(String, String)> {
    let list = realm
        .admin("GET", &format!("/users/{user}/credentials"), None)
        .await;
    list.as_array()
        .expect("a credential list")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().expect("credential id").to_string(),
                c["type"].as_str().expect("credential type").to_string(),
            )
        })
        .collect()
}

/// The finding `id` of a resolution; panics with all of them when it is not there.
fn found<'a>(res: &'a Resolution, id: &str) -> &'a Finding {
    let hit = res.findings.iter().find(|f| f.id == id);
    hit.unwrap_or_else(|| panic!("no finding {id} in {:#?}", res.findings))
}

fn person_rep(username: &str, employee: &str, password: &str, extra: Vec<Value>) -> Value {
    let mut creds = vec![json!({"type": "password", "value": password, "temporary": false})];
    creds.extend(extra);
    json!({
        "username": username, "email": format!("{username}@example.com"), "emailVerified": true,
        "enabled": true, "firstName": username, "lastName": "Test",
        "attributes": {"employee_id": [employee]}, "credentials": creds
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn leaver_removes_otp_and_webauthn_credentials_and_a_colleagues_otp_stays() {
    let realm = Realm::new("factors").await;
    let r = &realm.name;
    let alice = realm
        .import_user(person_rep(
            "alice",
            "E100",
            ALICE_PW,
            vec![
                otp_credential("alice phone", ALICE_OTP_SEED),
                webauthn_credential("alice yubikey", "YWxpY2UteXViaWtleS1jcmVk"),
            ],
        ))
        .await;
    let bob = realm
        .import_user(person_rep(
            "bob",
            "E200",
            BOB_PW,
            vec![otp_credential("bob phone", BOB_OTP_SEED)],
        ))
        .await;
    // Keycloak stored them: the admin API lists each type.
    let seeded = credentials(&realm, &alice).await;
    let mut types: Vec<&str> = seeded.iter().map(|(_, t)| t.as_str()).collect();
    types.sort();
    assert_eq!(types, ["otp", "password", "webauthn"], "{seeded:?}");
    let bob_before = credentials(&realm, &bob).await;
    assert_eq!(bob_before.len(), 2, "{bob_before:?}");

    let provider = provider(&realm, None).await;
    let alice_ctx = ctx(person("E100", "alice@example.com", None), None);
    let res = provider.resolve(&alice_ctx).await.expect("resolve");
    // Every credential Keycloak lists is a finding, with its type and label, and none of
    // Bob's is.
    let mut cases = Vec::new();
    for (cid, kind) in &seeded {
        let want = format!("keycloak:{}:{r}/{alice}/{cid}", kinds::CREDENTIAL);
        let f = found(&res, &want);
        assert_eq!(f.kind, kinds::CREDENTIAL);
        assert_eq!(f.attr("type"), Some(kind.as_str()), "{f:?}");
        assert_eq!(f.state, State::Active);
        assert!(f.display.starts_with(kind.as_str()), "{}", f.display);
        if kind != "password" {
            assert_eq!(
                f.attr("label"),
                Some(if kind == "otp" {
                    "alice phone"
                } else {
                    "alice yubikey"
                }),
                "{f:?}"
            );
        }
        cases.push(Case::new(want, "remove", State::Deleted));
    }
    let credential_findings = res
        .findings
        .iter()
        .filter(|f| f.kind == kinds::CREDENTIAL)
        .count();
    assert_eq!(credential_findings, 3, "{:#?}", res.findings);
    assert!(
        !res.findings.iter().any(|f| f.id.contains(&bob)),
        "{:#?}",
        res.findings
    );
    assert!(res.gaps.is_empty(), "{:#?}", res.gaps);

    // The leaver's action on each: removed, idempotent, read back, probed, resolved again.
    run_suite(
        &provider,
        &alice_ctx,
        &cases,
        &[ALICE_PW, BOB_PW, ALICE_OTP_SEED, BOB_OTP_SEED],
    )
    .await;

    // Read back from the admin API: none of Alice's left, Bob's OTP and password untouched.
    let left = credentials(&realm, &alice).await;
    assert!(left.is_empty(), "Alice still has {left:?}");
    assert_eq!(credentials(&realm, &bob).await, bob_before);
    let after = provider.resolve(&alice_ctx).await.expect("resolve after");
    let open: Vec<_> = after
        .findings
        .iter()
        .filter(|f| f.kind == kinds::CREDENTIAL)
        .collect();
    assert!(open.is_empty(), "{open:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn leaver_revokes_a_consent_with_its_scopes_and_the_token_it_issued_is_refused() {
    let realm = Realm::new("consent").await;
    let r = &realm.name;
    realm
        .client(
            "crm",
            CRM_SECRET,
            json!({"standardFlowEnabled": true, "consentRequired": true,
                   "redirectUris": [REDIRECT]}),
        )
        .await;
    let alice = realm
        .import_user(person_rep("alice", "E100", ALICE_PW, vec![]))
        .await;
    let bob = realm
        .import_user(person_rep("bob", "E200", BOB_PW, vec![]))
        .await;
    // Both sign in to the CRM in a browser and accept its consent screen.
    let scope = "openid profile email";
    let alice_tokens = realm
        .sign_in_with_consent("crm", CRM_SECRET, REDIRECT, scope, "alice", ALICE_PW)
        .await;
    let bob_tokens = realm
        .sign_in_with_consent("crm", CRM_SECRET, REDIRECT, scope, "bob", BOB_PW)
        .await;
    let alice_refresh = alice_tokens["refresh_token"]
        .as_str()
        .expect("Alice's refresh token")
        .to_string();
    let bob_refresh = bob_tokens["refresh_token"]
        .as_str()
        .expect("Bob's refresh token")
        .to_string();
    assert!(realm
        .refresh("crm", CRM_SECRET, &alice_refresh)
        .await
        .is_ok());
    // Keycloak recorded the consent with the scopes granted.
    let consents = realm
        .admin("GET", &format!("/users/{alice}/consents"), None)
        .await;
    assert_eq!(consents[0]["clientId"], "crm", "{consents}");
    let granted: Vec<&str> = consents[0]["grantedClientScopes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        granted.contains(&"profile") && granted.contains(&"email"),
        "{consents}"
    );

    let provider = provider(&realm, None).await;
    let alice_ctx = ctx(person("E100", "alice@example.com", None), None);
    let res = provider.resolve(&alice_ctx).await.expect("resolve");
    let id = format!("keycloak:{}:{r}/{alice}/crm", kinds::CONSENT);
    let consent = found(&res, &id);
    let mut want = granted.clone();
    want.sort();
    assert_eq!(consent.attr("scopes"), Some(want.join(",").as_str()));
    assert_eq!(consent.attr("client_id"), Some("crm"));
    assert!(
        consent.display.contains("email") && consent.display.contains("profile"),
        "{}",
        consent.display
    );
    assert_eq!(consent.state, State::Active);
    assert!(
        !res.findings.iter().any(|f| f.id.contains(&bob)),
        "{:#?}",
        res.findings
    );

    // Only the consent is revoked (no logout, no disable): what follows is its doing.
    run_suite(
        &provider,
        &alice_ctx,
        &[Case::new(id.clone(), "revoke", State::Revoked)],
        &[ALICE_PW, BOB_PW, CRM_SECRET, &alice_refresh, &bob_refresh],
    )
    .await;

    let left = realm
        .admin("GET", &format!("/users/{alice}/consents"), None)
        .await;
    assert_eq!(left.as_array().map(Vec::len), Some(0), "{left}");
    let refused = realm.refresh("crm", CRM_SECRET, &alice_refresh).await;
    assert_eq!(refused.err().as_deref(), Some("invalid_grant"));
    // Bob's consent and his token are untouched.
    let bobs = realm
        .admin("GET", &format!("/users/{bob}/consents"), None)
        .await;
    assert_eq!(bobs[0]["clientId"], "crm", "{bobs}");
    assert!(realm.refresh("crm", CRM_SECRET, &bob_refresh).await.is_ok());
    let after = provider.resolve(&alice_ctx).await.expect("resolve after");
    assert!(
        !after.findings.iter().any(|f| f.kind == kinds::CONSENT),
        "{:#?}",
        after.findings
    );
}
