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
