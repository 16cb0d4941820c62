//! SCIM intake behaviour over HTTP: the lifecycle events real IdP requests produce, retries,
//! the sink failing, filters, pagination, auth and persistence.

use crate::common::scim as harness;

use closeout::event::EventSource;
use closeout::trigger::Trigger;
use harness::{Server, TOKEN};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

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

#[tokio::test]
async fn post_is_a_joiner_with_the_hr_attributes() {
    let s = Server::start().await;
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

#[tokio::test]
async fn entra_patch_active_false_is_one_leaver_and_a_retry_is_none() {
    let s = Server::start().await;
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

#[tokio::test]
async fn okta_patch_without_path_deactivates_and_reactivates() {
    let s = Server::start().await;
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

#[tokio::test]
async fn a_department_change_is_one_mover_with_the_new_department() {
    let s = Server::start().await;
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

#[tokio::test]
async fn put_replaces_and_delete_of_an_active_user_is_a_leaver() {
    let s = Server::start().await;
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

#[tokio::test]
async fn a_failing_sink_fails_the_request_and_keeps_nothing() {
    let s = Server::start().await;
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

#[tokio::test]
async fn filters_and_pagination() {
    let s = Server::start().await;
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

#[tokio::test]
async fn without_a_valid_token_it_is_401_in_scim_form() {
    let s = Server::start().await;
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

#[tokio::test]
async fn users_survive_a_restart() {
    let s = Server::start().await;
    let id = create(&s, ann()).await;
    let dir = s.stop().await;
    let s = Server::start_in(dir).await;
    let (status, _, user) = call(&s, Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["userName"], "Ann@Example.com");
    assert_eq!(user[ENT]["department"], "R&D");
}
