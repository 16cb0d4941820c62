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
        CallGate::new(Limits {
            max_in_flight: 4,
            requests_per_second: 100.0,
            burst: 10,
        }),
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
    pub const KEY_VAULT_ADMINISTRATOR: &str = "00482a5a-887f-4fb3-b363-3b7fe8e74483";
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

    /// Role `role` (a GUID) assigned to `principal` at `scope`; the assignment's id.
    pub async fn assign(
        &self,
        scope: &str,
        role: &str,
        principal: &str,
        principal_type: &str,
    ) -> String {
        let name = uuid::Uuid::new_v4();
        let assignment = self
            .call(
                "PUT",
                closeout_azure::http::Api::Arm,
                &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version=2022-04-01"),
                serde_json::json!({"properties": {
                    "roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{role}"),
                    "principalId": principal, "principalType": principal_type}}),
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
}
