//! The Key Vault data plane of the double, driven over HTTPS with `reqwest` (the Azure SDK side
//! is in the provider's tests): the challenge, api-version checks, routing by host, paging,
//! disabled secrets and certificate-backed secrets and keys.

use crate::common;

use common::{client_trusting, Env};
use reqwest::Method;
use serde_json::{json, Value};

const SUB: &str = "55555555-5555-4555-8555-555555555555";

/// A vault created through ARM, and a client that reaches `{vault}.lowkey-vault.local` at the
/// double's address, with a data-plane token.
struct Kv {
    env: Env,
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Kv {
    async fn start(vault: &str) -> Kv {
        let env = Env::start().await;
        env.create_subscription(SUB, None).await;
        env.create_resource_group(SUB, "rg-kv").await;
        let (status, body) = env
            .arm(
                Method::PUT,
                &format!("/subscriptions/{SUB}/resourceGroups/rg-kv/providers/Microsoft.KeyVault/vaults/{vault}?api-version=2023-07-01"),
                Some(json!({
                    "location": "westeurope",
                    "properties": {"tenantId": env.tenant, "sku": {"family": "A", "name": "standard"}},
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let port = env.double.addr().port();
        let base = format!("https://{vault}.lowkey-vault.local:{port}");
        assert_eq!(body["properties"]["vaultUri"], format!("{base}/"));
        let ca = reqwest::Certificate::from_pem(env.double.ca_pem().as_bytes()).expect("CA");
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve(&format!("{vault}.lowkey-vault.local"), env.double.addr())
            .resolve("nosuch.lowkey-vault.local", env.double.addr())
            .build()
            .expect("client");
        let token = env.token("https://lowkey-vault.local/.default").await;
        Kv {
            env,
            http,
            base,
            token,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = if path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, value)
    }
}

#[tokio::test]
async fn unauthenticated_calls_get_the_key_vault_challenge() {
    let kv = Kv::start("kv-auth").await;
    let response = kv
        .http
        .get(format!("{}/secrets?api-version=7.6", kv.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 401);
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .expect("challenge")
        .to_string();
    assert_eq!(
        challenge,
        format!(
            "Bearer authorization=\"{}/{}\", resource=\"https://lowkey-vault.local\"",
            kv.env.base, kv.env.tenant
        )
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "Unauthorized");

    // An ARM token is for another audience.
    let response = kv
        .http
        .get(format!("{}/secrets?api-version=7.6", kv.base))
        .bearer_auth(&kv.env.arm_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 401);

    // The real Key Vault audience works too.
    let token = kv.env.token("https://vault.azure.net/.default").await;
    let response = kv
        .http
        .get(format!("{}/secrets?api-version=7.6", kv.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);

    // A host that no ARM vault has.
    let port = kv.env.double.addr().port();
    let response = kv
        .http
        .get(format!(
            "https://nosuch.lowkey-vault.local:{port}/secrets?api-version=7.6"
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "VaultNotFound");

    // ARM is unaffected on the double's own host.
    let http = client_trusting(kv.env.double.ca_pem());
    let response = http
        .get(format!(
            "{}/subscriptions?api-version=2022-12-01",
            kv.env.base
        ))
        .bearer_auth(&kv.env.arm_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    kv.env.double.shutdown().await;
}

#[tokio::test]
async fn api_version_is_required_and_checked() {
    let kv = Kv::start("kv-versions").await;
    let (status, body) = kv.call(Method::GET, "/secrets", None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "BadParameter");
    let (status, body) = kv
        .call(Method::GET, "/secrets?api-version=2016-10-01", None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("7.6")));
    for version in ["7.4", "7.5", "7.6", "2025-07-01"] {
        let (status, body) = kv
            .call(
                Method::GET,
                &format!("/secrets?api-version={version}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{version}: {body}");
    }
    let (status, body) = kv
        .call(
            Method::PUT,
            "/secrets/bad_name?api-version=7.6",
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    kv.env.double.shutdown().await;
}

#[tokio::test]
async fn secrets_version_page_and_disable() {
    let kv = Kv::start("kv-secrets").await;
    let mut versions = Vec::new();
    for i in 0..3 {
        let (status, body) = kv
            .call(
                Method::PUT,
                "/secrets/db-password?api-version=7.6",
                Some(json!({"value": format!("v{i}"), "contentType": "text/plain", "tags": {"owner": "alice"}})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["value"], format!("v{i}"));
        let id = body["id"].as_str().expect("id");
        let version = id.rsplit('/').next().expect("version").to_string();
        assert_eq!(version.len(), 32);
        assert!(id.starts_with(&format!("{}/secrets/db-password/", kv.base)));
        versions.push(version);
    }
    // Page size 2: the versions list pages, and the next link repeats api-version.
    let (status, page) = kv
        .call(
            Method::GET,
            "/secrets/db-password/versions?api-version=7.6",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["value"].as_array().map(Vec::len), Some(2));
    let next = page["nextLink"].as_str().expect("nextLink").to_string();
    assert!(next.contains("api-version=7.6"), "{next}");
    let (status, page) = kv.call(Method::GET, &next, None).await;
    assert_eq!(status, 200);
    assert_eq!(page["value"].as_array().map(Vec::len), Some(1));
    assert!(page["nextLink"].is_null());
    let (status, page) = kv
        .call(
            Method::GET,
            "/secrets/db-password/versions?api-version=7.6&maxresults=3",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["value"].as_array().map(Vec::len), Some(3));

    // Disable the first version: reading it is 403 SecretDisabled.
    let (status, body) = kv
        .call(
            Method::PATCH,
            &format!("/secrets/db-password/{}?api-version=7.6", versions[0]),
            Some(json!({"attributes": {"enabled": false}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attributes"]["enabled"], false);
    assert!(body.get("value").is_none());
    let (status, body) = kv
        .call(
            Method::GET,
            &format!("/secrets/db-password/{}?api-version=7.6", versions[0]),
            None,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "Forbidden");
    assert_eq!(body["error"]["innererror"]["code"], "SecretDisabled");
    let (status, body) = kv
        .call(Method::GET, "/secrets/db-password?api-version=7.6", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["value"], "v2");
    assert_eq!(body["tags"]["owner"], "alice");
    let (status, body) = kv
        .call(Method::GET, "/secrets/missing?api-version=7.6", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "SecretNotFound");

    let calls = kv.env.calls().await;
    assert!(calls.iter().any(
        |c| c["host"] == "kv-secrets.lowkey-vault.local" && c["path"] == "/secrets/db-password"
    ));
    kv.env.double.shutdown().await;
}

#[tokio::test]
async fn keys_and_certificates_with_backing_objects() {
    let kv = Kv::start("kv-certs").await;
    let (status, key) = kv
        .call(
            Method::POST,
            "/keys/signing/create?api-version=7.6",
            Some(json!({"kty": "RSA", "key_size": 2048})),
        )
        .await;
    assert_eq!(status, 200, "{key}");
    let n = key["key"]["n"].as_str().expect("n");
    assert_eq!(n.len(), 342, "2048-bit modulus, base64url");
    assert_eq!(key["key"]["e"], "AQAB");
    let (status, ec) = kv
        .call(
            Method::POST,
            "/keys/ec/create?api-version=7.6",
            Some(json!({"kty": "EC", "crv": "P-256"})),
        )
        .await;
    assert_eq!(status, 200, "{ec}");
    assert_eq!(ec["key"]["crv"], "P-256");
    let (status, rotated) = kv
        .call(Method::POST, "/keys/signing/rotate?api-version=7.6", None)
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["key"]["kid"], key["key"]["kid"]);

    let (status, op) = kv
        .call(
            Method::POST,
            "/certificates/web/create?api-version=7.6",
            Some(json!({"policy": {
                "issuer": {"name": "Self"},
                "x509_props": {"subject": "CN=web.contoso.test", "sans": {"dns_names": ["web.contoso.test"]}},
                "key_props": {"kty": "RSA", "key_size": 2048, "exportable": true},
                "secret_props": {"contentType": "application/x-pem-file"}
            }})),
        )
        .await;
    assert_eq!(status, 202, "{op}");
    assert_eq!(op["status"], "inProgress");
    let (status, op) = kv
        .call(
            Method::GET,
            "/certificates/web/pending?api-version=7.6",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(op["status"], "completed");
    assert_eq!(op["target"], format!("{}/certificates/web", kv.base));
    let (status, cert) = kv
        .call(Method::GET, "/certificates/web?api-version=7.6", None)
        .await;
    assert_eq!(status, 200, "{cert}");
    let version = cert["id"]
        .as_str()
        .and_then(|i| i.rsplit('/').next())
        .expect("version");
    assert_eq!(cert["sid"], format!("{}/secrets/web/{version}", kv.base));
    assert_eq!(cert["kid"], format!("{}/keys/web/{version}", kv.base));
    assert!(cert["cer"].as_str().is_some_and(|c| c.starts_with("MII")));
    assert_eq!(
        cert["policy"]["secret_props"]["contentType"],
        "application/x-pem-file"
    );
    let (status, secret) = kv
        .call(Method::GET, "/secrets/web?api-version=7.6", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(secret["managed"], true);
    assert!(secret["value"]
        .as_str()
        .is_some_and(|v| v.contains("BEGIN PRIVATE KEY") && v.contains("BEGIN CERTIFICATE")));
    // The backing secret cannot be set directly.
    let (status, _) = kv
        .call(
            Method::PUT,
            "/secrets/web?api-version=7.6",
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(status, 403);

    // Disabling the certificate version disables its secret and key too.
    let (status, body) = kv
        .call(
            Method::PATCH,
            &format!("/certificates/web/{version}?api-version=7.6"),
            Some(json!({"attributes": {"enabled": false}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = kv
        .call(
            Method::GET,
            &format!("/secrets/web/{version}?api-version=7.6"),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (_, key) = kv
        .call(
            Method::GET,
            &format!("/keys/web/{version}?api-version=7.6"),
            None,
        )
        .await;
    assert_eq!(key["attributes"]["enabled"], false);
    let (status, policy) = kv
        .call(
            Method::GET,
            "/certificates/web/policy?api-version=7.6",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(policy["x509_props"]["subject"], "CN=web.contoso.test");
    kv.env.double.shutdown().await;
}
