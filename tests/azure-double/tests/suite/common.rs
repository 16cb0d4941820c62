//! Shared helpers: start a double (page size 2, so paging is exercised), a `reqwest` client
//! that trusts only its CA, and tokens for ARM and Graph.

use closeout_azure_double::{AzureDouble, Config, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use reqwest::Method;
use serde_json::{json, Value};

pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

pub struct Env {
    pub double: AzureDouble,
    pub http: reqwest::Client,
    pub base: String,
    pub tenant: String,
    pub arm_token: String,
    pub graph_token: String,
}

pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM parses");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("client builds")
}

pub async fn token_response(
    http: &reqwest::Client,
    base: &str,
    tenant: &str,
    client_id: &str,
    secret: &str,
    scope: &str,
) -> (u16, Value) {
    let response = http
        .post(format!("{base}/{tenant}/oauth2/v2.0/token"))
        .form(&[
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .expect("token request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("token body is JSON"))
}

impl Env {
    pub async fn start() -> Env {
        let config = Config {
            page_size: 2,
            ..Config::default()
        };
        let tenant = config.tenant_id.clone();
        let double = AzureDouble::start(config).await.expect("double starts");
        let http = client_trusting(double.ca_pem());
        let base = double.base_url();
        let mut env = Env {
            double,
            http,
            base,
            tenant,
            arm_token: String::new(),
            graph_token: String::new(),
        };
        env.arm_token = env.token(ARM_SCOPE).await;
        env.graph_token = env.token(GRAPH_SCOPE).await;
        env
    }

    pub async fn token(&self, scope: &str) -> String {
        let (status, body) = token_response(
            &self.http,
            &self.base,
            &self.tenant,
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            scope,
        )
        .await;
        assert_eq!(status, 200, "token: {body}");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    pub async fn send(
        &self,
        token: Option<&str>,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let url = if url.starts_with("https://") {
            url.to_string()
        } else {
            format!("{}{url}", self.base)
        };
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request is sent")
    }

    async fn parse(response: reqwest::Response) -> (u16, Value) {
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body, got {text}"))
        };
        (status, value)
    }

    /// A Graph call (`path` under `/v1.0`, or an absolute `@odata.nextLink`).
    pub async fn graph(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = if path.starts_with("https://") {
            path.to_string()
        } else {
            format!("/v1.0{path}")
        };
        Self::parse(
            self.send(Some(&self.graph_token), method, &url, body.as_ref())
                .await,
        )
        .await
    }

    /// An ARM call (`path` with its query, or an absolute `nextLink`).
    pub async fn arm(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        Self::parse(
            self.send(Some(&self.arm_token), method, path, body.as_ref())
                .await,
        )
        .await
    }

    pub async fn create_user(&self, name: &str, extra: Value) -> Value {
        let mut body = json!({
            "accountEnabled": true,
            "displayName": name,
            "mailNickname": name,
            "userPrincipalName": format!("{name}@contoso.test"),
            "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": "x-Pa55word"},
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let (status, user) = self.graph(Method::POST, "/users", Some(body)).await;
        assert_eq!(status, 201, "create user: {user}");
        user
    }

    pub async fn create_group(&self, name: &str) -> Value {
        let (status, group) = self
            .graph(
                Method::POST,
                "/groups",
                Some(json!({
                    "displayName": name,
                    "mailEnabled": false,
                    "mailNickname": name,
                    "securityEnabled": true,
                })),
            )
            .await;
        assert_eq!(status, 201, "create group: {group}");
        group
    }

    pub async fn add_member(&self, group: &Value, member: &Value) {
        let (status, body) = self
            .graph(
                Method::POST,
                &format!("/groups/{}/members/$ref", id(group)),
                Some(json!({
                    "@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", id(member))
                })),
            )
            .await;
        assert_eq!(status, 204, "add member: {body}");
    }

    /// Creates a subscription through `Microsoft.Subscription/aliases`, optionally under a
    /// management group, and returns its id.
    pub async fn create_subscription(&self, sub_id: &str, management_group: Option<&str>) {
        let mut properties = json!({
            "displayName": format!("sub {sub_id}"),
            "workload": "Production",
            "billingScope": "/billingAccounts/double",
            "subscriptionId": sub_id,
        });
        if let Some(mg) = management_group {
            properties["additionalProperties"] = json!({
                "managementGroupId": format!("/providers/Microsoft.Management/managementGroups/{mg}")
            });
        }
        let (status, body) = self
            .arm(
                Method::PUT,
                &format!("/providers/Microsoft.Subscription/aliases/alias-{sub_id}?api-version=2021-10-01"),
                Some(json!({"properties": properties})),
            )
            .await;
        assert_eq!(status, 201, "alias: {body}");
        assert_eq!(body["properties"]["subscriptionId"], sub_id);
    }

    pub async fn create_resource_group(&self, sub: &str, rg: &str) {
        let (status, body) = self
            .arm(
                Method::PUT,
                &format!("/subscriptions/{sub}/resourcegroups/{rg}?api-version=2021-04-01"),
                Some(json!({"location": "westeurope"})),
            )
            .await;
        assert_eq!(status, 201, "resource group: {body}");
    }

    pub async fn calls(&self) -> Vec<Value> {
        let response = self.send(None, Method::GET, "/_double/calls", None).await;
        let body: Value = response.json().await.expect("calls JSON");
        body["calls"].as_array().cloned().unwrap_or_default()
    }
}

pub fn id(object: &Value) -> &str {
    object["id"].as_str().expect("object has an id")
}

/// Follows `nextLink`/`@odata.nextLink` and returns every page's `value`.
pub async fn all_pages(env: &Env, first: &str, graph: bool) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut next = Some(first.to_string());
    let link = if graph { "@odata.nextLink" } else { "nextLink" };
    while let Some(url) = next {
        let (status, body) = if graph {
            env.graph(Method::GET, &url, None).await
        } else {
            env.arm(Method::GET, &url, None).await
        };
        assert_eq!(status, 200, "page {url}: {body}");
        pages += 1;
        items.extend(body["value"].as_array().cloned().unwrap_or_default());
        next = body[link].as_str().map(str::to_string);
        if let Some(n) = &next {
            assert!(n.starts_with("https://127.0.0.1:"), "absolute link: {n}");
        }
    }
    (items, pages)
}
