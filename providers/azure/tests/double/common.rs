//! A client of the Azure test double, for the provider's integration tests.

use closeout_azure::http::{AzureHttp, Endpoints};
use closeout_azure::AzureConfig;
use closeout_azure_double::{
    AzureDouble, Config, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID,
};
use closeout_contract::{CallGate, Limits};

/// A double with small pages, so every list is paged.
pub async fn double() -> AzureDouble {
    AzureDouble::start(Config {
        page_size: 2,
        ..Config::default()
    })
    .await
    .expect("the Azure double starts")
}

/// The provider's HTTP layer pointed at `double`, authenticating with `secret`.
pub fn client(double: &AzureDouble, secret: &str) -> AzureHttp {
    AzureHttp::new(
        DEFAULT_TENANT_ID,
        DEFAULT_CLIENT_ID,
        secret.to_string().into(),
        Endpoints {
            authority_host: double.base_url(),
            arm: double.base_url(),
            graph: double.base_url(),
            ..Endpoints::default()
        },
        Some(double.ca_pem()),
        closeout_azure::limits::Gates::shared(gate()),
    )
    .expect("client")
}

/// The provider's configuration for `double`: its CA and client secret written to `dir`, every
/// endpoint the double, vault hosts resolving to it.
pub fn provider_config(double: &AzureDouble, dir: &std::path::Path) -> AzureConfig {
    std::fs::create_dir_all(dir).expect("temp dir");
    std::fs::write(dir.join("ca.pem"), double.ca_pem()).expect("write ca.pem");
    std::fs::write(dir.join("secret"), format!("{DEFAULT_CLIENT_SECRET}\n")).expect("write secret");
    AzureConfig {
        tenant_id: DEFAULT_TENANT_ID.into(),
        client_id: DEFAULT_CLIENT_ID.into(),
        client_secret_file: Some(dir.join("secret")),
        authority_host: double.base_url(),
        arm_endpoint: double.base_url(),
        graph_endpoint: double.base_url(),
        ca_file: Some(dir.join("ca.pem")),
        host_overrides: [("lowkey-vault.local".to_string(), [127, 0, 0, 1].into())].into(),
        ..AzureConfig::default()
    }
}

/// Built-in role definition GUIDs (the double's `data/builtin-role-definitions.json`).
pub mod roles {
    pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    pub const USER_ACCESS_ADMINISTRATOR: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";
    pub const KEY_VAULT_ADMINISTRATOR: &str = "00482a5a-887f-4fb3-b363-3b7fe8e74483";
    pub const KEY_VAULT_CONTRIBUTOR: &str = "f25e0fa2-a7c8-4377-a976-54943a77a395";
    pub const KEY_VAULT_SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
    pub const KEY_VAULT_CRYPTO_USER: &str = "12338af0-0e69-4776-bea7-57ae8d297424";
}

/// A double seeded through ARM's and Graph's own write calls by the configured client, and
/// the provider pointed at it.
pub struct World {
    pub double: AzureDouble,
    pub seed: AzureHttp,
    pub dir: std::path::PathBuf,
}

impl World {
    /// A fresh double; `tag` names the temporary directory of the provider's files.
    pub async fn new(tag: &str) -> World {
        let double = double().await;
        let seed = client(&double, DEFAULT_CLIENT_SECRET);
        let dir = std::env::temp_dir().join(format!(
            "closeout-azure-{tag}-{}-{}",
            std::process::id(),
            double.addr().port()
        ));
        World { double, seed, dir }
    }

    /// One call as the seeding client; panics with the call on failure. `Null` for 204.
    pub async fn call(
        &self,
        method: &'static str,
        api: closeout_azure::http::Api,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let body = (!body.is_null()).then_some(body);
        self.seed
            .call::<serde_json::Value>(api, method, path, body.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
            .unwrap_or(serde_json::Value::Null)
    }

    /// A subscription (through `Microsoft.Subscription/aliases`) with resource group `rg`.
    pub async fn subscription(&self, sub: &str, rg: &str) {
        use closeout_azure::http::Api::Arm;
        self.call(
            "PUT",
            Arm,
            &format!("/providers/Microsoft.Subscription/aliases/a-{sub}?api-version=2021-10-01"),
            serde_json::json!({"properties": {"displayName": sub, "workload": "Production",
                "billingScope": "/billingAccounts/x", "subscriptionId": sub}}),
        )
        .await;
        self.call(
            "PUT",
            Arm,
            &format!("/subscriptions/{sub}/resourcegroups/{rg}?api-version=2021-04-01"),
            serde_json::json!({"location": "westeurope"}),
        )
        .await;
    }

    /// A vault in `sub`/`rg`; its ARM JSON.
    pub async fn vault(
        &self,
        sub: &str,
        rg: &str,
        name: &str,
        rbac: bool,
        policies: serde_json::Value,
    ) -> serde_json::Value {
        self.call(
            "PUT",
            closeout_azure::http::Api::Arm,
            &format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}?api-version=2023-07-01"),
            serde_json::json!({"location": "westeurope", "properties": {
                "tenantId": DEFAULT_TENANT_ID, "sku": {"family": "A", "name": "standard"},
                "enableRbacAuthorization": rbac, "accessPolicies": policies}}),
        )
        .await
    }

    /// An enabled Entra user; its object id.
    pub async fn user(&self, upn: &str, employee_id: &str) -> String {
        let user = self
            .call(
                "POST",
                closeout_azure::http::Api::Graph,
                "/v1.0/users",
                serde_json::json!({"accountEnabled": true, "displayName": upn,
                    "userPrincipalName": upn, "mail": upn, "employeeId": employee_id,
                    "mailNickname": employee_id, "passwordProfile": {"password": "Not-Printed-1"}}),
            )
            .await;
        user["id"].as_str().expect("user id").to_string()
    }

    /// Role `role` (a GUID) assigned to `principal` at `scope`; the assignment's id.
    pub async fn assign(
        &self,
        scope: &str,
        role: &str,
        principal: &str,
        principal_type: &str,
    ) -> String {
        self.assign_with_condition(scope, role, principal, principal_type, None)
            .await
    }

    /// Like [`World::assign`], with an ABAC `condition` (version 2.0) when given.
    pub async fn assign_with_condition(
        &self,
        scope: &str,
        role: &str,
        principal: &str,
        principal_type: &str,
        condition: Option<&str>,
    ) -> String {
        let name = uuid::Uuid::new_v4();
        let mut properties = serde_json::json!({
            "roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{role}"),
            "principalId": principal, "principalType": principal_type});
        if let Some(c) = condition {
            properties["condition"] = serde_json::json!(c);
            properties["conditionVersion"] = serde_json::json!("2.0");
        }
        let assignment = self
            .call(
                "PUT",
                closeout_azure::http::Api::Arm,
                &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version=2022-04-01"),
                serde_json::json!({ "properties": properties }),
            )
            .await;
        assignment["id"]
            .as_str()
            .expect("assignment id")
            .to_string()
    }

    /// The provider, configured for the double (`credential_vault` when given).
    pub async fn provider(&self, credential_vault: Option<&str>) -> closeout_azure::AzureProvider {
        let config = AzureConfig {
            credential_vault: credential_vault.map(str::to_string),
            ..provider_config(&self.double, &self.dir)
        };
        closeout_azure::AzureProvider::connect(config)
            .await
            .expect("the provider connects")
    }

    /// The Key Vault data plane as the seeding client (vault hosts resolve to the double).
    pub fn kv(&self) -> closeout_azure::data_plane::KeyVaultData {
        closeout_azure::data_plane::KeyVaultData::new(
            self.seed.credential(),
            closeout_azure::data_plane::DataPlaneOptions {
                extra_root_pem: Some(self.double.ca_pem().to_string()),
                host_overrides: vec![(
                    "lowkey-vault.local".to_string(),
                    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                )],
                ..Default::default()
            },
            gate(),
        )
        .expect("the data-plane client builds")
    }

    /// A plain HTTPS client trusting the double, with vault `vault`'s host resolving to it.
    pub fn raw(&self, vault: &str) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.double.ca_pem().as_bytes()).expect("CA");
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve(&format!("{vault}.lowkey-vault.local"), self.double.addr())
            .build()
            .expect("raw client")
    }

    /// A token request at the double's token endpoint (client credentials, ARM scope): its
    /// HTTP status and body.
    pub async fn token(&self, client_id: &str, secret: &str) -> (u16, serde_json::Value) {
        let response = self
            .raw("none")
            .post(format!(
                "{}/{DEFAULT_TENANT_ID}/oauth2/v2.0/token",
                self.double.base_url()
            ))
            .form(&[
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", "https://management.azure.com/.default"),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
            .expect("token request");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// A key `name` (RSA 2048) in the vault at `vault_uri` (named `vault`), made through the data
    /// plane's own create call.
    pub async fn key(&self, vault: &str, vault_uri: &str, name: &str) {
        let token = self.vault_token().await;
        let response = self
            .raw(vault)
            .post(format!(
                "{}/keys/{name}/create?api-version=7.6",
                vault_uri.trim_end_matches('/')
            ))
            .bearer_auth(token)
            .json(&serde_json::json!({"kty": "RSA", "key_size": 2048}))
            .send()
            .await
            .expect("key create");
        assert_eq!(response.status().as_u16(), 200, "create key {name}");
    }

    /// `POST {vault_uri}/keys/{name}[/{version}]/{op}` (`encrypt`, `decrypt`, `wrapkey`,
    /// `unwrapkey`) with `alg` and `value` (bytes, sent base64url): the HTTP status and body.
    #[allow(clippy::too_many_arguments)]
    pub async fn key_op(
        &self,
        vault: &str,
        vault_uri: &str,
        name: &str,
        version: Option<&str>,
        op: &str,
        alg: &str,
        value: &[u8],
    ) -> (u16, serde_json::Value) {
        use base64::Engine as _;
        let token = self.vault_token().await;
        let path = match version {
            Some(v) => format!("keys/{name}/{v}/{op}"),
            None => format!("keys/{name}/{op}"),
        };
        let response = self
            .raw(vault)
            .post(format!(
                "{}/{path}?api-version=7.6",
                vault_uri.trim_end_matches('/')
            ))
            .bearer_auth(token)
            .json(&serde_json::json!({
                "alg": alg,
                "value": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value),
            }))
            .send()
            .await
            .expect("key operation");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// A data-plane token of the seeding client.
    async fn vault_token(&self) -> String {
        let response = self
            .raw("none")
            .post(format!(
                "{}/{DEFAULT_TENANT_ID}/oauth2/v2.0/token",
                self.double.base_url()
            ))
            .form(&[
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", DEFAULT_CLIENT_SECRET),
                ("scope", "https://lowkey-vault.local/.default"),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
            .expect("token request");
        let body: serde_json::Value = response.json().await.expect("token JSON");
        body["access_token"].as_str().expect("token").to_string()
    }

    /// An application and its service principal: (application object id, appId, service
    /// principal object id).
    pub async fn app(&self, name: &str) -> (String, String, String) {
        use closeout_azure::http::Api::Graph;
        let app = self
            .call(
                "POST",
                Graph,
                "/v1.0/applications",
                serde_json::json!({"displayName": name}),
            )
            .await;
        let app_id = app["appId"].as_str().expect("appId").to_string();
        let sp = self
            .call(
                "POST",
                Graph,
                "/v1.0/servicePrincipals",
                serde_json::json!({"appId": app_id}),
            )
            .await;
        (
            app["id"].as_str().expect("id").to_string(),
            app_id,
            sp["id"].as_str().expect("id").to_string(),
        )
    }

    /// `member` added to `relation` (`owners`, `members`) of `object` in `collection`.
    pub async fn link(&self, collection: &str, object: &str, relation: &str, member: &str) {
        self.call(
            "POST",
            closeout_azure::http::Api::Graph,
            &format!("/v1.0/{collection}/{object}/{relation}/$ref"),
            serde_json::json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{member}")}),
        )
        .await;
    }

    /// A fault the double injects (`/_double/faults`).
    pub async fn fault(&self, fault: serde_json::Value) {
        let response = self
            .raw("none")
            .post(format!("{}/_double/faults", self.double.base_url()))
            .json(&fault)
            .send()
            .await
            .expect("fault");
        assert_eq!(response.status().as_u16(), 201, "fault {fault}");
    }
}

fn gate() -> CallGate {
    CallGate::new(Limits {
        max_in_flight: 4,
        requests_per_second: 100.0,
        burst: 10,
    })
}
