//! Closed means closed (issue 13), against the double: each class of path is seeded through
//! ARM's and Graph's own write calls, resolved, acted on where a verb applies, and read back —
//! an assignment on one secret, the right to assign roles or to write the vault, acting as the
//! service principal of an owned application, a replaced client secret proven dead, and what
//! cannot be listed reported as a gap.

use crate::common::{roles, World};
use chrono::Utc;
use closeout_azure::http::Api::Graph;
use closeout_azure::object::ObjectType;
use closeout_azure::AzureProvider;
use closeout_contract::{
    ActionParams, ActionRequest, Finding, Identity, IdentityKind, IdentityStatus, Provider,
    Relation, Resolution, ResolveContext, SecretValue, State,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn person(id: &str, email: &str) -> Identity {
    Identity {
        id: id.into(),
        email: email.into(),
        name: email.into(),
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

fn ctx(identity: &Identity, cutoff: Option<chrono::DateTime<Utc>>) -> ResolveContext {
    ResolveContext {
        identity: identity.clone(),
        cutoff,
    }
}

async fn resolve(provider: &AzureProvider, who: &Identity) -> Resolution {
    provider.resolve(&ctx(who, None)).await.expect("resolution")
}

fn find<'a>(r: &'a Resolution, id: &str) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no finding {id} in {:#?}", ids(r)))
}

fn ids(r: &Resolution) -> Vec<&str> {
    r.findings.iter().map(|f| f.id.as_str()).collect()
}

fn vault_objects(r: &Resolution) -> Vec<&str> {
    let mut out: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.kind.starts_with("kv-"))
        .map(|f| f.resource.as_str())
        .collect();
    out.sort();
    out
}

fn paths(f: &Finding) -> Vec<String> {
    f.paths.iter().map(|p| p.render("alice")).collect()
}

async fn act(provider: &AzureProvider, f: &Finding, verb: &str, run: &str) -> State {
    act_with(provider, f, verb, run, None).await
}

async fn act_with(
    provider: &AzureProvider,
    f: &Finding,
    verb: &str,
    run: &str,
    new_owner: Option<&str>,
) -> State {
    let outcome = provider
        .execute(&ActionRequest {
            idempotency_key: format!("{run}-{}", f.id),
            verb: verb.into(),
            finding: f.clone(),
            params: ActionParams {
                run_id: run.into(),
                new_owner: new_owner.map(String::from),
                ..Default::default()
            },
        })
        .await
        .unwrap_or_else(|e| panic!("{verb} {}: {e}", f.id));
    assert!(!outcome.already_done, "{}", outcome.detail);
    outcome.state
}

/// The version a key operation's `kid` names.
fn kid_version(result: &serde_json::Value) -> String {
    let kid = result["kid"].as_str().expect("kid");
    kid.rsplit('/').next().expect("version").to_string()
}

/// The bytes of a key operation's `value` (base64url).
fn b64(result: &serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(result["value"].as_str().expect("value"))
        .expect("base64url value")
}

/// The versions of a vault object, oldest first: (enabled, tags).
async fn versions(
    w: &World,
    uri: &str,
    t: ObjectType,
    name: &str,
) -> Vec<(bool, BTreeMap<String, String>)> {
    w.kv()
        .versions(uri, t, name)
        .await
        .unwrap_or_else(|e| panic!("versions of {name}: {e}"))
        .into_iter()
        .map(|v| (v.enabled, v.tags))
        .collect()
}

async fn secret(w: &World, uri: &str, name: &str) {
    w.kv()
        .set_secret(
            uri,
            name,
            &SecretValue::new(format!("seeded {name}")),
            None,
            &BTreeMap::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("seed secret {name}: {e}"));
}

fn uri_and_id(vault: &Value) -> (String, String) {
    (
        vault["properties"]["vaultUri"]
            .as_str()
            .expect("vaultUri")
            .to_string(),
        vault["id"].as_str().expect("id").to_string(),
    )
}

/// An assignment at `…/secrets/db` exposes secret `db` and nothing else of the vault; one at
/// `…/keys/signing` exposes that key only to a role whose data actions use keys (a secrets
/// role there reads nothing). Rotating the secret leaves its neighbour untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_on_one_object_exposes_that_object_only() {
    const SUB: &str = "a1a1a1a1-0000-4000-8000-000000000001";
    let w = World::new("object-scope").await;
    w.subscription(SUB, "rg").await;
    let (uri, vault_id) = uri_and_id(&w.vault(SUB, "rg", "kv-scoped", true, json!([])).await);
    secret(&w, &uri, "db").await;
    secret(&w, &uri, "api").await;
    w.key("kv-scoped", &uri, "signing").await;
    w.key("kv-scoped", &uri, "other").await;
    let alice = w.user("alice@example.com", "E1001").await;
    let on = |what: &str| format!("{vault_id}/{what}");
    w.assign(
        &on("secrets/db"),
        roles::KEY_VAULT_SECRETS_USER,
        &alice,
        "User",
    )
    .await;
    w.assign(
        &on("keys/signing"),
        roles::KEY_VAULT_SECRETS_USER,
        &alice,
        "User",
    )
    .await;
    w.assign(
        &on("keys/signing"),
        roles::KEY_VAULT_CRYPTO_USER,
        &alice,
        "User",
    )
    .await;
    let provider = w.provider(None).await;
    let who = person("E1001", "alice@example.com");

    let r = resolve(&provider, &who).await;
    assert_eq!(
        vault_objects(&r),
        ["kv-scoped/keys/signing", "kv-scoped/secrets/db"],
        "{:#?}",
        ids(&r)
    );
    let db = find(&r, "azure:kv-secret:kv-scoped/secrets/db");
    assert_eq!(db.relation, Relation::CanRead);
    assert!(
        paths(db).iter().any(|p| p.contains("on secret db")),
        "{:#?}",
        paths(db)
    );
    assert!(r.gaps.is_empty(), "{:#?}", r.gaps);
    assert!(r.exposures.is_empty(), "{:#?}", r.exposures);

    let cutoff = Utc::now();
    assert_eq!(
        act(&provider, db, "rotate", "run-scope").await,
        State::Rotated
    );
    let db_versions = versions(&w, &uri, ObjectType::Secrets, "db").await;
    assert_eq!(
        db_versions.iter().map(|v| v.0).collect::<Vec<_>>(),
        [false, true]
    );
    let api_versions = versions(&w, &uri, ObjectType::Secrets, "api").await;
    assert_eq!(
        api_versions.iter().map(|v| v.0).collect::<Vec<_>>(),
        [true],
        "the neighbour is untouched"
    );
    let after = provider
        .resolve(&ctx(&who, Some(cutoff)))
        .await
        .expect("resolution");
    assert_eq!(
        find(&after, "azure:kv-secret:kv-scoped/secrets/db").state,
        State::Rotated
    );
    w.double.shutdown().await;
}

/// User Access Administrator over an access-policy vault can assign itself Key Vault
/// Contributor and write itself an access policy; over an RBAC vault a data role. Key Vault
/// Contributor on an RBAC vault can turn RBAC off. Each is an exposure of the whole vault and a
/// can-grant-self path to every object, which the rotation then renews.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigning_roles_or_writing_the_vault_exposes_every_object() {
    const SUB: &str = "b2b2b2b2-0000-4000-8000-000000000002";
    let w = World::new("grant-self").await;
    w.subscription(SUB, "rg-kv").await;
    let (ap_uri, _) = uri_and_id(&w.vault(SUB, "rg-kv", "kv-ap", false, json!([])).await);
    let (rbac_uri, rbac_id) = uri_and_id(&w.vault(SUB, "rg-kv", "kv-rbac", true, json!([])).await);
    secret(&w, &ap_uri, "s1").await;
    w.key("kv-ap", &ap_uri, "k1").await;
    secret(&w, &rbac_uri, "s2").await;
    let alice = w.user("alice@example.com", "E1001").await;
    let bob = w.user("bob@example.com", "E1002").await;
    w.assign(
        &format!("/subscriptions/{SUB}/resourceGroups/rg-kv"),
        roles::USER_ACCESS_ADMINISTRATOR,
        &alice,
        "User",
    )
    .await;
    w.assign(&rbac_id, roles::KEY_VAULT_CONTRIBUTOR, &bob, "User")
        .await;
    let provider = w.provider(None).await;

    let alice_id = person("E1001", "alice@example.com");
    let r = resolve(&provider, &alice_id).await;
    let scopes: Vec<&str> = r.exposures.iter().map(|e| e.scope.as_str()).collect();
    assert_eq!(
        scopes,
        ["vault kv-ap", "vault kv-rbac"],
        "{:#?}",
        r.exposures
    );
    assert!(r.exposures[0]
        .what
        .contains("every secret, key and certificate"));
    assert_eq!(
        vault_objects(&r),
        ["kv-ap/keys/k1", "kv-ap/secrets/s1", "kv-rbac/secrets/s2"]
    );
    let s1 = find(&r, "azure:kv-secret:kv-ap/secrets/s1");
    assert_eq!(s1.relation, Relation::CanGrantSelf);
    assert!(
        paths(s1)
            .iter()
            .any(|p| p.contains("User Access Administrator")
                && p.contains("it could assign itself")
                && p.contains("Key Vault Contributor")),
        "{:#?}",
        paths(s1)
    );

    let bob_id = person("E1002", "bob@example.com");
    let rb = resolve(&provider, &bob_id).await;
    let scopes: Vec<&str> = rb.exposures.iter().map(|e| e.scope.as_str()).collect();
    assert_eq!(scopes, ["vault kv-rbac"]);
    assert_eq!(vault_objects(&rb), ["kv-rbac/secrets/s2"]);
    let s2 = find(&rb, "azure:kv-secret:kv-rbac/secrets/s2");
    assert_eq!(s2.relation, Relation::CanGrantSelf);
    assert!(
        paths(s2)
            .iter()
            .any(|p| p.contains("enableRbacAuthorization off")),
        "{:#?}",
        paths(s2)
    );

    assert_eq!(
        act(&provider, s1, "rotate", "run-grant").await,
        State::Rotated
    );
    let k1 = find(&r, "azure:kv-key:kv-ap/keys/k1");
    // Data encrypted and a key wrapped under the current (soon old) version, as a consumer of
    // the key would have done before the rotation.
    let plaintext = b"payroll export 2026-12";
    let data_key = [7u8; 32];
    let (status, encrypted) = w
        .key_op(
            "kv-ap",
            &ap_uri,
            "k1",
            None,
            "encrypt",
            "RSA-OAEP-256",
            plaintext,
        )
        .await;
    assert_eq!(status, 200, "{encrypted}");
    let old_version = kid_version(&encrypted);
    let ciphertext = b64(&encrypted);
    let (status, wrapped) = w
        .key_op(
            "kv-ap",
            &ap_uri,
            "k1",
            Some(&old_version),
            "wrapkey",
            "RSA-OAEP",
            &data_key,
        )
        .await;
    assert_eq!(status, 200, "{wrapped}");
    let wrapped = b64(&wrapped);
    let (status, legacy) = w
        .key_op("kv-ap", &ap_uri, "k1", None, "encrypt", "RSA1_5", plaintext)
        .await;
    assert_eq!(status, 200, "{legacy}");
    let legacy = b64(&legacy);
    assert_eq!(
        act(&provider, k1, "rotate", "run-grant").await,
        State::Rotated
    );
    // The old version still decrypts and unwraps (read back from the vault); the current
    // version is a new one, and it does not decrypt what the old one encrypted.
    for (op, alg, input, expected) in [
        ("decrypt", "RSA-OAEP-256", &ciphertext, plaintext.as_slice()),
        ("unwrapkey", "RSA-OAEP", &wrapped, data_key.as_slice()),
        ("decrypt", "RSA1_5", &legacy, plaintext.as_slice()),
    ] {
        let (status, out) = w
            .key_op("kv-ap", &ap_uri, "k1", Some(&old_version), op, alg, input)
            .await;
        assert_eq!(status, 200, "{op} {alg} with the old version: {out}");
        assert_eq!(b64(&out), expected, "{op} {alg}");
        assert_eq!(kid_version(&out), old_version);
    }
    let (status, current) = w
        .key_op(
            "kv-ap",
            &ap_uri,
            "k1",
            None,
            "encrypt",
            "RSA-OAEP-256",
            plaintext,
        )
        .await;
    assert_eq!(status, 200, "{current}");
    let new_version = kid_version(&current);
    assert_ne!(new_version, old_version, "the current version is a new one");
    let (status, out) = w
        .key_op(
            "kv-ap",
            &ap_uri,
            "k1",
            None,
            "decrypt",
            "RSA-OAEP-256",
            &ciphertext,
        )
        .await;
    assert_eq!(
        status, 400,
        "the new version decrypted the old ciphertext: {out}"
    );
    let s1_versions = versions(&w, &ap_uri, ObjectType::Secrets, "s1").await;
    assert_eq!(
        s1_versions.iter().map(|v| v.0).collect::<Vec<_>>(),
        [false, true]
    );
    // A key's old version stays enabled after a rotation: what was encrypted or wrapped under
    // it must still decrypt and unwrap (read back: both versions enabled).
    let k1_versions = versions(&w, &ap_uri, ObjectType::Keys, "k1").await;
    assert_eq!(
        k1_versions.iter().map(|v| v.0).collect::<Vec<_>>(),
        [true, true]
    );
    // The playbook can ask to disable them.
    assert_eq!(
        act(&provider, k1, "disable-old-versions", "run-disable").await,
        State::Rotated
    );
    let k1_versions = versions(&w, &ap_uri, ObjectType::Keys, "k1").await;
    assert_eq!(
        k1_versions.iter().map(|v| v.0).collect::<Vec<_>>(),
        [false, true]
    );
    // Disabled, the old version refuses to decrypt and unwrap, as Key Vault does; the current
    // one still decrypts what it encrypted.
    for (op, alg, input) in [
        ("decrypt", "RSA-OAEP-256", &ciphertext),
        ("unwrapkey", "RSA-OAEP", &wrapped),
    ] {
        let (status, out) = w
            .key_op("kv-ap", &ap_uri, "k1", Some(&old_version), op, alg, input)
            .await;
        assert_eq!(status, 403, "{op} with the disabled version: {out}");
        assert_eq!(out["error"]["code"], "Forbidden", "{out}");
        assert_eq!(out["error"]["innererror"]["code"], "KeyDisabled", "{out}");
    }
    let (status, out) = w
        .key_op(
            "kv-ap",
            &ap_uri,
            "k1",
            Some(&new_version),
            "decrypt",
            "RSA-OAEP-256",
            &b64(&current),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(b64(&out), plaintext);
    w.double.shutdown().await;
}

/// An owner of an application can add it a credential and sign in as its service principal:
/// what that service principal reaches (its role assignments, its group's access policy, and
/// through an application it owns, another service principal's) is the owner's, each path
/// through the ownership. The survey is read once: one role-assignment listing per
/// subscription, however many service principals are followed. Handing the application over
/// closes every such path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_owned_applications_service_principal_reaches_is_the_owners() {
    const SUB: &str = "c3c3c3c3-0000-4000-8000-000000000003";
    let w = World::new("acting").await;
    w.subscription(SUB, "rg").await;
    let alice = w.user("alice@example.com", "E1001").await;
    w.user("bob@example.com", "E1002").await;
    let (app_object, _, sp) = w.app("deploy-bot").await;
    w.link("applications", &app_object, "owners", &alice).await;
    let (helper_object, _, helper_sp) = w.app("helper").await;
    w.link("applications", &helper_object, "owners", &sp).await;
    let group = w
        .call(
            "POST",
            Graph,
            "/v1.0/groups",
            json!({"displayName": "bots", "mailEnabled": false, "mailNickname": "bots",
                   "securityEnabled": true}),
        )
        .await;
    let group_id = group["id"].as_str().expect("group id").to_string();
    w.link("groups", &group_id, "members", &sp).await;

    let (app_uri, app_vault) = uri_and_id(&w.vault(SUB, "rg", "kv-app", true, json!([])).await);
    let (legacy_uri, _) = uri_and_id(
        &w.vault(
            SUB,
            "rg",
            "kv-legacy",
            false,
            json!([{"tenantId": closeout_azure_double::DEFAULT_TENANT_ID, "objectId": group_id,
                    "permissions": {"secrets": ["get", "list"]}}]),
        )
        .await,
    );
    secret(&w, &app_uri, "db").await;
    w.key("kv-app", &app_uri, "signing").await;
    secret(&w, &legacy_uri, "legacy").await;
    w.assign(
        &app_vault,
        roles::KEY_VAULT_SECRETS_USER,
        &sp,
        "ServicePrincipal",
    )
    .await;
    w.assign(
        &app_vault,
        roles::KEY_VAULT_CRYPTO_USER,
        &helper_sp,
        "ServicePrincipal",
    )
    .await;
    let provider = w.provider(None).await;
    let who = person("E1001", "alice@example.com");

    let raw = w.raw("none");
    let calls_url = format!("{}/_double/calls", w.double.base_url());
    raw.delete(&calls_url).send().await.expect("clear calls");
    let r = resolve(&provider, &who).await;
    let calls: Value = raw
        .get(&calls_url)
        .send()
        .await
        .expect("calls")
        .json()
        .await
        .expect("calls JSON");
    let assignment_listings = calls["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .filter(|c| {
            c["method"] == "GET"
                && c["path"].as_str().is_some_and(|p| {
                    p.ends_with("/providers/Microsoft.Authorization/roleAssignments")
                })
        })
        .count();
    assert_eq!(
        assignment_listings, 1,
        "one listing for the one subscription, not one per principal"
    );

    let acting: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|f| f.kind == "acts-as-service-principal")
        .collect();
    assert_eq!(acting.len(), 2, "{:#?}", ids(&r));
    let deploy_bot = find(&r, &format!("azure:acts-as-service-principal:{sp}"));
    assert_eq!(deploy_bot.relation, Relation::CanActAs);
    assert_eq!(
        paths(deploy_bot),
        ["alice -owns-> application deploy-bot -can-act-as-> service principal deploy-bot"]
    );
    let helper = find(&r, &format!("azure:acts-as-service-principal:{helper_sp}"));
    assert!(paths(helper)[0].ends_with(
        "service principal deploy-bot -owns-> application helper -can-act-as-> service principal helper"
    ));
    assert_eq!(
        vault_objects(&r),
        [
            "kv-app/keys/signing",
            "kv-app/secrets/db",
            "kv-legacy/secrets/legacy"
        ]
    );
    let db = find(&r, "azure:kv-secret:kv-app/secrets/db");
    assert_eq!(db.relation, Relation::CanRead);
    assert!(paths(db)[0].starts_with(
        "alice -owns-> application deploy-bot -can-act-as-> service principal deploy-bot -assigned-> role Key Vault Secrets User"
    ));
    let legacy = find(&r, "azure:kv-secret:kv-legacy/secrets/legacy");
    assert!(
        paths(legacy)[0].contains("service principal deploy-bot -member-of-> group bots"),
        "{:#?}",
        paths(legacy)
    );
    // The service principal's own assignments are not the person's to remove.
    assert!(!r
        .findings
        .iter()
        .any(|f| f.kind.ends_with("role-assignment")));

    assert_eq!(
        act(&provider, db, "rotate", "run-acting").await,
        State::Rotated
    );
    assert_eq!(
        versions(&w, &app_uri, ObjectType::Secrets, "db")
            .await
            .iter()
            .map(|v| v.0)
            .collect::<Vec<_>>(),
        [false, true]
    );
    let owned = r
        .findings
        .iter()
        .find(|f| f.kind == "owned-application")
        .expect("the owned application");
    assert_eq!(
        act_with(
            &provider,
            owned,
            "reassign-owner",
            "run-acting",
            Some("bob@example.com")
        )
        .await,
        State::Reassigned
    );
    let after = resolve(&provider, &who).await;
    assert!(vault_objects(&after).is_empty(), "{:#?}", ids(&after));
    assert!(!after
        .findings
        .iter()
        .any(|f| f.kind == "acts-as-service-principal"));
    let state = provider
        .live_state(deploy_bot, &ctx(&who, None))
        .await
        .expect("live state");
    assert_eq!(state, State::Reassigned);
    w.double.shutdown().await;
}

/// After a client secret is rotated, the probe proves the old one dead: by the metadata when
/// Closeout never held its value (the first rotation of a secret made outside it), by a
/// refused token request when it did (a secret it published itself). A service principal's
/// own secret rotates too: the double accepts it at the token endpoint, as Entra does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_client_secret_is_proven_dead() {
    const SUB: &str = "d4d4d4d4-0000-4000-8000-000000000004";
    let w = World::new("probe").await;
    w.subscription(SUB, "rg").await;
    let (creds_uri, _) = uri_and_id(&w.vault(SUB, "rg", "kv-creds", true, json!([])).await);
    let alice = w.user("alice@example.com", "E1001").await;
    let (app_object, app_id, _) = w.app("payments-api").await;
    w.link("applications", &app_object, "owners", &alice).await;
    let first = w
        .call(
            "POST",
            Graph,
            &format!("/v1.0/applications/{app_object}/addPassword"),
            json!({"passwordCredential": {"displayName": "ci"}}),
        )
        .await;
    let first_secret = first["secretText"]
        .as_str()
        .expect("secretText")
        .to_string();
    let first_key = first["keyId"].as_str().expect("keyId").to_string();
    let provider = w.provider(Some(&creds_uri)).await;
    let who = person("E1001", "alice@example.com");
    let password_id = |key: &str| format!("azure:app-password:{app_object}/{key}");

    let r = resolve(&provider, &who).await;
    let old = find(&r, &password_id(&first_key)).clone();
    assert_eq!(
        act(&provider, &old, "rotate", "run-1").await,
        State::Rotated
    );
    let (status, refused) = w.token(&app_id, &first_secret).await;
    assert_eq!(status, 401, "the old secret no longer signs in: {refused}");
    let probe = provider
        .probe(&old)
        .await
        .expect("probe")
        .expect("a probe for client secrets");
    assert!(probe.dead, "{probe:#?}");
    assert!(
        probe.probe.starts_with("metadata: passwordCredentials"),
        "{probe:#?}"
    );
    assert!(probe.probe.contains("does not hold"), "{probe:#?}");
    assert!(probe.detail.contains("no longer in passwordCredentials"));

    // The secret Closeout published is the next one to rotate: its value is held.
    let r = resolve(&provider, &who).await;
    let published = r
        .findings
        .iter()
        .find(|f| f.kind == "app-password")
        .expect("the published client secret")
        .clone();
    assert_eq!(
        act(&provider, &published, "rotate", "run-2").await,
        State::Rotated
    );
    let probe = provider
        .probe(&published)
        .await
        .expect("probe")
        .expect("a probe for client secrets");
    assert!(probe.dead, "{probe:#?}");
    assert!(
        probe.probe.starts_with("client-credentials token request"),
        "{probe:#?}"
    );
    assert!(probe.detail.contains("AADSTS7000215"), "{probe:#?}");
    let published_versions = versions(
        &w,
        &creds_uri,
        ObjectType::Secrets,
        &format!("app-payments-api-{app_object}-credential"),
    )
    .await;
    assert_eq!(published_versions.len(), 2);
    assert_eq!(
        published_versions[0]
            .1
            .get("credential")
            .map(String::as_str),
        published.attr("key_id")
    );

    // A service principal's own client secret.
    let (_, _, svc_sp) = w.app("svc-direct").await;
    w.link("servicePrincipals", &svc_sp, "owners", &alice).await;
    let sp_secret = w
        .call(
            "POST",
            Graph,
            &format!("/v1.0/servicePrincipals/{svc_sp}/addPassword"),
            json!({"passwordCredential": {"displayName": "sp"}}),
        )
        .await;
    let r = resolve(&provider, &who).await;
    let sp_password = find(
        &r,
        &format!(
            "azure:app-password:{svc_sp}/{}",
            sp_secret["keyId"].as_str().expect("keyId")
        ),
    );
    let outcome = provider
        .execute(&ActionRequest {
            idempotency_key: "sp".into(),
            verb: "rotate".into(),
            finding: sp_password.clone(),
            params: ActionParams {
                run_id: "run-3".into(),
                ..Default::default()
            },
        })
        .await
        .expect("the service principal's secret rotates");
    assert!(
        outcome.detail.contains("tested (token issued)"),
        "{}",
        outcome.detail
    );
    w.double.shutdown().await;
}

/// A vault whose secrets the endpoint refuses to list, an owned-objects listing refused, and a
/// vault listing the endpoint lacks are gaps — each naming what is unknown and why — while the
/// rest of the resolution goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_listed_is_a_gap() {
    const SUB: &str = "e5e5e5e5-0000-4000-8000-000000000005";
    let w = World::new("gaps").await;
    w.subscription(SUB, "rg").await;
    let (open_uri, open_id) = uri_and_id(&w.vault(SUB, "rg", "kv-open", true, json!([])).await);
    let (locked_uri, locked_id) =
        uri_and_id(&w.vault(SUB, "rg", "kv-locked", true, json!([])).await);
    secret(&w, &open_uri, "a").await;
    secret(&w, &locked_uri, "b").await;
    let alice = w.user("alice@example.com", "E1001").await;
    for vault in [&open_id, &locked_id] {
        w.assign(vault, roles::KEY_VAULT_SECRETS_USER, &alice, "User")
            .await;
    }
    let provider = w.provider(None).await;
    let who = person("E1001", "alice@example.com");

    w.fault(
        json!({"path_prefix": "/secrets", "vault": "kv-locked", "method": "GET",
                   "status": 403, "count": 1}),
    )
    .await;
    w.fault(
        json!({"path_prefix": format!("/v1.0/users/{alice}/ownedObjects"),
                   "status": 403, "count": 1}),
    )
    .await;
    let r = resolve(&provider, &who).await;
    assert_eq!(vault_objects(&r), ["kv-open/secrets/a"], "the rest goes on");
    let locked = r
        .gaps
        .iter()
        .find(|g| g.kind == "kv-secret")
        .unwrap_or_else(|| panic!("{:#?}", r.gaps));
    assert_eq!(locked.resource, locked_id);
    assert!(locked.reason.contains("HTTP 403"), "{}", locked.reason);
    assert!(
        locked
            .paths
            .iter()
            .any(|p| p.render("alice").contains("Key Vault Secrets User")),
        "the gap says how the person reaches the vault: {locked:#?}"
    );
    assert!(
        r.gaps.iter().any(|g| g.kind == "owned-application"),
        "{:#?}",
        r.gaps
    );
    assert_eq!(r.gaps.len(), 2, "{:#?}", r.gaps);

    // An API the endpoint lacks.
    w.fault(
        json!({"path_prefix": format!("/subscriptions/{SUB}/providers/Microsoft.KeyVault/vaults"),
                   "status": 404, "count": 1}),
    )
    .await;
    let r = resolve(&provider, &who).await;
    let vaults = r
        .gaps
        .iter()
        .find(|g| g.kind == "key-vault")
        .unwrap_or_else(|| panic!("{:#?}", r.gaps));
    assert_eq!(vaults.resource, format!("/subscriptions/{SUB}"));
    assert!(vaults.reason.contains("HTTP 404"), "{}", vaults.reason);
    assert!(vault_objects(&r).is_empty());

    // Nothing refused: nothing unknown.
    let r = resolve(&provider, &who).await;
    assert!(r.gaps.is_empty(), "{:#?}", r.gaps);
    assert_eq!(
        vault_objects(&r),
        ["kv-locked/secrets/b", "kv-open/secrets/a"]
    );
    w.double.shutdown().await;
}

/// A condition on a data role's assignment is evaluated per object: Key Vault Secrets User
/// limited to the secret named `db` exposes `db` only (and the rotation leaves its neighbour
/// alone); a condition Closeout cannot decide for an object (it tests tags it does not read)
/// counts as allowing, and the path says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_role_condition_decides_which_objects_are_exposed() {
    const SUB: &str = "f6f6f6f6-0000-4000-8000-000000000006";
    let w = World::new("data-condition").await;
    w.subscription(SUB, "rg").await;
    let (uri, vault_id) = uri_and_id(&w.vault(SUB, "rg", "kv-cond", true, json!([])).await);
    secret(&w, &uri, "db").await;
    secret(&w, &uri, "api").await;
    w.key("kv-cond", &uri, "signing").await;
    let alice = w.user("alice@example.com", "E1001").await;
    w.assign_with_condition(
        &vault_id,
        roles::KEY_VAULT_SECRETS_USER,
        &alice,
        "User",
        Some("((!(ActionMatches{'Microsoft.KeyVault/vaults/secrets/getSecret/action'})) OR (@Resource[Microsoft.KeyVault/vaults/secrets:name] StringEquals 'db'))"),
    )
    .await;
    w.assign_with_condition(
        &vault_id,
        roles::KEY_VAULT_CRYPTO_USER,
        &alice,
        "User",
        Some("@Resource[Microsoft.KeyVault/vaults/keys:tags] StringEquals 'prod'"),
    )
    .await;
    let provider = w.provider(None).await;
    let who = person("E1001", "alice@example.com");

    let r = resolve(&provider, &who).await;
    assert_eq!(
        vault_objects(&r),
        ["kv-cond/keys/signing", "kv-cond/secrets/db"],
        "secret api is excluded by the condition: {:#?}",
        ids(&r)
    );
    assert!(r.gaps.is_empty(), "{:#?}", r.gaps);
    let db = find(&r, "azure:kv-secret:kv-cond/secrets/db");
    assert_eq!(db.relation, Relation::CanRead);
    assert!(
        paths(db)
            .iter()
            .any(|p| p.contains("assignment condition evaluated: allows it")),
        "{:#?}",
        paths(db)
    );
    let signing = find(&r, "azure:kv-key:kv-cond/keys/signing");
    assert!(
        paths(signing).iter().any(
            |p| p.contains("not evaluated for this object") && p.contains("counts as allowing")
        ),
        "{:#?}",
        paths(signing)
    );

    assert_eq!(
        act(&provider, db, "rotate", "run-cond").await,
        State::Rotated
    );
    let db_versions = versions(&w, &uri, ObjectType::Secrets, "db").await;
    assert_eq!(
        db_versions.iter().map(|v| v.0).collect::<Vec<_>>(),
        [false, true]
    );
    let api_versions = versions(&w, &uri, ObjectType::Secrets, "api").await;
    assert_eq!(
        api_versions.iter().map(|v| v.0).collect::<Vec<_>>(),
        [true],
        "the excluded secret is untouched"
    );
    w.double.shutdown().await;
}

/// A condition Closeout cannot parse (a comparison with a principal attribute on its right)
/// counts as allowing — the objects are found and acted on — and is a gap naming the
/// assignment, so the run cannot say closed unless the site accepts it. Both on a data role
/// and on a role that may assign roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_closeout_cannot_parse_is_a_gap_naming_the_assignment() {
    const SUB: &str = "a7a7a7a7-0000-4000-8000-000000000007";
    const UNPARSED: &str = "((!(ActionMatches{'Microsoft.KeyVault/vaults/secrets/getSecret/action'})) OR (@Resource[Microsoft.KeyVault/vaults/secrets:name] StringEquals @Principal[Microsoft.Directory/CustomSecurityAttributes/Id:Vault_Secret]))";
    let w = World::new("unparsed-condition").await;
    w.subscription(SUB, "rg").await;
    let (uri, vault_id) = uri_and_id(&w.vault(SUB, "rg", "kv-abac", true, json!([])).await);
    let (_, other_id) = uri_and_id(&w.vault(SUB, "rg", "kv-admin", true, json!([])).await);
    secret(&w, &uri, "db").await;
    let alice = w.user("alice@example.com", "E1001").await;
    let data = w
        .assign_with_condition(
            &vault_id,
            roles::KEY_VAULT_SECRETS_USER,
            &alice,
            "User",
            Some(UNPARSED),
        )
        .await;
    let admin = w
        .assign_with_condition(
            &other_id,
            roles::USER_ACCESS_ADMINISTRATOR,
            &alice,
            "User",
            Some("((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals @Principal[x:y]))"),
        )
        .await;
    let provider = w.provider(None).await;
    let who = person("E1001", "alice@example.com");

    let r = resolve(&provider, &who).await;
    // Counted as allowing: the secret is found.
    assert_eq!(vault_objects(&r), ["kv-abac/secrets/db"], "{:#?}", ids(&r));
    let mut gaps: Vec<(&str, &str)> = r
        .gaps
        .iter()
        .map(|g| (g.kind.as_str(), g.resource.as_str()))
        .collect();
    gaps.sort();
    let mut want = vec![
        ("role-assignment-condition", admin.as_str()),
        ("role-assignment-condition", data.as_str()),
    ];
    want.sort();
    assert_eq!(gaps, want, "{:#?}", r.gaps);
    for g in &r.gaps {
        let name = g.resource.rsplit('/').next().unwrap();
        assert!(
            g.reason.contains(&format!("role assignment {name}"))
                && g.reason.contains("cannot parse"),
            "{}",
            g.reason
        );
        assert!(
            !g.paths.is_empty(),
            "the gap says how she reaches it: {g:#?}"
        );
    }
    w.double.shutdown().await;
}

/// Rotation strategies on Key Vault secrets against a real PostgreSQL 15: a secret tagged
/// `closeout:rotation = postgresql-single-user` gets a new password at the database (the old
/// one refused, the new one working, every other field kept, the login probe dead), its
/// pending copy retired; a JSON secret of an unknown shape is refused and left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_secret_is_rotated_at_the_database_and_an_unknown_shape_is_untouched() {
    const SUB: &str = "b8b8b8b8-0000-4000-8000-000000000016";
    let pg = closeout_testkit::PostgresServer::shared();
    pg.psql("CREATE ROLE kv_pay LOGIN PASSWORD 'kv-old-pw'");
    // Every statement of kv_pay's sessions goes to the server log (a non-superuser cannot turn
    // it off): the log shows what crossed the wire.
    pg.psql("ALTER ROLE kv_pay SET log_statement = 'all'");
    let w = World::new("pg-strategy").await;
    w.subscription(SUB, "rg").await;
    let (uri, vault_id) = uri_and_id(&w.vault(SUB, "rg", "kv-pg", true, json!([])).await);
    let before = json!({
        "engine": "postgres", "host": "127.0.0.1", "port": pg.port(),
        "username": "kv_pay", "password": "kv-old-pw", "dbname": "postgres",
        "team": "payments",
    });
    let tagged = BTreeMap::from([(
        "closeout:rotation".to_string(),
        "postgresql-single-user".to_string(),
    )]);
    w.kv()
        .set_secret(
            &uri,
            "pay",
            &SecretValue::new(before.to_string()),
            None,
            &tagged,
        )
        .await
        .expect("seed pay");
    let unknown = json!({"username": "svc", "token": "canary-kv-unknown", "url": "https://x"});
    w.kv()
        .set_secret(
            &uri,
            "unknown",
            &SecretValue::new(unknown.to_string()),
            None,
            &BTreeMap::new(),
        )
        .await
        .expect("seed unknown");
    let alice = w.user("alice@example.com", "E1001").await;
    w.assign(&vault_id, roles::KEY_VAULT_SECRETS_USER, &alice, "User")
        .await;
    let provider = w.provider(None).await;
    let who = person("E1001", "alice@example.com");
    let r = resolve(&provider, &who).await;
    let pay = find(&r, "azure:kv-secret:kv-pg/secrets/pay");
    assert_eq!(pay.attr("rotation"), Some("postgresql-single-user"));
    assert_eq!(
        act(&provider, pay, "rotate", "run-pg").await,
        State::Rotated
    );
    let current = w
        .kv()
        .current_secret_value(&uri, "pay")
        .await
        .expect("read pay")
        .expect("pay has a value");
    let after: Value = serde_json::from_str(current.expose()).expect("json");
    for k in ["engine", "host", "port", "username", "dbname", "team"] {
        assert_eq!(after[k], before[k], "{k}");
    }
    let new = after["password"].as_str().expect("password");
    assert!(
        !pg.can_login("kv_pay", "kv-old-pw"),
        "old password still works"
    );
    assert!(pg.can_login("kv_pay", new), "new password refused");
    // The new password never crossed the wire: ALTER ROLE carried its SCRAM verifier.
    let log = pg.log();
    assert!(
        log.contains("ALTER ROLE \"kv_pay\" WITH PASSWORD 'SCRAM-SHA-256$4096:"),
        "no logged ALTER ROLE with a verifier"
    );
    assert!(!log.contains(new), "the new password is in the server log");
    let probe = provider
        .probe(pay)
        .await
        .expect("probe")
        .expect("a login probe");
    assert!(probe.dead, "{probe:?}");
    // The pending copy holds no password any more: its versions are disabled but a marker.
    let pending = versions(&w, &uri, ObjectType::Secrets, "pay-closeout-pending").await;
    assert_eq!(
        pending.iter().map(|v| v.0).collect::<Vec<_>>(),
        [false, true]
    );

    let u = find(&r, "azure:kv-secret:kv-pg/secrets/unknown");
    assert_eq!(u.attr("value_fields"), Some("token,url,username"));
    let err = provider
        .execute(&ActionRequest {
            idempotency_key: "run-pg-unknown".into(),
            verb: "rotate".into(),
            finding: u.clone(),
            params: ActionParams {
                run_id: "run-pg".into(),
                ..Default::default()
            },
        })
        .await
        .expect_err("an unknown shape is refused");
    assert!(
        err.to_string().contains("needs a rotation strategy"),
        "{err}"
    );
    let still = w
        .kv()
        .current_secret_value(&uri, "unknown")
        .await
        .expect("read unknown")
        .expect("value");
    assert_eq!(
        serde_json::from_str::<Value>(still.expose()).expect("json"),
        unknown
    );
    assert_eq!(
        versions(&w, &uri, ObjectType::Secrets, "unknown")
            .await
            .len(),
        1
    );
    w.double.shutdown().await;
}

/// Two applications whose display names differ only in case and spacing, and one of them with a
/// client secret on its own service principal too: each rotated credential is published to a
/// secret of its own (the name carries the object id), and each published value signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colliding_display_names_publish_every_credential_to_its_own_secret() {
    const SUB: &str = "c9c9c9c9-0000-4000-8000-000000000017";
    let w = World::new("collide").await;
    w.subscription(SUB, "rg").await;
    let (creds_uri, _) = uri_and_id(&w.vault(SUB, "rg", "kv-creds", true, json!([])).await);
    let alice = w.user("alice@example.com", "E1001").await;
    // An application, its own service principal, and an application whose name differs only
    // in case and spacing: one secret each.
    let (app1, app1_id, sp1) = w.app("Payments API").await;
    let (app2, app2_id, _) = w.app("payments  api").await;
    let holders = [
        ("applications", app1, app1_id.clone()),
        ("servicePrincipals", sp1, app1_id),
        ("applications", app2, app2_id),
    ];
    for (collection, object, _) in &holders {
        w.link(collection, object, "owners", &alice).await;
        w.call(
            "POST",
            Graph,
            &format!("/v1.0/{collection}/{object}/addPassword"),
            json!({"passwordCredential": {"displayName": "ci"}}),
        )
        .await;
    }
    let provider = w.provider(Some(&creds_uri)).await;
    let who = person("E1001", "alice@example.com");
    let r = resolve(&provider, &who).await;
    let passwords: Vec<Finding> = r
        .findings
        .iter()
        .filter(|f| f.kind == "app-password")
        .cloned()
        .collect();
    assert_eq!(passwords.len(), 3, "{:#?}", ids(&r));
    let names: std::collections::BTreeSet<&str> = passwords
        .iter()
        .filter_map(|f| f.attr("publish_secret"))
        .collect();
    assert_eq!(names.len(), 3, "one secret per object: {names:?}");
    for (i, f) in passwords.iter().enumerate() {
        assert_eq!(
            act(&provider, f, "rotate", &format!("run-{i}")).await,
            State::Rotated
        );
    }
    // Read back: each object's published secret holds a client secret that signs in as its app.
    for (_, object, app_id) in &holders {
        let f = passwords
            .iter()
            .find(|f| f.attr("object_id") == Some(object.as_str()))
            .expect("finding of the object");
        let name = f.attr("publish_secret").expect("publish_secret");
        assert!(name.contains(object.as_str()), "{name}");
        let value = w
            .kv()
            .current_secret_value(&creds_uri, name)
            .await
            .expect("read published")
            .expect("published value");
        // Published as text/plain: the client secret itself.
        let secret = value.expose().to_string();
        let (status, body) = w.token(app_id, &secret).await;
        assert_eq!(status, 200, "{name}: {body}");
    }
    w.double.shutdown().await;
}

/// Alice owns app `app` with one password ("ci"); Closeout publishes rotated credentials to
/// vault kv-creds. What the app-password rotation tests start from.
struct OwnedPassword {
    w: World,
    creds_uri: String,
    app_object: String,
    first_key: String,
    provider: AzureProvider,
    /// The finding of the first password, as resolved.
    old: Finding,
}

impl OwnedPassword {
    async fn new(sub: &str, world: &str, app: &str) -> OwnedPassword {
        let w = World::new(world).await;
        w.subscription(sub, "rg").await;
        let (creds_uri, _) = uri_and_id(&w.vault(sub, "rg", "kv-creds", true, json!([])).await);
        let alice = w.user("alice@example.com", "E1001").await;
        let (app_object, _, _) = w.app(app).await;
        w.link("applications", &app_object, "owners", &alice).await;
        let first = w
            .call(
                "POST",
                Graph,
                &format!("/v1.0/applications/{app_object}/addPassword"),
                json!({"passwordCredential": {"displayName": "ci"}}),
            )
            .await;
        let first_key = first["keyId"].as_str().expect("keyId").to_string();
        let provider = w.provider(Some(&creds_uri)).await;
        let who = person("E1001", "alice@example.com");
        let r = resolve(&provider, &who).await;
        let old = find(&r, &format!("azure:app-password:{app_object}/{first_key}")).clone();
        OwnedPassword {
            w,
            creds_uri,
            app_object,
            first_key,
            provider,
            old,
        }
    }
}

/// The key ids of an application's password credentials, read back from Graph.
async fn password_key_ids(w: &World, app_object: &str) -> Vec<String> {
    let app = w
        .call(
            "GET",
            Graph,
            &format!("/v1.0/applications/{app_object}?$select=passwordCredentials"),
            Value::Null,
        )
        .await;
    app["passwordCredentials"]
        .as_array()
        .expect("passwordCredentials")
        .iter()
        .filter_map(|p| p["keyId"].as_str().map(str::to_string))
        .collect()
}

/// Issue 14, seen by the chaos bench: an app password rotation that failed after publishing
/// (here the removal of the old secret answered 503) was retried from scratch: the published
/// credential was removed as "an earlier attempt's", a third added and published again, so the
/// credential vault had two new versions where one was due. The retry now recognises the
/// version it published (tagged with the run and a credential carrying the rotation's marker)
/// and only finishes: one new version, one new credential, the old one gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_password_rotation_failing_after_publishing_publishes_once() {
    let OwnedPassword {
        w,
        creds_uri,
        app_object,
        first_key,
        provider,
        old,
    } = OwnedPassword::new(
        "d4d4d4d4-0000-4000-8000-000000000014",
        "publish-once",
        "billing-api",
    )
    .await;
    w.fault(
        json!({"path_prefix": format!("/v1.0/applications/{app_object}/removePassword"),
                   "method": "POST", "count": 1, "status": 503}),
    )
    .await;
    let request = ActionRequest {
        idempotency_key: format!("run-1-{}", old.id),
        verb: "rotate".into(),
        finding: old.clone(),
        params: ActionParams {
            run_id: "run-1".into(),
            ..ActionParams::default()
        },
    };
    let failed = provider.execute(&request).await;
    assert!(
        failed.is_err(),
        "the injected 503 did not fail the first attempt: {failed:?}"
    );
    let outcome = provider
        .execute(&request)
        .await
        .expect("the retried rotation");
    assert_eq!(outcome.state, State::Rotated, "{outcome:?}");
    let name = old
        .attr("publish_secret")
        .expect("the finding names where its credential is published");
    let published = versions(&w, &creds_uri, ObjectType::Secrets, name).await;
    assert_eq!(published.len(), 1, "published once: {published:?}");
    let keys = password_key_ids(&w, &app_object).await;
    assert_eq!(keys.len(), 1, "one credential left: {keys:?}");
    assert_ne!(keys[0], first_key, "the old credential is gone");
    assert_eq!(
        published[0].1.get("credential").map(String::as_str),
        Some(keys[0].as_str()),
        "the credential left is the one published"
    );
    w.double.shutdown().await;
}

/// A Key Vault PostgreSQL rotation killed between any two phases resumes to the same end. Each
/// kill point's state is built as the provider leaves it: after *create* the pending secret
/// `<name>-closeout-pending` (tagged with the run) holds the new value; after *set* (and
/// *test*, which changes nothing) the database has it too; after *finish* the secret's current
/// version is the new value but the pending copy is not yet retired. Resumed, the secret's
/// current value is the staged one, the old password is refused and the new one works, nobody
/// was locked out at the kill point, and the pending copy no longer holds the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_key_vault_database_rotation_resumes_to_the_same_end() {
    const SUB: &str = "b9b9b9b9-0000-4000-8000-000000000016";
    const RUN: &str = "run-kill";
    let pg = closeout_testkit::PostgresServer::shared();
    let w = World::new("pg-kill").await;
    w.subscription(SUB, "rg").await;
    let (uri, vault_id) = uri_and_id(&w.vault(SUB, "rg", "kv-pgkill", true, json!([])).await);
    let alice = w.user("alice@example.com", "E1001").await;
    w.assign(&vault_id, roles::KEY_VAULT_SECRETS_USER, &alice, "User")
        .await;
    // (kill point, database already set, secret already promoted)
    let points = [
        ("after-create", false, false),
        ("after-set", true, false),
        ("after-test", true, false),
        ("after-finish", true, true),
    ];
    let tagged = BTreeMap::from([(
        "closeout:rotation".to_string(),
        "postgresql-single-user".to_string(),
    )]);
    for (i, (point, _, _)) in points.iter().enumerate() {
        let user = format!("kv_kill{i}");
        pg.psql(&format!("CREATE ROLE {user} LOGIN PASSWORD 'kv-kill-old'"));
        let before = json!({
            "engine": "postgres", "host": "127.0.0.1", "port": pg.port(),
            "username": user, "password": "kv-kill-old", "dbname": "postgres",
            "kill_point": point,
        });
        w.kv()
            .set_secret(
                &uri,
                &format!("kill{i}"),
                &SecretValue::new(before.to_string()),
                None,
                &tagged,
            )
            .await
            .expect("seed");
    }
    let provider = w.provider(None).await;
    let r = resolve(&provider, &person("E1001", "alice@example.com")).await;
    for (i, (point, set, promoted)) in points.into_iter().enumerate() {
        let name = format!("kill{i}");
        let user = format!("kv_kill{i}");
        let new_pw = format!("kv-kill-pending-{i}");
        let f = find(&r, &format!("azure:kv-secret:kv-pgkill/secrets/{name}"));
        let before: Value = serde_json::from_str(
            w.kv()
                .current_secret_value(&uri, &name)
                .await
                .expect("read")
                .expect("value")
                .expose(),
        )
        .expect("json");
        let mut pending = before.clone();
        pending["password"] = json!(new_pw);
        let run_tags = BTreeMap::from([
            ("closeout-run".to_string(), RUN.to_string()),
            ("closeout-pending-for".to_string(), name.clone()),
        ]);
        // create
        w.kv()
            .set_secret(
                &uri,
                &format!("{name}-closeout-pending"),
                &SecretValue::new(pending.to_string()),
                Some("application/json"),
                &run_tags,
            )
            .await
            .expect("stage");
        // set (and test)
        if set {
            pg.psql(&format!("ALTER ROLE {user} PASSWORD '{new_pw}'"));
        }
        // finish, killed before the pending copy is retired
        if promoted {
            let tags = BTreeMap::from([
                (
                    "closeout:rotation".to_string(),
                    "postgresql-single-user".to_string(),
                ),
                ("closeout-run".to_string(), RUN.to_string()),
            ]);
            w.kv()
                .set_secret(
                    &uri,
                    &name,
                    &SecretValue::new(pending.to_string()),
                    None,
                    &tags,
                )
                .await
                .expect("promote");
        }
        assert!(
            pg.can_login(&user, "kv-kill-old") || pg.can_login(&user, &new_pw),
            "{point}: locked out"
        );
        let outcome = provider
            .execute(&ActionRequest {
                idempotency_key: format!("{RUN}-{}", f.id),
                verb: "rotate".into(),
                finding: f.clone(),
                params: ActionParams {
                    run_id: RUN.into(),
                    ..Default::default()
                },
            })
            .await
            .unwrap_or_else(|e| panic!("{point}: {e}"));
        assert_eq!(outcome.state, State::Rotated, "{point}: {outcome:?}");
        let after: Value = serde_json::from_str(
            w.kv()
                .current_secret_value(&uri, &name)
                .await
                .expect("read")
                .expect("value")
                .expose(),
        )
        .expect("json");
        assert_eq!(
            after, pending,
            "{point}: the staged value is the one promoted"
        );
        assert!(
            !pg.can_login(&user, "kv-kill-old"),
            "{point}: the old password still works"
        );
        assert!(
            pg.can_login(&user, &new_pw),
            "{point}: new password refused"
        );
        // The pending copy keeps no password: only its marker version is enabled.
        let copies = versions(
            &w,
            &uri,
            ObjectType::Secrets,
            &format!("{name}-closeout-pending"),
        )
        .await;
        assert_eq!(
            copies.iter().map(|v| v.0).collect::<Vec<_>>(),
            [false, true],
            "{point}"
        );
        // Resumed again: nothing more changes.
        let again = provider
            .execute(&ActionRequest {
                idempotency_key: format!("{RUN}-{}", f.id),
                verb: "rotate".into(),
                finding: f.clone(),
                params: ActionParams {
                    run_id: RUN.into(),
                    ..Default::default()
                },
            })
            .await
            .unwrap_or_else(|e| panic!("{point} again: {e}"));
        assert!(again.already_done, "{point}: {again:?}");
        assert!(pg.can_login(&user, &new_pw), "{point}: rotated twice");
    }
    w.double.shutdown().await;
}

/// Issue 14, seen by the chaos bench: an app credential rotation is several writes (add,
/// publish, remove), and at 20% faults the whole action could spend its attempts. A write
/// answered 429 was not done (ARM and Graph throttle before acting), so the client sends it
/// again after `Retry-After` instead of failing the action: one `execute`, one new credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_write_is_retried_in_place_not_failed() {
    let OwnedPassword {
        w,
        app_object,
        first_key,
        provider,
        old,
        ..
    } = OwnedPassword::new(
        "d4d4d4d4-0000-4000-8000-000000000429",
        "throttled-write",
        "ledger-api",
    )
    .await;
    for path in ["addPassword", "removePassword"] {
        w.fault(json!({
            "path_prefix": format!("/v1.0/applications/{app_object}/{path}"),
            "method": "POST", "count": 1, "retry_after_seconds": 1,
        }))
        .await;
    }
    let outcome = provider
        .execute(&ActionRequest {
            idempotency_key: format!("run-1-{}", old.id),
            verb: "rotate".into(),
            finding: old.clone(),
            params: ActionParams {
                run_id: "run-1".into(),
                ..ActionParams::default()
            },
        })
        .await
        .expect("both throttled writes were sent again and the rotation finished in one execute");
    assert_eq!(outcome.state, State::Rotated, "{outcome:?}");
    let keys = password_key_ids(&w, &app_object).await;
    assert_eq!(keys.len(), 1, "one credential, not two: {keys:?}");
    assert_ne!(keys[0], first_key, "the old credential is gone");
    w.double.shutdown().await;
}
