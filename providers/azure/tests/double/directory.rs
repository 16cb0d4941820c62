//! Entra resolution against the Azure test double, seeded through Graph's own write calls:
//! the user by each correlation rule, groups through nesting, owned applications and service
//! principals with their credentials (never a secret).

use crate::common;

use closeout_azure::directory;
use closeout_azure::entra::UserMatch;
use closeout_azure::http::{Api, AzureHttp};
use closeout_azure_double::DEFAULT_CLIENT_SECRET;
use closeout_contract::{Identity, IdentityKind, IdentityStatus};
use serde_json::{json, Value};

fn identity(id: &str, email: &str) -> Identity {
    Identity {
        id: id.into(),
        email: email.into(),
        name: "Alice".into(),
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

async fn post(azure: &AzureHttp, path: &str, body: Value) -> Value {
    azure
        .call::<Value>(Api::Graph, "POST", path, Some(&body))
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
        .unwrap_or(Value::Null)
}

fn reference(id: &Value) -> Value {
    json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", id.as_str().unwrap())})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_person_their_groups_and_what_they_own() {
    let double = common::double().await;
    let azure = common::client(&double, DEFAULT_CLIENT_SECRET);

    let mut users = Vec::new();
    for (upn, mail, employee) in [
        (
            "alice@corp.example.com",
            "alice.nguyen@example.com",
            "E1001",
        ),
        ("carol@corp.example.com", "carol.diaz@example.com", "E1002"),
    ] {
        users.push(
            post(
                &azure,
                "/v1.0/users",
                json!({"accountEnabled": true, "displayName": upn, "userPrincipalName": upn,
                       "mail": mail, "employeeId": employee, "mailNickname": employee,
                       "passwordProfile": {"password": "Not-Printed-1"}}),
            )
            .await,
        );
    }
    let (alice, carol) = (&users[0], &users[1]);
    let mut groups = Vec::new();
    for name in ["platform", "engineering", "finance"] {
        groups.push(
            post(
                &azure,
                "/v1.0/groups",
                json!({"displayName": name, "mailEnabled": false, "mailNickname": name, "securityEnabled": true}),
            )
            .await,
        );
    }
    // alice and carol in platform; platform inside engineering; finance unrelated.
    for member in [alice, carol] {
        post(
            &azure,
            &format!(
                "/v1.0/groups/{}/members/$ref",
                groups[0]["id"].as_str().unwrap()
            ),
            reference(&member["id"]),
        )
        .await;
    }
    post(
        &azure,
        &format!(
            "/v1.0/groups/{}/members/$ref",
            groups[1]["id"].as_str().unwrap()
        ),
        reference(&groups[0]["id"]),
    )
    .await;
    // An application alice owns, with a client secret.
    let app = post(
        &azure,
        "/v1.0/applications",
        json!({"displayName": "deploy-bot"}),
    )
    .await;
    let app_id = app["id"].as_str().unwrap();
    post(
        &azure,
        &format!("/v1.0/applications/{app_id}/owners/$ref"),
        reference(&alice["id"]),
    )
    .await;
    let secret = post(
        &azure,
        &format!("/v1.0/applications/{app_id}/addPassword"),
        json!({"passwordCredential": {"displayName": "ci"}}),
    )
    .await;
    let secret_text = secret["secretText"].as_str().unwrap().to_string();

    // Found by each rule; the rule is named.
    let by = |rules: &'static [UserMatch], id: &str, email: &str| {
        let person = identity(id, email);
        let azure = &azure;
        async move { directory::find_user(azure, &person, rules).await.unwrap() }
    };
    let alice_id = alice["id"].as_str().unwrap().to_string();
    let (u, why) = by(&[UserMatch::EmployeeId], "E1001", "").await.unwrap();
    assert_eq!(u.id, alice_id);
    assert_eq!(why, "employeeId = E1001");
    let (u, why) = by(&[UserMatch::Mail], "x", "alice.nguyen@example.com")
        .await
        .unwrap();
    assert_eq!(u.id, alice_id);
    assert_eq!(why, "mail = alice.nguyen@example.com");
    let (u, _) = by(&[UserMatch::Upn], "x", "alice@corp.example.com")
        .await
        .unwrap();
    assert_eq!(u.account_enabled, Some(true));
    let (u, why) = by(&[UserMatch::ObjectId], &alice_id, "").await.unwrap();
    assert_eq!(u.id, alice_id);
    assert!(why.starts_with("object id"));
    assert!(by(&UserMatch::DEFAULTS, "E9999", "nobody@example.com")
        .await
        .is_none());

    // Groups: platform directly, engineering through it; not finance.
    let mut transitive: Vec<String> = directory::transitive_groups(&azure, &alice_id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|g| g.display_name)
        .collect();
    transitive.sort();
    assert_eq!(transitive, ["engineering", "platform"]);
    let direct: Vec<String> = directory::direct_groups(&azure, &alice_id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|g| g.display_name)
        .collect();
    assert_eq!(direct, ["platform"]);

    // Owned: the application and its credential (key id, never the secret).
    let owned = directory::owned_objects(&azure, &alice_id).await.unwrap();
    assert_eq!(owned.len(), 1);
    assert!(owned[0].is_application());
    assert_eq!(owned[0].password_credentials.len(), 1);
    assert_eq!(
        owned[0].password_credentials[0].key_id,
        secret["keyId"].as_str().unwrap()
    );
    assert!(!format!("{owned:?}").contains(&secret_text));
    double.shutdown().await;
}
