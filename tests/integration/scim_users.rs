//! SCIM intake behaviour over HTTP: the lifecycle events real IdP requests produce, retries,
//! the sink failing, filters, pagination, auth and persistence.

use crate::common::scim as harness;

use closeout::event::EventSource;
use closeout::trigger::Trigger;
use harness::{Server, TOKEN};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// Every test here runs on both stores: `NAME::sqlite` and `NAME::postgres`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(false).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(true).await
            }
        }
    )*};
}

on_both_stores!(
    post_is_a_joiner_with_the_hr_attributes,
    entra_patch_active_false_is_one_leaver_and_a_retry_is_none,
    okta_patch_without_path_deactivates_and_reactivates,
    a_department_change_is_one_mover_with_the_new_department,
    put_replaces_and_delete_of_an_active_user_is_a_leaver,
    a_failing_sink_fails_the_request_and_keeps_nothing,
    filters_and_pagination,
    without_a_valid_token_it_is_401_in_scim_form,
    users_survive_a_restart,
);

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

async fn call(
    s: &Server,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = Client::new()
        .request(method, s.url(path))
        .bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/scim+json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON body")
    };
    (status, headers, body)
}

fn ann() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
        "userName": "Ann@Example.com",
        "externalId": "E1001",
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "title": "Engineer",
        "active": true,
        "emails": [{"type": "work", "value": "ann@example.com", "primary": true}],
        "addresses": [{"type": "work", "locality": "Berlin"}],
        ENT: {"employeeNumber": "N7", "department": "R&D"},
    })
}

async fn create(s: &Server, body: Value) -> String {
    let (status, headers, user) = call(s, Method::POST, "/Users", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_str().expect("id").to_string();
    assert_eq!(
        headers["location"].to_str().unwrap(),
        s.url(&format!("/Users/{id}"))
    );
    assert_eq!(headers["content-type"], "application/scim+json");
    assert_eq!(
        headers["etag"].to_str().unwrap(),
        user["meta"]["version"].as_str().unwrap()
    );
    id
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

async fn post_is_a_joiner_with_the_hr_attributes(postgres: bool) {
    let s = Server::start_on(postgres).await;
    let id = create(&s, ann()).await;
    let events = s.events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.kind, e.source, e.identity.as_str()),
        (Trigger::Joiner, EventSource::Scim, "E1001")
    );
    assert_eq!(e.external_id, format!("scim:User:{id}:v1"));
    assert_eq!(e.attributes["department"], "R&D");
    assert_eq!(e.attributes["role"], "Engineer");
    assert_eq!(e.attributes["location"], "Berlin");
    assert_eq!(e.attributes["email"], "ann@example.com");
    // userName is unique, case-insensitively: a retried POST is a 409 and no second joiner.
    let mut again = ann();
    again["userName"] = json!("ann@example.COM");
    let (status, _, err) = call(&s, Method::POST, "/Users", Some(again)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(err["scimType"], "uniqueness");
    assert_eq!(err["status"], "409");
    assert_eq!(
        err["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(s.events().len(), 1);
}

async fn entra_patch_active_false_is_one_leaver_and_a_retry_is_none(postgres: bool) {
    let s = Server::start_on(postgres).await;
    let id = create(&s, ann()).await;
    let body = patch(json!([{"op": "Replace", "path": "active", "value": "False"}]));
    let (status, _, user) = call(
        &s,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["active"], json!(false));
    let (status, _, _) = call(&s, Method::PATCH, &format!("/Users/{id}"), Some(body)).await;
    assert_eq!(status, StatusCode::OK);
    let events = s.events();
    assert_eq!(
        events.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [Trigger::Joiner, Trigger::Leaver]
    );
    assert_eq!(events[1].identity, "E1001");
    assert_eq!(events[1].external_id, format!("scim:User:{id}:v2"));
    // Deleting the already-disabled user (Entra's later hard delete) is not a second leaver.
    let (status, _, _) = call(&s, Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(s.events().len(), 2);
    let (status, _, _) = call(&s, Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn okta_patch_without_path_deactivates_and_reactivates(postgres: bool) {
    let s = Server::start_on(postgres).await;
    let id = create(&s, ann()).await;
    let off = patch(json!([{"op": "replace", "value": {"active": false}}]));
    let (status, _, _) = call(&s, Method::PATCH, &format!("/Users/{id}"), Some(off)).await;
    assert_eq!(status, StatusCode::OK);
    let on = patch(json!([{"op": "replace", "value": {"id": id, "active": true}}]));
    let (status, _, _) = call(&s, Method::PATCH, &format!("/Users/{id}"), Some(on)).await;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<_> = s.events().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [Trigger::Joiner, Trigger::Leaver, Trigger::Joiner]);
}

async fn a_department_change_is_one_mover_with_the_new_department(postgres: bool) {
    let s = Server::start_on(postgres).await;
    let id = create(&s, ann()).await;
    let body = patch(json!([
        {"op": "Replace", "path": format!("{ENT}:department"), "value": "Sales"},
        {"op": "Replace", "path": "displayName", "value": "Ann Lee"},
    ]));
    let (status, headers, user) = call(
        &s,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user[ENT]["department"], "Sales");
    assert_eq!(headers["etag"], "W/\"2\"");
    call(&s, Method::PATCH, &format!("/Users/{id}"), Some(body)).await;
    let events = s.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1].kind, Trigger::Mover);
    assert_eq!(events[1].attributes["department"], "Sales");
    assert_eq!(events[1].attributes["location"], "Berlin");
    // A name-only change is no event; a location change through a filtered path is a mover.
    let body = patch(json!([{"op": "replace", "path": "name.givenName", "value": "Anna"}]));
    call(&s, Method::PATCH, &format!("/Users/{id}"), Some(body)).await;
    assert_eq!(s.events().len(), 2);
    let body = patch(
        json!([{"op": "replace", "path": "addresses[type eq \"work\"].locality", "value": "Paris"}]),
    );
    call(&s, Method::PATCH, &format!("/Users/{id}"), Some(body)).await;
    let events = s.events();
    assert_eq!(
        (events.len(), events[2].attributes["location"].as_str()),
        (3, "Paris")
    );
}

async fn put_replaces_and_delete_of_an_active_user_is_a_leaver(postgres: bool) {
    let s = Server::start_on(postgres).await;
    let id = create(&s, ann()).await;
    let mut body = ann();
    body["title"] = json!("Manager");
    let (status, _, user) =
        call(&s, Method::PUT, &format!("/Users/{id}"), Some(body.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["title"], "Manager");
    call(&s, Method::PUT, &format!("/Users/{id}"), Some(body)).await; // a retry: unchanged
    let (status, _, _) = call(&s, Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = call(&s, Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let events = s.events();
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [Trigger::Joiner, Trigger::Mover, Trigger::Leaver]);
    assert_eq!(events[1].attributes["role"], "Manager");
    assert_eq!(events[2].external_id, format!("scim:User:{id}:v3"));
}

async fn a_failing_sink_fails_the_request_and_keeps_nothing(postgres: bool) {
    let s = Server::start_on(postgres).await;
    let id = create(&s, ann()).await;
    s.fail_sink.store(true, Ordering::SeqCst);
    let off = patch(json!([{"op": "replace", "path": "active", "value": false}]));
    let (status, _, err) = call(
        &s,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(off.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    let (_, _, user) = call(&s, Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(user["active"], json!(true), "the change was not kept");
    let mut bob = ann();
    bob["userName"] = json!("bob@example.com");
    let (status, _, _) = call(&s, Method::POST, "/Users", Some(bob.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // The IdP retries once the queue is back: one leaver, with the id the failed try would
    // have had; bob gets the id his first try would have had.
    s.fail_sink.store(false, Ordering::SeqCst);
    call(&s, Method::PATCH, &format!("/Users/{id}"), Some(off)).await;
    let bob_id = create(&s, bob).await;
    let events = s.events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[1].external_id, format!("scim:User:{id}:v2"));
    assert_eq!(events[2].external_id, format!("scim:User:{bob_id}:v1"));
}

async fn filters_and_pagination(postgres: bool) {
    let s = Server::start_on(postgres).await;
    for i in 0..5 {
        create(
            &s,
            json!({"userName": format!("user{i}@x.io"), "externalId": format!("X{i}")}),
        )
        .await;
    }
    let (status, headers, list) = call(
        &s,
        Method::GET,
        "/Users?filter=userName%20eq%20%22USER3%40X.IO%22",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/scim+json");
    assert_eq!(
        list["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );
    assert_eq!(
        (
            list["totalResults"].as_u64(),
            list["Resources"][0]["userName"].as_str()
        ),
        (Some(1), Some("user3@x.io"))
    );
    let (_, _, list) = call(
        &s,
        Method::GET,
        "/Users?filter=externalId%20eq%20%22X2%22",
        None,
    )
    .await;
    assert_eq!(list["Resources"][0]["externalId"], "X2");
    let (_, _, list) = call(
        &s,
        Method::GET,
        "/Users?filter=externalId%20eq%20%22x2%22",
        None,
    )
    .await;
    assert_eq!(list["totalResults"], 0, "externalId is caseExact");
    let (_, _, page) = call(&s, Method::GET, "/Users?startIndex=2&count=2", None).await;
    assert_eq!(
        (
            page["totalResults"].as_u64(),
            page["itemsPerPage"].as_u64(),
            page["startIndex"].as_u64()
        ),
        (Some(5), Some(2), Some(2))
    );
    let names: Vec<_> = page["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["user1@x.io", "user2@x.io"]);
    let (_, _, page) = call(&s, Method::GET, "/Users?startIndex=0&count=0", None).await;
    assert_eq!(
        (
            page["totalResults"].as_u64(),
            page["itemsPerPage"].as_u64(),
            page["startIndex"].as_u64()
        ),
        (Some(5), Some(0), Some(1))
    );
    let (status, _, err) = call(&s, Method::GET, "/Users?filter=title%20co%20%22x%22", None).await;
    assert_eq!(
        (status, err["scimType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalidFilter"))
    );
}

async fn without_a_valid_token_it_is_401_in_scim_form(postgres: bool) {
    let s = Server::start_on(postgres).await;
    for auth in [None, Some("Bearer wrong"), Some("Basic dGVzdA==")] {
        let mut req = Client::new().get(s.url("/Users"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["status"], "401");
    }
}

async fn users_survive_a_restart(postgres: bool) {
    let s = Server::start_on(postgres).await;
    let id = create(&s, ann()).await;
    let (dir, store) = s.stop().await;
    let s = Server::start_in(dir, store).await;
    let (status, _, user) = call(&s, Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["userName"], "Ann@Example.com");
    assert_eq!(user[ENT]["department"], "R&D");
}

/// Two SCIM routers (two replicas) on one PostgreSQL database, changing one User at once: every
/// change is kept (none lost), versions count every change, two PATCHes conditional on the same
/// version give one 200 and one 412, and exactly the events of the kept changes were handed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_postgres_serialise_the_changes_of_one_user() {
    let a = Server::start_postgres().await;
    let b = Server::start_in(tempfile::tempdir().expect("temp dir"), a.store.clone()).await;
    let id = create(&a, ann()).await;

    // 2 × 10 PATCHes, half at each replica, all at once: each adds its own phone number.
    let mut calls = Vec::new();
    for i in 0..20 {
        let (server, id) = (if i % 2 == 0 { &a } else { &b }, id.clone());
        let body = patch(json!([{"op": "add", "path": "phoneNumbers",
            "value": [{"type": "work", "value": format!("+49 30 {i:04}")}]}]));
        calls.push(async move {
            call(server, Method::PATCH, &format!("/Users/{id}"), Some(body)).await
        });
    }
    for (status, _, user) in futures::future::join_all(calls).await {
        assert_eq!(status, StatusCode::OK, "{user}");
    }
    let (_, _, user) = call(&b, Method::GET, &format!("/Users/{id}"), None).await;
    let phones = user["phoneNumbers"].as_array().map_or(0, Vec::len);
    assert_eq!(phones, 20, "every concurrent change was kept: {user}");
    assert_eq!(user["meta"]["version"], "W/\"21\"", "{user}");

    // The same version named at both replicas: one wins, the other is told the User changed.
    let conditional = |server: &'static str| {
        let (s, id) = (if server == "a" { &a } else { &b }, id.clone());
        async move {
            let mut req = Client::new()
                .request(Method::PATCH, s.url(&format!("/Users/{id}")))
                .bearer_auth(TOKEN)
                .header("if-match", "W/\"21\"")
                .header("content-type", "application/scim+json");
            let title = format!("Title from {server}");
            req = req.body(
                patch(json!([{"op": "replace", "path": "title", "value": title}])).to_string(),
            );
            req.send().await.expect("request").status()
        }
    };
    let (sa, sb) = tokio::join!(conditional("a"), conditional("b"));
    let mut statuses = [sa.as_u16(), sb.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 412], "one conditional PATCH wins");

    // Deactivation at one replica while the other renames: both kept, one leaver.
    let off = patch(json!([{"op": "replace", "path": "active", "value": false}]));
    let rename = patch(json!([{"op": "replace", "path": "displayName", "value": "Ann L."}]));
    let path = format!("/Users/{id}");
    let (off, rename) = tokio::join!(
        call(&a, Method::PATCH, &path, Some(off)),
        call(&b, Method::PATCH, &path, Some(rename)),
    );
    assert_eq!(off.0, StatusCode::OK, "{}", off.2);
    assert_eq!(rename.0, StatusCode::OK, "{}", rename.2);
    let (_, _, user) = call(&a, Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(user["active"], json!(false), "{user}");
    assert_eq!(user["displayName"], "Ann L.", "{user}");
    assert_eq!(user["meta"]["version"], "W/\"24\"", "{user}");

    // The same new userName at both replicas at once: one 201, one 409 uniqueness.
    let mut dana = ann();
    dana["userName"] = json!("dana@example.com");
    let (one, two) = tokio::join!(
        call(&a, Method::POST, "/Users", Some(dana.clone())),
        call(&b, Method::POST, "/Users", Some(dana)),
    );
    let mut statuses = [one.0.as_u16(), two.0.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{} {}", one.2, two.2);
    let conflict = if one.0 == StatusCode::CONFLICT {
        &one.2
    } else {
        &two.2
    };
    assert_eq!(conflict["scimType"], "uniqueness", "{conflict}");
    let (_, _, list) = call(
        &b,
        Method::GET,
        "/Users?filter=userName%20eq%20%22dana@example.com%22",
        None,
    )
    .await;
    assert_eq!(list["totalResults"], 1, "{list}");

    let mut events = a.events();
    events.extend(b.events());
    // The new User's joiner, then the rest are Ann's.
    let dana_joiners = events
        .iter()
        .filter(|e| e.kind == Trigger::Joiner && !e.external_id.contains(&id))
        .count();
    assert_eq!(dana_joiners, 1, "one joiner for the one kept creation");
    events.retain(|e| e.external_id.contains(&id));
    let mut kinds: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.external_id.clone()))
        .collect();
    kinds.sort_by(|x, y| x.1.cmp(&y.1));
    // The title change (a mover) and the leaver: their versions are 22 and 23 or 24.
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(
        kinds.contains(&(Trigger::Joiner, format!("scim:User:{id}:v1"))),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(Trigger::Mover, format!("scim:User:{id}:v22"))),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().any(|(k, e)| *k == Trigger::Leaver
            && (*e == format!("scim:User:{id}:v23") || *e == format!("scim:User:{id}:v24"))),
        "{kinds:?}"
    );
}
