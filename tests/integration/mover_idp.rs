//! Movers and joiners through the identity provider and the apps behind it, end to end with the
//! real binary: the entitlement policy names Keycloak groups, realm and client roles and SCIM
//! app groups; `closeout apply mover` removes what the new department does not justify, logs the
//! person out (their tokens carried the removed roles) and grants the new department's; `apply
//! joiner` grants a newcomer's baseline. Everything is read back from Keycloak and the apps.

use crate::common::idp::IdpWorld;
use crate::common::mover::{apply_joiner, use_source_and_policy, write_cast};
use crate::common::{describe, json};
use serde_json::{json, Value};

const PERSON: &str = "E2001";

const POLICY: &str = r#"rules:
  - name: engineering
    when: { department: Engineering }
    grants:
      - { provider: keycloak, group: /engineering }
      - { provider: keycloak, client-role: viewer, client: reports }
      - { provider: scim, group: engineers, app: wiki }
  - name: finance
    when: { department: Finance }
    grants:
      - { provider: keycloak, group: /finance/ap }
      - { provider: keycloak, realm-role: ledger }
      - { provider: scim, group: finance, app: crm }
"#;

fn names(list: &Value, key: &str) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x[key].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_and_joiner_follow_the_policy_in_keycloak_and_the_apps() {
    let w = IdpWorld::new().await;
    let hr = w.dir.path().join("hr.csv");
    write_cast(&hr, PERSON, "Engineering");
    let policy = w.dir.path().join("entitlements.yaml");
    std::fs::write(&policy, POLICY).expect("write policy");
    use_source_and_policy(&w.config_path(), &hr, &policy);

    // Keycloak: the groups, roles and the reports client the policy names.
    w.kc.client("portal", "portal-secret", json!({})).await;
    let reports = w.kc.client("reports", "reports-secret", json!({})).await;
    w.kc.admin(
        "POST",
        &format!("/clients/{reports}/roles"),
        Some(json!({"name": "viewer"})),
    )
    .await;
    w.kc.admin("POST", "/roles", Some(json!({"name": "ledger"})))
        .await;
    w.kc.admin("POST", "/groups", Some(json!({"name": "engineering"})))
        .await;
    w.kc.admin("POST", "/groups", Some(json!({"name": "finance"})))
        .await;
    let fin = w.kc.admin("GET", "/group-by-path/finance", None).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    w.kc.admin(
        "POST",
        &format!("/groups/{fin}/children"),
        Some(json!({"name": "ap"})),
    )
    .await;
    let eng = w.kc.admin("GET", "/group-by-path/engineering", None).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pat = w
        .kc_user("pat", "pat.lee@example.com", PERSON, "pat-pw")
        .await;
    let sam = w
        .kc_user("sam", "sam.ro@example.com", "E2002", "sam-pw")
        .await;
    let joe = w
        .kc_user("joe", "joe.new@example.com", "E2003", "joe-pw")
        .await;
    for u in [&pat, &sam] {
        w.kc.admin("PUT", &format!("/users/{u}/groups/{eng}"), None)
            .await;
    }
    let viewer =
        w.kc.admin("GET", &format!("/clients/{reports}/roles/viewer"), None)
            .await;
    w.kc.admin(
        "POST",
        &format!("/users/{pat}/role-mappings/clients/{reports}"),
        Some(json!([viewer])),
    )
    .await;
    let pat_refresh =
        w.kc.sign_in("portal", "portal-secret", "pat", "pat-pw", false)
            .await;
    let sam_refresh =
        w.kc.sign_in("portal", "portal-secret", "sam", "sam-pw", false)
            .await;

    // The apps: everyone has an account; the wiki's engineers group holds Pat and Sam.
    let w_pat = w
        .scim_user(&w.wiki, "plee", PERSON, "pat.lee@example.com")
        .await;
    let w_sam = w
        .scim_user(&w.wiki, "sro", "E2002", "sam.ro@example.com")
        .await;
    w.scim_user(&w.wiki, "jnew", "E2003", "joe.new@example.com")
        .await;
    let c_pat = w
        .scim_user(&w.crm, "pat.lee@example.com", "c1", "pat.lee@example.com")
        .await;
    w.scim_user(&w.crm, "sam.ro@example.com", "c2", "sam.ro@example.com")
        .await;
    let c_joe = w
        .scim_user(&w.crm, "joe.new@example.com", "c3", "joe.new@example.com")
        .await;
    let engineers = w.scim_group(&w.wiki, "engineers", &[&w_pat, &w_sam]).await;
    let finance = w.scim_group(&w.crm, "finance", &[]).await;

    let check = w.closeout(&["policy", "check"]);
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));

    // The move: Engineering → Finance.
    let out = w.closeout(&[
        "apply",
        "mover",
        "--identity",
        PERSON,
        "--to",
        "department=Finance",
        "--yes",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = json(&out);
    assert_eq!(report["status"], "closed", "{report:#}");
    assert_eq!(
        names(
            &w.kc
                .admin("GET", &format!("/users/{pat}/groups"), None)
                .await,
            "path"
        ),
        ["/finance/ap"]
    );
    let m =
        w.kc.admin("GET", &format!("/users/{pat}/role-mappings"), None)
            .await;
    assert!(
        names(&m["realmMappings"], "name").contains(&"ledger".to_string()),
        "{m}"
    );
    assert!(m["clientMappings"].get("reports").is_none(), "{m}");
    // Pat's session carried the removed roles: it is gone. Sam, who stays, keeps his.
    assert_eq!(
        w.kc.refresh("portal", "portal-secret", &pat_refresh)
            .await
            .err()
            .as_deref(),
        Some("invalid_grant")
    );
    assert!(w
        .kc
        .refresh("portal", "portal-secret", &sam_refresh)
        .await
        .is_ok());
    assert_eq!(
        names(
            &w.kc
                .admin("GET", &format!("/users/{sam}/groups"), None)
                .await,
            "path"
        ),
        ["/engineering"]
    );
    // The apps: out of the wiki's engineers, into the CRM's finance; the accounts stay active.
    assert_eq!(
        w.scim_members(&w.wiki, &engineers).await,
        vec![w_sam.clone()]
    );
    assert_eq!(w.scim_members(&w.crm, &finance).await, vec![c_pat.clone()]);
    let (_, u) = w
        .scim(&w.wiki, "GET", &format!("/Users/{w_pat}"), None)
        .await;
    assert_eq!(u["active"], true);

    // The joiner: Joe (Finance) gets the Finance baseline.
    let out = w.closeout(&apply_joiner("E2003"));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(json(&out)["status"], "closed", "{}", describe(&out));
    assert_eq!(
        names(
            &w.kc
                .admin("GET", &format!("/users/{joe}/groups"), None)
                .await,
            "path"
        ),
        ["/finance/ap"]
    );
    let m =
        w.kc.admin("GET", &format!("/users/{joe}/role-mappings"), None)
            .await;
    assert!(
        names(&m["realmMappings"], "name").contains(&"ledger".to_string()),
        "{m}"
    );
    let mut members = w.scim_members(&w.crm, &finance).await;
    members.sort();
    let mut want = vec![c_pat, c_joe];
    want.sort();
    assert_eq!(members, want);
}
